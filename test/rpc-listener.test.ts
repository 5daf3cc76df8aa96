/**
 * Tests of src/agent/rpc-listener.ts: the gRPC server is loaded once, by the first connection,
 * and serves the connections that waited for it; the waiting room is bounded; a server that
 * fails to load closes connections instead of keeping them; `localhost` binds both loopback
 * addresses on one port; close() lets calls end within the grace time, then cuts them. And a
 * real agent (the library's startAgent) has not loaded its gRPC server until a client calls.
 */

import { test } from "node:test";
import assert from "node:assert/strict";
import { connect, type Socket } from "node:net";
import type { Duplex } from "node:stream";
import { once } from "node:events";
import { lookup } from "node:dns/promises";
import type { GrpcServer } from "../src/agent/grpc-server.js";
import { MAX_WAITING_CONNECTIONS, RpcListener } from "../src/agent/rpc-listener.js";
import { startAgent } from "../src/lib/agent.js";
import { freeTcpPort, freeUdpPort } from "./helpers/processes.js";
import { connect as connectClient } from "../src/lib/client.js";

/** A stand-in for the gRPC server: echoes what a served connection sends, and records calls. */
class EchoServer implements GrpcServer {
  readonly served: Duplex[] = [];
  shutdowns = 0;
  forced = 0;
  finishShutdown: (() => void) | null = null;
  serve(connection: Duplex): void {
    this.served.push(connection);
    connection.on("data", (chunk: Buffer) => connection.write(chunk));
    connection.on("error", () => undefined);
  }
  tryShutdown(done: () => void): void {
    this.shutdowns++;
    this.finishShutdown = () => {
      for (const c of this.served) c.destroy();
      done();
    };
  }
  forceShutdown(): void {
    this.forced++;
    for (const c of this.served) c.destroy();
  }
}

function deferred<T>(): { promise: Promise<T>; resolve: (value: T) => void; reject: (err: Error) => void } {
  let resolve!: (value: T) => void;
  let reject!: (err: Error) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

/** Each socket's close, watched from its creation (a refused socket may close before anyone asks). */
const closes = new WeakMap<Socket, Promise<unknown>>();

async function open(port: number, host = "127.0.0.1"): Promise<Socket> {
  const socket = connect({ port, host });
  socket.on("error", () => undefined);
  closes.set(socket, new Promise((resolve) => socket.once("close", resolve)));
  await once(socket, "connect");
  return socket;
}

/** Resolves when the peer has closed the connection (reading, so that its end is seen). */
function closedByPeer(socket: Socket): Promise<unknown> {
  socket.resume();
  return closes.get(socket) as Promise<unknown>;
}

/** The first `bytes` bytes the socket receives (or what came before it closed). */
function receive(socket: Socket, bytes: number): Promise<string> {
  return new Promise((resolve) => {
    let text = "";
    const onData = (chunk: Buffer): void => {
      text += String(chunk);
      if (text.length < bytes) return;
      socket.off("data", onData);
      socket.pause();
      resolve(text);
    };
    socket.on("data", onData);
    socket.once("close", () => resolve(text));
  });
}

test("the server is loaded once, by the first connection, and serves those that waited, what they sent included", async () => {
  const server = new EchoServer();
  const gate = deferred<GrpcServer>();
  let loads = 0;
  const listener = new RpcListener(
    () => {
      loads++;
      return gate.promise;
    },
    () => assert.fail("no load error expected"),
  );
  const sockets: Socket[] = [];
  try {
    const port = await listener.listenTcp("127.0.0.1:0");
    assert.equal(loads, 0, "nothing is loaded before a client connects");
    for (let i = 0; i < 3; i++) sockets.push(await open(port));
    sockets.forEach((s, i) => s.write(`hello${i}`));
    assert.equal(loads, 1);
    assert.equal(listener.serverLoaded, false);
    gate.resolve(server);
    const echoes = await Promise.all(sockets.map((s) => receive(s, 6)));
    assert.deepEqual(echoes, ["hello0", "hello1", "hello2"]);
    assert.equal(listener.serverLoaded, true);
    // Later connections go straight to the loaded server.
    const late = await open(port);
    sockets.push(late);
    late.write("late!!");
    assert.equal(await receive(late, 6), "late!!");
    assert.equal(loads, 1);
    assert.deepEqual(listener.counters, { connections: 4, connectionsRefused: 0, serverLoads: 1 });
  } finally {
    for (const s of sockets) s.destroy();
    listener.forceClose();
  }
});

test("connections beyond the waiting room are closed and counted while the server loads", async () => {
  const gate = deferred<GrpcServer>();
  const listener = new RpcListener(() => gate.promise, () => undefined);
  const sockets: Socket[] = [];
  try {
    const port = await listener.listenTcp("127.0.0.1:0");
    const extra = 5;
    for (let i = 0; i < MAX_WAITING_CONNECTIONS + extra; i++) sockets.push(await open(port));
    const closed = sockets.slice(MAX_WAITING_CONNECTIONS).map(closedByPeer);
    await Promise.all(closed);
    assert.equal(listener.counters.connectionsRefused, extra);
    gate.resolve(new EchoServer());
    const first = sockets[0] as Socket;
    first.write("still here");
    assert.equal(await receive(first, 10), "still here");
  } finally {
    for (const s of sockets) s.destroy();
    listener.forceClose();
  }
});

test("a server that fails to load is reported once, and connections are closed instead of kept", async () => {
  const errors: string[] = [];
  const listener = new RpcListener(async () => {
    throw new Error("bundle missing");
  }, (err) => errors.push(err.message));
  try {
    const port = await listener.listenTcp("127.0.0.1:0");
    await closedByPeer(await open(port));
    await closedByPeer(await open(port));
    assert.deepEqual(errors, ["bundle missing"]);
    assert.equal(listener.counters.connectionsRefused, 2);
    assert.equal(listener.counters.connections, 0);
  } finally {
    listener.forceClose();
  }
});

test("localhost binds its loopback addresses on one port, [::] takes IPv4 too, an address in use is refused", async () => {
  const listener = new RpcListener(async () => new EchoServer(), () => undefined);
  const other = new RpcListener(async () => new EchoServer(), () => undefined);
  const wildcard = new RpcListener(async () => new EchoServer(), () => undefined);
  try {
    const port = await listener.listenTcp("localhost:0");
    // Every address localhost names here answers on the one port.
    const addresses = [...new Set((await lookup("localhost", { all: true })).map((a) => a.address))];
    assert.ok(addresses.length >= 1);
    for (const address of addresses) (await open(port, address)).destroy();
    await assert.rejects(other.listenTcp(`127.0.0.1:${port}`), /EADDRINUSE/);
    // The IPv6 wildcard takes IPv4 clients too (dual-stack), as grpc-js's binding of [::] did.
    const wildcardPort = await wildcard.listenTcp("[::]:0");
    (await open(wildcardPort, "127.0.0.1")).destroy();
    await assert.rejects(other.listenTcp("nonsense"), /is not HOST:PORT/);
  } finally {
    listener.forceClose();
    other.forceClose();
    wildcard.forceClose();
  }
});

/** A listener serving `server`, with one connection that has exchanged a byte through it. */
async function servingOneCall(server: EchoServer): Promise<{ listener: RpcListener; port: number; socket: Socket }> {
  const listener = new RpcListener(async () => server, () => undefined);
  const port = await listener.listenTcp("127.0.0.1:0");
  const socket = await open(port);
  socket.write("x");
  await receive(socket, 1);
  return { listener, port, socket };
}

test("close() waits for the server's calls to end within the grace time, then cuts them", async () => {
  const graceful = new EchoServer();
  const first = await servingOneCall(graceful);
  try {
    let closed = false;
    const closing = first.listener.close(60_000).then(() => {
      closed = true;
    });
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(graceful.shutdowns, 1);
    assert.equal(closed, false, "close waits for the calls to end");
    graceful.finishShutdown?.();
    await closing;
    assert.equal(graceful.forced, 0);
  } finally {
    first.socket.destroy();
    first.listener.forceClose();
  }

  const stubborn = new EchoServer();
  const second = await servingOneCall(stubborn);
  try {
    await second.listener.close(50);
    assert.equal(stubborn.forced, 1, "calls still open after the grace time are cut");
    // New connections are refused once closing began.
    await assert.rejects(open(second.port));
  } finally {
    second.socket.destroy();
    second.listener.forceClose();
  }
});

test("an agent loads its gRPC server with the first call, not before", async () => {
  const agent = await startAgent({ bind: "127.0.0.1", port: await freeUdpPort(), rpc: `127.0.0.1:${await freeTcpPort()}`, workers: 0, logLevel: "off" });
  try {
    assert.equal((await agent.stats())["rpc.serverLoads"], 0);
    const client = connectClient(agent.rpcAddress);
    try {
      const reply = await client.nodes({});
      assert.equal(reply.nodes.length, 1);
    } finally {
      client.close();
    }
    const stats = await agent.stats();
    assert.equal(stats["rpc.serverLoads"], 1);
    assert.equal(stats["rpc.connections"], 1);
  } finally {
    await agent.stop();
  }
});
