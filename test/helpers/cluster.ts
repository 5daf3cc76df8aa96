/**
 * A tiny, hand-driven test harness for the pure core (not the simulator in src/sim):
 *
 * - `RecordingRuntime` is a Runtime that records every datagram a node sends (with its decoded
 *   form), every timer it sets (into a TimerQueue, so they fire in (atMs, seq) order) and every
 *   event it emits. Used on its own it drives one node by hand (`runTimers`).
 * - `ManualCluster` holds 2..5 SwimNodes on addresses 10.0.0.N:7946 (optionally the last one on
 *   [fd00::N]:7946), a virtual clock and a "network" of datagrams in flight. Datagrams are
 *   delivered on demand (`deliverAll`, `deliverTo`, `deliverWhere`) or by `advanceTo` /
 *   `runUntil`, which fire due timers in (atMs, seq) order and deliver datagrams after a fixed
 *   1 ms latency. Drop rules and `drop(predicate)` lose datagrams on purpose.
 *
 * Everything is deterministic and sleep-free: the same calls give the same trace.
 */

import { addr, type Address } from "../../src/core/address.js";
import { makeConfig, validateConfig, type PresetName, type SwimConfig } from "../../src/core/config.js";
import { SwimNode } from "../../src/core/node.js";
import { Prng } from "../../src/core/prng.js";
import type { CoreEvent, MemberInfo, Runtime, Timer } from "../../src/core/runtime.js";
import { TimerQueue } from "../../src/core/timer-queue.js";
import { decodeDatagram, encodeDatagram } from "../../src/core/wire/codec.js";
import {
  MEMBER_STATE_NAMES,
  MemberState,
  MessageType,
  type Body,
  type Datagram,
  type MemberUpdate,
  type UserBroadcast,
} from "../../src/core/wire/messages.js";

/** Fixed one-way latency of the cluster's network (ms). */
export const LATENCY_MS = 1;

export interface SentDatagram {
  /** Global send order within a cluster (per runtime when used alone). */
  readonly id: number;
  readonly atMs: number;
  readonly from: Address;
  readonly to: Address;
  readonly bytes: Uint8Array;
  /** The decoded datagram, or null if the core sent bytes that do not decode (a bug). */
  readonly decoded: Datagram | null;
  readonly decodeError: string | null;
}

export interface RecordedEvent {
  readonly atMs: number;
  /** Key of the node that emitted it. */
  readonly node: string;
  readonly event: CoreEvent;
}

export interface RecordedTimer {
  readonly setAtMs: number;
  readonly atMs: number;
  readonly timer: Timer;
}

export interface RuntimeHooks {
  onSend?(d: SentDatagram): void;
  /** When given, timers go here instead of the runtime's own queue. */
  onTimer?(atMs: number, timer: Timer): void;
}

/** A Runtime that records what the core asks of it. */
export class RecordingRuntime implements Runtime {
  readonly sent: SentDatagram[] = [];
  readonly events: RecordedEvent[] = [];
  readonly timersSet: RecordedTimer[] = [];
  /** Timers not yet fired (standalone use). */
  readonly timers = new TimerQueue<Timer>();
  /** Contract violations seen: timers in the past, undecodable datagrams, re-entrant calls. */
  readonly problems: string[] = [];
  /** The clock of standalone use; a cluster passes its own clock. */
  nowMs = 0;
  private readonly clock: () => number;
  private nextId = 0;
  /** Set by drivers while the core runs, to detect re-entrant calls. */
  busy = false;

  constructor(
    readonly self: Address,
    clock?: () => number,
    private readonly hooks: RuntimeHooks = {},
    private readonly idSource?: () => number,
  ) {
    this.clock = clock ?? (() => this.nowMs);
  }

  get now(): number {
    return this.clock();
  }

  send(to: Address, datagram: Uint8Array): void {
    const bytes = datagram.slice();
    let decoded: Datagram | null = null;
    let decodeError: string | null = null;
    try {
      decoded = decodeDatagram(bytes);
    } catch (err) {
      decodeError = String(err);
      this.problems.push(`undecodable datagram ${this.self.key} -> ${to.key}: ${decodeError}`);
    }
    const d: SentDatagram = {
      id: this.idSource !== undefined ? this.idSource() : this.nextId++,
      atMs: this.now,
      from: this.self,
      to,
      bytes,
      decoded,
      decodeError,
    };
    this.sent.push(d);
    this.hooks.onSend?.(d);
  }

  setTimer(atMs: number, timer: Timer): void {
    const now = this.now;
    if (!Number.isFinite(atMs) || atMs < now) this.problems.push(`timer ${timer.kind} set for ${atMs} at ${now}`);
    this.timersSet.push({ setAtMs: now, atMs, timer });
    if (this.hooks.onTimer !== undefined) this.hooks.onTimer(atMs, timer);
    else this.timers.push(atMs, timer);
  }

  emit(event: CoreEvent): void {
    this.events.push({ atMs: this.now, node: this.self.key, event });
  }

  /**
   * Standalone driving: fires this runtime's due timers on `node` up to `untilMs` in (atMs, seq)
   * order, advancing `nowMs`. Timers `accept` rejects are discarded unfired. Returns how many
   * fired.
   */
  runTimers(node: SwimNode, untilMs: number, accept: (t: Timer) => boolean = () => true): number {
    let fired = 0;
    for (;;) {
      const e = this.timers.popDue(untilMs);
      if (e === undefined) break;
      this.nowMs = Math.max(this.nowMs, e.atMs);
      if (!accept(e.value)) continue;
      node.handleTimer(this.nowMs, e.value, this);
      fired++;
    }
    this.nowMs = Math.max(this.nowMs, untilMs);
    return fired;
  }

  /** Datagrams sent since `fromIndex`, decoded. */
  sentSince(fromIndex: number): SentDatagram[] {
    return this.sent.slice(fromIndex);
  }

  memberEvents(subjectKey?: string): RecordedEvent[] {
    return this.events.filter(
      (e) => e.event.type === "member" && (subjectKey === undefined || e.event.member.address.key === subjectKey),
    );
  }
}

// ---------------------------------------------------------------------------------------------
// Crafting datagrams.

/** Encodes a datagram from `from` with the given body, updates and broadcasts (and cookie echo). */
export function craft(
  from: Address,
  incarnation: number,
  updates: readonly MemberUpdate[] = [],
  body: Body = { type: MessageType.Gossip },
  broadcasts: readonly UserBroadcast[] = [],
  cookie?: Uint8Array,
): Uint8Array {
  return encodeDatagram(cookie === undefined ? { from, incarnation, body, updates, broadcasts } : { from, incarnation, body, updates, broadcasts, cookie });
}

export function alive(member: Address, incarnation: number): MemberUpdate {
  return { state: MemberState.Alive, incarnation, member };
}
export function suspect(member: Address, incarnation: number, suspectedBy: Address): MemberUpdate {
  return { state: MemberState.Suspect, incarnation, member, suspectedBy };
}
export function dead(member: Address, incarnation: number): MemberUpdate {
  return { state: MemberState.Dead, incarnation, member };
}
export function left(member: Address, incarnation: number): MemberUpdate {
  return { state: MemberState.Left, incarnation, member };
}
export function update(state: MemberState, member: Address, incarnation: number, by: Address): MemberUpdate {
  return state === MemberState.Suspect ? suspect(member, incarnation, by) : { state, incarnation, member };
}

export const SYNC: Body = { type: MessageType.Sync, replyWanted: false, seq: 0 };
export const GOSSIP: Body = { type: MessageType.Gossip };

export function stateName(s: MemberState | undefined): string {
  return s === undefined ? "absent" : MEMBER_STATE_NAMES[s];
}

// ---------------------------------------------------------------------------------------------
// Serialization for traces.

export function hex(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += b.toString(16).padStart(2, "0");
  return s;
}

function jsonReplacer(_key: string, value: unknown): unknown {
  if (value instanceof Uint8Array) return hex(value);
  if (value !== null && typeof value === "object" && "key" in value && "family" in value && "port" in value) {
    return (value as Address).key;
  }
  return value;
}

export function describeEvent(e: RecordedEvent): string {
  return `${e.atMs} ${e.node} ${JSON.stringify(e.event, jsonReplacer)}`;
}

export function describeDatagram(d: SentDatagram): string {
  return `${d.id} ${d.atMs} ${d.from.key}->${d.to.key} ${hex(d.bytes)}`;
}

// ---------------------------------------------------------------------------------------------
// The cluster.

export interface ClusterOptions {
  /** Number of nodes, 2..5. */
  readonly size: number;
  readonly preset?: PresetName;
  readonly config?: Partial<SwimConfig>;
  /** Seed of every node's PRNG (node i gets a seed derived from it). */
  readonly seed?: number;
  /** Put the last node on an IPv6 address ([fd00::N]:7946). */
  readonly ipv6?: boolean;
  /** Starting incarnation of every node (default 0). */
  readonly incarnation?: number;
  /** Node i's tags at start (encoded, src/core/tags.ts), or undefined for none. */
  readonly tags?: (i: number) => Uint8Array | undefined;
}

export interface Slot {
  readonly index: number;
  readonly address: Address;
  node: SwimNode;
  rt: RecordingRuntime;
  /** Bumped on every stop/restart; timers of an older generation are ignored. */
  generation: number;
  up: boolean;
}

interface ClusterTimer {
  readonly slot: number;
  readonly generation: number;
  readonly timer: Timer;
}

export interface InFlight {
  readonly datagram: SentDatagram;
  readonly deliverAtMs: number;
}

export type DatagramPredicate = (d: SentDatagram) => boolean;

export function nodeAddress(index: number, ipv6: boolean): Address {
  return ipv6 ? addr(`[fd00::${index + 1}]:7946`) : addr(`10.0.0.${index + 1}:7946`);
}

export class ManualCluster {
  readonly slots: Slot[] = [];
  readonly config: SwimConfig;
  nowMs = 0;
  /** Every datagram sent, in order. */
  readonly sentLog: SentDatagram[] = [];
  /** Every event emitted, in order. */
  readonly eventLog: RecordedEvent[] = [];
  /** Datagrams lost to drop rules or `drop`. */
  readonly droppedLog: SentDatagram[] = [];
  /** Datagrams delivered, in delivery order. */
  readonly deliveredLog: SentDatagram[] = [];
  /** Datagrams to a stopped or unknown address. */
  undeliverable = 0;
  private inFlight: InFlight[] = [];
  private readonly timers = new TimerQueue<ClusterTimer>();
  private readonly rules = new Set<DatagramPredicate>();
  private nextDatagramId = 0;
  private readonly seedRng: Prng;
  private readonly seeds: number[] = [];
  /** Every runtime ever installed (restarts add one). */
  private readonly runtimes: RecordingRuntime[] = [];
  /** Safety net against a core that sets timers in a tight loop. */
  maxStepsPerAdvance = 2_000_000;

  constructor(readonly options: ClusterOptions) {
    if (!Number.isInteger(options.size) || options.size < 2 || options.size > 5) {
      throw new RangeError(`a ManualCluster holds 2..5 nodes, not ${options.size}`);
    }
    this.config = makeConfig(options.preset ?? "lan", options.config ?? {});
    const problems = validateConfig(this.config);
    if (problems.length > 0) throw new RangeError(`invalid config: ${problems.join("; ")}`);
    this.seedRng = new Prng(options.seed ?? 1);
    for (let i = 0; i < options.size; i++) {
      const ipv6 = options.ipv6 === true && i === options.size - 1;
      const address = nodeAddress(i, ipv6);
      const seed = this.seedRng.nextU32() | 0;
      this.seeds.push(seed);
      const slot: Slot = {
        index: i,
        address,
        node: undefined as unknown as SwimNode,
        rt: undefined as unknown as RecordingRuntime,
        generation: 0,
        up: false,
      };
      this.slots.push(slot);
      this.install(slot, options.incarnation ?? 0, seed);
    }
  }

  get size(): number {
    return this.slots.length;
  }

  node(i: number): SwimNode {
    return this.slot(i).node;
  }

  rt(i: number): RecordingRuntime {
    return this.slot(i).rt;
  }

  address(i: number): Address {
    return this.slot(i).address;
  }

  key(i: number): string {
    return this.slot(i).address.key;
  }

  slot(i: number): Slot {
    const s = this.slots[i];
    if (s === undefined) throw new RangeError(`no node ${i}`);
    return s;
  }

  private install(slot: Slot, incarnation: number, seed: number, config: SwimConfig = this.config): void {
    const generation = slot.generation;
    const rt = new RecordingRuntime(
      slot.address,
      () => this.nowMs,
      {
        onSend: (d) => this.onSend(d),
        onTimer: (atMs, timer) => this.timers.push(atMs, { slot: slot.index, generation, timer }),
      },
      () => this.nextDatagramId++,
    );
    const originalEmit = rt.emit.bind(rt);
    rt.emit = (event: CoreEvent): void => {
      originalEmit(event);
      this.eventLog.push({ atMs: this.nowMs, node: slot.address.key, event });
    };
    slot.rt = rt;
    this.runtimes.push(rt);
    // The generation is this address's boot counter: a fresh broadcast epoch per life.
    const tags = this.options.tags?.(slot.index);
    slot.node = new SwimNode({ self: slot.address, config, seed, incarnation, broadcastEpoch: generation, ...(tags === undefined ? {} : { tags }) });
  }

  private onSend(d: SentDatagram): void {
    this.sentLog.push(d);
    for (const rule of this.rules) {
      if (rule(d)) {
        this.droppedLog.push(d);
        return;
      }
    }
    this.inFlight.push({ datagram: d, deliverAtMs: d.atMs + LATENCY_MS });
  }

  // -------------------------------------------------------------------------------------------
  // Node control.

  start(i: number): void {
    const s = this.slot(i);
    s.up = true;
    this.call(s, () => s.node.start(this.nowMs, s.rt));
  }

  startAll(): void {
    for (let i = 0; i < this.size; i++) this.start(i);
  }

  /** Node `i` joins through the given seed nodes. */
  join(i: number, seeds: readonly number[], token = 0): void {
    const s = this.slot(i);
    this.call(s, () => s.node.join(this.nowMs, seeds.map((j) => this.address(j)), s.rt, token));
  }

  /** Starts every node and joins nodes 1.. through node 0, then runs until all see all alive. */
  bootstrap(maxMs = 20_000): void {
    this.startAll();
    for (let i = 1; i < this.size; i++) this.join(i, [0]);
    const ok = this.runUntil(() => this.converged(), maxMs);
    if (!ok) throw new Error(`cluster did not converge within ${maxMs} ms:\n${this.describeViews()}`);
  }

  /** Crash: the node stops at once; its timers are ignored and datagrams to it are lost. */
  stop(i: number): void {
    const s = this.slot(i);
    s.up = false;
    s.generation++;
  }

  /** A new SwimNode on the same address (a restarted process), started at once. */
  restart(i: number, incarnation: number, config?: SwimConfig): SwimNode {
    const s = this.slot(i);
    s.up = false;
    s.generation++;
    const seed = this.seedRng.nextU32() | 0;
    this.install(s, incarnation, seed, config ?? this.config);
    this.start(i);
    return s.node;
  }

  /** Runs `fn` against node `s`, checking that it does not re-enter. */
  call<T>(s: Slot, fn: () => T): T {
    if (s.rt.busy) throw new Error(`re-entrant call into ${s.address.key}`);
    s.rt.busy = true;
    try {
      return fn();
    } finally {
      s.rt.busy = false;
    }
  }

  // -------------------------------------------------------------------------------------------
  // The network.

  /** Datagrams matching `rule` are lost from now on, until the returned function is called. */
  addDropRule(rule: DatagramPredicate): () => void {
    this.rules.add(rule);
    return () => {
      this.rules.delete(rule);
    };
  }

  /** Loses every datagram in flight that matches; returns how many. */
  drop(predicate: DatagramPredicate): number {
    const keep: InFlight[] = [];
    let n = 0;
    for (const f of this.inFlight) {
      if (predicate(f.datagram)) {
        this.droppedLog.push(f.datagram);
        n++;
      } else {
        keep.push(f);
      }
    }
    this.inFlight = keep;
    return n;
  }

  get pending(): readonly InFlight[] {
    return this.inFlight;
  }

  /**
   * Delivers every datagram in flight now, and those they cause, until the network is quiet
   * (at most `maxRounds` rounds). Does not advance the clock. Returns how many were delivered.
   */
  deliverAll(maxRounds = 1000): number {
    let n = 0;
    for (let round = 0; round < maxRounds && this.inFlight.length > 0; round++) {
      n += this.deliverWhere(() => true);
    }
    return n;
  }

  /** Delivers (now) the datagrams in flight addressed to node `i`; one pass. */
  deliverTo(i: number): number {
    const key = this.key(i);
    return this.deliverWhere((d) => d.to.key === key);
  }

  /** Delivers (now) the datagrams in flight that match; one pass, in send order. */
  deliverWhere(predicate: DatagramPredicate): number {
    const batch: InFlight[] = [];
    const keep: InFlight[] = [];
    for (const f of this.inFlight) (predicate(f.datagram) ? batch : keep).push(f);
    this.inFlight = keep;
    for (const f of batch) this.deliver(f.datagram);
    return batch.length;
  }

  private deliver(d: SentDatagram): void {
    const s = this.slots.find((x) => x.address.key === d.to.key);
    if (s === undefined || !s.up) {
      this.undeliverable++;
      return;
    }
    this.deliveredLog.push(d);
    this.call(s, () => s.node.handleDatagram(this.nowMs, d.bytes, s.rt));
  }

  /** Feeds raw bytes to node `i` as if they came from the network. */
  inject(i: number, bytes: Uint8Array): void {
    const s = this.slot(i);
    this.call(s, () => s.node.handleDatagram(this.nowMs, bytes, s.rt));
  }

  // -------------------------------------------------------------------------------------------
  // Time.

  /** Processes the next timer or delivery if it is due at or before `limitMs`. */
  private step(limitMs: number): boolean {
    const nextTimer = this.timers.peekAtMs();
    const first = this.inFlight[0];
    const nextPacket = first === undefined ? Infinity : first.deliverAtMs;
    const t = Math.min(nextTimer, nextPacket);
    if (t > limitMs) return false;
    this.nowMs = Math.max(this.nowMs, t);
    // At equal times datagrams go first, then timers, each in their own order.
    if (first !== undefined && nextPacket <= nextTimer) {
      this.inFlight.shift();
      this.deliver(first.datagram);
      return true;
    }
    const e = this.timers.pop();
    if (e === undefined) return false;
    const s = this.slot(e.value.slot);
    if (s.up && s.generation === e.value.generation) {
      this.call(s, () => s.node.handleTimer(this.nowMs, e.value.timer, s.rt));
    }
    return true;
  }

  /** Runs timers and deliveries up to and including `ms`, then sets the clock to `ms`. */
  advanceTo(ms: number): void {
    let steps = 0;
    while (this.step(ms)) {
      if (++steps > this.maxStepsPerAdvance) throw new Error(`more than ${this.maxStepsPerAdvance} steps before ${ms} ms`);
    }
    this.nowMs = Math.max(this.nowMs, ms);
  }

  advanceBy(ms: number): void {
    this.advanceTo(this.nowMs + ms);
  }

  /**
   * Runs until `predicate` holds (checked before starting and after every step) or `maxMs`
   * have passed. Returns whether it held; the clock stops where it first held.
   */
  runUntil(predicate: () => boolean, maxMs: number): boolean {
    const limit = this.nowMs + maxMs;
    if (predicate()) return true;
    let steps = 0;
    while (this.step(limit)) {
      if (predicate()) return true;
      if (++steps > this.maxStepsPerAdvance) throw new Error(`more than ${this.maxStepsPerAdvance} steps`);
    }
    this.nowMs = limit;
    return predicate();
  }

  // -------------------------------------------------------------------------------------------
  // Views and checks.

  /** How node `observer` sees node `subject`. */
  view(observer: number, subject: number): MemberInfo | undefined {
    return this.node(observer).member(this.key(subject));
  }

  stateOf(observer: number, subject: number): MemberState | undefined {
    return this.node(observer).stateOf(this.key(subject));
  }

  /** Every running node other than `subject` sees `subject` in `state`. */
  allSee(subject: number, state: MemberState, observers?: readonly number[]): boolean {
    const who = observers ?? this.slots.filter((s) => s.up && s.index !== subject).map((s) => s.index);
    return who.every((o) => o === subject || this.stateOf(o, subject) === state);
  }

  /** Every running node sees every running node alive. */
  converged(): boolean {
    const up = this.slots.filter((s) => s.up);
    return up.every((o) => up.every((s) => s === o || o.node.stateOf(s.address.key) === MemberState.Alive));
  }

  describeViews(): string {
    const lines: string[] = [];
    for (const o of this.slots) {
      const parts = this.slots.map((s) => {
        const m = o.node.member(s.address.key);
        return m === undefined ? `${s.address.key}=absent` : `${s.address.key}=${stateName(m.state)}@${m.incarnation}`;
      });
      lines.push(`${o.address.key}${o.up ? "" : " (down)"}: ${parts.join(" ")}`);
    }
    return lines.join("\n");
  }

  /** Member events about `subject` emitted by `observer` (or by anyone). */
  memberEvents(subject: number, observer?: number): RecordedEvent[] {
    const key = this.key(subject);
    const obs = observer === undefined ? undefined : this.key(observer);
    return this.eventLog.filter(
      (e) => e.event.type === "member" && e.event.member.address.key === key && (obs === undefined || e.node === obs),
    );
  }

  /** First time `observer` (or anyone) emitted a member event putting `subject` in `state`. */
  firstTime(subject: number, state: MemberState, observer?: number): number | undefined {
    const e = this.memberEvents(subject, observer).find((x) => x.event.type === "member" && x.event.member.state === state);
    return e?.atMs;
  }

  /** Datagrams longer than their sender's maxPacketBytes (should be none). */
  oversize(): SentDatagram[] {
    return this.sentLog.filter((d) => {
      const s = this.slots.find((x) => x.address.key === d.from.key);
      const limit = s === undefined ? this.config.maxPacketBytes : s.node.config.maxPacketBytes;
      return d.bytes.length > limit;
    });
  }

  /** Contract violations recorded by any runtime, current and past generations. */
  problems(): string[] {
    return this.runtimes.flatMap((rt) => rt.problems);
  }

  /** A canonical text of everything sent and emitted, for determinism checks. */
  trace(): string {
    return [...this.sentLog.map(describeDatagram), "--", ...this.eventLog.map(describeEvent)].join("\n");
  }
}
