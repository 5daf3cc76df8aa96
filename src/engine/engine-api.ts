/**
 * src/engine/engine-api.ts: owns the engine's public face, shared by every mode: the Engine
 * interface, its options, result types and errors. createEngine() (src/engine/engine.ts) picks
 * the mode; src/engine/engine-base.ts holds what the modes share.
 */

import type { Address } from "../core/address.js";
import type { SwimConfig } from "../core/config.js";
import type { BroadcastOutcome, TagsOutcome } from "../core/node.js";
import type { RequestRefusal, RequestStartOptions } from "../core/requests.js";
import type { ClusterEvent, MemberInfo } from "../core/runtime.js";
import type { Envelope } from "../seal/envelope.js";
import type { EngineRingsConfig } from "../shm/index.js";

export { MAX_ENGINE_WORKERS } from "./limits.js";

export type { BroadcastOutcome } from "../core/node.js";
export type { ClusterEvent, CoreEvent, MemberInfo } from "../core/runtime.js";

export interface JoinOutcome {
  readonly seed: Address;
  /** The seed sent its member list in time. */
  readonly ok: boolean;
}

export type EngineEventListener = (event: ClusterEvent) => void;

/** A running TamTam member: one socket, one core, in either mode. */
export interface Engine {
  /** The advertised address: this member's identity in the cluster. */
  readonly localAddress: Address;
  /** Worker threads of the engine: 0 when the core runs inline; 1 the protocol worker alone; N: it and N - 1 seal/open workers. */
  readonly workers: number;
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
   * Sends a cluster request (see src/core/requests.ts) to every member alive now (or to
   * `options.targets`, with acknowledgements and relays as `options.answer` says) and resolves
   * with their answers and the members that did not answer within `timeoutMs` (the core
   * retries those meanwhile); `options.onProgress` hears of acknowledgements and answers as
   * they come. Rejects with ClusterRequestRefusedError when the core refuses it
   * (too large, too many in flight, ...).
   */
  request(kind: number, payload: Uint8Array, timeoutMs: number, options?: ClusterRequestOptions): Promise<ClusterRequestResult>;
  /** Replaces this member's tags (encoded, src/core/tags.ts); the outcome says whether the core took them. */
  setTags(tags: Uint8Array): Promise<TagsOutcome>;
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
  /**
   * Subscribes to what happens in the cluster (member changes, broadcasts, requests from other
   * members); returns the unsubscribe function. Listener errors are counted. The outcomes of
   * this engine's own join, ping and cluster requests settle those calls and reach no listener.
   */
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
  /**
   * Worker threads: 0 runs the core inline on the main thread; 1 (default) runs it on a worker
   * thread, which also seals and opens; N >= 2 adds N - 1 seal/open workers in front of it
   * (at most MAX_ENGINE_WORKERS).
   */
  readonly workers?: number;
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
  /**
   * With seal/open workers (`workers` >= 2): received datagrams per event-loop turn that may go
   * straight to the protocol worker while it sleeps, which then opens them itself (default 8;
   * 0: every datagram through the seal/open workers).
   */
  readonly directPerTurn?: number;
  /**
   * Seals outgoing and opens incoming datagrams (src/seal); needs `config.sealed`, which
   * reserves its room. Inline, the engine uses it on the main thread; with workers, each worker
   * builds its own from its settings and keys (kept live: the engine follows its keyring's
   * changes), sealing with nonces of one shared counter. Its drop reports go to its onDrop.
   */
  readonly envelope?: Envelope;
  /** Configured seeds, retried by the core while the cluster has lost members (SwimNodeOptions.seeds). */
  readonly seeds?: readonly Address[];
  /** Members of an earlier life (a snapshot): reconnect targets from the start (SwimNodeOptions.reconnectTargets). */
  readonly reconnectTargets?: readonly Address[];
  /** This member's tags at start, encoded (src/core/tags.ts); RangeError beyond maxTagsBytes(config). */
  readonly tags?: Uint8Array;
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

/** A cluster request's progress as it happens: started (with its target count), then acks and answers. */
export type ClusterRequestProgress =
  | { readonly type: "started"; readonly targets: number }
  | { readonly type: "ack"; readonly from: Address }
  | { readonly type: "answer"; readonly from: Address; readonly payload: Uint8Array };

export interface ClusterRequestOptions extends RequestStartOptions {
  /** Hears of the request's progress (listener errors are counted, never thrown). */
  readonly onProgress?: (progress: ClusterRequestProgress) => void;
}

export interface ClusterRequestResult {
  /** One answer per member that answered, in arrival order. */
  readonly answers: readonly ClusterAnswer[];
  /** The members asked that did not answer in time. */
  readonly missing: readonly Address[];
}

