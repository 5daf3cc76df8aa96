/**
 * Tests of the package's library entries imported BY NAME ("tamtam", "tamtam/client"), which
 * Node resolves through package.json's exports map to the bundled dist/lib files (the
 * package's self-reference), exactly what an installed package serves: startAgent (two agents
 * in this process join, list members, broadcast and receive through the async iterators,
 * report membership events, refuse bad options and bad addresses with one line and a stable
 * code, leave gracefully on stop; a core on the package's own worker thread), simulate (the
 * same report as `tamtam simulate --json` with the same parameters, also on worker threads),
 * and the typed client (every RPC of the descriptor is a method; unary, streams as async
 * iterators, the key RPCs, the agent's error codes, the token, a Unix socket).
 * The options resolution is compared with the command line's for the same values.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { describe, test } from "node:test";
import { simulate, startAgent, type AgentHandle, type Member } from "tamtam";
import { connect, GrpcStatus, TamTam, type TamTamClient } from "tamtam/client";
import { agentOptions } from "../src/cli/commands/agent.js";
import { AGENT_SETTINGS, resolveSettings, type SettingsIO } from "../src/cli/settings.js";
import { resolveAgentOptions } from "../src/lib/agent.js";
import { binPath, freeTcpPort, freeUdpPort, poll, removeDir, run, tempDir } from "./helpers/processes.js";

binPath(); // fail at once, with a clear message, when the package was not built

const NO_IO: SettingsIO = { env: {}, homeDir: null, readFile: () => null };
const QUIET = { logLevel: "off", bind: "127.0.0.1", advertise: "127.0.0.1" } as const;

/** Two agents on loopback, stopped (gracefully) by the caller. */
async function twoAgents(extra: { readonly rpcToken?: string } = {}): Promise<[AgentHandle, AgentHandle]> {
  const a = await startAgent({ ...QUIET, ...extra, port: await freeUdpPort(), rpc: `localhost:${await freeTcpPort()}`, preset: "local" });
  try {
    const b = await startAgent({ ...QUIET, ...extra, port: await freeUdpPort(), rpc: `localhost:${await freeTcpPort()}`, preset: "local" });
    return [a, b];
  } catch (error) {
    await a.stop();
    throw error;
  }
}

/** The first item of `stream` that satisfies `predicate` (leaving the loop ends the stream). */
async function first<T>(stream: AsyncIterable<T>, predicate: (item: T) => boolean): Promise<T> {
  for await (const item of stream) if (predicate(item)) return item;
  throw new Error("the stream ended first");
}

/** The next item of `items` that satisfies `predicate`, leaving the stream open. */
async function nextMatching<T>(items: AsyncIterator<T>, predicate: (item: T) => boolean): Promise<T> {
  for (;;) {
    const r = await items.next();
    if (r.done === true) throw new Error("the stream ended first");
    if (predicate(r.value)) return r.value;
  }
}

/** The error `promise` rejects with; fails if it resolves. */
async function failure(promise: Promise<unknown>): Promise<Error & { code?: unknown; codeName?: string; agentCode?: string | null; details?: string }> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof Error, String(error));
    return error;
  }
  assert.fail("the call should have failed");
}

describe("startAgent options are the command line's settings", () => {
  test("no options give the command line's defaults; typed options give what the same flags give", () => {
    const cli = (flags: Parameters<typeof resolveSettings>[1]) => ({ ...agentOptions(resolveSettings(AGENT_SETTINGS, flags, undefined, NO_IO)), nobanner: true });
    assert.deepEqual(resolveAgentOptions({}), cli({}));
    assert.deepEqual(
      resolveAgentOptions({ port: 7001, heartbeatMs: 250, preset: "wan", join: ["10.0.0.1:9999"], workers: 1, ipv6: true, rpc: "unix:/tmp/x.sock" }),
      cli({ port: "7001", heartbeatMs: "250", preset: "wan", join: ["10.0.0.1:9999"], workers: "1", ipv6: true, rpc: "unix:/tmp/x.sock" }),
    );
    assert.equal(resolveAgentOptions({ verbose: true }).logLevel, "debug", "verbose means debug, as on the command line");
    assert.equal(resolveAgentOptions({ verbose: true, logLevel: "warn" }).logLevel, "warn");
    assert.equal(resolveAgentOptions({ env: { TAMTAM_PORT: "7002" } }).port, 7002, "env is read when given");
    assert.equal(resolveAgentOptions({ port: 7003, env: { TAMTAM_PORT: "7002" } }).port, 7003, "an option wins over env");
  });

  test("a bad or unknown option rejects with one line naming it; nothing starts", async () => {
    await assert.rejects(startAgent({ ...QUIET, port: 0 }), { message: "option port must be in 1..65535, got 0" });
    await assert.rejects(startAgent({ ...QUIET, heartbeatMs: 5 }), /^UsageError: option heartbeatMs must be /);
    await assert.rejects(startAgent({ ...QUIET, preset: "moon" as "lan" }), { message: 'option preset must be one of lan, local, wan, thread, got "moon"' });
    await assert.rejects(startAgent({ ...QUIET, prot: 9 } as object), { message: "unknown option prot" });
  });
});

describe('the embedded agent (import { startAgent } from "tamtam")', () => {
  test("two agents join, see each other, broadcast to each other's iterators, report membership events and leave gracefully", { timeout: 30_000 }, async () => {
    const [a, b] = await twoAgents();
    let stopped = false;
    try {
      const bEventStream = b.memberEvents();
      const bEvents = bEventStream[Symbol.asyncIterator]();
      const bBroadcasts = b.broadcasts();
      await a.join(b.address);
      const aliveAt = (members: Member[], address: string): boolean => members.some((m) => m.address === address && m.state === "alive");
      assert.ok(aliveAt(await a.members(), b.address), "a knows b after the join");
      const self = (await a.members()).find((m) => m.isSelf);
      assert.equal(self?.address, a.address);
      assert.equal((await nextMatching(bEvents, (m) => m.address === a.address)).state, "alive", "b reports a joining");

      await a.broadcast("hello from a");
      const received = await first(bBroadcasts, () => true);
      assert.equal(new TextDecoder().decode(received), "hello from a");
      assert.equal(bBroadcasts.dropped, 0);
      assert.ok(typeof (await a.ping(b.address)) === "number");

      const bad = await failure(a.join("not-an-address"));
      assert.equal(bad.name, "AgentError");
      assert.equal(bad.code, "INVALID_ADDRESS");
      assert.equal((await failure(a.join(a.address))).code, "SELF_ADDRESS");
      assert.equal((await failure(a.broadcast(""))).code, "EMPTY_BROADCAST");
      assert.equal((await failure(a.broadcast(new Uint8Array(10_000)))).code, "BROADCAST_TOO_LARGE");

      // stop() is a graceful leave: the other agent reports "left", not a failure.
      await a.stop();
      stopped = true;
      assert.equal(await a.stopped, 0);
      assert.equal((await nextMatching(bEvents, (m) => m.address === a.address && m.state !== "alive")).state, "left");
      bEventStream.close();
      assert.equal((await bEvents.next()).done, true, "a closed stream ends");
      bBroadcasts.close();
    } finally {
      if (!stopped) await a.stop();
      await b.stop();
    }
  });
});

describe('simulate (import { simulate } from "tamtam")', () => {
  test("gives the report `tamtam simulate --json` prints for the same parameters", { timeout: 60_000 }, async () => {
    const report = await simulate({ nodes: 30, periods: 12, seed: 7, kill: 1 });
    assert.equal(report.violations.total, 0);
    assert.equal(report.parameters.nodes, 30);
    const cli = await run(["simulate", "--nodes", "30", "--periods", "12", "--seed", "7", "--kill", "1", "--json"], { env: {}, timeoutMs: 60_000 });
    assert.equal(cli.code, 0, cli.stderr);
    assert.deepEqual(JSON.parse(cli.stdout), JSON.parse(JSON.stringify(report)));
    // On worker threads (the package's own shard-worker.js, started by file name): the same report.
    assert.deepEqual(await simulate({ nodes: 30, periods: 12, seed: 7, kill: 1, workers: 2 }), report);
  });

  test("a bad option rejects with one line naming it", async () => {
    await assert.rejects(simulate({ nodes: 0 }), { name: "RangeError", message: "option nodes must be an integer in 1..131072, got 0" });
    await assert.rejects(simulate({ nodes: 10, kill: 10 }), { message: "option kill must be an integer in 0..9, got 10" });
    await assert.rejects(simulate({ loss: 2 }), { message: "option loss must be in 0..1, got 2" });
    await assert.rejects(simulate({ workers: 99 }), /^RangeError: option workers must be /);
    await assert.rejects(simulate({ nodez: 3 } as object), { message: "unknown option nodez" });
  });
});

describe('the typed client (import { connect } from "tamtam/client")', () => {
  test("has a method for every RPC of the service descriptor", () => {
    const client = connect("localhost:1");
    try {
      for (const method of TamTam.methods) assert.equal(typeof (client as unknown as Record<string, unknown>)[method.localName], "function", method.name);
    } finally {
      client.close();
    }
  });

  test("unary calls, streams as async iterators, key RPCs and the agent's error codes, with a token", { timeout: 30_000 }, async () => {
    const token = "lib-T0ken";
    const [a, b] = await twoAgents({ rpcToken: token });
    const client: TamTamClient = connect(a.rpcAddress, { token, timeoutMs: 10_000 });
    const anonymous = connect(a.rpcAddress);
    try {
      const local = await client.localAddress({});
      assert.equal(`${local.IP}:${local.port}`, a.address);
      const [ip, port] = b.address.split(":");
      await client.join({ IP: ip, port: Number(port) });
      assert.deepEqual((await client.healthy({})).nodes.map((n) => `${n.address?.IP}:${n.address?.port}`).sort(), [a.address, b.address].sort());

      // A server stream: subscribe, wait until the agent counts the subscriber, then broadcast.
      const stream = client.stream({});
      const next = first(stream, () => true);
      await poll(async () => ((await a.stats())["stream.subscribers"] ?? 0) >= 1, 10_000, 20);
      await b.broadcast("through gRPC");
      assert.equal(new TextDecoder().decode((await next).bytes), "through gRPC");

      const bad = await failure(client.join({ IP: "nope", port: 1 }));
      assert.equal(bad.code, GrpcStatus.INVALID_ARGUMENT);
      assert.equal(bad.codeName, "INVALID_ARGUMENT");
      assert.equal(bad.agentCode, "INVALID_ADDRESS");
      const noKeyring = await failure(client.listKeys({ local: true }));
      assert.equal(noKeyring.code, GrpcStatus.FAILED_PRECONDITION);
      assert.equal(noKeyring.agentCode, "NO_KEYRING");
      const unauthenticated = await failure(anonymous.nodes({}));
      assert.equal(unauthenticated.code, GrpcStatus.UNAUTHENTICATED);
    } finally {
      client.close();
      anonymous.close();
      await a.stop();
      await b.stop();
    }
  });

  test("over a Unix socket, to an agent whose core runs on a worker thread; an absent agent is UNAVAILABLE", { timeout: 30_000 }, async () => {
    const dir = tempDir("tamtam-lib-");
    const socket = join(dir, "agent.sock");
    // workers: 1 starts the package's own worker-entry.js by file name.
    const agent = await startAgent({ ...QUIET, port: await freeUdpPort(), rpc: `unix:${socket}`, workers: 1 });
    let stopped = false;
    const client = connect(`unix:${socket}`);
    try {
      assert.equal(agent.rpcAddress, `unix:${socket}`);
      const nodes = (await client.nodes({})).nodes;
      assert.deepEqual(nodes.map((n) => [`${n.address?.IP}:${n.address?.port}`, n.isSelf, n.state]), [[agent.address, true, "alive"]]);
      await agent.stop();
      stopped = true;
      const gone = await failure(client.nodes({}));
      assert.equal(gone.code, GrpcStatus.UNAVAILABLE, gone.message);
      assert.equal(gone.agentCode, null, "no agent sent it");
    } finally {
      client.close();
      if (!stopped) await agent.stop();
      removeDir(dir);
    }
  });
});
