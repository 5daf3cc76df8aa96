/**
 * src/api/errors.ts: the agent's stable error codes and AgentError, what the agent throws when
 * it refuses or fails a request: the library's callers get it as it is, gRPC clients (the CLI
 * among them) as the status of src/rpc/error-status.ts's table with the code in a trailer.
 *
 * Plain constants and one class, without @grpc/grpc-js: the agent throws these before its gRPC
 * server is loaded (it is loaded with the first connection, see src/agent/rpc-listener.ts), and
 * the agent and its gRPC layer are separate bundles. So an AgentError is recognised by its
 * shape (`isAgentError`), never with instanceof, which would fail across the two bundles.
 */

export const AGENT_ERROR_CODES = [
  "INVALID_ADDRESS",
  "INVALID_PORT",
  "EMPTY_BROADCAST",
  "BROADCAST_TOO_LARGE",
  "HEARTBEAT_OUT_OF_RANGE",
  "UNKNOWN_LOG_LEVEL",
  "SELF_ADDRESS",
  "INVALID_KEY",
  "INVALID_TIMEOUT",
  "INVALID_TAG",
  "TAGS_TOO_LARGE",
  "INVALID_QUERY",
  "QUERY_TOO_LARGE",
  "UNKNOWN_QUERY",
  "UNKNOWN_MEMBER",
  "NO_KEYRING",
  "UNKNOWN_KEY",
  "KEY_IS_PRIMARY",
  "NO_ANSWER",
  "LEFT_CLUSTER",
  "TOO_MANY_SUBSCRIBERS",
  "ENGINE_BUSY",
  "BROADCAST_QUEUE_FULL",
  "SHUTTING_DOWN",
  "INTERNAL",
] as const;

export type AgentErrorCode = (typeof AGENT_ERROR_CODES)[number];

const KNOWN_CODES: ReadonlySet<string> = new Set(AGENT_ERROR_CODES);

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
  return typeof code === "string" && KNOWN_CODES.has(code);
}
