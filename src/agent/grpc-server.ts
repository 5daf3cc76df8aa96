/**
 * The agent's gRPC server: @grpc/grpc-js serving the TamTam service (src/rpc/service.ts) and
 * reflection over the agent's API, behind the `--rpc-token` check. Its own bundle
 * (dist/bin/agent-grpc.cjs), loaded by the RPC listener (rpc-listener.ts) when the first client
 * connects: grpc-js, node:http2, protobuf-es and the service's descriptors are a third of an
 * idle agent's memory, and an agent driven by event handlers may never be called at all.
 *
 * The server binds no socket of its own: the listener accepts connections and hands each one
 * to grpc-js through a connection injector.
 */

import type { Duplex } from "node:stream";
import * as grpc from "@grpc/grpc-js";
import { file_service_tamtam, TamTam } from "../gen/service/tamtam_pb.js";
import { addService } from "../rpc/adapter.js";
import { addReflection } from "../rpc/reflection.js";
import { tamTamService } from "../rpc/service.js";
import { requireToken } from "../rpc/token.js";
import type { AgentApi, LogLevelName } from "../api/agent-api.js";

/** What the listener needs of a loaded gRPC server. */
export interface GrpcServer {
  /** Serves gRPC on an accepted connection. */
  serve(connection: Duplex): void;
  /** Ends the server once its calls have ended; `done` runs then. */
  tryShutdown(done: () => void): void;
  /** Cuts every connection and call at once. */
  forceShutdown(): void;
}

export interface GrpcServerOptions {
  readonly rpcToken: string | null;
  readonly logLevel: LogLevelName;
}

export function createGrpcServer(api: AgentApi, options: GrpcServerOptions): GrpcServer {
  // grpc-js writes its own lines to stderr; the agent reports what matters itself.
  grpc.setLogVerbosity(options.logLevel === "trace" || options.logLevel === "all" ? grpc.logVerbosity.DEBUG : grpc.logVerbosity.NONE);
  // --rpc-token guards every method, reflection included, in one place (src/rpc/token.ts).
  const server = new grpc.Server(options.rpcToken === null ? {} : { interceptors: [requireToken(options.rpcToken)] });
  addService(server, TamTam, tamTamService(api));
  addReflection(server, [file_service_tamtam]);
  const injector = server.createConnectionInjector(grpc.ServerCredentials.createInsecure());
  return {
    serve: (connection) => injector.injectConnection(connection),
    tryShutdown: (done) => server.tryShutdown(() => done()),
    forceShutdown: () => server.forceShutdown(),
  };
}
