/**
 * Where the agent binds its gossip socket and which address it advertises to other members.
 * Advertising matters: members are keyed by address, so it must be one the others can reach.
 * Order: --advertise, else the --iface address, else a specific bind address, else (bind on
 * all interfaces) the machine's single non-loopback address of that family, as memberlist and
 * serf do; with none, loopback (a one-machine cluster), with several, the first and a warning.
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
