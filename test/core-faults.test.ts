/**
 * One pure core driven by hand (crafted datagrams, a recording runtime): reaped failed members
 * stay reconnect targets (bounded, expiring, one JOIN per round, no joinResult), configured
 * seeds are retried while members are lost, snapshot targets are contacted from the start, and
 * flap damping (penalty, damping, release, distrusted accusations).
 */

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { addr, type Address } from "../src/core/address.js";
import { makeConfig, type SwimConfig, validateConfig } from "../src/core/config.js";
import { FlapDamping, emptyDampingStats } from "../src/core/flap-damping.js";
import { SwimNode } from "../src/core/node.js";
import type { Timer } from "../src/core/runtime.js";
import { MemberState, MessageType } from "../src/core/wire/messages.js";
import { GOSSIP, RecordingRuntime, alive, craft, dead, suspect } from "./helpers/cluster.js";

const A = addr("10.0.0.1:7946");
const B = addr("10.0.0.2:7946");
const C = addr("10.0.0.3:7946");
const D = addr("10.0.0.4:7946");
const E = addr("10.0.0.5:7946");

function config(overrides: Partial<SwimConfig> = {}): SwimConfig {
  const c = makeConfig("lan", { reapAfterMs: 1000, reconnectIntervalMs: 100, reconnectTimeoutMs: 5000, pushPullIntervalMs: 0, ...overrides });
  assert.deepEqual(validateConfig(c), []);
  return c;
}

/** A started node at A whose own probe, gossip and suspicion rounds never fire (only `kinds`). */
function node(c: SwimConfig, extra: { seeds?: Address[]; reconnectTargets?: Address[] } = {}): { n: SwimNode; rt: RecordingRuntime; run: (untilMs: number) => void } {
  const rt = new RecordingRuntime(A);
  const n = new SwimNode({ self: A, config: c, seed: 7, incarnation: 1, broadcastEpoch: 1, ...extra });
  n.start(0, rt);
  const kinds = new Set<Timer["kind"]>(["reap", "reconnect", "request", "flapRelease"]);
  return { n, rt, run: (untilMs) => void rt.runTimers(n, untilMs, (t) => kinds.has(t.kind)) };
}

function joinsTo(rt: RecordingRuntime, to: Address, fromIndex = 0): number {
  return rt.sentSince(fromIndex).filter((d) => d.to.key === to.key && d.decoded?.body.type === MessageType.Join).length;
}

/** `subject` alive (heard from itself), then declared dead by C's gossip. */
function learnThenLose(n: SwimNode, rt: RecordingRuntime, subject: Address, incarnation = 0): void {
  n.handleDatagram(rt.nowMs, craft(subject, incarnation, [], GOSSIP), rt);
  n.handleDatagram(rt.nowMs, craft(C, 0, [dead(subject, incarnation)], GOSSIP), rt);
  assert.equal(n.stateOf(subject.key), MemberState.Dead);
}

describe("reconnect targets", () => {
  test("a reaped dead member is contacted by JOIN in reconnect rounds, until its window ends; no joinResult", () => {
    const { n, rt, run } = node(config());
    learnThenLose(n, rt, B);
    run(1500);
    assert.equal(n.stateOf(B.key), undefined, "reaped from the table");
    assert.equal(n.stats.reconnectTargetsAdded, 1);
    const before = rt.sent.length;
    run(3000);
    const joins = joinsTo(rt, B, before);
    assert.ok(joins >= 5, `JOINs to the reaped member in 15 rounds: ${joins}`);
    assert.ok(joins <= 15, `at most one contact per round: ${joins}`);
    assert.ok(n.stats.reconnectJoinsSent >= joins);
    assert.ok(!rt.events.some((e) => e.event.type === "joinResult"), "reconnect JOINs report nothing to the host");
    // Failed at 0 ms, a 5000 ms window: forgotten after it.
    run(6000);
    assert.equal(n.stats.reconnectTargetsExpired, 1);
    assert.deepEqual(n.reconnectTargets(), []);
    const after = rt.sent.length;
    run(8000);
    assert.equal(joinsTo(rt, B, after), 0, "no JOIN once the window is over");
  });

  test("a left member is not a reconnect target, and the list is bounded (the oldest failure is dropped)", () => {
    const { n, rt, run } = node(config({ maxReconnectTargets: 2 }));
    n.handleDatagram(0, craft(E, 0, [], GOSSIP), rt);
    n.handleDatagram(0, craft(C, 0, [{ state: MemberState.Left, incarnation: 0, member: E }], GOSSIP), rt);
    for (const [i, m] of [B, D, addr("10.0.0.6:7946")].entries()) {
      rt.nowMs = i * 10;
      learnThenLose(n, rt, m);
    }
    run(1500);
    assert.equal(n.stats.reconnectTargetsAdded, 3);
    assert.equal(n.stats.reconnectTargetsDropped, 1);
    assert.deepEqual(n.reconnectTargets().map((a) => a.key).sort(), [D.key, "10.0.0.6:7946"].sort());
    const before = rt.sent.length;
    run(4000);
    assert.equal(joinsTo(rt, B, before), 0, "the dropped target is not contacted");
    assert.equal(joinsTo(rt, E, before), 0, "a left member is never contacted");
    assert.equal(n.forget(D, rt), true, "an operator's leave ADDR forgets a reconnect target");
    assert.deepEqual(n.reconnectTargets().map((a) => a.key), ["10.0.0.6:7946"]);
  });

  test("a reconnect target that answers is a member again, and leaves the list", () => {
    const { n, rt, run } = node(config());
    learnThenLose(n, rt, B);
    // Step round by round until the first JOIN to B, and answer it before it times out.
    for (let t = 1000; joinsTo(rt, B) === 0 && t < 3000; t += 100) run(t);
    const joinAt = rt.sent.findIndex((d) => d.to.key === B.key && d.decoded?.body.type === MessageType.Join);
    assert.ok(joinAt >= 0);
    const seq = (rt.sent[joinAt]?.decoded?.body as { seq: number }).seq;
    // B answers the JOIN with its member list (it had proven itself long ago: no cookie).
    n.handleDatagram(rt.nowMs, craft(B, 5, [alive(B, 5), alive(D, 0)], { type: MessageType.Sync, replyWanted: false, seq }), rt);
    assert.equal(n.stateOf(B.key), MemberState.Alive);
    assert.equal(n.stateOf(D.key), MemberState.Alive);
    assert.equal(n.stats.reconnectsSucceeded, 1);
    assert.deepEqual(n.reconnectTargets(), []);
    assert.equal(n.member(B.key)?.flaps, 1, "a failed member's return is a comeback");
  });

  test("snapshot targets are contacted from the start; seeds only while members are lost", () => {
    const { n, rt, run } = node(config(), { seeds: [C], reconnectTargets: [B] });
    run(1000);
    assert.ok(joinsTo(rt, B) > 0, "the remembered member is contacted");
    assert.ok(joinsTo(rt, C) > 0, "alone (every member lost): the seed is retried");
    assert.ok(n.stats.seedJoinsSent > 0);
    // The seed and the remembered member answer: the cluster is whole again.
    n.handleDatagram(rt.nowMs, craft(C, 0, [alive(C, 0)], GOSSIP), rt);
    n.handleDatagram(rt.nowMs, craft(B, 3, [], GOSSIP), rt);
    assert.equal(n.member(B.key)?.flaps, 0, "a remembered member's return is no comeback");
    assert.deepEqual(n.reconnectTargets(), []);
    const before = rt.sent.length;
    run(3000);
    assert.equal(joinsTo(rt, C, before), 0, "no seed JOIN while nothing is lost");
    assert.equal(joinsTo(rt, B, before), 0);
  });
});

describe("flap damping", () => {
  test("a member that keeps coming back is damped at its third comeback, then released once quiet", () => {
    const c = config({ reapAfterMs: 600_000 });
    const { n, rt, run } = node(c);
    for (let i = 0; i < 3; i++) {
      rt.nowMs = i * 10_000;
      learnThenLose(n, rt, B, 2 * i);
      n.handleDatagram(rt.nowMs + 1, craft(B, 2 * i + 1, [], GOSSIP), rt);
      assert.equal(n.stateOf(B.key), MemberState.Alive);
    }
    const member = n.member(B.key);
    assert.ok(member !== undefined);
    assert.equal(member.damped, true);
    assert.equal(member.flaps, 3);
    assert.ok(member.flapPenalty >= c.flapSuppressPenalty);
    assert.ok(member.dampedUntilMs > rt.nowMs);
    const started = rt.memberEvents(B.key).filter((e) => e.event.type === "member" && e.event.dampingChanged);
    assert.equal(started.length, 1, "one event starts the damping");
    assert.equal(n.stats.dampingStarted, 1);
    assert.equal(n.stats.membersDamped, 1);
    // While B is damped, its accusations are not believed.
    n.handleDatagram(rt.nowMs, craft(D, 0, [], GOSSIP), rt);
    n.handleDatagram(rt.nowMs, craft(B, 5, [suspect(D, 0, B), dead(C, 9)], GOSSIP), rt);
    assert.equal(n.stateOf(D.key), MemberState.Alive);
    assert.notEqual(n.stateOf(C.key), MemberState.Dead);
    assert.equal(n.stats.accusationsIgnored, 2);
    // A suspicion of D raised by B and passed on by another member is not taken up either.
    n.handleDatagram(rt.nowMs, craft(E, 0, [suspect(D, 0, B)], GOSSIP), rt);
    assert.equal(n.stateOf(D.key), MemberState.Alive);
    // Quiet: released at the computed time, with one more event.
    run(member.dampedUntilMs + 1);
    assert.equal(n.member(B.key)?.damped, false);
    assert.equal(n.stats.dampingReleased, 1);
    assert.equal(n.stats.membersDamped, 0);
    const changes = rt.memberEvents(B.key).filter((e) => e.event.type === "member" && e.event.dampingChanged);
    assert.equal(changes.length, 2);
    assert.equal(changes[1]?.event.type === "member" && changes[1].event.member.damped, false);
  });

  test("one restart, or comebacks far apart, never damp; --flap-damping off never damps", () => {
    const stats = emptyDampingStats();
    const on = new FlapDamping(config(), 16, stats);
    assert.equal(on.recordFlap("x", 0).releaseAtMs, -1);
    assert.equal(on.recordFlap("x", 180_000).releaseAtMs, -1, "3 half-lives later the penalty is 1125");
    assert.equal(on.view("x", 180_000).damped, false);
    const off = new FlapDamping(config({ flapDamping: false }), 16, emptyDampingStats());
    for (let i = 0; i < 10; i++) assert.equal(off.recordFlap("x", i).releaseAtMs, -1);
    assert.equal(off.view("x", 10).flaps, 0);
  });

  test("the damping table is bounded: the undamped entry updated longest ago is dropped", () => {
    const stats = emptyDampingStats();
    const d = new FlapDamping(config(), 2, stats);
    d.recordFlap("a", 0);
    d.recordFlap("b", 1);
    d.recordFlap("c", 2);
    assert.equal(stats.dampingEntriesDropped, 1);
    assert.equal(d.view("a", 2).flaps, 0);
    assert.equal(d.view("c", 2).flaps, 1);
  });

  test("a full table drops an undamped entry before a damped one; a damped one that must go is released, and named", () => {
    const stats = emptyDampingStats();
    const d = new FlapDamping(config(), 3, stats);
    for (const t of [0, 1, 2]) d.recordFlap("a", t);
    for (const t of [3, 4, 5]) d.recordFlap("b", t);
    d.recordFlap("u", 6);
    assert.equal(stats.membersDamped, 2);
    // "u" is the newest entry but the only undamped one: it goes, not a damped one.
    assert.deepEqual(d.recordFlap("c", 7), { releaseAtMs: -1, evictedDamped: null });
    assert.equal(d.view("u", 7).flaps, 0);
    assert.equal(d.isDamped("a") && d.isDamped("b"), true);
    // Every entry damped: the one updated longest ago goes, and its damping ends.
    for (const t of [8, 9]) d.recordFlap("c", t);
    assert.equal(stats.membersDamped, 3);
    const outcome = d.recordFlap("e", 10);
    assert.equal(outcome.evictedDamped, "a");
    assert.equal(d.isDamped("a"), false);
    assert.equal(stats.membersDamped, 2);
    assert.equal(stats.dampingReleased, 1);
    assert.equal(stats.dampingEntriesDropped, 2);
  });

  test("a damped member dropped from the full table gets its release event", () => {
    const c = config({ reapAfterMs: 1000, maxMembers: 16 });
    const { n, rt, run } = node(c);
    const members = Array.from({ length: 16 }, (_, i) => addr(`10.0.1.${i + 1}:7946`));
    // 16 members (the table's bound) damped in turn; all but the first die and are reaped
    // (their entries stay), so that the member table has room for the next.
    for (const [i, m] of members.entries()) {
      const base = i * 2000;
      for (let k = 0; k < 3; k++) {
        rt.nowMs = base + k;
        learnThenLose(n, rt, m, 2 * k);
        n.handleDatagram(rt.nowMs, craft(m, 2 * k + 1, [], GOSSIP), rt);
      }
      assert.equal(n.member(m.key)?.damped, true, `member ${i} damped`);
      if (i > 0) {
        n.handleDatagram(rt.nowMs, craft(C, 0, [dead(m, 5)], GOSSIP), rt);
        run(base + 1500);
      }
    }
    const first = members[0] as Address;
    const before = rt.memberEvents(first.key).length;
    // One more flapping member: the table is full of damped entries, the oldest (the first member's) goes.
    rt.nowMs = 40_000;
    learnThenLose(n, rt, D, 0);
    n.handleDatagram(rt.nowMs, craft(D, 1, [], GOSSIP), rt);
    assert.equal(n.member(first.key)?.damped, false);
    const released = rt.memberEvents(first.key).slice(before).filter((e) => e.event.type === "member" && e.event.dampingChanged);
    assert.equal(released.length, 1, "one event ends the damping");
    assert.equal(released[0]?.event.type === "member" && released[0].event.member.damped, false);
    assert.equal(n.stats.dampingReleased, 1);
  });

  test("dead again at a higher incarnation is no comeback: no flap", () => {
    const { n, rt } = node(config({ reapAfterMs: 600_000 }));
    learnThenLose(n, rt, B, 0);
    n.handleDatagram(rt.nowMs, craft(C, 0, [dead(B, 1)], GOSSIP), rt);
    n.handleDatagram(rt.nowMs, craft(C, 0, [dead(B, 4)], GOSSIP), rt);
    assert.equal(n.member(B.key)?.incarnation, 4);
    assert.equal(n.member(B.key)?.flaps, 0);
    assert.equal(n.stats.flapsRecorded, 0);
    // Back alive: one comeback.
    n.handleDatagram(rt.nowMs, craft(B, 5, [], GOSSIP), rt);
    assert.equal(n.member(B.key)?.flaps, 1);
  });
});
