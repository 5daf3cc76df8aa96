/**
 * The cluster's shared probe schedule: which member this node probes in each protocol period so
 * that, across the cluster, every member is probed by exactly one other member per period.
 *
 * With independent shuffled rounds (memberlist's, ProbeOrder in member-table.ts) nobody probes a
 * given member in a period with probability (1 − 1/(n − 1))^(n − 1) ≈ 0.37, so a crashed member
 * now and then goes unprobed for several periods and its detection takes that much longer.
 *
 * Here every member orders the members, self included, the same way: by a hash of each address
 * and the cycle number, a fresh order every cycle of n − 1 rounds (so that members close in
 * address space, such as one subnet cut off by a partition, are not always probed by each
 * other). In round r, the member at position i probes the one at position
 * (i + 1 + r mod (n − 1)) mod n: for one node a round robin over the cycle (each other member
 * once), for the cluster a permutation every round. The round is the period count of wall-clock
 * time, floor(wallMs / probeIntervalMs), the same number on every member whose clock is roughly
 * right; members that disagree (a skewed clock, a membership change not yet heard) only probe
 * someone another member also probes that round.
 *
 * Pure: the host gives the round; the order is rebuilt once per cycle and after membership changes.
 */

import { NO_SLOT } from "./member-table.js";

/** A 32-bit hash of `text` under `seed` (FNV-1a, then murmur3's finalizer). */
function hash32(text: string, seed: number): number {
  let h = (0x811c9dc5 ^ Math.imul(seed | 0, 0x9e3779b1)) >>> 0;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

export class SharedProbeSchedule {
  /** Members in this cycle's order; self is NO_SLOT. */
  private order = new Int32Array(0);
  private selfIndex = 0;
  private cycle = -1;
  private stale = true;

  /** The probeable members changed: the order is rebuilt before the next target. */
  invalidate(): void {
    this.stale = true;
  }

  /**
   * The member this node probes in `round`: one of the slots `members()` lists (the `count`
   * probeable ones), or NO_SLOT with nobody to probe. `isProbeable` guards against an order
   * gone stale unnoticed.
   */
  target(
    round: number,
    selfKey: string,
    count: number,
    members: () => number[],
    keyOf: (slot: number) => string,
    isProbeable: (slot: number) => boolean,
  ): number {
    if (count < 1) return NO_SLOT;
    const r = Math.max(0, Math.floor(round));
    const cycle = Math.floor(r / count);
    for (let attempt = 0; attempt < 2; attempt++) {
      if (this.stale || cycle !== this.cycle) this.rebuild(cycle, selfKey, members(), keyOf);
      const n = this.order.length;
      if (n < 2) return NO_SLOT;
      const slot = this.order[(this.selfIndex + 1 + (r % (n - 1))) % n] as number;
      if (slot !== NO_SLOT && isProbeable(slot)) return slot;
      this.stale = true;
    }
    return NO_SLOT;
  }

  private rebuild(cycle: number, selfKey: string, members: readonly number[], keyOf: (slot: number) => string): void {
    const entries = members.map((slot) => {
      const key = keyOf(slot);
      return { slot, key, rank: hash32(key, cycle) };
    });
    entries.push({ slot: NO_SLOT, key: selfKey, rank: hash32(selfKey, cycle) });
    entries.sort((a, b) => a.rank - b.rank || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    this.order = Int32Array.from(entries, (e) => e.slot);
    this.selfIndex = entries.findIndex((e) => e.slot === NO_SLOT);
    this.cycle = cycle;
    this.stale = false;
  }
}
