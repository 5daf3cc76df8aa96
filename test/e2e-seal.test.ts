/**
 * End-to-end tests of sealed gossip with REAL `tamtam` agents through the bin: three agents
 * sharing a key and a label converge and carry a broadcast; an agent with another key and one
 * with another label never appear in anyone's table (and their datagrams are counted as
 * dropped); an agent that still sends plaintext joins agents that accept plaintext while they
 * send sealed (the migration); the keyring file is created 0600 and read again; a bad key is
 * one line, exit 2, without the key. Every process is killed by PID in a `finally`; waits are
 * on output lines and polled conditions, never sleeps.
 */

import assert from "node:assert/strict";
import { statSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { binPath, cleanEnv, freeUdpPort, logMessages, poll, ProcessGroup, removeDir, tempDir, waitForLine, type AgentProc } from "./helpers/processes.js";
import { agentStats } from "./helpers/agent-stats.js";

binPath();

const KEY = Buffer.alloc(32, 0x11).toString("base64");
const OTHER_KEY = Buffer.alloc(16, 0x22).toString("base64");

const stats = (rpc: string): Promise<Record<string, number>> => agentStats(rpc);

/** The addresses in `agent`'s table that are alive. */
async function alive(group: ProcessGroup, agent: AgentProc, env: Record<string, string>): Promise<string[]> {
  const r = await group.run(["--rpc", agent.rpc, "nodes", "--json"], { env, timeoutMs: 10_000 });
  if (r.code !== 0) return [];
  const rows = (JSON.parse(r.stdout) as { nodes: { address: string; state: string }[] }).nodes;
  return rows.filter((n) => n.state === "alive").map((n) => n.address).sort();
}

describe("sealed gossip between real agents", () => {
  test("three sealed agents converge and carry a broadcast; another key and another label never get in", { timeout: 60_000 }, async () => {
    const home = tempDir();
    const group = new ProcessGroup();
    try {
      const env = cleanEnv(home, { TAMTAM_ENCRYPT: KEY, TAMTAM_LABEL: "blue" });
      const start = async (name: string, extra: string[], e = env): Promise<AgentProc> =>
        group.agent(["--rpc", `unix:${join(home, `${name}.sock`)}`, "agent", "-p", String(await freeUdpPort()), "--heartbeat", "100", ...extra], e);
      const a = await start("a", []);
      const b = await start("b", ["--join", a.gossip]);
      const c = await start("c", ["--join", a.gossip]);
      const wrongKey = await start("k", ["--join", a.gossip], cleanEnv(home, { TAMTAM_ENCRYPT: OTHER_KEY, TAMTAM_LABEL: "blue" }));
      const wrongLabel = await start("l", ["--join", a.gossip], cleanEnv(home, { TAMTAM_ENCRYPT: KEY, TAMTAM_LABEL: "green" }));
      const plain = cleanEnv(home);
      const members = [a, b, c].map((p) => p.gossip).sort();
      for (const agent of [a, b, c]) {
        await poll(async () => JSON.stringify(await alive(group, agent, plain)) === JSON.stringify(members), 20_000, 100);
      }
      // A and the agents A gossips with dropped the strangers' JOINs, counted by reason.
      await poll(async () => {
        const s = await stats(a.rpc);
        return (s["seal.dropped.NO_KEY"] ?? 0) >= 1 && (s["seal.dropped.BAD_SEAL"] ?? 0) >= 1 ? s : false;
      }, 20_000, 100);
      const s = await stats(a.rpc);
      assert.ok((s["seal.sealed"] ?? 0) > 0 && (s["seal.opened"] ?? 0) > 0);
      assert.equal(s["seal.keys"], 1);
      assert.ok(logMessages(a).some((m) => /^dropped .*\(NO_KEY\), the latest from 127\.0\.0\.1:/.test(m)), "a rate-limited drop line");

      const stream = group.tamtam(["--rpc", c.rpc, "stream"], plain);
      await poll(async () => ((await stats(c.rpc))["stream.subscribers"] ?? 0) >= 1, 10_000, 50);
      const sent = await group.run(["--rpc", b.rpc, "broadcast", "sealed hello"], { env: plain, timeoutMs: 10_000 });
      assert.equal(sent.code, 0, sent.stderr);
      await waitForLine(stream, (l) => l === "sealed hello", 10_000, { stream: "stdout" });

      for (const agent of [a, b, c]) {
        const table = await alive(group, agent, plain);
        assert.ok(!table.includes(wrongKey.gossip) && !table.includes(wrongLabel.gossip), `${agent.gossip}: ${table.join(" ")}`);
      }
      for (const stranger of [wrongKey, wrongLabel]) assert.deepEqual(await alive(group, stranger, plain), [stranger.gossip]);
      for (const agent of [a, b, c, wrongKey, wrongLabel]) {
        const out = agent.output("stderr");
        assert.ok(!out.includes(KEY) && !out.includes(OTHER_KEY), "no key in the logs");
      }
      assert.ok(!JSON.stringify(s).includes(KEY));
    } finally {
      await group.killAll();
      removeDir(home);
    }
  });

  test("migration: a plaintext sender joins agents that accept plaintext and send sealed; plaintext joins a send-plaintext agent", { timeout: 60_000 }, async () => {
    const home = tempDir();
    const group = new ProcessGroup();
    try {
      const plain = cleanEnv(home);
      const start = async (name: string, extra: string[]): Promise<AgentProc> =>
        group.agent(["--rpc", `unix:${join(home, `${name}.sock`)}`, "agent", "-p", String(await freeUdpPort()), "--heartbeat", "100", ...extra], plain);
      // Step 2 of the migration: A and B send sealed and still accept plaintext; C has the key but still sends plaintext.
      const a = await start("a", ["--encrypt", KEY, "--encrypt-accept-plaintext"]);
      const b = await start("b", ["--encrypt", KEY, "--encrypt-accept-plaintext", "--join", a.gossip]);
      const c = await start("c", ["--encrypt", KEY, "--encrypt-accept-plaintext", "--encrypt-send-plaintext", "--join", a.gossip]);
      const abc = [a, b, c].map((p) => p.gossip).sort();
      for (const agent of [a, b, c]) await poll(async () => JSON.stringify(await alive(group, agent, plain)) === JSON.stringify(abc), 20_000, 100);
      await poll(async () => ((await stats(a.rpc))["seal.plaintextAccepted"] ?? 0) > 0 && ((await stats(c.rpc))["seal.opened"] ?? 0) > 0, 10_000, 100);
      assert.ok(logMessages(c).some((m) => m.includes("gossip is sent in plaintext, accepted sealed and plaintext, with 1 key") && m.includes("(migration mode)")));
      // Step 1: an agent without any key joins an agent that has the key but sends and accepts plaintext.
      const d = await start("d", ["--encrypt", KEY, "--encrypt-accept-plaintext", "--encrypt-send-plaintext"]);
      const e = await start("e", ["--join", d.gossip]);
      const de = [d, e].map((p) => p.gossip).sort();
      for (const agent of [d, e]) await poll(async () => JSON.stringify(await alive(group, agent, plain)) === JSON.stringify(de), 20_000, 100);
    } finally {
      await group.killAll();
      removeDir(home);
    }
  });

  test("the keyring file is created 0600 and wins at restart; a bad key is one line and exit 2, never shown", { timeout: 40_000 }, async () => {
    const home = tempDir();
    const group = new ProcessGroup();
    try {
      const plain = cleanEnv(home);
      const file = join(home, "keyring.json");
      const port = String(await freeUdpPort());
      const first = await group.agent(["--rpc", `unix:${join(home, "a.sock")}`, "agent", "-p", port, "--encrypt", KEY, "--keyring-file", file], plain);
      assert.equal(statSync(file).mode & 0o777, 0o600);
      assert.ok(logMessages(first).includes(`created the keyring file ${file}`));
      first.signal("SIGTERM");
      await first.exited;
      const again = await group.agent(["--rpc", `unix:${join(home, "b.sock")}`, "agent", "-p", port, "--encrypt", OTHER_KEY, "--keyring-file", file], plain);
      assert.ok(logMessages(again).some((m) => m === `the --encrypt key is not in the keyring file ${file} and is ignored: the keyring file wins`));
      assert.ok(!again.output("stderr").includes(OTHER_KEY) && !again.output("stderr").includes(KEY));

      const bad = Buffer.alloc(20, 3).toString("base64");
      const r = await group.run(["agent", "--nobanner", "--encrypt", bad], { env: plain, timeoutMs: 10_000 });
      assert.equal(r.code, 2);
      assert.equal(r.stderr, "tamtam: --encrypt must be a 16-, 24- or 32-byte key in base64, got 20 bytes, got a value that is not shown\n");
      const missing = await group.run(["agent", "--nobanner", "--keyring-file", join(home, "none.json")], { env: plain, timeoutMs: 10_000 });
      assert.equal(missing.code, 2);
      assert.match(missing.stderr, /^tamtam: the keyring file \S+none\.json does not exist; give a first key with --encrypt\n$/);
    } finally {
      await group.killAll();
      removeDir(home);
    }
  });
});
