/**
 * Tests of the gossip wire codec: hand-computed golden byte vectors for every message type and
 * item kind (so any format change shows up as a diff here), varint edges, one hand-made input
 * per ProtocolError code, fast-check round-trip properties, DatagramWriter properties, and
 * fuzzing (random and mutated inputs decode to a Datagram or a ProtocolError, nothing else).
 */

import { test, describe } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";

import { addr, DEFAULT_INTERN_GENERATION, internStats, makeAddress, setInternGeneration, type Address } from "../src/core/address.js";
import { PROTOCOL_ERROR_CODES, ProtocolError, type ProtocolErrorCode } from "../src/core/errors.js";
import { encodeTags } from "../src/core/tags.js";
import {
  COOKIE_ITEM_BYTES,
  DatagramWriter,
  REQUEST_OPTIONS_ITEM_BYTES,
  encodeRequestOptionsItem,
  addressBytes,
  broadcastItemBytes,
  decodeDatagram,
  encodeBroadcastItem,
  encodeCookieItem,
  encodeDatagram,
  encodeDigestItem,
  encodeUpdateItem,
  headerBytes,
  updateItemBytes,
  varintBytes,
} from "../src/core/wire/codec.js";
import {
  MAX_DATAGRAM_BYTES,
  MAX_DIGEST_ENTRIES,
  MAX_RELAY_COUNT,
  MAX_REPAIR_SEQS,
  MemberState,
  MessageType,
  type Body,
  type Datagram,
  type DigestEntry,
  type MemberUpdate,
  type UserBroadcast,
} from "../src/core/wire/messages.js";

// ---------------------------------------------------------------------------------------------
// Helpers

function hex(text: string): Uint8Array {
  const clean = text.replace(/\s+/g, "");
  assert.equal(clean.length % 2, 0, `odd hex length: ${text}`);
  const out = new Uint8Array(clean.length / 2);
  for (let i = 0; i < out.length; i++) {
    const byte = parseInt(clean.slice(2 * i, 2 * i + 2), 16);
    assert.ok(!Number.isNaN(byte), `bad hex: ${text}`);
    out[i] = byte;
  }
  return out;
}

function toHex(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += b.toString(16).padStart(2, "0");
  return s;
}

function assertProtocolError(bytes: Uint8Array, code: ProtocolErrorCode): void {
  assert.throws(
    () => decodeDatagram(bytes),
    (err: unknown) => {
      assert.ok(err instanceof ProtocolError, `expected a ProtocolError, got ${String(err)}`);
      assert.equal(err.code, code, `expected ${code}, got ${err.message} for ${toHex(bytes)}`);
      return true;
    },
  );
}

/** Decodes; returns the Datagram or the ProtocolError; anything else fails the test. */
function decodeOrProtocolError(bytes: Uint8Array): Datagram | ProtocolError {
  try {
    return decodeDatagram(bytes);
  } catch (err) {
    if (err instanceof ProtocolError) return err;
    throw new assert.AssertionError({ message: `decode threw a non-ProtocolError: ${String(err)} for ${toHex(bytes)}` });
  }
}

function datagram(from: Address, incarnation: number, body: Body, updates: MemberUpdate[] = [], broadcasts: UserBroadcast[] = [], cookie?: Uint8Array): Datagram {
  return cookie === undefined ? { from, incarnation, body, updates, broadcasts } : { from, incarnation, body, updates, broadcasts, cookie };
}

/** Bytes of the COOKIE_ECHO, REQUEST_OPTIONS and DIGEST items a datagram carries (0 without them). */
const cookieItemBytes = (d: Datagram): number =>
  (d.cookie === undefined ? 0 : COOKIE_ITEM_BYTES) + (d.requestOptions === undefined ? 0 : REQUEST_OPTIONS_ITEM_BYTES) + digestItemBytes(d.digest);

/** Bytes of the DIGEST item holding `entries` (0 without one). */
function digestItemBytes(entries: readonly DigestEntry[] | undefined): number {
  if (entries === undefined) return 0;
  const encoded = encodeDigestItem(entries, MAX_DATAGRAM_BYTES);
  assert.ok(encoded !== null && encoded.count === entries.length);
  return encoded.item.length;
}

const alive = (incarnation: number, member: Address): MemberUpdate => ({ state: MemberState.Alive, incarnation, member });
const dead = (incarnation: number, member: Address): MemberUpdate => ({ state: MemberState.Dead, incarnation, member });
const aliveTagged = (incarnation: number, member: Address, tags: Uint8Array): MemberUpdate => ({ state: MemberState.Alive, incarnation, member, tags });
/** The tags role=web: count 1, key "role", value "web". */
const ROLE_WEB_HEX = "01 04 726f6c65 03 776562";
/** An answer key (16 bytes) and an answer MAC (8) as they sit in request and answer bodies. */
const KEY_HEX = "000102030405060708090a0b0c0d0e0f";
const MAC_HEX = "a0a1a2a3a4a5a6a7";
const left = (incarnation: number, member: Address): MemberUpdate => ({ state: MemberState.Left, incarnation, member });
const suspect = (incarnation: number, member: Address, suspectedBy: Address): MemberUpdate => ({
  state: MemberState.Suspect,
  incarnation,
  member,
  suspectedBy,
});

// Addresses used by the golden vectors, and their 7- or 19-byte encodings.
const A4 = addr("10.0.0.1:7946"); //        04 0a000001 1f0a
const B4 = addr("192.168.1.20:8000"); //    04 c0a80114 1f40
const A6 = addr("[2001:db8::1]:7946"); //   06 20010db8000000000000000000000001 1f0a
const B6 = addr("[fe80::2]:443"); //        06 fe800000000000000000000000000002 01bb
const A4_HEX = "04 0a000001 1f0a";
const B4_HEX = "04 c0a80114 1f40";
const A6_HEX = "06 20010db8000000000000000000000001 1f0a";
const B6_HEX = "06 fe800000000000000000000000000002 01bb";

// ---------------------------------------------------------------------------------------------
// Arbitraries

/** fast-check 4 builds records with a null prototype; decoded objects are plain objects. */
const PLAIN = { noNullPrototype: true } as const;
const U32_EDGES = [0, 1, 127, 128, 16383, 16384, 2 ** 21 - 1, 2 ** 21, 2 ** 28 - 1, 2 ** 28, 2 ** 31, 2 ** 32 - 1];
const u32Arb = fc.oneof(fc.integer({ min: 0, max: 0xffffffff }), fc.integer({ min: 0, max: 300 }), fc.constantFrom(...U32_EDGES));
const portArb = fc.oneof(fc.integer({ min: 1, max: 65535 }), fc.constantFrom(1, 255, 256, 7946, 65535));
const ipv4Arb = fc.uint8Array({ minLength: 4, maxLength: 4 });
const ipv6Arb = fc.oneof(
  fc.uint8Array({ minLength: 16, maxLength: 16 }),
  // Mostly zeros: exercises `::` compression and IPv4-mapped forms in the address keys.
  fc.array(fc.constantFrom(0, 0, 0, 1, 0xff), { minLength: 16, maxLength: 16 }).map((a) => Uint8Array.from(a)),
);
const addressArb: fc.Arbitrary<Address> = fc.tuple(fc.oneof(ipv4Arb, ipv6Arb), portArb).map(([ip, port]) => makeAddress(ip, port));
const tagPairArb = fc.tuple(fc.uint8Array({ minLength: 1, maxLength: 12 }), fc.uint8Array({ maxLength: 20 }));
/** Canonical tags (encodeTags sorts and deduplicates). */
const tagsArb = fc.array(tagPairArb, { maxLength: 6 }).map((pairs) => encodeTags(pairs));
const updateArb: fc.Arbitrary<MemberUpdate> = fc.oneof(
  fc
    .record({ state: fc.constantFrom(MemberState.Alive, MemberState.Dead, MemberState.Left), incarnation: u32Arb, member: addressArb }, PLAIN)
    .map((u): MemberUpdate => u),
  fc.record({ incarnation: u32Arb, member: addressArb, tags: tagsArb }, PLAIN).map((u): MemberUpdate => ({ state: MemberState.Alive, ...u })),
  fc
    .record({ incarnation: u32Arb, member: addressArb, suspectedBy: addressArb })
    .map((u): MemberUpdate => ({ state: MemberState.Suspect, incarnation: u.incarnation, member: u.member, suspectedBy: u.suspectedBy })),
);
const broadcastArb = (maxPayload: number): fc.Arbitrary<UserBroadcast> =>
  fc.record({ origin: addressArb, epoch: u32Arb, seq: u32Arb, payload: fc.uint8Array({ minLength: 1, maxLength: maxPayload }) }, PLAIN);
const cookieArb = fc.uint8Array({ minLength: 8, maxLength: 8 });
const answerKeyArb = fc.uint8Array({ minLength: 16, maxLength: 16 });
const macArb = fc.uint8Array({ minLength: 8, maxLength: 8 });
const bodyArb: fc.Arbitrary<Body> = fc.oneof(
  u32Arb.map((seq): Body => ({ type: MessageType.Ping, seq })),
  u32Arb.map((seq): Body => ({ type: MessageType.Ack, seq })),
  fc.tuple(u32Arb, addressArb).map(([seq, target]): Body => ({ type: MessageType.PingReq, seq, target })),
  u32Arb.map((seq): Body => ({ type: MessageType.Nack, seq })),
  u32Arb.map((seq): Body => ({ type: MessageType.Join, seq })),
  fc.tuple(fc.boolean(), u32Arb).map(([replyWanted, seq]): Body => ({ type: MessageType.Sync, replyWanted, seq })),
  fc.constant<Body>({ type: MessageType.Gossip }),
  fc.tuple(u32Arb, cookieArb).map(([seq, cookie]): Body => ({ type: MessageType.Cookie, seq, cookie })),
  fc
    .tuple(u32Arb, u32Arb, u32Arb, answerKeyArb, fc.uint8Array({ maxLength: 40 }))
    .map(([epoch, id, kind, answerKey, payload]): Body => ({ type: MessageType.Request, epoch, id, kind, answerKey, payload })),
  fc.tuple(u32Arb, u32Arb, macArb, fc.uint8Array({ maxLength: 40 })).map(([epoch, id, mac, payload]): Body => ({ type: MessageType.Response, epoch, id, mac, payload })),
  fc.tuple(u32Arb, u32Arb, macArb).map(([epoch, id, mac]): Body => ({ type: MessageType.RequestAck, epoch, id, mac })),
  fc
    .tuple(fc.constantFrom(MessageType.Relay, MessageType.Relayed), addressArb, u32Arb, u32Arb, fc.constantFrom(0, 1), macArb, fc.uint8Array({ maxLength: 40 }))
    // An ack (what 0) has no payload.
    .map(([type, peer, epoch, id, what, mac, bytes]): Body => {
      const payload = what === 0 ? new Uint8Array(0) : bytes;
      return type === MessageType.Relay ? { type, peer, epoch, id, what, mac, payload } : { type: MessageType.Relayed, peer, epoch, id, what, mac, payload };
    }),
  fc
    .tuple(addressArb, u32Arb, u32Arb, fc.uniqueArray(u32Arb, { minLength: 1, maxLength: MAX_REPAIR_SEQS }))
    .map(([origin, epoch, maxAgeMs, seqs]): Body => ({ type: MessageType.RepairRequest, origin, epoch, maxAgeMs, seqs: seqs.sort((a, b) => a - b) })),
  fc.constant<Body>({ type: MessageType.Repair }),
);
const digestArb: fc.Arbitrary<DigestEntry[]> = fc.array(fc.record({ origin: addressArb, epoch: u32Arb, highestSeq: u32Arb }, PLAIN), { minLength: 1, maxLength: 6 });
const requestOptionsArb = fc.record({ ackWanted: fc.boolean(), relayCount: fc.integer({ min: 0, max: MAX_RELAY_COUNT }) }, PLAIN);
const datagramArb = (maxUpdates: number, maxBroadcasts: number, maxPayload: number): fc.Arbitrary<Datagram> =>
  fc
    .record({
      from: addressArb,
      incarnation: u32Arb,
      body: bodyArb,
      updates: fc.array(updateArb, { maxLength: maxUpdates }),
      broadcasts: fc.array(broadcastArb(maxPayload), { maxLength: maxBroadcasts }),
      cookie: fc.option(cookieArb, { freq: 3 }),
      requestOptions: fc.option(requestOptionsArb, { freq: 2 }),
      digest: fc.option(digestArb, { freq: 3 }),
    }, PLAIN)
    .map((r): Datagram => {
      const plain = datagram(r.from, r.incarnation, r.body, r.updates, r.broadcasts, r.cookie ?? undefined);
      const d = r.digest === null ? plain : { ...plain, digest: r.digest };
      // Only a REQUEST keeps its options through a decode.
      return r.requestOptions === null || r.body.type !== MessageType.Request ? d : { ...d, requestOptions: r.requestOptions };
    });

// ---------------------------------------------------------------------------------------------
// Golden vectors: computed by hand from the layout in messages.ts.

interface Golden {
  readonly name: string;
  readonly d: Datagram;
  readonly hex: string;
  readonly size: number;
}

const GOLDEN: readonly Golden[] = [
  {
    name: "PING from IPv4, incarnation 0, seq 1",
    d: datagram(A4, 0, { type: MessageType.Ping, seq: 1 }),
    hex: `546d0100 01 ${A4_HEX} 00 01`,
    size: 14,
  },
  {
    name: "PING from IPv6, incarnation 1, seq 42",
    d: datagram(B6, 1, { type: MessageType.Ping, seq: 42 }),
    hex: `546d0100 01 ${B6_HEX} 01 2a`,
    size: 26,
  },
  {
    name: "ACK from IPv6, incarnation 5, seq 300 (2-byte varint)",
    d: datagram(A6, 5, { type: MessageType.Ack, seq: 300 }),
    hex: `546d0100 02 ${A6_HEX} 05 ac02`,
    size: 27,
  },
  {
    name: "ACK from IPv4 carrying an ALIVE of an IPv6 member at incarnation 2^32-1",
    d: datagram(B4, 0, { type: MessageType.Ack, seq: 0 }, [alive(0xffffffff, A6)]),
    hex: `546d0100 02 ${B4_HEX} 00 00   10 ffffffff0f ${A6_HEX}`,
    size: 39,
  },
  {
    name: "PING_REQ from IPv4, incarnation 128, seq 2^32-1, IPv6 target",
    d: datagram(A4, 128, { type: MessageType.PingReq, seq: 0xffffffff, target: B6 }),
    hex: `546d0100 03 ${A4_HEX} 8001 ffffffff0f ${B6_HEX}`,
    size: 38,
  },
  {
    name: "NACK from IPv4, incarnation 2^14 (3-byte varint), seq 127",
    d: datagram(B4, 16384, { type: MessageType.Nack, seq: 127 }),
    hex: `546d0100 04 ${B4_HEX} 808001 7f`,
    size: 16,
  },
  {
    name: "JOIN from IPv6, seq 300",
    d: datagram(A6, 0, { type: MessageType.Join, seq: 300 }),
    hex: `546d0100 05 ${A6_HEX} 00 ac02`,
    size: 27,
  },
  {
    name: "SYNC with REPLY_WANTED, seq 5: ALIVE (IPv4) and DEAD (IPv6) items",
    d: datagram(A4, 1, { type: MessageType.Sync, replyWanted: true, seq: 5 }, [alive(3, B4), dead(200, A6)]),
    hex: `546d0100 06 ${A4_HEX} 01 01 05   10 03 ${B4_HEX}   12 c801 ${A6_HEX}`,
    size: 46,
  },
  {
    name: "SYNC without REPLY_WANTED, seq 0 (unsolicited): one LEFT (IPv4) item",
    d: datagram(A6, 2, { type: MessageType.Sync, replyWanted: false, seq: 0 }, [left(7, A4)]),
    hex: `546d0100 06 ${A6_HEX} 02 00 00   13 07 ${A4_HEX}`,
    size: 36,
  },
  {
    name: "GOSSIP: SUSPECT, LEFT, and two BROADCASTs (IPv4 and IPv6 origins)",
    d: datagram(
      B4,
      9,
      { type: MessageType.Gossip },
      [suspect(4, A4, B6), left(0, B6)],
      [
        { origin: A4, epoch: 1, seq: 2, payload: hex("6869") },
        { origin: A6, epoch: 0xdeadbeef, seq: 0, payload: hex("00ff7f") },
      ],
    ),
    hex:
      `546d0100 07 ${B4_HEX} 09 ` +
      `11 04 ${A4_HEX} ${B6_HEX} ` +
      `13 00 ${B6_HEX} ` +
      `20 ${A4_HEX} 01 02 02 6869 ` +
      `20 ${A6_HEX} effdb6f50d 00 03 00ff7f`,
    size: 105,
  },
  {
    name: "COOKIE from IPv4, incarnation 3, seq 300",
    d: datagram(A4, 3, { type: MessageType.Cookie, seq: 300, cookie: hex("0102030405060708") }),
    hex: `546d0100 08 ${A4_HEX} 03 ac02 0102030405060708`,
    size: 23,
  },
  {
    name: "JOIN from IPv6, seq 301, echoing a cookie (COOKIE_ECHO item 0x80)",
    d: datagram(A6, 0, { type: MessageType.Join, seq: 301 }, [], [], hex("a1a2a3a4a5a6a7a8")),
    hex: `546d0100 05 ${A6_HEX} 00 ad02   80 08 a1a2a3a4a5a6a7a8`,
    size: 37,
  },
  {
    name: "SYNC with REPLY_WANTED, seq 6, echoing a cookie before its ALIVE item",
    d: datagram(A4, 1, { type: MessageType.Sync, replyWanted: true, seq: 6 }, [alive(3, B4)], [], hex("ffeeddccbbaa9988")),
    hex: `546d0100 06 ${A4_HEX} 01 01 06   80 08 ffeeddccbbaa9988   10 03 ${B4_HEX}`,
    size: 34,
  },
  {
    name: "REQUEST from IPv4, epoch 0xdeadbeef, id 300, kind 1, 3-byte payload, with an ALIVE item",
    d: datagram(A4, 2, { type: MessageType.Request, epoch: 0xdeadbeef, id: 300, kind: 1, answerKey: hex(KEY_HEX), payload: hex("010203") }, [alive(5, B4)]),
    hex: `546d0100 09 ${A4_HEX} 02 effdb6f50d ac02 01 ${KEY_HEX} 03 010203   10 05 ${B4_HEX}`,
    size: 50,
  },
  {
    name: "REQUEST from IPv6 with an empty payload",
    d: datagram(A6, 0, { type: MessageType.Request, epoch: 0, id: 1, kind: 128, answerKey: hex(KEY_HEX), payload: new Uint8Array(0) }),
    hex: `546d0100 09 ${A6_HEX} 00 00 01 8001 ${KEY_HEX} 00`,
    size: 46,
  },
  {
    name: "RESPONSE from IPv6, epoch 7, id 300, 2-byte payload",
    d: datagram(B6, 1, { type: MessageType.Response, epoch: 7, id: 300, mac: hex(MAC_HEX), payload: hex("00ff") }),
    hex: `546d0100 0a ${B6_HEX} 01 07 ac02 ${MAC_HEX} 02 00ff`,
    size: 39,
  },
  {
    name: "GOSSIP from IPv4 with an ALIVE item and its TAGS item (role=web)",
    d: datagram(A4, 0, { type: MessageType.Gossip }, [aliveTagged(5, B4, hex(ROLE_WEB_HEX)), dead(1, A6)]),
    hex: `546d0100 07 ${A4_HEX} 00   10 05 ${B4_HEX}   81 0a ${ROLE_WEB_HEX}   12 01 ${A6_HEX}`,
    size: 55,
  },
  {
    name: "SYNC of an ALIVE item with empty tags (count 0: the member has none)",
    d: datagram(B4, 9, { type: MessageType.Sync, replyWanted: false, seq: 0 }, [aliveTagged(0x80, A6, hex("00"))]),
    hex: `546d0100 06 ${B4_HEX} 09 00 00   10 8001 ${A6_HEX}   81 01 00`,
    size: 40,
  },
  {
    name: "REQUEST with REQUEST_OPTIONS (ack wanted, relay through 2)",
    d: { ...datagram(A4, 0, { type: MessageType.Request, epoch: 7, id: 42, kind: 2, answerKey: hex(KEY_HEX), payload: new Uint8Array(0) }), requestOptions: { ackWanted: true, relayCount: 2 } },
    hex: `546d0100 09 ${A4_HEX} 00 07 2a 02 ${KEY_HEX} 00   82 02 01 02`,
    size: 37,
  },
  {
    name: "REQUEST_ACK from IPv6, epoch 7, id 42",
    d: datagram(A6, 1, { type: MessageType.RequestAck, epoch: 7, id: 42, mac: hex(MAC_HEX) }),
    hex: `546d0100 10 ${A6_HEX} 01 07 2a ${MAC_HEX}`,
    size: 35,
  },
  {
    name: "RELAY of a response to IPv6 B6, epoch 7, id 300, 2-byte payload",
    d: datagram(A4, 0, { type: MessageType.Relay, peer: B6, epoch: 7, id: 300, what: 1, mac: hex(MAC_HEX), payload: hex("00ff") }),
    hex: `546d0100 11 ${A4_HEX} 00 ${B6_HEX} 07 ac02 01 ${MAC_HEX} 02 00ff`,
    size: 47,
  },
  {
    name: "RELAYED ack of IPv6 A6, epoch 7, id 42",
    d: datagram(B4, 3, { type: MessageType.Relayed, peer: A6, epoch: 7, id: 42, what: 0, mac: hex(MAC_HEX), payload: new Uint8Array(0) }),
    hex: `546d0100 12 ${B4_HEX} 03 ${A6_HEX} 07 2a 00 ${MAC_HEX} 00`,
    size: 44,
  },
  {
    name: "REPAIR_REQUEST from IPv4 for seqs 10, 11 and 140 of origin B4, epoch 7, stored within 300 ms",
    d: datagram(A4, 0, { type: MessageType.RepairRequest, origin: B4, epoch: 7, maxAgeMs: 300, seqs: [10, 11, 140] }),
    hex: `546d0100 0b ${A4_HEX} 00 ${B4_HEX} 07 ac02 03 0a 01 8101`,
    size: 28,
  },
  {
    name: "REPAIR from IPv6 with one broadcast",
    d: datagram(B6, 2, { type: MessageType.Repair }, [], [{ origin: A4, epoch: 7, seq: 11, payload: hex("6869") }]),
    hex: `546d0100 0c ${B6_HEX} 02   20 ${A4_HEX} 07 0b 02 6869`,
    size: 38,
  },
  {
    name: "GOSSIP with a DIGEST item (B4 epoch 7 up to seq 300, A6 epoch 1 up to seq 0)",
    d: {
      ...datagram(A4, 0, { type: MessageType.Gossip }),
      digest: [
        { origin: B4, epoch: 7, highestSeq: 300 },
        { origin: A6, epoch: 1, highestSeq: 0 },
      ],
    },
    hex: `546d0100 07 ${A4_HEX} 00   83 1f ${B4_HEX} 07 ac02 ${A6_HEX} 01 00`,
    size: 46,
  },
  {
    name: "GOSSIP from IPv6 with no items",
    d: datagram(B6, 0, { type: MessageType.Gossip }),
    hex: `546d0100 07 ${B6_HEX} 00`,
    size: 25,
  },
];

describe("golden vectors", () => {
  for (const g of GOLDEN) {
    test(`${g.name}: encodes to the golden bytes`, () => {
      const bytes = encodeDatagram(g.d);
      assert.equal(toHex(bytes), toHex(hex(g.hex)));
      assert.equal(bytes.length, g.size);
      const body = g.d.body;
      const itemsStart = headerBytes(g.d.from, g.d.incarnation, body);
      let items = cookieItemBytes(g.d);
      for (const u of g.d.updates) items += updateItemBytes(u);
      for (const b of g.d.broadcasts) items += broadcastItemBytes(b);
      assert.equal(itemsStart + items, g.size);
    });
    test(`${g.name}: the golden bytes decode to the structure`, () => {
      const decoded = decodeDatagram(hex(g.hex));
      assert.deepStrictEqual(decoded, g.d);
      assert.equal(decoded.from.key, g.d.from.key);
    });
  }

  test("every message type and item kind is covered", () => {
    const types = new Set(GOLDEN.map((g) => g.d.body.type));
    for (const t of Object.values(MessageType)) assert.ok(types.has(t), `message type ${t}`);
    const syncs = GOLDEN.filter((g) => g.d.body.type === MessageType.Sync).map((g) => (g.d.body as { replyWanted: boolean }).replyWanted);
    assert.deepStrictEqual(new Set(syncs), new Set([true, false]));
    const states = new Set(GOLDEN.flatMap((g) => g.d.updates.map((u) => u.state)));
    for (const s of Object.values(MemberState)) assert.ok(states.has(s), `member state ${s}`);
    assert.ok(GOLDEN.some((g) => g.d.broadcasts.length > 0));
    assert.ok(GOLDEN.some((g) => g.d.cookie !== undefined), "the COOKIE_ECHO item");
    assert.ok(GOLDEN.some((g) => g.d.updates.some((u) => u.tags !== undefined)), "the TAGS item");
    assert.ok(GOLDEN.some((g) => g.d.requestOptions !== undefined), "the REQUEST_OPTIONS item");
    assert.ok(GOLDEN.some((g) => g.d.digest !== undefined), "the DIGEST item");
  });

  test("a DIGEST item takes as many entries as fit in the room given, at most MAX_DIGEST_ENTRIES", () => {
    const entries: DigestEntry[] = [
      { origin: B4, epoch: 7, highestSeq: 300 },
      { origin: A6, epoch: 1, highestSeq: 0 },
    ];
    // Tag, length and the first (10-byte) entry: 12 bytes.
    assert.equal(encodeDigestItem(entries, 11), null);
    const one = encodeDigestItem(entries, 12);
    assert.equal(one?.count, 1);
    assert.equal(toHex(one!.item), toHex(hex(`83 0a ${B4_HEX} 07 ac02`)));
    assert.equal(encodeDigestItem(entries, 32)?.count, 1);
    assert.equal(encodeDigestItem(entries, 33)?.count, 2);
    const many = Array.from({ length: MAX_DIGEST_ENTRIES + 5 }, (_, i): DigestEntry => ({ origin: A4, epoch: i, highestSeq: i }));
    assert.equal(encodeDigestItem(many, MAX_DATAGRAM_BYTES)?.count, MAX_DIGEST_ENTRIES);
    assert.throws(() => encodeDatagram({ ...datagram(A4, 0, { type: MessageType.Gossip }), digest: many }), RangeError);
    assert.throws(() => encodeDatagram({ ...datagram(A4, 0, { type: MessageType.Gossip }), digest: [] }), RangeError);
  });

  test("a DIGEST of more than MAX_DIGEST_ENTRIES entries is BAD_LENGTH; after the first DIGEST item, more are ignored", () => {
    const entry = `${A4_HEX} 01 01`;
    const count = MAX_DIGEST_ENTRIES + 1;
    const content = entry.replace(/\s+/g, "").repeat(count);
    const len = content.length / 2;
    assertProtocolError(hex(`546d0100 07 ${A4_HEX} 00 83 ${toHex(Uint8Array.of((len & 0x7f) | 0x80, len >> 7))} ${content}`), "BAD_LENGTH");
    const two = decodeDatagram(hex(`546d0100 07 ${A4_HEX} 00   83 09 ${A4_HEX} 01 01   83 09 ${B4_HEX} 02 02`));
    assert.deepStrictEqual(two.digest, [{ origin: A4, epoch: 1, highestSeq: 1 }]);
  });

  test("a REPAIR_REQUEST asks for 1..MAX_REPAIR_SEQS strictly increasing seqs; the encoder refuses anything else", () => {
    const ask = (seqs: number[]): Body => ({ type: MessageType.RepairRequest, origin: B4, epoch: 1, maxAgeMs: 0, seqs });
    assert.throws(() => encodeDatagram(datagram(A4, 0, ask([]))), RangeError);
    assert.throws(() => encodeDatagram(datagram(A4, 0, ask([3, 3]))), RangeError);
    assert.throws(() => encodeDatagram(datagram(A4, 0, ask([4, 3]))), RangeError);
    assert.throws(() => encodeDatagram(datagram(A4, 0, ask(Array.from({ length: MAX_REPAIR_SEQS + 1 }, (_, i) => i)))), RangeError);
    const most = datagram(A4, 0, ask(Array.from({ length: MAX_REPAIR_SEQS }, (_, i) => 2 ** 32 - MAX_REPAIR_SEQS + i)));
    assert.deepStrictEqual(decodeDatagram(encodeDatagram(most)), most);
  });

  test("a REQUEST_OPTIONS item encodes to its golden bytes; a relay count out of range is refused", () => {
    assert.equal(toHex(encodeRequestOptionsItem({ ackWanted: false, relayCount: 5 })), "82020005");
    assert.throws(() => encodeRequestOptionsItem({ ackWanted: true, relayCount: MAX_RELAY_COUNT + 1 }), RangeError);
  });

  test("datagrams of the previous version (an ALIVE item without TAGS) still decode, without tags", () => {
    const d = decodeDatagram(hex(`546d0100 07 ${A4_HEX} 00   10 05 ${B4_HEX}`));
    assert.equal(d.updates[0]?.tags, undefined);
  });

  test("an older decoder's view: the TAGS item is an extension item it can skip by its length", () => {
    // Tags >= 0x80 carry a varint length; an unknown one is skipped. 0x81 and 0x82 are in that range.
    assert.ok(0x81 >= 0x80 && 0x82 >= 0x80);
    const withUnknownExtension = decodeDatagram(hex(`546d0100 07 ${A4_HEX} 00   10 05 ${B4_HEX}   8f 03 010203`));
    assert.equal(withUnknownExtension.updates.length, 1);
  });

  test("a relayed ack carries no payload: encoding one with a payload is refused, as its decoding is (BAD_LENGTH)", () => {
    for (const type of [MessageType.Relay, MessageType.Relayed] as const) {
      assert.throws(() => encodeDatagram(datagram(A4, 0, { type, peer: B6, epoch: 7, id: 42, what: 0, mac: hex(MAC_HEX), payload: hex("ff") })), RangeError);
    }
  });

  test("answer keys and MACs have their fixed sizes: others are refused when encoding", () => {
    assert.throws(() => encodeDatagram(datagram(A4, 0, { type: MessageType.Request, epoch: 1, id: 1, kind: 1, answerKey: new Uint8Array(15), payload: new Uint8Array(0) })), RangeError);
    assert.throws(() => encodeDatagram(datagram(A4, 0, { type: MessageType.Response, epoch: 1, id: 1, mac: new Uint8Array(9), payload: new Uint8Array(0) })), RangeError);
    assert.throws(() => encodeDatagram(datagram(A4, 0, { type: MessageType.RequestAck, epoch: 1, id: 1, mac: new Uint8Array(0) })), RangeError);
    assert.throws(() => encodeDatagram(datagram(A4, 0, { type: MessageType.Relay, peer: B6, epoch: 1, id: 1, what: 1, mac: new Uint8Array(7), payload: hex("00") })), RangeError);
  });

  test("tags only on ALIVE: encoding them on another state is refused", () => {
    assert.throws(() => updateItemBytes({ state: MemberState.Dead, incarnation: 1, member: A4, tags: hex("00") }), RangeError);
  });

  test("the COOKIE_ECHO item encodes to its golden bytes; any other cookie length is refused", () => {
    assert.equal(toHex(encodeCookieItem(hex("0001020304050607"))), toHex(hex("80 08 0001020304050607")));
    assert.equal(COOKIE_ITEM_BYTES, 10);
    assert.throws(() => encodeCookieItem(new Uint8Array(7)), RangeError);
    assert.throws(() => encodeDatagram(datagram(A4, 0, { type: MessageType.Cookie, seq: 1, cookie: new Uint8Array(9) })), RangeError);
  });

  test("old message numbers keep their meaning (the registry is append-only)", () => {
    assert.deepStrictEqual(
      { ...MessageType },
      { Ping: 1, Ack: 2, PingReq: 3, Nack: 4, Join: 5, Sync: 6, Gossip: 7, Cookie: 8, Request: 9, Response: 10, RequestAck: 16, Relay: 17, Relayed: 18, RepairRequest: 11, Repair: 12 },
    );
  });

  test("single items encode to golden bytes, for IPv4 and IPv6", () => {
    const cases: [MemberUpdate | UserBroadcast, string][] = [
      [alive(0, A4), `10 00 ${A4_HEX}`],
      [alive(1, A6), `10 01 ${A6_HEX}`],
      [suspect(127, B4, A4), `11 7f ${B4_HEX} ${A4_HEX}`],
      [suspect(128, A6, B6), `11 8001 ${A6_HEX} ${B6_HEX}`],
      [suspect(5, A4, A6), `11 05 ${A4_HEX} ${A6_HEX}`],
      [dead(2, B4), `12 02 ${B4_HEX}`],
      [dead(0x0fffffff, B6), `12 ffffff7f ${B6_HEX}`],
      [left(3, A4), `13 03 ${A4_HEX}`],
      [left(0x10000000, A6), `13 8080808001 ${A6_HEX}`],
      [{ origin: B4, epoch: 0, seq: 0, payload: hex("01") }, `20 ${B4_HEX} 00 00 01 01`],
      [{ origin: B6, epoch: 300, seq: 16383, payload: new Uint8Array(130).fill(0xaa) }, `20 ${B6_HEX} ac02 ff7f 8201 ${"aa".repeat(130)}`],
    ];
    for (const [item, expected] of cases) {
      const bytes = "payload" in item ? encodeBroadcastItem(item) : encodeUpdateItem(item);
      assert.equal(toHex(bytes), toHex(hex(expected)));
      assert.equal(bytes.length, "payload" in item ? broadcastItemBytes(item) : updateItemBytes(item));
    }
  });

  test("addresses are 7 bytes (IPv4) or 19 bytes (IPv6)", () => {
    assert.equal(addressBytes(A4), 7);
    assert.equal(addressBytes(B4), 7);
    assert.equal(addressBytes(A6), 19);
    assert.equal(addressBytes(B6), 19);
  });
});

// ---------------------------------------------------------------------------------------------
// Varints

describe("varints", () => {
  const EDGES: [number, string][] = [
    [0, "00"],
    [1, "01"],
    [127, "7f"],
    [128, "8001"],
    [300, "ac02"],
    [16383, "ff7f"],
    [16384, "808001"],
    [2 ** 21 - 1, "ffff7f"],
    [2 ** 21, "80808001"],
    [2 ** 28 - 1, "ffffff7f"],
    [2 ** 28, "8080808001"],
    [0xdeadbeef, "effdb6f50d"],
    [2 ** 32 - 1, "ffffffff0f"],
  ];

  test("sizes and encodings at every length boundary, through a PING seq", () => {
    for (const [value, enc] of EDGES) {
      assert.equal(varintBytes(value), enc.length / 2, `varintBytes(${value})`);
      const d = datagram(A4, 0, { type: MessageType.Ping, seq: value });
      const bytes = encodeDatagram(d);
      assert.equal(toHex(bytes), toHex(hex(`546d0100 01 ${A4_HEX} 00 ${enc}`)));
      assert.deepStrictEqual(decodeDatagram(bytes), d);
    }
  });

  test("varintBytes rejects what is not a u32", () => {
    for (const v of [-1, 2 ** 32, 1.5, Number.NaN, Infinity, -Infinity, 2 ** 53]) {
      assert.throws(() => varintBytes(v), RangeError, `varintBytes(${v})`);
      assert.throws(() => encodeDatagram(datagram(A4, 0, { type: MessageType.Ping, seq: v })), RangeError);
    }
  });

  const ping = (seqHex: string): Uint8Array => hex(`546d0100 01 ${A4_HEX} 00 ${seqHex}`);

  test("non-minimal encodings are VARINT_NONCANONICAL", () => {
    for (const enc of ["8000", "ff00", "808000", "ff8000", "80808000", "8080808000", "ffffffff00"]) {
      assertProtocolError(ping(enc), "VARINT_NONCANONICAL");
    }
  });

  test("values >= 2^32 and encodings longer than 5 bytes are VARINT_OVERFLOW", () => {
    for (const enc of ["8080808010", "ffffffff1f", "ffffffff7f", "808080808001", "8080808080808001", "ffffffffff"]) {
      assertProtocolError(ping(enc), "VARINT_OVERFLOW");
    }
  });

  test("a varint cut short is TRUNCATED", () => {
    for (const enc of ["80", "ff", "ffff", "ffffff", "ffffffff"]) assertProtocolError(ping(enc), "TRUNCATED");
  });
});

// ---------------------------------------------------------------------------------------------
// Every ProtocolError code from a hand-made input

describe("ProtocolError codes", () => {
  const PING = `546d0100 01 ${A4_HEX} 00 01`;
  const cases: [ProtocolErrorCode, string, string][] = [
    ["TRUNCATED", "empty input", ""],
    ["TRUNCATED", "shorter than the fixed header", "546d0100"],
    ["TRUNCATED", "no from address", "546d0100 01"],
    ["TRUNCATED", "IPv4 from address cut short", "546d0100 01 040a0000011f"],
    ["TRUNCATED", "IPv6 from address cut short", "546d0100 01 0620010db8"],
    ["TRUNCATED", "no incarnation", `546d0100 01 ${A4_HEX}`],
    ["TRUNCATED", "no seq", `546d0100 01 ${A4_HEX} 00`],
    ["TRUNCATED", "PING_REQ without target", `546d0100 03 ${A4_HEX} 00 01`],
    ["TRUNCATED", "SYNC without flags", `546d0100 06 ${A4_HEX} 00`],
    ["TRUNCATED", "SYNC without seq", `546d0100 06 ${A4_HEX} 00 01`],
    ["TRUNCATED", "JOIN without seq", `546d0100 05 ${A4_HEX} 00`],
    ["TRUNCATED", "item tag alone", `${PING} 10`],
    ["TRUNCATED", "ALIVE without member", `${PING} 10 01`],
    ["TRUNCATED", "SUSPECT without suspectedBy", `${PING} 11 01 ${A4_HEX}`],
    ["TRUNCATED", "BROADCAST without length", `${PING} 20 ${A4_HEX} 01 01`],
    ["TRUNCATED", "BROADCAST payload shorter than its length", `${PING} 20 ${A4_HEX} 01 01 03 6869`],
    ["TRUNCATED", "BROADCAST claiming 2^32-1 bytes", `${PING} 20 ${A4_HEX} 01 01 ffffffff0f 00`],
    ["BAD_MAGIC", "first magic byte", `556d0100 01 ${A4_HEX} 00 01`],
    ["BAD_MAGIC", "second magic byte", `544d0100 01 ${A4_HEX} 00 01`],
    ["BAD_VERSION", "version 0", `546d0000 01 ${A4_HEX} 00 01`],
    ["BAD_VERSION", "version 2", `546d0200 01 ${A4_HEX} 00 01`],
    ["BAD_FLAGS", "flag bit 1", `546d0102 01 ${A4_HEX} 00 01`],
    ["BAD_FLAGS", "flag bit 7", `546d0180 01 ${A4_HEX} 00 01`],
    ["BAD_FLAGS", "SEALED plus an unknown bit", `546d0103 01 ${A4_HEX} 00 01`],
    ["SEALED", "flag bit 0", `546d0101 01 ${A4_HEX} 00 01`],
    ["UNKNOWN_TYPE", "type 0", `546d0100 00 ${A4_HEX} 00 01`],
    ["UNKNOWN_TYPE", "type 13", `546d0100 0d ${A4_HEX} 00 01`],
    ["TRUNCATED", "REQUEST payload longer than the datagram", `546d0100 09 ${A4_HEX} 00 01 01 01 05 0102`],
    ["TRUNCATED", "RESPONSE without its payload length", `546d0100 0a ${A4_HEX} 00 01 01`],
    ["TRUNCATED", "COOKIE without its cookie", `546d0100 08 ${A4_HEX} 00 01 0102030405`],
    ["TRUNCATED", "COOKIE without seq", `546d0100 08 ${A4_HEX} 00`],
    ["TRUNCATED", "COOKIE_ECHO item shorter than its length", `${PING} 80 08 01020304`],
    ["BAD_LENGTH", "COOKIE_ECHO item of 7 bytes", `${PING} 80 07 01020304050607`],
    ["BAD_LENGTH", "COOKIE_ECHO item of 9 bytes", `${PING} 80 09 010203040506070809`],
    ["UNKNOWN_TYPE", "type 0xff", `546d0100 ff ${A4_HEX} 00 01`],
    ["UNKNOWN_ITEM", "tag 0x00", `${PING} 00`],
    ["UNKNOWN_ITEM", "tag 0x14", `${PING} 14 01 ${A4_HEX}`],
    ["UNKNOWN_ITEM", "tag 0x21", `${PING} 21`],
    ["UNKNOWN_ITEM", "after a valid item", `${PING} 10 01 ${A4_HEX} 7f`],
    ["TRUNCATED", "extension item without its length", `${PING} 80`],
    ["TRUNCATED", "extension item shorter than its length", `${PING} 80 05 aa bb`],
    ["BAD_ADDRESS", "from family 0", "546d0100 01 00 0a0000011f0a 00 01"],
    ["BAD_ADDRESS", "from family 5", "546d0100 01 05 0a0000011f0a 00 01"],
    ["BAD_ADDRESS", "from port 0", "546d0100 01 04 0a000001 0000 00 01"],
    ["BAD_ADDRESS", "IPv6 port 0", "546d0100 01 06 20010db8000000000000000000000001 0000 00 01"],
    ["BAD_ADDRESS", "PING_REQ target family 16", `546d0100 03 ${A4_HEX} 00 01 10 0a0000011f0a`],
    ["BAD_ADDRESS", "item member port 0", `${PING} 12 01 04 0a000001 0000`],
    ["BAD_ADDRESS", "suspectedBy family 7", `${PING} 11 01 ${A4_HEX} 07`],
    ["VARINT_OVERFLOW", "incarnation 2^32", `546d0100 01 ${A4_HEX} 8080808010 01`],
    ["VARINT_OVERFLOW", "6-byte seq", `546d0100 01 ${A4_HEX} 00 808080808001`],
    ["VARINT_OVERFLOW", "broadcast epoch >= 2^32", `${PING} 20 ${A4_HEX} ffffffff7f 01 01 aa`],
    ["VARINT_NONCANONICAL", "incarnation 0x80 0x00", `546d0100 01 ${A4_HEX} 8000 01`],
    ["VARINT_NONCANONICAL", "item incarnation 0x81 0x00", `${PING} 10 8100 ${A4_HEX}`],
    ["VARINT_NONCANONICAL", "broadcast length 0x85 0x00", `${PING} 20 ${A4_HEX} 01 01 8500 0102030405`],
    ["BAD_LENGTH", "broadcast length 0", `${PING} 20 ${A4_HEX} 01 01 00`],
    ["BAD_FLAGS", "SYNC flag bit 1", `546d0100 06 ${A4_HEX} 00 02`],
    ["BAD_FLAGS", "SYNC flags 0xff", `546d0100 06 ${A4_HEX} 00 ff`],
    ["BAD_FLAGS", "REQUEST_OPTIONS flag bit 1", `546d0100 09 ${A4_HEX} 00 07 2a 02 ${KEY_HEX} 00   82 02 02 00`],
    ["BAD_FLAGS", "RELAY what 2", `546d0100 11 ${A4_HEX} 00 ${B6_HEX} 07 2a 02 ${MAC_HEX} 00`],
    ["BAD_LENGTH", "RELAY of an ack (what 0) with a 1-byte payload", `546d0100 11 ${A4_HEX} 00 ${B6_HEX} 07 2a 00 ${MAC_HEX} 01 ff`],
    ["BAD_LENGTH", "RELAYED ack (what 0) with a 2-byte payload", `546d0100 12 ${A4_HEX} 00 ${B6_HEX} 07 2a 00 ${MAC_HEX} 02 00ff`],
    ["TRUNCATED", "REQUEST with a 15-byte answer key", `546d0100 09 ${A4_HEX} 00 07 2a 02 000102030405060708090a0b0c0d0e`],
    ["TRUNCATED", "RESPONSE with a 7-byte MAC", `546d0100 0a ${A4_HEX} 00 07 2a a0a1a2a3a4a5a6`],
    ["TRUNCATED", "REQUEST_ACK without its MAC", `546d0100 10 ${A4_HEX} 00 07 2a`],
    ["TRUNCATED", "RELAY without its MAC", `546d0100 11 ${A4_HEX} 00 ${B6_HEX} 07 2a 01`],
    ["BAD_LENGTH", "REQUEST_OPTIONS of 3 bytes", `546d0100 09 ${A4_HEX} 00 07 2a 02 ${KEY_HEX} 00   82 03 01 02 03`],
    ["BAD_LENGTH", "REQUEST_OPTIONS relay count 6", `546d0100 09 ${A4_HEX} 00 07 2a 02 ${KEY_HEX} 00   82 02 01 06`],
    ["UNKNOWN_TYPE", "message type 0x0f (not assigned)", `546d0100 0f ${A4_HEX} 00`],
    ["TRUNCATED", "REPAIR_REQUEST without its seqs", `546d0100 0b ${A4_HEX} 00 ${B4_HEX} 07 00 02 05`],
    ["TRUNCATED", "REPAIR_REQUEST without its origin", `546d0100 0b ${A4_HEX} 00 04 0a00`],
    ["BAD_LENGTH", "REPAIR_REQUEST for 0 seqs", `546d0100 0b ${A4_HEX} 00 ${B4_HEX} 07 00 00`],
    ["BAD_LENGTH", "REPAIR_REQUEST for 65 seqs", `546d0100 0b ${A4_HEX} 00 ${B4_HEX} 07 00 41 ${"01".repeat(65)}`],
    ["BAD_LENGTH", "REPAIR_REQUEST with a repeated seq (delta 0)", `546d0100 0b ${A4_HEX} 00 ${B4_HEX} 07 00 02 05 00`],
    ["BAD_LENGTH", "REPAIR_REQUEST seq past 2^32-1", `546d0100 0b ${A4_HEX} 00 ${B4_HEX} 07 00 02 ffffffff0f 01`],
    ["BAD_ADDRESS", "REPAIR_REQUEST origin port 0", `546d0100 0b ${A4_HEX} 00 04 0a000001 0000 07 00 01 01`],
    ["BAD_LENGTH", "an empty DIGEST item", `${PING} 83 00`],
    ["BAD_LENGTH", "a DIGEST entry running past its item", `${PING} 83 05 ${A4_HEX} 07 01`],
    ["TRUNCATED", "a DIGEST item longer than the datagram", `${PING} 83 20 ${A4_HEX}`],
    ["BAD_ADDRESS", "a DIGEST entry of family 5", `${PING} 83 09 05 0a000001 1f0a 01 01`],
    ["VARINT_NONCANONICAL", "a DIGEST entry's seq 0x80 0x00", `${PING} 83 0a ${A4_HEX} 01 8000`],
    ["UNKNOWN_TYPE", "message type 0x13 (beyond the last)", `546d0100 13 ${A4_HEX} 00`],
    ["TRUNCATED", "TAGS item longer than the datagram", `${PING} 10 01 ${A4_HEX} 81 0b ${ROLE_WEB_HEX}`],
    ["BAD_TAGS", "TAGS item first, after no ALIVE item", `${PING} 81 0a ${ROLE_WEB_HEX}`],
    ["BAD_TAGS", "TAGS item after a DEAD item", `${PING} 12 01 ${A4_HEX} 81 0a ${ROLE_WEB_HEX}`],
    ["BAD_TAGS", "TAGS with keys out of order", `${PING} 10 01 ${A4_HEX} 81 07 02 01 62 00 01 61 00`],
    ["BAD_TAGS", "TAGS with an empty key", `${PING} 10 01 ${A4_HEX} 81 03 01 00 00`],
    ["BAD_TAGS", "TAGS with bytes after the last pair", `${PING} 10 01 ${A4_HEX} 81 05 01 01 61 00 ff`],
  ];
  for (const [code, what, input] of cases) {
    test(`${code}: ${what}`, () => assertProtocolError(hex(input), code));
  }

  test("TOO_LARGE: one byte more than MAX_DATAGRAM_BYTES, even if otherwise valid", () => {
    const big = new Uint8Array(MAX_DATAGRAM_BYTES + 1);
    big.set(hex(`546d0100 07 ${A4_HEX} 00 20 ${A4_HEX} 01 01`));
    assertProtocolError(big, "TOO_LARGE");
  });

  test("every code is exercised above", () => {
    const seen = new Set<string>(cases.map((c) => c[0]));
    seen.add("TOO_LARGE");
    // Every code the decoder can report, from the one list in errors.ts.
    for (const code of PROTOCOL_ERROR_CODES) {
      assert.ok(seen.has(code), code);
    }
  });

  test("extension items (tags 0x80..0xff) are skipped by their length", () => {
    const d = decodeDatagram(hex(`${PING} 9f 02 aa bb 10 01 ${A4_HEX} ff 00`));
    assert.equal(d.updates.length, 1);
    assert.equal(d.updates[0]?.state, MemberState.Alive);
    assert.equal(d.broadcasts.length, 0);
  });

  test("the first COOKIE_ECHO item counts; a second is skipped", () => {
    const d = decodeDatagram(hex(`${PING} 80 08 0101010101010101 10 01 ${A4_HEX} 80 08 0202020202020202`));
    assert.equal(toHex(d.cookie ?? new Uint8Array()), "0101010101010101");
    assert.equal(d.updates.length, 1);
  });

  test("the error carries its offset", () => {
    try {
      decodeDatagram(hex(`${PING} 10 01 ${A4_HEX} 7f`));
      assert.fail("should throw");
    } catch (err) {
      assert.ok(err instanceof ProtocolError);
      assert.equal(err.code, "UNKNOWN_ITEM");
      assert.equal(err.offset, 14 + 9);
      assert.match(err.message, /^UNKNOWN_ITEM at byte 23/);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Decoder and encoder behaviour beyond the golden vectors

describe("codec behaviour", () => {
  test("the decoder accepts items in any order; re-encoding puts updates first", () => {
    const bytes = hex(`546d0100 07 ${A4_HEX} 00   20 ${A4_HEX} 01 02 01 aa   10 03 ${B4_HEX}`);
    const d = decodeDatagram(bytes);
    assert.deepStrictEqual(d, datagram(A4, 0, { type: MessageType.Gossip }, [alive(3, B4)], [{ origin: A4, epoch: 1, seq: 2, payload: hex("aa") }]));
    assert.equal(toHex(encodeDatagram(d)), toHex(hex(`546d0100 07 ${A4_HEX} 00   10 03 ${B4_HEX}   20 ${A4_HEX} 01 02 01 aa`)));
  });

  test("decoded bytes are copies: reusing a Node Buffer input changes nothing", () => {
    const payload = new Uint8Array(100).map((_, i) => i + 1);
    const d = datagram(A6, 1, { type: MessageType.Gossip }, [suspect(1, B6, A4)], [
      { origin: B4, epoch: 1, seq: 1, payload },
      { origin: A4, epoch: 1, seq: 2, payload: hex("0102") },
    ]);
    const buf = Buffer.from(encodeDatagram(d));
    const decoded = decodeDatagram(buf);
    buf.fill(0);
    assert.deepStrictEqual(decoded, d);
    for (const b of decoded.broadcasts) {
      assert.equal(Object.getPrototypeOf(b.payload), Uint8Array.prototype, "a plain Uint8Array, not a Buffer view");
      assert.notEqual(b.payload.buffer, buf.buffer);
    }
    assert.equal(Object.getPrototypeOf(decoded.from.ip), Uint8Array.prototype);
  });

  test("decoding works on a view into a larger buffer", () => {
    const inner = encodeDatagram(GOLDEN[9]!.d);
    const outer = new Uint8Array(inner.length + 20).fill(0xee);
    outer.set(inner, 10);
    assert.deepStrictEqual(decodeDatagram(outer.subarray(10, 10 + inner.length)), GOLDEN[9]!.d);
  });

  test("suspectedBy is set only on SUSPECT items", () => {
    const d = decodeDatagram(hex(GOLDEN[9]!.hex));
    assert.ok("suspectedBy" in d.updates[0]!);
    assert.ok(!("suspectedBy" in d.updates[1]!));
  });

  test("the largest datagram is MAX_DATAGRAM_BYTES; one byte more is refused both ways", () => {
    // GOSSIP header 13 bytes; broadcast item 1 + 7 + 1 + 1 + 3 (length varint) + payload.
    const payloadLen = MAX_DATAGRAM_BYTES - 13 - 13;
    const d = datagram(A4, 0, { type: MessageType.Gossip }, [], [{ origin: A4, epoch: 1, seq: 1, payload: new Uint8Array(payloadLen).fill(7) }]);
    const bytes = encodeDatagram(d);
    assert.equal(bytes.length, MAX_DATAGRAM_BYTES);
    assert.deepStrictEqual(decodeDatagram(bytes), d);
    const bigger = datagram(A4, 0, { type: MessageType.Gossip }, [], [{ origin: A4, epoch: 1, seq: 1, payload: new Uint8Array(payloadLen + 1) }]);
    assert.throws(() => encodeDatagram(bigger), RangeError);
    assert.throws(() => encodeDatagram(bigger, 100_000), RangeError);
  });

  test("encodeDatagram honours maxBytes", () => {
    const d = GOLDEN[9]!.d;
    assert.equal(encodeDatagram(d, 105).length, 105);
    assert.throws(() => encodeDatagram(d, 104), RangeError);
  });

  test("the encoder refuses what the decoder would refuse", () => {
    const noBy = { state: MemberState.Suspect, incarnation: 1, member: A4 } as MemberUpdate;
    assert.throws(() => encodeUpdateItem(noBy), RangeError);
    assert.throws(() => encodeUpdateItem({ state: MemberState.Alive, incarnation: 1, member: A4, suspectedBy: B4 }), RangeError);
    assert.throws(() => encodeUpdateItem({ state: 4 as MemberState, incarnation: 1, member: A4 }), RangeError);
    assert.throws(() => encodeUpdateItem(alive(-1, A4)), RangeError);
    assert.throws(() => encodeBroadcastItem({ origin: A4, epoch: 0, seq: 0, payload: new Uint8Array(0) }), RangeError);
    const badPort = { ...A4, port: 0 };
    assert.throws(() => encodeUpdateItem(alive(1, badPort)), RangeError);
    const badIp = { ...A4, ip: new Uint8Array(16) };
    assert.throws(() => encodeUpdateItem(alive(1, badIp)), RangeError);
    assert.throws(() => encodeDatagram(datagram(A4, 0, { type: 9 } as unknown as Body)), RangeError);
    // An explicit `suspectedBy: undefined` counts as absent.
    assert.equal(toHex(encodeUpdateItem({ state: MemberState.Dead, incarnation: 2, member: B4, suspectedBy: undefined })), toHex(hex(`12 02 ${B4_HEX}`)));
  });

  test("size facts: an IPv4 update item is 1 + varint + 7 bytes; a small IPv6 PING is under 40 bytes", () => {
    fc.assert(
      fc.property(fc.constantFrom(MemberState.Alive, MemberState.Dead, MemberState.Left), u32Arb, ipv4Arb, portArb, (state, incarnation, ip, port) => {
        const u: MemberUpdate = { state, incarnation, member: makeAddress(ip, port) };
        assert.equal(updateItemBytes(u), 1 + varintBytes(incarnation) + 7);
        assert.equal(encodeUpdateItem(u).length, 1 + varintBytes(incarnation) + 7);
      }),
      { numRuns: 500 },
    );
    const ping = encodeDatagram(datagram(A6, 12345, { type: MessageType.Ping, seq: 100 }));
    assert.ok(ping.length < 40, `${ping.length} bytes`);
    assert.equal(ping.length, 5 + 19 + 2 + 1);
    // The largest possible IPv6 PING (5-byte incarnation and seq) still fits in 40 bytes.
    assert.equal(headerBytes(A6, 2 ** 32 - 1, { type: MessageType.Ping, seq: 2 ** 32 - 1 }), 34);
  });
});

// ---------------------------------------------------------------------------------------------
// DatagramWriter

describe("DatagramWriter", () => {
  test("builds the same bytes as encodeDatagram, and reuses its buffer across datagrams", () => {
    const w = new DatagramWriter(1400);
    const outputs: Uint8Array[] = [];
    for (const g of GOLDEN) {
      w.begin(g.d.from, g.d.incarnation, g.d.body);
      assert.equal(w.length, headerBytes(g.d.from, g.d.incarnation, g.d.body));
      assert.equal(w.remaining, 1400 - w.length);
      if (g.d.cookie !== undefined) assert.equal(w.tryAppend(encodeCookieItem(g.d.cookie)), true);
      if (g.d.requestOptions !== undefined) assert.equal(w.tryAppend(encodeRequestOptionsItem(g.d.requestOptions)), true);
      for (const u of g.d.updates) assert.equal(w.tryAppend(encodeUpdateItem(u)), true);
      for (const b of g.d.broadcasts) assert.equal(w.tryAppend(encodeBroadcastItem(b)), true);
      if (g.d.digest !== undefined) assert.equal(w.tryAppend(encodeDigestItem(g.d.digest, w.remaining)!.item), true);
      outputs.push(w.finish());
    }
    for (let i = 0; i < GOLDEN.length; i++) assert.equal(toHex(outputs[i]!), toHex(hex(GOLDEN[i]!.hex)), GOLDEN[i]!.name);
  });

  test("capacity limits", () => {
    assert.throws(() => new DatagramWriter(4), RangeError);
    assert.throws(() => new DatagramWriter(MAX_DATAGRAM_BYTES + 1), RangeError);
    assert.throws(() => new DatagramWriter(100.5), RangeError);
    const w = new DatagramWriter(14);
    w.begin(A4, 0, { type: MessageType.Ping, seq: 1 });
    assert.equal(w.remaining, 0);
    assert.equal(w.tryAppend(new Uint8Array(1)), false);
    assert.equal(w.length, 14);
    assert.throws(() => w.begin(A4, 0, { type: MessageType.Ping, seq: 128 }), RangeError);
    assert.throws(() => w.tryAppend(new Uint8Array(0)), Error, "nothing begun after a failed begin");
    assert.throws(() => new DatagramWriter(100).finish(), Error);
    assert.throws(() => new DatagramWriter(100).tryAppend(hex("00")), Error);
  });

  test("tryAppend is false exactly when the item does not fit; the result decodes to the appended items", () => {
    const itemArb = fc.oneof(
      updateArb.map((u) => ({ u, bytes: encodeUpdateItem(u) })),
      broadcastArb(200).map((b) => ({ b, bytes: encodeBroadcastItem(b) })),
    );
    const writer = new DatagramWriter(MAX_DATAGRAM_BYTES);
    fc.assert(
      fc.property(fc.integer({ min: 5, max: 1500 }), addressArb, u32Arb, bodyArb, fc.array(itemArb, { maxLength: 40 }), (capacity, from, incarnation, body, items) => {
        const w = capacity % 2 === 0 ? new DatagramWriter(capacity) : writer;
        const limit = w === writer ? MAX_DATAGRAM_BYTES : capacity;
        const header = headerBytes(from, incarnation, body);
        if (header > limit) {
          assert.throws(() => w.begin(from, incarnation, body), RangeError);
          return;
        }
        w.begin(from, incarnation, body);
        const updates: MemberUpdate[] = [];
        const broadcasts: UserBroadcast[] = [];
        for (const item of items) {
          const before = w.length;
          const fits = item.bytes.length <= w.remaining;
          assert.equal(w.tryAppend(item.bytes), fits);
          assert.equal(w.length, fits ? before + item.bytes.length : before);
          assert.ok(w.length <= limit);
          assert.equal(w.length + w.remaining, limit);
          if (!fits) continue;
          if ("u" in item) updates.push(item.u);
          else broadcasts.push(item.b);
        }
        const bytes = w.finish();
        assert.equal(bytes.length, w.length);
        const d = decodeDatagram(bytes);
        assert.deepStrictEqual(d, { from, incarnation, body, updates, broadcasts });
      }),
      { numRuns: 2000 },
    );
  });
});

// ---------------------------------------------------------------------------------------------
// Round trips

describe("round-trip properties", () => {
  test("decode(encode(d)) deep-equals d, and encode(decode(bytes)) equals bytes", () => {
    fc.assert(
      fc.property(datagramArb(20, 5, 300), (d) => {
        const bytes = encodeDatagram(d);
        const decoded = decodeDatagram(bytes);
        assert.deepStrictEqual(decoded, d);
        for (let i = 0; i < d.updates.length; i++) assert.equal(decoded.updates[i]!.member.key, d.updates[i]!.member.key);
        assert.deepStrictEqual(encodeDatagram(decoded), bytes);
      }),
      { numRuns: 5000 },
    );
  });

  test("the encoded size is the sum of the measured parts", () => {
    fc.assert(
      fc.property(datagramArb(20, 5, 300), (d) => {
        let size = headerBytes(d.from, d.incarnation, d.body) + cookieItemBytes(d);
        for (const u of d.updates) size += updateItemBytes(u);
        for (const b of d.broadcasts) size += broadcastItemBytes(b);
        assert.equal(encodeDatagram(d).length, size);
      }),
      { numRuns: 1000 },
    );
  });
});

// ---------------------------------------------------------------------------------------------
// Fuzzing: whatever the bytes, decode returns a Datagram or throws a ProtocolError, and never
// mutates its input. A decoded result always re-encodes, and that encoding decodes the same.

function checkDecode(bytes: Uint8Array): Datagram | ProtocolError {
  const copy = bytes.slice();
  const result = decodeOrProtocolError(bytes);
  assert.deepStrictEqual(bytes, copy, "decode mutated its input");
  if (!(result instanceof ProtocolError)) {
    const again = encodeDatagram(result);
    assert.ok(again.length <= bytes.length);
    assert.deepStrictEqual(decodeDatagram(again), result);
  }
  return result;
}

type Mutation =
  | { kind: "flip"; pos: number; bit: number }
  | { kind: "overwrite"; pos: number; byte: number }
  | { kind: "insert"; pos: number; bytes: Uint8Array }
  | { kind: "delete"; pos: number; count: number }
  | { kind: "truncate"; pos: number };

const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant("flip" as const), pos: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }),
  fc.record({ kind: fc.constant("overwrite" as const), pos: fc.nat(), byte: fc.oneof(fc.integer({ min: 0, max: 255 }), fc.constantFrom(0x00, 0x80, 0xff, 0x10, 0x11, 0x20, 4, 6)) }),
  fc.record({ kind: fc.constant("insert" as const), pos: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 8 }) }),
  fc.record({ kind: fc.constant("delete" as const), pos: fc.nat(), count: fc.integer({ min: 1, max: 8 }) }),
  fc.record({ kind: fc.constant("truncate" as const), pos: fc.nat() }),
);

function mutate(input: Uint8Array, m: Mutation): Uint8Array {
  const n = input.length;
  const pos = n === 0 ? 0 : m.pos % (n + (m.kind === "insert" || m.kind === "truncate" ? 1 : 0));
  switch (m.kind) {
    case "flip": {
      if (n === 0) return input;
      const out = input.slice();
      out[pos] = out[pos]! ^ (1 << m.bit);
      return out;
    }
    case "overwrite": {
      if (n === 0) return input;
      const out = input.slice();
      out[pos] = m.byte;
      return out;
    }
    case "insert": {
      const out = new Uint8Array(n + m.bytes.length);
      out.set(input.subarray(0, pos));
      out.set(m.bytes, pos);
      out.set(input.subarray(pos), pos + m.bytes.length);
      return out;
    }
    case "delete": {
      const end = Math.min(n, pos + m.count);
      const out = new Uint8Array(n - (end - pos));
      out.set(input.subarray(0, pos));
      out.set(input.subarray(end), pos);
      return out;
    }
    case "truncate":
      return input.slice(0, pos);
  }
}

describe("fuzzing", () => {
  test("random bytes (0..2000) decode or throw a ProtocolError", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 2000 }), (bytes) => {
        checkDecode(bytes);
      }),
      { numRuns: 5000 },
    );
  });

  test("random bytes after a valid fixed header decode or throw a ProtocolError", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0x14 }), fc.uint8Array({ maxLength: 2000 }), (type, rest) => {
        const bytes = new Uint8Array(5 + rest.length);
        bytes.set(hex("546d0100"));
        bytes[4] = type;
        bytes.set(rest, 5);
        checkDecode(bytes);
      }),
      { numRuns: 5000 },
    );
  });

  test("mutated valid encodings decode or throw a ProtocolError", () => {
    fc.assert(
      fc.property(datagramArb(10, 3, 40), fc.array(mutationArb, { minLength: 1, maxLength: 4 }), (d, mutations) => {
        let bytes = encodeDatagram(d);
        for (const m of mutations) bytes = mutate(bytes, m);
        checkDecode(bytes);
      }),
      { numRuns: 5000 },
    );
  });

  test("every truncation of a valid encoding decodes to a prefix of its items or is TRUNCATED", () => {
    fc.assert(
      fc.property(datagramArb(6, 3, 30), (d) => {
        const bytes = encodeDatagram(d);
        // Item boundaries: after the header, after the cookie item, after the request options
        // item, then after each update (and between an ALIVE item and its TAGS item: that prefix
        // is the ALIVE without tags) and each broadcast. Each maps to the datagram it decodes to.
        const boundaries = new Map<number, Datagram>();
        const prefix = (updates: readonly MemberUpdate[], broadcasts: readonly UserBroadcast[], cookie: boolean, options: boolean): Datagram => {
          const p = datagram(d.from, d.incarnation, d.body, [...updates], [...broadcasts], cookie ? d.cookie : undefined);
          return options && d.requestOptions !== undefined ? { ...p, requestOptions: d.requestOptions } : p;
        };
        let at = headerBytes(d.from, d.incarnation, d.body);
        if (d.cookie !== undefined) boundaries.set(at, prefix([], [], false, false));
        if (d.cookie !== undefined) at += COOKIE_ITEM_BYTES;
        if (d.requestOptions !== undefined) boundaries.set(at, prefix([], [], true, false));
        if (d.requestOptions !== undefined) at += REQUEST_OPTIONS_ITEM_BYTES;
        boundaries.set(at, prefix([], [], true, true));
        for (let i = 0; i < d.updates.length; i++) {
          const u = d.updates[i]!;
          if (u.tags !== undefined) {
            const { tags, ...bare } = u;
            boundaries.set(at + updateItemBytes(bare), prefix([...d.updates.slice(0, i), bare], [], true, true));
            void tags;
          }
          boundaries.set((at += updateItemBytes(u)), prefix(d.updates.slice(0, i + 1), [], true, true));
        }
        for (let i = 0; i < d.broadcasts.length; i++) boundaries.set((at += broadcastItemBytes(d.broadcasts[i]!)), prefix(d.updates, d.broadcasts.slice(0, i + 1), true, true));
        // The DIGEST item comes last: the whole datagram ends with it.
        if (d.digest !== undefined) boundaries.set((at += digestItemBytes(d.digest)), d);
        assert.equal(at, bytes.length);
        for (let len = 0; len <= bytes.length; len++) {
          const result = checkDecode(bytes.subarray(0, len));
          const expected = boundaries.get(len);
          if (expected === undefined) {
            assert.ok(result instanceof ProtocolError && result.code === "TRUNCATED", `length ${len}: ${String(result)}`);
          } else {
            assert.deepStrictEqual(result, expected);
          }
        }
      }),
      { numRuns: 500 },
    );
  });
});

describe("address interning", () => {
  test("hostile datagrams naming ever new addresses keep the intern tables bounded; addresses in use stay shared", () => {
    setInternGeneration(64);
    try {
      const member = decodeDatagram(encodeDatagram(datagram(addr("10.1.0.1:7946"), 0, { type: MessageType.Ping, seq: 1 }))).from;
      const member6 = decodeDatagram(encodeDatagram(datagram(addr("[2001:db8::1]:7946"), 0, { type: MessageType.Ping, seq: 1 }))).from;
      const evictedBefore = internStats.evicted;
      const ip4 = new Uint8Array(4);
      const ip6 = new Uint8Array(16);
      ip6[0] = 0x20;
      const N = 5000;
      for (let i = 0; i < N; i++) {
        ip4.set([198, 51, (i >> 8) & 0xff, i & 0xff]);
        ip6.set([(i >> 8) & 0xff, i & 0xff], 14);
        // A stranger's datagram naming a random address, then one of the member (in use).
        const hostile = datagram(makeAddress(ip4, 1 + (i % 60000)), 0, { type: MessageType.Gossip }, [alive(1, makeAddress(ip6, 7946))]);
        decodeDatagram(encodeDatagram(hostile));
        const d = decodeDatagram(encodeDatagram(datagram(member, 0, { type: MessageType.Gossip }, [alive(1, member6)])));
        assert.equal(d.from, member, "an address in use stays the same object");
        assert.equal(d.updates[0]?.member, member6);
      }
      // Two generations of 64 per family at most.
      assert.ok(internStats.interned <= 4 * 64, `${internStats.interned} addresses held`);
      assert.ok(internStats.evicted - evictedBefore >= 2 * N - 4 * 64, "the others were forgotten, counted");
      // A forgotten address decodes to an equal one (same key and id), a new object.
      const first = makeAddress(Uint8Array.of(198, 51, 0, 0), 1);
      assert.equal(first.key, "198.51.0.0:1");
      assert.equal(first.id, (((198 << 24) | (51 << 16)) >>> 0) * 65536 + 1);
    } finally {
      setInternGeneration(DEFAULT_INTERN_GENERATION);
    }
    assert.throws(() => setInternGeneration(63), RangeError);
  });
});
