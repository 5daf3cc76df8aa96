/**
 * Member tags in the core (src/core/tags.ts, SwimNode.setTags) in a ManualCluster: tags given at
 * start and set live reach every member with the alive statement; a change raises the
 * incarnation and the same tags again change nothing; an alive statement without tags keeps the
 * tags held, and older tags never replace newer ones; tags beyond the limit are refused (setTags,
 * construction) and not taken from the wire; every datagram stays within its budget with the
 * largest tags, on the thread preset too.
 */

import { describe, test } from "node:test";
import assert from "node:assert/strict";

import { makeConfig } from "../src/core/config.js";
import { SwimNode } from "../src/core/node.js";
import { addr } from "../src/core/address.js";
import { decodeTags, encodeTags, maxTagsBytes, MAX_TAGS_BYTES_CAP, sameBytes, tagsProblem, TAGS_OVERHEAD_BYTES } from "../src/core/tags.js";
import { MemberState, MessageType, SEALED_OVERHEAD_BYTES } from "../src/core/wire/messages.js";
import { ManualCluster, craft } from "./helpers/cluster.js";

const ascii = (s: string): Uint8Array => Uint8Array.from(s, (c) => c.charCodeAt(0));
const tagsOf = (pairs: Record<string, string>): Uint8Array => encodeTags(Object.entries(pairs).map(([k, v]) => [ascii(k), ascii(v)]));

function tagsHeld(c: ManualCluster, observer: number, member: number): Uint8Array | null {
  return c.node(observer).member(c.key(member))?.tags ?? null;
}

function everyoneHolds(c: ManualCluster, member: number, tags: Uint8Array): boolean {
  for (let i = 0; i < c.size; i++) {
    const held = tagsHeld(c, i, member);
    if (held === null || !sameBytes(held, tags)) return false;
  }
  return true;
}

describe("tags encoding", () => {
  test("canonical: sorted, last value of a repeated key wins; decode returns the pairs", () => {
    const bytes = encodeTags([
      [ascii("role"), ascii("web")],
      [ascii("dc"), ascii("eu")],
      [ascii("role"), ascii("db")],
    ]);
    assert.deepStrictEqual(
      [...bytes],
      [2, 2, ...ascii("dc"), 2, ...ascii("eu"), 4, ...ascii("role"), 2, ...ascii("db")],
    );
    const pairs = decodeTags(bytes);
    assert.ok(Array.isArray(pairs));
    assert.deepStrictEqual(pairs.map(([k, v]) => [String.fromCharCode(...k), String.fromCharCode(...v)]), [["dc", "eu"], ["role", "db"]]);
    assert.throws(() => encodeTags([[new Uint8Array(0), ascii("x")]]), RangeError);
  });

  test("the limit keeps the statement inside one datagram: 1159 bytes at 1232 (1130 sealed), and what the presets allow", () => {
    assert.equal(maxTagsBytes(makeConfig("lan")), 1232 - TAGS_OVERHEAD_BYTES);
    assert.equal(maxTagsBytes(makeConfig("lan")), 1159);
    assert.equal(maxTagsBytes(makeConfig("lan", { sealed: true })), 1159 - SEALED_OVERHEAD_BYTES);
    assert.equal(maxTagsBytes(makeConfig("thread")), 1159, "the thread preset's full datagrams are 1232 bytes too");
    assert.equal(maxTagsBytes(makeConfig("lan", { maxPacketBytes: 65507 })), MAX_TAGS_BYTES_CAP);
    const config = makeConfig("lan");
    assert.equal(tagsProblem(config, new Uint8Array(1160).fill(0)) !== null, true);
    assert.match(tagsProblem(config, tagsOf({ k: "v".repeat(1200) })) ?? "", /more than the 1159 that fit a 1232-byte datagram/);
    assert.match(tagsProblem(config, Uint8Array.of(1, 0, 0)) ?? "", /^malformed tags/);
    assert.equal(tagsProblem(config, tagsOf({ role: "web" })), null);
  });
});

describe("tags in the cluster", () => {
  test("tags given at start reach every member; tags set live reach every member at a higher incarnation", () => {
    const web = tagsOf({ role: "web", dc: "eu-west" });
    const c = new ManualCluster({ size: 4, tags: (i) => (i === 2 ? web : undefined) });
    c.bootstrap();
    assert.ok(c.runUntil(() => everyoneHolds(c, 2, web), 20_000), "the start tags of node 2 reach everyone");
    assert.equal(tagsHeld(c, 0, 1), null, "a member without tags has none");

    const before = c.node(1).incarnation;
    const db = tagsOf({ role: "db" });
    const outcome = c.call(c.slot(1), () => c.node(1).setTags(c.nowMs, db, c.rt(1)));
    assert.deepStrictEqual(outcome, { ok: true, incarnation: before + 1 });
    assert.ok(c.runUntil(() => everyoneHolds(c, 1, db), 20_000), "live tags reach everyone");
    for (let i = 0; i < 4; i++) assert.equal(c.node(i).member(c.key(1))?.incarnation, before + 1);

    // The same tags again: no new statement.
    assert.deepStrictEqual(c.call(c.slot(1), () => c.node(1).setTags(c.nowMs, db, c.rt(1))), { ok: true, incarnation: before + 1 });
    // Deleting every tag is a change too: empty tags replace the old ones everywhere.
    const none = tagsOf({});
    c.call(c.slot(1), () => c.node(1).setTags(c.nowMs, none, c.rt(1)));
    assert.ok(c.runUntil(() => everyoneHolds(c, 1, none), 20_000), "empty tags reach everyone");
    // A member event tells each host of the change.
    assert.ok(c.eventLog.some((e) => e.event.type === "member" && e.event.member.address.key === c.key(1) && e.event.member.tags !== null && sameBytes(e.event.member.tags, db)));
  });

  test("a tags change is told directly to every alive member at once, besides the piggybacked statement", () => {
    const c = new ManualCluster({ size: 5 });
    c.bootstrap();
    const cache = tagsOf({ role: "cache", zone: "b" });
    const from = c.sentLog.length;
    const outcome = c.call(c.slot(3), () => c.node(3).setTags(c.nowMs, cache, c.rt(3)));
    assert.equal(outcome.ok, true);
    // Before any timer runs: one GOSSIP datagram to each of the 4 others carrying the new statement.
    const direct = c.sentLog.slice(from).filter((d) => d.from.key === c.key(3) && d.decoded?.body.type === MessageType.Gossip);
    assert.deepStrictEqual(direct.map((d) => d.to.key).sort(), [0, 1, 2, 4].map((i) => c.key(i)).sort());
    for (const d of direct) {
      const statement = d.decoded?.updates.find((u) => u.member.key === c.key(3));
      assert.ok(statement?.tags !== undefined && sameBytes(statement.tags, cache), "the new tags, in the statement");
    }
    // Those datagrams alone bring every member the change, even if all other traffic were lost.
    const directIds = new Set(direct.map((d) => d.id));
    c.deliverWhere((d) => directIds.has(d.id));
    assert.ok(everyoneHolds(c, 3, cache));
  });

  test("an alive statement without tags keeps the tags held; older tags never replace newer ones; tags come after a bare statement", () => {
    const c = new ManualCluster({ size: 2 });
    c.bootstrap();
    const stranger = c.address(1);
    const newer = tagsOf({ v: "2" });
    const older = tagsOf({ v: "1" });
    const inc = c.node(1).incarnation;
    // Node 1 speaks at inc+5 with tags v=2.
    c.inject(0, craft(stranger, inc + 5, [{ state: MemberState.Alive, incarnation: inc + 5, member: stranger, tags: newer }]));
    assert.ok(sameBytes(tagsHeld(c, 0, 1) as Uint8Array, newer));
    // A bare alive statement at a higher incarnation (no TAGS item) says nothing about tags.
    c.inject(0, craft(stranger, inc + 6, [{ state: MemberState.Alive, incarnation: inc + 6, member: stranger }]));
    assert.ok(sameBytes(tagsHeld(c, 0, 1) as Uint8Array, newer));
    // Tags of an older statement are ignored.
    c.inject(0, craft(stranger, inc + 6, [{ state: MemberState.Alive, incarnation: inc + 4, member: stranger, tags: older }]));
    assert.ok(sameBytes(tagsHeld(c, 0, 1) as Uint8Array, newer));
    // The statement with tags at inc+6 comes after the bare one (same incarnation): taken.
    const latest = tagsOf({ v: "3" });
    c.inject(0, craft(stranger, inc + 6, [{ state: MemberState.Alive, incarnation: inc + 6, member: stranger, tags: latest }]));
    assert.ok(sameBytes(tagsHeld(c, 0, 1) as Uint8Array, latest));
    assert.equal(c.node(0).stats.tagsUpdated, 2);
  });

  test("a member told of other tags of its own at its incarnation (an earlier life's) restates its own above it", () => {
    const mine = tagsOf({ role: "web" });
    const c = new ManualCluster({ size: 2, tags: (i) => (i === 0 ? mine : undefined) });
    c.bootstrap();
    const inc = c.node(0).incarnation;
    const stale = tagsOf({ role: "db" });
    c.inject(0, craft(c.address(1), c.node(1).incarnation, [{ state: MemberState.Alive, incarnation: inc, member: c.address(0), tags: stale }]));
    assert.equal(c.node(0).incarnation, inc + 1);
    assert.ok(c.runUntil(() => everyoneHolds(c, 0, mine) && c.node(1).member(c.key(0))?.incarnation === inc + 1, 20_000));
    // The same tags at our incarnation are simply true: nothing changes.
    c.inject(0, craft(c.address(1), c.node(1).incarnation, [{ state: MemberState.Alive, incarnation: inc + 1, member: c.address(0), tags: mine }]));
    assert.equal(c.node(0).incarnation, inc + 1);
    // A node without tags told it has some states empty tags.
    const before = c.node(1).incarnation;
    c.inject(1, craft(c.address(0), c.node(0).incarnation, [{ state: MemberState.Alive, incarnation: before, member: c.address(1), tags: stale }]));
    assert.equal(c.node(1).incarnation, before + 1);
    assert.ok(c.runUntil(() => everyoneHolds(c, 1, tagsOf({})), 20_000));
  });

  test("tags beyond the limit: setTags refuses them, a node will not start with them, and the wire's are not taken", () => {
    const c = new ManualCluster({ size: 2 });
    c.bootstrap();
    const limit = maxTagsBytes(c.config);
    const big = tagsOf({ k: "x".repeat(limit) });
    const before = c.node(0).incarnation;
    const refused = c.call(c.slot(0), () => c.node(0).setTags(c.nowMs, big, c.rt(0)));
    assert.equal(refused.ok, false);
    assert.equal(refused.ok ? "" : refused.code, "TOO_LARGE");
    assert.equal(c.node(0).incarnation, before, "nothing changed");
    assert.throws(() => new SwimNode({ self: c.address(0), config: c.config, seed: 1, incarnation: 0, broadcastEpoch: 0, tags: big }), RangeError);
    // A statement from a node with a larger budget carries more than ours allows: refused, counted.
    const stranger = c.address(1);
    c.inject(0, craft(stranger, 50, [{ state: MemberState.Alive, incarnation: 50, member: stranger, tags: big }]));
    assert.equal(tagsHeld(c, 0, 1), null);
    assert.equal(c.node(0).stats.tagsRefused, 1);
  });

  test("an alive statement with tags beyond the limit is refused whole, in gossip and member lists and about self: a BAD_TAGS error, no state change", () => {
    const c = new ManualCluster({ size: 3 });
    c.bootstrap();
    const big = tagsOf({ k: "x".repeat(maxTagsBytes(c.config)) });
    const observer = c.node(0);
    const held = observer.member(c.key(1))?.incarnation ?? -1;
    const selfBefore = observer.incarnation;
    const errorsBefore = observer.stats.protocolErrors;
    const statement = (member: ReturnType<typeof addr>, incarnation: number) => ({ state: MemberState.Alive, incarnation, member, tags: big });
    // Gossip from member 2 about member 1 at a higher incarnation.
    c.inject(0, craft(c.address(2), c.node(2).incarnation, [statement(c.address(1), held + 5)]));
    assert.equal(observer.member(c.key(1))?.incarnation, held, "member 1's incarnation unchanged");
    // A member list naming a newcomer.
    const newcomer = addr("10.77.0.1:7946");
    c.inject(0, craft(c.address(2), c.node(2).incarnation, [statement(newcomer, 1)], { type: MessageType.Sync, replyWanted: false, seq: 0 }));
    assert.equal(observer.member(newcomer.key), undefined, "no member learned from it");
    // About the observer itself, above its incarnation: nothing to refute.
    c.inject(0, craft(c.address(2), c.node(2).incarnation, [statement(c.address(0), selfBefore + 3)]));
    assert.equal(observer.incarnation, selfBefore);
    assert.equal(observer.stats.protocolErrors - errorsBefore, 3);
    assert.equal(observer.stats.protocolErrorsByCode.BAD_TAGS, 3);
    assert.equal(observer.stats.tagsRefused, 3);
    // The rest of such a datagram still counts: a plain statement beside the refused one is taken.
    c.inject(0, craft(c.address(2), c.node(2).incarnation, [statement(c.address(1), held + 7), { state: MemberState.Alive, incarnation: held + 6, member: c.address(1) }]));
    assert.equal(observer.member(c.key(1))?.incarnation, held + 6);
  });

  test("with the largest tags every datagram fits its budget, on the lan and the thread preset, sealed or not", () => {
    for (const preset of ["lan", "thread"] as const) {
      for (const sealed of [false, true]) {
        const config = makeConfig(preset, { sealed });
        const limit = maxTagsBytes(config);
        // Largest tags of exactly `limit` bytes: one key, value filling the rest.
        let value = limit - 6;
        let tags = tagsOf({ k: "x".repeat(value) });
        while (tags.length < limit) tags = tagsOf({ k: "x".repeat(++value) });
        while (tags.length > limit) tags = tagsOf({ k: "x".repeat(--value) });
        const c = new ManualCluster({ size: 4, preset, config: { sealed }, ipv6: true, tags: () => tags });
        c.bootstrap(120_000);
        assert.ok(c.runUntil(() => [0, 1, 2, 3].every((m) => everyoneHolds(c, m, tags)), 600_000), `${preset}${sealed ? " sealed" : ""}: tags converge`);
        const envelope = sealed ? SEALED_OVERHEAD_BYTES : 0;
        for (const d of c.sentLog) {
          assert.ok(d.bytes.length + envelope <= config.maxPacketBytes, `${preset}: a ${d.bytes.length}-byte datagram`);
        }
        // Probe datagrams (thread: 80 bytes) never carry them: the statement is larger than their budget.
        for (const d of c.sentLog.filter((x) => x.decoded?.body.type === MessageType.Ping || x.decoded?.body.type === MessageType.Ack)) {
          assert.ok(d.bytes.length + envelope <= config.probePacketBytes, `${preset}: a ${d.bytes.length}-byte probe datagram`);
        }
      }
    }
  });
});
