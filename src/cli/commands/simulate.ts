/**
 * `tamtam simulate`: runs a deterministic cluster simulation with the real protocol core and
 * prints a summary (or one JSON object with --json). Same seed and parameters, same output.
 */

import { Command, Option, UsageError } from "clipanion";
import { PRESET_NAMES, type PresetName } from "../../core/config.js";
import {
  DEFAULT_PARAMS,
  FLAP_RANGES,
  type FlapSpec,
  MAX_SIM_WORKERS,
  type PartitionSpec,
  REAP_AFTER_RANGE_MS,
  SIM_INTEGER_RANGES,
  type SimParams,
} from "../../sim/params.js";

export class SimulateCommand extends Command {
  static override paths = [["simulate"]];
  static override usage = Command.Usage({
    description: "simulate a cluster with the real protocol core, in virtual time",
    details: `
      Runs N virtual nodes, each with the real SWIM + Lifeguard core, over a simulated network
      with latency, loss, duplication and partitions, and checks the protocol's invariants.
      Use it to plan a deployment: how fast a cluster converges, how fast a crash is detected,
      how many false positives a lossy network causes, and what the gossip costs.

      Node 0 is the seed every other node joins; with \`--warm-start\` every node starts already
      knowing every other (a converged cluster, no join storm), which large clusters need.
      Faults happen at \`--fault-period\`.

      \`--workers\` means what it means for \`tamtam agent\`: the number of worker threads that
      run protocol work, 0 for the main thread. 0 (the default) runs every node on the main
      thread; N (1..${MAX_SIM_WORKERS}) splits the nodes across N worker threads that advance in
      lock-step windows as long as the minimum latency (1 runs them all on one worker thread,
      leaving the main thread free). 0, 1 or N workers give the same result. The same seed and
      parameters always give the same result (and byte-identical \`--json\`).
      Exits with status 1 when an invariant was violated.
    `,
    examples: [
      ["Converge 1,000 nodes and crash 3 of them", "tamtam simulate --nodes 1000 --kill 3"],
      ["Lossy network without Lifeguard", "tamtam simulate --nodes 200 --loss 0.2 --lifeguard off"],
      ["A 50/50 partition in periods 10..50, as JSON", "tamtam simulate --partition 10-50 --periods 90 --json"],
      ["A Thread mesh", "tamtam simulate --preset thread --nodes 30 --ipv6 --loss 0.05"],
      ["10,000 converged nodes on 2 worker threads", "tamtam simulate --nodes 10000 --warm-start --periods 100 --kill 3 --workers 2"],
    ],
  });

  nodes = Option.String("--nodes,-n", String(DEFAULT_PARAMS.nodes), { description: "number of nodes (1..131072)" });
  seed = Option.String("--seed,-s", String(DEFAULT_PARAMS.seed), { description: "seed of every random choice (0..4294967295)" });
  periods = Option.String("--periods,-t", String(DEFAULT_PARAMS.periods), { description: "simulated protocol periods" });
  preset = Option.String("--preset", DEFAULT_PARAMS.preset, { description: `protocol preset: ${PRESET_NAMES.join(", ")}` });
  lifeguard = Option.String("--lifeguard", "on", { description: "Lifeguard extensions: on or off" });
  loss = Option.String("--loss", "0", { description: "datagram loss, 0..1 or a percentage like 20%" });
  duplicate = Option.String("--duplicate", "0", { description: "datagram duplication, 0..1 or a percentage" });
  latency = Option.String("--latency", `${DEFAULT_PARAMS.latencyMinMs}:${DEFAULT_PARAMS.latencyMeanMs}`, {
    description: "one-way latency MIN:MEAN in ms (exponential tail above MIN)",
  });
  ipv6 = Option.Boolean("--ipv6", false, { description: "IPv6 addresses (fd77::/64)" });
  mixed = Option.Boolean("--mixed", false, { description: "alternate IPv4 and IPv6 addresses" });
  kill = Option.String("--kill", "0", { description: "nodes crashed at the fault period" });
  leave = Option.String("--leave", "0", { description: "nodes leaving gracefully at the fault period" });
  restart = Option.String("--restart", "0", { description: "nodes crashed at the fault period and restarted" });
  restartAfter = Option.String("--restart-after", String(DEFAULT_PARAMS.restartAfterPeriods), {
    description: "periods before a crashed node restarts",
  });
  restartIncarnation = Option.String("--restart-incarnation", "clock", {
    description: "starting incarnation of a restarted node: clock (as the agent) or zero",
  });
  pause = Option.String("--pause", "0", { description: "nodes frozen at the fault period" });
  pauseFor = Option.String("--pause-for", String(DEFAULT_PARAMS.pausePeriods), { description: "periods a paused node stays frozen" });
  faultPeriod = Option.String("--fault-period", String(DEFAULT_PARAMS.faultPeriod), { description: "period at which faults happen" });
  partition = Option.String("--partition", {
    description: "FROM-TO[:FRACTION][:oneway]: split the nodes (50/50 by default) in periods FROM..TO",
  });
  flap = Option.String("--flap", {
    description: "NODES:DOWN:UP:CYCLES: NODES nodes lose their incoming traffic DOWN periods, then hear UP periods, CYCLES times from the fault period",
  });
  reapAfter = Option.String("--reap-after", { description: "ms after which dead members leave the tables (default: the preset's)" });
  flapDamping = Option.String("--flap-damping", "on", { description: "flap damping of members that keep failing and coming back: on or off" });
  broadcasts = Option.String("--broadcasts", "0", { description: "user broadcasts sent from random nodes after the fault period" });
  broadcastSenders = Option.String("--broadcast-senders", "0", {
    description: "nodes the broadcasts come from: 0 = any running node, k = the first k undisturbed nodes (k = 1: one producer)",
  });
  broadcastBytes = Option.String("--broadcast-bytes", String(DEFAULT_PARAMS.broadcastBytes), { description: "payload size of each broadcast" });
  warmStart = Option.Boolean("--warm-start", false, { description: "start from a converged cluster instead of joining node 0" });
  tags = Option.Boolean("--tags", false, { description: "give every node tags (node=INDEX, role=web|db) and report how many members hold them at the end" });
  workers = Option.String("--workers", "0", {
    description: `worker threads that run the nodes: 0 = on the main thread (default), or 1..${MAX_SIM_WORKERS} to split the nodes across`,
  });
  json = Option.Boolean("--json", false, { description: "print one JSON object (includes every parameter)" });
  timing = Option.Boolean("--timing", false, {
    description: "add the wall-clock run time, peak memory and sharding figures (makes --json output vary)",
  });

  async execute(): Promise<number> {
    const params = this.params();
    const workers = workerThreads(this.workers);
    const startedAt = process.hrtime.bigint();
    // The simulator (and piscina) load only when a simulation runs.
    const { formatReport, runSimulationSharded } = await import("../../sim/sharded.js");
    // 0: every node runs in this thread; N: N shards run on N worker threads.
    const { report, run } = await runSimulationSharded(params, workers);
    const wallMs = Number(process.hrtime.bigint() - startedAt) / 1e6;
    // Peak resident memory of the whole process, worker threads included.
    const peakRssMiB = Math.round(process.resourceUsage().maxRSS / 1024);
    const nodePeriodsPerSec = Math.round((params.nodes * params.periods) / (wallMs / 1000));
    if (this.json) {
      const out = this.timing ? { ...report, wallMs: Math.round(wallMs), peakRssMiB, nodePeriodsPerSec, run } : report;
      this.context.stdout.write(`${JSON.stringify(out)}\n`);
    } else {
      this.context.stdout.write(`${formatReport(report)}\n`);
      if (this.timing) {
        this.context.stdout.write(
          `ran in ${(wallMs / 1000).toFixed(2)} s wall time ${workers === 0 ? "on the main thread" : `on ${workers} worker thread${workers === 1 ? "" : "s"}`} ` +
            `(${nodePeriodsPerSec} node-periods/s, peak RSS ${peakRssMiB} MiB` +
            `${workers > 0 ? `, ${run.windows} windows, ${run.crossShardDatagrams} datagrams between shards` : ""})\n`,
        );
      }
    }
    return report.violations.total === 0 ? 0 : 1;
  }

  private params(): SimParams {
    const preset = this.preset as PresetName;
    if (!PRESET_NAMES.includes(preset)) throw new UsageError(`--preset must be one of ${PRESET_NAMES.join(", ")}, got "${this.preset}"`);
    if (this.lifeguard !== "on" && this.lifeguard !== "off") throw new UsageError(`--lifeguard must be on or off, got "${this.lifeguard}"`);
    if (this.restartIncarnation !== "clock" && this.restartIncarnation !== "zero") {
      throw new UsageError(`--restart-incarnation must be clock or zero, got "${this.restartIncarnation}"`);
    }
    if (this.ipv6 && this.mixed) throw new UsageError("use either --ipv6 or --mixed, not both");
    if (this.flapDamping !== "on" && this.flapDamping !== "off") throw new UsageError(`--flap-damping must be on or off, got "${this.flapDamping}"`);
    const range = (field: keyof typeof SIM_INTEGER_RANGES): readonly [number, number] => SIM_INTEGER_RANGES[field]({ nodes, periods });
    const nodes = int("--nodes", this.nodes, SIM_INTEGER_RANGES.nodes({ nodes: 1, periods: 1 }));
    const periods = int("--periods", this.periods, SIM_INTEGER_RANGES.periods({ nodes, periods: 1 }));
    const [latencyMinMs, latencyMeanMs] = latencyPair(this.latency);
    return {
      ...DEFAULT_PARAMS,
      nodes,
      seed: int("--seed", this.seed, range("seed")),
      preset,
      periods,
      lifeguard: this.lifeguard === "on",
      loss: fraction("--loss", this.loss),
      duplicate: fraction("--duplicate", this.duplicate),
      latencyMinMs,
      latencyMeanMs,
      addressing: this.ipv6 ? "ipv6" : this.mixed ? "mixed" : "ipv4",
      kill: int("--kill", this.kill, range("kill")),
      leave: int("--leave", this.leave, range("leave")),
      restart: int("--restart", this.restart, range("restart")),
      restartAfterPeriods: int("--restart-after", this.restartAfter, range("restartAfterPeriods")),
      restartIncarnation: this.restartIncarnation,
      pause: int("--pause", this.pause, range("pause")),
      pausePeriods: int("--pause-for", this.pauseFor, range("pausePeriods")),
      faultPeriod: int("--fault-period", this.faultPeriod, range("faultPeriod")),
      partition: this.partition === undefined ? null : partitionSpec(this.partition),
      broadcasts: int("--broadcasts", this.broadcasts, range("broadcasts")),
      broadcastBytes: int("--broadcast-bytes", this.broadcastBytes, range("broadcastBytes")),
      broadcastSenders: int("--broadcast-senders", this.broadcastSenders, range("broadcastSenders")),
      warmStart: this.warmStart,
      flap: this.flap === undefined ? null : flapSpec(this.flap, nodes),
      tags: this.tags,
      overrides: {
        flapDamping: this.flapDamping === "on",
        ...(this.reapAfter === undefined ? {} : { reapAfterMs: int("--reap-after", this.reapAfter, REAP_AFTER_RANGE_MS) }),
      },
    };
  }
}

/**
 * `--workers`: worker threads that run protocol work, 0 for the main thread, as for `tamtam
 * agent`. 0 runs every node here; N (1..MAX_SIM_WORKERS) runs N shards on N worker threads.
 */
function workerThreads(text: string): number {
  const n = /^[0-9]+$/.test(text.trim()) ? Number(text) : NaN;
  if (n >= 0 && n <= MAX_SIM_WORKERS) return n;
  throw new UsageError(`--workers must be 0 (the main thread) or 1..${MAX_SIM_WORKERS} worker threads, got "${text}"`);
}

function int(flag: string, text: string, [min, max]: readonly [number, number]): number {
  if (!/^-?[0-9]+$/.test(text.trim())) throw new UsageError(`${flag} must be an integer, got "${text}"`);
  const v = Number(text);
  if (v < min || v > max) throw new UsageError(`${flag} must be in ${min}..${max}, got ${v}`);
  return v;
}

function fraction(flag: string, text: string): number {
  const t = text.trim();
  const v = t.endsWith("%") ? Number(t.slice(0, -1)) / 100 : Number(t);
  if (t === "" || !Number.isFinite(v) || v < 0 || v > 1) throw new UsageError(`${flag} must be in 0..1 or 0%..100%, got "${text}"`);
  return v;
}

function flapSpec(text: string, nodes: number): FlapSpec {
  const m = /^([0-9]+):([0-9]+):([0-9]+):([0-9]+)$/.exec(text.trim());
  if (m === null) throw new UsageError(`--flap must be NODES:DOWN:UP:CYCLES (periods), like 1:20:20:8, got "${text}"`);
  return {
    nodes: int("--flap nodes", m[1] as string, FLAP_RANGES.nodes(nodes)),
    downPeriods: int("--flap down periods", m[2] as string, FLAP_RANGES.downPeriods(nodes)),
    upPeriods: int("--flap up periods", m[3] as string, FLAP_RANGES.upPeriods(nodes)),
    cycles: int("--flap cycles", m[4] as string, FLAP_RANGES.cycles(nodes)),
  };
}

function latencyPair(text: string): [number, number] {
  const m = /^([0-9]+(?:\.[0-9]+)?):([0-9]+(?:\.[0-9]+)?)$/.exec(text.trim());
  if (m === null) throw new UsageError(`--latency must be MIN:MEAN in ms, like 0.2:1, got "${text}"`);
  const min = Number(m[1]);
  const mean = Number(m[2]);
  if (mean < min) throw new UsageError(`--latency mean (${mean}) must be at least the minimum (${min})`);
  if (min <= 0) throw new UsageError("--latency minimum must be above 0 ms");
  return [min, mean];
}

function partitionSpec(text: string): PartitionSpec {
  const m = /^([0-9]+)-([0-9]+)(?::([0-9.]+%?))?(?::(oneway))?$/.exec(text.trim());
  if (m === null) throw new UsageError(`--partition must be FROM-TO[:FRACTION][:oneway], like 10-40 or 10-40:0.3:oneway, got "${text}"`);
  const fromPeriod = Number(m[1]);
  const toPeriod = Number(m[2]);
  if (toPeriod < fromPeriod) throw new UsageError(`--partition ends (${toPeriod}) before it starts (${fromPeriod})`);
  const f = m[3] === undefined ? 0.5 : fraction("--partition fraction", m[3]);
  if (f <= 0 || f >= 1) throw new UsageError("--partition fraction must be strictly between 0 and 1");
  return { fromPeriod, toPeriod, fraction: f, oneWay: m[4] !== undefined };
}
