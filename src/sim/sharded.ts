/**
 * Sharded simulation: the nodes are split across shards (node i runs in shard i % shards), each
 * shard a World with its own monitor, advancing in lock-step windows. A window starts at the
 * earliest event of all shards and lasts the network's minimum latency, so nothing sent in a
 * window can arrive before the next one: shards exchange their datagrams in flight at the
 * window's end and never wait for each other inside it. As events are ordered by (time, node,
 * origin, origin seq), every node sees the same inputs in the same order with 1, 2 or N shards,
 * and the merged outcome (src/sim/outcome.ts) is identical.
 *
 * Two ways to run the shards:
 * - runSimulationSharded: one piscina worker thread per shard, exchanging through shared-memory
 *   rings and a barrier (src/shm/shard-exchange.ts); this is `tamtam simulate --workers N`
 *   (N = 1..MAX_SIM_WORKERS; with 0 it runs the whole simulation in the calling thread);
 * - runShardsInThread: every shard in this thread, one after another each window (tests use it
 *   to check that the split itself changes nothing, without threads).
 */

import { availableParallelism } from "node:os";
import { Piscina } from "piscina";
import { makeConfig } from "../core/config.js";
import {
  createShardExchange,
  DEFAULT_SPIN_CHECKS,
  ShardAbortedError,
  ShardExchange,
  type ShardExchangeBuffers,
} from "../shm/shard-exchange.js";
import { Monitor } from "./monitor.js";
import { mergeOutcomes, type ShardOutcome, type SimOutcome } from "./outcome.js";
import type { Scenario } from "./scenario.js";
import { buildReport, planScenario, runSimulation, type SimParams, type SimReport } from "./simulate.js";
import { type DatagramEvent, World } from "./world.js";
import { MAX_SIM_WORKERS } from "./params.js";

export { MAX_SIM_WORKERS };
/** The report printer, for callers that load the simulator through this module alone. */
export { formatReport } from "./simulate.js";

/** Data area of each ring between two shards; a full ring makes the sender wait, never drop. */
const DEFAULT_RING_CAPACITY_BYTES = 8 * 1024 * 1024;
/** Frame head: atMs (f64), originSeq (f64), node (u32), origin (i32). */
const HEAD_BYTES = 24;

export interface ShardedRunStats {
  readonly shards: number;
  /** Lock-step windows (barriers) the shards went through. */
  readonly windows: number;
  /** Datagrams that crossed between shards. */
  readonly crossShardDatagrams: number;
  /** Times a shard waited because its ring to another shard was full. */
  readonly ringFullWaits: number;
}

export interface ShardedResult {
  readonly report: SimReport;
  readonly outcome: SimOutcome;
  readonly run: ShardedRunStats;
}

/** The window length: nothing sent in a window may arrive inside it. */
export function lookaheadMs(scenario: Scenario): number {
  const l = scenario.network.latencyMinMs;
  if (!(l > 0)) throw new RangeError(`a sharded simulation needs a minimum latency above 0 ms, got ${l}`);
  return l;
}

/** Runs `shards` shards of the simulation in this thread (window by window); for tests. */
export function runShardsInThread(params: SimParams, shards: number): ShardedResult {
  const scenario = planScenario(params);
  const windowMs = lookaheadMs(scenario);
  const inFlight: DatagramEvent[][] = Array.from({ length: shards }, () => []);
  const worlds: World[] = [];
  const monitors: Monitor[] = [];
  for (let shard = 0; shard < shards; shard++) {
    const world = new World(scenario, { shard, shards, sendRemote: (to, e) => inFlight[to]?.push(e) });
    const monitor = new Monitor(world);
    world.addObserver(monitor);
    worlds.push(world);
    monitors.push(monitor);
  }
  let windows = 0;
  for (;;) {
    let startMs = Infinity;
    for (const w of worlds) startMs = Math.min(startMs, w.nextEventMs());
    if (startMs > worlds[0]!.endMs) break;
    windows++;
    for (const w of worlds) w.runWindow(startMs + windowMs);
    worlds.forEach((w, shard) => {
      for (const e of inFlight[shard]!.splice(0)) w.deliver(e);
    });
  }
  for (const w of worlds) w.finishPeriods();
  const outcome = mergeOutcomes(monitors.map((m) => m.outcome()));
  return {
    report: buildReport(params, scenario, worlds[0]!.config, outcome),
    outcome,
    run: { shards, windows, crossShardDatagrams: outcome.datagramsToShards, ringFullWaits: 0 },
  };
}

export interface ShardedOptions {
  /** Heap limit of each worker thread (MiB); large clusters need more than the default. */
  readonly workerHeapMiB?: number;
  /** Data area of each ring between two shards (a power of two); tests make it small. */
  readonly ringCapacityBytes?: number;
}

/**
 * Runs the simulation across `workers` worker threads (piscina), one shard each, 1 included
 * (a single shard on one worker thread); with 0 workers it runs unsharded in this thread. Same
 * parameters, same report, whatever the number of workers.
 */
export async function runSimulationSharded(params: SimParams, workers: number, options: ShardedOptions = {}): Promise<ShardedResult> {
  if (!Number.isInteger(workers) || workers < 0 || workers > MAX_SIM_WORKERS) {
    throw new RangeError(`workers must be in 0..${MAX_SIM_WORKERS}, got ${workers}`);
  }
  if (workers === 0) {
    const { report, outcome } = runSimulation(params);
    return { report, outcome, run: { shards: 1, windows: 0, crossShardDatagrams: 0, ringFullWaits: 0 } };
  }
  const scenario = planScenario(params);
  lookaheadMs(scenario);
  const config = makeConfig(scenario.preset, scenario.overrides);
  // A node never sends more than its budget (the monitor checks it); a bigger frame is refused.
  const maxFrameBytes = HEAD_BYTES + Math.max(config.maxPacketBytes, config.probePacketBytes);
  const exchange = createShardExchange(workers, options.ringCapacityBytes ?? DEFAULT_RING_CAPACITY_BYTES, maxFrameBytes);
  const pool = new Piscina<ShardTask, ShardTaskResult>({
    filename: new URL("./shard-worker.js", import.meta.url).href,
    minThreads: workers,
    maxThreads: workers,
    concurrentTasksPerWorker: 1,
    idleTimeout: 1_000,
    ...(options.workerHeapMiB === undefined ? {} : { resourceLimits: { maxOldGenerationSizeMb: options.workerHeapMiB } }),
  });
  try {
    const settled = await Promise.allSettled(Array.from({ length: workers }, (_, shard) => pool.run({ params, shard, exchange })));
    const failures = settled.flatMap((s) => (s.status === "rejected" ? [s.reason as unknown] : []));
    if (failures.length > 0) {
      // Report the shard that failed, not the ones it made give up.
      throw failures.find((f) => !(f instanceof Error && f.name === "ShardAbortedError")) ?? failures[0];
    }
    const results = settled.map((s) => (s as PromiseFulfilledResult<ShardTaskResult>).value);
    const outcome = mergeOutcomes(results.map((r) => r.outcome));
    return {
      report: buildReport(params, scenario, config, outcome),
      outcome,
      run: {
        shards: workers,
        windows: results[0]?.windows ?? 0,
        crossShardDatagrams: outcome.datagramsToShards,
        ringFullWaits: results.reduce((a, r) => a + r.ringFullWaits, 0),
      },
    };
  } finally {
    await pool.destroy();
  }
}

export interface ShardTask {
  readonly params: SimParams;
  readonly shard: number;
  readonly exchange: ShardExchangeBuffers;
}

export interface ShardTaskResult {
  readonly outcome: ShardOutcome;
  readonly windows: number;
  readonly ringFullWaits: number;
}

/** Runs one shard to the end, exchanging with the others through shared memory (in a worker). */
export function runShard(task: ShardTask): ShardTaskResult {
  // With more shards than cores, a spinning shard would hold the core of the one it waits for.
  const oversubscribed = task.exchange.shards > availableParallelism();
  const exchange = new ShardExchange(task.exchange, task.shard, oversubscribed ? 0 : DEFAULT_SPIN_CHECKS);
  try {
    const scenario = planScenario(task.params);
    const windowMs = lookaheadMs(scenario);
    const head = new Uint8Array(HEAD_BYTES);
    const headView = new DataView(head.buffer);
    let world: World | null = null;
    let sentMinMs = Infinity;
    let view: DataView | null = null;
    const ingest = (data: Uint8Array, offset: number, lengthBytes: number): void => {
      if (view === null || view.buffer !== data.buffer || view.byteOffset !== data.byteOffset) {
        view = new DataView(data.buffer, data.byteOffset, data.byteLength);
      }
      (world as World).deliver({
        atMs: view.getFloat64(offset, true),
        originSeq: view.getFloat64(offset + 8, true),
        node: view.getUint32(offset + 16, true),
        origin: view.getInt32(offset + 20, true),
        kind: "datagram",
        bytes: data.slice(offset + HEAD_BYTES, offset + lengthBytes),
      });
    };
    const drain = (): void => {
      view = null;
      exchange.drainInbound(ingest);
    };
    world = new World(scenario, {
      shard: task.shard,
      shards: exchange.shards,
      sendRemote: (to, e) => {
        headView.setFloat64(0, e.atMs, true);
        headView.setFloat64(8, e.originSeq, true);
        headView.setUint32(16, e.node, true);
        headView.setInt32(20, e.origin, true);
        if (e.atMs < sentMinMs) sentMinMs = e.atMs;
        exchange.send(to, head, e.bytes, drain);
      },
    });
    const monitor = new Monitor(world);
    world.addObserver(monitor);
    let parity: 0 | 1 = 0;
    let windows = 0;
    let startMs = exchange.arrive(parity, world.nextEventMs(), drain);
    for (;;) {
      // Everything sent before the barrier is published: take it in before deciding anything.
      drain();
      if (startMs > world.endMs) break;
      windows++;
      sentMinMs = Infinity;
      world.runWindow(startMs + windowMs);
      parity = parity === 0 ? 1 : 0;
      startMs = exchange.arrive(parity, Math.min(world.nextEventMs(), sentMinMs), drain);
    }
    world.finishPeriods();
    return { outcome: monitor.outcome(), windows, ringFullWaits: exchange.ringFullWaits };
  } catch (err) {
    if (!(err instanceof ShardAbortedError)) exchange.abort();
    throw err;
  }
}
