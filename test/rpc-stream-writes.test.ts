/**
 * Tests of how src/rpc/adapter.ts writes a server stream: every buffered message goes to HTTP/2
 * in one batch (grpc-js alone sends one per event-loop turn), in order and complete, and a reader
 * that stops reading holds the handler back within a bound (the write-ahead plus the transport's
 * flow-control window), instead of letting the agent buffer without limit.
 */

import { test } from "node:test";
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { TamTam } from "../src/gen/service/tamtam_pb.js";
import { STREAM_WRITE_AHEAD_MESSAGES, addService, createClient } from "../src/rpc/adapter.js";
import { stubService } from "./helpers/service-stubs.js";

const MESSAGES = 5000;
const MESSAGE_BYTES = 1024;

function payload(i: number): Uint8Array {
  const bytes = new Uint8Array(MESSAGE_BYTES);
  new DataView(bytes.buffer).setUint32(0, i);
  return bytes;
}

test("server streams: batched writes, in order, bounded by a slow reader", { timeout: 30_000 }, async (t) => {
  let pulled = 0;
  let turns = 0;
  let counting = false;
  const countTurns = (): void => {
    turns++;
    if (counting) setImmediate(countTurns);
  };
  const server = new grpc.Server();
  addService(
    server,
    TamTam,
    stubService({
      async *stream() {
        for (let i = 0; i < MESSAGES; i++) {
          pulled = i + 1;
          yield { bytes: payload(i) };
        }
      },
    }),
  );
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  const client = createClient(TamTam, `127.0.0.1:${port}`);
  try {
    await t.test("every message arrives once, in order, many per event-loop turn", async () => {
      pulled = 0;
      turns = 0;
      counting = true;
      setImmediate(countTurns);
      let next = 0;
      try {
        for await (const m of client.stream({})) {
          assert.equal(m.bytes.length, MESSAGE_BYTES);
          assert.equal(new DataView(m.bytes.buffer, m.bytes.byteOffset).getUint32(0), next);
          next++;
        }
      } finally {
        counting = false;
      }
      assert.equal(next, MESSAGES);
      // Server and client share this process's turns. grpc-js alone sends one message per turn
      // (about 2 per turn here); fewer than 8 means its call changed shape and the adapter's
      // batching (sendFramedBatches) no longer applies.
      assert.ok(MESSAGES / turns > 8, `${MESSAGES} messages took ${turns} event-loop turns`);
    });

    await t.test("a reader that stops holds the handler back, then gets everything", async () => {
      pulled = 0;
      const iterator = client.stream({})[Symbol.asyncIterator]();
      const first = await iterator.next();
      assert.equal(first.done, false);
      // Not reading for a while: without backpressure the handler would run through all 5,000.
      await new Promise((resolve) => setTimeout(resolve, 300));
      const window = 65_535 / MESSAGE_BYTES;
      assert.ok(pulled < STREAM_WRITE_AHEAD_MESSAGES + 4 * window + 200, `the handler ran ahead by ${pulled} messages`);
      let next = 1;
      for (;;) {
        const r = await iterator.next();
        if (r.done === true) break;
        assert.equal(new DataView(r.value.bytes.buffer, r.value.bytes.byteOffset).getUint32(0), next);
        next++;
      }
      assert.equal(next, MESSAGES);
    });
  } finally {
    client.close();
    server.forceShutdown();
  }
});
