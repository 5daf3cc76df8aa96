/**
 * What the Prometheus endpoint and event handlers cost, measured in one run (this file owns
 * these four sections):
 *
 *   1. Start-up and idle memory of one real agent, three variants interleaved start by start
 *      (in an order that rotates):
 *      plain, `--metrics-address 127.0.0.1:0` (scraped once before the memory is read), and
 *      `--event-handler true`. Spawn to the "Listening for gossip" log line (logged once gRPC,
 *      the metrics listener and the engine are up), then VmRSS after `--idle-ms`; medians and
 *      ratios to the plain agent.
 *   2. Scrapes of a real agent with one peer: `--scrapes` sequential GETs of /metrics; median and
 *      p90 latency, size of the exposition and number of series.
 *   3. Rendering alone (tinybench): one Stats snapshot of that agent to Prometheus text.
 *   4. The command runner: `--runs` runs of `true` through a pool of 4; wall time, runs per
 *      second, median run time (spawn to exit).
 *
 *   node dist/bench/handlers-metrics.bench.js [--json] [--quick] [--starts 9] [--idle-ms 2000]
 *        [--scrapes 200] [--runs 200]
 *
 * Every process is killed by PID in a finally. Absolute numbers are of this shared machine; the
 * ratios measured in the same run are the point. Benchmarks measure; they never fail on a number.
 */

import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { performance } from "node:perf_hooks";
import { setTimeout as sleep } from "node:timers/promises";
import type * as PromClient from "prom-client";
import { Bench } from "tinybench";
import { CommandRunner } from "../src/agent/command-runner.js";
import { renderMetrics } from "../src/agent/metrics.js";
import { agentStats } from "../test/helpers/agent-stats.js";
import { type AgentProc, cleanEnv, freeTcpPort, freeUdpPort, logMessages, ProcessGroup, removeDir, tempDir } from "../test/helpers/processes.js";
import { round1, statsOf, benchArgs } from "./lib.js";

const argv = benchArgs(import.meta.url);
const flag = (name: string): boolean => argv.includes(name);
const option = (name: string, fallback: number): number => {
  const i = argv.indexOf(name);
  return i >= 0 ? Number(argv[i + 1]) : fallback;
};
const quick = flag("--quick");
const STARTS = option("--starts", quick ? 3 : 9);
const IDLE_MS = option("--idle-ms", quick ? 1000 : 2000);
const SCRAPES = option("--scrapes", quick ? 50 : 200);
const RUNS = option("--runs", quick ? 50 : 200);

const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : (s[Math.floor((s.length - 1) / 2)] as number);
};
const quantile = (xs: readonly number[], q: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))] as number;
};

function vmRssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+)\s+kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return m === null ? NaN : round1(Number(m[1]) / 1024);
}

async function agent(group: ProcessGroup, env: Record<string, string>, extra: readonly string[]): Promise<AgentProc> {
  const args = ["--rpc", `127.0.0.1:${await freeTcpPort()}`, "agent", "--bind", "127.0.0.1", "-p", String(await freeUdpPort()), ...extra];
  return await group.agent(args, env);
}

function metricsUrl(a: AgentProc): string {
  const line = logMessages(a).find((m) => m.startsWith("Serving Prometheus metrics at "));
  if (line === undefined) throw new Error("the agent did not log its metrics address");
  return line.slice("Serving Prometheus metrics at ".length);
}

const VARIANTS = [
  { name: "plain", args: [] as string[] },
  { name: "--metrics-address", args: ["--metrics-address", "127.0.0.1:0"] },
  { name: "--event-handler", args: ["--event-handler", "true"] },
] as const;

async function startupAndMemory(env: Record<string, string>): Promise<Record<string, { readyMs: number; rssMiB: number; readyRatio: number; rssRatio: number }>> {
  const ready = new Map<string, number[]>(VARIANTS.map((v) => [v.name, []]));
  const rss = new Map<string, number[]>(VARIANTS.map((v) => [v.name, []]));
  for (let i = 0; i < STARTS; i++) {
    // The order rotates from start to start, so that no variant always goes first.
    for (const variant of [...VARIANTS.slice(i % VARIANTS.length), ...VARIANTS.slice(0, i % VARIANTS.length)]) {
      const group = new ProcessGroup();
      try {
        const a = await agent(group, env, variant.args);
        const line = a.lines.find((l) => l.text.includes("Listening for gossip"));
        ready.get(variant.name)?.push((line?.atMs ?? NaN) - a.startedAtMs);
        if (variant.name === "--metrics-address") await (await fetch(metricsUrl(a))).text();
        await sleep(IDLE_MS);
        rss.get(variant.name)?.push(vmRssMiB(a.pid));
      } finally {
        await group.killAll();
      }
    }
  }
  const plainReady = median(ready.get("plain") ?? []);
  const plainRss = median(rss.get("plain") ?? []);
  const out: Record<string, { readyMs: number; rssMiB: number; readyRatio: number; rssRatio: number }> = {};
  for (const v of VARIANTS) {
    const r = median(ready.get(v.name) ?? []);
    const m = median(rss.get(v.name) ?? []);
    out[v.name] = { readyMs: round1(r), rssMiB: m, readyRatio: Math.round((100 * r) / plainReady) / 100, rssRatio: Math.round((100 * m) / plainRss) / 100 };
  }
  return out;
}

async function scrapes(env: Record<string, string>): Promise<{ medianMs: number; p90Ms: number; bytes: number; series: number; renderMedianUs: number }> {
  const group = new ProcessGroup();
  try {
    const a = await agent(group, env, ["--heartbeat", "100", "--metrics-address", "127.0.0.1:0"]);
    await agent(group, env, ["--heartbeat", "100", "--join", a.gossip]);
    const url = metricsUrl(a);
    const times: number[] = [];
    let text = "";
    for (let i = 0; i < SCRAPES; i++) {
      const t0 = performance.now();
      text = await (await fetch(url)).text();
      times.push(performance.now() - t0);
    }
    const prom = createRequire(import.meta.url)("prom-client") as typeof PromClient;
    const snapshot = await agentStats(a.rpc);
    const bench = new Bench({ time: quick ? 300 : 1000 });
    bench.add("render", async () => {
      await renderMetrics(prom, snapshot);
    });
    await bench.run();
    const task = bench.tasks[0];
    if (task === undefined) throw new Error("no render task");
    return {
      medianMs: Math.round(median(times) * 100) / 100,
      p90Ms: Math.round(quantile(times, 0.9) * 100) / 100,
      bytes: Buffer.byteLength(text),
      series: text.split("\n").filter((l) => l !== "" && !l.startsWith("#")).length,
      renderMedianUs: round1(statsOf(task, 1).medianNs / 1000),
    };
  } finally {
    await group.killAll();
  }
}

async function runner(): Promise<{ wallMs: number; runsPerSecond: number; medianRunMs: number; ok: number }> {
  const pool = new CommandRunner({ maxConcurrent: 4, maxQueued: RUNS, timeoutMs: 10_000 });
  const t0 = performance.now();
  const results = await Promise.all(Array.from({ length: RUNS }, () => pool.run({ command: "true" })));
  const wallMs = performance.now() - t0;
  return {
    wallMs: round1(wallMs),
    runsPerSecond: Math.round((RUNS * 1000) / wallMs),
    medianRunMs: round1(median(results.map((r) => r.durationMs))),
    ok: results.filter((r) => r.outcome === "ok").length,
  };
}

const home = tempDir("tamtam-bench-");
try {
  const env = cleanEnv(home);
  const startup = await startupAndMemory(env);
  const scrape = await scrapes(env);
  const run = await runner();
  const result = { starts: STARTS, idleMs: IDLE_MS, startup, scrape: { scrapes: SCRAPES, ...scrape }, runner: { runs: RUNS, ...run } };
  if (flag("--json")) {
    console.log(JSON.stringify(result, null, 2));
  } else {
    console.log(`1. one agent, medians of ${STARTS} interleaved starts: spawn → "Listening for gossip"; VmRSS after ${IDLE_MS} ms idle`);
    for (const [name, r] of Object.entries(startup)) {
      console.log(`   ${name.padEnd(18)} ready ${r.readyMs} ms (${r.readyRatio}× plain)   rss ${r.rssMiB} MiB (${r.rssRatio}× plain)`);
    }
    console.log(`2. ${SCRAPES} sequential scrapes of an agent with one peer: median ${scrape.medianMs} ms, p90 ${scrape.p90Ms} ms; ${scrape.bytes} bytes, ${scrape.series} series`);
    console.log(`3. rendering one Stats snapshot (in process): median ${scrape.renderMedianUs} µs`);
    console.log(`4. ${RUNS} runs of \`true\` through a pool of 4: ${run.wallMs} ms, ${run.runsPerSecond} runs/s, median run ${run.medianRunMs} ms, ${run.ok} ok`);
  }
} finally {
  removeDir(home);
}
