/**
 * src/engine/engine.ts: owns the public Engine interface and createEngine(), which binds the
 * UDP socket (src/transport/udp.ts) and returns one of two implementations of the same API:
 *
 *   - WorkerEngine (workers: 1, the default): the core runs on a worker thread
 *     (src/engine/worker-entry.ts). The main thread keeps the socket and pumps: received
 *     datagrams go into the inbound ring (published once per event-loop turn), commands into
 *     the commands ring; a pump loop sleeps in the main doorbell's waitAsync and drains the
 *     outbound ring to the socket and the events ring to listeners and pending requests.
 *   - InlineEngine (workers: 0): the same CoreHost (src/engine/host.ts) on the main thread,
 *     its timers driven by one setTimeout re-armed to the TimerQueue's earliest deadline.
 *
 * Both share EngineBase, which owns the request/reply bookkeeping (tokens, timeouts), event
 * listeners and stats assembly, so the two modes answer alike. Events are always delivered
 * asynchronously (never from inside an API call). nowMs is performance.now() on the main
 * thread's time base; wall-clock time only seeds the starting incarnation.
 *
 * Sealing: with an `envelope` (src/seal/envelope.ts), every datagram is sealed as it leaves for
 * the socket and opened as it arrives, on the main thread, in EngineBase (`outgoing`,
 * `incoming`), so both modes share it; what fails to open never reaches the core.
 *
 * Advertised address: `advertise` if given; else the bind address and bound port; for a
 * wildcard bind (`0.0.0.0` / `::`) the loopback of that family (`127.0.0.1` / `::1`), since
 * the engine cannot know which interface peers reach it on. Clusters spanning hosts must pass
 * `advertise`.
 */

import { Worker } from "node:worker_threads";
import { randomBytes, randomInt } from "node:crypto";
import { parseAddress, parseIp, type Address } from "../core/address.js";
import { defaultMaxBroadcastBytes, makeConfig, periodProblem, validateConfig, type SwimConfig } from "../core/config.js";
import { COOKIE_SECRET_BYTES } from "../core/cookie.js";
import type { BroadcastOutcome, SwimNodeOptions } from "../core/node.js";
import { MAX_TARGETS, maxRequestPayloadBytes, type RequestRefusal } from "../core/requests.js";
import type { CoreEvent, MemberInfo } from "../core/runtime.js";
import {
  DEFAULT_ENGINE_RINGS_CONFIG,
  attachMainSide,
  createEngineRingBuffers,
  type EngineRingsConfig,
  type MainSideRings,
  type RawFrameVisitor,
  type RingStats,
} from "../shm/index.js";
import type { Envelope } from "../seal/envelope.js";
import { UdpTransport } from "../transport/udp.js";
import { CoreHost, type HostSink } from "./host.js";
import {
  DATAGRAM_IN_MAX_HEADER_BYTES,
  DATAGRAM_OUT_MAX_HEADER_BYTES,
  EVENT_BROADCAST_MAX_HEADER_BYTES,
  MAX_MEMBER_RECORD_BYTES,
  newDatagramOutView,
  readDatagramOut,
  readOutput,
  writeCommand,
  writeDatagramIn,
  type Command,
  type EngineWorkerData,
  type Reply,
} from "./protocol.js";

export type { BroadcastOutcome } from "../core/node.js";
export type { CoreEvent, MemberInfo } from "../core/runtime.js";

export interface JoinOutcome {
  readonly seed: Address;
  /** The seed sent its member list in time. */
  readonly ok: boolean;
}

export type EngineEventListener = (event: CoreEvent) => void;

/** A running TamTam member: one socket, one core, in either mode. */
export interface Engine {
  /** The advertised address: this member's identity in the cluster. */
  readonly localAddress: Address;
  /** 1 when the core runs on a worker thread, 0 when inline. */
  readonly workers: 0 | 1;
  /** Starts the protocol rounds; resolves once the core runs. */
  start(): Promise<void>;
  /**
   * Asks each seed for its member list. Resolves with one outcome per distinct seed once all
   * have answered or failed, or after `timeoutMs` (default 2 * requestTimeoutMs * joinAttempts
   * + 250 ms: a seed may answer with a cookie first), seeds still open counting as not ok. A
   * seed that does not answer at all fails after requestTimeoutMs * joinAttempts, as before.
   */
  join(seeds: readonly Address[], timeoutMs?: number): Promise<JoinOutcome[]>;
  /** Queues a user broadcast; the outcome says whether it was accepted. */
  broadcast(payload: Uint8Array): Promise<BroadcastOutcome>;
  /**
   * Announces *left*: the core sends it at once, directly, to several members (each of which
   * gossips it on). Resolves as soon as those datagrams have left the socket, or after
   * LEAVE_TIMEOUT_MS if the core does not answer; stop() may follow at once. Until then the
   * member keeps gossiping, every datagram leading with the announcement.
   */
  leave(): Promise<void>;
  /** Round trip (ms) of a ping to `target`, or null if it did not answer within requestTimeoutMs. */
  ping(target: Address): Promise<number | null>;
  /**
   * Sends a cluster request (see src/core/requests.ts) to every member alive now and resolves
   * with their answers and the members that did not answer within `timeoutMs` (the core
   * retries those meanwhile). Rejects with ClusterRequestRefusedError when the core refuses it
   * (too large, too many in flight, ...).
   */
  request(kind: number, payload: Uint8Array, timeoutMs: number): Promise<ClusterRequestResult>;
  /** Answers the cluster request handed over as a `request` event. False if not queued. */
  answerRequest(handle: number, payload: Uint8Array): boolean;
  /** Drops `address` from the local member table only. False if the command could not be queued. */
  forget(address: Address): boolean;
  /** Changes the probe interval live (PERIOD_MIN_MS..PERIOD_MAX_MS, 10..600000 ms; RangeError otherwise). False if not queued. */
  setProbeIntervalMs(probeIntervalMs: number): boolean;
  /** The member table as the core sees it now, self included. */
  members(): Promise<MemberInfo[]>;
  /** Core, host, ring, transport and drop counters under flat dotted names. */
  stats(): Promise<Record<string, number>>;
  /** Subscribes to CoreEvents; returns the unsubscribe function. Listener errors are counted. */
  onEvent(listener: EngineEventListener): () => void;
  /** Called once if the engine fails (its worker died); every call is refused from then on. */
  onFailure(listener: (error: Error) => void): () => void;
  /** Stops at once (no leave announcement), closes the socket; idempotent. */
  stop(): Promise<void>;
}

export interface EngineOptions {
  /** IP literal to bind. Default `0.0.0.0`. */
  readonly bindIp?: string;
  /** UDP port to bind; 0 (default) takes an ephemeral port. */
  readonly bindPort?: number;
  /** For an IPv6 bind address: also carry IPv4 (ipv6Only false). Default false. */
  readonly dualStack?: boolean;
  /** Advertised address (Address, or text; a missing port means the bound port). See the file header. */
  readonly advertise?: Address | string;
  /** Protocol config; validated. Default: the `lan` preset with the family's broadcast limit. */
  readonly config?: SwimConfig;
  /** 1 (default): core on a worker thread; 0: inline on the main thread. */
  readonly workers?: 0 | 1;
  /** Ring sizes (worker mode), merged over DEFAULT_ENGINE_RINGS_CONFIG per ring. */
  readonly rings?: Partial<EngineRingsConfig>;
  /** Starting incarnation; default wall-clock seconds, so a restart outranks an old death. */
  readonly incarnation?: number;
  /** Broadcast id epoch of this life; default random. */
  readonly broadcastEpoch?: number;
  /** Seed of the core's PRNG; default random. */
  readonly seed?: number;
  /** SO_RCVBUF / SO_SNDBUF to ask for (bytes); default 4 MiB. */
  readonly socketBufferBytes?: number;
  /** How long broadcast/members/stats wait for the core's reply before rejecting (ms). Default 5000. */
  readonly replyTimeoutMs?: number;
  /** Busy-wait checks before a ring consumer sleeps (worker mode). */
  readonly spinIterations?: number;
  /** Seals outgoing and opens incoming datagrams (src/seal); needs `config.sealed`, which reserves its room. */
  readonly envelope?: Envelope;
  /** Configured seeds, retried by the core while the cluster has lost members (SwimNodeOptions.seeds). */
  readonly seeds?: readonly Address[];
  /** Members of an earlier life (a snapshot): reconnect targets from the start (SwimNodeOptions.reconnectTargets). */
  readonly reconnectTargets?: readonly Address[];
}

/** Thrown (as a rejection) by calls on an engine that is stopped or whose worker failed. */
export class EngineStoppedError extends Error {
  override readonly name = "EngineStoppedError";
}

/** The core refused to start a cluster request. */
export class ClusterRequestRefusedError extends Error {
  override readonly name = "ClusterRequestRefusedError";
  constructor(
    readonly code: RequestRefusal,
    message: string,
  ) {
    super(message);
  }
}

export interface ClusterAnswer {
  readonly from: Address;
  readonly payload: Uint8Array;
}

export interface ClusterRequestResult {
  /** One answer per member that answered, in arrival order. */
  readonly answers: readonly ClusterAnswer[];
  /** The members asked that did not answer in time. */
  readonly missing: readonly Address[];
}

/** Extra wait for the core's requestDone past a cluster request's own timeout. */
const REQUEST_GRACE_MS = 2_000;

const DEFAULT_REPLY_TIMEOUT_MS = 5_000;
const START_TIMEOUT_MS = 10_000;
const STOP_TIMEOUT_MS = 2_000;
const JOIN_GRACE_MS = 250;
const PING_GRACE_MS = 1_000;
/** Longest leave() waits for the core to hand over its announcement (ms); normally well under 1. */
export const LEAVE_TIMEOUT_MS = 1_000;
/** Longest main-thread pump sleep with nothing to do (ms); bounds shutdown after a worker crash. */
const PUMP_IDLE_WAIT_MS = 500;
/** Frames the pump takes from a ring before it yields to the event loop. */
const OUTPUT_BATCH = 512;
/** Source IP texts whose parsed bytes are cached (worker mode). */
const IP_CACHE_ENTRIES = 4_096;

/** Creates an engine: binds the socket, builds the core (and worker). Call start() next. */
export async function createEngine(options: EngineOptions = {}): Promise<Engine> {
  const workers = options.workers ?? 1;
  if (workers !== 0 && workers !== 1) throw new RangeError(`workers must be 0 or 1, got ${String(workers)}`);
  const transport = await UdpTransport.bind({
    ip: options.bindIp ?? "0.0.0.0",
    port: options.bindPort ?? 0,
    dualStack: options.dualStack ?? false,
    ...(options.socketBufferBytes === undefined
      ? {}
      : { recvBufferBytes: options.socketBufferBytes, sendBufferBytes: options.socketBufferBytes }),
  });
  try {
    const self = resolveAdvertise(options.advertise, transport);
    const config = options.config ?? makeConfig("lan", { maxBroadcastBytes: defaultMaxBroadcastBytes(self.family) });
    const problems = validateConfig(config);
    if (problems.length > 0) throw new RangeError(`invalid protocol config: ${problems.join("; ")}`);
    if (options.envelope !== undefined && !config.sealed) throw new RangeError("an envelope needs config.sealed, which reserves its room");
    const node: SwimNodeOptions = {
      self,
      config,
      seed: options.seed ?? (Math.random() * 2 ** 32) >>> 0,
      incarnation: options.incarnation ?? Math.floor(Date.now() / 1000),
      // Random, so that a restart within the same second still gets fresh broadcast ids.
      broadcastEpoch: options.broadcastEpoch ?? randomInt(2 ** 32 - 1),
      // Keys the join cookies: unguessable, unlike the 32-bit PRNG seed.
      cookieSecret: new Uint8Array(randomBytes(COOKIE_SECRET_BYTES)),
      seeds: options.seeds ?? [],
      reconnectTargets: options.reconnectTargets ?? [],
    };
    const init: EngineInit = {
      transport,
      node,
      replyTimeoutMs: options.replyTimeoutMs ?? DEFAULT_REPLY_TIMEOUT_MS,
      envelope: options.envelope ?? null,
    };
    if (workers === 0) return new InlineEngine(init);

    const ringsConfig = mergeRings(options.rings);
    checkRings(ringsConfig, config);
    const buffers = createEngineRingBuffers(ringsConfig);
    const spin = options.spinIterations === undefined ? {} : { spinIterations: options.spinIterations };
    const rings = attachMainSide(buffers, spin);
    const workerData: EngineWorkerData = {
      buffers,
      selfKey: self.key,
      config,
      seed: node.seed,
      incarnation: node.incarnation,
      broadcastEpoch: node.broadcastEpoch,
      cookieSecret: node.cookieSecret as Uint8Array,
      seedKeys: (options.seeds ?? []).map((a) => a.key),
      reconnectTargetKeys: (options.reconnectTargets ?? []).map((a) => a.key),
      baseTimeOriginMs: performance.timeOrigin,
      ...spin,
    };
    const worker = new Worker(new URL("./worker-entry.js", import.meta.url), { workerData });
    return new WorkerEngine(init, rings, worker);
  } catch (err) {
    await transport.close();
    throw err;
  }
}

function resolveAdvertise(advertise: Address | string | undefined, transport: UdpTransport): Address {
  let self: Address;
  if (advertise === undefined) {
    const ip = parseIp(transport.localIp);
    const wildcard = ip === null || ip.every((b) => b === 0);
    const text = wildcard ? (transport.family === 4 ? "127.0.0.1" : "::1") : transport.localIp;
    const parsed = parseAddress(transport.family === 6 ? `[${text}]` : text, transport.localPort);
    if (typeof parsed === "string") throw new RangeError(`cannot advertise the bound address: ${parsed}`);
    self = parsed;
  } else if (typeof advertise === "string") {
    const parsed = parseAddress(advertise, transport.localPort);
    if (typeof parsed === "string") throw new RangeError(`advertise: ${parsed}`);
    self = parsed;
  } else {
    self = advertise;
  }
  const reachable = self.family === transport.family || (transport.family === 6 && transport.dualStack);
  if (!reachable) {
    throw new RangeError(
      `advertised address ${self.key} is IPv${self.family} but the socket is bound to IPv${transport.family} ${transport.localIp}`,
    );
  }
  return self;
}

function mergeRings(rings: Partial<EngineRingsConfig> | undefined): EngineRingsConfig {
  return { ...DEFAULT_ENGINE_RINGS_CONFIG, ...(rings ?? {}) };
}

/** The ring frame limits the protocol needs for `config`; RangeError naming the first short one. */
function checkRings(rings: EngineRingsConfig, config: SwimConfig): void {
  const needs: [keyof EngineRingsConfig, number, string][] = [
    ["inbound", config.maxPacketBytes + DATAGRAM_IN_MAX_HEADER_BYTES, "a maxPacketBytes datagram"],
    ["outbound", config.maxPacketBytes + DATAGRAM_OUT_MAX_HEADER_BYTES, "a maxPacketBytes datagram"],
    ["commands", 5 + config.maxBroadcastBytes, "a maxBroadcastBytes broadcast"],
    ["commands", 13 + maxRequestPayloadBytes(config), "a cluster request"],
    ["events", Math.max(EVENT_BROADCAST_MAX_HEADER_BYTES + config.maxBroadcastBytes, 8 + MAX_MEMBER_RECORD_BYTES, 256), "a broadcast event"],
    ["events", EVENT_BROADCAST_MAX_HEADER_BYTES + maxRequestPayloadBytes(config), "a cluster request event"],
    ["events", 7 + 19 * MAX_TARGETS, "the end of a cluster request (its silent members)"],
  ];
  for (const [ring, minBytes, what] of needs) {
    if (rings[ring].maxFrameBytes < minBytes) {
      throw new RangeError(`rings.${ring}.maxFrameBytes must be at least ${minBytes} to carry ${what}, got ${rings[ring].maxFrameBytes}`);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The shared half: requests, listeners, stats.

interface EngineInit {
  readonly transport: UdpTransport;
  readonly node: SwimNodeOptions;
  readonly replyTimeoutMs: number;
  readonly envelope: Envelope | null;
}

type PendingKind = "started" | "broadcast" | "left" | "snapshot" | "stats" | "stopped" | "join" | "ping" | "request";

interface JoinState {
  readonly seeds: readonly Address[];
  readonly index: Map<string, number>;
  readonly ok: (boolean | undefined)[];
  remaining: number;
}

interface Pending {
  readonly kind: PendingKind;
  readonly resolve: (value: unknown) => void;
  readonly reject: (err: Error) => void;
  /** The value (or Error) a request that times out settles with. */
  readonly onTimeout: () => unknown;
  timer: NodeJS.Timeout | null;
  members?: MemberInfo[];
  join?: JoinState;
  answers?: ClusterAnswer[];
}

/** Counters of what the engine dropped, per mode. */
interface DropCounts {
  datagramsIn: number;
  datagramsOut: number;
  events: number;
}

abstract class EngineBase implements Engine {
  readonly localAddress: Address;
  readonly workers: 0 | 1;
  protected readonly transport: UdpTransport;
  protected readonly config: SwimConfig;
  protected readonly nodeOptions: SwimNodeOptions;
  private readonly envelope: Envelope | null;
  protected readonly counters = {
    commandsDropped: 0,
    listenerErrors: 0,
    repliesTimedOut: 0,
    snapshotsTruncated: 0,
    badFrames: 0,
  };
  protected state: "ready" | "stopping" | "stopped" | "failed" = "ready";
  private readonly failureListeners = new Set<(error: Error) => void>();
  protected failure: Error | null = null;

  private readonly replyTimeoutMs: number;
  private readonly pending = new Map<number, Pending>();
  private readonly listeners = new Set<EngineEventListener>();
  private nextToken = 1;
  private startPromise: Promise<void> | null = null;
  private stopPromise: Promise<void> | null = null;

  protected constructor(init: EngineInit, workers: 0 | 1) {
    this.transport = init.transport;
    this.nodeOptions = init.node;
    this.config = init.node.config;
    this.localAddress = init.node.self;
    this.replyTimeoutMs = init.replyTimeoutMs;
    this.workers = workers;
    this.envelope = init.envelope;
  }

  /**
   * Sends a datagram of the core, sealed when there is an envelope. `owned`: the bytes are the
   * caller's to give away; otherwise they are copied (dgram reads them after this returns).
   */
  protected outgoing(to: Address, bytes: Uint8Array, owned: boolean): void {
    this.transport.send(to, this.envelope !== null ? this.envelope.wrap(bytes) : owned ? bytes : bytes.slice());
  }

  /** A received datagram as the core reads it: opened when there is an envelope; null when dropped. */
  protected incoming(bytes: Uint8Array, fromIp: string, fromPort: number): Uint8Array | null {
    return this.envelope === null ? bytes : this.envelope.unwrap(bytes, fromIp, fromPort);
  }

  /** Hands a command to the core; false if it could not be queued. */
  protected abstract submit(cmd: Command): boolean;
  /** Mode-specific shutdown: stop the core, close the socket. */
  protected abstract shutdown(): Promise<void>;
  protected abstract dropCounts(): DropCounts;
  /** Counters only this mode has (e.g. ring.*). */
  protected abstract modeStats(): Record<string, number>;

  start(): Promise<void> {
    if (this.startPromise !== null) return this.startPromise;
    const refused = this.refusal<void>();
    if (refused !== null) return refused;
    const { token, promise } = this.open<void>("started", START_TIMEOUT_MS, () => new Error(`engine did not start within ${START_TIMEOUT_MS} ms`));
    this.startPromise = promise;
    this.submitFor(token, { type: "start", token });
    return promise;
  }

  join(seeds: readonly Address[], timeoutMs?: number): Promise<JoinOutcome[]> {
    const refused = this.refusal<JoinOutcome[]>();
    if (refused !== null) return refused;
    const unique: Address[] = [];
    const index = new Map<string, number>();
    for (const seed of seeds) {
      if (index.has(seed.key)) continue;
      index.set(seed.key, unique.length);
      unique.push(seed);
    }
    if (unique.length === 0) return Promise.resolve([]);
    const state: JoinState = { seeds: unique, index, ok: unique.map(() => undefined), remaining: unique.length };
    // A seed may first answer with a cookie: the core then asks again, with its attempts afresh.
    const waitMs = timeoutMs ?? 2 * this.config.requestTimeoutMs * this.config.joinAttempts + JOIN_GRACE_MS;
    const { token, promise } = this.open<JoinOutcome[]>("join", waitMs, () => joinOutcomes(state), { join: state });
    this.submitFor(token, { type: "join", token, seeds: unique });
    return promise;
  }

  broadcast(payload: Uint8Array): Promise<BroadcastOutcome> {
    const refused = this.refusal<BroadcastOutcome>();
    if (refused !== null) return refused;
    if (!(payload instanceof Uint8Array)) return Promise.reject(new TypeError("broadcast payload must be a Uint8Array"));
    const max = this.config.maxBroadcastBytes;
    if (payload.length > max) {
      // The core's own answer, given here so that an oversize payload never enters a ring.
      return Promise.resolve({ ok: false, code: "TOO_LARGE", message: `a broadcast carries at most ${max} bytes, got ${payload.length}` });
    }
    const { token, promise } = this.open<BroadcastOutcome>("broadcast", this.replyTimeoutMs, () => this.noReply("broadcast"));
    this.submitFor(token, { type: "broadcast", token, payload });
    return promise;
  }

  leave(): Promise<void> {
    const refused = this.refusal<void>();
    if (refused !== null) return refused;
    const { token, promise } = this.open<void>("left", LEAVE_TIMEOUT_MS, () => undefined);
    this.submitFor(token, { type: "leave", token });
    // The reply comes after the announcement's datagrams reached transport.send (inline: in the
    // same call; worker: the pump sends the outbound ring before it delivers "left").
    return promise.then(() => this.transport.flush());
  }

  ping(target: Address): Promise<number | null> {
    const refused = this.refusal<number | null>();
    if (refused !== null) return refused;
    const { token, promise } = this.open<number | null>("ping", this.config.requestTimeoutMs + PING_GRACE_MS, () => null);
    this.submitFor(token, { type: "ping", token, target });
    return promise;
  }

  request(kind: number, payload: Uint8Array, timeoutMs: number): Promise<ClusterRequestResult> {
    const refused = this.refusal<ClusterRequestResult>();
    if (refused !== null) return refused;
    const { token, promise } = this.open<ClusterRequestResult>("request", timeoutMs + REQUEST_GRACE_MS, () => this.noReply("request"), { answers: [] });
    this.submitFor(token, { type: "request", token, kind, timeoutMs, payload });
    return promise;
  }

  answerRequest(handle: number, payload: Uint8Array): boolean {
    if (this.state !== "ready") return false;
    return this.submitCounted({ type: "answer", handle, payload });
  }

  forget(address: Address): boolean {
    if (this.state !== "ready") return false;
    return this.submitCounted({ type: "forget", address });
  }

  setProbeIntervalMs(probeIntervalMs: number): boolean {
    // The one period rule (src/core/config.ts), checked here so that a bad period throws
    // instead of being queued and dropped by the core.
    const problem = periodProblem(probeIntervalMs);
    if (problem !== null) throw new RangeError(`probeIntervalMs ${problem}, got ${probeIntervalMs}`);
    if (this.state !== "ready") return false;
    return this.submitCounted({ type: "setProbeInterval", probeIntervalMs });
  }

  members(): Promise<MemberInfo[]> {
    const refused = this.refusal<MemberInfo[]>();
    if (refused !== null) return refused;
    const { token, promise } = this.open<MemberInfo[]>("snapshot", this.replyTimeoutMs, () => this.noReply("members"), { members: [] });
    this.submitFor(token, { type: "snapshot", token });
    return promise;
  }

  stats(): Promise<Record<string, number>> {
    const refused = this.refusal<Record<string, number>>();
    if (refused !== null) return refused;
    const { token, promise } = this.open<Record<string, number>>("stats", this.replyTimeoutMs, () => this.noReply("stats"));
    this.submitFor(token, { type: "stats", token });
    return promise;
  }

  onEvent(listener: EngineEventListener): () => void {
    this.listeners.add(listener);
    return () => {
      this.listeners.delete(listener);
    };
  }

  stop(): Promise<void> {
    if (this.stopPromise !== null) return this.stopPromise;
    this.state = "stopping";
    this.stopPromise = (async () => {
      try {
        await this.shutdown();
      } finally {
        this.state = "stopped";
        this.failAll(new EngineStoppedError("engine stopped"));
        this.listeners.clear();
      }
    })();
    return this.stopPromise;
  }

  // --- for the modes --------------------------------------------------------------------------

  /** An event from the core: settles join/ping requests, then goes to every listener. */
  protected deliverEvent(event: CoreEvent): void {
    if (this.state === "stopped") return;
    if (event.type === "joinResult") {
      const p = this.pending.get(event.token);
      const join = p?.kind === "join" ? p.join : undefined;
      const i = join?.index.get(event.seed.key);
      if (join !== undefined && i !== undefined && join.ok[i] === undefined) {
        join.ok[i] = event.ok;
        if (--join.remaining === 0) this.settle(event.token, joinOutcomes(join));
      }
    } else if (event.type === "pingResult") {
      if (this.pending.get(event.token)?.kind === "ping") this.settle(event.token, event.rttMs);
    } else if (event.type === "requestAnswer") {
      const p = this.pending.get(event.token);
      if (p?.kind === "request") p.answers?.push({ from: event.from, payload: event.payload });
    } else if (event.type === "requestDone") {
      const p = this.pending.get(event.token);
      if (p?.kind === "request") this.settle(event.token, { answers: p.answers ?? [], missing: [...event.missing] });
    }
    for (const listener of this.listeners) {
      try {
        listener(event);
      } catch {
        this.counters.listenerErrors++;
      }
    }
  }

  /** A reply to a command: settles its request. */
  protected deliverReply(reply: Reply): void {
    const p = this.pending.get(reply.token);
    if (p === undefined || p.kind !== reply.type) return;
    switch (reply.type) {
      case "started":
      case "left":
      case "stopped":
        this.settle(reply.token, undefined);
        return;
      case "broadcast":
        this.settle(reply.token, reply.outcome);
        return;
      case "request":
        if (!reply.outcome.ok) {
          this.pending.delete(reply.token);
          if (p.timer !== null) clearTimeout(p.timer);
          p.reject(new ClusterRequestRefusedError(reply.outcome.code, reply.outcome.message));
        }
        return;
      case "snapshot":
        this.settle(reply.token, [...reply.members]);
        return;
      case "stats":
        this.settle(reply.token, { ...reply.stats, ...this.localStats() });
        return;
    }
  }

  /** One part of a member snapshot (worker mode). */
  protected deliverSnapshotPart(token: number, members: readonly MemberInfo[], last: boolean, truncated: boolean): void {
    const p = this.pending.get(token);
    if (p === undefined || p.kind !== "snapshot" || p.members === undefined) return;
    for (const m of members) p.members.push(m);
    if (!last) return;
    if (truncated) this.counters.snapshotsTruncated++;
    this.settle(token, p.members);
  }

  /** Registers a request; its token pairs it with the reply. */
  protected open<T>(kind: PendingKind, timeoutMs: number, onTimeout: () => T | Error, extra: Partial<Pick<Pending, "members" | "join" | "answers">> = {}): { token: number; promise: Promise<T> } {
    const token = this.takeToken();
    let resolveFn!: (value: unknown) => void;
    let rejectFn!: (err: Error) => void;
    const promise = new Promise<T>((resolve, reject) => {
      resolveFn = resolve as (value: unknown) => void;
      rejectFn = reject;
    });
    const pending: Pending = { kind, resolve: resolveFn, reject: rejectFn, onTimeout, timer: null, ...extra };
    pending.timer = setTimeout(() => this.expire(token), Math.max(0, timeoutMs));
    this.pending.set(token, pending);
    return { token, promise };
  }

  /** Rejects every open request (engine stopped or worker lost). */
  protected failAll(err: Error): void {
    const all = [...this.pending.values()];
    this.pending.clear();
    for (const p of all) {
      if (p.timer !== null) clearTimeout(p.timer);
      p.reject(err);
    }
  }

  /** The worker is gone unexpectedly: every call from now on is refused with `err`. */
  protected fail(err: Error): void {
    if (this.state !== "ready") return;
    this.state = "failed";
    this.failure = err;
    this.failAll(err);
    for (const listener of this.failureListeners) {
      try {
        listener(err);
      } catch {
        this.counters.listenerErrors++;
      }
    }
  }

  onFailure(listener: (error: Error) => void): () => void {
    this.failureListeners.add(listener);
    return () => this.failureListeners.delete(listener);
  }

  private localStats(): Record<string, number> {
    const out: Record<string, number> = {
      "engine.workers": this.workers,
      "engine.pendingRequests": this.pending.size,
      "engine.commandsDropped": this.counters.commandsDropped,
      "engine.listenerErrors": this.counters.listenerErrors,
      "engine.repliesTimedOut": this.counters.repliesTimedOut,
      "engine.snapshotsTruncated": this.counters.snapshotsTruncated,
      "engine.badFrames": this.counters.badFrames,
    };
    const drops = this.dropCounts();
    out["drops.datagramsIn"] = drops.datagramsIn;
    out["drops.datagramsOut"] = drops.datagramsOut;
    out["drops.events"] = drops.events;
    out["drops.commands"] = this.counters.commandsDropped;
    for (const [name, value] of Object.entries(this.transport.stats())) out[`transport.${name}`] = value;
    Object.assign(out, this.modeStats());
    return out;
  }

  private refusal<T>(): Promise<T> | null {
    if (this.state === "ready") return null;
    return Promise.reject(this.failure ?? new EngineStoppedError("engine stopped"));
  }

  private submitFor(token: number, cmd: Command): void {
    if (this.submitCounted(cmd)) return;
    const p = this.pending.get(token);
    if (p === undefined) return;
    this.pending.delete(token);
    if (p.timer !== null) clearTimeout(p.timer);
    p.reject(new Error("engine command ring is full; try again"));
  }

  private submitCounted(cmd: Command): boolean {
    let ok: boolean;
    try {
      ok = this.submit(cmd);
    } catch {
      ok = false;
    }
    if (!ok) this.counters.commandsDropped++;
    return ok;
  }

  private settle(token: number, value: unknown): void {
    const p = this.pending.get(token);
    if (p === undefined) return;
    this.pending.delete(token);
    if (p.timer !== null) clearTimeout(p.timer);
    p.resolve(value);
  }

  private expire(token: number): void {
    const p = this.pending.get(token);
    if (p === undefined) return;
    this.pending.delete(token);
    const value = p.onTimeout();
    if (value instanceof Error) {
      this.counters.repliesTimedOut++;
      p.reject(value);
    } else {
      p.resolve(value);
    }
  }

  private noReply(what: string): Error {
    return new Error(`engine did not answer ${what} within ${this.replyTimeoutMs} ms`);
  }

  private takeToken(): number {
    for (;;) {
      const token = this.nextToken;
      this.nextToken = this.nextToken >= 0xffffffff ? 1 : this.nextToken + 1;
      if (!this.pending.has(token)) return token;
    }
  }
}

function joinOutcomes(state: JoinState): JoinOutcome[] {
  return state.seeds.map((seed, i) => ({ seed, ok: state.ok[i] === true }));
}

// ---------------------------------------------------------------------------------------------
// workers: 0: the core on the main thread.

type Outgoing = { readonly kind: "event"; readonly event: CoreEvent } | { readonly kind: "reply"; readonly reply: Reply };

class InlineEngine extends EngineBase {
  private readonly host: CoreHost;
  /** Events and replies of the current turn, delivered in a microtask (never re-entering the core). */
  private readonly outbox: Outgoing[] = [];
  private flushScheduled = false;
  private timer: NodeJS.Timeout | null = null;
  private timerAtMs = Infinity;

  constructor(init: EngineInit) {
    super(init, 0);
    const sink: HostSink = {
      send: (to, datagram) => this.outgoing(to, datagram, true),
      emit: (event) => this.enqueue({ kind: "event", event }),
      reply: (reply) => this.enqueue({ kind: "reply", reply }),
    };
    this.host = new CoreHost(init.node, sink);
    this.transport.onDatagram((received, fromIp, fromPort) => {
      const bytes = this.incoming(received, fromIp, fromPort);
      if (bytes === null) return;
      this.host.handleDatagram(performance.now(), bytes);
      this.rearm();
    });
  }

  protected submit(cmd: Command): boolean {
    if (this.host.stopped) return false;
    this.host.dispatch(performance.now(), cmd);
    this.rearm();
    return true;
  }

  protected async shutdown(): Promise<void> {
    this.host.dispatch(performance.now(), { type: "stop", token: 0 });
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    await this.transport.close();
  }

  protected dropCounts(): DropCounts {
    return { datagramsIn: 0, datagramsOut: 0, events: 0 };
  }

  protected modeStats(): Record<string, number> {
    return {};
  }

  private enqueue(item: Outgoing): void {
    this.outbox.push(item);
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    queueMicrotask(this.flush);
  }

  private readonly flush = (): void => {
    this.flushScheduled = false;
    const box = this.outbox;
    // Items added by listeners during the loop are delivered by it as well.
    for (let i = 0; i < box.length; i++) {
      const item = box[i] as Outgoing;
      if (item.kind === "event") this.deliverEvent(item.event);
      else this.deliverReply(item.reply);
    }
    box.length = 0;
  };

  /** Keeps one setTimeout armed for the TimerQueue's earliest deadline. */
  private rearm(): void {
    if (this.host.stopped) return;
    const atMs = this.host.nextDeadlineMs();
    if (atMs === Infinity || (this.timer !== null && atMs >= this.timerAtMs)) return;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timerAtMs = atMs;
    this.timer = setTimeout(this.onTimer, Math.max(0, Math.ceil(atMs - performance.now())));
  }

  private readonly onTimer = (): void => {
    this.timer = null;
    this.timerAtMs = Infinity;
    this.host.fireDueTimers(performance.now());
    this.rearm();
  };
}

// ---------------------------------------------------------------------------------------------
// workers: 1: the core on a worker thread, behind the rings.

class WorkerEngine extends EngineBase {
  private readonly rings: MainSideRings;
  private readonly worker: Worker;
  private readonly exited: Promise<void>;
  private workerGone = false;
  private pumpDone = false;
  private publishScheduled = false;
  private inboundDropped = 0;
  private readonly ipCache = new Map<string, Uint8Array | null>();
  private readonly outView = newDatagramOutView();

  constructor(init: EngineInit, rings: MainSideRings, worker: Worker) {
    super(init, 1);
    this.rings = rings;
    this.worker = worker;
    this.exited = new Promise<void>((resolve) => {
      worker.once("exit", (code) => {
        this.workerGone = true;
        // Whatever the worker published last (e.g. the STOPPED reply) may not be pumped yet.
        if (!this.pumpDone) this.drainOutputs(Infinity);
        this.pumpDone = true;
        this.fail(new EngineStoppedError(`engine worker exited unexpectedly (code ${code})`));
        resolve();
      });
    });
    worker.on("error", (err) => {
      this.fail(err instanceof Error ? err : new Error(String(err)));
    });
    this.transport.onDatagram(this.onSocketDatagram);
    this.pump().catch((err: unknown) => {
      this.pumpDone = true;
      this.fail(err instanceof Error ? err : new Error(String(err)));
    });
  }

  protected submit(cmd: Command): boolean {
    if (this.workerGone) return false;
    if (!writeCommand(this.rings.commands, cmd)) return false;
    this.rings.commands.publish();
    return true;
  }

  protected async shutdown(): Promise<void> {
    if (!this.workerGone) {
      const { token, promise } = this.open<void>("stopped", STOP_TIMEOUT_MS, () => undefined);
      if (this.submit({ type: "stop", token })) await promise.catch(() => undefined);
      if (!(await settlesWithin(this.exited, STOP_TIMEOUT_MS))) await this.worker.terminate();
    }
    this.pumpDone = true;
    await this.transport.close();
  }

  protected dropCounts(): DropCounts {
    const s = this.rings.stats();
    return {
      datagramsIn: this.inboundDropped,
      datagramsOut: s.outbound.framesDroppedFull + s.outbound.framesDroppedOversize,
      events: s.events.framesDroppedFull + s.events.framesDroppedOversize,
    };
  }

  protected modeStats(): Record<string, number> {
    const out: Record<string, number> = {};
    const s = this.rings.stats();
    const add = (ring: string, r: RingStats): void => {
      for (const [name, value] of Object.entries(r)) out[`ring.${ring}.${name}`] = value;
    };
    add("inbound", s.inbound);
    add("commands", s.commands);
    add("outbound", s.outbound);
    add("events", s.events);
    return out;
  }

  /** Socket -> inbound ring; published once per event-loop turn (batching). */
  private readonly onSocketDatagram = (received: Uint8Array, fromIp: string, fromPort: number): void => {
    const bytes = this.incoming(received, fromIp, fromPort);
    if (bytes === null) return;
    let ip = this.ipCache.get(fromIp);
    if (ip === undefined) {
      ip = parseIp(fromIp);
      if (this.ipCache.size >= IP_CACHE_ENTRIES) this.ipCache.clear();
      this.ipCache.set(fromIp, ip);
    }
    if (ip === null || this.workerGone || !writeDatagramIn(this.rings.inbound, performance.now(), ip, fromPort, bytes)) {
      this.inboundDropped++;
      return;
    }
    if (this.publishScheduled) return;
    this.publishScheduled = true;
    setImmediate(this.publishInbound);
  };

  private readonly publishInbound = (): void => {
    this.publishScheduled = false;
    this.rings.inbound.publish();
  };

  /** Outbound ring -> socket, events ring -> listeners and requests, until stopped. */
  private async pump(): Promise<void> {
    const rings = this.rings;
    while (!this.pumpDone) {
      this.drainOutputs(OUTPUT_BATCH);
      if (this.pumpDone) break;
      if (rings.hasWork()) await yieldToEventLoop();
      else await rings.waitAsync(PUMP_IDLE_WAIT_MS);
    }
  }

  private drainOutputs(maxFrames: number): void {
    try {
      this.rings.outbound.drainRaw(this.onOutbound, maxFrames);
      this.rings.events.drainRaw(this.onOutput, maxFrames);
    } catch (err) {
      // Only a clobbered ring (RingCorruptedError) gets here: the engine cannot go on.
      this.pumpDone = true;
      this.fail(err instanceof Error ? err : new Error(String(err)));
    }
  }

  private readonly onOutbound: RawFrameVisitor = (data, offset, lengthBytes) => {
    const view = this.outView;
    if (!readDatagramOut(data, offset, lengthBytes, view) || view.to === null) {
      this.counters.badFrames++;
      return;
    }
    // dgram may read the bytes after this call returns, and the ring slot is reused: copied (or sealed into a fresh buffer).
    this.outgoing(view.to, data.subarray(view.payloadOffset, view.payloadOffset + view.payloadBytes), false);
  };

  private readonly onOutput: RawFrameVisitor = (data, offset, lengthBytes) => {
    let out;
    try {
      out = readOutput(data, offset, lengthBytes);
    } catch {
      this.counters.badFrames++;
      return;
    }
    if (out.kind === "event") this.deliverEvent(out.event);
    else if (out.kind === "snapshotPart") this.deliverSnapshotPart(out.token, out.members, out.last, out.truncated);
    else {
      if (out.reply.type === "stopped") {
        // The worker's last frame: send what it queued before it, then stop pumping.
        this.rings.outbound.drainRaw(this.onOutbound);
        this.pumpDone = true;
      } else if (out.reply.type === "left") {
        // The leave announcement was queued before this reply: on the socket with it, first.
        this.rings.outbound.drainRaw(this.onOutbound);
      }
      this.deliverReply(out.reply);
    }
  };
}

function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** Whether `promise` settles within `timeoutMs` (the timer is cleared either way). */
async function settlesWithin(promise: Promise<unknown>, timeoutMs: number): Promise<boolean> {
  let timer: NodeJS.Timeout | null = null;
  const timeout = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), timeoutMs);
  });
  try {
    return await Promise.race([promise.then(() => true), timeout]);
  } finally {
    if (timer !== null) clearTimeout(timer);
  }
}
