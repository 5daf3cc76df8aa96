/**
 * src/engine/worker-engine.ts: owns WorkerEngine (`workers` >= 1): the main thread only moves
 * bytes. Received datagrams go, as they came, into a ring (published once per event-loop turn);
 * a pump sleeps in the main doorbell's waitAsync and drains the outbound ring to `socket.send`
 * and the events ring to listeners and pending requests. Everything that costs CPU per datagram
 * runs on worker threads:
 *
 *   - the protocol worker (src/engine/worker-entry.ts): the core (decode, merge, piggyback,
 *     encode, timers), sealing what it sends, and the replay windows of what it receives;
 *   - with `workers` = N >= 2, N - 1 seal/open workers (src/engine/opener-entry.ts) in front
 *     of it: the main thread deals received datagrams out to them round robin, they
 *     authenticate and open (the costly AES-GCM part), and pass what opened on to the protocol
 *     worker; while the protocol worker sleeps, the first few datagrams of a turn go straight
 *     to it instead. With `workers` = 1 the protocol worker opens every datagram.
 *
 * Control traffic that is not per datagram travels beside the rings: commands and their replies
 * on the commands/events rings, key changes over each worker's MessagePort (posted, then the
 * worker's control word bumped and its doorbell rung, so a sleeping worker wakes and drains its
 * port with receiveMessageOnPort before its next ring frame), drop reports back over the same
 * ports. Any worker that exits unexpectedly fails the engine (onFailure): the agent then stops
 * with an error instead of running without part of its pipeline.
 */

import { MessageChannel, Worker, type MessagePort } from "node:worker_threads";
import type { SwimNodeOptions } from "../core/node.js";
import { DROP_REASONS, type Envelope } from "../seal/envelope.js";
import {
  attachMainSide,
  createEngineRingBuffers,
  SharedCounters,
  type EngineRingsConfig,
  type MainSideRings,
  type RawFrameVisitor,
  type RingProducer,
  type RingStats,
} from "../shm/index.js";
import { EngineStoppedError } from "./engine-api.js";
import { EngineBase, STOP_TIMEOUT_MS, type DropCounts, type EngineInit } from "./engine-base.js";
import {
  newDatagramOutView,
  readDatagramOut,
  readOutput,
  writeCommand,
  writeDatagramIn,
  WORKER_COUNTER_SLOTS,
  WorkerSlot,
  type Command,
  type ControlMessage,
  type EngineWorkerData,
  type OpenerWorkerData,
  type WorkerNotice,
  type WorkerSealData,
} from "./protocol.js";

/** Longest main-thread pump sleep with nothing to do (ms); bounds shutdown after a worker crash. */
const PUMP_IDLE_WAIT_MS = 500;
/** Frames the pump takes from a ring before it yields to the event loop. */
const OUTPUT_BATCH = 512;
/**
 * Received datagrams per event-loop turn that may go straight to a sleeping protocol worker,
 * past the seal/open workers (see onSocketDatagram), unless EngineOptions.directPerTurn says.
 */
const DEFAULT_DIRECT_PER_TURN = 8;
/** Sources of the last datagrams written to each ring kept (unparsed) for drop reports; a power of two. */
const SOURCE_HISTORY = 1024;

/** The sources of the last SOURCE_HISTORY datagrams written to one ring: two stores each, no parsing. */
interface SourceHistory {
  written: number;
  readonly ips: string[];
  readonly ports: Uint16Array;
}

export interface WorkerEngineOptions {
  readonly workers: number;
  readonly rings: EngineRingsConfig;
  readonly spinIterations?: number;
  readonly directPerTurn?: number;
}

/** One worker thread of the engine, with its control port and counters. */
interface EngineThread {
  readonly worker: Worker;
  readonly port: MessagePort;
  readonly counters: SharedCounters;
  readonly wake: () => void;
  readonly name: string;
}

export class WorkerEngine extends EngineBase {
  private readonly rings: MainSideRings;
  private readonly core: EngineThread;
  private readonly openers: readonly EngineThread[];
  private readonly envelope: Envelope | null;
  private readonly unsubscribeKeys: () => void;
  private readonly exited: Promise<void>;
  /** The protocol worker has exited: nothing more can be submitted. */
  private coreGone = false;
  private pumpDone = false;
  private publishScheduled = false;
  private nextOpener = 0;
  /** Datagrams written to the inbound ring (past the openers) since the last publish. */
  private directThisTurn = 0;
  private readonly directPerTurn: number;
  private inboundDropped = 0;
  /** Per ring written by the main thread: [0] inbound, [k + 1] raw ring of opener k. */
  private readonly sources: SourceHistory[];
  private readonly outView = newDatagramOutView();

  constructor(init: EngineInit, node: SwimNodeOptions, options: WorkerEngineOptions) {
    super(init, options.workers);
    this.directPerTurn = options.directPerTurn ?? DEFAULT_DIRECT_PER_TURN;
    const openerCount = options.workers - 1;
    const buffers = createEngineRingBuffers(options.rings, openerCount);
    const spin = options.spinIterations === undefined ? {} : { spinIterations: options.spinIterations };
    this.rings = attachMainSide(buffers, spin);
    this.envelope = init.envelope;
    this.sources = Array.from({ length: 1 + openerCount }, () => ({ written: 0, ips: new Array<string>(SOURCE_HISTORY), ports: new Uint16Array(SOURCE_HISTORY) }));
    const seal = this.sealData();

    const thread = (name: string, entry: string, data: object, wake: () => void): EngineThread => {
      const { port1, port2 } = new MessageChannel();
      const counters = SharedCounters.create(WORKER_COUNTER_SLOTS);
      const worker = new Worker(new URL(entry, import.meta.url), {
        workerData: { ...data, port: port2, control: counters.sharedBuffer, counters: counters.sharedBuffer },
        transferList: [port2],
      });
      port1.on("message", (notice: WorkerNotice) => {
        if (notice.type === "drops") this.envelope?.reportDrops(notice.reason, notice.count, this.sourceOf(notice.ring, notice.frame));
      });
      port1.unref();
      return { worker, port: port1, counters, wake, name };
    };
    const coreData: EngineWorkerData = {
      buffers,
      selfKey: node.self.key,
      config: node.config,
      seed: node.seed,
      incarnation: node.incarnation,
      broadcastEpoch: node.broadcastEpoch,
      cookieSecret: node.cookieSecret as Uint8Array,
      ...(node.tags === undefined ? {} : { tags: node.tags }),
      seedKeys: (node.seeds ?? []).map((a) => a.key),
      reconnectTargetKeys: (node.reconnectTargets ?? []).map((a) => a.key),
      baseTimeOriginMs: performance.timeOrigin,
      seal,
      ...spin,
    };
    this.core = thread("protocol worker", "./worker-entry.js", coreData, () => this.rings.wakeWorker());
    this.openers = Array.from({ length: openerCount }, (_, k) => {
      const data: Omit<OpenerWorkerData, "counters"> = { buffers, index: k, seal, ...spin };
      return thread(`seal/open worker ${k + 1}`, "./opener-entry.js", data, () => this.rings.wakeOpener(k));
    });

    // The keys stay live: every change is posted to every worker before anything it affects.
    const keyring = this.envelope?.keys;
    this.unsubscribeKeys =
      keyring === undefined
        ? () => undefined
        : keyring.onChange((keys) => {
            const msg: ControlMessage = { type: "keys", keys };
            for (const t of this.threads()) {
              t.port.postMessage(msg);
              t.counters.bumpControl();
              t.wake();
            }
          });

    this.exited = Promise.all(
      this.threads().map(
        (t) =>
          new Promise<void>((resolve) => {
            t.worker.once("exit", (code) => {
              if (t === this.core) {
                this.coreGone = true;
                // Whatever it published last (e.g. the STOPPED reply) may not be pumped yet.
                if (!this.pumpDone) this.drainOutputs(Infinity);
                this.pumpDone = true;
              }
              this.fail(new EngineStoppedError(`engine ${t.name} exited unexpectedly (code ${code})`));
              resolve();
            });
            t.worker.on("error", (err) => {
              this.fail(err instanceof Error ? err : new Error(String(err)));
            });
          }),
      ),
    ).then(() => undefined);
    this.transport.onDatagram(this.onSocketDatagram);
    this.pump().catch((err: unknown) => {
      this.pumpDone = true;
      this.fail(err instanceof Error ? err : new Error(String(err)));
    });
  }

  /** The engine's worker threads, the protocol worker first. */
  threads(): readonly EngineThread[] {
    return [this.core, ...this.openers];
  }

  protected submit(cmd: Command): boolean {
    if (this.coreGone) return false;
    if (!writeCommand(this.rings.commands, cmd)) return false;
    this.rings.commands.publish();
    return true;
  }

  protected async shutdown(): Promise<void> {
    this.unsubscribeKeys();
    if (!this.coreGone) {
      const { token, promise } = this.open<void>("stopped", STOP_TIMEOUT_MS, () => undefined);
      if (this.submit({ type: "stop", token })) await promise.catch(() => undefined);
    }
    // The protocol worker ends by itself after STOPPED; the seal/open workers loop until terminated.
    this.pumpDone = true;
    await Promise.all(this.openers.map((t) => t.worker.terminate()));
    if (!(await settlesWithin(this.exited, STOP_TIMEOUT_MS))) await this.core.worker.terminate();
    for (const t of this.threads()) t.port.close();
    await this.transport.close();
  }

  protected dropCounts(): DropCounts {
    const s = this.rings.stats();
    let openedDrops = 0;
    for (const t of this.openers) openedDrops += t.counters.load(WorkerSlot.RingDrops);
    return {
      datagramsIn: this.inboundDropped + openedDrops,
      datagramsOut: s.outbound.framesDroppedFull + s.outbound.framesDroppedOversize,
      events: s.events.framesDroppedFull + s.events.framesDroppedOversize,
    };
  }

  protected modeStats(): Record<string, number> {
    const out: Record<string, number> = {};
    const s = this.rings.stats();
    const add = (ring: string, r: RingStats): void => {
      for (const [name, value] of Object.entries(r)) out[`ring.${ring}.${name}`] = value;
    };
    add("inbound", s.inbound);
    add("commands", s.commands);
    add("outbound", s.outbound);
    add("events", s.events);
    s.raw.forEach((r, k) => add(`raw.${k + 1}`, r));
    s.opened.forEach((r, k) => add(`opened.${k + 1}`, r));
    this.openers.forEach((t, k) => {
      out[`opener.${k + 1}.opened`] = t.counters.load(WorkerSlot.DatagramsOpened);
      out[`opener.${k + 1}.ringDrops`] = t.counters.load(WorkerSlot.RingDrops);
      out[`opener.${k + 1}.badFrames`] = t.counters.load(WorkerSlot.BadFrames);
    });
    if (this.envelope !== null) {
      // Summed with the protocol worker's seal.* (EngineBase adds counters both report): the
      // seal/open workers' drops, and what the main thread's envelope did (multicast announcements).
      const main = this.envelope.stats();
      for (const name of ["sealed", "opened", "plaintextSent", "plaintextAccepted"]) out[`seal.${name}`] = main[name] ?? 0;
      DROP_REASONS.forEach((reason, i) => {
        let n = main[`dropped.${reason}`] ?? 0;
        for (const t of this.openers) n += t.counters.load(WorkerSlot.DroppedBase + i);
        out[`seal.dropped.${reason}`] = n;
      });
    }
    return out;
  }

  /** The seal settings, keys and shared nonce counter the workers build their envelopes from. */
  private sealData(): WorkerSealData | null {
    const envelope = this.envelope;
    if (envelope === null) return null;
    const { boot, counter } = envelope.nonceState();
    const nonces = SharedCounters.create(1, [counter]);
    // This thread's envelope (multicast announcements) takes its nonces from the same counter.
    envelope.useNonces({ boot, next: () => nonces.add(0) });
    return { settings: envelope.settings, keys: envelope.keys.keys(), nonceCounter: nonces.sharedBuffer, boot };
  }

  /** `ip:port` of frame `frame` of ring `ring` (see WorkerNotice), if it is still in the history. */
  private sourceOf(ring: number, frame: number): string | null {
    const h = this.sources[ring + 1];
    if (h === undefined || frame < 0 || frame >= h.written || h.written - frame > SOURCE_HISTORY) return null;
    const i = frame & (SOURCE_HISTORY - 1);
    const ip = h.ips[i] as string;
    return ip.includes(":") ? `[${ip}]:${h.ports[i]}` : `${ip}:${h.ports[i]}`;
  }

  /**
   * Socket -> a ring, as received (no parsing here); published once per event-loop turn
   * (batching). With seal/open workers, a datagram goes to them round robin, unless the
   * protocol worker sleeps: then it has nothing else to do, and the first few datagrams of the
   * turn go straight to it (it opens them itself, as with one worker), which saves a hand-off
   * and a thread wake-up per datagram while the agent is lightly loaded. A busy protocol
   * worker never sleeps, so under load every datagram is opened in front of it.
   */
  private readonly onSocketDatagram = (received: Uint8Array, fromIp: string, fromPort: number): void => {
    let ring: RingProducer;
    let history: SourceHistory;
    const raw = this.rings.raw;
    if (raw.length === 0 || (this.directThisTurn < this.directPerTurn && this.rings.workerSleeping())) {
      ring = this.rings.inbound;
      history = this.sources[0] as SourceHistory;
      if (raw.length > 0) this.directThisTurn++;
    } else {
      ring = raw[this.nextOpener] as RingProducer;
      history = this.sources[this.nextOpener + 1] as SourceHistory;
      this.nextOpener = this.nextOpener + 1 === raw.length ? 0 : this.nextOpener + 1;
    }
    if (this.coreGone || !writeDatagramIn(ring, performance.now(), received)) {
      this.inboundDropped++;
      return;
    }
    // Kept as received (the string dgram made anyway): read only if the datagram is dropped later.
    const i = history.written++ & (SOURCE_HISTORY - 1);
    history.ips[i] = fromIp;
    history.ports[i] = fromPort;
    if (this.publishScheduled) return;
    this.publishScheduled = true;
    setImmediate(this.publishInbound);
  };

  private readonly publishInbound = (): void => {
    this.publishScheduled = false;
    this.directThisTurn = 0;
    this.rings.inbound.publish();
    for (const ring of this.rings.raw) ring.publish();
  };

  /** Outbound ring -> socket, events ring -> listeners and requests, until stopped. */
  private async pump(): Promise<void> {
    const rings = this.rings;
    while (!this.pumpDone) {
      this.drainOutputs(OUTPUT_BATCH);
      if (this.pumpDone) break;
      if (rings.hasWork()) await yieldToEventLoop();
      else await rings.waitAsync(PUMP_IDLE_WAIT_MS);
    }
  }

  private drainOutputs(maxFrames: number): void {
    try {
      this.rings.outbound.drainRaw(this.onOutbound, maxFrames);
      this.rings.events.drainRaw(this.onOutput, maxFrames);
    } catch (err) {
      // Only a clobbered ring (RingCorruptedError) gets here: the engine cannot go on.
      this.pumpDone = true;
      this.fail(err instanceof Error ? err : new Error(String(err)));
    }
  }

  private readonly onOutbound: RawFrameVisitor = (data, offset, lengthBytes) => {
    const view = this.outView;
    if (!readDatagramOut(data, offset, lengthBytes, view) || view.to === null) {
      this.counters.badFrames++;
      return;
    }
    // dgram may read the bytes after this call returns, and the ring slot is reused: copied
    // (the datagram is sealed already, by the protocol worker).
    this.transport.send(view.to, data.slice(view.payloadOffset, view.payloadOffset + view.payloadBytes));
  };

  private readonly onOutput: RawFrameVisitor = (data, offset, lengthBytes) => {
    let out;
    try {
      out = readOutput(data, offset, lengthBytes);
    } catch {
      this.counters.badFrames++;
      return;
    }
    if (out.kind === "event") this.deliverEvent(out.event);
    else if (out.kind === "snapshotPart") this.deliverSnapshotPart(out.token, out.members, out.last, out.truncated);
    else {
      if (out.reply.type === "stopped") {
        // The worker's last frame: send what it queued before it, then stop pumping.
        this.rings.outbound.drainRaw(this.onOutbound);
        this.pumpDone = true;
      } else if (out.reply.type === "left") {
        // The leave announcement was queued before this reply: on the socket with it, first.
        this.rings.outbound.drainRaw(this.onOutbound);
      }
      this.deliverReply(out.reply);
    }
  };
}

function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** Whether `promise` settles within `timeoutMs` (the timer is cleared either way). */
async function settlesWithin(promise: Promise<unknown>, timeoutMs: number): Promise<boolean> {
  let timer: NodeJS.Timeout | null = null;
  const timeout = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), timeoutMs);
  });
  try {
    return await Promise.race([promise.then(() => true), timeout]);
  } finally {
    if (timer !== null) clearTimeout(timer);
  }
}
