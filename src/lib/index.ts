/**
 * The `tamtam` package's main entry (`import { startAgent, simulate } from "tamtam"`): the
 * embeddable agent (src/lib/agent.ts) and the simulator (src/lib/simulate.ts). Each loads its
 * part of TamTam (the agent with grpc-js and pino, the simulator with piscina) on first use, so
 * importing the package costs little. The gRPC client is `tamtam/client` (src/lib/client.ts).
 */

import type { AgentHandle, StartAgentOptions } from "./agent.js";
import type { SimulateOptions } from "./simulate.js";
import type { SimReport } from "../sim/simulate.js";

export type { AgentErrorCode, AgentHandle, AgentSettings, EventStream, Member, StartAgentOptions } from "./agent.js";
export type { SimulateOptions } from "./simulate.js";
export type { SimReport } from "../sim/simulate.js";
export type { LogLevelName } from "../api/agent-api.js";

/**
 * Starts an agent in this process, as `tamtam agent` with the same settings and defaults
 * (see StartAgentOptions); resolves with its handle once it gossips and serves gRPC. Errors of
 * the handle's calls carry the agent's stable `code` (`NO_ANSWER`, `INVALID_ADDRESS`, ...).
 */
export async function startAgent(options: StartAgentOptions = {}): Promise<AgentHandle> {
  return (await import("./agent.js")).startAgent(options);
}

/** Runs a simulation as `tamtam simulate` does and resolves with its report (see SimulateOptions). */
export async function simulate(options: SimulateOptions = {}): Promise<SimReport> {
  return (await import("./simulate.js")).simulate(options);
}
