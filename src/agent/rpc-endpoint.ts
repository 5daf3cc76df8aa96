/**
 * Where the agent serves gRPC (`--rpc`): a TCP `HOST:PORT`, or a Unix socket `unix:PATH`
 * (read as grpc-js reads it, see `unixSocketPath`; a relative PATH is resolved against the
 * working directory once, at start). This module owns the socket file's life: a stale socket
 * left by an agent that was killed is replaced, anything else at the path is refused; the
 * socket is created for its owner only (mode 0600) and removed when the agent stops. It also
 * says whether a TCP address is reachable from other machines (then the agent warns when no
 * `--rpc-token` guards it).
 */

import { chmodSync, lstatSync, rmSync } from "node:fs";
import { createConnection } from "node:net";
import { resolve } from "node:path";
import { parseIp } from "../core/address.js";
import { parseHostPort, unixSocketPath } from "../rpc/grpc-wire.js";

/** Mode of the agent's Unix socket: only its owner may connect. */
export const RPC_SOCKET_MODE = 0o600;

export interface RpcEndpoint {
  /** What the gRPC server binds: the TCP address as given, or `unix:/absolute/path`. */
  readonly bindAddress: string;
  /** The absolute socket path of a `unix:` address; null for TCP. */
  readonly socketPath: string | null;
}

/** The endpoint of an `--rpc` address; throws a one-line Error for a `unix:` address without a path. */
export function rpcEndpoint(rpc: string, cwd: string = process.cwd()): RpcEndpoint {
  const path = unixSocketPath(rpc);
  if (path === null) return { bindAddress: rpc, socketPath: null };
  if (path === "") throw new Error(`"${rpc}" names no socket path (use unix:PATH)`);
  const absolute = resolve(cwd, path);
  return { bindAddress: `unix:${absolute}`, socketPath: absolute };
}

function errorCode(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException).code;
}

/**
 * Makes `path` ready for a new socket: nothing is there, or a socket no process listens on any
 * more (removed). Throws a one-line Error (the reason, without the path's prefix) otherwise.
 */
export async function claimSocketPath(path: string): Promise<void> {
  let isSocket: boolean;
  try {
    isSocket = lstatSync(path).isSocket();
  } catch (err) {
    if (errorCode(err) === "ENOENT") return;
    throw new Error(`cannot look at ${path} (${errorCode(err) ?? (err as Error).message})`);
  }
  if (!isSocket) throw new Error(`${path} exists and is not a socket (remove it or choose another path with --rpc)`);
  const answer = await new Promise<"live" | "stale" | string>((done) => {
    const socket = createConnection({ path });
    socket.once("connect", () => {
      socket.destroy();
      done("live");
    });
    socket.once("error", (err) => done(errorCode(err) === "ECONNREFUSED" ? "stale" : (errorCode(err) ?? err.message)));
  });
  if (answer === "live") throw new Error("address already in use (is another agent running? choose another with --rpc)");
  if (answer !== "stale") throw new Error(`cannot use the socket ${path} (${answer})`);
  rmSync(path, { force: true });
}

/**
 * Runs `bind` with a umask that creates the socket for its owner only, so that it is never
 * reachable by others, not even between its creation and the chmod that follows.
 */
export async function withPrivateUmask<T>(bind: () => Promise<T>): Promise<T> {
  let previous: number | null = null;
  try {
    previous = process.umask(0o177);
  } catch {
    // Not allowed on a worker thread: the chmod after binding still applies.
  }
  try {
    return await bind();
  } finally {
    if (previous !== null) process.umask(previous);
  }
}

/** Gives the socket its mode (RPC_SOCKET_MODE); throws a one-line Error when that fails. */
export function secureSocket(path: string): void {
  try {
    chmodSync(path, RPC_SOCKET_MODE);
  } catch (err) {
    throw new Error(`cannot restrict ${path} to its owner (${errorCode(err) ?? (err as Error).message})`);
  }
}

/** Removes the agent's socket file, if it is (still) a socket. Never throws. */
export function removeSocket(path: string): void {
  try {
    if (lstatSync(path).isSocket()) rmSync(path, { force: true });
  } catch {
    // already gone
  }
}

/**
 * True when gRPC at `rpc` can only be reached from this machine: a Unix socket, `localhost`,
 * 127.0.0.0/8, ::1 (or ::ffff:127.x.y.z). A wildcard, another address or a host name can be
 * reached from elsewhere.
 */
export function isLocalOnly(rpc: string): boolean {
  if (unixSocketPath(rpc) !== null) return true;
  const host = parseHostPort(rpc)?.host ?? "";
  if (host.toLowerCase() === "localhost") return true;
  const ip = parseIp(host);
  if (ip === null) return false;
  if (ip.length === 4) return ip[0] === 127;
  const zeros = (from: number, to: number): boolean => ip.subarray(from, to).every((b) => b === 0);
  if (zeros(0, 15) && ip[15] === 1) return true; // ::1
  return zeros(0, 10) && ip[10] === 0xff && ip[11] === 0xff && ip[12] === 127; // ::ffff:127.0.0.0/104
}
