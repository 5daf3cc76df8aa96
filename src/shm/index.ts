/**
 * src/shm/index.ts: the public face of src/shm. Re-exports the ring and doorbell, and owns the
 * engine's ring bundle: the four SPSC rings between the main thread (UDP sockets, gRPC) and the
 * protocol worker, plus one shared doorbell per consuming thread so each thread sleeps on a
 * single word until any of its input rings has data. The bundle is created once from one config
 * (per-ring capacities), travels to the worker as one structured-cloneable object of
 * SharedArrayBuffers (workerData), and each thread attaches its typed end.
 *
 *   ring      producer -> consumer   carries                      consumer's doorbell
 *   inbound   main     -> worker     received datagrams + meta    workerDoorbell
 *   commands  main     -> worker     control-plane commands       workerDoorbell
 *   outbound  worker   -> main       datagrams to send + meta     mainDoorbell
 *   events    worker   -> main       membership/state events      mainDoorbell
 *
 * With seal/open workers in front of the protocol worker (openers), each opener k adds two:
 *
 *   raw[k]    main     -> opener k   received datagrams as they came  openers[k].doorbell
 *   opened[k] opener k -> worker     opened (authenticated) datagrams workerDoorbell
 *
 * and the main thread writes received datagrams to the raw rings (round robin) instead of
 * inbound.
 */

import { isMainThread } from "node:worker_threads";
import { Doorbell, ShmRing, type RingConsumer, type RingProducer, type RingStats } from "./ring.js";

export { SharedCounters } from "./counters.js";

export {
  DEFAULT_SPIN_ITERATIONS,
  Doorbell,
  RingCorruptedError,
  ShmRing,
  type FrameVisitor,
  type RawFrameVisitor,
  type RingConsumer,
  type RingOptions,
  type RingProducer,
  type RingStats,
} from "./ring.js";

/** Size of one ring: data area (power of two) and largest payload. */
export interface RingSizeConfig {
  readonly capacityBytes: number;
  readonly maxFrameBytes: number;
}

export interface EngineRingsConfig {
  readonly inbound: RingSizeConfig;
  readonly commands: RingSizeConfig;
  readonly outbound: RingSizeConfig;
  readonly events: RingSizeConfig;
}

/** Largest UDP payload (65,507 bytes over IPv4) plus room for the engine's per-datagram metadata. */
const DATAGRAM_FRAME_BYTES = 65_536 + 64;

export const DEFAULT_ENGINE_RINGS_CONFIG: EngineRingsConfig = {
  // As deep as the socket buffer the engine asks for (4 MiB): a worker that is not scheduled for a
  // while (a busy host) finds the datagrams here, not dropped.
  inbound: { capacityBytes: 1 << 22, maxFrameBytes: DATAGRAM_FRAME_BYTES },
  commands: { capacityBytes: 1 << 18, maxFrameBytes: 65_536 },
  outbound: { capacityBytes: 1 << 20, maxFrameBytes: DATAGRAM_FRAME_BYTES },
  events: { capacityBytes: 1 << 20, maxFrameBytes: 65_536 },
};

/** The whole bundle as plain SharedArrayBuffers: pass it to the worker in workerData. */
export interface EngineRingBuffers {
  readonly inbound: SharedArrayBuffer;
  readonly commands: SharedArrayBuffer;
  readonly outbound: SharedArrayBuffer;
  readonly events: SharedArrayBuffer;
  /** Rung by the main thread when it publishes inbound or commands; the worker sleeps on it. */
  readonly workerDoorbell: SharedArrayBuffer;
  /** Rung by the worker when it publishes outbound or events; the main thread awaits it. */
  readonly mainDoorbell: SharedArrayBuffer;
  /** The rings of the seal/open workers in front of the protocol worker (none: it opens itself). */
  readonly openers: readonly OpenerRingBuffers[];
}

/** The two rings and the doorbell of one seal/open worker. */
export interface OpenerRingBuffers {
  /** main -> opener: received datagrams (sized like inbound). */
  readonly raw: SharedArrayBuffer;
  /** opener -> protocol worker: opened datagrams (sized like inbound; rings workerDoorbell). */
  readonly opened: SharedArrayBuffer;
  /** Rung by the main thread when it publishes raw; the opener sleeps on it. */
  readonly doorbell: SharedArrayBuffer;
}

/** An opener's end: consumes raw, produces opened. */
export interface OpenerSideRings {
  readonly raw: RingConsumer;
  readonly opened: RingProducer;
  /** Blocks until raw has frames or `extraWork()` is true (true), or `timeoutMs` passes (false). */
  waitSync(timeoutMs: number, extraWork?: () => boolean): boolean;
  /** Wakes the opener if it sleeps (after a control message was posted to it). */
  wake(): void;
}

/** The main thread's end: produces inbound and commands, consumes outbound and events. */
export interface MainSideRings {
  readonly inbound: RingProducer;
  /** The raw ring of each opener (empty without openers). */
  readonly raw: readonly RingProducer[];
  /** Wakes opener `k` if it sleeps. */
  wakeOpener(k: number): void;
  /** Wakes the protocol worker if it sleeps. */
  wakeWorker(): void;
  /** Whether the protocol worker has announced it is (about to be) asleep: all its rings were empty. */
  workerSleeping(): boolean;
  readonly commands: RingProducer;
  readonly outbound: RingConsumer;
  readonly events: RingConsumer;
  /** Whether outbound or events has frames. */
  hasWork(): boolean;
  /** Resolves true once outbound or events has frames, false after `timeoutMs`. Never blocks. */
  waitAsync(timeoutMs: number): Promise<boolean>;
  stats(): EngineRingStats;
  check(options?: { deep?: boolean }): void;
}

/** The worker's end: consumes inbound and commands, produces outbound and events. */
export interface WorkerSideRings {
  readonly inbound: RingConsumer;
  /** The opened ring of each opener (empty without openers). */
  readonly opened: readonly RingConsumer[];
  readonly commands: RingConsumer;
  readonly outbound: RingProducer;
  readonly events: RingProducer;
  /** Whether inbound, commands or an opened ring has frames. */
  hasWork(): boolean;
  /**
   * Blocks until inbound, commands or an opened ring has frames, or `extraWork()` is true (true),
   * or `timeoutMs` passes (false), e.g. the worker's next timer deadline. Spins briefly first.
   * Throws on the main thread.
   */
  waitSync(timeoutMs: number, extraWork?: () => boolean): boolean;
  stats(): EngineRingStats;
  check(options?: { deep?: boolean }): void;
}

export interface EngineRingStats {
  readonly inbound: RingStats;
  readonly commands: RingStats;
  readonly outbound: RingStats;
  readonly events: RingStats;
  readonly raw: readonly RingStats[];
  readonly opened: readonly RingStats[];
}

export interface AttachOptions {
  /** Busy-wait checks before the worker sleeps. Default DEFAULT_SPIN_ITERATIONS. */
  spinIterations?: number;
}

/** Creates the four rings and two doorbells of one engine from `config`, and the rings of `openers` seal/open workers. */
export function createEngineRingBuffers(config: EngineRingsConfig = DEFAULT_ENGINE_RINGS_CONFIG, openers = 0): EngineRingBuffers {
  const workerDoorbell = Doorbell.create();
  const mainDoorbell = Doorbell.create();
  const make = (size: RingSizeConfig, doorbell: Doorbell): SharedArrayBuffer =>
    ShmRing.create(size.capacityBytes, size.maxFrameBytes, { doorbell }).sharedBuffer;
  return {
    inbound: make(config.inbound, workerDoorbell),
    commands: make(config.commands, workerDoorbell),
    outbound: make(config.outbound, mainDoorbell),
    events: make(config.events, mainDoorbell),
    workerDoorbell: workerDoorbell.sharedBuffer,
    mainDoorbell: mainDoorbell.sharedBuffer,
    openers: Array.from({ length: openers }, () => {
      const doorbell = Doorbell.create();
      return { raw: make(config.inbound, doorbell), opened: make(config.inbound, workerDoorbell), doorbell: doorbell.sharedBuffer };
    }),
  };
}

interface AttachedRings {
  readonly inbound: ShmRing;
  readonly commands: ShmRing;
  readonly outbound: ShmRing;
  readonly events: ShmRing;
  readonly workerDoorbell: Doorbell;
  readonly mainDoorbell: Doorbell;
  readonly raw: readonly ShmRing[];
  readonly opened: readonly ShmRing[];
  readonly openerDoorbells: readonly Doorbell[];
  stats(): EngineRingStats;
  check(options?: { deep?: boolean }): void;
}

function attachAll(buffers: EngineRingBuffers, options: AttachOptions): AttachedRings {
  const workerDoorbell = Doorbell.attach(buffers.workerDoorbell);
  const mainDoorbell = Doorbell.attach(buffers.mainDoorbell);
  if (options.spinIterations !== undefined) {
    workerDoorbell.spinIterations = options.spinIterations;
    mainDoorbell.spinIterations = options.spinIterations;
  }
  const inbound = ShmRing.attach(buffers.inbound, { doorbell: workerDoorbell });
  const commands = ShmRing.attach(buffers.commands, { doorbell: workerDoorbell });
  const outbound = ShmRing.attach(buffers.outbound, { doorbell: mainDoorbell });
  const events = ShmRing.attach(buffers.events, { doorbell: mainDoorbell });
  const openerDoorbells = buffers.openers.map((o) => {
    const d = Doorbell.attach(o.doorbell);
    if (options.spinIterations !== undefined) d.spinIterations = options.spinIterations;
    return d;
  });
  const raw = buffers.openers.map((o, k) => ShmRing.attach(o.raw, { doorbell: openerDoorbells[k] as Doorbell }));
  const opened = buffers.openers.map((o) => ShmRing.attach(o.opened, { doorbell: workerDoorbell }));
  return {
    inbound,
    commands,
    outbound,
    events,
    workerDoorbell,
    mainDoorbell,
    raw,
    opened,
    openerDoorbells,
    stats: () => ({
      inbound: inbound.stats(),
      commands: commands.stats(),
      outbound: outbound.stats(),
      events: events.stats(),
      raw: raw.map((r) => r.stats()),
      opened: opened.map((r) => r.stats()),
    }),
    check: (checkOptions) => {
      for (const ring of [inbound, commands, outbound, events, ...raw, ...opened]) ring.check(checkOptions);
    },
  };
}

/** The main thread's typed end of a bundle made by createEngineRingBuffers. */
export function attachMainSide(buffers: EngineRingBuffers, options: AttachOptions = {}): MainSideRings {
  const all = attachAll(buffers, options);
  const { outbound, events, mainDoorbell } = all;
  const hasWork = (): boolean => outbound.hasData() || events.hasData();
  return {
    inbound: all.inbound,
    raw: all.raw,
    wakeOpener: (k) => {
      all.openerDoorbells[k]?.ring();
    },
    wakeWorker: () => {
      all.workerDoorbell.ring();
    },
    workerSleeping: () => all.workerDoorbell.isConsumerSleeping(),
    commands: all.commands,
    outbound,
    events,
    hasWork,
    waitAsync: (timeoutMs) => mainDoorbell.waitAsync(timeoutMs, hasWork),
    stats: all.stats,
    check: all.check,
  };
}

/** The worker's typed end of a bundle received through workerData. */
export function attachWorkerSide(buffers: EngineRingBuffers, options: AttachOptions = {}): WorkerSideRings {
  const all = attachAll(buffers, options);
  const { inbound, commands, opened, workerDoorbell } = all;
  const hasWork = (): boolean => {
    if (inbound.hasData() || commands.hasData()) return true;
    for (const ring of opened) if (ring.hasData()) return true;
    return false;
  };
  return {
    inbound,
    opened,
    commands,
    outbound: all.outbound,
    events: all.events,
    hasWork,
    waitSync: (timeoutMs, extraWork) => {
      if (isMainThread) throw new Error("WorkerSideRings.waitSync would block the main thread");
      return workerDoorbell.waitSync(timeoutMs, extraWork === undefined ? hasWork : () => hasWork() || extraWork());
    },
    stats: all.stats,
    check: all.check,
  };
}

/** Opener `k`'s end of a bundle received through workerData. */
export function attachOpenerSide(buffers: EngineRingBuffers, k: number, options: AttachOptions = {}): OpenerSideRings {
  const o = buffers.openers[k];
  if (o === undefined) throw new RangeError(`attachOpenerSide: no opener ${k} of ${buffers.openers.length}`);
  const doorbell = Doorbell.attach(o.doorbell);
  if (options.spinIterations !== undefined) doorbell.spinIterations = options.spinIterations;
  const raw = ShmRing.attach(o.raw, { doorbell });
  const opened = ShmRing.attach(o.opened, { doorbell: Doorbell.attach(buffers.workerDoorbell) });
  const hasWork = (): boolean => raw.hasData();
  return {
    raw,
    opened,
    waitSync: (timeoutMs, extraWork) => {
      if (isMainThread) throw new Error("OpenerSideRings.waitSync would block the main thread");
      return doorbell.waitSync(timeoutMs, extraWork === undefined ? hasWork : () => hasWork() || extraWork());
    },
    wake: () => {
      doorbell.ring();
    },
  };
}
