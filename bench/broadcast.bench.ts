/**
 * Broadcast throughput through real agents on loopback: clusters of N `tamtam agent` processes
 * (each engine mode), a gRPC Stream subscriber on every agent, and producers that offer 64-byte
 * broadcasts at a paced rate for a fixed time over the BroadcastStream RPC (one producer, or
 * the same aggregate rate spread over several agents). Per trial: the offered and accepted
 * rates, the rate delivered to every agent, latency p50/p99 (send to Stream delivery, every
 * receiving agent), lost and duplicated (message, agent) pairs, CPU per agent (from /proc) and
 * gossip datagrams and bytes per agent per second (the agents' own Stats).
 *
 * A trial "holds" when nothing is lost or duplicated, every offered message was accepted, p99
 * is at most 1 s and the delivered rate keeps up with the offered one (≥ 95 %). Rates ramp up
 * per cluster and stop after the first rate that does not hold.
 *
 *   node dist/bench/broadcast.bench.js [--agents 3,10,20] [--workers 0,1] [--rates 500,1000,2000,4000]
 *                                      [--senders 1,10] [--seconds 10] [--payload-bytes 64]
 *                                      [--heartbeat 500] [--no-stop] [--json]
 */

import { execFileSync, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { TamTam } from "../src/gen/service/tamtam_pb.js";
import { createClient, type ServiceClient } from "../src/rpc/adapter.js";
import { isAlive, killChildren, round1, track } from "./lib.js";

const ROOT = new URL("../../", import.meta.url).pathname;
const BIN = join(ROOT, (JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { bin: { tamtam: string } }).bin.tamtam);
/** First bytes of every payload this suite sends: "TTBT". */
const MAGIC = 0x54544254;
/** How long deliveries may trickle in after the last send before a trial ends (ms). */
const DRAIN_QUIET_MS = 3_000;
const DRAIN_MAX_MS = 60_000;
/** Producer pacing tick (ms). */
const TICK_MS = 5;

interface Args {
  agents: number[];
  workers: (0 | 1)[];
  rates: number[];
  senders: number[];
  seconds: number;
  payloadBytes: number;
  heartbeatMs: number;
  stopAtFirstMiss: boolean;
  json: boolean;
}

function parseArgs(argv: string[]): Args {
  const args: Args = {
    agents: [3, 10, 20],
    workers: [0, 1],
    rates: [500, 1000, 2000, 4000],
    senders: [1, 10],
    seconds: 10,
    payloadBytes: 64,
    heartbeatMs: 500,
    stopAtFirstMiss: true,
    json: false,
  };
  const list = (s: string): number[] => s.split(",").map(Number);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = (): string => argv[++i] ?? "";
    if (a === "--agents") args.agents = list(next());
    else if (a === "--workers") args.workers = list(next()).map((w) => (w === 0 ? 0 : 1));
    else if (a === "--rates") args.rates = list(next()).sort((x, y) => x - y);
    else if (a === "--senders") args.senders = list(next());
    else if (a === "--seconds") args.seconds = Number(next());
    else if (a === "--payload-bytes") args.payloadBytes = Math.max(16, Number(next()));
    else if (a === "--heartbeat") args.heartbeatMs = Number(next());
    else if (a === "--no-stop") args.stopAtFirstMiss = false;
    else if (a === "--json") args.json = true;
    else throw new Error(`unknown argument ${a}`);
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

async function launch(home: string, workers: 0 | 1, heartbeatMs: number, seed: string | null): Promise<ClusterAgent> {
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
  engine: "inline" | "worker";
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

async function trial(cluster: ClusterAgent[], engine: 0 | 1, senders: number, rate: number, args: Args, id: number): Promise<Trial> {
  const n = cluster.length;
  const total = Math.round(rate * args.seconds);
  const sentAt = new Float64Array(total).fill(NaN);
  const originOf = new Int32Array(total).fill(-1);
  let lastDelivery = 0;
  const receivers: Receiver[] = cluster.map((agent) => {
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
          lastDelivery = at;
        }
      } catch {
        // cancelled when the trial ends
      }
    })();
    return r;
  });
  // Every subscriber is in place before the first send.
  for (const a of cluster) {
    while (((await stats(a))["stream.subscribers"] ?? 0) < 1) await sleep(20);
  }
  const before = await Promise.all(cluster.map(stats));
  const cpuBefore = cluster.map((a) => cpuSeconds(a.pid));
  const start = performance.now();
  // Producer k sends messages k, k + senders, ... through agent k (spread evenly over the cluster).
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
      originOf[i] = origin;
      await call.send({ bytes: payload });
    }
    return await call.finish();
  });
  const replies = await Promise.all(producers);
  const sendEnd = performance.now();
  const expected = (r: number): number => (r === -1 ? 0 : n - 1);
  const complete = (): number => {
    let done = 0;
    for (let i = 0; i < total; i++) {
      let got = 0;
      for (let a = 0; a < n; a++) if (a !== originOf[i] && !Number.isNaN((receivers[a] as Receiver).arrivals[i] as number)) got++;
      if (got === expected(originOf[i] as number)) done++;
    }
    return done;
  };
  lastDelivery = Math.max(lastDelivery, sendEnd);
  while (complete() < total && performance.now() - lastDelivery < DRAIN_QUIET_MS && performance.now() - sendEnd < DRAIN_MAX_MS) await sleep(100);
  const wall = (performance.now() - start) / 1000;
  const cpu = cluster.map((a, i) => (cpuSeconds(a.pid) - (cpuBefore[i] as number)) / wall);
  const after = await Promise.all(cluster.map(stats));
  for (const r of receivers) r.cancel();

  const latencies: number[] = [];
  let lost = 0;
  let lastComplete = start;
  let completeCount = 0;
  for (let i = 0; i < total; i++) {
    let latest = 0;
    let all = true;
    for (let a = 0; a < n; a++) {
      if (a === originOf[i]) continue;
      const t = (receivers[a] as Receiver).arrivals[i] as number;
      if (Number.isNaN(t)) {
        all = false;
        lost++;
      } else {
        latencies.push(t - (sentAt[i] as number));
        latest = Math.max(latest, t);
      }
    }
    if (all) {
      completeCount++;
      lastComplete = Math.max(lastComplete, latest);
    }
  }
  latencies.sort((x, y) => x - y);
  // The origin never delivers its own broadcast: any delivery there counts as a duplicate.
  let duplicates = receivers.reduce((s, r) => s + r.duplicates, 0);
  for (let i = 0; i < total; i++) if (originOf[i] !== -1 && !Number.isNaN((receivers[originOf[i] as number] as Receiver).arrivals[i] as number)) duplicates++;
  const delta = (name: string): number => after.reduce((s, c, i) => s + (c[name] ?? 0) - ((before[i] as Record<string, number>)[name] ?? 0), 0);
  const accepted = replies.reduce((s, r) => s + Number(r.accepted), 0);
  const deliveredToAllPerSec = completeCount === 0 ? 0 : completeCount / ((lastComplete - start) / 1000);
  const p99 = quantile(latencies, 0.99);
  return {
    agents: n,
    engine: engine === 0 ? "inline" : "worker",
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
    cpuPerAgent: { mean: round1((100 * cpu.reduce((s, c) => s + c, 0)) / n) / 100, max: round1(100 * Math.max(...cpu)) / 100 },
    datagramsPerAgentPerSec: Math.round(delta("core.datagramsSent") / n / wall),
    bytesPerAgentPerSec: Math.round(delta("core.bytesSent") / n / wall),
    queueFullWaits: replies.reduce((s, r) => s + Number(r.queueFullWaits), 0),
    holds: lost === 0 && duplicates === 0 && accepted === total && p99 <= 1000 && deliveredToAllPerSec >= 0.95 * rate,
  };
}

// ---------------------------------------------------------------------------------------------

async function cluster(n: number, workers: 0 | 1, args: Args, home: string): Promise<ClusterAgent[]> {
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

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const home = mkdtempSync(join(tmpdir(), "tamtam-broadcast-bench-"));
  const trials: Trial[] = [];
  let id = 0;
  try {
    for (const n of args.agents) {
      for (const workers of args.workers) {
        const agents = await cluster(n, workers, args, home);
        try {
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
    Math.max(0, ...trials.filter((t) => t.agents === n && t.engine === engine && t.senders === Math.min(senders, n) && t.holds).map((t) => t.offeredPerSec));
  const highest = args.agents.flatMap((n) =>
    args.workers.flatMap((w) => args.senders.map((s) => ({ agents: n, engine: w === 0 ? "inline" : "worker", senders: Math.min(s, n), highestHoldingRate: best(n, w === 0 ? "inline" : "worker", s) }))),
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
