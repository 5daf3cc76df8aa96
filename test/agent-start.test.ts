/**
 * Tests of the agent's start sequence when a late step fails: everything acquired before the
 * failure (metrics listener, gossip socket and worker threads, event and query handler runners,
 * the snapshot writer, the gRPC server, a keyring file it created) is released, so that an embedding program can start
 * again on the same ports (src/agent/agent.ts, through the library's startAgent).
 */

import assert from "node:assert/strict";
import { createSocket } from "node:dgram";
import { existsSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { join } from "node:path";
import { describe, test } from "node:test";
import { startAgent } from "tamtam";
import { binPath, freeTcpPort, freeUdpPort, removeDir, tcpPortIsFree, tempDir, udpPortIsFree } from "./helpers/processes.js";

binPath(); // fail at once, with a clear message, when the package was not built

/** A gossip key (32 bytes, base64). */
const KEY = Buffer.alloc(32, 7).toString("base64");

/** A TCP listener on a free loopback port, which a gRPC bind then finds taken. */
async function occupiedTcpPort(): Promise<{ port: number; server: Server }> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const address = server.address();
  assert.ok(typeof address === "object" && address !== null);
  return { port: address.port, server };
}

describe("a start that fails at a late step releases what it acquired", () => {
  for (const workers of [0, 1] as const) {
    test(`gRPC port taken (${workers === 0 ? "inline" : "worker"} engine): the metrics and gossip ports can be bound again`, { timeout: 30_000 }, async () => {
      const dir = tempDir("tamtam-start-");
      const taken = await occupiedTcpPort();
      try {
        const metricsPort = await freeTcpPort();
        const gossipPort = await freeUdpPort();
        const snapshot = join(dir, "members.json");
        const options = {
          logLevel: "off",
          bind: "127.0.0.1",
          advertise: "127.0.0.1",
          preset: "local",
          workers,
          port: gossipPort,
          rpc: `127.0.0.1:${taken.port}`,
          metricsAddress: `127.0.0.1:${metricsPort}`,
          snapshot,
          eventHandlers: ["member-join=true"],
          queryHandler: ["q=cat"],
          encrypt: KEY,
          keyringFile: join(dir, "keyring.json"),
        } as const;
        await assert.rejects(startAgent(options), (err: Error) => {
          assert.match(err.message, /^cannot serve gRPC at 127\.0\.0\.1:\d+: address already in use/);
          return true;
        });
        assert.ok(await tcpPortIsFree(metricsPort), "the metrics port is free again");
        assert.ok(await udpPortIsFree(gossipPort, "127.0.0.1"), "the gossip port is free again");
        assert.equal(existsSync(snapshot), false, "no snapshot is written for an agent that never started");
        assert.equal(existsSync(join(dir, "keyring.json")), false, "the keyring file created by the failed start is removed");

        // The same ports serve a second start once the gRPC port is free.
        const rpcPort = await freeTcpPort();
        const agent = await startAgent({ ...options, rpc: `127.0.0.1:${rpcPort}` });
        try {
          const res = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
          assert.equal(res.status, 200);
          await res.arrayBuffer();
          assert.equal(agent.address, `127.0.0.1:${gossipPort}`);
        } finally {
          await agent.stop();
        }
      } finally {
        taken.server.close();
        removeDir(dir);
      }
    });
  }

  test("gossip port taken: the metrics listener bound before it is released", { timeout: 30_000 }, async () => {
    const metricsPort = await freeTcpPort();
    const gossip = createSocket("udp4");
    await new Promise<void>((resolve) => gossip.bind(0, "127.0.0.1", () => resolve()));
    try {
      const options = {
        logLevel: "off",
        bind: "127.0.0.1",
        advertise: "127.0.0.1",
        workers: 0,
        port: gossip.address().port,
        rpc: `127.0.0.1:${await freeTcpPort()}`,
        metricsAddress: `127.0.0.1:${metricsPort}`,
      } as const;
      await assert.rejects(startAgent(options), /cannot use the gossip port 127\.0\.0\.1:\d+: address already in use/);
      assert.ok(await tcpPortIsFree(metricsPort), "the metrics port is free again");
    } finally {
      gossip.close();
    }
  });
});
