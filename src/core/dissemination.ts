/**
 * Burst gossip: how a node carries thousands of user broadcasts per second. The regular gossip
 * round (gossipFanout datagrams every gossipIntervalMs) carries a few dozen broadcasts per
 * second; when the broadcast queue holds more than one regular round can carry
 * (`GossipPacing.burstThresholdBytes`), burst rounds start every `burstIntervalMs` and send as
 * many full datagrams (each packed with as many queued items as fit) as the gossip bandwidth
 * budget allows, until the queue is empty. Their destinations follow a cycle: a random order
 * of (up to 64) live members, taken in turn across rounds, then a fresh order; so the
 * transmissions of an item go to distinct members rather than to random ones with repeats.
 *
 * Fresh items get a larger fanout: a broadcast this node originated since the last regular
 * round is, when a burst round comes, first pushed, packed with the other fresh ones, to every
 * live member (up to FRESH_PUSH_MAX_PEERS), the same datagram to each; then it spreads like
 * any other queued item. An item that waited a whole regular round without a burst round
 * coming is forgotten unpushed (a few broadcasts at a time never burst, so they spread by plain
 * gossip); one queued since the last regular round waits for the next. So on a lossless
 * network every live member of a cluster of up to 33 hears each broadcast from its origin
 * directly, and gossip adds the redundancy that covers loss.
 *
 * This module owns the pacing state (the budget's token bucket and whether bursts run); the
 * node owns the queues and sends. Pure: time comes in as an argument.
 */

import { type GossipPacing, gossipPacing, type SwimConfig } from "./config.js";
import type { SlotSet } from "./member-table.js";
import type { Prng } from "./prng.js";
import type { DatagramWriter } from "./wire/codec.js";

/** Members a fresh item is pushed to at once, at most. */
export const FRESH_PUSH_MAX_PEERS = 32;
/** Most peers in one cycle of burst-round destinations (a fresh random order after each cycle). */
const MAX_BURST_CYCLE_PEERS = 64;

export class GossipPacer {
  private readonly pacing: GossipPacing;
  /** Bytes the budget allows now; negative after a regular round overspent it. */
  private tokens: number;
  private refilledAtMs: number | null = null;
  private lingerUntilMs = -Infinity;
  /** A burst timer is pending. */
  burstArmed = false;
  /** The current cycle of burst destinations (member slots) and the next one's index. */
  private cycle: number[] = [];
  private cursor = 0;
  /** Encoded items of this node's own broadcasts still to be pushed to every member, oldest first. */
  private fresh: Uint8Array[] = [];
  private freshHead = 0;
  /** Fresh items below this index were already waiting at the last regular round. */
  private freshMark = 0;

  constructor(
    config: SwimConfig,
    /** Bound of the fresh items (the broadcast queue's own bound). */
    private readonly maxFresh: number,
  ) {
    this.pacing = gossipPacing(config);
    this.tokens = this.pacing.bucketBytes;
  }

  get freshCount(): number {
    return this.fresh.length - this.freshHead;
  }

  /**
   * Records an item of this node's own for the fresh push of the next burst round. The
   * regular gossip round forgets them when no burst is pending (`clearFresh`), so a node that
   * never bursts never pushes. False (and not recorded: it still spreads by gossip) when
   * maxFresh are waiting.
   */
  addFresh(item: Uint8Array): boolean {
    if (this.freshCount >= this.maxFresh) return false;
    // Items already pushed are dropped from the front once they are as many as those waiting,
    // so the array stays within twice maxFresh however long bursts keep going.
    if (this.freshHead > 0 && this.freshHead >= this.freshCount) {
      this.fresh = this.fresh.slice(this.freshHead);
      this.freshMark = Math.max(0, this.freshMark - this.freshHead);
      this.freshHead = 0;
    }
    this.fresh.push(item);
    return true;
  }

  /** Appends the oldest fresh items that fit to `writer`, and forgets them. Returns how many. */
  fillFresh(writer: DatagramWriter): number {
    let appended = 0;
    while (this.freshHead < this.fresh.length && writer.tryAppend(this.fresh[this.freshHead] as Uint8Array)) {
      this.freshHead++;
      appended++;
    }
    // An item larger than an empty datagram's room cannot occur (maxBroadcastBytes keeps to
    // it); dropping such a head item keeps the push from stalling all the same.
    if (appended === 0 && this.freshHead < this.fresh.length) this.freshHead++;
    if (this.freshHead === this.fresh.length) this.clearFresh();
    return appended;
  }

  /** Forgets the fresh items (the node leaves, or has nobody to push to). */
  clearFresh(): void {
    this.fresh = [];
    this.freshHead = 0;
    this.freshMark = 0;
  }

  /**
   * A regular round without a burst round pending: forgets the fresh items that were already
   * waiting at the previous regular round; the newer ones wait for one more.
   */
  regularRound(): void {
    this.freshHead = Math.max(this.freshHead, this.freshMark);
    if (this.freshHead >= this.fresh.length) this.clearFresh();
    this.freshMark = this.fresh.length;
  }

  get burstIntervalMs(): number {
    return this.pacing.burstIntervalMs;
  }

  /**
   * Whether a queue of `queuedBroadcastBytes` calls for burst rounds (none are pending yet):
   * when it is deeper than one regular round carries, or, within one gossip interval after the
   * last burst round that had work, when anything is queued (bursts linger between the items of a steady stream
   * instead of stopping and starting).
   */
  shouldBurst(nowMs: number, queuedBroadcastBytes: number): boolean {
    const threshold = this.pacing.burstThresholdBytes;
    if (this.burstArmed || threshold === 0 || queuedBroadcastBytes === 0) return false;
    return queuedBroadcastBytes > threshold || nowMs < this.lingerUntilMs;
  }

  /** A burst round had work at `nowMs`: bursts linger for one gossip interval. */
  burstWorked(nowMs: number): void {
    this.lingerUntilMs = nowMs + this.pacing.lingerMs;
  }

  /** Gossip-round bytes just sent (regular or burst) count against the budget. */
  spend(nowMs: number, bytes: number): void {
    this.refill(nowMs);
    this.tokens -= bytes;
  }

  /** How many full datagrams of `datagramBytes` the budget allows now. */
  datagramsAllowed(nowMs: number, datagramBytes: number): number {
    this.refill(nowMs);
    return this.tokens < datagramBytes ? 0 : Math.floor(this.tokens / datagramBytes);
  }

  /** The next burst destination among `peers` (which must not be empty). */
  nextPeer(peers: SlotSet, rng: Prng): number {
    for (;;) {
      if (this.cursor >= this.cycle.length) {
        this.cycle = peers.sample(rng, Math.min(peers.size, MAX_BURST_CYCLE_PEERS), () => false);
        this.cursor = 0;
      }
      const slot = this.cycle[this.cursor++] as number;
      // A member that died or left since the cycle was drawn is skipped.
      if (peers.has(slot)) return slot;
    }
  }

  private refill(nowMs: number): void {
    if (this.refilledAtMs !== null && nowMs > this.refilledAtMs) {
      const earned = ((nowMs - this.refilledAtMs) * this.pacing.budgetBytesPerSec) / 1000;
      this.tokens = Math.min(this.pacing.bucketBytes, this.tokens + earned);
    }
    if (this.refilledAtMs === null || nowMs > this.refilledAtMs) this.refilledAtMs = nowMs;
  }
}
