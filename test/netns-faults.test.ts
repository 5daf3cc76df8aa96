/**
 * Partitions, flapping and restarts between REAL agents on ten hosts (network namespaces on a
 * bridge, one `tamtam agent` per host, faults with iptables), with shortened reap and
 * reconnect settings so that each check stays within CI time:
 *
 *  1. A partition {1..4} | {5..10} lasts until each side has reaped the other (nobody knows
 *     anybody across the cut), then heals: one view again, with no operator action.
 *  2. A flapping host (its incoming traffic lost 5 s, restored 5 s, five times) is damped by
 *     its observers (visible in `nodes --json` and Stats), and the cluster agrees once it is
 *     steady again.
 *  3. Over IPv6, agents with --snapshot: one is killed and started again WITHOUT any seed, and
 *     rejoins the members it remembered.
 *
 * Needs root and iproute2 + iptables (skipped otherwise; in CI, where `.ci/run` installs them,
 * a missing prerequisite fails). gRPC runs on Unix sockets the test reaches through the
 * filesystem; every process is killed by PID and every namespace deleted by exact name in
 * `after`; waits are polled conditions, never sleeps (the flapping schedule is the fault itself).
 */

import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { TamTam } from "../src/gen/service/tamtam_pb.js";
import { createH2Client } from "../src/rpc/h2-client.js";
import { agentStats } from "./helpers/agent-stats.js";
import { labAvailable, NetLab } from "./helpers/netns.js";
import { binPath, cleanEnv, poll, type Proc, ProcessGroup, removeDir, tempDir, waitForLine } from "./helpers/processes.js";

const HOSTS = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10] as const;
/** Shortened timings: a 250 ms period, reaped 3 s after death, a reconnect round every 500 ms. */
const TIMING = ["--heartbeat", "250", "--reap-after", "3000", "--reconnect-interval", "500"];

const unavailable = labAvailable();
if (unavailable !== null && process.env.CI === "true") {
  test("network-namespace prerequisites (faults)", () => assert.fail(`${unavailable}; .ci/run should have installed them`));
}

interface Agent {
  readonly proc: Proc;
  readonly host: number;
  readonly rpc: string;
  readonly gossip: string;
}

interface Member {
  readonly address: string;
  readonly state: string;
  readonly damped: boolean;
  readonly flaps: number;
}

describe("partitions, flapping and restarts between ten hosts (network namespaces)", { skip: unavailable ?? false, timeout: 300_000 }, () => {
  let lab: NetLab;
  let home: string;
  let env: Record<string, string>;
  const group = new ProcessGroup();

  before(() => {
    home = tempDir("tamtam-nsfaults-");
    env = cleanEnv(home, {}, null);
    binPath();
    lab = new NetLab(`tf${process.pid % 100000}`, HOSTS.length);
  });

  after(async () => {
    await group.killAll();
    lab?.destroy();
    removeDir(home);
  });

  const ip4 = (host: number): string => `198.18.0.${host}`;

  /** Starts an agent in `host`'s namespace (gRPC on a Unix socket); resolves once it listens. */
  async function startAgent(host: number, ip: string, port: number, extra: readonly string[]): Promise<Agent> {
    const rpc = `unix:${join(home, `h${host}-${port}.sock`)}`;
    const family = ip.includes(":") ? ["-6"] : [];
    const args = [process.execPath, binPath(), "--rpc", rpc, "agent", ...family, "--bind", ip, "-p", String(port), "--nobanner", "--log-format", "json", ...TIMING, ...extra];
    const proc = group.spawn("ip", lab.exec(host, args).slice(1), { env, label: `agent on host ${host}:${port}` });
    await waitForLine(proc, (t) => t.includes("Listening for gossip"), 20_000, { stream: "stderr" });
    return { proc, host, rpc, gossip: ip.includes(":") ? `[${ip}]:${port}` : `${ip}:${port}` };
  }

  /** The members `agent` knows (its Nodes RPC). */
  async function members(agent: Agent): Promise<Member[]> {
    const client = createH2Client(TamTam, agent.rpc, { defaultTimeoutMs: 3_000 });
    try {
      const list = await client.nodes({});
      return list.nodes.map((n) => ({
        address: n.address?.IP.includes(":") ? `[${n.address.IP}]:${n.address.port}` : `${n.address?.IP}:${n.address?.port}`,
        state: n.state,
        damped: n.damped,
        flaps: n.flaps,
      }));
    } finally {
      client.close();
    }
  }

  /** Polls until every agent holds exactly `expected` alive; returns the milliseconds it took. */
  async function oneView(agents: readonly Agent[], expected: readonly Agent[], timeoutMs: number, what: string): Promise<number> {
    const want = JSON.stringify(expected.map((a) => a.gossip).sort());
    const started = performance.now();
    let last = "";
    await poll(
      async () => {
        const views = await Promise.all(agents.map(async (a) => ({ agent: a, members: await members(a) })));
        last = views.map((v) => `${v.agent.gossip}: ${v.members.map((m) => `${m.address}=${m.state}`).join(" ")}`).join("; ");
        return views.every((v) => JSON.stringify(v.members.filter((m) => m.state === "alive").map((m) => m.address).sort()) === want);
      },
      timeoutMs,
      100,
      () => `${what}; last views: ${last}`,
    );
    return Math.round(performance.now() - started);
  }

  /** One agent per host over IPv4 on `port`, joined through host 1's, converged. */
  async function tenAgents(port: number): Promise<Agent[]> {
    const first = await startAgent(1, ip4(1), port, []);
    const rest = await Promise.all(HOSTS.slice(1).map((h) => startAgent(h, ip4(h), port, ["--join", first.gossip])));
    const agents = [first, ...rest];
    await oneView(agents, agents, 30_000, "ten agents converge");
    return agents;
  }

  test("a partition longer than the reap time heals into one view, with no operator action", async () => {
    const agents = await tenAgents(7946);

    const sideA = agents.slice(0, 4);
    const sideB = agents.slice(4);
    lab.partition([1, 2, 3, 4], [5, 6, 7, 8, 9, 10]);
    // Each side declares the other dead, then reaps it: nobody knows anybody across the cut.
    const cutMs = performance.now();
    for (const [side, other] of [[sideA, sideB], [sideB, sideA]] as const) {
      const others = new Set(other.map((a) => a.gossip));
      for (const a of side) {
        await poll(async () => !(await members(a)).some((m) => others.has(m.address)), 60_000, 200, () => `${a.gossip} still knows the other side`);
      }
    }
    console.log(`# partition: each side reaped the other ${Math.round(performance.now() - cutMs)} ms after the cut`);
    lab.heal();
    const healMs = await oneView(agents, agents, 30_000, "one view after the partition healed");
    console.log(`# partition longer than the reap time: one view ${healMs} ms after the network healed`);
    const stats = await Promise.all(agents.map((a) => agentStats(a.rpc)));
    const reconnects = stats.reduce((sum, s) => sum + (s["core.reconnectsSucceeded"] ?? 0), 0);
    assert.ok(reconnects > 0, "the sides found each other through reconnect targets");
    assert.ok(stats.every((s) => (s["core.reconnectTargetsAdded"] ?? 0) > 0), "every agent kept the reaped members as reconnect targets");
  });

  test("a flapping host is damped by its observers, and the cluster agrees once it is steady", async () => {
    const agents = await tenAgents(7947);
    const flapper = agents[9] as Agent;
    const observers = agents.slice(0, 9);

    // Host 10 loses every incoming datagram for 5 s, then hears again for 5 s, five times.
    for (let cycle = 0; cycle < 5; cycle++) {
      lab.addLoss(10, 1);
      await new Promise((r) => setTimeout(r, 5_000));
      lab.heal();
      await new Promise((r) => setTimeout(r, 5_000));
    }
    const views = await Promise.all(observers.map(async (a) => (await members(a)).find((m) => m.address === flapper.gossip)));
    const damped = views.filter((m) => m?.damped === true).length;
    console.log(`# flapping host: damped by ${damped} of 9 observers; flaps counted ${views.map((m) => m?.flaps ?? 0).join(",")}`);
    assert.ok(damped >= 7, `host 10 damped by ${damped} of 9 observers only: ${JSON.stringify(views)}`);
    const stats = await Promise.all(agents.map((a) => agentStats(a.rpc)));
    assert.ok(stats.filter((s) => (s["core.dampingStarted"] ?? 0) > 0).length >= 7, "damping counted in Stats");
    assert.ok(stats.some((s) => (s["core.membersDamped"] ?? 0) > 0));
    // Damped or not, membership is still the truth: once steady, one view, host 10 alive.
    await oneView(agents, agents, 30_000, "one view once the flapping host is steady");
  });

  test("over IPv6, an agent with --snapshot that is killed and started again without seeds rejoins", async () => {
    const port = 7948;
    const hosts = [1, 2, 3, 4];
    const snapshot = (h: number): string => join(home, `snapshot-h${h}.json`);
    const ip6 = (h: number): string => `fd77::${h}`;
    const first = await startAgent(1, ip6(1), port, ["--snapshot", snapshot(1)]);
    const rest = await Promise.all(hosts.slice(1).map((h) => startAgent(h, ip6(h), port, ["--snapshot", snapshot(h), "--join", first.gossip])));
    const agents = [first, ...rest];
    await oneView(agents, agents, 30_000, "four IPv6 agents converge");
    // Agent 4's snapshot names the three others (written at most every 2 s after a change).
    const remembered = (): string[] => (existsSync(snapshot(4)) ? (JSON.parse(readFileSync(snapshot(4), "utf8")) as { members: string[] }).members.sort() : []);
    await poll(() => JSON.stringify(remembered()) === JSON.stringify(agents.slice(0, 3).map((a) => a.gossip).sort()), 10_000, 100, () => `snapshot: ${remembered()}`);

    const victim = agents[3] as Agent;
    victim.proc.signal("SIGKILL");
    await victim.proc.exited;
    const back = await startAgent(4, ip6(4), port, ["--snapshot", snapshot(4)]);
    await waitForLine(back.proc, (t) => t.includes("rejoining 3 members remembered"), 10_000, { stream: "stderr" });
    const survivors = agents.slice(0, 3);
    const ms = await oneView([...survivors, back], [...survivors, back], 30_000, "the restarted agent rejoined without seeds");
    console.log(`# snapshot restart over IPv6: one view ${ms} ms after the restart`);
  });
});
