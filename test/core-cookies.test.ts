/**
 * Join cookies: SipHash-2-4 against its reference vectors, the stateless cookie and the
 * per-source reply limiter, and the core's behaviour towards a requester that has not shown it
 * receives at its address: a JOIN (or push-pull request) from it gets exactly one small COOKIE
 * datagram and no member list; echoing the cookie gets the list; a wrong or expired cookie gets
 * only another cookie; replies per source are rate-limited and every refusal is counted; a
 * member proven by a ping answer does push-pull without a cookie; and the joining side follows
 * the round trip by itself, also under loss. Probes get the same care: a PING or PING_REQ from
 * an address not proven yet earns nothing larger than itself (no piggyback beyond its size), out
 * of the same per-source bucket, and one from a stranger teaches nothing; a proven member's
 * gets full piggyback, and a helper that answers our PING_REQ is proven.
 */

import { describe, test } from "node:test";
import assert from "node:assert/strict";

import { addr, type Address } from "../src/core/address.js";
import { makeConfig } from "../src/core/config.js";
import { COOKIE_WINDOW_MS, CookieJar, RATE_LIMIT_BURST, RATE_LIMIT_REFILL_MS, SourceRateLimiter } from "../src/core/cookie.js";
import { SwimNode } from "../src/core/node.js";
import { siphash24 } from "../src/core/siphash.js";
import { MemberState, MessageType, type Body } from "../src/core/wire/messages.js";
import { CoreHost } from "../src/engine/host.js";
import { LATENCY_MS, ManualCluster, RecordingRuntime, craft, type SentDatagram } from "./helpers/cluster.js";

// ---------------------------------------------------------------------------------------------
// SipHash-2-4: the 64 vectors of the reference implementation (key 00..0f, message 00..i-1),
// as the 64-bit results (the output bytes are their little-endian encoding).

const SIPHASH_VECTORS: readonly bigint[] = [
  0x726fdb47dd0e0e31n, 0x74f839c593dc67fdn, 0x0d6c8009d9a94f5an, 0x85676696d7fb7e2dn,
  0xcf2794e0277187b7n, 0x18765564cd99a68dn, 0xcbc9466e58fee3cen, 0xab0200f58b01d137n,
  0x93f5f5799a932462n, 0x9e0082df0ba9e4b0n, 0x7a5dbbc594ddb9f3n, 0xf4b32f46226bada7n,
  0x751e8fbc860ee5fbn, 0x14ea5627c0843d90n, 0xf723ca908e7af2een, 0xa129ca6149be45e5n,
  0x3f2acc7f57c29bdbn, 0x699ae9f52cbe4794n, 0x4bc1b3f0968dd39cn, 0xbb6dc91da77961bdn,
  0xbed65cf21aa2ee98n, 0xd0f2cbb02e3b67c7n, 0x93536795e3a33e88n, 0xa80c038ccd5ccec8n,
  0xb8ad50c6f649af94n, 0xbce192de8a85b8ean, 0x17d835b85bbb15f3n, 0x2f2e6163076bcfadn,
  0xde4daaaca71dc9a5n, 0xa6a2506687956571n, 0xad87a3535c49ef28n, 0x32d892fad841c342n,
  0x7127512f72f27ccen, 0xa7f32346f95978e3n, 0x12e0b01abb051238n, 0x15e034d40fa197aen,
  0x314dffbe0815a3b4n, 0x027990f029623981n, 0xcadcd4e59ef40c4dn, 0x9abfd8766a33735cn,
  0x0e3ea96b5304a7d0n, 0xad0c42d6fc585992n, 0x187306c89bc215a9n, 0xd4a60abcf3792b95n,
  0xf935451de4f21df2n, 0xa9538f0419755787n, 0xdb9acddff56ca510n, 0xd06c98cd5c0975ebn,
  0xe612a3cb9ecba951n, 0xc766e62cfcadaf96n, 0xee64435a9752fe72n, 0xa192d576b245165an,
  0x0a8787bf8ecb74b2n, 0x81b3e73d20b49b6fn, 0x7fa8220ba3b2ecean, 0x245731c13ca42499n,
  0xb78dbfaf3a8d83bdn, 0xea1ad565322a1a0bn, 0x60e61c23a3795013n, 0x6606d7e446282b93n,
  0x6ca4ecb15c5f91e1n, 0x9f626da15c9625f3n, 0xe51b38608ef25f57n, 0x958a324ceb064572n,
];

function le64(bytes: Uint8Array): bigint {
  let v = 0n;
  for (let i = 7; i >= 0; i--) v = (v << 8n) | BigInt(bytes[i] as number);
  return v;
}

describe("SipHash-2-4", () => {
  test("matches the reference implementation's 64 test vectors", () => {
    const key = Uint8Array.from({ length: 16 }, (_, i) => i);
    for (let i = 0; i < 64; i++) {
      const message = Uint8Array.from({ length: i }, (_, j) => j);
      assert.equal(le64(siphash24(key, message)), SIPHASH_VECTORS[i], `message of ${i} bytes`);
    }
  });

  test("refuses a key that is not 16 bytes, and writes into a given buffer", () => {
    assert.throws(() => siphash24(new Uint8Array(15), new Uint8Array(0)), RangeError);
    const out = new Uint8Array(8);
    assert.equal(siphash24(new Uint8Array(16), new Uint8Array(3), out), out);
  });
});

// ---------------------------------------------------------------------------------------------

const SECRET = Uint8Array.from({ length: 16 }, (_, i) => 0xa0 + i);
const V = addr("203.0.113.7:7946"); // a victim whose address a forger uses
const W = addr("203.0.113.8:7946");

describe("cookies", () => {
  test("are 8 bytes bound to the address, the secret and the window", () => {
    const jar = new CookieJar(SECRET);
    const c = jar.make(V, 1000);
    assert.equal(c.length, 8);
    assert.ok(jar.check(V, c, 1000));
    assert.ok(!jar.check(W, c, 1000), "another address");
    assert.ok(!jar.check(addr("203.0.113.7:7947"), c, 1000), "another port");
    assert.ok(!new CookieJar(SECRET.map((b) => b ^ 1)).check(V, c, 1000), "another secret");
    const wrong = c.slice();
    wrong[3] = (wrong[3] as number) ^ 0x10;
    assert.ok(!jar.check(V, wrong, 1000), "one bit off");
    assert.ok(!jar.check(V, c.subarray(0, 7), 1000), "too short");
  });

  test("are valid in their window and the next one, not later", () => {
    const jar = new CookieJar(SECRET);
    const c = jar.make(V, COOKIE_WINDOW_MS - 1);
    assert.ok(jar.check(V, c, COOKIE_WINDOW_MS - 1));
    assert.ok(jar.check(V, c, COOKIE_WINDOW_MS), "the next window");
    assert.ok(jar.check(V, c, 2 * COOKIE_WINDOW_MS - 1));
    assert.ok(!jar.check(V, c, 2 * COOKIE_WINDOW_MS), "two windows on: expired");
    assert.ok(!jar.check(V, jar.make(V, 3 * COOKIE_WINDOW_MS), COOKIE_WINDOW_MS), "a cookie from the future");
  });

  test("IPv6 addresses work alike", () => {
    const jar = new CookieJar(SECRET);
    const v6 = addr("[2001:db8::7]:7946");
    const c = jar.make(v6, 5);
    assert.ok(jar.check(v6, c, 5));
    assert.ok(!jar.check(addr("[2001:db8::8]:7946"), c, 5));
  });
});

describe("the per-source reply limiter", () => {
  test("allows a burst, then one reply per refill interval", () => {
    const l = new SourceRateLimiter(8, 3, 1000);
    assert.deepEqual([1, 2, 3, 4].map(() => l.take("v", 0)), [true, true, true, false]);
    assert.equal(l.take("w", 0), true, "another source has its own bucket");
    assert.equal(l.take("v", 999), false);
    assert.equal(l.take("v", 1000), true);
    assert.equal(l.take("v", 1500), false);
    assert.equal(l.take("v", 2000), true);
    // A long pause refills up to the burst, no further.
    assert.deepEqual([1, 2, 3, 4].map(() => l.take("v", 100_000)), [true, true, true, false]);
  });

  test("holds a bounded number of sources, forgetting the oldest", () => {
    const l = new SourceRateLimiter(4, 1, 1000);
    for (let i = 0; i < 4; i++) assert.ok(l.take(`s${i}`, 0));
    assert.equal(l.take("s0", 0), false);
    assert.ok(l.take("s4", 0));
    assert.equal(l.size, 4);
    assert.ok(l.take("s0", 0), "s0 was the oldest and was forgotten: a fresh bucket");
    assert.equal(l.take("s4", 0), false, "s4 is still remembered");
  });
});

// ---------------------------------------------------------------------------------------------
// One node driven by hand.

const SELF = addr("10.0.0.1:7946");
const B = addr("10.0.0.2:7946");
const MEMBERS: readonly Address[] = Array.from({ length: 300 }, (_, i) => addr(`10.1.${i >> 8}.${i & 0xff}:7946`));

function seedNode(members: readonly Address[] = MEMBERS): { n: SwimNode; rt: RecordingRuntime } {
  const rt = new RecordingRuntime(SELF);
  const n = new SwimNode({ self: SELF, config: makeConfig("lan"), seed: 11, incarnation: 1, broadcastEpoch: 1 });
  n.addConvergedMembers(0, members, 1);
  n.start(0, rt);
  return { n, rt };
}

const JOIN = (seq: number): Body => ({ type: MessageType.Join, seq });
const PUSH_PULL = (seq: number): Body => ({ type: MessageType.Sync, replyWanted: true, seq });

function sentSince(rt: RecordingRuntime, from: number): SentDatagram[] {
  return rt.sent.slice(from);
}

function cookieOf(d: SentDatagram | undefined): Uint8Array {
  const body = d?.decoded?.body;
  assert.ok(body !== undefined && body.type === MessageType.Cookie, `expected a COOKIE, got ${String(body?.type)}`);
  return body.cookie;
}

describe("a seed facing requests from unproven addresses", () => {
  test("a JOIN from an unproven address gets exactly one small datagram (the cookie), no member list", () => {
    const { n, rt } = seedNode();
    const join = craft(V, 0, [], JOIN(7));
    n.handleDatagram(10, join, rt);
    assert.equal(rt.sent.length, 1, "one datagram back");
    const reply = rt.sent[0] as SentDatagram;
    assert.equal(reply.to.key, V.key);
    const body = reply.decoded?.body;
    assert.ok(body !== undefined && body.type === MessageType.Cookie && body.seq === 7);
    assert.equal(reply.decoded?.updates.length, 0, "no member items");
    assert.equal(reply.decoded?.broadcasts.length, 0);
    assert.ok(reply.bytes.length <= join.length + 8, `${reply.bytes.length} bytes back for ${join.length}`);
    assert.equal(n.member(V.key), undefined, "nothing it said is learned");
    assert.equal(n.stats.cookiesSent, 1);
    assert.equal(n.stats.syncsSent, 0);
    assert.equal(n.stats.requestsRefused, 1);
    assert.deepEqual(n.stats.requestsRefusedByReason, { NO_COOKIE: 1 });
  });

  test("echoing the cookie gets the whole member list, and makes the joiner a proven member", () => {
    const { n, rt } = seedNode();
    n.handleDatagram(10, craft(V, 0, [], JOIN(7)), rt);
    const cookie = cookieOf(rt.sent[0]);
    const before = rt.sent.length;
    n.handleDatagram(12, craft(V, 0, [], JOIN(8), [], cookie), rt);
    const syncs = sentSince(rt, before);
    assert.ok(syncs.length >= 3, `the list spans ${syncs.length} datagrams`);
    for (const d of syncs) {
      assert.equal(d.to.key, V.key);
      const body = d.decoded?.body;
      assert.ok(body !== undefined && body.type === MessageType.Sync && !body.replyWanted && body.seq === 8);
    }
    const listed = new Set(syncs.flatMap((d) => d.decoded?.updates ?? []).map((u) => u.member.key));
    for (const m of [SELF, ...MEMBERS]) assert.ok(listed.has(m.key), `${m.key} listed`);
    assert.equal(n.stateOf(V.key), MemberState.Alive);
    assert.equal(n.stats.cookiesAccepted, 1);
    // Proven now: its push-pull gets the list at once.
    const again = rt.sent.length;
    n.handleDatagram(20, craft(V, 0, [], PUSH_PULL(9)), rt);
    assert.ok(sentSince(rt, again).length >= 3 && sentSince(rt, again).every((d) => d.decoded?.body.type === MessageType.Sync));
    assert.equal(n.stats.cookiesSent, 1);
  });

  test("a wrong, foreign or expired cookie gets nothing more than another cookie", () => {
    const { n, rt } = seedNode();
    n.handleDatagram(10, craft(V, 0, [], JOIN(1)), rt);
    const cookie = cookieOf(rt.sent[0]);
    const wrong = cookie.slice();
    wrong[0] = (wrong[0] as number) ^ 1;
    const cases: [string, number, Address, Uint8Array][] = [
      ["a wrong cookie", 20, V, wrong],
      ["another address's cookie", 30, W, cookie],
      ["an expired cookie", 10 + 2 * COOKIE_WINDOW_MS, V, cookie],
    ];
    let seq = 2;
    for (const [what, at, from, c] of cases) {
      const before = rt.sent.length;
      n.handleDatagram(at, craft(from, 0, [], JOIN(seq++), [], c), rt);
      const out = sentSince(rt, before);
      assert.equal(out.length, 1, what);
      assert.equal(out[0]?.decoded?.body.type, MessageType.Cookie, what);
      assert.equal(out[0]?.to.key, from.key, what);
    }
    assert.equal(n.stats.syncsSent, 0);
    assert.equal(n.member(V.key), undefined);
    assert.deepEqual(n.stats.requestsRefusedByReason, { NO_COOKIE: 1, BAD_COOKIE: 3 });
    assert.equal(n.stats.requestsRefused, 4);
  });

  test("a cookie from the previous window is still accepted", () => {
    const { n, rt } = seedNode();
    n.handleDatagram(COOKIE_WINDOW_MS - 5, craft(V, 0, [], JOIN(1)), rt);
    const cookie = cookieOf(rt.sent[0]);
    const before = rt.sent.length;
    n.handleDatagram(COOKIE_WINDOW_MS + 5, craft(V, 0, [], JOIN(2), [], cookie), rt);
    assert.ok(sentSince(rt, before).every((d) => d.decoded?.body.type === MessageType.Sync));
    assert.ok(sentSince(rt, before).length > 0);
  });

  test("replies per source are rate-limited, and every refusal is counted by reason", () => {
    const { n, rt } = seedNode();
    for (let i = 0; i < 100; i++) n.handleDatagram(10, craft(V, 0, [], JOIN(100 + i)), rt);
    assert.equal(rt.sent.length, RATE_LIMIT_BURST, "a burst of cookies, then nothing");
    assert.ok(rt.sent.every((d) => d.to.key === V.key && d.decoded?.body.type === MessageType.Cookie));
    assert.deepEqual(n.stats.requestsRefusedByReason, { NO_COOKIE: RATE_LIMIT_BURST, RATE_LIMITED: 100 - RATE_LIMIT_BURST });
    assert.equal(n.stats.requestsRefused, 100);
    // Another source is not held back by V's flood.
    n.handleDatagram(10, craft(W, 0, [], JOIN(1)), rt);
    assert.equal(rt.sent.at(-1)?.to.key, W.key);
    // One more reply per refill interval.
    const before = rt.sent.length;
    n.handleDatagram(10 + RATE_LIMIT_REFILL_MS, craft(V, 0, [], JOIN(300)), rt);
    n.handleDatagram(10 + RATE_LIMIT_REFILL_MS, craft(V, 0, [], JOIN(301)), rt);
    assert.equal(rt.sent.length, before + 1);
  });

  test("a push-pull request from an unproven member gets one cookie, however many datagrams it spans", () => {
    const { n, rt } = seedNode([]);
    // B's request: its list in three datagrams, all with the same seq; each sent twice.
    const alive = (m: Address): { state: MemberState; incarnation: number; member: Address } => ({ state: MemberState.Alive, incarnation: 1, member: m });
    const parts = [MEMBERS.slice(0, 100), MEMBERS.slice(100, 200), MEMBERS.slice(200)].map((ms) => craft(B, 1, ms.map(alive), PUSH_PULL(77)));
    for (const bytes of [...parts, ...parts]) n.handleDatagram(5, bytes, rt);
    assert.equal(rt.sent.filter((d) => d.decoded?.body.type === MessageType.Sync).length, 0, "no member list");
    assert.equal(rt.sent.filter((d) => d.decoded?.body.type === MessageType.Cookie).length, 1, "one cookie");
    assert.equal(n.memberCount, 302, "the pushed half of the exchange is still learned");
    // The request again, with the cookie: the list comes back.
    const cookie = cookieOf(rt.sent.find((d) => d.decoded?.body.type === MessageType.Cookie));
    const before = rt.sent.length;
    n.handleDatagram(6, craft(B, 1, [], PUSH_PULL(78), [], cookie), rt);
    assert.ok(sentSince(rt, before).length >= 3 && sentSince(rt, before).every((d) => d.to.key === B.key && d.decoded?.body.type === MessageType.Sync));
  });

  test("the requesting side of a push-pull follows a cookie once, with the cookie in every datagram", () => {
    const { n, rt } = seedNode();
    rt.runTimers(n, 0);
    const before = rt.sent.length;
    n.handleTimer(1000, { kind: "pushPull", once: true }, rt);
    const request = sentSince(rt, before);
    const target = request[0]?.to as Address;
    const body = request[0]?.decoded?.body;
    assert.ok(body !== undefined && body.type === MessageType.Sync && body.replyWanted);
    const cookie = new Uint8Array(8).fill(0x5a);
    const cookieFrom = (seq: number): Uint8Array => craft(target, 1, [], { type: MessageType.Cookie, seq, cookie });
    const again = rt.sent.length;
    n.handleDatagram(1001, cookieFrom(body.seq), rt);
    const retry = sentSince(rt, again);
    assert.ok(retry.length >= 3, "the whole request again");
    for (const d of retry) {
      assert.equal(d.to.key, target.key);
      assert.deepEqual(d.decoded?.cookie, cookie);
      assert.ok(d.decoded?.body.type === MessageType.Sync && d.decoded.body.replyWanted);
    }
    // A second cookie, for the retry or the first request, is not followed.
    const retrySeq = retry[0]?.decoded?.body.type === MessageType.Sync ? retry[0].decoded.body.seq : -1;
    const after = rt.sent.length;
    n.handleDatagram(1002, cookieFrom(retrySeq), rt);
    n.handleDatagram(1002, cookieFrom(body.seq), rt);
    assert.equal(rt.sent.length, after);
    assert.equal(n.stats.cookiesIgnored, 2);
  });

  test("a member proven by a ping answer does push-pull without a cookie", () => {
    const { n, rt } = seedNode([]);
    // B is learned from its own gossip: known, not proven.
    n.handleDatagram(1, craft(B, 1), rt);
    n.handleDatagram(2, craft(B, 1, [], PUSH_PULL(50)), rt);
    assert.equal(rt.sent.at(-1)?.decoded?.body.type, MessageType.Cookie, "unproven: a cookie");
    // This node probes B and B answers.
    rt.runTimers(n, 2000, (t) => t.kind === "probe");
    const ping = rt.sent.filter((d) => d.to.key === B.key && d.decoded?.body.type === MessageType.Ping).at(-1);
    const pingBody = ping?.decoded?.body;
    assert.ok(pingBody !== undefined && pingBody.type === MessageType.Ping, "B was probed");
    n.handleDatagram(rt.nowMs, craft(B, 1, [], { type: MessageType.Ack, seq: pingBody.seq }), rt);
    const before = rt.sent.length;
    n.handleDatagram(rt.nowMs + 1, craft(B, 1, [], PUSH_PULL(51)), rt);
    const out = sentSince(rt, before);
    assert.ok(out.length > 0 && out.every((d) => d.to.key === B.key && d.decoded?.body.type === MessageType.Sync), "the list, at once");
    assert.equal(n.stats.cookiesSent, 1);
  });

  test("a member that dies must prove its address again", () => {
    const { n, rt } = seedNode([B]);
    n.handleDatagram(5, craft(B, 1, [], PUSH_PULL(1)), rt);
    assert.equal(rt.sent.at(-1)?.decoded?.body.type, MessageType.Sync, "a long-standing member is proven");
    n.handleDatagram(6, craft(W, 1, [{ state: MemberState.Dead, incarnation: 1, member: B }]), rt);
    assert.equal(n.stateOf(B.key), MemberState.Dead);
    n.handleDatagram(7, craft(B, 2, [], PUSH_PULL(2)), rt);
    assert.equal(n.stateOf(B.key), MemberState.Alive, "refuted");
    assert.equal(rt.sent.filter((d) => d.to.key === B.key).at(-1)?.decoded?.body.type, MessageType.Cookie);
  });

  test("a COOKIE that answers no request of ours is ignored: nothing is sent", () => {
    const { n, rt } = seedNode();
    const cookie = new Uint8Array(8).fill(7);
    n.handleDatagram(5, craft(B, 1, [], { type: MessageType.Cookie, seq: 1234, cookie }), rt);
    assert.equal(rt.sent.length, 0);
    assert.equal(n.stats.cookiesIgnored, 1);
  });

  test("the counters reach the host's flat stats", () => {
    const sent: Address[] = [];
    const host = new CoreHost(
      { self: SELF, config: makeConfig("lan"), seed: 1, incarnation: 1, broadcastEpoch: 1, cookieSecret: SECRET },
      { send: (to) => sent.push(to), emit: () => {}, reply: () => {} },
    );
    host.dispatch(0, { type: "start", token: 1 });
    for (let i = 0; i < RATE_LIMIT_BURST + 2; i++) host.handleDatagram(1, craft(V, 0, [], JOIN(i + 1)));
    const stats = host.stats();
    assert.equal(stats["core.cookiesSent"], RATE_LIMIT_BURST);
    assert.equal(stats["core.requestsRefused"], RATE_LIMIT_BURST + 2);
    assert.equal(stats["core.requestsRefused.NO_COOKIE"], RATE_LIMIT_BURST);
    assert.equal(stats["core.requestsRefused.RATE_LIMITED"], 2);
    assert.equal(sent.length, RATE_LIMIT_BURST);
  });

  test("with a host's cookie secret, cookies are its own", () => {
    const make = (cookieSecret?: Uint8Array): Uint8Array => {
      const rt = new RecordingRuntime(SELF);
      const n = new SwimNode({ self: SELF, config: makeConfig("lan"), seed: 1, incarnation: 1, broadcastEpoch: 1, ...(cookieSecret ? { cookieSecret } : {}) });
      n.start(0, rt);
      n.handleDatagram(1, craft(V, 0, [], JOIN(1)), rt);
      return cookieOf(rt.sent[0]);
    };
    assert.deepEqual(make(SECRET), new CookieJar(SECRET).make(V, 1));
    assert.notDeepEqual(make(), make(SECRET));
    assert.deepEqual(make(), make(), "the default secret follows the seed");
  });
});

// ---------------------------------------------------------------------------------------------
// The joining side, in a hand-driven cluster.

function bodyTypes(c: ManualCluster, from: number): number[] {
  return c.sentLog.slice(from).map((d) => d.decoded?.body.type ?? -1);
}

describe("joining through the cookie round trip", () => {
  test("join follows the cookie by itself: one round trip more than a plain JOIN/SYNC", () => {
    const c = new ManualCluster({ size: 3, seed: 21 });
    c.startAll();
    c.join(1, [0]);
    assert.ok(c.runUntil(() => c.rt(1).events.some((e) => e.event.type === "joinResult"), 100));
    const result = c.rt(1).events.find((e) => e.event.type === "joinResult");
    assert.ok(result?.event.type === "joinResult" && result.event.ok);
    assert.equal(result.atMs, 4 * LATENCY_MS, "JOIN, COOKIE, JOIN with the cookie, SYNC");
    const exchange = c.sentLog.filter((d) => d.decoded?.body.type !== MessageType.Ping && d.decoded?.body.type !== MessageType.Ack);
    assert.deepEqual(
      exchange.slice(0, 3).map((d) => [d.decoded?.body.type, d.from.key, d.decoded?.cookie !== undefined]),
      [
        [MessageType.Join, c.key(1), false],
        [MessageType.Cookie, c.key(0), false],
        [MessageType.Join, c.key(1), true],
      ],
    );
    assert.equal(exchange[3]?.decoded?.body.type, MessageType.Sync);
    c.join(2, [0]);
    assert.ok(c.runUntil(() => c.converged(), 5_000));
    assert.deepEqual(c.problems(), []);
  });

  test("a lost cookie is retried like a lost join, after a quarter of a request timeout", () => {
    const c = new ManualCluster({ size: 2, seed: 22 });
    c.startAll();
    const stop = c.addDropRule((d) => d.decoded?.body.type === MessageType.Cookie);
    c.join(1, [0], 9);
    c.advanceBy(10);
    stop();
    assert.ok(c.runUntil(() => c.rt(1).events.some((e) => e.event.type === "joinResult"), c.config.requestTimeoutMs));
    const result = c.rt(1).events.find((e) => e.event.type === "joinResult");
    assert.ok(result?.event.type === "joinResult" && result.event.ok && result.event.token === 9);
    assert.ok(result.atMs <= Math.ceil(c.config.requestTimeoutMs / 4) + 4 * LATENCY_MS, `joined at ${result.atMs} ms`);
    assert.equal(c.stateOf(0, 1), MemberState.Alive);
  });

  test("a lost member list is asked for again with the same cookie: no new cookie round trip", () => {
    const c = new ManualCluster({ size: 2, seed: 23 });
    c.startAll();
    const stop = c.addDropRule((d) => d.decoded?.body.type === MessageType.Sync);
    c.join(1, [0], 3);
    c.advanceBy(10);
    stop();
    const before = c.sentLog.length;
    assert.ok(c.runUntil(() => c.rt(1).events.some((e) => e.event.type === "joinResult"), c.config.requestTimeoutMs + 10));
    assert.deepEqual(bodyTypes(c, before).filter((t) => t === MessageType.Join || t === MessageType.Cookie || t === MessageType.Sync).slice(0, 2), [
      MessageType.Join,
      MessageType.Sync,
    ]);
    assert.equal(c.node(0).stats.cookiesSent, 1);
  });

  test("a cookie that comes after the JOIN was sent again still counts (a long round trip)", () => {
    const c = new ManualCluster({ size: 2, seed: 26 });
    c.startAll();
    c.join(1, [0], 6);
    // Hold the seed's first cookie back past the short first timeout, then deliver it.
    const held = c.pending.length;
    assert.equal(held, 1);
    c.deliverTo(0);
    const cookies = c.pending.filter((f) => f.datagram.decoded?.body.type === MessageType.Cookie);
    assert.equal(cookies.length, 1);
    c.drop((d) => d.decoded?.body.type === MessageType.Cookie);
    c.advanceBy(Math.ceil(c.config.requestTimeoutMs / 4) + 0.5); // the JOIN went out again
    const late = cookies[0]!.datagram;
    c.inject(1, late.bytes);
    c.deliverAll();
    const result = c.rt(1).events.find((e) => e.event.type === "joinResult");
    assert.ok(result?.event.type === "joinResult" && result.event.ok && result.event.token === 6);
  });

  test("a seed that keeps answering with cookies is given up on", () => {
    const c = new ManualCluster({ size: 2, seed: 24 });
    c.startAll();
    // Every JOIN with a cookie arrives altered, so the seed only ever answers with cookies.
    const stop = c.addDropRule((d) => d.decoded?.body.type === MessageType.Join && d.decoded.cookie !== undefined);
    c.join(1, [0], 4);
    c.advanceBy(20 * c.config.requestTimeoutMs);
    stop();
    const result = c.rt(1).events.find((e) => e.event.type === "joinResult");
    assert.ok(result?.event.type === "joinResult" && !result.event.ok);
  });

  test("works on the thread preset with sealed-envelope room reserved, over IPv6", () => {
    const c = new ManualCluster({ size: 2, seed: 25, ipv6: true, preset: "thread", config: { sealed: true } });
    c.startAll();
    c.join(1, [0]);
    assert.ok(c.runUntil(() => c.rt(1).events.some((e) => e.event.type === "joinResult"), 1000));
    assert.equal(c.oversize().length, 0);
    assert.equal(c.stateOf(0, 1), MemberState.Alive);
    assert.equal(c.stateOf(1, 0), MemberState.Alive);
  });
});

// ---------------------------------------------------------------------------------------------
// Probes from addresses that have not shown they receive: no answer larger than the request.

const PING = (seq: number): Body => ({ type: MessageType.Ping, seq });
const PING_REQ = (seq: number, target: Address): Body => ({ type: MessageType.PingReq, seq, target });
const NEWS: readonly Address[] = Array.from({ length: 150 }, (_, i) => addr(`10.3.${i >> 8}.${i & 0xff}:7946`));
const aliveAt = (m: Address, incarnation = 1): { state: MemberState; incarnation: number; member: Address } => ({ state: MemberState.Alive, incarnation, member: m });

/** A node that knows B (long-standing, so proven) and has plenty of news queued for piggyback. */
function busyNode(): { n: SwimNode; rt: RecordingRuntime } {
  const { n, rt } = seedNode([B]);
  n.handleDatagram(1, craft(B, 1, NEWS.slice(0, 100).map((m) => aliveAt(m))), rt);
  n.handleDatagram(1, craft(B, 1, NEWS.slice(100).map((m) => aliveAt(m))), rt);
  rt.sent.length = 0;
  return { n, rt };
}

function seqOf(d: SentDatagram): number {
  const body = d.decoded?.body;
  assert.ok(body !== undefined && "seq" in body, `expected a datagram with a seq, got ${String(body?.type)}`);
  return body.seq;
}

function repliesTo(rt: RecordingRuntime, to: Address, type: MessageType, from = 0): SentDatagram[] {
  return sentSince(rt, from).filter((d) => d.to.key === to.key && d.decoded?.body.type === type);
}

describe("probes from addresses that have not shown they receive", () => {
  test("a forged PING gets an ACK no larger than itself, without piggyback, and its sender is not learned", () => {
    const { n, rt } = busyNode();
    const members = n.memberCount;
    const ping = craft(V, 0, [], PING(41));
    n.handleDatagram(10, ping, rt);
    assert.equal(rt.sent.length, 1, "one datagram back");
    const ack = rt.sent[0] as SentDatagram;
    assert.equal(ack.to.key, V.key);
    assert.ok(ack.decoded?.body.type === MessageType.Ack && ack.decoded.body.seq === 41);
    assert.ok(ack.bytes.length <= ping.length, `${ack.bytes.length} bytes back for ${ping.length}`);
    assert.equal(ack.decoded?.updates.length, 0, "no piggyback");
    assert.equal(n.member(V.key), undefined, "the sender is not learned");
    assert.equal(n.memberCount, members);
    assert.equal(n.stats.probesFromStrangers, 1);
    assert.equal(n.stats.probesAnsweredLimited, 1);
    // Nor is anything the stranger's ping says: it cannot name members for the cluster to probe.
    n.handleDatagram(11, craft(V, 0, [aliveAt(V), aliveAt(W)], PING(42)), rt);
    assert.equal(n.member(V.key), undefined);
    assert.equal(n.member(W.key), undefined);
    assert.equal(n.memberCount, members);
    // Over IPv6 alike (a forged sender of either family gets at most its own size back, give or
    // take the difference of the two addresses).
    const v6 = addr("[2001:db8::7]:7946");
    const ping6 = craft(v6, 0, [], PING(43));
    n.handleDatagram(12, ping6, rt);
    assert.ok((rt.sent.at(-1)?.bytes.length ?? Infinity) <= ping6.length);
  });

  test("PINGs from an unproven source are rate-limited by the cookie path's bucket, and counted", () => {
    const { n, rt } = busyNode();
    for (let i = 0; i < 100; i++) n.handleDatagram(10, craft(V, 0, [], PING(100 + i)), rt);
    assert.equal(rt.sent.length, RATE_LIMIT_BURST, "a burst of small ACKs, then nothing");
    assert.ok(rt.sent.every((d) => d.to.key === V.key && d.decoded?.body.type === MessageType.Ack));
    assert.deepEqual(n.stats.requestsRefusedByReason, { RATE_LIMITED: 100 - RATE_LIMIT_BURST });
    assert.equal(n.stats.requestsRefused, 100 - RATE_LIMIT_BURST);
    assert.equal(n.stats.probesAnsweredLimited, RATE_LIMIT_BURST);
    assert.equal(n.stats.probesFromStrangers, 100);
    // The same bucket as the cookie path: V's JOIN gets no cookie now.
    n.handleDatagram(10, craft(V, 0, [], JOIN(1)), rt);
    assert.equal(rt.sent.length, RATE_LIMIT_BURST);
    // One more answer per refill interval; another source is not held back.
    n.handleDatagram(10 + RATE_LIMIT_REFILL_MS, craft(V, 0, [], PING(300)), rt);
    n.handleDatagram(10 + RATE_LIMIT_REFILL_MS, craft(V, 0, [], PING(301)), rt);
    n.handleDatagram(10 + RATE_LIMIT_REFILL_MS, craft(W, 0, [], PING(1)), rt);
    assert.equal(rt.sent.length, RATE_LIMIT_BURST + 2);
    assert.equal(rt.sent.at(-1)?.to.key, W.key);
    assert.equal(n.stats.requestsRefusedByReason.RATE_LIMITED, 100 - RATE_LIMIT_BURST + 2);
  });

  test("a proven member's PING gets an ACK with full piggyback, however small the ping and however many", () => {
    const { n, rt } = busyNode();
    const ping = craft(B, 1, [], PING(7));
    for (let i = 0; i < 3 * RATE_LIMIT_BURST; i++) n.handleDatagram(10, ping, rt);
    const acks = repliesTo(rt, B, MessageType.Ack);
    assert.equal(acks.length, 3 * RATE_LIMIT_BURST, "no bucket for proven members");
    const first = acks[0] as SentDatagram;
    assert.ok(first.bytes.length > makeConfig("lan").probePacketBytes - 40, `a full ACK: ${first.bytes.length} bytes`);
    assert.ok((first.decoded?.updates.length ?? 0) > 50);
    assert.equal(n.stats.probesAnsweredLimited, 0);
    assert.equal(n.stats.requestsRefused, 0);
  });

  test("a member not proven yet gets an ACK with piggyback up to its PING's size, and is proven by answering ours", () => {
    const { n, rt } = busyNode();
    // C is learned from B's gossip: a member, not proven.
    const C = addr("10.0.0.3:7946");
    n.handleDatagram(2, craft(B, 1, [aliveAt(C)]), rt);
    const small = craft(C, 1, [], PING(1));
    n.handleDatagram(3, small, rt);
    const smallAck = repliesTo(rt, C, MessageType.Ack).at(-1) as SentDatagram;
    assert.ok(smallAck.bytes.length <= small.length, `${smallAck.bytes.length} for ${small.length}`);
    // A ping that carries its own news gets as much back.
    const big = craft(C, 1, NEWS.slice(0, 40).map((m) => aliveAt(m, 1)), PING(2));
    n.handleDatagram(4, big, rt);
    const bigAck = repliesTo(rt, C, MessageType.Ack).at(-1) as SentDatagram;
    assert.ok(bigAck.bytes.length <= big.length, `${bigAck.bytes.length} for ${big.length}`);
    assert.ok(bigAck.bytes.length > big.length - 40, "filled with piggyback up to the ping's size");
    assert.equal(n.stats.probesAnsweredLimited, 2);
    assert.equal(n.stats.probesFromStrangers, 0);
    // This node probes C (its turn comes within a round) and C answers: full ACKs from then on.
    // (Every probe is answered, so that the period stays one second.)
    let answered = false;
    for (let t = 1000; !answered && t < 400_000; t += 1000) {
      const from = rt.sent.length;
      rt.runTimers(n, t, (timer) => timer.kind === "probe");
      for (const probe of sentSince(rt, from).filter((d) => d.decoded?.body.type === MessageType.Ping)) {
        n.handleDatagram(t, craft(probe.to, 1, [], { type: MessageType.Ack, seq: seqOf(probe) }), rt);
        answered ||= probe.to.key === C.key;
      }
    }
    assert.ok(answered, "C was probed");
    n.handleDatagram(rt.nowMs, craft(B, 1, NEWS.slice(0, 50).map((m) => aliveAt(m, 2))), rt);
    const before = rt.sent.length;
    n.handleDatagram(rt.nowMs + 1, small, rt);
    const fullAck = repliesTo(rt, C, MessageType.Ack, before)[0] as SentDatagram;
    assert.ok(fullAck.bytes.length > small.length, "proven: piggyback beyond the ping's size");
  });

  test("a PING_REQ from a stranger is relayed and answered, every datagram no larger than the request, and teaches nothing", () => {
    const { n, rt } = busyNode();
    const req = craft(V, 0, [aliveAt(V)], PING_REQ(55, B));
    n.handleDatagram(10, req, rt);
    assert.equal(n.member(V.key), undefined, "the requester is not learned");
    const relayed = repliesTo(rt, B, MessageType.Ping)[0] as SentDatagram;
    assert.ok(relayed.bytes.length <= req.length, `the ping to the target: ${relayed.bytes.length} for ${req.length}`);
    const relaySeq = seqOf(relayed);
    // Lifeguard: the target stays silent a while: a NACK; then it answers: the ACK. Both small.
    rt.runTimers(n, 10 + makeConfig("lan").probeTimeoutMs, (t) => t.kind === "relayTimeout");
    n.handleDatagram(rt.nowMs + 1, craft(B, 1, [], { type: MessageType.Ack, seq: relaySeq }), rt);
    const nack = repliesTo(rt, V, MessageType.Nack)[0];
    const ack = repliesTo(rt, V, MessageType.Ack)[0];
    assert.ok(nack !== undefined && ack !== undefined);
    for (const d of [nack, ack]) {
      assert.ok(d.bytes.length <= req.length, `${d.bytes.length} for ${req.length}`);
      assert.equal(seqOf(d), 55);
    }
    assert.equal(n.stats.probesFromStrangers, 1);
    assert.equal(n.stats.probesAnsweredLimited, 1);
    // A flood of them is held to the bucket: nothing relayed beyond it.
    const before = rt.sent.length;
    for (let i = 0; i < 50; i++) n.handleDatagram(20, craft(V, 0, [], PING_REQ(60 + i, B)), rt);
    assert.equal(sentSince(rt, before).length, RATE_LIMIT_BURST - 1);
    assert.equal(n.stats.requestsRefusedByReason.RATE_LIMITED, 50 - (RATE_LIMIT_BURST - 1));
  });

  test("a proven member's PING_REQ: a target we do not know gets a bare ping; the requester gets a full ACK", () => {
    const { n, rt } = busyNode();
    const req = craft(B, 1, [], PING_REQ(9, W));
    n.handleDatagram(10, req, rt);
    const relayed = repliesTo(rt, W, MessageType.Ping)[0] as SentDatagram;
    assert.ok(relayed.bytes.length <= req.length, "no piggyback to a stranger");
    const relaySeq = seqOf(relayed);
    n.handleDatagram(11, craft(W, 1, [], { type: MessageType.Ack, seq: relaySeq }), rt);
    const ack = repliesTo(rt, B, MessageType.Ack)[0] as SentDatagram;
    assert.ok(ack.bytes.length > req.length + 500, `a full ACK to the requester: ${ack.bytes.length} bytes`);
    assert.equal(n.stats.probesAnsweredLimited, 0);
  });

  test("in a running cluster a forged PING earns one small ACK, and no node learns its sender", () => {
    const c = new ManualCluster({ size: 4, seed: 31 });
    c.startAll();
    for (let i = 1; i < 4; i++) c.join(i, [0]);
    assert.ok(c.runUntil(() => [0, 1, 2, 3].every((i) => c.node(i).liveCount === 4), 60_000), "converged");
    const from = c.sentLog.length;
    const ping = craft(V, 0, [], PING(5));
    c.inject(2, ping);
    c.advanceBy(30_000);
    const toVictim = c.sentLog.slice(from).filter((d) => d.to.key === V.key);
    assert.equal(toVictim.length, 1, "one answer, nothing later");
    assert.ok((toVictim[0]?.bytes.length ?? Infinity) <= ping.length);
    for (let i = 0; i < 4; i++) assert.equal(c.node(i).member(V.key), undefined, `node ${i} does not know V`);
  });

  test("a helper that answers our PING_REQ (ACK or NACK) has shown it receives", () => {
    const { n, rt } = seedNode([]);
    const helpers = [2, 3, 4, 5].map((i) => addr(`10.0.0.${i}:7946`));
    // All learned from gossip: members, none proven.
    n.handleDatagram(1, craft(W, 1, helpers.map((h) => aliveAt(h))), rt);
    rt.sent.length = 0;
    rt.runTimers(n, 1000, (t) => t.kind === "probe");
    const ping = rt.sent.find((d) => d.decoded?.body.type === MessageType.Ping);
    assert.ok(ping !== undefined);
    rt.runTimers(n, 1000 + makeConfig("lan").probeTimeoutMs, (t) => t.kind === "probeTimeout");
    const reqs = rt.sent.filter((d) => d.decoded?.body.type === MessageType.PingReq);
    assert.ok(reqs.length >= 2, `${reqs.length} PING_REQs`);
    const nacker = reqs[0]?.to as Address;
    const acker = reqs[1]?.to as Address;
    const probeSeq = seqOf(reqs[0] as SentDatagram);
    // Before: a helper's small ping gets a small answer.
    const before = rt.sent.length;
    n.handleDatagram(rt.nowMs, craft(nacker, 1, [], PING(76)), rt);
    assert.equal(repliesTo(rt, nacker, MessageType.Ack, before)[0]?.decoded?.updates.length, 0);
    assert.equal(n.stats.probesAnsweredLimited, 1);
    n.handleDatagram(rt.nowMs, craft(nacker, 1, [], { type: MessageType.Nack, seq: probeSeq }), rt);
    n.handleDatagram(rt.nowMs, craft(acker, 1, [], { type: MessageType.Ack, seq: probeSeq }), rt);
    // Proven: their pings now get piggyback beyond their own size, and no token is taken.
    n.handleDatagram(rt.nowMs, craft(W, 1, NEWS.slice(0, 20).map((m) => aliveAt(m))), rt);
    for (const h of [nacker, acker]) {
      const small = craft(h, 1, [], PING(77));
      const from = rt.sent.length;
      n.handleDatagram(rt.nowMs + 1, small, rt);
      const ack = repliesTo(rt, h, MessageType.Ack, from)[0] as SentDatagram;
      assert.ok(ack.bytes.length > small.length, `${h.key}: ${ack.bytes.length} bytes for ${small.length}`);
    }
    assert.equal(n.stats.probesAnsweredLimited, 1);
  });
});
