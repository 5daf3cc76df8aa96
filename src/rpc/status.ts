/**
 * Errors as the gRPC server sends them: an AgentError (src/api/errors.ts) becomes an RpcError
 * with the status of src/rpc/error-status.ts's table, the one-line message and the stable code
 * in the `tamtam-error` trailer; anything else is INTERNAL.
 */

import { Metadata } from "@grpc/grpc-js";
import { RpcError } from "./adapter.js";
import { type AgentErrorCode, isAgentError } from "../api/errors.js";
import { AGENT_ERROR_STATUS } from "./error-status.js";
import { ERROR_CODE_TRAILER } from "./grpc-wire.js";

/** Any error thrown by a handler, as the RpcError the server sends. */
export function toRpcError(err: unknown): RpcError {
  if (err instanceof RpcError) return err;
  const code: AgentErrorCode = isAgentError(err) ? err.code : "INTERNAL";
  const message = err instanceof Error ? err.message : String(err);
  const metadata = new Metadata();
  metadata.set(ERROR_CODE_TRAILER, code);
  return new RpcError(AGENT_ERROR_STATUS[code], message, metadata);
}
