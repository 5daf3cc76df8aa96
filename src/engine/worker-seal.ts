/**
 * src/engine/worker-seal.ts: owns what a worker thread of the engine (the protocol worker or a
 * seal/open worker) needs to seal and open: its own Envelope (src/seal) over a keyring copy,
 * sealing with the nonces of the one shared counter; the control port through which the main
 * thread sends key changes (drained with receiveMessageOnPort, never by an event listener,
 * since the worker sleeps in Atomics.wait and not in the event loop); and the drop reports it
 * posts back, batched per reason, at most one message per reason a second (and counts in its
 * SharedCounters, which the main thread reads for Stats).
 *
 * Who owns what: the keys are the main thread's (src/agent/keys.ts changes them there, the
 * keyring file follows); every worker holds a copy that the main thread replaces whole on each
 * change, posted before anything the change affects is written to a ring. The replay windows
 * belong to the protocol worker alone (the one place that admits datagrams), whatever number of
 * seal/open workers authenticate in front of it.
 */

import { receiveMessageOnPort, type MessagePort } from "node:worker_threads";
import { Envelope, DROP_REASONS, type DropReason } from "../seal/envelope.js";
import { Keyring } from "../seal/keyring.js";
import { SharedCounters } from "../shm/index.js";
import { WorkerSlot, type ControlMessage, type WorkerNotice, type WorkerSealData } from "./protocol.js";

/** Shortest time between two drop reports of one reason (ms). */
const DROP_REPORT_INTERVAL_MS = 1_000;

export class WorkerSeal {
  /** Null when the engine does not seal (no keys and no label). */
  readonly envelope: Envelope | null;
  private readonly keyring: Keyring | null;
  private readonly port: MessagePort;
  private readonly control: SharedCounters;
  private controlSeen = 0;
  private readonly pendingDrops = new Map<DropReason, { count: number; ring: number; frame: number }>();
  /** Where the datagram being opened came from (see WorkerNotice); set by the entry before each. */
  ring = -1;
  frame = -1;
  private lastReportMs = -Infinity;
  /** Control messages that could not be applied (a bug; counted). */
  badControl = 0;

  constructor(seal: WorkerSealData | null, port: MessagePort, control: SharedCounters) {
    this.port = port;
    this.control = control;
    if (seal === null) {
      this.envelope = null;
      this.keyring = null;
      return;
    }
    this.keyring = new Keyring(seal.keys);
    const nonces = SharedCounters.attach(seal.nonceCounter);
    this.envelope = new Envelope({
      keyring: this.keyring,
      ...seal.settings,
      nonces: { boot: seal.boot, next: () => nonces.add(0) },
      onDrop: (reason) => {
        this.pendingDrops.set(reason, { count: (this.pendingDrops.get(reason)?.count ?? 0) + 1, ring: this.ring, frame: this.frame });
        control.add(WorkerSlot.DroppedBase + DROP_REASONS.indexOf(reason));
      },
    });
  }

  /** Whether a control message was posted since the last drain (atomic load; for waitSync). */
  readonly controlPending = (): boolean => this.control.controlWord() !== this.controlSeen;

  /** Applies every control message waiting on the port, in order. */
  drainControl(): void {
    this.controlSeen = this.control.controlWord();
    for (;;) {
      const received = receiveMessageOnPort(this.port);
      if (received === undefined) return;
      const msg = received.message as ControlMessage;
      try {
        if (msg.type === "keys" && this.keyring !== null) this.keyring.replace(msg.keys);
        else this.badControl++;
      } catch {
        this.badControl++;
      }
    }
  }

  /** Posts the drops counted since the last report, if a report is due at `nowMs`. */
  reportDrops(nowMs: number): void {
    if (this.pendingDrops.size === 0 || nowMs - this.lastReportMs < DROP_REPORT_INTERVAL_MS) return;
    this.lastReportMs = nowMs;
    for (const reason of DROP_REASONS) {
      const drops = this.pendingDrops.get(reason);
      if (drops === undefined) continue;
      const notice: WorkerNotice = { type: "drops", reason, ...drops };
      this.port.postMessage(notice);
    }
    this.pendingDrops.clear();
  }
}
