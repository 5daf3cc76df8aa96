/**
 * Failure detection against false alarms: the trade-off curve behind the `lan` preset's
 * detection defaults, from the simulator and from real agents.
 *
 * 1. Simulator (src/sim/detection.ts, seeded): for each candidate configuration and loss rate
 *    0 / 10 / 30 %, a crash in a converged 20-member cluster at the agent's 500 ms period:
 *    time until every other member holds it dead (median and p90 over the seeds), false
 *    suspicions (per 30 s run) and false deaths (in all); and a 5|5 partition: time until every
 *    member holds every member across the cut non-alive.
 *    Then the `lan` default with the members' wall clocks off by up to 0, 50, 250 and 1000 ms
 *    either way (the shared probe schedule counts its rounds in wall-clock periods).
 * 2. Real agents (with --agents > 0 and root): one `tamtam agent` per network namespace
 *    (test/helpers/lab-cluster.ts), default period, the current defaults. For each loss rate,
 *    a fresh cluster: loss on every host's input for --seconds, counting the (observer,
 *    member) pairs falsely suspected and declared dead, then a SIGKILL under the same loss and
 *    the time until every other agent holds the victim dead. Then a 5|5 partition of 10 agents:
 *    time until every cross pair is non-alive.
 *
 *   node dist/bench/detection.bench.js [--seeds 40] [--agents 20] [--seconds 30]
 *        [--losses 0,0.1,0.3] [--partitions 3] [--json]
 *
 * --seeds 0 skips the simulator; --agents 0 the real agents; --losses (empty for none) and
 * --partitions choose the real-agent rounds (a fresh cluster each).
 */

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { SwimConfig } from "../src/core/config.js";
import { killUnderLoss, partitionCrossDetection } from "../src/sim/detection.js";
import { LabCluster } from "../test/helpers/lab-cluster.js";
import { labAvailable, NetLab } from "../test/helpers/netns.js";
import { benchArgs, unknownArgument } from "./lib.js";

interface Args {
  seeds: number;
  agents: number;
  seconds: number;
  losses: number[];
  partitions: number;
  json: boolean;
}

function parseArgs(argv: string[]): Args {
  const a: Args = { seeds: 40, agents: 20, seconds: 30, losses: [...LOSSES], partitions: 3, json: false };
  for (let i = 0; i < argv.length; i++) {
    const next = (): number => Number(argv[++i]);
    const arg = argv[i];
    if (arg === "--seeds") a.seeds = next();
    else if (arg === "--agents") a.agents = next();
    else if (arg === "--seconds") a.seconds = next();
    else if (arg === "--losses") a.losses = (argv[++i] ?? "").split(",").filter((x) => x !== "").map(Number);
    else if (arg === "--partitions") a.partitions = next();
    else if (arg === "--json") a.json = true;
    else unknownArgument(arg);
  }
  return a;
}

/** The candidates: memberlist's parameters, steps towards the defaults, and one step beyond. */
const CANDIDATES: readonly { readonly name: string; readonly overrides: Partial<SwimConfig> }[] = [
  { name: "memberlist: 1 ping, k 3, mult 4, K 2, max 6x, own rounds", overrides: { directPings: 1, indirectChecks: 3, suspicionMult: 4, suspicionConfirmations: 2, suspicionMaxTimeoutMult: 6, sharedProbeSchedule: false } },
  { name: "1 ping, k 3, mult 1, K 3, max 24x", overrides: { directPings: 1, indirectChecks: 3, suspicionMult: 1, suspicionConfirmations: 3, suspicionMaxTimeoutMult: 24 } },
  { name: "2 pings, k 3, mult 2, K 3, max 12x", overrides: { directPings: 2, indirectChecks: 3, suspicionMult: 2, suspicionConfirmations: 3, suspicionMaxTimeoutMult: 12 } },
  { name: "4 pings, k 4, mult 1, K 3, max 24x (lan default)", overrides: {} },
  { name: "the lan default with independent shuffled probe rounds", overrides: { sharedProbeSchedule: false } },
  { name: "4 pings, k 4, mult 1, K 1, max 24x", overrides: { suspicionConfirmations: 1 } },
];
const LOSSES = [0, 0.1, 0.3] as const;

const quantile = (xs: number[], q: number): number | null => {
  if (xs.length === 0) return null;
  const s = [...xs].sort((a, b) => a - b);
  return Math.round(s[Math.min(s.length - 1, Math.floor(q * s.length))] as number);
};

interface SimRow {
  candidate: string;
  loss: number;
  deadAtAllMedianMs: number | null;
  deadAtAllP90Ms: number | null;
  deadAtAllP99Ms: number | null;
  deadAtAllMaxMs: number | null;
  undetected: number;
  falseSuspicionsPerRun: number;
  falseDeaths: number;
}

interface SimPartitionRow {
  candidate: string;
  medianMs: number | null;
  p90Ms: number | null;
  maxMs: number | null;
  never: number;
  /** Same-side members suspected after the cut, summed over the seeds (false alarms). */
  sameSideSuspicions: number;
}

/** Wall clocks off by up to this much either way (ms): how the shared probe schedule degrades. */
const CLOCK_SKEWS_MS = [0, 50, 250, 1000] as const;

interface SimSkewRow {
  clockSkewMs: number;
  loss: number;
  deadAtAllMedianMs: number | null;
  deadAtAllP90Ms: number | null;
  deadAtAllMaxMs: number | null;
  falseSuspicionsPerRun: number;
}

function simulate(seeds: number): { rows: SimRow[]; partitions: SimPartitionRow[]; clockSkew: SimSkewRow[] } {
  const rows: SimRow[] = [];
  const partitions: SimPartitionRow[] = [];
  const clockSkew: SimSkewRow[] = [];
  for (const c of CANDIDATES) {
    for (const loss of LOSSES) {
      const times: number[] = [];
      let undetected = 0;
      let suspicions = 0;
      let deaths = 0;
      for (let seed = 1; seed <= seeds; seed++) {
        const r = killUnderLoss({ nodes: 20, seed, loss, overrides: c.overrides });
        if (r.deadAtAllMs === null) undetected++;
        else times.push(r.deadAtAllMs);
        suspicions += r.falseSuspicions;
        deaths += r.falseDeaths;
      }
      rows.push({
        candidate: c.name,
        loss,
        deadAtAllMedianMs: quantile(times, 0.5),
        deadAtAllP90Ms: quantile(times, 0.9),
        deadAtAllP99Ms: quantile(times, 0.99),
        deadAtAllMaxMs: quantile(times, 1),
        undetected,
        falseSuspicionsPerRun: Math.round((suspicions / seeds) * 100) / 100,
        falseDeaths: deaths,
      });
    }
    const cuts: number[] = [];
    let never = 0;
    let sameSideSuspicions = 0;
    for (let seed = 1; seed <= seeds; seed++) {
      const p = partitionCrossDetection({ nodes: 10, seed, loss: 0, overrides: c.overrides });
      if (p.allNonAliveMs === null) never++;
      else cuts.push(p.allNonAliveMs);
      sameSideSuspicions += p.sameSideSuspicions;
    }
    partitions.push({ candidate: c.name, medianMs: quantile(cuts, 0.5), p90Ms: quantile(cuts, 0.9), maxMs: quantile(cuts, 1), never, sameSideSuspicions });
  }
  // The lan default with members' clocks apart, at 10 % loss.
  for (const clockSkewMs of CLOCK_SKEWS_MS) {
    const times: number[] = [];
    let suspicions = 0;
    for (let seed = 1; seed <= seeds; seed++) {
      const r = killUnderLoss({ nodes: 20, seed, loss: 0.1, clockSkewMs });
      if (r.deadAtAllMs !== null) times.push(r.deadAtAllMs);
      suspicions += r.falseSuspicions;
    }
    clockSkew.push({
      clockSkewMs,
      loss: 0.1,
      deadAtAllMedianMs: quantile(times, 0.5),
      deadAtAllP90Ms: quantile(times, 0.9),
      deadAtAllMaxMs: quantile(times, 1),
      falseSuspicionsPerRun: Math.round((suspicions / Math.max(1, seeds)) * 100) / 100,
    });
  }
  return { rows, partitions, clockSkew };
}

interface RealRow {
  agents: number;
  loss: number;
  seconds: number;
  falselySuspectedPairs: number;
  falselyDeadPairs: number;
  pairs: number;
  killToDeadAtAllMs: number;
}

async function realAgents(args: Args): Promise<{ rows: RealRow[]; partitionMs: number[] } | string> {
  const unavailable = labAvailable();
  if (unavailable !== null) return unavailable;
  const dir = mkdtempSync(join(tmpdir(), "tamtam-detect-bench-"));
  const lab = new NetLab(`tb${process.pid % 100000}`, args.agents);
  const env = { ...(process.env as Record<string, string>), NO_COLOR: "1" };
  const hosts = Array.from({ length: args.agents }, (_, i) => i + 1);
  const rows: RealRow[] = [];
  try {
    for (const [round, loss] of args.losses.entries()) {
      const cluster = new LabCluster({ lab, hosts, family: 4, port: 7000 + round, dir, heartbeatMs: 500, env });
      try {
        await cluster.start();
        await cluster.converge(120_000);
        for (const h of hosts) if (loss > 0) lab.addLoss(h, loss);
        const from = performance.now();
        await new Promise((r) => setTimeout(r, args.seconds * 1000));
        const to = performance.now();
        const victim = args.agents;
        const killedAt = performance.now();
        cluster.signal(victim, "SIGKILL");
        const survivors = hosts.filter((h) => h !== victim);
        const killToDeadAtAllMs = Math.round(await cluster.awaitAll(victim, survivors, ["dead"], killedAt, 120_000));
        rows.push({
          agents: args.agents,
          loss,
          seconds: args.seconds,
          falselySuspectedPairs: cluster.pairs("suspect", from, to),
          falselyDeadPairs: cluster.pairs("dead", from, to),
          pairs: args.agents * (args.agents - 1),
          killToDeadAtAllMs,
        });
        if (!args.json) console.error(JSON.stringify(rows.at(-1)));
      } finally {
        lab.heal();
        await cluster.stop();
      }
    }
    // 5|5 partitions of ten agents, each on a fresh cluster.
    const partitionMs: number[] = [];
    for (let round = 0; round < args.partitions; round++) {
      const ten = hosts.slice(0, 10);
      const cluster = new LabCluster({ lab, hosts: ten, family: 4, port: 7100 + round, dir, heartbeatMs: 500, env });
      try {
        await cluster.start();
        await cluster.converge(120_000);
        const sideA = ten.slice(0, 5);
        const sideB = ten.slice(5);
        const cutAt = performance.now();
        lab.partition(sideA, sideB);
        let ms = 0;
        for (const [members, observers] of [
          [sideB, sideA],
          [sideA, sideB],
        ] as const) {
          for (const m of members) ms = Math.max(ms, await cluster.awaitAll(m, observers, ["suspect", "dead"], cutAt, 120_000));
        }
        partitionMs.push(Math.round(ms));
        if (!args.json) console.error(JSON.stringify({ partitionMs: partitionMs.at(-1) }));
      } finally {
        lab.heal();
        await cluster.stop();
      }
    }
    return { rows, partitionMs };
  } finally {
    lab.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
}

const args = parseArgs(benchArgs(import.meta.url));
const sim = simulate(args.seeds);
if (!args.json && args.seeds > 0) {
  console.log(`simulator: 20 members, 500 ms period, ${args.seeds} seeds per cell (a crash, then 30 s under loss)`);
  console.table(
    sim.rows.map((r) => ({
      candidate: r.candidate,
      loss: `${r.loss * 100} %`,
      "dead at all, median (ms)": r.deadAtAllMedianMs,
      "p90 (ms)": r.deadAtAllP90Ms,
      "p99 (ms)": r.deadAtAllP99Ms,
      "max (ms)": r.deadAtAllMaxMs,
      "false suspicions / run": r.falseSuspicionsPerRun,
      "false deaths": r.falseDeaths,
    })),
  );
  console.log("simulator: 5|5 partition of 10 members, time until every cross pair is non-alive");
  console.table(sim.partitions);
  console.log("simulator: the lan default with wall clocks off by up to ± clockSkewMs, crash at 10 % loss");
  console.table(sim.clockSkew);
}
const real = args.agents > 0 ? await realAgents(args) : "not asked (--agents 0)";
if (args.json) console.log(JSON.stringify({ suite: "detection", node: process.version, seeds: args.seeds, sim, real }));
else if (typeof real === "string") console.log(`real agents: skipped (${real})`);
else {
  console.log(`real agents: ${args.agents} network-namespace hosts, 500 ms period, ${args.seconds} s of loss on every host's input, then a SIGKILL`);
  console.table(real.rows);
  console.log(`real agents: 5|5 partitions of 10: every cross pair non-alive after ${real.partitionMs.join(", ")} ms (from the first rule installed)`);
}
