/**
 * Failure detection against false alarms in seeded simulations (src/sim/detection.ts), at the
 * agent's default period (500 ms) and the lan preset: a crash in a 20-member cluster at 0, 10
 * and 30 % datagram loss, and a 5|5 partition. Virtual time is deterministic, so the bounds
 * are asserted. Every assertion names its seed; TAMTAM_SEED=<n> replays one seed.
 */

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { killUnderLoss, partitionCrossDetection } from "../src/sim/detection.js";

const SEEDS: readonly number[] = process.env.TAMTAM_SEED !== undefined ? [Number(process.env.TAMTAM_SEED)] : [1, 2, 3, 4, 5, 6, 7, 8];

/**
 * Crash to dead at every other member, in virtual time: a first probe of the victim within a
 * few periods, a failed probe (one period), the confirmations (about one more) and the
 * suspicion's minimum (log10(20) * 500 ms), then the death's gossip. The lossless median is
 * about 1.8 s (bench/detection.bench.ts); this is the bound for any one seed.
 */
const DETECTION_BOUND_MS = 4_500;

describe("detection against false alarms (20 members, 500 ms period, lan preset)", () => {
  for (const loss of [0, 0.1, 0.3]) {
    test(`${loss * 100} % loss: the crash is dead everywhere in time, no running member dies${loss <= 0.1 ? ", none is even suspected" : ""}`, () => {
      const times: number[] = [];
      for (const seed of SEEDS) {
        const r = killUnderLoss({ nodes: 20, seed, loss });
        const replay = `(seed ${seed}, loss ${loss})`;
        assert.notEqual(r.deadAtAllMs, null, `the crash was not detected by every member ${replay}`);
        times.push(r.deadAtAllMs as number);
        assert.equal(r.falseDeaths, 0, `a running member was declared dead ${replay}`);
        if (loss <= 0.1) assert.equal(r.falseSuspicions, 0, `a running member was suspected ${replay}`);
        // At 30 % loss Lifeguard's health slows probing and lengthens suspicions: twice the bound.
        const bound = loss < 0.3 ? DETECTION_BOUND_MS : 2 * DETECTION_BOUND_MS;
        assert.ok((r.deadAtAllMs as number) <= bound, `dead at all after ${r.deadAtAllMs} ms > ${bound} ms ${replay}`);
      }
      if (SEEDS.length >= 8 && loss < 0.3) {
        times.sort((a, b) => a - b);
        const median = times[times.length >> 1] as number;
        assert.ok(median <= 3_000, `median ${median} ms over seeds ${SEEDS.join(",")} > 3000 ms`);
      }
    });
  }

  // The shared probe schedule (src/core/probe-schedule.ts) probes every member once per period,
  // so a crash is first probed within one period: the detection goal (3.0 s at the default
  // period, 20 members) holds for every one of 40 seeds, where independent shuffled rounds
  // leave some crashes unprobed for several periods (p99 3.7 s over 300 seeds at 10 % loss).
  test("the shared probe schedule: every crash of 40 seeds dead everywhere within 3.0 s at 0 and 10 % loss, sooner in the tail than shuffled rounds", () => {
    const seeds = process.env.TAMTAM_SEED !== undefined ? SEEDS : Array.from({ length: 40 }, (_, i) => i + 1);
    for (const loss of [0, 0.1]) {
      let sharedSlow = 0;
      let shuffledSlow = 0;
      for (const seed of seeds) {
        const shared = killUnderLoss({ nodes: 20, seed, loss });
        const replay = `(seed ${seed}, loss ${loss})`;
        assert.notEqual(shared.deadAtAllMs, null, `the crash was not detected by every member ${replay}`);
        assert.ok((shared.deadAtAllMs as number) <= 3_000, `dead at all after ${shared.deadAtAllMs} ms ${replay}`);
        const shuffled = killUnderLoss({ nodes: 20, seed, loss, overrides: { sharedProbeSchedule: false } });
        if ((shared.deadAtAllMs as number) > 2_200) sharedSlow++;
        if (shuffled.deadAtAllMs === null || shuffled.deadAtAllMs > 2_200) shuffledSlow++;
      }
      if (seeds.length >= 40) assert.ok(sharedSlow < shuffledSlow, `crashes dead after 2.2 s: shared ${sharedSlow}, shuffled ${shuffledSlow} (loss ${loss})`);
    }
  });

  // The schedule's rounds are wall-clock periods: members whose clocks are half a period apart
  // either way still probe each other often enough to keep the goal.
  test("the shared probe schedule with wall clocks off by up to 250 ms either way: every crash of 40 seeds dead everywhere within 3.0 s at 10 % loss", () => {
    const seeds = process.env.TAMTAM_SEED !== undefined ? SEEDS : Array.from({ length: 40 }, (_, i) => i + 1);
    for (const seed of seeds) {
      const r = killUnderLoss({ nodes: 20, seed, loss: 0.1, clockSkewMs: 250 });
      const replay = `(seed ${seed}, loss 0.1, clock skew 250 ms)`;
      assert.notEqual(r.deadAtAllMs, null, `the crash was not detected by every member ${replay}`);
      assert.ok((r.deadAtAllMs as number) <= 3_000, `dead at all after ${r.deadAtAllMs} ms ${replay}`);
      assert.equal(r.falseSuspicions, 0, `a running member was suspected ${replay}`);
    }
  });

  test("a 5|5 partition: every member holds every member across the cut non-alive within the bound", () => {
    for (const seed of SEEDS) {
      const p = partitionCrossDetection({ nodes: 10, seed, loss: 0 });
      assert.notEqual(p.allNonAliveMs, null, `some cross pair was still alive 30 s after the cut (seed ${seed})`);
      assert.ok((p.allNonAliveMs as number) <= DETECTION_BOUND_MS, `all cross pairs non-alive after ${p.allNonAliveMs} ms (seed ${seed})`);
    }
  });

  // The detection goal (3.0 s at the default period) holds for every cross pair of a 5|5 cut
  // without loss, over more seeds than the other cases (a run costs a few milliseconds); at 10 %
  // loss a lost nack or gossip now and then costs a period more (1 % of 1,000 seeds took 3.0 to
  // 4.0 s, bench/detection.bench.ts). The tail came from suspicions that never reached some
  // members of their own side: the pings across the cut spent their retransmissions (see
  // SwimNode.sendBody), and a first probe whose helpers all lay across the cut slowed its
  // prober 5x (see probeHealthPenalty). Without loss nobody suspects a member of its own side;
  // at 10 % loss, while half the helpers a probe draws lie across the cut, a same-side member
  // is now and then suspected (about 1 run in 150 over 3,000 seeds): at most one run here.
  const CUT_SEEDS: readonly number[] = process.env.TAMTAM_SEED !== undefined ? SEEDS : Array.from({ length: 40 }, (_, i) => i + 1);
  for (const [loss, boundMs] of [
    [0, 3_000],
    [0.1, 4_000],
  ] as const) {
    const falseAlarmsAllowed = loss === 0 ? 0 : 1;
    test(`a 5|5 partition at ${loss * 100} % loss: every cross pair non-alive within ${boundMs} ms, false suspicions on either side in at most ${falseAlarmsAllowed} run`, () => {
      const falseAlarms: string[] = [];
      for (const seed of CUT_SEEDS) {
        const p = partitionCrossDetection({ nodes: 10, seed, loss });
        const replay = `(seed ${seed}, loss ${loss}; last pair ${JSON.stringify(p.lastPair)})`;
        assert.notEqual(p.allNonAliveMs, null, `some cross pair was still alive 30 s after the cut ${replay}`);
        assert.ok((p.allNonAliveMs as number) <= boundMs, `all cross pairs non-alive after ${p.allNonAliveMs} ms ${replay}`);
        // A run counts once however many of its side heard the suspicion before the refutation.
        if (p.sameSideSuspicions > 0) falseAlarms.push(`seed ${seed} (${p.sameSideSuspicions} members heard it)`);
      }
      assert.ok(falseAlarms.length <= falseAlarmsAllowed, `members suspected by their own side: ${falseAlarms.join(", ")} (loss ${loss})`);
    });
  }

  test("memberlist's timing (one ping, k = 3, suspicionMult 4, K = 2) is slower and suspects under 10 % loss: the study tells them apart", () => {
    const memberlist = { directPings: 1, indirectChecks: 3, suspicionMult: 4, suspicionConfirmations: 2, suspicionMaxTimeoutMult: 6 };
    let suspicions = 0;
    let slower = 0;
    for (const seed of SEEDS) {
      const ours = killUnderLoss({ nodes: 20, seed, loss: 0.1 });
      const theirs = killUnderLoss({ nodes: 20, seed, loss: 0.1, overrides: memberlist });
      suspicions += theirs.falseSuspicions;
      if ((theirs.deadAtAllMs ?? Infinity) > (ours.deadAtAllMs ?? Infinity)) slower++;
    }
    assert.ok(suspicions > 0, "memberlist's timing raised no false suspicion at 10 % loss");
    assert.ok(slower > SEEDS.length / 2, `memberlist's timing was slower in only ${slower} of ${SEEDS.length} seeds`);
  });
});
