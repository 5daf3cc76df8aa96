/**
 * End-to-end test of member tags with REAL `tamtam` agents through the bin: five agents get
 * their tags from --tag, the environment and the config file; every member's `nodes --json`,
 * `healthy --json` and the table show every member's tags; `tags set` and `tags delete` change
 * them live and every member sees the change (and `monitor --json` reports it); `nodes --tag`
 * filters with anchored regular expressions; tags beyond the size limit are refused by `tags
 * set` (exit 2, one line) and keep an agent from starting (exit 1, one line). Every process is
 * killed by PID in a `finally`; waits are on output lines and polled conditions, never sleeps.
 */

import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { agentStats } from "./helpers/agent-stats.js";
import { binPath, cleanEnv, freeUdpPort, ProcessGroup, poll, removeDir, tempDir, waitForLine, type AgentProc } from "./helpers/processes.js";

binPath();

interface NodeJson {
  address: string;
  state: string;
  self: boolean;
  tags: Record<string, string>;
}

describe("tags between real agents", () => {
  test("five agents: tags from flag, environment and file reach every member; live set/delete; filters; the size limit", { timeout: 120_000 }, async () => {
    const home = tempDir();
    const group = new ProcessGroup();
    try {
      const env = cleanEnv(home);
      const start = async (name: string, extra: string[], extraEnv: Record<string, string> = {}): Promise<AgentProc> =>
        group.agent(["--rpc", `unix:${join(home, `${name}.sock`)}`, "agent", "-p", String(await freeUdpPort()), "--heartbeat", "100", ...extra], {
          ...env,
          ...extraEnv,
        });
      const configFile = join(home, "c.yaml");
      writeFileSync(configFile, "tag:\n  - role=web\n  - dc=us-east\n");
      const a = await start("a", ["--tag", "role=web", "--tag", "dc=eu-west"]);
      const b = await start("b", ["--join", a.gossip], { TAMTAM_TAG: "role=db,dc=eu-central" });
      // --config is a global option: before the command.
      const c2 = await group.agent(
        ["--rpc", `unix:${join(home, "c2.sock")}`, "--config", configFile, "agent", "-p", String(await freeUdpPort()), "--heartbeat", "100", "--join", a.gossip],
        env,
      );
      const d = await start("d", ["--join", a.gossip]);
      const e = await start("e", ["--join", b.gossip]);
      const agents = [a, b, c2, d, e];
      const tamtam = (agent: AgentProc, args: string[]) => group.run(["--rpc", agent.rpc, ...args], { env, timeoutMs: 20_000 });
      const nodesOf = async (agent: AgentProc, args: string[] = []): Promise<NodeJson[]> => {
        const r = await tamtam(agent, ["nodes", "--json", ...args]);
        assert.equal(r.code, 0, r.stderr);
        return (JSON.parse(r.stdout) as { nodes: NodeJson[] }).nodes;
      };
      const expected = (): Record<string, Record<string, string>> => ({
        [a.gossip]: { dc: "eu-west", role: "web" },
        [b.gossip]: { dc: "eu-central", role: "db" },
        [c2.gossip]: { dc: "us-east", role: "web" },
        [d.gossip]: {},
        [e.gossip]: {},
      });
      const everyoneSees = async (want: Record<string, Record<string, string>>): Promise<void> => {
        for (const agent of agents) {
          let seen = "";
          await poll(
            async () => {
              const nodes = await nodesOf(agent);
              seen = JSON.stringify(nodes);
              const alive = nodes.filter((n) => n.state === "alive");
              return alive.length === agents.length && alive.every((n) => JSON.stringify(n.tags) === JSON.stringify(want[n.address]));
            },
            30_000,
            100,
            () => `waiting on ${agent.gossip}, which sees ${seen}`,
          ).catch(async (err: unknown) => {
            const stats: Record<string, Record<string, number>> = {};
            for (const x of agents) {
              const all = await agentStats(x.rpc).catch(() => ({}) as Record<string, number>);
              stats[x.gossip] = Object.fromEntries(Object.entries(all).filter(([k]) => /tag|protocolError|updates|sync|datagrams(Sent|Received)$/i.test(k)));
            }
            throw new Error(`${String(err)}; stats ${JSON.stringify(stats)}`);
          });
        }
      };

      await everyoneSees(expected());

      // The table shows a TAGS column; healthy --json carries them too.
      const table = await tamtam(e, ["nodes"]);
      assert.equal(table.code, 0);
      assert.match(table.stdout.split("\n")[0] ?? "", /^NODE {2,}AGE {2,}EMIT # {2,}MILLIS {2,}STATUS {2,}TAGS$/);
      assert.ok(table.stdout.includes("dc=eu-west,role=web"), table.stdout);
      const healthy = await tamtam(d, ["healthy", "--json"]);
      const healthyNodes = (JSON.parse(healthy.stdout) as { nodes: NodeJson[] }).nodes;
      assert.deepEqual(healthyNodes.find((n) => n.address === b.gossip)?.tags, { dc: "eu-central", role: "db" });

      // Filters: anchored regular expressions, every one must match.
      const filtered = async (args: string[]): Promise<string[]> => (await nodesOf(d, args)).map((n) => n.address).sort();
      assert.deepEqual(await filtered(["--tag", "role=web"]), [a.gossip, c2.gossip].sort());
      assert.deepEqual(await filtered(["--tag", "role=web", "--tag", "dc=eu.*"]), [a.gossip]);
      assert.deepEqual(await filtered(["--tag", "dc=eu"]), [], "anchored: eu does not match eu-west");
      assert.deepEqual(await filtered(["--tag", "dc=(eu|us)-.*", "--tag", "role=db|web"]), [a.gossip, b.gossip, c2.gossip].sort());
      const bad = await tamtam(d, ["nodes", "--tag", "dc=("]);
      assert.equal(bad.code, 2);
      assert.match(bad.stderr, /^tamtam: --tag: the tag filter dc=\( is not a regular expression/);
      assert.equal(bad.stderr.split("\n").length, 2, "one line");

      // Live changes, watched by a monitor on e.
      const monitor = group.tamtam(["--rpc", e.rpc, "monitor", "--json"], env);
      await poll(async () => ((await agentStats(e.rpc))["monitor.subscribers"] ?? 0) >= 1, 10_000, 50);
      const set = await tamtam(d, ["tags", "set", "role=cache", "zone=b", "--json"]);
      assert.equal(set.code, 0, set.stderr);
      const setReply = JSON.parse(set.stdout) as { tags: Record<string, string>; incarnation: number };
      assert.deepEqual(setReply.tags, { role: "cache", zone: "b" });
      const del = await tamtam(a, ["tags", "delete", "dc"]);
      assert.equal(del.code, 0, del.stderr);
      assert.equal(del.stdout, "role=web\n");
      await everyoneSees({ ...expected(), [d.gossip]: { role: "cache", zone: "b" }, [a.gossip]: { role: "web" } });
      await waitForLine(monitor, (l) => l.includes(`"address":"${d.gossip}"`) && l.includes(`"tags":{"role":"cache","zone":"b"}`), 20_000, { stream: "stdout" });

      // The size limit: refused with one line, exit 2; the agent keeps its tags.
      const big = await tamtam(b, ["tags", "set", `blob=${"x".repeat(1200)}`]);
      assert.equal(big.code, 2);
      assert.match(big.stderr, /^tamtam: the agent rejected the request: the tags take \d+ bytes encoded, more than the 1159 that fit a 1232-byte datagram/);
      assert.equal(big.stderr.split("\n").length, 2, "one line");
      assert.deepEqual((await nodesOf(b)).find((n) => n.self)?.tags, { dc: "eu-central", role: "db" });
      // ... and keeps an agent from starting.
      const refused = await group.run(
        ["--rpc", `unix:${join(home, "f.sock")}`, "agent", "--nobanner", "-p", String(await freeUdpPort()), "--tag", `blob=${"x".repeat(1200)}`],
        { env, timeoutMs: 20_000 },
      );
      assert.equal(refused.code, 1);
      assert.match(refused.stderr, /^tamtam: --tag: the tags take \d+ bytes encoded, more than the 1159 that fit/m);
    } finally {
      await group.killAll();
      removeDir(home);
    }
  });
});
