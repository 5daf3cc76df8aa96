/**
 * The transmit-limited piggyback queue (memberlist's TransmitLimitedQueue, bucketed): items are
 * pre-encoded wire items keyed by what they speak of (a member, a broadcast id). A newer item
 * with the same key replaces the older one and starts with zero transmissions. Filling a
 * datagram takes least-sent items first (oldest first within a send count) and appends every
 * one that still fits, so the datagram's budget is used up; an item is dropped once it has been
 * sent `limit` times. The queue is bounded: beyond `maxItems` the most-sent, oldest item is
 * dropped and counted. It keeps the total size of the
 * queued items (`queuedBytes`), which paces burst gossip rounds (see dissemination.ts).
 *
 * Each send-count bucket is an intrusive doubly linked list, so moving an item to the next
 * bucket after a send costs a few pointer writes and no hashing; the key map is touched only
 * when items enter or leave the queue.
 */

import type { DatagramWriter } from "./wire/codec.js";

interface QueuedItem {
  readonly key: string;
  readonly bytes: Uint8Array;
  /** This item's share of the fill's `limit`: it leaves after limit * limitFactor transmissions. */
  readonly limitFactor: number;
  transmits: number;
  prev: QueuedItem | null;
  next: QueuedItem | null;
}

interface Bucket {
  head: QueuedItem | null;
  tail: QueuedItem | null;
  size: number;
}

/** Smallest item the core ever queues (an IPv4 membership update with a 1-byte incarnation). */
const MIN_ITEM_BYTES = 9;
/** Items that did not fit, tried before a fill gives up on a nearly full datagram. */
const MAX_MISFITS = 16;

export class TransmitQueue {
  private readonly byKey = new Map<string, QueuedItem>();
  /** buckets[t] holds the items sent t times, oldest first. */
  private readonly buckets: Bucket[] = [];
  private readonly sent: QueuedItem[] = [];
  /** Items evicted because the queue was full. */
  dropped = 0;
  /** Total encoded size of the queued items (bytes). */
  queuedBytes = 0;

  constructor(private readonly maxItems: number) {}

  get size(): number {
    return this.byKey.size;
  }

  /**
   * Queues `bytes` under `key`, replacing any older item with that key. `limitFactor` (1, 2, ...)
   * multiplies the retransmit limit of this item only.
   */
  enqueue(key: string, bytes: Uint8Array, limitFactor = 1): void {
    const old = this.byKey.get(key);
    if (old !== undefined) this.detach(old);
    else if (this.byKey.size >= this.maxItems) this.evictOne();
    const item: QueuedItem = { key, bytes, limitFactor, transmits: 0, prev: null, next: null };
    this.byKey.set(key, item);
    this.queuedBytes += bytes.length;
    this.link(item);
  }

  has(key: string): boolean {
    return this.byKey.has(key);
  }

  /** Transmissions left for `key` under `limit` (0 when not queued). */
  remaining(key: string, limit: number): number {
    const item = this.byKey.get(key);
    return item === undefined ? 0 : Math.max(0, limit * item.limitFactor - item.transmits);
  }

  remove(key: string): void {
    const item = this.byKey.get(key);
    if (item !== undefined) this.detach(item);
  }

  /**
   * Appends queued items to `writer`, least-sent first, until nothing more fits. Each appended
   * item counts one transmission (unless `counted` is false: a datagram to a member that is
   * not expected to answer, see SwimNode.sendBody); items reaching `limit` (times their
   * limitFactor) leave the queue.
   * Returns the number of items appended.
   */
  fill(writer: DatagramWriter, limit: number, counted = true): number {
    if (this.byKey.size === 0) return 0;
    let misfits = 0;
    const sent = this.sent;
    outer: for (let t = 0; t < this.buckets.length; t++) {
      for (let item = (this.buckets[t] as Bucket).head; item !== null; item = item.next) {
        if (writer.remaining < MIN_ITEM_BYTES) break outer;
        if (writer.tryAppend(item.bytes)) sent.push(item);
        else if (++misfits >= MAX_MISFITS) break outer;
      }
    }
    // Move after the walk, so that no item is appended twice to one datagram.
    const appended = sent.length;
    if (!counted) {
      sent.length = 0;
      return appended;
    }
    for (let i = 0; i < appended; i++) {
      const item = sent[i] as QueuedItem;
      this.unlink(item);
      item.transmits++;
      if (item.transmits >= limit * item.limitFactor) {
        this.byKey.delete(item.key);
        this.queuedBytes -= item.bytes.length;
      } else this.link(item);
    }
    sent.length = 0;
    return appended;
  }

  clear(): void {
    this.byKey.clear();
    this.buckets.length = 0;
    this.queuedBytes = 0;
  }

  private link(item: QueuedItem): void {
    while (this.buckets.length <= item.transmits) this.buckets.push({ head: null, tail: null, size: 0 });
    const b = this.buckets[item.transmits] as Bucket;
    item.prev = b.tail;
    item.next = null;
    if (b.tail === null) b.head = item;
    else b.tail.next = item;
    b.tail = item;
    b.size++;
  }

  private unlink(item: QueuedItem): void {
    const b = this.buckets[item.transmits] as Bucket;
    if (item.prev === null) b.head = item.next;
    else item.prev.next = item.next;
    if (item.next === null) b.tail = item.prev;
    else item.next.prev = item.prev;
    item.prev = null;
    item.next = null;
    b.size--;
  }

  private detach(item: QueuedItem): void {
    this.byKey.delete(item.key);
    this.queuedBytes -= item.bytes.length;
    this.unlink(item);
  }

  private evictOne(): void {
    for (let t = this.buckets.length - 1; t >= 0; t--) {
      const first = (this.buckets[t] as Bucket).head;
      if (first === null) continue;
      this.detach(first);
      this.dropped++;
      return;
    }
  }
}
