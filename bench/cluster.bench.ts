/**
 * Large simulated clusters: runs `tamtam simulate` scenarios (the real core in virtual time,
 * sharded across worker threads) and reports what they cost and what the protocol does at that
 * size:
 * - cost: wall time, simulated node-periods per second, peak memory (RSS of the whole process,
 *   worker threads included), and the speed-up of N workers over the main thread (0 workers),
 *   measured in the same run, with a check that every worker count gave the identical report
 *   (trace hash);
 * - dissemination: the fraction of nodes that have a broadcast, per gossip round and per period,
 *   against the analytic (logistic) epidemic curve for push gossip with the same fanout;
 * - failure detection: per-observer latency p50/p99 of crashed nodes;
 * - false positives at 0, 10 and 30 % loss; datagrams and bytes per node per second.
 * It also writes an SVG picture (dissemination curve and detection-time distribution) for the
 * largest lossless run. Each run is a child process, so its peak memory is its own.
 *
 *   node dist/bench/cluster.bench.js [--nodes 1000,10000] [--periods 100] [--losses 0,0.1,0.3]
 *        [--workers 0,2] [--start cold|warm|auto] [--svg bench/out/cluster.svg] [--json]
 *
 * --start auto (the default) starts clusters of 5,000 nodes and more warm (converged), smaller
 * ones cold (every node joins node 0). --workers counts as for `tamtam simulate`: 0 runs every
 * node on the main thread, N shards them across N worker threads. Lossy runs use the largest
 * worker count only.
 */

import { execFileSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { availableParallelism, totalmem } from "node:os";
import { dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { steadyNodes } from "../src/sim/outcome.js";
import { runSimulationSharded } from "../src/sim/sharded.js";
import { DEFAULT_PARAMS, type SimReport } from "../src/sim/simulate.js";
import { distribution } from "../src/sim/stats.js";
import { benchArgs, unknownArgument } from "./lib.js";

/** Clusters at least this large start warm under --start auto: a cold start's join storm is O(N^2) datagrams. */
const AUTO_WARM_NODES = 5_000;
/** Gossip rounds followed after a broadcast. */
const ROUNDS = 30;
/** Heap limit for the simulation's threads (MiB); the member tables are mostly off-heap. */
const HEAP_MIB = 16_384;

interface RunSpec {
  readonly nodes: number;
  readonly periods: number;
  readonly loss: number;
  readonly workers: number;
  readonly warm: boolean;
  readonly seed: number;
}

interface RunResult {
  readonly spec: RunSpec;
  readonly wallMs: number;
  readonly nodePeriodsPerSec: number;
  readonly peakRssMiB: number;
  readonly report: SimReport;
  /** Mean fraction of steady nodes that had a broadcast after r gossip rounds (the origin counts). */
  readonly roundCurve: number[];
  readonly detectionMs: number[];
}

interface Args {
  nodes: number[];
  periods: number;
  losses: number[];
  workers: number[];
  start: "cold" | "warm" | "auto";
  svg: string;
  json: boolean;
}

function parseArgs(argv: string[]): Args | { one: RunSpec } {
  const a: Args = { nodes: [1000], periods: 40, losses: [0, 0.1, 0.3], workers: [0, 2], start: "auto", svg: "bench/out/cluster.svg", json: false };
  for (let i = 0; i < argv.length; i++) {
    const next = (): string => argv[++i] ?? "";
    const arg = argv[i];
    if (arg === "--one") return { one: JSON.parse(next()) as RunSpec };
    if (arg === "--nodes") a.nodes = next().split(",").map(Number);
    else if (arg === "--periods") a.periods = Number(next());
    else if (arg === "--losses") a.losses = next().split(",").map(Number);
    else if (arg === "--workers") a.workers = next().split(",").map(Number);
    else if (arg === "--start") a.start = next() as Args["start"];
    else if (arg === "--svg") a.svg = next();
    else if (arg === "--json") a.json = true;
    else unknownArgument(arg);
  }
  if (!["cold", "warm", "auto"].includes(a.start)) throw new Error(`--start must be cold, warm or auto, got ${a.start}`);
  return a;
}

/**
 * Push gossip in which every informed node tells `fanout` random nodes per round, each at its
 * own phase (gossip ticks are not synchronised): dx/dt = fanout · x · (1 − x) per round, the
 * logistic curve x(r) = 1 / (1 + (N − 1) · e^(−fanout · r)) from one informed node.
 */
export function epidemicCurve(nodes: number, fanout: number, rounds: number): number[] {
  const out: number[] = [];
  for (let r = 0; r <= rounds; r++) out.push(1 / (1 + (nodes - 1) * Math.exp(-fanout * r)));
  return out;
}

/** First (fractional, linearly interpolated) round at which `curve` reaches `level`; null if never. */
export function roundReaching(curve: readonly number[], level: number): number | null {
  for (let r = 0; r < curve.length; r++) {
    const v = curve[r] as number;
    if (v >= level) {
      if (r === 0) return 0;
      const prev = curve[r - 1] as number;
      return r - 1 + (level - prev) / (v - prev);
    }
  }
  return null;
}

/** One run, in this process (the child side). */
async function runOne(spec: RunSpec): Promise<RunResult> {
  const startedAt = process.hrtime.bigint();
  const { report, outcome } = await runSimulationSharded(
    {
      ...DEFAULT_PARAMS,
      seed: spec.seed,
      nodes: spec.nodes,
      periods: spec.periods,
      loss: spec.loss,
      warmStart: spec.warm,
      kill: 3,
      faultPeriod: 10,
      broadcasts: spec.loss === 0 ? 20 : 0,
    },
    spec.workers,
    { workerHeapMiB: HEAP_MIB },
  );
  const wallMs = Number(process.hrtime.bigint() - startedAt) / 1e6;
  const roundMs = report.config.gossipIntervalMs;
  const sums = new Array<number>(ROUNDS + 1).fill(0);
  let counted = 0;
  for (const rec of outcome.broadcasts.values()) {
    const steady = steadyNodes(outcome, rec.sentAtMs).filter((i) => i !== rec.origin);
    if (steady.length === 0) continue;
    const byRound = new Array<number>(ROUNDS + 1).fill(0);
    for (const i of steady) {
      const t = rec.deliveredAtMs.get(i);
      if (t === undefined) continue;
      const r = Math.ceil((t - rec.sentAtMs) / roundMs);
      if (r <= ROUNDS) byRound[r] = (byRound[r] as number) + 1;
    }
    let cumulative = 1; // the origin has it from the start
    for (let r = 0; r <= ROUNDS; r++) {
      cumulative += byRound[r] as number;
      sums[r] = (sums[r] as number) + cumulative / (steady.length + 1);
    }
    counted++;
  }
  const detectionMs: number[] = [];
  for (const k of outcome.kills) for (const t of k.detectedAtMs.values()) detectionMs.push(Math.round(t - k.atMs));
  return {
    spec,
    wallMs: Math.round(wallMs),
    nodePeriodsPerSec: Math.round((spec.nodes * spec.periods) / (wallMs / 1000)),
    peakRssMiB: Math.round(process.resourceUsage().maxRSS / 1024),
    report,
    roundCurve: counted === 0 ? [] : sums.map((s) => Math.round((s / counted) * 10000) / 10000),
    detectionMs,
  };
}

/** One run in a child process, so that its peak memory is its own. */
function runChild(spec: RunSpec): RunResult {
  const out = execFileSync(process.execPath, [`--max-old-space-size=${HEAP_MIB}`, fileURLToPath(import.meta.url), "--one", JSON.stringify(spec)], {
    encoding: "utf8",
    maxBuffer: 512 * 1024 * 1024,
    stdio: ["ignore", "pipe", "inherit"],
  });
  return JSON.parse(out) as RunResult;
}

function svgPicture(run: RunResult, analytic: number[], roundMs: number): string {
  const W = 900;
  const H = 360;
  const pad = 50;
  const half = (W - 3 * pad) / 2;
  const plotH = H - 2 * pad;
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`);
  parts.push(`<rect width="${W}" height="${H}" fill="white"/>`);
  // Left: dissemination per gossip round, simulated vs analytic, up to a little past saturation.
  const full = run.roundCurve.findIndex((v, r) => v >= 0.9999 && (analytic[r] ?? 1) >= 0.9999);
  const rounds = Math.min(run.roundCurve.length - 1, Math.max(8, (full < 0 ? run.roundCurve.length : full) + 3));
  const x = (r: number): number => pad + (r / rounds) * half;
  const y = (f: number): number => pad + plotH - f * plotH;
  parts.push(`<text x="${pad}" y="${pad - 20}" font-weight="bold">Broadcast dissemination, ${run.spec.nodes} nodes</text>`);
  parts.push(`<line x1="${pad}" y1="${pad + plotH}" x2="${pad + half}" y2="${pad + plotH}" stroke="black"/><line x1="${pad}" y1="${pad}" x2="${pad}" y2="${pad + plotH}" stroke="black"/>`);
  for (const f of [0, 0.5, 1]) parts.push(`<text x="${pad - 30}" y="${y(f) + 4}">${f}</text>`);
  const tickEvery = Math.max(1, Math.ceil(rounds / 15));
  for (let r = 0; r <= rounds; r += tickEvery) parts.push(`<text x="${x(r) - 4}" y="${pad + plotH + 16}">${r}</text>`);
  parts.push(`<text x="${pad}" y="${H - 8}">gossip rounds (${roundMs} ms) after sending</text>`);
  const poly = (values: number[], color: string, dash = ""): string =>
    `<polyline fill="none" stroke="${color}" stroke-width="2" ${dash} points="${values.map((v, r) => `${x(r).toFixed(1)},${y(v).toFixed(1)}`).join(" ")}"/>`;
  parts.push(poly(analytic.slice(0, rounds + 1), "#999", 'stroke-dasharray="6,4"'));
  parts.push(poly(run.roundCurve.slice(0, rounds + 1), "#1f77b4"));
  parts.push(`<text x="${x(rounds) - 150}" y="${y(0.2)}" fill="#1f77b4">simulated (mean of ${run.report.broadcasts.sent})</text>`);
  parts.push(`<text x="${x(rounds) - 150}" y="${y(0.1)}" fill="#777">analytic (logistic)</text>`);
  // Right: detection-time histogram, 250 ms bins.
  const left = 2 * pad + half;
  const d = run.detectionMs;
  parts.push(`<text x="${left}" y="${pad - 20}" font-weight="bold">Crash detection per observer (${d.length} observations)</text>`);
  if (d.length > 0) {
    const binMs = 250;
    let lo = Infinity;
    let hi = -Infinity;
    for (const v of d) {
      lo = Math.min(lo, v);
      hi = Math.max(hi, v);
    }
    const min = Math.floor(lo / binMs);
    const bins = Math.max(1, Math.floor(hi / binMs) + 1 - min);
    const counts = new Array<number>(bins).fill(0);
    for (const v of d) counts[Math.min(bins - 1, Math.floor(v / binMs) - min)]!++;
    const top = Math.max(...counts);
    const bw = half / bins;
    counts.forEach((c, i) => {
      const h = (c / top) * plotH;
      parts.push(`<rect x="${(left + i * bw + 0.5).toFixed(1)}" y="${(pad + plotH - h).toFixed(1)}" width="${Math.max(0.5, bw - 1).toFixed(1)}" height="${h.toFixed(1)}" fill="#d62728"/>`);
    });
    const every = Math.max(1, Math.ceil(bins / 8));
    for (let i = 0; i <= bins; i += every) {
      parts.push(`<text x="${(left + i * bw - 8).toFixed(1)}" y="${pad + plotH + 16}">${(((min + i) * binMs) / 1000).toFixed(1)}</text>`);
    }
    const st = distribution(d);
    parts.push(`<text x="${left}" y="${H - 8}">seconds after the crash; p50 ${(st.p50 / 1000).toFixed(1)} s, p99 ${(st.p99 / 1000).toFixed(1)} s</text>`);
  }
  parts.push(`<line x1="${left}" y1="${pad + plotH}" x2="${left + half}" y2="${pad + plotH}" stroke="black"/>`);
  parts.push("</svg>");
  return parts.join("\n");
}

/** How far (in periods) the simulated curve lags the analytic one at 50, 90 and 99 % reach. */
function disseminationLag(run: RunResult, analytic: number[]): { level: number; simulatedRounds: number | null; analyticRounds: number | null; lagPeriods: number | null }[] {
  const roundsPerPeriod = run.report.config.probeIntervalMs / run.report.config.gossipIntervalMs;
  return [0.5, 0.9, 0.99].map((level) => {
    const s = roundReaching(run.roundCurve, level);
    const a = roundReaching(analytic, level);
    const round2 = (v: number | null): number | null => (v === null ? null : Math.round(v * 100) / 100);
    return { level, simulatedRounds: round2(s), analyticRounds: round2(a), lagPeriods: s === null || a === null ? null : round2((s - a) / roundsPerPeriod) };
  });
}

async function main(): Promise<void> {
  const parsed = parseArgs(benchArgs(import.meta.url));
  if ("one" in parsed) {
    process.stdout.write(`${JSON.stringify(await runOne(parsed.one))}\n`);
    return;
  }
  const args = parsed;
  const maxWorkers = Math.max(...args.workers);
  const results: RunResult[] = [];
  const say = (line: string): void => {
    if (!args.json) process.stderr.write(`${line}\n`);
  };
  for (const nodes of args.nodes) {
    const warm = args.start === "warm" || (args.start === "auto" && nodes >= AUTO_WARM_NODES);
    for (const loss of args.losses) {
      for (const workers of loss === 0 ? args.workers : [maxWorkers]) {
        const spec: RunSpec = { nodes, periods: args.periods, loss, workers, warm, seed: DEFAULT_PARAMS.seed };
        const r = runChild(spec);
        results.push(r);
        say(`  ${nodes} nodes, loss ${loss}, ${workers} worker(s), ${warm ? "warm" : "cold"}: ${(r.wallMs / 1000).toFixed(1)} s, ${r.peakRssMiB} MiB`);
      }
    }
  }
  // Speed-up and identity per cluster size, from the lossless runs measured back to back.
  const scaling = args.nodes.map((nodes) => {
    const runs = results.filter((r) => r.spec.nodes === nodes && r.spec.loss === 0);
    const base = runs.find((r) => r.spec.workers === Math.min(...args.workers)) ?? runs[0];
    return {
      nodes,
      identical: runs.every((r) => r.report.traceHash === base?.report.traceHash),
      runs: runs.map((r) => ({
        workers: r.spec.workers,
        wallMs: r.wallMs,
        nodePeriodsPerSec: r.nodePeriodsPerSec,
        peakRssMiB: r.peakRssMiB,
        speedup: base === undefined ? null : Math.round((base.wallMs / r.wallMs) * 100) / 100,
      })),
    };
  });
  const largestLossless = [...results].reverse().find((r) => r.spec.loss === 0 && r.roundCurve.length > 0);
  const fanout = largestLossless?.report.config.gossipFanout ?? 3;
  const analytic = largestLossless === undefined ? [] : epidemicCurve(largestLossless.spec.nodes, fanout, ROUNDS);
  if (largestLossless !== undefined) {
    mkdirSync(dirname(args.svg), { recursive: true });
    writeFileSync(args.svg, svgPicture(largestLossless, analytic, largestLossless.report.config.gossipIntervalMs));
  }
  const rows = results.map((r) => {
    const det = distribution(r.detectionMs);
    return {
      nodes: r.spec.nodes,
      start: r.spec.warm ? "warm" : "cold",
      loss: r.spec.loss,
      workers: r.spec.workers,
      wallMs: r.wallMs,
      nodePeriodsPerSec: r.nodePeriodsPerSec,
      peakRssMiB: r.peakRssMiB,
      detectionP50Ms: Math.round(det.p50),
      detectionP99Ms: Math.round(det.p99),
      detectedByAll: `${r.report.detection.detectedByAll}/${r.report.detection.killed}`,
      falseSuspicions: r.report.falsePositives.suspicions,
      falseDeaths: r.report.falsePositives.deaths,
      repairedDeliveries: r.report.broadcasts.repaired,
      datagramsPerNodePerSec: r.report.traffic.datagramsPerNodePerSec,
      bytesPerNodePerSec: Math.round(r.report.traffic.bytesPerNodePerSec),
      agreedAtPeriod: r.report.convergence.agreedAtPeriod,
      traceHash: r.report.traceHash,
    };
  });
  const dissemination = results
    .filter((r) => r.spec.loss === 0 && r.spec.workers === maxWorkers && r.roundCurve.length > 0)
    .map((r) => {
      const curve = epidemicCurve(r.spec.nodes, r.report.config.gossipFanout, ROUNDS);
      return {
        nodes: r.spec.nodes,
        roundMs: r.report.config.gossipIntervalMs,
        periodMs: r.report.config.probeIntervalMs,
        lag: disseminationLag(r, curve),
        // Broadcast repair is not part of the epidemic model: its deliveries are counted apart (0: the curve is gossip alone).
        repairedDeliveries: r.report.broadcasts.repaired,
        perPeriod: r.report.broadcasts.curve.slice(0, 6),
        simulated: r.roundCurve,
        analytic: curve.map((v) => Math.round(v * 10000) / 10000),
      };
    });
  if (args.json) {
    console.log(
      JSON.stringify({
        suite: "cluster",
        node: process.version,
        cores: availableParallelism(),
        memoryGiB: Math.round(totalmem() / 2 ** 30),
        periods: args.periods,
        runs: rows,
        scaling,
        dissemination,
        svg: args.svg,
      }),
    );
    return;
  }
  console.log(`simulated clusters, lan preset, ${args.periods} periods, 3 crashes at period 10, seed ${DEFAULT_PARAMS.seed}`);
  console.table(rows);
  console.log("worker scaling (lossless runs, back to back):");
  for (const s of scaling) {
    console.log(`  ${s.nodes} nodes: identical reports: ${s.identical ? "yes" : "NO"}`);
    console.table(s.runs);
  }
  for (const d of dissemination) {
    console.log(`dissemination, ${d.nodes} nodes: rounds of ${d.roundMs} ms to reach a share of the nodes, simulated vs analytic (lag in ${d.periodMs} ms periods); deliveries by broadcast repair, not in the model: ${d.repairedDeliveries}:`);
    console.table(d.lag);
  }
  console.log(`picture: ${args.svg}`);
}

await main();
