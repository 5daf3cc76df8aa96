/**
 * The sharded simulator: splitting the nodes across shards (in this thread, or across piscina
 * worker threads exchanging through shared memory) gives the same report, byte for byte, as
 * one world, for scenarios with every kind of fault; a full ring between shards makes the
 * sender wait instead of dropping; warm starts converge at once; `--workers` 0, 1 and 2 through
 * the bin.
 */

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { runShardsInThread, runSimulationSharded } from "../src/sim/sharded.js";
import { DEFAULT_PARAMS, runSimulation, type SimParams, type SimReport } from "../src/sim/simulate.js";

const SEEDS: readonly number[] = process.env.TAMTAM_SEED !== undefined ? [Number(process.env.TAMTAM_SEED)] : [1, 2, 3];

/** Every fault the simulator has, in one run, on a lossy network with duplication. */
function faultyParams(seed: number, nodes = 60): SimParams {
  return {
    ...DEFAULT_PARAMS,
    seed,
    nodes,
    periods: 30,
    loss: 0.05,
    duplicate: 0.02,
    kill: 2,
    leave: 1,
    restart: 1,
    restartAfterPeriods: 8,
    pause: 1,
    pausePeriods: 4,
    broadcasts: 5,
    partition: { fromPeriod: 14, toPeriod: 16, fraction: 0.3, oneWay: false },
  };
}

function text(r: SimReport): string {
  return JSON.stringify(r);
}

describe("sharded simulation", () => {
  for (const seed of SEEDS) {
    test(`1, 2, 3 and 7 shards in one thread give the same report as one world (seed ${seed})`, () => {
      const params = faultyParams(seed);
      const single = runSimulation(params).report;
      assert.ok(single.detection.killed > 0 && single.broadcasts.sent > 0, "the scenario exercises crashes and broadcasts");
      for (const shards of [1, 2, 3, 7]) {
        const split = runShardsInThread(params, shards);
        assert.equal(text(split.report), text(single), `${shards} shards differ from one world (seed ${seed})`);
        if (shards > 1) assert.ok(split.run.crossShardDatagrams > 0, "datagrams crossed between shards");
      }
    });
  }

  test("1, 2 and 3 worker threads give the same report as the calling thread (0 workers), byte for byte", async () => {
    const params = faultyParams(SEEDS[0] as number, 50);
    const single = runSimulation(params).report;
    const inThread = await runSimulationSharded(params, 0);
    assert.equal(text(inThread.report), text(single), "0 workers differ from runSimulation");
    assert.equal(inThread.run.windows, 0, "0 workers run unsharded");
    for (const workers of [1, 2, 3]) {
      const sharded = await runSimulationSharded(params, workers);
      assert.equal(text(sharded.report), text(single), `${workers} workers differ from one thread`);
      assert.equal(sharded.run.shards, workers);
      assert.ok(sharded.run.windows > 0, "the shards went through lock-step windows");
      if (workers > 1) assert.ok(sharded.run.crossShardDatagrams > 0);
      else assert.equal(sharded.run.crossShardDatagrams, 0, "one shard has no other shard to send to");
    }
    await assert.rejects(runSimulationSharded(params, 65), /workers must be in 0\.\.64, got 65/);
  });

  test("a ring between shards that fills up within a window makes the sender wait, not drop", async () => {
    // 50 ms windows and 4 KiB rings (three full-size datagrams): the join storm overflows them.
    const params: SimParams = { ...DEFAULT_PARAMS, seed: 5, nodes: 40, periods: 12, latencyMinMs: 50, latencyMeanMs: 60 };
    const single = runSimulation(params).report;
    const sharded = await runSimulationSharded(params, 2, { ringCapacityBytes: 4096 });
    assert.ok(sharded.run.ringFullWaits > 0, "the rings filled up");
    assert.equal(text(sharded.report), text(single));
  });

  test("sharding needs a minimum latency above zero (the window length)", () => {
    assert.throws(() => runShardsInThread({ ...DEFAULT_PARAMS, nodes: 10, periods: 2, latencyMinMs: 0, latencyMeanMs: 1 }, 2), /minimum latency above 0/);
  });

  test("a warm start begins converged: every pair known from the first period, and a crash is still detected", () => {
    const params: SimParams = { ...DEFAULT_PARAMS, seed: 3, nodes: 200, periods: 40, warmStart: true, kill: 1 };
    const { report } = runSimulation(params);
    assert.equal(report.violations.total, 0, JSON.stringify(report.violations));
    assert.equal(report.convergence.knownCurve[0], 1, "every pair known in period 1");
    assert.equal(report.falsePositives.suspicions, 0);
    assert.equal(report.detection.detectedByAll, 1, "every node detected the crash");
    assert.ok(report.convergence.agreeAtEnd);
    assert.equal(text(runShardsInThread(params, 3).report), text(report), "warm starts shard like cold ones");
  });

  test("tamtam simulate --workers 0 (the main thread), 1 and 2 print byte-identical JSON", () => {
    const root = new URL("../../", import.meta.url).pathname;
    const bin = join(root, (JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as { bin: { tamtam: string } }).bin.tamtam);
    const args = [bin, "simulate", "--nodes", "40", "--seed", "9", "--periods", "15", "--loss", "5%", "--kill", "1", "--json"];
    const run = (workers: string): string => execFileSync(process.execPath, [...args, "--workers", workers], { encoding: "utf8", timeout: 60_000 });
    const main = run("0");
    assert.equal((JSON.parse(main) as SimReport).detection.killed, 1, "the run has a crash to detect");
    assert.equal(run("1"), main, "one worker thread differs from the main thread");
    assert.equal(run("2"), main, "two worker threads differ from the main thread");
  });
});
