/**
 * The simulator's invariant checkers and measurements, fed by the world's events:
 * - safety: while the network is fault-free, a live node is never declared dead and a node that
 *   left is never reported dead (under faults both are counted); incarnations only grow; a
 *   broadcast is delivered at most once per node; no datagram exceeds its budget;
 * - liveness and measurements: membership agreement per period (convergence curve), detection
 *   latency of crashed nodes (first and all observers), false suspicions and deaths, broadcast
 *   reach and dissemination curve, traffic per node, and a fingerprint of the whole trace.
 * Agreement is kept incrementally (per observer: live members it rightly and wrongly holds), so
 * checking it every period is O(N), not O(N^2).
 *
 * In a sharded simulation each shard has its own monitor: it observes the nodes that shard runs
 * and follows every node's life through the scenario actions that all shards see. `outcome()`
 * turns what it saw into plain data, and `mergeOutcomes` (src/sim/outcome.ts) adds the shards up
 * into the same result a single world gives.
 */

import type { CoreEvent } from "../core/runtime.js";
import { MemberState } from "../core/wire/messages.js";
import { FNV_OFFSET, fnv, type KillRecord, MAX_VIOLATIONS_KEPT, type ShardOutcome, type Violation, type ViolationKind } from "./outcome.js";
import { type ScenarioAction, simNodeTags } from "./scenario.js";
import { CutVisibility } from "./cut-visibility.js";
import { sameBytes } from "../core/tags.js";
import type { SimNode, World, WorldObserver } from "./world.js";

function isLive(state: MemberState | null | undefined): boolean {
  return state === MemberState.Alive || state === MemberState.Suspect;
}

export class Monitor implements WorldObserver {
  readonly violations: Violation[] = [];
  readonly violationCounts: Partial<Record<ViolationKind, number>> = {};
  /** Every observer's suspect transition about a running, unpaused node. */
  falseSuspectEvents = 0;
  /** Every observer's dead transition about a running, unpaused node. */
  falseDeadEvents = 0;
  /** Dead transitions about nodes that had left gracefully. */
  leftReportedDead = 0;
  memberEvents = 0;
  memberEventsShown = 0;
  memberEventsShownAboutFlapping = 0;
  /** Nodes whose incoming traffic is lost on and off ("deafen" actions). */
  private readonly flapping = new Set<number>();
  /** How fast the first partition is seen across the cut. */
  private readonly cut = new CutVisibility();
  dampingStarted = 0;
  /** Distinct (member, incarnation) suspicions of a running, unpaused node (merged across shards). */
  private readonly suspicionEpisodes = new Set<string>();
  /** Distinct (member, incarnation) deaths declared of a running, unpaused node. */
  private readonly deathEpisodes = new Set<string>();
  /** Per period (index 0 = period 1), over this shard's nodes: (observer, member) pairs that should be live. */
  private readonly periodPairs: number[] = [];
  /** Per period: of those pairs, the ones rightly held live. */
  private readonly periodKnown: number[] = [];
  /** Per period: this shard's member nodes that did not hold exactly the running nodes as live. */
  private readonly periodDisagreeing: number[] = [];
  /** End of the last fault (ms): agreement is measured from here on. */
  lastFaultEndMs = 0;
  /** No loss, partition or pause anywhere in the scenario: the strict safety checks apply. */
  readonly faultFreeNetwork: boolean;
  readonly kills: KillRecord[] = [];
  /** Broadcasts sent by this shard's nodes, by id `origin/epoch/seq`. */
  private readonly broadcastsSent = new Map<string, { readonly origin: number; readonly sentAtMs: number }>();
  /** Deliveries to this shard's nodes, by broadcast id: node -> time (ms). */
  private readonly deliveries = new Map<string, Map<number, number>>();
  private readonly correct: Int32Array;
  private readonly wrong: Int32Array;
  /** Whether each node is a member in truth (running, not left; a paused node still counts). */
  private readonly truthUp: Uint8Array;
  private upCount = 0;
  private readonly paused: Uint8Array;
  /** Time until which each node counts as disrupted (killed, restarted, paused, left). */
  private readonly disruptedUntilMs: Float64Array;
  private readonly leftAtMs: Float64Array;
  private readonly lifeIncarnation: Float64Array;
  /** Per node: fingerprint of its membership events, deliveries and actions (this shard's nodes). */
  private readonly nodeTraces: Uint32Array;
  /** Fingerprint of the network-wide actions (partitions, loss), the same in every shard. */
  private globalTrace = FNV_OFFSET;

  constructor(private readonly world: World) {
    const n = world.nodes.length;
    this.correct = new Int32Array(n);
    this.wrong = new Int32Array(n);
    this.truthUp = new Uint8Array(n);
    this.paused = new Uint8Array(n);
    this.disruptedUntilMs = new Float64Array(n);
    this.leftAtMs = new Float64Array(n).fill(-1);
    this.lifeIncarnation = new Float64Array(n);
    this.nodeTraces = new Uint32Array(n).fill(FNV_OFFSET);
    const s = world.scenario;
    this.faultFreeNetwork =
      s.network.lossRate === 0 && !s.actions.some((a) => a.kind === "partition" || a.kind === "loss" || a.kind === "pause" || a.kind === "deafen");
    for (const a of s.actions) {
      const end = a.kind === "partition" || a.kind === "loss" || a.kind === "deafen" ? a.untilMs : a.kind === "pause" ? a.atMs + a.durationMs : a.atMs;
      this.lastFaultEndMs = Math.max(this.lastFaultEndMs, a.kind === "broadcast" ? 0 : end);
    }
  }

  onWarmStart(world: World): void {
    const n = world.nodes.length;
    this.truthUp.fill(1);
    this.upCount = n;
    for (const node of world.localNodes) {
      this.correct[node.index] = n - 1;
      this.mixNode(node.index, 0, WARM_START_MARK);
    }
  }

  onAction(world: World, action: ScenarioAction | { readonly kind: "stop" | "resume"; readonly node: number }): void {
    const mark = action.kind.length * 7919 + ("node" in action ? action.node : -1);
    if (!("node" in action)) this.globalTrace = fnv(fnv(this.globalTrace, world.nowMs * 1000), mark);
    else if ((world.nodes[action.node] as SimNode).owned) this.mixNode(action.node, world.nowMs, mark);
    switch (action.kind) {
      case "restart": {
        const i = action.node;
        for (const k of this.kills) if (k.node === i && k.restartedAtMs === null) k.restartedAtMs = world.nowMs;
        this.correct[i] = 0;
        this.wrong[i] = 0;
        this.paused[i] = 0;
        this.leftAtMs[i] = -1;
        this.lifeIncarnation[i] = (world.nodes[i] as SimNode).lifeIncarnation;
        this.disruptedUntilMs[i] = world.nowMs;
        this.setTruth(world, i, true);
        return;
      }
      case "kill": {
        const i = action.node;
        this.disruptedUntilMs[i] = Infinity;
        if (this.truthUp[i] === 1) {
          const key = (world.nodes[i] as SimNode).address.key;
          const knownBy = new Set<number>();
          for (const n of world.localNodes) if (n.index !== i && n.core !== null && isLive(n.core.stateOf(key))) knownBy.add(n.index);
          this.kills.push({ node: i, atMs: world.nowMs, restartedAtMs: null, detectedAtMs: new Map(), knownBy });
        }
        this.setTruth(world, i, false);
        return;
      }
      case "leave":
        this.disruptedUntilMs[action.node] = Infinity;
        this.leftAtMs[action.node] = world.nowMs;
        this.setTruth(world, action.node, false);
        return;
      case "pause":
        this.paused[action.node] = 1;
        this.disruptedUntilMs[action.node] = world.nowMs + action.durationMs;
        return;
      case "resume":
        this.paused[action.node] = 0;
        return;
      case "deafen":
        this.flapping.add(action.node);
        return;
      case "partition":
        this.cut.start(world, action.splitAt, (i) => this.truthUp[i] === 1 && this.paused[i] === 0);
        return;
      case "stop":
      case "loss":
      case "broadcast":
        return;
    }
  }

  onBroadcastSent(world: World, node: SimNode, key: string): void {
    this.broadcastsSent.set(key, { origin: node.index, sentAtMs: world.nowMs });
  }

  onCoreEvent(world: World, node: SimNode, event: CoreEvent): void {
    const o = node.index;
    switch (event.type) {
      case "member": {
        const s = world.byKey.get(event.member.address.key);
        if (s === undefined || s === o) return;
        const state = event.member.state;
        const inc = event.member.incarnation;
        this.cut.see(o, s, state, world.nowMs);
        this.memberEvents++;
        if (!event.member.damped || event.dampingChanged) {
          this.memberEventsShown++;
          if (this.flapping.has(s)) this.memberEventsShownAboutFlapping++;
        }
        if (event.member.damped && event.dampingChanged) this.dampingStarted++;
        this.mixNode(o, world.nowMs, s, state, inc);
        if (event.previousIncarnation !== null && inc < event.previousIncarnation) {
          this.violate(world, "INCARNATION_DECREASED", `node ${o} moved node ${s} from incarnation ${event.previousIncarnation} to ${inc}`);
        }
        const was = isLive(event.previous);
        const now = isLive(state);
        if (was !== now) {
          const delta = now ? 1 : -1;
          if (this.truthUp[s] === 1) this.correct[o] = (this.correct[o] as number) + delta;
          else this.wrong[o] = (this.wrong[o] as number) + delta;
        }
        // The statement is about the subject's current life, which is running and not paused.
        const aboutRunningLife = this.truthUp[s] === 1 && this.paused[s] === 0 && inc >= (this.lifeIncarnation[s] as number);
        if (state === MemberState.Suspect && event.previous !== MemberState.Suspect && aboutRunningLife) {
          this.falseSuspectEvents++;
          this.suspicionEpisodes.add(`${s}/${inc}`);
        }
        if (state === MemberState.Dead) {
          if (aboutRunningLife) {
            this.falseDeadEvents++;
            this.deathEpisodes.add(`${s}/${inc}`);
            if (this.faultFreeNetwork) {
              this.violate(world, "LIVE_DECLARED_DEAD", `node ${o} declared running node ${s} dead (incarnation ${inc})`);
            }
          }
          const leftAt = this.leftAtMs[s] as number;
          if (leftAt >= 0 && this.truthUp[s] === 0 && inc >= (this.lifeIncarnation[s] as number)) {
            // Under loss or a partition a leave may not reach everyone before suspicion ends.
            this.leftReportedDead++;
            if (this.faultFreeNetwork) this.violate(world, "LEFT_REPORTED_DEAD", `node ${o} reported node ${s}, which left at ${leftAt} ms, dead`);
          }
          for (const k of this.kills) {
            if (k.node === s && !k.detectedAtMs.has(o)) k.detectedAtMs.set(o, world.nowMs);
          }
        }
        return;
      }
      case "memberRemoved":
        return;
      case "broadcast": {
        const key = `${event.origin.key}/${event.epoch}/${event.seq}`;
        this.mixNode(o, world.nowMs, event.seq);
        let got = this.deliveries.get(key);
        if (got === undefined) {
          got = new Map();
          this.deliveries.set(key, got);
        }
        if (got.has(o)) {
          this.violate(world, "DUPLICATE_DELIVERY", `node ${o} got broadcast ${key} twice`);
          return;
        }
        got.set(o, world.nowMs);
        return;
      }
      case "joinResult":
      case "pingResult":
        return;
    }
  }

  onPeriod(world: World, period: number): void {
    let pairs = 0;
    let known = 0;
    let disagreeing = 0;
    const up = this.upCount;
    for (const n of world.localNodes) {
      const i = n.index;
      if (this.truthUp[i] !== 1 || n.core === null || this.paused[i] === 1) {
        if (this.truthUp[i] === 1) disagreeing++;
        continue;
      }
      pairs += up - 1;
      known += this.correct[i] as number;
      if (this.correct[i] !== up - 1 || this.wrong[i] !== 0) disagreeing++;
    }
    void period;
    this.periodPairs.push(pairs);
    this.periodKnown.push(known);
    this.periodDisagreeing.push(disagreeing);
    for (const n of world.localNodes) {
      if (n.maxDatagramBytes > world.config.maxPacketBytes) {
        this.violate(world, "OVERSIZE_DATAGRAM", `node ${n.index} sent a ${n.maxDatagramBytes}-byte datagram`);
        n.maxDatagramBytes = 0;
      }
    }
  }

  /** What this shard saw, as plain (structured-cloneable) data. */
  outcome(): ShardOutcome {
    const w = this.world;
    let datagramsSent = 0;
    let bytesSent = 0;
    let maxDatagramBytes = 0;
    let protocolErrors = 0;
    let broadcastsRepaired = 0;
    const nodeTraces: number[] = [];
    // Tags at the end: each running node's view of every other running node's tags.
    let tagPairs = 0;
    let tagsKnown = 0;
    if (w.scenario.tags) {
      for (const n of w.localNodes) {
        if (!n.running || n.left || n.core === null) continue;
        for (const m of w.nodes) {
          if (m === n || !m.running || m.left) continue;
          tagPairs++;
          const tags = n.core.member(m.address.key)?.tags ?? null;
          if (tags !== null && sameBytes(tags, simNodeTags(m.index))) tagsKnown++;
        }
      }
    }
    for (const n of w.localNodes) {
      datagramsSent += n.datagramsSent;
      bytesSent += n.bytesSent;
      maxDatagramBytes = Math.max(maxDatagramBytes, n.maxDatagramBytes, n.largestDatagramBytes);
      protocolErrors += n.core?.stats.protocolErrors ?? 0;
      broadcastsRepaired += n.core?.stats.broadcastsRepaired ?? 0;
      nodeTraces.push(n.index, this.nodeTraces[n.index] as number);
    }
    return {
      shard: w.placement.shard,
      shards: w.placement.shards,
      nodes: w.nodes.length,
      periodPairs: this.periodPairs,
      periodKnown: this.periodKnown,
      periodDisagreeing: this.periodDisagreeing,
      lastFaultEndMs: this.lastFaultEndMs,
      truthUp: Array.from(this.truthUp),
      disruptedUntilMs: Array.from(this.disruptedUntilMs),
      kills: this.kills.map((k) => ({
        node: k.node,
        atMs: k.atMs,
        restartedAtMs: k.restartedAtMs,
        knownBy: [...k.knownBy],
        detected: [...k.detectedAtMs],
      })),
      broadcastsSent: [...this.broadcastsSent].map(([key, b]) => ({ key, origin: b.origin, sentAtMs: b.sentAtMs })),
      deliveries: [...this.deliveries].map(([key, got]) => ({ key, deliveredAtMs: [...got] })),
      suspicionEpisodes: [...this.suspicionEpisodes],
      deathEpisodes: [...this.deathEpisodes],
      falseSuspectEvents: this.falseSuspectEvents,
      falseDeadEvents: this.falseDeadEvents,
      leftReportedDead: this.leftReportedDead,
      memberEvents: this.memberEvents,
      memberEventsShown: this.memberEventsShown,
      memberEventsShownAboutFlapping: this.memberEventsShownAboutFlapping,
      dampingStarted: this.dampingStarted,
      violationCounts: { ...this.violationCounts },
      violations: [...this.violations],
      datagramsSent,
      bytesSent,
      maxDatagramBytes,
      protocolErrors,
      broadcastsRepaired,
      datagramsDropped: w.datagramsDropped,
      datagramsToShards: w.datagramsToShards,
      eventsProcessed: w.eventsProcessed,
      tagPairs,
      tagsKnown,
      globalTrace: this.globalTrace,
      cut: this.cut.outcome(),
      nodeTraces,
    };
  }

  private setTruth(world: World, s: number, up: boolean): void {
    if ((this.truthUp[s] === 1) === up) return;
    this.truthUp[s] = up ? 1 : 0;
    this.upCount += up ? 1 : -1;
    const key = (world.nodes[s] as SimNode).address.key;
    for (const n of world.localNodes) {
      if (n.index === s || n.core === null) continue;
      if (!isLive(n.core.stateOf(key))) continue;
      const o = n.index;
      if (up) {
        this.wrong[o] = (this.wrong[o] as number) - 1;
        this.correct[o] = (this.correct[o] as number) + 1;
      } else {
        this.correct[o] = (this.correct[o] as number) - 1;
        this.wrong[o] = (this.wrong[o] as number) + 1;
      }
    }
  }

  private violate(world: World, kind: ViolationKind, detail: string): void {
    this.violationCounts[kind] = (this.violationCounts[kind] ?? 0) + 1;
    if (this.violations.length < MAX_VIOLATIONS_KEPT) this.violations.push({ kind, atMs: world.nowMs, detail });
  }

  /** Mixes an event at `atMs` (numbers `a`, `b`, ...) into node `i`'s fingerprint. */
  private mixNode(i: number, atMs: number, ...values: number[]): void {
    let h = fnv(this.nodeTraces[i] as number, atMs * 1000);
    for (const v of values) h = fnv(h, v);
    this.nodeTraces[i] = h;
  }
}

/** Marks a warm start in a node's fingerprint. */
const WARM_START_MARK = 0x5741524d;
