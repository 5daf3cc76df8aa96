/**
 * test/e2e-event-handlers.test.ts: `tamtam agent --event-handler` with REAL agents on loopback.
 * A recording script (one file per run: TAMTAM_EVENT, TAMTAM_SELF_ADDRESS, TAMTAM_USER_ORIGIN and
 * standard input) shows that join, user, leave and failure events reach handlers with the
 * documented environment and stdin lines; a cluster of 8 learnt at once, and then failing at
 * once, runs the handler a few times, not once per member; a hanging handler is killed (with
 * what it started) at --event-handler-timeout, and failing or missing commands are logged and
 * counted while the agent carries on; `query:NAME` mixed with other events is refused with one line naming
 * --query-handler. Waits poll real conditions (run files, Stats); every process is killed in a
 * `finally`.
 */

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { chmodSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { COALESCE_MAX_DELAY_MS, COALESCE_QUIET_MS } from "../src/agent/event-handlers.js";
import { agentStats } from "./helpers/agent-stats.js";
import { type AgentProc, cleanEnv, freeTcpPort, freeUdpPort, logMessages, poll, processGone as gone, ProcessGroup, removeDir, tempDir } from "./helpers/processes.js";

interface Run {
  readonly event: string;
  readonly self: string;
  readonly origin: string;
  readonly stdin: string;
}

/** Writes the recording handler into `dir`; returns its path. */
function recorder(dir: string): string {
  const path = join(dir, "record.sh");
  writeFileSync(
    path,
    [
      "#!/bin/sh",
      `f="${dir}/$(date +%s%N)-$$"`,
      `{ printf 'event=%s\\nself=%s\\norigin=%s\\n--\\n' "$TAMTAM_EVENT" "$TAMTAM_SELF_ADDRESS" "$TAMTAM_USER_ORIGIN"; cat; } > "$f.tmp" && mv "$f.tmp" "$f.run"`,
      "",
    ].join("\n"),
  );
  chmodSync(path, 0o755);
  return path;
}

function runs(dir: string): Run[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith(".run"))
    .sort()
    .map((f) => {
      const text = readFileSync(join(dir, f), "utf8");
      const [head, stdin] = [text.slice(0, text.indexOf("--\n")), text.slice(text.indexOf("--\n") + 3)];
      const field = (name: string): string => new RegExp(`^${name}=(.*)$`, "m").exec(head)?.[1] ?? "";
      return { event: field("event"), self: field("self"), origin: field("origin"), stdin };
    });
}

/** The member lines of every run of `event` so far. */
function memberLines(dir: string, event: string): string[] {
  return runs(dir)
    .filter((r) => r.event === event)
    .flatMap((r) => r.stdin.split("\n").filter((l) => l !== ""));
}

async function startAgent(group: ProcessGroup, env: Record<string, string>, extra: readonly string[]): Promise<AgentProc> {
  const args = ["--rpc", `127.0.0.1:${await freeTcpPort()}`, "agent", "--bind", "127.0.0.1", "-p", String(await freeUdpPort()), "--heartbeat", "100"];
  return await group.agent([...args, ...extra], env);
}

async function withSandbox(fn: (group: ProcessGroup, env: Record<string, string>, dir: string) => Promise<void>): Promise<void> {
  const group = new ProcessGroup();
  const home = tempDir();
  const dir = tempDir("tamtam-handler-runs-");
  try {
    await fn(group, cleanEnv(home), dir);
  } finally {
    await group.killAll();
    removeDir(home);
    removeDir(dir);
  }
}

/**
 * The batches events at these times (ms) make: a batch closes after COALESCE_QUIET_MS without
 * an event, or COALESCE_MAX_DELAY_MS after its first.
 */
function batchesOf(timesMs: readonly number[]): number {
  const sorted = [...timesMs].sort((x, y) => x - y);
  let batches = 0;
  let firstMs = -Infinity;
  let lastMs = -Infinity;
  for (const t of sorted) {
    // Logged times are whole milliseconds: a gap of exactly the limit counts as past it.
    if (t - lastMs >= COALESCE_QUIET_MS || t - firstMs >= COALESCE_MAX_DELAY_MS) {
      batches++;
      firstMs = t;
    }
    lastMs = t;
  }
  return batches;
}

describe("event handlers of a real agent", () => {
  test("join, user, leave and failure events reach the handler with the documented environment", { timeout: 90_000 }, async () => {
    await withSandbox(async (group, env, dir) => {
      const a = await startAgent(group, env, ["--event-handler", recorder(dir)]);
      await poll(() => memberLines(dir, "member-join").includes(`${a.gossip}\talive`), 10_000, 50);
      const [b, c] = await Promise.all([startAgent(group, env, ["--join", a.gossip]), startAgent(group, env, ["--join", a.gossip])]);
      const describeRuns = (): string => JSON.stringify(runs(dir));
      await poll(() => {
        const lines = memberLines(dir, "member-join");
        return lines.includes(`${b.gossip}\talive`) && lines.includes(`${c.gossip}\talive`);
      }, 20_000, 100, describeRuns);

      const sent = await group.run(["--rpc", b.rpc, "broadcast", "hello handlers"], { env });
      assert.equal(sent.code, 0, sent.stderr);
      const user = await poll(() => runs(dir).find((r) => r.event === "user"), 10_000, 50, describeRuns);
      assert.equal(user.stdin, "hello handlers");
      assert.equal(user.origin, b.gossip);

      b.child.kill("SIGTERM"); // a graceful leave
      await poll(() => memberLines(dir, "member-leave").includes(`${b.gossip}\tleft`), 20_000, 100, describeRuns);
      await c.kill(); // SIGKILL: a failure
      await poll(() => memberLines(dir, "member-failed").includes(`${c.gossip}\tdead`), 30_000, 100, describeRuns);

      const all = runs(dir);
      for (const run of all) {
        assert.equal(run.self, a.gossip, "TAMTAM_SELF_ADDRESS");
        assert.ok(["member-join", "member-leave", "member-failed", "member-update", "user"].includes(run.event), run.event);
        if (run.event !== "user") {
          assert.equal(run.origin, "");
          for (const line of run.stdin.split("\n").filter((l) => l !== "")) assert.match(line, /^127\.0\.0\.1:\d+\t(alive|suspect|dead|left)$/);
        }
      }
      assert.ok(!memberLines(dir, "member-failed").includes(`${b.gossip}\tdead`), "a graceful leave is no failure");
      const stats = await agentStats(a.rpc);
      assert.equal(stats["handlers.failed"], 0);
      assert.equal(stats["handlers.started"], all.length);
    });
  });

  test("a burst is coalesced: 8 members learnt at once, then failing at once, run the handler a few times", { timeout: 120_000 }, async (t) => {
    await withSandbox(async (group, env, dir) => {
      const first = await startAgent(group, env, []);
      const others = await Promise.all(Array.from({ length: 7 }, () => startAgent(group, env, ["--join", first.gossip])));
      const rack = [first, ...others];
      await poll(async () => (await agentStats(first.rpc))["core.membersByState.alive"] === 8, 30_000);

      // One agent joins the rack: it learns the 8 members from one member list.
      const a = await startAgent(group, env, ["--event-handler", `member-join,member-failed=${recorder(dir)}`, "--join", first.gossip]);
      await poll(() => rack.every((m) => memberLines(dir, "member-join").includes(`${m.gossip}\talive`)), 20_000, 100);
      const joinRuns = runs(dir).filter((r) => r.event === "member-join").length;
      t.diagnostic(`9 joins (8 members and the agent itself) ran the handler ${joinRuns} times`);
      assert.ok(joinRuns <= 2, `${joinRuns} runs for 9 joins`);

      // The rack fails at once.
      await Promise.all(rack.map((m) => m.kill()));
      await poll(() => rack.every((m) => memberLines(dir, "member-failed").includes(`${m.gossip}\tdead`)), 60_000, 100);
      const failedRuns = runs(dir).filter((r) => r.event === "member-failed").length;
      const deadAt = a.linesOf("stderr").flatMap((l) => (/is now dead/.test(l) ? [Number(/"time":(\d+)/.exec(l)?.[1])] : []));
      const batches = batchesOf(deadAt);
      t.diagnostic(`8 failures ran the handler ${failedRuns} times; declared dead over ${Math.max(...deadAt) - Math.min(...deadAt)} ms: ${deadAt.map((x) => x - Math.min(...deadAt)).join(", ")} (${batches} batches)`);
      // Usually all 8 are dead within a second: one batch. A survivor whose host stalled may
      // declare them over many seconds (Lifeguard stretches its probes while none answers),
      // and then each window is a batch of its own.
      assert.ok(failedRuns <= Math.max(4, batches + 1), `${failedRuns} runs for 8 failures in ${batches} batches`);
      const stats = await agentStats(a.rpc);
      assert.ok((stats["handlers.memberEvents"] ?? 0) >= 17, "9 joins and 8 failures taken into batches");
    });
  });

  test("a hanging handler is killed at its time limit; failing ones are logged; the agent carries on", { timeout: 60_000 }, async () => {
    await withSandbox(async (group, env, dir) => {
      const hang = `echo $$ > ${dir}/hang.pid; sleep 300 & echo $! > ${dir}/hang.child; wait`;
      const a = await startAgent(group, env, [
        "--event-handler-timeout", "300",
        "--event-handler", `member-join=${hang}`,
        "--event-handler", "member-join=echo broken >&2; exit 7",
        "--event-handler", `member-join=${dir}/no-such-handler`,
        "--event-handler", `member-join=${recorder(dir)}`,
      ]);
      // The agent's own join ran all four.
      const stats = await poll(async () => {
        const s = await agentStats(a.rpc);
        return s["handlers.timedOut"] === 1 && s["handlers.failed"] === 2 && s["handlers.succeeded"] === 1 ? s : null;
      }, 20_000);
      assert.equal(stats["handlers.running"], 0);
      for (const file of ["hang.pid", "hang.child"]) {
        const pid = Number(readFileSync(join(dir, file), "utf8"));
        assert.ok(pid > 0 && gone(pid), `${file} ${pid} was killed with the handler`);
      }
      const logs = logMessages(a);
      assert.ok(logs.some((m) => /member-join handler .*hang\.pid.* killed at its time limit/.test(m)), logs.join("\n"));
      assert.ok(logs.some((m) => /failed with exit status 7/.test(m)));
      assert.ok(logs.some((m) => /no-such-handler.* failed with exit status 127/.test(m)));

      // The agent still works: a member joins, both see each other, handlers run again.
      const b = await startAgent(group, env, ["--join", a.gossip]);
      await poll(async () => (await agentStats(a.rpc))["core.membersByState.alive"] === 2 && (await agentStats(b.rpc))["core.membersByState.alive"] === 2, 20_000);
      await poll(() => memberLines(dir, "member-join").includes(`${b.gossip}\talive`), 20_000, 100);
      await poll(async () => (await agentStats(a.rpc))["handlers.timedOut"] === 2, 20_000);
      assert.equal(a.exitStatus, null, "the agent is still running");
    });
  });

  test("query:NAME mixed with other events is refused with one line; two handlers for one query too", { timeout: 30_000 }, async () => {
    await withSandbox(async (group, env) => {
      const port = String(await freeUdpPort());
      const mixed = await group.run(["agent", "--nobanner", "-p", port, "--event-handler", "member-join,query:uptime=uptime"], { env });
      assert.equal(mixed.code, 2);
      assert.equal(mixed.stderr.trim().split("\n").length, 1, mixed.stderr);
      assert.match(mixed.stderr, /--event-handler item "member-join,query:uptime=uptime" cannot mix query:uptime with other events/);
      const twice = await group.run(["agent", "--nobanner", "-p", port, "--event-handler", "query:uptime=uptime", "--query-handler", "uptime=date"], { env });
      assert.equal(twice.code, 2);
      assert.match(twice.stderr, /two handlers for the query "uptime"/);
    });
  });
});
