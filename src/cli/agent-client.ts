/**
 * Everything a command that talks to the agent needs beyond the command line itself: the gRPC
 * client of the TamTam service (over node:http2, see src/rpc/h2-client.ts), the generated enums
 * the commands send, and the node table formatting. Commands import it on demand, so `tamtam
 * version` or `--help` never load protobuf-es or node:http2; in the bundled bin it is one file
 * (client.js, see scripts/bundle.mjs).
 */

import type { GenService } from "@bufbuild/protobuf/codegenv2";
import { TamTam } from "../gen/service/tamtam_pb.js";
import { AUTHORIZATION_HEADER, BEARER_PREFIX } from "../rpc/grpc-wire.js";
import { createH2Client, type H2ServiceClient } from "../rpc/h2-client.js";

export { LogLevel_Level } from "../gen/service/tamtam_pb.js";
export * from "./commands/node-table.js";

/** The typed client of the TamTam service. */
export type AgentClient = typeof TamTam extends GenService<infer M> ? H2ServiceClient<M> : never;

/**
 * A client of the agent at `rpc` (`host:port` or `unix:PATH`); unary calls without a timeout of
 * their own get `defaultTimeoutMs` (none when undefined). With a `token`, every call presents
 * it (`authorization: Bearer`). The package's public client (src/lib/client.ts) is this one.
 */
export function connectAgent(rpc: string, defaultTimeoutMs: number | undefined, token: string | null = null): AgentClient {
  const headers: Record<string, string> = token === null ? {} : { [AUTHORIZATION_HEADER]: `${BEARER_PREFIX}${token}` };
  return createH2Client(TamTam, rpc, { headers, ...(defaultTimeoutMs === undefined ? {} : { defaultTimeoutMs }) });
}
