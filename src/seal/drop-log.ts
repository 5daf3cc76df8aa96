/**
 * Rate-limited reporting of dropped datagrams: at most one line per drop reason every
 * `intervalMs` (default 10 s), saying how many were dropped since the last line of that reason
 * and where the latest came from. A flood of forged or foreign datagrams costs a counter
 * increment each, never a log line each.
 */

import { DROP_REASON_TEXT, type DropReason } from "./envelope.js";

export const DROP_LOG_INTERVAL_MS = 10_000;

export class DropLog {
  private readonly last = new Map<DropReason, { atMs: number; suppressed: number }>();

  constructor(
    private readonly write: (line: string) => void,
    private readonly intervalMs = DROP_LOG_INTERVAL_MS,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /**
   * Reports `count` drops (default one); writes a line when this reason's interval has passed.
   * `source` null: the source is not known (a seal/open worker dropped it; it sees no addresses).
   */
  record(reason: DropReason, source: string | null, count = 1): void {
    const nowMs = this.now();
    const entry = this.last.get(reason);
    if (entry !== undefined && nowMs - entry.atMs < this.intervalMs) {
      entry.suppressed += count;
      return;
    }
    const total = count + (entry?.suppressed ?? 0);
    this.last.set(reason, { atMs: nowMs, suppressed: 0 });
    const what = total === 1 ? "a datagram" : `${total} datagrams`;
    this.write(`dropped ${what} ${DROP_REASON_TEXT[reason]} (${reason})${source === null ? "" : `, the latest from ${source}`}`);
  }
}
