/**
 * Tests of the gRPC surface: src/rpc/adapter.ts (typed server handlers and client over the
 * protobuf-es descriptor of proto/service/tamtam.proto) and src/rpc/reflection.ts. A grpc-js
 * server with a tiny in-test TamTam implementation is called
 *   (a) through the typed client,
 *   (b) the way an existing non-TypeScript client would: by method path, with request bytes
 *       written by hand and response bytes compared with hand-computed encodings, so any change
 *       to the wire shape of the compatibility contract fails here,
 *   (c) through server reflection, with `buf curl` reading the schema from the server,
 *   (d) with handlers failing with gRPC status errors, deadlines and cancellation.
 */

import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import {
  TamTam,
  file_service_tamtam,
  LogLevel_Level,
  Response_Code,
  Status,
  type NodeAddress,
  type NodeSchema,
} from "../src/gen/service/tamtam_pb.js";
import { RpcError, addService, createClient } from "../src/rpc/adapter.js";
import { addReflection } from "../src/rpc/reflection.js";
import { stubService } from "./helpers/service-stubs.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url)); // dist/test/ -> repo root
const BUF = `${ROOT}node_modules/.bin/buf`;

// ---------------------------------------------------------------------------------------------
// Fixtures and their hand-computed encodings.

const NODE_A: MessageInitShape<typeof NodeSchema> = {
  address: { IP: "10.0.0.2", port: 7946 },
  age: 1500,
  emitCounter: 3,
  pingMillis: 12,
  timestamp: 1_700_000_000,
  status: Status.ALIVE,
  incarnation: 4,
  state: "alive",
  isSelf: true,
};
const NODE_B: MessageInitShape<typeof NodeSchema> = {
  address: { IP: "10.0.0.3", port: 7946 },
  age: 250,
  emitCounter: 0,
  pingMillis: -1,
  timestamp: 1_700_000_001,
  status: Status.SUSPECTED,
  incarnation: 9,
  state: "suspect",
};

/** Hex with optional spaces -> bytes. */
function hex(s: string): Buffer {
  return Buffer.from(s.replace(/\s+/g, ""), "hex");
}

const WIRE = {
  // NodeAddress{IP:"127.0.0.1", port:9998}: field 1 LEN 9 "127.0.0.1", field 2 varint 9998.
  addr9998: "0a 09 31 32 37 2e 30 2e 30 2e 31  10 8e 4e",
  // NodeAddress{IP:"127.0.0.1", port:7946}
  addr7946: "0a 09 31 32 37 2e 30 2e 30 2e 31  10 8a 3e",
  // Response{code: OK}: every field at its default, so zero bytes.
  ok: "",
  // Response{code: ERROR}
  error: "08 01",
  // Message{bytes:"hello"}
  hello: "0a 05 68 65 6c 6c 6f",
  // Heartbeat{millis:500}
  heartbeat500: "08 f4 03",
  // Heartbeat{millis:-5}: int32 negatives are 10-byte sign-extended varints.
  heartbeatMinus5: "08 fb ff ff ff ff ff ff ff ff 01",
  // LogLevel{level: WARN}
  warn: "08 04",
  // The original (v1) fields of NODE_A, then the added ones.
  nodeA_v1:
    "0a 0d 0a 08 31 30 2e 30 2e 30 2e 32 10 8a 3e" + // address {IP "10.0.0.2", port 7946}
    " 10 dc 0b" + //                                     age 1500
    " 18 03" + //                                        emitCounter 3
    " 20 0c" + //                                        pingMillis 12
    " 28 80 e2 cf aa 06" + //                            timestamp 1700000000
    " 30 01", //                                         status ALIVE
  nodeA_added: "38 04  42 05 61 6c 69 76 65  48 01", // incarnation 4, state "alive", is_self
  nodeB_v1:
    "0a 0d 0a 08 31 30 2e 30 2e 30 2e 33 10 8a 3e" + // address {IP "10.0.0.3", port 7946}
    " 10 fa 01" + //                                     age 250 (emitCounter 0 omitted)
    " 20 ff ff ff ff ff ff ff ff ff 01" + //             pingMillis -1
    " 28 81 e2 cf aa 06" + //                            timestamp 1700000001
    " 30 02", //                                         status SUSPECTED
  nodeB_added: "38 09  42 07 73 75 73 70 65 63 74", // incarnation 9, state "suspect"
  // StatsReply{counters:{ping_sent:7}}: one map entry {key=1 "ping_sent", value=2 7}.
  stats: "0a 0d 0a 09 70 69 6e 67 5f 73 65 6e 74 10 07",
};
const NODE_A_BYTES = `${WIRE.nodeA_v1} ${WIRE.nodeA_added}`; // 30 + 11 = 41 = 0x29 bytes
const NODE_B_BYTES = `${WIRE.nodeB_v1} ${WIRE.nodeB_added}`; // 37 + 11 = 48 = 0x30 bytes

function assertBytes(actual: Buffer, expectedHex: string, label: string): void {
  assert.equal(actual.toString("hex"), hex(expectedHex).toString("hex"), label);
}

// ---------------------------------------------------------------------------------------------
// The in-test service implementation.

interface Seen {
  join?: NodeAddress;
  leave?: NodeAddress;
  broadcast?: string;
  streamed?: string[];
  heartbeatMillis?: number;
  logLevel?: LogLevel_Level;
  ping?: NodeAddress;
  leftCluster: boolean;
  /** Resolvers fired when a hanging call observes its cancellation signal. */
  onAbort: Array<(reason: unknown) => void>;
}

function untilAborted(signal: AbortSignal): Promise<unknown> {
  return new Promise((resolve) => {
    if (signal.aborted) resolve(signal.reason);
    else signal.addEventListener("abort", () => resolve(signal.reason), { once: true });
  });
}

function startServer(seen: Seen): Promise<{ server: grpc.Server; port: number }> {
  const server = new grpc.Server();
  const OK = { code: Response_Code.OK };
  addService(server, TamTam, stubService({
    async join(req, ctx) {
      if (req.IP === "") throw new RpcError(grpc.status.INVALID_ARGUMENT, "IP is required");
      if (req.IP === "10.255.255.1") {
        // A seed that never answers: hang until the client's deadline or cancellation.
        const reason = await untilAborted(ctx.signal);
        for (const notify of seen.onAbort.splice(0)) notify(reason);
        throw new RpcError(grpc.status.UNAVAILABLE, "seed did not answer");
      }
      seen.join = req;
      return OK;
    },
    leave(req) {
      seen.leave = req;
      return OK;
    },
    broadcast(req) {
      // A plain Error (no gRPC code) must reach the client as UNKNOWN with its message.
      if (req.bytes.length === 0) throw new Error("empty broadcast payload");
      seen.broadcast = Buffer.from(req.bytes).toString("utf8");
      return OK;
    },
    async broadcastStream(requests, ctx) {
      const texts: string[] = [];
      for await (const r of requests) {
        const text = Buffer.from(r.bytes).toString("utf8");
        if (text === "fail") throw new RpcError(grpc.status.RESOURCE_EXHAUSTED, `queue full after ${texts.length}`);
        texts.push(text);
      }
      seen.streamed = texts;
      return { accepted: BigInt(texts.length), firstRefusal: ctx.metadata.get("x-tag")[0]?.toString() ?? "" };
    },
    async *stream() {
      yield { bytes: Buffer.from("one") };
      yield { bytes: Buffer.from("two") };
    },
    async *monitor(_req, ctx) {
      yield NODE_A;
      if (ctx.metadata.get("x-fail")[0] === "1") {
        throw new RpcError(grpc.status.FAILED_PRECONDITION, "membership not started");
      }
      yield NODE_B;
      if (ctx.metadata.get("x-follow")[0] === "1") {
        const reason = await untilAborted(ctx.signal);
        for (const notify of seen.onAbort.splice(0)) notify(reason);
      }
    },
    nodes: () => ({ nodes: [NODE_A, NODE_B] }),
    healthy: () => ({ nodes: [NODE_A] }),
    setHeartbeat(req) {
      if (req.millis <= 0) {
        throw new RpcError(grpc.status.INVALID_ARGUMENT, `heartbeat must be positive, got ${req.millis} ms`);
      }
      seen.heartbeatMillis = req.millis;
      return OK;
    },
    setLogThreshold(req) {
      seen.logLevel = req.level;
      return OK;
    },
    ping(req) {
      seen.ping = req;
      return { code: req.port === 9998 ? Response_Code.ERROR : Response_Code.OK };
    },
    localAddress: () => ({ IP: "127.0.0.1", port: 7946 }),
    leaveCluster() {
      seen.leftCluster = true;
      return OK;
    },
    stats: () => ({ counters: { ping_sent: 7n } }),
  }));
  addReflection(server, [file_service_tamtam]);
  return new Promise((resolve, reject) => {
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, port) =>
      err ? reject(err) : resolve({ server, port }),
    );
  });
}

// ---------------------------------------------------------------------------------------------
// Helpers: a raw client (as a non-TypeScript client would call), buf curl.

const identity = (b: Buffer): Buffer => b;

function rawUnary(client: grpc.Client, method: string, requestHex: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    client.makeUnaryRequest(
      `/service.TamTam/${method}`,
      identity,
      identity,
      hex(requestHex),
      new grpc.Metadata(),
      { deadline: Date.now() + 5000 },
      (err, value) => (err ? reject(err) : value === undefined ? reject(new Error("no value")) : resolve(value)),
    );
  });
}

async function rawServerStream(client: grpc.Client, method: string, requestHex: string): Promise<Buffer[]> {
  const call = client.makeServerStreamRequest(
    `/service.TamTam/${method}`,
    identity,
    identity,
    hex(requestHex),
    new grpc.Metadata(),
    { deadline: Date.now() + 5000 },
  );
  const out: Buffer[] = [];
  for await (const chunk of call as AsyncIterable<Buffer>) out.push(chunk);
  return out;
}

/** Runs `buf <args>` (own process group, killed in `finally`); resolves with stdout. */
async function runBuf(args: readonly string[], timeoutMs = 10_000): Promise<string> {
  const child = spawn(BUF, [...args], { cwd: ROOT, detached: true, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (s: string) => (stdout += s));
  child.stderr.setEncoding("utf8").on("data", (s: string) => (stderr += s));
  let timer: NodeJS.Timeout | undefined;
  try {
    const code = await new Promise<number | null>((resolve, reject) => {
      child.once("error", reject);
      child.once("close", (c) => resolve(c));
      timer = setTimeout(() => reject(new Error(`buf ${args.join(" ")}: timed out`)), timeoutMs);
    });
    assert.equal(code, 0, `buf ${args.join(" ")} failed: ${stderr}`);
    return stdout;
  } finally {
    clearTimeout(timer);
    if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) {
      try {
        process.kill(-child.pid, "SIGKILL"); // the npm shim runs the real binary as a child
      } catch {
        // already gone
      }
    }
  }
}

async function collect<T>(iterable: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of iterable) out.push(item);
  return out;
}

function isStatus(code: grpc.status, details?: string): (err: unknown) => boolean {
  return (err) => {
    const e = err as Partial<grpc.StatusObject>;
    assert.equal(e.code, code, `expected ${grpc.status[code]}, got ${String(e.code)} (${String(e.details)})`);
    if (details !== undefined) assert.equal(e.details, details);
    return true;
  };
}

// ---------------------------------------------------------------------------------------------

test("TamTam gRPC adapter, wire compatibility and reflection", { timeout: 15_000 }, async (t) => {
  const seen: Seen = { leftCluster: false, onAbort: [] };
  const { server, port } = await startServer(seen);
  const target = `127.0.0.1:${port}`;
  const client = createClient(TamTam, target, grpc.credentials.createInsecure(), { defaultTimeoutMs: 5000 });
  const raw = new grpc.Client(target, grpc.credentials.createInsecure());
  // Compile-time checks only (never called): request/response types flow from the descriptor.
  const typeChecks = (): void => {
    // @ts-expect-error -- field names are the contract's: `IP`, not `ip`
    void client.join({ ip: "127.0.0.1" });
    // @ts-expect-error -- Monitor is server-streaming: an async iterable, not a promise
    void client.monitor({}).then;
    // @ts-expect-error -- enum fields take the generated enum, not its name
    void client.setLogThreshold({ level: "WARN" });
  };
  void typeChecks;
  try {
    await t.test("(a) typed client: the 11 original RPCs", async () => {
      const addr = { IP: "127.0.0.1", port: 9998 };
      assert.equal((await client.join(addr)).code, Response_Code.OK);
      assert.deepEqual([seen.join?.IP, seen.join?.port], ["127.0.0.1", 9998]);
      assert.equal((await client.leave(addr)).code, Response_Code.OK);
      assert.equal(seen.leave?.port, 9998);
      assert.equal((await client.broadcast({ bytes: Buffer.from("hello") })).code, Response_Code.OK);
      assert.equal(seen.broadcast, "hello");

      const streamed = await collect(client.stream({}));
      assert.deepEqual(
        streamed.map((m) => Buffer.from(m.bytes).toString()),
        ["one", "two"],
      );
      const monitored = await collect(client.monitor({}));
      assert.equal(monitored.length, 2);
      assert.equal(monitored[0]?.address?.IP, "10.0.0.2");
      assert.equal(monitored[0]?.status, Status.ALIVE);
      assert.equal(monitored[1]?.pingMillis, -1);
      assert.equal(monitored[1]?.state, "suspect");

      const nodes = await client.nodes({});
      assert.equal(nodes.nodes.length, 2);
      const a = nodes.nodes[0];
      assert.deepEqual(
        [a?.address?.IP, a?.address?.port, a?.age, a?.emitCounter, a?.pingMillis, a?.timestamp, a?.status],
        ["10.0.0.2", 7946, 1500, 3, 12, 1_700_000_000, Status.ALIVE],
      );
      assert.deepEqual([a?.incarnation, a?.state, a?.isSelf], [4, "alive", true]);
      const healthy = await client.healthy({});
      assert.deepEqual(
        healthy.nodes.map((n) => n.address?.IP),
        ["10.0.0.2"],
      );

      assert.equal((await client.setHeartbeat({ millis: 500 })).code, Response_Code.OK);
      assert.equal(seen.heartbeatMillis, 500);
      assert.equal((await client.setLogThreshold({ level: LogLevel_Level.WARN })).code, Response_Code.OK);
      assert.equal(seen.logLevel, LogLevel_Level.WARN);
      assert.equal((await client.ping(addr)).code, Response_Code.ERROR);
      assert.equal((await client.ping({ IP: "127.0.0.1", port: 7946 })).code, Response_Code.OK);
      const local = await client.localAddress({});
      assert.deepEqual([local.IP, local.port], ["127.0.0.1", 7946]);
    });

    await t.test("(a) typed client: the added RPCs", async () => {
      assert.equal((await client.leaveCluster({})).code, Response_Code.OK);
      assert.equal(seen.leftCluster, true);
      assert.deepEqual((await client.stats({})).counters, { ping_sent: 7n });
    });

    await t.test("(a) typed client: client streaming sends in order, with metadata, and gets the one reply", async () => {
      const metadata = new grpc.Metadata();
      metadata.set("x-tag", "tagged");
      const call = client.broadcastStream({ metadata });
      // More than the HTTP/2 windows hold, so `send` has to wait for the server to read.
      const texts = Array.from({ length: 3000 }, (_, i) => `message ${i} ${"x".repeat(64)}`);
      for (const text of texts) await call.send({ bytes: Buffer.from(text) });
      const reply = await call.finish();
      assert.equal(reply.accepted, 3000n);
      assert.equal(reply.firstRefusal, "tagged");
      assert.deepEqual(seen.streamed, texts);

      const failing = client.broadcastStream();
      await failing.send({ bytes: Buffer.from("a") });
      await failing.send({ bytes: Buffer.from("fail") });
      await assert.rejects(failing.finish(), (e: grpc.ServiceError) => e.code === grpc.status.RESOURCE_EXHAUSTED && e.details === "queue full after 1");
      await assert.rejects(failing.send({ bytes: Buffer.from("late") }), (e: grpc.ServiceError) => e.code === grpc.status.RESOURCE_EXHAUSTED);
    });

    await t.test("(b) raw client by path with hand-written protobuf bytes", async () => {
      // Forget what the typed calls recorded, so each check below sees the raw call's effect.
      Object.assign(seen, { join: undefined, leave: undefined, broadcast: undefined });
      Object.assign(seen, { heartbeatMillis: undefined, logLevel: undefined, ping: undefined });
      assertBytes(await rawUnary(raw, "Join", WIRE.addr9998), WIRE.ok, "Join");
      assert.deepEqual([seen.join?.IP, seen.join?.port], ["127.0.0.1", 9998]);
      assertBytes(await rawUnary(raw, "Leave", WIRE.addr9998), WIRE.ok, "Leave");
      assert.deepEqual([seen.leave?.IP, seen.leave?.port], ["127.0.0.1", 9998]);
      assertBytes(await rawUnary(raw, "Broadcast", WIRE.hello), WIRE.ok, "Broadcast");
      assert.equal(seen.broadcast, "hello");

      const streamed = await rawServerStream(raw, "Stream", "");
      assert.equal(streamed.length, 2);
      assertBytes(streamed[0] ?? Buffer.alloc(0), "0a 03 6f 6e 65", "Stream[0]"); // bytes "one"
      assertBytes(streamed[1] ?? Buffer.alloc(0), "0a 03 74 77 6f", "Stream[1]"); // bytes "two"

      const monitored = await rawServerStream(raw, "Monitor", "");
      assert.equal(monitored.length, 2);
      assertBytes(monitored[0] ?? Buffer.alloc(0), NODE_A_BYTES, "Monitor[0]");
      assertBytes(monitored[1] ?? Buffer.alloc(0), NODE_B_BYTES, "Monitor[1]");
      // An old client stops understanding at the added fields: the v1 fields come first, intact.
      assertBytes((monitored[0] ?? Buffer.alloc(0)).subarray(0, 30), WIRE.nodeA_v1, "Monitor[0] v1 prefix");

      assertBytes(await rawUnary(raw, "Nodes", ""), `0a 29 ${NODE_A_BYTES}  0a 30 ${NODE_B_BYTES}`, "Nodes");
      assertBytes(await rawUnary(raw, "Healthy", ""), `0a 29 ${NODE_A_BYTES}`, "Healthy");

      assertBytes(await rawUnary(raw, "SetHeartbeat", WIRE.heartbeat500), WIRE.ok, "SetHeartbeat");
      assert.equal(seen.heartbeatMillis, 500);
      assertBytes(await rawUnary(raw, "SetLogThreshold", WIRE.warn), WIRE.ok, "SetLogThreshold");
      assert.equal(seen.logLevel, LogLevel_Level.WARN);
      assertBytes(await rawUnary(raw, "Ping", WIRE.addr9998), WIRE.error, "Ping");
      assert.deepEqual([seen.ping?.IP, seen.ping?.port], ["127.0.0.1", 9998]);
      assertBytes(await rawUnary(raw, "LocalAddress", ""), WIRE.addr7946, "LocalAddress");

      // The added RPCs, same service, same conventions.
      assertBytes(await rawUnary(raw, "LeaveCluster", ""), WIRE.ok, "LeaveCluster");
      assertBytes(await rawUnary(raw, "Stats", ""), WIRE.stats, "Stats");
    });

    await t.test("(c) reflection: buf curl lists the service and calls it", async () => {
      const base = `http://${target}`;
      const flags = ["curl", "--protocol", "grpc", "--http2-prior-knowledge"];
      const listed = (await runBuf([...flags, "--list-methods", base])).trim().split("\n").sort();
      const expected = [
        "Broadcast", "BroadcastStream", "Healthy", "InstallKey", "Join", "Leave", "LeaveCluster", "ListKeys", "LocalAddress", "Monitor",
        "Nodes", "Ping", "RemoveKey", "SetHeartbeat", "SetLogThreshold", "Stats", "Stream", "UseKey",
        "SetTags", "DeleteTags", "Query", "ServeQueries", "RespondQuery",
      ].map((m) => `service.TamTam/${m}`);
      assert.deepEqual(listed, expected.sort());

      const pinged = JSON.parse(
        await runBuf([...flags, "-d", '{"IP":"127.0.0.1","port":9998}', `${base}/service.TamTam/Ping`]),
      ) as unknown;
      assert.deepEqual(pinged, { code: "ERROR" });
      // The JSON mapping keeps the contract's field names.
      const healthy = JSON.parse(await runBuf([...flags, `${base}/service.TamTam/Healthy`])) as unknown;
      assert.deepEqual(healthy, {
        nodes: [
          {
            address: { IP: "10.0.0.2", port: 7946 },
            age: 1500,
            emitCounter: 3,
            pingMillis: 12,
            timestamp: 1700000000,
            status: "ALIVE",
            incarnation: 4,
            state: "alive",
            isSelf: true,
          },
        ],
      });
    });

    await t.test("(d) gRPC status errors reach the client with code and message", async () => {
      await assert.rejects(
        client.setHeartbeat({ millis: -5 }),
        isStatus(grpc.status.INVALID_ARGUMENT, "heartbeat must be positive, got -5 ms"),
      );
      await assert.rejects(
        rawUnary(raw, "SetHeartbeat", WIRE.heartbeatMinus5),
        isStatus(grpc.status.INVALID_ARGUMENT, "heartbeat must be positive, got -5 ms"),
      );
      await assert.rejects(client.join({}), isStatus(grpc.status.INVALID_ARGUMENT, "IP is required"));
      await assert.rejects(
        client.broadcast({ bytes: new Uint8Array() }),
        isStatus(grpc.status.UNKNOWN, "empty broadcast payload"),
      );
      // A streaming handler failing after its first message: the message arrives, then the error.
      const md = new grpc.Metadata();
      md.set("x-fail", "1");
      const got: string[] = [];
      await assert.rejects(
        (async () => {
          for await (const n of client.monitor({}, { metadata: md })) got.push(n.address?.IP ?? "");
        })(),
        isStatus(grpc.status.FAILED_PRECONDITION, "membership not started"),
      );
      assert.deepEqual(got, ["10.0.0.2"]);
    });

    await t.test("deadlines and cancellation propagate to the handler", async () => {
      const hanging = { IP: "10.255.255.1", port: 7946 };
      let aborted = new Promise<unknown>((resolve) => seen.onAbort.push(resolve));
      await assert.rejects(client.join(hanging, { timeoutMs: 100 }), isStatus(grpc.status.DEADLINE_EXCEEDED));
      await aborted; // the handler's signal fired

      aborted = new Promise<unknown>((resolve) => seen.onAbort.push(resolve));
      const controller = new AbortController();
      setTimeout(() => controller.abort(), 50);
      await assert.rejects(client.join(hanging, { signal: controller.signal }), isStatus(grpc.status.CANCELLED));
      await aborted;

      // An already-aborted signal never starts the call.
      await assert.rejects(client.ping(hanging, { signal: AbortSignal.abort() }), isStatus(grpc.status.CANCELLED));

      // Leaving a server stream early cancels it on the server.
      aborted = new Promise<unknown>((resolve) => seen.onAbort.push(resolve));
      const md = new grpc.Metadata();
      md.set("x-follow", "1");
      let count = 0;
      for await (const _node of client.monitor({}, { metadata: md })) {
        if (++count === 2) break;
      }
      assert.equal(count, 2);
      await aborted;
    });
  } finally {
    client.close();
    raw.close();
    server.forceShutdown();
  }
});
