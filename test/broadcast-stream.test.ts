/**
 * Tests of the BroadcastStream handler (src/rpc/broadcast-stream.ts) against a fake agent whose
 * broadcasts are answered on a later turn, as the worker engine answers them: a window of
 * broadcasts is in flight at once (never more), a full queue is waited out with every message
 * accepted exactly once, refusals are counted and skipped, other failures end the call, and a
 * cancelled call stops waiting.
 */

import { test } from "node:test";
import assert from "node:assert/strict";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { Message, MessageSchema } from "../src/gen/service/tamtam_pb.js";
import { BROADCASTS_IN_FLIGHT, broadcastStream } from "../src/rpc/broadcast-stream.js";
import { AgentError } from "../src/api/errors.js";
import type { CallContext } from "../src/rpc/adapter.js";

const MAX_BYTES = 512;

function context(signal: AbortSignal = new AbortController().signal): CallContext {
  return { signal, metadata: {} as CallContext["metadata"], peer: "test", deadline: Infinity };
}

async function* messages(payloads: Uint8Array[]): AsyncGenerator<Message> {
  for (const bytes of payloads) yield { bytes } as MessageInitShape<typeof MessageSchema> as Message;
}

function numbered(count: number): Uint8Array[] {
  return Array.from({ length: count }, (_, i) => {
    const bytes = new Uint8Array(4);
    new DataView(bytes.buffer).setUint32(0, i);
    return bytes;
  });
}

const idOf = (bytes: Uint8Array): number => new DataView(bytes.buffer, bytes.byteOffset).getUint32(0);

/** Answers each broadcast on a later turn; refuses with a full queue while `queued` is at `capacity`. */
class FakeAgent {
  readonly maxBroadcastBytes = MAX_BYTES;
  inFlight = 0;
  maxInFlight = 0;
  readonly accepted: number[] = [];
  queued = 0;
  fullAnswers = 0;
  private readonly drainTimer: NodeJS.Timeout | null;

  constructor(
    private readonly capacity = Infinity,
    drainPerMs = 0,
    private readonly failOn: number | null = null,
  ) {
    this.drainTimer = drainPerMs > 0 ? setInterval(() => (this.queued = Math.max(0, this.queued - drainPerMs)), 1) : null;
  }

  broadcast(bytes: Uint8Array): Promise<void> {
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    return new Promise((resolve, reject) =>
      setImmediate(() => {
        this.inFlight--;
        if (idOf(bytes) === this.failOn) return reject(new AgentError("SHUTTING_DOWN", "the agent is shutting down"));
        if (this.queued >= this.capacity) {
          this.fullAnswers++;
          return reject(new AgentError("BROADCAST_QUEUE_FULL", "the broadcast queue is full"));
        }
        this.queued++;
        this.accepted.push(idOf(bytes));
        resolve();
      }),
    );
  }

  stop(): void {
    if (this.drainTimer !== null) clearInterval(this.drainTimer);
  }
}

test("BroadcastStream keeps a bounded window of broadcasts in flight and accepts each once", async () => {
  const agent = new FakeAgent();
  const reply = await broadcastStream(agent, messages(numbered(1000)), context());
  assert.equal(reply.accepted, 1000n);
  assert.equal(reply.refused, 0n);
  assert.equal(agent.maxInFlight, BROADCASTS_IN_FLIGHT);
  assert.deepEqual(agent.accepted, Array.from({ length: 1000 }, (_, i) => i));
});

test("BroadcastStream waits out a full queue: every message accepted exactly once", async () => {
  const agent = new FakeAgent(50, 1);
  try {
    const reply = await broadcastStream(agent, messages(numbered(600)), context());
    assert.equal(reply.accepted, 600n);
    assert.ok(agent.fullAnswers > 0, "the queue was never full: the test did not exercise waiting");
    assert.ok((reply.queueFullWaits ?? 0n) > 0n);
    assert.deepEqual([...agent.accepted].sort((a, b) => a - b), Array.from({ length: 600 }, (_, i) => i));
  } finally {
    agent.stop();
  }
});

test("BroadcastStream counts refusals and goes on; another failure ends the call", async () => {
  const payloads = numbered(10);
  payloads[3] = new Uint8Array(0);
  payloads[7] = new Uint8Array(MAX_BYTES + 1);
  const reply = await broadcastStream(new FakeAgent(), messages(payloads), context());
  assert.equal(reply.accepted, 8n);
  assert.equal(reply.refused, 2n);
  assert.match(reply.firstRefusal ?? "", /at least 1 byte/);

  await assert.rejects(broadcastStream(new FakeAgent(Infinity, 0, 5), messages(numbered(100)), context()), (err: unknown) => {
    assert.ok(err instanceof AgentError);
    assert.equal(err.code, "SHUTTING_DOWN");
    return true;
  });
});

test("BroadcastStream stops waiting for room when the call is cancelled", async () => {
  const agent = new FakeAgent(10); // never drains
  const controller = new AbortController();
  const call = broadcastStream(agent, messages(numbered(100)), context(controller.signal));
  while (agent.fullAnswers === 0) await new Promise((resolve) => setImmediate(resolve));
  controller.abort(new Error("call cancelled"));
  await assert.rejects(call);
  assert.equal(agent.accepted.length, 10);
});
