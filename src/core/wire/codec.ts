/**
 * The byte-exact codec of the gossip wire format (layout in messages.ts): item and header
 * sizes, pre-encoded items, the reusable DatagramWriter that builds every outgoing datagram,
 * and the decoder, which turns any byte string into a Datagram or a ProtocolError and nothing
 * else. Encoding rejects values the decoder would refuse (RangeError); decoding never reads
 * out of bounds and copies every byte it keeps, so the input buffer may be reused at once.
 */

import { internIpv4, internIpv6, type Address } from "../address.js";
import { ProtocolError, type ProtocolErrorCode } from "../errors.js";
import {
  FIXED_HEADER_BYTES,
  FLAG_SEALED,
  EXTENSION_TAG_MIN,
  ItemTag,
  MAX_DATAGRAM_BYTES,
  MAX_MESSAGE_TYPE,
  MemberState,
  MAX_RELAY_COUNT,
  MAX_DIGEST_ENTRIES,
  MAX_REPAIR_SEQS,
  MessageType,
  ANSWER_KEY_BYTES,
  ANSWER_MAC_BYTES,
  RELAY_ACK,
  RELAY_RESPONSE,
  REQUEST_ACK_WANTED,
  SYNC_REPLY_WANTED,
  WIRE_COOKIE_BYTES,
  WIRE_MAGIC_0,
  WIRE_MAGIC_1,
  WIRE_VERSION,
  type Body,
  type Datagram,
  type DigestEntry,
  type MemberUpdate,
  type RepairRequestBody,
  type RequestOptions,
  type UserBroadcast,
} from "./messages.js";
import { decodeTags } from "../tags.js";

// ---------------------------------------------------------------------------------------------
// Sizes. They also validate what they measure, so that every encoder (which always measures
// first) refuses values that would not decode.

/** Bytes of `value` as a minimal unsigned LEB128 varint (1..5). RangeError unless a u32. */
export function varintBytes(value: number): number {
  if (value >>> 0 !== value) throw new RangeError(`a varint holds an integer in 0..2^32-1, got ${value}`);
  return value < 0x80 ? 1 : value < 0x4000 ? 2 : value < 0x200000 ? 3 : value < 0x10000000 ? 4 : 5;
}

/** Bytes of an encoded address: 7 for IPv4, 19 for IPv6. RangeError if malformed. */
export function addressBytes(a: Address): number {
  const port = a.port;
  if (port >>> 0 !== port || port < 1 || port > 65535) throw new RangeError(`port must be in 1..65535, got ${port}`);
  const n = a.ip.length;
  if (a.family === 4 && n === 4) return 7;
  if (a.family === 6 && n === 16) return 19;
  throw new RangeError(`address family ${a.family} with ${n} IP bytes`);
}

/** Bytes of a complete membership item, tag included. */
export function updateItemBytes(u: MemberUpdate): number {
  const state = u.state;
  let n = 1 + varintBytes(u.incarnation) + addressBytes(u.member);
  if (state === MemberState.Suspect) {
    if (u.suspectedBy === undefined) throw new RangeError("a SUSPECT update needs suspectedBy");
    n += addressBytes(u.suspectedBy);
  } else if (state === MemberState.Alive || state === MemberState.Dead || state === MemberState.Left) {
    if (u.suspectedBy !== undefined) throw new RangeError("only a SUSPECT update carries suspectedBy");
  } else {
    throw new RangeError(`unknown member state ${String(state)}`);
  }
  const tags = u.tags;
  if (tags !== undefined) {
    if (state !== MemberState.Alive) throw new RangeError("only an ALIVE update carries tags");
    n += 1 + varintBytes(tags.length) + tags.length;
  }
  return n;
}

/** Bytes of a complete broadcast item, tag included. */
export function broadcastItemBytes(b: UserBroadcast): number {
  const len = b.payload.length;
  if (len < 1) throw new RangeError("a broadcast payload has at least 1 byte");
  return 1 + addressBytes(b.origin) + varintBytes(b.epoch) + varintBytes(b.seq) + varintBytes(len) + len;
}

function bodyBytes(body: Body): number {
  switch (body.type) {
    case MessageType.Ping:
    case MessageType.Ack:
    case MessageType.Nack:
      return varintBytes(body.seq);
    case MessageType.PingReq:
      return varintBytes(body.seq) + addressBytes(body.target);
    case MessageType.Join:
      return varintBytes(body.seq);
    case MessageType.Gossip:
      return 0;
    case MessageType.Sync:
      return 1 + varintBytes(body.seq);
    case MessageType.Cookie:
      checkCookie(body.cookie);
      return varintBytes(body.seq) + WIRE_COOKIE_BYTES;
    case MessageType.Request:
      checkFixed("an answer key", body.answerKey, ANSWER_KEY_BYTES);
      return varintBytes(body.epoch) + varintBytes(body.id) + varintBytes(body.kind) + ANSWER_KEY_BYTES + varintBytes(body.payload.length) + body.payload.length;
    case MessageType.Response:
      checkFixed("an answer MAC", body.mac, ANSWER_MAC_BYTES);
      return varintBytes(body.epoch) + varintBytes(body.id) + ANSWER_MAC_BYTES + varintBytes(body.payload.length) + body.payload.length;
    case MessageType.RequestAck:
      checkFixed("an answer MAC", body.mac, ANSWER_MAC_BYTES);
      return varintBytes(body.epoch) + varintBytes(body.id) + ANSWER_MAC_BYTES;
    case MessageType.Relay:
    case MessageType.Relayed:
      if (body.what !== RELAY_ACK && body.what !== RELAY_RESPONSE) throw new RangeError(`a relayed answer is an ack (0) or a response (1), got ${body.what}`);
      if (body.what === RELAY_ACK && body.payload.length > 0) throw new RangeError(`a relayed ack has no payload, got ${body.payload.length} bytes`);
      checkFixed("an answer MAC", body.mac, ANSWER_MAC_BYTES);
      return addressBytes(body.peer) + varintBytes(body.epoch) + varintBytes(body.id) + 1 + ANSWER_MAC_BYTES + varintBytes(body.payload.length) + body.payload.length;
    case MessageType.RepairRequest:
      return repairRequestBodyBytes(body);
    case MessageType.Repair:
      return 0;
    default:
      throw new RangeError(`unknown message type ${String((body as { type: unknown }).type)}`);
  }
}

/** Bytes of a REPAIR_REQUEST body. RangeError unless 1..MAX_REPAIR_SEQS strictly increasing u32 seqs. */
export function repairRequestBodyBytes(body: RepairRequestBody): number {
  const seqs = body.seqs;
  if (seqs.length < 1 || seqs.length > MAX_REPAIR_SEQS) throw new RangeError(`a repair request asks for 1..${MAX_REPAIR_SEQS} seqs, got ${seqs.length}`);
  let n = addressBytes(body.origin) + varintBytes(body.epoch) + varintBytes(body.maxAgeMs) + varintBytes(seqs.length) + varintBytes(seqs[0] as number);
  for (let i = 1; i < seqs.length; i++) {
    const delta = (seqs[i] as number) - (seqs[i - 1] as number);
    if (!(delta >= 1)) throw new RangeError(`repair request seqs must increase strictly, got ${seqs[i - 1]} then ${seqs[i]}`);
    n += varintBytes(delta);
    varintBytes(seqs[i] as number);
  }
  return n;
}

/** Bytes of one DIGEST entry. */
export function digestEntryBytes(e: DigestEntry): number {
  return addressBytes(e.origin) + varintBytes(e.epoch) + varintBytes(e.highestSeq);
}

function checkCookie(cookie: Uint8Array): void {
  checkFixed("a cookie", cookie, WIRE_COOKIE_BYTES);
}

function checkFixed(what: string, bytes: Uint8Array, length: number): void {
  if (!(bytes instanceof Uint8Array) || bytes.length !== length) throw new RangeError(`${what} has ${length} bytes, got ${String((bytes as Uint8Array | undefined)?.length)}`);
}

/** Bytes of a COOKIE_ECHO item: tag, length, cookie. */
export const COOKIE_ITEM_BYTES = 2 + WIRE_COOKIE_BYTES;
/** Bytes of a REQUEST_OPTIONS item: tag, length, flags, relay count. */
export const REQUEST_OPTIONS_ITEM_BYTES = 4;

function checkRequestOptions(o: RequestOptions): void {
  const n = o.relayCount;
  if (n >>> 0 !== n || n > MAX_RELAY_COUNT) throw new RangeError(`a relay count is 0..${MAX_RELAY_COUNT}, got ${n}`);
}

/** Bytes of fixed header + from + incarnation + body: everything before the items. */
export function headerBytes(from: Address, incarnation: number, body: Body): number {
  return FIXED_HEADER_BYTES + addressBytes(from) + varintBytes(incarnation) + bodyBytes(body);
}

// ---------------------------------------------------------------------------------------------
// Writers. Each takes a buffer and a position, returns the position after what it wrote, and
// trusts that the value was measured (validated) and that the buffer has room.

/** Writes `value` (measured with varintBytes) as a varint at `p`; returns the position after it. */
export function writeVarint(buf: Uint8Array, p: number, value: number): number {
  let v = value;
  while (v >= 0x80) {
    buf[p++] = (v & 0x7f) | 0x80;
    v >>>= 7;
  }
  buf[p++] = v;
  return p;
}

function writeAddress(buf: Uint8Array, p: number, a: Address): number {
  const ip = a.ip;
  if (a.family === 4) {
    buf[p] = 4;
    buf[p + 1] = ip[0] as number;
    buf[p + 2] = ip[1] as number;
    buf[p + 3] = ip[2] as number;
    buf[p + 4] = ip[3] as number;
    p += 5;
  } else {
    buf[p++] = 6;
    for (let i = 0; i < 16; i++) buf[p + i] = ip[i] as number;
    p += 16;
  }
  buf[p] = a.port >>> 8;
  buf[p + 1] = a.port & 0xff;
  return p + 2;
}

function writeHeader(buf: Uint8Array, from: Address, incarnation: number, body: Body): number {
  buf[0] = WIRE_MAGIC_0;
  buf[1] = WIRE_MAGIC_1;
  buf[2] = WIRE_VERSION;
  buf[3] = 0;
  buf[4] = body.type;
  let p = writeAddress(buf, FIXED_HEADER_BYTES, from);
  p = writeVarint(buf, p, incarnation);
  switch (body.type) {
    case MessageType.Ping:
    case MessageType.Ack:
    case MessageType.Nack:
    case MessageType.Join:
      return writeVarint(buf, p, body.seq);
    case MessageType.PingReq:
      p = writeVarint(buf, p, body.seq);
      return writeAddress(buf, p, body.target);
    case MessageType.Sync:
      buf[p] = body.replyWanted ? SYNC_REPLY_WANTED : 0;
      return writeVarint(buf, p + 1, body.seq);
    case MessageType.Cookie:
      p = writeVarint(buf, p, body.seq);
      buf.set(body.cookie, p);
      return p + WIRE_COOKIE_BYTES;
    case MessageType.Request:
      p = writeVarint(buf, p, body.epoch);
      p = writeVarint(buf, p, body.id);
      p = writeVarint(buf, p, body.kind);
      buf.set(body.answerKey, p);
      p = writeVarint(buf, p + ANSWER_KEY_BYTES, body.payload.length);
      buf.set(body.payload, p);
      return p + body.payload.length;
    case MessageType.Response:
      p = writeVarint(buf, p, body.epoch);
      p = writeVarint(buf, p, body.id);
      buf.set(body.mac, p);
      p = writeVarint(buf, p + ANSWER_MAC_BYTES, body.payload.length);
      buf.set(body.payload, p);
      return p + body.payload.length;
    case MessageType.RequestAck:
      p = writeVarint(buf, p, body.epoch);
      p = writeVarint(buf, p, body.id);
      buf.set(body.mac, p);
      return p + ANSWER_MAC_BYTES;
    case MessageType.Relay:
    case MessageType.Relayed:
      p = writeAddress(buf, p, body.peer);
      p = writeVarint(buf, p, body.epoch);
      p = writeVarint(buf, p, body.id);
      buf[p] = body.what;
      buf.set(body.mac, p + 1);
      p = writeVarint(buf, p + 1 + ANSWER_MAC_BYTES, body.payload.length);
      buf.set(body.payload, p);
      return p + body.payload.length;
    case MessageType.RepairRequest: {
      p = writeAddress(buf, p, body.origin);
      p = writeVarint(buf, p, body.epoch);
      p = writeVarint(buf, p, body.maxAgeMs);
      const seqs = body.seqs;
      p = writeVarint(buf, p, seqs.length);
      p = writeVarint(buf, p, seqs[0] as number);
      for (let i = 1; i < seqs.length; i++) p = writeVarint(buf, p, (seqs[i] as number) - (seqs[i - 1] as number));
      return p;
    }
    default:
      return p;
  }
}

/**
 * A complete DIGEST item holding as many of `entries` (in order) as fit in `roomBytes`, at most
 * MAX_DIGEST_ENTRIES, and how many it holds; null when not even one fits.
 */
export function encodeDigestItem(entries: readonly DigestEntry[], roomBytes: number): { readonly item: Uint8Array; readonly count: number } | null {
  let contentBytes = 0;
  let count = 0;
  for (const e of entries) {
    if (count >= MAX_DIGEST_ENTRIES) break;
    const next = contentBytes + digestEntryBytes(e);
    if (1 + varintBytes(next) + next > roomBytes) break;
    contentBytes = next;
    count++;
  }
  if (count === 0) return null;
  const out = new Uint8Array(1 + varintBytes(contentBytes) + contentBytes);
  out[0] = ItemTag.Digest;
  let p = writeVarint(out, 1, contentBytes);
  for (let i = 0; i < count; i++) {
    const e = entries[i] as DigestEntry;
    p = writeAddress(out, p, e.origin);
    p = writeVarint(out, p, e.epoch);
    p = writeVarint(out, p, e.highestSeq);
  }
  return { item: out, count };
}

function writeUpdate(buf: Uint8Array, p: number, u: MemberUpdate): number {
  buf[p] = ItemTag.Alive + u.state;
  p = writeVarint(buf, p + 1, u.incarnation);
  p = writeAddress(buf, p, u.member);
  if (u.state === MemberState.Suspect) p = writeAddress(buf, p, u.suspectedBy as Address);
  const tags = u.tags;
  if (tags !== undefined) {
    buf[p] = ItemTag.Tags;
    p = writeVarint(buf, p + 1, tags.length);
    buf.set(tags, p);
    p += tags.length;
  }
  return p;
}

function writeBroadcast(buf: Uint8Array, p: number, b: UserBroadcast): number {
  const payload = b.payload;
  buf[p] = ItemTag.Broadcast;
  p = writeAddress(buf, p + 1, b.origin);
  p = writeVarint(buf, p, b.epoch);
  p = writeVarint(buf, p, b.seq);
  p = writeVarint(buf, p, payload.length);
  buf.set(payload, p);
  return p + payload.length;
}

function writeCookieItem(buf: Uint8Array, p: number, cookie: Uint8Array): number {
  buf[p] = ItemTag.CookieEcho;
  buf[p + 1] = WIRE_COOKIE_BYTES;
  buf.set(cookie, p + 2);
  return p + COOKIE_ITEM_BYTES;
}

function writeRequestOptionsItem(buf: Uint8Array, p: number, o: RequestOptions): number {
  buf[p] = ItemTag.RequestOptions;
  buf[p + 1] = 2;
  buf[p + 2] = o.ackWanted ? REQUEST_ACK_WANTED : 0;
  buf[p + 3] = o.relayCount;
  return p + REQUEST_OPTIONS_ITEM_BYTES;
}

/** A complete REQUEST_OPTIONS item, ready for DatagramWriter.tryAppend. RangeError on a relay count out of range. */
export function encodeRequestOptionsItem(o: RequestOptions): Uint8Array {
  checkRequestOptions(o);
  const out = new Uint8Array(REQUEST_OPTIONS_ITEM_BYTES);
  writeRequestOptionsItem(out, 0, o);
  return out;
}

/** A complete COOKIE_ECHO item, ready for DatagramWriter.tryAppend. RangeError unless 8 bytes. */
export function encodeCookieItem(cookie: Uint8Array): Uint8Array {
  checkCookie(cookie);
  const out = new Uint8Array(COOKIE_ITEM_BYTES);
  writeCookieItem(out, 0, cookie);
  return out;
}

/** A complete membership item (tag included; an ALIVE with tags is followed by its TAGS item), ready for DatagramWriter.tryAppend. */
export function encodeUpdateItem(u: MemberUpdate): Uint8Array {
  const out = new Uint8Array(updateItemBytes(u));
  writeUpdate(out, 0, u);
  return out;
}

/** A complete broadcast item (tag included), ready for DatagramWriter.tryAppend. */
export function encodeBroadcastItem(b: UserBroadcast): Uint8Array {
  const out = new Uint8Array(broadcastItemBytes(b));
  writeBroadcast(out, 0, b);
  return out;
}

/**
 * Builds datagrams in one reusable buffer: `begin` writes the header and body, `tryAppend`
 * adds pre-encoded items while they fit, `finish` returns a copy of the bytes written.
 */
export class DatagramWriter {
  private readonly buf: Uint8Array;
  /** Bytes written; 0 until `begin` succeeds (a header is never empty). */
  private len = 0;

  constructor(capacityBytes: number) {
    if (!Number.isInteger(capacityBytes) || capacityBytes < FIXED_HEADER_BYTES || capacityBytes > MAX_DATAGRAM_BYTES) {
      throw new RangeError(`datagram capacity must be an integer in ${FIXED_HEADER_BYTES}..${MAX_DATAGRAM_BYTES}, got ${capacityBytes}`);
    }
    this.buf = new Uint8Array(capacityBytes);
  }

  get capacity(): number {
    return this.buf.length;
  }

  /** Starts a new datagram. RangeError (and nothing begun) if header and body exceed the capacity. */
  begin(from: Address, incarnation: number, body: Body): void {
    this.len = 0;
    const size = headerBytes(from, incarnation, body);
    if (size > this.buf.length) {
      throw new RangeError(`a ${size}-byte header does not fit in a ${this.buf.length}-byte datagram`);
    }
    this.len = writeHeader(this.buf, from, incarnation, body);
  }

  /** Bytes still free for items. */
  get remaining(): number {
    return this.buf.length - this.len;
  }

  /** Bytes written so far. */
  get length(): number {
    return this.len;
  }

  /** Appends a pre-encoded item if it fits; otherwise writes nothing and returns false. */
  tryAppend(item: Uint8Array): boolean {
    const len = this.len;
    if (len === 0) throw new Error("DatagramWriter.tryAppend before begin");
    const n = item.length;
    if (n > this.buf.length - len) return false;
    const buf = this.buf;
    if (n <= 32) {
      for (let i = 0; i < n; i++) buf[len + i] = item[i] as number;
    } else {
      buf.set(item, len);
    }
    this.len = len + n;
    return true;
  }

  /** A fresh copy of exactly the bytes written. */
  finish(): Uint8Array {
    if (this.len === 0) throw new Error("DatagramWriter.finish before begin");
    return this.buf.slice(0, this.len);
  }
}

/**
 * The canonical encoding: header, body, the COOKIE_ECHO item if any, the REQUEST_OPTIONS item
 * if any, every update in order (an ALIVE with tags followed by its TAGS item), every
 * broadcast in order, then the DIGEST item if any. RangeError if a value is not encodable or the result would
 * exceed `maxBytes`.
 */
export function encodeDatagram(d: Datagram, maxBytes: number = MAX_DATAGRAM_BYTES): Uint8Array {
  const updates = d.updates;
  const broadcasts = d.broadcasts;
  const cookie = d.cookie;
  let size = headerBytes(d.from, d.incarnation, d.body);
  if (cookie !== undefined) {
    checkCookie(cookie);
    size += COOKIE_ITEM_BYTES;
  }
  const options = d.requestOptions;
  if (options !== undefined) {
    checkRequestOptions(options);
    size += REQUEST_OPTIONS_ITEM_BYTES;
  }
  for (let i = 0; i < updates.length; i++) size += updateItemBytes(updates[i] as MemberUpdate);
  for (let i = 0; i < broadcasts.length; i++) size += broadcastItemBytes(broadcasts[i] as UserBroadcast);
  let digestItem: Uint8Array | undefined;
  if (d.digest !== undefined) {
    const encoded = encodeDigestItem(d.digest, MAX_DATAGRAM_BYTES);
    if (encoded === null || encoded.count !== d.digest.length) throw new RangeError(`a digest holds 1..${MAX_DIGEST_ENTRIES} entries, got ${d.digest.length}`);
    digestItem = encoded.item;
    size += digestItem.length;
  }
  if (size > maxBytes || size > MAX_DATAGRAM_BYTES) {
    throw new RangeError(`a ${size}-byte datagram exceeds the ${Math.min(maxBytes, MAX_DATAGRAM_BYTES)}-byte limit`);
  }
  const out = new Uint8Array(size);
  let p = writeHeader(out, d.from, d.incarnation, d.body);
  if (cookie !== undefined) p = writeCookieItem(out, p, cookie);
  if (options !== undefined) p = writeRequestOptionsItem(out, p, options);
  for (let i = 0; i < updates.length; i++) p = writeUpdate(out, p, updates[i] as MemberUpdate);
  for (let i = 0; i < broadcasts.length; i++) p = writeBroadcast(out, p, broadcasts[i] as UserBroadcast);
  if (digestItem !== undefined) out.set(digestItem, p);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Decoder. The read position lives in one module variable (`at`): decoding is synchronous and
// calls nothing that could re-enter it, and this keeps the readers free of allocations.

let at = 0;

const GOSSIP_BODY: Body = Object.freeze({ type: MessageType.Gossip });
const REPAIR_BODY: Body = Object.freeze({ type: MessageType.Repair });

function fail(code: ProtocolErrorCode, offset: number, detail?: string): never {
  throw new ProtocolError(code, offset, detail);
}

function readVarint(b: Uint8Array): number {
  const start = at;
  const n = b.length;
  let p = start;
  if (p >= n) fail("TRUNCATED", start, "varint");
  let byte = b[p++] as number;
  if (byte < 0x80) {
    at = p;
    return byte;
  }
  let value = byte & 0x7f;
  if (p >= n) fail("TRUNCATED", start, "varint");
  byte = b[p++] as number;
  value |= (byte & 0x7f) << 7;
  if (byte < 0x80) {
    if (byte === 0) fail("VARINT_NONCANONICAL", start);
    at = p;
    return value;
  }
  if (p >= n) fail("TRUNCATED", start, "varint");
  byte = b[p++] as number;
  value |= (byte & 0x7f) << 14;
  if (byte < 0x80) {
    if (byte === 0) fail("VARINT_NONCANONICAL", start);
    at = p;
    return value;
  }
  if (p >= n) fail("TRUNCATED", start, "varint");
  byte = b[p++] as number;
  value |= (byte & 0x7f) << 21;
  if (byte < 0x80) {
    if (byte === 0) fail("VARINT_NONCANONICAL", start);
    at = p;
    return value;
  }
  if (p >= n) fail("TRUNCATED", start, "varint");
  byte = b[p++] as number;
  if (byte > 0x0f) fail("VARINT_OVERFLOW", start, byte >= 0x80 ? "more than 5 bytes" : "value >= 2^32");
  if (byte === 0) fail("VARINT_NONCANONICAL", start);
  at = p;
  return (value | (byte << 28)) >>> 0;
}

function readAddress(b: Uint8Array): Address {
  const start = at;
  const n = b.length;
  if (start >= n) fail("TRUNCATED", start, "address");
  const family = b[start] as number;
  const p = start + 1;
  const ipBytes = family === 4 ? 4 : family === 6 ? 16 : 0;
  if (ipBytes === 0) return fail("BAD_ADDRESS", start, `family ${family}`);
  if (p + ipBytes + 2 > n) fail("TRUNCATED", start, "address");
  const port = ((b[p + ipBytes] as number) << 8) | (b[p + ipBytes + 1] as number);
  if (port === 0) fail("BAD_ADDRESS", start, "port 0");
  at = p + ipBytes + 2;
  // Interned: copies the IP bytes once per distinct address, then shares the object.
  return family === 4 ? internIpv4(b, p, port) : internIpv6(b, p, port);
}

function readBody(b: Uint8Array, type: number): Body {
  switch (type) {
    case MessageType.Ping:
      return { type: MessageType.Ping, seq: readVarint(b) };
    case MessageType.Ack:
      return { type: MessageType.Ack, seq: readVarint(b) };
    case MessageType.Nack:
      return { type: MessageType.Nack, seq: readVarint(b) };
    case MessageType.PingReq: {
      const seq = readVarint(b);
      return { type: MessageType.PingReq, seq, target: readAddress(b) };
    }
    case MessageType.Join:
      return { type: MessageType.Join, seq: readVarint(b) };
    case MessageType.Gossip:
      return GOSSIP_BODY;
    case MessageType.Sync: {
      const p = at;
      if (p >= b.length) fail("TRUNCATED", p, "sync flags");
      const flags = b[p] as number;
      if ((flags & ~SYNC_REPLY_WANTED) !== 0) fail("BAD_FLAGS", p, `unknown sync flags 0x${flags.toString(16)}`);
      at = p + 1;
      return { type: MessageType.Sync, replyWanted: flags !== 0, seq: readVarint(b) };
    }
    case MessageType.Cookie: {
      const seq = readVarint(b);
      return { type: MessageType.Cookie, seq, cookie: readFixed(b, WIRE_COOKIE_BYTES, "cookie") };
    }
    case MessageType.Request: {
      const epoch = readVarint(b);
      const id = readVarint(b);
      const kind = readVarint(b);
      const answerKey = readFixed(b, ANSWER_KEY_BYTES, "answer key");
      return { type: MessageType.Request, epoch, id, kind, answerKey, payload: readPayload(b) };
    }
    case MessageType.Response: {
      const epoch = readVarint(b);
      const id = readVarint(b);
      const mac = readFixed(b, ANSWER_MAC_BYTES, "answer MAC");
      return { type: MessageType.Response, epoch, id, mac, payload: readPayload(b) };
    }
    case MessageType.RequestAck: {
      const epoch = readVarint(b);
      const id = readVarint(b);
      return { type: MessageType.RequestAck, epoch, id, mac: readFixed(b, ANSWER_MAC_BYTES, "answer MAC") };
    }
    case MessageType.Relay:
    case MessageType.Relayed: {
      const peer = readAddress(b);
      const epoch = readVarint(b);
      const id = readVarint(b);
      const p = at;
      if (p >= b.length) fail("TRUNCATED", p, "relay kind");
      const what = b[p] as number;
      if (what > RELAY_RESPONSE) fail("BAD_FLAGS", p, `relay kind ${what}`);
      at = p + 1;
      const mac = readFixed(b, ANSWER_MAC_BYTES, "answer MAC");
      const lengthAt = at;
      const payload = readPayload(b);
      if (what === RELAY_ACK && payload.length > 0) fail("BAD_LENGTH", lengthAt, `a relayed ack has no payload, got ${payload.length} bytes`);
      return type === MessageType.Relay ? { type: MessageType.Relay, peer, epoch, id, what, mac, payload } : { type: MessageType.Relayed, peer, epoch, id, what, mac, payload };
    }
    case MessageType.RepairRequest: {
      const origin = readAddress(b);
      const epoch = readVarint(b);
      const maxAgeMs = readVarint(b);
      const countAt = at;
      const count = readVarint(b);
      if (count < 1 || count > MAX_REPAIR_SEQS) fail("BAD_LENGTH", countAt, `a repair request asks for 1..${MAX_REPAIR_SEQS} seqs, not ${count}`);
      const seqs: number[] = [readVarint(b)];
      for (let i = 1; i < count; i++) {
        const deltaAt = at;
        const delta = readVarint(b);
        const seq = (seqs[i - 1] as number) + delta;
        if (delta === 0 || seq > 0xffffffff) fail("BAD_LENGTH", deltaAt, delta === 0 ? "repair seqs must increase strictly" : "repair seq past 2^32-1");
        seqs.push(seq);
      }
      return { type: MessageType.RepairRequest, origin, epoch, maxAgeMs, seqs };
    }
    case MessageType.Repair:
      return REPAIR_BODY;
    default:
      return fail("UNKNOWN_TYPE", 4, `message type 0x${type.toString(16)}`);
  }
}

/** `length` bytes at the read position (copied): a cookie, an answer key or MAC. */
function readFixed(b: Uint8Array, length: number, what: string): Uint8Array {
  const p = at;
  if (length > b.length - p) fail("TRUNCATED", p, what);
  at = p + length;
  return copyBytes(b, p, length);
}

/** A request's or response's payload: varint length, then that many bytes (copied). */
function readPayload(b: Uint8Array): Uint8Array {
  const start = at;
  const len = readVarint(b);
  const p = at;
  if (len > b.length - p) fail("TRUNCATED", start, `payload of ${len} bytes, ${b.length - p} left`);
  at = p + len;
  return copyBytes(b, p, len);
}

/** A fresh copy of b[start, start + len) as a plain Uint8Array (a Node Buffer's slice is a view). */
function copyBytes(b: Uint8Array, start: number, len: number): Uint8Array {
  const out = new Uint8Array(len);
  if (len <= 32) {
    for (let i = 0; i < len; i++) out[i] = b[start + i] as number;
  } else {
    out.set(b.subarray(start, start + len));
  }
  return out;
}

/**
 * Decodes one unsealed datagram. Throws only ProtocolError; never reads out of bounds, never
 * allocates more than the input implies, and keeps no reference to `bytes`.
 */
export function decodeDatagram(bytes: Uint8Array): Datagram {
  const b = bytes;
  const n = b.length;
  if (n > MAX_DATAGRAM_BYTES) fail("TOO_LARGE", MAX_DATAGRAM_BYTES, `${n} bytes`);
  if (n < FIXED_HEADER_BYTES) fail("TRUNCATED", n, "header");
  if (b[0] !== WIRE_MAGIC_0 || b[1] !== WIRE_MAGIC_1) fail("BAD_MAGIC", 0);
  if (b[2] !== WIRE_VERSION) fail("BAD_VERSION", 2, `version ${b[2]}`);
  const flags = b[3] as number;
  if ((flags & ~FLAG_SEALED) !== 0) fail("BAD_FLAGS", 3, `flags 0x${flags.toString(16)}`);
  if (flags !== 0) fail("SEALED", 3);
  const type = b[4] as number;
  if (type < MessageType.Ping || type > MAX_MESSAGE_TYPE) fail("UNKNOWN_TYPE", 4, `message type 0x${type.toString(16)}`);

  at = FIXED_HEADER_BYTES;
  const from = readAddress(b);
  const incarnation = readVarint(b);
  const body = readBody(b, type);

  const updates: MemberUpdate[] = [];
  const broadcasts: UserBroadcast[] = [];
  let cookie: Uint8Array | undefined;
  let requestOptions: RequestOptions | undefined;
  let digest: DigestEntry[] | undefined;
  // The index in `updates` of the ALIVE item just read (a TAGS item may follow it), else -1.
  let aliveJustRead = -1;
  while (at < n) {
    const itemStart = at;
    const tag = b[itemStart] as number;
    at = itemStart + 1;
    const aliveBefore = aliveJustRead;
    aliveJustRead = -1;
    if (tag === ItemTag.Suspect) {
      const incarnation = readVarint(b);
      const member = readAddress(b);
      const suspectedBy = readAddress(b);
      updates.push({ state: MemberState.Suspect, incarnation, member, suspectedBy });
    } else if (tag === ItemTag.Alive || tag === ItemTag.Dead || tag === ItemTag.Left) {
      const incarnation = readVarint(b);
      const member = readAddress(b);
      updates.push({ state: (tag - ItemTag.Alive) as MemberState, incarnation, member });
      if (tag === ItemTag.Alive) aliveJustRead = updates.length - 1;
    } else if (tag === ItemTag.Tags) {
      const len = readVarint(b);
      if (len > n - at) fail("TRUNCATED", itemStart, `tags item of ${len} bytes, ${n - at} left`);
      if (aliveBefore < 0) fail("BAD_TAGS", itemStart, "a TAGS item that does not follow an ALIVE item");
      const tags = copyBytes(b, at, len);
      const problem = decodeTags(tags);
      if (typeof problem === "string") fail("BAD_TAGS", itemStart, problem);
      at += len;
      updates[aliveBefore] = { ...(updates[aliveBefore] as MemberUpdate), tags };
    } else if (tag === ItemTag.RequestOptions) {
      const lengthAt = at;
      const len = readVarint(b);
      if (len > n - at) fail("TRUNCATED", itemStart, `request options item of ${len} bytes, ${n - at} left`);
      if (len !== 2) fail("BAD_LENGTH", lengthAt, `request options have 2 bytes, not ${len}`);
      const flags = b[at] as number;
      const relayCount = b[at + 1] as number;
      if ((flags & ~REQUEST_ACK_WANTED) !== 0) fail("BAD_FLAGS", at, `request flags 0x${flags.toString(16)}`);
      if (relayCount > MAX_RELAY_COUNT) fail("BAD_LENGTH", at + 1, `relay count ${relayCount} > ${MAX_RELAY_COUNT}`);
      if (requestOptions === undefined) requestOptions = { ackWanted: flags !== 0, relayCount };
      at += len;
    } else if (tag === ItemTag.Broadcast) {
      const origin = readAddress(b);
      const epoch = readVarint(b);
      const seq = readVarint(b);
      const lengthAt = at;
      const len = readVarint(b);
      if (len === 0) fail("BAD_LENGTH", lengthAt, "empty broadcast payload");
      const p = at;
      if (len > n - p) fail("TRUNCATED", itemStart, `broadcast payload of ${len} bytes, ${n - p} left`);
      const payload = copyBytes(b, p, len);
      at = p + len;
      broadcasts.push({ origin, epoch, seq, payload });
    } else if (tag === ItemTag.CookieEcho) {
      const lengthAt = at;
      const len = readVarint(b);
      if (len > n - at) fail("TRUNCATED", itemStart, `cookie item of ${len} bytes, ${n - at} left`);
      if (len !== WIRE_COOKIE_BYTES) fail("BAD_LENGTH", lengthAt, `a cookie has ${WIRE_COOKIE_BYTES} bytes, not ${len}`);
      // The first one counts.
      if (cookie === undefined) cookie = copyBytes(b, at, len);
      at += len;
    } else if (tag === ItemTag.Digest) {
      const lengthAt = at;
      const len = readVarint(b);
      if (len > n - at) fail("TRUNCATED", itemStart, `digest item of ${len} bytes, ${n - at} left`);
      if (len === 0) fail("BAD_LENGTH", lengthAt, "an empty digest");
      const end = at + len;
      const entries: DigestEntry[] = [];
      // Entries are read inside the item's length only: one that runs past it is BAD_LENGTH.
      const within = b.subarray(0, end);
      while (at < end) {
        if (entries.length >= MAX_DIGEST_ENTRIES) fail("BAD_LENGTH", at, `a digest holds at most ${MAX_DIGEST_ENTRIES} entries`);
        const entryAt = at;
        try {
          const origin = readAddress(within);
          const epoch = readVarint(within);
          entries.push({ origin, epoch, highestSeq: readVarint(within) });
        } catch (e) {
          if (e instanceof ProtocolError && e.code === "TRUNCATED") fail("BAD_LENGTH", entryAt, "a digest entry runs past the item");
          throw e;
        }
      }
      if (digest === undefined) digest = entries;
    } else if (tag >= EXTENSION_TAG_MIN) {
      // An extension item from a newer version: skip it by its length.
      const len = readVarint(b);
      if (len > n - at) fail("TRUNCATED", itemStart, `extension item of ${len} bytes, ${n - at} left`);
      at += len;
    } else {
      fail("UNKNOWN_ITEM", itemStart, `item tag 0x${tag.toString(16)}`);
    }
  }
  let d: Datagram = cookie === undefined ? { from, incarnation, body, updates, broadcasts } : { from, incarnation, body, updates, broadcasts, cookie };
  if (digest !== undefined) d = { ...d, digest };
  return requestOptions === undefined || body.type !== MessageType.Request ? d : { ...d, requestOptions };
}
