/**
 * Tests of sending a query (runQuery, src/agent/queries.ts) when the engine refuses it: the
 * agent's own answer, started beside the cluster request, is withdrawn at once (its timer
 * stops, its handler command is killed or never starts, a ServeQueries stream's late answer is
 * refused), and the refusal reaches the caller as its agent error. Also the runner's
 * cancellation by signal that this relies on (src/agent/command-runner.ts).
 */

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { addr } from "../src/core/address.js";
import { MemberState } from "../src/core/wire/messages.js";
import { ClusterRequestRefusedError, type Engine } from "../src/engine/engine.js";
import { CommandRunner } from "../src/agent/command-runner.js";
import { QueryResponder, runQuery } from "../src/agent/queries.js";
import type { QueryEvent } from "../src/api/agent-api.js";
import { AgentError } from "../src/api/errors.js";
import { memberInfo } from "./helpers/member-info.js";
import { poll } from "./helpers/processes.js";

const SELF = "127.0.0.1:7001";
const OTHER = "127.0.0.1:7002";

/** An engine with this agent and one other member, whose cluster requests are refused as BUSY. */
function refusingEngine(): Engine {
  const members = [memberInfo(SELF, MemberState.Alive, { isSelf: true }), memberInfo(OTHER, MemberState.Alive)];
  return {
    members: async () => members,
    request: async () => {
      throw new ClusterRequestRefusedError("BUSY", "too many cluster requests in flight");
    },
  } as unknown as Engine;
}

const PARAMS = { name: "q", payload: new Uint8Array([1]), filters: [], nodes: [], timeoutMs: 60_000, ack: false, relayCount: 0 };

describe("a query the engine refuses", () => {
  test("withdraws the local answer: the handler command is killed and nothing waits", { timeout: 20_000 }, async () => {
    const runner = new CommandRunner({ maxConcurrent: 2, maxQueued: 4, timeoutMs: 60_000, killGraceMs: 100 });
    // The command would run for the query's whole time (a minute) if nobody stopped it.
    const responder = new QueryResponder([{ name: "q", command: "sleep 60" }], runner, 60_000, 1000, SELF);
    const events: QueryEvent[] = [];
    try {
      await assert.rejects(
        runQuery(refusingEngine(), responder, 1000, PARAMS, (e) => events.push(e)),
        (err: unknown) => err instanceof AgentError && err.code === "ENGINE_BUSY",
      );
      assert.deepEqual(events, [], "no answer and no summary for a refused query");
      assert.equal(responder.waitingCount, 0, "the local query no longer waits for its handler");
      assert.equal(responder.counters.cancelled, 1);
      await poll(() => runner.stats().running === 0, 10_000, 20, () => JSON.stringify(runner.stats()));
      assert.equal(runner.stats().cancelled, 1, "the handler was cancelled, not left to its time limit");
      assert.equal(runner.stats().timedOut, 0);
    } finally {
      await runner.close();
    }
  });

  test("withdraws a local query handed to a ServeQueries stream: its late answer is refused", async () => {
    const runner = new CommandRunner({ maxConcurrent: 1, maxQueued: 1, timeoutMs: 1000 });
    const responder = new QueryResponder([], runner, 60_000, 1000, SELF);
    const stream = responder.serve(["q"]);
    assert.ok(stream !== null);
    try {
      await assert.rejects(runQuery(refusingEngine(), responder, 1000, PARAMS, () => undefined), { code: "ENGINE_BUSY" });
      assert.equal(responder.waitingCount, 0);
      const items = stream[Symbol.asyncIterator]();
      const handed = await items.next();
      assert.equal(handed.done, false);
      assert.equal(responder.respond(handed.value.id, new Uint8Array([2]), ""), false, "the query is no longer waiting");
    } finally {
      stream.close();
      await runner.close();
    }
  });
});

describe("command runner cancellation", () => {
  test("a queued run leaves the queue; a running one is killed; both end as cancelled", { timeout: 20_000 }, async () => {
    const runner = new CommandRunner({ maxConcurrent: 1, maxQueued: 2, timeoutMs: 60_000, killGraceMs: 100 });
    try {
      const running = new AbortController();
      const queued = new AbortController();
      const first = runner.run({ command: "sleep 60", signal: running.signal });
      const second = runner.run({ command: "sleep 60", signal: queued.signal });
      assert.equal(runner.stats().queued, 1);
      queued.abort();
      assert.equal((await second).outcome, "cancelled");
      assert.equal(runner.stats().queued, 0);
      running.abort();
      const result = await first;
      assert.equal(result.outcome, "cancelled");
      assert.equal(result.signal, "SIGTERM");
      const aborted = new AbortController();
      aborted.abort();
      assert.equal((await runner.run({ command: "true", signal: aborted.signal })).outcome, "cancelled", "an aborted signal starts nothing");
      const stats = runner.stats();
      assert.deepEqual([stats.cancelled, stats.started, stats.timedOut, stats.failed], [3, 1, 0, 0]);
    } finally {
      await runner.close();
    }
  });
});
