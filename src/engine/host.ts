/**
 * src/engine/host.ts: owns CoreHost, the single piece of code that hosts a SwimNode for both
 * engine modes (the worker thread in src/engine/worker-entry.ts and the inline engine in
 * src/engine/engine.ts), so their behaviour cannot drift. It holds the node, its TimerQueue
 * (the one (atMs, seq) timer order) and the Runtime that turns the core's outputs into calls
 * on a HostSink; it fires due timers, dispatches Commands and answers them with Replies, keeps
 * the core's clock monotonic, and catches anything a handler throws (counted, never fatal).
 */

import type { SwimNodeOptions } from "../core/node.js";
import { SwimNode } from "../core/node.js";
import { type Address, internStats } from "../core/address.js";
import type { CoreEvent, Runtime, Timer } from "../core/runtime.js";
import { TimerQueue } from "../core/timer-queue.js";
import { ACK_RTT_BUCKETS_MS } from "../core/rtt-histogram.js";
import { MEMBER_STATE_NAMES, type MemberState } from "../core/wire/messages.js";
import type { Command, Reply } from "./protocol.js";

/** Where a host's outputs go: the rings (worker) or the socket and listeners (inline). */
export interface HostSink {
  /** A datagram for the network. The bytes are the core's own fresh copy. */
  send(to: Address, datagram: Uint8Array): void;
  /** A CoreEvent for the application. Must not call back into the host. */
  emit(event: CoreEvent): void;
  /** The answer to a command. Must not call back into the host. */
  reply(reply: Reply): void;
  /** Extra counters of the sink (e.g. frames it could not deliver), merged into stats(). */
  stats?(): Record<string, number>;
}

/** Most timers fired by one fireDueTimers call, so a storm of due timers cannot starve input. */
const MAX_TIMERS_PER_CALL = 10_000;

export interface CoreHostCounters {
  datagramsHandled: number;
  commandsHandled: number;
  timersFired: number;
  /** Exceptions thrown by the core while handling input (a bug; counted, not fatal). */
  handlerErrors: number;
}

export class CoreHost {
  readonly node: SwimNode;
  readonly counters: CoreHostCounters = { datagramsHandled: 0, commandsHandled: 0, timersFired: 0, handlerErrors: 0 };
  /** The last handler exception's message, for diagnostics. */
  lastError: string | null = null;

  private readonly sink: HostSink;
  private readonly timers = new TimerQueue<Timer>();
  private readonly rt: Runtime;
  private lastNowMs = -Infinity;
  private stoppedFlag = false;

  constructor(options: SwimNodeOptions, sink: HostSink) {
    this.node = new SwimNode(options);
    this.sink = sink;
    const timers = this.timers;
    this.rt = {
      send: (to, datagram) => sink.send(to, datagram),
      setTimer: (atMs, timer) => timers.push(atMs, timer),
      emit: (event) => sink.emit(event),
    };
  }

  /** True once a stop command was handled; the host then ignores everything. */
  get stopped(): boolean {
    return this.stoppedFlag;
  }

  /** Deadline (ms) of the earliest queued timer, or Infinity. */
  nextDeadlineMs(): number {
    return this.timers.peekAtMs();
  }

  get timersQueued(): number {
    return this.timers.size;
  }

  /** One datagram from the network, received at `nowMs`. */
  handleDatagram(nowMs: number, bytes: Uint8Array): void {
    if (this.stoppedFlag) return;
    const t = this.clock(nowMs);
    this.counters.datagramsHandled++;
    try {
      this.node.handleDatagram(t, bytes, this.rt);
    } catch (err) {
      this.fail(err);
    }
  }

  /** Fires every timer due at `nowMs` in (atMs, seq) order; returns how many fired. */
  fireDueTimers(nowMs: number): number {
    if (this.stoppedFlag) return 0;
    const t = this.clock(nowMs);
    let fired = 0;
    while (fired < MAX_TIMERS_PER_CALL) {
      const entry = this.timers.popDue(t);
      if (entry === undefined) break;
      fired++;
      try {
        this.node.handleTimer(t, entry.value, this.rt);
      } catch (err) {
        this.fail(err);
      }
    }
    this.counters.timersFired += fired;
    return fired;
  }

  /** Carries out one command at `nowMs`; replies through the sink. */
  dispatch(nowMs: number, cmd: Command): void {
    if (this.stoppedFlag) return;
    const t = this.clock(nowMs);
    const node = this.node;
    const rt = this.rt;
    this.counters.commandsHandled++;
    try {
      switch (cmd.type) {
        case "start":
          node.start(t, rt);
          this.sink.reply({ type: "started", token: cmd.token });
          break;
        case "join":
          node.join(t, cmd.seeds, rt, cmd.token);
          break;
        case "broadcast":
          this.sink.reply({ type: "broadcast", token: cmd.token, outcome: node.broadcast(t, cmd.payload, rt) });
          break;
        case "leave":
          // The core hands the announcement to the sink (send) right here, so the reply comes
          // after those datagrams in the sink's order: the engine resolves leave() once they
          // are on the socket, without waiting for gossip rounds.
          try {
            node.leave(t, rt);
          } finally {
            this.sink.reply({ type: "left", token: cmd.token });
          }
          break;
        case "ping":
          node.ping(t, cmd.target, cmd.token, rt);
          break;
        case "forget":
          node.forget(cmd.address, rt);
          break;
        case "request":
          this.sink.reply({
            type: "request",
            token: cmd.token,
            outcome: node.clusterRequests.start(t, cmd.kind, cmd.payload, cmd.timeoutMs, cmd.token, rt, cmd.options),
          });
          break;
        case "setTags":
          this.sink.reply({ type: "tags", token: cmd.token, outcome: node.setTags(t, cmd.tags, rt) });
          break;
        case "answer":
          node.clusterRequests.answer(cmd.handle, cmd.payload, rt);
          break;
        case "setProbeInterval": {
          // The core refuses a period outside the one range (periodFields) and changes nothing.
          node.setProbeIntervalMs(t, cmd.probeIntervalMs, rt);
          break;
        }
        case "snapshot":
          this.sink.reply({ type: "snapshot", token: cmd.token, members: node.memberList() });
          break;
        case "stats":
          this.sink.reply({ type: "stats", token: cmd.token, stats: this.stats() });
          break;
        case "stop":
          this.stoppedFlag = true;
          this.timers.clear();
          this.sink.reply({ type: "stopped", token: cmd.token });
          return;
      }
    } catch (err) {
      this.fail(err);
    }
  }

  /** Core, host and sink counters under flat names (`core.*`, `host.*`, then the sink's). */
  stats(): Record<string, number> {
    const node = this.node;
    const out: Record<string, number> = {};
    for (const [name, value] of Object.entries(node.stats)) {
      if (typeof value === "number") out[`core.${name}`] = value;
    }
    for (const [code, count] of Object.entries(node.stats.protocolErrorsByCode)) {
      if (typeof count === "number") out[`core.protocolErrors.${code}`] = count;
    }
    for (const [reason, count] of Object.entries(node.stats.requestsRefusedByReason)) {
      if (typeof count === "number") out[`core.requestsRefused.${reason}`] = count;
    }
    for (const [name, value] of Object.entries(node.clusterRequests.stats)) out[`core.clusterRequests.${name}`] = value;
    // This thread's address intern tables (src/core/address.ts): held now, and forgotten.
    out["core.addressIntern.interned"] = internStats.interned;
    out["core.addressIntern.evicted"] = internStats.evicted;
    out["core.healthScore"] = node.healthScore;
    out["core.incarnation"] = node.incarnation;
    out["core.members"] = node.memberCount;
    out["core.liveMembers"] = node.liveCount;
    out["core.queuedUpdates"] = node.queuedUpdates;
    out["core.queuedBroadcasts"] = node.queuedBroadcasts;
    out["core.probeIntervalMs"] = node.currentProbeIntervalMs;
    const byState = node.membersByState();
    for (let state = 0; state < byState.length; state++) out[`core.membersByState.${MEMBER_STATE_NAMES[state as MemberState]}`] = byState[state] as number;
    const rtt = node.ackRtt.cumulative();
    for (let i = 0; i < ACK_RTT_BUCKETS_MS.length; i++) out[`core.ackRttMs.le.${ACK_RTT_BUCKETS_MS[i]}`] = rtt[i] as number;
    out["core.ackRttMs.count"] = node.ackRtt.count;
    out["core.ackRttMs.sum"] = node.ackRtt.sumMs;
    out["host.datagramsHandled"] = this.counters.datagramsHandled;
    out["host.commandsHandled"] = this.counters.commandsHandled;
    out["host.timersFired"] = this.counters.timersFired;
    out["host.timersQueued"] = this.timers.size;
    out["host.handlerErrors"] = this.counters.handlerErrors;
    const extra = this.sink.stats?.();
    if (extra !== undefined) Object.assign(out, extra);
    return out;
  }

  /** The core's clock never goes back: a datagram received before the last timer ran is handled "now". */
  private clock(nowMs: number): number {
    if (nowMs > this.lastNowMs) this.lastNowMs = nowMs;
    return this.lastNowMs;
  }

  private fail(err: unknown): void {
    this.counters.handlerErrors++;
    this.lastError = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
  }
}
