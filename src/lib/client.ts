/**
 * The typed gRPC client of the `tamtam` package (`import { connect } from "tamtam/client"`): a
 * client of a running agent with one method per RPC of the TamTam service, derived from the
 * generated service descriptor (src/gen), so every RPC the proto declares is there with its
 * protobuf-es types and nothing is written by hand per RPC. It is the command line's own
 * gRPC client (src/rpc/h2-client.ts on src/rpc/h2-session.ts): neither grpc-js nor node:http2
 * to load, TCP or a Unix socket, the `--rpc-token` header, unary, server-streaming (async
 * iterators), client-streaming and bidirectional calls. Failures reject with GrpcCallError: the gRPC status (`code`,
 * `codeName`), the agent's message (`details`) and its stable error code (`agentCode`, the
 * `tamtam-error` trailer the command line reads too).
 */

import { type AgentClient, connectAgent } from "../cli/agent-client.js";
import { SETTINGS } from "../cli/settings.js";

export * from "../gen/service/tamtam_pb.js";
export { GrpcStatus, ERROR_CODE_TRAILER } from "../rpc/grpc-wire.js";
/** Per-call options: `timeoutMs` (deadline) and `signal` (cancels the call). */
export { GrpcCallError, type CallMetadata, type H2CallOptions as CallOptions } from "../rpc/h2-client.js";
export type { ServerStreamingCall } from "../rpc/adapter.js";

/** The client: a method per RPC of the service (`join`, `nodes`, `stream`, `installKey`, ...) and `close()`. */
export type TamTamClient = AgentClient;

export interface ConnectOptions {
  /** The token the agent requires (`--rpc-token`), sent as `authorization: Bearer TOKEN`; default none. */
  readonly token?: string;
  /** Deadline of unary calls that set no `timeoutMs` of their own (ms); default none. Streams never get one. */
  readonly timeoutMs?: number;
}

/**
 * A client of the agent at `address`: `host:port`, `[ipv6]:port` or `unix:PATH`; default the
 * command line's `--rpc` default (localhost:6262). It connects on the first call (a call then
 * fails with UNAVAILABLE when no agent answers) and again after the connection dropped;
 * `close()` ends the connection once its calls are over.
 */
export function connect(address: string = SETTINGS.rpc.default, options: ConnectOptions = {}): TamTamClient {
  return connectAgent(address, options.timeoutMs, options.token ?? null);
}
