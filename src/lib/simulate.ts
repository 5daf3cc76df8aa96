/**
 * The simulator of the `tamtam` package: `simulate(options)` runs what `tamtam simulate` runs
 * (the same parameters, defaults and checks, src/sim/params.ts) and resolves with its report.
 */

import { makeConfig, PRESET_NAMES } from "../core/config.js";
import { DEFAULT_PARAMS, MAX_SIM_WORKERS, REAP_AFTER_RANGE_MS, type SimParams, simParamsProblem } from "../sim/params.js";
import type { SimReport } from "../sim/simulate.js";

export interface SimulateOptions extends Partial<Omit<SimParams, "overrides">> {
  /** Worker threads that run the nodes: 0 (default) this thread, 1..64 split the nodes across them. Same report either way. */
  readonly workers?: number;
  /** Flap damping (`--flap-damping`); default the preset's (on). */
  readonly flapDamping?: boolean;
  /** ms after which dead members leave the tables (`--reap-after`); default the preset's. */
  readonly reapAfterMs?: number;
}

/**
 * Runs a deterministic simulation (same options, same report) and resolves with the report;
 * `report.violations.total` is 0 when every invariant held. Rejects with a RangeError of one
 * line naming a bad option.
 */
export async function simulate(options: SimulateOptions = {}): Promise<SimReport> {
  const known = new Set([...Object.keys(DEFAULT_PARAMS), "workers", "flapDamping", "reapAfterMs"]);
  const unknown = Object.keys(options).filter((key) => !known.has(key) || key === "overrides");
  if (unknown.length > 0) throw new RangeError(`unknown option${unknown.length === 1 ? "" : "s"} ${unknown.join(", ")}`);
  const { workers = 0, flapDamping, reapAfterMs, ...given } = options;
  const preset = given.preset ?? DEFAULT_PARAMS.preset;
  if (!PRESET_NAMES.includes(preset)) throw new RangeError(`option preset must be one of ${PRESET_NAMES.join(", ")}, got ${String(preset)}`);
  const [reapMin, reapMax] = REAP_AFTER_RANGE_MS;
  if (reapAfterMs !== undefined && !(Number.isInteger(reapAfterMs) && reapAfterMs >= reapMin && reapAfterMs <= reapMax)) {
    throw new RangeError(`option reapAfterMs must be an integer in ${reapMin}..${reapMax}, got ${String(reapAfterMs)}`);
  }
  // The overrides `tamtam simulate` sets: flap damping always (its default is the preset's), the reap time when given.
  const overrides = { flapDamping: flapDamping ?? makeConfig(preset).flapDamping, ...(reapAfterMs === undefined ? {} : { reapAfterMs }) };
  const params: SimParams = { ...DEFAULT_PARAMS, ...given, overrides };
  const problem = simParamsProblem(params, (field) => `option ${field}`);
  if (problem !== null) throw new RangeError(problem);
  if (!Number.isInteger(workers) || workers < 0 || workers > MAX_SIM_WORKERS) {
    throw new RangeError(`option workers must be 0 (this thread) or 1..${MAX_SIM_WORKERS} worker threads, got ${String(workers)}`);
  }
  // The simulator (and piscina) load with the first simulation, not with the package.
  const { runSimulationSharded } = await import("../sim/sharded.js");
  return (await runSimulationSharded(params, workers)).report;
}
