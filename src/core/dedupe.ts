/**
 * Exactly-once delivery of user broadcasts: a sliding window of seen sequence numbers per
 * broadcast origin and epoch, with a bounded number of origins (least recently used forgotten
 * first). A sequence number older than the window counts as already seen (stale).
 */

interface OriginWindow {
  highest: number;
  readonly bits: Uint32Array;
}

export type Sighting = "new" | "duplicate" | "stale";

export class DedupeWindows {
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
