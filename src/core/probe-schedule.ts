/**
 * The cluster's shared probe schedule: which member this node probes in each protocol period so
 * that, across the cluster, every member is probed by exactly one other member per period.
 *
 * With independent shuffled rounds (memberlist's, ProbeOrder in member-table.ts) nobody probes a
 * given member in a period with probability (1 − 1/(n − 1))^(n − 1) ≈ 0.37, so a crashed member
 * now and then goes unprobed for several periods and its detection takes that much longer.
 *
 * Here every member orders the members, self included, the same way: by a hash of each address
 * (its Address.id) and the cycle number, a fresh order every cycle (the power of two at or above
 * n − 1 rounds), so that members close in address space, such as one subnet cut off by a
 * partition, are not always probed by each other. In round r, s rounds into its cycle, the member
 * at position i probes the one at position (i + 1 + s mod (n − 1)) mod n: for one node a round robin (each other
 * member once in any n − 1 rounds of a cycle), for the cluster a permutation every round. The round is the period count of wall-clock
 * time, floor(wallMs / probeIntervalMs), the same number on every member whose clock is roughly
 * right; members that disagree (a skewed clock, a membership change not yet heard) only probe
 * someone another member also probes that round.
 *
 * Pure. The order is built once per cycle (a sort of n numbers) and kept up to date in O(n)
 * memory moves as members come and go, so that a large cluster does not re-sort on every death.
 */

import { fmix32, type Address } from "./address.js";
import { NO_SLOT } from "./member-table.js";

/**
 * A member's place in a cycle's order: a 31-bit hash of its Address.id (a function of its IP
 * and port, the same on every member) under the cycle number.
 */
function rankOf(address: Address, cycle: number): number {
  const lo = address.id % 0x1_0000_0000;
  const hi = (address.id - lo) / 0x1_0000_0000;
  return fmix32(lo ^ fmix32(hi ^ fmix32(cycle ^ 0x5bd1e995))) >>> 1;
}

/** Members per order fit in 22 bits (config maxMembers ≤ 4,194,304): rank · 2^22 + index < 2^53 is exact in a double. */
const INDEX_BITS = 2 ** 22;

export class SharedProbeSchedule {
  /** Members in this cycle's order (self is NO_SLOT): `length` entries of a growable array. */
  private order = new Int32Array(16);
  private length = 0;
  private selfIndex = 0;
  private cycle = -1;
  private stale = true;

  /** `addressOf(slot)` is the member's address; NO_SLOT stands for `self`. */
  constructor(
    private readonly self: Address,
    private readonly addressOf: (slot: number) => Address,
  ) {}

  /** `slot` became probeable. */
  add(slot: number): void {
    if (this.stale) return;
    const at = this.positionOf(slot);
    if (this.length === this.order.length) {
      const grown = new Int32Array(2 * this.length);
      grown.set(this.order);
      this.order = grown;
    }
    this.order.copyWithin(at + 1, at, this.length);
    this.order[at] = slot;
    this.length++;
    if (at <= this.selfIndex) this.selfIndex++;
  }

  /** `slot` is no longer probeable. */
  remove(slot: number): void {
    if (this.stale || slot === NO_SLOT) return;
    const at = this.order.subarray(0, this.length).indexOf(slot);
    if (at < 0) return;
    this.order.copyWithin(at, at + 1, this.length);
    this.length--;
    if (at < this.selfIndex) this.selfIndex--;
  }

  /** The member table moved its members to new slots. */
  renumber(newSlots: Int32Array): void {
    if (this.stale) return;
    for (let i = 0; i < this.length; i++) {
      const slot = this.order[i] as number;
      if (slot === NO_SLOT) continue;
      const moved = newSlots[slot] as number;
      if (moved === NO_SLOT) {
        // A member freed without being removed first: build afresh.
        this.stale = true;
        return;
      }
      this.order[i] = moved;
    }
  }

  /**
   * The member this node probes in `round`: one of the slots `members()` lists (the `count`
   * probeable ones), or NO_SLOT with nobody to probe. `isProbeable` guards against an order
   * gone stale unnoticed.
   */
  target(round: number, count: number, members: () => ArrayLike<number>, isProbeable: (slot: number) => boolean): number {
    if (count < 1) return NO_SLOT;
    const r = Math.max(0, Math.floor(round));
    // A cycle spans at least n − 1 rounds (every other member once), a power of two so that it
    // changes only when the membership crosses one, not at every join or death.
    const cycleRounds = 2 ** Math.ceil(Math.log2(count));
    const cycle = Math.floor(r / cycleRounds);
    // Rounds are counted from the cycle's start, so that a join or a death (n ± 1) moves this
    // member's place in its round robin by one step, not to anywhere.
    const step = r - cycle * cycleRounds;
    for (let attempt = 0; attempt < 2; attempt++) {
      if (this.stale || cycle !== this.cycle || this.length !== count + 1) this.build(cycle, members());
      const n = this.length;
      if (n < 2) return NO_SLOT;
      const slot = this.order[(this.selfIndex + 1 + (step % (n - 1))) % n] as number;
      if (slot !== NO_SLOT && isProbeable(slot)) return slot;
      this.stale = true;
    }
    return NO_SLOT;
  }

  private address(slot: number): Address {
    return slot === NO_SLOT ? this.self : this.addressOf(slot);
  }

  /** Between members of equal rank (a hash collision), whether `a` comes first: by address, as every member orders them. */
  private keyBefore(a: number, b: number): boolean {
    return this.address(a).key < this.address(b).key;
  }

  private build(cycle: number, members: ArrayLike<number>): void {
    const n = members.length + 1;
    const packed = new Float64Array(n);
    for (let i = 0; i < n; i++) {
      const slot = i < members.length ? (members[i] as number) : NO_SLOT;
      packed[i] = rankOf(this.address(slot), cycle) * INDEX_BITS + i;
    }
    packed.sort();
    if (this.order.length < n || this.order.length > 4 * Math.max(n, 16)) this.order = new Int32Array(Math.max(16, n));
    const ranks = new Float64Array(n);
    for (let j = 0; j < n; j++) {
      const p = packed[j] as number;
      const i = p % INDEX_BITS;
      this.order[j] = i < members.length ? (members[i] as number) : NO_SLOT;
      ranks[j] = (p - i) / INDEX_BITS;
    }
    // Equal ranks (a hash collision) are ordered by address, as every member orders them.
    for (let j = 1; j < n; j++) {
      for (let k = j; k > 0 && ranks[k] === ranks[k - 1] && this.keyBefore(this.order[k] as number, this.order[k - 1] as number); k--) {
        const slot = this.order[k] as number;
        this.order[k] = this.order[k - 1] as number;
        this.order[k - 1] = slot;
      }
    }
    this.length = n;
    this.selfIndex = this.order.subarray(0, n).indexOf(NO_SLOT);
    this.cycle = cycle;
    this.stale = false;
  }

  /** Where `slot` goes in the order (binary search on the ranks, computed from the addresses). */
  private positionOf(slot: number): number {
    const rank = rankOf(this.address(slot), this.cycle);
    let lo = 0;
    let hi = this.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      const other = this.order[mid] as number;
      const otherRank = rankOf(this.address(other), this.cycle);
      if (otherRank < rank || (otherRank === rank && this.keyBefore(other, slot))) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }
}
