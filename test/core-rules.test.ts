/**
 * Table tests of the core's rules: membership merge precedence, the protocol formulas (checked
 * against memberlist's), config validation, the transmit queue, broadcast de-duplication, the
 * timer queue, the PRNG and address parsing/formatting.
 */

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";

import { addr, formatIp, makeAddress, parseAddress, parseIp, type Address } from "../src/core/address.js";
import {
  PRESETS,
  PRESET_NAMES,
  MAX_PING_REQ_HEADER_BYTES,
  MAX_PROBE_HEADER_BYTES,
  broadcastOverheadBytes,
  makeConfig,
  validateConfig,
  type SwimConfig,
} from "../src/core/config.js";
import { DedupeWindows } from "../src/core/dedupe.js";
import {
  expectedConfirmations,
  expediteChance,
  indirectChecksFor,
  MAX_INDIRECT_CHECKS,
  pingOffsetMs,
  probeHealthPenalty,
  retransmitLimit,
  scaleByHealth,
  suspicionMinTimeoutMs,
  suspicionTimeoutMs,
} from "../src/core/formulas.js";
import { SwimNode } from "../src/core/node.js";
import { Prng } from "../src/core/prng.js";
import { TimerQueue } from "../src/core/timer-queue.js";
import { TransmitQueue } from "../src/core/transmit-queue.js";
import { DatagramWriter, decodeDatagram, encodeBroadcastItem, encodeUpdateItem } from "../src/core/wire/codec.js";
import { MemberState, MessageType } from "../src/core/wire/messages.js";
import {
  GOSSIP,
  RecordingRuntime,
  SYNC,
  alive,
  craft,
  dead,
  stateName,
  suspect,
  update,
} from "./helpers/cluster.js";

const STATES = [MemberState.Alive, MemberState.Suspect, MemberState.Dead, MemberState.Left] as const;

const A = addr("10.0.0.1:7946");
const X = addr("10.0.0.9:7946");
const Y = addr("10.0.0.10:7946");
const C = addr("10.0.0.3:7946");
const C6 = addr("[2001:db8::3]:7946");

/** A started node A with its recording runtime. No timer is ever fired. */
function freshNode(incarnation = 0, config: SwimConfig = makeConfig("lan")): { node: SwimNode; rt: RecordingRuntime } {
  const rt = new RecordingRuntime(A);
  const node = new SwimNode({ self: A, config, seed: 7, incarnation, broadcastEpoch: 0 });
  node.start(0, rt);
  return { node, rt };
}

function feed(node: SwimNode, rt: RecordingRuntime, bytes: Uint8Array): void {
  rt.nowMs += 1;
  node.handleDatagram(rt.nowMs, bytes, rt);
}

function lexMax(a: [number, MemberState], b: [number, MemberState]): [number, MemberState] {
  if (a[0] !== b[0]) return a[0] > b[0] ? a : b;
  return a[1] >= b[1] ? a : b;
}

// ---------------------------------------------------------------------------------------------

describe("merge precedence", () => {
  const BASE_INC = 5;
  for (const subject of [C, C6]) {
    for (const viaSync of [false, true]) {
      for (const held of STATES) {
        for (const incoming of STATES) {
          for (const rel of [-1, 0, 1]) {
            const inc = BASE_INC + rel;
            const relName = rel < 0 ? "lower" : rel === 0 ? "equal" : "higher";
            const name = `${subject.family === 6 ? "v6 " : ""}held ${stateName(held)}@5, ${viaSync ? "SYNC" : "GOSSIP"} ${stateName(incoming)} at ${relName} incarnation`;
            test(name, () => {
              const { node, rt } = freshNode();
              // Put the subject in (held, 5) by gossip from a third member X.
              feed(node, rt, craft(X, 0, [alive(subject, BASE_INC)]));
              if (held !== MemberState.Alive) feed(node, rt, craft(X, 0, [update(held, subject, BASE_INC, X)]));
              assert.equal(stateName(node.stateOf(subject.key)), stateName(held));
              assert.equal(node.member(subject.key)?.incarnation, BASE_INC);

              feed(node, rt, craft(X, 0, [update(incoming, subject, inc, X)], viaSync ? SYNC : GOSSIP));

              // A DEAD item in a member-list sync counts only as a suspicion.
              const effective = viaSync && incoming === MemberState.Dead ? MemberState.Suspect : incoming;
              let expected: [number, MemberState];
              if (inc > BASE_INC) expected = [inc, effective];
              else if (inc === BASE_INC) expected = [BASE_INC, Math.max(held, effective) as MemberState];
              else expected = [BASE_INC, held];
              const m = node.member(subject.key);
              assert.ok(m !== undefined, "the member is still known");
              assert.equal(stateName(m.state), stateName(expected[1]));
              assert.equal(m.incarnation, expected[0]);
            });
          }
        }
      }
    }
  }

  test("stale never regresses (random update sequences, GOSSIP and SYNC)", () => {
    const rng = new Prng(2024);
    for (let run = 0; run < 150; run++) {
      const { node, rt } = freshNode();
      feed(node, rt, craft(X, 0, [alive(C, 3)]));
      let held: [number, MemberState] = [3, MemberState.Alive];
      for (let i = 0; i < 25; i++) {
        const state = STATES[rng.nextInt(4)] as MemberState;
        const inc = 3 + rng.nextInt(5);
        const viaSync = rng.chance(0.4);
        feed(node, rt, craft(rng.chance(0.5) ? X : Y, 0, [update(state, C, inc, X)], viaSync ? SYNC : GOSSIP));
        const effective = viaSync && state === MemberState.Dead ? MemberState.Suspect : state;
        const expected = lexMax(held, [inc, effective]);
        const m = node.member(C.key);
        assert.ok(m !== undefined);
        const now: [number, MemberState] = [m.incarnation, m.state];
        assert.deepEqual(now, expected, `run ${run} step ${i}: ${stateName(state)}@${inc} sync=${viaSync}`);
        assert.deepEqual(lexMax(held, now), now, "never below what it was");
        held = now;
      }
    }
  });

  test("the sender's own header counts as alive at its incarnation", () => {
    const { node, rt } = freshNode();
    feed(node, rt, craft(X, 0, [alive(C, 2)]));
    feed(node, rt, craft(X, 0, [dead(C, 2)]));
    assert.equal(node.stateOf(C.key), MemberState.Dead);
    // C speaks at the same incarnation: still dead (alive < dead); it is told (a ping carrying
    // its death, to prove its address first), then, once it answers, sent the member list.
    const before = rt.sent.length;
    feed(node, rt, craft(C, 2, [], { type: MessageType.Ping, seq: 9 }));
    assert.equal(node.stateOf(C.key), MemberState.Dead);
    const toC = rt.sent.slice(before).filter((d) => d.to.key === C.key);
    const proof = toC.find((d) => d.decoded?.body.type === MessageType.Ping);
    assert.ok(proof?.decoded?.updates.some((u) => u.member.key === C.key && u.state === MemberState.Dead), "a dead member that talks is told");
    assert.ok(!toC.some((d) => d.decoded?.body.type === MessageType.Sync), "no member list to an address not proven");
    const proofBody = proof?.decoded?.body;
    assert.ok(proofBody !== undefined && proofBody.type === MessageType.Ping);
    const proofSeq = proofBody.seq;
    const beforeAck = rt.sent.length;
    feed(node, rt, craft(C, 2, [], { type: MessageType.Ack, seq: proofSeq }));
    const afterAck = rt.sent.slice(beforeAck).filter((d) => d.to.key === C.key).map((d) => d.decoded?.body.type);
    assert.ok(afterAck.includes(MessageType.Sync), "a dead member that answered is sent the member list");
    // C speaks at a higher incarnation: alive.
    feed(node, rt, craft(C, 3, [], { type: MessageType.Ping, seq: 10 }));
    assert.equal(node.stateOf(C.key), MemberState.Alive);
    assert.equal(node.member(C.key)?.incarnation, 3);
  });

  for (const state of [MemberState.Suspect, MemberState.Dead, MemberState.Left]) {
    for (const viaSync of [false, true]) {
      test(`${stateName(state)} about an unknown member is ignored (${viaSync ? "SYNC" : "GOSSIP"})`, () => {
        const { node, rt } = freshNode();
        const eventsBefore = rt.events.length;
        feed(node, rt, craft(X, 0, [update(state, C, 4, X)], viaSync ? SYNC : GOSSIP));
        assert.equal(node.member(C.key), undefined);
        assert.equal(node.memberCount, 2, "self and the sender only");
        assert.ok(rt.events.slice(eventsBefore).every((e) => e.event.type !== "member" || e.event.member.address.key !== C.key));
      });
    }
  }

  test("alive about an unknown member adds it; SYNC lists are merged item by item", () => {
    const { node, rt } = freshNode();
    feed(node, rt, craft(X, 0, [alive(C, 4), alive(C6, 1), dead(Y, 3)], SYNC));
    assert.equal(node.stateOf(C.key), MemberState.Alive);
    assert.equal(node.stateOf(C6.key), MemberState.Alive);
    assert.equal(node.stateOf(Y.key), undefined, "a dead stranger in a SYNC is not learned");
    assert.equal(node.memberCount, 4);
  });

  describe("statements about the node itself", () => {
    const SELF_INC = 5;
    for (const state of STATES) {
      for (const rel of [-1, 0, 1]) {
        const inc = SELF_INC + rel;
        const refutes = inc > SELF_INC || (inc === SELF_INC && state !== MemberState.Alive);
        test(`${stateName(state)} about self at incarnation ${inc} (self at ${SELF_INC}) ${refutes ? "refutes" : "is ignored"}`, () => {
          const { node, rt } = freshNode(SELF_INC);
          feed(node, rt, craft(X, 0, [update(state, A, inc, X)]));
          assert.equal(node.incarnation, refutes ? inc + 1 : SELF_INC);
          assert.equal(node.stats.refutations, refutes ? 1 : 0);
          assert.equal(node.stateOf(A.key), MemberState.Alive);
          if (refutes) {
            const ev = rt.memberEvents(A.key).at(-1)?.event;
            assert.ok(ev !== undefined && ev.type === "member");
            assert.equal(ev.member.incarnation, inc + 1);
            assert.equal(ev.member.state, MemberState.Alive);
            assert.ok(ev.member.pendingTransmits > 0, "the refutation is queued for gossip");
          }
        });
      }
    }

    test("a dead item about self in a SYNC is refuted (not softened to suspect)", () => {
      const { node, rt } = freshNode(0);
      feed(node, rt, craft(X, 0, [dead(A, 0)], SYNC));
      assert.equal(node.incarnation, 1);
    });

    test("a node that has left refutes nothing", () => {
      const { node, rt } = freshNode(3);
      node.leave(rt.nowMs, rt);
      assert.equal(node.incarnation, 4);
      assert.equal(node.stateOf(A.key), MemberState.Left);
      feed(node, rt, craft(X, 0, [suspect(A, 9, X), dead(A, 9)]));
      assert.equal(node.incarnation, 4);
      assert.equal(node.stateOf(A.key), MemberState.Left);
      assert.equal(node.stats.refutations, 0);
    });
  });
});

// ---------------------------------------------------------------------------------------------

/** memberlist's retransmitLimit (util.go). */
function mlRetransmitLimit(mult: number, n: number): number {
  return mult * Math.ceil(Math.log10(n + 1));
}
/** memberlist's suspicionTimeout (util.go), in ms, with Go's integer Duration arithmetic. */
function mlSuspicionTimeoutMs(mult: number, n: number, intervalMs: number): number {
  const nodeScale = Math.max(1, Math.log10(Math.max(1, n)));
  return Math.trunc((mult * Math.trunc(nodeScale * 1000) * intervalMs) / 1000);
}
/** memberlist's remainingSuspicionTime (suspicion.go) at elapsed 0, in ms. */
function mlRemainingMs(n: number, k: number, minMs: number, maxMs: number): number {
  const frac = Math.log(n + 1) / Math.log(k + 1);
  const raw = maxMs / 1000 - frac * (maxMs / 1000 - minMs / 1000);
  return Math.max(minMs, Math.floor(1000 * raw));
}

describe("formulas", () => {
  // Hand-computed: mult * ceil(log10(n + 1)).
  const limits: [mult: number, n: number, expected: number][] = [
    [4, 1, 4], // ceil(log10 2) = 1
    [4, 2, 4],
    [4, 9, 4], // log10 10 = 1
    [4, 10, 8], // ceil(log10 11) = 2
    [4, 99, 8],
    [4, 100, 12],
    [4, 999, 12],
    [4, 1000, 16],
    [3, 5, 3],
    [3, 50, 6],
    [2, 10_000, 10],
    [1, 1, 1],
    [32, 3, 32],
  ];
  for (const [mult, n, expected] of limits) {
    test(`retransmitLimit(${mult}, ${n}) = ${expected} (memberlist agrees)`, () => {
      assert.equal(retransmitLimit(mult, n), expected);
      assert.equal(mlRetransmitLimit(mult, n), expected);
    });
  }
  test("retransmitLimit is at least 1 and treats n < 1 as a lone node (memberlist would give 0)", () => {
    assert.equal(retransmitLimit(4, 0), 4);
    assert.equal(mlRetransmitLimit(4, 0), 0);
    assert.equal(retransmitLimit(1, -5), 1);
  });

  // Hand-computed: mult * max(1, log10 n) * interval.
  const minimums: [mult: number, n: number, interval: number, expected: number][] = [
    [4, 1, 1000, 4000],
    [4, 3, 1000, 4000],
    [4, 10, 1000, 4000],
    [4, 100, 1000, 8000],
    [4, 1000, 1000, 12000],
    [5, 100, 5000, 50000],
    [4, 50, 1000, 6795], // 4 * 1.69897 * 1000 = 6795.88
    [3, 0, 1000, 3000],
  ];
  for (const [mult, n, interval, expected] of minimums) {
    test(`suspicionMinTimeoutMs(${mult}, ${n}, ${interval}) = ${expected}`, () => {
      assert.equal(suspicionMinTimeoutMs(mult, n, interval), expected);
      // memberlist truncates log10(n) to 3 decimals first: the same up to mult * interval / 1000.
      const ml = mlSuspicionTimeoutMs(mult, n, interval);
      assert.ok(Math.abs(ml - expected) <= (mult * interval) / 1000 + 1, `memberlist gives ${ml}`);
    });
  }

  // K as configured (suspicionConfirmations), at most n - 2: the members that can confirm
  // besides the suspect and the first suspector.
  const expectations: [k: number, n: number, expected: number][] = [
    [2, 1, 0],
    [2, 3, 1], // memberlist: 0 (it drops K when the cluster is too small)
    [2, 4, 2],
    [2, 100, 2],
    [3, 4, 2], // memberlist: 0
    [3, 5, 3],
    [4, 10, 4],
    [0, 10, 0],
  ];
  for (const [k, n, expected] of expectations) {
    test(`expectedConfirmations(${k}, ${n}) = ${expected}`, () => {
      assert.equal(expectedConfirmations(k, n), expected);
    });
  }

  test("the presets other than lan keep memberlist's K = suspicionMult - 2", () => {
    for (const name of ["local", "wan", "thread"] as const) {
      const c = PRESETS[name];
      assert.equal(c.suspicionConfirmations, c.suspicionMult - 2, name);
    }
  });

  test("ping offsets spread a probe's pings evenly over its window, the first at once", () => {
    assert.deepEqual([0, 1, 2, 3].map((i) => pingOffsetMs(250, 4, i)), [0, 62, 125, 187]);
    assert.deepEqual([0].map((i) => pingOffsetMs(250, 1, i)), [0]);
  });

  test("indirect checks grow with local health, at most 16", () => {
    assert.equal(indirectChecksFor(4, 0), 4);
    assert.equal(indirectChecksFor(4, 3), 7);
    assert.equal(indirectChecksFor(4, 31), MAX_INDIRECT_CHECKS);
  });

  test("a failed probe costs health only when no helper answered", () => {
    assert.equal(probeHealthPenalty(0, 0), 1);
    assert.equal(probeHealthPenalty(4, 0), 4);
    assert.equal(probeHealthPenalty(4, 1), 0);
    assert.equal(probeHealthPenalty(4, 3), 0);
    assert.equal(probeHealthPenalty(4, 4), 0);
  });

  test("a failed probe that no helper answered costs 1, not one per helper, when this node heard other members meanwhile", () => {
    // Not deaf: the helpers drawn were most likely cut off with the target (a partition).
    assert.equal(probeHealthPenalty(4, 0, true), 1);
    assert.equal(probeHealthPenalty(4, 0, false), 4);
    assert.equal(probeHealthPenalty(4, 2, true), 0);
    assert.equal(probeHealthPenalty(0, 0, true), 1);
  });

  test("expedited checks of a suspicion stay about 2 (K + 1) members, whatever the cluster's size", () => {
    assert.equal(expediteChance(3, 5), 1);
    assert.equal(expediteChance(3, 10), 1);
    assert.equal(expediteChance(3, 20), 8 / 18);
    assert.equal(expediteChance(3, 10_002) * 10_000, 8);
  });

  // max - (max - min) * log(c + 1) / log(k + 1), floored, never below min.
  const timeouts: [min: number, max: number, k: number, c: number, expected: number][] = [
    [4000, 24000, 2, 0, 24000],
    [4000, 24000, 2, 1, 11381], // 24000 - 20000 * ln2 / ln3 = 11381.4
    [4000, 24000, 2, 2, 4000],
    [4000, 24000, 2, 5, 4000],
    [4000, 24000, 3, 1, 14000], // ln2 / ln4 = 0.5
    [4000, 24000, 3, 2, 8150], // 24000 - 20000 * 0.792481 = 8150.4
    [4000, 24000, 0, 0, 4000], // nothing expected: min at once
    [25000, 150000, 3, 1, 87500],
  ];
  for (const [min, max, k, c, expected] of timeouts) {
    test(`suspicionTimeoutMs(${min}, ${max}, k=${k}, c=${c}) = ${expected}`, () => {
      assert.equal(suspicionTimeoutMs(min, max, k, c), expected);
      if (k >= 1) assert.equal(mlRemainingMs(c, k, min, max), expected, "memberlist agrees");
    });
  }

  test("suspicionTimeoutMs never grows with more confirmations", () => {
    for (const k of [1, 2, 3, 5, 10]) {
      let last = Infinity;
      for (let c = 0; c <= k + 2; c++) {
        const t = suspicionTimeoutMs(5000, 30000, k, c);
        assert.ok(t <= last && t >= 5000 && t <= 30000);
        last = t;
      }
      assert.equal(last, 5000);
    }
  });

  test("scaleByHealth multiplies by health + 1", () => {
    assert.equal(scaleByHealth(1000, 0), 1000);
    assert.equal(scaleByHealth(1000, 1), 2000);
    assert.equal(scaleByHealth(500, 7), 4000);
  });
});

// ---------------------------------------------------------------------------------------------

describe("config", () => {
  for (const name of PRESET_NAMES) {
    test(`preset ${name} validates`, () => {
      assert.deepEqual(validateConfig(makeConfig(name)), []);
    });
  }

  test("sealed presets validate, thread's 80-byte probes included", () => {
    for (const name of PRESET_NAMES) {
      assert.deepEqual(validateConfig({ ...PRESETS[name], sealed: true }), [], name);
    }
  });

  test("the probe budget holds the largest probe-sized header (a JOIN with a cookie echo); a PING_REQ's may exceed it", () => {
    assert.equal(MAX_PROBE_HEADER_BYTES, 44);
    assert.equal(MAX_PING_REQ_HEADER_BYTES, 53);
    assert.ok(MAX_PROBE_HEADER_BYTES + 29 <= PRESETS.thread.probePacketBytes);
  });

  const overhead = broadcastOverheadBytes(false);
  // [overrides, the message for the field under test, all problems if more than that one]
  const cases: [Partial<SwimConfig>, string, string[]?][] = [
    [{ probeIntervalMs: 5, probeTimeoutMs: 1 }, "probeIntervalMs must be in 10..600000 ms, got 5"],
    [{ probeIntervalMs: 600_001 }, "probeIntervalMs must be in 10..600000 ms, got 600001"],
    [{ probeTimeoutMs: 0 }, "probeTimeoutMs must be in 1..1000 ms, got 0"],
    [{ probeTimeoutMs: 1001 }, "probeTimeoutMs must be in 1..1000 ms, got 1001"],
    [{ indirectChecks: 17 }, "indirectChecks must be in 0..16 members, got 17"],
    [{ indirectChecks: -1 }, "indirectChecks must be in 0..16 members, got -1"],
    [{ retransmitMult: 0 }, "retransmitMult must be in 1..32, got 0"],
    [{ suspicionMult: 65 }, "suspicionMult must be in 1..64, got 65"],
    [{ suspicionMaxTimeoutMult: 0 }, "suspicionMaxTimeoutMult must be in 1..100, got 0"],
    [{ gossipIntervalMs: 4 }, "gossipIntervalMs must be in 5..600000 ms (or 0 to disable), got 4"],
    [{ gossipFanout: 17 }, "gossipFanout must be in 0..16 members, got 17"],
    [{ gossipToTheDeadMs: -1 }, "gossipToTheDeadMs must be in 0..86400000 ms, got -1"],
    [{ reconnectIntervalMs: 9 }, "reconnectIntervalMs must be in 10..86400000 ms (or 0 to disable), got 9"],
    [{ pushPullIntervalMs: 99 }, "pushPullIntervalMs must be in 100..86400000 ms (or 0 to disable), got 99"],
    [{ reapAfterMs: 999 }, "reapAfterMs must be in 1000..604800000 ms, got 999"],
    [{ awarenessMaxMultiplier: 33 }, "awarenessMaxMultiplier must be in 1..32, got 33"],
    [
      { maxPacketBytes: 78, probePacketBytes: 60, maxBroadcastBytes: 1 },
      "maxPacketBytes must be in 79..65507 bytes, got 78",
    ],
    [
      { maxPacketBytes: 107, probePacketBytes: 90, maxBroadcastBytes: 1, sealed: true },
      "maxPacketBytes must be in 108..65507 bytes, got 107",
    ],
    [
      { maxPacketBytes: 63, probePacketBytes: 60 },
      "maxPacketBytes must be in 79..65507 bytes, got 63",
      ["maxPacketBytes must be in 79..65507 bytes, got 63", "maxBroadcastBytes must be in 1..-1 bytes, got 256"],
    ],
    [{ maxPacketBytes: 65508 }, "maxPacketBytes must be in 79..65507 bytes, got 65508"],
    [{ probePacketBytes: 34 }, "probePacketBytes must be in 44..1232 bytes, got 34"],
    [{ probePacketBytes: 43 }, "probePacketBytes must be in 44..1232 bytes, got 43"],
    [{ probePacketBytes: 72, sealed: true }, "probePacketBytes must be in 73..1232 bytes, got 72"],
    [{ probePacketBytes: 1233 }, "probePacketBytes must be in 44..1232 bytes, got 1233"],
    [{ maxBroadcastBytes: 0 }, `maxBroadcastBytes must be in 1..${1232 - overhead} bytes, got 0`],
    [{ maxBroadcastBytes: 1232 - overhead + 1 }, `maxBroadcastBytes must be in 1..${1232 - overhead} bytes, got ${1233 - overhead}`],
    [{ maxQueuedBroadcasts: 1 }, "maxQueuedBroadcasts must be in 2..1048576 broadcasts, got 1"],
    [{ gossipBudgetBytesPerSec: 999 }, "gossipBudgetBytesPerSec must be in 1000..1000000000 bytes/s, got 999"],
    [{ maxQueuedUpdates: 15 }, "maxQueuedUpdates must be in 16..4194304 updates, got 15"],
    [{ broadcastDedupeWindow: 32 }, "broadcastDedupeWindow must be in 64..65536 sequence numbers, got 32"],
    [{ broadcastDedupeWindow: 100 }, "broadcastDedupeWindow must be a multiple of 32, got 100"],
    [{ maxBroadcastOrigins: 15 }, "maxBroadcastOrigins must be in 16..4194304 origins, got 15"],
    [{ requestTimeoutMs: 9 }, "requestTimeoutMs must be in 10..600000 ms, got 9"],
    [{ joinAttempts: 0 }, "joinAttempts must be in 1..100 attempts, got 0"],
    [{ syncMaxDatagrams: 65_537 }, "syncMaxDatagrams must be in 1..65536 datagrams, got 65537"],
    [{ probeIntervalMs: 1.5, probeTimeoutMs: 1 }, "probeIntervalMs must be an integer, got 1.5"],
    [{ probeTimeoutMs: Number.NaN }, "probeTimeoutMs must be an integer, got NaN"],
    [{ lifeguard: "yes" as unknown as boolean }, "lifeguard must be true or false, got yes"],
    [{ sealed: 1 as unknown as boolean }, "sealed must be true or false, got 1"],
  ];
  for (const [override, message, all] of cases) {
    test(`validateConfig: ${message}`, () => {
      assert.deepEqual(validateConfig(makeConfig("lan", override)), all ?? [message]);
    });
  }

  test("zero disables the optional rounds", () => {
    assert.deepEqual(validateConfig(makeConfig("lan", { gossipIntervalMs: 0, reconnectIntervalMs: 0, pushPullIntervalMs: 0 })), []);
  });

  test("several problems are all reported, one line each", () => {
    const problems = validateConfig(makeConfig("wan", { probeIntervalMs: 1, indirectChecks: 99, sealed: true, maxBroadcastBytes: 5000 }));
    assert.deepEqual(problems, [
      "probeIntervalMs must be in 10..600000 ms, got 1",
      "probeTimeoutMs must be in 1..1 ms, got 3000",
      "indirectChecks must be in 0..16 members, got 99",
      "maxBroadcastBytes must be in 1..1139 bytes, got 5000",
    ]);
  });

  test("sealed configs leave room for the envelope in the broadcast limit", () => {
    const c = makeConfig("lan", { sealed: true, maxBroadcastBytes: 1232 - broadcastOverheadBytes(true) });
    assert.deepEqual(validateConfig(c), []);
    assert.equal(broadcastOverheadBytes(true) - broadcastOverheadBytes(false), 29);
  });

  test("a broadcast of maxBroadcastBytes fits a gossip datagram in the worst case (IPv6, 5-byte varints)", () => {
    const cfg = makeConfig("lan", { maxBroadcastBytes: 1232 - broadcastOverheadBytes(false) });
    assert.deepEqual(validateConfig(cfg), []);
    const w = new DatagramWriter(cfg.maxPacketBytes);
    const v6 = addr("[2001:db8::ffff]:65535");
    w.begin(v6, 0xffffffff, { type: MessageType.Gossip });
    const item = encodeBroadcastItem({ origin: v6, epoch: 0xffffffff, seq: 0xffffffff, payload: new Uint8Array(cfg.maxBroadcastBytes) });
    assert.ok(w.tryAppend(item));
    assert.ok(w.length <= cfg.maxPacketBytes);
  });

  for (const sealed of [false, true]) {
    test(`the smallest maxPacketBytes that validates (sealed=${sealed}) carries every member in a SYNC`, () => {
      let lo = 1;
      const at = (maxPacketBytes: number): SwimConfig =>
        makeConfig("lan", { sealed, maxPacketBytes, probePacketBytes: Math.min(maxPacketBytes, sealed ? 73 : 44), maxBroadcastBytes: 1 });
      while (validateConfig(at(lo)).length > 0) lo++;
      const cfg = at(lo);
      // IPv6 everywhere, 5-byte incarnations and seq: the largest SYNC header and items.
      const self = addr("[2001:db8::1]:7946");
      const x = addr("[2001:db8::9]:7946");
      const members = [2, 3, 4, 5].map((i) => addr(`[2001:db8::${i}]:7946`));
      const rt = new RecordingRuntime(self);
      const node = new SwimNode({ self, config: cfg, seed: 1, incarnation: 0xffffffff, broadcastEpoch: 0 });
      node.start(0, rt);
      node.handleDatagram(1, craft(x, 0xffffffff, members.map((m) => alive(m, 0xfffffff0)), SYNC), rt);
      for (const m of members.slice(0, 2)) node.handleDatagram(2, craft(x, 0xffffffff, [suspect(m, 0xfffffff0, x)]), rt);
      // x has not proven its address: its JOIN gets a cookie, which it echoes.
      node.handleDatagram(3, craft(x, 0xffffffff, [], { type: MessageType.Join, seq: 0xfffffff0 }), rt);
      const cookie = rt.sent.at(-1)?.decoded?.body;
      assert.ok(cookie !== undefined && cookie.type === MessageType.Cookie);
      const before = rt.sent.length;
      node.handleDatagram(3, craft(x, 0xffffffff, [], { type: MessageType.Join, seq: 0xfffffff1 }, [], cookie.cookie), rt);
      const syncs = rt.sent.slice(before).filter((d) => d.decoded?.body.type === MessageType.Sync);
      const listed = new Set(syncs.flatMap((d) => d.decoded?.updates ?? []).map((u) => u.member.key));
      assert.equal(lo, sealed ? 108 : 79);
      assert.deepEqual([...listed].sort(), [self, x, ...members].map((a) => a.key).sort(), `maxPacketBytes ${lo}`);
      for (const d of syncs) assert.ok(d.bytes.length + (sealed ? 29 : 0) <= lo);
    });
  }

  for (const sealed of [false, true]) {
    test(`the smallest probePacketBytes that validates (sealed=${sealed}) holds every probe-sized header`, () => {
      let lo = 1;
      while (validateConfig(makeConfig("lan", { sealed, probePacketBytes: lo })).length > 0) lo++;
      assert.equal(lo, sealed ? 73 : 44);
      const cfg = makeConfig("lan", { sealed, probePacketBytes: lo });
      const self = addr("[2001:db8::1]:7946");
      const t6 = addr("[2001:db8::2]:7946");
      const t7 = addr("[2001:db8::3]:7946");
      const rt = new RecordingRuntime(self);
      const node = new SwimNode({ self, config: cfg, seed: 1, incarnation: 0xffffffff, broadcastEpoch: 0 });
      // Worst case for the header: 5-byte sequence numbers (reached after 2^28 probes and requests).
      (node as unknown as { nextSeq: number }).nextSeq = 0xfffffff0;
      node.start(0, rt);
      assert.doesNotThrow(() => {
        node.handleDatagram(1, craft(t6, 0xffffffff, [alive(t7, 0xffffffff)], SYNC), rt);
        // A ping-req asks this node to relay a ping; a join request and a user ping are probe-sized too.
        node.handleDatagram(2, craft(t6, 0xffffffff, [], { type: MessageType.PingReq, seq: 0xffffffff, target: t7 }), rt);
        node.join(3, [t6], rt);
        // The seed challenges the JOIN; it is sent again with the cookie echoed (the largest header).
        const join = rt.sent.at(-1)?.decoded?.body;
        assert.ok(join?.type === MessageType.Join);
        node.handleDatagram(3, craft(t6, 0xffffffff, [], { type: MessageType.Cookie, seq: join.seq, cookie: new Uint8Array(8).fill(7) }), rt);
        // A JOIN from an address not proven yet is challenged with a COOKIE.
        node.handleDatagram(3, craft(t7, 0xffffffff, [], { type: MessageType.Join, seq: 0xffffffff }), rt);
        node.ping(4, t6, 1, rt);
        // Probes that time out send PING_REQs about an IPv6 target.
        rt.nowMs = 4;
        rt.runTimers(node, 20_000);
      });
      const types = new Set(rt.sent.map((d) => d.decoded?.body.type));
      assert.ok(types.has(MessageType.PingReq) && types.has(MessageType.Ping) && types.has(MessageType.Join) && types.has(MessageType.Cookie));
      assert.ok(rt.sent.some((d) => d.decoded?.body.type === MessageType.Join && d.decoded.cookie !== undefined), "a JOIN echoes the cookie");
      const envelope = sealed ? 29 : 0;
      for (const d of rt.sent) {
        const t = d.decoded?.body.type;
        if (t === MessageType.Sync || t === MessageType.Gossip) continue;
        // A PING_REQ takes the probe budget or, when that is smaller, its own largest header.
        const limit = t === MessageType.PingReq ? Math.max(lo, MAX_PING_REQ_HEADER_BYTES + envelope) : lo;
        assert.ok(d.bytes.length + envelope <= limit, `${d.bytes.length} + ${envelope} > ${limit} (type ${t})`);
      }
      assert.ok(rt.sent.some((d) => d.decoded?.body.type === MessageType.PingReq && d.bytes.length + envelope > lo), "a PING_REQ exceeds the probe budget");
      assert.deepEqual(rt.problems, []);
    });
  }
});

// ---------------------------------------------------------------------------------------------

describe("TransmitQueue", () => {
  const FROM = addr("10.0.0.1:7946");
  const HEADER = 5 + 7 + 1; // fixed header, IPv4 from, 1-byte incarnation; GOSSIP has no body
  const ITEM = 1 + 1 + 7; // IPv4 ALIVE item with a 1-byte incarnation

  function member(i: number): Address {
    return addr(`10.1.0.${i}:7946`);
  }
  function item(i: number, inc = 0): Uint8Array {
    return encodeUpdateItem(alive(member(i), inc));
  }
  /** Fills a datagram with room for `items` IPv4 alive items; returns which members went out. */
  function fillKeys(q: TransmitQueue, items: number, limit: number): string[] {
    const w = new DatagramWriter(HEADER + items * ITEM);
    w.begin(FROM, 0, GOSSIP);
    const n = q.fill(w, limit);
    const d = decodeDatagram(w.finish());
    assert.equal(d.updates.length, n);
    return d.updates.map((u) => u.member.key);
  }
  const k = (i: number): string => member(i).key;

  test("least-sent first, oldest first within a send count", () => {
    const q = new TransmitQueue(100);
    for (const i of [1, 2, 3]) q.enqueue(k(i), item(i));
    assert.deepEqual(fillKeys(q, 2, 10), [k(1), k(2)]);
    assert.deepEqual(fillKeys(q, 2, 10), [k(3), k(1)]);
    assert.deepEqual(fillKeys(q, 2, 10), [k(2), k(3)]);
    q.enqueue(k(4), item(4));
    assert.deepEqual(fillKeys(q, 1, 10), [k(4)]);
    assert.deepEqual(fillKeys(q, 4, 10), [k(4), k(1), k(2), k(3)]);
  });

  test("a newer item replaces the older and starts again at zero transmissions", () => {
    const q = new TransmitQueue(100);
    q.enqueue(k(1), item(1, 1));
    q.enqueue(k(2), item(2));
    fillKeys(q, 2, 5);
    fillKeys(q, 2, 5);
    assert.equal(q.remaining(k(1), 5), 3);
    q.enqueue(k(1), item(1, 2));
    assert.equal(q.size, 2);
    assert.equal(q.remaining(k(1), 5), 5);
    const w = new DatagramWriter(HEADER + 2 * ITEM);
    w.begin(FROM, 0, GOSSIP);
    q.fill(w, 5);
    const d = decodeDatagram(w.finish());
    assert.deepEqual(
      d.updates.map((u) => [u.member.key, u.incarnation]),
      [
        [k(1), 2],
        [k(2), 0],
      ],
      "the replacement is sent (first: fewer sends), and only the newer bytes",
    );
  });

  test("an uncounted fill carries the items without spending their transmissions", () => {
    const q = new TransmitQueue(100);
    q.enqueue(k(1), item(1));
    for (let i = 0; i < 5; i++) {
      const w = new DatagramWriter(HEADER + ITEM);
      w.begin(FROM, 0, GOSSIP);
      assert.equal(q.fill(w, 2, false), 1);
      assert.deepEqual(decodeDatagram(w.finish()).updates.map((u) => u.member.key), [k(1)]);
    }
    assert.equal(q.remaining(k(1), 2), 2);
    fillKeys(q, 1, 2);
    fillKeys(q, 1, 2);
    assert.equal(q.has(k(1)), false);
  });

  test("an item leaves the queue once sent `limit` times", () => {
    const q = new TransmitQueue(100);
    q.enqueue(k(1), item(1));
    for (let i = 0; i < 3; i++) {
      assert.ok(q.has(k(1)));
      assert.equal(q.remaining(k(1), 3), 3 - i);
      assert.deepEqual(fillKeys(q, 5, 3), [k(1)]);
    }
    assert.equal(q.has(k(1)), false);
    assert.equal(q.size, 0);
    assert.equal(q.remaining(k(1), 3), 0);
    assert.deepEqual(fillKeys(q, 5, 3), []);
  });

  test("a smaller limit (the cluster shrank) removes over-sent items on their next send", () => {
    const q = new TransmitQueue(100);
    q.enqueue(k(1), item(1));
    for (let i = 0; i < 4; i++) fillKeys(q, 1, 8);
    assert.equal(q.remaining(k(1), 2), 0);
    fillKeys(q, 1, 2);
    assert.equal(q.has(k(1)), false);
  });

  test("remove drops an item", () => {
    const q = new TransmitQueue(100);
    q.enqueue(k(1), item(1));
    q.enqueue(k(2), item(2));
    q.remove(k(1));
    q.remove("nothing");
    assert.deepEqual(fillKeys(q, 5, 3), [k(2)]);
  });

  test("bounded: beyond maxItems the most-sent, oldest item is dropped and counted", () => {
    const q = new TransmitQueue(3);
    for (const i of [1, 2, 3]) q.enqueue(k(i), item(i));
    fillKeys(q, 2, 10); // 1 and 2 sent once
    q.enqueue(k(4), item(4));
    assert.equal(q.size, 3);
    assert.equal(q.dropped, 1);
    assert.equal(q.has(k(1)), false, "most sent, oldest");
    assert.ok(q.has(k(2)) && q.has(k(3)) && q.has(k(4)));
    q.enqueue(k(3), item(3, 1)); // replacement: no eviction
    assert.equal(q.dropped, 1);
    for (let i = 5; i < 25; i++) q.enqueue(k(i), item(i));
    assert.equal(q.size, 3);
    assert.equal(q.dropped, 21);
  });

  test("fill never exceeds the writer's capacity and uses its budget", () => {
    const rng = new Prng(99);
    const v6 = (i: number): Address => addr(`[2001:db8::${i.toString(16)}]:${1000 + i}`);
    for (let run = 0; run < 200; run++) {
      const q = new TransmitQueue(64);
      const sizes = new Map<string, number>();
      const nItems = 1 + rng.nextInt(12);
      for (let i = 0; i < nItems; i++) {
        let bytes: Uint8Array;
        let key: string;
        const kind = rng.nextInt(3);
        if (kind === 0) {
          const m = rng.chance(0.5) ? member(i) : v6(i);
          key = m.key;
          bytes = encodeUpdateItem(suspect(m, rng.nextU32(), v6(i + 100)));
        } else if (kind === 1) {
          const m = rng.chance(0.5) ? member(i) : v6(i);
          key = m.key;
          bytes = encodeUpdateItem(alive(m, rng.nextInt(1000)));
        } else {
          key = `b${i}`;
          bytes = encodeBroadcastItem({ origin: v6(i), epoch: rng.nextU32(), seq: i, payload: new Uint8Array(1 + rng.nextInt(300)) });
        }
        q.enqueue(key, bytes);
        sizes.set(key, bytes.length);
      }
      for (let f = 0; f < 4; f++) {
        const capacity = HEADER + rng.nextInt(400);
        const w = new DatagramWriter(capacity);
        w.begin(FROM, 0, GOSSIP);
        const queued = [...sizes.keys()].filter((key) => q.has(key));
        const n = q.fill(w, 3);
        assert.ok(w.length <= capacity, `run ${run}: ${w.length} > ${capacity}`);
        const d = decodeDatagram(w.finish());
        assert.equal(d.updates.length + d.broadcasts.length, n);
        const sent = new Set([...d.updates.map((u) => u.member.key), ...d.broadcasts.map((b) => `b${b.seq}`)]);
        // With fewer than 16 misfits every queued item that was left out did not fit.
        for (const key of queued) {
          if (!sent.has(key)) assert.ok((sizes.get(key) as number) > w.remaining, `run ${run}: ${key} would have fit`);
        }
      }
    }
  });
});

// ---------------------------------------------------------------------------------------------

describe("DedupeWindows", () => {
  test("new, duplicate, and new again below the highest within the window", () => {
    const d = new DedupeWindows(64, 16);
    assert.equal(d.sight("o", 0, 10), "new");
    assert.equal(d.sight("o", 0, 10), "duplicate");
    assert.equal(d.sight("o", 0, 5), "new");
    assert.equal(d.sight("o", 0, 5), "duplicate");
    assert.equal(d.sight("o", 0, 11), "new");
    assert.equal(d.sight("o", 0, 10), "duplicate");
  });

  test("the window slides: older than the window is stale", () => {
    const d = new DedupeWindows(64, 16);
    assert.equal(d.sight("o", 0, 0), "new");
    assert.equal(d.sight("o", 0, 63), "new");
    assert.equal(d.sight("o", 0, 0), "duplicate", "63 - 0 < 64: still in the window");
    assert.equal(d.sight("o", 0, 64), "new");
    assert.equal(d.sight("o", 0, 0), "stale");
    assert.equal(d.sight("o", 0, 1), "new", "never seen, still in the window");
    assert.equal(d.sight("o", 0, 1), "duplicate");
  });

  test("bits of slid-out numbers are cleared (same bit position, next lap)", () => {
    const d = new DedupeWindows(64, 16);
    assert.equal(d.sight("o", 0, 5), "new");
    assert.equal(d.sight("o", 0, 69), "new");
    assert.equal(d.sight("o", 0, 69), "duplicate");
    assert.equal(d.sight("o", 0, 5), "stale");
    assert.equal(d.sight("o", 0, 6 + 64 * 10), "new", "a jump far ahead");
    for (let s = 6 + 64 * 9 + 1; s < 6 + 64 * 10; s++) assert.equal(d.sight("o", 0, s), "new", `seq ${s}`);
  });

  test("sequence numbers wrap around 2^32", () => {
    const d = new DedupeWindows(64, 16);
    assert.equal(d.sight("o", 0, 0xffffffff), "new");
    assert.equal(d.sight("o", 0, 0), "new");
    assert.equal(d.sight("o", 0, 0xffffffff), "duplicate");
    assert.equal(d.sight("o", 0, 0xfffffffe), "new");
  });

  test("epochs and origins are separate", () => {
    const d = new DedupeWindows(64, 16);
    assert.equal(d.sight("o", 0, 1), "new");
    assert.equal(d.sight("o", 1, 1), "new");
    assert.equal(d.sight("p", 0, 1), "new");
    assert.equal(d.sight("o", 0, 1), "duplicate");
  });

  test("span reads (countUnseen, firstUnseen, lastUnseen) agree with seen, seq by seq, across the window's reach and the 32-bit wrap", () => {
    const naive = (d: DedupeWindows, from: number, to: number) => {
      const unseen: number[] = [];
      for (let s = from; s <= to; s++) if (!d.seen("o", 0, s)) unseen.push(s);
      return { count: unseen.length, first: unseen[0] ?? to + 1, last: unseen.at(-1) ?? from - 1 };
    };
    fc.assert(
      fc.property(
        fc.constantFrom(64, 128),
        fc.constantFrom(0, 1000, 2 ** 32 - 200),
        fc.array(fc.integer({ min: 0, max: 400 }), { maxLength: 120 }),
        fc.integer({ min: -50, max: 450 }),
        fc.integer({ min: 0, max: 300 }),
        (windowSize, base, offsets, fromOffset, spanLength) => {
          const d = new DedupeWindows(windowSize, 4);
          for (const o of offsets) d.sight("o", 0, (base + o) >>> 0);
          const from = Math.max(0, base + fromOffset);
          const to = Math.min(2 ** 32 - 1, from + spanLength);
          const want = naive(d, from, to);
          assert.equal(d.countUnseen("o", 0, from, to), want.count);
          assert.equal(d.firstUnseen("o", 0, from, to), want.first);
          assert.equal(d.lastUnseen("o", 0, from, to), want.last);
        },
      ),
      { numRuns: 2000 },
    );
    const d = new DedupeWindows(64, 4);
    assert.equal(d.countUnseen("never", 0, 10, 19), 10, "an origin never sighted: all unseen");
    assert.equal(d.firstUnseen("o", 0, 5, 4), 5, "an empty span has nothing unseen");
    assert.equal(d.lastUnseen("o", 0, 5, 4), 4);
  });

  test("origins are bounded, least recently used forgotten first", () => {
    const d = new DedupeWindows(64, 16);
    for (let i = 0; i < 16; i++) d.sight(`o${i}`, 0, 1);
    assert.equal(d.originCount, 16);
    assert.equal(d.sight("o0", 0, 1), "duplicate"); // o0 is now the most recent
    assert.equal(d.sight("o16", 0, 1), "new"); // evicts o1
    assert.equal(d.originCount, 16);
    assert.equal(d.sight("o0", 0, 1), "duplicate");
    assert.equal(d.sight("o2", 0, 1), "duplicate");
    assert.equal(d.sight("o1", 0, 1), "new", "o1 was forgotten");
    assert.equal(d.originCount, 16);
  });

  test("matches a reference set over random sightings", () => {
    const rng = new Prng(5);
    const d = new DedupeWindows(128, 16);
    const seen = new Set<number>();
    let highest = -1;
    for (let i = 0; i < 20_000; i++) {
      const seq = Math.max(0, highest + 20 - rng.nextInt(200));
      const got = d.sight("o", 0, seq);
      let want: string;
      if (highest >= 0 && highest - seq >= 128) want = "stale";
      else if (seen.has(seq)) want = "duplicate";
      else want = "new";
      assert.equal(got, want, `step ${i} seq ${seq} highest ${highest}`);
      if (want === "new") seen.add(seq);
      highest = Math.max(highest, seq);
    }
  });
});

// ---------------------------------------------------------------------------------------------

describe("TimerQueue", () => {
  test("pops in (atMs, seq) order; equal times in push order", () => {
    const rng = new Prng(11);
    const q = new TimerQueue<number>();
    const pushed: { atMs: number; id: number }[] = [];
    for (let id = 0; id < 2000; id++) {
      const atMs = rng.nextInt(50);
      q.push(atMs, id);
      pushed.push({ atMs, id });
    }
    assert.equal(q.size, 2000);
    const expected = [...pushed].sort((a, b) => a.atMs - b.atMs || a.id - b.id).map((p) => p.id);
    const got: number[] = [];
    let lastAt = -1;
    for (let e = q.pop(); e !== undefined; e = q.pop()) {
      assert.ok(e.atMs >= lastAt);
      lastAt = e.atMs;
      got.push(e.value);
    }
    assert.deepEqual(got, expected);
    assert.equal(q.size, 0);
    assert.equal(q.peekAtMs(), Infinity);
    assert.equal(q.pop(), undefined);
  });

  test("popDue returns only timers due at or before now", () => {
    const q = new TimerQueue<string>();
    q.push(10, "b");
    q.push(5, "a");
    q.push(10, "c");
    q.push(11, "d");
    assert.equal(q.peekAtMs(), 5);
    assert.equal(q.popDue(4), undefined);
    assert.equal(q.popDue(10)?.value, "a");
    assert.equal(q.popDue(10)?.value, "b");
    assert.equal(q.popDue(10)?.value, "c");
    assert.equal(q.popDue(10), undefined);
    assert.equal(q.size, 1);
    q.clear();
    assert.equal(q.size, 0);
  });

  test("interleaved pushes and pops keep the order", () => {
    const rng = new Prng(12);
    const q = new TimerQueue<number>();
    const ref: { atMs: number; seq: number }[] = [];
    let seq = 0;
    let now = 0;
    for (let i = 0; i < 3000; i++) {
      if (rng.chance(0.6)) {
        const atMs = now + rng.nextInt(20);
        q.push(atMs, seq);
        ref.push({ atMs, seq: seq++ });
      } else {
        ref.sort((a, b) => a.atMs - b.atMs || a.seq - b.seq);
        const want = ref.shift();
        const got = q.pop();
        assert.equal(got?.value, want?.seq);
        if (got !== undefined) now = got.atMs;
      }
    }
  });
});

// ---------------------------------------------------------------------------------------------

describe("Prng", () => {
  function draw(p: Prng, n: number): number[] {
    return Array.from({ length: n }, () => p.nextU32());
  }

  test("the same seed gives the same stream; other seeds and streams differ", () => {
    assert.deepEqual(draw(new Prng(42), 1000), draw(new Prng(42), 1000));
    assert.notDeepEqual(draw(new Prng(42), 50), draw(new Prng(43), 50));
    assert.notDeepEqual(draw(new Prng(42, 0), 50), draw(new Prng(42, 1), 50));
    assert.deepEqual(draw(new Prng(-1), 10), draw(new Prng(0xffffffff | 0), 10));
    for (const v of draw(new Prng(3), 1000)) assert.ok(Number.isInteger(v) && v >= 0 && v < 2 ** 32);
  });

  test("known values do not change (recorded simulations replay only if they stay the same)", () => {
    assert.deepEqual(draw(new Prng(1), 3), [2201590429, 384951015, 1294042127]);
  });

  test("split streams are independent of the order in which they are drawn", () => {
    const p1 = new Prng(7);
    const a1 = p1.split();
    const b1 = p1.split();
    const bFirst = draw(b1, 100);
    const aSecond = draw(a1, 100);

    const p2 = new Prng(7);
    const a2 = p2.split();
    const b2 = p2.split();
    const aInterleaved: number[] = [];
    const bInterleaved: number[] = [];
    for (let i = 0; i < 100; i++) {
      aInterleaved.push(a2.nextU32());
      bInterleaved.push(b2.nextU32());
    }
    assert.deepEqual(aInterleaved, aSecond);
    assert.deepEqual(bInterleaved, bFirst);
    assert.notDeepEqual(aSecond, bFirst);
    // Draws from a child do not move the parent.
    assert.deepEqual(draw(p1, 20), draw(p2, 20));
    // A child is not the parent's own continuation.
    const p3 = new Prng(7);
    const c3 = p3.split();
    assert.notDeepEqual(draw(c3, 20), draw(p3, 20));
  });

  test("nextInt, nextFloat, chance and shuffle stay in range and are deterministic", () => {
    const p = new Prng(8);
    const counts = new Array<number>(10).fill(0);
    for (let i = 0; i < 100_000; i++) {
      const f = p.nextFloat();
      assert.ok(f >= 0 && f < 1);
      const k = p.nextInt(10);
      counts[k] = (counts[k] as number) + 1;
    }
    for (const c of counts) assert.ok(c > 9_000 && c < 11_000, `counts ${counts.join(",")}`);
    assert.equal(p.chance(0), false);
    assert.equal(p.chance(1), true);
    const s1 = new Prng(9).shuffle([...Array(20).keys()]);
    const s2 = new Prng(9).shuffle([...Array(20).keys()]);
    assert.deepEqual(s1, s2);
    assert.deepEqual([...s1].sort((x, y) => x - y), [...Array(20).keys()]);
    assert.notDeepEqual(s1, [...Array(20).keys()]);
  });
});

// ---------------------------------------------------------------------------------------------

describe("addresses", () => {
  const canonical: [input: string, text: string][] = [
    ["10.0.0.1", "10.0.0.1"],
    ["0.0.0.0", "0.0.0.0"],
    ["255.255.255.255", "255.255.255.255"],
    // RFC 5952: lower case, no leading zeros, longest zero run compressed, first of equal runs,
    // a single zero group never compressed.
    ["2001:0DB8:0000:0000:0000:0000:0000:0001", "2001:db8::1"],
    ["2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"],
    ["2001:0:0:1:0:0:0:1", "2001:0:0:1::1"],
    ["2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"],
    ["1:2:3:4:5:6:7::", "1:2:3:4:5:6:7:0"],
    ["::2:3:4:5:6:7:8", "0:2:3:4:5:6:7:8"],
    ["::", "::"],
    ["0:0:0:0:0:0:0:0", "::"],
    ["::1", "::1"],
    ["1::", "1::"],
    ["FE80::A:B", "fe80::a:b"],
    ["2001:db8::0:1", "2001:db8::1"],
    ["::ffff:192.0.2.1", "::ffff:192.0.2.1"],
    ["::ffff:c000:0201", "::ffff:192.0.2.1"],
    ["1:2:3:4:5:6:1.2.3.4", "1:2:3:4:5:6:102:304"],
  ];
  for (const [input, text] of canonical) {
    test(`${input} formats as ${text}`, () => {
      const ip = parseIp(input);
      assert.ok(ip !== null);
      assert.equal(formatIp(ip), text);
      const again = parseIp(text);
      assert.ok(again !== null);
      assert.deepEqual(again, ip, "the canonical text parses back to the same bytes");
    });
  }

  const badIps = [
    "",
    "1.2.3",
    "1.2.3.4.5",
    "256.1.1.1",
    "01.2.3.4",
    "1.2.3.-4",
    "1.2.3.4 ",
    "a.b.c.d",
    ":",
    ":::",
    "1::2::3",
    "1:2:3:4:5:6:7:8:9",
    "1:2:3:4:5:6:7:8::",
    "::1:2:3:4:5:6:7:8",
    ":1:2:3:4:5:6:7",
    "1:2:3:4:5:6:7:",
    "12345::",
    "g::1",
    "::1.2.3",
    "::1.2.3.256",
    "1:2:3:4:5:6:7:1.2.3.4",
    "fe80::1%eth0",
    "[::1]",
  ];
  for (const input of badIps) {
    test(`parseIp rejects ${JSON.stringify(input)}`, () => {
      assert.equal(parseIp(input), null);
    });
  }

  test("parseIp rejects an embedded IPv4 that is not the last 32 bits", () => {
    for (const bad of ["1.2.3.4::", "1.2.3.4::1", "1.2.3.4:1::", "::1.2.3.4:1", "1:2:3:4:5:1.2.3.4:6"]) assert.equal(parseIp(bad), null, bad);
    assert.ok(parseIp("::1.2.3.4") !== null && parseIp("1::1.2.3.4") !== null);
  });

  const good: [input: string, key: string, family: 4 | 6, port: number][] = [
    ["10.0.0.1:7946", "10.0.0.1:7946", 4, 7946],
    [" 10.0.0.1:1 ", "10.0.0.1:1", 4, 1],
    ["[2001:DB8:0::1]:7946", "[2001:db8::1]:7946", 6, 7946],
    ["[::1]:65535", "[::1]:65535", 6, 65535],
    ["[::ffff:10.0.0.1]:80", "[::ffff:10.0.0.1]:80", 6, 80],
  ];
  for (const [input, key, family, port] of good) {
    test(`parseAddress(${JSON.stringify(input)}) = ${key}`, () => {
      const a = parseAddress(input);
      assert.ok(typeof a !== "string", String(a));
      assert.equal(a.key, key);
      assert.equal(a.family, family);
      assert.equal(a.port, port);
      assert.equal(a.ip.length, family === 4 ? 4 : 16);
    });
  }

  test("a default port applies to a bare IP, bracketed or not", () => {
    const a = parseAddress("10.0.0.1", 7946);
    const b = parseAddress("2001:db8::1", 7946);
    const c = parseAddress("[2001:db8::1]", 7946);
    assert.ok(typeof a !== "string" && typeof b !== "string" && typeof c !== "string");
    assert.equal(a.key, "10.0.0.1:7946");
    assert.equal(b.key, "[2001:db8::1]:7946");
    assert.equal(c.key, "[2001:db8::1]:7946");
  });

  const bad: [input: string, message: string][] = [
    ["10.0.0.1", '"10.0.0.1" has no port (use ip:port or [ipv6]:port)'],
    ["[::1]", '"[::1]" has no port (use ip:port or [ipv6]:port)'],
    ["[::1", '"[::1" is not an address: missing "]"'],
    ["[::1]7946", '"[::1]7946" is not an address: expected ":port" after "]"'],
    ["10.0.0.256:1", '"10.0.0.256" is not an IPv4 or IPv6 address'],
    ["host.example:80", '"host.example" is not an IPv4 or IPv6 address'],
    ["", '"" is not an IPv4 or IPv6 address'],
    ["10.0.0.1:abc", '"abc" is not a port number'],
    ["10.0.0.1:", '"" is not a port number'],
    ["10.0.0.1:-1", '"-1" is not a port number'],
    ["10.0.0.1:123456", '"123456" is not a port number'],
    ["10.0.0.1:0", "port 0 is out of range 1..65535"],
    ["10.0.0.1:65536", "port 65536 is out of range 1..65535"],
    ["[fe80::1%eth0]:1", '"fe80::1%eth0" is not an IPv4 or IPv6 address'],
  ];
  for (const [input, message] of bad) {
    test(`parseAddress(${JSON.stringify(input)}) says: ${message}`, () => {
      assert.equal(parseAddress(input), message);
    });
  }

  test("addr and makeAddress throw RangeError on bad input", () => {
    assert.throws(() => addr("nope"), RangeError);
    assert.throws(() => makeAddress(new Uint8Array(5), 1), RangeError);
    assert.throws(() => makeAddress(new Uint8Array(4), 0), RangeError);
    assert.throws(() => makeAddress(new Uint8Array(4), 1.5), RangeError);
    assert.equal(makeAddress(new Uint8Array([192, 168, 1, 2]), 53).key, "192.168.1.2:53");
    assert.equal(makeAddress(new Uint8Array(16), 53).key, "[::]:53");
  });

  test("format and parse round-trip for random addresses", () => {
    const rng = new Prng(77);
    for (let i = 0; i < 3000; i++) {
      const ip = new Uint8Array(rng.chance(0.5) ? 4 : 16);
      // Many zero groups, so that compression is exercised.
      for (let j = 0; j < ip.length; j++) ip[j] = rng.chance(0.5) ? 0 : rng.nextInt(256);
      const text = formatIp(ip);
      assert.deepEqual(parseIp(text), ip, text);
      assert.ok(!/(^|:)0[0-9a-f]/.test(text) || ip.length === 4, `leading zero in ${text}`);
      assert.ok(text === text.toLowerCase());
      assert.ok((text.match(/::/g) ?? []).length <= 1);
      const port = 1 + rng.nextInt(65535);
      const a = makeAddress(ip, port);
      const b = parseAddress(a.key);
      assert.ok(typeof b !== "string" && b.key === a.key);
    }
  });
});
