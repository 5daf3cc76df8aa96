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
 */

import type { CoreEvent } from "../core/runtime.js";
import { MemberState } from "../core/wire/messages.js";
import type { ScenarioAction } from "./scenario.js";
import type { SimNode, World, WorldObserver } from "./world.js";

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

const MAX_VIOLATIONS_KEPT = 50;

interface BroadcastRecord {
  readonly origin: number;
  readonly sentAtMs: number;
  /** node index -> delivery time (ms) */
  readonly deliveredAtMs: Map<number, number>;
}

interface KillRecord {
  readonly node: number;
  readonly atMs: number;
  /** Set when the node was started again: detection is then measured only up to that point. */
  restartedAtMs: number | null;
  /** observer -> time (ms) it first held the node dead */
  readonly detectedAtMs: Map<number, number>;
  /** Observers that held the node live when it crashed: only they can detect its death. */
  readonly knownBy: Set<number>;
}

function isLive(state: MemberState | null | undefined): boolean {
  return state === MemberState.Alive || state === MemberState.Suspect;
}

export class Monitor implements WorldObserver {
  readonly violations: Violation[] = [];
  readonly violationCounts: Partial<Record<ViolationKind, number>> = {};
  /** Distinct (member, incarnation) suspicions of a running, unpaused node. */
  falseSuspicions = 0;
  /** Every observer's suspect transition about a running, unpaused node. */
  falseSuspectEvents = 0;
  /** Distinct (member, incarnation) deaths declared of a running, unpaused node. */
  falseDeaths = 0;
  /** Every observer's dead transition about a running, unpaused node. */
  falseDeadEvents = 0;
  /** Dead transitions about nodes that had left gracefully. */
  leftReportedDead = 0;
  private readonly suspicionEpisodes = new Set<string>();
  private readonly deathEpisodes = new Set<string>();
  /** Fraction of (observer, member) pairs rightly held live, per period (index 0 = period 1). */
  readonly knownCurve: number[] = [];
  /** Whether every running node held exactly the running nodes as live, per period. */
  readonly agreeCurve: boolean[] = [];
  /** End of the last fault (ms): agreement is measured from here on. */
  lastFaultEndMs = 0;
  /** No loss, partition or pause anywhere in the scenario: the strict safety checks apply. */
  readonly faultFreeNetwork: boolean;
  readonly kills: KillRecord[] = [];
  readonly broadcasts = new Map<string, BroadcastRecord>();
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
  private trace = 0x811c9dc5;

  constructor(world: World) {
    const n = world.nodes.length;
    this.correct = new Int32Array(n);
    this.wrong = new Int32Array(n);
    this.truthUp = new Uint8Array(n);
    this.paused = new Uint8Array(n);
    this.disruptedUntilMs = new Float64Array(n);
    this.leftAtMs = new Float64Array(n).fill(-1);
    this.lifeIncarnation = new Float64Array(n);
    const s = world.scenario;
    this.faultFreeNetwork =
      s.network.lossRate === 0 && !s.actions.some((a) => a.kind === "partition" || a.kind === "loss" || a.kind === "pause");
    for (const a of s.actions) {
      const end = a.kind === "partition" || a.kind === "loss" ? a.untilMs : a.kind === "pause" ? a.atMs + a.durationMs : a.atMs;
      this.lastFaultEndMs = Math.max(this.lastFaultEndMs, a.kind === "broadcast" ? 0 : end);
    }
  }

  /** Fingerprint of every membership event and delivery so far (FNV-1a over their numbers). */
  get traceHash(): string {
    return (this.trace >>> 0).toString(16).padStart(8, "0");
  }

  onAction(world: World, action: ScenarioAction | { readonly kind: "stop" | "resume"; readonly node: number }): void {
    this.mix(world.nowMs * 1000);
    this.mix(action.kind.length * 7919 + ("node" in action ? action.node : -1));
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
          for (const n of world.nodes) if (n.index !== i && n.core !== null && isLive(n.core.stateOf(key))) knownBy.add(n.index);
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
      case "stop":
      case "partition":
      case "loss":
      case "broadcast":
        return;
    }
  }

  onBroadcastSent(world: World, node: SimNode, key: string): void {
    this.broadcasts.set(key, { origin: node.index, sentAtMs: world.nowMs, deliveredAtMs: new Map() });
  }

  onCoreEvent(world: World, node: SimNode, event: CoreEvent): void {
    const o = node.index;
    switch (event.type) {
      case "member": {
        const s = world.byKey.get(event.member.address.key);
        if (s === undefined || s === o) return;
        const state = event.member.state;
        const inc = event.member.incarnation;
        this.mix(world.nowMs * 1000);
        this.mix(o);
        this.mix(s);
        this.mix(state);
        this.mix(inc);
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
          const episode = `${s}/${inc}`;
          if (!this.suspicionEpisodes.has(episode)) {
            this.suspicionEpisodes.add(episode);
            this.falseSuspicions++;
          }
        }
        if (state === MemberState.Dead) {
          if (aboutRunningLife) {
            this.falseDeadEvents++;
            const episode = `${s}/${inc}`;
            if (!this.deathEpisodes.has(episode)) {
              this.deathEpisodes.add(episode);
              this.falseDeaths++;
            }
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
        this.mix(world.nowMs * 1000);
        this.mix(o);
        this.mix(event.seq);
        const rec = this.broadcasts.get(key);
        if (rec === undefined) return;
        if (rec.deliveredAtMs.has(o)) {
          this.violate(world, "DUPLICATE_DELIVERY", `node ${o} got broadcast ${key} twice`);
          return;
        }
        rec.deliveredAtMs.set(o, world.nowMs);
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
    let agree = true;
    const up = this.upCount;
    for (const n of world.nodes) {
      const i = n.index;
      if (this.truthUp[i] !== 1 || n.core === null || this.paused[i] === 1) {
        if (this.truthUp[i] === 1) agree = false;
        continue;
      }
      pairs += up - 1;
      known += this.correct[i] as number;
      if (this.correct[i] !== up - 1 || this.wrong[i] !== 0) agree = false;
    }
    void period;
    this.knownCurve.push(pairs === 0 ? 1 : known / pairs);
    this.agreeCurve.push(agree);
    for (const n of world.nodes) {
      if (n.maxDatagramBytes > world.config.maxPacketBytes) {
        this.violate(world, "OVERSIZE_DATAGRAM", `node ${n.index} sent a ${n.maxDatagramBytes}-byte datagram`);
        n.maxDatagramBytes = 0;
      }
    }
  }

  /** Nodes that were running, unpaused and in the same life from `sinceMs` to the end. */
  steadyNodes(world: World, sinceMs: number): number[] {
    const out: number[] = [];
    for (const n of world.nodes) {
      if (this.truthUp[n.index] === 1 && (this.disruptedUntilMs[n.index] as number) <= sinceMs) out.push(n.index);
    }
    return out;
  }

  private setTruth(world: World, s: number, up: boolean): void {
    if ((this.truthUp[s] === 1) === up) return;
    this.truthUp[s] = up ? 1 : 0;
    this.upCount += up ? 1 : -1;
    const key = (world.nodes[s] as SimNode).address.key;
    for (const n of world.nodes) {
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

  private mix(x: number): void {
    let h = this.trace;
    let v = Math.floor(x) >>> 0;
    for (let i = 0; i < 4; i++) {
      h ^= v & 0xff;
      h = Math.imul(h, 0x01000193);
      v >>>= 8;
    }
    this.trace = h;
  }
}
