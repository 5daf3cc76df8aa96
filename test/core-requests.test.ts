/**
 * Cluster requests (src/core/requests.ts) in a ManualCluster: every alive member gets the
 * request and its host answers; answers are collected once per member; lost datagrams are
 * retried within the timeout; a silent member is reported at the deadline; a request ends as
 * soon as every member answered; repeated requests and answers are dropped (a repeated request
 * gets the remembered answer again); every bound holds; and an ack or answer counts only with
 * its target's answer MAC, so neither a relay nor another member can alter or make one up.
 */

import { describe, test } from "node:test";
import assert from "node:assert/strict";

import { type Address, parseAddress } from "../src/core/address.js";
import { answerKeyOf, answerMac, MAX_IN_FLIGHT, MAX_REMEMBERED, QUERY_SENDS, REQUEST_SENDS, maxAnswerBytes, maxRequestPayloadBytes, type RequestStartOptions } from "../src/core/requests.js";
import { makeConfig } from "../src/core/config.js";
import type { CoreEvent } from "../src/core/runtime.js";
import { MemberState, MessageType } from "../src/core/wire/messages.js";
import { ManualCluster, craft, suspect, type SentDatagram } from "./helpers/cluster.js";

const KIND = 7;
const TIMEOUT_MS = 2000;

function bootstrapped(size: number): ManualCluster {
  const c = new ManualCluster({ size });
  c.bootstrap();
  return c;
}

type Ev<T extends CoreEvent["type"]> = Extract<CoreEvent, { type: T }>;

function eventsOf<T extends CoreEvent["type"]>(c: ManualCluster, type: T, node?: number): { node: string; event: Ev<T> }[] {
  return c.eventLog
    .filter((e) => e.event.type === type && (node === undefined || e.node === c.key(node)))
    .map((e) => ({ node: e.node, event: e.event as Ev<T> }));
}

/** Answers every request event not answered yet with "<node index>" as one byte; returns how many. */
function answerAll(c: ManualCluster, answered: Set<string>, skip: ReadonlySet<number> = new Set()): number {
  let n = 0;
  for (let i = 0; i < c.size; i++) {
    if (skip.has(i)) continue;
    for (const { event } of eventsOf(c, "request", i)) {
      const id = `${i}/${event.handle}`;
      if (answered.has(id)) continue;
      answered.add(id);
      c.call(c.slot(i), () => c.node(i).clusterRequests.answer(event.handle, Uint8Array.of(i, event.payload[0] ?? 0), c.rt(i)));
      n++;
    }
  }
  return n;
}

function start(c: ManualCluster, from: number, payload: Uint8Array, token: number, timeoutMs = TIMEOUT_MS) {
  return c.call(c.slot(from), () => c.node(from).clusterRequests.start(c.nowMs, KIND, payload, timeoutMs, token, c.rt(from)));
}

function done(c: ManualCluster, token: number): Ev<"requestDone"> | undefined {
  return eventsOf(c, "requestDone").find((e) => e.event.token === token)?.event;
}

const isType =
  (type: number) =>
  (d: SentDatagram): boolean =>
    d.decoded?.body.type === type;

describe("cluster requests", () => {
  test("every alive member gets the request once and answers; the request ends early with every answer", () => {
    const c = bootstrapped(4);
    const answered = new Set<string>();
    const t0 = c.nowMs;
    const outcome = start(c, 0, Uint8Array.of(42), 1);
    assert.deepStrictEqual(outcome, { ok: true, targets: 3 });
    assert.ok(c.runUntil(() => (answerAll(c, answered), done(c, 1) !== undefined), TIMEOUT_MS));
    // Ended long before the deadline: early completion.
    assert.ok(c.nowMs - t0 < TIMEOUT_MS / REQUEST_SENDS, `ended after ${c.nowMs - t0} ms`);
    assert.deepStrictEqual(done(c, 1)?.missing, []);
    const answers = eventsOf(c, "requestAnswer", 0).map((e) => e.event);
    assert.deepStrictEqual(answers.map((a) => a.from.key).sort(), [c.key(1), c.key(2), c.key(3)].sort());
    for (const a of answers) assert.deepStrictEqual([...a.payload], [[1, 2, 3].find((i) => c.key(i) === a.from.key), 42]);
    for (let i = 1; i < 4; i++) {
      const got = eventsOf(c, "request", i).map((e) => e.event);
      assert.equal(got.length, 1);
      assert.equal(got[0]?.kind, KIND);
      assert.equal(got[0]?.from.key, c.key(0));
    }
    assert.equal(eventsOf(c, "request", 0).length, 0, "not sent to itself");
    const s = c.node(0).clusterRequests.stats;
    assert.equal(s.requestsComplete, 1);
    assert.equal(s.requestRetries, 0);
    assert.equal(c.node(0).clusterRequests.inFlight, 0);
  });

  test("lost requests and lost answers are retried within the timeout", () => {
    const c = bootstrapped(3);
    const answered = new Set<string>();
    // The first request to node 1 and the first answer of node 2 are lost.
    let requestsTo1 = 0;
    let answersOf2 = 0;
    const undo = c.addDropRule((d) => {
      if (d.decoded?.body.type === MessageType.Request && d.to.key === c.key(1)) return ++requestsTo1 === 1;
      if (d.decoded?.body.type === MessageType.Response && d.from.key === c.key(2)) return ++answersOf2 === 1;
      return false;
    });
    start(c, 0, Uint8Array.of(1), 5);
    assert.ok(c.runUntil(() => (answerAll(c, answered), done(c, 5) !== undefined), TIMEOUT_MS + 10));
    undo();
    assert.deepStrictEqual(done(c, 5)?.missing, []);
    // Node 2 got the request twice, was handed it once, and sent the remembered answer again.
    assert.equal(eventsOf(c, "request", 2).length, 1);
    assert.equal(c.node(2).clusterRequests.stats.requestsRepeated, 1);
    assert.equal(c.node(2).clusterRequests.stats.answersSent, 2);
    assert.equal(c.node(0).clusterRequests.stats.requestRetries, 2);
    assert.equal(eventsOf(c, "requestAnswer", 0).length, 2);
  });

  test("a member that never answers is reported at the deadline, after REQUEST_SENDS sends", () => {
    const c = bootstrapped(3);
    const answered = new Set<string>();
    const undo = c.addDropRule((d) => d.to.key === c.key(2) && d.decoded?.body.type === MessageType.Request);
    const t0 = c.nowMs;
    const before = c.sentLog.length;
    start(c, 0, Uint8Array.of(1), 9);
    assert.ok(c.runUntil(() => (answerAll(c, answered), done(c, 9) !== undefined), TIMEOUT_MS + 10));
    undo();
    assert.equal(c.nowMs - t0, TIMEOUT_MS, "ends exactly at the deadline");
    assert.deepStrictEqual(done(c, 9)?.missing.map((a: Address) => a.key), [c.key(2)]);
    const toTwo = c.sentLog.slice(before).filter((d) => isType(MessageType.Request)(d) && d.to.key === c.key(2));
    assert.equal(toTwo.length, REQUEST_SENDS);
    const toOne = c.sentLog.slice(before).filter((d) => isType(MessageType.Request)(d) && d.to.key === c.key(1));
    assert.equal(toOne.length, 1, "a member that answered is not asked again");
    assert.equal(eventsOf(c, "requestAnswer", 0).length, 1);
    assert.equal(c.node(0).clusterRequests.stats.requestsIncomplete, 1);
  });

  test("a host that does not answer: its member is missing, and a late answer is refused", () => {
    const c = bootstrapped(2);
    start(c, 0, Uint8Array.of(1), 3);
    c.advanceBy(TIMEOUT_MS + 1);
    assert.deepStrictEqual(done(c, 3)?.missing.map((a) => a.key), [c.key(1)]);
    const [req] = eventsOf(c, "request", 1);
    assert.ok(req !== undefined);
    // The answer still goes out (node 1 remembers the request), but the origin drops it.
    assert.equal(c.call(c.slot(1), () => c.node(1).clusterRequests.answer(req.event.handle, Uint8Array.of(1), c.rt(1))), true);
    c.advanceBy(10);
    assert.equal(c.node(0).clusterRequests.stats.answersDropped, 1);
    // A handle is answered once.
    assert.equal(c.call(c.slot(1), () => c.node(1).clusterRequests.answer(req.event.handle, Uint8Array.of(1), c.rt(1))), false);
  });

  test("duplicate and stray answers are dropped", () => {
    const c = bootstrapped(3);
    const answered = new Set<string>();
    start(c, 0, Uint8Array.of(1), 11);
    // Node 1 answers; then a copy of its RESPONSE, and one from a stranger, arrive again.
    c.advanceBy(5);
    answerAll(c, answered, new Set([2]));
    c.advanceBy(5);
    const response = c.sentLog.find((d) => isType(MessageType.Response)(d) && d.from.key === c.key(1));
    assert.ok(response !== undefined);
    c.inject(0, response.bytes);
    const body = response.decoded?.body;
    assert.ok(body?.type === MessageType.Response);
    c.inject(0, craft(c.address(2), 0, [], { ...body, id: body.id + 1 }));
    c.advanceBy(5);
    assert.equal(eventsOf(c, "requestAnswer", 0).length, 1);
    assert.equal(c.node(0).clusterRequests.stats.answersDropped, 2);
    assert.equal(done(c, 11), undefined, "still waiting for node 2");
  });

  test("no other alive member: done at once; refusals are bounded and counted", () => {
    const c = new ManualCluster({ size: 2 });
    c.start(0);
    assert.deepStrictEqual(start(c, 0, Uint8Array.of(1), 1), { ok: true, targets: 0 });
    assert.deepStrictEqual(done(c, 1)?.missing, []);
    const max = c.node(0).clusterRequests.maxPayloadBytes;
    assert.equal(max, maxRequestPayloadBytes(c.config));
    assert.equal(start(c, 0, new Uint8Array(max + 1), 2).ok, false);
    assert.equal(start(c, 0, Uint8Array.of(1), 2, 5).ok, false, "timeout too short");
    const bad = c.call(c.slot(0), () => c.node(0).clusterRequests.start(c.nowMs, -1, Uint8Array.of(1), TIMEOUT_MS, 2, c.rt(0)));
    assert.equal(bad.ok, false);
    assert.equal(c.node(0).clusterRequests.stats.requestsRefused, 3);

    const d = bootstrapped(2);
    for (let i = 0; i < MAX_IN_FLIGHT; i++) assert.equal(start(d, 0, Uint8Array.of(1), 100 + i).ok, true);
    const busy = start(d, 0, Uint8Array.of(1), 999);
    assert.equal(busy.ok, false);
    assert.equal(busy.ok ? "" : busy.code, "BUSY");
    d.advanceBy(TIMEOUT_MS + 1);
    assert.equal(d.node(0).clusterRequests.inFlight, 0);
    assert.equal(start(d, 0, Uint8Array.of(1), 1000).ok, true);
  });

  test("a request from an address that is no member reaches no host and earns no answer", () => {
    const c = bootstrapped(2);
    const strangerAddress = parseAddress("192.0.2.99:7946") as Address;
    const before = c.sentLog.length;
    c.inject(1, craft(strangerAddress, 0, [], { type: MessageType.Request, epoch: 1, id: 1, kind: KIND, answerKey: new Uint8Array(16), payload: Uint8Array.of(1) }));
    assert.equal(eventsOf(c, "request", 1).length, 0, "the host never sees it");
    assert.equal(c.sentLog.slice(before).filter((d) => d.to.key === strangerAddress.key).length, 0, "nothing goes back");
    assert.equal(c.node(1).stats.requestsRefusedByReason.NOT_A_MEMBER, 1);
    assert.equal(c.node(1).member(strangerAddress.key), undefined, "nor is its sender learned");
  });

  test("a member remembers at most MAX_REMEMBERED requests; an answer of the full budget fits a datagram", () => {
    const c = bootstrapped(2);
    const config = c.config;
    for (let i = 0; i < MAX_REMEMBERED + 10; i++) {
      c.inject(1, craft(c.address(0), 0, [], { type: MessageType.Request, epoch: 1, id: i + 1, kind: KIND, answerKey: new Uint8Array(16), payload: Uint8Array.of(i & 0xff) }));
    }
    assert.equal(eventsOf(c, "request", 1).length, MAX_REMEMBERED + 10);
    // The oldest handles were forgotten: answering them is refused; the newest still works.
    const handles = eventsOf(c, "request", 1).map((e) => e.event.handle);
    assert.equal(c.call(c.slot(1), () => c.node(1).clusterRequests.answer(handles[0] as number, Uint8Array.of(0), c.rt(1))), false);
    const max = maxAnswerBytes(config);
    assert.equal(c.call(c.slot(1), () => c.node(1).clusterRequests.answer(handles.at(-1) as number, new Uint8Array(max + 1), c.rt(1))), false);
    const before = c.sentLog.length;
    assert.equal(c.call(c.slot(1), () => c.node(1).clusterRequests.answer(handles.at(-1) as number, new Uint8Array(max), c.rt(1))), true);
    const sent = c.sentLog.slice(before).filter(isType(MessageType.Response));
    assert.equal(sent.length, 1);
    assert.ok((sent[0]?.bytes.length ?? Infinity) <= config.maxPacketBytes);

    // The budget leaves room for the header and the envelope, for IPv6 too, sealed or not.
    for (const sealed of [false, true]) {
      const cfg = makeConfig("lan", { sealed });
      assert.ok(maxRequestPayloadBytes(cfg) > 1000);
      assert.ok(maxAnswerBytes(cfg) > 1000);
    }
  });
});

describe("cluster requests with targets, acknowledgements and relays (queries)", () => {
  function startWith(c: ManualCluster, from: number, token: number, options: RequestStartOptions) {
    return c.call(c.slot(from), () => c.node(from).clusterRequests.start(c.nowMs, KIND, Uint8Array.of(9), TIMEOUT_MS, token, c.rt(from), options));
  }

  test("only the named alive members are asked; a named address that is no member is left out", () => {
    const c = bootstrapped(4);
    const answered = new Set<string>();
    const stranger = parseAddress("192.0.2.99:7946") as Address;
    const outcome = startWith(c, 0, 21, { targets: [c.address(1), c.address(3), stranger] });
    assert.deepStrictEqual(outcome, { ok: true, targets: 2 });
    assert.ok(c.runUntil(() => (answerAll(c, answered), done(c, 21) !== undefined), TIMEOUT_MS));
    assert.deepStrictEqual(done(c, 21)?.missing, []);
    assert.equal(eventsOf(c, "request", 2).length, 0, "node 2 was not named");
    assert.deepStrictEqual(eventsOf(c, "requestAnswer", 0).map((e) => e.event.from.key).sort(), [c.key(1), c.key(3)].sort());
    assert.equal(c.sentLog.filter((d) => d.to.key === stranger.key).length, 0);
  });

  test("a named member that is suspected is asked too (by default only alive members are)", () => {
    const c = bootstrapped(3);
    const answered = new Set<string>();
    // Node 0 suspects node 2 (node 2 does not hear of it).
    const undo = c.addDropRule((d) => d.to.key === c.key(2) && d.from.key === c.key(0));
    c.inject(0, craft(c.address(1), c.node(1).incarnation, [suspect(c.address(2), c.node(2).incarnation, c.address(1))]));
    assert.equal(c.node(0).stateOf(c.key(2)), MemberState.Suspect);
    undo();
    assert.deepStrictEqual(startWith(c, 0, 25, { targets: [c.address(1), c.address(2)] }), { ok: true, targets: 2 });
    assert.ok(c.runUntil(() => (answerAll(c, answered), done(c, 25) !== undefined), TIMEOUT_MS));
    assert.deepStrictEqual(done(c, 25)?.missing, []);
  });

  test("targets acknowledge at once, once per target at the origin, before their host answers", () => {
    const c = bootstrapped(3);
    startWith(c, 0, 22, { answer: { ackWanted: true, relayCount: 0 } });
    // Nobody answers yet: acknowledgements only.
    assert.ok(c.runUntil(() => eventsOf(c, "requestAck", 0).length === 2, 100));
    assert.deepStrictEqual(eventsOf(c, "requestAck", 0).map((e) => e.event.from.key).sort(), [c.key(1), c.key(2)].sort());
    assert.equal(eventsOf(c, "requestAnswer", 0).length, 0);
    // The retry (an eighth of the timeout later, for a query) brings acknowledgements again: dropped at the origin.
    c.advanceBy(TIMEOUT_MS / QUERY_SENDS + 10);
    assert.equal(eventsOf(c, "requestAck", 0).length, 2);
    assert.ok(c.node(0).clusterRequests.stats.acksDropped >= 2);
    assert.ok(c.node(1).clusterRequests.stats.acksSent >= 2);
    const answered = new Set<string>();
    assert.ok(c.runUntil(() => (answerAll(c, answered), done(c, 22) !== undefined), TIMEOUT_MS));
    assert.deepStrictEqual(done(c, 22)?.missing, []);
  });

  test("with relays, acknowledgements and answers whose direct path is lost arrive through other members, once each", () => {
    const c = bootstrapped(4);
    const answered = new Set<string>();
    // Every direct REQUEST_ACK and RESPONSE of node 1 to node 0 is lost.
    const undo = c.addDropRule(
      (d) => d.from.key === c.key(1) && d.to.key === c.key(0) && (d.decoded?.body.type === MessageType.RequestAck || d.decoded?.body.type === MessageType.Response),
    );
    startWith(c, 0, 23, { answer: { ackWanted: true, relayCount: 2 } });
    assert.ok(c.runUntil(() => (answerAll(c, answered), done(c, 23) !== undefined), TIMEOUT_MS));
    undo();
    c.deliverAll(); // the copies still on their way
    assert.deepStrictEqual(done(c, 23)?.missing, [], "node 1's answer came relayed");
    assert.equal(eventsOf(c, "requestAck", 0).filter((e) => e.event.from.key === c.key(1)).length, 1);
    const fromOne = eventsOf(c, "requestAnswer", 0).filter((e) => e.event.from.key === c.key(1));
    assert.equal(fromOne.length, 1, "one answer per member, whatever the copies");
    assert.deepStrictEqual([...(fromOne[0]?.event.payload ?? [])], [1, 9]);
    const relayed = c.sentLog.filter(isType(MessageType.Relay)).filter((d) => d.from.key === c.key(1));
    assert.ok(relayed.length >= 4, "an ack and an answer, each through two members");
    assert.ok(relayed.every((d) => d.to.key !== c.key(0) && d.to.key !== c.key(1)), "relays are other members");
    const s0 = c.node(0).clusterRequests.stats;
    assert.ok(s0.relayedReceived >= 2);
    assert.ok(s0.answersDropped >= 1, "the second relayed copy is a duplicate");
    assert.ok(c.node(2).clusterRequests.stats.relaysForwarded + c.node(3).clusterRequests.stats.relaysForwarded >= 4);
  });

  test("RELAY and RELAYED from an address that is no member are ignored; relay counts beyond the limit are refused", () => {
    const c = bootstrapped(2);
    const stranger = parseAddress("192.0.2.99:7946") as Address;
    const before = c.sentLog.length;
    c.inject(1, craft(stranger, 0, [], { type: MessageType.Relay, peer: c.address(0), epoch: 1, id: 1, what: 1, mac: new Uint8Array(8), payload: Uint8Array.of(1) }));
    c.inject(0, craft(stranger, 0, [], { type: MessageType.Relayed, peer: c.address(1), epoch: 1, id: 1, what: 1, mac: new Uint8Array(8), payload: Uint8Array.of(1) }));
    assert.equal(c.sentLog.length, before, "nothing passed on");
    assert.equal(c.node(1).clusterRequests.stats.relaysForwarded, 0);
    assert.equal(c.node(0).clusterRequests.stats.relayedReceived, 0);
    assert.equal(c.node(1).stats.requestsRefusedByReason.NOT_A_MEMBER, 1);
    const refused = startWith(c, 0, 24, { answer: { ackWanted: false, relayCount: 6 } });
    assert.equal(refused.ok ? "" : refused.code, "BAD_OPTIONS");
  });

  test("each target gets its own answer key; the answer key binds request, target and payload", () => {
    const c = bootstrapped(4);
    startWith(c, 0, 25, { answer: { ackWanted: true, relayCount: 1 } });
    c.deliverAll();
    const keys = new Map<string, string>();
    for (const d of c.sentLog.filter(isType(MessageType.Request))) {
      const body = d.decoded?.body;
      assert.ok(body?.type === MessageType.Request);
      const hex = Buffer.from(body.answerKey).toString("hex");
      assert.equal(keys.get(d.to.key) ?? hex, hex, "every send to one target carries the same key");
      keys.set(d.to.key, hex);
    }
    assert.equal(keys.size, 3);
    assert.equal(new Set(keys.values()).size, 3, "a different key per target");
    const secret = new Uint8Array(16).fill(7);
    const k = answerKeyOf(secret, 1, 2, c.address(1));
    assert.notDeepEqual(k, answerKeyOf(secret, 1, 3, c.address(1)));
    assert.notDeepEqual(k, answerKeyOf(secret, 2, 2, c.address(1)));
    assert.notDeepEqual(k, answerKeyOf(secret, 1, 2, c.address(2)));
    const mac = answerMac(k, 1, 1, 2, Uint8Array.of(1, 2));
    assert.notDeepEqual(mac, answerMac(k, 1, 1, 2, Uint8Array.of(1, 3)));
    assert.notDeepEqual(mac, answerMac(k, 0, 1, 2, Uint8Array.of(1, 2)));
    assert.notDeepEqual(mac, answerMac(k, 1, 1, 3, Uint8Array.of(1, 2)));
  });

  test("neither a relay nor another member can alter or make up a target's ack or answer; the genuine one still counts", () => {
    const c = bootstrapped(4);
    const answered = new Set<string>();
    // Node 1's direct acks and answers to node 0 are lost, and every relayed copy is held back:
    // what reaches node 0 for node 1 is what this test (playing a relay) sends.
    const isAnswerOfOne = (d: SentDatagram): boolean =>
      d.to.key === c.key(0) &&
      ((d.from.key === c.key(1) && (isType(MessageType.RequestAck)(d) || isType(MessageType.Response)(d))) ||
        (isType(MessageType.Relayed)(d) && (d.decoded?.body as { peer: Address }).peer.key === c.key(1)));
    const held: SentDatagram[] = [];
    const undo = c.addDropRule((d) => {
      if (!isAnswerOfOne(d)) return false;
      if (isType(MessageType.Relayed)(d)) held.push(d);
      return true;
    });
    startWith(c, 0, 26, { answer: { ackWanted: true, relayCount: 2 } });
    c.runUntil(() => (answerAll(c, answered), held.some((d) => (d.decoded?.body as { what: number }).what === 1)), TIMEOUT_MS);
    undo();
    const genuine = held.find((d) => (d.decoded?.body as { what: number }).what === 1);
    assert.ok(genuine?.decoded?.body.type === MessageType.Relayed);
    const body = genuine.decoded.body;
    const relay = genuine.from;
    const s0 = c.node(0).clusterRequests.stats;
    const fromOne = (): number => eventsOf(c, "requestAnswer", 0).filter((e) => e.event.from.key === c.key(1)).length;
    // 1. A relay alters the answer it passes on: same MAC, other payload.
    c.inject(0, craft(relay, c.node(2).incarnation, [], { ...body, payload: Uint8Array.of(66, 66) }));
    // 2. Node 2 (a target itself) makes up node 1's answer with the only key it has, its own,
    //    relayed and as a direct RESPONSE naming node 1 as its sender.
    const requestToTwo = c.sentLog.find((d) => isType(MessageType.Request)(d) && d.to.key === c.key(2))?.decoded?.body;
    assert.ok(requestToTwo?.type === MessageType.Request);
    const forgedMac = answerMac(requestToTwo.answerKey, 1, body.epoch, body.id, Uint8Array.of(66, 66));
    c.inject(0, craft(c.address(2), c.node(2).incarnation, [], { ...body, mac: forgedMac, payload: Uint8Array.of(66, 66) }));
    c.inject(0, craft(c.address(1), c.node(1).incarnation, [], { type: MessageType.Response, epoch: body.epoch, id: body.id, mac: forgedMac, payload: Uint8Array.of(66, 66) }));
    // 3. A made-up acknowledgement for node 1 (the origin has not had node 1's yet).
    c.inject(0, craft(c.address(2), c.node(2).incarnation, [], { ...body, what: 0, mac: answerMac(requestToTwo.answerKey, 0, body.epoch, body.id, new Uint8Array(0)), payload: new Uint8Array(0) }));
    assert.equal(fromOne(), 0, "no forged answer is believed");
    assert.equal(eventsOf(c, "requestAck", 0).filter((e) => e.event.from.key === c.key(1)).length, 0, "nor a forged ack");
    assert.equal(s0.answerMacsRefused, 4);
    // The genuine relayed answer is still taken.
    c.inject(0, genuine.bytes);
    assert.equal(fromOne(), 1);
    assert.deepStrictEqual([...(eventsOf(c, "requestAnswer", 0).find((e) => e.event.from.key === c.key(1))?.event.payload ?? [])], [1, 9]);
  });
});
