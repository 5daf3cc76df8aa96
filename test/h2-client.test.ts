/**
 * Tests of src/rpc/h2-client.ts, the command line's small gRPC client (on src/rpc/h2-session.ts),
 * against a real grpc-js server (the agent's server stack: adapter.ts + status.ts): unary answers and
 * failures with their status, message and tamtam-error trailer; server streams in order, with
 * flow control under a slow reader, ending with OK or a status; deadlines; cancellation seen by
 * the server; an absent server; an unknown method; a response that does not decode; a server
 * on a Unix socket (`unix:PATH`).
 */

import { test } from "node:test";
import assert from "node:assert/strict";
import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer as createH2Server } from "node:http2";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { Response_Code, TamTam } from "../src/gen/service/tamtam_pb.js";
import { addService } from "../src/rpc/adapter.js";
import { GrpcStatus } from "../src/rpc/grpc-wire.js";
import { createH2Client } from "../src/rpc/h2-client.js";
import { AgentError } from "../src/api/errors.js";
import { toRpcError } from "../src/rpc/status.js";
import { rejection } from "./helpers/rpc-errors.js";
import { stubService } from "./helpers/service-stubs.js";

const STREAM_MESSAGES = 2_000;

interface Server {
  readonly address: string;
  /** Resolves when a hanging call sees its cancellation. */
  readonly cancelled: Promise<void>;
  close(): void;
}

function untilAborted(signal: AbortSignal): Promise<void> {
  return signal.aborted ? Promise.resolve() : once(signal, "abort").then(() => undefined);
}

/** A server on `bindHost` (an IP, or a whole `unix:PATH` address). */
async function startServer(bindHost = "127.0.0.1"): Promise<Server> {
  const server = new grpc.Server();
  let seeCancel: () => void = () => undefined;
  const cancelled = new Promise<void>((resolve) => {
    seeCancel = resolve;
  });
  const OK = { code: Response_Code.OK };
  addService(server, TamTam, stubService({
    join(req) {
      if (req.IP === "10.0.0.9") throw toRpcError(new AgentError("NO_ANSWER", "10.0.0.9:9999 did not answer"));
      return OK;
    },
    async broadcast(req, ctx) {
      if (req.bytes.length === 0) throw toRpcError(new AgentError("EMPTY_BROADCAST", "the message is empty"));
      if (Buffer.from(req.bytes).toString() === "hang") {
        await untilAborted(ctx.signal);
        seeCancel();
        throw toRpcError(new AgentError("INTERNAL", "cancelled"));
      }
      return OK;
    },
    async *stream() {
      for (let i = 0; i < STREAM_MESSAGES; i++) yield { bytes: Buffer.from(`message ${i}`) };
    },
    async broadcastStream(requests) {
      let accepted = 0n;
      let refused = 0n;
      let bytes = 0;
      for await (const r of requests) {
        const text = Buffer.from(r.bytes).toString();
        if (text === "boom") throw toRpcError(new AgentError("BROADCAST_QUEUE_FULL", "the broadcast queue stayed full"));
        if (r.bytes.length === 0) refused++;
        else accepted++;
        bytes += r.bytes.length;
      }
      return { accepted, refused, firstRefusal: refused > 0n ? "empty" : "", queueFullWaits: BigInt(bytes) };
    },
    async *monitor(_req, ctx) {
      yield { address: { IP: "10.0.0.2", port: 7946 }, state: "alive" };
      await untilAborted(ctx.signal);
      seeCancel();
    },
    nodes: () => ({ nodes: [{ address: { IP: "10.0.0.2", port: 7946 }, state: "alive" }] }),
    healthy: () => {
      throw toRpcError(new AgentError("SHUTTING_DOWN", "the agent is shutting down"));
    },
    stats: () => ({ counters: { ping_sent: 7n } }),
  }));
  const unix = bindHost.startsWith("unix:");
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(unix ? bindHost : `${bindHost}:0`, grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  return { address: unix ? bindHost : `${bindHost}:${port}`, cancelled, close: () => server.forceShutdown() };
}

/** A TCP port nobody listens on (bound, read, closed). */
async function closedPort(): Promise<number> {
  const probe = createServer();
  probe.listen(0, "127.0.0.1");
  await once(probe, "listening");
  const port = (probe.address() as { port: number }).port;
  probe.close();
  await once(probe, "close");
  return port;
}

test("unary calls answer with the decoded message", async () => {
  const server = await startServer();
  const client = createH2Client(TamTam, server.address, { defaultTimeoutMs: 5_000 });
  try {
    assert.deepEqual({ ...(await client.localAddress({})) }, { $typeName: "service.NodeAddress", IP: "10.0.0.1", port: 9999 });
    const nodes = await client.nodes({});
    assert.equal(nodes.nodes[0]?.address?.IP, "10.0.0.2");
    assert.equal(nodes.nodes[0]?.state, "alive");
    // Several calls share the connection.
    const [a, b] = await Promise.all([client.join({ IP: "10.0.0.2", port: 1 }), client.stats({})]);
    assert.equal(a.code, Response_Code.OK);
    assert.equal(b.counters.ping_sent, 7n);
  } finally {
    client.close();
    server.close();
  }
});

test("a failed unary call carries the status, the message and the agent's error code", async () => {
  const server = await startServer();
  const client = createH2Client(TamTam, server.address);
  try {
    const noAnswer = await rejection(client.join({ IP: "10.0.0.9", port: 9999 }));
    assert.equal(noAnswer.code, GrpcStatus.UNAVAILABLE);
    assert.equal(noAnswer.details, "10.0.0.9:9999 did not answer");
    assert.deepEqual(noAnswer.metadata.get("tamtam-error"), ["NO_ANSWER"]);
    const empty = await rejection(client.broadcast({ bytes: new Uint8Array() }));
    assert.equal(empty.code, GrpcStatus.INVALID_ARGUMENT);
    assert.deepEqual(empty.metadata.get("tamtam-error"), ["EMPTY_BROADCAST"]);
    const shutting = await rejection(client.healthy({}));
    assert.equal(shutting.code, GrpcStatus.UNAVAILABLE);
    assert.equal(shutting.details, "the agent is shutting down");
  } finally {
    client.close();
    server.close();
  }
});

test("a server stream arrives whole and in order, even behind a slow reader", async () => {
  const server = await startServer();
  const client = createH2Client(TamTam, server.address);
  try {
    let count = 0;
    for await (const message of client.stream({})) {
      assert.equal(Buffer.from(message.bytes).toString(), `message ${count}`);
      count++;
      if (count % 100 === 0) await new Promise((resolve) => setImmediate(resolve)); // a reader that lags
    }
    assert.equal(count, STREAM_MESSAGES);
  } finally {
    client.close();
    server.close();
  }
});

test("a client stream arrives whole (more than the HTTP/2 windows hold) and gets the one reply", async () => {
  const server = await startServer();
  const client = createH2Client(TamTam, server.address);
  try {
    let bytes = 0;
    async function* requests(): AsyncGenerator<{ bytes: Uint8Array }> {
      for (let i = 0; i < 5_000; i++) {
        const payload = Buffer.from(`message ${i} ${"y".repeat(100)}`);
        bytes += payload.length;
        yield { bytes: payload };
      }
      yield { bytes: new Uint8Array(0) };
    }
    const reply = await client.broadcastStream(requests());
    assert.deepEqual([reply.accepted, reply.refused, reply.firstRefusal], [5_000n, 1n, "empty"]);
    assert.equal(reply.queueFullWaits, BigInt(bytes), "every byte reached the server");
  } finally {
    client.close();
    server.close();
  }
});

test("a client stream the server fails rejects with its status, and no more requests are taken", async () => {
  const server = await startServer();
  const client = createH2Client(TamTam, server.address);
  try {
    let taken = 0;
    async function* requests(): AsyncGenerator<{ bytes: Uint8Array }> {
      for (const text of ["one", "boom"]) {
        taken++;
        yield { bytes: Buffer.from(text) };
      }
      // Held open: the server's failure must end the call without this iterable ending.
      await new Promise(() => undefined);
    }
    const failure = await rejection(client.broadcastStream(requests()));
    assert.equal(failure.code, GrpcStatus.RESOURCE_EXHAUSTED);
    assert.equal(failure.details, "the broadcast queue stayed full");
    assert.equal(failure.metadata.get("tamtam-error")[0], "BROADCAST_QUEUE_FULL");
    assert.equal(taken, 2);
  } finally {
    client.close();
    server.close();
  }
});

test("aborting a stream cancels it on the server and ends the iteration with CANCELLED", async () => {
  const server = await startServer();
  const client = createH2Client(TamTam, server.address);
  try {
    const stop = new AbortController();
    const seen: string[] = [];
    const failure = await rejection(
      (async () => {
        for await (const node of client.monitor({}, { signal: stop.signal })) {
          seen.push(node.state);
          stop.abort();
        }
      })(),
    );
    assert.equal(failure.code, GrpcStatus.CANCELLED);
    assert.deepEqual(seen, ["alive"]);
    await server.cancelled;
  } finally {
    client.close();
    server.close();
  }
});

test("breaking out of a stream cancels it on the server", async () => {
  const server = await startServer();
  const client = createH2Client(TamTam, server.address);
  try {
    for await (const node of client.monitor({})) {
      assert.equal(node.state, "alive");
      break;
    }
    await server.cancelled;
  } finally {
    client.close();
    server.close();
  }
});

test("a call past its deadline fails with DEADLINE_EXCEEDED and the server sees the cancellation", async () => {
  const server = await startServer();
  const client = createH2Client(TamTam, server.address);
  try {
    const late = await rejection(client.broadcast({ bytes: Buffer.from("hang") }, { timeoutMs: 50 }));
    assert.equal(late.code, GrpcStatus.DEADLINE_EXCEEDED);
    await server.cancelled;
  } finally {
    client.close();
    server.close();
  }
});

test("no server at the address: UNAVAILABLE, for unary calls and streams", async () => {
  const client = createH2Client(TamTam, `127.0.0.1:${await closedPort()}`);
  try {
    const unary = await rejection(client.nodes({}));
    assert.equal(unary.code, GrpcStatus.UNAVAILABLE);
    assert.deepEqual(unary.metadata.get("tamtam-error"), []);
    const stream = await rejection((async () => {
      for await (const _ of client.stream({})) assert.fail("no message can arrive");
    })());
    assert.equal(stream.code, GrpcStatus.UNAVAILABLE);
  } finally {
    client.close();
  }
});

test("a method the server does not have: UNIMPLEMENTED", async () => {
  const server = new grpc.Server(); // serves nothing
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  const client = createH2Client(TamTam, `127.0.0.1:${port}`);
  try {
    const missing = await rejection(client.stats({}));
    assert.equal(missing.code, GrpcStatus.UNIMPLEMENTED);
  } finally {
    client.close();
    server.forceShutdown();
  }
});

test("a response message that does not decode fails the call with INTERNAL, not the program", async () => {
  // An HTTP/2 server that answers every call with a message of bytes no protobuf can decode.
  const server = createH2Server();
  const sessions = new Set<{ destroy(): void }>();
  server.on("session", (session) => sessions.add(session));
  server.on("stream", (stream) => {
    stream.respond({ ":status": 200, "content-type": "application/grpc+proto" }, { waitForTrailers: true });
    stream.on("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
    stream.end(Buffer.from([0, 0, 0, 0, 2, 0xff, 0xff]));
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const client = createH2Client(TamTam, `127.0.0.1:${(server.address() as { port: number }).port}`);
  try {
    assert.equal((await rejection(client.nodes({}))).code, GrpcStatus.INTERNAL);
    const stream = client.monitor({});
    await assert.rejects(async () => {
      for await (const _ of stream);
    }, (error: { code?: number }) => error.code === GrpcStatus.INTERNAL);
  } finally {
    client.close();
    for (const session of sessions) session.destroy();
    server.close();
  }
});

test("an already aborted signal fails the call at once with CANCELLED", async () => {
  const server = await startServer();
  const client = createH2Client(TamTam, server.address);
  try {
    const failure = await rejection(client.nodes({}, { signal: AbortSignal.abort() }));
    assert.equal(failure.code, GrpcStatus.CANCELLED);
  } finally {
    client.close();
    server.close();
  }
});

test("localhost reaches an agent that listens on either loopback address", async () => {
  for (const bindHost of ["127.0.0.1", "[::1]"]) {
    const server = await startServer(bindHost);
    const client = createH2Client(TamTam, server.address.replace(bindHost, "localhost"));
    try {
      assert.equal((await client.localAddress({})).IP, "10.0.0.1", `bound to ${bindHost}`);
    } finally {
      client.close();
      server.close();
    }
  }
});

test("unix:PATH reaches a server on that Unix socket: absolute, relative and unix:///PATH, unary and streams", async () => {
  const dir = mkdtempSync(join(tmpdir(), "tamtam-h2-"));
  const path = join(dir, "agent.sock");
  try {
    const server = await startServer(`unix:${path}`);
    try {
      // The same socket named the three ways grpc-js reads a unix: address.
      for (const address of [`unix:${path}`, `unix:${relative(process.cwd(), path)}`, `unix://${path}`]) {
        const client = createH2Client(TamTam, address, { defaultTimeoutMs: 5_000 });
        try {
          assert.equal((await client.localAddress({})).IP, "10.0.0.1", address);
          const failed = await rejection(client.healthy({}));
          assert.equal(failed.code, GrpcStatus.UNAVAILABLE, address);
          assert.equal(failed.details, "the agent is shutting down");
          let count = 0;
          for await (const message of client.stream({})) {
            assert.equal(Buffer.from(message.bytes).toString(), `message ${count}`);
            count++;
          }
          assert.equal(count, STREAM_MESSAGES, address);
        } finally {
          client.close();
        }
      }
    } finally {
      server.close();
    }
    // Nobody listens on the socket any more (or on a path that never was one): UNAVAILABLE.
    for (const address of [`unix:${path}`, `unix:${join(dir, "none.sock")}`]) {
      const client = createH2Client(TamTam, address);
      try {
        assert.equal((await rejection(client.nodes({}))).code, GrpcStatus.UNAVAILABLE, address);
      } finally {
        client.close();
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("extra request headers travel with every call, unary and streaming", async () => {
  const seen: string[] = [];
  const server = new grpc.Server();
  const header = (ctx: { metadata: grpc.Metadata }): void => {
    seen.push(String(ctx.metadata.get("x-tamtam-test")[0]));
  };
  addService(server, TamTam, stubService({
    broadcastStream: async (requests, ctx) => {
      header(ctx);
      for await (const _ of requests);
      return {};
    },
    nodes: (_req, ctx) => {
      header(ctx);
      return { nodes: [] };
    },
    async *stream(_req, ctx) {
      header(ctx);
      yield { bytes: Buffer.from("x") };
    },
  }));
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  // A header named like one gRPC needs cannot replace it: the call still works.
  const client = createH2Client(TamTam, `127.0.0.1:${port}`, { headers: { "x-tamtam-test": "yes", "content-type": "text/plain" } });
  try {
    await client.nodes({});
    for await (const _ of client.stream({})) void _;
    assert.deepEqual(seen, ["yes", "yes"]);
  } finally {
    client.close();
    server.forceShutdown();
  }
});
