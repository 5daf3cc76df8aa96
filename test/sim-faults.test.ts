/**
 * Seeded simulations of partitions and flapping members: partitions shorter and much longer
 * than the reap time (two-way and one-way) heal within a few periods of the network coming
 * back, which they never did before reaped members stayed reconnect targets; a member whose
 * incoming traffic is lost 20 s and restored 20 s, over and over, is damped, its accusations
 * are not believed, and the membership events it causes stay bounded. TAMTAM_SEED=<n> replays
 * one seed instead of the fixed set.
 */

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { DEFAULT_PARAMS, runSimulation, type SimParams, type SimReport } from "../src/sim/simulate.js";

const SEEDS: readonly number[] = process.env.TAMTAM_SEED !== undefined ? [Number(process.env.TAMTAM_SEED)] : [1, 2, 3];
/**
 * The heal bound: every node agrees this many periods after the network is whole again. After
 * a two-way cut it takes 1 period (seeds 1-10); after a one-way cut shorter than the reap
 * time up to 9 (the side that could not hear holds the other dead, and its member lists make
 * the other side suspect each other until they refute; see bench/RESULTS.md).
 */
const HEAL_PERIODS = { twoWay: 5, oneWay: 10 } as const;
/** A reap time far shorter than the preset's, so that "much longer than the reap time" stays cheap. */
const REAP_MS = 20_000;

function sim(overrides: Partial<SimParams>): SimReport {
  return runSimulation({ ...DEFAULT_PARAMS, ...overrides }).report;
}

function where(r: SimReport): string {
  const p = r.parameters;
  return `(seed ${p.seed}: TAMTAM_SEED=${p.seed} node scripts/run-tests.mjs sim-faults)`;
}

function partitioned(seed: number, periods: number, oneWay: boolean, overrides: SimParams["overrides"] = {}): SimReport {
  return sim({
    nodes: 30,
    seed,
    periods: 10 + periods + 30,
    partition: { fromPeriod: 10, toPeriod: 10 + periods - 1, fraction: 0.5, oneWay },
    overrides: { reapAfterMs: REAP_MS, ...overrides },
  });
}

function assertHealed(r: SimReport, what: string, boundPeriods: number): void {
  assert.equal(r.violations.total, 0, `invariant violations ${JSON.stringify(r.violations)} ${where(r)}`);
  const agreedAt = r.convergence.agreedAtMs;
  assert.ok(agreedAt !== null, `${what}: never one view again ${where(r)}`);
  const periods = (agreedAt - r.convergence.lastFaultEndMs) / r.config.probeIntervalMs;
  assert.ok(periods <= boundPeriods, `${what}: one view ${periods} periods after the network healed ${where(r)}`);
  assert.ok(r.convergence.agreeAtEnd, `${what}: views differ at the end ${where(r)}`);
}

describe("partitions heal, whatever their length", () => {
  for (const seed of SEEDS) {
    test(`partitions of 0.5x, 3x and 15x the reap time heal within ${HEAL_PERIODS.twoWay} periods, one-way ${HEAL_PERIODS.oneWay} (seed ${seed})`, () => {
      for (const oneWay of [false, true]) {
        for (const periods of [10, 60, 300]) {
          const what = `${oneWay ? "one-way " : ""}partition of ${periods} s (reap ${REAP_MS / 1000} s)`;
          assertHealed(partitioned(seed, periods, oneWay), what, oneWay ? HEAL_PERIODS.oneWay : HEAL_PERIODS.twoWay);
        }
      }
    });
  }

  test("without reconnect targets (reconnect window 0), a partition longer than the reap time never heals", () => {
    const seed = SEEDS[0] as number;
    const r = partitioned(seed, 60, false, { reconnectTimeoutMs: 0 });
    assert.equal(r.convergence.agreeAtEnd, false, `the cut healed without reconnect targets ${where(r)}`);
    assertHealed(partitioned(seed, 60, false), "the same partition with reconnect targets", HEAL_PERIODS.twoWay);
  });
});

describe("a partition is seen on both sides", () => {
  test("every cross pair of a 5|5 split is held non-alive, then dead, while the cut lasts; the figure is the same sharded", async () => {
    const { runSimulationSharded } = await import("../src/sim/sharded.js");
    for (const seed of SEEDS) {
      const params: SimParams = {
        ...DEFAULT_PARAMS,
        nodes: 10,
        seed,
        periods: 60,
        partition: { fromPeriod: 20, toPeriod: 59, fraction: 0.5, oneWay: false },
        overrides: { probeIntervalMs: 500, probeTimeoutMs: 250 },
      };
      const r = sim(params);
      const seen = r.partitionSeen;
      assert.ok(seen !== null, `no partition figure ${where(r)}`);
      assert.equal(seen.crossPairs, 50);
      assert.ok(seen.allNonAliveMs !== null && seen.allDeadMs !== null, `some cross pair was never seen ${JSON.stringify(seen)} ${where(r)}`);
      assert.ok(seen.allNonAliveMs <= seen.allDeadMs, `${JSON.stringify(seen)} ${where(r)}`);
      assert.ok(seen.allDeadMs < 40 * 500, `not every cross pair dead within the 20 s cut: ${JSON.stringify(seen)} ${where(r)}`);
      const sharded = (await runSimulationSharded(params, 2)).report;
      assert.deepEqual(sharded.partitionSeen, seen, "sharded runs see the same");
    }
  });
});

describe("a flapping member stays calm", () => {
  const flap = { nodes: 1, downPeriods: 20, upPeriods: 20, cycles: 8 };
  for (const seed of SEEDS) {
    test(`incoming traffic lost 20 s / restored 20 s, 8 times: damped by every observer, events bounded (seed ${seed})`, () => {
      const on = sim({ nodes: 10, seed, periods: 400, flap });
      const off = sim({ nodes: 10, seed, periods: 400, flap, overrides: { flapDamping: false } });
      for (const r of [on, off]) {
        assert.equal(r.violations.total, 0, `invariant violations ${JSON.stringify(r.violations)} ${where(r)}`);
        assert.ok(r.convergence.agreeAtEnd, `views differ at the end ${where(r)}`);
      }
      assert.equal(off.memberEvents.dampingStarted, 0);
      assert.equal(off.memberEvents.shown, off.memberEvents.total);
      assert.ok(on.memberEvents.dampingStarted >= 9, `damping episodes ${on.memberEvents.dampingStarted} ${where(on)}`);
      // Bounded: each observer shows the flapping member's first cycles (3 events each) until
      // its third comeback damps it, then one event when damping starts (and one when it ends),
      // whatever the number of cycles; without damping, 3 events per cycle.
      const observers = 9;
      assert.ok(
        on.memberEvents.shownAboutFlapping <= observers * (1 + 3 * 3 + 2),
        `events about the flapping member shown with damping: ${on.memberEvents.shownAboutFlapping} ${where(on)}`,
      );
      assert.ok(off.memberEvents.shownAboutFlapping >= observers * 3 * (flap.cycles - 1), `without damping: ${off.memberEvents.shownAboutFlapping} ${where(off)}`);
      // Its accusations are not believed once damped: fewer membership changes in all.
      assert.ok(on.memberEvents.total < off.memberEvents.total, `membership changes with damping ${on.memberEvents.total}, without ${off.memberEvents.total} ${where(on)}`);
      assert.ok(on.memberEvents.shown < 0.75 * off.memberEvents.shown, `events shown with damping ${on.memberEvents.shown}, without ${off.memberEvents.shown} ${where(on)}`);
    });
  }
});
