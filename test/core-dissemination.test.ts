/**
 * Burst gossip in the pure core (src/core/dissemination.ts), driven by hand through
 * ManualCluster: the pacing derived from a config; an idle node and a node with a few
 * broadcasts gossip exactly as before (no burst round, no fresh push); a deep queue drains
 * through burst rounds within the gossip budget and reaches every member exactly once; and a
 * full queue refuses the node's own broadcasts (QUEUE_FULL, counted) until gossip drains it.
 */

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { gossipPacing, makeConfig, ownBroadcastQueueLimit, PRESETS } from "../src/core/config.js";
import { MessageType } from "../src/core/wire/messages.js";
import { ManualCluster } from "./helpers/cluster.js";

const PAYLOAD = new Uint8Array(64).fill(7);

/** Offers `perMs` broadcasts from node `from` every simulated ms for `ms` ms; returns how many were accepted. */
function offer(c: ManualCluster, from: number, perMs: number, ms: number): number {
  let accepted = 0;
  for (let t = 0; t < ms; t++) {
    for (let k = 0; k < perMs; k++) if (c.node(from).broadcast(c.nowMs, PAYLOAD, c.rt(from)).ok) accepted++;
    c.advanceBy(1);
  }
  return accepted;
}

/** Broadcast deliveries per receiving node, from the event log. */
function deliveries(c: ManualCluster): Map<string, number> {
  const out = new Map<string, number>();
  for (const e of c.eventLog) if (e.event.type === "broadcast") out.set(e.node, (out.get(e.node) ?? 0) + 1);
  return out;
}

describe("gossip pacing", () => {
  test("derived from the config: the budget in force, the burst period and threshold, the bucket", () => {
    const lan = gossipPacing(PRESETS.lan);
    assert.deepEqual(lan, {
      budgetBytesPerSec: 4_000_000,
      regularBytesPerSec: Math.ceil((3 * 1232 * 1000) / 200),
      burstIntervalMs: 10,
      burstThresholdBytes: 3 * 1232,
      lingerMs: 200,
      bucketBytes: 400_000,
    });
    // A budget below the regular rounds' own rate: the regular rounds still go.
    const low = gossipPacing(makeConfig("lan", { gossipBudgetBytesPerSec: 1000 }));
    assert.equal(low.budgetBytesPerSec, low.regularBytesPerSec);
    // Gossip rounds off: no bursts either.
    assert.equal(gossipPacing(makeConfig("lan", { gossipFanout: 0 })).burstThresholdBytes, 0);
    assert.equal(gossipPacing(makeConfig("lan", { gossipIntervalMs: 0 })).burstThresholdBytes, 0);
    assert.equal(ownBroadcastQueueLimit(PRESETS.lan), 2048);
  });
});

describe("burst gossip", () => {
  test("an idle cluster and a few broadcasts gossip as before: no burst round, no fresh push", () => {
    const c = new ManualCluster({ size: 4 });
    c.bootstrap();
    c.advanceBy(30_000);
    for (let i = 0; i < 5; i++) {
      c.node(i % 4).broadcast(c.nowMs, PAYLOAD, c.rt(i % 4));
      c.advanceBy(300);
    }
    c.advanceBy(5_000);
    for (let i = 0; i < 4; i++) {
      const s = c.node(i).stats;
      assert.deepEqual([s.gossipBursts, s.gossipBurstDatagrams, s.freshPushDatagrams], [0, 0, 0], `node ${i}`);
    }
    const delivered = [...deliveries(c).values()].reduce((a, b) => a + b, 0);
    assert.equal(delivered, 5 * 3, "every broadcast reached the three other nodes once");
  });

  test("2,000 broadcasts/s from one node reach every member exactly once, through burst rounds within the budget", () => {
    const budget = 2_500_000;
    const c = new ManualCluster({ size: 5, config: { gossipBudgetBytesPerSec: budget } });
    c.bootstrap();
    const firstSent = c.sentLog.length;
    const startMs = c.nowMs;
    const accepted = offer(c, 0, 2, 2_000);
    assert.equal(accepted, 4_000);
    c.advanceBy(3_000);
    const got = deliveries(c);
    for (let i = 1; i < 5; i++) assert.equal(got.get(c.key(i)), 4_000, `node ${i} got every broadcast once`);
    assert.equal(got.get(c.key(0)), undefined, "the origin does not deliver its own broadcasts");
    for (let i = 0; i < 5; i++) assert.equal(c.node(i).stats.broadcastsDropped, 0, `node ${i} evicted nothing`);
    const origin = c.node(0).stats;
    assert.ok(origin.gossipBursts > 0 && origin.freshPushDatagrams > 0, "burst rounds and the fresh push ran");
    // Gossip datagrams (regular and burst rounds, fresh push) of each node stay within the
    // budget over the whole window, plus the bucket's depth it may start with.
    const seconds = (c.nowMs - startMs) / 1000;
    const bucket = gossipPacing(c.config).bucketBytes;
    for (let i = 0; i < 5; i++) {
      const gossipBytes = c.sentLog
        .slice(firstSent)
        .filter((d) => d.from.key === c.key(i) && d.decoded?.body.type === MessageType.Gossip)
        .reduce((sum, d) => sum + d.bytes.length, 0);
      assert.ok(gossipBytes <= budget * seconds + bucket, `node ${i}: ${gossipBytes} gossip bytes in ${seconds} s > budget ${budget}/s`);
      assert.ok(gossipBytes > 0);
    }
  });

  test("a full queue refuses the node's own broadcasts (QUEUE_FULL, counted) until gossip drains it", () => {
    const c = new ManualCluster({ size: 2, config: { maxQueuedBroadcasts: 8 } });
    c.start(0);
    // Alone: nothing drains the queue.
    const outcomes = Array.from({ length: 6 }, () => c.node(0).broadcast(c.nowMs, PAYLOAD, c.rt(0)));
    assert.deepEqual(outcomes.map((o) => o.ok), [true, true, true, true, false, false]);
    const refused = outcomes[4];
    assert.ok(refused !== undefined && !refused.ok && refused.code === "QUEUE_FULL", JSON.stringify(refused));
    assert.match(refused.message, /^the broadcast queue is full \(4 broadcasts waiting to be spread\); try again shortly$/);
    assert.equal(c.node(0).stats.broadcastsRefused, 2);
    assert.equal(c.node(0).stats.broadcastsSent, 4);
    // A member arrives: gossip spreads the four and makes room again.
    c.start(1);
    c.join(1, [0]);
    assert.ok(c.runUntil(() => c.node(0).queuedBroadcasts === 0, 30_000), "the queue drained");
    assert.equal(deliveries(c).get(c.key(1)), 4);
    assert.ok(c.node(0).broadcast(c.nowMs, PAYLOAD, c.rt(0)).ok);
  });
});
