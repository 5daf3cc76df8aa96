/**
 * The protocol period's one rule (`periodFields` in src/core/config.ts): one range for every
 * preset and every source, the preset's own period inside it, the probe timeout derived from
 * the preset's share, and a live change in the core deriving exactly what start-up derives.
 */

import { describe, test } from "node:test";
import assert from "node:assert/strict";

import { addr, type Address } from "../src/core/address.js";
import {
  PERIOD_MAX_MS,
  PERIOD_MIN_MS,
  PERIOD_RANGE_TEXT,
  PRESETS,
  PRESET_NAMES,
  type PresetName,
  type SwimConfig,
  defaultPeriodMs,
  makeConfig,
  periodFields,
  periodProblem,
  validateConfig,
} from "../src/core/config.js";
import { SwimNode } from "../src/core/node.js";
import type { CoreEvent, Runtime, Timer } from "../src/core/runtime.js";
import { encodeDatagram } from "../src/core/wire/codec.js";
import { MemberState, MessageType } from "../src/core/wire/messages.js";

const A = addr("10.0.0.1:7946");
const B = addr("10.0.0.2:7946");

class Recorder implements Runtime {
  readonly timers: { atMs: number; timer: Timer }[] = [];
  send(_to: Address, _datagram: Uint8Array): void {}
  setTimer(atMs: number, timer: Timer): void {
    this.timers.push({ atMs, timer });
  }
  emit(_event: CoreEvent): void {}
}

/** The config an agent starts with on `preset` at `periodMs` (as protocolConfig builds it). */
function startConfig(preset: PresetName, periodMs: number): SwimConfig {
  const base = makeConfig(preset);
  const period = periodFields(base, periodMs);
  assert.ok(period.ok, `${preset} at ${periodMs} ms`);
  return { ...base, ...period.fields };
}

function timeoutAt(preset: PresetName, periodMs: number): number {
  const period = periodFields(PRESETS[preset], periodMs);
  assert.ok(period.ok);
  return period.fields.probeTimeoutMs;
}

describe("the protocol period's one rule", () => {
  test(`one range, ${PERIOD_RANGE_TEXT}, holding every preset's own period and the agent's default`, () => {
    assert.equal(PERIOD_RANGE_TEXT, "10..600000 ms");
    for (const name of PRESET_NAMES) {
      const own = PRESETS[name].probeIntervalMs;
      assert.ok(own >= PERIOD_MIN_MS && own <= PERIOD_MAX_MS, `${name}: ${own} ms`);
      assert.equal(periodProblem(own), null, name);
      assert.equal(periodProblem(defaultPeriodMs(name)), null, name);
    }
    assert.deepEqual(PRESET_NAMES.map(defaultPeriodMs), [500, 1000, 5000, 5000]);
  });

  test("each preset's share gives back its own probe timeout at its own period", () => {
    for (const name of PRESET_NAMES) {
      const p = PRESETS[name];
      assert.equal(p.probeTimeoutPercent, (100 * p.probeTimeoutMs) / p.probeIntervalMs, name);
      assert.deepEqual(periodFields(p, p.probeIntervalMs), { ok: true, fields: { probeIntervalMs: p.probeIntervalMs, probeTimeoutMs: p.probeTimeoutMs } });
    }
  });

  // [preset, period (ms), the probe timeout it derives, or the problem]
  const cases: [PresetName, number, number | string][] = [
    ["wan", 5000, 3000],
    ["thread", 5000, 2000],
    ["lan", 500, 250],
    ["lan", 1000, 500],
    ["local", 1000, 200],
    ["wan", 1000, 600],
    ["thread", 13, 5],
    ["local", 10, 2],
    ["thread", 10, 4],
    ["lan", 600_000, 300_000],
    ["wan", 600_000, 360_000],
    ["lan", 9, "must be an integer in 10..600000 ms"],
    ["wan", 0, "must be an integer in 10..600000 ms"],
    ["thread", -5, "must be an integer in 10..600000 ms"],
    ["wan", 600_001, "must be an integer in 10..600000 ms"],
    ["lan", 250.5, "must be an integer in 10..600000 ms"],
    ["lan", Number.NaN, "must be an integer in 10..600000 ms"],
  ];
  for (const [preset, periodMs, expected] of cases) {
    test(`periodFields(${preset}, ${periodMs}) -> ${typeof expected === "number" ? `probe timeout ${expected} ms` : "refused"}`, () => {
      const result = periodFields(PRESETS[preset], periodMs);
      if (typeof expected === "number") {
        assert.deepEqual(result, { ok: true, fields: { probeIntervalMs: periodMs, probeTimeoutMs: expected } });
        assert.deepEqual(validateConfig(startConfig(preset, periodMs)), [], "a derived config is valid");
      } else {
        assert.deepEqual(result, { ok: false, problem: expected });
        assert.equal(periodProblem(periodMs), expected);
      }
    });
  }

  test("validateConfig checks the share", () => {
    assert.deepEqual(validateConfig(makeConfig("lan", { probeTimeoutPercent: 0 })), ["probeTimeoutPercent must be in 1..100 %, got 0"]);
    assert.deepEqual(validateConfig(makeConfig("lan", { probeTimeoutPercent: 101 })), ["probeTimeoutPercent must be in 1..100 %, got 101"]);
  });
});

describe("a live period change derives what start-up derives", () => {
  const periods = [10, 13, 100, 333, 500, 1000, 2500, 5000, 600_000];
  for (const preset of PRESET_NAMES) {
    test(`${preset}: from every period to every other, the probe timeout is the one start-up gives`, () => {
      for (const from of periods) {
        const node = new SwimNode({ self: A, config: startConfig(preset, from), seed: 3, incarnation: 1, broadcastEpoch: 1 });
        const rt = new Recorder();
        node.start(0, rt);
        assert.equal(node.currentProbeTimeoutMs, timeoutAt(preset, from));
        for (const to of periods) {
          assert.equal(node.setProbeIntervalMs(1, to, rt), true);
          assert.deepEqual([node.currentProbeIntervalMs, node.currentProbeTimeoutMs], [to, timeoutAt(preset, to)], `${from} -> ${to} ms`);
        }
      }
    });
  }

  test("a wan node started at 13 ms returns to its own 5000 ms period with its own 3000 ms probe timeout", () => {
    const node = new SwimNode({ self: A, config: startConfig("wan", 13), seed: 3, incarnation: 1, broadcastEpoch: 1 });
    const rt = new Recorder();
    node.start(0, rt);
    const gossip = encodeDatagram({
      from: B,
      incarnation: 1,
      body: { type: MessageType.Gossip },
      updates: [{ state: MemberState.Alive, incarnation: 1, member: B }],
      broadcasts: [],
    });
    node.handleDatagram(1, gossip, rt);
    assert.equal(node.setProbeIntervalMs(2, 5000, rt), true);
    const tick = rt.timers.filter((t) => t.timer.kind === "probe").at(-1);
    assert.ok(tick !== undefined);
    assert.equal(tick.atMs, 2 + 5000, "the next probe comes one period later");
    rt.timers.length = 0;
    node.handleTimer(tick.atMs, tick.timer, rt);
    const timeout = rt.timers.find((t) => t.timer.kind === "probeTimeout");
    assert.ok(timeout !== undefined, "a probe went out");
    assert.equal(timeout.atMs - tick.atMs, 3000);
  });

  test("a period out of range changes nothing", () => {
    const node = new SwimNode({ self: A, config: startConfig("thread", 5000), seed: 3, incarnation: 1, broadcastEpoch: 1 });
    const rt = new Recorder();
    node.start(0, rt);
    const timersBefore = rt.timers.length;
    for (const bad of [0, 9, 600_001, 1.5]) assert.equal(node.setProbeIntervalMs(1, bad, rt), false, String(bad));
    assert.deepEqual([node.currentProbeIntervalMs, node.currentProbeTimeoutMs, rt.timers.length], [5000, 2000, timersBefore]);
  });
});
