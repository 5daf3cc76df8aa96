/**
 * The agent's stable error codes and the one table that maps them to gRPC status codes.
 * Handlers throw AgentError; the gRPC layer (status.ts) turns it into the status of this table
 * with the one-line message, so clients in any language see a proper status and a readable
 * reason, and the stable code travels in the `tamtam-error` trailer for programs that branch
 * on it.
 *
 * Plain constants and one class, without @grpc/grpc-js: the agent throws these before its gRPC
 * server is loaded (it is loaded with the first connection, see src/agent/rpc-listener.ts), and
 * the agent and its gRPC layer are separate bundles. So an AgentError is recognised by its
 * shape (`isAgentError`), never with instanceof, which would fail across the two bundles.
 */

import { GrpcStatus, type GrpcStatusCode } from "./grpc-wire.js";

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
} as const satisfies Record<string, GrpcStatusCode>;

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

/** True for an AgentError from either bundle (see the header). */
export function isAgentError(err: unknown): err is AgentError {
  if (!(err instanceof Error) || err.name !== "AgentError") return false;
  const code = (err as { code?: unknown }).code;
  return typeof code === "string" && Object.hasOwn(AGENT_ERROR_STATUS, code);
}
