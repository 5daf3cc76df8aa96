/**
 * src/api/checks.ts: the checks every front end of the agent applies before it calls the
 * AgentApi (agent-api.ts): the gRPC service (src/rpc/service.ts, src/rpc/broadcast-stream.ts)
 * and the library's startAgent handle (src/lib/agent.ts). Plain functions without gRPC or
 * protobuf, so that the library does not load the gRPC server to use them.
 */

import type { Address } from "../core/address.js";
import { AgentError } from "./errors.js";
import type { AgentApi } from "./agent-api.js";

/** Throws the agent error for a payload no broadcast can carry (empty, over the agent's limit). */
export function checkBroadcast(agent: Pick<AgentApi, "maxBroadcastBytes">, bytes: Uint8Array): void {
  if (bytes.length === 0) throw new AgentError("EMPTY_BROADCAST", "a broadcast needs at least 1 byte");
  if (bytes.length > agent.maxBroadcastBytes) {
    throw new AgentError("BROADCAST_TOO_LARGE", `a broadcast carries at most ${agent.maxBroadcastBytes} bytes, got ${bytes.length}`);
  }
}

/** Join through `target`, which must not be the agent itself. */
export async function checkedJoin(agent: AgentApi, target: Address): Promise<void> {
  if (target.key === agent.localAddress.key) throw new AgentError("SELF_ADDRESS", `${target.key} is this agent's own address`);
  await agent.join(target);
}

/** Drop `target` from the agent's table (the original `leave ADDR`); the agent itself leaves with LeaveCluster. */
export async function checkedForget(agent: AgentApi, target: Address): Promise<void> {
  if (target.key === agent.localAddress.key) {
    throw new AgentError("SELF_ADDRESS", `${target.key} is this agent itself; use LeaveCluster to leave gracefully`);
  }
  await agent.forget(target);
}

/** Broadcast `bytes`: 1..maxBroadcastBytes of them. */
export async function checkedBroadcast(agent: AgentApi, bytes: Uint8Array): Promise<void> {
  checkBroadcast(agent, bytes);
  await agent.broadcast(bytes);
}
