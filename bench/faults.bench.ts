/**
 * Partition healing and flapping, measured:
 *
 *  1. Simulator (seeded, 30 nodes, lan preset, 1 s periods, its 300 s reap time): time from the
 *     end of a partition (two-way and one-way, 50/50) to one view again, for partitions shorter
 *     and much longer than the reap time, with reconnect targets (the default) and without
 *     (reconnect window 0: the behaviour before them). Medians over the seeds, and how many
 *     runs never healed.
 *  2. Simulator: a member whose incoming traffic is lost 20 s, then heard 20 s, 8 times, in a
 *     10-node cluster: membership events (all observers), those shown to Monitor readers, and
 *     those about the flapping member, with flap damping on and off.
 *  3. Real agents (needs root: network namespaces, 10 hosts, 250 ms period, reap 3 s): time to
 *     one view after partitions shorter and longer than the reap time, and Monitor events
 *     published while a host flaps (5 s deaf, 5 s hearing, 5 times) with and without damping.
 *  4. How fast a 5|5 partition is seen on both sides: time until every cross pair is held
 *     non-alive (suspect or dead), in the simulator (10 nodes, 500 ms period, Lifeguard on and
 *     off) and between ten real agents at the default 500 ms period (3 trials).
 *
 *   node dist/bench/faults.bench.js [--seeds 5] [--no-real] [--json]
 */

import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { DEFAULT_PARAMS, runSimulation, type SimParams } from "../src/sim/simulate.js";
import { TamTam } from "../src/gen/service/tamtam_pb.js";
import { createH2Client } from "../src/rpc/h2-client.js";
import { labAvailable, NetLab } from "../test/helpers/netns.js";
import { killChildren, track, benchArgs, unknownArgument } from "./lib.js";

const ROOT = new URL("../../", import.meta.url).pathname;
const BIN = join(ROOT, (JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { bin: { tamtam: string } }).bin.tamtam);

interface Args {
  seeds: number;
  real: boolean;
  json: boolean;
}

function parseArgs(argv: string[]): Args {
  const args: Args = { seeds: 5, real: true, json: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--seeds") args.seeds = Number(argv[++i]);
    else if (a === "--no-real") args.real = false;
    else if (a === "--json") args.json = true;
    else unknownArgument(a);
  }
  return args;
}

function median(xs: readonly number[]): number | null {
  if (xs.length === 0) return null;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

// ---------------------------------------------------------------------------------------------
// 1 and 2: the simulator

interface HealRow {
  readonly partitionS: number;
  readonly oneWay: boolean;
  readonly reconnect: boolean;
  /** Seconds from the network healing to one view, median over the runs that healed. */
  readonly medianHealS: number | null;
  readonly maxHealS: number | null;
  readonly neverHealed: number;
  readonly runs: number;
}

function simHeal(seeds: number): HealRow[] {
  const rows: HealRow[] = [];
  const reapS = DEFAULT_PARAMS.preset === "lan" ? 300 : 0;
  for (const partitionS of [10, 60, 2 * reapS, 6 * reapS]) {
    for (const oneWay of [false, true]) {
      for (const reconnect of [true, false]) {
        const heals: number[] = [];
        let never = 0;
        for (let seed = 1; seed <= seeds; seed++) {
          const params: SimParams = {
            ...DEFAULT_PARAMS,
            nodes: 30,
            seed,
            periods: 10 + partitionS + 60,
            partition: { fromPeriod: 10, toPeriod: 10 + partitionS - 1, fraction: 0.5, oneWay },
            overrides: reconnect ? {} : { reconnectTimeoutMs: 0 },
          };
          const c = runSimulation(params).report.convergence;
          if (c.agreedAtMs === null || !c.agreeAtEnd) never++;
          else heals.push((c.agreedAtMs - c.lastFaultEndMs) / 1000);
        }
        rows.push({ partitionS, oneWay, reconnect, medianHealS: median(heals), maxHealS: heals.length === 0 ? null : Math.max(...heals), neverHealed: never, runs: seeds });
      }
    }
  }
  return rows;
}

interface FlapRow {
  readonly damping: boolean;
  readonly total: number | null;
  readonly shown: number | null;
  readonly shownAboutFlapping: number | null;
  readonly dampingEpisodes: number | null;
  readonly oneViewAfterS: number | null;
  readonly oneViewAfterMaxS: number | null;
}

function simFlap(seeds: number): FlapRow[] {
  return [true, false].map((damping) => {
    const runs = Array.from({ length: seeds }, (_, i) =>
      runSimulation({
        ...DEFAULT_PARAMS,
        nodes: 10,
        seed: i + 1,
        periods: 400,
        flap: { nodes: 1, downPeriods: 20, upPeriods: 20, cycles: 8 },
        overrides: { flapDamping: damping },
      }).report,
    );
    const after = runs.map((r) => ((r.convergence.agreedAtMs ?? NaN) - r.convergence.lastFaultEndMs) / 1000);
    return {
      damping,
      total: median(runs.map((r) => r.memberEvents.total)),
      shown: median(runs.map((r) => r.memberEvents.shown)),
      shownAboutFlapping: median(runs.map((r) => r.memberEvents.shownAboutFlapping)),
      dampingEpisodes: median(runs.map((r) => r.memberEvents.dampingStarted)),
      oneViewAfterS: median(after),
      oneViewAfterMaxS: Math.max(...after),
    };
  });
}

// ---------------------------------------------------------------------------------------------
// 3: real agents in network namespaces

const HOSTS = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
const TIMING = ["--heartbeat", "250", "--reap-after", "3000", "--reconnect-interval", "500"];
const delay = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface RealAgent {
  readonly proc: ChildProcess;
  readonly rpc: string;
  readonly gossip: string;
}

async function startReal(lab: NetLab, dir: string, host: number, port: number, extra: readonly string[], timing = TIMING): Promise<RealAgent> {
  const rpc = `unix:${join(dir, `h${host}-${port}.sock`)}`;
  const args = [process.execPath, BIN, "--rpc", rpc, "agent", "--bind", `198.18.0.${host}`, "-p", String(port), "--nobanner", "--log-format", "json", ...timing, ...extra];
  const [cmd, ...rest] = lab.exec(host, args);
  const proc = track(spawn(cmd as string, rest, { stdio: ["ignore", "ignore", "pipe"], env: { ...process.env, HOME: dir, NO_COLOR: "1" } }));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`agent on host ${host} did not start`)), 20_000);
    createInterface({ input: proc.stderr as NodeJS.ReadableStream }).on("line", (line) => {
      if (line.includes("Listening for gossip")) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
  return { proc, rpc, gossip: `198.18.0.${host}:${port}` };
}

async function call<T>(a: RealAgent, f: (c: ReturnType<typeof createH2Client<typeof TamTam.method>>) => Promise<T>): Promise<T> {
  const client = createH2Client(TamTam, a.rpc, { defaultTimeoutMs: 3_000 });
  try {
    return await f(client);
  } finally {
    client.close();
  }
}

const aliveSet = async (a: RealAgent): Promise<string> =>
  JSON.stringify((await call(a, (c) => c.nodes({}))).nodes.filter((n) => n.state === "alive").map((n) => `${n.address?.IP}:${n.address?.port}`).sort());

/** Polls until every agent holds all of them alive; the milliseconds it took. */
async function oneView(agents: readonly RealAgent[], timeoutMs: number): Promise<number> {
  const want = JSON.stringify(agents.map((a) => a.gossip).sort());
  const started = performance.now();
  while (performance.now() - started < timeoutMs) {
    const views = await Promise.all(agents.map((a) => aliveSet(a).catch(() => "")));
    if (views.every((v) => v === want)) return performance.now() - started;
    await delay(50);
  }
  throw new Error("no single view in time");
}

async function cluster(lab: NetLab, dir: string, port: number, extra: readonly string[], timing = TIMING): Promise<RealAgent[]> {
  const first = await startReal(lab, dir, 1, port, extra, timing);
  const rest = await Promise.all(HOSTS.slice(1).map((h) => startReal(lab, dir, h, port, [...extra, "--join", first.gossip], timing)));
  const agents = [first, ...rest];
  await oneView(agents, 30_000);
  return agents;
}

function stop(agents: readonly RealAgent[]): void {
  for (const a of agents) a.proc.kill("SIGKILL");
}

async function statSum(agents: readonly RealAgent[], name: string): Promise<number> {
  const all = await Promise.all(agents.map((a) => call(a, (c) => c.stats({}))));
  return all.reduce((sum, s) => sum + Number(s.counters[name] ?? 0), 0);
}

interface RealHealRow {
  readonly partitionS: number;
  readonly oneViewAfterMs: number;
}

interface RealFlapRow {
  readonly damping: boolean;
  /** Monitor events published by the ten agents while host 10 flapped (and 10 s after). */
  readonly monitorEvents: number;
  readonly heldBack: number;
  readonly dampedBy: number;
}

/** Ms from the cut until every agent holds every agent across it non-alive (suspect, dead or gone). */
async function crossPairsSeen(agents: readonly RealAgent[], sideA: number): Promise<number> {
  const started = performance.now();
  for (;;) {
    const views = await Promise.all(agents.map((a) => call(a, (c) => c.nodes({})).catch(() => null)));
    const seen = views.every((v, i) => {
      if (v === null) return false;
      const across = agents.filter((_, j) => i < sideA !== j < sideA).map((a) => a.gossip);
      return across.every((g) => !v.nodes.some((n) => `${n.address?.IP}:${n.address?.port}` === g && n.state === "alive"));
    });
    if (seen) return performance.now() - started;
    if (performance.now() - started > 60_000) throw new Error("the cut was not seen in 60 s");
    await delay(25);
  }
}

async function realRuns(): Promise<{ heal: RealHealRow[]; flap: RealFlapRow[]; cutSeenMs: number[] } | string> {
  const unavailable = labAvailable();
  if (unavailable !== null) return unavailable;
  const lab = new NetLab(`tb${process.pid % 100000}`, HOSTS.length);
  const dir = mkdtempSync(join(tmpdir(), "tamtam-bench-faults-"));
  const heal: RealHealRow[] = [];
  const flap: RealFlapRow[] = [];
  const cutSeenMs: number[] = [];
  let port = 7950;
  try {
    for (let trial = 0; trial < 3; trial++) {
      const agents = await cluster(lab, dir, port++, [], []);
      lab.partition([1, 2, 3, 4, 5], [6, 7, 8, 9, 10]);
      cutSeenMs.push(Math.round(await crossPairsSeen(agents, 5)));
      lab.heal();
      stop(agents);
    }
    for (const partitionS of [2, 10, 30]) {
      const agents = await cluster(lab, dir, port++, []);
      lab.partition([1, 2, 3, 4], [5, 6, 7, 8, 9, 10]);
      await delay(partitionS * 1000);
      lab.heal();
      heal.push({ partitionS, oneViewAfterMs: Math.round(await oneView(agents, 60_000)) });
      stop(agents);
    }
    for (const damping of [true, false]) {
      const agents = await cluster(lab, dir, port++, damping ? [] : ["--no-flap-damping"]);
      const before = await statSum(agents, "monitor.published");
      for (let cycle = 0; cycle < 5; cycle++) {
        lab.addLoss(10, 1);
        await delay(5_000);
        lab.heal();
        await delay(5_000);
      }
      const after = await statSum(agents, "monitor.published");
      const heldBack = await statSum(agents, "monitor.dampedHeldBack");
      const flapper = agents[9] as RealAgent;
      const views = await Promise.all(agents.slice(0, 9).map((a) => call(a, (c) => c.nodes({}))));
      const dampedBy = views.filter((v) => v.nodes.some((n) => `${n.address?.IP}:${n.address?.port}` === flapper.gossip && n.damped)).length;
      flap.push({ damping, monitorEvents: after - before, heldBack, dampedBy });
      stop(agents);
    }
  } finally {
    killChildren();
    lab.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
  return { heal, flap, cutSeenMs };
}

/** Simulator: ms until every cross pair of a 5|5 split of 10 nodes is non-alive (500 ms period). */
function simCut(seeds: number): { lifeguard: boolean; medianMs: number | null; maxMs: number | null }[] {
  return [true, false].map((lifeguard) => {
    const seen = Array.from({ length: seeds }, (_, i) =>
      runSimulation({
        ...DEFAULT_PARAMS,
        nodes: 10,
        seed: i + 1,
        periods: 60,
        lifeguard,
        partition: { fromPeriod: 20, toPeriod: 59, fraction: 0.5, oneWay: false },
        overrides: { probeIntervalMs: 500, probeTimeoutMs: 250 },
      }).report.partitionSeen?.allNonAliveMs ?? null,
    );
    const ok = seen.filter((x): x is number => x !== null);
    return { lifeguard, medianMs: median(ok), maxMs: ok.length === 0 ? null : Math.max(...ok) };
  });
}

// ---------------------------------------------------------------------------------------------

const args = parseArgs(benchArgs(import.meta.url));
const heal = simHeal(args.seeds);
const flapRows = simFlap(args.seeds);
const cutRows = simCut(2 * args.seeds);
const real = args.real ? await realRuns() : "not run (--no-real)";
if (args.json) {
  process.stdout.write(`${JSON.stringify({ suite: "faults", seeds: args.seeds, simulator: { heal, flap: flapRows, cutSeen: cutRows }, real })}\n`);
} else {
  const s = (x: number | null): string => (x === null ? "-" : String(Math.round(x * 10) / 10));
  console.log(`simulator, 30 nodes, lan (1 s periods, reap 300 s), ${args.seeds} seeds: seconds from heal to one view`);
  console.log("partition  kind     reconnect  median  max  never healed");
  for (const r of heal) {
    console.log(`${String(r.partitionS).padStart(6)} s  ${r.oneWay ? "one-way" : "two-way"}  ${r.reconnect ? "on " : "off"}        ${s(r.medianHealS).padStart(6)}  ${s(r.maxHealS).padStart(4)}  ${r.neverHealed}/${r.runs}`);
  }
  console.log("\nsimulator, 10 nodes, one member deaf 20 s / hearing 20 s x 8 (medians):");
  for (const r of flapRows) {
    console.log(`damping ${r.damping ? "on " : "off"}: ${s(r.total)} events, ${s(r.shown)} shown, ${s(r.shownAboutFlapping)} about the flapping member, ${s(r.dampingEpisodes)} damping episodes, one view ${s(r.oneViewAfterS)} s (max ${s(r.oneViewAfterMaxS)} s) after the last flap`);
  }
  console.log(`\nsimulator, 10 nodes split 5|5, 500 ms period, ${2 * args.seeds} seeds: every cross pair non-alive after`);
  for (const r of cutRows) console.log(`Lifeguard ${r.lifeguard ? "on " : "off"}: median ${s(r.medianMs)} ms, max ${s(r.maxMs)} ms`);
  if (typeof real === "string") console.log(`\nreal agents: ${real}`);
  else {
    console.log("\nreal agents, 10 hosts (network namespaces), 250 ms period, reap 3 s:");
    for (const r of real.heal) console.log(`partition ${r.partitionS} s: one view ${r.oneViewAfterMs} ms after healing`);
    console.log(`5|5 partition at the default 500 ms period: every cross pair non-alive after ${real.cutSeenMs.join(", ")} ms`);
    for (const r of real.flap) console.log(`flapping host (5 s deaf / 5 s hearing x 5), damping ${r.damping ? "on " : "off"}: ${r.monitorEvents} Monitor events published, ${r.heldBack} held back, damped by ${r.dampedBy} of 9`);
  }
}
