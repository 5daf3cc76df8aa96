/**
 * End-to-end test of queries with REAL `tamtam` agents through the bin, over sealed gossip: five
 * agents answer `tamtam query` through `--query-handler` commands (the payload on standard
 * input, standard output the response); every member answers and the query ends as soon as they
 * have (long before its timeout); `--tag` and `--node` choose the members asked; `--json` prints
 * one object per line; a handler that outlives its time limit is killed and reported; a response
 * longer than a datagram allows is cut to the limit; a member without a handler says so; a
 * program on the ServeQueries RPC answers instead of the command while it is connected. Every
 * process is killed by PID in a `finally`; waits are on output lines and polled conditions.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { describe, test } from "node:test";
import { connectAgent } from "../src/cli/agent-client.js";
import { maxAnswerBytes } from "../src/core/requests.js";
import { makeConfig } from "../src/core/config.js";
import { binPath, cleanEnv, freeUdpPort, ProcessGroup, poll, removeDir, tempDir, type AgentProc } from "./helpers/processes.js";

binPath();

const KEY = Buffer.alloc(32, 0x51).toString("base64");
/** The longest response of a sealed 1232-byte datagram: an answer less its status byte. */
const MAX_RESPONSE_BYTES = maxAnswerBytes(makeConfig("lan", { sealed: true })) - 1;

interface Line {
  type: string;
  from?: string;
  payload?: string;
  error?: string;
  asked?: number;
  acknowledged?: number;
  answered?: number;
  failed?: number;
  missing?: string[];
  elapsedMs?: number;
}

describe("queries between real agents", () => {
  test("five sealed agents answer queries through handlers; filters, early end, limits, JSON, ServeQueries", { timeout: 120_000 }, async () => {
    const home = tempDir();
    const group = new ProcessGroup();
    try {
      const env = cleanEnv(home, { TAMTAM_ENCRYPT: KEY });
      const handlers = [
        "--query-handler",
        'whoami=printf %s "$TAMTAM_SELF_ADDRESS"',
        // As in Serf, an event handler for query:NAME answers the query NAME.
        "--event-handler",
        "query:echo=cat",
        "--query-handler",
        "slow=sleep 30",
        "--query-handler",
        "big=head -c 5000 /dev/zero | tr '\\0' x",
        "--query-handler-timeout",
        "500",
      ];
      const start = async (name: string, extra: string[]): Promise<AgentProc> =>
        group.agent(["--rpc", `unix:${join(home, `${name}.sock`)}`, "agent", "-p", String(await freeUdpPort()), "--heartbeat", "100", ...handlers, ...extra], env);
      const a = await start("a", ["--tag", "role=web"]);
      const b = await start("b", ["--join", a.gossip, "--tag", "role=db"]);
      const c = await start("c", ["--join", a.gossip, "--tag", "role=web"]);
      const d = await start("d", ["--join", a.gossip]);
      const e = await start("e", ["--join", b.gossip, "--tag", "role=db"]);
      const agents = [a, b, c, d, e];
      const tamtam = (agent: AgentProc, args: string[]) => group.run(["--rpc", agent.rpc, ...args], { env, timeoutMs: 30_000 });
      // Every agent knows every other alive, with its tags.
      for (const agent of agents) {
        await poll(async () => {
          const r = await tamtam(agent, ["nodes", "--json"]);
          const nodes = (JSON.parse(r.stdout) as { nodes: { state: string; tags: Record<string, string> }[] }).nodes;
          return nodes.filter((n) => n.state === "alive").length === 5 && nodes.filter((n) => n.tags.role !== undefined).length === 4;
        }, 30_000);
      }
      const query = async (from: AgentProc, args: string[]): Promise<{ code: number | null; lines: Line[]; stderr: string }> => {
        const r = await tamtam(from, ["query", ...args, "--json"]);
        return { code: r.code, lines: r.stdout.split("\n").filter((l) => l !== "").map((l) => JSON.parse(l) as Line), stderr: r.stderr };
      };
      const summaryOf = (lines: Line[]): Line => {
        const last = lines.at(-1);
        assert.equal(last?.type, "summary");
        return last as Line;
      };

      // Every member answers (this agent too), each with its own address; the query ends when
      // they have, not at its timeout.
      let q = await query(a, ["whoami", "--timeout", "30000"]);
      assert.equal(q.code, 0, q.stderr);
      const responses = q.lines.filter((l) => l.type === "response");
      assert.deepEqual(responses.map((l) => l.from).sort(), agents.map((x) => x.gossip).sort());
      for (const r of responses) assert.equal(r.payload, r.from, "each member answers with its own address");
      assert.deepEqual(q.lines.filter((l) => l.type === "ack").map((l) => l.from).sort(), agents.map((x) => x.gossip).sort());
      let s = summaryOf(q.lines);
      assert.deepEqual([s.asked, s.acknowledged, s.answered, s.failed, s.missing], [5, 5, 5, 0, []]);
      assert.ok((s.elapsedMs ?? Infinity) < 30_000, "ended before its timeout");

      // --tag: only the web members; --node: only the one named; the payload reaches the handler.
      q = await query(b, ["whoami", "--tag", "role=web"]);
      assert.deepEqual(q.lines.filter((l) => l.type === "response").map((l) => l.from).sort(), [a.gossip, c.gossip].sort());
      assert.equal(summaryOf(q.lines).asked, 2);
      q = await query(b, ["echo", "hello there", "--node", d.gossip, "--node", e.gossip]);
      assert.deepEqual(
        q.lines.filter((l) => l.type === "response").map((l) => [l.from, l.payload]).sort(),
        [[d.gossip, "hello there"], [e.gossip, "hello there"]].sort(),
      );
      q = await query(b, ["echo", "x", "--tag", "role=db", "--no-ack"]);
      assert.equal(q.lines.filter((l) => l.type === "ack").length, 0, "--no-ack: no acknowledgements");
      assert.deepEqual(q.lines.filter((l) => l.type === "response").map((l) => l.from).sort(), [b.gossip, e.gossip].sort());

      // The handler's time limit: killed, reported as an error by every member, exit 1.
      q = await query(c, ["slow", "--tag", "role=db", "--timeout", "20000"]);
      assert.equal(q.code, 1);
      const errors = q.lines.filter((l) => l.type === "error");
      assert.deepEqual(errors.map((l) => l.from).sort(), [b.gossip, e.gossip].sort());
      for (const l of errors) assert.equal(l.error, "the handler was killed at its time limit of 500 ms");
      s = summaryOf(q.lines);
      assert.deepEqual([s.asked, s.answered, s.failed, s.missing], [2, 0, 2, []]);

      // The size limit: the response is the first bytes of the output that fit one datagram.
      q = await query(d, ["big", "--node", a.gossip]);
      const big = q.lines.find((l) => l.type === "response");
      assert.equal(big?.payload, "x".repeat(MAX_RESPONSE_BYTES));

      // A payload larger than one datagram allows is refused before anything is sent.
      const tooLarge = await tamtam(a, ["query", "echo", "y".repeat(1200)]);
      assert.equal(tooLarge.code, 2);
      assert.match(tooLarge.stderr, /^tamtam: the agent rejected the request: a query named "echo" carries at most 1131 bytes of payload, got 1200\n$/);

      // A member without a handler says so at once; text output, one line each.
      const text = await tamtam(e, ["query", "unknown", "--node", a.gossip, "--no-ack"]);
      assert.equal(text.code, 1);
      assert.match(text.stdout, new RegExp(`^error from ${a.gossip.replace(/[.[\]]/g, "\\$&")}: no handler for "unknown"\\nasked 1, acknowledged 1, answered 0, failed 1, missing 0 \\(\\d+ ms\\)\\n$`));

      // A program on ServeQueries answers instead of the command while it is connected.
      const client = connectAgent(c.rpc, 10_000);
      const controller = new AbortController();
      try {
        const served = client.serveQueries({ names: ["whoami"] }, { signal: controller.signal });
        const answering = (async () => {
          for await (const incoming of served) {
            await client.respondQuery({ id: incoming.id, payload: Buffer.from(`program on c, asked by ${incoming.from?.port}`) });
          }
        })().catch(() => undefined);
        await poll(async () => {
          const r = await query(a, ["whoami", "--node", c.gossip]);
          return r.lines.find((l) => l.type === "response")?.payload === `program on c, asked by ${a.port}`;
        }, 20_000, 200);
        const late = await client.respondQuery({ id: 999_999n, payload: new Uint8Array(0) }).then(
          () => "ok",
          (err: { code?: number }) => String(err.code),
        );
        assert.equal(late, "5", "NOT_FOUND for a query that is not waiting");
        controller.abort();
        await answering;
      } finally {
        client.close();
      }
      // The command answers again once the program is gone.
      await poll(async () => {
        const r = await query(a, ["whoami", "--node", c.gossip]);
        return r.lines.find((l) => l.type === "response")?.payload === c.gossip;
      }, 20_000, 200);
    } finally {
      await group.killAll();
      removeDir(home);
    }
  });
});
