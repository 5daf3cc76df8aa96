/**
 * The one table that maps the agent's stable error codes to gRPC status codes. Handlers throw
 * AgentError; the server turns it into an RpcError with the mapped status and the one-line
 * message, so clients in any language see a proper status and a readable reason. The stable
 * code travels in the `tamtam-error` trailer for programs that want to branch on it.
 */

import { Metadata, status as GrpcStatus } from "@grpc/grpc-js";
import { RpcError } from "./adapter.js";
import { ERROR_CODE_TRAILER } from "./grpc-wire.js";

export const AGENT_ERROR_STATUS = {
  INVALID_ADDRESS: GrpcStatus.INVALID_ARGUMENT,
  INVALID_PORT: GrpcStatus.INVALID_ARGUMENT,
  EMPTY_BROADCAST: GrpcStatus.INVALID_ARGUMENT,
  BROADCAST_TOO_LARGE: GrpcStatus.INVALID_ARGUMENT,
  HEARTBEAT_OUT_OF_RANGE: GrpcStatus.INVALID_ARGUMENT,
  UNKNOWN_LOG_LEVEL: GrpcStatus.INVALID_ARGUMENT,
  SELF_ADDRESS: GrpcStatus.INVALID_ARGUMENT,
  INVALID_KEY: GrpcStatus.INVALID_ARGUMENT,
  INVALID_TIMEOUT: GrpcStatus.INVALID_ARGUMENT,
  INVALID_TAG: GrpcStatus.INVALID_ARGUMENT,
  TAGS_TOO_LARGE: GrpcStatus.INVALID_ARGUMENT,
  INVALID_QUERY: GrpcStatus.INVALID_ARGUMENT,
  QUERY_TOO_LARGE: GrpcStatus.INVALID_ARGUMENT,
  UNKNOWN_QUERY: GrpcStatus.NOT_FOUND,
  UNKNOWN_MEMBER: GrpcStatus.NOT_FOUND,
  NO_KEYRING: GrpcStatus.FAILED_PRECONDITION,
  UNKNOWN_KEY: GrpcStatus.FAILED_PRECONDITION,
  KEY_IS_PRIMARY: GrpcStatus.FAILED_PRECONDITION,
  NO_ANSWER: GrpcStatus.UNAVAILABLE,
  LEFT_CLUSTER: GrpcStatus.FAILED_PRECONDITION,
  TOO_MANY_SUBSCRIBERS: GrpcStatus.RESOURCE_EXHAUSTED,
  ENGINE_BUSY: GrpcStatus.RESOURCE_EXHAUSTED,
  BROADCAST_QUEUE_FULL: GrpcStatus.RESOURCE_EXHAUSTED,
  SHUTTING_DOWN: GrpcStatus.UNAVAILABLE,
  INTERNAL: GrpcStatus.INTERNAL,
} as const satisfies Record<string, GrpcStatus>;

/** Trailer that carries the AgentErrorCode. */
export { ERROR_CODE_TRAILER };

export type AgentErrorCode = keyof typeof AGENT_ERROR_STATUS;

export class AgentError extends Error {
  override readonly name = "AgentError";
  constructor(
    readonly code: AgentErrorCode,
    message: string,
  ) {
    super(message);
  }
}

/** Any error thrown by a handler, as the RpcError the server sends. */
export function toRpcError(err: unknown): RpcError {
  if (err instanceof RpcError) return err;
  const code: AgentErrorCode = err instanceof AgentError ? err.code : "INTERNAL";
  const message = err instanceof Error ? err.message : String(err);
  const metadata = new Metadata();
  metadata.set(ERROR_CODE_TRAILER, code);
  return new RpcError(AGENT_ERROR_STATUS[code], message, metadata);
}
