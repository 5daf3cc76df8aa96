/**
 * Shared pieces of the benchmarks: their command lines (`--help` prints the suite's header
 * comment, an unknown argument is one line and exit code 2), per-case statistics from a
 * tinybench task (median and spread in ns per operation), member addresses for synthetic
 * clusters, and the tracking of child processes (every one killed by PID when the benchmark
 * ends, however it ends).
 */

import type { ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import { basename } from "node:path";
import { fileURLToPath } from "node:url";
import { createSocket } from "node:dgram";
import { createServer } from "node:net";
import type { Task } from "tinybench";
import { makeAddress, type Address } from "../src/core/address.js";

/**
 * The suite's arguments. With `--help` or `-h` it prints the suite's header comment (what it
 * measures and its options) and exits 0. `moduleUrl` is the suite's `import.meta.url`.
 */
export function benchArgs(moduleUrl: string): string[] {
  const argv = process.argv.slice(2);
  if (argv.includes("--help") || argv.includes("-h")) {
    const source = readFileSync(fileURLToPath(moduleUrl), "utf8");
    const header = /^\/\*\*\n([\s\S]*?)\n \*\//.exec(source)?.[1] ?? "";
    process.stdout.write(`${header.split("\n").map((line) => line.replace(/^ \*( |$)/, "")).join("\n")}\n`);
    process.exit(0);
  }
  return argv;
}

/** An argument the suite does not know: one line on stderr, exit code 2. */
export function unknownArgument(arg: string | undefined): never {
  process.stderr.write(`${basename(process.argv[1] ?? "bench")}: unknown argument ${arg ?? ""}; see --help\n`);
  process.exit(2);
}

export const PORT = 7946;

export type Family = 4 | 6;
export const FAMILIES: readonly Family[] = [4, 6];

/** Member `i` (0-based): 10.x.y.z:7946 or fd00::x:y:7946. */
export function memberAddress(family: Family, i: number): Address {
  if (family === 4) return makeAddress(new Uint8Array([10, (i >>> 16) & 0xff, (i >>> 8) & 0xff, i & 0xff]), PORT);
  const ip = new Uint8Array(16);
  ip[0] = 0xfd;
  ip[12] = (i >>> 24) & 0xff;
  ip[13] = (i >>> 16) & 0xff;
  ip[14] = (i >>> 8) & 0xff;
  ip[15] = i & 0xff;
  return makeAddress(ip, PORT);
}

/** Nanoseconds per operation of one benchmark case: median and spread over its samples. */
export interface CaseStats {
  medianNs: number;
  p75Ns: number;
  p99Ns: number;
  minNs: number;
  maxNs: number;
  samples: number;
}

export function round1(x: number): number {
  return Math.round(x * 10) / 10;
}

/** Statistics of `task`, whose every call performs `opsPerCall` operations. */
export function statsOf(task: Task, opsPerCall: number): CaseStats {
  const result = task.result;
  if (!("latency" in result)) throw new Error(`task ${task.name} did not complete: ${result.state}`);
  const l = result.latency;
  const ns = (ms: number): number => round1((ms * 1e6) / opsPerCall);
  return { medianNs: ns(l.p50), p75Ns: ns(l.p75), p99Ns: ns(l.p99), minNs: ns(l.min), maxNs: ns(l.max), samples: l.samplesCount };
}

// ---------------------------------------------------------------------------------------------
// Child processes

/** Every child a benchmark started and that has not exited yet. */
export const children = new Set<ChildProcess>();

export const isAlive = (proc: ChildProcess): boolean => proc.exitCode === null && proc.signalCode === null;

/** Records `proc` so that `killChildren` (and the exit of this process) reaches it. */
export function track(proc: ChildProcess): ChildProcess {
  children.add(proc);
  proc.once("exit", () => children.delete(proc));
  return proc;
}

/** SIGKILLs every tracked child still running. */
export function killChildren(): void {
  for (const c of children) if (isAlive(c)) c.kill("SIGKILL");
  children.clear();
}

process.once("exit", killChildren);
for (const sig of ["SIGINT", "SIGTERM"] as const) {
  process.once(sig, () => {
    killChildren();
    process.exit(130);
  });
}

/** A loopback port that was free a moment ago (bind port 0, read it, close). */
export function freePort(kind: "tcp" | "udp"): Promise<number> {
  return new Promise((resolvePort, reject) => {
    if (kind === "tcp") {
      const s = createServer();
      s.once("error", reject);
      s.listen(0, "127.0.0.1", () => {
        const port = (s.address() as { port: number }).port;
        s.close(() => resolvePort(port));
      });
    } else {
      const s = createSocket("udp4");
      s.once("error", reject);
      s.bind(0, "127.0.0.1", () => {
        const port = s.address().port;
        s.close(() => resolvePort(port));
      });
    }
  });
}
