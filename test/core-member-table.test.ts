/**
 * The compact member table (src/core/member-table.ts) on its own: add, find, remove, slot
 * reuse, growth, look-up by any Address object of an (ip, port), the bounded index, the random
 * slot sets and the probe order; then SwimNode's warm start (addConvergedMembers): a node that
 * starts from a converged table queues, emits and schedules nothing extra, probes like a node
 * that learned the same members from the network, and a few warm-started cores converse
 * normally and detect a crash.
 */

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { type Address, addr, makeAddress } from "../src/core/address.js";
import { makeConfig } from "../src/core/config.js";
import { MemberTable, NO_SLOT, ProbeOrder, SlotSet } from "../src/core/member-table.js";
import { SwimNode } from "../src/core/node.js";
import { Prng } from "../src/core/prng.js";
import { MemberState, MessageType } from "../src/core/wire/messages.js";
import { ManualCluster, RecordingRuntime, SYNC, alive, craft } from "./helpers/cluster.js";

const v4 = (i: number): Address => makeAddress(new Uint8Array([10, (i >>> 16) & 0xff, (i >>> 8) & 0xff, i & 0xff]), 7946);
const v6 = (i: number): Address => {
  const ip = new Uint8Array(16);
  ip[0] = 0xfd;
  ip[14] = (i >>> 8) & 0xff;
  ip[15] = i & 0xff;
  return makeAddress(ip, 7946);
};

function table(maxSlots = 1 << 20, onCompact: (newSlots: Int32Array) => void = () => undefined): MemberTable<never> {
  return new MemberTable<never>(1234, maxSlots, onCompact);
}

function keysInOrder(t: MemberTable<unknown>): string[] {
  const out: string[] = [];
  for (let s = 0; s < t.slotLimit; s++) if (t.isMember(s)) out.push(t.address(s).key);
  return out;
}

describe("MemberTable", () => {
  test("add, find, remove; new members come after every other, as in a Map", () => {
    const t = table();
    const slots = [0, 1, 2, 3, 4].map((i) => t.add(v4(i), MemberState.Alive, i, 100 + i));
    assert.deepEqual(slots, [0, 1, 2, 3, 4]);
    assert.equal(t.size, 5);
    for (let i = 0; i < 5; i++) {
      const s = t.find(v4(i));
      assert.equal(s, i);
      assert.equal(t.address(s), v4(i));
      assert.equal(t.incarnation[s], i);
      assert.equal(t.stateChangedAtMs[s], 100 + i);
      assert.equal(t.lastHeardAtMs[s], -1);
      assert.equal(t.lastRttMs[s], -1);
    }
    assert.equal(t.find(v4(99)), NO_SLOT);
    t.remove(1);
    t.remove(3);
    assert.equal(t.size, 3);
    assert.equal(t.find(v4(1)), NO_SLOT);
    assert.equal(t.find(v4(3)), NO_SLOT);
    assert.ok(!t.isMember(1) && !t.isMember(3) && t.isMember(2));
    assert.equal(t.add(v6(7), MemberState.Suspect, 9, 0), 5);
    assert.equal(t.add(v4(1), MemberState.Alive, 9, 0), 6, "a member added again goes last");
    assert.equal(t.slotLimit, 7);
    assert.equal(t.find(v6(7)), 5);
    assert.equal(t.state[5], MemberState.Suspect);
    for (const i of [0, 2, 4]) assert.equal(t.find(v4(i)), i);
    assert.deepEqual(keysInOrder(t), [v4(0), v4(2), v4(4), v6(7), v4(1)].map((a) => a.key));
  });

  test("when full, moves its members down over freed slots in order instead of growing, and says where", () => {
    let renumbered: Int32Array | null = null;
    const t = table(1 << 20, (newSlots) => {
      renumbered = newSlots.slice();
    });
    t.reserve(8);
    for (let i = 0; i < 8; i++) t.add(v4(i), MemberState.Alive, i, i);
    t.suspectedBy.set(6, v4(0));
    for (const s of [1, 2, 5]) t.remove(s);
    const s8 = t.add(v4(8), MemberState.Dead, 8, 8);
    assert.deepEqual(renumbered !== null && [...(renumbered as Int32Array)], [0, NO_SLOT, NO_SLOT, 1, 2, NO_SLOT, 3, 4]);
    assert.equal(s8, 5);
    assert.equal(t.state.length, 8, "no growth");
    assert.deepEqual(keysInOrder(t), [0, 3, 4, 6, 7, 8].map((i) => v4(i).key));
    for (const [i, s] of [[0, 0], [3, 1], [4, 2], [6, 3], [7, 4], [8, 5]] as const) {
      assert.equal(t.find(v4(i)), s);
      assert.equal(t.incarnation[s], i);
      assert.equal(t.stateChangedAtMs[s], i);
    }
    assert.equal(t.suspectedBy.get(3), v4(0), "rare fields move along");
    assert.equal(t.suspectedBy.size, 1);
  });

  test("removing a member drops its rare fields with it", () => {
    const t = new MemberTable<string>(1, 100, () => undefined);
    const s = t.add(v4(1), MemberState.Dead, 1, 0);
    t.suspicion.set(s, "x");
    t.suspectedBy.set(s, v4(2));
    t.reapToken.set(s, 7);
    t.lastSyncToMs.set(s, 5);
    t.remove(s);
    assert.equal(t.suspicion.size + t.suspectedBy.size + t.reapToken.size + t.lastSyncToMs.size, 0);
  });

  test("grows by doubling and keeps every field; reserve presizes exactly", () => {
    const t = table();
    for (let i = 0; i < 10_000; i++) t.add(i % 2 === 0 ? v4(i) : v6(i), MemberState.Alive, i * 3, i / 7);
    assert.equal(t.size, 10_000);
    assert.ok(t.state.length >= 10_000 && t.state.length <= 20_000);
    for (let i = 0; i < 10_000; i++) {
      const s = t.find(i % 2 === 0 ? v4(i) : v6(i));
      assert.equal(s, i);
      assert.equal(t.incarnation[s], i * 3);
      assert.equal(t.stateChangedAtMs[s], i / 7);
    }
    const r = table();
    r.reserve(3000);
    assert.equal(r.state.length, 3000);
    const before = r.state;
    for (let i = 0; i < 3000; i++) r.add(v4(i), MemberState.Alive, 0, 0);
    assert.equal(r.state, before, "no growth within the reserved room");
  });

  test("finds a member by any Address object of its ip and port, and tells same-id addresses apart", () => {
    const t = table();
    const a = v6(42);
    const s = t.add(a, MemberState.Alive, 1, 0);
    // Another object for the same address, as after the intern table started afresh.
    const twin: Address = Object.freeze({ ...a, ip: a.ip.slice() });
    assert.notEqual(twin, a);
    assert.equal(t.find(twin), s);
    // A different IPv6 address that happens to share the id: a distinct member.
    const ip = a.ip.slice();
    ip[1] = 0x77;
    const impostor: Address = Object.freeze({ family: 6, ip, port: a.port, key: "[fd77::2a]:7946", id: a.id });
    assert.equal(t.find(impostor), NO_SLOT);
    const s2 = t.add(impostor, MemberState.Alive, 1, 0);
    assert.equal(t.find(impostor), s2);
    assert.equal(t.find(a), s);
    t.remove(s);
    assert.equal(t.find(impostor), s2);
    assert.equal(t.find(twin), NO_SLOT);
  });

  test("finds by canonical key only", () => {
    const t = table();
    const s4 = t.add(addr("192.168.1.2:7946"), MemberState.Alive, 1, 0);
    const s6 = t.add(addr("[2001:db8::1]:7946"), MemberState.Alive, 1, 0);
    assert.equal(t.findKey("192.168.1.2:7946"), s4);
    assert.equal(t.findKey("[2001:db8::1]:7946"), s6);
    assert.equal(t.findKey("[2001:DB8:0::1]:7946"), NO_SLOT, "not the canonical text");
    assert.equal(t.findKey(" 192.168.1.2:7946"), NO_SLOT);
    assert.equal(t.findKey("192.168.1.3:7946"), NO_SLOT);
    assert.equal(t.findKey("nonsense"), NO_SLOT);
  });

  test("matches a Map under random adds and removes (backward-shift deletion keeps every chain)", () => {
    const t = table();
    const rng = new Prng(9);
    // The model: which addresses are members, with the incarnation each was added at.
    const model = new Map<string, number>();
    const universe = Array.from({ length: 600 }, (_, i) => (i % 3 === 0 ? v6(i) : v4(i)));
    for (let step = 0; step < 50_000; step++) {
      const a = universe[rng.nextInt(universe.length)] as Address;
      if (!model.has(a.key)) {
        if (rng.nextInt(3) > 0) {
          t.add(a, MemberState.Alive, step, step);
          model.set(a.key, step);
        }
      } else if (rng.nextInt(2) === 0) {
        t.remove(t.find(a));
        model.delete(a.key);
      }
      if (step % 997 === 0) {
        for (const b of universe) {
          const s = t.find(b);
          assert.equal(s === NO_SLOT ? undefined : t.incarnation[s], model.get(b.key), `step ${step}: ${b.key}`);
          if (s !== NO_SLOT) assert.equal(t.address(s).key, b.key);
        }
      }
    }
    assert.equal(t.size, model.size);
    assert.ok(t.slotLimit <= 2 * model.size + 16, `slots ${t.slotLimit} for ${model.size} members`);
  });

  test("stays bounded by its members, however many addresses come and go", () => {
    const live: Address[] = [];
    const t = table(64);
    for (let i = 0; i < 100_000; i++) {
      if (live.length === 64) for (const a of live.splice(0, 32)) t.remove(t.find(a));
      const a = i % 5 === 0 ? v6(i) : v4(i);
      t.add(a, MemberState.Alive, 0, 0);
      live.push(a);
    }
    assert.ok(t.slotLimit <= 64, `slots ${t.slotLimit}`);
    assert.ok(t.state.length <= 64, `capacity ${t.state.length}`);
    assert.equal(t.size, 64);
    assert.deepEqual(keysInOrder(t), live.map((a) => a.key), "in the order added");
  });
});

describe("SlotSet and ProbeOrder", () => {
  function setup(n: number): { t: MemberTable<never>; a: SlotSet; b: SlotSet } {
    const t = table();
    for (let i = 0; i < n; i++) t.add(v4(i), MemberState.Alive, 0, 0);
    return { t, a: new SlotSet(t, 0), b: new SlotSet(t, 1) };
  }

  test("add, delete, has; two sets over one table hold a slot at most once between them", () => {
    const { a, b } = setup(20);
    for (let s = 0; s < 10; s++) assert.ok(a.add(s));
    for (let s = 10; s < 20; s++) assert.ok(b.add(s));
    assert.ok(!a.add(3), "already there");
    assert.throws(() => a.add(12), /another set/);
    assert.ok(a.has(3) && !b.has(3) && b.has(12) && !a.has(12));
    assert.ok(a.delete(3) && !a.delete(3) && !b.delete(3));
    assert.ok(b.add(3) && b.has(3) && !a.has(3));
    assert.equal(a.size, 9);
    assert.equal(b.size, 11);
    const items = Array.from({ length: a.size }, (_, i) => a.at(i)).sort((x, y) => x - y);
    assert.deepEqual(items, [0, 1, 2, 4, 5, 6, 7, 8, 9]);
    assert.equal(new SlotSet(setup(1).t, 0).pick(new Prng(1)), NO_SLOT);
  });

  test("pick is roughly uniform; sample gives distinct items and honours exclude", () => {
    const { a } = setup(10);
    for (let s = 0; s < 10; s++) a.add(s);
    const rng = new Prng(3);
    const counts = new Array<number>(10).fill(0);
    for (let i = 0; i < 100_000; i++) {
      const s = a.pick(rng);
      counts[s] = (counts[s] ?? 0) + 1;
    }
    for (const c of counts) assert.ok(c > 9_400 && c < 10_600, `counts ${counts.join(" ")}`);
    for (let i = 0; i < 200; i++) {
      const got = a.sample(rng, 4, (s) => s % 2 === 1);
      assert.equal(got.length, 4);
      assert.equal(new Set(got).size, 4);
      assert.ok(got.every((s) => s % 2 === 0));
    }
    assert.equal(a.sample(rng, 20, () => false).length, 10);
  });

  test("a probe round visits every probeable slot once; entries that stopped being probeable are skipped", () => {
    const { a } = setup(50);
    const rng = new Prng(5);
    const order = new ProbeOrder();
    for (let s = 0; s < 50; s++) if (a.add(s)) order.insert(s, rng);
    const round = (): number[] => Array.from({ length: a.size }, () => order.next(a, rng));
    for (let r = 0; r < 3; r++) assert.deepEqual([...round()].sort((x, y) => x - y), Array.from({ length: 50 }, (_, i) => i));
    const first = order.next(a, rng);
    const gone = first === 7 ? 8 : 7;
    a.delete(gone);
    const rest: number[] = [first];
    for (let i = 0; i < 48; i++) rest.push(order.next(a, rng));
    assert.ok(!rest.includes(gone), "not probeable any more");
    assert.equal(new Set(rest).size, 49);
    assert.equal(new Set(round()).size, 49, "the next round holds the 49 left");
  });

  test("sets and the probe order follow a compaction", () => {
    const keep: { a?: SlotSet; order?: ProbeOrder } = {};
    const t = table(1 << 20, (newSlots) => {
      keep.a?.renumber(newSlots);
      keep.order?.renumber(newSlots);
    });
    t.reserve(16);
    for (let i = 0; i < 16; i++) t.add(v4(i), MemberState.Alive, 0, 0);
    const a = new SlotSet(t, 0);
    const order = new ProbeOrder();
    keep.a = a;
    keep.order = order;
    const rng = new Prng(8);
    for (let s = 0; s < 16; s++) if (a.add(s)) order.insert(s, rng);
    for (const i of [2, 3, 11]) {
      const s = t.find(v4(i));
      a.delete(s);
      t.remove(s);
    }
    a.add(t.add(v4(99), MemberState.Alive, 0, 0));
    const probed = new Set<string>();
    for (let i = 0; i < 13; i++) probed.add(t.address(order.next(a, rng)).key);
    const expected = [0, 1, 4, 5, 6, 7, 8, 9, 10, 12, 13, 14, 15].map((i) => v4(i).key);
    assert.deepEqual([...probed].sort(), expected.sort(), "the rest of the round, renumbered, without the removed");
    for (let i = 0; i < a.size; i++) assert.ok(a.has(a.at(i)) && t.isMember(a.at(i)));
  });
});

describe("warm start (addConvergedMembers)", () => {
  const config = makeConfig("lan");
  const addresses = Array.from({ length: 40 }, (_, i) => v4(i + 1));

  test("adds the unknown members alive at the incarnation, without updates, events or timers", () => {
    const rt = new RecordingRuntime(addresses[0] as Address);
    const n = new SwimNode({ self: addresses[0] as Address, config, seed: 1, incarnation: 3, broadcastEpoch: 0 });
    n.start(0, rt);
    n.handleDatagram(0, craft(addresses[5] as Address, 9, [alive(addresses[6] as Address, 8)]), rt);
    const events = rt.events.length;
    const timers = rt.timersSet.length;
    const sent = rt.sent.length;
    const queued = n.queuedUpdates;
    n.addConvergedMembers(10, addresses, 4);
    assert.equal(n.memberCount, 40);
    assert.equal(n.liveCount, 40);
    assert.equal(rt.events.length, events);
    assert.equal(rt.timersSet.length, timers);
    assert.equal(rt.sent.length, sent);
    assert.equal(n.queuedUpdates, queued);
    assert.equal(n.member(addresses[5]?.key ?? "")?.incarnation, 9, "known members are left alone");
    assert.equal(n.member(addresses[6]?.key ?? "")?.incarnation, 8);
    const m = n.member(addresses[7]?.key ?? "");
    assert.deepEqual(m && [m.state, m.incarnation, m.stateChangedAtMs, m.lastHeardAtMs, m.lastRttMs, m.pendingTransmits, m.isSelf], [MemberState.Alive, 4, 10, -1, -1, 0, false]);
    assert.equal(n.member(addresses[0]?.key ?? "")?.incarnation, 3, "self is skipped");
  });

  test("respects maxMembers and counts the refused", () => {
    const rt = new RecordingRuntime(addresses[0] as Address);
    const n = new SwimNode({ self: addresses[0] as Address, config: makeConfig("lan", { maxMembers: 16 }), seed: 1, incarnation: 1, broadcastEpoch: 0 });
    n.start(0, rt);
    n.addConvergedMembers(0, addresses, 1);
    assert.equal(n.memberCount, 16);
    assert.equal(n.stats.membersRefused, 39 - 15);
  });

  test("probes in the same order as a node that learned the same members from a SYNC", () => {
    // Without Lifeguard the unanswered probes keep their period. The shuffled rounds (the shared
    // schedule's fallback) are what this is about: test/probe-schedule.test.ts has the schedule.
    const config = makeConfig("lan", { lifeguard: false, sharedProbeSchedule: false });
    const self = addresses[0] as Address;
    const others = addresses.slice(1);
    const pingTargets = (n: SwimNode, rt: RecordingRuntime): string[] => {
      rt.runTimers(n, 3 * 40 * config.probeIntervalMs, (t) => t.kind === "probe");
      return rt.sent.filter((d) => d.decoded?.body.type === MessageType.Ping).map((d) => d.to.key);
    };
    const warmRt = new RecordingRuntime(self);
    const warm = new SwimNode({ self, config, seed: 77, incarnation: 1, broadcastEpoch: 0 });
    warm.start(0, warmRt);
    warm.addConvergedMembers(0, others, 1);
    const learnedRt = new RecordingRuntime(self);
    const learned = new SwimNode({ self, config, seed: 77, incarnation: 1, broadcastEpoch: 0 });
    learned.start(0, learnedRt);
    learned.handleDatagram(0, craft(others[0] as Address, 1, others.map((a) => alive(a, 1)), SYNC), learnedRt);
    const a = pingTargets(warm, warmRt);
    const b = pingTargets(learned, learnedRt);
    assert.ok(a.length >= 3 * 39, `${a.length} pings`);
    assert.deepEqual(a, b);
    // Every member is probed once per round.
    assert.equal(new Set(a.slice(0, 39)).size, 39);
  });

  test("warm-started cores probe each other, stay quiet and detect a crash", () => {
    const c = new ManualCluster({ size: 5, seed: 4, ipv6: true });
    c.startAll();
    const all = c.slots.map((s) => s.address);
    for (let i = 0; i < c.size; i++) c.node(i).addConvergedMembers(c.nowMs, all, 0);
    assert.ok(c.converged(), c.describeViews());
    c.advanceBy(20 * config.probeIntervalMs);
    assert.ok(c.converged(), c.describeViews());
    const pings = c.sentLog.filter((d) => d.decoded?.body.type === MessageType.Ping);
    for (let i = 0; i < c.size; i++) {
      const targets = new Set(pings.filter((d) => d.from.key === c.key(i)).map((d) => d.to.key));
      assert.equal(targets.size, c.size - 1, `node ${i} probed everyone`);
    }
    assert.equal(c.eventLog.filter((e) => e.event.type === "member" && !e.event.member.isSelf).length, 0, "no membership change");
    assert.ok(c.sentLog.some((d) => d.decoded?.body.type === MessageType.Ack));

    c.stop(2);
    const dead = c.runUntil(() => c.allSee(2, MemberState.Dead), 120_000);
    assert.ok(dead, c.describeViews());
    for (const i of [0, 1, 3, 4]) for (const j of [0, 1, 3, 4]) if (i !== j) assert.equal(c.stateOf(i, j), MemberState.Alive);
    // It comes back and is seen alive again.
    c.restart(2, 1);
    c.join(2, [0]);
    assert.ok(c.runUntil(() => c.converged(), 60_000), c.describeViews());
    assert.deepEqual(c.problems(), []);
  });
});
