/**
 * `tamtam simulate` as a library: turns user parameters into a scenario (victims and timings
 * drawn from the seed), runs the world with the monitor, and builds the report (as a plain
 * JSON-able object, byte-identical for the same parameters) and its readable text form.
 */

import { PRESETS, type SwimConfig } from "../core/config.js";
import { expectedConfirmations, retransmitLimit, suspicionMinTimeoutMs } from "../core/formulas.js";
import { Prng } from "../core/prng.js";
import { Monitor } from "./monitor.js";
import { mergeOutcomes, type SimOutcome, steadyNodes, type Violation, type ViolationKind } from "./outcome.js";
import { makeScenario, type Scenario, type ScenarioAction } from "./scenario.js";
import { type Distribution, distribution, round3 } from "./stats.js";
import { World } from "./world.js";
import type { SimParams } from "./params.js";

export { DEFAULT_PARAMS, type FlapSpec, type PartitionSpec, type SimParams } from "./params.js";

/** Turns parameters into a concrete scenario; every choice is drawn from the seed. */
export function planScenario(p: SimParams): Scenario {
  const period = (p.overrides.probeIntervalMs ?? PRESETS[p.preset].probeIntervalMs) as number;
  const rng = new Prng(p.seed, 0xfa17);
  const actions: ScenarioAction[] = [];
  const faultMs = p.faultPeriod * period;
  // Victims: distinct, never node 0 (the seed that late joiners use).
  const pool = rng.shuffle(Array.from({ length: Math.max(0, p.nodes - 1) }, (_, i) => i + 1));
  const take = (count: number): number[] => pool.splice(0, Math.min(count, pool.length));
  for (const node of take(p.kill)) actions.push({ kind: "kill", atMs: faultMs, node });
  for (const node of take(p.leave)) actions.push({ kind: "leave", atMs: faultMs, node });
  for (const node of take(p.restart)) {
    actions.push({ kind: "kill", atMs: faultMs, node });
    actions.push({ kind: "restart", atMs: faultMs + p.restartAfterPeriods * period, node });
  }
  for (const node of take(p.pause)) actions.push({ kind: "pause", atMs: faultMs, node, durationMs: p.pausePeriods * period });
  if (p.flap !== null) {
    const cycleMs = (p.flap.downPeriods + p.flap.upPeriods) * period;
    for (const node of take(p.flap.nodes)) {
      for (let c = 0; c < p.flap.cycles; c++) {
        const atMs = faultMs + c * cycleMs;
        actions.push({ kind: "deafen", atMs, untilMs: atMs + p.flap.downPeriods * period, node });
      }
    }
  }
  if (p.partition !== null) {
    const splitAt = Math.max(1, Math.min(p.nodes - 1, Math.round(p.nodes * p.partition.fraction)));
    actions.push({
      kind: "partition",
      atMs: p.partition.fromPeriod * period,
      untilMs: (p.partition.toPeriod + 1) * period,
      splitAt,
      oneWay: p.partition.oneWay,
    });
  }
  if (p.broadcasts > 0) {
    const disturbed = new Set(actions.filter((a) => "node" in a).map((a) => (a as { node: number }).node));
    const undisturbed = Array.from({ length: p.nodes }, (_, i) => i).filter((i) => !disturbed.has(i));
    const senders = p.broadcastSenders > 0 ? undisturbed.slice(0, p.broadcastSenders) : undisturbed;
    // Broadcasts go out over the middle half of the run after the fault period.
    const span = Math.max(1, (p.periods - p.faultPeriod) * period * 0.5);
    for (let b = 0; b < p.broadcasts; b++) {
      const node = senders.length > 0 ? (senders[rng.nextInt(senders.length)] as number) : 0;
      const atMs = faultMs + Math.floor((span * b) / p.broadcasts) + 1;
      actions.push({ kind: "broadcast", atMs, node, bytes: p.broadcastBytes });
    }
  }
  return makeScenario({
    nodes: p.nodes,
    seed: p.seed,
    preset: p.preset,
    overrides: { ...p.overrides, lifeguard: p.lifeguard },
    periods: p.periods,
    network: { latencyMinMs: p.latencyMinMs, latencyMeanMs: p.latencyMeanMs, lossRate: p.loss, duplicateRate: p.duplicate },
    addressing: p.addressing,
    restartIncarnation: p.restartIncarnation,
    warmStart: p.warmStart,
    tags: p.tags,
    clockSkewMs: p.clockSkewMs,
    actions,
  });
}

export interface SimReport {
  readonly format: "tamtam-simulation/1";
  readonly parameters: SimParams;
  readonly config: SwimConfig;
  readonly formulas: {
    readonly retransmitLimit: number;
    readonly suspicionMinMs: number;
    readonly suspicionMaxMs: number;
    readonly expectedConfirmations: number;
  };
  readonly convergence: {
    /** First period boundary after the last fault from which every running node agreed until the end, ms; null if never. */
    readonly agreedAtMs: number | null;
    readonly agreedAtPeriod: number | null;
    readonly agreeAtEnd: boolean;
    readonly lastFaultEndMs: number;
    /** Fraction of (node, member) pairs rightly known as live, per period. */
    readonly knownCurve: readonly number[];
  };
  readonly detection: {
    /** Crashes not followed by a restart within the run. */
    readonly killed: number;
    readonly detectedByAll: number;
    /** Time from crash to the first observer holding the node dead, ms. */
    readonly firstMs: Distribution;
    /** Time from crash to the last steady observer (that knew it) holding it dead, ms (crashes seen by all only). */
    readonly allMs: Distribution;
    /** Time from crash to each steady observer holding it dead, ms. */
    readonly perObserverMs: Distribution;
  };
  /**
   * Suspicions and deaths of nodes that were running and not paused: distinct episodes (member,
   * incarnation), and the observer transitions they caused.
   */
  readonly falsePositives: {
    readonly suspicions: number;
    readonly deaths: number;
    readonly suspectEvents: number;
    readonly deadEvents: number;
    /** Observers that reported a node dead after it had left gracefully (a violation on a fault-free network). */
    readonly leftReportedDead: number;
  };
  /**
   * The first partition: ms from its start until every observer held every running node across
   * the cut non-alive (suspect or dead), and dead; null when some pair never was (or > 4096 nodes).
   */
  readonly partitionSeen: { readonly crossPairs: number; readonly allNonAliveMs: number | null; readonly allDeadMs: number | null } | null;
  /** Member events of all observers about other nodes, and those an agent shows (flap damping holds the rest back). */
  readonly memberEvents: {
    readonly total: number;
    readonly shown: number;
    /** Shown events about the flapping nodes (--flap). */
    readonly shownAboutFlapping: number;
    readonly dampingStarted: number;
  };
  readonly broadcasts: {
    readonly sent: number;
    /** Deliveries to nodes that ran steadily from the send to the end, over their number. */
    readonly reach: number;
    readonly minReach: number;
    readonly latencyMs: Distribution;
    /** Mean fraction of steady nodes that had a broadcast, by whole periods after sending. */
    readonly curve: readonly number[];
    /**
     * Deliveries made by broadcast repair rather than gossip (counted by the nodes running at
     * the end); they are in reach, latency and curve too.
     */
    readonly repaired: number;
  };
  readonly traffic: {
    readonly datagramsPerNodePerSec: number;
    readonly bytesPerNodePerSec: number;
    readonly maxDatagramBytes: number;
    readonly datagramsDropped: number;
    readonly protocolErrors: number;
  };
  readonly violations: {
    readonly total: number;
    readonly byKind: Partial<Record<ViolationKind, number>>;
    readonly first: readonly Violation[];
  };
  readonly eventsProcessed: number;
  readonly traceHash: string;
  /** With tags: the fraction of (running node, other running node) pairs where the node held the other's tags at the end. */
  readonly tags: { readonly pairs: number; readonly known: number; readonly fraction: number };
}

export interface SimulationResult {
  readonly report: SimReport;
  readonly outcome: SimOutcome;
  /** The world, whose nodes' cores can be inspected after the run. */
  readonly world: World;
}

/** Runs the whole simulation in this thread, as one shard. */
export function runSimulation(params: SimParams): SimulationResult {
  const scenario = planScenario(params);
  const world = new World(scenario);
  const monitor = new Monitor(world);
  world.addObserver(monitor);
  world.run();
  const outcome = mergeOutcomes([monitor.outcome()]);
  return { report: buildReport(params, scenario, world.config, outcome), outcome, world };
}

/** The report of a run (one shard or many: the outcome is merged either way). */
export function buildReport(params: SimParams, scenario: Scenario, config: SwimConfig, outcome: SimOutcome): SimReport {
  const n = params.nodes;
  const minMs = suspicionMinTimeoutMs(config.suspicionMult, n, config.probeIntervalMs);
  const periodMs = config.probeIntervalMs;
  const endMs = scenario.periods * periodMs;

  // Convergence: the first period boundary strictly after the last fault from which every
  // running node agreed until the end. (A boundary is sampled before the events of its own
  // instant, so the fault's own boundary never counts.)
  let agreedAtPeriod: number | null = null;
  const firstPeriod = Math.floor(outcome.lastFaultEndMs / periodMs) + 1;
  for (let p = outcome.agreeCurve.length; p >= Math.max(1, firstPeriod) && outcome.agreeCurve[p - 1] === true; p--) {
    agreedAtPeriod = p;
  }

  // Detection of crashes, measured at observers that ran steadily through it.
  const first: number[] = [];
  const all: number[] = [];
  const perObserver: number[] = [];
  let detectedByAll = 0;
  let permanent = 0;
  for (const k of outcome.kills) {
    // A crash followed by a restart is not counted: the restart may come before detection.
    if (k.restartedAtMs !== null) continue;
    permanent++;
    // Observers that ran steadily through it and knew the node when it crashed.
    const observers = steadyNodes(outcome, k.atMs).filter((i) => i !== k.node && k.knownBy.has(i));
    let last = -1;
    let missing = false;
    for (const o of observers) {
      const t = k.detectedAtMs.get(o);
      if (t === undefined) {
        missing = true;
        continue;
      }
      perObserver.push(round3(t - k.atMs));
      last = Math.max(last, t - k.atMs);
    }
    let firstT = Infinity;
    for (const t of k.detectedAtMs.values()) firstT = Math.min(firstT, t - k.atMs);
    if (firstT !== Infinity) first.push(round3(firstT));
    if (!missing && last >= 0) {
      detectedByAll++;
      all.push(round3(last));
    }
  }

  // Broadcast reach among nodes that ran steadily from the send to the end.
  let eligible = 0;
  let reached = 0;
  let minReach = 1;
  const latencies: number[] = [];
  const horizon = Math.max(1, Math.min(30, scenario.periods));
  const curveSums = new Array<number>(horizon + 1).fill(0);
  let curveCount = 0;
  for (const rec of outcome.broadcasts.values()) {
    const steady = steadyNodes(outcome, rec.sentAtMs).filter((i) => i !== rec.origin);
    if (steady.length === 0) continue;
    let got = 0;
    const byPeriod = new Array<number>(horizon + 1).fill(0);
    for (const i of steady) {
      const t = rec.deliveredAtMs.get(i);
      if (t === undefined) continue;
      got++;
      latencies.push(round3(t - rec.sentAtMs));
      const p = Math.ceil((t - rec.sentAtMs) / periodMs);
      if (p <= horizon) byPeriod[p] = (byPeriod[p] as number) + 1;
    }
    eligible += steady.length;
    reached += got;
    minReach = Math.min(minReach, got / steady.length);
    let cumulative = 0;
    for (let p = 0; p <= horizon; p++) {
      cumulative += byPeriod[p] as number;
      curveSums[p] = (curveSums[p] as number) + cumulative / steady.length;
    }
    curveCount++;
  }

  const seconds = endMs / 1000;
  const total = Object.values(outcome.violationCounts).reduce((a, b) => a + (b ?? 0), 0);

  return {
    format: "tamtam-simulation/1",
    parameters: params,
    config,
    formulas: {
      retransmitLimit: retransmitLimit(config.retransmitMult, n),
      suspicionMinMs: minMs,
      suspicionMaxMs: config.lifeguard ? minMs * config.suspicionMaxTimeoutMult : minMs,
      expectedConfirmations: config.lifeguard ? expectedConfirmations(config.suspicionConfirmations, n) : 0,
    },
    convergence: {
      agreedAtMs: agreedAtPeriod === null ? null : agreedAtPeriod * periodMs,
      agreedAtPeriod,
      agreeAtEnd: outcome.agreeCurve[outcome.agreeCurve.length - 1] === true,
      lastFaultEndMs: outcome.lastFaultEndMs,
      knownCurve: outcome.knownCurve.map((x) => Math.round(x * 10000) / 10000),
    },
    detection: {
      killed: permanent,
      detectedByAll,
      firstMs: distribution(first),
      allMs: distribution(all),
      perObserverMs: distribution(perObserver),
    },
    falsePositives: {
      suspicions: outcome.falseSuspicions,
      deaths: outcome.falseDeaths,
      suspectEvents: outcome.falseSuspectEvents,
      deadEvents: outcome.falseDeadEvents,
      leftReportedDead: outcome.leftReportedDead,
    },
    partitionSeen:
      outcome.cutSeen === null
        ? null
        : { crossPairs: outcome.cutSeen.crossPairs, allNonAliveMs: outcome.cutSeen.nonAliveMs === null ? null : round3(outcome.cutSeen.nonAliveMs), allDeadMs: outcome.cutSeen.deadMs === null ? null : round3(outcome.cutSeen.deadMs) },
    memberEvents: {
      total: outcome.memberEvents,
      shown: outcome.memberEventsShown,
      shownAboutFlapping: outcome.memberEventsShownAboutFlapping,
      dampingStarted: outcome.dampingStarted,
    },
    broadcasts: {
      sent: outcome.broadcasts.size,
      reach: eligible === 0 ? 1 : round6(reached / eligible),
      minReach: curveCount === 0 ? 1 : round6(minReach),
      latencyMs: distribution(latencies),
      curve: curveSums.map((s) => (curveCount === 0 ? 1 : round6(s / curveCount))),
      repaired: outcome.broadcastsRepaired,
    },
    traffic: {
      datagramsPerNodePerSec: round3(outcome.datagramsSent / n / seconds),
      bytesPerNodePerSec: round3(outcome.bytesSent / n / seconds),
      maxDatagramBytes: outcome.maxDatagramBytes,
      datagramsDropped: outcome.datagramsDropped,
      protocolErrors: outcome.protocolErrors,
    },
    violations: { total, byKind: outcome.violationCounts, first: outcome.violations },
    eventsProcessed: outcome.eventsProcessed,
    traceHash: outcome.traceHash,
    tags: { pairs: outcome.tagPairs, known: outcome.tagsKnown, fraction: outcome.tagPairs === 0 ? 1 : round6(outcome.tagsKnown / outcome.tagPairs) },
  };
}

function round6(x: number): number {
  return Math.round(x * 1e6) / 1e6;
}

/** The readable summary printed by `tamtam simulate` without --json. */
export function formatReport(r: SimReport): string {
  const p = r.parameters;
  const lines: string[] = [];
  const ms = (x: number): string => (x >= 10_000 ? `${(x / 1000).toFixed(1)} s` : `${Math.round(x)} ms`);
  const pct = (x: number): string => `${(x * 100).toFixed(x === 1 ? 0 : 2)} %`;
  lines.push(
    `TamTam simulation: ${p.nodes} nodes, preset ${p.preset}, lifeguard ${p.lifeguard ? "on" : "off"}, ` +
      `${p.periods} periods of ${r.config.probeIntervalMs} ms, seed ${p.seed}`,
  );
  lines.push(
    `network: latency ${p.latencyMinMs}..~${p.latencyMeanMs} ms, loss ${pct(p.loss)}, duplication ${pct(p.duplicate)}, ${p.addressing}`,
  );
  lines.push(p.warmStart ? "start: warm (every node knows every other at time 0)" : "start: cold (every node joins node 0 in the first 100 ms)");
  const faults: string[] = [];
  if (p.kill > 0) faults.push(`${p.kill} crashed`);
  if (p.leave > 0) faults.push(`${p.leave} leave`);
  if (p.restart > 0) faults.push(`${p.restart} restarted after ${p.restartAfterPeriods} periods`);
  if (p.pause > 0) faults.push(`${p.pause} paused for ${p.pausePeriods} periods`);
  if (faults.length > 0) faults[0] = `at period ${p.faultPeriod}: ${faults[0]}`;
  if (p.partition !== null) {
    faults.push(
      `${p.partition.oneWay ? "one-way " : ""}partition ${Math.round(p.partition.fraction * 100)}/${Math.round((1 - p.partition.fraction) * 100)} ` +
        `in periods ${p.partition.fromPeriod}..${p.partition.toPeriod}`,
    );
  }
  if (p.flap !== null) {
    faults.push(`${p.flap.nodes} flapping (incoming traffic lost ${p.flap.downPeriods} periods, heard ${p.flap.upPeriods}, ${p.flap.cycles} times)`);
  }
  lines.push(`faults: ${faults.length === 0 ? "none" : faults.join("; ")}`);
  lines.push(
    `formulas: retransmit ${r.formulas.retransmitLimit}x, suspicion ${ms(r.formulas.suspicionMinMs)}..${ms(r.formulas.suspicionMaxMs)}, ` +
      `K=${r.formulas.expectedConfirmations}`,
  );
  lines.push("");
  const c = r.convergence;
  lines.push(
    c.agreedAtPeriod === null
      ? `convergence: NOT reached (${pct(c.knownCurve[c.knownCurve.length - 1] ?? 0)} of member pairs known at the end)`
      : `convergence: all running nodes agree at period ${c.agreedAtPeriod} (${ms(c.agreedAtMs ?? 0)})` +
          (c.lastFaultEndMs > 0 ? `, faults ended at ${ms(c.lastFaultEndMs)}` : ""),
  );
  const d = r.detection;
  if (d.killed > 0) {
    lines.push(
      `detection: ${d.detectedByAll}/${d.killed} crashes seen by all; first observer p50 ${ms(d.firstMs.p50)}; ` +
        `per observer p50 ${ms(d.perObserverMs.p50)} p99 ${ms(d.perObserverMs.p99)}; all observers max ${ms(d.allMs.max)}`,
    );
  }
  const fp = r.falsePositives;
  lines.push(
    `false positives: ${fp.suspicions} suspicions and ${fp.deaths} deaths of running nodes ` +
      `(${fp.suspectEvents} and ${fp.deadEvents} observer transitions)` +
      (fp.leftReportedDead > 0 ? `; ${fp.leftReportedDead} reports of a departed node as dead` : ""),
  );
  const cut = r.partitionSeen;
  if (cut !== null) {
    const seen = (x: number | null): string => (x === null ? "not all" : ms(x));
    lines.push(`partition seen: all ${cut.crossPairs} cross pairs non-alive after ${seen(cut.allNonAliveMs)}, dead after ${seen(cut.allDeadMs)}`);
  }
  const e = r.memberEvents;
  lines.push(
    `membership events: ${e.total} (${e.shown} shown to Monitor readers, ${e.shownAboutFlapping} of them about flapping nodes); ` +
      `${e.dampingStarted} damping episodes${r.config.flapDamping ? "" : " (flap damping off)"}`,
  );
  const b = r.broadcasts;
  if (b.sent > 0) {
    lines.push(
      `broadcasts: ${b.sent} sent, reach ${pct(b.reach)} (worst ${pct(b.minReach)}), latency p50 ${ms(b.latencyMs.p50)} p99 ${ms(b.latencyMs.p99)}, ${b.repaired} deliveries by repair`,
    );
  }
  const t = r.traffic;
  lines.push(
    `traffic: ${t.datagramsPerNodePerSec.toFixed(1)} datagrams and ${Math.round(t.bytesPerNodePerSec)} bytes per node per second; ` +
      `largest datagram ${t.maxDatagramBytes} bytes (limit ${r.config.maxPacketBytes})`,
  );
  lines.push(
    r.violations.total === 0
      ? "invariants: all held"
      : `invariants: ${r.violations.total} VIOLATIONS ${JSON.stringify(r.violations.byKind)}; first: ${r.violations.first[0]?.detail ?? ""}`,
  );
  if (r.parameters.tags) lines.push(`tags: ${r.tags.known} of ${r.tags.pairs} (node, member) pairs hold the member's tags at the end (${r.tags.fraction})`);
  lines.push(`trace ${r.traceHash}, ${r.eventsProcessed} events`);
  return lines.join("\n");
}
