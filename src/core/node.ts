/**
 * SwimNode: the sans-IO SWIM + Lifeguard state machine of one TamTam member. It owns the member
 * table, the probe cycle (ping, ping-req through k members, nack), suspicion with Lifeguard's
 * shrinking timeouts and local health multiplier, refutation, dissemination through transmit-
 * limited piggyback queues, user broadcasts with exactly-once delivery, join by member-list
 * sync, push-pull anti-entropy, graceful leave and reaping. Time and bytes come in as
 * arguments; datagrams, timers and events leave through the host's Runtime.
 */

import type { Address } from "./address.js";
import type { SwimConfig } from "./config.js";
import { DedupeWindows } from "./dedupe.js";
import { ProtocolError, type ProtocolErrorCode } from "./errors.js";
import {
  expectedConfirmations,
  retransmitLimit,
  scaleByHealth,
  suspicionMinTimeoutMs,
  suspicionTimeoutMs,
} from "./formulas.js";
import { Prng } from "./prng.js";
import { RandomSet } from "./random-set.js";
import type { CoreEvent, MemberInfo, Runtime, Timer } from "./runtime.js";
import { TransmitQueue } from "./transmit-queue.js";
import { DatagramWriter, decodeDatagram, encodeBroadcastItem, encodeUpdateItem } from "./wire/codec.js";
import {
  type Body,
  type Datagram,
  MemberState,
  MessageType,
  SEALED_OVERHEAD_BYTES,
  type MemberUpdate,
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
}

export type BroadcastOutcome =
  | { readonly ok: true; readonly epoch: number; readonly seq: number }
  | { readonly ok: false; readonly code: "EMPTY" | "TOO_LARGE" | "LEFT"; readonly message: string };

/** Counters of one node; all monotonic. */
export interface CoreStats {
  datagramsSent: number;
  bytesSent: number;
  datagramsReceived: number;
  bytesReceived: number;
  protocolErrors: number;
  protocolErrorsByCode: Partial<Record<ProtocolErrorCode, number>>;
  datagramsFromSelf: number;
  pingsSent: number;
  pingReqsSent: number;
  acksReceived: number;
  nacksReceived: number;
  nacksSent: number;
  probesFailed: number;
  suspicionsRaised: number;
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

interface Member {
  readonly address: Address;
  readonly key: string;
  state: MemberState;
  incarnation: number;
  stateChangedAtMs: number;
  lastHeardAtMs: number;
  lastRttMs: number;
  suspicion: Suspicion | null;
  /** Who suspected it last (for the suspect item's suspectedBy). */
  suspectedBy: Address | null;
  reapToken: number;
  lastSyncToMs: number;
}

interface Probe {
  readonly seq: number;
  readonly target: Member;
  readonly startMs: number;
  acked: boolean;
  expectedNacks: number;
  nacks: number;
}

interface Relay {
  readonly requester: Address;
  readonly requesterSeq: number;
  readonly expiresAtMs: number;
}

type Request =
  | { readonly kind: "ping"; readonly target: Address; readonly token: number; readonly startMs: number }
  | { readonly kind: "join"; readonly seed: Address; readonly token: number; attemptsLeft: number };

/** Member-list exchanges after a successful join, in protocol periods. */
const JOIN_SYNC_AFTER_PERIODS = [2, 6] as const;
/** Joins closer together than this (periods) share their follow-up exchanges. */
const JOIN_SYNC_SPACING_PERIODS = 10;
/** Incarnations are u32 on the wire; they saturate here. */
const MAX_INCARNATION = 0xffffffff;
/** Most ping-req relays in flight; more are refused and counted. */
const MAX_RELAYS = 4096;
/** Most user pings and joins in flight. */
const MAX_REQUESTS = 4096;
/** Most datagrams sent at once to announce a graceful leave. */
const LEAVE_FANOUT = 8;

export class SwimNode {
  readonly self: Address;
  readonly config: SwimConfig;
  readonly stats: CoreStats = {
    datagramsSent: 0,
    bytesSent: 0,
    datagramsReceived: 0,
    bytesReceived: 0,
    protocolErrors: 0,
    protocolErrorsByCode: {},
    datagramsFromSelf: 0,
    pingsSent: 0,
    pingReqsSent: 0,
    acksReceived: 0,
    nacksReceived: 0,
    nacksSent: 0,
    probesFailed: 0,
    suspicionsRaised: 0,
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
  };

  private readonly rng: Prng;
  private readonly members = new Map<string, Member>();
  private readonly selfMember: Member;
  /** Alive and suspect members other than self: probe targets and gossip peers. */
  private readonly probeable = new RandomSet<Member>();
  /** Dead (not left) members: reconnect targets and, for a while, gossip peers. */
  private readonly dead = new RandomSet<Member>();
  private probeOrder: Member[] = [];
  private probeCursor = 0;
  private probe: Probe | null = null;
  private probeEpoch = 0;
  private probeIntervalMs: number;
  /** Probe timeout (ms); keeps the config's share of the period when the period changes. */
  private probeTimeoutMs: number;
  private readonly relays = new Map<number, Relay>();
  private readonly requests = new Map<number, Request>();
  private readonly updates: TransmitQueue;
  private readonly broadcasts: TransmitQueue;
  private readonly dedupe: DedupeWindows;
  /** Builds ping, ack, ping-req, nack and join datagrams (probePacketBytes). */
  private readonly probeWriter: DatagramWriter;
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
  /** The encoded LEFT item about this node, once it leaves. */
  private leaveItem: Uint8Array | null = null;
  private lastJoinSyncsAtMs = -Infinity;
  private started = false;
  private leaving = false;

  constructor(options: SwimNodeOptions) {
    this.self = options.self;
    this.config = options.config;
    this.rng = new Prng(options.seed);
    this.probeIntervalMs = options.config.probeIntervalMs;
    this.probeTimeoutMs = options.config.probeTimeoutMs;
    this.nextSeq = 1 + this.rng.nextInt(0x7fffffff);
    this.updates = new TransmitQueue(options.config.maxQueuedUpdates);
    this.broadcasts = new TransmitQueue(options.config.maxQueuedBroadcasts);
    this.dedupe = new DedupeWindows(options.config.broadcastDedupeWindow, options.config.maxBroadcastOrigins);
    this.envelopeBytes = options.config.sealed ? SEALED_OVERHEAD_BYTES : 0;
    this.probeWriter = new DatagramWriter(options.config.probePacketBytes - this.envelopeBytes);
    this.fullWriter = new DatagramWriter(options.config.maxPacketBytes - this.envelopeBytes);
    this.broadcastEpoch = options.broadcastEpoch >>> 0;
    this.selfMember = {
      address: options.self,
      key: options.self.key,
      state: MemberState.Alive,
      incarnation: options.incarnation >>> 0,
      stateChangedAtMs: 0,
      lastHeardAtMs: -1,
      lastRttMs: -1,
      suspicion: null,
      suspectedBy: null,
      reapToken: 0,
      lastSyncToMs: -Infinity,
    };
    this.members.set(this.self.key, this.selfMember);
  }

  // ---------------------------------------------------------------------------------------
  // Public API: the host's calls.

  /** Starts the protocol: schedules the probe, gossip, reconnect and push-pull rounds. */
  start(nowMs: number, rt: Runtime): void {
    if (this.started) return;
    this.started = true;
    this.selfMember.stateChangedAtMs = nowMs;
    this.emitMember(rt, this.selfMember, null, null);
    // Stagger the rounds so that nodes started together do not probe in lock-step.
    rt.setTimer(nowMs + this.rng.nextInt(this.probeIntervalMs) + 1, { kind: "probe", epoch: this.probeEpoch });
    const c = this.config;
    if (c.gossipIntervalMs > 0) rt.setTimer(nowMs + this.rng.nextInt(c.gossipIntervalMs) + 1, { kind: "gossip" });
    if (c.reconnectIntervalMs > 0) rt.setTimer(nowMs + c.reconnectIntervalMs, { kind: "reconnect" });
    if (c.pushPullIntervalMs > 0) {
      rt.setTimer(nowMs + this.rng.nextInt(c.pushPullIntervalMs) + c.pushPullIntervalMs, { kind: "pushPull", once: false });
    }
  }

  /**
   * Asks each seed for its member list. Emits one `joinResult` per seed (ok when the seed's
   * SYNC arrived, not ok after `joinAttempts` unanswered requests).
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
      this.requests.set(seq, { kind: "join", seed, token, attemptsLeft: this.config.joinAttempts - 1 });
      this.sendBody(rt, seed, { type: MessageType.Join, seq }, "probe");
      rt.setTimer(nowMs + this.config.requestTimeoutMs, { kind: "request", seq });
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
    void nowMs;
    void rt;
    if (payload.length === 0) return { ok: false, code: "EMPTY", message: "a broadcast needs at least 1 byte" };
    if (payload.length > this.config.maxBroadcastBytes) {
      return {
        ok: false,
        code: "TOO_LARGE",
        message: `a broadcast carries at most ${this.config.maxBroadcastBytes} bytes, got ${payload.length}`,
      };
    }
    if (this.leaving) return { ok: false, code: "LEFT", message: "this node has left the cluster" };
    const seq = this.nextBroadcastSeq;
    this.nextBroadcastSeq = (this.nextBroadcastSeq + 1) >>> 0;
    const b: UserBroadcast = { origin: this.self, epoch: this.broadcastEpoch, seq, payload: payload.slice() };
    this.dedupe.sight(this.self.key, this.broadcastEpoch, seq);
    this.queueBroadcast(b);
    this.stats.broadcastsSent++;
    return { ok: true, epoch: this.broadcastEpoch, seq };
  }

  /**
   * Graceful leave: raises the incarnation, announces *left* at once to a few members and keeps
   * gossiping it on later rounds; probing stops. The host stops the node shortly after
   * (`leaveDisseminated` tells when the announcement has used its transmissions).
   */
  leave(nowMs: number, rt: Runtime): void {
    if (this.leaving) return;
    this.leaving = true;
    const self = this.selfMember;
    const previousIncarnation = self.incarnation;
    self.incarnation = Math.min(self.incarnation + 1, MAX_INCARNATION);
    const previous = self.state;
    self.state = MemberState.Left;
    self.stateChangedAtMs = nowMs;
    this.queueUpdate(self);
    this.emitMember(rt, self, previous, previousIncarnation);
    // The announcement leads every datagram from now on, ahead of whatever else is queued.
    this.leaveItem = encodeUpdateItem(this.updateOf(self));
    const peers = this.probeable.sample(this.rng, Math.max(LEAVE_FANOUT, this.config.gossipFanout), () => false);
    for (const peer of peers) this.sendBody(rt, peer.address, { type: MessageType.Gossip }, "full");
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
    const m = this.members.get(address.key);
    if (m === undefined || m === this.selfMember) return false;
    this.removeMember(m, rt);
    return true;
  }

  /** Changes the base protocol period live (the original's `configure heartbeat`). */
  setProbeIntervalMs(nowMs: number, probeIntervalMs: number, rt: Runtime): void {
    this.probeIntervalMs = probeIntervalMs;
    // The timeout keeps its share of the period: a timeout past the period would leave no time
    // for indirect probes.
    this.probeTimeoutMs = Math.max(1, Math.round((probeIntervalMs * this.config.probeTimeoutMs) / this.config.probeIntervalMs));
    this.probeEpoch++;
    if (this.started) rt.setTimer(nowMs + this.scaled(probeIntervalMs), { kind: "probe", epoch: this.probeEpoch });
  }

  get currentProbeIntervalMs(): number {
    return this.probeIntervalMs;
  }

  /** Lifeguard's local health score, 0 (healthy) .. awarenessMaxMultiplier - 1. */
  get healthScore(): number {
    return this.health;
  }

  get incarnation(): number {
    return this.selfMember.incarnation;
  }

  /** Members in alive or suspect state, self included. */
  get liveCount(): number {
    return this.probeable.size + (this.leaving ? 0 : 1);
  }

  get memberCount(): number {
    return this.members.size;
  }

  get queuedUpdates(): number {
    return this.updates.size;
  }

  get queuedBroadcasts(): number {
    return this.broadcasts.size;
  }

  member(key: string): MemberInfo | undefined {
    const m = this.members.get(key);
    return m === undefined ? undefined : this.info(m);
  }

  memberList(): MemberInfo[] {
    const out: MemberInfo[] = [];
    for (const m of this.members.values()) out.push(this.info(m));
    return out;
  }

  /** State of `key` without building a MemberInfo (for checkers in large simulations). */
  stateOf(key: string): MemberState | undefined {
    return this.members.get(key)?.state;
  }

  /** Iterates (key, state, incarnation) without allocating MemberInfo objects. */
  forEachMember(visit: (key: string, state: MemberState, incarnation: number) => void): void {
    for (const m of this.members.values()) visit(m.key, m.state, m.incarnation);
  }

  // ---------------------------------------------------------------------------------------
  // Inputs from the network and the timer queue.

  /** Handles one datagram received from the network. Bad bytes are counted and change nothing. */
  handleDatagram(nowMs: number, bytes: Uint8Array, rt: Runtime): void {
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
    const syncFrom = d.body.type === MessageType.Sync ? d.from : null;
    for (const u of d.updates) this.mergeUpdate(nowMs, u, syncFrom, rt);
    // The sender is alive at the incarnation it states: an implicit alive update, merged after
    // the items so that a leaving sender's own LEFT (at the same incarnation) comes first.
    const sender = this.mergeUpdate(nowMs, { state: MemberState.Alive, incarnation: d.incarnation, member: d.from }, null, rt);
    if (sender !== undefined) sender.lastHeardAtMs = nowMs;
    for (const b of d.broadcasts) this.receiveBroadcast(b, rt);
    this.handleBody(nowMs, d, rt);
    // A member we hold dead is talking to us, or one we hold left talks at an older incarnation
    // (a new life on its address): tell it (push-pull), so that it refutes.
    const stale = sender !== undefined && (sender.state === MemberState.Dead || (sender.state === MemberState.Left && d.incarnation < sender.incarnation));
    if (sender !== undefined && stale && !this.leaving) {
      if (nowMs - sender.lastSyncToMs >= this.probeIntervalMs) {
        sender.lastSyncToMs = nowMs;
        this.sendSync(rt, sender.address, true, this.takeSeq());
      }
    }
  }

  /** Handles a timer the host set through Runtime.setTimer. Stale timers are ignored. */
  handleTimer(nowMs: number, timer: Timer, rt: Runtime): void {
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
      case "relayTimeout":
        this.onRelayTimeout(timer.seq, rt);
        return;
      case "suspicion":
        this.onSuspicionTimer(nowMs, timer.key, timer.token, rt);
        return;
      case "reap":
        this.onReapTimer(nowMs, timer.key, timer.token, rt);
        return;
      case "gossip":
        this.onGossipTick(nowMs, rt);
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
    }
  }

  // ---------------------------------------------------------------------------------------
  // Message handling.

  private handleBody(nowMs: number, d: Datagram, rt: Runtime): void {
    const body = d.body;
    switch (body.type) {
      case MessageType.Ping:
        this.sendBody(rt, d.from, { type: MessageType.Ack, seq: body.seq }, "probe");
        return;
      case MessageType.Ack:
        this.onAck(nowMs, d.from, body.seq, rt);
        return;
      case MessageType.PingReq:
        this.onPingReq(nowMs, d.from, body.seq, body.target, rt);
        return;
      case MessageType.Nack:
        this.stats.nacksReceived++;
        if (this.probe !== null && this.probe.seq === body.seq) this.probe.nacks++;
        return;
      case MessageType.Join:
        if (!this.leaving) this.sendSync(rt, d.from, false, body.seq);
        return;
      case MessageType.Sync: {
        // A reply to our JOIN, matched by seq: the seed may advertise another address than
        // the one we reached it at.
        // (A SYNC that wants a reply is a push-pull request, carrying the sender's own seq.)
        const req = body.seq === 0 || body.replyWanted ? undefined : this.requests.get(body.seq);
        if (req !== undefined && req.kind === "join") {
          this.requests.delete(body.seq);
          rt.emit({ type: "joinResult", seed: req.seed, ok: true, token: req.token });
          this.scheduleJoinSyncs(nowMs, rt);
        }
        if (body.replyWanted && !this.leaving) this.sendSync(rt, d.from, false, body.seq);
        return;
      }
      case MessageType.Gossip:
        return;
    }
  }

  private onAck(nowMs: number, from: Address, seq: number, rt: Runtime): void {
    this.stats.acksReceived++;
    const probe = this.probe;
    if (probe !== null && probe.seq === seq) {
      if (!probe.acked) {
        probe.acked = true;
        // Only a direct answer measures the round trip.
        if (from.key === probe.target.key) probe.target.lastRttMs = nowMs - probe.startMs;
        this.adjustHealth(-1);
      }
      return;
    }
    const relay = this.relays.get(seq);
    if (relay !== undefined) {
      this.relays.delete(seq);
      this.sendBody(rt, relay.requester, { type: MessageType.Ack, seq: relay.requesterSeq }, "probe");
      return;
    }
    const req = this.requests.get(seq);
    if (req !== undefined && req.kind === "ping") {
      this.requests.delete(seq);
      rt.emit({ type: "pingResult", target: req.target, rttMs: nowMs - req.startMs, token: req.token });
    }
  }

  private onPingReq(nowMs: number, from: Address, requesterSeq: number, target: Address, rt: Runtime): void {
    if (this.relays.size >= MAX_RELAYS) {
      this.purgeRelays(nowMs);
      if (this.relays.size >= MAX_RELAYS) {
        this.stats.relaysDropped++;
        return;
      }
    }
    const seq = this.takeSeq();
    const timeoutMs = this.scaled(this.probeTimeoutMs);
    this.relays.set(seq, { requester: from, requesterSeq, expiresAtMs: nowMs + this.scaled(this.probeIntervalMs) });
    this.sendBody(rt, target, { type: MessageType.Ping, seq }, "probe");
    if (this.config.lifeguard) rt.setTimer(nowMs + Math.floor(timeoutMs * 0.8), { kind: "relayTimeout", seq });
  }

  private onRelayTimeout(seq: number, rt: Runtime): void {
    const relay = this.relays.get(seq);
    if (relay === undefined) return;
    // Lifeguard: tell the requester that we are alive but the target did not answer us.
    this.stats.nacksSent++;
    this.sendBody(rt, relay.requester, { type: MessageType.Nack, seq: relay.requesterSeq }, "probe");
  }

  private purgeRelays(nowMs: number): void {
    for (const [seq, relay] of this.relays) if (relay.expiresAtMs <= nowMs) this.relays.delete(seq);
  }

  private receiveBroadcast(b: UserBroadcast, rt: Runtime): void {
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
    rt.emit({ type: "broadcast", origin: b.origin, epoch: b.epoch, seq: b.seq, payload: b.payload });
    if (!this.leaving) this.queueBroadcast(b);
  }

  // ---------------------------------------------------------------------------------------
  // Membership merge rules.

  /**
   * Merges one statement about a member. Higher incarnation wins; at equal incarnation
   * alive < suspect < dead < left; stale statements change nothing. In a member-list sync from
   * `syncFrom` a *dead* statement only raises a suspicion, by that sender (who holds it dead),
   * so the owner gets the chance to refute. Returns the member record, if one exists afterwards.
   */
  private mergeUpdate(nowMs: number, u: MemberUpdate, syncFrom: Address | null, rt: Runtime): Member | undefined {
    if (u.member.key === this.self.key) {
      this.mergeAboutSelf(nowMs, u, rt);
      return undefined;
    }
    let state = u.state;
    let by = u.suspectedBy ?? null;
    if (syncFrom !== null && state === MemberState.Dead) {
      state = MemberState.Suspect;
      by = syncFrom;
    }
    const m = this.members.get(u.member.key);
    if (m === undefined) {
      // Only a live member is worth learning about; a death or departure of a stranger is not.
      if (state !== MemberState.Alive || this.leaving) return undefined;
      if (this.members.size >= this.config.maxMembers) {
        this.stats.membersRefused++;
        return undefined;
      }
      return this.addMember(nowMs, u.member, u.incarnation, rt);
    }
    if (u.incarnation < m.incarnation) return m;
    if (u.incarnation === m.incarnation && state <= m.state) {
      if (state === MemberState.Suspect && m.state === MemberState.Suspect && by !== null) {
        this.confirmSuspicion(nowMs, m, by, rt);
      }
      return m;
    }
    this.transition(nowMs, m, state, u.incarnation, by, rt);
    return m;
  }

  /** Someone speaks of this node: refute a suspicion, death or departure that is not ours. */
  private mergeAboutSelf(nowMs: number, u: MemberUpdate, rt: Runtime): void {
    const self = this.selfMember;
    if (this.leaving) return;
    if (u.incarnation < self.incarnation) return;
    if (u.state === MemberState.Alive && u.incarnation === self.incarnation) return;
    // Suspect/dead/left at our incarnation or above, or alive above it (an older life of this
    // address): take a higher incarnation and say alive.
    const previousIncarnation = self.incarnation;
    // Saturates at 2^32 - 1 rather than wrapping to 0, which would make every later statement
    // about this node outrank it. (With the sealed envelope no stranger can forge such claims.)
    self.incarnation = Math.min(u.incarnation + 1, MAX_INCARNATION);
    self.stateChangedAtMs = nowMs;
    this.stats.refutations++;
    if (u.state !== MemberState.Alive) this.adjustHealth(1);
    this.queueUpdate(self);
    this.emitMember(rt, self, MemberState.Alive, previousIncarnation);
  }

  private addMember(nowMs: number, address: Address, incarnation: number, rt: Runtime): Member {
    const m: Member = {
      address,
      key: address.key,
      state: MemberState.Alive,
      incarnation,
      stateChangedAtMs: nowMs,
      lastHeardAtMs: -1,
      lastRttMs: -1,
      suspicion: null,
      suspectedBy: null,
      reapToken: 0,
      lastSyncToMs: -Infinity,
    };
    this.members.set(m.key, m);
    this.makeProbeable(m);
    this.queueUpdate(m);
    this.emitMember(rt, m, null, null);
    return m;
  }

  private transition(
    nowMs: number,
    m: Member,
    state: MemberState,
    incarnation: number,
    by: Address | null,
    rt: Runtime,
  ): void {
    const previous = m.state;
    const previousIncarnation = m.incarnation;
    m.state = state;
    m.incarnation = incarnation;
    m.stateChangedAtMs = nowMs;
    m.suspicion = null;
    m.suspectedBy = null;
    switch (state) {
      case MemberState.Alive:
        this.dead.delete(m);
        this.makeProbeable(m);
        break;
      case MemberState.Suspect:
        this.dead.delete(m);
        this.makeProbeable(m);
        m.suspectedBy = by ?? this.self;
        this.startSuspicion(nowMs, m, m.suspectedBy, rt);
        break;
      case MemberState.Dead:
      case MemberState.Left:
        this.probeable.delete(m);
        if (state === MemberState.Dead) this.dead.add(m);
        else this.dead.delete(m);
        // One reap timer per member at most; it re-arms itself if the state changed meanwhile.
        if (m.reapToken === 0) {
          m.reapToken = this.takeToken();
          rt.setTimer(nowMs + this.config.reapAfterMs, { kind: "reap", key: m.key, token: m.reapToken });
        }
        break;
    }
    this.queueUpdate(m);
    this.emitMember(rt, m, previous, previousIncarnation);
  }

  private makeProbeable(m: Member): void {
    if (!this.probeable.add(m)) return;
    // Insert at a random place in the rest of this round, as memberlist does.
    this.probeOrder.push(m);
    const span = this.probeOrder.length - this.probeCursor;
    if (span > 1) {
      const j = this.probeCursor + this.rng.nextInt(span);
      const last = this.probeOrder.length - 1;
      const tmp = this.probeOrder[j] as Member;
      this.probeOrder[j] = this.probeOrder[last] as Member;
      this.probeOrder[last] = tmp;
    }
  }

  private removeMember(m: Member, rt: Runtime): void {
    this.members.delete(m.key);
    this.probeable.delete(m);
    this.dead.delete(m);
    this.updates.remove(m.key);
    m.suspicion = null;
    m.reapToken = 0;
    rt.emit({ type: "memberRemoved", address: m.address });
  }

  // ---------------------------------------------------------------------------------------
  // Suspicion (Lifeguard).

  private startSuspicion(nowMs: number, m: Member, by: Address, rt: Runtime): void {
    this.stats.suspicionsRaised++;
    const n = this.liveCount;
    const minMs = suspicionMinTimeoutMs(this.config.suspicionMult, n, this.probeIntervalMs);
    const lifeguard = this.config.lifeguard;
    const maxMs = lifeguard ? minMs * this.config.suspicionMaxTimeoutMult : minMs;
    const expected = lifeguard ? expectedConfirmations(this.config.suspicionMult, n) : 0;
    const s: Suspicion = { token: this.takeToken(), startMs: nowMs, minMs, maxMs, expected, suspectors: new Set([by.key]) };
    m.suspicion = s;
    rt.setTimer(nowMs + suspicionTimeoutMs(minMs, maxMs, expected, 0), { kind: "suspicion", key: m.key, token: s.token });
  }

  private confirmSuspicion(nowMs: number, m: Member, by: Address, rt: Runtime): void {
    const s = m.suspicion;
    if (s === null || s.suspectors.has(by.key)) return;
    if (s.suspectors.size - 1 >= s.expected) return;
    s.suspectors.add(by.key);
    m.suspectedBy = by;
    // Pass the new confirmation on, so that others shorten their timers too.
    this.queueUpdate(m);
    const timeoutMs = suspicionTimeoutMs(s.minMs, s.maxMs, s.expected, s.suspectors.size - 1);
    rt.setTimer(Math.max(nowMs, s.startMs + timeoutMs), { kind: "suspicion", key: m.key, token: s.token });
  }

  private onSuspicionTimer(nowMs: number, key: string, token: number, rt: Runtime): void {
    const m = this.members.get(key);
    const s = m?.suspicion;
    if (m === undefined || s === null || s === undefined || s.token !== token) return;
    const timeoutMs = suspicionTimeoutMs(s.minMs, s.maxMs, s.expected, s.suspectors.size - 1);
    if (nowMs < s.startMs + timeoutMs) return; // an earlier timer of a suspicion since confirmed
    this.stats.deadDeclared++;
    this.transition(nowMs, m, MemberState.Dead, m.incarnation, null, rt);
  }

  private onReapTimer(nowMs: number, key: string, token: number, rt: Runtime): void {
    const m = this.members.get(key);
    if (m === undefined || m.reapToken !== token || token === 0) return;
    if (m.state !== MemberState.Dead && m.state !== MemberState.Left) {
      m.reapToken = 0; // alive again: nothing to reap
      return;
    }
    const dueMs = m.stateChangedAtMs + this.config.reapAfterMs;
    if (nowMs < dueMs) rt.setTimer(dueMs, { kind: "reap", key: m.key, token });
    else this.removeMember(m, rt);
  }

  // ---------------------------------------------------------------------------------------
  // The probe cycle.

  private onProbeTick(nowMs: number, rt: Runtime): void {
    // A probe still open at the next tick is settled first (its deadline is due now as well).
    if (this.probe !== null) this.onProbeDeadline(nowMs, this.probe.seq, rt);
    if (!this.leaving) this.startProbe(nowMs, rt);
    rt.setTimer(nowMs + this.scaled(this.probeIntervalMs), { kind: "probe", epoch: this.probeEpoch });
    if (this.relays.size > 0) this.purgeRelays(nowMs);
  }

  private nextProbeTarget(): Member | undefined {
    // Skips every stale entry (members no longer probeable) of the current round, then at most
    // one fresh round, whose entries are all probeable. Each entry is passed once: O(1) amortized.
    for (let reshuffled = false; ; ) {
      if (this.probeCursor >= this.probeOrder.length) {
        if (reshuffled) return undefined;
        this.probeOrder = this.rng.shuffle([...this.probeable.values()]);
        this.probeCursor = 0;
        reshuffled = true;
        if (this.probeOrder.length === 0) return undefined;
      }
      const m = this.probeOrder[this.probeCursor++] as Member;
      if (this.probeable.has(m)) return m;
    }
  }

  private startProbe(nowMs: number, rt: Runtime): void {
    const target = this.nextProbeTarget();
    if (target === undefined) return;
    const seq = this.takeSeq();
    this.probe = { seq, target, startMs: nowMs, acked: false, expectedNacks: 0, nacks: 0 };
    this.stats.pingsSent++;
    // Lifeguard's buddy system: a suspect hears of its suspicion in the probe itself.
    const buddy = this.config.lifeguard && target.state === MemberState.Suspect ? encodeUpdateItem(this.updateOf(target)) : null;
    this.sendBody(rt, target.address, { type: MessageType.Ping, seq }, "probe", buddy);
    rt.setTimer(nowMs + this.scaled(this.probeTimeoutMs), { kind: "probeTimeout", seq });
    rt.setTimer(nowMs + this.scaled(this.probeIntervalMs), { kind: "probeDeadline", seq });
  }

  private onProbeTimeout(nowMs: number, seq: number, rt: Runtime): void {
    void nowMs;
    const probe = this.probe;
    if (probe === null || probe.seq !== seq || probe.acked) return;
    const target = probe.target;
    // Only alive helpers (as memberlist): a suspect one would likely not nack, and Lifeguard would
    // count its silence against this node's health.
    const helpers = this.probeable.sample(this.rng, this.config.indirectChecks, (m) => m === target || m.state !== MemberState.Alive);
    for (const helper of helpers) {
      this.stats.pingReqsSent++;
      this.sendBody(rt, helper.address, { type: MessageType.PingReq, seq, target: target.address }, "probe");
    }
    probe.expectedNacks = this.config.lifeguard ? helpers.length : 0;
  }

  private onProbeDeadline(nowMs: number, seq: number, rt: Runtime): void {
    const probe = this.probe;
    if (probe === null || probe.seq !== seq) return;
    this.probe = null;
    if (probe.acked) return;
    this.stats.probesFailed++;
    // Lifeguard: missing nacks mean that we, not the target, may be the slow one.
    if (probe.expectedNacks > 0) this.adjustHealth(Math.max(0, probe.expectedNacks - probe.nacks));
    else this.adjustHealth(1);
    const target = probe.target;
    if (this.members.get(target.key) !== target) return;
    target.lastRttMs = -2;
    if (target.state === MemberState.Alive) {
      this.transition(nowMs, target, MemberState.Suspect, target.incarnation, this.self, rt);
    } else if (target.state === MemberState.Suspect) {
      this.confirmSuspicion(nowMs, target, this.self, rt);
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

  private onGossipTick(nowMs: number, rt: Runtime): void {
    rt.setTimer(nowMs + this.config.gossipIntervalMs, { kind: "gossip" });
    if (this.updates.size === 0 && this.broadcasts.size === 0) return;
    const fanout = this.config.gossipFanout;
    const peers = this.probeable.sample(this.rng, fanout, () => false);
    // Recently dead members are among the candidates too (in proportion to their number), so
    // that a false positive hears of it and refutes; most transmissions still reach live nodes.
    const candidates = this.probeable.size + this.dead.size;
    if (this.dead.size > 0 && !this.leaving && this.rng.nextInt(candidates) < this.dead.size * Math.min(fanout, candidates)) {
      const m = this.dead.pick(this.rng);
      if (m !== undefined && nowMs - m.stateChangedAtMs <= this.config.gossipToTheDeadMs) {
        if (peers.length >= fanout) peers[peers.length - 1] = m;
        else peers.push(m);
      }
    }
    for (const peer of peers) {
      if (this.updates.size === 0 && this.broadcasts.size === 0) break;
      this.sendBody(rt, peer.address, { type: MessageType.Gossip }, "full");
    }
  }

  private onReconnectTick(nowMs: number, rt: Runtime): void {
    rt.setTimer(nowMs + this.config.reconnectIntervalMs, { kind: "reconnect" });
    if (this.leaving) return;
    const m = this.dead.pick(this.rng);
    if (m === undefined) return;
    // Its answer, if any, carries its incarnation; handleDatagram then syncs with it.
    this.sendBody(rt, m.address, { type: MessageType.Ping, seq: this.takeSeq() }, "probe");
  }

  private onPushPullTick(nowMs: number, once: boolean, rt: Runtime): void {
    if (!once) {
      // memberlist's scaling: beyond 32 members, slow down by ceil(log2(n) - log2(32)) + 1.
      const n = this.liveCount;
      const scale = n <= 32 ? 1 : Math.ceil(Math.log2(n) - 5) + 1;
      rt.setTimer(nowMs + this.config.pushPullIntervalMs * scale, { kind: "pushPull", once: false });
    }
    if (this.leaving) return;
    const m = this.probeable.pick(this.rng);
    if (m !== undefined) this.sendSync(rt, m.address, true, this.takeSeq());
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
      this.sendBody(rt, req.seed, { type: MessageType.Join, seq: next }, "probe");
      rt.setTimer(nowMs + this.config.requestTimeoutMs, { kind: "request", seq: next });
      return;
    }
    rt.emit({ type: "joinResult", seed: req.seed, ok: false, token: req.token });
  }

  // ---------------------------------------------------------------------------------------
  // Sending.

  /**
   * Encodes and sends one datagram: header and body, then (optionally) one priority item, then
   * membership updates and user broadcasts from the queues until the datagram is full
   * (probePacketBytes or maxPacketBytes, less the envelope).
   */
  private sendBody(rt: Runtime, to: Address, body: Body, size: "probe" | "full", priority: Uint8Array | null = null): void {
    const w = size === "probe" ? this.probeWriter : this.fullWriter;
    w.begin(this.self, this.selfMember.incarnation, body);
    if (this.leaveItem !== null) w.tryAppend(this.leaveItem);
    if (priority !== null) w.tryAppend(priority);
    const n = this.liveCount;
    this.updates.fill(w, retransmitLimit(this.config.retransmitMult, n));
    this.broadcasts.fill(w, retransmitLimit(this.config.broadcastRetransmitMult, n));
    this.stats.updatesDropped = this.updates.dropped;
    this.stats.broadcastsDropped = this.broadcasts.dropped;
    this.transmit(rt, to, w.finish());
  }

  private transmit(rt: Runtime, to: Address, datagram: Uint8Array): void {
    this.stats.datagramsSent++;
    this.stats.bytesSent += datagram.length;
    rt.send(to, datagram);
  }

  /**
   * Sends this node's member list to `to` in as many SYNC datagrams as it needs (bounded).
   * `seq` is the request answered, or a fresh one when a reply is wanted.
   */
  private sendSync(rt: Runtime, to: Address, replyWanted: boolean, seq: number): void {
    this.stats.syncsSent++;
    const w = this.fullWriter;
    const body: Body = { type: MessageType.Sync, replyWanted, seq };
    const all = [...this.members.values()];
    const n = all.length;
    const start = n === 0 ? 0 : this.syncOffset % n;
    let datagrams = 0;
    let itemsInDatagram = 0;
    let i = 0;
    w.begin(this.self, this.selfMember.incarnation, body);
    while (i < n) {
      const m = all[(start + i) % n] as Member;
      const item = encodeUpdateItem(this.updateOf(m));
      if (w.tryAppend(item)) {
        itemsInDatagram++;
        i++;
        continue;
      }
      this.transmit(rt, to, w.finish());
      itemsInDatagram = 0;
      if (++datagrams >= this.config.syncMaxDatagrams) break;
      w.begin(this.self, this.selfMember.incarnation, body);
      if (!w.tryAppend(item)) break; // cannot happen: one item always fits an empty datagram
      itemsInDatagram++;
      i++;
    }
    if (itemsInDatagram > 0) this.transmit(rt, to, w.finish());
    // The next partial snapshot continues where this one stopped.
    this.syncOffset = (start + i) % Math.max(1, n);
  }

  private updateOf(m: Member): MemberUpdate {
    if (m.state === MemberState.Suspect) {
      return { state: m.state, incarnation: m.incarnation, member: m.address, suspectedBy: m.suspectedBy ?? this.self };
    }
    return { state: m.state, incarnation: m.incarnation, member: m.address };
  }

  private queueUpdate(m: Member): void {
    this.updates.enqueue(m.key, encodeUpdateItem(this.updateOf(m)));
  }

  private queueBroadcast(b: UserBroadcast): void {
    this.broadcasts.enqueue(`${b.origin.key}/${b.epoch}/${b.seq}`, encodeBroadcastItem(b));
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

  private info(m: Member): MemberInfo {
    const limit = retransmitLimit(this.config.retransmitMult, this.liveCount);
    return {
      address: m.address,
      state: m.state,
      incarnation: m.incarnation,
      stateChangedAtMs: m.stateChangedAtMs,
      lastHeardAtMs: m.lastHeardAtMs,
      lastRttMs: m.lastRttMs,
      pendingTransmits: this.updates.remaining(m.key, limit),
      isSelf: m === this.selfMember,
    };
  }

  private emitMember(rt: Runtime, m: Member, previous: MemberState | null, previousIncarnation: number | null): void {
    const event: CoreEvent = { type: "member", member: this.info(m), previous, previousIncarnation };
    rt.emit(event);
  }
}
