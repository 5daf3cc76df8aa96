/**
 * The BroadcastStream RPC's handler: one broadcast per streamed message, with backpressure
 * instead of errors. While the agent's broadcast queue is full it waits (backing off from
 * QUEUE_WAIT_FIRST_MS to QUEUE_WAIT_MAX_STEP_MS) without reading further, so HTTP/2 flow control
 * holds the producer back; a queue that stays full for QUEUE_WAIT_LIMIT_MS ends the call with
 * BROADCAST_QUEUE_FULL (RESOURCE_EXHAUSTED). Refused messages (empty, too large) are counted
 * and skipped (the checks are src/agent/api-checks.ts's).
 */

import { setTimeout as sleep } from "node:timers/promises";
import type { AgentApi } from "../agent/api.js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { BroadcastStreamReplySchema, Message } from "../gen/service/tamtam_pb.js";
import type { CallContext } from "./adapter.js";
import { checkBroadcast } from "../agent/api-checks.js";
import { AgentError, isAgentError } from "./agent-error.js";

/** First wait for room in a full broadcast queue (ms); doubled up to QUEUE_WAIT_MAX_STEP_MS. */
export const QUEUE_WAIT_FIRST_MS = 2;
export const QUEUE_WAIT_MAX_STEP_MS = 50;
/** How long one message waits for room before the call fails (ms). */
export const QUEUE_WAIT_LIMIT_MS = 30_000;

const isQueueFull = (err: unknown): boolean => isAgentError(err) && err.code === "BROADCAST_QUEUE_FULL";
const isRefusal = (err: unknown): err is AgentError =>
  isAgentError(err) && (err.code === "EMPTY_BROADCAST" || err.code === "BROADCAST_TOO_LARGE");

export async function broadcastStream(
  agent: Pick<AgentApi, "broadcast" | "maxBroadcastBytes">,
  requests: AsyncIterable<Message>,
  context: CallContext,
): Promise<MessageInitShape<typeof BroadcastStreamReplySchema>> {
  let accepted = 0n;
  let refused = 0n;
  let queueFullWaits = 0n;
  let firstRefusal = "";
  for await (const request of requests) {
    let waitedMs = 0;
    let stepMs = QUEUE_WAIT_FIRST_MS;
    for (;;) {
      try {
        checkBroadcast(agent, request.bytes);
        await agent.broadcast(request.bytes);
        accepted++;
        break;
      } catch (err) {
        if (isRefusal(err)) {
          refused++;
          if (firstRefusal === "") firstRefusal = err.message;
          break;
        }
        if (!isQueueFull(err)) throw err;
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
      }
    }
  }
  return { accepted, refused, firstRefusal, queueFullWaits };
}
