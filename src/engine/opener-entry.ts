/**
 * src/engine/opener-entry.ts: owns a seal/open worker thread, one of those that a WorkerEngine
 * with `workers` >= 2 puts in front of its protocol worker. It takes received datagrams from its
 * raw ring (the main thread deals them out round robin), authenticates them (label, plaintext
 * rules, AES-GCM open: the costly part of a sealed datagram), and passes what opened, with its
 * nonce, to the protocol worker through its opened ring; that worker alone checks replays and
 * runs the protocol. What fails is dropped here, counted (SharedCounters the main thread reads)
 * and reported (WorkerSeal). It sleeps in Atomics.wait on its doorbell; key changes arrive on
 * its control port. It runs until the main thread terminates it.
 */

import { isMainThread, workerData, type MessagePort } from "node:worker_threads";
import { attachOpenerSide, SharedCounters, type RawFrameVisitor } from "../shm/index.js";
import { newDatagramInView, readDatagramIn, writeDatagramOpened, WorkerSlot, type OpenerWorkerData } from "./protocol.js";
import { WorkerSeal } from "./worker-seal.js";

/** Frames taken from the raw ring before the opened ring is published and control is drained. */
const DATAGRAM_BATCH = 256;
/** Longest sleep with nothing to do (ms): bounds how late a drop report can be. */
const IDLE_WAIT_MS = 1_000;

function run(data: OpenerWorkerData & { readonly port: MessagePort }): void {
  const rings = attachOpenerSide(data.buffers, data.index, data.spinIterations === undefined ? {} : { spinIterations: data.spinIterations });
  const counters = SharedCounters.attach(data.counters);
  const seal = new WorkerSeal(data.seal, data.port, counters);
  const envelope = seal.envelope;
  const view = newDatagramInView();
  seal.ring = data.index;
  const onDatagram: RawFrameVisitor = (bytes, offset, lengthBytes) => {
    seal.frame++;
    if (!readDatagramIn(bytes, offset, lengthBytes, view)) {
      counters.add(WorkerSlot.BadFrames);
      return;
    }
    const received = bytes.subarray(view.payloadOffset, view.payloadOffset + view.payloadBytes);
    let ok: boolean;
    if (envelope === null) {
      ok = writeDatagramOpened(rings.opened, view.receivedAtMs, false, 0, 0, received);
    } else {
      const opened = envelope.authenticate(received, null, 0);
      if (opened === null) return; // counted by reason (WorkerSeal)
      counters.add(WorkerSlot.DatagramsOpened);
      ok = writeDatagramOpened(rings.opened, view.receivedAtMs, opened.sealed, opened.boot, opened.counter, opened.datagram);
    }
    if (!ok) counters.add(WorkerSlot.RingDrops);
  };
  for (;;) {
    if (seal.controlPending()) seal.drainControl();
    rings.raw.drainRaw(onDatagram, DATAGRAM_BATCH);
    rings.opened.publish();
    seal.reportDrops(performance.now());
    if (!rings.raw.hasData() && !seal.controlPending()) rings.waitSync(IDLE_WAIT_MS, seal.controlPending);
  }
}

if (!isMainThread) run(workerData as OpenerWorkerData & { readonly port: MessagePort });
