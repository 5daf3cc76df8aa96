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
  overrides: {},
};
