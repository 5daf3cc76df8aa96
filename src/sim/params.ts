/**
 * The parameters of a simulation run and their defaults: what `tamtam simulate` offers as
 * options. Kept apart from the simulator itself so that the command line can describe its
 * options without loading the simulator.
 */

import type { PresetName, SwimConfig } from "../core/config.js";

/** Most worker threads one simulation may be sharded across. */
export const MAX_SIM_WORKERS = 64;

export interface PartitionSpec {
  /** First and last period of the partition. */
  readonly fromPeriod: number;
  readonly toPeriod: number;
  /** Share of the nodes on side A, 0 < f < 1. */
  readonly fraction: number;
  /** Drop only A→B traffic. */
  readonly oneWay: boolean;
}

export interface FlapSpec {
  readonly nodes: number;
  readonly downPeriods: number;
  readonly upPeriods: number;
  readonly cycles: number;
}

export interface SimParams {
  readonly nodes: number;
  readonly seed: number;
  readonly preset: PresetName;
  readonly periods: number;
  readonly lifeguard: boolean;
  /** Datagram loss rate 0..1, all run long. */
  readonly loss: number;
  readonly duplicate: number;
  readonly latencyMinMs: number;
  readonly latencyMeanMs: number;
  readonly addressing: "ipv4" | "ipv6" | "mixed";
  /** Nodes crashed at `faultPeriod`. */
  readonly kill: number;
  /** Nodes that leave gracefully at `faultPeriod`. */
  readonly leave: number;
  /** Nodes crashed at `faultPeriod` and restarted `restartAfterPeriods` later. */
  readonly restart: number;
  readonly restartAfterPeriods: number;
  /** Nodes paused at `faultPeriod` for `pausePeriods`. */
  readonly pause: number;
  readonly pausePeriods: number;
  readonly faultPeriod: number;
  readonly partition: PartitionSpec | null;
  /** Nodes whose incoming traffic is lost `downPeriods`, then restored `upPeriods`, `cycles` times from `faultPeriod`. */
  readonly flap: FlapSpec | null;
  /** User broadcasts, sent from random running nodes, evenly from `faultPeriod` on. */
  readonly broadcasts: number;
  readonly broadcastBytes: number;
  /** Where broadcasts come from: 0 = any running node; k = the first k nodes no fault touches. */
  readonly broadcastSenders: number;
  readonly restartIncarnation: "clock" | "zero";
  /** Start from a converged cluster (every node knows every other) instead of joining node 0. */
  readonly warmStart: boolean;
  /** Every node has tags (node=INDEX, role=web|db) that must reach every other node. */
  readonly tags: boolean;
  /** Each node's wall clock is off by up to this much either way (ms, drawn per node): the shared probe schedule's rounds. */
  readonly clockSkewMs: number;
  /** Extra protocol overrides (e.g. from tests). */
  readonly overrides: Partial<SwimConfig>;
}

export const DEFAULT_PARAMS: SimParams = {
  nodes: 100,
  seed: 1,
  preset: "lan",
  periods: 60,
  lifeguard: true,
  loss: 0,
  duplicate: 0,
  latencyMinMs: 0.2,
  latencyMeanMs: 1,
  addressing: "ipv4",
  kill: 0,
  leave: 0,
  restart: 0,
  restartAfterPeriods: 5,
  pause: 0,
  pausePeriods: 10,
  faultPeriod: 10,
  partition: null,
  flap: null,
  broadcasts: 0,
  broadcastBytes: 64,
  broadcastSenders: 0,
  restartIncarnation: "clock",
  warmStart: false,
  tags: false,
  clockSkewMs: 0,
  overrides: {},
};

/** Fields of SimParams that are integers. */
export type SimIntegerField =
  | "nodes" | "seed" | "periods" | "kill" | "leave" | "restart" | "restartAfterPeriods" | "pause" | "pausePeriods"
  | "faultPeriod" | "broadcasts" | "broadcastBytes" | "broadcastSenders";

/**
 * The inclusive range of every integer parameter, some depending on the cluster's size or the
 * run's length: what `tamtam simulate` and the library's simulate() accept alike.
 */
export const SIM_INTEGER_RANGES: Readonly<Record<SimIntegerField, (p: Pick<SimParams, "nodes" | "periods">) => readonly [number, number]>> = {
  nodes: () => [1, 131_072],
  seed: () => [0, 4_294_967_295],
  periods: () => [1, 1_000_000],
  kill: (p) => [0, p.nodes - 1],
  leave: (p) => [0, p.nodes - 1],
  restart: (p) => [0, p.nodes - 1],
  restartAfterPeriods: () => [1, 1_000_000],
  pause: (p) => [0, p.nodes - 1],
  pausePeriods: () => [1, 1_000_000],
  faultPeriod: (p) => [0, p.periods],
  broadcasts: () => [0, 1_000_000],
  broadcastBytes: () => [1, 65_000],
  broadcastSenders: () => [0, 1_000_000],
};

/** What `--reap-after` (the `reapAfterMs` override) accepts, in ms. */
export const REAP_AFTER_RANGE_MS: readonly [number, number] = [1000, 604_800_000];

/** The inclusive range of every part of a flapping spec, for a cluster of `nodes`. */
export const FLAP_RANGES: Readonly<Record<keyof FlapSpec, (nodes: number) => readonly [number, number]>> = {
  nodes: (nodes) => [1, nodes - 1],
  downPeriods: () => [1, 1_000_000],
  upPeriods: () => [1, 1_000_000],
  cycles: () => [1, 10_000],
};

/** The first problem of `p` as one line naming the parameter, or null; `name` says how a parameter is named. */
export function simParamsProblem(p: SimParams, name: (field: keyof SimParams) => string = String): string | null {
  const nodesPeriods = { nodes: Number.isInteger(p.nodes) ? p.nodes : 1, periods: Number.isInteger(p.periods) ? p.periods : 1 };
  for (const [field, range] of Object.entries(SIM_INTEGER_RANGES) as [SimIntegerField, (typeof SIM_INTEGER_RANGES)[SimIntegerField]][]) {
    const [min, max] = range(nodesPeriods);
    const v = p[field];
    if (!Number.isInteger(v) || v < min || v > max) return `${name(field)} must be an integer in ${min}..${max}, got ${String(v)}`;
  }
  for (const field of ["loss", "duplicate"] as const) {
    if (!(p[field] >= 0 && p[field] <= 1)) return `${name(field)} must be in 0..1, got ${String(p[field])}`;
  }
  if (!(p.latencyMinMs > 0)) return `${name("latencyMinMs")} must be above 0 ms, got ${String(p.latencyMinMs)}`;
  if (!(p.latencyMeanMs >= p.latencyMinMs)) return `${name("latencyMeanMs")} must be at least ${name("latencyMinMs")} (${p.latencyMinMs})`;
  if (!["ipv4", "ipv6", "mixed"].includes(p.addressing)) return `${name("addressing")} must be ipv4, ipv6 or mixed, got ${String(p.addressing)}`;
  if (p.restartIncarnation !== "clock" && p.restartIncarnation !== "zero") return `${name("restartIncarnation")} must be clock or zero`;
  if (p.flap !== null) {
    for (const [field, range] of Object.entries(FLAP_RANGES) as [keyof FlapSpec, (nodes: number) => readonly [number, number]][]) {
      const [min, max] = range(nodesPeriods.nodes);
      const v = p.flap[field];
      if (!Number.isInteger(v) || v < min || v > max) return `${name("flap")}.${field} must be an integer in ${min}..${max}, got ${String(v)}`;
    }
  }
  const part = p.partition;
  if (part !== null && !(part.fromPeriod >= 0 && part.toPeriod >= part.fromPeriod && part.fraction > 0 && part.fraction < 1)) {
    return `${name("partition")} must run from a period to a later one and split by a fraction strictly between 0 and 1`;
  }
  return null;
}
