/**
 * Broadcast throughput in the simulator: thousands of broadcasts per second through one node
 * reach every live node exactly once at 0 % and at 20 % loss, with nodes crashing as the burst
 * starts (and spread over every node). At 20 % loss gossip redundancy alone misses a few
 * (broadcast, node) pairs in 10,000; broadcast repair (src/core/repair.ts: digests, repair
 * requests) pulls those, so every live node gets every broadcast, exactly once, on every seed,
 * and the repair path is seen doing that work. The burst rounds and the fresh push really
 * run; 1 and 2 simulator workers give the same report; and a few broadcasts at a time never
 * start burst rounds, so the dissemination curve the cluster benchmark compares with the
 * analytic epidemic curve is still plain gossip. TAMTAM_SEED=<n> replays one seed.
 */

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { CoreStats } from "../src/core/node.js";
import { runSimulationSharded } from "../src/sim/sharded.js";
import { DEFAULT_PARAMS, runSimulation, type SimParams, type SimReport } from "../src/sim/simulate.js";

const SEEDS: readonly number[] = process.env.TAMTAM_SEED !== undefined ? [Number(process.env.TAMTAM_SEED)] : [1, 2, 3];
/** The 20 % loss runs take more seeds: a missed pair is rare (about 1 in 8,000 without repair). */
const LOSS_SEEDS: readonly number[] = process.env.TAMTAM_SEED !== undefined ? SEEDS : [1, 2, 3, 4, 5];

/**
 * 2,000 broadcasts per second for 3 s from period 10 on (the middle half of periods 10..16),
 * 10 nodes, 2 of them crashed at period 10: the survivors believe them alive for most of the
 * burst and keep sending to them.
 */
function burst(seed: number, overrides: Partial<SimParams> = {}): SimParams {
  return { ...DEFAULT_PARAMS, seed, nodes: 10, periods: 16, faultPeriod: 10, kill: 2, broadcasts: 6000, broadcastSenders: 1, ...overrides };
}

function where(r: SimReport): string {
  const p = r.parameters;
  return `(seed ${p.seed}: tamtam simulate --nodes ${p.nodes} --seed ${p.seed} --periods ${p.periods} --kill ${p.kill} --loss ${p.loss} --broadcasts ${p.broadcasts} --broadcast-senders ${p.broadcastSenders})`;
}

/** The sum of one counter over every node that is still up at the end. */
function total(world: ReturnType<typeof runSimulation>["world"], counter: keyof CoreStats): number {
  let sum = 0;
  for (const n of world.nodes) if (n.core !== null) sum += n.core.stats[counter] as number;
  return sum;
}

/** Every broadcast accepted, none delivered twice, at least `minReach` of the pairs delivered, p99 within 1 s. */
function assertDelivered(report: SimReport, minReach = 1): void {
  assert.equal(report.violations.total, 0, `violations (duplicate deliveries among them) ${JSON.stringify(report.violations)} ${where(report)}`);
  assert.equal(report.broadcasts.sent, report.parameters.broadcasts, `every broadcast was accepted ${where(report)}`);
  assert.ok(report.broadcasts.reach >= minReach, `reach ${report.broadcasts.reach} (worst ${report.broadcasts.minReach}) ${where(report)}`);
  // Simulated time, not wall-clock: the protocol's own latency.
  assert.ok(report.broadcasts.latencyMs.p99 <= 1000, `p99 ${report.broadcasts.latencyMs.p99} ms ${where(report)}`);
}

describe("broadcast throughput (simulated)", () => {
  for (const seed of SEEDS) {
    test(`2,000 broadcasts/s through one node reach every live node exactly once at 0 % loss, with crashes (seed ${seed})`, () => {
      const { report, world } = runSimulation(burst(seed));
      assertDelivered(report);
      assert.ok(total(world, "gossipBursts") > 0 && total(world, "freshPushDatagrams") > 0, "burst rounds and the fresh push ran");
      assert.equal(total(world, "broadcastsRefused") + total(world, "broadcastsDropped"), 0, "no queue overflowed");
      assert.equal(total(world, "broadcastsRepaired"), 0, "without loss, gossip alone delivers: nothing to repair");
    });
  }

  test("2,000 broadcasts/s through one node reach every live node exactly once at 20 % loss, with crashes, on every seed (repair pulls what gossip missed)", () => {
    let repaired = 0;
    for (const seed of LOSS_SEEDS) {
      const { report, world } = runSimulation(burst(seed, { loss: 0.2 }));
      assertDelivered(report);
      assert.equal(report.broadcasts.minReach, 1, `every broadcast reached every live node ${where(report)}`);
      assert.ok(total(world, "gossipBursts") > 0 && total(world, "freshPushDatagrams") > 0, "burst rounds and the fresh push ran");
      assert.equal(total(world, "broadcastsRefused") + total(world, "broadcastsDropped"), 0, "no queue overflowed");
      assert.equal(total(world, "repairSeqsGivenUp"), 0, `nothing given up ${where(report)}`);
      repaired += total(world, "broadcastsRepaired");
    }
    // Gossip alone misses a few pairs per run at this loss: the repair path is what closes them.
    assert.ok(repaired > 0, "repair delivered what gossip missed");
  });

  test("across a partition, restarts and pauses at 10 % loss, repair brings every steady node every broadcast once", () => {
    // 20 nodes, 150 broadcasts per second from period 10 on. A partition of 4 periods: each
    // side's broadcasts reach the other only by repair after the heal; restarted nodes miss
    // what was sent while they were down and rejoining (and are handed no history from before
    // their start); paused ones catch up.
    const base = { ...DEFAULT_PARAMS, seed: SEEDS[0] as number, nodes: 20, periods: 30, faultPeriod: 10, broadcasts: 3000, loss: 0.1 };
    const runs: Partial<SimParams>[] = [{ partition: { fromPeriod: 10, toPeriod: 14, fraction: 0.5, oneWay: false } }, { restart: 3, pause: 2 }];
    for (const faults of runs) {
      const { report, world } = runSimulation({ ...base, ...faults });
      assert.equal(report.violations.total, 0, `violations ${JSON.stringify(report.violations)} ${JSON.stringify(faults)}`);
      assert.equal(report.broadcasts.reach, 1, `reach ${report.broadcasts.reach} (worst ${report.broadcasts.minReach}) ${JSON.stringify(faults)}`);
      assert.ok(total(world, "broadcastsRepaired") > 0, "repair delivered some");
    }
  });

  test("the same rate spread over every node reaches every live node exactly once at 20 % loss, with crashes", () => {
    for (const seed of SEEDS) assertDelivered(runSimulation(burst(seed, { broadcastSenders: 0, loss: 0.2 })).report);
  });

  test("the same rate spread over every node reaches every live node exactly once at 0 % loss, with crashes", () => {
    for (const seed of SEEDS) assertDelivered(runSimulation(burst(seed, { broadcastSenders: 0 })).report);
  });

  test("a queue that stays full refuses the node's own broadcasts, counted, and delivers every accepted one exactly once", () => {
    // 40 broadcasts/s for 5 s from one node whose budget carries about 17/s and whose queue
    // holds 64: the queue fills and the rest are refused; what was accepted spreads by the end.
    const overrides = { maxQueuedBroadcasts: 64, gossipBudgetBytesPerSec: 1000 };
    const params = burst(SEEDS[0] as number, { periods: 24, kill: 0, broadcasts: 200, overrides });
    const { report, world } = runSimulation(params);
    const refused = total(world, "broadcastsRefused");
    assert.ok(refused > 0, "the queue filled up");
    assert.equal(report.broadcasts.sent + refused, 200, "every offered broadcast was accepted or refused");
    assert.equal(total(world, "broadcastsDropped"), 0, "no accepted broadcast was evicted");
    assert.equal(report.violations.total, 0);
    assert.equal(report.broadcasts.reach, 1, `every accepted broadcast arrived ${where(report)}`);
  });

  test("1 and 2 simulator workers give the same report at a high broadcast rate with loss and crashes", async () => {
    const params = burst(SEEDS[0] as number, { loss: 0.2, broadcasts: 3000 });
    const single = runSimulation(params).report;
    assertDelivered(single);
    const sharded = await runSimulationSharded(params, 2);
    assert.equal(JSON.stringify(sharded.report), JSON.stringify(single));
    const one = await runSimulationSharded(params, 1);
    assert.equal(JSON.stringify(one.report), JSON.stringify(single));
  });

  test("a few broadcasts at a time never start burst rounds: dissemination stays plain gossip", () => {
    // As the cluster benchmark's dissemination comparison: a handful of broadcasts over the run.
    const { report, world } = runSimulation({ ...DEFAULT_PARAMS, seed: SEEDS[0] as number, nodes: 200, periods: 30, broadcasts: 20 });
    assert.equal(report.broadcasts.reach, 1);
    assert.equal(total(world, "gossipBursts"), 0, "no burst round");
    assert.equal(total(world, "freshPushDatagrams"), 0, "no fresh push");
  });
});
