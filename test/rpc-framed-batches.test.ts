/**
 * Tests of sendFramedBatches (src/rpc/adapter.ts), which makes a grpc-js server stream send each
 * batch of buffered messages as one HTTP/2 write of their framed bytes: the framing, what it keeps
 * of grpc-js's own sendMessage (nothing on a cancelled call, headers first, the send limit, write
 * errors, channelz counts), that it applies to grpc-js's real calls, and the send limit end to end.
 */

import { test } from "node:test";
import assert from "node:assert/strict";
import { Writable } from "node:stream";
import * as grpc from "@grpc/grpc-js";
import { TamTam } from "../src/gen/service/tamtam_pb.js";
import { addService, createClient, sendFramedBatches } from "../src/rpc/adapter.js";
import { requireToken } from "../src/rpc/token.js";
import { stubService } from "./helpers/service-stubs.js";
// grpc-js's internal module: only to watch whether its own framing is used.
import { BaseServerInterceptingCall } from "@grpc/grpc-js/build/src/server-interceptors.js";

type Status = { code: grpc.status; details: string };

/** A writable shaped like grpc-js's server stream, over a fake base call that records what it is asked to do. */
function fakeCall(options: { cancelled?: boolean; maxSendMessageSize?: number; failWrites?: boolean } = {}) {
  const written: Buffer[] = [];
  const statuses: Status[] = [];
  const order: string[] = [];
  let sent = 0;
  const base = {
    stream: {
      write(chunk: Buffer, callback: (error?: Error | null) => void): boolean {
        order.push("write");
        written.push(chunk);
        setImmediate(() => callback(options.failWrites === true ? new Error("stream closed") : null));
        return true;
      },
    },
    maxSendMessageSize: options.maxSendMessageSize ?? -1,
    callEventTracker: { addMessageSent: () => void sent++ },
    checkCancelled: () => options.cancelled === true,
    maybeSendMetadata: () => void order.push("metadata"),
    sendStatus: (status: Status) => void statuses.push(status),
  };
  const call = new Writable({ objectMode: true, write: () => assert.fail("grpc-js's own write was used") });
  Object.assign(call, { call: base });
  return { call, written, statuses, order, sent: () => sent };
}

const framings: unknown[] = [];
function framed(message: unknown): Buffer {
  framings.push(message);
  const body = Buffer.from(String(message));
  const out = Buffer.alloc(body.length + 5);
  out.writeUInt32BE(body.length, 1);
  body.copy(out, 5);
  return out;
}

/** The messages in a run of gRPC length-prefixed frames. */
function unframe(bytes: Buffer): string[] {
  const out: string[] = [];
  for (let at = 0; at < bytes.length; ) {
    assert.equal(bytes[at], 0, "uncompressed");
    const length = bytes.readUInt32BE(at + 1);
    out.push(bytes.subarray(at + 5, at + 5 + length).toString());
    at += 5 + length;
  }
  return out;
}

test("a corked batch leaves in one write of its framed messages, after the headers, counted once each", async () => {
  const f = fakeCall();
  assert.equal(sendFramedBatches(f.call as never, framed), true);
  f.call.write("one");
  f.call.cork();
  for (const m of ["two", "three", "four"]) f.call.write(m);
  process.nextTick(() => f.call.uncork());
  await new Promise<void>((resolve) => f.call.end(resolve));
  assert.deepEqual(f.written.map(unframe), [["one"], ["two", "three", "four"]]);
  assert.equal(f.order[0], "metadata");
  assert.equal(f.sent(), 4);
  assert.deepEqual(f.statuses, []);
});

test("nothing is written on a cancelled call", () => {
  const f = fakeCall({ cancelled: true });
  sendFramedBatches(f.call as never, framed);
  f.call.write("lost");
  assert.deepEqual(f.written, []);
  assert.deepEqual(f.statuses, []);
});

test("a message over the send limit ends the call with RESOURCE_EXHAUSTED after the batch's messages before it", () => {
  const f = fakeCall({ maxSendMessageSize: 4 });
  sendFramedBatches(f.call as never, framed);
  f.call.cork();
  f.call.write("ok");
  f.call.write("too long");
  f.call.write("never");
  f.call.uncork();
  assert.deepEqual(f.written.map(unframe), [["ok"]]);
  assert.equal(f.statuses.length, 1);
  assert.equal(f.statuses[0]?.code, grpc.status.RESOURCE_EXHAUSTED);
});

test("a failed write ends the call with INTERNAL", async () => {
  const f = fakeCall({ failWrites: true });
  sendFramedBatches(f.call as never, framed);
  f.call.write("x");
  await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual(f.statuses, [{ code: grpc.status.INTERNAL, details: "Internal server error", metadata: null }]);
  assert.equal(f.sent(), 0);
});

test("a message that cannot be framed ends the call with INTERNAL", () => {
  const f = fakeCall();
  sendFramedBatches(f.call as never, () => {
    throw new Error("bad message");
  });
  f.call.write("x");
  assert.equal(f.statuses[0]?.code, grpc.status.INTERNAL);
  assert.deepEqual(f.written, []);
});

test("a call of another shape keeps grpc-js's writes", () => {
  const call = new Writable({ objectMode: true, write: (_c, _e, cb) => cb() });
  Object.assign(call, { call: { sendMessage: () => undefined } });
  assert.equal(sendFramedBatches(call as never, framed), false);
});

/** Counts grpc-js's own framings (serializeMessage) while `body` runs; on the framed path there are none. */
async function countingGrpcJsFramings(body: () => Promise<void>): Promise<number> {
  const proto = BaseServerInterceptingCall.prototype as unknown as { serializeMessage: (value: unknown) => Buffer };
  const original = proto.serializeMessage;
  let framings = 0;
  proto.serializeMessage = function (this: unknown, value: unknown) {
    framings++;
    return original.call(this, value);
  };
  try {
    await body();
  } finally {
    proto.serializeMessage = original;
  }
  return framings;
}

async function serving(server: grpc.Server, stream: () => AsyncGenerator<{ bytes: Uint8Array }>) {
  addService(server, TamTam, stubService({ stream }));
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  return createClient(TamTam, `127.0.0.1:${port}`);
}

test("grpc-js's server streams take the framed writes, and its send limit still holds", { timeout: 20_000 }, async () => {
  const server = new grpc.Server({ "grpc.max_send_message_length": 100 });
  const client = await serving(server, async function* () {
    yield { bytes: new Uint8Array(10) };
    yield { bytes: new Uint8Array(1000) };
  });
  try {
    const got: number[] = [];
    const framings = await countingGrpcJsFramings(async () => {
      await assert.rejects(
        (async () => {
          for await (const m of client.stream({})) got.push(m.bytes.length);
        })(),
        (err: { code?: number }) => err.code === grpc.status.RESOURCE_EXHAUSTED,
      );
    });
    assert.deepEqual(got, [10]);
    assert.equal(framings, 0, "grpc-js's call changed shape: its streams no longer take the framed writes");
  } finally {
    client.close();
    server.forceShutdown();
  }
});

test("behind the token check too, a stream's messages take the framed writes", { timeout: 20_000 }, async () => {
  const server = new grpc.Server({ interceptors: [requireToken("secret")] });
  const client = await serving(server, async function* () {
    for (let i = 0; i < 50; i++) yield { bytes: new Uint8Array([i]) };
  });
  try {
    const metadata = new grpc.Metadata();
    metadata.set("authorization", "Bearer secret");
    const got: number[] = [];
    const framings = await countingGrpcJsFramings(async () => {
      for await (const m of client.stream({}, { metadata })) got.push(m.bytes[0] as number);
    });
    assert.deepEqual(got, Array.from({ length: 50 }, (_, i) => i));
    assert.equal(framings, 0);
  } finally {
    client.close();
    server.forceShutdown();
  }
});
