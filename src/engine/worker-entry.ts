/**
 * src/engine/worker-entry.ts: owns the protocol worker thread of a WorkerEngine. It attaches
 * the ring bundle from workerData, builds a CoreHost (src/engine/host.ts) whose sink encodes
 * datagrams into the outbound ring (sealed first, when the engine seals) and events/replies into
 * the events ring, and loops: drain commands and received datagrams (bounded batches), fire due
 * timers, publish, then sleep in the rings' waitSync until a doorbell, a control message or the
 * next timer deadline. What a received datagram makes the core send (an ACK) is published as
 * soon as that datagram is handled, ahead of the rest of its batch. A frame that does not fit
 * its ring is dropped and counted. It ends after the stop command, whose reply is its last frame.
 *
 * Received datagrams come either raw from the main thread (the inbound ring: this worker opens
 * them itself) or opened by the seal/open workers in front of it (their opened rings); either
 * way this worker alone admits them through the replay windows (src/engine/worker-seal.ts says
 * who owns what) before the core sees them.
 */

import { getHeapStatistics } from "node:v8";
import { isMainThread, workerData, type MessagePort } from "node:worker_threads";
import { addr } from "../core/address.js";
import { attachWorkerSide, SharedCounters, type RawFrameVisitor } from "../shm/index.js";
import { CoreHost, type HostSink } from "./host.js";
import {
  newDatagramInView,
  readCommand,
  readDatagramIn,
  readDatagramOpened,
  writeDatagramOut,
  writeEvent,
  writeReply,
  type EngineWorkerData,
} from "./protocol.js";
import { WorkerSeal } from "./worker-seal.js";

/** Longest single sleep (ms) even with no timer due; only bounds the cost of a lost wake-up. */
const IDLE_WAIT_CAP_MS = 1_000;
/** Frames taken from a ring before timers run and outputs are published. */
const DATAGRAM_BATCH = 256;
const COMMAND_BATCH = 64;

type ProtocolWorkerData = EngineWorkerData & { readonly port: MessagePort; readonly control: SharedArrayBuffer };

function run(data: ProtocolWorkerData): void {
  const rings = attachWorkerSide(data.buffers, data.spinIterations === undefined ? {} : { spinIterations: data.spinIterations });
  // nowMs on the main thread's time base, so receive times stamped there compare with ours.
  const offsetMs = performance.timeOrigin - data.baseTimeOriginMs;
  const now = (): number => performance.now() + offsetMs;
  const seal = new WorkerSeal(data.seal, data.port, SharedCounters.attach(data.control));
  const envelope = seal.envelope;

  const dropped = { outbound: 0, events: 0, replies: 0, badFrames: 0 };
  const sink: HostSink = {
    send: (to, datagram) => {
      if (!writeDatagramOut(rings.outbound, to, envelope === null ? datagram : envelope.wrap(datagram))) dropped.outbound++;
    },
    emit: (event) => {
      if (!writeEvent(rings.events, event)) dropped.events++;
    },
    reply: (reply) => {
      if (!writeReply(rings.events, reply)) dropped.replies++;
    },
    stats: () => {
      const out: Record<string, number> = {
        "worker.outboundDropped": dropped.outbound,
        "worker.eventsDropped": dropped.events,
        "worker.repliesDropped": dropped.replies,
        "worker.badFrames": dropped.badFrames,
        "worker.badControl": seal.badControl,
        // This thread's own JavaScript heap (each worker has its own isolate).
        "worker.heap_used_bytes": getHeapStatistics().used_heap_size,
      };
      if (envelope !== null) for (const [k, v] of Object.entries(envelope.stats())) out[`seal.${k}`] = v;
      return out;
    },
  };
  const host = new CoreHost(
    {
      self: addr(data.selfKey),
      config: data.config,
      seed: data.seed,
      incarnation: data.incarnation,
      broadcastEpoch: data.broadcastEpoch,
      cookieSecret: data.cookieSecret,
      seeds: data.seedKeys.map(addr),
      reconnectTargets: data.reconnectTargetKeys.map(addr),
      ...(data.tags === undefined ? {} : { tags: data.tags }),
      // nowMs is on the main thread's time base, which starts at its timeOrigin.
      wallClockOffsetMs: data.baseTimeOriginMs,
    },
    sink,
  );

  const onCommand: RawFrameVisitor = (bytes, offset, lengthBytes) => {
    let cmd;
    try {
      cmd = readCommand(bytes, offset, lengthBytes);
    } catch {
      dropped.badFrames++;
      return;
    }
    host.dispatch(now(), cmd);
  };
  // What a received datagram makes the core send (an ACK, an answer to an indirect probe) is
  // published at once, not after the rest of the batch and the timers: the main thread sends it
  // on its next turn, and a prober's round trip does not wait for this worker's other work.
  const answer = (receivedAtMs: number, datagram: Uint8Array): void => {
    host.handleDatagram(receivedAtMs, datagram);
    rings.outbound.publish();
  };
  const view = newDatagramInView();
  // Raw from the main thread: opened here (when sealing), then admitted.
  let inboundFrame = -1;
  const onDatagram: RawFrameVisitor = (bytes, offset, lengthBytes) => {
    inboundFrame++;
    if (!readDatagramIn(bytes, offset, lengthBytes, view)) {
      dropped.badFrames++;
      return;
    }
    // A view into the ring: the core copies whatever it keeps.
    const received = bytes.subarray(view.payloadOffset, view.payloadOffset + view.payloadBytes);
    if (envelope === null) {
      answer(view.receivedAtMs, received);
      return;
    }
    seal.ring = -1;
    seal.frame = inboundFrame;
    const opened = envelope.authenticate(received, null, 0);
    const datagram = opened === null ? null : envelope.admit(opened);
    if (datagram !== null) answer(view.receivedAtMs, datagram);
  };
  // Opened by a seal/open worker: admitted here (the replay windows are this thread's).
  const onOpened: RawFrameVisitor = (bytes, offset, lengthBytes) => {
    if (!readDatagramOpened(bytes, offset, lengthBytes, view)) {
      dropped.badFrames++;
      return;
    }
    const opened = bytes.subarray(view.payloadOffset, view.payloadOffset + view.payloadBytes);
    // A replay found here cannot be traced to its source (the opened rings skip what the openers dropped).
    seal.frame = -1;
    const datagram = envelope === null ? opened : envelope.admit({ datagram: opened, sealed: view.sealed, boot: view.boot, counter: view.counter });
    if (datagram !== null) answer(view.receivedAtMs, datagram);
  };

  while (!host.stopped) {
    if (seal.controlPending()) seal.drainControl();
    rings.commands.drainRaw(onCommand, COMMAND_BATCH);
    if (!host.stopped) {
      rings.inbound.drainRaw(onDatagram, DATAGRAM_BATCH);
      for (const ring of rings.opened) ring.drainRaw(onOpened, DATAGRAM_BATCH);
      host.fireDueTimers(now());
    }
    rings.outbound.publish();
    rings.events.publish();
    seal.reportDrops(now());
    if (host.stopped || rings.hasWork() || seal.controlPending()) continue;
    const waitMs = Math.min(host.nextDeadlineMs() - now(), IDLE_WAIT_CAP_MS);
    if (waitMs > 0) rings.waitSync(waitMs, seal.controlPending);
  }
  rings.outbound.publish();
  rings.events.publish();
}

if (!isMainThread) run(workerData as ProtocolWorkerData);
