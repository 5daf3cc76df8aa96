/**
 * Tests of the shared probe schedule (src/core/probe-schedule.ts): with one view of the
 * membership, every round is a permutation (each member probed by exactly one other), each
 * member's cycle is a round robin, the order changes from cycle to cycle, and a member that
 * stopped being probeable is never returned.
 */

import { test } from "node:test";
import assert from "node:assert/strict";
import { addr, type Address } from "../src/core/address.js";
import { NO_SLOT } from "../src/core/member-table.js";
import { SharedProbeSchedule } from "../src/core/probe-schedule.js";

/** A cluster of `n` members, 10.0.0.0:7946 ... ; each numbers the others in its own slots (1..). */
function cluster(n: number): { keys: Address[]; schedules: SharedProbeSchedule[]; slotsOf: number[][] } {
  const keys = Array.from({ length: n }, (_, i) => addr(`10.0.${i >> 8}.${i & 255}:7946`));
  // Each member numbers the others in its own table order (shuffled by a fixed stride) to show
  // that slots are local: only the addresses are shared.
  const slotsOf = keys.map((_, self) => keys.map((_, other) => (other === self ? NO_SLOT : 1 + ((other * 7 + self) % n))));
  const schedules = keys.map((key, self) => {
    const addressOfSlot = new Map((slotsOf[self] as number[]).map((slot, other) => [slot, keys[other] as Address]));
    return new SharedProbeSchedule(key, (slot) => addressOfSlot.get(slot) as Address);
  });
  return { keys, schedules, slotsOf };
}

/** Whom member `self` probes in `round`, as a member index. */
function targetOf(c: ReturnType<typeof cluster>, self: number, round: number, probeable: (other: number) => boolean = () => true): number {
  const slots = c.slotsOf[self] as number[];
  const members = slots.map((slot, other) => ({ slot, other })).filter((m) => m.slot !== NO_SLOT && probeable(m.other));
  const probeableSlots = new Set(members.map((m) => m.slot));
  const slot = (c.schedules[self] as SharedProbeSchedule).target(
    round,
    members.length,
    () => members.map((m) => m.slot),
    (s) => probeableSlots.has(s),
  );
  return slot === NO_SLOT ? -1 : (members.find((m) => m.slot === slot) as { other: number }).other;
}

test("every round is a permutation: each member is probed by exactly one other", () => {
  for (const n of [2, 3, 5, 10, 20, 33]) {
    const c = cluster(n);
    for (let round = 1_000_000; round < 1_000_000 + 3 * n; round++) {
      const probedBy = new Array<number>(n).fill(0);
      for (let self = 0; self < n; self++) {
        const target = targetOf(c, self, round);
        assert.notEqual(target, self, `n ${n}, round ${round}: member ${self} probes itself`);
        assert.ok(target >= 0);
        probedBy[target] = (probedBy[target] as number) + 1;
      }
      assert.deepEqual(probedBy, new Array<number>(n).fill(1), `n ${n}, round ${round}`);
    }
  }
});

test("in any n − 1 rounds of one cycle each member probes every other exactly once", () => {
  const n = 12;
  const c = cluster(n);
  // A cycle is the power of two at or above n − 1 rounds: 16 here.
  const cycleStart = 5 * 16 + 3;
  for (let self = 0; self < n; self++) {
    const seen = new Set<number>();
    for (let round = cycleStart; round < cycleStart + n - 1; round++) seen.add(targetOf(c, self, round));
    assert.equal(seen.size, n - 1, `member ${self}`);
    assert.ok(!seen.has(self));
  }
});

test("the order is new every cycle: neighbours in address order are not always paired", () => {
  const n = 10;
  const c = cluster(n);
  // Member 0's target in the first round of each cycle (16 rounds): a fixed order would give the same one.
  const firstTargets = new Set<number>();
  for (let cycle = 0; cycle < 20; cycle++) firstTargets.add(targetOf(c, 0, cycle * 16));
  assert.ok(firstTargets.size >= 4, `member 0 began ${firstTargets.size} of 20 cycles with the same few members`);
});

test("a member that stopped being probeable is never the target", () => {
  const n = 8;
  const c = cluster(n);
  for (let round = 0; round < 40; round++) targetOf(c, 0, round);
  const gone = 3;
  (c.schedules[0] as SharedProbeSchedule).remove((c.slotsOf[0] as number[])[gone] as number);
  for (let round = 40; round < 80; round++) {
    const target = targetOf(c, 0, round, (other) => other !== gone);
    assert.notEqual(target, gone, `round ${round}`);
    assert.ok(target >= 0);
  }
  // Without the removal the stale order is caught by the probeable check.
  const fresh = cluster(n);
  for (let round = 0; round < 40; round++) targetOf(fresh, 0, round);
  for (let round = 40; round < 80; round++) assert.notEqual(targetOf(fresh, 0, round, (other) => other !== gone), gone);
  // Alone: nobody to probe.
  assert.equal(targetOf(cluster(1), 0, 7), -1);
});

test("members leaving and joining keep the order every member would build afresh", () => {
  const n = 12;
  const c = cluster(n);
  const round0 = 7 * (n - 1) + 3;
  for (let self = 0; self < n; self++) targetOf(c, self, round0);
  // Member 5 leaves: every other member drops it, as the core does (remove), mid-cycle.
  const gone = 5;
  const present = (other: number): boolean => other !== gone;
  for (let self = 0; self < n; self++) {
    if (self !== gone) (c.schedules[self] as SharedProbeSchedule).remove((c.slotsOf[self] as number[])[gone] as number);
  }
  const fresh = cluster(n);
  for (let round = round0 + 1; round < round0 + 3 * n; round++) {
    const probedBy = new Map<number, number>();
    for (let self = 0; self < n; self++) {
      if (self === gone) continue;
      const target = targetOf(c, self, round, present);
      assert.equal(target, targetOf(fresh, self, round, present), `member ${self}, round ${round}: kept order differs from a fresh one`);
      probedBy.set(target, (probedBy.get(target) ?? 0) + 1);
    }
    assert.equal(probedBy.size, n - 1, `round ${round}: not a permutation`);
  }
  // It comes back: added (add) where a fresh build would put it.
  for (let self = 0; self < n; self++) {
    if (self === gone) continue;
    const slot = (c.slotsOf[self] as number[])[gone] as number;
    (c.schedules[self] as SharedProbeSchedule).add(slot);
  }
  const again = cluster(n);
  for (let round = round0 + 3 * n; round < round0 + 4 * n; round++) {
    for (let self = 0; self < n; self++) {
      if (self === gone) continue;
      assert.equal(targetOf(c, self, round), targetOf(again, self, round), `member ${self}, round ${round} after the return`);
    }
  }
});
