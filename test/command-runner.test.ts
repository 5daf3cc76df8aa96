/**
 * test/command-runner.test.ts: the bounded shell-command runner (src/agent/command-runner.ts)
 * with real `/bin/sh` processes: environment and standard input reach the command and are never
 * parsed by the shell; standard output is capped and flagged; standard error is logged; a
 * command past its time limit is killed with its whole process group (SIGTERM, then SIGKILL
 * for one that ignores SIGTERM); concurrency and the waiting queue are bounded (overflow
 * refused and counted); failures, oversized input and unstartable commands resolve as results,
 * never as exceptions; close() kills what runs and refuses what waits.
 */

import { test, describe } from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { CommandRunner, type CommandLog } from "../src/agent/command-runner.js";
import { processGone as gone, removeDir, tempDir } from "./helpers/processes.js";

interface LogLine {
  level: "warn" | "info";
  fields: Record<string, unknown>;
  message: string;
}

function recordingLog(): { log: CommandLog; lines: LogLine[] } {
  const lines: LogLine[] = [];
  return {
    lines,
    log: {
      warn: (fields, message) => lines.push({ level: "warn", fields: fields as Record<string, unknown>, message }),
      info: (fields, message) => lines.push({ level: "info", fields: fields as Record<string, unknown>, message }),
    },
  };
}

const text = (bytes: Uint8Array): string => Buffer.from(bytes).toString("utf8");


describe("command runner", () => {
  test("environment and standard input reach the command; their bytes are never run by the shell", async () => {
    const dir = tempDir("tamtam-runner-");
    try {
      const marker = join(dir, "injected");
      const runner = new CommandRunner({ maxConcurrent: 2, maxQueued: 2, timeoutMs: 10_000 }, { baseEnv: { PATH: process.env.PATH ?? "/usr/bin:/bin" } });
      const hostile = `$(touch ${marker}); \`touch ${marker}\`; ' " ;touch ${marker}`;
      const result = await runner.run({
        command: 'printf "%s|" "$TAMTAM_EVENT" "$TAMTAM_DATA"; cat',
        env: { TAMTAM_EVENT: "member-join", TAMTAM_DATA: hostile },
        stdin: Buffer.from(`line one\n${hostile}\n`),
      });
      assert.equal(result.outcome, "ok");
      assert.equal(result.exitCode, 0);
      assert.equal(text(result.stdout), `member-join|${hostile}|line one\n${hostile}\n`);
      assert.equal(existsSync(marker), false, "event data was executed by the shell");
      assert.equal(runner.stats().succeeded, 1);
    } finally {
      removeDir(dir);
    }
  });

  test("standard output beyond the cap is discarded and flagged; the command is not blocked by it", async () => {
    const runner = new CommandRunner({ maxConcurrent: 1, maxQueued: 0, timeoutMs: 10_000, maxStdoutBytes: 1000 });
    const result = await runner.run({ command: "head -c 1000000 /dev/zero; echo done >&2" });
    assert.equal(result.outcome, "ok");
    assert.equal(result.stdout.length, 1000);
    assert.equal(result.stdoutTruncated, true);
    assert.equal(text(result.stderr), "done\n");
    const exact = await runner.run({ command: "head -c 1000 /dev/zero" });
    assert.equal(exact.stdout.length, 1000);
    assert.equal(exact.stdoutTruncated, false);
    const perRun = await runner.run({ command: "printf abcdef", maxStdoutBytes: 3 });
    assert.equal(text(perRun.stdout), "abc");
    assert.equal(perRun.stdoutTruncated, true);
    assert.equal(runner.stats().stdoutTruncated, 2);
  });

  test("a failing command is a result with its status and its (bounded) standard error logged", async () => {
    const { log, lines } = recordingLog();
    const runner = new CommandRunner({ maxConcurrent: 1, maxQueued: 0, timeoutMs: 10_000, maxStderrBytes: 8 }, { log });
    const result = await runner.run({ command: "echo 'something went wrong' >&2; exit 3", label: "member-join handler" });
    assert.equal(result.outcome, "failed");
    assert.equal(result.exitCode, 3);
    assert.equal(text(result.stderr), "somethin");
    assert.equal(result.stderrTruncated, true);
    const line = lines.find((l) => l.level === "warn");
    assert.ok(line !== undefined);
    assert.match(line.message, /member-join handler failed with exit status 3/);
    assert.equal(line.fields.stderr, "somethin…");
    const stats = runner.stats();
    assert.equal(stats.failed, 1);
    assert.equal(stats.stderrTruncated, 1);
    assert.equal(stats.running, 0);
  });

  test("a command past its time limit is killed with everything it started", async () => {
    const dir = tempDir("tamtam-runner-");
    try {
      const pidFile = join(dir, "pid");
      const runner = new CommandRunner({ maxConcurrent: 1, maxQueued: 0, timeoutMs: 300 });
      const result = await runner.run({ command: `sleep 300 & echo $! > ${pidFile}; wait` });
      assert.equal(result.outcome, "timeout");
      assert.equal(result.signal, "SIGTERM");
      const background = Number(readFileSync(pidFile, "utf8"));
      assert.ok(background > 0);
      assert.ok(gone(background), `background process ${background} survived the time limit`);
      assert.equal(runner.stats().timedOut, 1);
    } finally {
      removeDir(dir);
    }
  });

  test("a command that ignores SIGTERM gets SIGKILL after the grace time", async () => {
    const runner = new CommandRunner({ maxConcurrent: 1, maxQueued: 0, timeoutMs: 200, killGraceMs: 200 });
    const result = await runner.run({ command: "trap '' TERM; echo ready; sleep 300; echo never" });
    assert.equal(result.outcome, "timeout");
    assert.equal(result.signal, "SIGKILL");
    assert.equal(text(result.stdout), "ready\n");
  });

  test("concurrency and the waiting queue are bounded; overflow is refused at once and counted", async () => {
    const dir = tempDir("tamtam-runner-");
    try {
      const trace = join(dir, "trace");
      const { log, lines } = recordingLog();
      const runner = new CommandRunner({ maxConcurrent: 1, maxQueued: 1, timeoutMs: 10_000 }, { log });
      const step = (n: number): string => `echo start${n} >> ${trace}; sleep 0.2; echo end${n} >> ${trace}`;
      const first = runner.run({ command: step(1) });
      const second = runner.run({ command: step(2) });
      const third = runner.run({ command: step(3) });
      assert.deepEqual(
        { running: runner.stats().running, queued: runner.stats().queued, refused: runner.stats().refusedQueueFull },
        { running: 1, queued: 1, refused: 1 },
      );
      const refused = await third;
      assert.equal(refused.outcome, "refused");
      assert.match(refused.problem, /1 commands running and 1 waiting/);
      assert.ok(lines.some((l) => /refused to run a command/.test(l.message)));
      assert.equal((await first).outcome, "ok");
      assert.equal((await second).outcome, "ok");
      assert.deepEqual(readFileSync(trace, "utf8").trim().split("\n"), ["start1", "end1", "start2", "end2"]);
      const stats = runner.stats();
      assert.equal(stats.started, 2);
      assert.equal(stats.running, 0);
      assert.equal(stats.queued, 0);
    } finally {
      removeDir(dir);
    }
  });

  test("commands that cannot start, and oversized input, end as results without throwing", async () => {
    const runner = new CommandRunner({ maxConcurrent: 1, maxQueued: 1, timeoutMs: 10_000, maxStdinBytes: 10 });
    const badEnv = await runner.run({ command: "true", env: { TAMTAM_TAG_X: "a\0b" } });
    assert.equal(badEnv.outcome, "spawn-error");
    assert.match(badEnv.problem, /cannot start/);
    const tooLarge = await runner.run({ command: "cat", stdin: new Uint8Array(11) });
    assert.equal(tooLarge.outcome, "refused");
    assert.match(tooLarge.problem, /11 bytes exceeds the limit of 10/);
    const noShell = new CommandRunner({ maxConcurrent: 1, maxQueued: 1, timeoutMs: 10_000 }, { shell: "/nonexistent/sh" });
    const missing = await noShell.run({ command: "true" });
    assert.equal(missing.outcome, "spawn-error");
    assert.equal(noShell.stats().spawnErrors, 1);
    assert.equal(noShell.stats().running, 0);
    // after a failed start the pool still runs commands
    assert.equal((await runner.run({ command: "true" })).outcome, "ok");
    const stats = runner.stats();
    assert.equal(stats.spawnErrors, 1);
    assert.equal(stats.refusedStdinTooLarge, 1);
  });

  test("a command that does not read a large input still succeeds", async () => {
    const runner = new CommandRunner({ maxConcurrent: 1, maxQueued: 0, timeoutMs: 10_000 });
    const result = await runner.run({ command: "exit 0", stdin: new Uint8Array(1 << 20) });
    assert.equal(result.outcome, "ok");
  });

  test("close() kills running commands, refuses queued and later ones", async () => {
    const runner = new CommandRunner({ maxConcurrent: 1, maxQueued: 4, timeoutMs: 60_000 });
    const running = runner.run({ command: "sleep 300" });
    const queued = runner.run({ command: "true" });
    await runner.close();
    assert.equal((await running).outcome, "timeout");
    assert.equal((await queued).outcome, "refused");
    assert.equal((await runner.run({ command: "true" })).outcome, "refused");
    const stats = runner.stats();
    assert.equal(stats.refusedClosed, 2);
    assert.equal(stats.running, 0);
    assert.equal(stats.started, 1);
  });
});
