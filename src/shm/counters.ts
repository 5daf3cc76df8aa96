/**
 * src/shm/counters.ts: owns SharedCounters, a fixed block of 64-bit integer counters in one
 * SharedArrayBuffer that several threads read and add to with Atomics (no locks, no messages).
 * The engine uses it for the sealed envelope's nonce counter (every sealing thread takes the
 * next value with one atomic add, so a nonce is never used twice under a key whichever thread
 * seals), for the counters a seal/open worker keeps (the main thread reads them for Stats), and
 * for the control word that tells a sleeping worker a control message waits on its MessagePort.
 * Values stay below 2^53 (exact as numbers).
 */

export class SharedCounters {
  readonly sharedBuffer: SharedArrayBuffer;
  /** How many counters the block holds. */
  readonly slots: number;
  private readonly words: BigInt64Array;

  private constructor(sharedBuffer: SharedArrayBuffer) {
    this.sharedBuffer = sharedBuffer;
    this.words = new BigInt64Array(sharedBuffer);
    this.slots = this.words.length;
  }

  /** A block of `slots` counters, all 0 (or `initial[i]`). */
  static create(slots: number, initial: readonly number[] = []): SharedCounters {
    if (!Number.isInteger(slots) || slots < 1 || slots > 4096) throw new RangeError(`SharedCounters: slots must be 1..4096, got ${slots}`);
    const counters = new SharedCounters(new SharedArrayBuffer(slots * 8));
    initial.forEach((value, i) => counters.store(i, value));
    return counters;
  }

  /** Attaches to a block made by create() in another thread. */
  static attach(sharedBuffer: SharedArrayBuffer): SharedCounters {
    if (!(sharedBuffer instanceof SharedArrayBuffer) || sharedBuffer.byteLength % 8 !== 0 || sharedBuffer.byteLength === 0) {
      throw new TypeError("SharedCounters.attach: expected a SharedArrayBuffer of whole 8-byte counters");
    }
    return new SharedCounters(sharedBuffer);
  }

  /** Adds `delta` to counter `slot`; returns its value before the add. */
  add(slot: number, delta = 1): number {
    return Number(Atomics.add(this.words, this.check(slot), BigInt(delta)));
  }

  load(slot: number): number {
    return Number(Atomics.load(this.words, this.check(slot)));
  }

  store(slot: number, value: number): void {
    Atomics.store(this.words, this.check(slot), BigInt(value));
  }

  private check(slot: number): number {
    if (!(slot >= 0 && slot < this.slots)) throw new RangeError(`SharedCounters: no slot ${slot} of ${this.slots}`);
    return slot;
  }
}
