/**
 * The engine modes under load (`--workers 0,1,2`: inline, the core on one worker thread, and
 * the core behind a seal/open worker), with real `tamtam agent` processes on loopback:
 *
 *   a. Inbound datagram rate. One agent; a separate load-generator process
 *      (bench/load-generator.ts) joins it from a few hundred sockets (each a member) and sends
 *      at fixed offered rates, stepping up, either full GOSSIP datagrams as members exchange
 *      them (`--traffic gossip`, the default: as many membership updates as fit and a
 *      broadcast each; loss = 1 - datagrams the agent's core handled / sent) or bare PINGs
 *      (`--traffic ping`; loss = 1 - ACKs / PINGs), sealed (AES-GCM with a cluster label) and
 *      plaintext (`--seal sealed,plain`). Per step: datagrams the agent received and
 *      sent (its Stats counters, before/after), protocol-level loss, kernel drops (the agent socket's `drops` in /proc/net/udp; the host-wide
 *      UdpRcvbufErrors that `nstat` shows, from /proc/net/snmp), the agent's ring drops, and the
 *      agent's CPU time (/proc/<pid>/stat utime+stime; per thread from /proc/<pid>/task) per
 *      1000 datagrams received. "Sustained rate" = the achieved send rate of the highest step
 *      which, like every step below it, lost < 0.1 %. Each mode runs `--reps` times (default 3),
 *      the modes alternating; medians per step, and worker/inline ratios from the same run.
 *      Gossip steps carry `--probe-rate` (200) PINGs per second beside the gossip: the ACK
 *      round trip (p50/p99) with the agent busy on that traffic (its main thread, inline), and
 *      the suspicions it raised (every generator member answers, so each one is false).
 *   b. Broadcast throughput. Clusters of 3 and 10 agents (`--heartbeat 500`), a gRPC Stream
 *      subscriber on every agent, N broadcasts of 64 bytes (seq + send time inside) sent through
 *      the first agent's Broadcast RPC at increasing paced rates: messages/s delivered to every
 *      other agent (the origin never delivers its own), p50/p99 delivery latency over all
 *      (message, node) pairs, and what was lost.
 *
 *   c. A busy main thread. One sealed agent with `--busy-streams` (100) gRPC Stream
 *      subscribers, fed `--busy-broadcast-rate` (2,000) fresh broadcasts per second by the load
 *      generator's members for `--busy-seconds` (10), while the generator pings it at
 *      `--busy-ping-rate` (500/s), after `--busy-warmup-seconds` (2) of the same untimed: ACK
 *      round trips (p50/p99), PINGs lost, the suspicions the agent raised about its members
 *      (all of them answer at once, so every one is false), messages the subscribers got, and
 *      the agent's main-thread load. The subscribers count the messages of their HTTP/2 streams
 *      without decoding them, so that this process does not take the CPU the agent is measured
 *      on. Each run is repeated for every rate of `--busy-gossip-rates` (0,2000): that many
 *      sealed, full GOSSIP datagrams per second beside the load. 0 is the fan-out alone (the
 *      2,000 broadcasts come in 200 datagrams per second); 2,000 is about what each agent of a
 *      real 10-agent cluster receives while it carries 2,000 broadcasts per second
 *      (broadcast.bench.ts, dgrams/agent/s).
 *
 *   node dist/bench/engine-load.bench.js [--json] [--reps 3] [--workers 0,1,2]
 *        [--traffic gossip|ping] [--probe-rate 200] [--seal sealed,plain] [--rates 20000,40000,...]
 *        [--step-ms 2000] [--drain-ms 250] [--sources 256] [--clusters 3,10]
 *        [--broadcast-rates 25,100,1000] [--broadcasts 150] [--broadcast-rounds 2]
 *        [--quiet-ms 2500] [--payload-bytes 64] [--skip-inbound] [--skip-broadcast] [--skip-busy]
 *        [--busy-streams 100] [--busy-broadcast-rate 2000] [--busy-ping-rate 500] [--busy-seconds 10]
 *        [--busy-gossip-rates 0,2000] [--busy-warmup-seconds 2]
 *
 * The machine is shared and small: generator, agent(s) and this process compete for the same
 * cores, so absolute numbers are of this machine; the ratios between the modes are the point.
 * Every child process is killed in a finally. Benchmarks measure; they never fail on a number.
 */

import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { availableParallelism, cpus, loadavg, tmpdir } from "node:os";
import { connect as http2Connect, type ClientHttp2Session } from "node:http2";
import { join } from "node:path";
import { createInterface, type Interface } from "node:readline";
import { TamTam } from "../src/gen/service/tamtam_pb.js";
import { createClient, methodPath, type ServiceClient } from "../src/rpc/adapter.js";
import { children, freePort, killChildren, track, benchArgs, unknownArgument } from "./lib.js";

const ROOT = new URL("../../", import.meta.url).pathname;
const BIN = join(ROOT, (JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { bin: { tamtam: string } }).bin.tamtam);
const GENERATOR = new URL("./load-generator.js", import.meta.url).pathname;

/** The engine under test: its --workers value. */
type Mode = number;
const modeName = (m: Mode): string => (m === 0 ? "inline" : m === 1 ? "worker" : `workers ${m}`);
/** Key and label of the sealed runs (a fixed test key: these agents live for one run on loopback). */
const BENCH_KEY = Buffer.from(Array.from({ length: 32 }, (_, i) => i * 7 + 1)).toString("base64");
const BENCH_LABEL = "bench";
const SEAL_ARGS = ["--encrypt", BENCH_KEY, "--label", BENCH_LABEL];
const GENERATOR_SEAL_ARGS = ["--key", BENCH_KEY, "--label", BENCH_LABEL];

interface Args {
  json: boolean;
  reps: number;
  /** Engines to compare (--workers values); 0 is the baseline of every ratio. */
  modes: Mode[];
  /** Inbound traffic: full GOSSIP datagrams (default) or bare PINGs. */
  traffic: "gossip" | "ping";
  /** PINGs per second beside each gossip step, to time ACKs under that load (0: none). */
  probeRate: number;
  /** Inbound runs sealed (AES-GCM, a label), plaintext, or both (default). */
  seals: boolean[];
  busy: boolean;
  busyStreams: number;
  busyBroadcastRate: number;
  busyPingRate: number;
  busySeconds: number;
  /** Background sealed GOSSIP datagrams per second beside the busy load, one run each. */
  busyGossipRates: number[];
  /** An untimed busy step first, of this many seconds. */
  busyWarmupSeconds: number;
  rates: number[];
  stepMs: number;
  drainMs: number;
  sources: number;
  clusters: number[];
  broadcastRates: number[];
  broadcasts: number;
  broadcastRounds: number;
  quietMs: number;
  payloadBytes: number;
  inbound: boolean;
  broadcast: boolean;
}

function parseArgs(argv: string[]): Args {
  const args: Args = {
    json: false,
    reps: 3,
    modes: [0, 1, 2],
    traffic: "gossip",
    probeRate: 200,
    seals: [true, false],
    busy: true,
    busyStreams: 100,
    busyBroadcastRate: 2_000,
    busyPingRate: 500,
    busySeconds: 10,
    busyGossipRates: [0, 2_000],
    busyWarmupSeconds: 2,
    rates: [20_000, 40_000, 80_000, 100_000, 120_000, 140_000, 160_000],
    stepMs: 2_000,
    drainMs: 250,
    sources: 256,
    clusters: [3, 10],
    broadcastRates: [25, 100, 1000],
    broadcasts: 150,
    broadcastRounds: 2,
    quietMs: 2_500,
    payloadBytes: 64,
    inbound: true,
    broadcast: true,
  };
  const list = (text: string): number[] => text.split(",").map(Number).filter((x) => Number.isFinite(x) && x > 0);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = (): string => argv[++i] ?? "";
    if (a === "--json") args.json = true;
    else if (a === "--reps") args.reps = Math.max(1, Number(next()));
    else if (a === "--workers") args.modes = next().split(",").map(Number).filter((x) => Number.isInteger(x) && x >= 0);
    else if (a === "--traffic") args.traffic = next() === "ping" ? "ping" : "gossip";
    else if (a === "--probe-rate") args.probeRate = Math.max(0, Number(next()));
    else if (a === "--seal") args.seals = next().split(",").map((x) => x === "sealed");
    else if (a === "--skip-busy") args.busy = false;
    else if (a === "--busy-streams") args.busyStreams = Number(next());
    else if (a === "--busy-broadcast-rate") args.busyBroadcastRate = Number(next());
    else if (a === "--busy-ping-rate") args.busyPingRate = Number(next());
    else if (a === "--busy-seconds") args.busySeconds = Number(next());
    else if (a === "--busy-gossip-rates") args.busyGossipRates = [...new Set(next().split(",").map(Number))];
    else if (a === "--busy-warmup-seconds") args.busyWarmupSeconds = Number(next());
    else if (a === "--rates") args.rates = list(next());
    else if (a === "--step-ms") args.stepMs = Number(next());
    else if (a === "--drain-ms") args.drainMs = Number(next());
    else if (a === "--sources") args.sources = Number(next());
    else if (a === "--clusters") args.clusters = list(next());
    else if (a === "--broadcast-rates") args.broadcastRates = list(next());
    else if (a === "--broadcasts") args.broadcasts = Number(next());
    else if (a === "--quiet-ms") args.quietMs = Number(next());
    else if (a === "--broadcast-rounds") args.broadcastRounds = Math.max(1, Number(next()));
    else if (a === "--payload-bytes") args.payloadBytes = Math.max(16, Number(next()));
    else if (a === "--skip-inbound") args.inbound = false;
    else if (a === "--skip-broadcast") args.broadcast = false;
    else unknownArgument(a);
  }
  const badValue = (what: string): never => {
    process.stderr.write(`engine-load.bench: ${what}\n`);
    process.exit(2);
  };
  if (args.busyGossipRates.length === 0 || !args.busyGossipRates.every((x) => Number.isFinite(x) && x >= 0)) badValue("--busy-gossip-rates takes datagram rates >= 0, comma-separated");
  if (!(Number.isFinite(args.busyWarmupSeconds) && args.busyWarmupSeconds >= 0)) badValue("--busy-warmup-seconds takes a number of seconds >= 0");
  return args;
}

// ---------------------------------------------------------------------------------------------
// Processes.

function kill(proc: ChildProcess): void {
  if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGKILL");
  children.delete(proc);
}

type Client = ServiceClient<typeof TamTam.method>;

interface Agent {
  readonly proc: ChildProcess;
  readonly pid: number;
  readonly gossipPort: number;
  readonly gossip: string;
  /** The gRPC address, host:port. */
  readonly rpc: string;
  readonly client: Client;
}

async function startAgent(home: string, workers: Mode, heartbeatMs: number, seed: string | null, extraArgs: readonly string[] = []): Promise<Agent> {
  const gossipPort = await freePort("udp");
  const rpc = `127.0.0.1:${await freePort("tcp")}`;
  const args = [BIN, "--rpc", rpc, "agent", "--bind", "127.0.0.1", "-p", String(gossipPort), "--workers", String(workers), "--heartbeat", String(heartbeatMs), "--nobanner", "--log-format", "json"];
  if (seed !== null) args.push("--join", seed);
  args.push(...extraArgs);
  const proc = track(
    spawn(process.execPath, args, {
      env: { ...process.env, HOME: home, NO_COLOR: "1", TAMTAM_ADVERTISE: "127.0.0.1" },
      stdio: ["ignore", "ignore", "pipe"],
    }),
  );
  // The reader stays attached for the agent's whole life, so that its log never fills the pipe.
  const lines = createInterface({ input: proc.stderr as NodeJS.ReadableStream });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("agent did not start within 15 s")), 15_000);
    lines.on("line", (l) => {
      if (l.includes("Listening for gossip")) {
        clearTimeout(timer);
        resolve();
      }
    });
    proc.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`agent exited with ${code}`));
    });
  });
  return { proc, pid: proc.pid as number, gossipPort, gossip: `127.0.0.1:${gossipPort}`, rpc, client: createClient(TamTam, rpc, undefined, { defaultTimeoutMs: 10_000 }) };
}

function stopAgent(a: Agent): void {
  a.client.close();
  kill(a.proc);
}

async function counters(a: Agent): Promise<Record<string, number>> {
  const reply = await a.client.stats({});
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(reply.counters)) out[k] = Number(v);
  return out;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function until(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<number> {
  const start = performance.now();
  while (performance.now() - start < timeoutMs) {
    if (await check()) return performance.now() - start;
    await sleep(50);
  }
  throw new Error(`timed out waiting for ${what}`);
}

// ---------------------------------------------------------------------------------------------
// /proc readings.

const CLK_TCK = ((): number => {
  try {
    const v = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim());
    return v > 0 ? v : 100;
  } catch {
    return 100;
  }
})();

/** utime + stime of a /proc stat line, in ms. */
function statCpuMs(text: string): number {
  const f = text.slice(text.lastIndexOf(")") + 2).split(" ");
  // After the comm: state is field 3, utime field 14, stime field 15 (1-based over the line).
  return ((Number(f[11]) + Number(f[12])) * 1000) / CLK_TCK;
}

interface CpuSample {
  totalMs: number;
  /** Per thread id. */
  threads: Map<number, number>;
}

function cpuSample(pid: number): CpuSample | null {
  try {
    const totalMs = statCpuMs(readFileSync(`/proc/${pid}/stat`, "utf8"));
    const threads = new Map<number, number>();
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      try {
        threads.set(Number(tid), statCpuMs(readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8")));
      } catch {
        // thread ended
      }
    }
    return { totalMs, threads };
  } catch {
    return null;
  }
}

/** CPU ms between two samples: total, the main thread, and the busiest other thread. */
function cpuDelta(pid: number, a: CpuSample | null, b: CpuSample | null): { totalMs: number; mainMs: number; busiestOtherMs: number } | null {
  if (a === null || b === null) return null;
  let busiest = 0;
  for (const [tid, ms] of b.threads) {
    if (tid === pid) continue;
    busiest = Math.max(busiest, ms - (a.threads.get(tid) ?? 0));
  }
  return { totalMs: b.totalMs - a.totalMs, mainMs: (b.threads.get(pid) ?? 0) - (a.threads.get(pid) ?? 0), busiestOtherMs: busiest };
}

/** Jiffies of the whole host from /proc/stat: busy (not idle / iowait / steal), steal, total. */
function hostSample(): { busy: number; steal: number; total: number } | null {
  try {
    const f = (readFileSync("/proc/stat", "utf8").split("\n")[0] ?? "").trim().split(/\s+/).slice(1).map(Number);
    const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
    const idle = (f[3] ?? 0) + (f[4] ?? 0);
    const steal = f[7] ?? 0;
    return { busy: total - idle - steal, steal, total };
  } catch {
    return null;
  }
}

/** Cores busy and stolen between two host samples. */
function hostDelta(a: ReturnType<typeof hostSample>, b: ReturnType<typeof hostSample>): { busyCores: number; stealCores: number } | null {
  if (a === null || b === null || b.total === a.total) return null;
  const cores = cpus().length;
  return { busyCores: round(((b.busy - a.busy) / (b.total - a.total)) * cores, 2), stealCores: round(((b.steal - a.steal) / (b.total - a.total)) * cores, 2) };
}

/** The kernel's receive drops of the UDP socket bound to `port` (/proc/net/udp), or null. */
function socketDrops(port: number): number | null {
  try {
    for (const line of readFileSync("/proc/net/udp", "utf8").split("\n").slice(1)) {
      const cols = line.trim().split(/\s+/);
      const local = cols[1];
      if (local === undefined || cols.length < 13) continue;
      if (parseInt(local.slice(local.lastIndexOf(":") + 1), 16) === port) return Number(cols[cols.length - 1]);
    }
  } catch {
    // not Linux
  }
  return null;
}

/** Host-wide Udp RcvbufErrors (what `nstat -az UdpRcvbufErrors` shows), or null. */
function udpRcvbufErrors(): number | null {
  try {
    const lines = readFileSync("/proc/net/snmp", "utf8").split("\n").filter((l) => l.startsWith("Udp:"));
    const names = (lines[0] ?? "").split(/\s+/);
    const values = (lines[1] ?? "").split(/\s+/);
    const i = names.indexOf("RcvbufErrors");
    return i < 0 ? null : Number(values[i]);
  } catch {
    return null;
  }
}

// ---------------------------------------------------------------------------------------------
// Statistics.

function median(xs: readonly number[]): number {
  const v = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  const m = v.length >> 1;
  return v.length % 2 === 1 ? (v[m] as number) : ((v[m - 1] as number) + (v[m] as number)) / 2;
}

function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] as number;
}

const round = (x: number, digits = 1): number => (Number.isFinite(x) ? Math.round(x * 10 ** digits) / 10 ** digits : NaN);
const ratio = (w: number, i: number): number => (Number.isFinite(w) && Number.isFinite(i) && i !== 0 ? round(w / i, 2) : NaN);
const pct = (x: number): string => (Number.isFinite(x) ? `${(x * 100).toFixed(x < 0.001 ? 3 : 2)} %` : "-");
const num = (x: number | null): number | string => (x === null || !Number.isFinite(x) ? "-" : x);

// ---------------------------------------------------------------------------------------------
// a. Inbound datagram rate.

interface StepResult {
  offeredRate: number;
  achievedRate: number;
  sent: number;
  acks: number;
  loss: number;
  agentReceived: number;
  agentSent: number;
  agentSocketDrops: number | null;
  hostRcvbufErrors: number | null;
  ringDropsIn: number;
  ringDropsOut: number;
  generatorSocketDrops: number | null;
  agentCpuPer1000Ms: number;
  agentMainPer1000Ms: number;
  agentCpuUtil: number;
  agentMainUtil: number;
  agentBusiestOtherUtil: number;
  generatorCpuUtil: number;
  hostBusyCores: number;
  hostStealCores: number;
  rttP50Ms: number;
  rttP99Ms: number;
  /** Suspicions the agent raised in the step; every generator member answers, so each is false. */
  suspicions: number;
}

interface InboundRun {
  mode: Mode;
  sealed: boolean;
  rep: number;
  steps: StepResult[];
  sustainedRate: number;
  generatorLimited: boolean;
}

class LineReader {
  private readonly queue: string[] = [];
  private waiter: ((line: string | null) => void) | null = null;
  private ended = false;

  constructor(rl: Interface) {
    rl.on("line", (l) => {
      if (this.waiter !== null) {
        const w = this.waiter;
        this.waiter = null;
        w(l);
      } else this.queue.push(l);
    });
    rl.on("close", () => {
      this.ended = true;
      this.waiter?.(null);
      this.waiter = null;
    });
  }

  next(timeoutMs: number): Promise<string | null> {
    const l = this.queue.shift();
    if (l !== undefined) return Promise.resolve(l);
    if (this.ended) return Promise.resolve(null);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = null;
        reject(new Error("the load generator did not answer in time"));
      }, timeoutMs);
      this.waiter = (line) => {
        clearTimeout(timer);
        resolve(line);
      };
    });
  }
}

async function nextJson(reader: LineReader, type: string, timeoutMs: number): Promise<Record<string, unknown>> {
  for (;;) {
    const line = await reader.next(timeoutMs);
    if (line === null) throw new Error(`the load generator ended before "${type}"`);
    let obj: Record<string, unknown>;
    try {
      obj = JSON.parse(line) as Record<string, unknown>;
    } catch {
      continue;
    }
    if (obj.type === type) return obj;
  }
}

/** A load generator aimed at `agent`, sealing when `sealed`, once it is ready (its members joined). */
async function startGenerator(agent: Agent, sources: number, drainMs: number, sealed: boolean): Promise<{ gen: ChildProcess; reader: LineReader; ready: Record<string, unknown> }> {
  const gen = track(
    spawn(process.execPath, [GENERATOR, "--target", agent.gossip, "--sources", String(sources), "--control", "stdin", "--drain-ms", String(drainMs), ...(sealed ? GENERATOR_SEAL_ARGS : [])], {
      stdio: ["pipe", "pipe", "inherit"],
    }),
  );
  const reader = new LineReader(createInterface({ input: gen.stdout as NodeJS.ReadableStream }));
  return { gen, reader, ready: await nextJson(reader, "ready", 30_000) };
}

async function inboundRun(mode: Mode, sealed: boolean, rep: number, args: Args, home: string): Promise<InboundRun> {
  let agent: Agent | null = null;
  let gen: ChildProcess | null = null;
  try {
    agent = await startAgent(home, mode, 500, null, sealed ? SEAL_ARGS : []);
    const started = await startGenerator(agent, args.sources, args.drainMs, sealed);
    gen = started.gen;
    const { reader, ready } = started;
    if (ready.warmupAcked !== args.sources) process.stderr.write(`note: only ${String(ready.warmupAcked)} of ${args.sources} sources were acked in warm-up\n`);
    // Let the join storm of the warm-up (a member list to every source, gossip about all of them) pass.
    await sleep(2_000);
    const steps: StepResult[] = [];
    for (const rate of args.rates) {
      const s0 = await counters(agent);
      const d0 = socketDrops(agent.gossipPort);
      const h0 = udpRcvbufErrors();
      (gen.stdin as NodeJS.WritableStream).write(`${JSON.stringify({ traffic: args.traffic, rate, durationMs: args.stepMs, drainMs: args.drainMs, pingRate: args.probeRate })}\n`);
      // A gossip step is built and sealed before its clock starts: CPU is sampled from then on.
      await nextJson(reader, "go", 90_000);
      const c0 = cpuSample(agent.pid);
      const hs0 = hostSample();
      const t0 = performance.now();
      const g = await nextJson(reader, "step", args.stepMs + args.drainMs + 30_000);
      const c1 = cpuSample(agent.pid);
      const host = hostDelta(hs0, hostSample());
      const wallMs = performance.now() - t0;
      const s1 = await counters(agent);
      const d1 = socketDrops(agent.gossipPort);
      const h1 = udpRcvbufErrors();
      const delta = (k: string): number => (s1[k] ?? 0) - (s0[k] ?? 0);
      const cpu = cpuDelta(agent.pid, c0, c1);
      const received = delta("transport.datagramsReceived");
      // GOSSIP gets no answer: what the core handled of it (beside the ACKs to the agent's own
      // probes, and the PINGs timed beside it, counted by their ACKs) is what arrived.
      const probes = g.probes as { acks: number; rttMs: { p50: number; p99: number } } | undefined;
      const handled = delta("core.datagramsReceived") - (g.repliesSent as number) - (probes?.acks ?? 0);
      const loss = args.traffic === "ping" ? (g.loss as number) : Math.max(0, 1 - handled / (g.sent as number));
      const genCpu = g.generatorCpuMs as { user: number; system: number };
      const rtt = (probes?.rttMs ?? g.rttMs ?? { p50: NaN, p99: NaN }) as { p50: number; p99: number };
      steps.push({
        offeredRate: rate,
        achievedRate: g.achievedRate as number,
        sent: g.sent as number,
        acks: (g.acks as number | undefined) ?? handled,
        loss,
        agentReceived: received,
        agentSent: delta("transport.datagramsSent"),
        agentSocketDrops: d0 === null || d1 === null ? null : d1 - d0,
        hostRcvbufErrors: h0 === null || h1 === null ? null : h1 - h0,
        ringDropsIn: delta("drops.datagramsIn"),
        ringDropsOut: delta("drops.datagramsOut"),
        generatorSocketDrops: g.generatorSocketDrops as number | null,
        agentCpuPer1000Ms: cpu === null || received === 0 ? NaN : round((cpu.totalMs / received) * 1000, 2),
        agentMainPer1000Ms: cpu === null || received === 0 ? NaN : round((cpu.mainMs / received) * 1000, 2),
        agentCpuUtil: cpu === null ? NaN : round(cpu.totalMs / wallMs, 2),
        agentMainUtil: cpu === null ? NaN : round(cpu.mainMs / wallMs, 2),
        agentBusiestOtherUtil: cpu === null ? NaN : round(cpu.busiestOtherMs / wallMs, 2),
        generatorCpuUtil: round((genCpu.user + genCpu.system) / (g.wallMs as number), 2),
        hostBusyCores: host?.busyCores ?? NaN,
        hostStealCores: host?.stealCores ?? NaN,
        rttP50Ms: rtt.p50,
        rttP99Ms: rtt.p99,
        suspicions: delta("core.suspicionsRaised"),
      });
    }
    (gen.stdin as NodeJS.WritableStream).write(`${JSON.stringify({ exit: true })}\n`);
    await nextJson(reader, "done", 5_000).catch(() => undefined);
    // Sustained: the highest step that, with every step below it, lost < 0.1 %.
    let sustainedRate = 0;
    let generatorLimited = false;
    for (const s of steps) {
      if (!(s.loss < 0.001)) break;
      sustainedRate = s.achievedRate;
      generatorLimited = s.achievedRate < 0.97 * s.offeredRate;
    }
    return { mode, sealed, rep, steps, sustainedRate, generatorLimited };
  } finally {
    if (gen !== null) kill(gen);
    if (agent !== null) stopAgent(agent);
  }
}

interface InboundSummary {
  mode: Mode;
  sealed: boolean;
  sustainedRate: number;
  steps: {
    offeredRate: number;
    achievedRate: number;
    loss: number;
    agentReceivedPerSec: number;
    agentSentPerSec: number;
    agentSocketDrops: number;
    hostRcvbufErrors: number;
    ringDropsIn: number;
    ringDropsOut: number;
    agentCpuPer1000Ms: number;
    agentMainPer1000Ms: number;
    agentCpuUtil: number;
    agentMainUtil: number;
    agentBusiestOtherUtil: number;
    generatorCpuUtil: number;
    hostBusyCores: number;
    hostStealCores: number;
    rttP50Ms: number;
    rttP99Ms: number;
    /** Per run, in run order. */
    suspicions: number[];
  }[];
}

function summarizeInbound(runs: InboundRun[], mode: Mode, sealed: boolean, args: Args): InboundSummary {
  const mine = runs.filter((r) => r.mode === mode && r.sealed === sealed);
  return {
    mode,
    sealed,
    sustainedRate: median(mine.map((r) => r.sustainedRate)),
    steps: args.rates.map((rate, i) => {
      const at = mine.map((r) => r.steps[i]).filter((s): s is StepResult => s !== undefined);
      const m = (f: (s: StepResult) => number | null): number => median(at.map((s) => f(s) ?? NaN));
      return {
        offeredRate: rate,
        achievedRate: Math.round(m((s) => s.achievedRate)),
        loss: m((s) => s.loss),
        agentReceivedPerSec: Math.round(m((s) => (s.agentReceived * 1000) / args.stepMs)),
        agentSentPerSec: Math.round(m((s) => (s.agentSent * 1000) / args.stepMs)),
        agentSocketDrops: m((s) => s.agentSocketDrops),
        hostRcvbufErrors: m((s) => s.hostRcvbufErrors),
        ringDropsIn: m((s) => s.ringDropsIn),
        ringDropsOut: m((s) => s.ringDropsOut),
        agentCpuPer1000Ms: m((s) => s.agentCpuPer1000Ms),
        agentMainPer1000Ms: m((s) => s.agentMainPer1000Ms),
        agentCpuUtil: m((s) => s.agentCpuUtil),
        agentMainUtil: m((s) => s.agentMainUtil),
        agentBusiestOtherUtil: m((s) => s.agentBusiestOtherUtil),
        generatorCpuUtil: m((s) => s.generatorCpuUtil),
        hostBusyCores: m((s) => s.hostBusyCores),
        hostStealCores: m((s) => s.hostStealCores),
        rttP50Ms: m((s) => s.rttP50Ms),
        rttP99Ms: m((s) => s.rttP99Ms),
        suspicions: at.map((s) => s.suspicions),
      };
    }),
  };
}

// ---------------------------------------------------------------------------------------------
// b. Broadcast throughput.

interface BroadcastTrial {
  agents: number;
  mode: Mode;
  round: number;
  offeredRate: number;
  messages: number;
  sendFailures: number;
  sendSeconds: number;
  /** Messages delivered to every receiving node, per second until the last of them arrived. */
  deliveredToAllPerSec: number;
  completeMessages: number;
  /** 95 % of the messages / time until 95 % had reached every receiving node: robust to one straggler. */
  delivered95ToAllPerSec: number;
  lostPairs: number;
  duplicatePairs: number;
  latencyP50Ms: number;
  latencyP99Ms: number;
  latencyMaxMs: number;
  queueDrops: number;
  /** (message, node) pairs the receiving agents' cores delivered (core.broadcastsDelivered). */
  coreDeliveredPairs: number;
  /** Items the agents' Stream fan-out dropped for slow subscribers (stream.dropped). */
  streamDrops: number;
}

const PAYLOAD_MAGIC = 0x54744c64; // "TtLd"

interface Receiver {
  /** Arrival time (performance.now()) per message index of the current trial, NaN if none. */
  arrivals: Float64Array;
  received: number;
  duplicates: number;
  call: { cancel(): void };
}

async function broadcastCluster(n: number, mode: Mode, args: Args, home: string): Promise<BroadcastTrial[]> {
  const agents: Agent[] = [];
  const receivers: Receiver[] = [];
  try {
    agents.push(await startAgent(home, mode, 500, null));
    const seed = (agents[0] as Agent).gossip;
    agents.push(...(await Promise.all(Array.from({ length: n - 1 }, () => startAgent(home, mode, 500, seed)))));
    await until(
      async () => (await Promise.all(agents.map((a) => a.client.nodes({})))).every((r) => r.nodes.filter((x) => x.state === "alive").length === n),
      30_000,
      `${n} agents to converge`,
    );
    // Trial state the stream readers write into.
    let trialId = 0;
    let trialStart = 0;
    let sentAt = new Float64Array(0);
    let lastArrival = 0;
    for (const a of agents) {
      const r: Receiver = { arrivals: new Float64Array(0), received: 0, duplicates: 0, call: { cancel: () => undefined } };
      const call = a.client.stream({});
      r.call = call;
      receivers.push(r);
      void (async () => {
        try {
          for await (const m of call) {
            const now = performance.now();
            const b = m.bytes;
            if (b.length < 16) continue;
            const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
            if (v.getUint32(0) !== PAYLOAD_MAGIC || v.getUint32(4) !== trialId) continue;
            const i = v.getUint32(8);
            if (i >= r.arrivals.length) continue;
            if (Number.isNaN(r.arrivals[i] as number)) {
              r.arrivals[i] = now;
              r.received++;
              lastArrival = now;
            } else r.duplicates++;
          }
        } catch {
          // cancelled at the end
        }
      })();
    }
    await until(async () => (await Promise.all(agents.map(counters))).every((c) => (c["stream.subscribers"] ?? 0) >= 1), 10_000, "stream subscribers");
    const origin = agents[0] as Agent;
    const trials: BroadcastTrial[] = [];
    for (let rnd = 1; rnd <= args.broadcastRounds; rnd++) for (const rate of args.broadcastRates) {
      // About 2 s of sending at the offered rate, between 50 and --broadcasts messages.
      const count = Math.min(args.broadcasts, Math.max(50, Math.round(rate * 2)));
      trialId++;
      sentAt = new Float64Array(count).fill(NaN);
      for (const r of receivers) {
        r.arrivals = new Float64Array(count).fill(NaN);
        r.received = 0;
        r.duplicates = 0;
      }
      const before = await Promise.all(agents.map(counters));
      let failures = 0;
      let inFlight = 0;
      const maxInFlight = 64;
      trialStart = performance.now();
      lastArrival = trialStart;
      const calls: Promise<void>[] = [];
      for (let i = 0; i < count; i++) {
        // Paced: message i leaves at trialStart + i / rate.
        const due = trialStart + (i * 1000) / rate;
        for (;;) {
          const wait = due - performance.now();
          if (wait <= 0 && inFlight < maxInFlight) break;
          await sleep(Math.max(1, Math.min(wait, 5)));
        }
        const payload = new Uint8Array(args.payloadBytes);
        const v = new DataView(payload.buffer);
        v.setUint32(0, PAYLOAD_MAGIC);
        v.setUint32(4, trialId);
        v.setUint32(8, i);
        const t = performance.now();
        v.setFloat64(12, t);
        sentAt[i] = t;
        inFlight++;
        calls.push(
          origin.client.broadcast({ bytes: payload }).then(
            () => {
              inFlight--;
            },
            () => {
              inFlight--;
              failures++;
            },
          ),
        );
      }
      await Promise.all(calls);
      const sendSeconds = (performance.now() - trialStart) / 1000;
      // Wait until every receiver has everything, or nothing new arrived for 3 s (cap 60 s).
      const others = receivers.slice(1);
      const wanted = count - failures;
      const waitStart = performance.now();
      while (others.some((r) => r.received < wanted) && performance.now() - lastArrival < args.quietMs && performance.now() - waitStart < 60_000) await sleep(10);
      const after = await Promise.all(agents.map(counters));
      let complete = 0;
      let lastComplete = trialStart;
      const completions: number[] = [];
      for (let i = 0; i < count; i++) {
        let latest = 0;
        let all = true;
        for (const r of others) {
          const t = r.arrivals[i] as number;
          if (Number.isNaN(t)) {
            all = false;
            break;
          }
          latest = Math.max(latest, t);
        }
        if (all) {
          complete++;
          lastComplete = Math.max(lastComplete, latest);
          completions.push(latest);
        }
      }
      const latencies: number[] = [];
      for (const r of others) {
        for (let i = 0; i < count; i++) {
          const t = r.arrivals[i] as number;
          if (!Number.isNaN(t)) latencies.push(t - (sentAt[i] as number));
        }
      }
      latencies.sort((a, b) => a - b);
      const sumDelta = (key: string, from: number): number =>
        after.slice(from).reduce((acc, c, k) => acc + (c[key] ?? 0) - ((before[k + from] as Record<string, number>)[key] ?? 0), 0);
      const queueDrops = sumDelta("core.broadcastsDropped", 0);
      trials.push({
        agents: n,
        mode,
        round: rnd,
        offeredRate: rate,
        messages: count,
        sendFailures: failures,
        sendSeconds: round(sendSeconds, 2),
        deliveredToAllPerSec: complete === 0 ? 0 : round(complete / ((lastComplete - trialStart) / 1000)),
        completeMessages: complete,
        delivered95ToAllPerSec: ((): number => {
          const k = Math.ceil(0.95 * count);
          if (completions.length < k) return 0;
          completions.sort((a, b) => a - b);
          return round(k / (((completions[k - 1] as number) - trialStart) / 1000));
        })(),
        lostPairs: count * others.length - latencies.length,
        duplicatePairs: others.reduce((acc, r) => acc + r.duplicates, 0) + (receivers[0] as Receiver).received,
        latencyP50Ms: round(quantile(latencies, 0.5)),
        latencyP99Ms: round(quantile(latencies, 0.99)),
        latencyMaxMs: round(latencies.length > 0 ? (latencies[latencies.length - 1] as number) : NaN),
        queueDrops,
        coreDeliveredPairs: sumDelta("core.broadcastsDelivered", 1),
        streamDrops: sumDelta("stream.dropped", 0),
      });
      await sleep(300);
    }
    return trials;
  } finally {
    for (const r of receivers) r.call.cancel();
    for (const a of agents) stopAgent(a);
  }
}

// ---------------------------------------------------------------------------------------------
// c. A busy main thread.

interface BusyRun {
  mode: Mode;
  rep: number;
  /** Background GOSSIP datagrams per second offered, and sent. */
  gossipRate: number;
  gossipSentPerSec: number;
  pingsSent: number;
  acks: number;
  pingLoss: number;
  rttP50Ms: number;
  rttP99Ms: number;
  rttMaxMs: number;
  /** Suspicions the agent raised about its members (every member answers at once: all false). */
  suspicions: number;
  /** Members the agent did not hold alive at the end. */
  notAliveAtEnd: number;
  broadcastsSent: number;
  coreDelivered: number;
  /** Messages the subscribers received, per subscriber per second. */
  streamPerSubscriberPerSec: number;
  streamDrops: number;
  agentMainUtil: number;
  agentCpuUtil: number;
}

/**
 * A Stream subscriber that only counts the gRPC messages it receives (their 5-byte prefixes in
 * the DATA frames of one HTTP/2 stream), reading as fast as they come. A full client decodes
 * every message: 100 of them at 2,000 messages per second each keep a core of this process
 * busy, a core the agent under test then has to share.
 */
function countingSubscriber(session: ClientHttp2Session, onMessage: () => void): { cancel(): void } {
  const stream = session.request({
    ":method": "POST",
    ":path": methodPath(TamTam.method.stream),
    "content-type": "application/grpc",
    te: "trailers",
  });
  // The request: one empty message (Empty).
  stream.end(Buffer.alloc(5));
  // The current message's 5-byte prefix as read so far, then the body bytes still to skip.
  const prefix = Buffer.alloc(5);
  let prefixRead = 0;
  let bodyLeft = 0;
  stream.on("data", (chunk: Buffer) => {
    let at = 0;
    while (at < chunk.length) {
      if (bodyLeft > 0) {
        const take = Math.min(bodyLeft, chunk.length - at);
        bodyLeft -= take;
        at += take;
        continue;
      }
      const take = Math.min(5 - prefixRead, chunk.length - at);
      chunk.copy(prefix, prefixRead, at, at + take);
      prefixRead += take;
      at += take;
      if (prefixRead === 5) {
        bodyLeft = prefix.readUInt32BE(1);
        prefixRead = 0;
        onMessage();
      }
    }
  });
  stream.on("error", () => {
    // cancelled at the end
  });
  return { cancel: () => stream.close() };
}

async function busyRun(mode: Mode, rep: number, gossipRate: number, args: Args, home: string): Promise<BusyRun> {
  let agent: Agent | null = null;
  let gen: ChildProcess | null = null;
  const calls: { cancel(): void }[] = [];
  try {
    agent = await startAgent(home, mode, 500, null, SEAL_ARGS);
    const started = await startGenerator(agent, 64, 500, true);
    gen = started.gen;
    let received = 0;
    const session = http2Connect(`http://${agent.rpc}`);
    session.on("error", () => {
      // the agent is stopped at the end
    });
    calls.push({ cancel: () => session.close() });
    for (let i = 0; i < args.busyStreams; i++) {
      calls.push(
        countingSubscriber(session, () => {
          received++;
        }),
      );
    }
    const a = agent;
    await until(async () => ((await counters(a))["stream.subscribers"] ?? 0) >= args.busyStreams, 20_000, "stream subscribers");
    await sleep(500);
    const busyStep = (durationMs: number): string =>
      `${JSON.stringify({ traffic: "busy", pingRate: args.busyPingRate, broadcastRate: args.busyBroadcastRate, gossipRate, durationMs, drainMs: 500 })}\n`;
    if (args.busyWarmupSeconds > 0) {
      // Not timed: the first second of a new load (JIT, the generator's first sealed frames) is
      // a transient that would otherwise be most of the p99.
      (gen.stdin as NodeJS.WritableStream).write(busyStep(args.busyWarmupSeconds * 1000));
      await nextJson(started.reader, "step", args.busyWarmupSeconds * 1000 + 60_000);
    }
    const s0 = await counters(agent);
    const durationMs = args.busySeconds * 1000;
    (gen.stdin as NodeJS.WritableStream).write(busyStep(durationMs));
    await nextJson(started.reader, "go", 30_000);
    const c0 = cpuSample(agent.pid);
    const received0 = received;
    const t0 = performance.now();
    const g = await nextJson(started.reader, "step", durationMs + 60_000);
    const wallMs = performance.now() - t0;
    const c1 = cpuSample(agent.pid);
    const s1 = await counters(agent);
    const delta = (k: string): number => (s1[k] ?? 0) - (s0[k] ?? 0);
    const cpu = cpuDelta(agent.pid, c0, c1);
    const nodes = await agent.client.nodes({});
    const rtt = g.rttMs as { p50: number; p99: number; max: number };
    return {
      mode,
      rep,
      gossipRate,
      gossipSentPerSec: round(((g.gossipSent as number) * 1000) / (g.sendMs as number)),
      pingsSent: g.sent as number,
      acks: g.acks as number,
      pingLoss: g.loss as number,
      rttP50Ms: rtt.p50,
      rttP99Ms: rtt.p99,
      rttMaxMs: rtt.max,
      suspicions: delta("core.suspicionsRaised"),
      notAliveAtEnd: nodes.nodes.filter((x) => x.state !== "alive").length,
      broadcastsSent: g.broadcastsSent as number,
      coreDelivered: delta("core.broadcastsDelivered"),
      streamPerSubscriberPerSec: round((received - received0) / args.busyStreams / (wallMs / 1000)),
      streamDrops: delta("stream.dropped"),
      agentMainUtil: cpu === null ? NaN : round(cpu.mainMs / wallMs, 2),
      agentCpuUtil: cpu === null ? NaN : round(cpu.totalMs / wallMs, 2),
    };
  } finally {
    for (const c of calls) c.cancel();
    if (gen !== null) kill(gen);
    if (agent !== null) stopAgent(agent);
  }
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const args = parseArgs(benchArgs(import.meta.url));
  const home = mkdtempSync(join(tmpdir(), "tamtam-load-"));
  const started = performance.now();
  const runs: InboundRun[] = [];
  const trials: BroadcastTrial[] = [];
  const busy: BusyRun[] = [];
  try {
    if (args.inbound) {
      for (let rep = 1; rep <= args.reps; rep++) {
        // Alternate the order of the modes, so that drift on the shared machine hits them alike.
        const order = rep % 2 === 1 ? args.modes : [...args.modes].reverse();
        for (const sealed of args.seals) {
          for (const mode of order) {
            if (!args.json) process.stderr.write(`inbound ${args.traffic} ${sealed ? "sealed" : "plain"}: ${modeName(mode)} rep ${rep}/${args.reps}\n`);
            runs.push(await inboundRun(mode, sealed, rep, args, home));
          }
        }
      }
    }
    if (args.busy) {
      for (let rep = 1; rep <= args.reps; rep++) {
        const order = rep % 2 === 1 ? args.modes : [...args.modes].reverse();
        for (const gossipRate of args.busyGossipRates) {
          for (const mode of order) {
            if (!args.json) process.stderr.write(`busy main thread, ${gossipRate} gossip/s beside: ${modeName(mode)} rep ${rep}/${args.reps}\n`);
            busy.push(await busyRun(mode, rep, gossipRate, args, home));
          }
        }
      }
    }
    if (args.broadcast) {
      let flip = false;
      for (const n of args.clusters) {
        const order: Mode[] = flip ? [1, 0] : [0, 1];
        flip = !flip;
        for (const mode of order) {
          if (!args.json) process.stderr.write(`broadcast: ${n} agents, ${modeName(mode)}\n`);
          trials.push(...(await broadcastCluster(n, mode, args, home)));
        }
      }
    }
  } finally {
    killChildren();
    rmSync(home, { recursive: true, force: true });
  }
  const elapsedSeconds = round((performance.now() - started) / 1000);
  // Other work on the host (a shared machine) moves every absolute figure: say how loaded it was.
  const loadAverages = loadavg().map((x) => round(x, 1));

  const inbound = args.inbound ? args.seals.flatMap((sealed) => args.modes.map((m) => summarizeInbound(runs, m, sealed, args))) : [];
  // Every engine against inline (mode 0), sealed and plain apart; ratios of medians of the same run.
  const inboundRatios = inbound
    .filter((s) => s.mode !== 0)
    .flatMap((w) => {
      const l = inbound.find((s) => s.mode === 0 && s.sealed === w.sealed);
      if (l === undefined) return [];
      return [
        {
          mode: w.mode,
          sealed: w.sealed,
          sustainedRate: ratio(w.sustainedRate, l.sustainedRate),
          perStep: args.rates.map((rate, i) => {
            const ws = w.steps[i];
            const ls = l.steps[i];
            return {
              offeredRate: rate,
              agentReceivedPerSec: ratio(ws?.agentReceivedPerSec ?? NaN, ls?.agentReceivedPerSec ?? NaN),
              agentCpuPer1000Ms: ratio(ws?.agentCpuPer1000Ms ?? NaN, ls?.agentCpuPer1000Ms ?? NaN),
              agentMainPer1000Ms: ratio(ws?.agentMainPer1000Ms ?? NaN, ls?.agentMainPer1000Ms ?? NaN),
              rttP50Ms: ratio(ws?.rttP50Ms ?? NaN, ls?.rttP50Ms ?? NaN),
              rttP99Ms: ratio(ws?.rttP99Ms ?? NaN, ls?.rttP99Ms ?? NaN),
            };
          }),
        },
      ];
    });
  const busyMedians = args.busyGossipRates.flatMap((gossipRate) =>
    args.modes.map((mode) => {
      const at = busy.filter((b) => b.mode === mode && b.gossipRate === gossipRate);
      const m = (f: (b: BusyRun) => number): number => median(at.map(f));
      return {
        mode,
        gossipRate,
        gossipSentPerSec: m((b) => b.gossipSentPerSec),
        runs: at.length,
        rttP50Ms: m((b) => b.rttP50Ms),
        rttP99Ms: m((b) => b.rttP99Ms),
        rttMaxMs: m((b) => b.rttMaxMs),
        pingLoss: m((b) => b.pingLoss),
        suspicions: at.map((b) => b.suspicions),
        notAliveAtEnd: at.map((b) => b.notAliveAtEnd),
        streamPerSubscriberPerSec: m((b) => b.streamPerSubscriberPerSec),
        streamDrops: m((b) => b.streamDrops),
        coreDelivered: m((b) => b.coreDelivered),
        broadcastsSent: m((b) => b.broadcastsSent),
        agentMainUtil: m((b) => b.agentMainUtil),
        agentCpuUtil: m((b) => b.agentCpuUtil),
      };
    }),
  );
  const busyRatios = busyMedians.flatMap((b) => {
    const inline = busyMedians.find((x) => x.mode === 0 && x.gossipRate === b.gossipRate);
    if (b.mode === 0 || inline === undefined) return [];
    return [{ mode: b.mode, gossipRate: b.gossipRate, rttP50Ms: ratio(b.rttP50Ms, inline.rttP50Ms), rttP99Ms: ratio(b.rttP99Ms, inline.rttP99Ms) }];
  });
  const broadcastMedians = args.clusters.flatMap((n) =>
    ([0, 1] as Mode[]).flatMap((mode) =>
      args.broadcastRates.map((rate) => {
        const at = trials.filter((t) => t.agents === n && t.mode === mode && t.offeredRate === rate);
        const m = (f: (t: BroadcastTrial) => number): number => median(at.map(f));
        return {
          agents: n,
          mode,
          offeredRate: rate,
          trials: at.length,
          messages: m((t) => t.messages),
          deliveredToAllPerSec: round(m((t) => t.deliveredToAllPerSec)),
          delivered95ToAllPerSec: round(m((t) => t.delivered95ToAllPerSec)),
          latencyP50Ms: round(m((t) => t.latencyP50Ms)),
          latencyP99Ms: round(m((t) => t.latencyP99Ms)),
          lostPairs: at.reduce((a, t) => a + t.lostPairs, 0),
          pairs: at.reduce((a, t) => a + t.messages * (n - 1), 0),
          queueDrops: at.reduce((a, t) => a + t.queueDrops, 0),
          coreDeliveredPairs: at.reduce((a, t) => a + t.coreDeliveredPairs, 0),
          streamDrops: at.reduce((a, t) => a + t.streamDrops, 0),
          sendFailures: at.reduce((a, t) => a + t.sendFailures, 0),
          duplicatePairs: at.reduce((a, t) => a + t.duplicatePairs, 0),
        };
      }),
    ),
  );
  const broadcastRatios = args.clusters.flatMap((n) =>
    args.broadcastRates.map((rate) => {
      const w = broadcastMedians.find((t) => t.agents === n && t.mode === 1 && t.offeredRate === rate);
      const l = broadcastMedians.find((t) => t.agents === n && t.mode === 0 && t.offeredRate === rate);
      return {
        agents: n,
        offeredRate: rate,
        deliveredToAllPerSec: ratio(w?.deliveredToAllPerSec ?? NaN, l?.deliveredToAllPerSec ?? NaN),
        delivered95ToAllPerSec: ratio(w?.delivered95ToAllPerSec ?? NaN, l?.delivered95ToAllPerSec ?? NaN),
        latencyP50Ms: ratio(w?.latencyP50Ms ?? NaN, l?.latencyP50Ms ?? NaN),
        latencyP99Ms: ratio(w?.latencyP99Ms ?? NaN, l?.latencyP99Ms ?? NaN),
      };
    }),
  );

  if (args.json) {
    console.log(
      JSON.stringify({
        suite: "engine-load",
        node: process.version,
        cores: availableParallelism(),
        cpu: cpus()[0]?.model ?? "unknown",
        clockTicksPerSecond: CLK_TCK,
        elapsedSeconds,
        loadAverages,
        inbound: args.inbound
          ? { reps: args.reps, traffic: args.traffic, stepMs: args.stepMs, drainMs: args.drainMs, sources: args.sources, medians: inbound, ratiosOverInline: inboundRatios, runs }
          : null,
        busy: args.busy
          ? {
              reps: args.reps,
              streams: args.busyStreams,
              broadcastRate: args.busyBroadcastRate,
              pingRate: args.busyPingRate,
              seconds: args.busySeconds,
              warmupSeconds: args.busyWarmupSeconds,
              gossipRates: args.busyGossipRates,
              medians: busyMedians,
              ratiosOverInline: busyRatios,
              runs: busy,
            }
          : null,
        broadcast: args.broadcast
          ? { maxMessages: args.broadcasts, rounds: args.broadcastRounds, payloadBytes: args.payloadBytes, heartbeatMs: 500, medians: broadcastMedians, ratiosWorkerOverInline: broadcastRatios, trials }
          : null,
      }),
    );
    return;
  }

  console.log(`engine-load: node ${process.version}, ${availableParallelism()} cores, ${elapsedSeconds} s; host load average at the end ${loadAverages.join(" / ")} (1 / 5 / 15 min)`);
  if (args.inbound) {
    console.log(
      `\na. inbound ${args.traffic === "ping" ? "PINGs" : "full GOSSIP datagrams"} from ${args.sources} members, ${args.stepMs} ms per step (+${args.drainMs} ms drain); medians of ${args.reps} runs per mode` +
        `\n   CPU ms/1k = agent CPU ms per 1000 datagrams received, main ms/1k = its main thread's share;` +
        `\n   main / other / gen util / host busy = CPU time / wall time (1.0 = one core) of the agent's main thread, its busiest other thread` +
        `\n   (the core, in worker mode), the generator, and the whole host; sock drops = kernel drops at the agent's socket (/proc/net/udp)`,
    );
    for (const s of inbound) {
      console.log(`\n${modeName(s.mode)} engine, ${s.sealed ? "sealed" : "plaintext"}: sustained rate (loss < 0.1 %) ${s.sustainedRate}/s`);
      console.table(
        s.steps.map((x) => ({
          "offered/s": x.offeredRate,
          "sent/s": x.achievedRate,
          "agent rx/s": x.agentReceivedPerSec,
          loss: pct(x.loss),
          "sock drops": num(x.agentSocketDrops),
          "ring drops": num(x.ringDropsIn),
          "CPU ms/1k": num(x.agentCpuPer1000Ms),
          "main ms/1k": num(x.agentMainPer1000Ms),
          main: num(x.agentMainUtil),
          other: num(x.agentBusiestOtherUtil),
          "gen util": num(x.generatorCpuUtil),
          "host busy": num(x.hostBusyCores),
          "rtt p50 ms": num(x.rttP50Ms),
          "rtt p99 ms": num(x.rttP99Ms),
          "false suspicions": x.suspicions.join(" "),
        })),
      );
    }
    for (const ratios of inboundRatios) {
      console.log(`\n${modeName(ratios.mode)} / inline, ${ratios.sealed ? "sealed" : "plaintext"}: sustained rate ${ratios.sustainedRate}`);
      console.table(
        ratios.perStep.map((r) => ({
          "offered/s": r.offeredRate,
          "agent rx/s": num(r.agentReceivedPerSec),
          "CPU ms/1k": num(r.agentCpuPer1000Ms),
          "main ms/1k": num(r.agentMainPer1000Ms),
          "rtt p50": num(r.rttP50Ms),
          "rtt p99": num(r.rttP99Ms),
        })),
      );
    }
    console.log(
      "sustained rate per run:",
      runs.map((r) => `${modeName(r.mode)} ${r.sealed ? "sealed" : "plain"}#${r.rep} ${r.sustainedRate}${r.generatorLimited ? " (generator-limited)" : ""}`).join(", "),
    );
  }
  if (args.busy) {
    console.log(
      `\nc. busy main thread: a sealed agent, ${args.busyStreams} Stream subscribers, ${args.busyBroadcastRate} fresh broadcasts/s from its members,` +
        ` PINGs at ${args.busyPingRate}/s, ${args.busySeconds} s (after ${args.busyWarmupSeconds} s untimed), with each rate of sealed GOSSIP/s beside it; medians of ${args.reps} runs (suspicions and members not alive: every run)`,
    );
    console.table(
      busyMedians.map((b) => ({
        engine: modeName(b.mode),
        "gossip/s sent beside": num(b.gossipSentPerSec),
        "rtt p50 ms": num(b.rttP50Ms),
        "rtt p99 ms": num(b.rttP99Ms),
        "rtt max ms": num(b.rttMaxMs),
        "ping loss": pct(b.pingLoss),
        "false suspicions": b.suspicions.join(" "),
        "not alive at end": b.notAliveAtEnd.join(" "),
        "per subscriber/s": num(b.streamPerSubscriberPerSec),
        "stream drops": num(b.streamDrops),
        main: num(b.agentMainUtil),
        "agent CPU": num(b.agentCpuUtil),
      })),
    );
    console.table(busyRatios.map((r) => ({ engine: `${modeName(r.mode)} / inline`, "gossip/s offered": r.gossipRate, "rtt p50": num(r.rttP50Ms), "rtt p99": num(r.rttP99Ms) })));
  }
  if (args.broadcast) {
    console.log(
      `\nb. broadcasts of ${args.payloadBytes} bytes through one agent's Broadcast RPC (about 2 s of sending, at most ${args.broadcasts} messages), a Stream on every agent, heartbeat 500 ms;` +
        `\n   medians of ${args.broadcastRounds} rounds per cluster; "to all/s" = messages delivered to every other agent / time until the last of them arrived; latency over all (message, node) pairs;` +
        `\n   "95% to all/s" = 95 % of the messages / time until 95 % had reached every other agent (less sensitive to one straggler)`,
    );
    console.table(
      broadcastMedians.map((t) => ({
        agents: t.agents,
        engine: modeName(t.mode),
        "offered/s": t.offeredRate,
        msgs: t.messages,
        "to all/s": num(t.deliveredToAllPerSec),
        "95% to all/s": num(t.delivered95ToAllPerSec),
        "p50 ms": num(t.latencyP50Ms),
        "p99 ms": num(t.latencyP99Ms),
        "lost pairs": `${t.lostPairs}/${t.pairs}`,
        "core delivered": t.coreDeliveredPairs,
        "stream drops": t.streamDrops,
        "queue drops": t.queueDrops,
        "send fails": t.sendFailures,
        dups: t.duplicatePairs,
      })),
    );
    console.log("worker / inline:");
    console.table(
      broadcastRatios.map((r) => ({ agents: r.agents, "offered/s": r.offeredRate, "to all/s": num(r.deliveredToAllPerSec), "95% to all/s": num(r.delivered95ToAllPerSec), "p50": num(r.latencyP50Ms), "p99": num(r.latencyP99Ms) })),
    );
  }
}

await main();
