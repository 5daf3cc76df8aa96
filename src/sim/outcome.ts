/**
 * What a simulation observed, as plain data: one ShardOutcome per shard (what its monitor saw
 * of the nodes it ran, plus every node's life, which all shards follow), and mergeOutcomes,
 * which adds the shards up into one SimOutcome. A single-shard run goes through the same merge,
 * so 1, 2 or N shards give the same SimOutcome, and so the same report, for the same scenario.
 */

import { type CutOutcome, slowestObserver } from "./cut-visibility.js";

/** FNV-1a offset basis: the fingerprint of nothing. */
export const FNV_OFFSET = 0x811c9dc5;

/** One FNV-1a step over the four low bytes of floor(x) (as u32). */
export function fnv(hash: number, x: number): number {
  let h = hash;
  let v = Math.floor(x) >>> 0;
  for (let i = 0; i < 4; i++) {
    h ^= v & 0xff;
    h = Math.imul(h, 0x01000193);
    v >>>= 8;
  }
  return h >>> 0;
}

export type ViolationKind =
  | "LIVE_DECLARED_DEAD"
  | "INCARNATION_DECREASED"
  | "LEFT_REPORTED_DEAD"
  | "DUPLICATE_DELIVERY"
  | "OVERSIZE_DATAGRAM";

export interface Violation {
  readonly kind: ViolationKind;
  readonly atMs: number;
  readonly detail: string;
}

/** Violations kept in full (the rest are only counted). */
export const MAX_VIOLATIONS_KEPT = 50;

export interface BroadcastRecord {
  readonly origin: number;
  readonly sentAtMs: number;
  /** node index -> delivery time (ms) */
  readonly deliveredAtMs: Map<number, number>;
}

export interface KillRecord {
  readonly node: number;
  readonly atMs: number;
  /** Set when the node was started again: detection is then measured only up to that point. */
  restartedAtMs: number | null;
  /** observer -> time (ms) it first held the node dead */
  readonly detectedAtMs: Map<number, number>;
  /** Observers that held the node live when it crashed: only they can detect its death. */
  readonly knownBy: Set<number>;
}

/** Counters that add up over the shards (maxDatagramBytes: the largest). */
export interface SimCounters {
  /** Every observer's suspect transition about a running, unpaused node. */
  readonly falseSuspectEvents: number;
  /** Every observer's dead transition about a running, unpaused node. */
  readonly falseDeadEvents: number;
  /** Dead transitions about nodes that had left gracefully. */
  readonly leftReportedDead: number;
  /** Every member event of every observer about another node (its state, incarnation or damping changed). */
  readonly memberEvents: number;
  /** Those an agent shows Monitor subscribers: not about a damped member, or starting or ending its damping. */
  readonly memberEventsShown: number;
  /** Those shown about nodes whose incoming traffic was lost on and off (deafened). */
  readonly memberEventsShownAboutFlapping: number;
  /** Damping episodes started, over all observers. */
  readonly dampingStarted: number;
  readonly datagramsSent: number;
  readonly bytesSent: number;
  readonly maxDatagramBytes: number;
  readonly protocolErrors: number;
  /** Broadcasts first delivered by a REPAIR datagram (broadcast repair), at nodes running at the end. */
  readonly broadcastsRepaired: number;
  readonly datagramsDropped: number;
  /** Datagrams that crossed from one shard to another (0 with one shard). */
  readonly datagramsToShards: number;
  readonly eventsProcessed: number;
  /** With tags: (running node, other running node) pairs at the end, and those where the node held the other's tags. */
  readonly tagPairs: number;
  readonly tagsKnown: number;
}

const SUMMED_COUNTERS = [
  "falseSuspectEvents",
  "falseDeadEvents",
  "leftReportedDead",
  "memberEvents",
  "memberEventsShown",
  "memberEventsShownAboutFlapping",
  "dampingStarted",
  "datagramsSent",
  "bytesSent",
  "protocolErrors",
  "broadcastsRepaired",
  "datagramsDropped",
  "datagramsToShards",
  "eventsProcessed",
  "tagPairs",
  "tagsKnown",
] as const satisfies readonly (keyof SimCounters)[];

/** One shard's observations; structured-cloneable (it crosses from a worker thread). */
export interface ShardOutcome extends SimCounters {
  readonly shard: number;
  readonly shards: number;
  readonly nodes: number;
  /** Per period (index 0 = period 1), sums over the shard's nodes; see Monitor. */
  readonly periodPairs: readonly number[];
  readonly periodKnown: readonly number[];
  readonly periodDisagreeing: readonly number[];
  readonly lastFaultEndMs: number;
  /** Every node's truth at the end (the same in every shard). */
  readonly truthUp: readonly number[];
  readonly disruptedUntilMs: readonly number[];
  /** Crashes in scenario order (the same list in every shard), with this shard's observers. */
  readonly kills: readonly {
    readonly node: number;
    readonly atMs: number;
    readonly restartedAtMs: number | null;
    readonly knownBy: readonly number[];
    readonly detected: readonly (readonly [number, number])[];
  }[];
  readonly broadcastsSent: readonly { readonly key: string; readonly origin: number; readonly sentAtMs: number }[];
  readonly deliveries: readonly { readonly key: string; readonly deliveredAtMs: readonly (readonly [number, number])[] }[];
  readonly suspicionEpisodes: readonly string[];
  readonly deathEpisodes: readonly string[];
  readonly violationCounts: Partial<Record<ViolationKind, number>>;
  readonly violations: readonly Violation[];
  readonly globalTrace: number;
  /** How fast the first partition was seen by this shard's observers. */
  readonly cut: CutOutcome | null;
  /** Pairs (node index, fingerprint) of the shard's nodes, flattened. */
  readonly nodeTraces: readonly number[];
}

/** A whole simulation's observations, merged from its shards. */
export interface SimOutcome extends SimCounters {
  readonly nodes: number;
  readonly shards: number;
  /** Fraction of (node, member) pairs rightly known as live, per period. */
  readonly knownCurve: readonly number[];
  /** Whether every running node held exactly the running nodes as live, per period. */
  readonly agreeCurve: readonly boolean[];
  readonly lastFaultEndMs: number;
  readonly kills: readonly KillRecord[];
  /** Broadcasts sent, by id, with their deliveries at every node. */
  readonly broadcasts: ReadonlyMap<string, BroadcastRecord>;
  /** Distinct (member, incarnation) suspicions of a running, unpaused node. */
  readonly falseSuspicions: number;
  /** Distinct (member, incarnation) deaths declared of a running, unpaused node. */
  readonly falseDeaths: number;
  readonly violationCounts: Partial<Record<ViolationKind, number>>;
  /** The first violations, in time order. */
  readonly violations: readonly Violation[];
  /** Fingerprint of every node's events, in node order: equal traces, equal runs. */
  readonly traceHash: string;
  readonly truthUp: readonly number[];
  readonly disruptedUntilMs: readonly number[];
  /** The first partition: ms after it began until every cross pair was held non-alive, and dead (null: not all were). */
  readonly cutSeen: { readonly nonAliveMs: number | null; readonly deadMs: number | null; readonly crossPairs: number } | null;
}

export function mergeOutcomes(shards: readonly ShardOutcome[]): SimOutcome {
  const first = shards[0];
  if (first === undefined) throw new RangeError("no shard outcomes to merge");
  const sorted = [...shards].sort((a, b) => a.shard - b.shard);
  sorted.forEach((s, i) => {
    if (s.shard !== i || s.shards !== sorted.length || s.nodes !== first.nodes) {
      throw new RangeError(`shard outcomes do not fit together (shard ${s.shard} of ${s.shards}, ${s.nodes} nodes)`);
    }
  });

  const periods = first.periodPairs.length;
  const knownCurve: number[] = [];
  const agreeCurve: boolean[] = [];
  for (let p = 0; p < periods; p++) {
    let pairs = 0;
    let known = 0;
    let disagreeing = 0;
    for (const s of sorted) {
      pairs += s.periodPairs[p] ?? 0;
      known += s.periodKnown[p] ?? 0;
      disagreeing += s.periodDisagreeing[p] ?? 0;
    }
    knownCurve.push(pairs === 0 ? 1 : known / pairs);
    agreeCurve.push(disagreeing === 0);
  }

  const kills: KillRecord[] = first.kills.map((k) => ({
    node: k.node,
    atMs: k.atMs,
    restartedAtMs: k.restartedAtMs,
    detectedAtMs: new Map(),
    knownBy: new Set(),
  }));
  const broadcasts = new Map<string, BroadcastRecord>();
  for (const s of sorted) {
    for (const b of s.broadcastsSent) broadcasts.set(b.key, { origin: b.origin, sentAtMs: b.sentAtMs, deliveredAtMs: new Map() });
  }
  const suspicionEpisodes = new Set<string>();
  const deathEpisodes = new Set<string>();
  const violationCounts: Partial<Record<ViolationKind, number>> = {};
  const violations: Violation[] = [];
  const traces = new Uint32Array(first.nodes);
  const counters: Record<keyof SimCounters, number> = {
    falseSuspectEvents: 0,
    falseDeadEvents: 0,
    leftReportedDead: 0,
    memberEvents: 0,
    memberEventsShown: 0,
    memberEventsShownAboutFlapping: 0,
    dampingStarted: 0,
    datagramsSent: 0,
    bytesSent: 0,
    maxDatagramBytes: 0,
    protocolErrors: 0,
    broadcastsRepaired: 0,
    datagramsDropped: 0,
    datagramsToShards: 0,
    eventsProcessed: 0,
    tagPairs: 0,
    tagsKnown: 0,
  };
  for (const s of sorted) {
    s.kills.forEach((k, i) => {
      const merged = kills[i];
      if (merged === undefined || merged.node !== k.node) throw new RangeError("shards saw different crashes");
      for (const o of k.knownBy) merged.knownBy.add(o);
      for (const [o, t] of k.detected) merged.detectedAtMs.set(o, t);
    });
    for (const d of s.deliveries) {
      const rec = broadcasts.get(d.key);
      if (rec === undefined) continue;
      for (const [o, t] of d.deliveredAtMs) rec.deliveredAtMs.set(o, t);
    }
    for (const e of s.suspicionEpisodes) suspicionEpisodes.add(e);
    for (const e of s.deathEpisodes) deathEpisodes.add(e);
    for (const [kind, count] of Object.entries(s.violationCounts) as [ViolationKind, number][]) {
      violationCounts[kind] = (violationCounts[kind] ?? 0) + count;
    }
    violations.push(...s.violations);
    for (let i = 0; i + 1 < s.nodeTraces.length; i += 2) traces[s.nodeTraces[i] as number] = s.nodeTraces[i + 1] as number;
    for (const key of SUMMED_COUNTERS) counters[key] += s[key];
    counters.maxDatagramBytes = Math.max(counters.maxDatagramBytes, s.maxDatagramBytes);
  }
  violations.sort((a, b) => a.atMs - b.atMs || (a.kind < b.kind ? -1 : a.kind > b.kind ? 1 : 0) || (a.detail < b.detail ? -1 : a.detail > b.detail ? 1 : 0));
  let trace = fnv(FNV_OFFSET, first.globalTrace);
  for (const t of traces) trace = fnv(trace, t);

  return {
    nodes: first.nodes,
    shards: sorted.length,
    knownCurve,
    agreeCurve,
    lastFaultEndMs: first.lastFaultEndMs,
    kills,
    broadcasts,
    ...counters,
    falseSuspicions: suspicionEpisodes.size,
    falseDeaths: deathEpisodes.size,
    violationCounts,
    violations: violations.slice(0, MAX_VIOLATIONS_KEPT),
    traceHash: trace.toString(16).padStart(8, "0"),
    truthUp: first.truthUp,
    disruptedUntilMs: first.disruptedUntilMs,
    cutSeen: slowestObserver(sorted.map((s) => s.cut)),
  };
}

/** Nodes that were running, unpaused and in the same life from `sinceMs` to the end. */
export function steadyNodes(outcome: SimOutcome, sinceMs: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < outcome.nodes; i++) {
    if (outcome.truthUp[i] === 1 && (outcome.disruptedUntilMs[i] as number) <= sinceMs) out.push(i);
  }
  return out;
}
