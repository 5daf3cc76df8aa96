/**
 * Bounded runner for the user's shell commands (event handlers, query handlers): owns spawning,
 * time limits, output limits and the pool they run in. Nothing here knows what an event or a
 * query is.
 *
 * API (stable):
 *
 *   const runner = new CommandRunner({ maxConcurrent: 4, maxQueued: 64, timeoutMs: 10_000 }, { log });
 *   const result = await runner.run({ command: "./on-join.sh", env: { TAMTAM_EVENT: "member-join" },
 *                                     stdin: bytes, label: "member-join" });
 *   // result.outcome: "ok" | "failed" | "timeout" | "spawn-error" | "refused" | "cancelled"
 *   runner.stats();          // counters and gauges (CommandRunnerStats)
 *   await runner.close();    // refuses new runs, drops the queue, kills what runs, waits for it
 *
 * - The command runs as `/bin/sh -c COMMAND`, COMMAND being the user's configured text only. Data
 *   (event fields, payloads, member lists) reaches it through environment variables added to the
 *   agent's own environment and through standard input, never through the command line, so no
 *   byte of it is ever parsed by the shell.
 * - Each command runs in its own process group. At its time limit the group gets SIGTERM, and
 *   SIGKILL `killGraceMs` later if it has not ended; a run always settles, at the latest
 *   `2 · killGraceMs` after its limit (its pipes are then closed on our side).
 * - Standard output is captured up to `maxStdoutBytes`; the rest is read and discarded (the command
 *   never blocks on a full pipe) and the result says `stdoutTruncated`. Standard error is kept up
 *   to `maxStderrBytes` and logged with the outcome: a warning for a run that did not succeed, an
 *   info line for a successful run that wrote to it.
 * - At most `maxConcurrent` commands run at once; up to `maxQueued` more wait in FIFO order; a run
 *   beyond that is refused at once (`outcome: "refused"`, counted, logged at most once every 10 s).
 * - A run whose `signal` aborts is cancelled: taken out of the queue, or killed as at its time
 *   limit (SIGTERM to its group, SIGKILL later); it ends as `cancelled`, counted, not logged.
 * - `run` never rejects and nothing here throws into the caller: a command that cannot start
 *   (bad environment bytes, exhausted process table) ends as `spawn-error`.
 * - A command that puts a process in the background and closes its output (`cmd >/dev/null 2>&1 &`)
 *   finishes when the shell does; the background process is left alone. One that keeps the output
 *   open is part of the run and is killed with its group at the time limit.
 */

import { type ChildProcess, spawn } from "node:child_process";
import { performance } from "node:perf_hooks";

export interface CommandRunnerLimits {
  /** Commands running at the same time (1..). */
  readonly maxConcurrent: number;
  /** Runs waiting for a free slot; beyond it a run is refused (0.. ). */
  readonly maxQueued: number;
  /** Default time limit of one run, from its start (not its wait in the queue). */
  readonly timeoutMs: number;
  /** Time between SIGTERM and SIGKILL of a run's process group. */
  readonly killGraceMs?: number;
  /** Standard output bytes kept per run (default 64 KiB). */
  readonly maxStdoutBytes?: number;
  /** Standard error bytes kept and logged per run (default 4 KiB). */
  readonly maxStderrBytes?: number;
  /** Standard input bytes accepted per run; a larger input refuses the run (default 4 MiB). */
  readonly maxStdinBytes?: number;
}

export const DEFAULT_KILL_GRACE_MS = 1_000;
export const DEFAULT_MAX_STDOUT_BYTES = 64 * 1024;
export const DEFAULT_MAX_STDERR_BYTES = 4 * 1024;
export const DEFAULT_MAX_STDIN_BYTES = 4 * 1024 * 1024;
/** The shortest interval between two log lines about refused runs. */
export const REFUSED_LOG_INTERVAL_MS = 10_000;

/** The logging this module needs (a pino logger fits). */
export interface CommandLog {
  warn(fields: object, message: string): void;
  info(fields: object, message: string): void;
}

export interface CommandRequest {
  /** The user's command text, run by `/bin/sh -c`. */
  readonly command: string;
  /** Variables added to the base environment (the agent's own by default). */
  readonly env?: Readonly<Record<string, string>>;
  /** Bytes written to standard input, which is then closed; empty when absent. */
  readonly stdin?: Uint8Array;
  /** This run's time limit instead of the runner's. */
  readonly timeoutMs?: number;
  /** This run's standard output cap instead of the runner's. */
  readonly maxStdoutBytes?: number;
  /** Names the run in log lines (e.g. "member-join handler"). */
  readonly label?: string;
  /** Cancels the run when it aborts (the caller no longer wants its result). */
  readonly signal?: AbortSignal;
}

export type CommandOutcome =
  /** Exited with status 0. */
  | "ok"
  /** Exited with another status, or was ended by a signal it did not get from us. */
  | "failed"
  /** Killed at its time limit (or when the runner closed). */
  | "timeout"
  /** Could not be started. */
  | "spawn-error"
  /** Not started: the queue was full, the input too large, or the runner closed. */
  | "refused"
  /** Its `signal` aborted: taken out of the queue, or killed while it ran. */
  | "cancelled";

export interface CommandResult {
  readonly outcome: CommandOutcome;
  /** Exit status, or null when ended by a signal or never started. */
  readonly exitCode: number | null;
  /** The signal that ended it, or null. */
  readonly signal: NodeJS.Signals | null;
  /** The first `maxStdoutBytes` of standard output. */
  readonly stdout: Uint8Array;
  readonly stdoutTruncated: boolean;
  /** The first `maxStderrBytes` of standard error. */
  readonly stderr: Uint8Array;
  readonly stderrTruncated: boolean;
  /** From start to end of the process (0 when it never started). */
  readonly durationMs: number;
  /** One line for "spawn-error", "refused" and a "cancelled" run that never started; empty otherwise. */
  readonly problem: string;
}

export interface CommandRunnerStats {
  /** Processes started. */
  readonly started: number;
  readonly succeeded: number;
  readonly failed: number;
  readonly timedOut: number;
  readonly spawnErrors: number;
  /** Runs refused because the queue was full. */
  readonly refusedQueueFull: number;
  /** Runs refused because the input exceeded maxStdinBytes. */
  readonly refusedStdinTooLarge: number;
  /** Runs refused or dropped from the queue because the runner closed. */
  readonly refusedClosed: number;
  /** Runs cancelled by their caller (taken out of the queue or killed). */
  readonly cancelled: number;
  readonly stdoutTruncated: number;
  readonly stderrTruncated: number;
  /** Gauges. */
  readonly running: number;
  readonly queued: number;
}

interface Job {
  readonly request: CommandRequest;
  readonly resolve: (result: CommandResult) => void;
}

type MutableStats = { -readonly [K in keyof CommandRunnerStats]: CommandRunnerStats[K] };

const EMPTY = new Uint8Array(0);

function notRun(outcome: "spawn-error" | "refused" | "cancelled", problem: string): CommandResult {
  return {
    outcome,
    exitCode: null,
    signal: null,
    stdout: EMPTY,
    stdoutTruncated: false,
    stderr: EMPTY,
    stderrTruncated: false,
    durationMs: 0,
    problem,
  };
}

/** Keeps the first `limitBytes` of a stream's chunks and counts the rest. */
class CappedBytes {
  private readonly chunks: Buffer[] = [];
  private keptBytes = 0;
  truncated = false;
  constructor(private readonly limitBytes: number) {}
  push(chunk: Buffer): void {
    const room = this.limitBytes - this.keptBytes;
    if (chunk.length > room) this.truncated = true;
    if (room <= 0) return;
    const kept = chunk.length > room ? chunk.subarray(0, room) : chunk;
    this.chunks.push(kept);
    this.keptBytes += kept.length;
  }
  bytes(): Uint8Array {
    return this.chunks.length === 0 ? EMPTY : Buffer.concat(this.chunks, this.keptBytes);
  }
}

export class CommandRunner {
  private readonly limits: Required<CommandRunnerLimits>;
  private readonly log: CommandLog | null;
  private readonly baseEnv: NodeJS.ProcessEnv;
  private readonly shell: string;
  private readonly queue: Job[] = [];
  private readonly live = new Set<{ child: ChildProcess; kill: () => void; done: Promise<void> }>();
  private closed = false;
  private readonly counters: MutableStats = {
    started: 0,
    succeeded: 0,
    failed: 0,
    timedOut: 0,
    spawnErrors: 0,
    refusedQueueFull: 0,
    refusedStdinTooLarge: 0,
    refusedClosed: 0,
    cancelled: 0,
    stdoutTruncated: 0,
    stderrTruncated: 0,
    running: 0,
    queued: 0,
  };
  private refusedLog = { atMs: -Infinity, suppressed: 0 };

  constructor(
    limits: CommandRunnerLimits,
    options: { log?: CommandLog; baseEnv?: NodeJS.ProcessEnv; shell?: string } = {},
  ) {
    const positive = (name: string, value: number, min: number): number => {
      if (!Number.isInteger(value) || value < min) throw new RangeError(`command runner: ${name} must be an integer >= ${min}, got ${value}`);
      return value;
    };
    this.limits = {
      maxConcurrent: positive("maxConcurrent", limits.maxConcurrent, 1),
      maxQueued: positive("maxQueued", limits.maxQueued, 0),
      timeoutMs: positive("timeoutMs", limits.timeoutMs, 1),
      killGraceMs: positive("killGraceMs", limits.killGraceMs ?? DEFAULT_KILL_GRACE_MS, 1),
      maxStdoutBytes: positive("maxStdoutBytes", limits.maxStdoutBytes ?? DEFAULT_MAX_STDOUT_BYTES, 0),
      maxStderrBytes: positive("maxStderrBytes", limits.maxStderrBytes ?? DEFAULT_MAX_STDERR_BYTES, 0),
      maxStdinBytes: positive("maxStdinBytes", limits.maxStdinBytes ?? DEFAULT_MAX_STDIN_BYTES, 0),
    };
    this.log = options.log ?? null;
    this.baseEnv = options.baseEnv ?? process.env;
    this.shell = options.shell ?? "/bin/sh";
  }

  /** Runs (or queues, or refuses) one command; resolves with its result, never rejects. */
  run(request: CommandRequest): Promise<CommandResult> {
    if (this.closed) {
      this.counters.refusedClosed++;
      return Promise.resolve(notRun("refused", "the command runner is closed"));
    }
    const stdinBytes = request.stdin?.length ?? 0;
    if (stdinBytes > this.limits.maxStdinBytes) {
      this.counters.refusedStdinTooLarge++;
      const problem = `input of ${stdinBytes} bytes exceeds the limit of ${this.limits.maxStdinBytes}`;
      this.logRefused(request, problem);
      return Promise.resolve(notRun("refused", problem));
    }
    if (request.signal?.aborted === true) {
      this.counters.cancelled++;
      return Promise.resolve(notRun("cancelled", "cancelled before it started"));
    }
    return new Promise<CommandResult>((resolve) => {
      const job: Job = { request, resolve };
      if (this.counters.running < this.limits.maxConcurrent) {
        this.start(job);
      } else if (this.queue.length < this.limits.maxQueued) {
        this.queue.push(job);
        this.counters.queued = this.queue.length;
        request.signal?.addEventListener("abort", () => this.dequeue(job), { once: true });
      } else {
        this.counters.refusedQueueFull++;
        const problem = `${this.limits.maxConcurrent} commands running and ${this.limits.maxQueued} waiting`;
        this.logRefused(request, problem);
        resolve(notRun("refused", problem));
      }
    });
  }

  stats(): CommandRunnerStats {
    return { ...this.counters };
  }

  /** Refuses new runs, refuses the queued ones, kills the running ones and waits for them. Idempotent. */
  async close(): Promise<void> {
    this.closed = true;
    for (const job of this.queue.splice(0)) {
      this.counters.refusedClosed++;
      job.resolve(notRun("refused", "the command runner is closed"));
    }
    this.counters.queued = 0;
    const running = [...this.live];
    for (const entry of running) entry.kill();
    await Promise.all(running.map((entry) => entry.done));
  }

  /** A queued job whose signal aborted leaves the queue (a started one is killed by start's listener). */
  private dequeue(job: Job): void {
    const at = this.queue.indexOf(job);
    if (at < 0) return;
    this.queue.splice(at, 1);
    this.counters.queued = this.queue.length;
    this.counters.cancelled++;
    job.resolve(notRun("cancelled", "cancelled before it started"));
  }

  private logRefused(request: CommandRequest, problem: string): void {
    const nowMs = performance.now();
    if (nowMs - this.refusedLog.atMs < REFUSED_LOG_INTERVAL_MS) {
      this.refusedLog.suppressed++;
      return;
    }
    const count = 1 + this.refusedLog.suppressed;
    this.refusedLog = { atMs: nowMs, suppressed: 0 };
    this.log?.warn({ command: request.label ?? "command", refused: count }, `refused to run ${count === 1 ? "a command" : `${count} commands`}: ${problem}`);
  }

  private next(): void {
    while (!this.closed && this.counters.running < this.limits.maxConcurrent) {
      const job = this.queue.shift();
      if (job === undefined) break;
      this.counters.queued = this.queue.length;
      this.start(job);
    }
  }

  private start(job: Job): void {
    const { request } = job;
    const label = request.label ?? "command";
    let child: ChildProcess;
    try {
      child = spawn(this.shell, ["-c", request.command], {
        env: { ...this.baseEnv, ...request.env },
        stdio: ["pipe", "pipe", "pipe"],
        detached: true, // its own process group, so the time limit reaches everything it started
        windowsHide: true,
      });
    } catch (err) {
      this.spawnFailed(job, label, err);
      return;
    }
    if (child.pid === undefined) {
      // spawn reports ENOENT/EAGAIN asynchronously through 'error' with no pid
      child.once("error", (err) => this.spawnFailed(job, label, err));
      return;
    }
    this.counters.started++;
    this.counters.running++;
    const startedMs = performance.now();
    const pid = child.pid;
    const stdout = new CappedBytes(request.maxStdoutBytes ?? this.limits.maxStdoutBytes);
    const stderr = new CappedBytes(this.limits.maxStderrBytes);
    let killedByUs = false;
    let cancelled = false;
    let exitCode: number | null = null;
    let signal: NodeJS.Signals | null = null;
    const timers: NodeJS.Timeout[] = [];
    let finish!: () => void;
    const done = new Promise<void>((resolveDone) => {
      finish = resolveDone;
    });

    const signalGroup = (sig: NodeJS.Signals): void => {
      try {
        process.kill(-pid, sig);
      } catch {
        // the group is gone already
      }
    };
    let settled = false;
    const settle = (): void => {
      if (settled) return;
      settled = true;
      for (const t of timers) clearTimeout(t);
      request.signal?.removeEventListener("abort", onAbort);
      this.live.delete(entry);
      this.counters.running--;
      const outcome: CommandOutcome = cancelled ? "cancelled" : killedByUs ? "timeout" : exitCode === 0 ? "ok" : "failed";
      const result: CommandResult = {
        outcome,
        exitCode,
        signal,
        stdout: stdout.bytes(),
        stdoutTruncated: stdout.truncated,
        stderr: stderr.bytes(),
        stderrTruncated: stderr.truncated,
        durationMs: performance.now() - startedMs,
        problem: "",
      };
      this.account(result, label);
      finish();
      job.resolve(result);
      this.next();
    };
    const kill = (): void => {
      if (killedByUs) return;
      killedByUs = true;
      signalGroup("SIGTERM");
      timers.push(setTimeout(() => signalGroup("SIGKILL"), this.limits.killGraceMs));
      // A process outside the group (it left it) may hold our pipes open: stop waiting for it.
      timers.push(
        setTimeout(() => {
          child.stdout?.destroy();
          child.stderr?.destroy();
          child.stdin?.destroy();
          settle();
        }, 2 * this.limits.killGraceMs),
      );
    };
    const onAbort = (): void => {
      if (killedByUs) return;
      cancelled = true;
      kill();
    };
    const entry = { child, kill, done };
    this.live.add(entry);
    request.signal?.addEventListener("abort", onAbort, { once: true });

    child.stdout?.on("data", (chunk: Buffer) => stdout.push(chunk));
    child.stderr?.on("data", (chunk: Buffer) => stderr.push(chunk));
    // A command that does not read its input closes the pipe early (EPIPE): not an error of ours.
    child.stdin?.on("error", () => {});
    child.stdout?.on("error", () => {});
    child.stderr?.on("error", () => {});
    child.on("error", () => {}); // a failed kill(); the exit/close events still follow
    child.once("exit", (code, sig) => {
      exitCode = code;
      signal = sig;
    });
    child.once("close", settle);
    timers.push(setTimeout(kill, request.timeoutMs ?? this.limits.timeoutMs));
    child.stdin?.end(request.stdin === undefined ? undefined : Buffer.from(request.stdin.buffer, request.stdin.byteOffset, request.stdin.length));
  }

  private spawnFailed(job: Job, label: string, err: unknown): void {
    this.counters.spawnErrors++;
    const problem = `cannot start: ${(err as Error).message}`;
    this.log?.warn({ command: label }, `${label}: ${problem}`);
    job.resolve(notRun("spawn-error", problem));
    this.next();
  }

  private account(result: CommandResult, label: string): void {
    if (result.stdoutTruncated) this.counters.stdoutTruncated++;
    if (result.stderrTruncated) this.counters.stderrTruncated++;
    const fields = {
      command: label,
      exitCode: result.exitCode,
      signal: result.signal,
      durationMs: Math.round(result.durationMs),
      ...(result.stderr.length > 0 ? { stderr: Buffer.from(result.stderr).toString("utf8") + (result.stderrTruncated ? "…" : "") } : {}),
    };
    switch (result.outcome) {
      case "cancelled":
        this.counters.cancelled++;
        break;
      case "ok":
        this.counters.succeeded++;
        if (result.stderr.length > 0) this.log?.info(fields, `${label} wrote to standard error`);
        break;
      case "timeout":
        this.counters.timedOut++;
        this.log?.warn(fields, `${label} killed at its time limit`);
        break;
      default:
        this.counters.failed++;
        this.log?.warn(fields, result.signal !== null ? `${label} ended by ${result.signal}` : `${label} failed with exit status ${result.exitCode}`);
    }
  }
}
