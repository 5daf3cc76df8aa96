/**
 * Errors as the gRPC server sends them: an AgentError (agent-error.ts, which holds the one
 * table from the agent's stable codes to gRPC status codes) becomes an RpcError with the mapped
 * status, the one-line message and the stable code in the `tamtam-error` trailer; anything else
 * is INTERNAL.
 */

import { Metadata } from "@grpc/grpc-js";
import { RpcError } from "./adapter.js";
import { AGENT_ERROR_STATUS, AgentError, type AgentErrorCode, isAgentError } from "./agent-error.js";
import { ERROR_CODE_TRAILER } from "./grpc-wire.js";

export { AGENT_ERROR_STATUS, AgentError, type AgentErrorCode, ERROR_CODE_TRAILER, isAgentError };

/** Any error thrown by a handler, as the RpcError the server sends. */
export function toRpcError(err: unknown): RpcError {
  if (err instanceof RpcError) return err;
  const code: AgentErrorCode = isAgentError(err) ? err.code : "INTERNAL";
  const message = err instanceof Error ? err.message : String(err);
  const metadata = new Metadata();
  metadata.set(ERROR_CODE_TRAILER, code);
  return new RpcError(AGENT_ERROR_STATUS[code], message, metadata);
}
