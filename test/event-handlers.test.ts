/**
 * test/event-handlers.test.ts: the pieces of `--event-handler` without agents: the FILTER grammar
 * and its one-line refusals (query:NAME names --query-handler), the settings (flag, environment
 * one per line, YAML list; commas kept), which member change is which event, the stdin lines and
 * TAMTAM_TAG_* encodings, and the coalescing of EventHandlers fed with engine events by hand
 * (a burst is one run per event name, the latest event per member wins, a join is not hidden
 * by an update, user events are not coalesced, close() drops the open batch).
 */

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { UsageError } from "clipanion";
import { parseEventHandler, EVENT_NAMES, type EventHandlerSpec, queryEventHandler } from "../src/agent/event-filter.js";
import { COALESCE_MAX_MEMBERS, EventHandlers, formatTags, memberEventOf, memberLine, memberTags, stdinParts, tagEnvironment } from "../src/agent/event-handlers.js";
import { DEFAULT_MAX_STDIN_BYTES } from "../src/agent/command-runner.js";
import { encodeTagMap } from "../src/api/tags.js";
import { addr, type Address } from "../src/core/address.js";
import type { ClusterEvent, MemberInfo } from "../src/core/runtime.js";
import { MemberState } from "../src/core/wire/messages.js";
import { AGENT_SETTINGS, resolveSettings, type SettingsIO } from "../src/cli/settings.js";
import { agentOptions } from "../src/cli/commands/agent.js";
import { memberInfo } from "./helpers/member-info.js";
import { poll, removeDir, tempDir } from "./helpers/processes.js";

function spec(text: string): EventHandlerSpec {
  const parsed = parseEventHandler(text);
  assert.ok(typeof parsed !== "string", `refused: ${String(parsed)}`);
  return parsed;
}

function memoryIO(files: Record<string, string>, env: Record<string, string> = {}): SettingsIO {
  return { env, homeDir: "/home/u", readFile: (path) => files[path] ?? null };
}

function member(key: string, state: MemberState, incarnation = 1, isSelf = false): MemberInfo {
  return memberInfo(key, state, { incarnation, isSelf });
}

function change(m: MemberInfo, previous: MemberState | null, previousIncarnation: number | null = previous === null ? null : m.incarnation): ClusterEvent {
  return { type: "member", member: m, previous, previousIncarnation, dampingChanged: false };
}

describe("event handler grammar", () => {
  test("without a filter the command runs for every event; commas and = inside the command are kept", () => {
    for (const text of ["./on-event.sh", "FOO=bar ./x.sh", 'f="$(mktemp)"; cat > "$f"', "logger -t tamtam a,b", "echo $((1+1))"]) {
      const s = spec(text);
      assert.equal(s.command, text);
      assert.deepEqual([...s.events].sort(), [...EVENT_NAMES].sort());
      assert.equal(s.filter, "*");
    }
  });

  test("a filter is a comma list of events, or *", () => {
    const s = spec("member-join,member-failed=./h.sh --flag=1,2");
    assert.deepEqual([...s.events].sort(), ["member-failed", "member-join"]);
    assert.equal(s.command, "./h.sh --flag=1,2");
    assert.equal(s.filter, "member-join,member-failed");
    assert.deepEqual([...spec("user=cat").events], ["user"]);
    assert.deepEqual([...spec("*=cat").events].sort(), [...EVENT_NAMES].sort());
    assert.equal(spec("*=a=b").command, "a=b");
    assert.deepEqual([...spec("*=user=me ./x.sh").events].sort(), [...EVENT_NAMES].sort());
  });

  test("refusals are one line: unknown events, query:NAME (a --query-handler), user:NAME, no command", () => {
    const refused = (text: string): string => {
      const r = parseEventHandler(text);
      assert.equal(typeof r, "string", `${text} was accepted`);
      assert.ok(!(r as string).includes("\n"));
      return r as string;
    };
    assert.match(refused("member-jion=./h.sh"), /unknown event "member-jion".*member-join/);
    assert.match(refused("member-join,query:x=./h"), /cannot mix query:x with other events.*--query-handler NAME=COMMAND/);
    assert.match(refused("user:deploy=./deploy.sh"), /broadcasts carry no name/);
    assert.match(refused("member-join="), /no command/);
    assert.match(refused("   "), /command/);
  });

  test("settings: flags and YAML items are whole commands, the environment one per line; mistakes name their source", () => {
    const flags = resolveSettings(AGENT_SETTINGS, { eventHandlers: ["member-join,member-leave=./a.sh x,y", "user=cat"] }, undefined, memoryIO({}));
    assert.deepEqual(flags.values.eventHandlers, ["member-join,member-leave=./a.sh x,y", "user=cat"]);
    const env = resolveSettings(AGENT_SETTINGS, {}, undefined, memoryIO({}, { TAMTAM_EVENT_HANDLER: "member-join=./a.sh 1,2\nuser=cat\n" }));
    assert.deepEqual(env.values.eventHandlers, ["member-join=./a.sh 1,2", "user=cat"]);
    const yaml = resolveSettings(
      AGENT_SETTINGS, {}, undefined,
      memoryIO({ "/home/u/.tamtam.yaml": "event-handler:\n  - member-failed=./page.sh a,b\nevent-handler-timeout: 2500\nmetrics-address: \"[::1]:9100\"\n" }),
    );
    assert.deepEqual(yaml.values.eventHandlers, ["member-failed=./page.sh a,b"]);
    assert.equal(yaml.values.eventHandlerTimeoutMs, 2500);
    assert.equal(yaml.values.metricsAddress, "[::1]:9100");
    const options = agentOptions(yaml);
    assert.equal(options.eventHandlers?.[0]?.command, "./page.sh a,b");
    assert.equal(options.eventHandlerTimeoutMs, 2500);
    assert.equal(options.metricsAddress, "[::1]:9100");
    const none = agentOptions(resolveSettings(AGENT_SETTINGS, {}, undefined, memoryIO({})));
    assert.equal(none.eventHandlers, undefined);
    assert.equal(none.metricsAddress, undefined);

    const usage = (flagValues: Parameters<typeof resolveSettings>[1], env: Record<string, string> = {}): string => {
      try {
        resolveSettings(AGENT_SETTINGS, flagValues, undefined, memoryIO({}, env));
      } catch (error) {
        assert.ok(error instanceof UsageError);
        assert.ok(!error.message.includes("\n"));
        return error.message;
      }
      assert.fail("accepted");
    };
    assert.match(usage({ eventHandlers: ["query:=uptime"] }), /^--event-handler item "query:=uptime" /);
    assert.match(usage({ eventHandlers: ["query:load="] }), /^--event-handler item "query:load=" .*no command/);
    // query:NAME=COMMAND alone answers the query NAME, as --query-handler NAME=COMMAND does.
    assert.deepEqual(queryEventHandler("query:load=uptime"), { name: "load", command: "uptime" });
    assert.equal(queryEventHandler("member-join=uptime"), null);
    assert.match(usage({}, { TAMTAM_EVENT_HANDLER: "member-jion=x" }), /^TAMTAM_EVENT_HANDLER item "member-jion=x" has an unknown event/);
    assert.match(usage({ eventHandlerTimeoutMs: "50" }), /^--event-handler-timeout must be in 100\.\.3600000 \(ms\)/);
    assert.match(usage({ metricsAddress: "9100" }), /^--metrics-address must be HOST:PORT/);
    assert.match(usage({ metricsAddress: "localhost:70000" }), /^--metrics-address must be HOST:PORT/);
  });
});

describe("event handler events and formats", () => {
  test("which member change is which event", () => {
    const { Alive, Suspect, Dead, Left } = MemberState;
    const cases: Array<[MemberState, number, MemberState | null, number | null, string | null]> = [
      [Alive, 1, null, null, "member-join"],
      [Suspect, 1, null, null, "member-join"],
      [Dead, 1, null, null, null],
      [Left, 1, null, null, null],
      [Alive, 5, Dead, 4, "member-join"],
      [Alive, 5, Left, 4, "member-join"],
      [Dead, 1, Alive, 1, "member-failed"],
      [Dead, 1, Suspect, 1, "member-failed"],
      [Left, 2, Alive, 1, "member-leave"],
      [Left, 2, Dead, 1, "member-leave"],
      [Left, 3, Left, 2, null],
      [Alive, 2, Alive, 1, "member-update"],
      [Alive, 1, Alive, 1, null],
      [Suspect, 1, Alive, 1, null],
      [Alive, 2, Suspect, 1, null],
      [Dead, 2, Dead, 1, null],
    ];
    for (const [state, incarnation, previous, previousIncarnation, expected] of cases) {
      assert.equal(
        memberEventOf(member("10.0.0.1:7946", state, incarnation), previous, previousIncarnation),
        expected,
        `${previous}@${previousIncarnation} -> ${state}@${incarnation}`,
      );
    }
  });

  test("members' tags reach the stdin lines and the TAMTAM_TAG_* variables", () => {
    const tagged: MemberInfo = { ...member("10.0.0.2:7946", MemberState.Alive), tags: encodeTagMap({ role: "web", dc: "eu-west" }) };
    assert.deepEqual([...memberTags(tagged)], [["dc", "eu-west"], ["role", "web"]]);
    assert.equal(memberLine(tagged), "10.0.0.2:7946\talive\tdc=eu-west,role=web\n");
    assert.deepEqual(tagEnvironment(memberTags(tagged)), { TAMTAM_TAG_DC: "eu-west", TAMTAM_TAG_ROLE: "web" });
    assert.equal(memberTags(member("10.0.0.3:7946", MemberState.Alive)).size, 0);
  });

  test("stdin lines and tag variables", () => {
    assert.equal(memberLine(member("10.0.0.1:7946", MemberState.Dead)), "10.0.0.1:7946\tdead\n");
    assert.equal(memberLine(member("[fd00::1]:7946", MemberState.Alive)), "[fd00::1]:7946\talive\n");
    const tags = new Map([["role", "web"], ["odd,key", "a=b%c\nd"]]);
    assert.equal(formatTags(tags), "role=web,odd%2Ckey=a%3Db%25c%0Ad");
    assert.equal(formatTags(new Map()), "");
    assert.deepEqual(tagEnvironment(new Map([["role", "web"], ["dc-name", "eu west"], ["bad", "a\0b"]])), {
      TAMTAM_TAG_ROLE: "web",
      TAMTAM_TAG_DC_NAME: "eu west",
    });
  });
});

describe("EventHandlers coalescing", () => {
  const SELF = addr("10.0.0.1:7946");
  const recorder = (dir: string): string =>
    `f="${dir}/$(date +%s%N)-$$"; { echo "$TAMTAM_EVENT $TAMTAM_SELF_ADDRESS $TAMTAM_USER_ORIGIN"; cat; } > "$f.tmp" && mv "$f.tmp" "$f.run"`;
  const runs = (dir: string): string[] =>
    readdirSync(dir)
      .filter((f) => f.endsWith(".run"))
      .sort()
      .map((f) => readFileSync(join(dir, f), "utf8"));
  const quietLog = { warn: () => undefined, info: () => undefined, debug: () => undefined };

  test("a burst of membership events runs each handler once per event name, the latest event per member winning", async () => {
    const dir = tempDir("tamtam-handlers-");
    const handlers = new EventHandlers({ handlers: [spec(recorder(dir))], timeoutMs: 10_000, self: SELF, log: quietLog });
    try {
      const joined: Address[] = [];
      for (let i = 2; i < 42; i++) {
        const m = member(`10.0.0.${i}:7946`, MemberState.Alive);
        joined.push(m.address);
        handlers.onEvent(change(m, null));
      }
      // Within the batch: .2 fails after joining, .3 updates after joining (stays a join),
      // .4 was known before and updates, a suspicion is no event.
      handlers.onEvent(change(member("10.0.0.2:7946", MemberState.Dead), MemberState.Alive));
      handlers.onEvent(change(member("10.0.0.3:7946", MemberState.Alive, 2), MemberState.Alive, 1));
      handlers.onEvent(change(member("10.0.0.99:7946", MemberState.Alive, 7), MemberState.Alive, 6));
      handlers.onEvent(change(member("10.0.0.5:7946", MemberState.Suspect), MemberState.Alive));
      const all = await poll(() => (runs(dir).length === 3 ? runs(dir) : null), 10_000);
      const byEvent = new Map(all.map((r) => [r.split(" ")[0] as string, r]));
      const joinLines = (byEvent.get("member-join") ?? "").split("\n").slice(1, -1);
      assert.equal(joinLines.length, 39, "39 joins (10.0.0.2 failed meanwhile)");
      assert.ok(joinLines.every((l) => /^10\.0\.0\.\d+:7946\talive$/.test(l)));
      assert.deepEqual(joinLines, [...joinLines].sort(), "sorted by address");
      assert.ok(joinLines.includes("10.0.0.3:7946\talive"));
      assert.equal(byEvent.get("member-failed"), `member-failed ${SELF.key} \n10.0.0.2:7946\tdead\n`);
      assert.equal(byEvent.get("member-update"), `member-update ${SELF.key} \n10.0.0.99:7946\talive\n`);
      const stats = handlers.stats();
      assert.equal(stats.batches, 1);
      assert.equal(stats.started, 3);
      assert.equal(stats.memberEvents, 43);
    } finally {
      await handlers.close();
      removeDir(dir);
    }
  });

  test("user events run at once, one each, with the payload on stdin; filters select handlers", async () => {
    const dir = tempDir("tamtam-handlers-");
    const other = tempDir("tamtam-handlers-");
    const handlers = new EventHandlers({
      handlers: [spec(`user=${recorder(dir)}`), spec(`member-failed=${recorder(other)}`)],
      timeoutMs: 10_000,
      self: SELF,
      log: quietLog,
    });
    try {
      const origin = addr("10.0.0.7:7946");
      for (const text of ["first", "second\nline"]) {
        handlers.onEvent({ type: "broadcast", origin, epoch: 1, seq: 1, payload: Buffer.from(text) });
      }
      handlers.onEvent(change(member("10.0.0.8:7946", MemberState.Alive), null)); // no handler wants joins
      const all = await poll(() => (runs(dir).length === 2 ? runs(dir) : null), 10_000);
      assert.deepEqual(all.sort(), [`user ${SELF.key} ${origin.key}\nfirst`, `user ${SELF.key} ${origin.key}\nsecond\nline`].sort());
      assert.equal(handlers.stats().memberEvents, 0, "joins are not collected when no handler wants them");
      assert.deepEqual(runs(other), []);
    } finally {
      await handlers.close();
      removeDir(dir);
      removeDir(other);
    }
  });

  test("a batch's member lines are split into standard inputs within the limit, whole lines, in order", () => {
    const lines = Array.from({ length: 5000 }, (_, i) => `10.${(i >> 8) & 255}.${i & 255}.1:7946\talive${i % 7 === 0 ? `\trole=${"x".repeat(i % 300)}` : ""}\n`);
    const whole = lines.join("");
    for (const maxBytes of [64, 1000, 4096, 100_000]) {
      const parts = stdinParts(lines, maxBytes);
      assert.equal(parts.map((p) => p.toString()).join(""), whole, `${maxBytes}: every line once, in order`);
      for (const p of parts) {
        assert.ok(p.length <= maxBytes || p.toString().split("\n").length === 2, `${maxBytes}: a part of ${p.length} bytes`);
        assert.ok(p.toString().endsWith("\n"), "a line is never cut");
      }
      // Greedy: a part and the first line of the next would not fit together.
      for (let i = 0; i + 1 < parts.length; i++) {
        const nextLine = `${(parts[i + 1] as Buffer).toString().split("\n")[0]}\n`;
        assert.ok((parts[i] as Buffer).length + Buffer.byteLength(nextLine) > maxBytes, `${maxBytes}: part ${i} could have taken one more line`);
      }
    }
    assert.deepEqual(stdinParts(lines.slice(0, 3), 1 << 20).length, 1);
    assert.deepEqual(stdinParts([], 100), []);
  });

  test("a batch beyond 4 MiB of member lines runs the handler several times, each within the limit and with the environment", { timeout: 120_000 }, async () => {
    const dir = tempDir("tamtam-handlers-");
    const handlers = new EventHandlers({ handlers: [spec(`member-join=${recorder(dir)}`)], timeoutMs: 60_000, self: SELF, log: quietLog });
    try {
      // COALESCE_MAX_MEMBERS joins with a 100-byte tag each: about 8 MiB of lines, closing the batch at once.
      const tags = encodeTagMap({ role: "r".repeat(100) });
      for (let i = 0; i < COALESCE_MAX_MEMBERS; i++) {
        handlers.onEvent(change(memberInfo(`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}:7946`, MemberState.Alive, { tags }), null));
      }
      const all = await poll(() => (handlers.stats().running === 0 && runs(dir).length >= 2 ? runs(dir) : null), 100_000, 100, () => JSON.stringify(handlers.stats()));
      assert.ok(all.length >= 2 && all.length <= 3, `${all.length} runs for about 8 MiB`);
      let members = 0;
      for (const run of all) {
        const [header, ...lines] = run.split("\n");
        assert.equal(header, `member-join ${SELF.key} `, "each run has the batch's environment");
        assert.equal(lines.pop(), "", "whole lines");
        assert.ok(Buffer.byteLength(run) - Buffer.byteLength(`${header}\n`) <= DEFAULT_MAX_STDIN_BYTES, "each run's input is within the limit");
        assert.ok(lines.every((l) => /^10\.\d+\.\d+\.\d+:7946\talive\trole=r{100}$/.test(l)));
        members += lines.length;
      }
      assert.equal(members, COALESCE_MAX_MEMBERS, "every member reached the handler once");
      const stats = handlers.stats();
      assert.equal(stats.batches, 1);
      assert.equal(stats.refusedStdinTooLarge, 0);
      assert.equal(stats.started, all.length);
      assert.equal(stats.batchSplitRuns, all.length - 1, "the extra runs are counted");
    } finally {
      await handlers.close();
      removeDir(dir);
    }
  });

  test("close() drops the open batch; later events are ignored", async () => {
    const dir = tempDir("tamtam-handlers-");
    const handlers = new EventHandlers({ handlers: [spec(recorder(dir))], timeoutMs: 10_000, self: SELF, log: quietLog });
    try {
      handlers.onEvent(change(member("10.0.0.2:7946", MemberState.Alive), null));
      await handlers.close();
      handlers.onEvent(change(member("10.0.0.3:7946", MemberState.Alive), null));
      const stats = handlers.stats();
      assert.equal(stats.droppedAtClose, 1);
      assert.equal(stats.started, 0);
      assert.equal(stats.memberEvents, 1);
    } finally {
      removeDir(dir);
    }
  });
});
