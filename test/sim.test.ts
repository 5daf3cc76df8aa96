/**
 * Seeded simulations of whole clusters running the real core: convergence, crash detection,
 * Lifeguard under loss, broadcast reach, partitions, graceful leave, restarts and determinism.
 * Every assertion message carries the seed; TAMTAM_SEED=<n> replays one seed instead of the
 * fixed set.
 */

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { buildReport, DEFAULT_PARAMS, planScenario, runSimulation, type SimParams, type SimReport } from "../src/sim/simulate.js";
import { Monitor } from "../src/sim/monitor.js";
import { mergeOutcomes } from "../src/sim/outcome.js";
import { type SimNode, World } from "../src/sim/world.js";
import { LEAVE_FANOUT } from "../src/core/node.js";
import { MemberState } from "../src/core/wire/messages.js";

const SEEDS: readonly number[] = process.env.TAMTAM_SEED !== undefined ? [Number(process.env.TAMTAM_SEED)] : [1, 2, 3];

function sim(overrides: Partial<SimParams>): ReturnType<typeof runSimulation> {
  return runSimulation({ ...DEFAULT_PARAMS, ...overrides });
}

function where(r: SimReport): string {
  const p = r.parameters;
  return `(seed ${p.seed}; replay: tamtam simulate --nodes ${p.nodes} --seed ${p.seed} --periods ${p.periods} ...)`;
}

function assertNoViolations(r: SimReport): void {
  assert.equal(r.violations.total, 0, `invariant violations ${JSON.stringify(r.violations)} ${where(r)}`);
}

describe("simulated clusters", () => {
  for (const seed of SEEDS) {
    test(`100 nodes joining one seed node converge within 10 periods (seed ${seed})`, () => {
      const { report } = sim({ nodes: 100, seed, periods: 15 });
      assertNoViolations(report);
      assert.ok(
        report.convergence.agreedAtPeriod !== null && report.convergence.agreedAtPeriod <= 10,
        `converged at period ${report.convergence.agreedAtPeriod} ${where(report)}`,
      );
      assert.equal(report.falsePositives.suspicions, 0, `no suspicions at 0 % loss ${where(report)}`);
    });

    test(`a crashed node is declared dead by every other node within the suspicion bound, nobody else (seed ${seed})`, () => {
      const { report } = sim({ nodes: 100, seed, periods: 70, kill: 1 });
      assertNoViolations(report);
      assert.equal(report.detection.killed, 1);
      assert.equal(report.detection.detectedByAll, 1, `not every node detected the crash ${where(report)}`);
      // First suspicion within a couple of periods, then at most the full suspicion timeout,
      // then the death spreads by gossip within a few periods.
      const boundMs = report.formulas.suspicionMaxMs + 5 * report.config.probeIntervalMs;
      assert.ok(report.detection.allMs.max <= boundMs, `detected by all after ${report.detection.allMs.max} ms > ${boundMs} ms ${where(report)}`);
      assert.equal(report.falsePositives.deaths, 0, `a running node was declared dead ${where(report)}`);
      assert.equal(report.falsePositives.suspicions, 0, `a running node was suspected at 0 % loss ${where(report)}`);
      assert.ok(report.convergence.agreeAtEnd, `views differ at the end ${where(report)}`);
    });
  }

  for (const seed of SEEDS) {
    test(`tags: every node's tags reach every other node, cold start and at 10 % loss, and the thread preset (seed ${seed})`, () => {
      for (const overrides of [{}, { loss: 0.1 }, { preset: "thread" as const, periods: 40 }]) {
        const { report } = sim({ nodes: 60, seed, periods: 30, tags: true, ...overrides });
        assertNoViolations(report);
        assert.equal(report.tags.pairs, 60 * 59);
        assert.equal(report.tags.known, report.tags.pairs, `${report.tags.known} of ${report.tags.pairs} pairs hold the tags ${JSON.stringify(overrides)} ${where(report)}`);
        assert.ok(report.traffic.maxDatagramBytes <= report.config.maxPacketBytes);
      }
      // Without tags nothing is counted.
      assert.equal(sim({ nodes: 10, seed, periods: 5 }).report.tags.pairs, 0);
    });
  }

  // With one ping per probe (memberlist's), where local health is what keeps a lossy member from
  // suspecting others. The lan preset's four pings already remove most of those suspicions, so
  // there both come out about equal (192 and 197 over seeds 1-10) and only the deaths differ.
  test("at 30 % loss Lifeguard gives fewer false suspicions than plain SWIM, and no false deaths where plain SWIM gives some", () => {
    let withLifeguard = 0;
    let without = 0;
    let deathsWithout = 0;
    const overrides = { directPings: 1 };
    for (const seed of SEEDS) {
      const on = sim({ nodes: 60, seed, periods: 60, loss: 0.3, overrides }).report;
      const off = sim({ nodes: 60, seed, periods: 60, loss: 0.3, lifeguard: false, overrides }).report;
      assertNoViolations(on);
      assertNoViolations(off);
      assert.equal(on.falsePositives.deaths, 0, `Lifeguard on declared a running node dead ${where(on)}`);
      withLifeguard += on.falsePositives.suspicions;
      without += off.falsePositives.suspicions;
      deathsWithout += off.falsePositives.deaths;
    }
    assert.ok(withLifeguard > 0, "30 % loss should cause some suspicions, or the test measures nothing");
    assert.ok(deathsWithout > 0, "plain SWIM should declare some running node dead at 30 % loss, or the test measures nothing");
    assert.ok(withLifeguard < without, `Lifeguard on ${withLifeguard} suspicions, off ${without} (seeds ${SEEDS.join(",")})`);
  });

  for (const seed of SEEDS) {
    test(`broadcasts reach every steady node at 0 % loss, even with crashes (seed ${seed})`, () => {
      const { report } = sim({ nodes: 100, seed, periods: 40, broadcasts: 40, kill: 2 });
      assertNoViolations(report);
      assert.equal(report.broadcasts.sent, 40);
      assert.equal(report.broadcasts.reach, 1, `reach ${report.broadcasts.reach} ${where(report)}`);
    });
  }

  test("broadcasts reach every steady node at 20 % loss, each delivered once", () => {
    for (const seed of SEEDS) {
      const { report } = sim({ nodes: 60, seed, periods: 40, broadcasts: 40, loss: 0.2 });
      assertNoViolations(report); // includes DUPLICATE_DELIVERY
      assert.equal(report.broadcasts.reach, 1, `reach ${report.broadcasts.reach} ${where(report)}`);
    }
  });

  test("200 nodes joining at 30 % loss still come to one view (join retries, post-join member-list exchanges)", () => {
    const seed = SEEDS[0] as number;
    const { report } = sim({ nodes: 200, seed, periods: 40, loss: 0.3 });
    assertNoViolations(report);
    assert.ok(report.convergence.agreeAtEnd, `views differ at the end: ${report.convergence.knownCurve.at(-1)} of pairs known ${where(report)}`);
    assert.equal(report.falsePositives.deaths, 0, `Lifeguard on declared a running node dead ${where(report)}`);
  });

  test("a 50/50 partition longer than the suspicion timeout heals into one view", () => {
    const seed = SEEDS[0] as number;
    const { report } = sim({ nodes: 60, seed, periods: 100, partition: { fromPeriod: 10, toPeriod: 59, fraction: 0.5, oneWay: false } });
    assertNoViolations(report);
    assert.ok(report.falsePositives.deaths > 0, `the partition should have lasted long enough to declare deaths ${where(report)}`);
    const healedAt = report.convergence.lastFaultEndMs;
    const agreedAt = report.convergence.agreedAtMs;
    assert.ok(agreedAt !== null, `never re-merged ${where(report)}`);
    assert.ok(agreedAt - healedAt <= 20 * report.config.probeIntervalMs, `re-merged ${agreedAt - healedAt} ms after healing ${where(report)}`);
    assert.ok(report.convergence.agreeAtEnd, `views differ at the end ${where(report)}`);
  });

  test("a one-way partition heals too", () => {
    const seed = SEEDS[0] as number;
    const { report } = sim({ nodes: 40, seed, periods: 90, partition: { fromPeriod: 10, toPeriod: 49, fraction: 0.3, oneWay: true } });
    assertNoViolations(report);
    assert.ok(report.convergence.agreedAtMs !== null && report.convergence.agreeAtEnd, `never re-merged ${where(report)}`);
  });

  for (const seed of SEEDS) {
    test(`graceful leave propagates as left, never as dead (seed ${seed})`, () => {
      const { report, world } = sim({ nodes: 50, seed, periods: 40, leave: 3 });
      assertNoViolations(report); // includes LEFT_REPORTED_DEAD
      const leavers = world.scenario.actions.filter((a) => a.kind === "leave").map((a) => (a as { node: number }).node);
      assert.equal(leavers.length, 3);
      for (const n of world.nodes) {
        if (n.core === null) continue;
        for (const l of leavers) {
          const key = (world.nodes[l] as { address: { key: string } }).address.key;
          assert.equal(n.core.stateOf(key), MemberState.Left, `node ${n.index} holds leaver ${l} as ${n.core.stateOf(key)} ${where(report)}`);
        }
      }
      assert.ok(report.convergence.agreeAtEnd, `views differ at the end ${where(report)}`);
    });
  }

  test("a leaving node stops as the agent does: at the leave's instant, once the core's direct announcements are sent", () => {
    const seed = SEEDS[0] as number;
    const nodes = 50;
    const scenario = planScenario({ ...DEFAULT_PARAMS, nodes, seed, periods: 30, leave: 2 });
    const world = new World(scenario);
    const monitor = new Monitor(world);
    world.addObserver(monitor);
    const leftAt = new Map<number, { atMs: number; sentBefore: number }>();
    const stops: { node: number; atMs: number; sentByLeave: number }[] = [];
    world.addObserver({
      onCoreEvent: () => undefined,
      onBroadcastSent: () => undefined,
      onPeriod: () => undefined,
      onWarmStart: () => undefined,
      onAction: (w, action) => {
        if (action.kind === "leave") leftAt.set(action.node, { atMs: w.nowMs, sentBefore: (w.nodes[action.node] as SimNode).datagramsSent });
        if (action.kind === "stop") {
          const start = leftAt.get(action.node);
          assert.ok(start !== undefined, "a stop follows a leave");
          stops.push({ node: action.node, atMs: w.nowMs - start.atMs, sentByLeave: (w.nodes[action.node] as SimNode).datagramsSent - start.sentBefore });
        }
      },
    });
    world.run();
    assert.equal(stops.length, 2);
    for (const s of stops) {
      // Every other node is an alive member by then: LEAVE_FANOUT of them get one announcement each.
      assert.deepEqual(s, { node: s.node, atMs: 0, sentByLeave: LEAVE_FANOUT }, "the process stops right after the leave's datagrams, sending nothing more");
      const n = world.nodes[s.node] as SimNode;
      assert.equal(n.running, false);
      assert.equal(n.datagramsSent - (leftAt.get(s.node)?.sentBefore ?? 0), LEAVE_FANOUT, "nothing is sent after the stop");
    }
    // Members hear of the leave from those told directly, and report it as left, never dead.
    const report = buildReport({ ...DEFAULT_PARAMS, nodes, seed, periods: 30, leave: 2 }, scenario, world.config, mergeOutcomes([monitor.outcome()]));
    assertNoViolations(report);
    for (const n of world.nodes) {
      if (n.core === null) continue;
      for (const s of stops) assert.equal(n.core.stateOf((world.nodes[s.node] as SimNode).address.key), MemberState.Left);
    }
    // Deterministic: the same seed gives the same run.
    const again = sim({ nodes, seed, periods: 30, leave: 2 }).report;
    assert.deepEqual(again, sim({ nodes, seed, periods: 30, leave: 2 }).report);
  });

  for (const incarnation of ["clock", "zero"] as const) {
    test(`a crashed node restarted on the same address rejoins (starting incarnation from ${incarnation})`, () => {
      for (const seed of SEEDS) {
        const { report, world } = sim({ nodes: 50, seed, periods: 60, restart: 2, restartAfterPeriods: 30, restartIncarnation: incarnation });
        assertNoViolations(report);
        const restarted = world.scenario.actions.filter((a) => a.kind === "restart" && a.atMs > 0).map((a) => (a as { node: number; atMs: number }));
        assert.equal(restarted.length, 2);
        assert.ok(report.convergence.agreedAtMs !== null, `never agreed after the restart ${where(report)}`);
        // The crash was long enough to be declared dead; the new life is alive within a few periods.
        const lastRestartMs = Math.max(...restarted.map((r) => r.atMs));
        assert.ok(
          report.convergence.agreedAtMs - lastRestartMs <= 5 * report.config.probeIntervalMs,
          `agreed ${report.convergence.agreedAtMs - lastRestartMs} ms after the restart ${where(report)}`,
        );
        assert.ok(report.convergence.agreeAtEnd, `views differ at the end ${where(report)}`);
      }
    });
  }

  test("paused nodes come back and the cluster agrees again", () => {
    const seed = SEEDS[0] as number;
    const { report } = sim({ nodes: 40, seed, periods: 80, pause: 2, pausePeriods: 40 });
    assertNoViolations(report);
    assert.ok(report.convergence.agreedAtMs !== null && report.convergence.agreeAtEnd, `never agreed after the pause ${where(report)}`);
  });

  test("mixed IPv4/IPv6 clusters converge, with latency spread, duplication and reordering", () => {
    const seed = SEEDS[0] as number;
    const { report } = sim({ nodes: 40, seed, periods: 30, addressing: "mixed", duplicate: 0.05, latencyMinMs: 1, latencyMeanMs: 20, broadcasts: 10 });
    assertNoViolations(report);
    assert.ok(report.convergence.agreedAtPeriod !== null && report.convergence.agreedAtPeriod <= 10, `converged at ${report.convergence.agreedAtPeriod} ${where(report)}`);
    assert.equal(report.broadcasts.reach, 1, `reach ${report.broadcasts.reach} ${where(report)}`);
  });

  test("the thread preset converges with small probe datagrams", () => {
    const seed = SEEDS[0] as number;
    const { report } = sim({ nodes: 30, seed, periods: 30, preset: "thread", addressing: "ipv6", loss: 0.05, latencyMinMs: 5, latencyMeanMs: 40 });
    assertNoViolations(report);
    assert.ok(report.convergence.agreeAtEnd, `views differ at the end ${where(report)}`);
    assert.ok(report.traffic.maxDatagramBytes <= report.config.maxPacketBytes);
  });

  test("the same seed gives the identical report and trace; another seed does not", () => {
    const params: Partial<SimParams> = { nodes: 60, periods: 40, loss: 0.1, kill: 2, leave: 1, broadcasts: 10, duplicate: 0.02 };
    const a = sim({ ...params, seed: 7 }).report;
    const b = sim({ ...params, seed: 7 }).report;
    const c = sim({ ...params, seed: 8 }).report;
    assert.equal(JSON.stringify(a), JSON.stringify(b));
    assert.notEqual(a.traceHash, c.traceHash);
  });

  test("tamtam simulate --json through the bin: one JSON object with the seed and every parameter, byte-identical on a rerun", () => {
    const root = new URL("../../", import.meta.url).pathname;
    const bin = join(root, (JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as { bin: { tamtam: string } }).bin.tamtam);
    const args = [bin, "simulate", "--nodes", "30", "--seed", "11", "--periods", "20", "--loss", "5%", "--kill", "1", "--partition", "3-6", "--json"];
    const run = (): string => execFileSync(process.execPath, args, { encoding: "utf8", timeout: 60_000 });
    const first = run();
    assert.equal(run(), first, "byte-identical output for the same seed and parameters");
    const report = JSON.parse(first) as SimReport;
    assert.equal(first.trim().split("\n").length, 1, "one line");
    assert.equal(report.parameters.seed, 11);
    assert.equal(report.parameters.nodes, 30);
    assert.equal(report.parameters.loss, 0.05);
    assert.deepEqual(report.parameters.partition, { fromPeriod: 3, toPeriod: 6, fraction: 0.5, oneWay: false });
    assert.equal(report.config.probeIntervalMs, 1000);
    assert.equal(typeof report.traceHash, "string");
  });
});
