/**
 * The member snapshot of `tamtam agent --snapshot FILE`: the agent remembers the members it
 * knows (alive, suspect, and failed ones not reaped yet; never itself or members that left) in
 * FILE, so that after a restart it rejoins them without any seed (they are joined at start, and
 * stay reconnect targets of the core for its reconnect window).
 *
 * A member that is reaped from the table (a failed one after the reap time) leaves the
 * snapshot at the next write, while the core still keeps it as a reconnect target.
 *
 * Bounded and careful with the disk: at most SNAPSHOT_MAX_MEMBERS members (live ones first), at
 * most one write per SNAPSHOT_MIN_WRITE_INTERVAL_MS (membership changes in between are merged
 * into the next write), only when the content changed, always atomically (a temporary file,
 * fsync, rename; mode 0600). A file that cannot be read or parsed is one warning line and an
 * empty start, never a crash; a write that fails is one error line and retried at the next
 * change.
 *
 * Format (JSON): {"format":"tamtam-snapshot/1","members":["10.0.0.2:9999","[fd77::3]:9999",...]}
 */

import { readFileSync } from "node:fs";
import { type Address, parseAddress } from "../core/address.js";
import type { MemberInfo } from "../core/runtime.js";
import { MemberState } from "../core/wire/messages.js";
import { writeFileAtomic } from "../fs/atomic-file.js";

export const SNAPSHOT_FORMAT = "tamtam-snapshot/1";
/** Members a snapshot holds at most (live members first). */
export const SNAPSHOT_MAX_MEMBERS = 4096;
/** Writes are at least this far apart. */
export const SNAPSHOT_MIN_WRITE_INTERVAL_MS = 2_000;
/** Largest snapshot file read (bytes): more than SNAPSHOT_MAX_MEMBERS IPv6 members need. */
const SNAPSHOT_MAX_FILE_BYTES = 1 << 20;

export interface SnapshotRead {
  readonly members: Address[];
  /** One line to log when the file exists but cannot be used, else null. */
  readonly warning: string | null;
}

/** The members remembered in `path`; a missing file is an empty snapshot, a bad one a warning. */
export function readSnapshot(path: string, read: (path: string) => string = (p) => readFileSync(p, "utf8")): SnapshotRead {
  const unusable = (why: string): SnapshotRead => ({ members: [], warning: `the snapshot file ${path} is not usable (${why}); starting without it` });
  let text: string;
  try {
    text = read(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return { members: [], warning: null };
    return unusable(code ?? (err as Error).message);
  }
  if (text.length > SNAPSHOT_MAX_FILE_BYTES) return unusable(`larger than ${SNAPSHOT_MAX_FILE_BYTES} bytes`);
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch {
    return unusable("not JSON");
  }
  const members = (data as { members?: unknown } | null)?.members;
  if ((data as { format?: unknown } | null)?.format !== SNAPSHOT_FORMAT || !Array.isArray(members)) {
    return unusable(`not a ${SNAPSHOT_FORMAT} object with a members list`);
  }
  const out: Address[] = [];
  const seen = new Set<string>();
  for (const item of members.slice(0, SNAPSHOT_MAX_MEMBERS)) {
    const a = typeof item === "string" ? parseAddress(item) : "not a string";
    if (typeof a === "string") return unusable(`a member is not ADDR:PORT: ${JSON.stringify(item).slice(0, 60)}`);
    if (!seen.has(a.key)) out.push(a);
    seen.add(a.key);
  }
  return { members: out, warning: null };
}

/**
 * The snapshot text of `members` (self and left members are skipped; live ones first; bounded),
 * or null when no member is left to remember: the file then keeps the members it holds, so
 * that an agent that starts alone, or has lost every member, still finds them after a restart.
 */
export function snapshotText(members: readonly MemberInfo[]): string | null {
  const live = (m: MemberInfo): boolean => m.state === MemberState.Alive || m.state === MemberState.Suspect;
  const kept = members.filter((m) => !m.isSelf && m.state !== MemberState.Left);
  if (kept.length === 0) return null;
  const ordered = [...kept.filter(live), ...kept.filter((m) => !live(m))].slice(0, SNAPSHOT_MAX_MEMBERS);
  return `${JSON.stringify({ format: SNAPSHOT_FORMAT, members: ordered.map((m) => m.address.key) })}\n`;
}

export interface SnapshotWriterOptions {
  readonly path: string;
  /** The members to save now. */
  readonly members: () => Promise<readonly MemberInfo[]>;
  readonly onError: (line: string) => void;
  readonly write?: (path: string, text: string) => void;
  readonly minIntervalMs?: number;
}

/**
 * Writes the snapshot after membership changes, at most once per interval. Writes run one at a
 * time, in the order asked. `close()` stops new writes at once, waits for one in progress, then
 * writes the final state: that is what stays on disk, and nothing writes after it.
 */
export class SnapshotWriter {
  /** Writes done and failed (Stats counters). */
  readonly counters = { writes: 0, writeErrors: 0, skippedUnchanged: 0 };
  private lastText: string | null = null;
  private lastWriteAtMs = -Infinity;
  private timer: NodeJS.Timeout | null = null;
  /** The last write asked for (each one starts when the one before it ended). */
  private writes: Promise<void> = Promise.resolve();
  private closed = false;
  private closing: Promise<void> | null = null;
  private readonly write: (path: string, text: string) => void;
  private readonly minIntervalMs: number;

  constructor(private readonly options: SnapshotWriterOptions) {
    this.write = options.write ?? ((path, text) => writeFileAtomic(path, text, 0o600));
    this.minIntervalMs = options.minIntervalMs ?? SNAPSHOT_MIN_WRITE_INTERVAL_MS;
  }

  /** Membership changed: a write follows, at most one per interval. */
  changed(): void {
    if (this.closed || this.timer !== null) return;
    const waitMs = Math.max(0, this.lastWriteAtMs + this.minIntervalMs - performance.now());
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.flush();
    }, waitMs);
    this.timer.unref();
  }

  /** Writes now if the members changed since the last write (after the writes already asked for); nothing once closed. */
  flush(): Promise<void> {
    return this.closed ? this.writes : this.enqueue();
  }

  /** No more writes, not even a last one (an agent that failed to start); waits for one in progress. */
  async discard(): Promise<void> {
    this.stop();
    await this.writes;
  }

  /** A last write of the members as they are now, then no more. Idempotent. */
  close(): Promise<void> {
    if (this.closing !== null) return this.closing;
    this.stop();
    this.closing = this.enqueue();
    return this.closing;
  }

  private stop(): void {
    this.closed = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }

  private enqueue(): Promise<void> {
    this.writes = this.writes.then(() => this.writeOnce());
    return this.writes;
  }

  /** Reads the members and writes them if they changed; never rejects. */
  private async writeOnce(): Promise<void> {
    let text: string | null;
    try {
      text = snapshotText(await this.options.members());
    } catch {
      return; // the engine is stopping
    }
    this.lastWriteAtMs = performance.now();
    if (text === null || text === this.lastText) {
      this.counters.skippedUnchanged++;
      return;
    }
    try {
      this.write(this.options.path, text);
      this.lastText = text;
      this.counters.writes++;
    } catch (err) {
      this.counters.writeErrors++;
      this.options.onError(`cannot write the snapshot file ${this.options.path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
  }
}
