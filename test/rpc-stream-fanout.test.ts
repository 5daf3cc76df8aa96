/**
 * Tests that a fan-out to many stream subscribers is encoded once: the Stream and Monitor
 * handlers (src/rpc/service.ts) hand every subscriber the same message object for one item (in
 * one batch for the items published together), and a server stream's serializer
 * (src/rpc/adapter.ts) encodes one message object once however many calls write it; unary
 * replies are encoded afresh each time. Then, over a real server, 20 subscribers each receive
 * every broadcast once, in order.
 */

import { test } from "node:test";
import assert from "node:assert/strict";
import * as grpc from "@grpc/grpc-js";
import { create, fromBinary, isMessage } from "@bufbuild/protobuf";
import { Fanout } from "../src/agent/fanout.js";
import type { AgentApi } from "../src/api/agent-api.js";
import { EmptySchema, MessageSchema, ResponseSchema, TamTam } from "../src/gen/service/tamtam_pb.js";
import { addService, createClient, MessageBatch, serviceDefinition, type CallContext } from "../src/rpc/adapter.js";
import { tamTamService } from "../src/rpc/service.js";

/** An AgentApi whose only working part is the broadcast fan-out (all a Stream call touches). */
function streamingAgent(broadcasts: Fanout<Uint8Array>): AgentApi {
  return { subscribeBroadcasts: () => broadcasts.subscribe() } as unknown as AgentApi;
}

function context(signal: AbortSignal): CallContext {
  return { signal, metadata: new grpc.Metadata(), peer: "test", deadline: Infinity };
}

test("a server stream's serializer encodes one message object once; a unary reply's is encoded each time", () => {
  const definition = serviceDefinition(TamTam);
  const message = create(MessageSchema, { bytes: new Uint8Array([1, 2, 3]) });
  const first = definition.stream.responseSerialize(message);
  assert.equal(definition.stream.responseSerialize(message), first, "the same Buffer for the same object");
  assert.deepEqual([...fromBinary(MessageSchema, first).bytes], [1, 2, 3]);
  const equal = create(MessageSchema, { bytes: new Uint8Array([1, 2, 3]) });
  assert.notEqual(definition.stream.responseSerialize(equal), first, "another object is encoded on its own");
  const reply = create(ResponseSchema, {});
  assert.notEqual(definition.join.responseSerialize(reply), definition.join.responseSerialize(reply));
});

test("every Stream subscriber gets the same message objects, one batch per run of broadcasts", async () => {
  const broadcasts = new Fanout<Uint8Array>(16, 8);
  const service = tamTamService(streamingAgent(broadcasts));
  const abort = new AbortController();
  const calls = [0, 1, 2].map(() => service.stream(create(EmptySchema, {}), context(abort.signal))[Symbol.asyncIterator]());
  // Each handler subscribes on its first pull.
  const firsts = calls.map((c) => c.next());
  while (broadcasts.subscriberCount < calls.length) await new Promise((resolve) => setImmediate(resolve));
  broadcasts.publish(new Uint8Array([7, 7]));
  broadcasts.publish(new Uint8Array([8]));
  const batches = (await Promise.all(firsts)).map((r) => r.value as unknown);
  for (const b of batches) assert.ok(b instanceof MessageBatch, "a batch, which the stream handler writes in one go");
  const first = (batches[0] as MessageBatch<unknown>).messages;
  assert.equal(first.length, 2, "both broadcasts of the run in one batch");
  assert.ok(isMessage(first[0], MessageSchema), "messages, which the stream handler writes as they are");
  assert.deepEqual([...(first[0] as { bytes: Uint8Array }).bytes], [7, 7]);
  for (const b of batches) {
    const messages = (b as MessageBatch<unknown>).messages;
    assert.equal(messages[0], first[0]);
    assert.equal(messages[1], first[1]);
  }
  broadcasts.publish(new Uint8Array([9]));
  const second = await Promise.all(calls.map((c) => c.next()));
  const next = (second[0]?.value as MessageBatch<unknown>).messages;
  assert.equal(next.length, 1);
  assert.notEqual(next[0], first[0], "another broadcast, another message");
  abort.abort();
  await Promise.all(calls.map((c) => c.return?.(undefined)));
});

test("20 subscribers over a real server each receive every broadcast once, in order", { timeout: 30_000 }, async () => {
  const SUBSCRIBERS = 20;
  const BROADCASTS = 500;
  const broadcasts = new Fanout<Uint8Array>(BROADCASTS, SUBSCRIBERS);
  const server = new grpc.Server();
  addService(server, TamTam, tamTamService(streamingAgent(broadcasts)));
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  const clients = Array.from({ length: SUBSCRIBERS }, () => createClient(TamTam, `127.0.0.1:${port}`));
  try {
    const received = clients.map(async (client) => {
      const seen: number[] = [];
      for await (const m of client.stream({})) {
        seen.push(m.bytes[0] as number, m.bytes[1] as number);
        if (seen.length === 2 * BROADCASTS) break;
      }
      return seen;
    });
    while (broadcasts.subscriberCount < SUBSCRIBERS) await new Promise((resolve) => setTimeout(resolve, 5));
    for (let i = 0; i < BROADCASTS; i++) broadcasts.publish(new Uint8Array([i >> 8, i & 0xff]));
    const want = Array.from({ length: BROADCASTS }, (_, i) => [i >> 8, i & 0xff]).flat();
    for (const seen of await Promise.all(received)) assert.deepEqual(seen, want);
    assert.equal(broadcasts.counters.dropped, 0);
  } finally {
    for (const c of clients) c.close();
    server.forceShutdown();
  }
});
