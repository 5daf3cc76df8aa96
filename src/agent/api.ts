/**
 * What the gRPC service (and any other front end) needs from a running agent, and the ranges
 * of what callers may ask. The agent implements it over its engine; tests implement it with a
 * fake. Methods throw AgentError (src/rpc/agent-error.ts) for anything a caller did wrong or
 * that did not work out. Types and constants only: the agent and its gRPC layer, two bundles,
 * both use it.
 */

import type { Address } from "../core/address.js";
import type { MemberInfo } from "../core/runtime.js";
import type { Subscription } from "./fanout.js";
import type { KeyOperation, KeysOutcome } from "./keys.js";
import type { LogLevelName } from "./options.js";
import type { IncomingQuery, QueryEvent, QueryParams } from "./queries.js";
import type { Tags } from "./tags.js";

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
  subscribeBroadcasts(): Subscription<Uint8Array> | null;
  /**
   * A gossip key operation on this agent (throws AgentError if it refuses), then, unless
   * `local`, on every alive member within `timeoutMs` (src/agent/keys.ts). `key` is null for list.
   */
  keys(op: KeyOperation, key: Uint8Array | null, options: { readonly local: boolean; readonly timeoutMs: number }): Promise<KeysOutcome>;
  /** Membership changes as they happen; null when too many subscribers are connected. */
  subscribeMembers(): Subscription<MemberView> | null;
  /** Adds or replaces tags of this agent (`set`), then deletes `remove` keys; gossiped to every member. */
  changeTags(set: Tags, remove: readonly string[]): Promise<TagsState>;
  /** Runs a query; `emit` gets its events, the summary last (see src/agent/queries.ts). */
  query(params: QueryParams, emit: (event: QueryEvent) => void): Promise<void>;
  /** Queries this agent receives, for a program that answers them; null when too many streams are open. */
  serveQueries(names: readonly string[]): Subscription<IncomingQuery> | null;
  /** A program's answer to a query it got from serveQueries; throws UNKNOWN_QUERY when it no longer waits. */
  respondQuery(id: bigint, payload: Uint8Array, error: string): void;
}
