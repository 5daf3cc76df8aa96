/**
 * The agent's RPC listener: owns the listening sockets of `--rpc` and loads the gRPC server
 * (grpc-server.ts, its own bundle) when the first client connects, then hands it every
 * connection. Until then an agent holds neither grpc-js nor node:http2 nor protobuf-es, which
 * are a third of an idle agent's memory, and starts without loading them.
 *
 * A TCP address binds what grpc-js would bind for it: an IP literal as is; a host name on every
 * address it resolves to (`localhost`: 127.0.0.1 and ::1), all on one port (with port 0, the
 * port the first address got). Binding succeeds when one address does. `[::]` is dual-stack
 * where the system allows it, as with grpc-js, so it takes IPv4 clients too. A Unix socket path
 * is bound as given; the socket file's life is rpc-endpoint.ts's.
 *
 * Bounded: connections that arrive while the server loads wait, paused, up to
 * MAX_WAITING_CONNECTIONS; more are closed and counted.
 */

import { lookup } from "node:dns/promises";
import { isIP, createServer, type Server, type Socket } from "node:net";
import { parseHostPort } from "../rpc/grpc-wire.js";
import type { GrpcServer } from "./grpc-server.js";

/** Connections that may wait for the gRPC server to load; beyond it they are closed and counted. */
export const MAX_WAITING_CONNECTIONS = 64;

export interface RpcListenerCounters {
  /** Connections handed to the gRPC server. */
  connections: number;
  /** Connections closed unserved: too many waiting for the server to load, or it failed to load. */
  connectionsRefused: number;
  /** Times the gRPC server was loaded (0 until the first connection, then 1). */
  serverLoads: number;
}

export class RpcListener {
  readonly counters: RpcListenerCounters = { connections: 0, connectionsRefused: 0, serverLoads: 0 };
  private readonly servers: Server[] = [];
  private grpc: GrpcServer | null = null;
  private loading: Promise<void> | null = null;
  private loadFailed = false;
  private closed = false;
  private readonly waiting = new Set<Socket>();

  /**
   * @param loadServer builds the gRPC server (imports its bundle); called once, on the first connection.
   * @param onLoadError told when that fails (the listener then closes every connection).
   */
  constructor(
    private readonly loadServer: () => Promise<GrpcServer>,
    private readonly onLoadError: (err: Error) => void,
  ) {}

  /** True once a client connected and the gRPC server is loaded. */
  get serverLoaded(): boolean {
    return this.grpc !== null;
  }

  /** Listens on the Unix socket `path`; rejects with the OS error. */
  async listenUnix(path: string): Promise<void> {
    await this.listenOne({ path });
  }

  /** Listens on `HOST:PORT` (see the header); resolves to the port bound, rejects with the first error when no address could be bound. */
  async listenTcp(address: string): Promise<number> {
    const parsed = parseHostPort(address);
    if (parsed === null) throw new Error(`"${address}" is not HOST:PORT`);
    const host = parsed.host;
    let port = parsed.port;
    const ips = isIP(host) !== 0 ? [host] : (await lookup(host, { all: true, order: "ipv4first" })).map((a) => a.address);
    let firstError: Error | null = null;
    let bound = 0;
    for (const ip of [...new Set(ips)]) {
      try {
        port = await this.listenOne({ host: ip, port });
        bound++;
      } catch (err) {
        firstError ??= err as Error;
      }
    }
    if (bound === 0) throw firstError ?? new Error(`"${host}" resolves to no address`);
    return port;
  }

  private listenOne(options: { path: string } | { host: string; port: number }): Promise<number> {
    const server = createServer({ pauseOnConnect: true }, (socket) => this.accept(socket));
    return new Promise<number>((resolve, reject) => {
      server.once("error", reject);
      server.listen({ ...options, exclusive: true }, () => {
        server.off("error", reject);
        // A listening socket's later errors (rare: EMFILE on accept) are not fatal to the agent.
        server.on("error", () => undefined);
        this.servers.push(server);
        const bound = server.address();
        resolve(typeof bound === "object" && bound !== null ? bound.port : 0);
      });
    });
  }

  private accept(socket: Socket): void {
    if (this.closed || this.loadFailed) {
      this.refuse(socket);
      return;
    }
    if (this.grpc !== null) {
      this.serve(this.grpc, socket);
      return;
    }
    if (this.waiting.size >= MAX_WAITING_CONNECTIONS) {
      this.refuse(socket);
      return;
    }
    this.waiting.add(socket);
    socket.once("close", () => this.waiting.delete(socket));
    this.loading ??= this.load();
  }

  private async load(): Promise<void> {
    try {
      const grpc = await this.loadServer();
      this.counters.serverLoads++;
      if (this.closed) {
        grpc.forceShutdown();
        return;
      }
      this.grpc = grpc;
      for (const socket of this.waiting) this.serve(grpc, socket);
      this.waiting.clear();
    } catch (err) {
      this.loadFailed = true;
      this.onLoadError(err as Error);
      for (const socket of this.waiting) this.refuse(socket);
      this.waiting.clear();
    }
  }

  private serve(grpc: GrpcServer, socket: Socket): void {
    if (socket.destroyed) return;
    this.counters.connections++;
    grpc.serve(socket);
    socket.resume();
  }

  private refuse(socket: Socket): void {
    this.counters.connectionsRefused++;
    socket.destroy();
  }

  /**
   * Stops accepting, then lets the gRPC server's calls end for up to `graceMs` before cutting
   * them. Resolves when everything is closed.
   */
  async close(graceMs: number): Promise<void> {
    this.closed = true;
    const listening = Promise.all(this.servers.map((server) => new Promise<void>((done) => server.close(() => done()))));
    for (const socket of this.waiting) socket.destroy();
    this.waiting.clear();
    await this.loading;
    const grpc = this.grpc;
    if (grpc !== null) {
      await new Promise<void>((done) => {
        const force = setTimeout(() => {
          grpc.forceShutdown();
          done();
        }, graceMs);
        force.unref();
        grpc.tryShutdown(() => {
          clearTimeout(force);
          done();
        });
      });
    }
    await listening;
  }

  /** Closes everything at once (a start that failed). */
  forceClose(): void {
    this.closed = true;
    for (const server of this.servers) server.close();
    for (const socket of this.waiting) socket.destroy();
    this.waiting.clear();
    this.grpc?.forceShutdown();
  }
}
