/**
 * End-to-end tests of the agent's control plane, with REAL `tamtam` processes through the bin:
 * gRPC on a Unix socket (`--rpc unix:PATH`, mode 0600, removed at exit) guarded by a token
 * (`--rpc-token`, `TAMTAM_RPC_TOKEN`, `rpc-token:` in the config file), where `nodes`,
 * `broadcast` and `stream` work with the token and fail with one line and a non-zero exit
 * without it; a stale socket of a killed agent is replaced and anything else at the path is
 * refused; and the warning for gRPC reachable from other machines without a token. Every
 * process is killed by PID in a `finally`; waits are on output lines and real conditions.
 */

import assert from "node:assert/strict";
import { existsSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import {
  binPath,
  cleanEnv,
  freeTcpPort,
  freeUdpPort,
  logMessages,
  poll,
  ProcessGroup,
  removeDir,
  tempDir,
  waitForExit,
  waitForLine,
} from "./helpers/processes.js";
import { agentStats } from "./helpers/agent-stats.js";

binPath(); // fail at once, with a clear message, when the bin was not built

const TOKEN = "e2e-T0ken";
const NEEDS_TOKEN = /^tamtam: the agent at unix:\S+ requires --rpc-token \(or TAMTAM_RPC_TOKEN, or rpc-token in the config file\), or the given token is wrong\n$/;

/** Waits until the agent at `rpc` has `count` Stream subscribers (its Stats counter), presenting the token. */
async function awaitStreamSubscribers(rpc: string, count: number): Promise<void> {
  await poll(async () => ((await agentStats(rpc, TOKEN))["stream.subscribers"] ?? 0) >= count, 10_000, 50);
}

describe("the agent's gRPC on a Unix socket with a token (real processes)", () => {
  test("nodes, broadcast and stream work with the token and fail in one line without it; the socket is 0600 and gone after SIGTERM", { timeout: 40_000 }, async () => {
    const home = tempDir();
    const group = new ProcessGroup();
    try {
      const socket = join(home, "tamtam.sock");
      const rpc = `unix:${socket}`;
      const agent = await group.agent(["--rpc", rpc, "--rpc-token", TOKEN, "agent", "-p", String(await freeUdpPort())], cleanEnv(home));
      assert.equal(agent.rpc, rpc, "the agent says where it serves gRPC");
      const stats = statSync(socket);
      assert.ok(stats.isSocket(), "a socket at the path");
      assert.equal(stats.mode & 0o777, 0o600, "only its owner may connect");
      assert.ok(!agent.output("stderr").includes(TOKEN), "the token is not logged");
      assert.ok(!logMessages(agent).some((m) => /other machines/.test(m)), "no warning for a Unix socket");

      // Without the token: one line, exit 1, for a unary call, a broadcast and a stream.
      const plain = cleanEnv(home);
      for (const args of [["nodes"], ["broadcast", "not allowed"], ["stream"]]) {
        const r = await group.run(["--rpc", rpc, ...args], { env: plain, timeoutMs: 10_000 });
        assert.equal(r.code, 1, `${args.join(" ")}: ${r.stderr}`);
        assert.match(r.stderr, NEEDS_TOKEN, args.join(" "));
        assert.equal(r.stdout, "");
      }
      // A wrong token: the same.
      const wrong = await group.run(["--rpc", rpc, "--rpc-token", "nope", "nodes"], { env: plain, timeoutMs: 10_000 });
      assert.equal(wrong.code, 1);
      assert.match(wrong.stderr, NEEDS_TOKEN);

      // With the token: from the flag, the environment and the config file. A second agent, on
      // its own socket with the same token, joins; a broadcast through it reaches the first's stream.
      const nodes = await group.run(["--rpc", rpc, "--rpc-token", TOKEN, "nodes"], { env: plain, timeoutMs: 10_000 });
      assert.equal(nodes.code, 0, nodes.stderr);
      assert.match(nodes.stdout, new RegExp(`:${agent.port} .* ALIVE\\n$`));
      const otherRpc = `unix:${join(home, "other.sock")}`;
      const other = await group.agent(["--rpc", otherRpc, "agent", "-p", String(await freeUdpPort())], cleanEnv(home, { TAMTAM_RPC_TOKEN: TOKEN }));
      const joined = await group.run(["--rpc", rpc, "--rpc-token", TOKEN, "join", other.gossip], { env: plain, timeoutMs: 20_000 });
      assert.equal(joined.code, 0, joined.stderr);
      const withEnv = cleanEnv(home, { TAMTAM_RPC: rpc, TAMTAM_RPC_TOKEN: TOKEN });
      const stream = group.tamtam(["stream"], withEnv);
      await awaitStreamSubscribers(rpc, 1);
      const config = join(home, "tamtam.yaml");
      writeFileSync(config, `rpc: "${otherRpc}"\nrpc-token: "${TOKEN}"\n`);
      const sent = await group.run(["--config", config, "broadcast", "Hello, sealed world!"], { env: plain, timeoutMs: 10_000 });
      assert.equal(sent.code, 0, sent.stderr);
      await waitForLine(stream, (l) => l === "Hello, sealed world!", 10_000, { stream: "stdout" });
      assert.deepEqual(stream.linesOf("stderr"), []);

      agent.signal("SIGTERM");
      const exit = await waitForExit(agent, 10_000);
      assert.equal(exit.code, 0, agent.tail());
      assert.ok(!existsSync(socket), "the socket is removed when the agent stops");
      await waitForExit(stream, 10_000);
    } finally {
      await group.killAll();
      removeDir(home);
    }
  });

  test("a stale socket of a killed agent is replaced; a file that is no socket is refused in one line", { timeout: 40_000 }, async () => {
    const home = tempDir();
    const group = new ProcessGroup();
    try {
      const socket = join(home, "agent.sock");
      const args = async (): Promise<string[]> => ["--rpc", `unix:${socket}`, "agent", "-p", String(await freeUdpPort())];
      const first = await group.agent(await args(), cleanEnv(home));
      await first.kill(); // SIGKILL: no chance to remove the socket
      assert.ok(statSync(socket).isSocket(), "the killed agent left its socket behind");
      const second = await group.agent(await args(), cleanEnv(home));
      const nodes = await group.run(["--rpc", `unix:${socket}`, "nodes"], { env: cleanEnv(home), timeoutMs: 10_000 });
      assert.equal(nodes.code, 0, nodes.stderr);
      // A second agent on a live socket is refused and leaves the socket alone.
      const clash = await group.run(await args(), { env: cleanEnv(home), timeoutMs: 15_000 });
      assert.equal(clash.code, 1);
      assert.match(clash.stderr.trim().split("\n").at(-1) ?? "", /^tamtam: cannot serve gRPC at unix:\S+: address already in use/);
      assert.ok(statSync(socket).isSocket());
      await second.kill();

      const file = join(home, "not-a-socket");
      writeFileSync(file, "data\n");
      const refused = await group.run(["--rpc", `unix:${file}`, "agent", "--nobanner", "-p", String(await freeUdpPort())], { env: cleanEnv(home), timeoutMs: 15_000 });
      assert.equal(refused.code, 1);
      assert.equal(refused.stderr, `tamtam: cannot serve gRPC at unix:${file}: ${file} exists and is not a socket (remove it or choose another path with --rpc)\n`);
      assert.equal(statSync(file).size, 5, "the file is left as it was");
      const noDir = join(home, "missing", "agent.sock");
      const uncreatable = await group.run(["--rpc", `unix:${noDir}`, "agent", "--nobanner", "-p", String(await freeUdpPort())], { env: cleanEnv(home), timeoutMs: 15_000 });
      assert.equal(uncreatable.code, 1);
      assert.match(uncreatable.stderr, /^tamtam: cannot serve gRPC at unix:\S+: [^\n]+\n$/);
    } finally {
      await group.killAll();
      removeDir(home);
    }
  });

  test("gRPC reachable from other machines without a token logs one warning; with a token or on loopback none", { timeout: 40_000 }, async () => {
    const home = tempDir();
    const group = new ProcessGroup();
    const warning = (m: string): boolean => /^gRPC at \S+ can be reached from other machines and needs no token/.test(m);
    try {
      const open = await group.agent(["--rpc", `0.0.0.0:${await freeTcpPort()}`, "agent", "-p", String(await freeUdpPort())], cleanEnv(home));
      assert.equal(logMessages(open).filter(warning).length, 1, open.tail());
      const guarded = await group.agent(
        ["--rpc", `0.0.0.0:${await freeTcpPort()}`, "agent", "-p", String(await freeUdpPort())],
        cleanEnv(home, { TAMTAM_RPC_TOKEN: TOKEN }),
      );
      assert.equal(logMessages(guarded).filter(warning).length, 0, guarded.tail());
      assert.ok(!guarded.output("stderr").includes(TOKEN), "the token is not logged");
      const local = await group.agent(["--rpc", `127.0.0.1:${await freeTcpPort()}`, "agent", "-p", String(await freeUdpPort())], cleanEnv(home));
      assert.equal(logMessages(local).filter(warning).length, 0, local.tail());
    } finally {
      await group.killAll();
      removeDir(home);
    }
  });
});
