/**
 * The simulated world: a virtual clock, one event heap, a network model with latency, loss,
 * duplication, reordering (random latencies) and partitions, and N virtual nodes that each run
 * the real SwimNode core. Faults (crash, restart, pause, leave, partitions, loss) follow the
 * scenario's timeline. Every random draw comes from seeded streams (one per node for its
 * network decisions, one per node for its core), so the same scenario gives the same trace.
 *
 * A world can be one shard of a larger simulation (see src/sim/sharded.ts): it then runs the
 * cores of the nodes it owns (`index % shards === shard`), hands datagrams for other nodes to
 * `sendRemote`, and follows every scenario action so that each shard knows every node's life
 * (running, left, paused) without its core. Events are ordered by (time, node, origin, origin
 * seq) alone, so a node sees the same inputs in the same order however the world is split.
 */

import { type Address, internGenerationSize, makeAddress, setInternGeneration } from "../core/address.js";
import { makeConfig, type SwimConfig, validateConfig } from "../core/config.js";
import { SwimNode } from "../core/node.js";
import { Prng } from "../core/prng.js";
import type { CoreEvent, Runtime, Timer } from "../core/runtime.js";
import { EventHeap, type SimEventKey } from "./event-heap.js";
import { clockOffsetMs, type Scenario, type ScenarioAction, simNodeTags } from "./scenario.js";

/** Inbound datagrams a paused node keeps (its socket buffer); more are dropped. */
const PAUSED_SOCKET_BUFFER = 256;
/** A node whose join went unanswered tries again after this long (as the agent does). */
export const JOIN_RETRY_MS = 5000;

/** A datagram in flight, as it travels between shards. */
export type DatagramEvent = SimEventKey & { readonly kind: "datagram"; readonly bytes: Uint8Array };

/** Event origins below 0: the scenario and the effects of its actions (not a node's doing). */
const ORIGIN_SCENARIO = -1;
/** A paused node's resume: follows the node's actions in every shard. */
const ORIGIN_LIFECYCLE = -2;
/** A join retry: only the node's owner sees it. */
const ORIGIN_REJOIN = -3;

type SimEvent = SimEventKey &
  (
    | { readonly kind: "datagram"; readonly bytes: Uint8Array }
    | { readonly kind: "timer"; readonly timer: Timer; readonly life: number }
    | { readonly kind: "action"; readonly action: ScenarioAction }
    | { readonly kind: "resume"; readonly life: number }
    | { readonly kind: "rejoin"; readonly life: number }
  );

export interface SimNode {
  readonly index: number;
  readonly address: Address;
  /** Whether this shard runs the node's core (otherwise it only follows the node's life). */
  readonly owned: boolean;
  /** The node's process runs (started, not crashed or stopped); kept in every shard. */
  running: boolean;
  /** The node announced a graceful leave in its current life; kept in every shard. */
  left: boolean;
  /** The core, in the owning shard while the node runs; null otherwise. */
  core: SwimNode | null;
  /** Increments at every (re)start; timers of an earlier life are dropped. */
  life: number;
  /** Starting incarnation of the current life. */
  lifeIncarnation: number;
  paused: boolean;
  readonly pausedInbox: SimEvent[];
  /** Counter for events this node originates (datagrams and timers). */
  originSeq: number;
  /** Counter for the node's lifecycle events (resume), the same in every shard. */
  lifecycleSeq: number;
  /** Counter for the node's join retries (owner only). */
  rejoinSeq: number;
  readonly netRng: Prng;
  readonly coreSeedRng: Prng;
  readonly runtime: Runtime;
  datagramsSent: number;
  bytesSent: number;
  /** Largest datagram sent since the monitor last checked (it resets this after a violation). */
  maxDatagramBytes: number;
  /** Largest datagram sent in the whole run. */
  largestDatagramBytes: number;
}

/** What the world tells its observers (the invariant checkers and the report). */
export interface WorldObserver {
  onCoreEvent(world: World, node: SimNode, event: CoreEvent): void;
  /** A scenario action about to take effect, or a process stop / resume it caused. */
  onAction(world: World, action: ScenarioAction | { readonly kind: "stop" | "resume"; readonly node: number }): void;
  /** A user broadcast was accepted by `node` under id `key` (`origin/epoch/seq`). */
  onBroadcastSent(world: World, node: SimNode, key: string): void;
  onPeriod(world: World, period: number): void;
  /** Every node started at time 0 already knowing every other node alive (a warm start). */
  onWarmStart(world: World): void;
}

/** Where this world sits in a sharded simulation. */
export interface Placement {
  readonly shard: number;
  readonly shards: number;
  /** Takes a datagram for a node owned by `shard` (another shard); it arrives at `e.atMs`. */
  readonly sendRemote: (shard: number, e: DatagramEvent) => void;
}

const SINGLE: Placement = {
  shard: 0,
  shards: 1,
  sendRemote: () => {
    throw new Error("a single-shard world has no remote nodes");
  },
};

export class World {
  readonly config: SwimConfig;
  readonly nodes: SimNode[] = [];
  /** The nodes this shard runs, in index order. */
  readonly localNodes: SimNode[] = [];
  readonly byKey = new Map<string, number>();
  readonly placement: Placement;
  nowMs = 0;
  readonly endMs: number;
  readonly periodMs: number;
  private readonly heap = new EventHeap<SimEvent>();
  private scenarioSeq = 0;
  private readonly observers: WorldObserver[] = [];
  private lossRate: number;
  private readonly partitions: { splitAt: number; oneWay: boolean; untilMs: number }[] = [];
  /** Nodes whose incoming datagrams are lost, until when (see the "deafen" action). */
  private readonly deafUntilMs = new Map<number, number>();
  datagramsDropped = 0;
  datagramsDelivered = 0;
  eventsProcessed = 0;
  /** Datagrams handed to other shards. */
  datagramsToShards = 0;
  /** The next period boundary to sample (period number). */
  private nextPeriod = 1;
  private started = false;

  constructor(
    readonly scenario: Scenario,
    placement: Placement = SINGLE,
  ) {
    this.placement = placement;
    if (!Number.isInteger(placement.shards) || placement.shards < 1 || placement.shard < 0 || placement.shard >= placement.shards) {
      throw new RangeError(`shard ${placement.shard} of ${placement.shards} is not a valid placement`);
    }
    this.config = makeConfig(scenario.preset, scenario.overrides);
    const problems = validateConfig(this.config);
    if (problems.length > 0) throw new RangeError(`invalid protocol config: ${problems.join("; ")}`);
    if (!Number.isInteger(scenario.nodes) || scenario.nodes < 1 || scenario.nodes > 131_072) {
      throw new RangeError(`nodes must be in 1..131072, got ${scenario.nodes}`);
    }
    // Every node of this thread's shard shares the address intern tables: room for all of them.
    setInternGeneration(Math.max(internGenerationSize(), scenario.nodes));
    this.periodMs = this.config.probeIntervalMs;
    this.endMs = scenario.periods * this.periodMs;
    this.lossRate = scenario.network.lossRate;
    const root = new Prng(scenario.seed, 0x5157);
    for (let i = 0; i < scenario.nodes; i++) {
      const address = simAddress(i, scenario.addressing);
      const node: SimNode = {
        index: i,
        address,
        owned: this.ownerOf(i) === placement.shard,
        running: false,
        left: false,
        core: null,
        life: 0,
        lifeIncarnation: 0,
        paused: false,
        pausedInbox: [],
        originSeq: 0,
        lifecycleSeq: 0,
        rejoinSeq: 0,
        netRng: new Prng(scenario.seed, 2 * i + 1),
        coreSeedRng: new Prng(scenario.seed, 2 * i + 2),
        runtime: undefined as unknown as Runtime,
        datagramsSent: 0,
        bytesSent: 0,
        maxDatagramBytes: 0,
        largestDatagramBytes: 0,
      };
      (node as { runtime: Runtime }).runtime = this.makeRuntime(node);
      this.nodes.push(node);
      if (node.owned) this.localNodes.push(node);
      this.byKey.set(address.key, i);
    }
    if (!scenario.warmStart) {
      // Start times: node 0 (the seed) at 0, the others spread over the start window.
      for (let i = 0; i < scenario.nodes; i++) {
        const at = i === 0 ? 0 : 1 + root.nextInt(Math.max(1, scenario.startSpreadMs));
        this.pushScenario({ kind: "restart", atMs: at, node: i });
      }
    }
    for (const action of scenario.actions) this.pushScenario(action);
  }

  addObserver(o: WorldObserver): void {
    if (this.started) throw new Error("add observers before the world runs");
    this.observers.push(o);
  }

  /** Runs the scenario to its end (or to `untilMs`). */
  run(untilMs = this.endMs): void {
    this.runWindow(Infinity, untilMs);
    this.finishPeriods(untilMs);
  }

  /** Time of the next event in this shard (Infinity when there is none). */
  nextEventMs(): number {
    this.start();
    return this.heap.peek()?.atMs ?? Infinity;
  }

  /**
   * Processes, in order, every event before `windowEndMs` and at most `untilMs`, sampling each
   * period boundary it passes just before the first event at or after it.
   */
  runWindow(windowEndMs: number, untilMs = this.endMs): void {
    this.start();
    for (;;) {
      const e = this.heap.peek();
      if (e === undefined || e.atMs >= windowEndMs || e.atMs > untilMs) break;
      this.samplePeriodsBefore(e.atMs, untilMs);
      this.heap.pop();
      this.nowMs = e.atMs;
      // Counted where the node runs, so that the shards' counts add up to a single world's.
      if (this.ownerOf(e.node) === this.placement.shard) this.eventsProcessed++;
      this.dispatch(e);
    }
  }

  /** Samples the period boundaries left up to `untilMs` (after the last event). */
  finishPeriods(untilMs = this.endMs): void {
    this.samplePeriodsBefore(Infinity, untilMs);
    this.nowMs = Math.max(this.nowMs, untilMs);
  }

  /** A datagram from another shard for a node of this one (it arrives after the current window). */
  deliver(e: DatagramEvent): void {
    this.heap.push(e);
  }

  /** The shard that runs node `index`. */
  ownerOf(index: number): number {
    return index % this.placement.shards;
  }

  private samplePeriodsBefore(atMs: number, untilMs: number): void {
    for (;;) {
      const boundaryMs = this.nextPeriod * this.periodMs;
      if (boundaryMs > untilMs || boundaryMs > atMs) return;
      this.nowMs = boundaryMs;
      for (const o of this.observers) o.onPeriod(this, this.nextPeriod);
      this.nextPeriod++;
    }
  }

  /** Once, before the first event: a warm start brings every node up knowing every other. */
  private start(): void {
    if (this.started) return;
    this.started = true;
    if (!this.scenario.warmStart) return;
    const addresses = this.nodes.map((n) => n.address);
    for (const n of this.nodes) {
      n.life = 1;
      n.lifeIncarnation = 0;
      n.running = true;
    }
    for (const o of this.observers) o.onWarmStart(this);
    for (const n of this.localNodes) {
      const core = this.newCore(n, 0);
      // Members first: the node then paces its push-pull for the cluster it is in, as a node
      // of a long-running cluster does.
      core.addConvergedMembers(0, addresses, 0);
      core.start(0, n.runtime);
    }
  }

  private newCore(n: SimNode, incarnation: number): SwimNode {
    // The life counter is this address's boot counter: a fresh broadcast epoch per life.
    n.core = new SwimNode({
      self: n.address,
      config: this.config,
      seed: n.coreSeedRng.nextU32() | 0,
      incarnation,
      broadcastEpoch: n.life,
      ...(this.scenario.tags ? { tags: simNodeTags(n.index) } : {}),
      wallClockOffsetMs: clockOffsetMs(this.scenario.seed, n.index, this.scenario.clockSkewMs),
    });
    return n.core;
  }

  /** True while a partition separates `a` from `b` (in the a→b direction). */
  partitioned(a: number, b: number): boolean {
    for (const p of this.partitions) {
      if (this.nowMs >= p.untilMs) continue;
      const sideA = a < p.splitAt;
      const sideB = b < p.splitAt;
      if (sideA === sideB) continue;
      if (!p.oneWay || sideA) return true;
    }
    return false;
  }

  get currentLossRate(): number {
    return this.lossRate;
  }

  private pushScenario(action: ScenarioAction): void {
    const node = "node" in action ? action.node : -1;
    this.heap.push({ atMs: action.atMs, node: Math.max(node, 0), origin: ORIGIN_SCENARIO, originSeq: this.scenarioSeq++, kind: "action", action });
  }

  private makeRuntime(node: SimNode): Runtime {
    return {
      send: (to, datagram) => this.send(node, to, datagram),
      setTimer: (atMs, timer) => {
        this.heap.push({ atMs, node: node.index, origin: node.index, originSeq: node.originSeq++, kind: "timer", timer, life: node.life });
      },
      emit: (event) => {
        for (const o of this.observers) o.onCoreEvent(this, node, event);
        // As the agent does: a join that no seed answered is tried again later.
        if (event.type === "joinResult" && !event.ok) {
          this.heap.push({ atMs: this.nowMs + JOIN_RETRY_MS, node: node.index, origin: ORIGIN_REJOIN, originSeq: node.rejoinSeq++, kind: "rejoin", life: node.life });
        }
      },
    };
  }

  private send(from: SimNode, to: Address, datagram: Uint8Array): void {
    from.datagramsSent++;
    from.bytesSent += datagram.length;
    if (datagram.length > from.maxDatagramBytes) from.maxDatagramBytes = datagram.length;
    if (datagram.length > from.largestDatagramBytes) from.largestDatagramBytes = datagram.length;
    const dst = this.byKey.get(to.key);
    const seq = from.originSeq++;
    // Draw every random number whatever the outcome, so that one decision never shifts the next.
    const lost = from.netRng.nextFloat() < this.lossRate;
    const latency = this.latency(from.netRng);
    const duplicate = from.netRng.nextFloat() < this.scenario.network.duplicateRate;
    const dupLatency = this.latency(from.netRng);
    if (dst === undefined || lost || this.partitioned(from.index, dst) || this.nowMs < (this.deafUntilMs.get(dst) ?? -1)) {
      this.datagramsDropped++;
      return;
    }
    this.route({ atMs: this.nowMs + latency, node: dst, origin: from.index, originSeq: seq, kind: "datagram", bytes: datagram });
    if (duplicate) {
      this.route({ atMs: this.nowMs + dupLatency, node: dst, origin: from.index, originSeq: from.originSeq++, kind: "datagram", bytes: datagram });
    }
  }

  private route(e: DatagramEvent): void {
    const owner = this.ownerOf(e.node);
    if (owner === this.placement.shard) {
      this.heap.push(e);
      return;
    }
    this.datagramsToShards++;
    this.placement.sendRemote(owner, e);
  }

  private latency(rng: Prng): number {
    const net = this.scenario.network;
    const tail = Math.max(0, net.latencyMeanMs - net.latencyMinMs);
    const u = rng.nextFloat();
    const x = net.latencyMinMs + (tail > 0 ? -Math.log(1 - u) * tail : 0);
    return Math.round(x * 1000) / 1000;
  }

  private dispatch(e: SimEvent): void {
    const node = this.nodes[e.node] as SimNode;
    switch (e.kind) {
      case "action":
        this.applyAction(e.action);
        return;
      case "resume":
        if (e.life === node.life && node.paused) {
          node.paused = false;
          for (const o of this.observers) o.onAction(this, { kind: "resume", node: node.index });
          const inbox = node.pausedInbox.splice(0);
          for (const held of inbox) this.dispatch({ ...held, atMs: this.nowMs });
        }
        return;
      case "rejoin":
        if (node.core !== null && e.life === node.life && !node.core.hasLeft && !node.paused) {
          node.core.join(this.nowMs, [this.seedFor(node.index)], node.runtime);
        }
        return;
      case "timer":
        if (node.core === null || e.life !== node.life) return;
        if (node.paused) {
          node.pausedInbox.push(e);
          return;
        }
        node.core.handleTimer(this.nowMs, e.timer, node.runtime);
        return;
      case "datagram":
        if (node.core === null) {
          this.datagramsDropped++;
          return;
        }
        if (node.paused) {
          if (node.pausedInbox.length < PAUSED_SOCKET_BUFFER) node.pausedInbox.push(e);
          else this.datagramsDropped++;
          return;
        }
        this.datagramsDelivered++;
        node.core.handleDatagram(this.nowMs, e.bytes, node.runtime);
        return;
    }
  }

  private applyAction(action: ScenarioAction): void {
    const node = "node" in action ? this.nodes[action.node] : undefined;
    if ("node" in action && node === undefined) throw new RangeError(`scenario names node ${action.node}, but there are ${this.nodes.length}`);
    switch (action.kind) {
      case "restart": {
        const n = node as SimNode;
        if (n.running) return;
        n.life++;
        n.running = true;
        n.left = false;
        n.paused = false;
        n.pausedInbox.length = 0;
        const first = n.life === 1;
        const incarnation = first || this.scenario.restartIncarnation === "zero" ? 0 : Math.floor(this.nowMs / 1000) + 1;
        n.lifeIncarnation = incarnation;
        const core = n.owned ? this.newCore(n, incarnation) : null;
        for (const o of this.observers) o.onAction(this, action);
        if (core === null) return;
        core.start(this.nowMs, n.runtime);
        if (n.index !== 0) core.join(this.nowMs, [this.seedFor(n.index)], n.runtime);
        else if (!first) core.join(this.nowMs, [this.seedFor(0)], n.runtime);
        return;
      }
      case "kill": {
        const n = node as SimNode;
        if (!n.running) return;
        n.running = false;
        n.core = null;
        n.paused = false;
        n.pausedInbox.length = 0;
        for (const o of this.observers) o.onAction(this, action);
        return;
      }
      case "pause": {
        const n = node as SimNode;
        if (!n.running || n.paused) return;
        n.paused = true;
        for (const o of this.observers) o.onAction(this, action);
        this.pushLifecycle(n, this.nowMs + action.durationMs, "resume");
        return;
      }
      case "leave": {
        const n = node as SimNode;
        if (!n.running || n.left) return;
        n.left = true;
        for (const o of this.observers) o.onAction(this, action);
        // As the agent leaves: the core announces *left* directly to up to LEAVE_FANOUT members
        // within leave() (its only effects that count: datagrams, in flight from now on), the
        // engine resolves leave() once those datagrams left the socket, and the process stops.
        // Sending takes no virtual time, so the process stops at the leave's own instant, in
        // every shard (those without the core follow the same action): whatever the core would
        // have sent later (gossip rounds, answers) it never sends.
        n.core?.leave(this.nowMs, n.runtime);
        n.running = false;
        n.core = null;
        for (const o of this.observers) o.onAction(this, { kind: "stop", node: n.index });
        return;
      }
      case "deafen":
        this.deafUntilMs.set(action.node, action.untilMs);
        for (const o of this.observers) o.onAction(this, action);
        return;
      case "partition":
        this.partitions.push({ splitAt: action.splitAt, oneWay: action.oneWay, untilMs: action.untilMs });
        for (const o of this.observers) o.onAction(this, action);
        return;
      case "loss": {
        this.lossRate = action.lossRate;
        const base = this.scenario.network.lossRate;
        this.heap.push({
          atMs: action.untilMs,
          node: 0,
          origin: ORIGIN_SCENARIO,
          originSeq: this.scenarioSeq++,
          kind: "action",
          action: { kind: "loss", atMs: action.untilMs, untilMs: action.untilMs, lossRate: base },
        });
        for (const o of this.observers) o.onAction(this, action);
        return;
      }
      case "broadcast": {
        const n = node as SimNode;
        if (n.core === null || n.left) return;
        const payload = new Uint8Array(Math.max(1, Math.min(action.bytes, this.config.maxBroadcastBytes)));
        for (let i = 0; i < payload.length; i++) payload[i] = (i + action.node) & 0xff;
        for (const o of this.observers) o.onAction(this, action);
        const outcome = n.core.broadcast(this.nowMs, payload, n.runtime);
        if (outcome.ok) {
          const key = `${n.address.key}/${outcome.epoch}/${outcome.seq}`;
          for (const o of this.observers) o.onBroadcastSent(this, n, key);
        }
        return;
      }
    }
  }

  /** Resume events: every shard follows them, so they count per node, not per shard. */
  private pushLifecycle(n: SimNode, atMs: number, kind: "resume"): void {
    this.heap.push({ atMs, node: n.index, origin: ORIGIN_LIFECYCLE, originSeq: n.lifecycleSeq++, kind, life: n.life });
  }

  /** Node 0 is the seed; when node 0 itself restarts it joins the lowest running node. */
  private seedFor(index: number): Address {
    if (index !== 0) return (this.nodes[0] as SimNode).address;
    for (const n of this.nodes) if (n.index !== 0 && n.running) return n.address;
    return (this.nodes[1] ?? (this.nodes[0] as SimNode)).address;
  }
}

/** Address of simulated node `i`: 198.18.0.0/15 (benchmark range) or fd77::/64, port 7946. */
export function simAddress(i: number, addressing: Scenario["addressing"]): Address {
  const v6 = addressing === "ipv6" || (addressing === "mixed" && i % 2 === 1);
  const n = i + 1;
  if (!v6) return makeAddress(new Uint8Array([198, 18 + ((n >> 16) & 1), (n >> 8) & 0xff, n & 0xff]), 7946);
  const ip = new Uint8Array(16);
  ip[0] = 0xfd;
  ip[1] = 0x77;
  ip[13] = (n >> 16) & 0xff;
  ip[14] = (n >> 8) & 0xff;
  ip[15] = n & 0xff;
  return makeAddress(ip, 7946);
}
