/**
 * src/engine/worker-entry.ts: owns the protocol worker thread of a WorkerEngine. It attaches
 * the ring bundle from workerData, builds a CoreHost (src/engine/host.ts) whose sink encodes
 * datagrams into the outbound ring and events/replies into the events ring, and loops: drain
 * commands and inbound datagrams (bounded batches), fire due timers, publish, then sleep in
 * the rings' waitSync until a doorbell or the next timer deadline. A frame that does not fit
 * its ring is dropped and counted. It ends after the stop command, whose reply is its last frame.
 */

import { isMainThread, workerData } from "node:worker_threads";
import { addr } from "../core/address.js";
import { attachWorkerSide, type RawFrameVisitor } from "../shm/index.js";
import { CoreHost, type HostSink } from "./host.js";
import {
  newDatagramInView,
  readCommand,
  readDatagramIn,
  writeDatagramOut,
  writeEvent,
  writeReply,
  type EngineWorkerData,
} from "./protocol.js";

/** Longest single sleep (ms) even with no timer due; only bounds the cost of a lost wake-up. */
const IDLE_WAIT_CAP_MS = 1_000;
/** Frames taken from a ring before timers run and outputs are published. */
const DATAGRAM_BATCH = 256;
const COMMAND_BATCH = 64;

function run(data: EngineWorkerData): void {
  const rings = attachWorkerSide(data.buffers, data.spinIterations === undefined ? {} : { spinIterations: data.spinIterations });
  // nowMs on the main thread's time base, so receive times stamped there compare with ours.
  const offsetMs = performance.timeOrigin - data.baseTimeOriginMs;
  const now = (): number => performance.now() + offsetMs;

  const dropped = { outbound: 0, events: 0, replies: 0, badFrames: 0 };
  const sink: HostSink = {
    send: (to, datagram) => {
      if (!writeDatagramOut(rings.outbound, to, datagram)) dropped.outbound++;
    },
    emit: (event) => {
      if (!writeEvent(rings.events, event)) dropped.events++;
    },
    reply: (reply) => {
      if (!writeReply(rings.events, reply)) dropped.replies++;
    },
    stats: () => ({
      "worker.outboundDropped": dropped.outbound,
      "worker.eventsDropped": dropped.events,
      "worker.repliesDropped": dropped.replies,
      "worker.badFrames": dropped.badFrames,
    }),
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
  const view = newDatagramInView();
  const onDatagram: RawFrameVisitor = (bytes, offset, lengthBytes) => {
    if (!readDatagramIn(bytes, offset, lengthBytes, view)) {
      dropped.badFrames++;
      return;
    }
    // A view into the ring: the core copies whatever it keeps.
    host.handleDatagram(view.receivedAtMs, bytes.subarray(view.payloadOffset, view.payloadOffset + view.payloadBytes));
  };

  while (!host.stopped) {
    rings.commands.drainRaw(onCommand, COMMAND_BATCH);
    if (!host.stopped) {
      rings.inbound.drainRaw(onDatagram, DATAGRAM_BATCH);
      host.fireDueTimers(now());
    }
    rings.outbound.publish();
    rings.events.publish();
    if (host.stopped || rings.hasWork()) continue;
    const waitMs = Math.min(host.nextDeadlineMs() - now(), IDLE_WAIT_CAP_MS);
    if (waitMs > 0) rings.waitSync(waitMs);
  }
  rings.outbound.publish();
  rings.events.publish();
}

if (!isMainThread) run(workerData as EngineWorkerData);
