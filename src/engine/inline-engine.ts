/**
 * src/engine/inline-engine.ts: owns InlineEngine (`workers: 0`): the CoreHost
 * (src/engine/host.ts) on the main thread, behind the same EngineBase as the worker engine. A
 * received datagram is opened (when sealing) and handed to the core in the socket's callback;
 * what the core sends is sealed and given to the socket at once; its timers are driven by one
 * setTimeout re-armed to the TimerQueue's earliest deadline. For small hosts and tests; the
 * worker engine moves all of this off the main thread.
 */

import type { Address } from "../core/address.js";
import type { CoreEvent } from "../core/runtime.js";
import type { Envelope } from "../seal/envelope.js";
import { EngineBase, type DropCounts, type EngineInit } from "./engine-base.js";
import { CoreHost, type HostSink } from "./host.js";
import type { Command, Reply } from "./protocol.js";

type Outgoing = { readonly kind: "event"; readonly event: CoreEvent } | { readonly kind: "reply"; readonly reply: Reply };

export class InlineEngine extends EngineBase {
  private readonly host: CoreHost;
  private readonly envelope: Envelope | null;
  /** Events and replies of the current turn, delivered in a microtask (never re-entering the core). */
  private readonly outbox: Outgoing[] = [];
  private flushScheduled = false;
  private timer: NodeJS.Timeout | null = null;
  private timerAtMs = Infinity;

  constructor(init: EngineInit) {
    super(init, 0);
    this.envelope = init.envelope;
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

  /**
   * Sends a datagram of the core, sealed when there is an envelope. `owned`: the bytes are the
   * caller's to give away; otherwise they are copied (dgram reads them after this returns).
   */
  private outgoing(to: Address, bytes: Uint8Array, owned: boolean): void {
    this.transport.send(to, this.envelope !== null ? this.envelope.wrap(bytes) : owned ? bytes : bytes.slice());
  }

  /** A received datagram as the core reads it: opened when there is an envelope; null when dropped. */
  private incoming(bytes: Uint8Array, fromIp: string, fromPort: number): Uint8Array | null {
    return this.envelope === null ? bytes : this.envelope.unwrap(bytes, fromIp, fromPort);
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
    const out: Record<string, number> = {};
    if (this.envelope !== null) for (const [k, v] of Object.entries(this.envelope.stats())) out[`seal.${k}`] = v;
    return out;
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
