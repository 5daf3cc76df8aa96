/**
 * The failure-detection study: the three seeded scenarios behind TamTam's detection figures
 * and defaults, shared by the detection benchmark (bench/detection.bench.ts) and its CI test
 * (test/sim-detection.test.ts), so that both measure the same thing.
 *
 * - `killUnderLoss`: a converged cluster loses one member to a crash while every datagram is
 *   lost with probability `loss`: how long until every other member holds it dead, and how
 *   many false suspicions and deaths the loss caused meanwhile (members that never failed).
 * - `partitionCrossDetection`: a converged cluster is cut in two halves: how long until every
 *   member holds every member across the cut non-alive (suspect, dead or left).
 *
 * Periods are the agent's default heartbeat (500 ms) unless the overrides say otherwise.
 */

import { DEFAULT_HEARTBEAT_MS, makeConfig, type SwimConfig } from "../core/config.js";
import { MemberState } from "../core/wire/messages.js";
import { DEFAULT_PARAMS, runSimulation } from "./simulate.js";
import { makeScenario } from "./scenario.js";
import { World, type WorldObserver } from "./world.js";

/** What one study run is given. */
export interface StudyCase {
  readonly nodes: number;
  readonly seed: number;
  /** Datagram loss rate 0..1, on every datagram for the whole run. */
  readonly loss: number;
  /** Protocol overrides on the `lan` preset; the period defaults to DEFAULT_HEARTBEAT_MS. */
  readonly overrides?: Partial<SwimConfig>;
  /** Each member's wall clock off by up to this much either way (ms); default 0. */
  readonly clockSkewMs?: number;
}

export interface KillOutcome {
  /** Crash to the last other member holding the victim dead (ms); null if some never did. */
  readonly deadAtAllMs: number | null;
  /** Distinct suspicions (member, incarnation) of members that never failed. */
  readonly falseSuspicions: number;
  /** Observer transitions to suspect they caused. */
  readonly falseSuspectEvents: number;
  /** Distinct deaths of members that never failed. */
  readonly falseDeaths: number;
}

/** The study's period and probe timeout on top of `overrides`: the agent's default heartbeat. */
export function studyOverrides(overrides: Partial<SwimConfig> = {}): Partial<SwimConfig> {
  const periodMs = overrides.probeIntervalMs ?? DEFAULT_HEARTBEAT_MS;
  const base = makeConfig("lan", overrides);
  return { probeTimeoutMs: Math.max(1, Math.round((periodMs * base.probeTimeoutPercent) / 100)), ...overrides, probeIntervalMs: periodMs };
}

/** Periods the cluster runs before the crash, and after it (30 s at 500 ms). */
const FAULT_PERIOD = 10;
const MEASURED_PERIODS = 60;

/** One crash in a converged cluster under loss `c.loss` (see the file comment). */
export function killUnderLoss(c: StudyCase): KillOutcome {
  const { report } = runSimulation({
    ...DEFAULT_PARAMS,
    nodes: c.nodes,
    seed: c.seed,
    periods: FAULT_PERIOD + MEASURED_PERIODS,
    warmStart: true,
    kill: 1,
    faultPeriod: FAULT_PERIOD,
    loss: c.loss,
    clockSkewMs: c.clockSkewMs ?? 0,
    overrides: studyOverrides(c.overrides),
  });
  return {
    deadAtAllMs: report.detection.detectedByAll === 1 ? report.detection.allMs.max : null,
    falseSuspicions: report.falsePositives.suspicions,
    falseSuspectEvents: report.falsePositives.suspectEvents,
    falseDeaths: report.falsePositives.deaths,
  };
}

/** What a partition study run found. */
export interface PartitionOutcome {
  /** Cut to the last cross pair (observer, member) first seen non-alive (ms); null if some never was. */
  readonly allNonAliveMs: number | null;
  /** That last pair, as node indices (null if none or never). */
  readonly lastPair: readonly [number, number] | null;
  /** Members suspected (or declared dead) after the cut by a member of their own side: false alarms. */
  readonly sameSideSuspicions: number;
}

/**
 * A converged cluster of `c.nodes` cut into halves at period 10 (for the rest of the run):
 * the time from the cut until every member holds every member of the other half non-alive,
 * and the false alarms on either side meanwhile (see PartitionOutcome).
 */
export function partitionCrossDetection(c: StudyCase): PartitionOutcome {
  const overrides = studyOverrides(c.overrides);
  const periodMs = overrides.probeIntervalMs as number;
  const splitAt = Math.floor(c.nodes / 2);
  const cutAtMs = FAULT_PERIOD * periodMs;
  const scenario = makeScenario({
    nodes: c.nodes,
    seed: c.seed,
    overrides,
    periods: FAULT_PERIOD + MEASURED_PERIODS,
    network: { latencyMinMs: DEFAULT_PARAMS.latencyMinMs, latencyMeanMs: DEFAULT_PARAMS.latencyMeanMs, lossRate: c.loss, duplicateRate: 0 },
    warmStart: true,
    clockSkewMs: c.clockSkewMs ?? 0,
    actions: [{ kind: "partition", atMs: cutAtMs, untilMs: (FAULT_PERIOD + MEASURED_PERIODS + 1) * periodMs, splitAt, oneWay: false }],
  });
  const world = new World(scenario);
  // Cross pairs (observer, member) not yet seen non-alive since the cut; the last one's time.
  const pending = new Set<number>();
  for (let o = 0; o < c.nodes; o++) for (let m = 0; m < c.nodes; m++) if (o < splitAt !== m < splitAt) pending.add(o * c.nodes + m);
  let allNonAliveMs: number | null = null;
  let lastPair: [number, number] | null = null;
  let sameSideSuspicions = 0;
  const observer: WorldObserver = {
    onCoreEvent(w, node, event) {
      if (event.type !== "member" || w.nowMs < cutAtMs || event.member.state === MemberState.Alive) return;
      const m = w.byKey.get(event.member.address.key);
      if (m === undefined) return;
      if (node.index < splitAt === m < splitAt) {
        if (event.previous === MemberState.Alive) sameSideSuspicions++;
        return;
      }
      if (!pending.delete(node.index * c.nodes + m)) return;
      if (pending.size === 0) {
        allNonAliveMs = w.nowMs - cutAtMs;
        lastPair = [node.index, m];
      }
    },
    onAction() {},
    onBroadcastSent() {},
    onPeriod() {},
    onWarmStart() {},
  };
  world.addObserver(observer);
  world.run();
  return { allNonAliveMs, lastPair, sameSideSuspicions };
}
