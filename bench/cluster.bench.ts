/**
 * Large simulated clusters: runs `tamtam simulate` scenarios (the real core in virtual time)
 * and reports what they cost and what the protocol does at that size:
 * - cost: wall time, simulated node-periods per second, peak memory;
 * - dissemination: the fraction of nodes that have a broadcast, per gossip round, against the
 *   analytic (logistic) epidemic curve for push gossip with the same fanout and round;
 * - failure detection: per-observer latency p50/p99 of crashed nodes;
 * - false positives at 0, 10 and 30 % loss; datagrams and bytes per node per second.
 * It also writes an SVG picture (dissemination curve and detection-time distribution).
 *
 *   node dist/bench/cluster.bench.js [--nodes 1000] [--periods 40] [--losses 0,0.1,0.3]
 *                                    [--svg bench/out/cluster.svg] [--json]
 */

import { mkdirSync, writeFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { dirname } from "node:path";
import { DEFAULT_PARAMS, runSimulation, type SimReport } from "../src/sim/simulate.js";
import { distribution } from "../src/sim/stats.js";

interface Args {
  nodes: number[];
  periods: number;
  losses: number[];
  svg: string;
  json: boolean;
}

function parseArgs(argv: string[]): Args {
  const a: Args = { nodes: [1000], periods: 40, losses: [0, 0.1, 0.3], svg: "bench/out/cluster.svg", json: false };
  for (let i = 0; i < argv.length; i++) {
    const next = (): string => argv[++i] ?? "";
    const arg = argv[i];
    if (arg === "--nodes") a.nodes = next().split(",").map(Number);
    else if (arg === "--periods") a.periods = Number(next());
    else if (arg === "--losses") a.losses = next().split(",").map(Number);
    else if (arg === "--svg") a.svg = next();
    else if (arg === "--json") a.json = true;
    else throw new Error(`unknown argument ${arg}`);
  }
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

interface RunResult {
  readonly nodes: number;
  readonly loss: number;
  readonly wallMs: number;
  readonly nodePeriodsPerSec: number;
  readonly heapMiB: number;
  readonly report: SimReport;
  /** Mean fraction of steady nodes that had a broadcast after r gossip rounds (0 % loss run only). */
  readonly roundCurve: number[];
  readonly detectionMs: number[];
}

function runOne(nodes: number, periods: number, loss: number, withBroadcasts: boolean): RunResult {
  const startedAt = process.hrtime.bigint();
  const { report, world, monitor } = runSimulation({
    ...DEFAULT_PARAMS,
    nodes,
    periods,
    loss,
    kill: 3,
    faultPeriod: 10,
    broadcasts: withBroadcasts ? 20 : 0,
  });
  const wallMs = Number(process.hrtime.bigint() - startedAt) / 1e6;
  const roundMs = world.config.gossipIntervalMs;
  const rounds = 20;
  const sums = new Array<number>(rounds + 1).fill(0);
  let counted = 0;
  for (const rec of monitor.broadcasts.values()) {
    const steady = monitor.steadyNodes(world, rec.sentAtMs).filter((i) => i !== rec.origin);
    if (steady.length === 0) continue;
    const byRound = new Array<number>(rounds + 1).fill(0);
    for (const i of steady) {
      const t = rec.deliveredAtMs.get(i);
      if (t === undefined) continue;
      const r = Math.ceil((t - rec.sentAtMs) / roundMs);
      if (r <= rounds) byRound[r] = (byRound[r] as number) + 1;
    }
    let cumulative = 1; // the origin has it from the start
    for (let r = 0; r <= rounds; r++) {
      cumulative += byRound[r] as number;
      sums[r] = (sums[r] as number) + cumulative / (steady.length + 1);
    }
    counted++;
  }
  const detectionMs: number[] = [];
  for (const k of monitor.kills) for (const t of k.detectedAtMs.values()) detectionMs.push(t - k.atMs);
  return {
    nodes,
    loss,
    wallMs: Math.round(wallMs),
    nodePeriodsPerSec: Math.round((nodes * periods) / (wallMs / 1000)),
    heapMiB: Math.round(process.memoryUsage().heapUsed / 2 ** 20),
    report,
    roundCurve: counted === 0 ? [] : sums.map((s) => Math.round((s / counted) * 10000) / 10000),
    detectionMs,
  };
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
  parts.push(`<text x="${pad}" y="${pad - 20}" font-weight="bold">Broadcast dissemination, ${run.nodes} nodes</text>`);
  parts.push(`<line x1="${pad}" y1="${pad + plotH}" x2="${pad + half}" y2="${pad + plotH}" stroke="black"/><line x1="${pad}" y1="${pad}" x2="${pad}" y2="${pad + plotH}" stroke="black"/>`);
  for (const f of [0, 0.5, 1]) parts.push(`<text x="${pad - 30}" y="${y(f) + 4}">${f}</text>`);
  for (let r = 0; r <= rounds; r++) parts.push(`<text x="${x(r) - 4}" y="${pad + plotH + 16}">${r}</text>`);
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
    const min = Math.floor(Math.min(...d) / binMs);
    const max = Math.floor(Math.max(...d) / binMs) + 1;
    const bins = Math.max(1, max - min);
    const counts = new Array<number>(bins).fill(0);
    for (const v of d) counts[Math.min(bins - 1, Math.floor(v / binMs) - min)]!++;
    const top = Math.max(...counts);
    const bw = half / bins;
    counts.forEach((c, i) => {
      const h = (c / top) * plotH;
      parts.push(`<rect x="${(left + i * bw + 0.5).toFixed(1)}" y="${(pad + plotH - h).toFixed(1)}" width="${Math.max(0.5, bw - 1).toFixed(1)}" height="${h.toFixed(1)}" fill="#d62728"/>`);
    });
    const tickEvery = Math.max(1, Math.ceil(bins / 8));
    for (let i = 0; i <= bins; i += tickEvery) {
      parts.push(`<text x="${(left + i * bw - 8).toFixed(1)}" y="${pad + plotH + 16}">${(((min + i) * binMs) / 1000).toFixed(1)}</text>`);
    }
    const st = distribution(d);
    parts.push(`<text x="${left}" y="${H - 8}">seconds after the crash; p50 ${(st.p50 / 1000).toFixed(1)} s, p99 ${(st.p99 / 1000).toFixed(1)} s</text>`);
  }
  parts.push(`<line x1="${left}" y1="${pad + plotH}" x2="${left + half}" y2="${pad + plotH}" stroke="black"/>`);
  parts.push("</svg>");
  return parts.join("\n");
}

const args = parseArgs(process.argv.slice(2));
const results: RunResult[] = [];
for (const n of args.nodes) {
  for (const loss of args.losses) {
    results.push(runOne(n, args.periods, loss, loss === 0));
    if (!args.json) process.stderr.write(`  ${n} nodes, loss ${loss}: ${results.at(-1)?.wallMs} ms\n`);
  }
}
const lossless = results.find((r) => r.loss === 0);
const fanout = lossless?.report.config.gossipFanout ?? 3;
const analytic = lossless === undefined ? [] : epidemicCurve(lossless.nodes, fanout, lossless.roundCurve.length - 1);
if (lossless !== undefined) {
  mkdirSync(dirname(args.svg), { recursive: true });
  writeFileSync(args.svg, svgPicture(lossless, analytic, lossless.report.config.gossipIntervalMs));
}
const rows = results.map((r) => {
  const det = distribution(r.detectionMs);
  return {
    nodes: r.nodes,
    loss: r.loss,
    wallMs: r.wallMs,
    nodePeriodsPerSec: r.nodePeriodsPerSec,
    heapMiB: r.heapMiB,
    detectionP50Ms: Math.round(det.p50),
    detectionP99Ms: Math.round(det.p99),
    falseSuspicions: r.report.falsePositives.suspicions,
    falseDeaths: r.report.falsePositives.deaths,
    datagramsPerNodePerSec: r.report.traffic.datagramsPerNodePerSec,
    bytesPerNodePerSec: Math.round(r.report.traffic.bytesPerNodePerSec),
    agreedAtPeriod: r.report.convergence.agreedAtPeriod,
  };
});
if (args.json) {
  console.log(
    JSON.stringify({
      suite: "cluster",
      node: process.version,
      cores: availableParallelism(),
      periods: args.periods,
      runs: rows,
      dissemination: lossless === undefined ? null : { roundMs: lossless.report.config.gossipIntervalMs, simulated: lossless.roundCurve, analytic: analytic.map((v) => Math.round(v * 10000) / 10000) },
      svg: args.svg,
    }),
  );
} else {
  console.log(`simulated clusters, lan preset, ${args.periods} periods, 3 crashes at period 10, seed ${DEFAULT_PARAMS.seed}`);
  console.table(rows);
  if (lossless !== undefined) {
    console.log(`dissemination per gossip round (${lossless.report.config.gossipIntervalMs} ms), simulated vs analytic epidemic (fanout ${fanout}):`);
    console.table(lossless.roundCurve.slice(0, 12).map((v, r) => ({ round: r, simulated: v, analytic: Math.round((analytic[r] ?? 1) * 10000) / 10000 })));
  }
  console.log(`picture: ${args.svg}`);
}
