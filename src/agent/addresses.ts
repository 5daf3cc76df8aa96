/**
 * Where the agent binds its gossip socket and which address it advertises to other members.
 * Advertising matters: members are keyed by address, so it must be one the others can reach.
 * Order: --advertise, else the --iface address, else a specific bind address, else (bind on
 * all interfaces) the machine's single non-loopback address of that family, as memberlist and
 * serf do; with none, loopback (a one-machine cluster), with several, the first and a warning.
 * Also which addresses reach the agent's own socket (isOwnGossipAddress): joining one of them
 * is joining itself.
 */

import type { NetworkInterfaceInfo } from "node:os";
import { type Address, makeAddress, parseAddress, parseIp } from "../core/address.js";
import type { AgentOptions } from "./options.js";

export interface GossipAddresses {
  readonly bindIp: string;
  readonly bindPort: number;
  readonly advertise: Address;
  readonly warnings: readonly string[];
}

function isWildcard(ip: string): boolean {
  return ip === "0.0.0.0" || ip === "::";
}

function usable(i: NetworkInterfaceInfo, family: 4 | 6): boolean {
  if (i.internal || (family === 4 ? i.family !== "IPv4" : i.family !== "IPv6")) return false;
  // Link-local IPv6 needs a scope id that a member address cannot carry.
  return !(family === 6 && i.address.toLowerCase().startsWith("fe80:"));
}

/** Throws Error with a one-line message when the options cannot work. */
export function resolveGossipAddresses(
  options: Pick<AgentOptions, "bind" | "port" | "iface" | "advertise">,
  interfaces: NodeJS.Dict<NetworkInterfaceInfo[]>,
): GossipAddresses {
  const warnings: string[] = [];
  const bindBytes = parseIp(options.bind);
  if (bindBytes === null) throw new Error(`--bind "${options.bind}" is not an IPv4 or IPv6 address`);
  const family: 4 | 6 = bindBytes.length === 4 ? 4 : 6;
  const at = (ip: string): Address => makeAddress(parseIp(ip) as Uint8Array, options.port);

  if (options.advertise !== null) {
    const a = parseAddress(options.advertise, options.port);
    if (typeof a === "string") throw new Error(`--advertise: ${a}`);
    if (isWildcard(a.key.replace(/:\d+$/, "").replace(/^\[|\]$/g, ""))) throw new Error("--advertise must be a specific address, not a wildcard");
    return { bindIp: options.bind, bindPort: options.port, advertise: a, warnings };
  }
  if (options.iface !== null) {
    const entries = interfaces[options.iface];
    if (entries === undefined) {
      throw new Error(`--iface: no interface "${options.iface}" (have ${Object.keys(interfaces).join(", ") || "none"})`);
    }
    const match = entries.find((i) => (family === 4 ? i.family === "IPv4" : i.family === "IPv6" && !i.address.startsWith("fe80:")));
    if (match === undefined) throw new Error(`--iface: interface "${options.iface}" has no IPv${family} address to advertise`);
    return { bindIp: options.bind, bindPort: options.port, advertise: at(match.address), warnings };
  }
  if (!isWildcard(options.bind)) return { bindIp: options.bind, bindPort: options.port, advertise: at(options.bind), warnings };

  const candidates: string[] = [];
  for (const [name, entries] of Object.entries(interfaces)) {
    for (const i of entries ?? []) if (usable(i, family)) candidates.push(`${i.address} (${name})`);
  }
  if (candidates.length === 0) {
    warnings.push(`no non-loopback IPv${family} address found: advertising loopback; only agents on this machine can join`);
    return { bindIp: options.bind, bindPort: options.port, advertise: at(family === 4 ? "127.0.0.1" : "::1"), warnings };
  }
  if (candidates.length > 1) {
    warnings.push(`several IPv${family} addresses (${candidates.join(", ")}): advertising the first; choose with --advertise or --iface`);
  }
  const first = (candidates[0] as string).replace(/ \(.*\)$/, "");
  return { bindIp: options.bind, bindPort: options.port, advertise: at(first), warnings };
}

/** Where the gossip socket listens and what it advertises: what isOwnGossipAddress compares with. */
export interface OwnGossipSocket {
  readonly bindIp: string;
  readonly bindPort: number;
  readonly advertise: Address;
}

const IPV4_MAPPED_PREFIX = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff];

/** `ip` as IPv4 bytes when it is IPv4 or IPv4-mapped IPv6, else null. */
function ipv4Of(ip: Uint8Array): Uint8Array | null {
  if (ip.length === 4) return ip;
  return IPV4_MAPPED_PREFIX.every((b, i) => ip[i] === b) ? ip.subarray(12) : null;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

/**
 * Whether datagrams sent to `target` reach this agent's own gossip socket: its advertised
 * address, or its port at an address the socket receives on (for a wildcard bind: loopback,
 * the unspecified address or an address of one of `interfaces`, in the socket's family, both
 * for `::`; otherwise the bind address itself). The core ignores datagrams that carry its own
 * address as sender, so a join sent there would never be answered.
 */
export function isOwnGossipAddress(target: Address, own: OwnGossipSocket, interfaces: NodeJS.Dict<NetworkInterfaceInfo[]>): boolean {
  if (target.key === own.advertise.key) return true;
  if (target.port !== own.bindPort) return false;
  const bind = parseIp(own.bindIp);
  if (bind === null) return false;
  if (!isWildcard(own.bindIp)) {
    const bind4 = ipv4Of(bind);
    const target4 = ipv4Of(target.ip);
    return bind4 !== null && target4 !== null ? sameBytes(bind4, target4) : sameBytes(bind, target.ip);
  }
  // A wildcard bind: "0.0.0.0" receives IPv4, "::" (dual stack) both families.
  const target4 = ipv4Of(target.ip);
  if (bind.length === 4 && target4 === null) return false;
  const local = (ip: Uint8Array): boolean => {
    const v4 = ipv4Of(ip);
    if (v4 !== null) return v4[0] === 127 || v4.every((b) => b === 0) || localIps(interfaces, 4).some((a) => sameBytes(a, v4));
    const loopbackOrAny = ip.subarray(0, 15).every((b) => b === 0) && (ip[15] === 1 || ip[15] === 0);
    return loopbackOrAny || localIps(interfaces, 6).some((a) => sameBytes(a, ip));
  };
  return local(target.ip);
}

/** The addresses of `interfaces` in `family`, as bytes. */
function localIps(interfaces: NodeJS.Dict<NetworkInterfaceInfo[]>, family: 4 | 6): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (const entries of Object.values(interfaces)) {
    for (const i of entries ?? []) {
      if ((family === 4) !== (i.family === "IPv4")) continue;
      const ip = parseIp(i.address.replace(/%.*$/, ""));
      if (ip !== null) out.push(ip);
    }
  }
  return out;
}
