/**
 * src/engine/engine-base.ts: owns EngineBase, the half both engine modes share (as undici's
 * dispatcher-base): the request/reply bookkeeping (tokens, timeouts), event listeners, failure
 * and stop handling and stats assembly, so the inline engine (src/engine/inline-engine.ts) and
 * the worker engine (src/engine/worker-engine.ts) answer alike. A mode supplies how a command
 * reaches its core (submit), how it shuts down, and its own counters; it hands the core's
 * events and replies back through deliverEvent / deliverReply. Events are always delivered
 * asynchronously (never from inside an API call).
 */

import type { Address } from "../core/address.js";
import { periodProblem, type SwimConfig } from "../core/config.js";
import type { BroadcastOutcome, SwimNodeOptions, TagsOutcome } from "../core/node.js";
import { type CoreEvent, isRequestOutcome, type MemberInfo, type RequestOutcome } from "../core/runtime.js";
import type { Envelope } from "../seal/envelope.js";
import type { UdpTransport } from "../transport/udp.js";
import {
  ClusterRequestRefusedError,
  EngineStoppedError,
  type ClusterAnswer,
  type ClusterRequestOptions,
  type ClusterRequestProgress,
  type ClusterRequestResult,
  type Engine,
  type EngineEventListener,
  type JoinOutcome,
} from "./engine-api.js";
import type { Command, Reply } from "./protocol.js";

/** Extra wait for the core's requestDone past a cluster request's own timeout. */
const REQUEST_GRACE_MS = 2_000;

export const DEFAULT_REPLY_TIMEOUT_MS = 5_000;
const START_TIMEOUT_MS = 10_000;
export const STOP_TIMEOUT_MS = 2_000;
const JOIN_GRACE_MS = 250;
const PING_GRACE_MS = 1_000;
/** Longest leave() waits for the core to hand over its announcement (ms); normally well under 1. */
export const LEAVE_TIMEOUT_MS = 1_000;


export interface EngineInit {
  readonly transport: UdpTransport;
  readonly node: SwimNodeOptions;
  readonly replyTimeoutMs: number;
  readonly envelope: Envelope | null;
}

type PendingKind = "started" | "broadcast" | "left" | "snapshot" | "stats" | "stopped" | "join" | "ping" | "request" | "tags";

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
  progress?: (progress: ClusterRequestProgress) => void;
}

/** Counters of what the engine dropped, per mode. */
export interface DropCounts {
  datagramsIn: number;
  datagramsOut: number;
  events: number;
}

export abstract class EngineBase implements Engine {
  readonly localAddress: Address;
  readonly workers: number;
  protected readonly transport: UdpTransport;
  protected readonly config: SwimConfig;
  protected readonly nodeOptions: SwimNodeOptions;
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

  protected constructor(init: EngineInit, workers: number) {
    this.transport = init.transport;
    this.nodeOptions = init.node;
    this.config = init.node.config;
    this.localAddress = init.node.self;
    this.replyTimeoutMs = init.replyTimeoutMs;
    this.workers = workers;
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

  request(kind: number, payload: Uint8Array, timeoutMs: number, options: ClusterRequestOptions = {}): Promise<ClusterRequestResult> {
    const refused = this.refusal<ClusterRequestResult>();
    if (refused !== null) return refused;
    const { onProgress, ...start } = options;
    const extra = onProgress === undefined ? { answers: [] } : { answers: [], progress: onProgress };
    const { token, promise } = this.open<ClusterRequestResult>("request", timeoutMs + REQUEST_GRACE_MS, () => this.noReply("request"), extra);
    this.submitFor(token, { type: "request", token, kind, timeoutMs, payload, options: start });
    return promise;
  }

  setTags(tags: Uint8Array): Promise<TagsOutcome> {
    const refused = this.refusal<TagsOutcome>();
    if (refused !== null) return refused;
    const { token, promise } = this.open<TagsOutcome>("tags", this.replyTimeoutMs, () => this.noReply("tags"));
    this.submitFor(token, { type: "setTags", token, tags });
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

  /**
   * An event from the core: the outcome of one of this engine's requests settles it (and goes
   * no further); anything else goes to every listener.
   */
  protected deliverEvent(event: CoreEvent): void {
    if (this.state === "stopped") return;
    if (isRequestOutcome(event)) {
      this.settleOutcome(event);
      return;
    }
    for (const listener of this.listeners) {
      try {
        listener(event);
      } catch {
        this.counters.listenerErrors++;
      }
    }
  }

  /** A join, ping or cluster request's outcome (or part of it): settles or advances that request. */
  private settleOutcome(event: RequestOutcome): void {
    const p = this.pending.get(event.token);
    switch (event.type) {
      case "joinResult": {
        const join = p?.kind === "join" ? p.join : undefined;
        const i = join?.index.get(event.seed.key);
        if (join !== undefined && i !== undefined && join.ok[i] === undefined) {
          join.ok[i] = event.ok;
          if (--join.remaining === 0) this.settle(event.token, joinOutcomes(join));
        }
        return;
      }
      case "pingResult":
        if (p?.kind === "ping") this.settle(event.token, event.rttMs);
        return;
      case "requestAnswer":
        if (p?.kind === "request") {
          p.answers?.push({ from: event.from, payload: event.payload });
          this.progress(p, { type: "answer", from: event.from, payload: event.payload });
        }
        return;
      case "requestAck":
        if (p?.kind === "request") this.progress(p, { type: "ack", from: event.from });
        return;
      case "requestDone":
        if (p?.kind === "request") this.settle(event.token, { answers: p.answers ?? [], missing: [...event.missing] });
        return;
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
        } else {
          this.progress(p, { type: "started", targets: reply.outcome.targets });
        }
        return;
      case "tags":
        this.settle(reply.token, reply.outcome);
        return;
      case "snapshot":
        this.settle(reply.token, [...reply.members]);
        return;
      case "stats": {
        // A counter both the core's host and this thread report (seal.* in worker mode) is summed.
        const out: Record<string, number> = { ...reply.stats };
        for (const [name, value] of Object.entries(this.localStats())) out[name] = (out[name] ?? 0) + value;
        this.settle(reply.token, out);
        return;
      }
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

  private progress(p: Pending, progress: ClusterRequestProgress): void {
    if (p.progress === undefined) return;
    try {
      p.progress(progress);
    } catch {
      this.counters.listenerErrors++;
    }
  }

  /** Registers a request; its token pairs it with the reply. */
  protected open<T>(
    kind: PendingKind,
    timeoutMs: number,
    onTimeout: () => T | Error,
    extra: Partial<Pick<Pending, "members" | "join" | "answers" | "progress">> = {},
  ): { token: number; promise: Promise<T> } {
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

export function joinOutcomes(state: JoinState): JoinOutcome[] {
  return state.seeds.map((seed, i) => ({ seed, ok: state.ok[i] === true }));
}

