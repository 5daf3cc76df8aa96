/**
 * The multicast discovery announcement: a separate, tiny datagram format (not a gossip
 * message) that says "a member of cluster NAME is reachable at ADDRESS".
 *
 *   0  u8  0x54 'T'      magic
 *   1  u8  0x41 'A'      magic (A for announce; gossip uses 'm')
 *   2  u8  version = 1
 *   3  u8  cluster name length (1..64), then the UTF-8 name
 *      address (u8 family 4|6, 4 or 16 IP bytes, u16 port)
 *
 * Decoding never throws anything but ProtocolError.
 */

import { type Address, internIpv4, internIpv6 } from "../core/address.js";
import { ProtocolError } from "../core/errors.js";
import { ANNOUNCE_MAGIC_1, WIRE_MAGIC_0 } from "../core/wire/messages.js";

export const ANNOUNCE_VERSION = 1;
export const MAX_CLUSTER_NAME_BYTES = 64;

export interface Announcement {
  readonly clusterName: string;
  readonly address: Address;
}

const utf8 = new TextEncoder();
const utf8Strict = new TextDecoder("utf-8", { fatal: true });

/** Checks a cluster name; returns a one-line reason or null. */
export function clusterNameProblem(name: string): string | null {
  const bytes = utf8.encode(name).length;
  if (bytes < 1 || bytes > MAX_CLUSTER_NAME_BYTES) return `a cluster name has 1..${MAX_CLUSTER_NAME_BYTES} bytes, got ${bytes}`;
  return null;
}

export function encodeAnnouncement(a: Announcement): Uint8Array {
  const problem = clusterNameProblem(a.clusterName);
  if (problem !== null) throw new RangeError(problem);
  const name = utf8.encode(a.clusterName);
  const ipBytes = a.address.ip.length;
  const out = new Uint8Array(4 + name.length + 1 + ipBytes + 2);
  out[0] = WIRE_MAGIC_0;
  out[1] = ANNOUNCE_MAGIC_1;
  out[2] = ANNOUNCE_VERSION;
  out[3] = name.length;
  out.set(name, 4);
  let p = 4 + name.length;
  out[p++] = a.address.family;
  out.set(a.address.ip, p);
  p += ipBytes;
  out[p++] = a.address.port >> 8;
  out[p] = a.address.port & 0xff;
  return out;
}

export function decodeAnnouncement(b: Uint8Array): Announcement {
  if (b.length < 4) throw new ProtocolError("TRUNCATED", b.length, "announcement header");
  if (b[0] !== WIRE_MAGIC_0 || b[1] !== ANNOUNCE_MAGIC_1) throw new ProtocolError("BAD_MAGIC", 0);
  if (b[2] !== ANNOUNCE_VERSION) throw new ProtocolError("BAD_VERSION", 2, `version ${b[2]}`);
  const nameLength = b[3] as number;
  if (nameLength < 1 || nameLength > MAX_CLUSTER_NAME_BYTES) throw new ProtocolError("BAD_LENGTH", 3, `cluster name of ${nameLength} bytes`);
  let p = 4 + nameLength;
  if (p + 1 > b.length) throw new ProtocolError("TRUNCATED", b.length, "cluster name");
  let clusterName: string;
  try {
    clusterName = utf8Strict.decode(b.subarray(4, p));
  } catch {
    throw new ProtocolError("BAD_LENGTH", 4, "cluster name is not UTF-8");
  }
  const family = b[p] as number;
  const ipBytes = family === 4 ? 4 : family === 6 ? 16 : 0;
  if (ipBytes === 0) throw new ProtocolError("BAD_ADDRESS", p, `family ${family}`);
  p++;
  if (p + ipBytes + 2 !== b.length) {
    throw new ProtocolError(p + ipBytes + 2 > b.length ? "TRUNCATED" : "BAD_LENGTH", p, "announcement address");
  }
  const port = ((b[p + ipBytes] as number) << 8) | (b[p + ipBytes + 1] as number);
  if (port === 0) throw new ProtocolError("BAD_ADDRESS", p + ipBytes, "port 0");
  const address = family === 4 ? internIpv4(b, p, port) : internIpv6(b, p, port);
  return { clusterName, address };
}
