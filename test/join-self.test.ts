/**
 * Joining the agent itself under another of its addresses (127.0.0.1 while it advertises
 * another local address, or the reverse): the agent's core ignores datagrams that carry its own
 * address as sender, so such a join used to wait for an answer that never came and fail with
 * NO_ANSWER after the whole join timeout. Now it is refused at once as SELF_ADDRESS (gRPC
 * INVALID_ARGUMENT; `tamtam join` exits 2 with one line), as joining the advertised address is;
 * a start-up seed that is the agent itself is skipped. isOwnGossipAddress (src/agent/addresses.ts)
 * decides which addresses are the agent's own.
 */

import assert from "node:assert/strict";
import type { NetworkInterfaceInfo } from "node:os";
import { describe, test } from "node:test";
import { PassThrough } from "node:stream";
import { startAgent } from "tamtam";
import { isOwnGossipAddress } from "../src/agent/addresses.js";
import { addr } from "../src/core/address.js";
import { binPath, cleanEnv, freeTcpPort, freeUdpPort, removeDir, run, tempDir } from "./helpers/processes.js";

binPath(); // fail at once, with a clear message, when the package was not built

const iface = (address: string, family: "IPv4" | "IPv6", internal = false): NetworkInterfaceInfo =>
  ({ address, family, internal, netmask: "", mac: "00:00:00:00:00:00", cidr: null, ...(family === "IPv6" ? { scopeid: 0 } : {}) }) as NetworkInterfaceInfo;

const INTERFACES = {
  lo: [iface("127.0.0.1", "IPv4", true), iface("::1", "IPv6", true)],
  eth0: [iface("192.0.2.2", "IPv4"), iface("fd00::2", "IPv6"), iface("fe80::1%eth0", "IPv6")],
};

describe("which addresses are the agent's own gossip socket", () => {
  const own = (bindIp: string, advertise: string, targets: Record<string, boolean>): void => {
    for (const [target, expected] of Object.entries(targets)) {
      assert.equal(
        isOwnGossipAddress(addr(target), { bindIp, bindPort: 7946, advertise: addr(advertise) }, INTERFACES),
        expected,
        `bind ${bindIp}, advertising ${advertise}: ${target}`,
      );
    }
  };

  test("a wildcard IPv4 bind: loopback, the unspecified address and the machine's IPv4 addresses at the bound port", () => {
    own("0.0.0.0", "192.0.2.2:7946", {
      "192.0.2.2:7946": true,
      "127.0.0.1:7946": true,
      "127.0.0.9:7946": true,
      "0.0.0.0:7946": true,
      "127.0.0.1:7947": false,
      "192.0.2.3:7946": false,
      "[::1]:7946": false,
      "[fd00::2]:7946": false,
    });
    // The reverse: it advertises loopback, and is asked to join its interface address.
    own("0.0.0.0", "127.0.0.1:7946", { "192.0.2.2:7946": true, "127.0.0.1:7946": true, "192.0.2.9:7946": false });
  });

  test("a dual-stack bind (::) receives both families; an advertised address behind NAT counts whatever its port", () => {
    own("::", "[fd00::2]:7946", {
      "[::1]:7946": true,
      "[fd00::2]:7946": true,
      "[::ffff:127.0.0.1]:7946": true,
      "127.0.0.1:7946": true,
      "192.0.2.2:7946": true,
      "[fd00::3]:7946": false,
      "[::1]:7000": false,
    });
    own("0.0.0.0", "203.0.113.7:40000", { "203.0.113.7:40000": true, "203.0.113.7:7946": false });
  });

  test("a specific bind receives only at its own address", () => {
    own("127.0.0.2", "127.0.0.2:7946", { "127.0.0.2:7946": true, "127.0.0.1:7946": false, "192.0.2.2:7946": false });
    own("127.0.0.1", "192.0.2.2:7946", { "127.0.0.1:7946": true, "192.0.2.2:7946": true, "127.0.0.3:7946": false });
  });
});

describe("joining the agent itself under another address", () => {
  for (const [advertise, other] of [
    ["127.0.0.2", "127.0.0.1"],
    ["127.0.0.1", "127.0.0.2"],
  ] as const) {
    test(`advertising ${advertise}, a join of ${other}:PORT is SELF_ADDRESS at once, in the library and the command line`, { timeout: 30_000 }, async () => {
      const port = await freeUdpPort("0.0.0.0");
      const rpcPort = await freeTcpPort();
      const agent = await startAgent({ logLevel: "off", bind: "0.0.0.0", advertise, port, rpc: `127.0.0.1:${rpcPort}`, preset: "local", workers: 0 });
      const home = tempDir("tamtam-join-self-");
      try {
        assert.equal(agent.address, `${advertise}:${port}`);
        await assert.rejects(agent.join(`${other}:${port}`), (err: Error & { code?: string }) => {
          assert.equal(err.code, "SELF_ADDRESS");
          assert.equal(err.message, `${other}:${port} is this agent itself (it advertises ${advertise}:${port}); join another member`);
          return true;
        });
        const r = await run(["--rpc", `127.0.0.1:${rpcPort}`, "join", `${other}:${port}`], { env: cleanEnv(home) });
        assert.deepEqual(
          [r.code, r.stdout, r.stderr],
          [2, "", `tamtam: the agent rejected the request: ${other}:${port} is this agent itself (it advertises ${advertise}:${port}); join another member\n`],
        );
        const stats = await agent.stats();
        assert.equal(stats["core.datagramsFromSelf"], 0, "nothing was sent to itself");
      } finally {
        await agent.stop();
        removeDir(home);
      }
    });
  }

  test("a start-up seed that is the agent itself is skipped (no retries of a join that cannot be answered)", { timeout: 30_000 }, async () => {
    const port = await freeUdpPort("0.0.0.0");
    const lines: string[] = [];
    const logStream = new PassThrough();
    logStream.on("data", (chunk: Buffer) => lines.push(...chunk.toString().split("\n").filter((l) => l !== "")));
    const agent = await startAgent({
      logLevel: "info",
      logStream,
      bind: "0.0.0.0",
      advertise: "127.0.0.2",
      port,
      rpc: `127.0.0.1:${await freeTcpPort()}`,
      preset: "local",
      workers: 0,
      join: [`127.0.0.1:${port}`],
    });
    try {
      const messages = lines.map((l) => (JSON.parse(l) as { msg: string }).msg);
      assert.ok(messages.includes(`--join 127.0.0.1:${port} is this agent itself; skipped`), messages.join("\n"));
      // Members of its own are the agent alone; and it never sent itself a JOIN.
      assert.deepEqual((await agent.members()).map((m) => m.address), [`127.0.0.2:${port}`]);
      assert.equal((await agent.stats())["core.datagramsFromSelf"], 0);
    } finally {
      await agent.stop();
    }
  });
});
