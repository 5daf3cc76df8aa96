/**
 * src/shm/counters.ts: owns SharedCounters, a fixed block of 64-bit integer counters in one
 * SharedArrayBuffer that several threads read and add to with Atomics (no locks, no messages).
 * The engine uses it for the sealed envelope's nonce counter (every sealing thread takes the
 * next value with one atomic add, so a nonce is never used twice under a key whichever thread
 * seals), for the counters a seal/open worker keeps (the main thread reads them for Stats), and
 * for the control word that tells a sleeping worker a control message waits on its MessagePort.
 * Values stay below 2^53 (exact as numbers).
 */

/** Bytes before the counters: the 32-bit control word, padded to 8. */
const CONTROL_BYTES = 8;

export class SharedCounters {
  readonly sharedBuffer: SharedArrayBuffer;
  /** How many counters the block holds. */
  readonly slots: number;
  private readonly words: BigInt64Array;
  /** A 32-bit word beside the counters, cheap to poll (no BigInt): see bumpControl. */
  private readonly control: Int32Array;

  private constructor(sharedBuffer: SharedArrayBuffer) {
    this.sharedBuffer = sharedBuffer;
    this.control = new Int32Array(sharedBuffer, 0, 1);
    this.words = new BigInt64Array(sharedBuffer, CONTROL_BYTES);
    this.slots = this.words.length;
  }

  /** A block of `slots` counters, all 0 (or `initial[i]`), and a control word of 0. */
  static create(slots: number, initial: readonly number[] = []): SharedCounters {
    if (!Number.isInteger(slots) || slots < 1 || slots > 4096) throw new RangeError(`SharedCounters: slots must be 1..4096, got ${slots}`);
    const counters = new SharedCounters(new SharedArrayBuffer(CONTROL_BYTES + slots * 8));
    initial.forEach((value, i) => counters.store(i, value));
    return counters;
  }

  /** Attaches to a block made by create() in another thread. */
  static attach(sharedBuffer: SharedArrayBuffer): SharedCounters {
    if (!(sharedBuffer instanceof SharedArrayBuffer) || sharedBuffer.byteLength % 8 !== 0 || sharedBuffer.byteLength <= CONTROL_BYTES) {
      throw new TypeError("SharedCounters.attach: expected a SharedArrayBuffer made by SharedCounters.create");
    }
    return new SharedCounters(sharedBuffer);
  }

  /** Advances the control word (a writer's signal: e.g. a control message waits on a port). */
  bumpControl(): void {
    Atomics.add(this.control, 0, 1);
  }

  /** The control word now (one atomic 32-bit load: cheap enough for a spin loop). */
  controlWord(): number {
    return Atomics.load(this.control, 0);
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
