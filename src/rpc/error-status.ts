/**
 * src/rpc/error-status.ts: the one table that maps the agent's error codes (src/api/errors.ts)
 * to gRPC status codes. The gRPC layer (status.ts) turns an AgentError into the status of this
 * table with the one-line message, so clients in any language see a proper status and a
 * readable reason, and the stable code travels in the `tamtam-error` trailer for programs that
 * branch on it. Every code has an entry (the type says so).
 */

import type { AgentErrorCode } from "../api/errors.js";
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
} as const satisfies Record<AgentErrorCode, GrpcStatusCode>;
