/**
 * Protocol configuration: every tunable of the SWIM + Lifeguard core, with its unit, range and
 * formula, the named presets (`lan`, `local`, `wan`, `thread`), `validateConfig`, which
 * returns exact one-line messages for every field that is out of range, and `periodFields`, the
 * one rule for the protocol period (the agent's heartbeat) and the fields derived from it.
 */

import { probeTimeoutForPeriodMs } from "./formulas.js";
import { FIXED_HEADER_BYTES, SEALED_OVERHEAD_BYTES } from "./wire/messages.js";

export interface SwimConfig {
  /**
   * Base protocol period (ms), one probe per period. Range PERIOD_MIN_MS..PERIOD_MAX_MS
   * (10..600000). Scaled by Lifeguard health: interval * (health + 1). Set it with
   * `periodFields`, which derives probeTimeoutMs with it.
   */
  probeIntervalMs: number;
  /** How long a direct ping waits for an ack before indirect probes start (ms). Range 1..probeIntervalMs. Scaled like the interval. */
  probeTimeoutMs: number;
  /**
   * The probe timeout's share of the period (%), kept whenever the period is set (an agent's
   * --heartbeat at start-up, `configure heartbeat` live): probeTimeoutMs = max(1,
   * round(period * probeTimeoutPercent / 100)). Range 1..100.
   */
  probeTimeoutPercent: number;
  /**
   * Direct pings per probe, spread evenly over the probe timeout (the first at once, the i-th
   * at probeTimeoutMs * i / directPings; see pingOffsetMs), each only while no ack has come;
   * a ping-req helper pings the target as often within its nack deadline. With loss p on the
   * way there and back, a live target stays silent to all of them with probability
   * (1 - (1 - p)^2)^directPings, instead of 1 - (1 - p)^2. Range 1..8.
   */
  directPings: number;
  /**
   * k, members asked to ping-req a target that missed its direct acks. Range 0..16. With
   * Lifeguard on, one more per point of local health (indirectChecksFor), at most 16.
   */
  indirectChecks: number;
  /** Retransmit multiplier: each membership update is piggybacked retransmitMult * ceil(log10(N + 1)) times. Range 1..32. */
  retransmitMult: number;
  /**
   * Retransmit multiplier of user broadcasts: each node passes a broadcast on
   * broadcastRetransmitMult * ceil(log10(N + 1)) times. Range 1..32. A node then hears a
   * broadcast about that many times, and misses it with probability about e^-(that number)
   * at 0 % loss; broadcasts have no other repair path, so this is higher than retransmitMult.
   */
  broadcastRetransmitMult: number;
  /** Suspicion multiplier: min timeout = suspicionMult * max(1, log10 N) * probeIntervalMs (ms). Range 1..64. */
  suspicionMult: number;
  /** Lifeguard: a fresh suspicion lasts suspicionMaxTimeoutMult * min and shrinks with confirmations down to min. Range 1..100. Ignored when lifeguard is off (timeout = min). */
  suspicionMaxTimeoutMult: number;
  /**
   * Lifeguard's K: independent confirmations (suspicions by other members) that bring a
   * suspicion's timeout down to its minimum: max - (max - min) * log(c + 1) / log(K + 1) after
   * c of them, capped at n - 2 for a small cluster (expectedConfirmations). memberlist fixes
   * K = suspicionMult - 2; the presets keep that except `lan`. Range 0..16. A member that
   * hears of a suspicion probes the suspect at its next probe tick, so a crashed member
   * collects its confirmations within about two periods. Ignored when lifeguard is off.
   */
  suspicionConfirmations: number;
  /** Period (ms) of the gossip round that pushes queued updates to `gossipFanout` random members. 0 disables, else 5..600000. */
  gossipIntervalMs: number;
  /** Members gossiped to per gossip round. Range 0..16. */
  gossipFanout: number;
  /**
   * Gossip bandwidth budget (bytes per second): what this node's gossip rounds may send on
   * average, the regular rounds (gossipFanout datagrams every gossipIntervalMs) and the burst
   * rounds that carry a deep broadcast queue (see `gossipPacing`). The regular rounds always go,
   * so the budget in force is never below their own rate. Range 1000..1000000000.
   */
  gossipBudgetBytesPerSec: number;
  /** Dead members still receive gossip for this long after they died (ms), so a false positive learns of it. Range 0..86400000. */
  gossipToTheDeadMs: number;
  /** Period (ms) of a ping to one random dead member, which heals partitions. 0 disables, else 10..86400000. */
  reconnectIntervalMs: number;
  /** Period (ms) of an anti-entropy member-list exchange (push-pull) with one random member. 0 disables, else 100..86400000. */
  pushPullIntervalMs: number;
  /** Dead and left members are forgotten this long after their last state change (ms). Range 1000..604800000. */
  reapAfterMs: number;
  /**
   * How long a failed (dead, not left) member stays a reconnect target after it failed (ms),
   * also once reaped from the table (then it costs no probe or gossip traffic, only one JOIN
   * in some reconnect rounds): a partition longer than reapAfterMs still heals. 0 disables,
   * else 1000..2592000000 (30 days). Default 86400000 (24 h, as Serf).
   */
  reconnectTimeoutMs: number;
  /** Most reaped reconnect targets kept; beyond it the one that failed longest ago is dropped and counted. Range 0..65536. */
  maxReconnectTargets: number;
  /** Flap damping on (see flap-damping.ts): a member that keeps dying and coming back is reported damped. */
  flapDamping: boolean;
  /** Half-life of a member's flap penalty (ms). Range 1000..86400000. */
  flapHalfLifeMs: number;
  /** A flap that lifts the penalty to this or above damps the member (one flap adds 1000). Range 1001..1000000. */
  flapSuppressPenalty: number;
  /** A damped member is released when its penalty has decayed below this. Range 1..flapSuppressPenalty - 1. */
  flapReusePenalty: number;
  /** Longest a member stays damped after its last flap (ms): caps the penalty. Range 1000..86400000. */
  flapMaxSuppressMs: number;
  /** Lifeguard local health: the score ranges over 0..awarenessMaxMultiplier - 1. Range 1..32. */
  awarenessMaxMultiplier: number;
  /** Lifeguard on: local health multiplier, nacks, shrinking suspicion timeouts, buddy system. */
  lifeguard: boolean;
  /** Hard limit on every datagram, envelope included (bytes). Default 1232, the IPv6 minimum-MTU payload. Range 79..65507 (108.. when sealed): the largest SYNC header and membership item, envelope included, must fit. */
  maxPacketBytes: number;
  /**
   * Limit on ping, ack, nack, join and cookie datagrams, piggyback included (bytes). Range
   * 44..maxPacketBytes (73.. when sealed): the largest of their headers (a JOIN echoing a
   * cookie), envelope included, must fit. A PING_REQ takes this limit or, when smaller, its own
   * largest header (MAX_PING_REQ_HEADER_BYTES, 53, plus the envelope).
   */
  probePacketBytes: number;
  /** Largest user broadcast payload (bytes). Range 1..(maxPacketBytes - largest overhead); 256 on IPv4 and 512 on IPv6 by default. */
  maxBroadcastBytes: number;
  /** Members the table holds at most (self and dead/left ones included); strangers beyond it are refused and counted. Range 16..4194304. */
  maxMembers: number;
  /**
   * Outgoing user broadcasts waiting to be spread (relayed ones included). Once it is half full
   * (`ownBroadcastQueueLimit`), this node's own new broadcasts are refused (QUEUE_FULL, counted
   * in broadcastsRefused: the producer feels the backpressure), so that relayed broadcasts
   * still find room; only when it is full does a relayed one evict the most-sent, oldest item
   * (counted in broadcastsDropped). Range 2..1048576.
   */
  maxQueuedBroadcasts: number;
  /** Outgoing membership updates waiting to be spread; beyond it the most-sent one is dropped and counted. Range 16..4194304. */
  maxQueuedUpdates: number;
  /** Sequence numbers remembered per broadcast origin for de-duplication. Range 64..65536, a multiple of 32. */
  broadcastDedupeWindow: number;
  /** Broadcast origins remembered for de-duplication. Range 16..4194304. */
  maxBroadcastOrigins: number;
  /** How long a join or a user ping waits for its answer (ms). Range 10..600000. */
  requestTimeoutMs: number;
  /**
   * Request timeouts a join waits through before it is reported failed. Range 1..100. Until the
   * seed first answers (with a cookie or its list), JOINs go out four times per timeout; after
   * a cookie, the join gets joinAttempts more (see SwimNode.join).
   */
  joinAttempts: number;
  /** Most datagrams in one member-list snapshot (SYNC); a larger list is sent in part, from a rotating offset. Range 1..65536. */
  syncMaxDatagrams: number;
  /** Reserve room in every datagram for the AES-GCM envelope (SEALED_OVERHEAD_BYTES). */
  sealed: boolean;
  /**
   * Probe targets from the cluster's shared schedule (src/core/probe-schedule.ts: every member
   * probed by one other member per period, the round taken from wall-clock time) instead of
   * memberlist's independent shuffled rounds. Same traffic; a crashed member is first probed
   * within one period instead of now and then several. A member still walks its own shuffled
   * round for a few periods after its membership changed, and while its health stretches its
   * interval (see SwimNode's nextProbeTarget).
   */
  sharedProbeSchedule: boolean;
}

export type PresetName = "lan" | "local" | "wan" | "thread";
export const PRESET_NAMES: readonly PresetName[] = ["lan", "local", "wan", "thread"];

const common = {
  directPings: 1,
  indirectChecks: 3,
  suspicionMaxTimeoutMult: 6,
  awarenessMaxMultiplier: 8,
  lifeguard: true,
  maxPacketBytes: 1232,
  maxBroadcastBytes: 256,
  maxMembers: 262_144,
  maxQueuedBroadcasts: 4096,
  maxQueuedUpdates: 65536,
  broadcastDedupeWindow: 4096,
  maxBroadcastOrigins: 65536,
  joinAttempts: 3,
  syncMaxDatagrams: 256,
  sealed: false,
  sharedProbeSchedule: true,
  reconnectTimeoutMs: 86_400_000,
  maxReconnectTargets: 1024,
  flapDamping: true,
  flapHalfLifeMs: 60_000,
  flapSuppressPenalty: 2000,
  flapReusePenalty: 750,
  flapMaxSuppressMs: 600_000,
} satisfies Partial<SwimConfig>;

/** Presets after memberlist's LAN/local/WAN defaults, plus `thread` for 802.15.4 meshes. */
export const PRESETS: Readonly<Record<PresetName, Readonly<SwimConfig>>> = {
  lan: {
    ...common,
    probeIntervalMs: 1000,
    probeTimeoutMs: 500,
    probeTimeoutPercent: 50,
    // TamTam's detection defaults (bench/detection.bench.ts; memberlist: 1 ping, k = 3,
    // suspicionMult 4, K = 2, max 6 x min): at the agent's 500 ms period and 20 members, a
    // crash is dead everywhere after 1.8 s median (memberlist's: 3.9 s) with no false suspicion
    // at 10 % loss and no false death at 30 %.
    directPings: 4,
    indirectChecks: 4,
    retransmitMult: 4,
    broadcastRetransmitMult: 6,
    suspicionMult: 1,
    suspicionMaxTimeoutMult: 24,
    suspicionConfirmations: 3,
    gossipIntervalMs: 200,
    gossipFanout: 3,
    gossipBudgetBytesPerSec: 4_000_000,
    gossipToTheDeadMs: 30_000,
    reconnectIntervalMs: 2_000,
    pushPullIntervalMs: 30_000,
    reapAfterMs: 300_000,
    probePacketBytes: 1232,
    requestTimeoutMs: 1_000,
  },
  local: {
    ...common,
    probeIntervalMs: 1000,
    probeTimeoutMs: 200,
    probeTimeoutPercent: 20,
    indirectChecks: 1,
    retransmitMult: 2,
    broadcastRetransmitMult: 4,
    suspicionMult: 3,
    suspicionConfirmations: 1,
    gossipIntervalMs: 100,
    gossipFanout: 3,
    gossipBudgetBytesPerSec: 8_000_000,
    gossipToTheDeadMs: 15_000,
    reconnectIntervalMs: 1_000,
    pushPullIntervalMs: 15_000,
    reapAfterMs: 120_000,
    probePacketBytes: 1232,
    requestTimeoutMs: 500,
  },
  wan: {
    ...common,
    probeIntervalMs: 5000,
    probeTimeoutMs: 3000,
    probeTimeoutPercent: 60,
    retransmitMult: 4,
    broadcastRetransmitMult: 6,
    suspicionMult: 6,
    suspicionConfirmations: 4,
    gossipIntervalMs: 500,
    gossipFanout: 4,
    gossipBudgetBytesPerSec: 1_000_000,
    gossipToTheDeadMs: 60_000,
    reconnectIntervalMs: 10_000,
    pushPullIntervalMs: 60_000,
    reapAfterMs: 900_000,
    probePacketBytes: 1232,
    requestTimeoutMs: 5_000,
  },
  thread: {
    ...common,
    probeIntervalMs: 5000,
    probeTimeoutMs: 2000,
    probeTimeoutPercent: 40,
    indirectChecks: 2,
    retransmitMult: 3,
    broadcastRetransmitMult: 5,
    suspicionMult: 5,
    suspicionConfirmations: 3,
    gossipIntervalMs: 1000,
    gossipFanout: 2,
    // 802.15.4 carries 250 kbit/s at most; the regular rounds alone need about 2.5 kB/s.
    gossipBudgetBytesPerSec: 4_000,
    gossipToTheDeadMs: 60_000,
    reconnectIntervalMs: 15_000,
    pushPullIntervalMs: 120_000,
    reapAfterMs: 900_000,
    // A ping or ack with its piggyback stays inside one 802.15.4 frame's payload.
    probePacketBytes: 80,
    maxBroadcastBytes: 512,
    syncMaxDatagrams: 64,
    requestTimeoutMs: 4_000,
  },
};

/** Default broadcast payload limit per address family, as the original TamTam. */
export function defaultMaxBroadcastBytes(family: 4 | 6): number {
  return family === 6 ? 512 : 256;
}

/** Bytes of a datagram that are not payload for a broadcast item, in the worst case (IPv6 everywhere). */
export function broadcastOverheadBytes(sealed: boolean): number {
  // fixed header + from + incarnation + GOSSIP body, then tag + origin + epoch + seq + length
  const header = FIXED_HEADER_BYTES + 19 + 5;
  const item = 1 + 19 + 5 + 5 + 5;
  return header + item + (sealed ? SEALED_OVERHEAD_BYTES : 0);
}

// ---------------------------------------------------------------------------------------------
// The protocol period: one range, one rule

/**
 * The one range of the protocol period (ms), the same for every preset and wherever a period
 * comes from: `probeIntervalMs` here, the agent's `--heartbeat` flag, `TAMTAM_HEARTBEAT`,
 * `heartbeat:` in the config file, `tamtam configure heartbeat` and the SetHeartbeat RPC.
 * Every preset's own period lies inside it.
 */
export const PERIOD_MIN_MS = 10;
export const PERIOD_MAX_MS = 600_000;
/** The range as help texts and messages state it. */
export const PERIOD_RANGE_TEXT = `${PERIOD_MIN_MS}..${PERIOD_MAX_MS} ms`;

/**
 * The agent's period when none is given: 500 ms on `lan` (the original TamTam's heartbeat),
 * the preset's own period on the others.
 */
export const DEFAULT_HEARTBEAT_MS = 500;

export function defaultPeriodMs(preset: PresetName): number {
  return preset === "lan" ? DEFAULT_HEARTBEAT_MS : PRESETS[preset].probeIntervalMs;
}

/** What is wrong with `periodMs` as a protocol period ("must be an integer in 10..600000 ms"), or null. */
export function periodProblem(periodMs: number): string | null {
  return Number.isInteger(periodMs) && periodMs >= PERIOD_MIN_MS && periodMs <= PERIOD_MAX_MS
    ? null
    : `must be an integer in ${PERIOD_RANGE_TEXT}`;
}

/** The config fields that follow the period. */
export interface PeriodFields {
  readonly probeIntervalMs: number;
  /** max(1, round(probeIntervalMs * probeTimeoutPercent / 100)). */
  readonly probeTimeoutMs: number;
}

export type PeriodResult = { readonly ok: true; readonly fields: PeriodFields } | { readonly ok: false; readonly problem: string };

/**
 * THE rule for setting the protocol period, at start-up (`--heartbeat`, TAMTAM_HEARTBEAT, the
 * config file) and live (`configure heartbeat`, SetHeartbeat): checks `periodMs` against the
 * one range (PERIOD_RANGE_TEXT, the same for every preset) and derives every stored field that
 * depends on the period from `base`, a preset's config or one built from it: the period itself
 * and the probe timeout, which keeps the preset's share of it (`probeTimeoutPercent`). As the
 * share is a field of the config, a period set live gives exactly the fields the same period
 * gives at start-up. What else follows the period is computed from the current one when used:
 * the suspicion timeouts, the Lifeguard health scaling, the ping-req relay deadline and the
 * spacing of join-time member-list exchanges.
 *
 * On failure `problem` is one line ("must be an integer in 10..600000 ms") for the caller to
 * prefix with where the value came from.
 */
export function periodFields(base: Pick<SwimConfig, "probeTimeoutPercent">, periodMs: number): PeriodResult {
  const problem = periodProblem(periodMs);
  if (problem !== null) return { ok: false, problem };
  return { ok: true, fields: { probeIntervalMs: periodMs, probeTimeoutMs: probeTimeoutForPeriodMs(periodMs, base.probeTimeoutPercent) } };
}

// ---------------------------------------------------------------------------------------------
// Gossip pacing: the budget and the burst rounds

/** The range of gossipBudgetBytesPerSec, wherever it comes from (preset, flag, environment, file). */
export const GOSSIP_BUDGET_MIN_BYTES_PER_SEC = 1_000;
export const GOSSIP_BUDGET_MAX_BYTES_PER_SEC = 1_000_000_000;
/** Period of the burst rounds (ms) while a deep broadcast queue drains. */
export const GOSSIP_BURST_INTERVAL_MS = 10;
/** How much unused budget (in ms of it) a late burst round may catch up on: a busy host's timers fire late. */
export const GOSSIP_BURST_CATCH_UP_MS = 100;

/** How a node's gossip rounds are paced; derived from the config by `gossipPacing` alone. */
export interface GossipPacing {
  /** The budget in force (bytes/s): gossipBudgetBytesPerSec, or the regular rounds' own rate if larger. */
  readonly budgetBytesPerSec: number;
  /** The regular rounds' rate (bytes/s): gossipFanout full datagrams every gossipIntervalMs. */
  readonly regularBytesPerSec: number;
  /** Period of the burst rounds (ms): min(GOSSIP_BURST_INTERVAL_MS, gossipIntervalMs). */
  readonly burstIntervalMs: number;
  /**
   * Queued broadcast bytes beyond which burst rounds start: what one regular round carries
   * (gossipFanout full datagrams). They go on until the broadcast queue is empty. 0 when
   * gossip rounds are off (gossipIntervalMs 0 or gossipFanout 0): no bursts either.
   */
  readonly burstThresholdBytes: number;
  /** After a burst round with work, bursts restart for any queued item within this long (ms): gossipIntervalMs. */
  readonly lingerMs: number;
  /**
   * Most bytes the budget saves up (the token bucket's depth): GOSSIP_BURST_CATCH_UP_MS of it,
   * at least one full datagram. A burst round never sends more at once; one that fires late
   * (a busy host) sends what the rounds it missed would have.
   */
  readonly bucketBytes: number;
}

/**
 * THE derivation of the gossip pacing from a config: the budget in force, the burst period and
 * threshold, and the token bucket's depth. Burst rounds run only while the broadcast queue is
 * deeper than one regular round carries, so an idle node and a node with a few broadcasts
 * queued gossip exactly as without them (same datagrams, same PRNG draws).
 */
export function gossipPacing(config: Pick<SwimConfig, "gossipBudgetBytesPerSec" | "gossipFanout" | "gossipIntervalMs" | "maxPacketBytes">): GossipPacing {
  const rounds = config.gossipIntervalMs > 0 && config.gossipFanout > 0;
  const regularBytesPerSec = rounds ? Math.ceil((config.gossipFanout * config.maxPacketBytes * 1000) / config.gossipIntervalMs) : 0;
  const budgetBytesPerSec = Math.max(config.gossipBudgetBytesPerSec, regularBytesPerSec);
  const burstIntervalMs = rounds ? Math.min(GOSSIP_BURST_INTERVAL_MS, config.gossipIntervalMs) : GOSSIP_BURST_INTERVAL_MS;
  return {
    budgetBytesPerSec,
    regularBytesPerSec,
    burstIntervalMs,
    burstThresholdBytes: rounds ? config.gossipFanout * config.maxPacketBytes : 0,
    lingerMs: config.gossipIntervalMs,
    bucketBytes: Math.max(config.maxPacketBytes, Math.ceil((budgetBytesPerSec * GOSSIP_BURST_CATCH_UP_MS) / 1000)),
  };
}

/**
 * How many broadcasts may wait in the queue before this node refuses its own new ones: half of
 * maxQueuedBroadcasts, the other half being room for the broadcasts it relays.
 */
export function ownBroadcastQueueLimit(config: Pick<SwimConfig, "maxQueuedBroadcasts">): number {
  return Math.max(1, Math.floor(config.maxQueuedBroadcasts / 2));
}

/** Builds a config from a preset and overrides. Does not validate; call validateConfig. */
export function makeConfig(preset: PresetName = "lan", overrides: Partial<SwimConfig> = {}): SwimConfig {
  return { ...PRESETS[preset], ...overrides };
}

/**
 * The largest header of a datagram built within the probe budget (probePacketBytes): PING,
 * ACK, NACK and JOIN take 34 bytes at most (IPv6 sender, 5-byte incarnation and seq); a COOKIE
 * 42 (its 8-byte cookie); a JOIN that echoes a cookie 44 (its COOKIE_ECHO item, 10 bytes), the
 * largest. A PING_REQ is not held to the probe budget (see MAX_PING_REQ_HEADER_BYTES).
 */
export const MAX_PROBE_HEADER_BYTES = FIXED_HEADER_BYTES + 19 + 5 + 5 + (1 + 1 + 8);
/**
 * The largest PING_REQ header: from and about IPv6 members, 5-byte incarnation and seq. A
 * PING_REQ (sent only after a failed direct probe) takes the probe budget or, when that is
 * smaller (a sealed thread config: 80 - 29 = 51 bytes), this many bytes before the envelope.
 */
export const MAX_PING_REQ_HEADER_BYTES = FIXED_HEADER_BYTES + 19 + 5 + 5 + 19;
/**
 * The smallest full datagram that still carries any one membership item: the largest SYNC
 * header (IPv6 sender, 5-byte incarnation, flags, 5-byte seq) plus the largest item (a SUSPECT
 * of an IPv6 member by an IPv6 member at a 5-byte incarnation).
 */
export const MIN_FULL_DATAGRAM_BYTES = FIXED_HEADER_BYTES + 19 + 5 + 1 + 5 + (1 + 5 + 19 + 19);

interface Range {
  readonly min: number | ((c: SwimConfig) => number);
  readonly max: number | ((c: SwimConfig) => number);
  readonly unit: string;
  readonly zeroDisables?: boolean;
}

const RANGES: Readonly<Record<Exclude<keyof SwimConfig, "lifeguard" | "sealed" | "flapDamping" | "sharedProbeSchedule">, Range>> = {
  probeIntervalMs: { min: PERIOD_MIN_MS, max: PERIOD_MAX_MS, unit: "ms" },
  probeTimeoutMs: { min: 1, max: (c) => c.probeIntervalMs, unit: "ms" },
  probeTimeoutPercent: { min: 1, max: 100, unit: "%" },
  indirectChecks: { min: 0, max: 16, unit: "members" },
  retransmitMult: { min: 1, max: 32, unit: "" },
  broadcastRetransmitMult: { min: 1, max: 32, unit: "" },
  suspicionMult: { min: 1, max: 64, unit: "" },
  suspicionConfirmations: { min: 0, max: 16, unit: "confirmations" },
  directPings: { min: 1, max: 8, unit: "pings" },
  suspicionMaxTimeoutMult: { min: 1, max: 100, unit: "" },
  gossipIntervalMs: { min: 5, max: 600_000, unit: "ms", zeroDisables: true },
  gossipFanout: { min: 0, max: 16, unit: "members" },
  gossipBudgetBytesPerSec: { min: GOSSIP_BUDGET_MIN_BYTES_PER_SEC, max: GOSSIP_BUDGET_MAX_BYTES_PER_SEC, unit: "bytes/s" },
  gossipToTheDeadMs: { min: 0, max: 86_400_000, unit: "ms" },
  reconnectIntervalMs: { min: 10, max: 86_400_000, unit: "ms", zeroDisables: true },
  pushPullIntervalMs: { min: 100, max: 86_400_000, unit: "ms", zeroDisables: true },
  reapAfterMs: { min: 1000, max: 604_800_000, unit: "ms" },
  reconnectTimeoutMs: { min: 1000, max: 2_592_000_000, unit: "ms", zeroDisables: true },
  maxReconnectTargets: { min: 0, max: 65_536, unit: "members" },
  flapHalfLifeMs: { min: 1000, max: 86_400_000, unit: "ms" },
  flapSuppressPenalty: { min: 1001, max: 1_000_000, unit: "" },
  flapReusePenalty: { min: 1, max: (c) => c.flapSuppressPenalty - 1, unit: "" },
  flapMaxSuppressMs: { min: 1000, max: 86_400_000, unit: "ms" },
  awarenessMaxMultiplier: { min: 1, max: 32, unit: "" },
  maxPacketBytes: { min: (c) => MIN_FULL_DATAGRAM_BYTES + (c.sealed === true ? SEALED_OVERHEAD_BYTES : 0), max: 65507, unit: "bytes" },
  probePacketBytes: {
    min: (c) => MAX_PROBE_HEADER_BYTES + (c.sealed === true ? SEALED_OVERHEAD_BYTES : 0),
    max: (c) => c.maxPacketBytes,
    unit: "bytes",
  },
  maxBroadcastBytes: { min: 1, max: (c) => c.maxPacketBytes - broadcastOverheadBytes(c.sealed), unit: "bytes" },
  maxMembers: { min: 16, max: 4_194_304, unit: "members" },
  maxQueuedBroadcasts: { min: 2, max: 1_048_576, unit: "broadcasts" },
  maxQueuedUpdates: { min: 16, max: 4_194_304, unit: "updates" },
  broadcastDedupeWindow: { min: 64, max: 65_536, unit: "sequence numbers" },
  maxBroadcastOrigins: { min: 16, max: 4_194_304, unit: "origins" },
  requestTimeoutMs: { min: 10, max: 600_000, unit: "ms" },
  joinAttempts: { min: 1, max: 100, unit: "attempts" },
  syncMaxDatagrams: { min: 1, max: 65_536, unit: "datagrams" },
};

/**
 * What is wrong with `value` as config field `field` (checked on the lan preset otherwise),
 * as "must be in MIN..MAX UNIT", or null: settings that set one field check it with the
 * field's own range.
 */
export function fieldProblem(field: keyof typeof RANGES, value: number): string | null {
  const problems = validateConfig({ ...PRESETS.lan, [field]: value });
  const prefix = `${field} `;
  const line = problems.find((p) => p.startsWith(prefix));
  return line === undefined ? null : line.slice(prefix.length).replace(/, got .*$/, "");
}

/** The agent's settings of partition healing and flap damping; null keeps the preset's value. */
export interface FaultSettings {
  readonly reapAfterMs: number | null;
  readonly reconnectIntervalMs: number | null;
  readonly reconnectTimeoutMs: number | null;
  readonly maxReconnectTargets: number | null;
  readonly flapDamping: boolean;
}

/**
 * THE rule that turns the agent's healing and damping settings (--reap-after,
 * --reconnect-interval, --reconnect-timeout, --reconnect-max, --flap-damping) into config
 * fields over `base` (a preset's config): a value given replaces the preset's, an absent one
 * keeps it. validateConfig checks the result.
 */
export function faultFields(base: SwimConfig, s: FaultSettings): SwimConfig {
  return {
    ...base,
    reapAfterMs: s.reapAfterMs ?? base.reapAfterMs,
    reconnectIntervalMs: s.reconnectIntervalMs ?? base.reconnectIntervalMs,
    reconnectTimeoutMs: s.reconnectTimeoutMs ?? base.reconnectTimeoutMs,
    maxReconnectTargets: s.maxReconnectTargets ?? base.maxReconnectTargets,
    flapDamping: s.flapDamping,
  };
}

/** Every problem with `config`, one line each; an empty list means it is valid. */
export function validateConfig(config: SwimConfig): string[] {
  const problems: string[] = [];
  for (const [field, range] of Object.entries(RANGES) as [keyof typeof RANGES, Range][]) {
    const value = config[field];
    const min = typeof range.min === "function" ? range.min(config) : range.min;
    const max = typeof range.max === "function" ? range.max(config) : range.max;
    const unit = range.unit === "" ? "" : ` ${range.unit}`;
    if (typeof value !== "number" || !Number.isInteger(value)) {
      problems.push(`${field} must be an integer, got ${String(value)}`);
    } else if (range.zeroDisables === true && value === 0) {
      continue;
    } else if (value < min || value > max) {
      const zero = range.zeroDisables === true ? " (or 0 to disable)" : "";
      problems.push(`${field} must be in ${min}..${max}${unit}${zero}, got ${value}`);
    }
  }
  if (config.broadcastDedupeWindow % 32 !== 0) {
    problems.push(`broadcastDedupeWindow must be a multiple of 32, got ${config.broadcastDedupeWindow}`);
  }
  for (const flag of ["lifeguard", "sealed", "flapDamping"] as const) {
    if (typeof config[flag] !== "boolean") problems.push(`${flag} must be true or false, got ${String(config[flag])}`);
  }
  return problems;
}
