/**
 * Broadcast throughput through real agents on loopback: clusters of N `tamtam agent` processes
 * (each engine mode) and producers that offer 64-byte broadcasts at a paced rate for a fixed
 * time over the BroadcastStream RPC (one producer, or the same aggregate rate spread over
 * several agents). Deliveries are counted by every agent's core (Stats `core.broadcastsDelivered`:
 * each agent must deliver every broadcast but its own exactly once), and latency is measured
 * by gRPC Stream subscribers on `--latency-agents` agents (send time inside the payload; one
 * benchmark process cannot read every agent's stream at thousands per second without becoming
 * the bottleneck itself). Per trial: offered and accepted rates, the rate delivered to every
 * agent, latency p50/p99, lost and duplicated (message, agent) pairs, CPU per agent (from
 * /proc) and gossip datagrams and bytes per agent per second (the agents' own Stats).
 *
 * A trial "holds" when nothing is lost or duplicated, every offered message was accepted, p99
 * is at most 1 s and the delivered rate keeps up with the offered one (≥ 95 %). Rates ramp up
 * per cluster and stop after the first rate that does not hold. A fresh cluster first gets
 * `--warmup-seconds` of the lowest rate from the most senders: that trial is reported (phase
 * "warm-up": cold code on every agent at once) but not ranked.
 *
 * `--sim` runs the same trials in the simulator instead (the real core in virtual time, 1 ms
 * mean latency, no CPU limit): what the protocol itself carries, whatever the host's load.
 *
 *   node dist/bench/broadcast.bench.js [--agents 3,10,20] [--workers 0,2] [--rates 500,1000,2000,4000]
 *                                      [--senders 1,10] [--seconds 10] [--warmup-seconds 3] [--payload-bytes 64]
 *                                      [--heartbeat 500] [--latency-agents 2] [--no-stop] [--sim] [--json]
 *   with --sim also: [--loss 0,0.2] [--kill 2] [--seeds 1,2,3] (datagram loss, nodes crashed as the
 *   burst starts, and seeds; deliveries made by broadcast repair are reported apart)
 */

import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { TamTam } from "../src/gen/service/tamtam_pb.js";
import { createClient, type ServiceClient } from "../src/rpc/adapter.js";
import { DEFAULT_PARAMS, runSimulation } from "../src/sim/simulate.js";
import { isAlive, killChildren, round1, track, benchArgs, unknownArgument } from "./lib.js";

const ROOT = new URL("../../", import.meta.url).pathname;
const BIN = join(ROOT, (JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { bin: { tamtam: string } }).bin.tamtam);
/** First bytes of every payload this suite sends: "TTBT". */
const MAGIC = 0x54544254;
/** How long the trial waits after the last send once deliveries stop progressing (ms). */
const DRAIN_QUIET_MS = 3_000;
const DRAIN_MAX_MS = 60_000;
/** Producer pacing tick (ms). */
const TICK_MS = 5;

interface Args {
  agents: number[];
  /** `--workers` values of the agents: 0 inline, N the core on a worker thread with N − 1 seal/open workers. */
  workers: number[];
  /** Unmeasured seconds of traffic a fresh cluster gets before its first measured trial. */
  warmupSeconds: number;
  rates: number[];
  senders: number[];
  seconds: number;
  payloadBytes: number;
  heartbeatMs: number;
  latencyAgents: number;
  stopAtFirstMiss: boolean;
  sim: boolean;
  /** Simulator only: loss rates, nodes crashed at the start of the burst, seeds. */
  losses: number[];
  kill: number;
  seeds: number[];
  json: boolean;
}

function parseArgs(argv: string[]): Args {
  const args: Args = {
    agents: [3, 10, 20],
    workers: [0, 2],
    warmupSeconds: 3,
    rates: [500, 1000, 2000, 4000],
    senders: [1, 10],
    seconds: 10,
    payloadBytes: 64,
    heartbeatMs: 500,
    latencyAgents: 2,
    stopAtFirstMiss: true,
    sim: false,
    losses: [0],
    kill: 0,
    seeds: [1],
    json: false,
  };
  const list = (s: string): number[] => s.split(",").map(Number);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = (): string => argv[++i] ?? "";
    if (a === "--agents") args.agents = list(next());
    else if (a === "--workers") args.workers = list(next());
    else if (a === "--warmup-seconds") args.warmupSeconds = Math.max(0, Number(next()));
    else if (a === "--rates") args.rates = list(next()).sort((x, y) => x - y);
    else if (a === "--senders") args.senders = list(next());
    else if (a === "--seconds") args.seconds = Number(next());
    else if (a === "--payload-bytes") args.payloadBytes = Math.max(16, Number(next()));
    else if (a === "--heartbeat") args.heartbeatMs = Number(next());
    else if (a === "--latency-agents") args.latencyAgents = Math.max(1, Number(next()));
    else if (a === "--no-stop") args.stopAtFirstMiss = false;
    else if (a === "--sim") args.sim = true;
    else if (a === "--loss") args.losses = list(next());
    else if (a === "--kill") args.kill = Number(next());
    else if (a === "--seeds") args.seeds = list(next());
    else if (a === "--json") args.json = true;
    else unknownArgument(a);
  }
  return args;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------------------
// Agents

interface ClusterAgent {
  readonly pid: number;
  readonly gossip: string;
  readonly client: ServiceClient<typeof TamTam.method>;
  stop(): void;
}

function ephemeralPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

async function launch(home: string, workers: number, heartbeatMs: number, seed: string | null): Promise<ClusterAgent> {
  const [udp, rpcPort] = [await ephemeralPort(), await ephemeralPort()];
  const rpc = `127.0.0.1:${rpcPort}`;
  const argv = [BIN, "--rpc", rpc, "agent", "--bind", "127.0.0.1", "-p", String(udp), "--workers", String(workers)];
  argv.push("--heartbeat", String(heartbeatMs), "--nobanner", "--log-format", "json", ...(seed === null ? [] : ["--join", seed]));
  const proc = track(spawn(process.execPath, argv, { env: { ...process.env, HOME: home, NO_COLOR: "1" }, stdio: ["ignore", "ignore", "pipe"] }));
  const log = createInterface({ input: proc.stderr as NodeJS.ReadableStream });
  await new Promise<void>((resolve, reject) => {
    log.on("line", (line) => line.includes("Listening for gossip") && resolve());
    proc.once("exit", (code) => reject(new Error(`an agent exited with ${code} while starting`)));
  });
  const client = createClient(TamTam, rpc, undefined, { defaultTimeoutMs: 10_000 });
  return {
    pid: proc.pid as number,
    gossip: `127.0.0.1:${udp}`,
    client,
    stop: () => {
      client.close();
      if (isAlive(proc)) proc.kill("SIGKILL");
    },
  };
}

async function stats(a: ClusterAgent): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const [name, value] of Object.entries((await a.client.stats({})).counters)) out[name] = Number(value);
  return out;
}

const TICKS_PER_SEC = ((): number => {
  try {
    return Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** CPU time (user + system) a process has used, in seconds. */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SEC;
}

// ---------------------------------------------------------------------------------------------
// One trial

interface Trial {
  agents: number;
  /** "inline" or "workers N" (the agents' `--workers`). */
  engine: string;
  /** The fresh cluster's first seconds of traffic (cold code, empty caches): reported, not ranked. */
  warmup: boolean;
  senders: number;
  offeredPerSec: number;
  seconds: number;
  offered: number;
  accepted: number;
  /** Messages every agent but the origin received, per second from the first send to the last such delivery. */
  deliveredToAllPerSec: number;
  latencyP50Ms: number;
  latencyP99Ms: number;
  latencyMaxMs: number;
  lostPairs: number;
  duplicatePairs: number;
  /** Broadcasts the agents dropped for slow Stream subscribers (the latency readers). */
  streamDropped: number;
  cpuPerAgent: { mean: number; max: number };
  datagramsPerAgentPerSec: number;
  bytesPerAgentPerSec: number;
  queueFullWaits: number;
  holds: boolean;
}

interface Receiver {
  /** Delivery time per message index (performance.now()), NaN while missing. */
  arrivals: Float64Array;
  duplicates: number;
  cancel(): void;
}

function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] as number;
}

const engineName = (workers: number): string => (workers === 0 ? "inline" : `workers ${workers}`);

async function trial(cluster: ClusterAgent[], workers: number, senders: number, rate: number, args: Args, id: number): Promise<Trial> {
  const n = cluster.length;
  const total = Math.round(rate * args.seconds);
  const sentAt = new Float64Array(total).fill(NaN);
  // Latency from Stream subscribers on agents 1..k (agent 0 is the single producer's origin).
  const watched = cluster.slice(1, 1 + Math.min(args.latencyAgents, n - 1));
  const receivers: Receiver[] = watched.map((agent) => {
    const call = agent.client.stream({});
    const r: Receiver = { arrivals: new Float64Array(total).fill(NaN), duplicates: 0, cancel: () => call.cancel() };
    void (async () => {
      try {
        for await (const m of call) {
          const at = performance.now();
          const b = m.bytes;
          const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
          if (b.length < 16 || v.getUint32(0) !== MAGIC || v.getUint32(4) !== id) continue;
          const i = v.getUint32(8);
          if (i >= total) continue;
          if (Number.isNaN(r.arrivals[i] as number)) r.arrivals[i] = at;
          else r.duplicates++;
        }
      } catch {
        // cancelled when the trial ends
      }
    })();
    return r;
  });
  for (const a of watched) {
    while (((await stats(a))["stream.subscribers"] ?? 0) < 1) await sleep(20);
  }
  const before = await Promise.all(cluster.map(stats));
  const cpuBefore = cluster.map((a) => cpuSeconds(a.pid));
  const originated = new Array<number>(n).fill(0);
  const start = performance.now();
  // Producer k sends messages k, k + senders, ... through agent k.
  const producers = Array.from({ length: senders }, async (_, k) => {
    const origin = k % n;
    const call = (cluster[origin] as ClusterAgent).client.broadcastStream();
    for (let i = k; i < total; i += senders) {
      const due = start + (i * 1000) / rate;
      const wait = due - performance.now();
      if (wait > TICK_MS) await sleep(wait);
      const payload = new Uint8Array(args.payloadBytes);
      const v = new DataView(payload.buffer);
      v.setUint32(0, MAGIC);
      v.setUint32(4, id);
      v.setUint32(8, i);
      sentAt[i] = performance.now();
      originated[origin] = (originated[origin] as number) + 1;
      await call.send({ bytes: payload });
    }
    return await call.finish();
  });
  const replies = await Promise.all(producers);
  const sendEnd = performance.now();
  // Every agent delivers every broadcast but its own: poll the cores' counters until they all
  // have, or nothing moved for DRAIN_QUIET_MS.
  const delivered = (c: Record<string, number>[]): number[] =>
    c.map((x, i) => (x["core.broadcastsDelivered"] ?? 0) - ((before[i] as Record<string, number>)["core.broadcastsDelivered"] ?? 0));
  const expected = originated.map((own) => total - own);
  let after = await Promise.all(cluster.map(stats));
  let progressAt = performance.now();
  let lastSum = -1;
  let completeAt = NaN;
  while (performance.now() - sendEnd < DRAIN_MAX_MS) {
    const d = delivered(after);
    if (d.every((x, i) => x >= (expected[i] as number))) {
      completeAt = performance.now();
      break;
    }
    const sum = d.reduce((a, b) => a + b, 0);
    if (sum !== lastSum) {
      lastSum = sum;
      progressAt = performance.now();
    } else if (performance.now() - progressAt > DRAIN_QUIET_MS) break;
    await sleep(100);
    after = await Promise.all(cluster.map(stats));
  }
  const wall = (performance.now() - start) / 1000;
  const cpu = cluster.map((a, i) => (cpuSeconds(a.pid) - (cpuBefore[i] as number)) / wall);
  // The watched streams catch up (they are read here, after the counters).
  const streamDeadline = performance.now() + DRAIN_QUIET_MS;
  while (receivers.some((r) => r.arrivals.some(Number.isNaN)) && performance.now() < streamDeadline) await sleep(100);
  for (const r of receivers) r.cancel();

  const got = delivered(after);
  const lost = got.reduce((s2, x, i) => s2 + Math.max(0, (expected[i] as number) - x), 0);
  // The core delivers each broadcast at most once; more than expected would be duplicates.
  const duplicates = got.reduce((s2, x, i) => s2 + Math.max(0, x - (expected[i] as number)), 0) + receivers.reduce((s2, r) => s2 + r.duplicates, 0);
  const latencies: number[] = [];
  for (const r of receivers) for (let i = 0; i < total; i++) if (!Number.isNaN(r.arrivals[i] as number)) latencies.push((r.arrivals[i] as number) - (sentAt[i] as number));
  latencies.sort((x, y) => x - y);
  const delta = (name: string): number => after.reduce((s2, c, i) => s2 + (c[name] ?? 0) - ((before[i] as Record<string, number>)[name] ?? 0), 0);
  const accepted = replies.reduce((s2, r) => s2 + Number(r.accepted), 0);
  const deliveredToAllPerSec = Number.isNaN(completeAt) ? 0 : total / ((completeAt - start) / 1000);
  const p99 = quantile(latencies, 0.99);
  return {
    agents: n,
    engine: engineName(workers),
    warmup: false,
    senders,
    offeredPerSec: rate,
    seconds: round1((sendEnd - start) / 1000),
    offered: total,
    accepted,
    deliveredToAllPerSec: Math.round(deliveredToAllPerSec),
    latencyP50Ms: round1(quantile(latencies, 0.5)),
    latencyP99Ms: round1(p99),
    latencyMaxMs: round1(latencies.at(-1) ?? NaN),
    lostPairs: lost,
    duplicatePairs: duplicates,
    streamDropped: delta("stream.dropped"),
    cpuPerAgent: { mean: round2(cpu.reduce((s2, c) => s2 + c, 0) / n), max: round2(Math.max(...cpu)) },
    datagramsPerAgentPerSec: Math.round(delta("core.datagramsSent") / n / wall),
    bytesPerAgentPerSec: Math.round(delta("core.bytesSent") / n / wall),
    queueFullWaits: replies.reduce((s2, r) => s2 + Number(r.queueFullWaits), 0),
    holds: lost === 0 && duplicates === 0 && accepted === total && p99 <= 1000 && deliveredToAllPerSec >= 0.95 * rate,
  };
}

const round2 = (x: number): number => Math.round(x * 100) / 100;

// ---------------------------------------------------------------------------------------------

async function cluster(n: number, workers: number, args: Args, home: string): Promise<ClusterAgent[]> {
  const agents = [await launch(home, workers, args.heartbeatMs, null)];
  const seed = (agents[0] as ClusterAgent).gossip;
  agents.push(...(await Promise.all(Array.from({ length: n - 1 }, () => launch(home, workers, args.heartbeatMs, seed)))));
  const deadline = performance.now() + 60_000;
  for (;;) {
    const views = await Promise.all(agents.map((a) => a.client.nodes({})));
    if (views.every((v) => v.nodes.filter((x) => x.state === "alive").length === n)) return agents;
    if (performance.now() > deadline) throw new Error(`${n} agents did not converge within 60 s`);
    await sleep(100);
  }
}

interface SimTrial {
  nodes: number;
  senders: number;
  offeredPerSec: number;
  loss: number;
  seed: number;
  reach: number;
  /** Deliveries made by broadcast repair (included in reach and latency). */
  repaired: number;
  latencyP50Ms: number;
  latencyP99Ms: number;
  duplicateDeliveries: number;
  refused: number;
  datagramsPerNodePerSec: number;
  bytesPerNodePerSec: number;
  holds: boolean;
}

/** The trials in virtual time: `seconds` of broadcasts from period 10 on, then time to drain. */
function simTrials(args: Args): SimTrial[] {
  const out: SimTrial[] = [];
  for (const nodes of args.agents) {
    for (const senders of args.senders) {
      for (const loss of args.losses) {
        for (const seed of args.seeds) {
          for (const rate of args.rates) {
            // Broadcasts go out over the middle half of the periods after the fault period.
            const params = { ...DEFAULT_PARAMS, seed, nodes, loss, kill: args.kill, faultPeriod: 10, periods: 10 + 2 * args.seconds, broadcastBytes: args.payloadBytes };
            const { report, world } = runSimulation({ ...params, broadcasts: rate * args.seconds, broadcastSenders: Math.min(senders, nodes) });
            let refused = 0;
            for (const n of world.nodes) if (n.core !== null) refused += n.core.stats.broadcastsRefused;
            const b = report.broadcasts;
            const t: SimTrial = {
              nodes,
              senders: Math.min(senders, nodes),
              offeredPerSec: rate,
              loss,
              seed,
              reach: b.reach,
              repaired: b.repaired,
              latencyP50Ms: round1(b.latencyMs.p50),
              latencyP99Ms: round1(b.latencyMs.p99),
              duplicateDeliveries: report.violations.byKind.DUPLICATE_DELIVERY ?? 0,
              refused,
              datagramsPerNodePerSec: Math.round(report.traffic.datagramsPerNodePerSec),
              bytesPerNodePerSec: Math.round(report.traffic.bytesPerNodePerSec),
              holds: b.reach === 1 && refused === 0 && b.latencyMs.p99 <= 1000 && (report.violations.byKind.DUPLICATE_DELIVERY ?? 0) === 0,
            };
            out.push(t);
            if (!args.json) process.stderr.write(`${JSON.stringify(t)}\n`);
            if (!t.holds && args.stopAtFirstMiss) break;
          }
        }
      }
    }
  }
  return out;
}

async function main(): Promise<void> {
  const args = parseArgs(benchArgs(import.meta.url));
  if (args.sim) {
    const trials = simTrials(args);
    if (args.json) console.log(JSON.stringify({ suite: "broadcast-sim", node: process.version, seconds: args.seconds, payloadBytes: args.payloadBytes, trials }));
    else console.table(trials);
    return;
  }
  const home = mkdtempSync(join(tmpdir(), "tamtam-broadcast-bench-"));
  const trials: Trial[] = [];
  let id = 0;
  try {
    for (const n of args.agents) {
      for (const workers of args.workers) {
        const agents = await cluster(n, workers, args, home);
        try {
          if (args.warmupSeconds > 0) {
            // A fresh cluster's first seconds run cold code (the JIT has not compiled the paths a
            // burst takes yet) on every agent at once; that transient is reported apart.
            const spread = Math.min(Math.max(...args.senders), n);
            const w = await trial(agents, workers, spread, args.rates[0] as number, { ...args, seconds: args.warmupSeconds }, ++id);
            w.warmup = true;
            trials.push(w);
            if (!args.json) process.stderr.write(`${JSON.stringify(w)}\n`);
            await sleep(1000);
          }
          for (const senders of args.senders) {
            for (const rate of args.rates) {
              const t = await trial(agents, workers, Math.min(senders, n), rate, args, ++id);
              trials.push(t);
              if (!args.json) process.stderr.write(`${JSON.stringify(t)}\n`);
              if (!t.holds && args.stopAtFirstMiss) break;
              // Let the queues drain before the next rate.
              await sleep(1000);
            }
          }
        } finally {
          for (const a of agents) a.stop();
        }
      }
    }
  } finally {
    killChildren();
    rmSync(home, { recursive: true, force: true });
  }
  const best = (n: number, engine: string, senders: number): number =>
    Math.max(0, ...trials.filter((t) => t.agents === n && t.engine === engine && t.senders === Math.min(senders, n) && t.holds && !t.warmup).map((t) => t.offeredPerSec));
  const highest = args.agents.flatMap((n) =>
    args.workers.flatMap((w) => args.senders.map((s) => ({ agents: n, engine: engineName(w), senders: Math.min(s, n), highestHoldingRate: best(n, engineName(w), s) }))),
  );
  if (args.json) {
    console.log(JSON.stringify({ suite: "broadcast", node: process.version, seconds: args.seconds, payloadBytes: args.payloadBytes, heartbeatMs: args.heartbeatMs, trials, highest }));
    return;
  }
  console.log(`broadcast throughput on loopback, ${args.payloadBytes}-byte broadcasts for ${args.seconds} s per rate, heartbeat ${args.heartbeatMs} ms`);
  console.table(
    trials.map((t) => ({
      agents: t.agents,
      engine: t.engine,
      phase: t.warmup ? "warm-up" : "measured",
      senders: t.senders,
      "offered/s": t.offeredPerSec,
      "delivered to all/s": t.deliveredToAllPerSec,
      "p50 ms": t.latencyP50Ms,
      "p99 ms": t.latencyP99Ms,
      lost: t.lostPairs,
      dup: t.duplicatePairs,
      "CPU/agent": t.cpuPerAgent.mean,
      "dgrams/agent/s": t.datagramsPerAgentPerSec,
      "bytes/agent/s": t.bytesPerAgentPerSec,
      holds: t.holds,
    })),
  );
  console.table(highest);
}

await main();
