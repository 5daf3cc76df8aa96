/**
 * The simulator of the `tamtam` package: `simulate(options)` runs what `tamtam simulate` runs
 * (the same parameters, defaults and checks, src/sim/params.ts) and resolves with its report.
 */

import { PRESET_NAMES } from "../core/config.js";
import { DEFAULT_PARAMS, MAX_SIM_WORKERS, type SimParams, simParamsProblem } from "../sim/params.js";
import type { SimReport } from "../sim/simulate.js";

export interface SimulateOptions extends Partial<Omit<SimParams, "overrides">> {
  /** Worker threads that run the nodes: 0 (default) this thread, 1..64 split the nodes across them. Same report either way. */
  readonly workers?: number;
}

/**
 * Runs a deterministic simulation (same options, same report) and resolves with the report;
 * `report.violations.total` is 0 when every invariant held. Rejects with a RangeError of one
 * line naming a bad option.
 */
export async function simulate(options: SimulateOptions = {}): Promise<SimReport> {
  const known = new Set([...Object.keys(DEFAULT_PARAMS), "workers"]);
  const unknown = Object.keys(options).filter((key) => !known.has(key) || key === "overrides");
  if (unknown.length > 0) throw new RangeError(`unknown option${unknown.length === 1 ? "" : "s"} ${unknown.join(", ")}`);
  const { workers = 0, ...given } = options;
  const params: SimParams = { ...DEFAULT_PARAMS, ...given };
  if (!PRESET_NAMES.includes(params.preset)) throw new RangeError(`option preset must be one of ${PRESET_NAMES.join(", ")}, got ${String(params.preset)}`);
  const problem = simParamsProblem(params, (field) => `option ${field}`);
  if (problem !== null) throw new RangeError(problem);
  if (!Number.isInteger(workers) || workers < 0 || workers > MAX_SIM_WORKERS) {
    throw new RangeError(`option workers must be 0 (this thread) or 1..${MAX_SIM_WORKERS} worker threads, got ${String(workers)}`);
  }
  // The simulator (and piscina) load with the first simulation, not with the package.
  const { runSimulationSharded } = await import("../sim/sharded.js");
  return (await runSimulationSharded(params, workers)).report;
}
