/**
 * Reconnect targets: the members a node held dead (failed, not left) and has reaped from its
 * member table since. Once reaped, a member costs no probe, gossip or member-list traffic; it
 * stays a reconnect target for `reconnectTimeoutMs` after it failed (Serf keeps failed members
 * for 24 hours), so that a partition longer than the reap time still heals: each reconnect
 * round (SwimNode's reconnect timer) sends one small JOIN to one target, and the first target
 * that answers merges the two sides' member lists. The list is bounded (`maxReconnectTargets`):
 * when full, the target that failed longest ago is dropped, and counted.
 *
 * Also here: the choice of what one reconnect round contacts, among the dead members still in
 * the table, these targets, and the configured seeds (retried only while the cluster has lost
 * members). Pure: time is an argument, randomness comes from the node's PRNG.
 */

import type { Address } from "./address.js";
import type { Prng } from "./prng.js";

/** Counters of the reconnect machinery; all monotonic. */
export interface ReconnectStats {
  /** Reaped dead members that became reconnect targets. */
  reconnectTargetsAdded: number;
  /** Targets dropped because the list was full (the one that failed longest ago goes). */
  reconnectTargetsDropped: number;
  /** Targets forgotten because they failed more than reconnectTimeoutMs ago. */
  reconnectTargetsExpired: number;
  /** JOINs sent to reaped targets. */
  reconnectJoinsSent: number;
  /** JOINs sent to configured seeds because the cluster had lost members. */
  seedJoinsSent: number;
  /** Reconnect JOINs (to targets or seeds) that brought a member list back. */
  reconnectsSucceeded: number;
}

export function emptyReconnectStats(): ReconnectStats {
  return {
    reconnectTargetsAdded: 0,
    reconnectTargetsDropped: 0,
    reconnectTargetsExpired: 0,
    reconnectJoinsSent: 0,
    seedJoinsSent: 0,
    reconnectsSucceeded: 0,
  };
}

interface Target {
  readonly address: Address;
  readonly failedAtMs: number;
  /** Failed here (reaped dead), rather than remembered from an earlier life (a snapshot). */
  readonly failed: boolean;
}

/** What one reconnect round contacts. */
export type ReconnectChoice =
  | { readonly kind: "none" }
  /** The i-th dead member of the node's dead set (still in the table): a proof ping. */
  | { readonly kind: "dead"; readonly index: number }
  /** A reaped target or a seed: a JOIN. */
  | { readonly kind: "target" | "seed"; readonly address: Address };

export class ReconnectTargets {
  /** Targets in an array with swap-remove (an order that follows from the operations alone). */
  private readonly items: Target[] = [];
  private readonly indexOf = new Map<string, number>();

  constructor(
    private readonly maxTargets: number,
    private readonly timeoutMs: number,
    readonly stats: ReconnectStats,
  ) {}

  get size(): number {
    return this.items.length;
  }

  has(key: string): boolean {
    return this.indexOf.has(key);
  }

  /**
   * Keeps `address` as a target from `failedAtMs` on (no-op when disabled): one that `failed`
   * here, or one remembered from an earlier life (a snapshot), whose return is no comeback.
   */
  add(address: Address, failedAtMs: number, failed: boolean): void {
    if (this.maxTargets === 0 || this.timeoutMs === 0) return;
    const at = this.indexOf.get(address.key);
    if (at !== undefined) {
      this.items[at] = { address, failedAtMs, failed };
      return;
    }
    if (this.items.length >= this.maxTargets) {
      this.removeAt(this.oldest());
      this.stats.reconnectTargetsDropped++;
    }
    this.indexOf.set(address.key, this.items.length);
    this.items.push({ address, failedAtMs, failed });
    this.stats.reconnectTargetsAdded++;
  }

  /**
   * Forgets the target at `key` (it is a member again, or an operator removed it): "failed"
   * when it had failed here, "remembered" for a snapshot's, null when it was no target.
   */
  remove(key: string): "failed" | "remembered" | null {
    const at = this.indexOf.get(key);
    if (at === undefined) return null;
    const failed = (this.items[at] as Target).failed;
    this.removeAt(at);
    return failed ? "failed" : "remembered";
  }

  /** Forgets the targets that failed more than timeoutMs before `nowMs`. */
  expire(nowMs: number): void {
    for (let i = this.items.length - 1; i >= 0; i--) {
      if (nowMs - (this.items[i] as Target).failedAtMs > this.timeoutMs) {
        this.removeAt(i);
        this.stats.reconnectTargetsExpired++;
      }
    }
  }

  /** Every target's address, oldest failure last (for hosts that keep a snapshot). */
  addresses(): Address[] {
    return this.items.map((t) => t.address);
  }

  /**
   * The contact of one reconnect round, uniformly among `deadInTable` dead members, the targets
   * and `seeds` (the caller passes seeds only while the cluster has lost members). Draws from
   * `rng` only when there is a choice, one number, as a pick from the dead set alone does.
   */
  choose(rng: Prng, deadInTable: number, seeds: readonly Address[]): ReconnectChoice {
    const total = deadInTable + this.items.length + seeds.length;
    if (total === 0) return { kind: "none" };
    const r = rng.nextInt(total);
    if (r < deadInTable) return { kind: "dead", index: r };
    const t = r - deadInTable;
    if (t < this.items.length) return { kind: "target", address: (this.items[t] as Target).address };
    return { kind: "seed", address: seeds[t - this.items.length] as Address };
  }

  private oldest(): number {
    let best = 0;
    for (let i = 1; i < this.items.length; i++) {
      if ((this.items[i] as Target).failedAtMs < (this.items[best] as Target).failedAtMs) best = i;
    }
    return best;
  }

  private removeAt(i: number): void {
    const gone = this.items[i] as Target;
    const last = this.items.pop() as Target;
    this.indexOf.delete(gone.address.key);
    if (i < this.items.length) {
      this.items[i] = last;
      this.indexOf.set(last.address.key, i);
    }
  }
}
