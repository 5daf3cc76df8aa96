/**
 * src/shm/shard-exchange.ts: the shared memory of a simulation sharded across worker threads
 * (src/sim/sharded.ts). It owns one SPSC ring per ordered pair of shards (frames are opaque
 * bytes here: datagrams in flight, encoded by the simulator) and one control buffer with a
 * reusable barrier, an abort word and each shard's "time of my next event" in two alternating
 * slot rows, from which every shard computes the same global minimum after each barrier.
 *
 * Control buffer layout (Int32 slots, then Float64 slots from byte 64):
 *   slot 0  ARRIVED      shards that reached the current barrier
 *   slot 1  GENERATION   bumped by the last shard to arrive; the word waiters wait on
 *   slot 2  ABORTED      1 once any shard failed: every wait then throws ShardAbortedError
 *   bytes 64..           Float64 nextMs[row][shard], row = barrier parity (0 or 1)
 *
 * Plain stores (ring frames, nextMs) made before arriving at the barrier are visible to every
 * shard after it: arriving is an Atomics.add and leaving follows an Atomics.load of GENERATION
 * that observed the last arrival's Atomics.add.
 */

import { ShmRing, type RawFrameVisitor } from "./ring.js";

const S_ARRIVED = 0;
const S_GENERATION = 1;
const S_ABORTED = 2;
const NEXT_MS_OFFSET_BYTES = 64;
/** Busy checks of the barrier word before each short sleep, when every shard has a core. */
export const DEFAULT_SPIN_CHECKS = 4_000;
/** Longest single sleep in a wait (ms); waits re-check the abort word and drain in between. */
const SLEEP_SLICE_MS = 1;

/** Everything a shard needs to attach; structured-cloneable (SharedArrayBuffers). */
export interface ShardExchangeBuffers {
  readonly shards: number;
  readonly control: SharedArrayBuffer;
  /** Ring from shard `from` to shard `to` at index `from * shards + to`; null where from = to. */
  readonly rings: readonly (SharedArrayBuffer | null)[];
}

/** Thrown in every shard once one shard failed (its own error is the one to report). */
export class ShardAbortedError extends Error {
  constructor() {
    super("another shard of the simulation failed");
    this.name = "ShardAbortedError";
  }
}

/** Buffers for `shards` shards, with rings of `ringCapacityBytes` taking frames up to `maxFrameBytes`. */
export function createShardExchange(shards: number, ringCapacityBytes: number, maxFrameBytes: number): ShardExchangeBuffers {
  if (!Number.isInteger(shards) || shards < 1 || shards > 64) throw new RangeError(`shards must be in 1..64, got ${shards}`);
  const control = new SharedArrayBuffer(NEXT_MS_OFFSET_BYTES + 2 * shards * 8);
  const rings: (SharedArrayBuffer | null)[] = [];
  for (let from = 0; from < shards; from++) {
    for (let to = 0; to < shards; to++) {
      rings.push(from === to ? null : ShmRing.create(ringCapacityBytes, maxFrameBytes).sharedBuffer);
    }
  }
  return { shards, control, rings };
}

/** One shard's end of the exchange: its outgoing and incoming rings and the barrier. */
export class ShardExchange {
  readonly shards: number;
  private readonly words: Int32Array;
  private readonly nextMs: Float64Array;
  private readonly outgoing: (ShmRing | null)[] = [];
  private readonly incoming: ShmRing[] = [];
  /** Times a full ring made this shard wait for its consumer. */
  ringFullWaits = 0;

  /**
   * `spinChecks`: busy checks before each short sleep in a wait. Spinning answers fastest when
   * every shard has a core to itself; with more shards than cores it steals the core of the
   * shard being waited for, so pass 0 then.
   */
  constructor(
    buffers: ShardExchangeBuffers,
    readonly shard: number,
    private readonly spinChecks = DEFAULT_SPIN_CHECKS,
  ) {
    this.shards = buffers.shards;
    if (!Number.isInteger(shard) || shard < 0 || shard >= this.shards) throw new RangeError(`shard must be in 0..${this.shards - 1}, got ${shard}`);
    this.words = new Int32Array(buffers.control, 0, NEXT_MS_OFFSET_BYTES / 4);
    this.nextMs = new Float64Array(buffers.control, NEXT_MS_OFFSET_BYTES, 2 * this.shards);
    for (let to = 0; to < this.shards; to++) {
      const sab = buffers.rings[shard * this.shards + to];
      this.outgoing.push(sab === null || sab === undefined ? null : ShmRing.attach(sab));
    }
    for (let from = 0; from < this.shards; from++) {
      const sab = buffers.rings[from * this.shards + shard];
      if (sab !== null && sab !== undefined) this.incoming.push(ShmRing.attach(sab));
    }
  }

  /**
   * Appends a frame (head then body) for shard `to`. While that ring is full, publishes what it
   * holds and calls `whileFull` (which should drain this shard's own inbound rings, so that two
   * shards filling each other's rings both make progress) until the consumer makes room.
   */
  send(to: number, head: Uint8Array, body: Uint8Array, whileFull: () => void): void {
    const ring = this.outgoing[to];
    if (ring === null || ring === undefined) throw new RangeError(`shard ${this.shard} has no ring to shard ${to}`);
    if (ring.tryWrite2(head, body)) return;
    if (head.length + body.length > ring.maxFrameBytes) {
      throw new RangeError(`a ${head.length + body.length}-byte frame exceeds the shard ring's ${ring.maxFrameBytes}-byte limit`);
    }
    this.ringFullWaits++;
    ring.publish();
    for (let checks = 0; !ring.tryWrite2(head, body); checks++) {
      this.throwIfAborted();
      whileFull();
      if (checks >= this.spinChecks) Atomics.wait(this.words, S_ABORTED, 0, SLEEP_SLICE_MS);
    }
  }

  /** Makes every frame written so far visible to its consumer. */
  publishAll(): void {
    for (const ring of this.outgoing) ring?.publish();
  }

  /** Visits every published inbound frame (from all shards), then releases them. */
  drainInbound(visit: RawFrameVisitor): number {
    let frames = 0;
    for (const ring of this.incoming) frames += ring.drainRaw(visit);
    return frames;
  }

  /**
   * Publishes this shard's frames and `nextMs` (the earliest event it holds or sent), waits
   * for every shard to do the same, and returns the earliest of all shards' `nextMs`. While
   * waiting it calls `whileWaiting` (to drain inbound rings). Barrier `parity` alternates 0, 1.
   */
  arrive(parity: 0 | 1, nextMs: number, whileWaiting: () => void): number {
    this.publishAll();
    const words = this.words;
    this.nextMs[parity * this.shards + this.shard] = nextMs;
    const generation = Atomics.load(words, S_GENERATION);
    if (Atomics.add(words, S_ARRIVED, 1) === this.shards - 1) {
      Atomics.store(words, S_ARRIVED, 0);
      Atomics.add(words, S_GENERATION, 1);
      Atomics.notify(words, S_GENERATION);
    } else {
      for (let checks = 0; Atomics.load(words, S_GENERATION) === generation; checks++) {
        this.throwIfAborted();
        if (checks % 64 === 0 || checks >= this.spinChecks) whileWaiting();
        if (checks >= this.spinChecks) Atomics.wait(words, S_GENERATION, generation, SLEEP_SLICE_MS);
      }
    }
    this.throwIfAborted();
    let min = Infinity;
    for (let s = 0; s < this.shards; s++) min = Math.min(min, this.nextMs[parity * this.shards + s] as number);
    return min;
  }

  /** Tells every shard to give up (call when this shard failed), and wakes the waiting ones. */
  abort(): void {
    Atomics.store(this.words, S_ABORTED, 1);
    Atomics.add(this.words, S_GENERATION, 1);
    Atomics.notify(this.words, S_GENERATION);
    Atomics.notify(this.words, S_ABORTED);
  }

  private throwIfAborted(): void {
    if (Atomics.load(this.words, S_ABORTED) === 1) throw new ShardAbortedError();
  }
}
