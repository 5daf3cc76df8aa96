/**
 * Client-streaming and bidirectional calls of src/rpc/h2-client.ts (the command line's client
 * and the package's `tamtam/client`), which derives its methods from any service descriptor:
 * a test service built at run time with both kinds, served by a real grpc-js server. Requests
 * arrive in order, all of them (more than the HTTP/2 window holds, so the writer waits for
 * room), the answer comes after the request side ended; a bidirectional call answers each
 * request as it comes; a failing request iterable cancels the call.
 */

import assert from "node:assert/strict";
import { test } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { create, createFileRegistry, fromBinary, toBinary, type Message } from "@bufbuild/protobuf";
import type { GenMessage, GenService } from "@bufbuild/protobuf/codegenv2";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { GrpcStatus } from "../src/rpc/grpc-wire.js";
import { createH2Client } from "../src/rpc/h2-client.js";

const registry = createFileRegistry(
  create(FileDescriptorProtoSchema, {
    name: "streaming_test.proto",
    package: "t",
    syntax: "proto3",
    messageType: [{ name: "Text", field: [{ name: "text", number: 1, type: 9 /* TYPE_STRING */, label: 1, jsonName: "text" }] }],
    service: [
      {
        name: "Echo",
        method: [
          { name: "Join", inputType: ".t.Text", outputType: ".t.Text", clientStreaming: true },
          { name: "Chat", inputType: ".t.Text", outputType: ".t.Text", clientStreaming: true, serverStreaming: true },
        ],
      },
    ],
  }),
  () => undefined,
);
const Text = registry.getMessage("t.Text") as unknown as GenMessage<Message<"t.Text"> & { text: string }>;
const Echo = registry.getService("t.Echo") as unknown as GenService<{
  join: { methodKind: "client_streaming"; input: typeof Text; output: typeof Text };
  chat: { methodKind: "bidi_streaming"; input: typeof Text; output: typeof Text };
}>;

type TextMessage = { text: string };
const encode = (m: TextMessage): Buffer => Buffer.from(toBinary(Text, create(Text, m)));
const decode = (b: Buffer): TextMessage => fromBinary(Text, b);
const method = (name: string, responseStream: boolean): grpc.MethodDefinition<TextMessage, TextMessage> => ({
  path: `/t.Echo/${name}`,
  requestStream: true,
  responseStream,
  requestSerialize: encode,
  requestDeserialize: decode,
  responseSerialize: encode,
  responseDeserialize: decode,
});

async function startServer(): Promise<{ address: string; close(): void }> {
  const server = new grpc.Server();
  server.addService({ Join: method("Join", false), Chat: method("Chat", true) }, {
    Join: (call: grpc.ServerReadableStream<TextMessage, TextMessage>, callback: grpc.sendUnaryData<TextMessage>) => {
      const parts: string[] = [];
      call.on("data", (m: TextMessage) => parts.push(m.text));
      call.on("end", () => callback(null, { text: `${parts.length}:${parts.join(",").length}:${parts.at(-1) ?? ""}` }));
    },
    Chat: (call: grpc.ServerDuplexStream<TextMessage, TextMessage>) => {
      call.on("data", (m: TextMessage) => call.write({ text: m.text.toUpperCase() }));
      call.on("end", () => call.end());
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  return { address: `127.0.0.1:${port}`, close: () => server.forceShutdown() };
}

/** Runs `body` with a client of a fresh server; closes both. */
async function withClient(body: (client: ReturnType<typeof createH2Client<(typeof Echo)["method"]>>) => Promise<void>): Promise<void> {
  const server = await startServer();
  const client = createH2Client(Echo, server.address);
  try {
    await body(client);
  } finally {
    client.close();
    server.close();
  }
}

test("client-streaming: every request arrives in order (beyond the flow-control window); one answer after the requests end", { timeout: 30_000 }, async () => {
  await withClient(async (client) => {
    const count = 3_000;
    const big = "x".repeat(100);
    async function* requests(): AsyncGenerator<{ text: string }> {
      for (let i = 0; i < count; i++) yield { text: i === count - 1 ? "last" : big };
    }
    const answer = await client.join(requests());
    assert.equal(answer.text, `${count}:${(count - 1) * big.length + 4 + (count - 1)}:last`);
    // A plain array works as well as an async generator.
    assert.equal((await client.join([{ text: "a" }, { text: "b" }])).text, "2:3:b");
  });
});

test("bidirectional: each request is answered as it comes; the stream ends after the requests", { timeout: 30_000 }, async () => {
  await withClient(async (client) => {
    // The next request is sent only after the previous answer came back: the call is truly two-way.
    const turn: { answered: (() => void) | null } = { answered: null };
    async function* requests(): AsyncGenerator<{ text: string }> {
      for (const text of ["one", "two", "three"]) {
        yield { text };
        await new Promise<void>((resolve) => {
          turn.answered = resolve;
        });
      }
    }
    const seen: string[] = [];
    for await (const reply of client.chat(requests())) {
      seen.push(reply.text);
      turn.answered?.();
    }
    assert.deepEqual(seen, ["ONE", "TWO", "THREE"]);
  });
});

test("a request iterable that throws cancels the call with its reason", { timeout: 30_000 }, async () => {
  await withClient(async (client) => {
    async function* requests(): AsyncGenerator<{ text: string }> {
      yield { text: "fine" };
      throw new Error("no more input");
    }
    await assert.rejects(client.join(requests()), (error: { code?: number; details?: string }) => {
      assert.equal(error.code, GrpcStatus.CANCELLED);
      assert.match(error.details ?? "", /no more input/);
      return true;
    });
  });
});
