/**
 * Real agents on loopback: starts clusters of N `tamtam agent` processes (each engine mode),
 * waits until every agent sees every other alive, then measures what an idle cluster costs
 * (resident memory per agent, datagrams and bytes sent per agent per second, from the agents'
 * own Stats counters) and how long a SIGKILLed agent takes to be reported dead by all others.
 *
 *   node dist/bench/agent-cluster.bench.js [--agents 5,20] [--workers 1,0] (any --workers values, e.g. 0,1,2) [--idle-seconds 10]
 *                                    [--heartbeat 500] [--json]
 */

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Agent, counterSum, startCluster, stopAgents, until, untilConverged } from "./agents.js";
import { benchArgs, unknownArgument } from "./lib.js";

interface Args {
  agents: number[];
  workers: number[];
  idleSeconds: number;
  heartbeatMs: number;
  json: boolean;
}

function parseArgs(argv: string[]): Args {
  const args: Args = { agents: [5, 20], workers: [1, 0], idleSeconds: 10, heartbeatMs: 500, json: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = (): string => argv[++i] ?? "";
    if (a === "--agents") args.agents = next().split(",").map(Number);
    else if (a === "--workers") args.workers = next().split(",").map(Number).filter((w) => Number.isInteger(w) && w >= 0);
    else if (a === "--idle-seconds") args.idleSeconds = Number(next());
    else if (a === "--heartbeat") args.heartbeatMs = Number(next());
    else if (a === "--json") args.json = true;
    else unknownArgument(a);
  }
  return args;
}

interface Result {
  agents: number;
  workers: number;
  convergedMs: number;
  rssMiB: { median: number; max: number };
  datagramsPerAgentPerSec: number;
  bytesPerAgentPerSec: number;
  killToDeadAtAllMs: number;
}

async function measure(n: number, workers: number, args: Args): Promise<Result> {
  const home = mkdtempSync(join(tmpdir(), "tamtam-bench-"));
  const agents: Agent[] = [];
  try {
    const started = performance.now();
    agents.push(...(await startCluster(n, { home, workers, heartbeatMs: args.heartbeatMs })));
    await untilConverged(agents, n);
    const convergedMs = performance.now() - started;
    // Let the join traffic drain, then measure a quiet window.
    await new Promise((r) => setTimeout(r, 3000));
    const before = await Promise.all(agents.map((a) => a.client.stats({})));
    const t0 = performance.now();
    await new Promise((r) => setTimeout(r, args.idleSeconds * 1000));
    const after = await Promise.all(agents.map((a) => a.client.stats({})));
    const seconds = (performance.now() - t0) / 1000;
    let datagrams = 0;
    let bytes = 0;
    const rss: number[] = [];
    for (let i = 0; i < n; i++) {
      const b = (before[i] as { counters: Record<string, bigint> }).counters;
      const a = (after[i] as { counters: Record<string, bigint> }).counters;
      datagrams += Number(a["core.datagramsSent"] ?? 0n) - Number(b["core.datagramsSent"] ?? 0n);
      bytes += Number(a["core.bytesSent"] ?? 0n) - Number(b["core.bytesSent"] ?? 0n);
      rss.push(counterSum(a, "process.rss_bytes") / 2 ** 20);
    }
    rss.sort((x, y) => x - y);
    // Crash one agent (not the seed) and wait until every other reports it dead.
    const victim = agents[n - 1] as Agent;
    victim.proc.kill("SIGKILL");
    const others = agents.slice(0, n - 1);
    const killToDeadAtAllMs = await until(
      async () =>
        (await Promise.all(others.map((a) => a.client.nodes({})))).every((r) =>
          r.nodes.some((x) => `${x.address?.IP}:${x.address?.port}` === victim.gossip && x.state === "dead"),
        ),
      120_000,
      "the crashed agent to be reported dead",
    );
    return {
      agents: n,
      workers,
      convergedMs: Math.round(convergedMs),
      rssMiB: { median: round1(rss[Math.floor(rss.length / 2)] as number), max: round1(rss[rss.length - 1] as number) },
      datagramsPerAgentPerSec: round1(datagrams / n / seconds),
      bytesPerAgentPerSec: Math.round(bytes / n / seconds),
      killToDeadAtAllMs: Math.round(killToDeadAtAllMs),
    };
  } finally {
    stopAgents(agents);
    rmSync(home, { recursive: true, force: true });
  }
}

function round1(x: number): number {
  return Math.round(x * 10) / 10;
}

const args = parseArgs(benchArgs(import.meta.url));
const results: Result[] = [];
for (const n of args.agents) for (const w of args.workers) results.push(await measure(n, w, args));
if (args.json) {
  console.log(JSON.stringify({ suite: "agent-cluster", heartbeatMs: args.heartbeatMs, idleSeconds: args.idleSeconds, node: process.version, results }));
} else {
  console.log(`idle agents on loopback, heartbeat ${args.heartbeatMs} ms, ${args.idleSeconds} s window`);
  console.table(
    results.map((r) => ({
      agents: r.agents,
      engine: r.workers === 0 ? "inline" : r.workers === 1 ? "worker" : `workers ${r.workers}`,
      "converged (ms)": r.convergedMs,
      "RSS median (MiB)": r.rssMiB.median,
      "RSS max (MiB)": r.rssMiB.max,
      "datagrams/agent/s": r.datagramsPerAgentPerSec,
      "bytes/agent/s": r.bytesPerAgentPerSec,
      "kill → dead at all (ms)": r.killToDeadAtAllMs,
    })),
  );
}
