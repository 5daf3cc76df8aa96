/**
 * Failure detection between real agents on ten hosts (network namespaces, one agent each, the
 * default 500 ms period): random loss of 10 % and then 30 % of every host's incoming datagrams
 * (iptables), counting the (observer, member) pairs falsely suspected and declared dead, which
 * must be none dead; then, on IPv6, a paused agent (SIGSTOP) is suspected by every other and
 * alive again everywhere after SIGCONT, and a killed one (SIGKILL) is dead at every other.
 * Times are printed, never asserted (bench/detection.bench.ts measures them); the waits have
 * generous liveness limits only. Needs root; in CI (CI=true) missing prerequisites fail.
 */

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { LabCluster } from "./helpers/lab-cluster.js";
import { labAvailable, NetLab } from "./helpers/netns.js";

const unavailable = labAvailable();
if (unavailable !== null && process.env.CI === "true") {
  test("network-namespace prerequisites", () => assert.fail(`${unavailable}; .ci/run should have installed them`));
}

const HOSTS = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
/** How long each loss rate lasts. */
const LOSSY_MS = 20_000;
/** Liveness limit of every wait (not a performance bound). */
const WAIT_MS = 60_000;

describe("detection between real agents on ten hosts", { skip: unavailable ?? false, timeout: 600_000 }, () => {
  let lab: NetLab;
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), "tamtam-detect-"));
    lab = new NetLab(`td${process.pid % 100000}`, HOSTS.length);
  });
  after(() => {
    lab?.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  const env = (): Record<string, string> => ({ ...(process.env as Record<string, string>), NO_COLOR: "1" });

  test("IPv4: 10 % and 30 % loss on every host's input declare no running agent dead", async () => {
    const cluster = new LabCluster({ lab, hosts: HOSTS, family: 4, port: 7946, dir, heartbeatMs: 500, env: env() });
    try {
      await cluster.start();
      await cluster.converge(WAIT_MS);
      for (const loss of [0.1, 0.3]) {
        for (const h of HOSTS) lab.addLoss(h, loss);
        const from = performance.now();
        await new Promise((r) => setTimeout(r, LOSSY_MS));
        const to = performance.now();
        lab.heal();
        const suspected = cluster.pairs("suspect", from, to);
        const dead = cluster.pairs("dead", from, to);
        console.log(`${loss * 100} % loss for ${LOSSY_MS / 1000} s: ${suspected} of 90 pairs falsely suspected, ${dead} falsely dead`);
        assert.equal(dead, 0, `${dead} (observer, member) pairs declared a running agent dead at ${loss * 100} % loss`);
        await cluster.converge(WAIT_MS);
      }
    } finally {
      await cluster.stop();
    }
  });

  test("IPv6: a paused agent is suspected everywhere and alive again after SIGCONT; a killed one is dead everywhere", async () => {
    const cluster = new LabCluster({ lab, hosts: HOSTS, family: 6, port: 7947, dir, heartbeatMs: 500, env: env() });
    try {
      await cluster.start();
      await cluster.converge(WAIT_MS);
      const paused = 10;
      const others = HOSTS.filter((h) => h !== paused);
      const stoppedAt = performance.now();
      cluster.signal(paused, "SIGSTOP");
      const suspectedMs = await cluster.awaitAll(paused, others, ["suspect", "dead"], stoppedAt, WAIT_MS);
      const resumedAt = performance.now();
      cluster.signal(paused, "SIGCONT");
      await cluster.converge(WAIT_MS);
      console.log(`paused: non-alive at every other after ${Math.round(suspectedMs)} ms; one view ${Math.round(performance.now() - resumedAt)} ms after SIGCONT`);

      const victim = 9;
      const survivors = HOSTS.filter((h) => h !== victim);
      const killedAt = performance.now();
      cluster.signal(victim, "SIGKILL");
      const deadMs = await cluster.awaitAll(victim, survivors, ["dead"], killedAt, WAIT_MS);
      assert.ok(await cluster.allSee(survivors, [victim], "dead"), "every survivor lists the killed agent dead");
      assert.ok(await cluster.allSee(survivors, survivors, "alive"), "every survivor still sees the others alive");
      console.log(`killed: dead at every other after ${Math.round(deadMs)} ms`);
    } finally {
      await cluster.stop();
    }
  });
});
