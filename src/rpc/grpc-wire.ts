/**
 * gRPC's own conventions, shared by the grpc-js adapter (adapter.ts) and the HTTP/2 client of
 * the command line (h2-client.ts): status codes, method paths, the messages' length prefix and
 * the trailer in which TamTam's agent names its errors. Plain constants, so that a CLI call never loads @grpc/grpc-js.
 */

import type { DescMethod } from "@bufbuild/protobuf";

/** gRPC status codes (the numbers are gRPC's and never change). */
export const GrpcStatus = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const;

export type GrpcStatusCode = (typeof GrpcStatus)[keyof typeof GrpcStatus];

const NAMES: ReadonlyMap<number, string> = new Map(Object.entries(GrpcStatus).map(([name, code]) => [code, name]));

/** `UNAVAILABLE` for 14; `UNKNOWN(99)` for a number that is no gRPC status. */
export function grpcStatusName(code: number): string {
  return NAMES.get(code) ?? `UNKNOWN(${code})`;
}

/** True for an integer that is a gRPC status code (Node errors carry string codes such as "ECONNREFUSED"). */
export function isGrpcStatusCode(value: unknown): value is GrpcStatusCode {
  return typeof value === "number" && NAMES.has(value);
}

/** Bytes before each gRPC message on the wire: a compression flag and the length (big-endian). */
export const MESSAGE_PREFIX_BYTES = 5;

/** One gRPC length-prefixed message: flag 0 (not compressed), the length, the bytes. */
export function framedMessage(bytes: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(MESSAGE_PREFIX_BYTES + bytes.length);
  out[0] = 0;
  out.writeUInt32BE(bytes.length, 1);
  out.set(bytes, MESSAGE_PREFIX_BYTES);
  return out;
}

/** Trailer in which the agent sends its stable error code (`NO_ANSWER`, `BROADCAST_TOO_LARGE`, ...). */
export const ERROR_CODE_TRAILER = "tamtam-error";

/** `/<package>.<Service>/<Method>`, e.g. `/service.TamTam/Join`. */
export function methodPath(method: DescMethod): string {
  return `/${method.parent.typeName}/${method.name}`;
}

/** Request header in which a client presents the agent's token (`--rpc-token`): `Bearer TOKEN`. */
export const AUTHORIZATION_HEADER = "authorization";
export const BEARER_PREFIX = "Bearer ";

/**
 * HOST and PORT of a TCP address `HOST:PORT` or `[IPV6]:PORT` (no white space, PORT 0..65535),
 * or null: the one reading of `--rpc`, `--metrics-address` and the command line's targets.
 */
export function parseHostPort(address: string): { host: string; port: number } | null {
  const m = /^(?:\[([^\][\s]+)\]|([^:\s[\]]+)):([0-9]{1,5})$/.exec(address);
  const port = m === null ? NaN : Number(m[3]);
  if (m === null || port > 65535) return null;
  return { host: (m[1] ?? m[2]) as string, port };
}

/**
 * The socket path of a `unix:` gRPC address, read as grpc-js reads it: `unix:PATH`, where PATH
 * is absolute (`unix:/run/tamtam.sock`) or relative to the working directory
 * (`unix:tamtam.sock`), or `unix:///ABSOLUTE/PATH`. Null for any other address (HOST:PORT);
 * an empty string for a `unix:` address without a usable path (`unix:`, `unix://host/path`).
 */
export function unixSocketPath(address: string): string | null {
  if (!address.startsWith("unix:")) return null;
  const rest = address.slice("unix:".length);
  if (rest.startsWith("//")) return rest.startsWith("///") ? rest.slice(2) : "";
  return rest;
}
