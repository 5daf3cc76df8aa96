/**
 * Member addresses: an IPv4 or IPv6 address plus a UDP port, parsed and formatted without
 * `node:net` so that the core stays pure. Members are keyed by the canonical text form
 * `1.2.3.4:9999` or `[2001:db8::1]:9999` (RFC 5952 for IPv6), which `key` holds.
 */

export type AddressFamily = 4 | 6;

export interface Address {
  readonly family: AddressFamily;
  /** 4 or 16 bytes, network order. */
  readonly ip: Uint8Array;
  /** 1..65535 */
  readonly port: number;
  /** Canonical `ip:port` / `[ip]:port` text; the member key. */
  readonly key: string;
  /**
   * A number for the (ip, port), the same for every Address object of it (also after the
   * intern tables forget it, and in every thread): exactly ip * 65536 + port for IPv4
   * (below 2^48), 2^52 plus a 52-bit hash of the bytes for IPv6. Member tables hash it; two
   * IPv6 addresses may share one, so equal ids do not prove equal addresses.
   */
  readonly id: number;
}

/**
 * The Address for `ip` and `port`. Addresses are interned: the same (ip, port) yields the same
 * frozen object while it is in use (see the intern tables below), so member keys are shared
 * strings whose hash is computed once, which keeps member-table lookups cheap when every
 * datagram names dozens of members. The IP bytes are copied; never mutate `Address.ip`.
 */
export function makeAddress(ip: Uint8Array, port: number): Address {
  if (ip.length !== 4 && ip.length !== 16) throw new RangeError(`an IP address has 4 or 16 bytes, not ${ip.length}`);
  if (!isValidPort(port)) throw new RangeError(`port must be an integer in 1..65535, got ${port}`);
  return ip.length === 4 ? internIpv4(ip, 0, port) : internIpv6(ip, 0, port);
}

/**
 * The intern tables, one per family, bounded: two generations of at most `internGeneration`
 * addresses each. A lookup that misses the young generation but finds the address in the old
 * one moves it to the young one; when the young one is full it becomes the old one and the
 * previous old one is dropped (its addresses that were not used since are forgotten, counted
 * in `internStats.evicted`). So the addresses in use (members, their suspectors, broadcast
 * origins) stay shared, while hostile datagrams naming random addresses cost at most
 * 2 * internGeneration addresses per family (about 400 bytes each for IPv4 and 560 for IPv6:
 * some 8 MB in all with the default), instead of growing with every address ever named.
 * Forgetting an address is correct, only slower: a later Address for it is a new object with
 * the same key and id.
 */
export const DEFAULT_INTERN_GENERATION = 4096;
let internGeneration = DEFAULT_INTERN_GENERATION;

/** Counters of the intern tables (this thread's; monotonic but `interned`, the addresses held now). */
export const internStats = { interned: 0, evicted: 0 };

/** The two generations of one family's table. */
class InternGenerations<K> {
  young = new Map<K, Address>();
  private old = new Map<K, Address>();

  /** The address at `id` from the old generation, taken out of it (the caller adds it back), or undefined. */
  take(id: K): Address | undefined {
    const a = this.old.get(id);
    if (a !== undefined) this.old.delete(id);
    return a;
  }

  /** Adds `a` to the young generation, which first becomes the old one if it is full. */
  add(id: K, a: Address): void {
    if (this.young.size >= internGeneration) {
      internStats.evicted += this.old.size;
      internStats.interned -= this.old.size;
      this.old = this.young;
      this.young = new Map();
    }
    this.young.set(id, a);
  }
}

const internedV4 = new InternGenerations<number>();
const internedV6 = new InternGenerations<string>();

/**
 * Sets the generation size of the intern tables (addresses per family and generation, at
 * least 64), for hosts that know they deal with more addresses at once (a simulator running
 * a large cluster in one thread). Tables in use keep their contents.
 */
export function setInternGeneration(addresses: number): void {
  if (!Number.isInteger(addresses) || addresses < 64) throw new RangeError(`an intern generation holds at least 64 addresses, got ${addresses}`);
  internGeneration = addresses;
}

/** The generation size of the intern tables now. */
export function internGenerationSize(): number {
  return internGeneration;
}

/** The interned IPv4 Address for bytes b[p..p+3] and `port` (1..65535, not checked). */
export function internIpv4(b: Uint8Array, p: number, port: number): Address {
  const id = ((((b[p] as number) << 24) | ((b[p + 1] as number) << 16) | ((b[p + 2] as number) << 8) | (b[p + 3] as number)) >>> 0) * 65536 + port;
  const a = internedV4.young.get(id);
  return a !== undefined ? a : internIpv4Miss(b, p, port, id);
}

function internIpv4Miss(b: Uint8Array, p: number, port: number, id: number): Address {
  let a = internedV4.take(id);
  if (a === undefined) {
    const ip = new Uint8Array(4);
    for (let i = 0; i < 4; i++) ip[i] = b[p + i] as number;
    a = Object.freeze({ family: 4 as const, ip, port, key: `${formatIp(ip)}:${port}`, id });
    internStats.interned++;
  }
  internedV4.add(id, a);
  return a;
}

/** The interned IPv6 Address for bytes b[p..p+15] and `port` (1..65535, not checked). */
export function internIpv6(b: Uint8Array, p: number, port: number): Address {
  // One call builds one flat 9-unit key (concatenation would build a rope to flatten first).
  const g = (i: number): number => ((b[p + i] as number) << 8) | (b[p + i + 1] as number);
  const id = String.fromCharCode(g(0), g(2), g(4), g(6), g(8), g(10), g(12), g(14), port);
  const a = internedV6.young.get(id);
  return a !== undefined ? a : internIpv6Miss(b, p, port, id);
}

function internIpv6Miss(b: Uint8Array, p: number, port: number, id: string): Address {
  let a = internedV6.take(id);
  if (a === undefined) {
    const ip = new Uint8Array(16);
    for (let i = 0; i < 16; i++) ip[i] = b[p + i] as number;
    a = Object.freeze({ family: 6 as const, ip, port, key: `[${formatIp(ip)}]:${port}`, id: ipv6Id(ip, port) });
    internStats.interned++;
  }
  internedV6.add(id, a);
  return a;
}

/** murmur3's finalizer: a bijection on 32-bit integers with full avalanche. */
export function fmix32(x: number): number {
  let h = x ^ (x >>> 16);
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return h ^ (h >>> 16);
}

/** Address.id of an IPv6 address: 2^52 + two hash lanes of 32 and 20 bits over bytes and port. */
function ipv6Id(ip: Uint8Array, port: number): number {
  let x = fmix32(0x243f6a88 ^ port);
  let y = fmix32(0x13198a2e ^ port);
  for (let i = 0; i < 16; i += 4) {
    const w = ((ip[i] as number) << 24) | ((ip[i + 1] as number) << 16) | ((ip[i + 2] as number) << 8) | (ip[i + 3] as number);
    x = fmix32(x ^ w);
    y = fmix32((y + Math.imul(w, 0x9e3779b1)) | 0);
  }
  return 2 ** 52 + (x >>> 0) * 2 ** 20 + (y >>> 12);
}

export function isValidPort(port: number): boolean {
  return Number.isInteger(port) && port >= 1 && port <= 65535;
}

/** Parses IPv4 dotted-quad or IPv6 text (with `::`, embedded IPv4, no zone). Null if invalid. */
export function parseIp(text: string): Uint8Array | null {
  if (text.includes(":")) return parseIpv6(text);
  return parseIpv4(text);
}

function parseIpv4(text: string): Uint8Array | null {
  const parts = text.split(".");
  if (parts.length !== 4) return null;
  const out = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    const p = parts[i] as string;
    if (!/^(0|[1-9][0-9]{0,2})$/.test(p)) return null;
    const v = Number(p);
    if (v > 255) return null;
    out[i] = v;
  }
  return out;
}

function parseIpv6(text: string): Uint8Array | null {
  if (text.length > 45 || text.length < 2) return null;
  const halves = text.split("::");
  if (halves.length > 2) return null;
  // An embedded IPv4 address may only form the last 32 bits: the end of the tail after "::",
  // or the end of the whole address when there is no "::".
  const parseGroups = (s: string, mayEndInIpv4: boolean): number[] | null => {
    if (s === "") return [];
    const groups: number[] = [];
    const parts = s.split(":");
    for (let i = 0; i < parts.length; i++) {
      const p = parts[i] as string;
      if (mayEndInIpv4 && i === parts.length - 1 && p.includes(".")) {
        const v4 = parseIpv4(p);
        if (v4 === null) return null;
        groups.push(((v4[0] as number) << 8) | (v4[1] as number), ((v4[2] as number) << 8) | (v4[3] as number));
        continue;
      }
      if (!/^[0-9a-fA-F]{1,4}$/.test(p)) return null;
      groups.push(parseInt(p, 16));
    }
    return groups;
  };
  const head = parseGroups(halves[0] as string, halves.length === 1);
  const tail = halves.length === 2 ? parseGroups(halves[1] as string, true) : [];
  if (head === null || tail === null) return null;
  let groups: number[];
  if (halves.length === 2) {
    const missing = 8 - head.length - tail.length;
    if (missing < 1) return null;
    groups = [...head, ...new Array<number>(missing).fill(0), ...tail];
  } else {
    groups = head;
  }
  if (groups.length !== 8) return null;
  const out = new Uint8Array(16);
  for (let i = 0; i < 8; i++) {
    const g = groups[i] as number;
    out[2 * i] = g >> 8;
    out[2 * i + 1] = g & 0xff;
  }
  return out;
}

/** Canonical text of a 4- or 16-byte address (RFC 5952 for IPv6). */
export function formatIp(ip: Uint8Array): string {
  if (ip.length === 4) return `${ip[0]}.${ip[1]}.${ip[2]}.${ip[3]}`;
  const groups: number[] = [];
  for (let i = 0; i < 8; i++) groups.push(((ip[2 * i] as number) << 8) | (ip[2 * i + 1] as number));
  // IPv4-mapped addresses keep their dotted tail, as is conventional.
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) {
    return `::ffff:${ip[12]}.${ip[13]}.${ip[14]}.${ip[15]}`;
  }
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (g: number): string => g.toString(16);
  if (bestLen < 2) return groups.map(hex).join(":");
  const head = groups.slice(0, bestStart).map(hex).join(":");
  const tail = groups.slice(bestStart + bestLen).map(hex).join(":");
  return `${head}::${tail}`;
}

/**
 * Parses `ip:port`, `[ipv6]:port`, or a bare IP with `defaultPort`. Returns an Address or a
 * one-line reason.
 */
export function parseAddress(text: string, defaultPort?: number): Address | string {
  const trimmed = text.trim();
  let host: string;
  let portText: string | undefined;
  if (trimmed.startsWith("[")) {
    const close = trimmed.indexOf("]");
    if (close < 0) return `"${text}" is not an address: missing "]"`;
    host = trimmed.slice(1, close);
    const rest = trimmed.slice(close + 1);
    if (rest === "") portText = undefined;
    else if (rest.startsWith(":")) portText = rest.slice(1);
    else return `"${text}" is not an address: expected ":port" after "]"`;
  } else {
    const colons = trimmed.split(":").length - 1;
    if (colons === 1) {
      const i = trimmed.indexOf(":");
      host = trimmed.slice(0, i);
      portText = trimmed.slice(i + 1);
    } else {
      host = trimmed;
      portText = undefined;
    }
  }
  const ip = parseIp(host);
  if (ip === null) return `"${host}" is not an IPv4 or IPv6 address`;
  let port: number;
  if (portText === undefined) {
    if (defaultPort === undefined) return `"${text}" has no port (use ip:port or [ipv6]:port)`;
    port = defaultPort;
  } else {
    if (!/^[0-9]{1,5}$/.test(portText)) return `"${portText}" is not a port number`;
    port = Number(portText);
  }
  if (!isValidPort(port)) return `port ${port} is out of range 1..65535`;
  return makeAddress(ip, port);
}

/** Like parseAddress, but throws RangeError on invalid input (for trusted, programmatic use). */
export function addr(text: string): Address {
  const a = parseAddress(text);
  if (typeof a === "string") throw new RangeError(a);
  return a;
}

let lastKey = "";
let lastKeyAddress: Address | undefined;

/**
 * The Address whose canonical key is `key`, or undefined if `key` is not the canonical text of
 * an address. Remembers the last key, so that asking many member tables about one key (as
 * simulation checkers do) parses it once.
 */
export function addressOfKey(key: string): Address | undefined {
  if (key === lastKey && lastKeyAddress !== undefined) return lastKeyAddress;
  const a = parseAddress(key);
  if (typeof a === "string" || a.key !== key) return undefined;
  lastKey = key;
  lastKeyAddress = a;
  return a;
}
