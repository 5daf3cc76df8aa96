/**
 * src/api/agent-api.ts: what the gRPC service (and any other front end: the library, tests)
 * needs from a running agent, the types of what it takes and returns, and the ranges of what
 * callers may ask. The agent (src/agent) implements it over its engine; tests implement it with
 * a fake. Methods throw AgentError (src/api/errors.ts) for anything a caller did wrong or that
 * did not work out. Types and constants only, bundled wherever they are used (the agent's gRPC
 * layer, the CLI); src/api depends on neither src/agent nor src/rpc.
 */

import type { Address } from "../core/address.js";
import type { MemberInfo } from "../core/runtime.js";
import type { TagFilter, Tags } from "./tags.js";

export const LOG_LEVELS = ["all", "trace", "debug", "info", "warn", "error", "fatal", "off"] as const;
export type LogLevelName = (typeof LOG_LEVELS)[number];

/** Default wait for the members' confirmations of a key operation (ms). */
export const DEFAULT_KEYS_TIMEOUT_MS = 5_000;
/** Longest wait for a key operation a caller may ask for (ms). */
export const MAX_KEYS_TIMEOUT_MS = 60_000;
/** Shortest wait for a key operation a caller may ask for (ms). */
export const MIN_KEYS_TIMEOUT_MS = 100;
/** A query's time limit when the caller names none, and the range a caller may ask for (ms). */
export const DEFAULT_QUERY_TIMEOUT_MS = 5_000;
export const MIN_QUERY_TIMEOUT_MS = 100;
export const MAX_QUERY_TIMEOUT_MS = 600_000;

/** A member with the wall-clock facts front ends show. */
export interface MemberView {
  readonly info: MemberInfo;
  /** ms since this agent last heard from the member (or learned of it, if it never did). */
  readonly ageMs: number;
  /** Unix time (ms) of the member's last state change. */
  readonly changedAtEpochMs: number;
  /** ms until its flap damping is expected to end; 0 when it is not damped. */
  readonly dampedForMs: number;
  /** Its tags as last stated (empty: none known). */
  readonly tags: Tags;
}

/** This agent's tags after a change, and the incarnation of the statement that carries them. */
export interface TagsState {
  readonly tags: Tags;
  readonly incarnation: number;
}

/**
 * One subscriber's bounded queue of items (src/agent/fanout.ts): a reader that falls behind
 * loses its oldest items, counted in `dropped`. An async iterable that ends when closed.
 */
export interface ItemSubscription<T> extends AsyncIterable<T> {
  /** Items lost because this subscriber fell behind by more than its capacity. */
  readonly dropped: number;
  /** The oldest queued items, up to `maxItems`, as soon as there is one; null once closed. */
  nextBatch(maxItems: number): Promise<T[] | null>;
  close(): void;
}

/** A gossip key operation (src/agent/keys.ts). */
export type KeyOperation = "list" | "install" | "use" | "remove";

export interface KeyCount {
  /** "sha256:" + hex of the first 8 bytes of the key's SHA-256. */
  readonly fingerprint: string;
  readonly installed: number;
  readonly primary: number;
  /** Installed on this agent. */
  readonly local: boolean;
}

export interface KeyFailure {
  readonly member: Address;
  readonly reason: string;
}

export interface KeysOutcome {
  /** Members asked, this agent included. */
  readonly members: number;
  /** Members that confirmed, this agent included. */
  readonly confirmed: number;
  readonly keys: readonly KeyCount[];
  readonly failures: readonly KeyFailure[];
}

export interface QueryParams {
  readonly name: string;
  readonly payload: Uint8Array;
  readonly filters: readonly TagFilter[];
  /** Only these members (empty: all that match the filters). */
  readonly nodes: readonly Address[];
  readonly timeoutMs: number;
  readonly ack: boolean;
  readonly relayCount: number;
}

export type QueryEvent =
  | { readonly type: "ack"; readonly from: Address }
  | { readonly type: "response"; readonly from: Address; readonly payload: Uint8Array }
  | { readonly type: "error"; readonly from: Address; readonly error: string }
  | {
      readonly type: "summary";
      readonly asked: number;
      readonly acknowledged: number;
      readonly answered: number;
      readonly failed: number;
      readonly missing: readonly Address[];
      readonly elapsedMs: number;
    };

/** A query handed to a ServeQueries stream. */
export interface IncomingQuery {
  readonly id: bigint;
  readonly name: string;
  readonly payload: Uint8Array;
  readonly from: Address;
  readonly timeoutMs: number;
  readonly maxResponseBytes: number;
}

export interface AgentApi {
  /** This agent's advertised gossip address. */
  readonly localAddress: Address;
  /** Largest broadcast payload this agent accepts (bytes). */
  readonly maxBroadcastBytes: number;
  /** Asks `target` for its member list; resolves when it answered, throws NO_ANSWER otherwise. */
  join(target: Address): Promise<void>;
  /** Drops `target` from the local table only (the original `leave ADDR`). */
  forget(target: Address): Promise<void>;
  broadcast(payload: Uint8Array): Promise<void>;
  /** Round trip in ms; throws NO_ANSWER when `target` did not answer in time. */
  ping(target: Address): Promise<number>;
  members(): Promise<readonly MemberView[]>;
  /** Graceful leave of this agent: announce *left*, then shut down. */
  leaveCluster(): Promise<void>;
  setHeartbeatMs(ms: number): Promise<void>;
  setLogLevel(level: LogLevelName): void;
  stats(): Promise<Readonly<Record<string, number>>>;
  /** Broadcast payloads as they arrive; null when too many subscribers are connected. */
  subscribeBroadcasts(): ItemSubscription<Uint8Array> | null;
  /**
   * A gossip key operation on this agent (throws AgentError if it refuses), then, unless
   * `local`, on every alive member within `timeoutMs` (src/agent/keys.ts). `key` is null for list.
   */
  keys(op: KeyOperation, key: Uint8Array | null, options: { readonly local: boolean; readonly timeoutMs: number }): Promise<KeysOutcome>;
  /** Membership changes as they happen; null when too many subscribers are connected. */
  subscribeMembers(): ItemSubscription<MemberView> | null;
  /** Adds or replaces tags of this agent (`set`), then deletes `remove` keys; gossiped to every member. */
  changeTags(set: Tags, remove: readonly string[]): Promise<TagsState>;
  /** Runs a query; `emit` gets its events, the summary last (see src/agent/queries.ts). */
  query(params: QueryParams, emit: (event: QueryEvent) => void): Promise<void>;
  /** Queries this agent receives, for a program that answers them; null when too many streams are open. */
  serveQueries(names: readonly string[]): ItemSubscription<IncomingQuery> | null;
  /** A program's answer to a query it got from serveQueries; throws UNKNOWN_QUERY when it no longer waits. */
  respondQuery(id: bigint, payload: Uint8Array, error: string): void;
}
