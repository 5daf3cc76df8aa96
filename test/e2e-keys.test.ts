/**
 * End-to-end test of cluster-wide key rotation with REAL `tamtam` agents through the bin:
 * three sealed agents install a second key, make it primary and remove the old one with
 * `tamtam keys`, and keep converging and carrying broadcasts throughout; `keys list` counts
 * the keys per member; the keyring files follow; removing the primary key is refused by the
 * agent and by every member whose primary it is; a member that is down is reported as not
 * confirming (exit 1). Every process is killed by PID in a `finally`; waits are on output
 * lines and polled conditions, never sleeps.
 */

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { fingerprint } from "../src/agent/keys.js";
import { binPath, cleanEnv, freeUdpPort, ProcessGroup, poll, removeDir, tempDir, waitForLine, type AgentProc, type Proc } from "./helpers/processes.js";
import { agentStats } from "./helpers/agent-stats.js";

binPath();

const OLD = Buffer.alloc(32, 0x31);
const NEW = Buffer.alloc(16, 0x42);
const OLD_B64 = OLD.toString("base64");
const NEW_B64 = NEW.toString("base64");

async function streamSubscribers(rpc: string): Promise<number> {
  return (await agentStats(rpc))["stream.subscribers"] ?? 0;
}

interface KeysJson {
  members: number;
  confirmed: number;
  keys: { fingerprint: string; installed: number; primary: number; local: boolean }[];
  failures: { member: string; reason: string }[];
}

describe("cluster-wide key rotation between real agents", () => {
  test("install, use and remove a key across three sealed agents; the primary is refused; a down member is reported", { timeout: 90_000 }, async () => {
    const home = tempDir();
    const group = new ProcessGroup();
    try {
      const plain = cleanEnv(home);
      const env = cleanEnv(home, { TAMTAM_ENCRYPT: OLD_B64, TAMTAM_LABEL: "rotate" });
      const start = async (name: string, extra: string[]): Promise<AgentProc> =>
        group.agent(
          [
            "--rpc",
            `unix:${join(home, `${name}.sock`)}`,
            "agent",
            "-p",
            String(await freeUdpPort()),
            "--heartbeat",
            "100",
            "--keyring-file",
            join(home, `${name}.keyring.json`),
            ...extra,
          ],
          env,
        );
      const a = await start("a", []);
      const b = await start("b", ["--join", a.gossip]);
      const c = await start("c", ["--join", a.gossip]);
      const agents = [a, b, c];
      const tamtam = (agent: AgentProc, args: string[]) => group.run(["--rpc", agent.rpc, ...args], { env: plain, timeoutMs: 20_000 });
      const keys = async (agent: AgentProc, args: string[]): Promise<{ code: number | null; json: KeysJson; stderr: string }> => {
        const r = await tamtam(agent, ["keys", ...args, "--json"]);
        return { code: r.code, json: JSON.parse(r.stdout === "" ? "null" : r.stdout) as KeysJson, stderr: r.stderr };
      };
      const counts = (j: KeysJson) => j.keys.map((k) => [k.fingerprint, k.installed, k.primary]);
      const aliveIn = async (agent: AgentProc): Promise<string[]> => {
        const r = await tamtam(agent, ["nodes", "--json"]);
        if (r.code !== 0) return [];
        return (JSON.parse(r.stdout) as { nodes: { address: string; state: string }[] }).nodes
          .filter((n) => n.state === "alive")
          .map((n) => n.address)
          .sort();
      };
      const converged = async (members: AgentProc[]): Promise<void> => {
        const want = JSON.stringify(members.map((p) => p.gossip).sort());
        for (const agent of members) await poll(async () => JSON.stringify(await aliveIn(agent)) === want, 20_000, 100);
      };
      // C streams the broadcasts; each step ends with one from A or B that C must print.
      const stream: Proc = group.tamtam(["--rpc", c.rpc, "stream"], plain);
      let sent = 0;
      const carries = async (from: AgentProc): Promise<void> => {
        const text = `rotation step ${++sent}`;
        const r = await tamtam(from, ["broadcast", text]);
        assert.equal(r.code, 0, r.stderr);
        await waitForLine(stream, (l) => l === text, 15_000, { stream: "stdout" });
      };
      const keyringFile = (name: string): string[] => JSON.parse(readFileSync(join(home, `${name}.keyring.json`), "utf8")) as string[];

      await converged(agents);
      await poll(async () => (await streamSubscribers(c.rpc)) >= 1, 10_000, 50);

      let r = await keys(a, ["list"]);
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual([r.json.members, r.json.confirmed, r.json.failures], [3, 3, []]);
      assert.deepEqual(counts(r.json), [[fingerprint(OLD), 3, 3]]);

      // 1. Install the new key everywhere: it opens, it does not seal yet.
      r = await keys(a, ["install", NEW_B64]);
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(counts(r.json), [
        [fingerprint(OLD), 3, 3],
        [fingerprint(NEW), 3, 0],
      ]);
      for (const name of ["a", "b", "c"]) assert.deepEqual(keyringFile(name), [OLD_B64, NEW_B64]);
      await carries(b);

      // A member whose primary the key is refuses to remove it (C, after a local `use`), and
      // says why; the others remove it. Installing it again from A heals the cluster.
      r = await keys(c, ["use", NEW_B64, "--local"]);
      assert.deepEqual([r.code, r.json.members, counts(r.json)[0]], [0, 1, [fingerprint(NEW), 1, 1]]);
      r = await keys(a, ["remove", NEW_B64]);
      assert.equal(r.code, 1);
      assert.deepEqual(r.json.failures, [{ member: c.gossip, reason: "the primary key cannot be removed; make another key primary first (keys use)" }]);
      assert.equal(r.stderr, `${c.gossip} did not confirm: the primary key cannot be removed; make another key primary first (keys use)\n`);
      r = await keys(a, ["install", NEW_B64]);
      assert.equal(r.code, 0, r.stderr);
      // Until then A and B could not open C's datagrams: they may have suspected C, which then
      // refutes. Once it is back, every member holds both keys again.
      await converged(agents);
      await poll(async () => {
        const list = await keys(a, ["list"]);
        return list.code === 0 && list.json.confirmed === 3 &&
          JSON.stringify(counts(list.json)) === JSON.stringify([[fingerprint(OLD), 3, 2], [fingerprint(NEW), 3, 1]]);
      }, 20_000, 200);
      await carries(a);

      // 2. Make the new key primary everywhere.
      r = await keys(b, ["use", NEW_B64]);
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(counts(r.json), [
        [fingerprint(NEW), 3, 3],
        [fingerprint(OLD), 3, 0],
      ]);
      await converged(agents);
      await carries(a);

      // 3. Remove the old key everywhere.
      r = await keys(a, ["remove", OLD_B64]);
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(counts(r.json), [[fingerprint(NEW), 3, 3]]);
      for (const name of ["a", "b", "c"]) assert.deepEqual(keyringFile(name), [NEW_B64]);
      await converged(agents);
      await carries(b);

      // The primary key cannot be removed: the agent refuses before asking anyone.
      const refused = await tamtam(a, ["keys", "remove", NEW_B64]);
      assert.notEqual(refused.code, 0);
      assert.match(refused.stderr, /the primary key cannot be removed; make another key primary first/);
      assert.equal(refused.stdout, "");

      // A member that is down does not confirm. (A and B stop probing first, so that C stays
      // alive in their tables while it is down: what an operator sees until it is detected.)
      for (const agent of [a, b]) assert.equal((await tamtam(agent, ["configure", "heartbeat", "600000"])).code, 0);
      await c.kill();
      const down = await tamtam(a, ["keys", "list", "--timeout", "1000"]);
      assert.equal(down.code, 1);
      assert.equal(down.stderr, `${c.gossip} did not confirm: did not answer in time\n`);
      assert.match(down.stdout, /^2 of 3 members confirmed\n/);
      assert.ok(down.stdout.includes(`${fingerprint(NEW)}  installed on 2 of 2, primary on 2`));

      for (const agent of agents) {
        const out = agent.output("stderr") + agent.output("stdout");
        assert.ok(!out.includes(OLD_B64) && !out.includes(NEW_B64), "no key in the logs");
      }
    } finally {
      await group.killAll();
      removeDir(home);
    }
  });
});
