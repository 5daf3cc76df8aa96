/**
 * Real `tamtam agent` processes for the benchmarks that run them on loopback (agent-cluster,
 * detection, soak): a free port, starting an agent with its gRPC client (tracked, so that every
 * one is killed by PID when the benchmark ends), polling until a condition holds, and reading
 * one counter family from an agent's Stats.
 */

import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { TamTam } from "../src/gen/service/tamtam_pb.js";
import { createClient, type ServiceClient } from "../src/rpc/adapter.js";
import { freePort, track } from "./lib.js";
import type { ChildProcess } from "node:child_process";

const ROOT = new URL("../../", import.meta.url).pathname;
export const BIN = join(ROOT, (JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { bin: { tamtam: string } }).bin.tamtam);

export interface Agent {
  readonly proc: ChildProcess;
  /** Gossip address, IP:PORT. */
  readonly gossip: string;
  readonly client: ServiceClient<typeof TamTam.method>;
}

export interface AgentOptions {
  readonly home: string;
  readonly workers: number;
  readonly heartbeatMs: number;
  /** A member to join at start-up, or null for the first agent. */
  readonly seed: string | null;
  /** More command-line arguments of `tamtam agent`. */
  readonly extraArgs?: readonly string[];
}

/** Starts one agent on 127.0.0.1 (free gossip and gRPC ports) and resolves once it listens. */
export async function startAgent(o: AgentOptions): Promise<Agent> {
  const gossipPort = await freePort("udp");
  const rpc = `127.0.0.1:${await freePort("tcp")}`;
  const args = [BIN, "--rpc", rpc, "agent", "--bind", "127.0.0.1", "-p", String(gossipPort), "--workers", String(o.workers)];
  args.push("--heartbeat", String(o.heartbeatMs), "--nobanner", "--log-format", "json", ...(o.extraArgs ?? []));
  if (o.seed !== null) args.push("--join", o.seed);
  const proc = track(spawn(process.execPath, args, { env: { ...process.env, HOME: o.home, NO_COLOR: "1" }, stdio: ["ignore", "ignore", "pipe"] }));
  await new Promise<void>((resolve, reject) => {
    const lines = createInterface({ input: proc.stderr as NodeJS.ReadableStream });
    lines.on("line", (l) => l.includes("Listening for gossip") && resolve());
    proc.once("exit", (code) => reject(new Error(`agent exited with ${code}`)));
  });
  return { proc, gossip: `127.0.0.1:${gossipPort}`, client: createClient(TamTam, rpc, undefined, { defaultTimeoutMs: 5000 }) };
}

/** Starts `n` agents, all but the first joining the first. */
export async function startCluster(n: number, o: Omit<AgentOptions, "seed">): Promise<Agent[]> {
  const first = await startAgent({ ...o, seed: null });
  const rest = await Promise.all(Array.from({ length: n - 1 }, () => startAgent({ ...o, seed: first.gossip })));
  return [first, ...rest];
}

/** Resolves when every agent of `agents` sees `n` members alive. */
export async function untilConverged(agents: readonly Agent[], n: number, timeoutMs = 60_000): Promise<number> {
  return until(
    async () => (await Promise.all(agents.map((a) => a.client.nodes({})))).every((r) => r.nodes.filter((x) => x.state === "alive").length === n),
    timeoutMs,
    "convergence",
  );
}

/** Polls `check` every 20 ms; resolves with the time it took (ms) or rejects after `timeoutMs`. */
export async function until(check: () => Promise<boolean>, timeoutMs: number, what: string): Promise<number> {
  const start = performance.now();
  while (performance.now() - start < timeoutMs) {
    if (await check()) return performance.now() - start;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** The sum of an agent's Stats counters whose name ends with `suffix`. */
export function counterSum(counters: Record<string, bigint>, suffix: string): number {
  return Object.entries(counters)
    .filter(([k]) => k.endsWith(suffix))
    .reduce((a, [, v]) => a + Number(v), 0);
}

/** Closes every client and SIGKILLs every agent still running. */
export function stopAgents(agents: readonly Agent[]): void {
  for (const a of agents) {
    a.client.close();
    if (a.proc.exitCode === null && a.proc.signalCode === null) a.proc.kill("SIGKILL");
  }
}
