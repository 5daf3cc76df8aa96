/**
 * Broadcast bursts through real agents on loopback, for both engines: a few hundred broadcasts
 * through `tamtam broadcast --lines` and through the BroadcastStream RPC reach every agent of
 * a 5-agent cluster exactly once (every `tamtam stream` prints each once); and backpressure: a
 * lone agent's queue fills up, a single `broadcast` then fails with exit code 5 in one line,
 * and a `--lines` producer waits (its stream is not read) until a member joins and gossip
 * drains the queue, after which everything it sent is accepted and delivered exactly once.
 */

import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { TamTam } from "../src/gen/service/tamtam_pb.js";
import { createH2Client } from "../src/rpc/h2-client.js";
import { agentStats } from "./helpers/agent-stats.js";
import {
  type AgentProc,
  binPath,
  cleanEnv,
  freeTcpPort,
  freeUdpPort,
  killAllLive,
  poll,
  type Proc,
  ProcessGroup,
  removeDir,
  tempDir,
  useEngine,
} from "./helpers/processes.js";

binPath();

const AGENTS = 5;
const BURST = 300;

async function startAgent(group: ProcessGroup, env: Record<string, string>, seed: AgentProc | null): Promise<AgentProc> {
  const args = ["--rpc", `127.0.0.1:${await freeTcpPort()}`, "agent", "--bind", "127.0.0.1", "-p", String(await freeUdpPort())];
  return await group.agent(seed === null ? args : [...args, "--join", seed.gossip], env);
}

/** Polls one Stats counter of `agent` until `check` holds for it. */
function counterUntil(agent: AgentProc, name: string, check: (value: number) => boolean, timeoutMs: number): Promise<number> {
  let last = NaN;
  return poll(
    async () => {
      last = (await agentStats(agent.rpc))[name] ?? 0;
      return check(last) ? last : false;
    },
    timeoutMs,
    50,
    () => `${name} = ${last} at ${agent.rpc}`,
  );
}

const printed = (stream: Proc): string[] => stream.linesOf("stdout");

/** Members `agent` sees alive, itself included. */
async function aliveMembers(agent: AgentProc): Promise<number> {
  const client = createH2Client(TamTam, agent.rpc, { defaultTimeoutMs: 3_000 });
  try {
    return (await client.nodes({})).nodes.filter((n) => n.state === "alive").length;
  } finally {
    client.close();
  }
}

for (const engine of [0, 1] as const) {
  describe(`broadcast bursts end to end, ${engine === 1 ? "worker" : "inline"} engine`, () => {
    before(() => useEngine(engine));
    after(killAllLive);

    test(`${BURST} broadcasts through --lines and ${BURST} through BroadcastStream reach ${AGENTS} agents exactly once`, { timeout: 90_000 }, async () => {
      const group = new ProcessGroup();
      const home = tempDir();
      const env = cleanEnv(home);
      try {
        const seed = await startAgent(group, env, null);
        const agents = [seed, ...(await Promise.all(Array.from({ length: AGENTS - 1 }, () => startAgent(group, env, seed))))];
        for (const a of agents) await poll(async () => (await aliveMembers(a)) === AGENTS, 30_000);
        const streams = agents.map((a) => group.tamtam(["--rpc", a.rpc, "stream"], env));
        for (const a of agents) await counterUntil(a, "stream.subscribers", (n) => n >= 1, 10_000);

        const lines = Array.from({ length: BURST }, (_, i) => `lines ${i}`);
        const viaRpc = Array.from({ length: BURST }, (_, i) => `rpc ${i}`);
        const sendLines = group.run(["--rpc", (agents[0] as AgentProc).rpc, "broadcast", "--lines"], { env, stdin: `${lines.join("\n")}\n`, timeoutMs: 60_000 });
        const client = createH2Client(TamTam, (agents[2] as AgentProc).rpc);
        try {
          const reply = await client.broadcastStream(viaRpc.map((text) => ({ bytes: Buffer.from(text) })));
          assert.deepEqual([reply.accepted, reply.refused], [BigInt(BURST), 0n]);
        } finally {
          client.close();
        }
        const cli = await sendLines;
        assert.equal(cli.code, 0, cli.stderr);
        assert.match(cli.stdout, new RegExp(`^broadcast: ${BURST} accepted`));

        // Each agent prints every broadcast but its own, once.
        const expected = agents.map((_, i) => [...(i === 0 ? [] : lines), ...(i === 2 ? [] : viaRpc)].sort());
        await poll(() => streams.every((s, i) => printed(s).length >= (expected[i] as string[]).length), 60_000, 100, () =>
          streams.map((s) => printed(s).length).join(", "),
        );
        for (const [i, s] of streams.entries()) {
          assert.deepEqual([...printed(s)].sort(), expected[i], `agent ${i} printed each broadcast once`);
          assert.equal(s.linesOf("stderr").length, 0, s.tail());
        }
        for (const a of agents) assert.equal((await agentStats(a.rpc))["core.broadcastsDropped"], 0);
      } finally {
        await group.killAll();
        removeDir(home);
      }
    });

    test("a full queue: broadcast exits 5 in one line; a --lines producer is held back until gossip drains it", { timeout: 90_000 }, async () => {
      const group = new ProcessGroup();
      const home = tempDir();
      const env = cleanEnv(home);
      try {
        // Alone, the agent has nobody to gossip to: its queue only fills.
        const lone = await startAgent(group, env, null);
        const own = 2048; // half of the lan preset's 4096: the rest is room for relayed broadcasts
        const fill = await group.run(["--rpc", lone.rpc, "broadcast", "--lines"], {
          env,
          stdin: Array.from({ length: own }, (_, i) => `fill ${i}\n`).join(""),
          timeoutMs: 60_000,
        });
        assert.equal(fill.code, 0, fill.stderr);
        assert.equal(fill.stdout, `broadcast: ${own} accepted\n`);

        const single = await group.run(["--rpc", lone.rpc, "broadcast", "one more"], { env, timeoutMs: 10_000 });
        assert.equal(single.code, 5, single.stderr);
        assert.equal(single.stdout, "");
        assert.equal(
          single.stderr,
          `tamtam: the agent is overloaded: the broadcast queue is full (${own} broadcasts waiting to be spread); try again shortly\n`,
        );

        const extra = 100;
        const held = group.run(["--rpc", lone.rpc, "broadcast", "--lines"], {
          env,
          stdin: Array.from({ length: extra }, (_, i) => `held ${i}\n`).join(""),
          timeoutMs: 60_000,
        });
        // The producer is waiting: the agent keeps finding its queue full.
        await counterUntil(lone, "core.broadcastsRefused", (n) => n >= 4, 20_000);
        assert.equal((await agentStats(lone.rpc))["core.broadcastsSent"], own);

        // A member joins: gossip drains the queue and the producer gets through.
        const peer = await startAgent(group, env, lone);
        const done = await held;
        assert.equal(done.code, 0, done.stderr);
        assert.match(done.stdout, new RegExp(`^broadcast: ${extra} accepted; waited \\d+ times for room in the agent's broadcast queue\\n$`));
        await counterUntil(peer, "core.broadcastsDelivered", (n) => n >= own + extra, 60_000);
        const stats = await agentStats(peer.rpc);
        assert.equal(stats["core.broadcastsDelivered"], own + extra, "the member got each broadcast once");
        assert.equal((await agentStats(lone.rpc))["core.broadcastsDropped"], 0, "nothing queued was dropped");
      } finally {
        await group.killAll();
        removeDir(home);
      }
    });
  });
}
