/**
 * Core behaviour under well-formed but unlucky or hostile input: a push-pull SYNC never passes
 * for a join answer, a shorter period keeps room for indirect probes, the member table and the
 * reap timers stay bounded, a leave announcement leads every datagram however full the
 * queue is, and a probe whose first ping was lost measures its round trip from the repeat.
 */

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { type Address, addr } from "../src/core/address.js";
import { makeConfig, type SwimConfig } from "../src/core/config.js";
import { SwimNode } from "../src/core/node.js";
import type { CoreEvent, Runtime, Timer } from "../src/core/runtime.js";
import { decodeDatagram, encodeDatagram } from "../src/core/wire/codec.js";
import { type Datagram, MemberState, MessageType, type MemberUpdate } from "../src/core/wire/messages.js";
import { GOSSIP, RecordingRuntime, craft } from "./helpers/cluster.js";

class Recorder implements Runtime {
  readonly sent: { to: Address; d: Datagram }[] = [];
  readonly timers: { atMs: number; timer: Timer }[] = [];
  readonly events: CoreEvent[] = [];
  send(to: Address, datagram: Uint8Array): void {
    this.sent.push({ to, d: decodeDatagram(datagram) });
  }
  setTimer(atMs: number, timer: Timer): void {
    this.timers.push({ atMs, timer });
  }
  emit(event: CoreEvent): void {
    this.events.push(event);
  }
}

const A = addr("10.0.0.1:7946");
const B = addr("10.0.0.2:7946");

function node(config: SwimConfig = makeConfig("lan"), self = A): { n: SwimNode; rt: Recorder } {
  const n = new SwimNode({ self, config, seed: 5, incarnation: 1, broadcastEpoch: 1 });
  const rt = new Recorder();
  n.start(0, rt);
  return { n, rt };
}

function gossip(from: Address, updates: MemberUpdate[], incarnation = 1): Uint8Array {
  return encodeDatagram({ from, incarnation, body: { type: MessageType.Gossip }, updates, broadcasts: [] });
}

describe("core hardening", () => {
  test("gossip ticks stop while nothing is queued and resume, within one interval, when something is", () => {
    const config = makeConfig("lan");
    const { n, rt } = node(config);
    const gossipTimers = (): { atMs: number; timer: Timer }[] => rt.timers.filter((t) => t.timer.kind === "gossip");
    assert.equal(gossipTimers().length, 1, "start arms one tick");
    const first = gossipTimers()[0] as { atMs: number; timer: Timer };
    n.handleTimer(first.atMs, first.timer, rt);
    assert.equal(gossipTimers().length, 1, "an idle tick does not re-arm");
    const outcome = n.broadcast(first.atMs + 5, new Uint8Array([1, 2, 3]), rt);
    assert.ok(outcome.ok);
    const rearmed = gossipTimers().slice(1);
    assert.equal(rearmed.length, 1, "queuing a broadcast re-arms the tick once");
    const next = rearmed[0] as { atMs: number; timer: Timer };
    assert.ok(next.atMs > first.atMs + 5 && next.atMs <= first.atMs + 5 + config.gossipIntervalMs, `re-armed for ${next.atMs}`);
    n.broadcast(first.atMs + 6, new Uint8Array([4]), rt);
    assert.equal(gossipTimers().length, 2, "no second tick while one is pending");
  });

  test("a push-pull request spanning several datagrams gets one reply, not one per datagram", () => {
    const { n: a, rt: ra } = node(makeConfig("lan"), A);
    const members = Array.from({ length: 400 }, (_, i) => addr(`10.1.${i >> 8}.${i & 0xff}:7946`));
    a.addConvergedMembers(0, [B, ...members], 1);
    a.handleTimer(1000, { kind: "pushPull", once: true }, ra);
    const request = ra.sent.filter((s) => s.d.body.type === MessageType.Sync);
    assert.ok(request.length >= 3, `the request spans ${request.length} datagrams`);
    assert.ok(request.every((s) => s.d.body.type === MessageType.Sync && s.d.body.replyWanted));
    const { n: b, rt: rb } = node(makeConfig("lan"), B);
    // B has long known A (as a proven member): no cookie round trip.
    b.addConvergedMembers(0, [A], 1);
    // Twice over: a duplicated request is not answered again either.
    for (const s of [...request, ...request]) b.handleDatagram(1001, encodeDatagram(s.d), rb);
    const replies = rb.sent.filter((s) => s.d.body.type === MessageType.Sync);
    assert.equal(replies.length, 1, "one reply (B's list fits one datagram)");
    assert.equal(b.memberCount, 402, "B learned the whole list");
  });

  test("a push-pull SYNC carrying the seq of a pending join does not complete that join", () => {
    const { n, rt } = node();
    n.join(0, [addr("10.0.0.99:7946")], rt, 42);
    const join = rt.sent.find((s) => s.d.body.type === MessageType.Join);
    assert.ok(join !== undefined && join.d.body.type === MessageType.Join);
    const seq = join.d.body.seq;
    // B's push-pull request happens to carry the same seq (its own counter).
    n.handleDatagram(10, encodeDatagram({ from: B, incarnation: 1, body: { type: MessageType.Sync, replyWanted: true, seq }, updates: [], broadcasts: [] }), rt);
    assert.ok(!rt.events.some((e) => e.type === "joinResult"), "no join result from a push-pull request");
    // The real answer (a SYNC without REPLY_WANTED, echoing the seq) completes it, even from another address.
    n.handleDatagram(20, encodeDatagram({ from: B, incarnation: 1, body: { type: MessageType.Sync, replyWanted: false, seq }, updates: [], broadcasts: [] }), rt);
    const result = rt.events.find((e) => e.type === "joinResult");
    assert.ok(result !== undefined && result.type === "joinResult" && result.ok && result.token === 42);
  });

  test("two nodes start their request seqs at different points", () => {
    const a = new SwimNode({ self: A, config: makeConfig("lan"), seed: 1, incarnation: 1, broadcastEpoch: 1 });
    const b = new SwimNode({ self: B, config: makeConfig("lan"), seed: 2, incarnation: 1, broadcastEpoch: 1 });
    const ra = new Recorder();
    const rb = new Recorder();
    a.join(0, [B], ra);
    b.join(0, [A], rb);
    const seqOf = (r: Recorder): number => {
      const body = r.sent[0]?.d.body;
      assert.ok(body !== undefined && body.type === MessageType.Join);
      return body.seq;
    };
    assert.notEqual(seqOf(ra), seqOf(rb));
  });

  test("a shorter period scales the probe timeout, leaving room for indirect probes", () => {
    const { n, rt } = node(makeConfig("lan", { probeIntervalMs: 500, probeTimeoutMs: 250 }));
    n.handleDatagram(1, gossip(B, [{ state: MemberState.Alive, incarnation: 1, member: addr("10.0.0.3:7946") }]), rt);
    n.setProbeIntervalMs(2, 200, rt);
    const tick = rt.timers.filter((t) => t.timer.kind === "probe").at(-1);
    assert.ok(tick !== undefined);
    rt.timers.length = 0;
    n.handleTimer(tick.atMs, tick.timer, rt);
    const timeout = rt.timers.find((t) => t.timer.kind === "probeTimeout");
    const deadline = rt.timers.find((t) => t.timer.kind === "probeDeadline");
    assert.ok(timeout !== undefined && deadline !== undefined);
    assert.equal(timeout.atMs - tick.atMs, 100, "250/500 of a 200 ms period");
    assert.ok(timeout.atMs < deadline.atMs, "the timeout comes before the period ends");
  });

  test("the member table is bounded by maxMembers; strangers beyond it are refused and counted", () => {
    const { n, rt } = node(makeConfig("lan", { maxMembers: 64 }));
    for (let batch = 0; batch < 20; batch++) {
      const updates: MemberUpdate[] = [];
      for (let i = 0; i < 50; i++) updates.push({ state: MemberState.Alive, incarnation: 1, member: addr(`10.1.${batch}.${i + 1}:7946`) });
      n.handleDatagram(batch, gossip(B, updates), rt);
    }
    assert.equal(n.memberCount, 64);
    assert.ok(n.stats.membersRefused > 900, `refused ${n.stats.membersRefused}`);
  });

  test("one pending reap timer per member, however often it dies and comes back", () => {
    const { n, rt } = node();
    const C = addr("10.0.0.3:7946");
    n.handleDatagram(1, gossip(B, [{ state: MemberState.Alive, incarnation: 1, member: C }]), rt);
    rt.timers.length = 0;
    for (let inc = 1; inc < 500; inc++) {
      n.handleDatagram(2 + inc, gossip(B, [{ state: MemberState.Dead, incarnation: inc, member: C }]), rt);
      n.handleDatagram(2 + inc, gossip(B, [{ state: MemberState.Alive, incarnation: inc + 1, member: C }]), rt);
    }
    const reaps = rt.timers.filter((t) => t.timer.kind === "reap");
    assert.equal(reaps.length, 1, `${reaps.length} reap timers`);
    // When it fires while C is alive nothing happens; a later death arms one again and reaps.
    const first = reaps[0];
    assert.ok(first !== undefined);
    n.handleTimer(first.atMs, first.timer, rt);
    assert.equal(n.stateOf(C.key), MemberState.Alive);
    n.handleDatagram(first.atMs + 1, gossip(B, [{ state: MemberState.Dead, incarnation: 1000, member: C }]), rt);
    const again = rt.timers.filter((t) => t.timer.kind === "reap").at(-1);
    assert.ok(again !== undefined && again !== first);
    n.handleTimer(again.atMs, again.timer, rt);
    assert.equal(n.stateOf(C.key), undefined, "reaped");
  });

  test("a leave announcement leads every datagram, even with a full queue", () => {
    const { n, rt } = node();
    const updates: MemberUpdate[] = [];
    for (let i = 0; i < 100; i++) updates.push({ state: MemberState.Alive, incarnation: 1, member: addr(`10.2.0.${i + 1}:7946`) });
    n.handleDatagram(1, gossip(B, updates), rt);
    for (let i = 0; i < 100; i++) updates[i] = { state: MemberState.Alive, incarnation: 2, member: addr(`10.2.0.${i + 1}:7946`) };
    n.handleDatagram(2, gossip(B, updates), rt);
    rt.sent.length = 0;
    n.leave(3, rt);
    assert.ok(rt.sent.length >= 8, `${rt.sent.length} announcements`);
    for (const s of rt.sent) {
      const first = s.d.updates[0];
      assert.ok(first !== undefined && first.member.key === A.key && first.state === MemberState.Left, "LEFT about self comes first");
    }
    // An ack while leaving carries it too.
    rt.sent.length = 0;
    n.handleDatagram(4, encodeDatagram({ from: B, incarnation: 1, body: { type: MessageType.Ping, seq: 9 }, updates: [], broadcasts: [] }), rt);
    assert.equal(rt.sent[0]?.d.updates[0]?.state, MemberState.Left);
  });

  test("a new life of a departed member, talking at an older incarnation, is told so that it refutes", () => {
    const { n, rt } = node();
    n.handleDatagram(1, gossip(B, []), rt);
    n.handleDatagram(2, gossip(B, [{ state: MemberState.Left, incarnation: 5, member: B }], 5), rt);
    assert.equal(n.stateOf(B.key), MemberState.Left);
    rt.sent.length = 0;
    n.handleDatagram(5000, gossip(B, [], 1), rt); // restarted within the same second: lower incarnation
    // Its address has not answered this life yet: one ping, which carries the news.
    assert.equal(rt.sent.length, 1);
    const ping = rt.sent[0];
    assert.ok(ping !== undefined && ping.to.key === B.key && ping.d.body.type === MessageType.Ping);
    assert.ok(ping.d.updates.some((u) => u.member.key === B.key && u.state === MemberState.Left && u.incarnation === 5));
    // Its answer proves the address: then it gets the member list.
    const ack = encodeDatagram({ from: B, incarnation: 1, body: { type: MessageType.Ack, seq: ping.d.body.seq }, updates: [], broadcasts: [] });
    n.handleDatagram(5001, ack, rt);
    const sync = rt.sent.find((s) => s.to.key === B.key && s.d.body.type === MessageType.Sync);
    assert.ok(sync !== undefined, "the new life is sent the member list");
    assert.ok(sync.d.updates.some((u) => u.member.key === B.key && u.state === MemberState.Left && u.incarnation === 5));
  });

  test("a probe answered after repeated pings measures the round trip from the latest ping, not the first", () => {
    const config = makeConfig("lan", { directPings: 3, pushPullIntervalMs: 0 });
    const rt = new RecordingRuntime(A);
    const n = new SwimNode({ self: A, config, seed: 5, incarnation: 1, broadcastEpoch: 1 });
    n.start(0, rt);
    n.handleDatagram(0, craft(B, 1, [], GOSSIP), rt);
    const pingsToB = (): { atMs: number; seq: number }[] =>
      rt.sent.filter((d) => d.to.key === B.key && d.decoded?.body.type === MessageType.Ping).map((d) => ({ atMs: d.atMs, seq: (d.decoded?.body as { seq: number }).seq }));
    // Only the probe tick and its repeats run: the first ping and its repeats go unanswered.
    const probing = (t: Timer): boolean => t.kind === "probe" || t.kind === "probeRetry";
    for (let t = 10; pingsToB().length === 0 && t < 5000; t += 10) rt.runTimers(n, t, probing);
    const first = pingsToB()[0];
    assert.ok(first !== undefined);
    rt.runTimers(n, first.atMs + config.probeTimeoutMs - 10, probing);
    const pings = pingsToB();
    assert.equal(pings.length, 3, "the first ping and two repeats, one seq");
    assert.ok(pings.every((p) => p.seq === first.seq));
    const latest = pings[2] as { atMs: number };
    assert.ok(latest.atMs > first.atMs);
    // The ack comes 3 ms after the latest ping.
    rt.nowMs = latest.atMs + 3;
    n.handleDatagram(rt.nowMs, craft(B, 1, [], { type: MessageType.Ack, seq: first.seq }), rt);
    assert.equal(n.member(B.key)?.lastRttMs, 3);
    assert.equal(n.ackRtt.count, 1);
    assert.equal(n.ackRtt.sumMs, 3);
  });
});
