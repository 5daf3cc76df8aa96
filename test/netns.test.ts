/**
 * Real packets between real agents on separate hosts: five network namespaces on a bridge, one
 * `tamtam agent` in each, then random loss and a partition applied and healed with iptables.
 * The cluster must converge, ride out the loss, split under the partition, and agree again
 * after healing. Needs root; in CI (CI=true) missing prerequisites fail the test instead of
 * skipping it, since `.ci/run` installs them.
 */

import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { labAvailable, NetLab, runInHost, startInHost } from "./helpers/netns.js";

const ROOT = new URL("../../", import.meta.url).pathname;
const BIN = join(ROOT, (JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { bin: { tamtam: string } }).bin.tamtam);
const GOSSIP_PORT = 7946;
const RPC = "127.0.0.1:6262"; // each namespace has its own loopback

const unavailable = labAvailable();
if (unavailable !== null && process.env.CI === "true") {
  test("network-namespace prerequisites", () => assert.fail(`${unavailable}; .ci/run should have installed them`));
}

interface NodeRow {
  readonly address: string;
  readonly status: string;
}

describe("agents on separate hosts (network namespaces)", { skip: unavailable ?? false, timeout: 180_000 }, () => {
  let lab: NetLab;
  let home: string;
  const agents: ChildProcess[] = [];
  const env = (): NodeJS.ProcessEnv => ({ ...process.env, HOME: home, NO_COLOR: "1" });

  before(() => {
    home = mkdtempSync(join(tmpdir(), "tamtam-netns-"));
    lab = new NetLab(`tt${process.pid % 100000}`, 5);
  });

  after(() => {
    for (const a of agents) if (a.exitCode === null && a.pid !== undefined) a.kill("SIGKILL");
    lab?.destroy();
    rmSync(home, { recursive: true, force: true });
  });

  /** Starts an agent in host i (gossip on ip:port, gRPC on rpc) and resolves when it listens. */
  async function startAgent(i: number, ip: string, seed: string | null, port = GOSSIP_PORT, rpc = RPC, extra: readonly string[] = []): Promise<ChildProcess> {
    const args = ["agent", "--bind", ip, "-p", String(port), "--rpc", rpc, "--heartbeat", "100", "--nobanner", "--log-format", "json", ...extra];
    if (ip.includes(":")) args.push("-6");
    if (seed !== null) args.push("--join", seed);
    const child = await startInHost(lab, i, [process.execPath, BIN, ...args], env());
    agents.push(child);
    return child;
  }

  /** `tamtam nodes --json` as host i's agent (gRPC on rpc) sees it. */
  async function nodesOf(i: number, rpc = RPC): Promise<NodeRow[]> {
    const r = await runInHost(lab, i, [process.execPath, BIN, "--rpc", rpc, "nodes", "--json"], env(), 10_000);
    if (r.code !== 0) throw new Error(`nodes on host ${i} exited ${r.code}: ${r.stderr.trim()}`);
    return (JSON.parse(r.stdout) as { nodes: NodeRow[] }).nodes;
  }

  /** Polls every listed host's view until `ok` holds for all of them. */
  async function until(hosts: readonly number[], ok: (host: number, view: Map<string, string>) => boolean, timeoutMs: number, what: string): Promise<number> {
    const started = Date.now();
    let last = "";
    while (Date.now() - started < timeoutMs) {
      const views = await Promise.all(hosts.map(async (h) => new Map((await nodesOf(h)).map((n) => [n.address, n.status]))));
      if (views.every((v, k) => ok(hosts[k] as number, v))) return Date.now() - started;
      last = views.map((v, k) => `host ${hosts[k]}: ${[...v].map(([a, s]) => `${a}=${s}`).join(" ")}`).join("; ");
      await new Promise((r) => setTimeout(r, 200));
    }
    throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; last views: ${last}`);
  }

  const all = [1, 2, 3, 4, 5];
  const addr4 = (i: number): string => `198.18.0.${i}:${GOSSIP_PORT}`;
  const allAlive = (_h: number, v: Map<string, string>): boolean => all.every((i) => v.get(addr4(i)) === "ALIVE");

  test("five agents on five hosts converge over IPv4", async () => {
    await startAgent(1, "198.18.0.1", null);
    await Promise.all([2, 3, 4, 5].map((i) => startAgent(i, `198.18.0.${i}`, addr4(1))));
    const ms = await until(all, allAlive, 20_000, "all five alive everywhere");
    console.log(`# converged ${ms} ms after the last agent started`);
  });

  test("10 % random loss on every host: the cluster still agrees once it is healed", async () => {
    for (const i of all) lab.addLoss(i, 0.1);
    // Let the lossy network run for a while with gossip, probes and suspicions in flight.
    const lossyMs = 4_000;
    const end = Date.now() + lossyMs;
    let samples = 0;
    while (Date.now() < end) {
      const views = await Promise.all(all.map((h) => nodesOf(h)));
      samples++;
      // Nobody may have been declared dead by 10 % loss: Lifeguard and refutation hold.
      for (const [k, v] of views.entries()) {
        for (const n of v) assert.notEqual(n.status, "DEAD", `host ${all[k]} declared ${n.address} dead under 10 % loss`);
      }
    }
    assert.ok(samples > 0);
    lab.heal();
    await until(all, allAlive, 15_000, "all alive after the loss was removed");
  });

  test("a partition {1,2} | {3,4,5} splits the cluster, and healing it merges one view again", async () => {
    lab.partition([1, 2], [3, 4, 5]);
    const split = await until(
      [1, 3],
      (h, v) => (h === 1 ? v.get(addr4(3)) === "DEAD" && v.get(addr4(2)) === "ALIVE" : v.get(addr4(1)) === "DEAD" && v.get(addr4(5)) === "ALIVE"),
      30_000,
      "each side to declare the other dead",
    );
    console.log(`# partition: sides declared each other dead after ${split} ms`);
    lab.heal();
    const merged = await until(all, allAlive, 30_000, "one view after healing");
    console.log(`# partition healed: one view again after ${merged} ms`);
  });

  test("agents on the IPv6 addresses converge too", async () => {
    const port = GOSSIP_PORT + 1;
    const rpc6 = "127.0.0.1:6263";
    const hosts = [1, 2, 3];
    const addr6 = (i: number): string => `[fd77::${i}]:${port}`;
    await startAgent(1, "fd77::1", null, port, rpc6);
    await Promise.all([2, 3].map((i) => startAgent(i, `fd77::${i}`, addr6(1), port, rpc6)));
    const started = Date.now();
    for (;;) {
      const views = await Promise.all(hosts.map((h) => nodesOf(h, rpc6)));
      if (views.every((v) => hosts.every((i) => v.some((n) => n.address === addr6(i) && n.status === "ALIVE")))) break;
      assert.ok(Date.now() - started < 20_000, `IPv6 agents did not converge: ${JSON.stringify(views)}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  });

  for (const family of [4, 6] as const) {
    test(`agents find each other by multicast cluster name over IPv${family}, without seeds`, async () => {
      const port = GOSSIP_PORT + (family === 4 ? 2 : 3);
      const rpc = family === 4 ? "127.0.0.1:6264" : "127.0.0.1:6265";
      const ip = (i: number): string => (family === 4 ? `198.18.0.${i}` : `fd77::${i}`);
      const key = (i: number): string => (family === 4 ? `${ip(i)}:${port}` : `[${ip(i)}]:${port}`);
      const multicast = (cluster: string): string[] => ["--multicast", "--clustername", cluster, "--multicast-interval", "1", "--multicast-port", String(port + 100)];
      await Promise.all([1, 2, 3].map((i) => startAgent(i, ip(i), null, port, rpc, multicast("lab"))));
      // Same link, other cluster name: must stay alone.
      await startAgent(4, ip(4), null, port, rpc, multicast("elsewhere"));
      const started = Date.now();
      for (;;) {
        const views = await Promise.all([1, 2, 3].map((h) => nodesOf(h, rpc)));
        if (views.every((v) => [1, 2, 3].every((i) => v.some((n) => n.address === key(i) && n.status === "ALIVE")))) {
          for (const v of views) assert.ok(!v.some((n) => n.address === key(4)), "an agent of another cluster was joined");
          break;
        }
        assert.ok(Date.now() - started < 20_000, `no discovery over IPv${family}: ${JSON.stringify(views)}`);
        await new Promise((r) => setTimeout(r, 200));
      }
      const lonely = await nodesOf(4, rpc);
      assert.deepEqual(lonely.map((n) => n.address), [key(4)]);
    });
  }
});
