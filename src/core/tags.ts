/**
 * Member tags in the core: their canonical byte encoding, its check, and the size limit that
 * keeps a member's alive statement with its tags inside every datagram budget. The core treats
 * tags as bytes (keys and values are UTF-8 to the hosts, opaque here); hosts turn them into
 * strings (src/api/tags.ts).
 *
 * Encoding (the payload of a TAGS item, see wire/messages.ts):
 *   varint count, then count times: varint keyLength (1..MAX_TAG_KEY_BYTES), key bytes,
 *   varint valueLength, value bytes. Keys are unique and in ascending byte order, so one set
 *   of tags has exactly one encoding (a change is a byte difference).
 *
 * Limit: the encoding is at most maxTagsBytes(config) bytes, so that the largest SYNC or GOSSIP
 * header (with a cookie), the largest ALIVE item and the TAGS item fit one datagram of
 * maxPacketBytes (envelope included). Probe datagrams (probePacketBytes) carry the statement
 * only when it fits there too; otherwise it travels in gossip and member-list datagrams.
 */

import type { SwimConfig } from "./config.js";
import { varintBytes, writeVarint } from "./wire/codec.js";
import { FIXED_HEADER_BYTES, SEALED_OVERHEAD_BYTES } from "./wire/messages.js";

/** Longest key (bytes). */
export const MAX_TAG_KEY_BYTES = 128;
/** An upper bound for every config: no tags above this many encoded bytes (large datagrams included). */
export const MAX_TAGS_BYTES_CAP = 4096;
/** The encoding of no tags at all. */
export const EMPTY_TAGS: Uint8Array = Uint8Array.of(0);

/**
 * Bytes before a TAGS item's payload in the worst case: the largest SYNC header (IPv6 sender,
 * 5-byte incarnation, flags, 5-byte seq), a COOKIE_ECHO item (10), the largest ALIVE item
 * (tag, 5-byte incarnation, IPv6 member: 25), and the TAGS item's tag and 2-byte length.
 */
export const TAGS_OVERHEAD_BYTES = FIXED_HEADER_BYTES + 19 + 5 + 1 + 5 + 10 + 25 + 3;

/** Largest encoded tags under `config` (bytes): 1232-byte datagrams hold 1159 (1130 sealed). */
export function maxTagsBytes(config: SwimConfig): number {
  const room = config.maxPacketBytes - (config.sealed ? SEALED_OVERHEAD_BYTES : 0) - TAGS_OVERHEAD_BYTES;
  return Math.max(1, Math.min(MAX_TAGS_BYTES_CAP, room));
}

export type TagPair = readonly [key: Uint8Array, value: Uint8Array];

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const d = (a[i] as number) - (b[i] as number);
    if (d !== 0) return d;
  }
  return a.length - b.length;
}

/** The canonical encoding of `pairs` (sorted here; a repeated key keeps its last value). RangeError on an empty or too long key. */
export function encodeTags(pairs: readonly TagPair[]): Uint8Array {
  const byKey = new Map<string, TagPair>();
  for (const pair of pairs) {
    const key = pair[0];
    if (key.length < 1 || key.length > MAX_TAG_KEY_BYTES) throw new RangeError(`a tag key has 1..${MAX_TAG_KEY_BYTES} bytes, got ${key.length}`);
    byKey.set(Array.from(key).join(","), pair);
  }
  const sorted = [...byKey.values()].sort((a, b) => compareBytes(a[0], b[0]));
  let size = varintBytes(sorted.length);
  for (const [k, v] of sorted) size += varintBytes(k.length) + k.length + varintBytes(v.length) + v.length;
  const out = new Uint8Array(size);
  let p = writeVarint(out, 0, sorted.length);
  for (const [k, v] of sorted) {
    p = writeVarint(out, p, k.length);
    out.set(k, p);
    p = writeVarint(out, p + k.length, v.length);
    out.set(v, p);
    p += v.length;
  }
  return out;
}

/**
 * The pairs of a canonical encoding, or a one-line problem: truncated, trailing bytes, a
 * non-minimal varint, an empty or too long key, keys not unique or out of order.
 */
export function decodeTags(bytes: Uint8Array): TagPair[] | string {
  let p = 0;
  const n = bytes.length;
  const varint = (): number => {
    let value = 0;
    for (let shift = 0, i = 0; i < 5; i++, shift += 7) {
      if (p >= n) return -1;
      const b = bytes[p++] as number;
      if (i === 4 && b > 0x0f) return -1;
      value += (b & 0x7f) * 2 ** shift;
      if (b < 0x80) return i > 0 && b === 0 ? -1 : value;
    }
    return -1;
  };
  const count = varint();
  if (count < 0) return "a bad tag count";
  // Every pair takes at least 3 bytes: no count beyond that is believed.
  if (count > n) return `${count} tags in ${n} bytes`;
  const pairs: TagPair[] = [];
  let previous: Uint8Array | null = null;
  for (let i = 0; i < count; i++) {
    const keyLength = varint();
    if (keyLength < 1 || keyLength > MAX_TAG_KEY_BYTES || keyLength > n - p) return `tag ${i}: a bad key length`;
    const key = bytes.slice(p, p + keyLength);
    p += keyLength;
    const valueLength = varint();
    if (valueLength < 0 || valueLength > n - p) return `tag ${i}: a bad value length`;
    const value = bytes.slice(p, p + valueLength);
    p += valueLength;
    if (previous !== null && compareBytes(previous, key) >= 0) return `tag ${i}: keys not unique and in order`;
    previous = key;
    pairs.push([key, value]);
  }
  if (p !== n) return `${n - p} bytes after the tags`;
  return pairs;
}

export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Why `bytes` cannot be a member's tags under `config` (a one-line reason), or null. */
export function tagsProblem(config: SwimConfig, bytes: Uint8Array): string | null {
  const limit = maxTagsBytes(config);
  if (bytes.length > limit) {
    return `the tags take ${bytes.length} bytes encoded, more than the ${limit} that fit a ${config.maxPacketBytes}-byte datagram${config.sealed ? " (sealed)" : ""} with the member's alive statement`;
  }
  const decoded = decodeTags(bytes);
  return typeof decoded === "string" ? `malformed tags: ${decoded}` : null;
}
