/**
 * Helpers for end-to-end tests that run REAL `tamtam` processes through the package's bin.
 *
 * - `binPath()` is the file package.json's "bin" names (run with the current `node`).
 * - `freeUdpPort()` / `freeTcpPort()` ask the OS for an unused port (bind port 0, read, close).
 * - `spawnAgent(args, env)` starts `node <bin> ... agent ...` (adding `--nobanner --log-format
 *   json` unless told not to), collects its output lines and resolves once the agent logged
 *   "Listening for gossip"; it rejects if the agent exits first or does not get there in time.
 * - `waitForLine(proc, predicate, timeoutMs)` awaits an output line, event-driven.
 * - `run(args, { env, stdin, timeoutMs })` runs one CLI command to completion.
 * - `poll(fn, timeoutMs, intervalMs)` re-checks a real condition until it holds.
 * - `ProcessGroup` records every child it starts and SIGKILLs them all, by PID, in `killAll()`
 *   (call it in a `finally`). `killAllLive()` (for an `after` hook) and, as a last resort, the
 *   exit of the test process SIGKILL every child of any helper that is still alive.
 *
 * Children get exactly the environment the test gives them (see `cleanEnv`), never the test
 * runner's own TAMTAM_* variables or HOME.
 */

import { type ChildProcess, spawn } from "node:child_process";
import { createSocket } from "node:dgram";
import { EventEmitter } from "node:events";
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";

// ---------------------------------------------------------------------------------------------
// Locations

let cachedRoot: string | undefined;

/** The repository root: the nearest directory above this file whose package.json is "tamtam". */
export function repoRoot(): string {
  if (cachedRoot !== undefined) return cachedRoot;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = join(dir, "package.json");
    if (existsSync(pkg) && (JSON.parse(readFileSync(pkg, "utf8")) as { name?: string }).name === "tamtam") {
      cachedRoot = dir;
      return dir;
    }
    const up = dirname(dir);
    if (up === dir) throw new Error("cannot find the tamtam package.json above the test helpers");
    dir = up;
  }
}

/** Absolute path of the `tamtam` bin (package.json "bin"), which must have been built. */
export function binPath(): string {
  const root = repoRoot();
  const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as { bin?: string | Record<string, string> };
  const rel = typeof pkg.bin === "string" ? pkg.bin : pkg.bin?.tamtam;
  if (rel === undefined) throw new Error('package.json has no "bin" for tamtam');
  const path = resolve(root, rel);
  if (!existsSync(path)) throw new Error(`the tamtam bin ${path} does not exist: build first (npx tsc -p tsconfig.json)`);
  return path;
}

/** A fresh temporary directory; removed by `removeDir`. */
export function tempDir(prefix = "tamtam-e2e-"): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}

/**
 * Writes an executable `tamtam` shell shim into `dir` (runs the bin with this `node`), so that
 * shell command lines like `tamtam stream | ./handler.sh` work verbatim with `dir` on PATH.
 */
export function writeTamtamShim(dir: string): string {
  const path = join(dir, "tamtam");
  writeFileSync(path, `#!/bin/sh\nexec '${process.execPath}' '${binPath()}' "$@"\n`);
  chmodSync(path, 0o755);
  return path;
}

/**
 * The whole environment of a child: PATH, the given HOME (so no user ~/.tamtam.yaml counts),
 * NO_COLOR=1 and, unless `advertise` is null, TAMTAM_ADVERTISE (this machine allows traffic
 * to loopback only). Nothing else of the test runner's environment leaks in.
 */
let engineWorkers: number | null = null;

/** Every agent started with a cleanEnv from now on runs this engine (TAMTAM_WORKERS). */
export function useEngine(workers: number): void {
  engineWorkers = workers;
}

export function cleanEnv(home: string, extra: Record<string, string> = {}, advertise: string | null = "127.0.0.1"): Record<string, string> {
  const env: Record<string, string> = { PATH: process.env.PATH ?? "/usr/local/bin:/usr/bin:/bin", HOME: home, NO_COLOR: "1" };
  if (advertise !== null) env.TAMTAM_ADVERTISE = advertise;
  if (engineWorkers !== null) env.TAMTAM_WORKERS = String(engineWorkers);
  return { ...env, ...extra };
}

// ---------------------------------------------------------------------------------------------
// Ports

/** A UDP port that was free a moment ago on `host` (bind port 0, read it, close). */
export function freeUdpPort(host = "127.0.0.1"): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const socket = createSocket(host.includes(":") ? "udp6" : "udp4");
    socket.once("error", reject);
    socket.bind(0, host, () => {
      const { port } = socket.address();
      socket.close(() => resolvePort(port));
    });
  });
}

/** A TCP port that was free a moment ago on `host` (listen on port 0, read it, close). */
export function freeTcpPort(host = "127.0.0.1"): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, host, () => {
      const address = server.address();
      const port = typeof address === "object" && address !== null ? address.port : 0;
      server.close(() => resolvePort(port));
    });
  });
}

/** True when the TCP port can be listened on at `host` now. */
export function tcpPortIsFree(port: number, host = "127.0.0.1"): Promise<boolean> {
  return new Promise((done) => {
    const server = createServer();
    server.once("error", () => done(false));
    server.listen(port, host, () => server.close(() => done(true)));
  });
}

/** True when the UDP port can be bound at `host` now. */
export function udpPortIsFree(port: number, host = "0.0.0.0"): Promise<boolean> {
  return new Promise((done) => {
    const socket = createSocket(host.includes(":") ? "udp6" : "udp4");
    socket.once("error", () => done(false));
    socket.bind(port, host, () => socket.close(() => done(true)));
  });
}

// ---------------------------------------------------------------------------------------------
// Processes

export type StreamName = "stdout" | "stderr";

export interface OutputLine {
  readonly stream: StreamName;
  readonly text: string;
  /** performance.now() when the line was read. */
  readonly atMs: number;
}

export interface ExitStatus {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

/** Every child still running, for the last-resort kill at exit. */
const LIVE = new Map<number, { group: boolean }>();

function killPid(pid: number, group: boolean): void {
  try {
    process.kill(group ? -pid : pid, "SIGKILL");
  } catch {
    // already gone
  }
}

/**
 * SIGKILLs (by PID) every child any helper started that is still running: for an `after` hook,
 * so that a test that timed out cannot leave processes (and open pipes) behind.
 */
export function killAllLive(): void {
  for (const [pid, { group }] of LIVE) killPid(pid, group);
}

process.on("exit", killAllLive);

/** A spawned child with its output split into lines and an exit promise. */
export class Proc extends EventEmitter {
  readonly child: ChildProcess;
  readonly pid: number;
  readonly label: string;
  /** Every output line so far, both streams, in arrival order. */
  readonly lines: OutputLine[] = [];
  /** Resolves on 'exit' (the status); `closed` when also the output has been read to its end. */
  readonly exited: Promise<ExitStatus>;
  readonly closed: Promise<ExitStatus>;
  exitStatus: ExitStatus | null = null;
  isClosed = false;
  readonly startedAtMs = performance.now();
  readonly detachedGroup: boolean;
  private readonly partial: Record<StreamName, string> = { stdout: "", stderr: "" };
  private readonly raw: Record<StreamName, Buffer[]> = { stdout: [], stderr: [] };

  constructor(command: string, args: readonly string[], options: { env: Record<string, string>; cwd?: string; group?: boolean; label?: string; stdin?: "pipe" | "ignore" }) {
    super();
    this.setMaxListeners(0);
    this.detachedGroup = options.group === true;
    this.label = options.label ?? [command, ...args].join(" ");
    this.child = spawn(command, [...args], {
      env: options.env,
      cwd: options.cwd,
      stdio: [options.stdin ?? "ignore", "pipe", "pipe"],
      // Own process group, so the whole pipeline of a shell can be killed at once.
      detached: this.detachedGroup,
    });
    if (this.child.pid === undefined) throw new Error(`cannot spawn ${this.label}`);
    this.pid = this.child.pid;
    LIVE.set(this.pid, { group: this.detachedGroup });
    for (const stream of ["stdout", "stderr"] as const) {
      const s = this.child[stream];
      s?.on("data", (chunk: Buffer) => this.onData(stream, chunk));
      s?.on("end", () => this.flushPartial(stream));
    }
    this.exited = new Promise((done) => {
      this.child.once("exit", (code, signal) => {
        this.exitStatus = { code, signal };
        // A shell's process group may outlive the shell: it is forgotten on 'close' instead.
        if (!this.detachedGroup) LIVE.delete(this.pid);
        this.emit("exit", this.exitStatus);
        done(this.exitStatus);
      });
    });
    this.closed = new Promise((done) => {
      this.child.once("close", (code, signal) => {
        this.exitStatus ??= { code, signal };
        this.flushPartial("stdout");
        this.flushPartial("stderr");
        this.isClosed = true;
        LIVE.delete(this.pid);
        this.emit("close", this.exitStatus);
        done(this.exitStatus);
      });
    });
    this.child.once("error", (error) => this.emit("spawnError", error));
  }

  private onData(stream: StreamName, chunk: Buffer): void {
    this.raw[stream].push(chunk);
    const text = this.partial[stream] + chunk.toString("utf8");
    const parts = text.split("\n");
    this.partial[stream] = parts.pop() ?? "";
    for (const part of parts) this.addLine(stream, part);
  }

  private flushPartial(stream: StreamName): void {
    if (this.partial[stream] !== "") {
      const rest = this.partial[stream];
      this.partial[stream] = "";
      this.addLine(stream, rest);
    }
  }

  private addLine(stream: StreamName, text: string): void {
    const line: OutputLine = { stream, text: text.replace(/\r$/, ""), atMs: performance.now() };
    this.lines.push(line);
    this.emit("line", line);
  }

  /** Everything the child wrote on `stream` so far. */
  output(stream: StreamName): string {
    return Buffer.concat(this.raw[stream]).toString("utf8");
  }

  /** The lines of one stream so far. */
  linesOf(stream: StreamName): string[] {
    return this.lines.filter((l) => l.stream === stream).map((l) => l.text);
  }

  /** The number of lines so far: pass it as `from` to wait only for later lines. */
  mark(): number {
    return this.lines.length;
  }

  get running(): boolean {
    return this.exitStatus === null;
  }

  /** Sends `signal` to the child (its process group when spawned as one), by PID. */
  signal(signal: NodeJS.Signals): void {
    if (!this.running) return;
    try {
      process.kill(this.detachedGroup ? -this.pid : this.pid, signal);
    } catch {
      // already gone
    }
  }

  /** SIGKILL by PID (the whole group for a shell pipeline); resolves once it exited. */
  async kill(): Promise<void> {
    if (this.running) killPid(this.pid, this.detachedGroup);
    else if (this.detachedGroup) killPid(this.pid, true); // grandchildren may outlive the shell
    await this.exited;
  }

  /** The last lines, for failure messages. */
  tail(n = 15): string {
    return this.lines
      .slice(-n)
      .map((l) => `  [${l.stream}] ${l.text}`)
      .join("\n");
  }
}

/** Records children and kills them all by PID. */
export class ProcessGroup {
  readonly procs: Proc[] = [];

  add<P extends Proc>(proc: P): P {
    this.procs.push(proc);
    return proc;
  }

  /** Starts `command args` in this group. */
  spawn(command: string, args: readonly string[], options: ConstructorParameters<typeof Proc>[2]): Proc {
    return this.add(new Proc(command, args, options));
  }

  /** Starts `node <bin> args` (a long-running CLI command such as `stream`) in this group. */
  tamtam(args: readonly string[], env: Record<string, string>, options: { cwd?: string; label?: string } = {}): Proc {
    return this.spawn(process.execPath, [binPath(), ...args], { env, label: options.label ?? `tamtam ${args.join(" ")}`, ...options });
  }

  agent(args: readonly string[], env: Record<string, string>, options: Omit<SpawnAgentOptions, "group"> = {}): Promise<AgentProc> {
    return spawnAgent(args, env, { ...options, group: this });
  }

  run(args: readonly string[], options: RunOptions): Promise<RunResult> {
    return run(args, { ...options, group: this });
  }

  /** SIGKILLs every child still running (by PID) and waits for them to exit. */
  async killAll(): Promise<void> {
    await Promise.all(this.procs.map((p) => p.kill()));
  }
}

// ---------------------------------------------------------------------------------------------
// Waiting

export interface WaitOptions {
  /** Which stream to look at; default both. */
  readonly stream?: StreamName;
  /** Only lines from this index on (see `Proc.mark()`); default 0, i.e. lines already read count too. */
  readonly from?: number;
}

/**
 * Resolves with the first output line (from `from` on) that satisfies `predicate`; rejects
 * after `timeoutMs`, or when the process ended without printing one.
 */
export function waitForLine(
  proc: Proc,
  predicate: (text: string, line: OutputLine) => boolean,
  timeoutMs: number,
  options: WaitOptions = {},
): Promise<OutputLine> {
  const matches = (l: OutputLine): boolean => (options.stream === undefined || l.stream === options.stream) && predicate(l.text, l);
  const found = proc.lines.slice(options.from ?? 0).find(matches);
  if (found !== undefined) return Promise.resolve(found);
  return new Promise((resolveLine, reject) => {
    const cleanup = (): void => {
      clearTimeout(timer);
      proc.off("line", onLine);
      proc.off("close", onClose);
    };
    const onLine = (l: OutputLine): void => {
      if (matches(l)) {
        cleanup();
        resolveLine(l);
      }
    };
    const onClose = (status: ExitStatus): void => {
      cleanup();
      reject(new Error(`${proc.label} ended (code ${status.code}, signal ${status.signal}) before the awaited line; last output:\n${proc.tail()}`));
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`no awaited line from ${proc.label} within ${timeoutMs} ms; last output:\n${proc.tail()}`));
    }, timeoutMs);
    proc.on("line", onLine);
    if (proc.isClosed) onClose(proc.exitStatus ?? { code: null, signal: null });
    else proc.on("close", onClose);
  });
}

/** Resolves with the exit status, or rejects when the process is still running after `timeoutMs`. */
export function waitForExit(proc: Proc, timeoutMs: number): Promise<ExitStatus> {
  if (proc.exitStatus !== null) return Promise.resolve(proc.exitStatus);
  return new Promise((done, reject) => {
    const timer = setTimeout(() => reject(new Error(`${proc.label} still running after ${timeoutMs} ms; last output:\n${proc.tail()}`)), timeoutMs);
    void proc.exited.then((status) => {
      clearTimeout(timer);
      done(status);
    });
  });
}

const delay = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Calls `fn` every `intervalMs` until it returns something other than undefined, null or false,
 * and resolves with that. A throw counts as "not yet" (and is reported if time runs out).
 * `describe` adds the last observed state to the timeout message.
 */
export async function poll<T>(
  fn: () => Promise<T | undefined | null | false> | T | undefined | null | false,
  timeoutMs: number,
  intervalMs = 100,
  describe?: () => string,
): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  let lastError: unknown = null;
  for (;;) {
    try {
      const value = await fn();
      if (value !== undefined && value !== null && value !== false) return value;
      lastError = null;
    } catch (error) {
      lastError = error;
    }
    if (performance.now() + intervalMs > deadline) {
      const why = lastError !== null ? `; last error: ${(lastError as Error).message ?? String(lastError)}` : "";
      const state = describe !== undefined ? `; last state: ${describe()}` : "";
      throw new Error(`condition not met within ${timeoutMs} ms${why}${state}`);
    }
    await delay(intervalMs);
  }
}

// ---------------------------------------------------------------------------------------------
// Agents

export interface SpawnAgentOptions {
  /** Record the child here (recommended: then `killAll` reaches it). */
  readonly group?: ProcessGroup;
  /** How long to wait for "Listening for gossip" (ms); default 15000. */
  readonly timeoutMs?: number;
  /** Add `--nobanner --log-format json` (default true; false runs `args` verbatim). */
  readonly flags?: boolean;
  readonly cwd?: string;
  readonly label?: string;
}

export interface AgentProc extends Proc {
  /** The address the agent advertises, `127.0.0.1:9999` or `[::1]:9999`. */
  readonly gossip: string;
  /** The gossip port. */
  readonly port: number;
  /** The gRPC address it logged ("Listening for gRPC at ..."), e.g. `localhost:6262`. */
  readonly rpc: string;
}

export interface LogRecord {
  readonly level?: number;
  readonly msg?: string;
  readonly [key: string]: unknown;
}

/** The JSON log record of a stderr line, or null for other lines (the banner, ...). */
export function logRecord(text: string): LogRecord | null {
  if (!text.startsWith("{")) return null;
  try {
    const value = JSON.parse(text) as unknown;
    return typeof value === "object" && value !== null ? (value as LogRecord) : null;
  } catch {
    return null;
  }
}

/** The `msg` of every JSON log line of `proc` so far. */
export function logMessages(proc: Proc): string[] {
  return proc.linesOf("stderr").flatMap((l) => {
    const r = logRecord(l);
    return typeof r?.msg === "string" ? [r.msg] : [];
  });
}

const GOSSIP_LINE = /^Listening for gossip at (\S+) as (\S+) /;
const GRPC_LINE = /^Listening for gRPC at (\S+)$/;

/**
 * Starts `node <bin> ...args` (args must contain the `agent` command) and resolves once it
 * logged "Listening for gossip at ...". Rejects (after killing it) when it exits first or
 * does not get there within the timeout.
 */
export async function spawnAgent(args: readonly string[], env: Record<string, string>, options: SpawnAgentOptions = {}): Promise<AgentProc> {
  if (!args.includes("agent")) throw new Error(`spawnAgent: no "agent" command in ${JSON.stringify(args)}`);
  const all = options.flags === false ? [...args] : [...args, "--nobanner", "--log-format", "json"];
  const proc = new Proc(process.execPath, [binPath(), ...all], { env, cwd: options.cwd, label: options.label ?? `tamtam ${all.join(" ")}` });
  options.group?.add(proc);
  const msgOf = (text: string): string => logRecord(text)?.msg ?? "";
  try {
    const line = await waitForLine(proc, (text) => GOSSIP_LINE.test(msgOf(text)), options.timeoutMs ?? 15_000, { stream: "stderr" });
    const m = GOSSIP_LINE.exec(msgOf(line.text)) as RegExpExecArray;
    const gossip = m[2] as string;
    // The engine the agent says it runs is the one asked for (--workers, else TAMTAM_WORKERS).
    const flag = all.indexOf("--workers");
    const asked = flag >= 0 ? all[flag + 1] : env.TAMTAM_WORKERS;
    if (asked !== undefined) {
      const expected = asked === "0" ? "inline core" : "core on a worker thread";
      if (!msgOf(line.text).includes(expected)) throw new Error(`agent runs the wrong engine (asked ${asked}): ${msgOf(line.text)}`);
    }
    const rpcLine = proc.linesOf("stderr").map(msgOf).find((msg) => GRPC_LINE.test(msg));
    const rpc = rpcLine === undefined ? "" : ((GRPC_LINE.exec(rpcLine) as RegExpExecArray)[1] as string);
    return Object.assign(proc, { gossip, port: Number(/:(\d+)$/.exec(gossip)?.[1]), rpc }) as AgentProc;
  } catch (error) {
    await proc.kill();
    throw error;
  }
}

// ---------------------------------------------------------------------------------------------
// One-shot commands

export interface RunOptions {
  readonly env: Record<string, string>;
  /** Written to the command's stdin, which is then closed; default: stdin is /dev/null. */
  readonly stdin?: string | Buffer;
  /** Killed (SIGKILL) and rejected after this long; default 20000 ms. */
  readonly timeoutMs?: number;
  readonly cwd?: string;
  readonly group?: ProcessGroup;
}

export interface RunResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly ms: number;
}

/** Runs `node <bin> ...args` to completion. */
export async function run(args: readonly string[], options: RunOptions): Promise<RunResult> {
  const proc = new Proc(process.execPath, [binPath(), ...args], {
    env: options.env,
    cwd: options.cwd,
    stdin: options.stdin === undefined ? "ignore" : "pipe",
    label: `tamtam ${args.join(" ")}`,
  });
  options.group?.add(proc);
  if (options.stdin !== undefined) {
    proc.child.stdin?.on("error", () => undefined); // the command may not read it all
    proc.child.stdin?.end(options.stdin);
  }
  const timeoutMs = options.timeoutMs ?? 20_000;
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<"timeout">((done) => {
    timer = setTimeout(() => done("timeout"), timeoutMs);
  });
  const outcome = await Promise.race([proc.closed, timedOut]);
  clearTimeout(timer);
  if (outcome === "timeout") {
    await proc.kill();
    throw new Error(`\`${proc.label}\` did not finish within ${timeoutMs} ms; output so far:\n${proc.tail()}`);
  }
  return {
    code: outcome.code,
    signal: outcome.signal,
    stdout: proc.output("stdout"),
    stderr: proc.output("stderr"),
    ms: performance.now() - proc.startedAtMs,
  };
}

/** Whether process `pid` is gone, or only a zombie waiting for its (new) parent to reap it. */
export function processGone(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return true;
  }
  try {
    return /^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, "utf8"));
  } catch {
    return true;
  }
}
