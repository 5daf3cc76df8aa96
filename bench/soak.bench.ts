/**
 * Soak: a few real agents on loopback carry a steady stream of user broadcasts for a long time
 * (not part of CI). Broadcasts go in round robin through each agent's Broadcast RPC at a fixed
 * offered rate; every agent's Stream is read, and every broadcast accepted must arrive at every
 * other agent exactly once (payloads name their origin and sequence number). Resident memory
 * (each agent's own `process.rss_bytes`) is sampled throughout, and beside it the JavaScript
 * heap in use (`process.heap_used_bytes` of the main thread plus `worker.heap_used_bytes` of
 * the protocol worker), which tells a heap that keeps growing from resident memory that
 * settles; growth is measured from the first sample after the warm-up minute to the last one.
 *
 *   node dist/bench/soak.bench.js [--agents 5] [--minutes 30] [--rate 1000] [--heartbeat 500]
 *        [--workers 0|1|2] [--sample-seconds 30] [--drain-seconds 15] [--warmup-seconds 60] [--json]
 *
 * `--workers` is the agent's own flag: 0 runs the core inline, 1 on one worker thread, 2 (the
 * agent's default engine) adds a seal/open worker in front of it.
 *
 * Progress lines go to stderr as the run goes (one per sample), the summary to stdout.
 */

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Agent, counterSum, startCluster, stopAgents, untilConverged } from "./agents.js";
import { benchArgs, unknownArgument } from "./lib.js";

interface Args {
  agents: number;
  minutes: number;
  rate: number;
  heartbeatMs: number;
  workers: number;
  sampleSeconds: number;
  warmupSeconds: number;
  drainSeconds: number;
  json: boolean;
}

function parseArgs(argv: string[]): Args {
  const a: Args = { agents: 5, minutes: 30, rate: 1000, heartbeatMs: 500, workers: 2, sampleSeconds: 30, drainSeconds: 15, warmupSeconds: 60, json: false };
  for (let i = 0; i < argv.length; i++) {
    const next = (): number => Number(argv[++i]);
    const arg = argv[i];
    if (arg === "--agents") a.agents = next();
    else if (arg === "--minutes") a.minutes = next();
    else if (arg === "--rate") a.rate = next();
    else if (arg === "--heartbeat") a.heartbeatMs = next();
    else if (arg === "--workers") a.workers = next();
    else if (arg === "--sample-seconds") a.sampleSeconds = next();
    else if (arg === "--drain-seconds") a.drainSeconds = next();
    else if (arg === "--warmup-seconds") a.warmupSeconds = next();
    else if (arg === "--json") a.json = true;
    else unknownArgument(arg);
  }
  if (!(a.agents >= 2 && a.minutes > 0 && a.rate > 0)) throw new Error("--agents >= 2, --minutes > 0 and --rate > 0 are required");
  if (![0, 1, 2].includes(a.workers)) throw new Error(`--workers takes 0, 1 or 2, got ${a.workers}`);
  if (!(a.warmupSeconds >= 0)) throw new Error("--warmup-seconds must be 0 or more");
  return a;
}

/** Broadcasts handed to the agents at once, at most; beyond it a tick's sends are skipped and counted. */
const MAX_IN_FLIGHT = 512;
/** Pacing tick of the sender (ms). */
const TICK_MS = 10;

/** Which (origin, seq) broadcasts one agent has received: one byte per sequence number per origin. */
class Received {
  private readonly seen: Uint8Array[];
  duplicates = 0;
  malformed = 0;
  total = 0;
  constructor(agents: number, capacity: number) {
    this.seen = Array.from({ length: agents }, () => new Uint8Array(capacity));
  }
  note(payload: Uint8Array): void {
    const text = Buffer.from(payload).toString("latin1");
    const colon = text.indexOf(":");
    const origin = Number(text.slice(0, colon));
    const seq = Number(text.slice(colon + 1, text.indexOf(" ")));
    const row = this.seen[origin];
    if (colon < 0 || row === undefined || !(seq >= 0 && seq < row.length)) {
      this.malformed++;
      return;
    }
    this.total++;
    if (row[seq] === 1) this.duplicates++;
    row[seq] = 1;
  }
  has(origin: number, seq: number): boolean {
    return this.seen[origin]?.[seq] === 1;
  }
}

interface Sample {
  atSeconds: number;
  accepted: number;
  delivered: number;
  rssMiB: number[];
  /** JavaScript heap in use, main thread plus protocol worker (MiB). */
  heapMiB: number[];
}

/** One agent's memory figures from its Stats (MiB). */
interface Memory {
  rssMiB: number;
  heapMiB: number;
}

const mib = (bytes: number): number => Math.round((bytes / 2 ** 20) * 10) / 10;
const growthPercent = (from: readonly number[] | undefined, to: readonly number[]): number[] =>
  to.map((x, i) => (from === undefined ? 0 : Math.round((x / (from[i] as number) - 1) * 1000) / 10));

const args = parseArgs(benchArgs(import.meta.url));
const home = mkdtempSync(join(tmpdir(), "tamtam-soak-"));
let agents: Agent[] = [];
const streams: AbortController[] = [];
try {
  agents = await startCluster(args.agents, { home, workers: args.workers, heartbeatMs: args.heartbeatMs });
  await untilConverged(agents, args.agents);
  const perOrigin = Math.ceil((args.rate * args.minutes * 60) / args.agents) + 1024;
  const received = agents.map(() => new Received(args.agents, perOrigin));
  const readers = agents.map(async (a, i) => {
    const ctl = new AbortController();
    streams.push(ctl);
    try {
      for await (const m of a.client.stream({}, { signal: ctl.signal })) (received[i] as Received).note(m.bytes);
    } catch (err) {
      if (!ctl.signal.aborted) throw err;
    }
  });
  // Let the subscriptions reach the agents before the first broadcast.
  await new Promise((r) => setTimeout(r, 1000));
  const sent = agents.map(() => 0);
  const acceptedSeqs = agents.map(() => [] as number[]);
  let inFlight = 0;
  let rejected = 0;
  let skipped = 0;
  const samples: Sample[] = [];
  const memory = async (): Promise<Memory[]> =>
    (await Promise.all(agents.map((a) => a.client.stats({})))).map((s) => ({
      rssMiB: mib(counterSum(s.counters, "process.rss_bytes")),
      heapMiB: mib(counterSum(s.counters, "process.heap_used_bytes") + counterSum(s.counters, "worker.heap_used_bytes")),
    }));
  const startMs = performance.now();
  const endMs = startMs + args.minutes * 60_000;
  let issued = 0;
  let next = 0;
  const filler = "x".repeat(16);
  await new Promise<void>((resolve) => {
    const tick = setInterval(() => {
      const now = performance.now();
      if (now >= endMs) {
        clearInterval(tick);
        resolve();
        return;
      }
      const due = Math.floor(((now - startMs) * args.rate) / 1000);
      while (issued < due) {
        issued++;
        if (inFlight >= MAX_IN_FLIGHT) {
          skipped++;
          continue;
        }
        const origin = next;
        next = (next + 1) % args.agents;
        const seq = sent[origin] as number;
        sent[origin] = seq + 1;
        inFlight++;
        (agents[origin] as Agent).client
          .broadcast({ bytes: Buffer.from(`${origin}:${seq} ${filler}`, "latin1") })
          .then(
            () => (acceptedSeqs[origin] as number[]).push(seq),
            () => rejected++,
          )
          .finally(() => inFlight--);
      }
    }, TICK_MS);
    const sampler = setInterval(() => {
      if (performance.now() >= endMs) {
        clearInterval(sampler);
        return;
      }
      void memory().then((m) => {
        const s: Sample = {
          atSeconds: Math.round((performance.now() - startMs) / 1000),
          accepted: acceptedSeqs.reduce((x, y) => x + y.length, 0),
          delivered: received.reduce((x, y) => x + y.total, 0),
          rssMiB: m.map((x) => x.rssMiB),
          heapMiB: m.map((x) => x.heapMiB),
        };
        samples.push(s);
        console.error(JSON.stringify({ sample: s, rejected, skipped }));
      });
    }, args.sampleSeconds * 1000);
  });
  while (inFlight > 0) await new Promise((r) => setTimeout(r, 50));
  await new Promise((r) => setTimeout(r, args.drainSeconds * 1000));
  const final = await memory();
  const stats = await Promise.all(agents.map((a) => a.client.stats({})));
  for (const c of streams) c.abort();
  await Promise.allSettled(readers);
  // Every accepted broadcast must be at every other agent.
  let expected = 0;
  let missing = 0;
  for (let o = 0; o < args.agents; o++) {
    for (const seq of acceptedSeqs[o] as number[]) {
      for (let r = 0; r < args.agents; r++) {
        if (r === o) continue;
        expected++;
        if (!(received[r] as Received).has(o, seq)) missing++;
      }
    }
  }
  const accepted = acceptedSeqs.reduce((x, y) => x + y.length, 0);
  const elapsedS = args.minutes * 60;
  const baseline = samples.find((s) => s.atSeconds >= args.warmupSeconds) ?? samples[0];
  const finalRss = final.map((m) => m.rssMiB);
  const finalHeap = final.map((m) => m.heapMiB);
  // Heap in use swings with garbage between collections; its floor (the lowest sample) over the
  // first and the last quarter of the samples after the warm-up approaches the live heap.
  const measured = samples.filter((s) => s.atSeconds >= args.warmupSeconds);
  const quarter = Math.max(1, Math.floor(measured.length / 4));
  const floor = (part: readonly Sample[]): number[] => agents.map((_, i) => Math.min(...part.map((s) => s.heapMiB[i] as number)));
  const heapFloorEarly = measured.length === 0 ? [] : floor(measured.slice(0, quarter));
  const heapFloorLate = measured.length === 0 ? [] : floor(measured.slice(-quarter));
  const summary = {
    suite: "soak",
    node: process.version,
    agents: args.agents,
    workers: args.workers,
    minutes: args.minutes,
    offeredPerSec: args.rate,
    acceptedPerSec: Math.round(accepted / elapsedS),
    accepted,
    rejected,
    skippedInFlightLimit: skipped,
    deliveriesExpected: expected,
    deliveriesMissing: missing,
    duplicates: received.reduce((x, y) => x + y.duplicates, 0),
    coreBroadcastsDropped: stats.reduce((x, s) => x + counterSum(s.counters, "broadcastsDropped"), 0),
    streamDropped: stats.reduce((x, s) => x + counterSum(s.counters, "stream.dropped"), 0),
    rssBaselineMiB: baseline?.rssMiB ?? [],
    rssFinalMiB: finalRss,
    rssGrowthPercent: growthPercent(baseline?.rssMiB, finalRss),
    heapBaselineMiB: baseline?.heapMiB ?? [],
    heapFinalMiB: finalHeap,
    heapGrowthPercent: growthPercent(baseline?.heapMiB, finalHeap),
    heapFloorEarlyMiB: heapFloorEarly,
    heapFloorLateMiB: heapFloorLate,
    heapFloorGrowthPercent: growthPercent(heapFloorEarly.length === 0 ? undefined : heapFloorEarly, heapFloorLate),
    samples,
  };
  if (args.json) console.log(JSON.stringify(summary));
  else {
    const { samples: _s, ...rest } = summary;
    void _s;
    console.log(rest);
  }
} finally {
  for (const c of streams) c.abort();
  stopAgents(agents);
  rmSync(home, { recursive: true, force: true });
}
