/**
 * Start-up, exit and footprint of real `tamtam` processes on loopback, all measured in one run
 * (this file owns these six sections; bench/startup-part.ts is its helper for section 3):
 *
 *   1. Client commands: wall time, exec to exit, of `node <bin> --nobanner [--rpc A] <cmd>` for
 *      nodes, healthy, broadcast hello, join <second agent>, address, version and --help,
 *      against a real agent, interleaved run by run with `node -e 0` (baseline, cmd, baseline,
 *      cmd...); median, p90 and the ratio of medians. `--help` is run as `<bin> --help` when the
 *      CLI refuses `--nobanner --help` (the output says which argv was timed).
 *   2. Agent time-to-ready: spawn to the first answered gRPC `LocalAddress` call (polled every
 *      ~5 ms, short deadlines, a channel with 5-20 ms reconnect backoff; the first call loads
 *      the agent's gRPC server), per engine (`--workers 0` inline, `--workers 1` one worker
 *      thread, `--workers 2` the default), interleaved with `node -e 0`; medians, ratios.
 *   3. Idle resident memory (VmRSS, /proc/PID/status) of each agent of a 3-agent cluster after
 *      a few idle seconds, per engine, before any RPC call (convergence read from the logs, the
 *      gRPC server not loaded) and again after one Nodes call each; split into its own (RssAnon)
 *      and mapped files (RssFile: mostly the node binary, shared), with PSS; and what the parts
 *      cost: bare Node, then cumulatively a
 *      grpc-js server, protobuf-es + the TamTam descriptors, a pino logger, the protocol core and
 *      the engine (bench/startup-part.ts LEVEL), each idle for a second, medians of 3.
 *   4. Many at once: N agents (50; --quick 20) spawned together, each joining the first; time
 *      until every one answers gRPC (and, bounded, until every one sees all N alive).
 *   5. SIGTERM to exit: the third agent of a 3-agent cluster is sent SIGTERM; time until its
 *      process exits (median of N restarts), and whether the two others list it as "left" in
 *      `tamtam nodes --json` right after it exited (and within 3 s).
 *   6. Scripted use: beside a 20-agent cluster, `tamtam broadcast "msg N"` 10 times a second for
 *      4 s through one agent, each call spawned on schedule without waiting for the previous;
 *      how many exited 0, p50/p99 latency.
 *
 *   node dist/bench/startup.bench.js [--json] [--quick] [--sections 1,2,3,4,5,6] [--runs 20]
 *        [--starts 10] [--idle-seconds 5] [--many 50] [--sigterms 5] [--script-agents 20]
 *
 * The bin is read from package.json ("bin".tamtam) when the run starts. Every child process is
 * tracked and killed by PID in a finally (SIGTERM, SIGKILL after a grace period; SIGKILL on
 * exit of this process); every wait is bounded. A section that fails is reported and the
 * others still run (exit code 1); a rebuild of the bin during the run is detected and warned of. The machine is small and shared: absolute numbers are of this machine,
 * the ratios to `node -e 0` measured in the same run are the point. Benchmarks measure; they
 * never fail on a number.
 */

import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { availableParallelism, cpus, tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { TamTam } from "../src/gen/service/tamtam_pb.js";
import { createClient, type ServiceClient } from "../src/rpc/adapter.js";
import { children, freePort, isAlive, killChildren, track, benchArgs, unknownArgument } from "./lib.js";

const ROOT = new URL("../../", import.meta.url).pathname;
const PART_SCRIPT = new URL("./startup-part.js", import.meta.url).pathname;

/** Modification times of the bin and of its folder (bundled chunks), to notice a rebuild during the run. */
function binStamp(bin: string): string {
  try {
    return `${statSync(bin).mtimeMs}/${statSync(dirname(bin)).mtimeMs}`;
  } catch {
    return "missing";
  }
}

/** The `tamtam` bin as package.json names it now (it may change between builds). */
function readBin(): string {
  const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { bin?: string | Record<string, string> };
  const rel = typeof pkg.bin === "string" ? pkg.bin : pkg.bin?.tamtam;
  if (rel === undefined) throw new Error('package.json has no "bin".tamtam');
  const path = resolve(ROOT, rel);
  if (!existsSync(path)) throw new Error(`the tamtam bin ${path} does not exist: run npm run build`);
  return path;
}

// ---------------------------------------------------------------------------------------------
// Arguments.

interface Args {
  json: boolean;
  quick: boolean;
  sections: Set<number>;
  /** Section 1: runs per command (and as many baseline runs). */
  runs: number;
  /** Section 2: agent starts per engine. */
  starts: number;
  /** Section 3: idle seconds of the 3-agent cluster before reading RSS. */
  idleSeconds: number;
  /** Section 3: processes per part level. */
  partReps: number;
  /** Section 4: agents started at once. */
  many: number;
  /** Section 5: SIGTERMed agents. */
  sigterms: number;
  /** Section 6: cluster size, calls per second, seconds. */
  scriptAgents: number;
  scriptRate: number;
  scriptSeconds: number;
}

function parseArgs(argv: string[]): Args {
  const quick = argv.includes("--quick");
  const args: Args = {
    json: false,
    quick,
    sections: new Set([1, 2, 3, 4, 5, 6]),
    runs: quick ? 5 : 20,
    starts: quick ? 3 : 10,
    idleSeconds: quick ? 3 : 5,
    partReps: 3,
    many: quick ? 20 : 50,
    sigterms: quick ? 3 : 5,
    scriptAgents: 20,
    scriptRate: 10,
    scriptSeconds: 4,
  };
  const positive = (text: string, what: string): number => {
    const n = Number(text);
    if (!Number.isInteger(n) || n < 1) throw new Error(`${what} must be a positive integer, got "${text}"`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = (): string => argv[++i] ?? "";
    if (a === "--json") args.json = true;
    else if (a === "--quick") continue;
    else if (a === "--sections") args.sections = new Set(next().split(",").map((s) => positive(s, "--sections")));
    else if (a === "--runs") args.runs = positive(next(), a);
    else if (a === "--starts") args.starts = positive(next(), a);
    else if (a === "--idle-seconds") args.idleSeconds = positive(next(), a);
    else if (a === "--many") args.many = Math.max(2, positive(next(), a));
    else if (a === "--sigterms") args.sigterms = positive(next(), a);
    else if (a === "--script-agents") args.scriptAgents = positive(next(), a);
    else unknownArgument(a);
  }
  return args;
}

// ---------------------------------------------------------------------------------------------
// Numbers.

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const round1 = (x: number): number => Math.round(x * 10) / 10;
const round2 = (x: number): number => Math.round(x * 100) / 100;

function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

/** Nearest-rank quantile (q in 0..1). */
function quantile(xs: readonly number[], q: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))] as number;
}

const ratio = (a: number, b: number): number => (b > 0 && Number.isFinite(a) ? round2(a / b) : NaN);
/** For tables: NaN and null as "-". */
const cell = (x: number | null | undefined): number | string => (x === null || x === undefined || Number.isNaN(x) ? "-" : x);

// ---------------------------------------------------------------------------------------------
// Child processes: every one is tracked and killed by PID.


/** Resolves true once `proc` has exited, false if it is still running after `timeoutMs`. */
function exited(proc: ChildProcess, timeoutMs: number): Promise<boolean> {
  if (!isAlive(proc)) return Promise.resolve(true);
  return new Promise((resolveExit) => {
    const timer = setTimeout(() => {
      proc.off("exit", onExit);
      resolveExit(false);
    }, timeoutMs);
    const onExit = (): void => {
      clearTimeout(timer);
      resolveExit(true);
    };
    proc.once("exit", onExit);
  });
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves once the process is gone (bounded). */
async function stopProcess(proc: ChildProcess, graceMs: number): Promise<"gone" | "term" | "kill"> {
  if (!isAlive(proc)) return "gone";
  proc.kill("SIGTERM");
  if (await exited(proc, graceMs)) return "term";
  proc.kill("SIGKILL");
  await exited(proc, 5_000);
  return "kill";
}

async function killProcess(proc: ChildProcess): Promise<void> {
  if (!isAlive(proc)) return;
  proc.kill("SIGKILL");
  await exited(proc, 5_000);
}

/** The environment of every child: ours minus TAMTAM_* settings, with its own HOME (no ~/.tamtam.yaml). */
function childEnv(home: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("TAMTAM_") && v !== undefined) env[k] = v;
  env.HOME = home;
  env.NO_COLOR = "1";
  return env;
}

interface ExecResult {
  /** Spawn to exit, ms. */
  ms: number;
  code: number | null;
  signal: string | null;
  timedOut: boolean;
  /** The end of its stderr, for failure reports. */
  stderr: string;
}

/** Runs `node ...argv` to completion (SIGKILL after `timeoutMs`); wall time from spawn to exit. */
function timedNode(argv: readonly string[], env: NodeJS.ProcessEnv, timeoutMs: number): Promise<ExecResult> {
  return new Promise((resolveRun) => {
    const t0 = performance.now();
    let exitMs = NaN;
    let code: number | null = null;
    let signal: string | null = null;
    let timedOut = false;
    let stderr = "";
    let done = false;
    const proc = track(spawn(process.execPath, argv, { env, stdio: ["ignore", "ignore", "pipe"] }));
    const timer = setTimeout(() => {
      timedOut = true;
      proc.kill("SIGKILL");
    }, timeoutMs);
    const finish = (): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      resolveRun({ ms: Number.isNaN(exitMs) ? performance.now() - t0 : exitMs, code, signal, timedOut, stderr: stderr.trim() });
    };
    proc.stderr?.on("data", (d: Buffer) => {
      // The head: a failing command says why on its first line.
      if (stderr.length < 400) stderr = (stderr + d.toString()).slice(0, 400);
    });
    proc.once("error", (err) => {
      stderr += String(err);
      finish();
    });
    proc.once("exit", (c, s) => {
      exitMs = performance.now() - t0;
      code = c;
      signal = s;
      // Let the stderr pipe drain, but never wait on it for long.
      setTimeout(finish, 1_000).unref();
    });
    proc.once("close", finish);
  });
}

// ---------------------------------------------------------------------------------------------
// Ports and agents.

const handedOut = new Set<number>();

/** A port free a moment ago and not handed out before in this run. */
async function uniquePort(kind: "tcp" | "udp"): Promise<number> {
  for (let i = 0; i < 100; i++) {
    const port = await freePort(kind);
    if (!handedOut.has(port)) {
      handedOut.add(port);
      return port;
    }
  }
  throw new Error("no fresh free port after 100 tries");
}

type Client = ServiceClient<typeof TamTam.method>;

interface Agent {
  readonly proc: ChildProcess;
  readonly pid: number;
  readonly rpc: string;
  readonly gossip: string;
  readonly client: Client;
  /** performance.now() just before the spawn. */
  readonly spawnedAt: number;
  /** The end of its log (stderr). */
  tail(): string;
  /** Other members its log has reported alive so far (without any RPC call). */
  othersAlive(): number;
  /** True once its log says it listens for gossip (without any RPC call). */
  listening(): boolean;
}

interface AgentOptions {
  /** Engine; omitted = the agent's default. */
  workers?: 0 | 1 | 2;
  join?: string;
}

interface AgentPorts {
  rpcPort: number;
  udpPort: number;
}

async function agentPorts(): Promise<AgentPorts> {
  return { rpcPort: await uniquePort("tcp"), udpPort: await uniquePort("udp") };
}

function spawnAgent(bin: string, env: NodeJS.ProcessEnv, ports: AgentPorts, options: AgentOptions = {}): Agent {
  const rpc = `127.0.0.1:${ports.rpcPort}`;
  const argv = [bin, "--rpc", rpc, "agent", "--nobanner", "--bind", "127.0.0.1", "-p", String(ports.udpPort), "--log-format", "json"];
  if (options.workers !== undefined) argv.push("--workers", String(options.workers));
  if (options.join !== undefined) argv.push("--join", options.join);
  const spawnedAt = performance.now();
  const proc = track(spawn(process.execPath, argv, { env, stdio: ["ignore", "ignore", "pipe"] }));
  let log = "";
  let partialLine = "";
  const alive = new Set<string>();
  let listening = false;
  // Always read the log, so that a chatty agent never blocks on a full pipe.
  proc.stderr?.on("data", (d: Buffer) => {
    const text = d.toString();
    log = (log + text).slice(-4000);
    const lines = (partialLine + text).split("\n");
    partialLine = lines.pop() ?? "";
    for (const line of lines) {
      const seen = /"msg":"new node (\S+) is alive/.exec(line);
      if (seen !== null) alive.add(seen[1] as string);
      if (line.includes('"msg":"Listening for gossip')) listening = true;
    }
  });
  proc.once("error", () => {});
  const client = createClient(TamTam, rpc, undefined, {
    defaultTimeoutMs: 5_000,
    // Reconnect quickly while the agent is not listening yet (grpc-js' default backoff is 1 s).
    "grpc.initial_reconnect_backoff_ms": 5,
    "grpc.max_reconnect_backoff_ms": 20,
    "grpc.use_local_subchannel_pool": 1,
  });
  return {
    proc,
    pid: proc.pid ?? -1,
    rpc,
    gossip: `127.0.0.1:${ports.udpPort}`,
    client,
    spawnedAt,
    tail: () => lastError(log),
    othersAlive: () => alive.size,
    listening: () => listening,
  };
}

/** The end of an agent's log from its last line that looks like an error, at most 300 characters. */
function lastError(log: string): string {
  const lines = log.trim().split("\n");
  let i = lines.length - 1;
  while (i > 0 && !/error|tamtam:/i.test(lines[i] as string)) i--;
  return lines.slice(Math.max(0, i)).join(" | ").slice(0, 300);
}

/** Ms from spawn until the agent's first answered LocalAddress call; throws on exit or timeout. */
async function untilAnswering(a: Agent, timeoutMs: number, intervalMs: number): Promise<number> {
  for (;;) {
    if (!isAlive(a.proc)) throw new Error(`agent ${a.rpc} exited (${a.proc.exitCode ?? a.proc.signalCode}) before answering gRPC: ${a.tail()}`);
    try {
      await a.client.localAddress({}, { timeoutMs: 250 });
      return performance.now() - a.spawnedAt;
    } catch {
      // not listening yet
    }
    if (performance.now() - a.spawnedAt > timeoutMs) throw new Error(`agent ${a.rpc} did not answer gRPC within ${timeoutMs} ms: ${a.tail()}`);
    await sleep(intervalMs);
  }
}

async function stopAgents(agents: readonly Agent[]): Promise<{ sigkilled: number }> {
  for (const a of agents) a.client.close();
  const how = await Promise.all(agents.map((a) => stopProcess(a.proc, 3_000)));
  return { sigkilled: how.filter((h) => h === "kill").length };
}

/** Polls `check` every `intervalMs` until it holds (ms taken) or `timeoutMs` passes (null). */
async function until(check: () => Promise<boolean>, timeoutMs: number, intervalMs: number): Promise<number | null> {
  const start = performance.now();
  for (;;) {
    try {
      if (await check()) return performance.now() - start;
    } catch {
      // an agent not answering (yet) is a "no"
    }
    if (performance.now() - start > timeoutMs) return null;
    await sleep(intervalMs);
  }
}

/** True when every agent lists `n` alive nodes. */
async function allSeeAlive(agents: readonly Agent[], n: number): Promise<boolean> {
  const replies = await Promise.all(agents.map((a) => a.client.nodes({}, { timeoutMs: 2_000 })));
  return replies.every((r) => r.nodes.filter((x) => x.state === "alive").length === n);
}

/** Starts `n` agents, all but the first joining the first; waits until all answer and (bounded) converge. */
async function startCluster(bin: string, env: NodeJS.ProcessEnv, n: number, options: AgentOptions, into: Agent[]): Promise<{ convergedMs: number | null }> {
  const first = spawnAgent(bin, env, await agentPorts(), options);
  into.push(first);
  await untilAnswering(first, 20_000, 10);
  const ports = await Promise.all(Array.from({ length: n - 1 }, () => agentPorts()));
  const t0 = performance.now();
  const rest = ports.map((p) => spawnAgent(bin, env, p, { ...options, join: first.gossip }));
  into.push(...rest);
  await Promise.all(rest.map((a) => untilAnswering(a, 60_000, 25)));
  const converged = await until(() => allSeeAlive(into, n), 30_000, 100);
  return { convergedMs: converged === null ? null : round1(performance.now() - t0) };
}

/**
 * Starts `n` agents like startCluster, but never calls them: readiness and convergence are read
 * from their logs, so that their gRPC servers stay unloaded (they load with the first call).
 */
async function startUncalledCluster(bin: string, env: NodeJS.ProcessEnv, n: number, options: AgentOptions, into: Agent[]): Promise<{ convergedMs: number | null }> {
  const first = spawnAgent(bin, env, await agentPorts(), options);
  into.push(first);
  if ((await until(async () => first.listening(), 20_000, 10)) === null) throw new Error(`the first agent did not start: ${first.tail()}`);
  const ports = await Promise.all(Array.from({ length: n - 1 }, () => agentPorts()));
  const t0 = performance.now();
  into.push(...ports.map((p) => spawnAgent(bin, env, p, { ...options, join: first.gossip })));
  const converged = await until(async () => into.every((a) => a.othersAlive() >= n - 1), 30_000, 50);
  return { convergedMs: converged === null ? null : round1(performance.now() - t0) };
}

function vmRssMiB(pid: number): number | null {
  try {
    const m = /VmRSS:\s+(\d+)\s+kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m === null ? null : round1(Number(m[1]) / 1024);
  } catch {
    return null;
  }
}

/**
 * Where an agent's resident memory is: RssAnon (its own heap and buffers), RssFile (mapped
 * files, almost all of it the node binary's code and data, shared with every Node process on
 * the machine) and Pss (each shared page divided among the processes mapping it).
 */
function memoryBreakdownMiB(pid: number): { anonMiB: number; fileMiB: number; pssMiB: number } | null {
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const rollup = readFileSync(`/proc/${pid}/smaps_rollup`, "utf8");
    const kb = (text: string, field: string): number | null => {
      const m = new RegExp(`^${field}:\\s+(\\d+)\\s+kB`, "m").exec(text);
      return m === null ? null : Number(m[1]);
    };
    const anon = kb(status, "RssAnon");
    const file = kb(status, "RssFile");
    const pss = kb(rollup, "Pss");
    if (anon === null || file === null || pss === null) return null;
    return { anonMiB: round1(anon / 1024), fileMiB: round1(file / 1024), pssMiB: round1(pss / 1024) };
  } catch {
    return null;
  }
}

const BASELINE_ARGV = ["-e", "0"];
const EXEC_TIMEOUT_MS = 30_000;

// ---------------------------------------------------------------------------------------------
// 1. Client commands.

interface CommandRow {
  command: string;
  argv: string[];
  runs: number;
  failures: number;
  firstFailure: string | null;
  medianMs: number;
  p90Ms: number;
  baselineMedianMs: number;
  baselineP90Ms: number;
  /** Median over the baseline median. */
  ratio: number;
  /** Median minus the baseline median. */
  overNodeMs: number;
}

interface CommandsResult {
  runs: number;
  baseline: { medianMs: number; p90Ms: number; samples: number };
  commands: CommandRow[];
}

function failureText(r: ExecResult): string {
  return r.timedOut ? `timed out after ${EXEC_TIMEOUT_MS} ms` : `exit ${r.code ?? r.signal}: ${r.stderr.split("\n")[0] ?? ""}`;
}

async function sectionCommands(args: Args, bin: string, env: NodeJS.ProcessEnv, log: (s: string) => void): Promise<CommandsResult> {
  const agents: Agent[] = [];
  try {
    const a = spawnAgent(bin, env, await agentPorts());
    const b = spawnAgent(bin, env, await agentPorts());
    agents.push(a, b);
    await Promise.all([untilAnswering(a, 20_000, 10), untilAnswering(b, 20_000, 10)]);
    const rpc = ["--rpc", a.rpc];
    // `--nobanner --help` is a parse error for some CLIs; then the plain help is what is timed.
    const helpProbe = await timedNode([bin, "--nobanner", "--help"], env, EXEC_TIMEOUT_MS);
    const help = helpProbe.code === 0 ? [bin, "--nobanner", "--help"] : [bin, "--help"];
    const commands: { command: string; argv: string[] }[] = [
      { command: "nodes", argv: [bin, "--nobanner", ...rpc, "nodes"] },
      { command: "healthy", argv: [bin, "--nobanner", ...rpc, "healthy"] },
      { command: "broadcast hello", argv: [bin, "--nobanner", ...rpc, "broadcast", "hello"] },
      { command: "join <agent 2>", argv: [bin, "--nobanner", ...rpc, "join", b.gossip] },
      { command: "address", argv: [bin, "--nobanner", ...rpc, "address"] },
      { command: "version", argv: [bin, "--nobanner", "version"] },
      { command: "--help", argv: help },
    ];
    // One untimed warm-up of each (file cache, the agent's first calls).
    await timedNode(BASELINE_ARGV, env, EXEC_TIMEOUT_MS);
    for (const c of commands) await timedNode(c.argv, env, EXEC_TIMEOUT_MS);
    const samples = commands.map(() => ({ cmd: [] as number[], base: [] as number[], failures: 0, firstFailure: null as string | null }));
    for (let run = 0; run < args.runs; run++) {
      log(`commands: run ${run + 1}/${args.runs}`);
      for (const [i, c] of commands.entries()) {
        const s = samples[i] as (typeof samples)[number];
        s.base.push((await timedNode(BASELINE_ARGV, env, EXEC_TIMEOUT_MS)).ms);
        const r = await timedNode(c.argv, env, EXEC_TIMEOUT_MS);
        s.cmd.push(r.ms);
        if (r.code !== 0) {
          s.failures++;
          s.firstFailure ??= failureText(r);
        }
      }
    }
    const allBase = samples.flatMap((s) => s.base);
    return {
      runs: args.runs,
      baseline: { medianMs: round1(median(allBase)), p90Ms: round1(quantile(allBase, 0.9)), samples: allBase.length },
      commands: commands.map((c, i) => {
        const s = samples[i] as (typeof samples)[number];
        const m = median(s.cmd);
        const bm = median(s.base);
        return {
          command: c.command,
          argv: ["node", ...c.argv.map((x) => (x === bin ? "<bin>" : x))],
          runs: s.cmd.length,
          failures: s.failures,
          firstFailure: s.firstFailure,
          medianMs: round1(m),
          p90Ms: round1(quantile(s.cmd, 0.9)),
          baselineMedianMs: round1(bm),
          baselineP90Ms: round1(quantile(s.base, 0.9)),
          ratio: ratio(m, bm),
          overNodeMs: round1(m - bm),
        };
      }),
    };
  } finally {
    await stopAgents(agents);
  }
}

// ---------------------------------------------------------------------------------------------
// 2. Agent time-to-ready.

interface ReadyRow {
  engine: "inline" | "worker";
  workers: 0 | 1 | 2;
  starts: number;
  medianMs: number;
  p90Ms: number;
  minMs: number;
  maxMs: number;
  baselineMedianMs: number;
  ratio: number;
}

interface ReadyResult {
  pollIntervalMs: number;
  engines: ReadyRow[];
  /** The default engine (--workers 2) over inline, medians. */
  workerOverInline: number;
}

async function sectionReady(args: Args, bin: string, env: NodeJS.ProcessEnv, log: (s: string) => void): Promise<ReadyResult> {
  const ready: Record<0 | 1 | 2, number[]> = { 0: [], 1: [], 2: [] };
  const base: Record<0 | 1 | 2, number[]> = { 0: [], 1: [], 2: [] };
  const live: Agent[] = [];
  try {
    for (let i = 0; i < args.starts; i++) {
      log(`time-to-ready: start ${i + 1}/${args.starts}`);
      // Rotate which engine goes first, so none always follows another.
      const engines = [0, 1, 2] as const;
      for (const w of engines.map((_, k) => engines[(i + k) % engines.length] as 0 | 1 | 2)) {
        base[w].push((await timedNode(BASELINE_ARGV, env, EXEC_TIMEOUT_MS)).ms);
        const ports = await agentPorts();
        const a = spawnAgent(bin, env, ports, { workers: w });
        live.push(a);
        ready[w].push(await untilAnswering(a, 20_000, 5));
        a.client.close();
        await killProcess(a.proc);
        live.pop();
      }
    }
  } finally {
    await stopAgents(live);
  }
  const row = (w: 0 | 1 | 2): ReadyRow => ({
    engine: w === 0 ? "inline" : "worker",
    workers: w,
    starts: ready[w].length,
    medianMs: round1(median(ready[w])),
    p90Ms: round1(quantile(ready[w], 0.9)),
    minMs: round1(Math.min(...ready[w])),
    maxMs: round1(Math.max(...ready[w])),
    baselineMedianMs: round1(median(base[w])),
    ratio: ratio(median(ready[w]), median(base[w])),
  });
  return { pollIntervalMs: 5, engines: [row(0), row(1), row(2)], workerOverInline: ratio(median(ready[2]), median(ready[0])) };
}

// ---------------------------------------------------------------------------------------------
// 3. Idle resident memory.

/** Names of the cumulative levels of bench/startup-part.ts (0 = bare Node, run with -e). */
const PART_NAMES = ["node (bare)", "+ grpc-js server", "+ protobuf-es + TamTam descriptors", "+ pino logger", "+ protocol core", "+ engine (transport, host)"] as const;

interface PartRow {
  level: number;
  part: string;
  rssMiB: number;
  samples: number[];
  addedMiB: number;
}

interface AgentRssRow {
  engine: "inline" | "worker";
  workers: 0 | 1 | 2;
  /** Never called (the gRPC server not loaded), or after each agent answered a Nodes call. */
  rpc: "never called" | "called";
  convergedMs: number | null;
  rssMiB: { median: number; min: number; max: number; all: number[] };
  /** Medians of where that RSS is (see memoryBreakdownMiB); null where /proc does not tell. */
  anonMiB: number | null;
  fileMiB: number | null;
  pssMiB: number | null;
  /** Median agent RSS minus the last part level: CLI, RPC service, agent wiring, running state. */
  overPartsMiB: number;
  /** Median agent RSS minus bare Node. */
  overNodeMiB: number;
}

interface MemoryResult {
  idleSeconds: number;
  parts: PartRow[];
  agents: AgentRssRow[];
}

/** Starts one part process, waits until it is loaded, idles 1 s, reads VmRSS, kills it. */
async function partRss(level: number, env: NodeJS.ProcessEnv): Promise<number> {
  const argv = level === 0 ? ["-e", "setInterval(()=>{},1e9)"] : [PART_SCRIPT, String(level)];
  const proc = track(spawn(process.execPath, argv, { env, stdio: ["ignore", "pipe", "ignore"] }));
  try {
    await new Promise<void>((resolveReady, reject) => {
      const timer = setTimeout(() => reject(new Error(`part level ${level} not loaded within 15 s`)), 15_000);
      const done = (): void => {
        clearTimeout(timer);
        resolveReady();
      };
      proc.once("error", reject);
      proc.once("exit", (code) => {
        clearTimeout(timer);
        reject(new Error(`part level ${level} exited with ${code}`));
      });
      if (level === 0) proc.once("spawn", done);
      else proc.stdout?.on("data", (d: Buffer) => d.toString().includes("ready") && done());
    });
    await sleep(1_000);
    const rss = vmRssMiB(proc.pid ?? -1);
    if (rss === null) throw new Error(`no VmRSS for part level ${level}`);
    return rss;
  } finally {
    await killProcess(proc);
  }
}

async function sectionMemory(args: Args, bin: string, env: NodeJS.ProcessEnv, log: (s: string) => void): Promise<MemoryResult> {
  const parts: PartRow[] = [];
  for (const [level, part] of PART_NAMES.entries()) {
    log(`memory: part ${level} (${part})`);
    // The repetitions of a level run side by side: RSS is per process, the wait is not.
    const samples = await Promise.all(Array.from({ length: args.partReps }, () => partRss(level, env)));
    const rssMiB = round1(median(samples));
    parts.push({ level, part, rssMiB, samples, addedMiB: round1(rssMiB - (parts[parts.length - 1]?.rssMiB ?? 0)) });
  }
  const agents: AgentRssRow[] = [];
  for (const w of [0, 1, 2] as const) {
    log(`memory: 3-agent cluster, --workers ${w}, ${args.idleSeconds} s idle, then one Nodes call each`);
    const cluster: Agent[] = [];
    try {
      const { convergedMs } = await startUncalledCluster(bin, env, 3, { workers: w }, cluster);
      const row = (rpc: AgentRssRow["rpc"]): AgentRssRow => {
        const all = cluster.map((a) => vmRssMiB(a.pid)).filter((x): x is number => x !== null);
        const breakdowns = cluster.map((a) => memoryBreakdownMiB(a.pid)).filter((x) => x !== null);
        const medianOf = (pick: (b: { anonMiB: number; fileMiB: number; pssMiB: number }) => number): number | null =>
          breakdowns.length === 0 ? null : round1(median(breakdowns.map(pick)));
        const m = median(all);
        return {
          engine: w === 0 ? "inline" : "worker",
          workers: w,
          rpc,
          convergedMs,
          rssMiB: { median: round1(m), min: Math.min(...all), max: Math.max(...all), all },
          anonMiB: medianOf((b) => b.anonMiB),
          fileMiB: medianOf((b) => b.fileMiB),
          pssMiB: medianOf((b) => b.pssMiB),
          overPartsMiB: round1(m - (parts[parts.length - 1]?.rssMiB ?? NaN)),
          overNodeMiB: round1(m - (parts[0]?.rssMiB ?? NaN)),
        };
      };
      await sleep(args.idleSeconds * 1_000);
      agents.push(row("never called"));
      if (!(await allSeeAlive(cluster, 3))) throw new Error("the agents' Nodes calls do not list all 3 alive");
      await sleep(args.idleSeconds * 1_000);
      agents.push(row("called"));
    } finally {
      await stopAgents(cluster);
    }
  }
  return { idleSeconds: args.idleSeconds, parts, agents };
}

// ---------------------------------------------------------------------------------------------
// 4. Many agents at once.

interface ManyResult {
  agents: number;
  answered: number;
  /** From just before the first spawn until the last agent answered (null: not all did). */
  allAnsweringMs: number | null;
  firstAnsweringMs: number | null;
  medianAnsweringMs: number | null;
  spawnLoopMs: number;
  /** CPU this process used (spawning, polling) from the first spawn until all answered or gave up. */
  benchCpuMs: number;
  /** Until every agent listed all N alive (bounded at 60 s; null: not reached). */
  allConvergedMs: number | null;
  firstError: string | null;
  sigkilledAtStop: number;
}

async function sectionMany(args: Args, bin: string, env: NodeJS.ProcessEnv, log: (s: string) => void): Promise<ManyResult> {
  const n = args.many;
  const agents: Agent[] = [];
  try {
    const ports = [] as AgentPorts[];
    for (let i = 0; i < n; i++) ports.push(await agentPorts());
    log(`many: spawning ${n} agents at once`);
    const seed = `127.0.0.1:${(ports[0] as AgentPorts).udpPort}`;
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    for (const [i, p] of ports.entries()) agents.push(spawnAgent(bin, env, p, i === 0 ? {} : { join: seed }));
    const spawnLoopMs = performance.now() - t0;
    // Pollers are 20 ms apart here: 50 pollers at 5 ms would take CPU from the agents starting.
    const settled = await Promise.allSettled(agents.map((a) => untilAnswering(a, 120_000, 20).then((ms) => a.spawnedAt - t0 + ms)));
    const cpu = process.cpuUsage(cpu0);
    const times = settled.filter((s): s is PromiseFulfilledResult<number> => s.status === "fulfilled").map((s) => s.value);
    const firstError: unknown = settled.find((s): s is PromiseRejectedResult => s.status === "rejected")?.reason;
    let allConvergedMs: number | null = null;
    if (times.length === n) {
      log(`many: all ${n} answering; waiting (at most 60 s) until all see ${n} alive`);
      if ((await until(() => allSeeAlive(agents, n), 60_000, 250)) !== null) allConvergedMs = round1(performance.now() - t0);
    }
    const result: ManyResult = {
      agents: n,
      answered: times.length,
      allAnsweringMs: times.length === n ? round1(Math.max(...times)) : null,
      firstAnsweringMs: times.length > 0 ? round1(Math.min(...times)) : null,
      medianAnsweringMs: times.length > 0 ? round1(median(times)) : null,
      spawnLoopMs: round1(spawnLoopMs),
      benchCpuMs: Math.round((cpu.user + cpu.system) / 1000),
      allConvergedMs,
      firstError: firstError === undefined ? null : firstError instanceof Error ? firstError.message : String(firstError),
      sigkilledAtStop: 0,
    };
    result.sigkilledAtStop = (await stopAgents(agents)).sigkilled;
    return result;
  } finally {
    await stopAgents(agents);
  }
}

// ---------------------------------------------------------------------------------------------
// 5. SIGTERM to exit.

interface SigtermTrial {
  exitMs: number;
  /** The process had to be SIGKILLed (did not exit within 10 s of SIGTERM). */
  timedOut: boolean;
  exitCode: number | null;
  /** Per other agent: its state for the victim in `tamtam nodes --json` right after the exit. */
  statesAtExit: string[];
  /** Per other agent: ms after the exit when it first listed the victim as left (null: not within 3 s). */
  leftAfterMs: (number | null)[];
}

interface SigtermResult {
  trials: SigtermTrial[];
  medianExitMs: number;
  p90ExitMs: number;
  minExitMs: number;
  maxExitMs: number;
  /** (other agent, trial) pairs that listed the victim as left right at its exit / within 3 s. */
  leftAtExit: number;
  leftWithin3s: number;
  pairs: number;
}

/** The victim's state in `tamtam nodes --json` of the agent at `rpc` ("absent", or "error: ..."). */
async function stateViaCli(bin: string, env: NodeJS.ProcessEnv, rpc: string, gossip: string): Promise<string> {
  return new Promise((resolveState) => {
    const proc = track(spawn(process.execPath, [bin, "--nobanner", "--rpc", rpc, "nodes", "--json"], { env, stdio: ["ignore", "pipe", "pipe"] }));
    let out = "";
    let err = "";
    const timer = setTimeout(() => proc.kill("SIGKILL"), EXEC_TIMEOUT_MS);
    proc.stdout?.on("data", (d: Buffer) => (out += d.toString()));
    proc.stderr?.on("data", (d: Buffer) => (err = (err + d.toString()).slice(-300)));
    proc.once("error", (e) => resolveState(`error: ${e.message}`));
    proc.once("close", (code) => {
      clearTimeout(timer);
      if (code !== 0) return resolveState(`error: exit ${code} ${err.trim()}`);
      try {
        const nodes = (JSON.parse(out) as { nodes: { address?: string; ip?: string; port?: number; state?: string }[] }).nodes;
        const me = nodes.find((x) => x.address === gossip || `${x.ip}:${x.port}` === gossip);
        resolveState(me === undefined ? "absent" : String(me.state));
      } catch (e) {
        resolveState(`error: unparsable output (${e instanceof Error ? e.message : String(e)})`);
      }
    });
  });
}

async function sectionSigterm(args: Args, bin: string, env: NodeJS.ProcessEnv, log: (s: string) => void): Promise<SigtermResult> {
  const cluster: Agent[] = [];
  const trials: SigtermTrial[] = [];
  try {
    await startCluster(bin, env, 2, {}, cluster);
    const others = [...cluster];
    for (let i = 0; i < args.sigterms; i++) {
      log(`sigterm: trial ${i + 1}/${args.sigterms}`);
      const victim = spawnAgent(bin, env, await agentPorts(), { join: (others[0] as Agent).gossip });
      cluster.push(victim);
      await untilAnswering(victim, 20_000, 10);
      const joined = await until(() => allSeeAlive([...others, victim], 3), 20_000, 50);
      if (joined === null) throw new Error(`trial ${i + 1}: the 3-agent cluster did not converge within 20 s`);
      await sleep(500);
      victim.client.close();
      const t0 = performance.now();
      victim.proc.kill("SIGTERM");
      const ok = await exited(victim.proc, 10_000);
      const exitMs = performance.now() - t0;
      if (!ok) await killProcess(victim.proc);
      const tExit = performance.now();
      const statesAtExit = await Promise.all(others.map((o) => stateViaCli(bin, env, o.rpc, victim.gossip)));
      const leftAfterMs = await Promise.all(
        others.map(async (o, j) => {
          if (statesAtExit[j] === "left") return 0;
          const ms = await until(async () => (await stateViaCli(bin, env, o.rpc, victim.gossip)) === "left", 3_000, 250);
          return ms === null ? null : round1(performance.now() - tExit);
        }),
      );
      trials.push({ exitMs: round1(exitMs), timedOut: !ok, exitCode: victim.proc.exitCode, statesAtExit, leftAfterMs });
      cluster.pop();
    }
  } finally {
    await stopAgents(cluster);
  }
  const exits = trials.map((t) => t.exitMs);
  return {
    trials,
    medianExitMs: round1(median(exits)),
    p90ExitMs: round1(quantile(exits, 0.9)),
    minExitMs: Math.min(...exits),
    maxExitMs: Math.max(...exits),
    leftAtExit: trials.reduce((s, t) => s + t.statesAtExit.filter((x) => x === "left").length, 0),
    leftWithin3s: trials.reduce((s, t) => s + t.leftAfterMs.filter((x) => x !== null).length, 0),
    pairs: trials.reduce((s, t) => s + t.statesAtExit.length, 0),
  };
}

// ---------------------------------------------------------------------------------------------
// 6. Scripted use.

interface ScriptResult {
  agents: number;
  convergedMs: number | null;
  calls: number;
  ratePerSec: number;
  succeeded: number;
  failed: number;
  firstFailure: string | null;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  /** Latency over the successful calls only. */
  okP50Ms: number;
  okP99Ms: number;
  /** Latest spawn after its scheduled time (this process' own lag). */
  maxSpawnLagMs: number;
  /** From the first spawn to the last exit. */
  spanMs: number;
}

async function sectionScripted(args: Args, bin: string, env: NodeJS.ProcessEnv, log: (s: string) => void): Promise<ScriptResult> {
  const cluster: Agent[] = [];
  try {
    log(`scripted: starting a ${args.scriptAgents}-agent cluster`);
    const { convergedMs } = await startCluster(bin, env, args.scriptAgents, {}, cluster);
    await sleep(1_000);
    const target = (cluster[0] as Agent).rpc;
    const calls = args.scriptRate * args.scriptSeconds;
    const periodMs = 1_000 / args.scriptRate;
    log(`scripted: ${calls} broadcasts at ${args.scriptRate}/s through ${target}`);
    const t0 = performance.now();
    const running: Promise<ExecResult>[] = [];
    let maxLag = 0;
    for (let i = 0; i < calls; i++) {
      const due = t0 + i * periodMs;
      const wait = due - performance.now();
      if (wait > 0) await sleep(wait);
      maxLag = Math.max(maxLag, performance.now() - due);
      running.push(timedNode([bin, "--nobanner", "--rpc", target, "broadcast", `msg ${i}`], env, EXEC_TIMEOUT_MS));
    }
    const results = await Promise.all(running);
    const spanMs = performance.now() - t0;
    const all = results.map((r) => r.ms);
    const ok = results.filter((r) => r.code === 0).map((r) => r.ms);
    const bad = results.find((r) => r.code !== 0);
    return {
      agents: args.scriptAgents,
      convergedMs,
      calls,
      ratePerSec: args.scriptRate,
      succeeded: ok.length,
      failed: calls - ok.length,
      firstFailure: bad === undefined ? null : failureText(bad),
      p50Ms: round1(quantile(all, 0.5)),
      p99Ms: round1(quantile(all, 0.99)),
      maxMs: round1(Math.max(...all)),
      okP50Ms: round1(quantile(ok, 0.5)),
      okP99Ms: round1(quantile(ok, 0.99)),
      maxSpawnLagMs: round1(maxLag),
      spanMs: round1(spanMs),
    };
  } finally {
    await stopAgents(cluster);
  }
}

// ---------------------------------------------------------------------------------------------
// Main.

interface Report {
  suite: "startup";
  node: string;
  cores: number;
  cpu: string;
  quick: boolean;
  bin: string;
  elapsedSeconds: number;
  commands: CommandsResult | null;
  ready: ReadyResult | null;
  memory: MemoryResult | null;
  many: ManyResult | null;
  sigterm: SigtermResult | null;
  scripted: ScriptResult | null;
  errors: { section: string; error: string }[];
  /** The bin or its folder was rewritten while this ran (a concurrent build): figures may mix builds or include its failures. */
  binChangedDuringRun: boolean;
  /** Child processes still running at the end (should be 0). */
  leftoverProcesses: number;
}

function printReport(r: Report): void {
  console.log(`startup: node ${r.node}, ${r.cores} cores, ${r.cpu}; bin ${r.bin}; ${r.quick ? "--quick, " : ""}${r.elapsedSeconds} s`);
  if (r.commands !== null) {
    const c = r.commands;
    console.log(
      `\n1. client commands, exec to exit, ${c.runs} runs each, interleaved with \`node -e 0\` (its median over all ${c.baseline.samples} runs: ${c.baseline.medianMs} ms, p90 ${c.baseline.p90Ms} ms)`,
    );
    console.table(
      c.commands.map((x) => ({
        command: x.command,
        "median ms": x.medianMs,
        "p90 ms": x.p90Ms,
        "node -e 0 median": x.baselineMedianMs,
        "node -e 0 p90": x.baselineP90Ms,
        "ratio (medians)": cell(x.ratio),
        "over node ms": x.overNodeMs,
        failed: x.failures,
      })),
    );
    for (const x of c.commands) {
      if (x.failures > 0) console.log(`   ${x.command}: ${x.failures} failed, first: ${x.firstFailure}`);
    }
    const help = c.commands.find((x) => x.command === "--help");
    if (help !== undefined && !help.argv.includes("--nobanner")) console.log("   --help timed as `node <bin> --help`: the CLI rejects `--nobanner --help` (exit 2)");
  }
  if (r.ready !== null) {
    console.log(`\n2. agent spawn → first answered gRPC LocalAddress (polled every ~${r.ready.pollIntervalMs} ms), vs \`node -e 0\` exec to exit`);
    console.table(
      r.ready.engines.map((x) => ({
        engine: `${x.engine} (--workers ${x.workers})`,
        starts: x.starts,
        "median ms": x.medianMs,
        "p90 ms": x.p90Ms,
        "min ms": x.minMs,
        "max ms": x.maxMs,
        "node -e 0 median": x.baselineMedianMs,
        "ratio (medians)": cell(x.ratio),
      })),
    );
    console.log(`   --workers 2 (the default) / inline (medians): ${cell(r.ready.workerOverInline)}`);
  }
  if (r.memory !== null) {
    const m = r.memory;
    console.log(`\n3a. resident memory (VmRSS) of one process per cumulative part, idle 1 s, medians of ${m.parts[0]?.samples.length ?? 0}`);
    console.table(m.parts.map((p) => ({ part: p.part, "RSS MiB": p.rssMiB, "added MiB": p.addedMiB, samples: p.samples.join(" / ") })));
    console.log(`3b. idle agents of a 3-agent cluster, ${m.idleSeconds} s after they converged (never called: their gRPC servers not loaded), then ${m.idleSeconds} s after one Nodes call each; VmRSS per agent`);
    console.table(
      m.agents.map((a) => ({
        engine: `${a.engine} (--workers ${a.workers})`,
        rpc: a.rpc,
        "RSS median MiB": a.rssMiB.median,
        "min MiB": a.rssMiB.min,
        "max MiB": a.rssMiB.max,
        "anon MiB": a.anonMiB,
        "file MiB": a.fileMiB,
        "PSS MiB": a.pssMiB,
        "over bare node MiB": a.overNodeMiB,
        "over parts table MiB": a.overPartsMiB,
      })),
    );
    console.log("   anon = the agent's own memory; file = mapped files (the node binary's code, shared with every Node process); PSS = shared pages divided among the processes mapping them");
    console.log("   'over parts table' = what the agent holds beyond its last part row: CLI, RPC service, agent wiring, live state (and the worker thread)");
  }
  if (r.many !== null) {
    const n = r.many;
    console.log(`\n4. ${n.agents} agents spawned at once (spawn loop ${n.spawnLoopMs} ms), each joining the first; times from the first spawn`);
    console.table([
      {
        answered: `${n.answered}/${n.agents}`,
        "all answering ms": cell(n.allAnsweringMs),
        "first ms": cell(n.firstAnsweringMs),
        "median ms": cell(n.medianAnsweringMs),
        "all see all alive ms": cell(n.allConvergedMs),
        "bench CPU ms": n.benchCpuMs,
        "SIGKILLed at stop": n.sigkilledAtStop,
      },
    ]);
    if (n.firstError !== null) console.log(`   first error: ${n.firstError}`);
  }
  if (r.sigterm !== null) {
    const s = r.sigterm;
    console.log(`\n5. SIGTERM → process exit, third agent of a 3-agent cluster, ${s.trials.length} trials`);
    console.table([{ "median ms": s.medianExitMs, "p90 ms": s.p90ExitMs, "min ms": s.minExitMs, "max ms": s.maxExitMs, "LEFT at exit": `${s.leftAtExit}/${s.pairs}`, "LEFT within 3 s": `${s.leftWithin3s}/${s.pairs}` }]);
    console.log(`   states listed by the two others right after each exit: ${s.trials.map((t) => t.statesAtExit.join("+")).join(", ")}`);
  }
  if (r.scripted !== null) {
    const s = r.scripted;
    console.log(`\n6. scripted: ${s.calls} × \`tamtam broadcast "msg N"\` at ${s.ratePerSec}/s, none awaited, beside ${s.agents} agents (converged in ${cell(s.convergedMs)} ms)`);
    console.table([
      {
        succeeded: `${s.succeeded}/${s.calls}`,
        "p50 ms": s.p50Ms,
        "p99 ms": s.p99Ms,
        "max ms": s.maxMs,
        "ok p50 ms": cell(s.okP50Ms),
        "ok p99 ms": cell(s.okP99Ms),
        "max spawn lag ms": s.maxSpawnLagMs,
        "span ms": s.spanMs,
      },
    ]);
    if (s.firstFailure !== null) console.log(`   first failure: ${s.firstFailure}`);
  }
  for (const e of r.errors) console.log(`\nsection ${e.section} FAILED: ${e.error}`);
  if (r.binChangedDuringRun) console.log("\nWARNING: the bin was rebuilt while this ran (a concurrent build); rerun for clean figures");
  console.log(`\nleftover child processes: ${r.leftoverProcesses}`);
}

async function main(): Promise<number> {
  const args = parseArgs(benchArgs(import.meta.url));
  const bin = readBin();
  const log = (s: string): void => {
    if (!args.json) process.stderr.write(`${s}\n`);
  };
  const home = mkdtempSync(join(tmpdir(), "tamtam-startup-"));
  const env = childEnv(home);
  const started = performance.now();
  const stamp = binStamp(bin);
  const errors: Report["errors"] = [];
  const run = async <T>(section: number, name: string, f: () => Promise<T>): Promise<T | null> => {
    if (!args.sections.has(section)) return null;
    try {
      return await f();
    } catch (e) {
      errors.push({ section: `${section} (${name})`, error: e instanceof Error ? e.message : String(e) });
      log(`section ${section} (${name}) failed: ${e instanceof Error ? e.message : String(e)}`);
      return null;
    } finally {
      // Nothing of a section may run on into the next one.
      const left = [...children].filter(isAlive);
      await Promise.all(left.map((c) => stopProcess(c, 2_000)));
    }
  };
  try {
    const commands = await run(1, "client commands", () => sectionCommands(args, bin, env, log));
    const ready = await run(2, "time-to-ready", () => sectionReady(args, bin, env, log));
    const memory = await run(3, "memory", () => sectionMemory(args, bin, env, log));
    const many = await run(4, "many agents", () => sectionMany(args, bin, env, log));
    if (many !== null && many.answered < many.agents) {
      errors.push({ section: "4 (many agents)", error: `only ${many.answered}/${many.agents} agents answered: ${many.firstError ?? ""}` });
    }
    const sigterm = await run(5, "SIGTERM", () => sectionSigterm(args, bin, env, log));
    const scripted = await run(6, "scripted", () => sectionScripted(args, bin, env, log));
    const report: Report = {
      suite: "startup",
      node: process.version,
      cores: availableParallelism(),
      cpu: cpus()[0]?.model ?? "unknown",
      quick: args.quick,
      bin: bin.startsWith(ROOT) ? bin.slice(ROOT.length) : bin,
      elapsedSeconds: Math.round((performance.now() - started) / 1000),
      commands,
      ready,
      memory,
      many,
      sigterm,
      scripted,
      errors,
      binChangedDuringRun: binStamp(bin) !== stamp,
      leftoverProcesses: [...children].filter(isAlive).length,
    };
    if (args.json) console.log(JSON.stringify(report));
    else printReport(report);
    return errors.length === 0 ? 0 : 1;
  } finally {
    killChildren();
    rmSync(home, { recursive: true, force: true });
  }
}

process.exitCode = await main();
