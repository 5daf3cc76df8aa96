/**
 * Broadcast repair in the pure core (src/core/repair.ts), driven by hand through ManualCluster
 * and on the BroadcastRepair class alone: a gap (seq 1 lost, 0 and 2 seen) and a lost tail (the
 * last broadcast, seen by nobody's later seq) are pulled from a member and delivered exactly
 * once; the requests and answers fit the thread preset's small frames; an idle cluster sends no
 * digest, and digests stop once broadcasts are no longer recent; requests from strangers and
 * malformed digests change nothing; the store keeps to its count, byte and age bounds and a
 * request gets only what was stored within its maxAgeMs; a member that advertises seqs nobody
 * has costs a bounded number of requests and is given up on.
 */

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { addr } from "../src/core/address.js";
import { makeConfig } from "../src/core/config.js";
import { DedupeWindows } from "../src/core/dedupe.js";
import { BroadcastRepair, emptyRepairStats, MAX_ATTEMPTS, REPAIR_STORE_MAX_BYTES } from "../src/core/repair.js";
import { encodeBroadcastItem } from "../src/core/wire/codec.js";
import { MessageType, type UserBroadcast } from "../src/core/wire/messages.js";
import { craft, GOSSIP, ManualCluster, type SentDatagram } from "./helpers/cluster.js";

const PAYLOAD = new Uint8Array(16).fill(7);

/** Whether `d` carries broadcast `seq` and is not a REPAIR datagram. */
function gossipCarrying(seq: number): (d: SentDatagram) => boolean {
  return (d) => d.decoded !== null && d.decoded.body.type !== MessageType.Repair && d.decoded.broadcasts.some((b) => b.seq === seq);
}

/** Seqs delivered to node `i` (from its event log), in order. */
function delivered(c: ManualCluster, i: number): number[] {
  return c.eventLog.filter((e) => e.node === c.key(i) && e.event.type === "broadcast").map((e) => (e.event.type === "broadcast" ? e.event.seq : -1));
}

function sorted(xs: number[]): number[] {
  return [...xs].sort((a, b) => a - b);
}

describe("broadcast repair in a cluster", () => {
  test("a gap (seq 1 lost on every path to one member) is repaired, and delivered exactly once", () => {
    const c = new ManualCluster({ size: 3 });
    c.bootstrap();
    const to1 = c.key(1);
    const removeRule = c.addDropRule((d) => d.to.key === to1 && gossipCarrying(1)(d));
    for (let i = 0; i < 3; i++) {
      assert.ok(c.node(0).broadcast(c.nowMs, PAYLOAD, c.rt(0)).ok);
      c.advanceBy(50);
    }
    c.advanceBy(10_000);
    removeRule();
    assert.ok(c.droppedLog.length > 0, "the drop rule did lose gossip");
    assert.deepEqual(sorted(delivered(c, 1)), [0, 1, 2], "node 1 got every broadcast once");
    assert.deepEqual(sorted(delivered(c, 2)), [0, 1, 2]);
    // Gossip packs the three together, so the datagrams lost with seq 1 held others too.
    const s = c.node(1).stats;
    assert.ok(s.broadcastsRepaired >= 1, `${s.broadcastsRepaired} repaired`);
    assert.ok(s.repairRequestsSent >= 1);
    const answered = c.node(0).stats.repairDatagramsSent + c.node(2).stats.repairDatagramsSent;
    assert.ok(answered >= 1, "a member answered");
  });

  test("a lost tail (the last broadcast, no later seq to show the gap) is found through a digest and repaired", () => {
    const c = new ManualCluster({ size: 3 });
    c.bootstrap();
    const to1 = c.key(1);
    c.addDropRule((d) => d.to.key === to1 && gossipCarrying(2)(d));
    for (let i = 0; i < 3; i++) {
      c.node(0).broadcast(c.nowMs, PAYLOAD, c.rt(0));
      c.advanceBy(50);
    }
    c.advanceBy(10_000);
    assert.deepEqual(sorted(delivered(c, 1)), [0, 1, 2]);
    assert.ok(c.node(1).stats.broadcastsRepaired >= 1);
    assert.ok(c.node(0).stats.repairDigestsSent + c.node(2).stats.repairDigestsSent > 0, "digests went out");
  });

  test("with the thread preset's small frames, repair still works and every datagram keeps to its budget", () => {
    const config = { maxPacketBytes: 127, maxBroadcastBytes: 32 };
    const c = new ManualCluster({ size: 3, preset: "thread", config });
    c.bootstrap(120_000);
    const to1 = c.key(1);
    c.addDropRule((d) => d.to.key === to1 && (gossipCarrying(1)(d) || gossipCarrying(4)(d)));
    for (let i = 0; i < 5; i++) {
      c.node(0).broadcast(c.nowMs, new Uint8Array(32).fill(i), c.rt(0));
      c.advanceBy(500);
    }
    c.advanceBy(60_000);
    assert.deepEqual(sorted(delivered(c, 1)), [0, 1, 2, 3, 4]);
    assert.ok(c.node(1).stats.broadcastsRepaired >= 2);
    const sent = c.sentLog;
    for (const d of sent) {
      assert.ok(d.bytes.length <= 127, `${d.bytes.length}-byte datagram`);
      if (d.decoded?.body.type === MessageType.Ping || d.decoded?.body.type === MessageType.Ack) assert.ok(d.bytes.length <= 80, `${d.bytes.length}-byte probe`);
    }
  });

  test("an idle cluster sends no digest; after broadcasts, digests stop once they are no longer recent", () => {
    const c = new ManualCluster({ size: 3 });
    c.bootstrap();
    c.advanceBy(30_000);
    const hasDigest = (d: SentDatagram): boolean => d.decoded?.digest !== undefined;
    assert.equal(c.sentLog.filter(hasDigest).length, 0, "no digest while idle");
    c.node(0).broadcast(c.nowMs, PAYLOAD, c.rt(0));
    const afterBroadcast = c.sentLog.length;
    c.advanceBy(5_000);
    assert.ok(c.sentLog.slice(afterBroadcast).some(hasDigest), "digests while the broadcast is recent");
    c.advanceBy(15_000);
    const quietFrom = c.sentLog.length;
    c.advanceBy(30_000);
    const quiet = c.sentLog.slice(quietFrom);
    assert.ok(quiet.length > 0);
    assert.equal(quiet.filter(hasDigest).length, 0, "no digest long after the last broadcast");
    assert.equal(quiet.filter((d) => d.decoded?.body.type === MessageType.RepairRequest).length, 0);
  });

  test("a REPAIR_REQUEST from a stranger gets nothing; a malformed digest is a counted protocol error that changes nothing", () => {
    const c = new ManualCluster({ size: 2 });
    c.bootstrap();
    c.node(0).broadcast(c.nowMs, PAYLOAD, c.rt(0));
    c.advanceBy(1_000);
    const stranger = addr("10.9.9.9:7946");
    const before = c.sentLog.length;
    c.inject(0, craft(stranger, 0, [], { type: MessageType.RepairRequest, origin: c.address(0), epoch: 0, maxAgeMs: 1_000_000, seqs: [0] }));
    assert.equal(c.node(0).stats.requestsRefusedByReason.NOT_A_MEMBER, 1);
    assert.equal(c.node(0).stats.repairRequestsReceived, 0);
    assert.equal(c.sentLog.length, before, "nothing sent in answer");
    // A GOSSIP from member 1 whose DIGEST claims 5 bytes but holds a cut entry.
    const good = craft(c.address(1), 0, [], GOSSIP);
    const bad = new Uint8Array(good.length + 7);
    bad.set(good);
    bad.set([0x83, 0x05, 4, 10, 0, 0, 9], good.length);
    const errors = c.node(0).stats.protocolErrors;
    c.inject(0, bad);
    assert.equal(c.node(0).stats.protocolErrors, errors + 1);
    assert.equal(c.node(0).stats.protocolErrorsByCode.BAD_LENGTH, 1);
    c.advanceBy(20_000);
    assert.equal(c.node(0).stats.repairRequestsSent, 0, "the bad digest caused no request");
  });
});

describe("BroadcastRepair", () => {
  const self = addr("10.0.0.1:7946");
  const origin = addr("10.0.0.2:7946");
  const peer = addr("10.0.0.3:7946");
  const broadcast = (seq: number, bytes = 16): UserBroadcast => ({ origin, epoch: 9, seq, payload: new Uint8Array(bytes).fill(seq & 0xff) });

  /** A BroadcastRepair over real dedupe windows; `seen.add(seq)` delivers seq of `origin`'s epoch 9 there. */
  function make(maxQueuedBroadcasts = 4096): { r: BroadcastRepair; stats: ReturnType<typeof emptyRepairStats>; seen: { add(seq: number): void } } {
    const stats = emptyRepairStats();
    const config = makeConfig("lan", { maxQueuedBroadcasts });
    const windows = new DedupeWindows(config.broadcastDedupeWindow, config.maxBroadcastOrigins);
    const r = new BroadcastRepair(config, self, windows, config.broadcastDedupeWindow, stats);
    r.begin(0);
    return { r, stats, seen: { add: (seq) => void windows.sight(origin.key, 9, seq) } };
  }

  test("the store keeps to its count bound (evictions counted) and to its age; a request gets only what was stored within its maxAgeMs", () => {
    const { r, stats, seen } = make(32);
    for (let seq = 0; seq < 40; seq++) {
      seen.add(seq);
      const b = broadcast(seq);
      r.onDelivered(1000, b, encodeBroadcastItem(b), peer);
    }
    assert.equal(r.storedCount, 32);
    assert.equal(stats.repairStoreEvictions, 8);
    const ask = (maxAgeMs: number, seqs: number[]) => r.serve(1500, { type: MessageType.RepairRequest, origin, epoch: 9, maxAgeMs, seqs });
    assert.equal(ask(1000, [0, 7, 8, 39]).length, 2, "seqs 0..7 were evicted");
    assert.equal(ask(100, [8, 39]).length, 0, "stored 500 ms ago: older than the request's maxAgeMs");
    assert.equal(r.serve(1000 + r.windowMs + 1, { type: MessageType.RepairRequest, origin, epoch: 9, maxAgeMs: 1e9, seqs: [39] }).length, 0, "aged out");
    assert.equal(r.storedCount, 0);
  });

  test("the store keeps to its byte bound", () => {
    const { r, stats } = make();
    const big = 1000;
    const count = Math.ceil(REPAIR_STORE_MAX_BYTES / big) + 10;
    for (let seq = 0; seq < count; seq++) {
      const b = broadcast(seq, big);
      r.onDelivered(0, b, encodeBroadcastItem(b), peer);
    }
    assert.ok(r.storedCount * big <= REPAIR_STORE_MAX_BYTES, `${r.storedCount} items stored`);
    assert.ok(stats.repairStoreEvictions >= 10);
  });

  test("a gap is asked for on the second round, from the member that told of it, then the origin, then anyone", () => {
    const { r, stats, seen } = make();
    for (const seq of [0, 2]) {
      seen.add(seq);
      const b = broadcast(seq);
      r.onDelivered(0, b, encodeBroadcastItem(b), peer);
    }
    const live = (): boolean => true;
    assert.equal(r.tick(400, live).asks.length, 0, "first round: gossip may still bring it");
    const targets = [1, 2, 3].map((k) => r.tick(400 * (k + 1), live).asks[0]);
    assert.deepEqual(targets.map((a) => a?.body.seqs), [[1], [1], [1]]);
    assert.deepEqual(targets.map((a) => a?.to?.key ?? null), [peer.key, origin.key, null]);
    assert.equal(targets[0]?.body.maxAgeMs, 800);
    seen.add(1);
    const done = r.tick(2000, live);
    assert.equal(done.asks.length, 0);
    assert.equal(stats.repairSeqsGivenUp, 0);
  });

  test("a digest advertising seqs nobody has costs at most MAX_ATTEMPTS requests, then they are given up (counted)", () => {
    const { r, stats } = make();
    r.onDigest(0, peer, [{ origin, epoch: 9, highestSeq: 2 ** 32 - 1 }]);
    let asks = 0;
    let t = 0;
    for (let round = 0; round < MAX_ATTEMPTS + 5; round++) asks += r.tick((t += 400), () => true).asks.length;
    assert.equal(asks, MAX_ATTEMPTS);
    assert.ok(stats.repairSeqsGivenUp > 0 && stats.repairSeqsGivenUp <= 64, `${stats.repairSeqsGivenUp} given up`);
    // Nothing left to follow once the window has passed.
    const last = r.tick(t + r.windowMs + 1, () => true);
    assert.equal(last.more, false);
  });

  test("a node's own origin is never asked for, whatever a digest says", () => {
    const { r } = make();
    r.onDigest(0, peer, [{ origin: self, epoch: 1, highestSeq: 10 }]);
    assert.equal(r.trackedOrigins, 0);
  });
});
