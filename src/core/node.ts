/**
 * SwimNode: the sans-IO SWIM + Lifeguard state machine of one TamTam member. It owns the member
 * table, the probe cycle (ping, ping-req through k members, nack), suspicion with Lifeguard's
 * shrinking timeouts and local health multiplier, refutation, dissemination through transmit-
 * limited piggyback queues, user broadcasts with exactly-once delivery, join by member-list
 * sync, push-pull anti-entropy, graceful leave and reaping. Time and bytes come in as
 * arguments; datagrams, timers and events leave through the host's Runtime.
 *
 * Failure detection goes beyond memberlist's (see the lan preset in config.ts and
 * bench/detection.bench.ts): repeated pings within a probe's timeout (and a helper's), more
 * helpers as local health worsens, expedited checks beside the round robin of suspects that
 * others report and of helpers that stayed silent, local health that counts silent helpers
 * only when none answered, and no death for a suspect heard from since its suspicion began.
 *
 * A member list goes only to addresses that have shown they receive: a JOIN or push-pull
 * request from a member that has not answered this node yet gets one small COOKIE datagram,
 * and the member list once the request comes back with the cookie (see cookie.ts). Replies to
 * such requests are rate-limited per source address, and every refusal is counted by reason
 * (CoreStats.requestsRefusedByReason). The joining side follows the round trip by itself.
 *
 * Probes get the same care: an ACK or NACK to an address that has not shown it receives is no
 * larger than the PING or PING_REQ that earned it (the bare answer, no piggyback beyond the
 * request's size) and takes a token of the same per-source bucket; a PING or PING_REQ from an
 * address that is not a member teaches nothing (see answerLimit). Proven members get full
 * piggyback on every answer.
 */

import type { Address } from "./address.js";
import { MAX_PING_REQ_HEADER_BYTES, ownBroadcastQueueLimit, periodFields, type SwimConfig } from "./config.js";
import { COOKIE_SECRET_BYTES, CookieJar, SourceRateLimiter } from "./cookie.js";
import { DedupeWindows } from "./dedupe.js";
import { FRESH_PUSH_MAX_PEERS, GossipPacer } from "./dissemination.js";
import { type DampingStats, emptyDampingStats, FlapDamping } from "./flap-damping.js";
import { ProtocolError, type ProtocolErrorCode } from "./errors.js";
import {
  expectedConfirmations,
  expediteChance,
  indirectChecksFor,
  pingOffsetMs,
  probeHealthPenalty,
  pushPullIntervalMs,
  retransmitLimit,
  scaleByHealth,
  suspicionMinTimeoutMs,
  suspicionTimeoutMs,
} from "./formulas.js";
import { MemberTable, NO_SLOT, ProbeOrder, SlotSet } from "./member-table.js";
import { SharedProbeSchedule } from "./probe-schedule.js";
import { Prng } from "./prng.js";
import { emptyReconnectStats, type ReconnectStats, ReconnectTargets } from "./reconnect.js";
import { BroadcastRepair, emptyRepairStats, MAX_REPAIR_DATAGRAMS, type RepairStats } from "./repair.js";
import { ClusterRequests } from "./requests.js";
import { RttHistogram } from "./rtt-histogram.js";
import { EMPTY_TAGS, sameBytes, tagsProblem } from "./tags.js";
import type { CoreEvent, MemberInfo, Runtime, Timer } from "./runtime.js";
import { TransmitQueue } from "./transmit-queue.js";
import {
  DatagramWriter,
  decodeDatagram,
  encodeBroadcastItem,
  encodeCookieItem,
  encodeDigestItem,
  encodeUpdateItem,
  headerBytes,
} from "./wire/codec.js";
import {
  type Body,
  type Datagram,
  MemberState,
  MessageType,
  SEALED_OVERHEAD_BYTES,
  type MemberUpdate,
  type RepairRequestBody,
  type UserBroadcast,
} from "./wire/messages.js";

export interface SwimNodeOptions {
  /** This node's advertised address: its identity in the cluster. */
  readonly self: Address;
  /** A validated config (see validateConfig). */
  readonly config: SwimConfig;
  /** Seed of this node's PRNG (the host draws it; the simulator derives it from its seed). */
  readonly seed: number;
  /**
   * Starting incarnation, 0..2^32-1. Hosts pass wall-clock seconds so that a node restarted on
   * the same address outranks the death of its previous life at once; starting at 0 also works
   * (the node then refutes its old death when it hears of it).
   */
  readonly incarnation: number;
  /**
   * Broadcast id epoch, 0..2^32-1: must differ between two lives of the same address, or the
   * new life's first broadcasts look like duplicates of the old one's to members that still
   * remember them. Hosts draw it at random (the agent) or from a boot counter (the simulator).
   */
  readonly broadcastEpoch: number;
  /**
   * 16 secret bytes that key this node's join cookies; hosts draw them from a cryptographic
   * source. Default: drawn from a stream of the seeded PRNG (as the simulator wants), which
   * is only as hard to guess as the 32-bit seed.
   */
  readonly cookieSecret?: Uint8Array;
  /**
   * Configured seeds (the agent's --join): joined again, one JOIN per reconnect round among
   * the other reconnect contacts, whenever the cluster has lost members (see reconnect.ts).
   */
  readonly seeds?: readonly Address[];
  /** Members of an earlier life (the agent's --snapshot): reconnect targets from the start. */
  readonly reconnectTargets?: readonly Address[];
  /** This node's tags, encoded (src/core/tags.ts); RangeError if tagsProblem finds one. Default: none. */
  readonly tags?: Uint8Array;
  /**
   * Wall-clock milliseconds (since the Unix epoch) minus nowMs: the shared probe schedule counts
   * its rounds in wall-clock time, which members share (config.sharedProbeSchedule). Hosts whose
   * nowMs is a monotonic clock pass its origin (performance.timeOrigin). Default 0: nowMs is
   * itself the shared clock, as in the simulator.
   */
  readonly wallClockOffsetMs?: number;
}

export type TagsOutcome =
  | { readonly ok: true; readonly incarnation: number }
  | { readonly ok: false; readonly code: "TOO_LARGE" | "BAD_TAGS" | "LEFT"; readonly message: string };

/**
 * Why a request for the member list (JOIN, push-pull) got no member list, or (RATE_LIMITED
 * only) a PING or PING_REQ from an address not proven yet got no answer.
 */
export type RequestRefusal =
  /** From an address not proven yet, without a cookie: answered with a cookie. */
  | "NO_COOKIE"
  /** With a wrong or expired cookie: answered with a fresh cookie. */
  | "BAD_COOKIE"
  /** Its source had used up its replies: not answered at all (nor relayed, for a PING_REQ). */
  | "RATE_LIMITED"
  /** A cluster request (REQUEST), or a RELAY or RELAYED answer, from an address that is no member: ignored. */
  | "NOT_A_MEMBER";

export type BroadcastOutcome =
  | { readonly ok: true; readonly epoch: number; readonly seq: number }
  | { readonly ok: false; readonly code: "EMPTY" | "TOO_LARGE" | "LEFT" | "QUEUE_FULL"; readonly message: string };

/** Counters of one node; all monotonic (but DampingStats.membersDamped, a level). */
export interface CoreStats extends ReconnectStats, DampingStats, RepairStats {
  datagramsSent: number;
  bytesSent: number;
  datagramsReceived: number;
  bytesReceived: number;
  protocolErrors: number;
  protocolErrorsByCode: Partial<Record<ProtocolErrorCode, number>>;
  datagramsFromSelf: number;
  /** Probes started (one PING each). */
  pingsSent: number;
  /** Further direct pings of a probe still unanswered within its timeout (directPings > 1). */
  pingsRepeated: number;
  /** Further pings of a target for a ping-req still unanswered within its nack deadline. */
  relayPingsRepeated: number;
  /** Expedited checks beside the round robin: of a suspect another member reported, or of a helper that stayed silent. */
  probesExpedited: number;
  pingReqsSent: number;
  /** Probes answered by the target itself; their round trips are in SwimNode.ackRtt. */
  probesAckedDirect: number;
  /** Probes answered through a helper's PING_REQ. */
  probesAckedIndirect: number;
  acksReceived: number;
  nacksReceived: number;
  nacksSent: number;
  probesFailed: number;
  suspicionsRaised: number;
  /** Suspicions that ran out while their suspect had been heard from since: started afresh, not declared dead. */
  suspicionsExtended: number;
  deadDeclared: number;
  refutations: number;
  syncsSent: number;
  relaysDropped: number;
  updatesDropped: number;
  /** New members not added because the table holds maxMembers already. */
  membersRefused: number;
  broadcastsSent: number;
  broadcastsDelivered: number;
  broadcastsDuplicate: number;
  broadcastsStale: number;
  broadcastsDropped: number;
  /** This node's own broadcasts refused because its broadcast queue was full (QUEUE_FULL). */
  broadcastsRefused: number;
  /** Burst gossip rounds run (see dissemination.ts) and the datagrams they sent. */
  gossipBursts: number;
  gossipBurstDatagrams: number;
  /** Datagrams of the fresh push (own broadcasts to every member at once, see dissemination.ts). */
  freshPushDatagrams: number;
  /** COOKIE datagrams sent in answer to requests from addresses not proven yet. */
  cookiesSent: number;
  /** Requests that echoed a valid cookie (and so got the member list). */
  cookiesAccepted: number;
  /** COOKIE datagrams received that matched no request of ours (or came once too often). */
  cookiesIgnored: number;
  /** Requests for the member list that did not get it, in all and by reason. */
  requestsRefused: number;
  requestsRefusedByReason: Partial<Record<RequestRefusal, number>>;
  /** PINGs and PING_REQs from addresses that are not members: answered within limits, nothing in them learned. */
  probesFromStrangers: number;
  /**
   * PINGs and PING_REQs from addresses not proven yet that were answered (or relayed), every
   * datagram they caused no larger than the request. (Those their bucket refused are counted in
   * requestsRefusedByReason.RATE_LIMITED.)
   */
  probesAnsweredLimited: number;
  /** Tags of other members taken from alive statements (new or changed). */
  tagsUpdated: number;
  /**
   * Alive statements refused whole for their tags: larger than this node's limit (maxTagsBytes).
   * Each also counts as a BAD_TAGS protocol error; the member's state does not change.
   */
  tagsRefused: number;
}

interface Suspicion {
  readonly token: number;
  readonly startMs: number;
  readonly minMs: number;
  readonly maxMs: number;
  readonly expected: number;
  /** Keys of the members that suspected it; the first one is not a confirmation. */
  readonly suspectors: Set<string>;
}

interface Probe {
  readonly seq: number;
  readonly target: Address;
  /** The target's slot; NO_SLOT once it has left the table (its slot may be reused). */
  targetSlot: number;
  readonly startMs: number;
  /**
   * When the latest direct ping of this probe went (its repeats share the seq): an ack measures
   * its round trip from here, so a repeated ping does not report the wait before it as delay.
   */
  lastPingMs: number;
  acked: boolean;
  expectedNacks: number;
  nacks: number;
  /** Keys of the members asked for indirect pings, and of those that nacked. */
  helperKeys: readonly string[];
  readonly nackedBy: Set<string>;
  /** A check of a suspect that another member reported, beside the round robin (see expediteProbe). */
  readonly expedited: boolean;
}

interface Relay {
  readonly requester: Address;
  readonly requesterSeq: number;
  readonly expiresAtMs: number;
  /** Key of the address pinged for the requester: its ACK proves it receives. */
  readonly targetKey: string;
  /** The address pinged for the requester, and the ping's size limit (for repeated pings). */
  readonly target: Address;
  readonly pingLimitBytes: number;
  /** Largest datagram sent to the requester (its PING_REQ's size) when it is not proven; else Infinity. */
  readonly limitBytes: number;
}

type Request =
  | { readonly kind: "ping"; readonly target: Address; readonly token: number; readonly startMs: number }
  | {
      readonly kind: "join";
      readonly seed: Address;
      readonly token: number;
      attemptsLeft: number;
      /** The seed's cookie, once it sent one: echoed in every later JOIN to it. */
      readonly cookie: Uint8Array | null;
      /** COOKIE answers followed so far (at most MAX_COOKIE_ROUNDS). */
      readonly cookieRounds: number;
      /** A reconnect round's JOIN: no joinResult event, one attempt (see reconnect.ts). */
      readonly reconnect: boolean;
    };

/** Member-list exchanges after a successful join, in protocol periods. */
const JOIN_SYNC_AFTER_PERIODS = [2, 6] as const;
/** Joins closer together than this (periods) share their follow-up exchanges. */
const JOIN_SYNC_SPACING_PERIODS = 10;
/** Incarnations are u32 on the wire; they saturate here. */
const MAX_INCARNATION = 0xffffffff;
/** Most ping-req relays in flight; more are refused and counted. */
const MAX_RELAYS = 4096;
/**
 * Members waiting for an expedited check beside the round robin (see expediteProbe); when
 * full, a newly heard suspicion waits for the round robin like any other member.
 */
const MAX_EXPEDITED_PROBES = 8;
/**
 * Retransmissions of a death or a leave, as a multiple of retransmitMult's: a member that hears
 * none of them learns of it only from its own suspicion timeout (simulator, 20 members at 10 %
 * loss: about 1 crash in 300 had one member miss all of the 8 transmissions each member gave
 * it, and hold it suspect for up to 9 s).
 */
const DEPARTURE_RETRANSMIT_FACTOR = 2;
/** Probe ticks without a change of the probeable members before the shared schedule is used (see nextProbeTarget). */
const SCHEDULE_CALM_TICKS = 10;
/** Most user pings and joins in flight. */
const MAX_REQUESTS = 4096;
/** Push-pull requests (sender, seq) remembered as answered; the oldest is forgotten first. */
const MAX_PUSH_PULLS_REMEMBERED = 256;
/** COOKIE answers one join request follows; a seed that keeps sending cookies is given up on. */
const MAX_COOKIE_ROUNDS = 3;
/** Push-pull requests of ours awaiting an answer (a cookie or the list); the oldest is forgotten first. */
const MAX_PUSH_PULLS_PENDING = 256;
/** Pings sent to prove an address before a member-list exchange; the oldest is forgotten first. */
const MAX_PROOF_PINGS = 256;
/** PRNG stream of the default cookie secret (apart from the node's main stream). */
const COOKIE_SECRET_STREAM = 0x636f6f6b;
/** Members told directly, at once, of a graceful leave (chosen by the PRNG, alive ones first). */
export const LEAVE_FANOUT = 8;
/**
 * Copies of the leave announcement each of them gets when there are fewer than LEAVE_FANOUT
 * of them: ceil(LEAVE_FANOUT / members), at most this many, so that a small cluster under
 * datagram loss still hears of the leave before the process is gone.
 */
export const LEAVE_MAX_COPIES = 3;
/**
 * Alive members told directly, at once, of this node's new tags (chosen by the PRNG), besides
 * the piggybacked statement: in a cluster this small every member hears the change from its
 * owner, instead of relying on a few piggybacked transmissions (a member that missed them all
 * would show the old tags until a push-pull, up to pushPullIntervalMs later).
 */
export const TAGS_ANNOUNCE_FANOUT = LEAVE_FANOUT;
/** Members whose flap history a node keeps at most (see flap-damping.ts). */
const MAX_DAMPING_ENTRIES = 4096;
/** This node's own slot in its member table. */
const SELF = 0;
/** Set ids of the two SlotSets over the member table. */
const PROBEABLE_SET = 0;
const DEAD_SET = 1;

export class SwimNode {
  readonly self: Address;
  readonly config: SwimConfig;
  /** Round trips of probes the target answered directly. */
  readonly ackRtt = new RttHistogram();
  readonly stats: CoreStats = {
    datagramsSent: 0,
    bytesSent: 0,
    datagramsReceived: 0,
    bytesReceived: 0,
    protocolErrors: 0,
    protocolErrorsByCode: {},
    datagramsFromSelf: 0,
    pingsSent: 0,
    pingsRepeated: 0,
    relayPingsRepeated: 0,
    probesExpedited: 0,
    pingReqsSent: 0,
    probesAckedDirect: 0,
    probesAckedIndirect: 0,
    acksReceived: 0,
    nacksReceived: 0,
    nacksSent: 0,
    probesFailed: 0,
    suspicionsRaised: 0,
    suspicionsExtended: 0,
    deadDeclared: 0,
    refutations: 0,
    syncsSent: 0,
    relaysDropped: 0,
    updatesDropped: 0,
    membersRefused: 0,
    broadcastsSent: 0,
    broadcastsDelivered: 0,
    broadcastsDuplicate: 0,
    broadcastsStale: 0,
    broadcastsDropped: 0,
    broadcastsRefused: 0,
    gossipBursts: 0,
    gossipBurstDatagrams: 0,
    freshPushDatagrams: 0,
    cookiesSent: 0,
    cookiesAccepted: 0,
    cookiesIgnored: 0,
    requestsRefused: 0,
    requestsRefusedByReason: {},
    probesFromStrangers: 0,
    probesAnsweredLimited: 0,
    ...emptyReconnectStats(),
    ...emptyDampingStats(),
    ...emptyRepairStats(),
    tagsUpdated: 0,
    tagsRefused: 0,
  };

  private readonly rng: Prng;
  /** Every member, self included (slot 0). */
  private readonly table: MemberTable<Suspicion>;
  /** Alive and suspect members other than self: probe targets and gossip peers. */
  private readonly probeable: SlotSet;
  /** Dead (not left) members: reconnect targets and, for a while, gossip peers. */
  private readonly dead: SlotSet;
  private readonly probeOrder = new ProbeOrder();
  private readonly probeSchedule: SharedProbeSchedule;
  /** Probe ticks since the probeable members last changed (the shared schedule waits for calm). */
  private probeableCalmTicks = 0;
  private readonly wallClockOffsetMs: number;
  /** Keys of members waiting for their expedited check (bounded, FIFO). */
  private readonly expedited: string[] = [];
  /**
   * Probes in flight by seq: the round robin's current one, and at most one expedited check
   * of a reported suspect beside it.
   */
  private readonly probes = new Map<number, Probe>();
  /** Members held suspect: the rest of the probeable ones are alive and can confirm a suspicion. */
  private suspects = 0;
  private probeEpoch = 0;
  private probeIntervalMs: number;
  /** Probe timeout (ms); keeps the config's share of the period when the period changes. */
  private probeTimeoutMs: number;
  private readonly relays = new Map<number, Relay>();
  /** A gossip tick is pending; ticks stop while there is nothing to gossip (see armGossip). */
  private gossipTickArmed = false;
  /** Push-pull requests answered lately, as `key/seq`, oldest first (bounded). */
  private readonly pushPullsAnswered = new Set<string>();
  /** Our push-pull requests by seq: to whom, and whether a cookie was already followed. */
  private readonly pushPullsPending = new Map<number, { readonly to: Address; readonly echoed: boolean }>();
  /** Pings sent to prove a dead member's address, by its key (oldest first, bounded). */
  private readonly proofPings = new Map<string, { readonly seq: number; readonly atMs: number }>();
  private readonly cookies: CookieJar;
  private readonly replyLimiter = new SourceRateLimiter();
  private readonly requests = new Map<number, Request>();
  private readonly updates: TransmitQueue;
  private readonly broadcasts: TransmitQueue;
  /** Paces the gossip rounds: the bandwidth budget and the burst rounds of a deep broadcast queue. */
  private readonly pacer: GossipPacer;
  private readonly dedupe: DedupeWindows;
  /** Anti-entropy for user broadcasts: digests, repair requests, the store of recent ones. */
  private readonly repair: BroadcastRepair;
  /** Builds ping, ack, nack, join and cookie datagrams (probePacketBytes). */
  private readonly probeWriter: DatagramWriter;
  /** Builds ping-req datagrams: the probe writer, or one of the largest PING_REQ header if that is larger. */
  private readonly pingReqWriter: DatagramWriter;
  /** Builds gossip and sync datagrams (maxPacketBytes). */
  private readonly fullWriter: DatagramWriter;
  private readonly envelopeBytes: number;
  /** Request sequence numbers; start at a random point so that peers' and lives' seqs differ. */
  private nextSeq: number;
  private nextBroadcastSeq = 0;
  private readonly broadcastEpoch: number;
  private nextToken = 1;
  private syncOffset = 0;
  private health = 0;
  /** When a datagram from a member (any one) last arrived: a node that hears is not deaf (see probeHealthPenalty). */
  private lastHeardFromMemberAtMs = -Infinity;
  /** The encoded LEFT item about this node, once it leaves. */
  private leaveItem: Uint8Array | null = null;
  private lastJoinSyncsAtMs = -Infinity;
  /** The time of the latest input (datagram, timer, start): what member queries are answered as of. */
  private lastNowMs = 0;
  private started = false;
  private leaving = false;
  /** This node has tags to state (given at start or set since): its alive statements carry them. */
  private selfTagsStated = false;
  /** Cluster requests, ours and other members' (see requests.ts). */
  readonly clusterRequests: ClusterRequests;
  /** Reaped failed members still worth a JOIN now and then (see reconnect.ts). */
  private readonly reconnect: ReconnectTargets;
  private readonly seeds: readonly Address[];
  private readonly damping: FlapDamping;

  constructor(options: SwimNodeOptions) {
    this.self = options.self;
    this.wallClockOffsetMs = options.wallClockOffsetMs ?? 0;
    this.config = options.config;
    this.rng = new Prng(options.seed);
    this.probeIntervalMs = options.config.probeIntervalMs;
    this.probeTimeoutMs = options.config.probeTimeoutMs;
    this.nextSeq = 1 + this.rng.nextInt(0x7fffffff);
    // One secret of this life keys the join cookies and the answer keys of cluster requests;
    // their SipHash inputs differ in length (11 or 23 bytes, 16 or 28), so neither can stand
    // for the other.
    const secret = options.cookieSecret ?? defaultCookieSecret(options.seed);
    this.cookies = new CookieJar(secret);
    this.updates = new TransmitQueue(options.config.maxQueuedUpdates);
    this.broadcasts = new TransmitQueue(options.config.maxQueuedBroadcasts);
    this.pacer = new GossipPacer(options.config, options.config.maxQueuedBroadcasts);
    this.dedupe = new DedupeWindows(options.config.broadcastDedupeWindow, options.config.maxBroadcastOrigins);
    this.repair = new BroadcastRepair(options.config, options.self, this.dedupe, options.config.broadcastDedupeWindow, this.stats);
    this.envelopeBytes = options.config.sealed ? SEALED_OVERHEAD_BYTES : 0;
    this.probeWriter = new DatagramWriter(options.config.probePacketBytes - this.envelopeBytes);
    this.fullWriter = new DatagramWriter(options.config.maxPacketBytes - this.envelopeBytes);
    this.pingReqWriter = this.probeWriter.capacity >= MAX_PING_REQ_HEADER_BYTES ? this.probeWriter : new DatagramWriter(MAX_PING_REQ_HEADER_BYTES);
    this.broadcastEpoch = options.broadcastEpoch >>> 0;
    // The index's hash is keyed by the seed without drawing from the PRNG.
    this.table = new MemberTable<Suspicion>(options.seed, options.config.maxMembers, (newSlots) => this.renumber(newSlots));
    this.probeable = new SlotSet(this.table, PROBEABLE_SET);
    this.probeSchedule = new SharedProbeSchedule(options.self, (slot) => this.table.address(slot));
    this.dead = new SlotSet(this.table, DEAD_SET);
    this.table.add(options.self, MemberState.Alive, options.incarnation >>> 0, 0);
    const c = options.config;
    this.reconnect = new ReconnectTargets(c.maxReconnectTargets, c.reconnectTimeoutMs, this.stats);
    this.seeds = (options.seeds ?? []).filter((a) => a.key !== options.self.key);
    for (const a of options.reconnectTargets ?? []) if (a.key !== options.self.key) this.reconnect.add(a, 0, false);
    this.damping = new FlapDamping(c, Math.min(c.maxMembers, MAX_DAMPING_ENTRIES), this.stats);
    if (options.tags !== undefined) {
      const problem = tagsProblem(options.config, options.tags);
      if (problem !== null) throw new RangeError(problem);
      this.table.tags.set(SELF, { incarnation: options.incarnation >>> 0, bytes: options.tags.slice() });
      this.selfTagsStated = true;
    }
    this.clusterRequests = new ClusterRequests(options.config, this.broadcastEpoch, {
      send: (rt, to, body, priority) => this.sendBody(rt, to, body, "full", priority ?? null),
      relays: (count, exclude) => {
        const t = this.table;
        const keys = exclude.map((a) => a.key);
        return this.probeable.sample(this.rng, count, (slot) => t.state[slot] !== MemberState.Alive || keys.includes(t.address(slot).key)).map((slot) => t.address(slot));
      },
      members: () => this.memberList(),
      hasLeft: () => this.leaving,
    }, secret);
  }

  // ---------------------------------------------------------------------------------------
  // Public API: the host's calls.

  /** Starts the protocol: schedules the probe, gossip, reconnect and push-pull rounds. */
  start(nowMs: number, rt: Runtime): void {
    if (this.started) return;
    this.started = true;
    this.lastNowMs = nowMs;
    this.repair.begin(nowMs);
    this.table.stateChangedAtMs[SELF] = nowMs;
    this.emitMember(rt, SELF, null, null);
    // Our tags ride on the first datagrams (the JOIN included), ahead of any member list.
    if (this.selfTagsStated) this.queueUpdate(SELF);
    // Stagger the rounds so that nodes started together do not probe in lock-step.
    rt.setTimer(nowMs + this.rng.nextInt(this.probeIntervalMs) + 1, { kind: "probe", epoch: this.probeEpoch });
    const c = this.config;
    if (c.gossipIntervalMs > 0) {
      rt.setTimer(nowMs + this.rng.nextInt(c.gossipIntervalMs) + 1, { kind: "gossip" });
      this.gossipTickArmed = true;
    }
    if (c.reconnectIntervalMs > 0) rt.setTimer(nowMs + c.reconnectIntervalMs, { kind: "reconnect" });
    if (c.pushPullIntervalMs > 0) {
      // The first exchange comes after one interval plus a random phase of the interval for the
      // members known so far (only self, unless addConvergedMembers came first).
      const phaseMs = pushPullIntervalMs(c.pushPullIntervalMs, this.liveCount);
      rt.setTimer(nowMs + this.rng.nextInt(phaseMs) + c.pushPullIntervalMs, { kind: "pushPull", once: false });
    }
  }

  /**
   * Asks each seed for its member list. Emits one `joinResult` per seed (ok when the seed's
   * SYNC arrived, not ok when it stays silent). A seed may first answer with a cookie (see
   * cookie.ts): the JOIN is then sent again with it, transparently. Until a cookie or the list
   * comes, JOINs go out every quarter requestTimeoutMs, 4 * joinAttempts of them (as long as
   * joinAttempts full timeouts: the answer is one small datagram, and a lost one costs a
   * retry; a late cookie still counts); after the cookie, up to joinAttempts more, a
   * requestTimeoutMs apart.
   */
  join(nowMs: number, seeds: readonly Address[], rt: Runtime, token = 0): void {
    for (const seed of seeds) {
      if (seed.key === this.self.key) {
        rt.emit({ type: "joinResult", seed, ok: false, token });
        continue;
      }
      if (this.requests.size >= MAX_REQUESTS) {
        rt.emit({ type: "joinResult", seed, ok: false, token });
        continue;
      }
      const seq = this.takeSeq();
      const req: Request = { kind: "join", seed, token, attemptsLeft: 4 * this.config.joinAttempts - 1, cookie: null, cookieRounds: 0, reconnect: false };
      this.requests.set(seq, req);
      this.sendJoin(rt, seed, seq, null);
      rt.setTimer(nowMs + this.requestTimeoutOf(req), { kind: "request", seq });
    }
  }

  /** Sends a ping to `target`; emits `pingResult` with the round trip or null on timeout. */
  ping(nowMs: number, target: Address, token: number, rt: Runtime): void {
    if (this.requests.size >= MAX_REQUESTS || target.key === this.self.key) {
      rt.emit({ type: "pingResult", target, rttMs: target.key === this.self.key ? 0 : null, token });
      return;
    }
    const seq = this.takeSeq();
    this.requests.set(seq, { kind: "ping", target, token, startMs: nowMs });
    this.sendBody(rt, target, { type: MessageType.Ping, seq }, "probe");
    rt.setTimer(nowMs + this.config.requestTimeoutMs, { kind: "request", seq });
  }

  /** Queues a user broadcast for dissemination. It is not delivered to this node itself. */
  broadcast(nowMs: number, payload: Uint8Array, rt: Runtime): BroadcastOutcome {
    if (payload.length === 0) return { ok: false, code: "EMPTY", message: "a broadcast needs at least 1 byte" };
    if (payload.length > this.config.maxBroadcastBytes) {
      return {
        ok: false,
        code: "TOO_LARGE",
        message: `a broadcast carries at most ${this.config.maxBroadcastBytes} bytes, got ${payload.length}`,
      };
    }
    if (this.leaving) return { ok: false, code: "LEFT", message: "this node has left the cluster" };
    if (this.broadcasts.size >= ownBroadcastQueueLimit(this.config)) {
      this.stats.broadcastsRefused++;
      return {
        ok: false,
        code: "QUEUE_FULL",
        message: `the broadcast queue is full (${this.broadcasts.size} broadcasts waiting to be spread); try again shortly`,
      };
    }
    const seq = this.nextBroadcastSeq;
    this.nextBroadcastSeq = (this.nextBroadcastSeq + 1) >>> 0;
    const b: UserBroadcast = { origin: this.self, epoch: this.broadcastEpoch, seq, payload: payload.slice() };
    this.dedupe.sight(this.self.key, this.broadcastEpoch, seq);
    const item = this.queueBroadcast(b);
    this.repair.onDelivered(nowMs, b, item, null);
    this.pacer.addFresh(item);
    this.armGossip(nowMs, rt);
    this.stats.broadcastsSent++;
    return { ok: true, epoch: this.broadcastEpoch, seq };
  }

  /**
   * Replaces this node's tags (encoded, src/core/tags.ts): a new alive statement at a higher
   * incarnation carries them to every member. The same tags again change nothing.
   */
  setTags(nowMs: number, tags: Uint8Array, rt: Runtime): TagsOutcome {
    const t = this.table;
    if (this.leaving) return { ok: false, code: "LEFT", message: "this node has left the cluster" };
    const problem = tagsProblem(this.config, tags);
    if (problem !== null) return { ok: false, code: problem.startsWith("malformed") ? "BAD_TAGS" : "TOO_LARGE", message: problem };
    const current = t.tags.get(SELF);
    if (this.selfTagsStated && current !== undefined && sameBytes(current.bytes, tags)) return { ok: true, incarnation: t.incarnation[SELF] as number };
    const previousIncarnation = t.incarnation[SELF] as number;
    const incarnation = Math.min(previousIncarnation + 1, MAX_INCARNATION);
    t.incarnation[SELF] = incarnation;
    t.tags.set(SELF, { incarnation, bytes: tags.slice() });
    this.selfTagsStated = true;
    const statement = this.queueUpdate(SELF);
    for (const peer of this.probeable.sample(this.rng, TAGS_ANNOUNCE_FANOUT, (slot) => t.state[slot] !== MemberState.Alive)) {
      this.sendAlone(rt, peer, statement);
    }
    this.armGossip(nowMs, rt);
    this.emitMember(rt, SELF, MemberState.Alive, previousIncarnation);
    return { ok: true, incarnation };
  }

  /** Sends `item` (an encoded statement) alone to the member at `slot`, in one GOSSIP datagram. */
  private sendAlone(rt: Runtime, slot: number, item: Uint8Array): void {
    const w = this.probeWriter;
    w.begin(this.self, this.table.incarnation[SELF] as number, { type: MessageType.Gossip });
    w.tryAppend(item);
    this.transmit(rt, this.table.address(slot), w.finish());
  }

  /**
   * Graceful leave: raises the incarnation and announces *left* at once, directly, to up to
   * LEAVE_FANOUT members (more than gossipFanout if that is larger) chosen by the PRNG, alive
   * ones before suspected ones; with fewer members each gets several copies (LEAVE_MAX_COPIES).
   * Every recipient gossips the statement on, so the host may stop the node as soon as these
   * datagrams are on the wire. Until it does, the statement leads every datagram the node
   * sends and gossip rounds go on; probing, push-pull and reconnects stop.
   * (`leaveDisseminated` tells when the announcement has also used its piggyback transmissions.)
   */
  leave(nowMs: number, rt: Runtime): void {
    if (this.leaving) return;
    this.leaving = true;
    const t = this.table;
    const previousIncarnation = t.incarnation[SELF] as number;
    t.incarnation[SELF] = Math.min(previousIncarnation + 1, MAX_INCARNATION);
    const previous = t.state[SELF] as MemberState;
    t.state[SELF] = MemberState.Left;
    t.stateChangedAtMs[SELF] = nowMs;
    // The announcement leads every datagram from now on, ahead of whatever else is queued.
    this.leaveItem = this.queueUpdate(SELF);
    this.armGossip(nowMs, rt);
    this.emitMember(rt, SELF, previous, previousIncarnation);
    const fanout = Math.max(LEAVE_FANOUT, this.config.gossipFanout);
    const peers = this.probeable.sample(this.rng, fanout, (slot) => t.state[slot] !== MemberState.Alive);
    if (peers.length < fanout) {
      for (const slot of this.probeable.sample(this.rng, fanout - peers.length, (s) => peers.includes(s))) peers.push(slot);
    }
    if (peers.length === 0) return;
    // The first datagram to each also carries what else is queued; the copies only the leave.
    for (const peer of peers) this.sendBody(rt, t.address(peer), { type: MessageType.Gossip }, "full");
    const copies = Math.min(LEAVE_MAX_COPIES, Math.ceil(fanout / peers.length));
    for (let copy = 1; copy < copies; copy++) {
      for (const peer of peers) this.sendAlone(rt, peer, this.leaveItem);
    }
  }

  /** True once the leave announcement has been sent as often as the retransmit limit asks. */
  get leaveDisseminated(): boolean {
    return this.leaving && !this.updates.has(this.self.key);
  }

  get hasLeft(): boolean {
    return this.leaving;
  }

  /** Drops a member from the local table only (the original TamTam's `leave ADDR`). */
  forget(address: Address, rt: Runtime): boolean {
    const slot = this.table.find(address);
    if (slot === SELF) return false;
    if (slot === NO_SLOT) return this.reconnect.remove(address.key) !== null;
    this.reconnect.remove(address.key);
    this.removeMember(slot, rt);
    return true;
  }

  /**
   * Changes the base protocol period live (the original's `configure heartbeat`), through
   * `periodFields`, the rule that also sets it at start-up: the probe timeout keeps the
   * config's share of the period (`probeTimeoutPercent`), so the same period gives the same
   * fields either way. A period outside the range changes nothing and returns false.
   */
  setProbeIntervalMs(nowMs: number, probeIntervalMs: number, rt: Runtime): boolean {
    const period = periodFields(this.config, probeIntervalMs);
    if (!period.ok) return false;
    this.probeIntervalMs = period.fields.probeIntervalMs;
    this.probeTimeoutMs = period.fields.probeTimeoutMs;
    this.probeEpoch++;
    if (this.started) rt.setTimer(nowMs + this.scaled(this.probeIntervalMs), { kind: "probe", epoch: this.probeEpoch });
    return true;
  }

  get currentProbeIntervalMs(): number {
    return this.probeIntervalMs;
  }

  /** The probe timeout (ms) at the current period, before Lifeguard's health scaling. */
  get currentProbeTimeoutMs(): number {
    return this.probeTimeoutMs;
  }

  /** Lifeguard's local health score, 0 (healthy) .. awarenessMaxMultiplier - 1. */
  get healthScore(): number {
    return this.health;
  }

  get incarnation(): number {
    return this.table.incarnation[SELF] as number;
  }

  /** Members in alive or suspect state, self included. */
  get liveCount(): number {
    return this.probeable.size + (this.leaving ? 0 : 1);
  }

  get memberCount(): number {
    return this.table.size;
  }

  /** Members held in each state (alive, suspect, dead, left; indexed by MemberState), self included. */
  membersByState(): [number, number, number, number] {
    const out: [number, number, number, number] = [0, 0, 0, 0];
    const t = this.table;
    for (let slot = 0; slot < t.slotLimit; slot++) {
      if (!t.isMember(slot)) continue;
      const state = t.state[slot] as MemberState;
      out[state]++;
    }
    return out;
  }

  get queuedUpdates(): number {
    return this.updates.size;
  }

  get queuedBroadcasts(): number {
    return this.broadcasts.size;
  }

  /** The member whose canonical key (`Address.key`) is `key`, if any. */
  member(key: string): MemberInfo | undefined {
    const slot = this.table.findKey(key);
    return slot === NO_SLOT ? undefined : this.info(slot);
  }

  /** Every member, self included, in table order (slot order: self first). */
  memberList(): MemberInfo[] {
    const out: MemberInfo[] = [];
    const t = this.table;
    for (let slot = 0; slot < t.slotLimit; slot++) if (t.isMember(slot)) out.push(this.info(slot));
    return out;
  }

  /** State of `key` without building a MemberInfo (for checkers in large simulations). */
  stateOf(key: string): MemberState | undefined {
    const slot = this.table.findKey(key);
    return slot === NO_SLOT ? undefined : (this.table.state[slot] as MemberState);
  }

  /** Iterates (key, state, incarnation) in table order without allocating MemberInfo objects. */
  forEachMember(visit: (key: string, state: MemberState, incarnation: number) => void): void {
    const t = this.table;
    for (let slot = 0; slot < t.slotLimit; slot++) {
      if (t.isMember(slot)) visit(t.address(slot).key, t.state[slot] as MemberState, t.incarnation[slot] as number);
    }
  }

  /**
   * Warm start, for simulations that begin from a converged cluster: adds every address of
   * `members` not known yet (self is skipped) as alive at `incarnation`, as if learned from
   * the cluster long ago: no piggyback update is queued, no CoreEvent emitted, no timer set.
   * Each one joins the probe order as a newly learned member does, so the node then behaves
   * like one that learned them normally (probing them, gossiping to them, push-pull). The
   * table is presized to the final count first; members beyond maxMembers are refused and
   * counted. Call before `start` (which then paces the first push-pull for the cluster's
   * size, as in a long-running cluster) or after it. Cost: a hash look-up and insert per address.
   */
  addConvergedMembers(nowMs: number, members: readonly Address[], incarnation: number): void {
    if (this.leaving) return;
    const t = this.table;
    const target = Math.min(this.config.maxMembers, t.size + members.length);
    t.reserve(target);
    this.probeable.reserve(target - 1);
    this.probeOrder.reserve(target - 1);
    const inc = incarnation >>> 0;
    for (const a of members) {
      if (t.find(a) !== NO_SLOT) continue;
      if (t.size >= this.config.maxMembers) {
        this.stats.membersRefused++;
        continue;
      }
      const slot = t.add(a, MemberState.Alive, inc, nowMs);
      // Long-standing members have answered this node's probes long ago.
      t.proven[slot] = 1;
      this.makeProbeable(slot);
    }
    // Every member starts from the same list: the views agree, the shared schedule can start.
    this.probeableCalmTicks = SCHEDULE_CALM_TICKS;
  }

  // ---------------------------------------------------------------------------------------
  // Inputs from the network and the timer queue.

  /** Handles one datagram received from the network. Bad bytes are counted and change nothing. */
  handleDatagram(nowMs: number, bytes: Uint8Array, rt: Runtime): void {
    this.lastNowMs = nowMs;
    this.stats.datagramsReceived++;
    this.stats.bytesReceived += bytes.length;
    let d: Datagram;
    try {
      d = decodeDatagram(bytes);
    } catch (err) {
      if (!(err instanceof ProtocolError)) throw err;
      this.stats.protocolErrors++;
      const byCode = this.stats.protocolErrorsByCode;
      byCode[err.code] = (byCode[err.code] ?? 0) + 1;
      return;
    }
    if (d.from.key === this.self.key) {
      this.stats.datagramsFromSelf++;
      return;
    }
    if (!this.started) return;
    // A JOIN from a stranger without a valid cookie gets a cookie and nothing else: nothing it
    // says is learned (it would make the whole cluster probe whatever address it names).
    if (d.body.type === MessageType.Join && !this.leaving && this.table.find(d.from) === NO_SLOT) {
      if (d.cookie === undefined || !this.cookies.check(d.from, d.cookie, nowMs)) {
        this.challenge(nowMs, d.from, d.body.seq, d.cookie === undefined ? "NO_COOKIE" : "BAD_COOKIE", rt);
        return;
      }
    }
    // A PING or PING_REQ from an address that is not a member is answered within limits (see
    // answerLimit) and nothing else: neither its sender nor its items are learned (a forged one
    // would make the whole cluster probe whatever address it names; a real newcomer joins
    // through a JOIN and its cookie, and the cluster gossips about it).
    if ((d.body.type === MessageType.Ping || d.body.type === MessageType.PingReq) && this.table.find(d.from) === NO_SLOT) {
      this.stats.probesFromStrangers++;
      this.handleBody(nowMs, d, NO_SLOT, bytes.length, rt);
      return;
    }
    // A cluster request from an address that is not a member is ignored, and nothing it says is
    // learned: only members may ask (else anyone could make the host act on a request and send
    // its answer to an address outside the cluster that never asked). Sealed, a member is also
    // a key holder (see src/seal/envelope.ts).
    const type = d.body.type;
    const membersOnly = type === MessageType.Request || type === MessageType.Relay || type === MessageType.Relayed || type === MessageType.RepairRequest;
    if (membersOnly && this.table.find(d.from) === NO_SLOT) {
      this.refused("NOT_A_MEMBER");
      return;
    }
    const syncFrom = d.body.type === MessageType.Sync ? d.from : null;
    const distrusted = d.updates.length > 0 && this.damping.isDamped(d.from.key);
    for (const u of d.updates) {
      // A member held damped (flapping) declares dead whomever it could not hear: its dead
      // statements about third members are not believed (its suspicions are judged by their
      // accuser in mergeUpdate, so that the suspicions it passes on still reach the accused).
      // About this node they are, so that it refutes them.
      const third = u.member.key !== d.from.key && u.member.key !== this.self.key;
      if (distrusted && third && u.state === MemberState.Dead) {
        this.stats.accusationsIgnored++;
        continue;
      }
      this.mergeUpdate(nowMs, u, syncFrom, rt);
    }
    // The sender is alive at the incarnation it states: an implicit alive update, merged after
    // the items so that a leaving sender's own LEFT (at the same incarnation) comes first.
    const sender = this.mergeUpdate(nowMs, { state: MemberState.Alive, incarnation: d.incarnation, member: d.from }, null, rt);
    const t = this.table;
    if (sender !== NO_SLOT) {
      t.lastHeardAtMs[sender] = nowMs;
      this.lastHeardFromMemberAtMs = nowMs;
    }
    const repaired = type === MessageType.Repair;
    for (const b of d.broadcasts) this.receiveBroadcast(nowMs, b, d.from, repaired, rt);
    if (d.digest !== undefined && sender !== NO_SLOT && !this.leaving) this.repair.onDigest(nowMs, d.from, d.digest);
    this.handleBody(nowMs, d, sender, bytes.length, rt);
    this.armGossip(nowMs, rt);
    if (sender === NO_SLOT || this.leaving) return;
    // A member we hold dead is talking to us, or one we hold left talks at an older incarnation
    // (a new life on its address): tell it (push-pull), so that it refutes. Unless its address
    // has answered us since, ask it to first: a ping that carries the news (one datagram).
    const state = t.state[sender];
    if (state === MemberState.Dead || (state === MemberState.Left && d.incarnation < (t.incarnation[sender] as number))) {
      if (t.proven[sender] !== 1) {
        this.sendProofPing(nowMs, sender, true, rt);
      } else if (nowMs - (t.lastSyncToMs.get(sender) ?? -Infinity) >= this.probeIntervalMs) {
        t.lastSyncToMs.set(sender, nowMs);
        this.startPushPull(rt, t.address(sender));
      }
    }
  }

  /** Handles a timer the host set through Runtime.setTimer. Stale timers are ignored. */
  handleTimer(nowMs: number, timer: Timer, rt: Runtime): void {
    this.lastNowMs = nowMs;
    this.onTimer(nowMs, timer, rt);
    this.armGossip(nowMs, rt);
  }

  private onTimer(nowMs: number, timer: Timer, rt: Runtime): void {
    switch (timer.kind) {
      case "probe":
        if (timer.epoch === this.probeEpoch) this.onProbeTick(nowMs, rt);
        return;
      case "probeTimeout":
        this.onProbeTimeout(nowMs, timer.seq, rt);
        return;
      case "probeDeadline":
        this.onProbeDeadline(nowMs, timer.seq, rt);
        return;
      case "probeRetry":
        this.onProbeRetry(nowMs, timer.seq, rt);
        return;
      case "relayRetry":
        this.onRelayRetry(timer.seq, rt);
        return;
      case "relayTimeout":
        this.onRelayTimeout(timer.seq, rt);
        return;
      case "suspicion":
        this.onSuspicionTimer(nowMs, timer.key, timer.token, rt);
        return;
      case "reap":
        this.onReapTimer(nowMs, timer.key, timer.token, rt);
        return;
      case "flapRelease":
        this.onFlapRelease(nowMs, timer.key, rt);
        return;
      case "gossip":
        this.onGossipTick(nowMs, rt);
        return;
      case "gossipBurst":
        this.onGossipBurst(nowMs, rt);
        return;
      case "repair":
        this.onRepairTick(nowMs, rt);
        return;
      case "reconnect":
        this.onReconnectTick(nowMs, rt);
        return;
      case "pushPull":
        this.onPushPullTick(nowMs, timer.once, rt);
        return;
      case "request":
        this.onRequestTimeout(nowMs, timer.seq, rt);
        return;
      case "clusterRequest":
        this.clusterRequests.onTimer(nowMs, timer.id, rt);
        return;
    }
  }

  // ---------------------------------------------------------------------------------------
  // Message handling.

  /** `requestBytes`: the datagram's size, which bounds the answer to an address not proven yet. */
  private handleBody(nowMs: number, d: Datagram, sender: number, requestBytes: number, rt: Runtime): void {
    const body = d.body;
    switch (body.type) {
      case MessageType.Ping: {
        const limitBytes = this.answerLimit(nowMs, d.from, sender, requestBytes);
        if (limitBytes > 0) this.sendBody(rt, d.from, { type: MessageType.Ack, seq: body.seq }, "probe", null, limitBytes);
        return;
      }
      case MessageType.Ack:
        this.onAck(nowMs, d.from, body.seq, rt);
        return;
      case MessageType.PingReq:
        this.onPingReq(nowMs, d.from, sender, body.seq, body.target, requestBytes, rt);
        return;
      case MessageType.Nack:
        this.stats.nacksReceived++;
        const probe = this.probes.get(body.seq);
        // Only a helper this probe asked counts (and only once): a NACK from anyone else
        // proves nothing and must not spare our health score.
        if (probe !== undefined && probe.helperKeys.includes(d.from.key) && !probe.nackedBy.has(d.from.key)) {
          probe.nacks++;
          probe.nackedBy.add(d.from.key);
          // A helper we asked: it got our PING_REQ, so it receives.
          this.prove(sender);
        }
        return;
      case MessageType.Join:
        if (!this.leaving && this.admitRequest(nowMs, d, sender, body.seq, rt)) this.sendSync(rt, d.from, false, body.seq);
        return;
      case MessageType.Sync: {
        // A reply to our JOIN, matched by seq: the seed may advertise another address than
        // the one we reached it at.
        // (A SYNC that wants a reply is a push-pull request, carrying the sender's own seq.)
        const req = body.seq === 0 || body.replyWanted ? undefined : this.requests.get(body.seq);
        if (req !== undefined && req.kind === "join") {
          this.requests.delete(body.seq);
          // The seed answered at the address we reached it at: it receives there.
          if (d.from.key === req.seed.key) this.prove(sender);
          if (req.reconnect) this.stats.reconnectsSucceeded++;
          else rt.emit({ type: "joinResult", seed: req.seed, ok: true, token: req.token });
          this.scheduleJoinSyncs(nowMs, rt);
        } else if (!body.replyWanted && body.seq !== 0) {
          const pending = this.pushPullsPending.get(body.seq);
          if (pending !== undefined && pending.to.key === d.from.key) {
            this.pushPullsPending.delete(body.seq);
            this.prove(sender);
          }
        }
        if (body.replyWanted && !this.leaving && this.firstOfPushPull(d.from, body.seq) && this.admitRequest(nowMs, d, sender, body.seq, rt)) {
          this.sendSync(rt, d.from, false, body.seq);
        }
        return;
      }
      case MessageType.Gossip:
        return;
      case MessageType.Cookie:
        this.onCookie(nowMs, d.from, body.seq, body.cookie, rt);
        return;
      case MessageType.Request:
        this.clusterRequests.onRequest(d.from, body, d.requestOptions, rt);
        return;
      case MessageType.Response:
        this.clusterRequests.onResponse(d.from, body, rt);
        return;
      case MessageType.RequestAck:
        this.clusterRequests.onAck(d.from, body.epoch, body.id, body.mac, rt);
        return;
      case MessageType.Relay:
        // Passed on only to a member: a RELAY must not turn this node into a sender of answers
        // to addresses outside the cluster.
        if (this.table.find(body.peer) === NO_SLOT) {
          this.refused("NOT_A_MEMBER");
          return;
        }
        this.clusterRequests.onRelay(d.from, this.self, body, rt);
        return;
      case MessageType.Relayed:
        this.clusterRequests.onRelayed(body, rt);
        return;
      case MessageType.RepairRequest:
        this.onRepairRequest(nowMs, d.from, body, rt);
        return;
      case MessageType.Repair:
        return;
    }
  }

  private onAck(nowMs: number, from: Address, seq: number, rt: Runtime): void {
    this.stats.acksReceived++;
    const probe = this.probes.get(seq);
    if (probe !== undefined) {
      if (!probe.acked) {
        probe.acked = true;
        // Only a direct answer measures the round trip, from the latest ping sent (the pings of
        // one probe share a seq, so which one it answers is not known; the latest bounds it
        // from below, where the first would count every wait for a repeat as delay).
        const rttMs = nowMs - probe.lastPingMs;
        if (from.key === probe.target.key) {
          this.stats.probesAckedDirect++;
          this.ackRtt.observe(rttMs);
        } else {
          this.stats.probesAckedIndirect++;
        }
        if (probe.targetSlot !== NO_SLOT && from.key === probe.target.key) {
          this.table.lastRttMs[probe.targetSlot] = rttMs;
          this.prove(probe.targetSlot);
        }
        this.adjustHealth(-1);
      }
      // The target, or a helper we asked (only they know the seq): it receives.
      if (from.key !== probe.target.key) this.prove(this.table.find(from));
      return;
    }
    const relay = this.relays.get(seq);
    if (relay !== undefined) {
      this.relays.delete(seq);
      if (from.key === relay.targetKey) this.prove(this.table.find(from));
      this.sendBody(rt, relay.requester, { type: MessageType.Ack, seq: relay.requesterSeq }, "probe", null, relay.limitBytes);
      return;
    }
    const proof = this.proofPings.get(from.key);
    if (proof !== undefined && proof.seq === seq) {
      this.proofPings.delete(from.key);
      this.prove(this.table.find(from));
      return;
    }
    const req = this.requests.get(seq);
    if (req !== undefined && req.kind === "ping") {
      this.requests.delete(seq);
      if (from.key === req.target.key) this.prove(this.table.find(from));
      rt.emit({ type: "pingResult", target: req.target, rttMs: nowMs - req.startMs, token: req.token });
    }
  }

  /**
   * Relays a PING_REQ: pings `target` for the requester, and passes its ACK on (or, with
   * Lifeguard, a NACK when it stays silent). A requester not proven yet pays a token of its
   * bucket, and every datagram sent for it is no larger than its PING_REQ; so is the ping to a
   * target that is not a member of ours (it gets no piggyback).
   */
  private onPingReq(nowMs: number, from: Address, sender: number, requesterSeq: number, target: Address, requestBytes: number, rt: Runtime): void {
    const limitBytes = this.answerLimit(nowMs, from, sender, requestBytes);
    if (limitBytes === 0) return;
    if (this.relays.size >= MAX_RELAYS) {
      this.purgeRelays(nowMs);
      if (this.relays.size >= MAX_RELAYS) {
        this.stats.relaysDropped++;
        return;
      }
    }
    const seq = this.takeSeq();
    const timeoutMs = this.scaled(this.probeTimeoutMs);
    const pingLimitBytes = this.table.find(target) === NO_SLOT ? requestBytes : limitBytes;
    const expiresAtMs = nowMs + this.scaled(this.probeIntervalMs);
    this.relays.set(seq, { requester: from, requesterSeq, expiresAtMs, targetKey: target.key, target, pingLimitBytes, limitBytes });
    this.sendBody(rt, target, { type: MessageType.Ping, seq }, "probe", null, pingLimitBytes);
    const nackAfterMs = Math.floor(timeoutMs * 0.8);
    this.scheduleRepeats(nowMs, nackAfterMs, "relayRetry", seq, rt);
    if (this.config.lifeguard) rt.setTimer(nowMs + nackAfterMs, { kind: "relayTimeout", seq });
  }

  /** Pings a ping-req's target once more while it has not answered (see SwimConfig.directPings). */
  private onRelayRetry(seq: number, rt: Runtime): void {
    const relay = this.relays.get(seq);
    if (relay === undefined) return;
    this.stats.relayPingsRepeated++;
    this.sendBody(rt, relay.target, { type: MessageType.Ping, seq }, "probe", null, relay.pingLimitBytes, true);
  }

  private onRelayTimeout(seq: number, rt: Runtime): void {
    const relay = this.relays.get(seq);
    if (relay === undefined) return;
    // Lifeguard: tell the requester that we are alive but the target did not answer us.
    this.stats.nacksSent++;
    this.sendBody(rt, relay.requester, { type: MessageType.Nack, seq: relay.requesterSeq }, "probe", null, relay.limitBytes);
  }

  private purgeRelays(nowMs: number): void {
    for (const [seq, relay] of this.relays) if (relay.expiresAtMs <= nowMs) this.relays.delete(seq);
  }

  /** A broadcast from `from`; `repaired`: in a REPAIR datagram (delivered, not gossiped on). */
  private receiveBroadcast(nowMs: number, b: UserBroadcast, from: Address, repaired: boolean, rt: Runtime): void {
    const sighting = this.dedupe.sight(b.origin.key, b.epoch, b.seq);
    if (sighting === "duplicate") {
      this.stats.broadcastsDuplicate++;
      return;
    }
    if (sighting === "stale") {
      this.stats.broadcastsStale++;
      return;
    }
    this.stats.broadcastsDelivered++;
    if (repaired) this.stats.broadcastsRepaired++;
    rt.emit({ type: "broadcast", origin: b.origin, epoch: b.epoch, seq: b.seq, payload: b.payload });
    if (this.leaving) return;
    // Members that missed it are repaired one by one; the others have it already.
    const item = repaired ? encodeBroadcastItem(b) : this.queueBroadcast(b);
    this.repair.onDelivered(nowMs, b, item, from);
  }

  /**
   * A repair round (see repair.ts): asks members for the broadcasts still missing here; runs
   * while origin epochs are followed.
   */
  private onRepairTick(nowMs: number, rt: Runtime): void {
    this.repair.tickArmed = false;
    if (this.leaving) return;
    const t = this.table;
    const { asks, more } = this.repair.tick(nowMs, (a) => this.isLive(a));
    for (const ask of asks) {
      let to = ask.to;
      if (to === null) {
        const slot = this.probeable.pick(this.rng);
        if (slot === NO_SLOT) continue;
        to = t.address(slot);
      }
      // A request is a probe-sized datagram, with as many seqs as that holds (the thread
      // preset's frames are small).
      let body: RepairRequestBody = ask.body;
      const capacity = this.probeWriter.capacity;
      while (body.seqs.length > 1 && headerBytes(this.self, t.incarnation[SELF] as number, body) > capacity) {
        body = { ...body, seqs: body.seqs.slice(0, Math.max(1, body.seqs.length >> 1)) };
      }
      if (headerBytes(this.self, t.incarnation[SELF] as number, body) > capacity) continue;
      this.stats.repairRequestsSent++;
      this.sendBody(rt, to, body, "probe");
    }
    if (more) this.armRepair(nowMs, rt);
  }

  /**
   * Answers a member's REPAIR_REQUEST with the stored broadcasts it asks for, in at most
   * MAX_REPAIR_DATAGRAMS REPAIR datagrams, as far as the gossip budget allows now.
   */
  private onRepairRequest(nowMs: number, from: Address, body: RepairRequestBody, rt: Runtime): void {
    this.stats.repairRequestsReceived++;
    const items = this.leaving ? [] : this.repair.serve(nowMs, body);
    const w = this.fullWriter;
    const incarnation = this.table.incarnation[SELF] as number;
    let next = 0;
    let datagrams = 0;
    while (next < items.length && datagrams < MAX_REPAIR_DATAGRAMS && this.pacer.datagramsAllowed(nowMs, w.capacity) > 0) {
      w.begin(this.self, incarnation, { type: MessageType.Repair });
      const first = next;
      while (next < items.length && w.tryAppend(items[next] as Uint8Array)) next++;
      // An item larger than an empty datagram's room cannot occur (maxBroadcastBytes keeps to it).
      if (next === first) break;
      const datagram = w.finish();
      this.transmit(rt, from, datagram);
      this.pacer.spend(nowMs, datagram.length);
      this.stats.repairDatagramsSent++;
      datagrams++;
    }
    if (datagrams === 0) this.stats.repairRequestsUnanswered++;
  }

  private armRepair(nowMs: number, rt: Runtime): void {
    if (this.repair.tickArmed || !this.started || this.leaving || this.repair.trackedOrigins === 0) return;
    rt.setTimer(nowMs + this.repair.tickMs, { kind: "repair" });
    this.repair.tickArmed = true;
  }

  // ---------------------------------------------------------------------------------------
  // Membership merge rules.

  /**
   * Merges one statement about a member. Higher incarnation wins; at equal incarnation
   * alive < suspect < dead < left; stale statements change nothing. In a member-list sync from
   * `syncFrom` a *dead* statement only raises a suspicion, by that sender (who holds it dead),
   * so the owner gets the chance to refute. Returns the member's slot, if it has one afterwards
   * (NO_SLOT for self).
   */
  private mergeUpdate(nowMs: number, u: MemberUpdate, syncFrom: Address | null, rt: Runtime): number {
    const t = this.table;
    const slot = t.find(u.member);
    // An alive statement is one with its tags: tags this node will not hold (beyond its limit)
    // make the whole statement void, not just its tags (else a peer could move a member's
    // state and incarnation with tags no one can store).
    if (u.tags !== undefined && tagsProblem(this.config, u.tags) !== null) {
      this.refuseStatement("BAD_TAGS");
      return slot === SELF ? NO_SLOT : slot;
    }
    if (slot === SELF) {
      this.mergeAboutSelf(nowMs, u, rt);
      return NO_SLOT;
    }
    let state = u.state;
    let by = u.suspectedBy ?? null;
    if (syncFrom !== null && state === MemberState.Dead) {
      state = MemberState.Suspect;
      by = syncFrom;
    }
    if (slot === NO_SLOT) {
      // Only a live member is worth learning about; a death or departure of a stranger is not.
      if (state !== MemberState.Alive || this.leaving) return NO_SLOT;
      if (t.size >= this.config.maxMembers) {
        this.stats.membersRefused++;
        return NO_SLOT;
      }
      return this.addMember(nowMs, u.member, u.incarnation, rt, u.tags);
    }
    const incarnation = t.incarnation[slot] as number;
    if (u.incarnation < incarnation) return slot;
    // A member held damped (flapping) suspects whomever it cannot hear: not believed.
    if (state === MemberState.Suspect && by !== null && by.key !== this.self.key && this.damping.isDamped(by.key)) {
      this.stats.accusationsIgnored++;
      return slot;
    }
    const held = t.state[slot] as MemberState;
    if (u.incarnation === incarnation && state <= held) {
      if (state === MemberState.Suspect && held === MemberState.Suspect && by !== null) {
        this.confirmSuspicion(nowMs, slot, by, rt);
      }
      // Its tags may come after an alive statement without them at the same incarnation.
      if (state === MemberState.Alive && u.tags !== undefined && this.storeTags(slot, u.incarnation, u.tags)) {
        this.queueUpdate(slot);
        this.emitMember(rt, slot, held, incarnation);
      }
      return slot;
    }
    if (state === MemberState.Alive && u.tags !== undefined) this.storeTags(slot, u.incarnation, u.tags);
    this.transition(nowMs, slot, state, u.incarnation, by, rt);
    return slot;
  }

  /**
   * Takes the tags of an alive statement at `incarnation` about the member at `slot`, unless
   * they are older than those held (mergeUpdate has refused tags beyond this node's limit, with
   * their statement). True if they changed what is held.
   */
  private storeTags(slot: number, incarnation: number, tags: Uint8Array): boolean {
    const t = this.table;
    const held = t.tags.get(slot);
    if (held !== undefined && held.incarnation > incarnation) return false;
    if (held !== undefined && sameBytes(held.bytes, tags)) {
      if (held.incarnation !== incarnation) t.tags.set(slot, { incarnation, bytes: held.bytes });
      return false;
    }
    t.tags.set(slot, { incarnation, bytes: tags });
    this.stats.tagsUpdated++;
    return true;
  }

  /** Someone speaks of this node: refute a suspicion, death or departure that is not ours. */
  private mergeAboutSelf(nowMs: number, u: MemberUpdate, rt: Runtime): void {
    const t = this.table;
    if (this.leaving) return;
    const previousIncarnation = t.incarnation[SELF] as number;
    if (u.incarnation < previousIncarnation) return;
    if (u.state === MemberState.Alive && u.incarnation === previousIncarnation) {
      // Alive at our incarnation: true, unless it spreads other tags of ours (an earlier life's,
      // restarted within the same second): then we restate ours (none: empty) above it.
      const mine = this.selfTagsStated ? t.tags.get(SELF)?.bytes : undefined;
      if (u.tags === undefined || sameBytes(mine ?? EMPTY_TAGS, u.tags)) return;
      if (!this.selfTagsStated) {
        this.selfTagsStated = true;
        t.tags.set(SELF, { incarnation: previousIncarnation, bytes: EMPTY_TAGS });
      }
    }
    // Suspect/dead/left at our incarnation or above, or alive above it (an older life of this
    // address): take a higher incarnation and say alive.
    // Saturates at 2^32 - 1 rather than wrapping to 0, which would make every later statement
    // about this node outrank it. (With the sealed envelope no stranger can forge such claims.)
    t.incarnation[SELF] = Math.min(u.incarnation + 1, MAX_INCARNATION);
    t.stateChangedAtMs[SELF] = nowMs;
    this.stats.refutations++;
    if (u.state !== MemberState.Alive) this.adjustHealth(1);
    this.queueUpdate(SELF);
    this.emitMember(rt, SELF, MemberState.Alive, previousIncarnation);
  }

  private addMember(nowMs: number, address: Address, incarnation: number, rt: Runtime, tags?: Uint8Array): number {
    const slot = this.table.add(address, MemberState.Alive, incarnation, nowMs);
    if (tags !== undefined) this.storeTags(slot, incarnation, tags);
    this.makeProbeable(slot);
    this.queueUpdate(slot);
    // A reaped failed member that is back: a comeback, as from dead to alive.
    const flapped = this.reconnect.remove(address.key) === "failed" && this.recordFlap(nowMs, address.key, rt);
    this.emitMember(rt, slot, null, null, flapped);
    return slot;
  }

  /**
   * A member held failed came back: counts a flap; true when that starts its damping. A damped
   * member whose entry the full damping table dropped for it is released: its host hears so.
   */
  private recordFlap(nowMs: number, key: string, rt: Runtime): boolean {
    const { releaseAtMs, evictedDamped } = this.damping.recordFlap(key, nowMs);
    if (evictedDamped !== null) {
      const slot = this.table.findKey(evictedDamped);
      if (slot !== NO_SLOT) this.emitMember(rt, slot, this.table.state[slot] as MemberState, this.table.incarnation[slot] as number, true);
    }
    if (releaseAtMs < 0) return false;
    rt.setTimer(releaseAtMs, { kind: "flapRelease", key });
    return true;
  }

  /** A damped member's release check: tells the host when its damping ends, else checks again later. */
  private onFlapRelease(nowMs: number, key: string, rt: Runtime): void {
    const check = this.damping.checkRelease(key, nowMs);
    if (check.outcome === "later") {
      rt.setTimer(check.atMs, { kind: "flapRelease", key });
      return;
    }
    const slot = this.table.findKey(key);
    if (check.outcome === "released" && slot !== NO_SLOT) {
      this.emitMember(rt, slot, this.table.state[slot] as MemberState, this.table.incarnation[slot] as number, true);
    }
  }

  private transition(
    nowMs: number,
    slot: number,
    state: MemberState,
    incarnation: number,
    by: Address | null,
    rt: Runtime,
  ): void {
    const t = this.table;
    const previous = t.state[slot] as MemberState;
    const previousIncarnation = t.incarnation[slot] as number;
    this.suspects += (state === MemberState.Suspect ? 1 : 0) - (previous === MemberState.Suspect ? 1 : 0);
    t.state[slot] = state;
    t.incarnation[slot] = incarnation;
    t.stateChangedAtMs[slot] = nowMs;
    t.suspicion.delete(slot);
    t.suspectedBy.delete(slot);
    // A comeback: dead, then alive or suspect again (dead again at a higher incarnation, or left, is none).
    const back = state === MemberState.Alive || state === MemberState.Suspect;
    const flapped = previous === MemberState.Dead && back && this.recordFlap(nowMs, t.address(slot).key, rt);
    switch (state) {
      case MemberState.Alive:
        this.dead.delete(slot);
        this.makeProbeable(slot);
        break;
      case MemberState.Suspect: {
        this.dead.delete(slot);
        this.makeProbeable(slot);
        const suspectedBy = by ?? this.self;
        t.suspectedBy.set(slot, suspectedBy);
        this.startSuspicion(nowMs, slot, suspectedBy, rt);
        if (suspectedBy.key !== this.self.key) this.maybeExpediteSuspect(nowMs, slot, rt);
        break;
      }
      case MemberState.Dead:
      case MemberState.Left:
        // Its address must show again that it receives before it gets a member list.
        t.proven[slot] = 0;
        if (this.probeable.delete(slot)) this.forgetProbeable(slot);
        if (state === MemberState.Dead) this.dead.add(slot);
        else this.dead.delete(slot);
        // One reap timer per member at most; it re-arms itself if the state changed meanwhile.
        if (!t.reapToken.has(slot)) {
          const token = this.takeToken();
          t.reapToken.set(slot, token);
          rt.setTimer(nowMs + this.config.reapAfterMs, { kind: "reap", key: t.address(slot).key, token });
        }
        break;
    }
    this.queueUpdate(slot);
    this.emitMember(rt, slot, previous, previousIncarnation, flapped);
  }

  private makeProbeable(slot: number): void {
    if (!this.probeable.add(slot)) return;
    // Insert at a random place in the rest of this round, as memberlist does.
    this.probeOrder.insert(slot, this.rng);
    this.probeSchedule.add(slot);
    this.probeableCalmTicks = 0;
  }

  private removeMember(slot: number, rt: Runtime): void {
    const address = this.table.address(slot);
    if (this.table.state[slot] === MemberState.Suspect) this.suspects--;
    if (this.probeable.delete(slot)) this.forgetProbeable(slot);
    this.dead.delete(slot);
    this.updates.remove(address.key);
    for (const probe of this.probes.values()) if (probe.targetSlot === slot) probe.targetSlot = NO_SLOT;
    this.table.remove(slot);
    rt.emit({ type: "memberRemoved", address });
  }

  /** The table moved its members to new slots: so do the slots kept outside it. */
  private renumber(newSlots: Int32Array): void {
    this.probeable.renumber(newSlots);
    this.dead.renumber(newSlots);
    this.probeOrder.renumber(newSlots);
    this.probeSchedule.renumber(newSlots);
    for (const probe of this.probes.values()) if (probe.targetSlot !== NO_SLOT) probe.targetSlot = newSlots[probe.targetSlot] as number;
  }

  // ---------------------------------------------------------------------------------------
  // Suspicion (Lifeguard).

  private startSuspicion(nowMs: number, slot: number, by: Address, rt: Runtime): void {
    this.stats.suspicionsRaised++;
    const n = this.liveCount;
    const minMs = suspicionMinTimeoutMs(this.config.suspicionMult, n, this.scaled(this.probeIntervalMs));
    const lifeguard = this.config.lifeguard;
    const maxMs = lifeguard ? minMs * this.config.suspicionMaxTimeoutMult : minMs;
    const expected = lifeguard ? expectedConfirmations(this.config.suspicionConfirmations, n) : 0;
    const s: Suspicion = { token: this.takeToken(), startMs: nowMs, minMs, maxMs, expected, suspectors: new Set([by.key]) };
    this.table.suspicion.set(slot, s);
    const key = this.table.address(slot).key;
    rt.setTimer(nowMs + suspicionTimeoutMs(minMs, maxMs, expected, 0), { kind: "suspicion", key, token: s.token });
    // At the minimum, the suspicion looks again at who is left to confirm it (see onSuspicionTimer).
    if (expected > 0) rt.setTimer(nowMs + minMs, { kind: "suspicion", key, token: s.token });
  }

  /**
   * The confirmations a suspicion can still get: those it expected, but no more than the
   * members this node holds alive (other than itself), who alone may still suspect it too.
   * When most of the cluster fails at once, a survivor's suspicions can get none, and end at
   * their minimum instead of their maximum.
   */
  private confirmationsPossible(s: Suspicion): number {
    return Math.min(s.expected, Math.max(0, this.probeable.size - this.suspects));
  }

  private confirmSuspicion(nowMs: number, slot: number, by: Address, rt: Runtime): void {
    const s = this.table.suspicion.get(slot);
    if (s === undefined || s.suspectors.has(by.key)) return;
    if (s.suspectors.size - 1 >= s.expected) return;
    s.suspectors.add(by.key);
    this.table.suspectedBy.set(slot, by);
    // Pass the new confirmation on, so that others shorten their timers too.
    this.queueUpdate(slot);
    const timeoutMs = suspicionTimeoutMs(s.minMs, s.maxMs, s.expected, s.suspectors.size - 1);
    rt.setTimer(Math.max(nowMs, s.startMs + timeoutMs), { kind: "suspicion", key: this.table.address(slot).key, token: s.token });
  }

  private onSuspicionTimer(nowMs: number, key: string, token: number, rt: Runtime): void {
    const slot = this.table.findKey(key);
    const s = slot === NO_SLOT ? undefined : this.table.suspicion.get(slot);
    if (s === undefined || s.token !== token) return;
    const timeoutMs = suspicionTimeoutMs(s.minMs, s.maxMs, this.confirmationsPossible(s), s.suspectors.size - 1);
    if (nowMs < s.startMs + timeoutMs) {
      // Not due yet: look again within a period (fewer members may be left to confirm by then).
      rt.setTimer(Math.min(s.startMs + timeoutMs, nowMs + this.probeIntervalMs), { kind: "suspicion", key, token });
      return;
    }
    if (this.heardSince(slot, s.startMs)) {
      this.extendSuspicion(nowMs, slot, rt);
      return;
    }
    this.stats.deadDeclared++;
    this.transition(nowMs, slot, MemberState.Dead, this.table.incarnation[slot] as number, null, rt);
  }

  /** Whether a datagram from the member at `slot` arrived after `sinceMs` (under Lifeguard). */
  private heardSince(slot: number, sinceMs: number): boolean {
    return this.config.lifeguard && (this.table.lastHeardAtMs[slot] as number) > sinceMs;
  }

  /**
   * A suspicion ran out, but the suspect has sent this node a datagram since it began: it is
   * alive and has not refuted yet (its refutation may be lost on the way). Instead of declaring
   * it dead, this node starts the suspicion afresh (without the confirmations, which the
   * suspect's own datagram outweighs) and checks it at once, which also tells it of the
   * suspicion (buddy system), so that it refutes. A member that falls silent dies at the end
   * of the new suspicion.
   */
  private extendSuspicion(nowMs: number, slot: number, rt: Runtime): void {
    this.stats.suspicionsExtended++;
    this.table.suspicion.delete(slot);
    this.startSuspicion(nowMs, slot, this.table.suspectedBy.get(slot) ?? this.self, rt);
    this.queueUpdate(slot);
    this.expediteProbe(nowMs, slot, rt);
  }

  private onReapTimer(nowMs: number, key: string, token: number, rt: Runtime): void {
    const t = this.table;
    const slot = t.findKey(key);
    if (slot === NO_SLOT || token === 0 || t.reapToken.get(slot) !== token) return;
    const state = t.state[slot];
    if (state !== MemberState.Dead && state !== MemberState.Left) {
      t.reapToken.delete(slot); // alive again: nothing to reap
      return;
    }
    const dueMs = (t.stateChangedAtMs[slot] as number) + this.config.reapAfterMs;
    if (nowMs < dueMs) {
      rt.setTimer(dueMs, { kind: "reap", key, token });
      return;
    }
    // A failed member stays a reconnect target, out of the table (no probes, no gossip).
    if (state === MemberState.Dead) this.reconnect.add(t.address(slot), t.stateChangedAtMs[slot] as number, true);
    this.removeMember(slot, rt);
  }

  // ---------------------------------------------------------------------------------------
  // The probe cycle.

  private onProbeTick(nowMs: number, rt: Runtime): void {
    // The round robin's probe still open at the next tick is settled first (its deadline is due
    // now as well).
    for (const probe of [...this.probes.values()]) if (!probe.expedited) this.onProbeDeadline(nowMs, probe.seq, rt);
    if (!this.leaving) {
      const slot = this.nextProbeTarget(nowMs);
      if (slot !== NO_SLOT) this.startProbe(nowMs, slot, false, rt);
    }
    rt.setTimer(nowMs + this.scaled(this.probeIntervalMs), { kind: "probe", epoch: this.probeEpoch });
    if (this.relays.size > 0) this.purgeRelays(nowMs);
  }

  private forgetProbeable(slot: number): void {
    this.probeSchedule.remove(slot);
    this.probeableCalmTicks = 0;
  }

  /**
   * This period's round-robin target: from the shared schedule, or the node's own shuffled
   * round. The schedule works when members agree on who is in the cluster, so it waits until
   * the membership has been calm for SCHEDULE_CALM_TICKS probe ticks: while members join (a
   * cluster forming, say), views differ and the schedule's orders with them, and the shuffled
   * round spreads knowledge better (simulator: 200 members joining at 30 % loss agreed in 40
   * periods on 4 of 8 seeds with the schedule from the first tick, 6 of 8 with this wait, 7 of
   * 8 with shuffled rounds only). It also needs a probe every
   * period; a node whose health stretches its interval (Lifeguard) skips rounds, possibly
   * always the same ones modulo the cycle, and would probe one member again and again.
   */
  private nextProbeTarget(nowMs: number): number {
    const calm = this.probeableCalmTicks >= SCHEDULE_CALM_TICKS;
    this.probeableCalmTicks++;
    if (this.config.sharedProbeSchedule && calm && this.scaled(this.config.probeIntervalMs) === this.config.probeIntervalMs) {
      const round = Math.floor((nowMs + this.wallClockOffsetMs) / this.config.probeIntervalMs);
      const slot = this.probeSchedule.target(round, this.probeable.size, this.probeableSlots, this.isProbeable);
      if (slot !== NO_SLOT) return slot;
    }
    return this.probeOrder.next(this.probeable, this.rng);
  }

  private readonly probeableSlots = (): Int32Array => this.probeable.toArray();
  private readonly isProbeable = (slot: number): boolean => this.probeable.has(slot);

  private startProbe(nowMs: number, slot: number, expedited: boolean, rt: Runtime): void {
    const seq = this.takeSeq();
    const target = this.table.address(slot);
    this.probes.set(seq, { seq, target, targetSlot: slot, startMs: nowMs, lastPingMs: nowMs, acked: false, expectedNacks: 0, nacks: 0, helperKeys: [], nackedBy: new Set(), expedited });
    this.stats.pingsSent++;
    // Lifeguard's buddy system: a suspect hears of its suspicion in the probe itself.
    const buddy = this.config.lifeguard && this.table.state[slot] === MemberState.Suspect ? encodeUpdateItem(this.updateOf(slot)) : null;
    this.sendBody(rt, target, { type: MessageType.Ping, seq }, "probe", buddy);
    const timeoutMs = this.scaled(this.probeTimeoutMs);
    this.scheduleRepeats(nowMs, timeoutMs, "probeRetry", seq, rt);
    rt.setTimer(nowMs + timeoutMs, { kind: "probeTimeout", seq });
    rt.setTimer(nowMs + this.scaled(this.probeIntervalMs), { kind: "probeDeadline", seq });
  }

  /**
   * Timers for the further pings of one probe or relay `seq`: directPings - 1 of them, spread
   * over `windowMs` (pingOffsetMs). Each sends only while nothing has answered.
   */
  private scheduleRepeats(nowMs: number, windowMs: number, kind: "probeRetry" | "relayRetry", seq: number, rt: Runtime): void {
    const pings = this.config.directPings;
    for (let i = 1; i < pings; i++) {
      const offsetMs = pingOffsetMs(windowMs, pings, i);
      if (offsetMs > 0) rt.setTimer(nowMs + offsetMs, { kind, seq });
    }
  }

  /** Pings a probe's target once more while it has not answered. */
  private onProbeRetry(nowMs: number, seq: number, rt: Runtime): void {
    const probe = this.probes.get(seq);
    if (probe === undefined || probe.acked || probe.targetSlot === NO_SLOT) return;
    this.stats.pingsRepeated++;
    probe.lastPingMs = nowMs;
    const slot = probe.targetSlot;
    const buddy = this.config.lifeguard && this.table.state[slot] === MemberState.Suspect ? encodeUpdateItem(this.updateOf(slot)) : null;
    this.sendBody(rt, probe.target, { type: MessageType.Ping, seq }, "probe", buddy, Infinity, true);
  }

  /**
   * Another member suspects `slot` (or it stayed silent as a helper, see checkSilentHelpers):
   * check it at once with a probe of our own beside the round robin (one such check at a time;
   * others wait in a bounded queue, MAX_EXPEDITED_PROBES). A crashed member then gathers its
   * independent confirmations within about one period of the first suspicion (and dies at the
   * minimum timeout), while a live one hears of the suspicion from each of these probes (buddy
   * system) and refutes at once.
   */
  private expediteProbe(nowMs: number, slot: number, rt: Runtime): void {
    const key = this.table.address(slot).key;
    if (this.expedited.length >= MAX_EXPEDITED_PROBES || this.expedited.includes(key)) return;
    for (const probe of this.probes.values()) if (probe.targetSlot === slot) return;
    this.expedited.push(key);
    this.startExpeditedProbe(nowMs, rt);
  }

  /**
   * After a failed probe that some helpers nacked (so this node hears), the helpers that stayed
   * silent are likely down or cut off themselves: check them soon (expediteProbe). In a
   * partition this spreads the probes of each side over the members across the cut, so that
   * every one of them is suspected within about two periods instead of when the round robin
   * comes to it.
   */
  private checkSilentHelpers(nowMs: number, probe: Probe, rt: Runtime): void {
    if (probe.nacks === 0) return;
    for (const key of probe.helperKeys) {
      if (probe.nackedBy.has(key)) continue;
      const slot = this.table.findKey(key);
      if (slot !== NO_SLOT && this.probeable.has(slot)) this.expediteProbe(nowMs, slot, rt);
    }
  }

  /**
   * Another member reports a suspicion of `slot`: with Lifeguard, check it at once, with the
   * chance expediteChance gives (drawn from the PRNG), so that a bounded number of members
   * checks each suspicion whatever the cluster's size.
   */
  private maybeExpediteSuspect(nowMs: number, slot: number, rt: Runtime): void {
    if (!this.config.lifeguard) return;
    const chance = expediteChance(expectedConfirmations(this.config.suspicionConfirmations, this.liveCount), this.liveCount);
    if (chance < 1 && this.rng.nextInt(1_000_000) >= chance * 1_000_000) return;
    this.expediteProbe(nowMs, slot, rt);
  }

  /** Starts the next waiting expedited check, unless one is in flight or the node is leaving. */
  private startExpeditedProbe(nowMs: number, rt: Runtime): void {
    if (this.leaving) return;
    for (const probe of this.probes.values()) if (probe.expedited) return;
    const t = this.table;
    while (this.expedited.length > 0) {
      const slot = t.findKey(this.expedited.shift() as string);
      if (slot !== NO_SLOT && this.probeable.has(slot)) {
        this.stats.probesExpedited++;
        this.startProbe(nowMs, slot, true, rt);
        return;
      }
    }
  }

  private onProbeTimeout(nowMs: number, seq: number, rt: Runtime): void {
    void nowMs;
    const probe = this.probes.get(seq);
    if (probe === undefined || probe.acked) return;
    const t = this.table;
    const targetSlot = probe.targetSlot;
    // Only alive helpers (as memberlist): a suspect one would likely not nack, and Lifeguard would
    // count its silence against this node's health.
    const k = this.config.lifeguard ? indirectChecksFor(this.config.indirectChecks, this.health) : this.config.indirectChecks;
    const helpers = this.probeable.sample(this.rng, k, (h) => h === targetSlot || t.state[h] !== MemberState.Alive);
    probe.helperKeys = helpers.map((h) => t.address(h).key);
    for (const helper of helpers) {
      this.stats.pingReqsSent++;
      this.sendBody(rt, t.address(helper), { type: MessageType.PingReq, seq, target: probe.target }, "pingReq");
    }
    probe.expectedNacks = this.config.lifeguard ? helpers.length : 0;
  }

  private onProbeDeadline(nowMs: number, seq: number, rt: Runtime): void {
    const probe = this.probes.get(seq);
    if (probe === undefined) return;
    this.probes.delete(seq);
    if (probe.expedited) this.startExpeditedProbe(nowMs, rt);
    if (probe.acked) return;
    this.stats.probesFailed++;
    // Whether the helpers' silence points away from this node (see probeHealthPenalty): it heard
    // other members meanwhile, and its direct pings were repeated, so that the probe failing at
    // all says the target is down or cut off rather than that a datagram was lost. With a single
    // ping, probes fail often under plain loss, and the full penalty is what slows this node's
    // probing then (without it, twice the false suspicions at 30 % loss, bench/detection.bench.ts).
    const heardOthers = this.config.directPings > 1 && this.lastHeardFromMemberAtMs > probe.startMs;
    this.adjustHealth(probeHealthPenalty(probe.expectedNacks, probe.nacks, heardOthers));
    this.checkSilentHelpers(nowMs, probe, rt);
    const slot = probe.targetSlot;
    if (slot === NO_SLOT) return;
    const t = this.table;
    t.lastRttMs[slot] = -2;
    if (t.state[slot] === MemberState.Alive) {
      this.transition(nowMs, slot, MemberState.Suspect, t.incarnation[slot] as number, this.self, rt);
    } else if (t.state[slot] === MemberState.Suspect) {
      this.confirmSuspicion(nowMs, slot, this.self, rt);
    }
  }

  private adjustHealth(delta: number): void {
    if (!this.config.lifeguard) return;
    this.health = Math.min(this.config.awarenessMaxMultiplier - 1, Math.max(0, this.health + delta));
  }

  private scaled(baseMs: number): number {
    return this.config.lifeguard ? scaleByHealth(baseMs, this.health) : baseMs;
  }

  // ---------------------------------------------------------------------------------------
  // Gossip, reconnect, push-pull and requests.

  /**
   * Gossip ticks run only while something is queued: an idle node does not wake up five times
   * a second for nothing (the original's idle ticks sent nothing either). The first update
   * queued re-arms them, within one interval at a random phase, as a running ticker would.
   */
  private armGossip(nowMs: number, rt: Runtime): void {
    this.armGossipBurst(nowMs, rt);
    this.armRepair(nowMs, rt);
    if (this.gossipTickArmed || !this.started || this.config.gossipIntervalMs <= 0) return;
    if (this.updates.size === 0 && this.broadcasts.size === 0) return;
    rt.setTimer(nowMs + this.rng.nextInt(this.config.gossipIntervalMs) + 1, { kind: "gossip" });
    this.gossipTickArmed = true;
  }

  private onGossipTick(nowMs: number, rt: Runtime): void {
    // Own broadcasts are pushed to every member only by burst rounds (dissemination.ts).
    if (!this.pacer.burstArmed) this.pacer.regularRound();
    if (this.updates.size === 0 && this.broadcasts.size === 0) {
      this.gossipTickArmed = false;
      return;
    }
    rt.setTimer(nowMs + this.config.gossipIntervalMs, { kind: "gossip" });
    const fanout = this.config.gossipFanout;
    const peers = this.probeable.sample(this.rng, fanout, () => false);
    // Recently dead members are among the candidates too (in proportion to their number), so
    // that a false positive hears of it and refutes; most transmissions still reach live nodes.
    const candidates = this.probeable.size + this.dead.size;
    if (this.dead.size > 0 && !this.leaving && this.rng.nextInt(candidates) < this.dead.size * Math.min(fanout, candidates)) {
      const slot = this.dead.pick(this.rng);
      if (slot !== NO_SLOT && nowMs - (this.table.stateChangedAtMs[slot] as number) <= this.config.gossipToTheDeadMs) {
        if (peers.length >= fanout) peers[peers.length - 1] = slot;
        else peers.push(slot);
      }
    }
    for (const peer of peers) {
      if (this.updates.size === 0 && this.broadcasts.size === 0) break;
      this.sendGossip(nowMs, rt, peer);
    }
  }

  /** One gossip-round datagram to `peer`; its bytes count against the gossip budget. */
  private sendGossip(nowMs: number, rt: Runtime, peer: number): void {
    const before = this.stats.bytesSent;
    this.sendBody(rt, this.table.address(peer), { type: MessageType.Gossip }, "full");
    this.pacer.spend(nowMs, this.stats.bytesSent - before);
  }

  /**
   * Starts burst rounds when the broadcast queue holds more than one regular round carries, or
   * soon after the last burst (see dissemination.ts); otherwise gossip is exactly the regular rounds.
   */
  private armGossipBurst(nowMs: number, rt: Runtime): void {
    if (!this.started || this.leaving || this.probeable.size === 0) return;
    if (!this.pacer.shouldBurst(nowMs, this.broadcasts.queuedBytes)) return;
    rt.setTimer(nowMs + this.pacer.burstIntervalMs, { kind: "gossipBurst" });
    this.pacer.burstArmed = true;
  }

  /**
   * A burst round: enough full gossip datagrams to send every queued broadcast about
   * gossipFanout times (as the regular round does), as far as the budget allows now, to the
   * next members of the pacer's cycle; then the next round, while anything is left.
   */
  private onGossipBurst(nowMs: number, rt: Runtime): void {
    this.pacer.burstArmed = false;
    if (this.broadcasts.size === 0 || this.leaving || this.probeable.size === 0) {
      this.pacer.clearFresh();
      return;
    }
    this.pushFresh(nowMs, rt);
    const capacity = this.fullWriter.capacity;
    const wanted = this.config.gossipFanout * Math.ceil(this.broadcasts.queuedBytes / capacity);
    const count = Math.min(wanted, this.pacer.datagramsAllowed(nowMs, capacity));
    if (count > 0) {
      this.stats.gossipBursts++;
      this.pacer.burstWorked(nowMs);
      for (let i = 0; i < count && this.broadcasts.size > 0; i++) {
        this.sendGossip(nowMs, rt, this.pacer.nextPeer(this.probeable, this.rng));
        this.stats.gossipBurstDatagrams++;
      }
    }
    if (this.broadcasts.size > 0) {
      rt.setTimer(nowMs + this.pacer.burstIntervalMs, { kind: "gossipBurst" });
      this.pacer.burstArmed = true;
    }
  }

  /**
   * The fresh push: this node's own new broadcasts, packed, each datagram sent as is to every
   * live member (up to FRESH_PUSH_MAX_PEERS), as far as the budget allows now.
   */
  private pushFresh(nowMs: number, rt: Runtime): void {
    const w = this.fullWriter;
    while (this.pacer.freshCount > 0) {
      const fanout = Math.min(this.probeable.size, FRESH_PUSH_MAX_PEERS);
      if (this.pacer.datagramsAllowed(nowMs, w.capacity) < fanout) return;
      w.begin(this.self, this.table.incarnation[SELF] as number, { type: MessageType.Gossip });
      if (this.pacer.fillFresh(w) === 0) continue;
      const datagram = w.finish();
      for (const peer of this.probeable.sample(this.rng, fanout, () => false)) {
        this.transmit(rt, this.table.address(peer), datagram);
        this.pacer.spend(nowMs, datagram.length);
        this.stats.freshPushDatagrams++;
      }
    }
  }

  /**
   * One reconnect round (see reconnect.ts): one contact, chosen uniformly among the dead members
   * still in the table (a ping: its answer carries its incarnation and proves its address, and
   * handleDatagram then syncs with it), the reaped failed members (a JOIN), and, while the
   * cluster has lost members, the configured seeds that are not live members (a JOIN).
   */
  private onReconnectTick(nowMs: number, rt: Runtime): void {
    rt.setTimer(nowMs + this.config.reconnectIntervalMs, { kind: "reconnect" });
    if (this.leaving) return;
    this.reconnect.expire(nowMs);
    const lostMembers = this.dead.size > 0 || this.reconnect.size > 0 || this.probeable.size === 0;
    const seeds = lostMembers ? this.seeds.filter((a) => !this.isLive(a)) : [];
    const choice = this.reconnect.choose(this.rng, this.dead.size, seeds);
    switch (choice.kind) {
      case "none":
        return;
      case "dead":
        this.sendProofPing(nowMs, this.dead.at(choice.index), false, rt);
        return;
      case "target":
      case "seed": {
        if (this.requests.size >= MAX_REQUESTS) return;
        if (choice.kind === "target") this.stats.reconnectJoinsSent++;
        else this.stats.seedJoinsSent++;
        const seq = this.takeSeq();
        const req: Request = { kind: "join", seed: choice.address, token: 0, attemptsLeft: 0, cookie: null, cookieRounds: 0, reconnect: true };
        this.requests.set(seq, req);
        this.sendJoin(rt, choice.address, seq, null);
        rt.setTimer(nowMs + this.requestTimeoutOf(req), { kind: "request", seq });
        return;
      }
    }
  }

  /** Whether `a` is an alive or suspect member (not absent, dead or left). */
  private isLive(a: Address): boolean {
    const slot = this.table.find(a);
    const state = slot === NO_SLOT ? undefined : this.table.state[slot];
    return state === MemberState.Alive || state === MemberState.Suspect;
  }

  /** Reaped failed members still kept as reconnect targets (for hosts that keep a snapshot). */
  reconnectTargets(): Address[] {
    return this.reconnect.addresses();
  }

  private onPushPullTick(nowMs: number, once: boolean, rt: Runtime): void {
    if (!once) {
      rt.setTimer(nowMs + pushPullIntervalMs(this.config.pushPullIntervalMs, this.liveCount), { kind: "pushPull", once: false });
    }
    if (this.leaving) return;
    const slot = this.probeable.pick(this.rng);
    if (slot !== NO_SLOT) this.startPushPull(rt, this.table.address(slot));
  }

  /**
   * A seed's member list may arrive with datagrams missing, and a cluster that is still forming
   * has more members than any one list; periodic push-pull is slow in large clusters. So a join
   * is followed by two member-list exchanges with random members, 2 and 6 periods later.
   */
  private scheduleJoinSyncs(nowMs: number, rt: Runtime): void {
    if (this.config.pushPullIntervalMs === 0 || nowMs - this.lastJoinSyncsAtMs < JOIN_SYNC_SPACING_PERIODS * this.probeIntervalMs) return;
    this.lastJoinSyncsAtMs = nowMs;
    for (const periods of JOIN_SYNC_AFTER_PERIODS) {
      rt.setTimer(nowMs + periods * this.probeIntervalMs, { kind: "pushPull", once: true });
    }
  }

  private onRequestTimeout(nowMs: number, seq: number, rt: Runtime): void {
    const req = this.requests.get(seq);
    if (req === undefined) return;
    this.requests.delete(seq);
    if (req.kind === "ping") {
      rt.emit({ type: "pingResult", target: req.target, rttMs: null, token: req.token });
      return;
    }
    if (req.attemptsLeft > 0) {
      const next = this.takeSeq();
      this.requests.set(next, { ...req, attemptsLeft: req.attemptsLeft - 1 });
      this.sendJoin(rt, req.seed, next, req.cookie);
      rt.setTimer(nowMs + this.requestTimeoutOf(req), { kind: "request", seq: next });
      return;
    }
    if (!req.reconnect) rt.emit({ type: "joinResult", seed: req.seed, ok: false, token: req.token });
  }

  // ---------------------------------------------------------------------------------------
  // Cookies: proof that a requester receives at its address before it gets a member list.

  /**
   * Whether a member-list request (JOIN, push-pull) from `d.from` gets the list. A proven
   * member's does, and so does one that echoes a valid cookie (which proves the address);
   * any other gets a cookie instead. Either reply takes a token of the source's bucket; with
   * none left, the request gets nothing.
   */
  private admitRequest(nowMs: number, d: Datagram, sender: number, seq: number, rt: Runtime): boolean {
    const t = this.table;
    if (sender === NO_SLOT || t.proven[sender] !== 1) {
      if (d.cookie === undefined || !this.cookies.check(d.from, d.cookie, nowMs)) {
        this.challenge(nowMs, d.from, seq, d.cookie === undefined ? "NO_COOKIE" : "BAD_COOKIE", rt);
        return false;
      }
      if (!this.replyLimiter.take(d.from.key, nowMs)) {
        this.refused("RATE_LIMITED");
        return false;
      }
      this.stats.cookiesAccepted++;
      this.prove(sender);
      return true;
    }
    if (!this.replyLimiter.take(d.from.key, nowMs)) {
      this.refused("RATE_LIMITED");
      return false;
    }
    return true;
  }

  /** Refuses a request from `to` for `reason` and answers with one COOKIE datagram, if its bucket allows. */
  private challenge(nowMs: number, to: Address, seq: number, reason: "NO_COOKIE" | "BAD_COOKIE", rt: Runtime): void {
    if (!this.replyLimiter.take(to.key, nowMs)) {
      this.refused("RATE_LIMITED");
      return;
    }
    this.refused(reason);
    this.stats.cookiesSent++;
    const w = this.probeWriter;
    w.begin(this.self, this.table.incarnation[SELF] as number, { type: MessageType.Cookie, seq, cookie: this.cookies.make(to, nowMs) });
    this.transmit(rt, to, w.finish());
  }

  /** A statement received that is refused whole: a typed, counted protocol error; nothing changes. */
  private refuseStatement(code: ProtocolErrorCode): void {
    this.stats.protocolErrors++;
    const byCode = this.stats.protocolErrorsByCode;
    byCode[code] = (byCode[code] ?? 0) + 1;
    if (code === "BAD_TAGS") this.stats.tagsRefused++;
  }

  private refused(reason: RequestRefusal): void {
    this.stats.requestsRefused++;
    const byReason = this.stats.requestsRefusedByReason;
    byReason[reason] = (byReason[reason] ?? 0) + 1;
  }

  /** A member's address showed that it receives. */
  private prove(slot: number): void {
    if (slot !== NO_SLOT && slot !== SELF) this.table.proven[slot] = 1;
  }

  /**
   * How large the answers to a PING or PING_REQ of `requestBytes` from `from` (member slot
   * `sender`, or NO_SLOT) may be: Infinity for a proven member (full piggyback, no token taken);
   * otherwise the request's own size (the bare answer always goes, piggyback only fills what
   * that size leaves), at the cost of a token of the source's bucket; 0 (no answer at all,
   * counted RATE_LIMITED) when the bucket is empty. So no forged sender address earns a reply
   * larger than the forged datagram, nor more than a trickle of them.
   */
  private answerLimit(nowMs: number, from: Address, sender: number, requestBytes: number): number {
    if (sender !== NO_SLOT && this.table.proven[sender] === 1) return Infinity;
    if (!this.replyLimiter.take(from.key, nowMs)) {
      this.refused("RATE_LIMITED");
      return 0;
    }
    this.stats.probesAnsweredLimited++;
    return Math.max(1, requestBytes);
  }

  /**
   * A COOKIE: repeat the join or push-pull request it answers, with the cookie. One that
   * answers no request of ours is ignored (else a forged one would make us send a member
   * list to whatever address it names), and so is a second one for the same push-pull.
   */
  private onCookie(nowMs: number, from: Address, cookieSeq: number, cookie: Uint8Array, rt: Runtime): void {
    let seq = cookieSeq;
    let req = this.requests.get(seq);
    if (req === undefined) {
      // The answer to an earlier JOIN of a request that has been sent again since (a round
      // trip longer than the short first timeout): still the seed's answer.
      for (const [s, r] of this.requests) {
        if (r.kind === "join" && r.cookieRounds === 0 && r.seed.key === from.key) {
          seq = s;
          req = r;
          break;
        }
      }
    }
    if (req !== undefined && req.kind === "join") {
      if (req.cookieRounds >= MAX_COOKIE_ROUNDS) {
        this.stats.cookiesIgnored++;
        return;
      }
      // The seed answered: the request starts afresh with the cookie, with all its attempts
      // (the first cookie only; a seed that keeps sending new ones gets no more).
      this.requests.delete(seq);
      const next = this.takeSeq();
      const attemptsLeft = req.cookieRounds === 0 ? this.config.joinAttempts - 1 : req.attemptsLeft;
      const echo: Request = { ...req, attemptsLeft, cookie, cookieRounds: req.cookieRounds + 1 };
      this.requests.set(next, echo);
      this.sendJoin(rt, req.seed, next, cookie);
      rt.setTimer(nowMs + this.requestTimeoutOf(echo), { kind: "request", seq: next });
      return;
    }
    const pending = this.pushPullsPending.get(cookieSeq);
    if (pending !== undefined && pending.to.key === from.key && !pending.echoed && !this.leaving) {
      this.pushPullsPending.delete(cookieSeq);
      this.startPushPull(rt, pending.to, cookie);
      return;
    }
    this.stats.cookiesIgnored++;
  }

  /** How long a request waits for its answer: a quarter of it for a JOIN that has no cookie yet. */
  private requestTimeoutOf(req: Request): number {
    const ms = this.config.requestTimeoutMs;
    return req.kind === "join" && req.cookieRounds === 0 ? Math.max(1, Math.ceil(ms / 4)) : ms;
  }

  private sendJoin(rt: Runtime, seed: Address, seq: number, cookie: Uint8Array | null): void {
    this.sendBody(rt, seed, { type: MessageType.Join, seq }, "probe", cookie === null ? null : encodeCookieItem(cookie));
  }

  /** Sends our member list to `to` as a push-pull request (remembered, to follow a cookie answer). */
  private startPushPull(rt: Runtime, to: Address, cookie: Uint8Array | null = null): void {
    const seq = this.takeSeq();
    if (this.pushPullsPending.size >= MAX_PUSH_PULLS_PENDING) {
      this.pushPullsPending.delete(this.pushPullsPending.keys().next().value as number);
    }
    this.pushPullsPending.set(seq, { to, echoed: cookie !== null });
    this.sendSync(rt, to, true, seq, cookie === null ? null : encodeCookieItem(cookie));
  }

  /**
   * Pings the member at `slot` so that its answer proves its address (at most once a period
   * per member). `announce`: the ping also carries what we hold about it (its death), so that
   * it refutes at once.
   */
  private sendProofPing(nowMs: number, slot: number, announce: boolean, rt: Runtime): void {
    const address = this.table.address(slot);
    const previous = this.proofPings.get(address.key);
    if (previous !== undefined) {
      if (nowMs - previous.atMs < this.probeIntervalMs) return;
      this.proofPings.delete(address.key);
    } else if (this.proofPings.size >= MAX_PROOF_PINGS) {
      this.proofPings.delete(this.proofPings.keys().next().value as string);
    }
    const seq = this.takeSeq();
    this.proofPings.set(address.key, { seq, atMs: nowMs });
    this.sendBody(rt, address, { type: MessageType.Ping, seq }, "probe", announce ? encodeUpdateItem(this.updateOf(slot)) : null);
  }

  // ---------------------------------------------------------------------------------------
  // Sending.

  /**
   * Encodes and sends one datagram: header and body, then (optionally) one priority item, then
   * membership updates and user broadcasts from the queues until the datagram is full
   * (probePacketBytes or maxPacketBytes, less the envelope; a PING_REQ the larger of the probe
   * budget and its largest header), or no larger than `limitBytes`
   * (header, body and our LEFT while leaving always go).
   *
   * The items ride along without spending their retransmit limit when the datagram is unlikely
   * to arrive (`repeat`: a further ping of a probe not answered yet; or a recipient held suspect,
   * dead or left). Otherwise, in a partition, the pings that each side sends across the cut
   * (up to directPings per probe, plus the checks of suspects) use up the transmissions of
   * the suspicions that the own side needs to hear, and members missed them for seconds.
   */
  private sendBody(rt: Runtime, to: Address, body: Body, size: "probe" | "pingReq" | "full", priority: Uint8Array | null = null, limitBytes = Infinity, repeat = false): void {
    let w = size === "probe" ? this.probeWriter : size === "pingReq" ? this.pingReqWriter : this.fullWriter;
    w.begin(this.self, this.table.incarnation[SELF] as number, body);
    if (limitBytes < w.capacity) {
      // An answer to an address not proven yet (rate-limited per source): a writer of its size,
      // plus room for our LEFT while leaving (one item: a small constant over the request).
      const leaveBytes = this.leaveItem === null ? 0 : this.leaveItem.length;
      w = new DatagramWriter(Math.min(w.capacity, Math.max(w.length, limitBytes) + leaveBytes));
      w.begin(this.self, this.table.incarnation[SELF] as number, body);
    }
    if (this.leaveItem !== null) w.tryAppend(this.leaveItem);
    if (priority !== null) w.tryAppend(priority);
    const n = this.liveCount;
    const counted = !repeat && this.expectedToAnswer(to);
    this.updates.fill(w, retransmitLimit(this.config.retransmitMult, n), counted);
    this.broadcasts.fill(w, retransmitLimit(this.config.broadcastRetransmitMult, n), counted);
    this.stats.updatesDropped = this.updates.dropped;
    this.stats.broadcastsDropped = this.broadcasts.dropped;
    // A digest takes only the room the queues left (see repair.ts).
    if (limitBytes === Infinity) this.appendDigest(w);
    this.transmit(rt, to, w.finish());
  }

  /** Whether `to` is held alive (or is not a member: a seed, a newcomer), see sendBody. */
  private expectedToAnswer(to: Address): boolean {
    const slot = this.table.find(to);
    return slot === NO_SLOT || this.table.state[slot] === MemberState.Alive;
  }

  /** Appends a DIGEST item of recently active origin epochs to `w` when one is due and fits. */
  private appendDigest(w: DatagramWriter): void {
    const entries = this.repair.digestDue(this.lastNowMs);
    if (entries === null) return;
    const digest = encodeDigestItem(entries, w.remaining);
    if (digest !== null && w.tryAppend(digest.item)) this.repair.digestSent(this.lastNowMs, digest.count);
  }

  private transmit(rt: Runtime, to: Address, datagram: Uint8Array): void {
    this.stats.datagramsSent++;
    this.stats.bytesSent += datagram.length;
    rt.send(to, datagram);
  }

  /**
   * Sends this node's member list to `to` in as many SYNC datagrams as it needs (bounded), in
   * table order from where the last one stopped. `seq` is the request answered, or a fresh one
   * when a reply is wanted.
   */
  /**
   * Whether this datagram is the first one heard of push-pull request (from, seq). A member
   * list spans several datagrams, each asking for a reply; the requester gets one reply, not
   * one per datagram (which would multiply every push-pull by the list's datagram count).
   */
  private firstOfPushPull(from: Address, seq: number): boolean {
    const key = `${from.key}/${seq}`;
    if (this.pushPullsAnswered.has(key)) return false;
    if (this.pushPullsAnswered.size >= MAX_PUSH_PULLS_REMEMBERED) {
      const oldest = this.pushPullsAnswered.values().next().value as string;
      this.pushPullsAnswered.delete(oldest);
    }
    this.pushPullsAnswered.add(key);
    return true;
  }

  private sendSync(rt: Runtime, to: Address, replyWanted: boolean, seq: number, cookieItem: Uint8Array | null = null): void {
    this.stats.syncsSent++;
    const w = this.fullWriter;
    const body: Body = { type: MessageType.Sync, replyWanted, seq };
    const t = this.table;
    const incarnation = t.incarnation[SELF] as number;
    // Walks the slots (free ones hold no member and are passed over).
    const n = t.slotLimit;
    const start = n === 0 ? 0 : this.syncOffset % n;
    let datagrams = 0;
    let itemsInDatagram = 0;
    let i = 0;
    w.begin(this.self, incarnation, body);
    // A cookie leads every datagram of the request: any of them may be the first to arrive.
    if (cookieItem !== null) w.tryAppend(cookieItem);
    for (; i < n; i++) {
      const slot = (start + i) % n;
      if (!t.isMember(slot)) continue;
      const item = encodeUpdateItem(this.updateOf(slot));
      if (w.tryAppend(item)) {
        itemsInDatagram++;
        continue;
      }
      this.transmit(rt, to, w.finish());
      itemsInDatagram = 0;
      if (++datagrams >= this.config.syncMaxDatagrams) break;
      w.begin(this.self, incarnation, body);
      // The smallest datagrams the config allows hold one item, but not always the cookie too.
      if (cookieItem !== null && w.tryAppend(cookieItem) && w.remaining < item.length) w.begin(this.self, incarnation, body);
      if (!w.tryAppend(item)) break; // cannot happen: one item always fits an empty datagram
      itemsInDatagram++;
    }
    if (itemsInDatagram > 0) this.transmit(rt, to, w.finish());
    // The next partial snapshot continues where this one stopped.
    this.syncOffset = (start + i) % Math.max(1, n);
  }

  private updateOf(slot: number): MemberUpdate {
    const t = this.table;
    const state = t.state[slot] as MemberState;
    const incarnation = t.incarnation[slot] as number;
    const member = t.address(slot);
    if (state === MemberState.Suspect) return { state, incarnation, member, suspectedBy: t.suspectedBy.get(slot) ?? this.self };
    // An alive statement carries the tags that came with the member's own statement at this
    // incarnation (ours: whenever we have tags to state); else it says nothing of tags.
    const tags = state === MemberState.Alive ? t.tags.get(slot) : undefined;
    if (tags !== undefined && (slot === SELF ? this.selfTagsStated : tags.incarnation === incarnation)) return { state, incarnation, member, tags: tags.bytes };
    return { state, incarnation, member };
  }

  /**
   * Queues the member's current statement and returns it, encoded. A death or a leave goes out
   * twice as often as other updates (DEPARTURE_RETRANSMIT_FACTOR): every member has to hear it,
   * and a member that misses it keeps the departed one suspect (or alive) until its own
   * suspicion runs out, up to suspicionMaxTimeoutMult times the minimum.
   */
  private queueUpdate(slot: number): Uint8Array {
    const state = this.table.state[slot];
    const factor = state === MemberState.Dead || state === MemberState.Left ? DEPARTURE_RETRANSMIT_FACTOR : 1;
    const item = encodeUpdateItem(this.updateOf(slot));
    this.updates.enqueue(this.table.address(slot).key, item, factor);
    return item;
  }

  private queueBroadcast(b: UserBroadcast): Uint8Array {
    const item = encodeBroadcastItem(b);
    this.broadcasts.enqueue(`${b.origin.key}/${b.epoch}/${b.seq}`, item);
    return item;
  }

  // ---------------------------------------------------------------------------------------
  // Small helpers.

  private takeSeq(): number {
    const seq = this.nextSeq;
    // 0 means "no request" on the wire: skip it when wrapping.
    this.nextSeq = ((this.nextSeq + 1) >>> 0) || 1;
    return seq;
  }

  private takeToken(): number {
    return this.nextToken++;
  }

  private info(slot: number): MemberInfo {
    const t = this.table;
    const address = t.address(slot);
    const limit = retransmitLimit(this.config.retransmitMult, this.liveCount);
    return {
      address,
      state: t.state[slot] as MemberState,
      incarnation: t.incarnation[slot] as number,
      stateChangedAtMs: t.stateChangedAtMs[slot] as number,
      lastHeardAtMs: t.lastHeardAtMs[slot] as number,
      lastRttMs: t.lastRttMs[slot] as number,
      pendingTransmits: this.updates.remaining(address.key, limit),
      isSelf: slot === SELF,
      ...this.damping.view(address.key, this.lastNowMs),
      tags: t.tags.get(slot)?.bytes ?? null,
    };
  }

  private emitMember(rt: Runtime, slot: number, previous: MemberState | null, previousIncarnation: number | null, dampingChanged = false): void {
    const event: CoreEvent = { type: "member", member: this.info(slot), previous, previousIncarnation, dampingChanged };
    rt.emit(event);
  }
}

/** The cookie secret of a node without one from its host: a stream of its seed's PRNG. */
function defaultCookieSecret(seed: number): Uint8Array {
  const rng = new Prng(seed, COOKIE_SECRET_STREAM);
  const secret = new Uint8Array(COOKIE_SECRET_BYTES);
  for (let i = 0; i < secret.length; i += 4) {
    const v = rng.nextU32();
    secret[i] = v >>> 24;
    secret[i + 1] = (v >>> 16) & 0xff;
    secret[i + 2] = (v >>> 8) & 0xff;
    secret[i + 3] = v & 0xff;
  }
  return secret;
}
