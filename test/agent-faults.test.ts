/**
 * The agent's side of partition healing and flapping: the member snapshot file (read, corrupt
 * files, bounded, atomic and rate-limited writes) and the Monitor fan-out's coalescing of one
 * member's changes for a reader that falls behind.
 */

import assert from "node:assert/strict";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import type { ClusterEvent, MemberInfo } from "../src/core/runtime.js";
import { MemberState } from "../src/core/wire/messages.js";
import { DampedEventFilter } from "../src/agent/damped-events.js";
import { memberEventOf } from "../src/agent/event-handlers.js";
import { Fanout } from "../src/agent/fanout.js";
import { memberInfo } from "./helpers/member-info.js";
import { readSnapshot, SNAPSHOT_MAX_MEMBERS, SnapshotWriter, snapshotText } from "../src/agent/snapshot.js";

function member(key: string, state: MemberState, isSelf = false): MemberInfo {
  return memberInfo(key, state, { isSelf });
}

function withDir(run: (dir: string) => Promise<void> | void): () => Promise<void> {
  return async () => {
    const dir = mkdtempSync(join(tmpdir(), "tamtam-snapshot-"));
    try {
      await run(dir);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };
}

describe("member snapshot", () => {
  test("remembers live members first, then failed ones; never itself or members that left", () => {
    const text = snapshotText([
      member("10.0.0.1:9999", MemberState.Alive, true),
      member("10.0.0.2:9999", MemberState.Dead),
      member("[fd77::3]:9999", MemberState.Suspect),
      member("10.0.0.4:9999", MemberState.Left),
      member("10.0.0.5:9999", MemberState.Alive),
    ]);
    assert.ok(text !== null);
    assert.deepEqual(JSON.parse(text), { format: "tamtam-snapshot/1", members: ["[fd77::3]:9999", "10.0.0.5:9999", "10.0.0.2:9999"] });
    assert.equal(snapshotText([member("10.0.0.1:9999", MemberState.Alive, true)]), null, "nothing to remember: the file is kept");
    const many = Array.from({ length: SNAPSHOT_MAX_MEMBERS + 10 }, (_, i) => member(`10.1.${i >> 8}.${i & 0xff}:9999`, MemberState.Alive));
    assert.equal((JSON.parse(snapshotText(many) as string) as { members: string[] }).members.length, SNAPSHOT_MAX_MEMBERS);
  });

  test(
    "a missing file is an empty start; a corrupt one is one warning line, never a throw",
    withDir((dir) => {
      assert.deepEqual(readSnapshot(join(dir, "none.json")), { members: [], warning: null });
      const cases: [string, RegExp][] = [
        ["{not json", /not JSON/],
        ['{"format":"other","members":[]}', /not a tamtam-snapshot\/1 object/],
        ['{"format":"tamtam-snapshot/1","members":["10.0.0.2:9999", 7]}', /a member is not ADDR:PORT: 7/],
        ['{"format":"tamtam-snapshot/1","members":["nope"]}', /a member is not ADDR:PORT/],
      ];
      for (const [content, why] of cases) {
        const path = join(dir, "bad.json");
        writeFileSync(path, content);
        const r = readSnapshot(path);
        assert.deepEqual(r.members, []);
        assert.ok(r.warning !== null && !r.warning.includes("\n"), "one line");
        assert.match(r.warning, why);
        assert.match(r.warning, /starting without it$/);
      }
      const path = join(dir, "good.json");
      writeFileSync(path, '{"format":"tamtam-snapshot/1","members":["10.0.0.2:9999","[fd77::3]:9999","10.0.0.2:9999"]}');
      assert.deepEqual(readSnapshot(path).members.map((a) => a.key), ["10.0.0.2:9999", "[fd77::3]:9999"]);
    }),
  );

  test(
    "writes atomically (no temporary file left), only changed content, at most once per interval",
    withDir(async (dir) => {
      const path = join(dir, "members.json");
      let members = [member("10.0.0.1:9999", MemberState.Alive, true), member("10.0.0.2:9999", MemberState.Alive)];
      const w = new SnapshotWriter({
        path,
        members: async () => members,
        onError: (line) => assert.fail(line),
        minIntervalMs: 60_000,
      });
      await w.flush();
      assert.deepEqual(readSnapshot(path).members.map((a) => a.key), ["10.0.0.2:9999"]);
      assert.deepEqual(readdirSync(dir), ["members.json"], "no temporary file left behind");
      await w.flush();
      assert.equal(w.counters.writes, 1);
      assert.equal(w.counters.skippedUnchanged, 1);
      // A change right after a write waits for the interval (60 s here): nothing is written yet.
      members = [...members, member("10.0.0.3:9999", MemberState.Alive)];
      w.changed();
      w.changed();
      await new Promise((resolve) => setImmediate(resolve));
      assert.equal(w.counters.writes, 1, "rate-limited");
      // Closing writes what is pending, once.
      await w.close();
      assert.equal(w.counters.writes, 2);
      assert.deepEqual(JSON.parse(readFileSync(path, "utf8")).members, ["10.0.0.2:9999", "10.0.0.3:9999"]);
    }),
  );

  test("close waits for a write in progress, writes the final state last, and nothing writes after it", async () => {
    const written: string[] = [];
    let members: MemberInfo[] = [member("10.0.0.2:9999", MemberState.Alive)];
    // The first read (of the state when it began) of the members is held until released: a write in progress when close() comes.
    let releaseFirstRead: () => void = () => undefined;
    const firstRead = new Promise<void>((resolve) => {
      releaseFirstRead = resolve;
    });
    let reads = 0;
    const w = new SnapshotWriter({
      path: "members.json",
      members: async () => {
        if (reads++ > 0) return members;
        const atStart = [member("10.0.0.2:9999", MemberState.Alive)];
        await firstRead;
        return atStart;
      },
      write: (_path, text) => written.push((JSON.parse(text) as { members: string[] }).members.join(",")),
      onError: (line) => assert.fail(line),
      minIntervalMs: 0,
    });
    const inProgress = w.flush();
    members = [...members, member("10.0.0.3:9999", MemberState.Alive)];
    const closed = w.close();
    // Changes while closing schedule nothing, and a flush asked for now writes nothing.
    members = [...members, member("10.0.0.4:9999", MemberState.Alive)];
    w.changed();
    void w.flush();
    releaseFirstRead();
    await Promise.all([inProgress, closed]);
    assert.deepEqual(written, ["10.0.0.2:9999", "10.0.0.2:9999,10.0.0.3:9999,10.0.0.4:9999"], "the final state is written last");
    // After close: changes and flushes write nothing (a 0 ms timer of changed() would have fired by
    // the time this one does).
    members = [...members, member("10.0.0.5:9999", MemberState.Alive)];
    w.changed();
    await w.flush();
    await new Promise((resolve) => setTimeout(resolve, 0));
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(written.length, 2, `nothing is written after close: ${written.join(" | ")}`);
    assert.equal(w.counters.writes, 2);
    await w.close(); // idempotent
    assert.equal(written.length, 2);
  });

  test(
    "a write that fails is one error line and counted, not a throw",
    withDir(async (dir) => {
      const lines: string[] = [];
      const w = new SnapshotWriter({
        path: join(dir, "missing-dir", "members.json"),
        members: async () => [member("10.0.0.2:9999", MemberState.Alive)],
        onError: (line) => lines.push(line),
      });
      await w.flush();
      assert.equal(w.counters.writeErrors, 1);
      assert.equal(lines.length, 1);
      assert.match(lines[0] as string, /^cannot write the snapshot file .*members\.json: ENOENT$/);
    }),
  );
});

describe("Monitor coalescing", () => {
  test("a reader behind a burst of one member's changes gets its latest state once, in the place of the first", async () => {
    const f = new Fanout<{ key: string; v: number }>(8, 4, (x) => x.key);
    const s = f.subscribe();
    assert.ok(s !== null);
    f.publish({ key: "a", v: 1 });
    f.publish({ key: "b", v: 1 });
    f.publish({ key: "a", v: 2 });
    f.publish({ key: "a", v: 3 });
    assert.equal(s.size, 2);
    assert.equal(f.counters.coalesced, 2);
    assert.deepEqual((await s.next()).value, { key: "a", v: 3 });
    // Once delivered, a new change of "a" is queued again (behind b).
    f.publish({ key: "a", v: 4 });
    assert.deepEqual((await s.next()).value, { key: "b", v: 1 });
    assert.deepEqual((await s.next()).value, { key: "a", v: 4 });
    // Bounded: distinct keys beyond the capacity drop the oldest, and coalescing still works.
    for (let i = 0; i < 10; i++) f.publish({ key: `k${i}`, v: i });
    f.publish({ key: "k9", v: 99 });
    assert.equal(s.size, 8);
    assert.equal(s.dropped, 2);
    const got: number[] = [];
    for (let i = 0; i < 8; i++) got.push(((await s.next()).value as { v: number }).v);
    assert.deepEqual(got, [2, 3, 4, 5, 6, 7, 8, 99]);
    s.close();
  });
});

describe("subscriber batches", () => {
  test("a waiting reader gets everything published in one run as one batch, at most its maximum", async () => {
    const f = new Fanout<number>(8, 4);
    const s = f.subscribe();
    assert.ok(s !== null);
    const waiting = s.nextBatch(3);
    for (let i = 1; i <= 5; i++) f.publish(i);
    assert.deepEqual(await waiting, [1, 2, 3]);
    assert.deepEqual(await s.nextBatch(3), [4, 5], "the rest at once, without waiting");
    assert.equal(f.counters.delivered, 5);
    // A full queue still drops its oldest (counted), batches or not.
    for (let i = 6; i <= 15; i++) f.publish(i);
    assert.equal(s.dropped, 2);
    assert.deepEqual(await s.nextBatch(100), [8, 9, 10, 11, 12, 13, 14, 15]);
    const closed = s.nextBatch(3);
    s.close();
    assert.equal(await closed, null, "a closed subscription ends a waiting read");
    assert.equal(await s.nextBatch(3), null);
  });

  test("a batch keeps coalescing: one member's burst comes as its latest state, in the place of the first", async () => {
    const f = new Fanout<{ key: string; v: number }>(8, 4, (x) => x.key);
    const s = f.subscribe();
    assert.ok(s !== null);
    const waiting = s.nextBatch(8);
    f.publish({ key: "a", v: 1 });
    f.publish({ key: "b", v: 1 });
    f.publish({ key: "a", v: 2 });
    assert.deepEqual(await waiting, [{ key: "a", v: 2 }, { key: "b", v: 1 }]);
    s.close();
  });
});

describe("damped members' events", () => {
  const change = (m: MemberInfo, previous: MemberState | null, dampingChanged = false): ClusterEvent => ({
    type: "member",
    member: m,
    previous,
    previousIncarnation: previous === null ? null : m.incarnation - 1,
    dampingChanged,
  });
  const b = (state: MemberState, incarnation: number, damped: boolean): MemberInfo => ({
    ...member("10.0.0.2:9999", state),
    incarnation,
    damped,
    flaps: damped ? 3 : 0,
    flapPenalty: damped ? 2500 : 0,
    dampedUntilMs: damped ? 120_000 : -1,
  });

  test("applications see damping start and end only; the end follows the last event shown", () => {
    const f = new DampedEventFilter();
    const plain = change(b(MemberState.Dead, 4, false), MemberState.Suspect);
    assert.equal(f.filter(plain), plain, "an undamped member's events pass");
    // Third comeback: damping starts with the comeback itself (a member-join for handlers).
    const comeback = b(MemberState.Alive, 5, true);
    const start = change(comeback, MemberState.Dead, true);
    assert.equal(f.filter(start), start);
    assert.equal(memberEventOf(comeback, MemberState.Dead, 4), "member-join");
    for (const [state, previous] of [[MemberState.Suspect, MemberState.Alive], [MemberState.Dead, MemberState.Suspect], [MemberState.Alive, MemberState.Dead], [MemberState.Dead, MemberState.Suspect]] as const) {
      assert.equal(f.filter(change(b(state, 6, true), previous)), null, "held back while damped");
    }
    assert.equal(f.heldBack, 4);
    // Released while dead: it reads as a failure after the join shown at the start.
    const released = f.filter(change(b(MemberState.Dead, 7, false), MemberState.Dead, true));
    assert.ok(released !== null && released.type === "member");
    assert.equal(released.previous, MemberState.Alive);
    assert.equal(released.previousIncarnation, 5);
    assert.equal(memberEventOf(released.member, released.previous, released.previousIncarnation), "member-failed");
    // Released alive at the incarnation shown: nothing for handlers, one line for Monitor.
    f.filter(start);
    const quiet = f.filter(change(b(MemberState.Alive, 5, false), MemberState.Alive, true));
    assert.ok(quiet !== null && quiet.type === "member");
    assert.equal(memberEventOf(quiet.member, quiet.previous, quiet.previousIncarnation), null);
  });
});
