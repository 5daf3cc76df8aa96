/**
 * src/shm/ring.ts: owns ShmRing, a bounded single-producer/single-consumer ring of
 * length-prefixed frames over one SharedArrayBuffer, and Doorbell, the wake-up word a sleeping
 * consumer waits on. Together with src/shm/index.ts this is the only code in TamTam that touches
 * SharedArrayBuffer or Atomics.
 *
 * Ring layout. Offsets are in bytes from the start of the SharedArrayBuffer. A "slot" is one
 * Int32 word (4 bytes): slot n sits at byte 4n. Every index and counter is in the units its name
 * says.
 *
 *   bytes 0..63      config line, written once by create(), read-only afterwards
 *     slot 0   MAGIC               0x54544d52 ("TTMR"); also the head canary
 *     slot 1   LAYOUT_VERSION      1
 *     slot 2   CAPACITY_BYTES      size of the data area, a power of two in [64, 2^30]
 *     slot 3   MAX_FRAME_BYTES     largest payload accepted (the length prefix is not counted)
 *     slot 4   HEADER_BYTES        256 (where the data area starts)
 *     slot 5   DOORBELL_ID         0 = built-in doorbell (slots 48..52), else id of an external one
 *   bytes 64..127    producer line, written only by the producer thread
 *     slot 16  WRITE_INDEX         bytes ever published, modulo 2^32 (stored as int32)
 *     slot 17  PRODUCER_SEQ        seqlock over the producer counters (odd while updating)
 *     slot 18+19 FRAMES_WRITTEN    lo/hi words of a 53-bit count of published frames
 *     slot 20+21 BYTES_WRITTEN     payload bytes of those frames (prefix and padding not counted)
 *     slot 22+23 DROPPED_FULL      frames refused because the ring was full
 *     slot 24+25 DROPPED_OVERSIZE  frames refused because payload > MAX_FRAME_BYTES
 *     slot 26+27 DOORBELL_RINGS    publishes that found the consumer asleep and woke it
 *   bytes 128..191   consumer line, written only by the consumer thread
 *     slot 32  READ_INDEX          bytes ever released, modulo 2^32 (stored as int32)
 *     slot 33  CONSUMER_SEQ        seqlock over the consumer counters
 *     slot 34+35 FRAMES_READ       frames released by drain()/read()
 *   bytes 192..255   built-in doorbell line (see Doorbell below)
 *     slot 48  DOORBELL_SEQ        bumped on each wake-up; the word the consumer waits on
 *     slot 49  SLEEPING            1 while the consumer is (about to be) asleep
 *     slot 50  SLEEPS_SEQ, slot 51+52 SLEEPS   times the consumer actually went to sleep
 *     slot 63  GUARD_LO            0x5a5aa5a5, the canary immediately before the data area
 *   bytes 256 .. 256+capacityBytes-1            the data area
 *   bytes 256+capacityBytes .. +63              trailer; its first word is GUARD_HI 0xa5a55a5a
 *
 * Frames. Each frame is a record of a native-endian u32 payload length, the payload, then 0-3
 * bytes of padding so the next record starts 4-byte aligned. Indices grow without bound modulo
 * 2^32 (the capacity divides 2^32, so `index & (capacity - 1)` is the data-area offset and
 * `(write - read) >>> 0` the bytes in use). Records are never split: when a record does not fit
 * between its position and the end of the data area, the producer writes the wrap marker
 * 0xffffffff as the length word there and puts the record at offset 0, the skipped tail counting
 * as used until the consumer passes it. So every payload is one contiguous view into the ring
 * (zero-copy drain). To make any accepted frame fit even in an empty ring, create() requires
 * 4 + align4(maxFrameBytes) <= capacityBytes / 2.
 *
 * Memory ordering. Payload and length words are plain stores; the producer makes them visible
 * with one Atomics.store of WRITE_INDEX per publish(), the consumer loads it with Atomics.load
 * (release/acquire through the sequentially consistent atomics), reads the frames, then hands the
 * space back with one Atomics.store of READ_INDEX.
 *
 * Doorbell protocol (no lost wake-up). Consumer: spin a little checking for data; then store
 * SLEEPING=1, load DOORBELL_SEQ, check for data once more, and only then Atomics.wait on
 * DOORBELL_SEQ with the value it loaded; on return store SLEEPING=0. Producer, after storing
 * WRITE_INDEX: if SLEEPING is 1 and Atomics.exchange(SLEEPING, 0) returns 1, add 1 to
 * DOORBELL_SEQ and Atomics.notify it. A producer that sees SLEEPING=0 ordered itself before the
 * consumer's store of 1, so the consumer's re-check sees the data; a producer that sees 1 bumps
 * the sequence, so the consumer's wait either finds the value changed or is woken by the notify.
 * The exchange makes a sleeping consumer cost exactly one notify, however many publishes land
 * during its 30-45 µs wake-up, and a consumer that is awake costs the producer one load.
 *
 * Several rings that one thread consumes can share an external Doorbell (its own small
 * SharedArrayBuffer) so that thread can sleep until any of them has data: see
 * Doorbell.waitSync/waitAsync with a predicate, and src/shm/index.ts.
 */

import { isMainThread } from "node:worker_threads";

const RING_MAGIC = 0x54544d52; // "TTMR"
const DOORBELL_MAGIC = 0x54544442; // "TTDB"
const LAYOUT_VERSION = 1;
const HEADER_BYTES = 256;
const TRAILER_BYTES = 64;
const LENGTH_PREFIX_BYTES = 4;
const WRAP_MARKER = -1;
const GUARD_LO = 0x5a5aa5a5 | 0;
const GUARD_HI = 0xa5a55a5a | 0;
const MIN_CAPACITY_BYTES = 64;
const MAX_CAPACITY_BYTES = 2 ** 30;
const TWO_POW_32 = 2 ** 32;
/** Longest timeout setTimeout accepts; longer (or infinite) waits use a repeating keep-alive. */
const MAX_TIMER_MS = 2 ** 31 - 1;
/** Default busy-wait checks before sleeping: about 10 µs on the reference machine. */
export const DEFAULT_SPIN_ITERATIONS = 2_000;

// Header slots (Int32 indices); see the layout in the file header.
const S_MAGIC = 0;
const S_VERSION = 1;
const S_CAPACITY_BYTES = 2;
const S_MAX_FRAME_BYTES = 3;
const S_HEADER_BYTES = 4;
const S_DOORBELL_ID = 5;
const S_WRITE = 16;
const S_PRODUCER_SEQ = 17;
const S_FRAMES_WRITTEN = 18;
const S_BYTES_WRITTEN = 20;
const S_DROPPED_FULL = 22;
const S_DROPPED_OVERSIZE = 24;
const S_DOORBELL_RINGS = 26;
const S_READ = 32;
const S_CONSUMER_SEQ = 33;
const S_FRAMES_READ = 34;
const S_BUILTIN_DOORBELL = 48;
const S_GUARD_LO = HEADER_BYTES / 4 - 1;

// Doorbell slots, relative to the doorbell's base slot.
const D_SEQ = 0;
const D_SLEEPING = 1;
const D_SLEEPS_SEQ = 2;
const D_SLEEPS = 3;
// A standalone doorbell buffer: slot 0 magic, slot 1 id, doorbell words from slot 4, 64 bytes.
const STANDALONE_DOORBELL_BYTES = 64;
const STANDALONE_DOORBELL_BASE = 4;

/** Thrown when a ring's shared memory fails a consistency check (clobbered header or data). */
export class RingCorruptedError extends Error {
  override readonly name = "RingCorruptedError";
}

export interface RingOptions {
  /** Busy-wait checks in waitSync() before sleeping. Default DEFAULT_SPIN_ITERATIONS. */
  spinIterations?: number;
  /**
   * A doorbell shared with other rings consumed by the same thread. Given to create(), it is
   * recorded in the header by id; attach() must then be given the same doorbell (attached in
   * the attaching thread with Doorbell.attach).
   */
  doorbell?: Doorbell;
  /**
   * waitSync() blocks the calling thread, so it throws on the main thread unless this is true
   * (tests only: the engine's main thread must never block).
   */
  allowBlockingMainThread?: boolean;
}

export interface RingStats {
  readonly capacityBytes: number;
  readonly maxFrameBytes: number;
  /** Bytes published and not yet released (including padding, prefixes and skipped tails). */
  readonly usedBytes: number;
  readonly framesWritten: number;
  readonly bytesWritten: number;
  readonly framesRead: number;
  readonly framesDroppedFull: number;
  readonly framesDroppedOversize: number;
  readonly doorbellRings: number;
  /** Times the consumer of this ring's doorbell went to sleep (shared across a doorbell group). */
  readonly consumerSleeps: number;
}

/** Visits one frame; the view is valid only during the call. Return false to stop before it. */
export type FrameVisitor = (frame: Uint8Array) => boolean | void;
/** Visits one frame as (ring data area, offset, length): no allocation per frame. */
export type RawFrameVisitor = (data: Uint8Array, offset: number, lengthBytes: number) => boolean | void;

/** The producer end of a ring: what the writing thread may call. */
export interface RingProducer {
  readonly capacityBytes: number;
  readonly maxFrameBytes: number;
  tryWrite(bytes: Uint8Array): boolean;
  tryWrite2(head: Uint8Array, body: Uint8Array): boolean;
  tryWriteWith(lengthBytes: number, fill: (dst: Uint8Array, offset: number) => void): boolean;
  hasSpaceFor(payloadBytes: number): boolean;
  freeBytes(): number;
  publish(): boolean;
  stats(): RingStats;
  check(options?: { deep?: boolean }): void;
}

/** The consumer end of a ring: what the reading thread may call. */
export interface RingConsumer {
  readonly capacityBytes: number;
  readonly maxFrameBytes: number;
  readonly doorbell: Doorbell;
  hasData(): boolean;
  drain(visit: FrameVisitor, maxFrames?: number): number;
  drainRaw(visit: RawFrameVisitor, maxFrames?: number): number;
  read(): Uint8Array | null;
  waitSync(timeoutMs: number, spinIterations?: number): boolean;
  waitAsync(timeoutMs: number): Promise<boolean>;
  stats(): RingStats;
  check(options?: { deep?: boolean }): void;
}

function hex(value: number): string {
  return "0x" + (value >>> 0).toString(16).padStart(8, "0");
}

function isPowerOfTwo(n: number): boolean {
  return Number.isInteger(n) && n > 0 && (n & (n - 1)) === 0;
}

/** Bytes one record of `payloadBytes` occupies: 4-byte prefix + payload rounded up to 4. */
function recordBytesOf(payloadBytes: number): number {
  return (payloadBytes + LENGTH_PREFIX_BYTES + 3) & ~3;
}

function noop(): void {}

/** Normalises a timeout for Atomics.wait: NaN/negative mean "do not wait", Infinity is kept. */
function normaliseTimeoutMs(timeoutMs: number): number {
  return timeoutMs > 0 ? timeoutMs : 0;
}

// --- 53-bit counters in lo/hi word pairs, guarded by a single-writer seqlock ---------------------

function counterStore(words: Int32Array, slot: number, value: number): void {
  Atomics.store(words, slot, value >>> 0);
  Atomics.store(words, slot + 1, Math.floor(value / TWO_POW_32));
}

function counterLoad(words: Int32Array, slot: number): number {
  return (Atomics.load(words, slot + 1) >>> 0) * TWO_POW_32 + (Atomics.load(words, slot) >>> 0);
}

/** Reads counters under the seqlock at `seqSlot`; retries while a writer is mid-update. */
function seqlockRead<T>(words: Int32Array, seqSlot: number, read: () => T): T {
  let value = read();
  for (let attempt = 0; attempt < 10_000; attempt++) {
    const before = Atomics.load(words, seqSlot);
    if ((before & 1) === 0) {
      value = read();
      if (Atomics.load(words, seqSlot) === before) return value;
    }
  }
  return value; // the writer stalled mid-update for a long time: best effort
}

/**
 * The wake-up word of one consuming thread: a sequence number it waits on and a SLEEPING flag
 * producers test after publishing (protocol in the file header). A ring has a built-in doorbell
 * in its header; Doorbell.create() makes a standalone one that several rings can share.
 * One consumer thread per doorbell; any number of producers.
 */
export class Doorbell {
  /** The buffer holding the doorbell words (a ring's buffer for a built-in doorbell). */
  readonly sharedBuffer: SharedArrayBuffer;
  /** 0 for a ring's built-in doorbell, else the id recorded in rings that use this one. */
  readonly id: number;
  spinIterations: number;
  private readonly words: Int32Array;
  private readonly base: number;
  private sleeps: number;
  private pendingWait: Promise<boolean> | null = null;

  private constructor(sharedBuffer: SharedArrayBuffer, words: Int32Array, base: number, id: number) {
    this.sharedBuffer = sharedBuffer;
    this.words = words;
    this.base = base;
    this.id = id;
    this.spinIterations = DEFAULT_SPIN_ITERATIONS;
    this.sleeps = counterLoad(words, base + D_SLEEPS);
  }

  /** A standalone doorbell, to share among the rings one thread consumes. */
  static create(): Doorbell {
    const sab = new SharedArrayBuffer(STANDALONE_DOORBELL_BYTES);
    const words = new Int32Array(sab);
    let id = 0;
    while (id === 0) id = (Math.random() * 0x7fffffff) | 0;
    words[0] = DOORBELL_MAGIC;
    words[1] = id;
    return new Doorbell(sab, words, STANDALONE_DOORBELL_BASE, id);
  }

  /** Attaches to a standalone doorbell made by create() (e.g. received through workerData). */
  static attach(sharedBuffer: SharedArrayBuffer): Doorbell {
    if (!(sharedBuffer instanceof SharedArrayBuffer) || sharedBuffer.byteLength !== STANDALONE_DOORBELL_BYTES) {
      throw new TypeError(`Doorbell.attach: expected a ${STANDALONE_DOORBELL_BYTES}-byte SharedArrayBuffer`);
    }
    const words = new Int32Array(sharedBuffer);
    const magic = Atomics.load(words, 0);
    if (magic !== DOORBELL_MAGIC) {
      throw new RingCorruptedError(`doorbell magic at byte 0 is ${hex(magic)}, expected ${hex(DOORBELL_MAGIC)}`);
    }
    return new Doorbell(sharedBuffer, words, STANDALONE_DOORBELL_BASE, Atomics.load(words, 1));
  }

  /** @internal The built-in doorbell of a ring, over the ring's own header. */
  static builtIn(sharedBuffer: SharedArrayBuffer, header: Int32Array): Doorbell {
    return new Doorbell(sharedBuffer, header, S_BUILTIN_DOORBELL, 0);
  }

  /**
   * Producer side, after publishing: wakes the consumer if (and only if) it announced it is
   * sleeping. Returns whether a notify was issued.
   */
  ring(): boolean {
    const words = this.words;
    const sleeping = this.base + D_SLEEPING;
    if (Atomics.load(words, sleeping) === 0) return false;
    if (Atomics.exchange(words, sleeping, 0) === 0) return false;
    Atomics.add(words, this.base + D_SEQ, 1);
    Atomics.notify(words, this.base + D_SEQ);
    return true;
  }

  /** Whether the consumer has announced it is (about to be) asleep. */
  isConsumerSleeping(): boolean {
    return Atomics.load(this.words, this.base + D_SLEEPING) !== 0;
  }

  /** Times the consumer actually went to sleep (a 53-bit count). */
  sleepCount(): number {
    return seqlockRead(this.words, this.base + D_SLEEPS_SEQ, () => counterLoad(this.words, this.base + D_SLEEPS));
  }

  /**
   * Consumer side, worker threads: returns true as soon as `hasWork()` is true, false if
   * `timeoutMs` passes first (it may also return false early on a spurious wake-up: callers
   * loop). Spins `spinIterations` checks, then announces sleep and blocks in Atomics.wait.
   * `hasWork` must only perform atomic loads (e.g. ShmRing.hasData of the rings on this bell).
   */
  waitSync(timeoutMs: number, hasWork: () => boolean, spinIterations = this.spinIterations): boolean {
    if (hasWork()) return true;
    for (let i = 0; i < spinIterations; i++) if (hasWork()) return true;
    const words = this.words;
    const seqSlot = this.base + D_SEQ;
    const sleepingSlot = this.base + D_SLEEPING;
    Atomics.store(words, sleepingSlot, 1);
    const seq = Atomics.load(words, seqSlot);
    if (hasWork()) {
      Atomics.store(words, sleepingSlot, 0);
      return true;
    }
    this.countSleep();
    Atomics.wait(words, seqSlot, seq, normaliseTimeoutMs(timeoutMs));
    Atomics.store(words, sleepingSlot, 0);
    return hasWork();
  }

  /**
   * Consumer side, main thread (never blocks): resolves true once `hasWork()` is true, false
   * after `timeoutMs` (or early on a spurious wake-up). Uses Atomics.waitAsync and holds a Node
   * timer meanwhile, since a pending waitAsync alone does not keep the event loop alive.
   * Concurrent calls share one pending wait (there is one consumer per doorbell).
   */
  waitAsync(timeoutMs: number, hasWork: () => boolean): Promise<boolean> {
    if (hasWork()) return Promise.resolve(true);
    if (this.pendingWait !== null) return this.pendingWait;
    const words = this.words;
    const seqSlot = this.base + D_SEQ;
    const sleepingSlot = this.base + D_SLEEPING;
    Atomics.store(words, sleepingSlot, 1);
    const seq = Atomics.load(words, seqSlot);
    if (hasWork()) {
      Atomics.store(words, sleepingSlot, 0);
      return Promise.resolve(true);
    }
    const waitMs = normaliseTimeoutMs(timeoutMs);
    const result = Atomics.waitAsync(words, seqSlot, seq, waitMs);
    if (!result.async) {
      Atomics.store(words, sleepingSlot, 0);
      return Promise.resolve(hasWork());
    }
    this.countSleep();
    const keepAlive =
      waitMs < MAX_TIMER_MS ? setTimeout(noop, waitMs + 1) : setInterval(noop, MAX_TIMER_MS);
    const pending = result.value.then(() => {
      clearTimeout(keepAlive);
      this.pendingWait = null;
      Atomics.store(words, sleepingSlot, 0);
      return hasWork();
    });
    this.pendingWait = pending;
    return pending;
  }

  private countSleep(): void {
    const words = this.words;
    const seqSlot = this.base + D_SLEEPS_SEQ;
    this.sleeps++;
    Atomics.add(words, seqSlot, 1);
    counterStore(words, this.base + D_SLEEPS, this.sleeps);
    Atomics.add(words, seqSlot, 1);
  }
}

/**
 * A bounded SPSC ring of length-prefixed frames over one SharedArrayBuffer (layout and protocol
 * in the file header). One thread produces (tryWrite*, publish), one thread consumes (drain,
 * read, waitSync/waitAsync); each attaches its own ShmRing to the same buffer. The producer never
 * blocks and never grows the ring: a frame that does not fit is refused and counted.
 */
export class ShmRing implements RingProducer, RingConsumer {
  readonly sharedBuffer: SharedArrayBuffer;
  readonly capacityBytes: number;
  readonly maxFrameBytes: number;
  readonly doorbell: Doorbell;
  /** Busy-wait checks in waitSync() before sleeping. */
  spinIterations: number;

  private readonly header: Int32Array;
  private readonly trailer: Int32Array;
  private readonly data8: Uint8Array;
  private readonly data32: Int32Array;
  private readonly mask: number;
  private readonly allowBlockingMainThread: boolean;
  private readonly hasDataFn: () => boolean;

  // Producer-local state.
  private writeCursor: number;
  private publishedWrite: number;
  private cachedRead: number;
  private claimEnd = 0;
  private framesWritten: number;
  private bytesWritten: number;
  private droppedFull: number;
  private droppedOversize: number;
  private doorbellRings: number;

  // Consumer-local state.
  private readCursor: number;
  private framesRead: number;

  private constructor(sharedBuffer: SharedArrayBuffer, options: RingOptions) {
    const header = new Int32Array(sharedBuffer, 0, HEADER_BYTES / 4);
    const capacityBytes = header[S_CAPACITY_BYTES]!;
    this.sharedBuffer = sharedBuffer;
    this.header = header;
    this.capacityBytes = capacityBytes;
    this.maxFrameBytes = header[S_MAX_FRAME_BYTES]!;
    this.mask = capacityBytes - 1;
    this.data8 = new Uint8Array(sharedBuffer, HEADER_BYTES, capacityBytes);
    this.data32 = new Int32Array(sharedBuffer, HEADER_BYTES, capacityBytes / 4);
    this.trailer = new Int32Array(sharedBuffer, HEADER_BYTES + capacityBytes, TRAILER_BYTES / 4);
    this.spinIterations = options.spinIterations ?? DEFAULT_SPIN_ITERATIONS;
    this.allowBlockingMainThread = options.allowBlockingMainThread ?? false;

    const doorbellId = Atomics.load(header, S_DOORBELL_ID);
    if (doorbellId === 0) {
      if (options.doorbell !== undefined) {
        throw new TypeError("ShmRing: this ring uses its built-in doorbell; do not pass a doorbell");
      }
      this.doorbell = Doorbell.builtIn(sharedBuffer, header);
    } else {
      if (options.doorbell === undefined || options.doorbell.id !== doorbellId) {
        throw new TypeError(
          `ShmRing: this ring rings external doorbell ${hex(doorbellId)}; attach it with that Doorbell`,
        );
      }
      this.doorbell = options.doorbell;
    }

    this.writeCursor = Atomics.load(header, S_WRITE) >>> 0;
    this.publishedWrite = this.writeCursor;
    this.readCursor = Atomics.load(header, S_READ) >>> 0;
    this.cachedRead = this.readCursor;
    this.framesWritten = counterLoad(header, S_FRAMES_WRITTEN);
    this.bytesWritten = counterLoad(header, S_BYTES_WRITTEN);
    this.droppedFull = counterLoad(header, S_DROPPED_FULL);
    this.droppedOversize = counterLoad(header, S_DROPPED_OVERSIZE);
    this.doorbellRings = counterLoad(header, S_DOORBELL_RINGS);
    this.framesRead = counterLoad(header, S_FRAMES_READ);
    this.hasDataFn = () => (Atomics.load(this.header, S_WRITE) >>> 0) !== this.readCursor;
  }

  /**
   * A new ring with a data area of `capacityBytes` (a power of two, 64 .. 2^30) accepting
   * payloads up to `maxFrameBytes`, where 4 + align4(maxFrameBytes) <= capacityBytes / 2.
   */
  static create(capacityBytes: number, maxFrameBytes: number, options: RingOptions = {}): ShmRing {
    if (!isPowerOfTwo(capacityBytes) || capacityBytes < MIN_CAPACITY_BYTES || capacityBytes > MAX_CAPACITY_BYTES) {
      throw new RangeError(
        `ShmRing.create: capacityBytes must be a power of two in [${MIN_CAPACITY_BYTES}, 2^30], got ${capacityBytes}`,
      );
    }
    if (!Number.isInteger(maxFrameBytes) || maxFrameBytes < 0 || recordBytesOf(maxFrameBytes) > capacityBytes / 2) {
      throw new RangeError(
        `ShmRing.create: maxFrameBytes must be an integer with 4 + align4(maxFrameBytes) <= capacityBytes / 2 ` +
          `(at most ${capacityBytes / 2 - LENGTH_PREFIX_BYTES} for ${capacityBytes}), got ${maxFrameBytes}`,
      );
    }
    const sab = new SharedArrayBuffer(HEADER_BYTES + capacityBytes + TRAILER_BYTES);
    const header = new Int32Array(sab, 0, HEADER_BYTES / 4);
    header[S_MAGIC] = RING_MAGIC;
    header[S_VERSION] = LAYOUT_VERSION;
    header[S_CAPACITY_BYTES] = capacityBytes;
    header[S_MAX_FRAME_BYTES] = maxFrameBytes;
    header[S_HEADER_BYTES] = HEADER_BYTES;
    header[S_DOORBELL_ID] = options.doorbell?.id ?? 0;
    header[S_GUARD_LO] = GUARD_LO;
    new Int32Array(sab, HEADER_BYTES + capacityBytes, 1)[0] = GUARD_HI;
    return new ShmRing(sab, options);
  }

  /**
   * Attaches to a ring made by create() in another thread (the buffer travels in workerData).
   * Validates the header and canaries first.
   */
  static attach(sharedBuffer: SharedArrayBuffer, options: RingOptions = {}): ShmRing {
    if (!(sharedBuffer instanceof SharedArrayBuffer)) {
      throw new TypeError("ShmRing.attach: expected a SharedArrayBuffer");
    }
    if (sharedBuffer.byteLength < HEADER_BYTES + MIN_CAPACITY_BYTES + TRAILER_BYTES) {
      throw new RingCorruptedError(`ShmRing.attach: buffer of ${sharedBuffer.byteLength} bytes is too small for a ring`);
    }
    const header = new Int32Array(sharedBuffer, 0, HEADER_BYTES / 4);
    const magic = Atomics.load(header, S_MAGIC);
    if (magic !== RING_MAGIC) {
      throw new RingCorruptedError(`ShmRing.attach: magic at byte 0 is ${hex(magic)}, expected ${hex(RING_MAGIC)}`);
    }
    const capacityBytes = Atomics.load(header, S_CAPACITY_BYTES);
    if (!isPowerOfTwo(capacityBytes) || sharedBuffer.byteLength !== HEADER_BYTES + capacityBytes + TRAILER_BYTES) {
      throw new RingCorruptedError(
        `ShmRing.attach: capacity word ${capacityBytes} does not match a buffer of ${sharedBuffer.byteLength} bytes`,
      );
    }
    const ring = new ShmRing(sharedBuffer, options);
    ring.check();
    return ring;
  }

  // --- producer -------------------------------------------------------------------------------

  /** Appends one frame (a copy of `bytes`); false if the ring is full or the frame too big. */
  tryWrite(bytes: Uint8Array): boolean {
    const lengthBytes = bytes.length;
    const at = this.claim(lengthBytes);
    if (at < 0) return false;
    if (lengthBytes <= 16) {
      const data = this.data8;
      for (let i = 0; i < lengthBytes; i++) data[at + i] = bytes[i]!;
    } else {
      this.data8.set(bytes, at);
    }
    this.commit(lengthBytes);
    return true;
  }

  /** Appends one frame made of `head` followed by `body` (e.g. metadata + datagram). */
  tryWrite2(head: Uint8Array, body: Uint8Array): boolean {
    const headBytes = head.length;
    const lengthBytes = headBytes + body.length;
    const at = this.claim(lengthBytes);
    if (at < 0) return false;
    const data = this.data8;
    if (headBytes <= 16) {
      for (let i = 0; i < headBytes; i++) data[at + i] = head[i]!;
    } else {
      data.set(head, at);
    }
    data.set(body, at + headBytes);
    this.commit(lengthBytes);
    return true;
  }

  /**
   * Zero-copy append: reserves `lengthBytes` and calls `fill(dst, offset)`, which must write the
   * payload into dst[offset .. offset + lengthBytes) (dst is the ring's whole data area; writing
   * elsewhere corrupts it). If fill throws, nothing is appended. False if full or too big.
   */
  tryWriteWith(lengthBytes: number, fill: (dst: Uint8Array, offset: number) => void): boolean {
    if (!Number.isInteger(lengthBytes) || lengthBytes < 0) {
      throw new RangeError(`ShmRing.tryWriteWith: lengthBytes must be a non-negative integer, got ${lengthBytes}`);
    }
    const at = this.claim(lengthBytes);
    if (at < 0) return false;
    fill(this.data8, at);
    this.commit(lengthBytes);
    return true;
  }

  /** Whether a frame of `payloadBytes` would be accepted right now (refreshes the read index). */
  hasSpaceFor(payloadBytes: number): boolean {
    if (payloadBytes > this.maxFrameBytes) return false;
    const needed = this.neededBytes(recordBytesOf(payloadBytes));
    if (this.capacityBytes - ((this.writeCursor - this.cachedRead) >>> 0) >= needed) return true;
    this.cachedRead = Atomics.load(this.header, S_READ) >>> 0;
    return this.capacityBytes - ((this.writeCursor - this.cachedRead) >>> 0) >= needed;
  }

  /** Free bytes as the producer sees them (written-but-unpublished frames count as used). */
  freeBytes(): number {
    this.cachedRead = Atomics.load(this.header, S_READ) >>> 0;
    return this.capacityBytes - ((this.writeCursor - this.cachedRead) >>> 0);
  }

  /**
   * Makes every frame written since the last publish visible to the consumer with one
   * Atomics.store, and rings the doorbell only if the consumer is asleep. Returns whether there
   * was anything to publish.
   */
  publish(): boolean {
    const write = this.writeCursor;
    if (write === this.publishedWrite) return false;
    this.publishedWrite = write;
    const header = this.header;
    Atomics.add(header, S_PRODUCER_SEQ, 1);
    counterStore(header, S_FRAMES_WRITTEN, this.framesWritten);
    counterStore(header, S_BYTES_WRITTEN, this.bytesWritten);
    Atomics.add(header, S_PRODUCER_SEQ, 1);
    Atomics.store(header, S_WRITE, write | 0);
    if (this.doorbell.ring()) {
      this.doorbellRings++;
      this.storeProducerCounter(S_DOORBELL_RINGS, this.doorbellRings);
    }
    return true;
  }

  /** Offset in data8 where a payload of `payloadBytes` goes, or -1 (counted) if it cannot. */
  private claim(payloadBytes: number): number {
    if (payloadBytes > this.maxFrameBytes) {
      this.droppedOversize++;
      this.storeProducerCounter(S_DROPPED_OVERSIZE, this.droppedOversize);
      return -1;
    }
    const recordBytes = recordBytesOf(payloadBytes);
    const write = this.writeCursor;
    const pos = write & this.mask;
    const tailBytes = this.capacityBytes - pos;
    const needed = recordBytes <= tailBytes ? recordBytes : tailBytes + recordBytes;
    if (this.capacityBytes - ((write - this.cachedRead) >>> 0) < needed) {
      this.cachedRead = Atomics.load(this.header, S_READ) >>> 0;
      if (this.capacityBytes - ((write - this.cachedRead) >>> 0) < needed) {
        this.droppedFull++;
        this.storeProducerCounter(S_DROPPED_FULL, this.droppedFull);
        return -1;
      }
    }
    let at = pos;
    if (recordBytes > tailBytes) {
      this.data32[pos >> 2] = WRAP_MARKER;
      at = 0;
    }
    this.data32[at >> 2] = payloadBytes;
    this.claimEnd = (write + needed) >>> 0;
    return at + LENGTH_PREFIX_BYTES;
  }

  private commit(payloadBytes: number): void {
    this.writeCursor = this.claimEnd;
    this.framesWritten++;
    this.bytesWritten += payloadBytes;
  }

  private neededBytes(recordBytes: number): number {
    const tailBytes = this.capacityBytes - (this.writeCursor & this.mask);
    return recordBytes <= tailBytes ? recordBytes : tailBytes + recordBytes;
  }

  private storeProducerCounter(slot: number, value: number): void {
    const header = this.header;
    Atomics.add(header, S_PRODUCER_SEQ, 1);
    counterStore(header, slot, value);
    Atomics.add(header, S_PRODUCER_SEQ, 1);
  }

  // --- consumer -------------------------------------------------------------------------------

  /** Whether published frames are waiting (one atomic load). */
  hasData(): boolean {
    return (Atomics.load(this.header, S_WRITE) >>> 0) !== this.readCursor;
  }

  /**
   * Visits up to `maxFrames` published frames in order, each as a view into the ring valid only
   * during the call, then releases their space with one store. A visitor returning false stops
   * before its frame (which stays in the ring); a visitor that throws consumes its frame and the
   * error propagates. Returns the number of frames consumed.
   */
  drain(visit: FrameVisitor, maxFrames = Infinity): number {
    return this.drainRaw((data, offset, lengthBytes) => visit(data.subarray(offset, offset + lengthBytes)), maxFrames);
  }

  /** drain() without a view per frame: visit(data, offset, lengthBytes) over the data area. */
  drainRaw(visit: RawFrameVisitor, maxFrames = Infinity): number {
    const data32 = this.data32;
    const data8 = this.data8;
    const mask = this.mask;
    const write = Atomics.load(this.header, S_WRITE) >>> 0;
    let read = this.readCursor;
    let next = read;
    let count = 0;
    let visiting = false;
    try {
      while (read !== write && count < maxFrames) {
        const pos = read & mask;
        const lengthBytes = data32[pos >> 2]!;
        if (lengthBytes === WRAP_MARKER) {
          read = (read + this.capacityBytes - pos) >>> 0;
          continue;
        }
        if (lengthBytes < 0 || lengthBytes > this.maxFrameBytes) this.badLength(pos, lengthBytes);
        next = (read + recordBytesOf(lengthBytes)) >>> 0;
        visiting = true;
        const keep = visit(data8, pos + LENGTH_PREFIX_BYTES, lengthBytes);
        visiting = false;
        if (keep === false) break;
        read = next;
        count++;
      }
    } finally {
      if (visiting) {
        read = next;
        count++;
      }
      this.release(read, count);
    }
    return count;
  }

  /** Removes and returns a copy of the next frame, or null if none is published. */
  read(): Uint8Array | null {
    let out: Uint8Array | null = null;
    this.drainRaw((data, offset, lengthBytes) => {
      out = data.slice(offset, offset + lengthBytes);
    }, 1);
    return out;
  }

  /**
   * Worker threads only: waits until a frame is published (true) or `timeoutMs` passes (false),
   * spinning `spinIterations` checks before sleeping in Atomics.wait. With a shared doorbell,
   * use Doorbell.waitSync with a predicate over all its rings instead.
   */
  waitSync(timeoutMs: number, spinIterations = this.spinIterations): boolean {
    if (isMainThread && !this.allowBlockingMainThread) {
      throw new Error("ShmRing.waitSync would block the main thread; use waitAsync there");
    }
    return this.doorbell.waitSync(timeoutMs, this.hasDataFn, spinIterations);
  }

  /** Main thread: resolves true once a frame is published, false after `timeoutMs`. */
  waitAsync(timeoutMs: number): Promise<boolean> {
    return this.doorbell.waitAsync(timeoutMs, this.hasDataFn);
  }

  private release(read: number, count: number): void {
    if (read === this.readCursor) return;
    this.readCursor = read;
    const header = this.header;
    if (count > 0) {
      this.framesRead += count;
      Atomics.add(header, S_CONSUMER_SEQ, 1);
      counterStore(header, S_FRAMES_READ, this.framesRead);
      Atomics.add(header, S_CONSUMER_SEQ, 1);
    }
    Atomics.store(header, S_READ, read | 0);
  }

  private badLength(pos: number, lengthBytes: number): never {
    throw new RingCorruptedError(
      `shm ring corrupted: frame length word at data offset ${pos} (byte ${HEADER_BYTES + pos}) is ` +
        `${lengthBytes}, max frame is ${this.maxFrameBytes}`,
    );
  }

  // --- both ends ------------------------------------------------------------------------------

  /** Counter snapshot (consistent per end; the two ends are read independently). */
  stats(): RingStats {
    const header = this.header;
    const producer = seqlockRead(header, S_PRODUCER_SEQ, () => ({
      framesWritten: counterLoad(header, S_FRAMES_WRITTEN),
      bytesWritten: counterLoad(header, S_BYTES_WRITTEN),
      framesDroppedFull: counterLoad(header, S_DROPPED_FULL),
      framesDroppedOversize: counterLoad(header, S_DROPPED_OVERSIZE),
      doorbellRings: counterLoad(header, S_DOORBELL_RINGS),
    }));
    const framesRead = seqlockRead(header, S_CONSUMER_SEQ, () => counterLoad(header, S_FRAMES_READ));
    const write = Atomics.load(header, S_WRITE) >>> 0;
    const read = Atomics.load(header, S_READ) >>> 0;
    return {
      capacityBytes: this.capacityBytes,
      maxFrameBytes: this.maxFrameBytes,
      usedBytes: (write - read) >>> 0,
      ...producer,
      framesRead,
      consumerSleeps: this.doorbell.sleepCount(),
    };
  }

  /**
   * Verifies the magic, config words, both canaries and the index invariants; with
   * `deep: true` also walks the published frames checking every length word. Throws
   * RingCorruptedError naming the clobbered word. Call it from the producer or consumer thread.
   */
  check(options: { deep?: boolean } = {}): void {
    const header = this.header;
    const expectWord = (slot: number, expected: number, what: string): void => {
      const found = Atomics.load(header, slot);
      if (found !== expected) {
        throw new RingCorruptedError(
          `shm ring corrupted: ${what} at byte ${slot * 4} is ${hex(found)}, expected ${hex(expected)}`,
        );
      }
    };
    expectWord(S_MAGIC, RING_MAGIC, "head canary (magic)");
    expectWord(S_VERSION, LAYOUT_VERSION, "layout version");
    expectWord(S_CAPACITY_BYTES, this.capacityBytes, "capacity word");
    expectWord(S_MAX_FRAME_BYTES, this.maxFrameBytes, "max frame word");
    expectWord(S_HEADER_BYTES, HEADER_BYTES, "header size word");
    expectWord(S_DOORBELL_ID, this.doorbell.id, "doorbell id word");
    expectWord(S_GUARD_LO, GUARD_LO, "canary before the data area");
    const guardHi = Atomics.load(this.trailer, 0);
    if (guardHi !== GUARD_HI) {
      throw new RingCorruptedError(
        `shm ring corrupted: canary after the data area at byte ${HEADER_BYTES + this.capacityBytes} is ` +
          `${hex(guardHi)}, expected ${hex(GUARD_HI)}`,
      );
    }
    const write = Atomics.load(header, S_WRITE) >>> 0;
    const read = Atomics.load(header, S_READ) >>> 0;
    const usedBytes = (write - read) >>> 0;
    if ((write & 3) !== 0 || (read & 3) !== 0 || usedBytes > this.capacityBytes) {
      throw new RingCorruptedError(
        `shm ring corrupted: write index ${write} and read index ${read} are misaligned or ` +
          `${usedBytes} bytes apart (capacity ${this.capacityBytes})`,
      );
    }
    if (options.deep !== true) return;
    let at = read;
    while (at !== write) {
      const pos = at & this.mask;
      const lengthBytes = this.data32[pos >> 2]!;
      const step =
        lengthBytes === WRAP_MARKER
          ? this.capacityBytes - pos
          : lengthBytes >= 0 && lengthBytes <= this.maxFrameBytes
            ? recordBytesOf(lengthBytes)
            : this.badLength(pos, lengthBytes);
      if (step > ((write - at) >>> 0)) {
        throw new RingCorruptedError(
          `shm ring corrupted: record at data offset ${pos} (${step} bytes) runs past the write index`,
        );
      }
      at = (at + step) >>> 0;
    }
  }
}
