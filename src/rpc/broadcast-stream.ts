/**
 * The BroadcastStream RPC's handler: one broadcast per streamed message, with backpressure
 * instead of errors. Up to BROADCASTS_IN_FLIGHT messages are handed to the agent before the
 * oldest is answered. While the agent's broadcast queue is full it waits (backing off from
 * QUEUE_WAIT_FIRST_MS to QUEUE_WAIT_MAX_STEP_MS) without reading further, so HTTP/2 flow control
 * holds the producer back; a queue that stays full for QUEUE_WAIT_LIMIT_MS ends the call with
 * BROADCAST_QUEUE_FULL (RESOURCE_EXHAUSTED). Refused messages (empty, too large) are counted
 * and skipped (the checks are src/api/checks.ts's).
 */

import { setTimeout as sleep } from "node:timers/promises";
import type { AgentApi } from "../api/agent-api.js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { BroadcastStreamReplySchema, Message } from "../gen/service/tamtam_pb.js";
import type { CallContext } from "./adapter.js";
import { checkBroadcast } from "../api/checks.js";
import { AgentError, isAgentError } from "../api/errors.js";

/** First wait for room in a full broadcast queue (ms); doubled up to QUEUE_WAIT_MAX_STEP_MS. */
export const QUEUE_WAIT_FIRST_MS = 2;
export const QUEUE_WAIT_MAX_STEP_MS = 50;
/** How long one message waits for room before the call fails (ms). */
export const QUEUE_WAIT_LIMIT_MS = 30_000;

const isQueueFull = (err: unknown): boolean => isAgentError(err) && err.code === "BROADCAST_QUEUE_FULL";
const isRefusal = (err: unknown): err is AgentError =>
  isAgentError(err) && (err.code === "EMPTY_BROADCAST" || err.code === "BROADCAST_TOO_LARGE");

/**
 * Broadcasts of one stream handed to the agent before the first of them is answered. The
 * worker engine answers each on its next turn, so one at a time would cap a stream at one
 * broadcast per round trip to the worker; a window keeps the engine busy and stays bounded.
 */
export const BROADCASTS_IN_FLIGHT = 64;

/** How a handed-over broadcast ended; never a rejection, so none goes unobserved. */
type Attempt = { kind: "accepted" } | { kind: "full" } | { kind: "refused"; message: string } | { kind: "failed"; error: unknown };

function attempt(agent: Pick<AgentApi, "broadcast" | "maxBroadcastBytes">, bytes: Uint8Array): Promise<Attempt> {
  try {
    checkBroadcast(agent, bytes);
  } catch (err) {
    return Promise.resolve(isRefusal(err) ? { kind: "refused", message: err.message } : { kind: "failed", error: err });
  }
  return agent.broadcast(bytes).then(
    (): Attempt => ({ kind: "accepted" }),
    (err: unknown): Attempt => {
      if (isQueueFull(err)) return { kind: "full" };
      if (isRefusal(err)) return { kind: "refused", message: err.message };
      return { kind: "failed", error: err };
    },
  );
}

export async function broadcastStream(
  agent: Pick<AgentApi, "broadcast" | "maxBroadcastBytes">,
  requests: AsyncIterable<Message>,
  context: CallContext,
): Promise<MessageInitShape<typeof BroadcastStreamReplySchema>> {
  let accepted = 0n;
  let refused = 0n;
  let queueFullWaits = 0n;
  let firstRefusal = "";
  const inFlight: { bytes: Uint8Array; outcome: Promise<Attempt> }[] = [];

  /** Settles the oldest broadcast in flight; one the full queue turned away is retried here. */
  const settleOldest = async (): Promise<void> => {
    const { bytes, outcome } = inFlight.shift() as (typeof inFlight)[number];
    let result = await outcome;
    let waitedMs = 0;
    let stepMs = QUEUE_WAIT_FIRST_MS;
    while (result.kind === "full") {
      if (waitedMs >= QUEUE_WAIT_LIMIT_MS) {
        throw new AgentError(
          "BROADCAST_QUEUE_FULL",
          `the broadcast queue stayed full for ${QUEUE_WAIT_LIMIT_MS / 1000} s; ${accepted} broadcasts of this stream were accepted`,
        );
      }
      queueFullWaits++;
      // Rejects (ending the call) when the client cancels.
      await sleep(stepMs, undefined, { signal: context.signal });
      waitedMs += stepMs;
      stepMs = Math.min(QUEUE_WAIT_MAX_STEP_MS, stepMs * 2);
      result = await attempt(agent, bytes);
    }
    if (result.kind === "accepted") accepted++;
    else if (result.kind === "refused") {
      refused++;
      if (firstRefusal === "") firstRefusal = result.message;
    } else throw result.error;
  };

  for await (const request of requests) {
    inFlight.push({ bytes: request.bytes, outcome: attempt(agent, request.bytes) });
    // Reading waits while the window is full, so HTTP/2 flow control holds the producer back.
    if (inFlight.length >= BROADCASTS_IN_FLIGHT) await settleOldest();
  }
  while (inFlight.length > 0) await settleOldest();
  return { accepted, refused, firstRefusal, queueFullWaits };
}
