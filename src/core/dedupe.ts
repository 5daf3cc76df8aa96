/**
 * Exactly-once delivery of user broadcasts: a sliding window of seen sequence numbers per
 * broadcast origin and epoch, with a bounded number of origins (least recently used forgotten
 * first). A sequence number older than the window counts as already seen (stale).
 *
 * Broadcast repair reads spans of the windows (SightingLog): how many seqs of a span are
 * unseen, and the lowest and highest of them, 32 seqs per step, so that a repair round costs
 * the same whether an origin's window is full, empty, or riddled with gaps.
 */

/** The sightings broadcast repair reads (DedupeWindows); spans are inclusive and lowest first. */
export interface SightingLog {
  seen(originKey: string, epoch: number, seq: number): boolean;
  /** How many seqs from `from` to `to` are not seen. */
  countUnseen(originKey: string, epoch: number, from: number, to: number): number;
  /** The lowest seq from `from` to `to` not seen; `to + 1` if every one was. */
  firstUnseen(originKey: string, epoch: number, from: number, to: number): number;
  /** The highest seq from `from` to `to` not seen; `from - 1` if every one was. */
  lastUnseen(originKey: string, epoch: number, from: number, to: number): number;
}

/**
 * Spans longer than this, or reaching this far from an origin's highest seq (where 32-bit
 * wrap-around could matter), are read seq by seq by `seen`'s own rules: one step per seq, so a
 * caller keeps its spans short. Repair's are at most two windows long.
 */
const MAX_FAST_SPAN = 0x40000000;

interface OriginWindow {
  highest: number;
  readonly bits: Uint32Array;
}

export type Sighting = "new" | "duplicate" | "stale";

/** Takes a run of unseen seqs (the lowest, how many, the highest); true stops the scan. */
type RunVisitor = (first: number, count: number, last: number) => boolean;

export class DedupeWindows implements SightingLog {
  private readonly origins = new Map<string, OriginWindow>();

  /** `windowSize` is a multiple of 32. */
  constructor(
    private readonly windowSize: number,
    private readonly maxOrigins: number,
  ) {}

  get originCount(): number {
    return this.origins.size;
  }

  /** Records (origin, epoch, seq) and says whether it is new. */
  sight(originKey: string, epoch: number, seq: number): Sighting {
    const key = `${originKey}/${epoch}`;
    let w = this.origins.get(key);
    if (w === undefined) {
      if (this.origins.size >= this.maxOrigins) {
        const oldest = this.origins.keys().next().value as string;
        this.origins.delete(oldest);
      }
      w = { highest: seq, bits: new Uint32Array(this.windowSize / 32) };
      this.origins.set(key, w);
      this.set(w, seq);
      return "new";
    }
    // Refresh recency for the LRU bound.
    this.origins.delete(key);
    this.origins.set(key, w);
    const ahead = (seq - w.highest) | 0; // signed 32-bit distance, so sequence numbers may wrap
    if (ahead > 0) {
      const clear = Math.min(ahead, this.windowSize);
      for (let i = 1; i <= clear; i++) this.unset(w, (w.highest + i) >>> 0);
      w.highest = seq;
      this.set(w, seq);
      return "new";
    }
    if (-ahead >= this.windowSize) return "stale";
    if (this.isSet(w, seq)) return "duplicate";
    this.set(w, seq);
    return "new";
  }

  /**
   * Whether (origin, epoch, seq) was sighted, or is too old for the window to say (stale, as
   * `sight` would call it). Changes nothing (not even the origin's recency).
   */
  seen(originKey: string, epoch: number, seq: number): boolean {
    const w = this.origins.get(`${originKey}/${epoch}`);
    if (w === undefined) return false;
    const ahead = (seq - w.highest) | 0;
    if (ahead > 0) return false;
    if (-ahead >= this.windowSize) return true;
    return this.isSet(w, seq);
  }

  countUnseen(originKey: string, epoch: number, from: number, to: number): number {
    let count = 0;
    this.scan(originKey, epoch, from, to, true, (_first, n) => {
      count += n;
      return false;
    });
    return count;
  }

  firstUnseen(originKey: string, epoch: number, from: number, to: number): number {
    let found = to + 1;
    this.scan(originKey, epoch, from, to, true, (first) => {
      found = first;
      return true;
    });
    return found;
  }

  lastUnseen(originKey: string, epoch: number, from: number, to: number): number {
    let found = from - 1;
    this.scan(originKey, epoch, from, to, false, (_first, _n, last) => {
      found = last;
      return true;
    });
    return found;
  }

  /**
   * Visits the unseen seqs of [from, to] in runs, ascending (or descending), each as
   * (lowest, count, highest) of the unseen seqs of one step, until `visit` returns true. A step is
   * a stretch the window settles at once: before its reach (all seen), beyond its highest (all
   * unseen), or one word of its bits (up to 32 seqs). Changes nothing.
   */
  private scan(originKey: string, epoch: number, from: number, to: number, ascending: boolean, visit: RunVisitor): void {
    if (to < from) return;
    const w = this.origins.get(`${originKey}/${epoch}`);
    if (w === undefined) {
      visit(from, to - from + 1, to);
      return;
    }
    const size = this.windowSize;
    const highest = w.highest;
    // The fast path works on plain integers; a span that might cross the 32-bit wrap (or a
    // window whose reach does) goes seq by seq through `seen`, which compares modulo 2^32.
    if (from < 0 || to > 0xffffffff || to - from > MAX_FAST_SPAN || Math.abs(to - highest) > MAX_FAST_SPAN || Math.abs(from - highest) > MAX_FAST_SPAN) {
      this.scanSlowly(originKey, epoch, from, to, ascending, visit);
      return;
    }
    // [from, to] in three parts: up to highest - size (stale: seen), the window's bits, beyond highest (unseen).
    const bitsFrom = Math.max(from, highest - size + 1);
    const bitsTo = Math.min(to, highest);
    if (!ascending && to > highest && visit(Math.max(from, highest + 1), to - Math.max(from, highest + 1) + 1, to)) return;
    if (bitsFrom <= bitsTo) {
      if (ascending) {
        for (let s = bitsFrom; s <= bitsTo; ) {
          const bit = s % size;
          const offset = bit & 31;
          const n = Math.min(32 - offset, bitsTo - s + 1);
          if (visitWord(this.unseenBits(w, bit, offset, n), s - offset, visit)) return;
          s += n;
        }
      } else {
        for (let e = bitsTo; e >= bitsFrom; ) {
          const bitEnd = e % size;
          const endOffset = bitEnd & 31;
          const n = Math.min(endOffset + 1, e - bitsFrom + 1);
          if (visitWord(this.unseenBits(w, bitEnd, endOffset - n + 1, n), e - endOffset, visit)) return;
          e -= n;
        }
      }
    }
    if (ascending && to > highest) visit(Math.max(from, highest + 1), to - Math.max(from, highest + 1) + 1, to);
  }

  /** The clear bits among `n` bits of the word holding bit index `bit`, from bit `offset` of that word, in place. */
  private unseenBits(w: OriginWindow, bit: number, offset: number, n: number): number {
    const mask = n === 32 ? 0xffffffff : ((1 << n) - 1) << offset;
    return ~(w.bits[bit >>> 5] as number) & mask;
  }

  /** `scan` through `seen`, one seq at a time (runs of one). */
  private scanSlowly(originKey: string, epoch: number, from: number, to: number, ascending: boolean, visit: RunVisitor): void {
    for (let i = 0; i <= to - from; i++) {
      const s = ascending ? from + i : to - i;
      if (!this.seen(originKey, epoch, s) && visit(s, 1, s)) return;
    }
  }

  private set(w: OriginWindow, seq: number): void {
    const bit = (seq >>> 0) % this.windowSize;
    w.bits[bit >>> 5] = ((w.bits[bit >>> 5] as number) | (1 << (bit & 31))) >>> 0;
  }

  private unset(w: OriginWindow, seq: number): void {
    const bit = (seq >>> 0) % this.windowSize;
    w.bits[bit >>> 5] = ((w.bits[bit >>> 5] as number) & ~(1 << (bit & 31))) >>> 0;
  }

  private isSet(w: OriginWindow, seq: number): boolean {
    const bit = (seq >>> 0) % this.windowSize;
    return (((w.bits[bit >>> 5] as number) >>> (bit & 31)) & 1) === 1;
  }
}

/**
 * Visits the unseen seqs of one word of a window (`unseen`: their bits; bit 0 stands for seq
 * `seqAtBit0`) as one run; returns what `visit` returned (false for none).
 */
function visitWord(unseen: number, seqAtBit0: number, visit: RunVisitor): boolean {
  if (unseen === 0) return false;
  return visit(seqAtBit0 + 31 - Math.clz32(unseen & -unseen), popcount(unseen), seqAtBit0 + 31 - Math.clz32(unseen));
}

/** Set bits of a 32-bit word. */
function popcount(x: number): number {
  let v = x - ((x >>> 1) & 0x55555555);
  v = (v & 0x33333333) + ((v >>> 2) & 0x33333333);
  return Math.imul((v + (v >>> 4)) & 0x0f0f0f0f, 0x01010101) >>> 24;
}
