/**
 * Cluster requests: one request (a kind and payload bytes) sent to every alive member, and
 * their answers collected by a deadline. The first user is keyring rotation (`tamtam keys`);
 * `kind` is opaque to the core, so other kinds of queries can follow.
 *
 * The origin:
 *   - sends REQUEST (epoch, id, kind, payload) to each target (every member alive when the
 *     request starts, self excluded), then again to those that have not answered, at every
 *     quarter of the timeout (REQUEST_SENDS sends in all), so a lost datagram costs one retry;
 *   - takes the first RESPONSE of each target (duplicates and answers of non-targets are
 *     dropped and counted), emits a `requestAnswer` event for it, and ends the request with a
 *     `requestDone` event naming the targets that did not answer: at the deadline, or as soon
 *     as every target answered.
 * The receiver:
 *   - hands a REQUEST to its host as a `request` event with a handle; the host answers through
 *     `answer(handle, payload)`, which sends the RESPONSE;
 *   - remembers the last MAX_REMEMBERED requests it saw (by sender, epoch and id): a repeated
 *     request is not handed to the host again; it gets the remembered answer again (or nothing
 *     while the host has not answered yet).
 *
 * Bounds: MAX_IN_FLIGHT requests of this node at a time, MAX_TARGETS members per request,
 * MAX_REMEMBERED requests (and their answers) remembered, payloads of at most
 * maxRequestPayloadBytes(config) (a REQUEST or RESPONSE is one datagram with room to spare).
 * The epoch is the node's broadcast epoch: (epoch, id) never repeats across lives.
 */

import type { Address } from "./address.js";
import type { SwimConfig } from "./config.js";
import type { CoreEvent, MemberInfo, Runtime } from "./runtime.js";
import { type Body, MemberState, MessageType, SEALED_OVERHEAD_BYTES } from "./wire/messages.js";

/** Requests of this node in flight at a time; more are refused (BUSY). */
export const MAX_IN_FLIGHT = 16;
/** Members one request reaches at most; a larger cluster is refused (TOO_MANY_MEMBERS). */
export const MAX_TARGETS = 2048;
/** Requests of other members remembered (with their answers), oldest forgotten first. */
export const MAX_REMEMBERED = 256;
/** Times a request goes to a target that does not answer: at 0, 1/4, 1/2 and 3/4 of the timeout. */
export const REQUEST_SENDS = 4;
/** Range of a request's timeout (ms). */
export const MIN_REQUEST_TIMEOUT_MS = 10;
export const MAX_REQUEST_TIMEOUT_MS = 600_000;
/**
 * Largest REQUEST or RESPONSE header: fixed header 5, IPv6 from 19, incarnation 5, epoch 5,
 * id 5, kind 5, payload length 3.
 */
const MAX_REQUEST_HEADER_BYTES = 5 + 19 + 5 + 5 + 5 + 5 + 3;

/** Largest request or answer payload under `config` (bytes): one datagram, envelope included. */
export function maxRequestPayloadBytes(config: SwimConfig): number {
  return Math.max(0, config.maxPacketBytes - (config.sealed ? SEALED_OVERHEAD_BYTES : 0) - MAX_REQUEST_HEADER_BYTES);
}

export type RequestRefusal = "BUSY" | "TOO_LARGE" | "TOO_MANY_MEMBERS" | "LEFT" | "BAD_TIMEOUT" | "BAD_KIND";

export type RequestOutcome = { readonly ok: true; readonly targets: number } | { readonly ok: false; readonly code: RequestRefusal; readonly message: string };

export interface RequestStats {
  /** Requests this node started, and those it refused to start. */
  requestsStarted: number;
  requestsRefused: number;
  /** Requests that ended with every target's answer, and with some missing. */
  requestsComplete: number;
  requestsIncomplete: number;
  /** REQUEST datagrams sent, first sends and retries. */
  requestDatagramsSent: number;
  requestRetries: number;
  /** Answers taken; answers dropped (repeated, late, or from a member not asked). */
  answersReceived: number;
  answersDropped: number;
  /** Requests of other members handed to the host; repeats of them; RESPONSEs sent. */
  requestsReceived: number;
  requestsRepeated: number;
  answersSent: number;
  /** Answers of the host that came too late (the request was forgotten) or were too large. */
  answersRefused: number;
}

/** What the requests need from their node. */
export interface RequestLink {
  /** Sends one datagram with `body` (and piggyback) to `to`. */
  send(rt: Runtime, to: Address, body: Body): void;
  /** The member table (for the targets). */
  members(): readonly MemberInfo[];
  /** Whether the node has left (it neither starts nor answers requests then). */
  hasLeft(): boolean;
}

interface Outgoing {
  readonly token: number;
  readonly targets: Map<string, Address>;
  /** Keys of the targets that answered. */
  readonly answered: Set<string>;
  readonly timeoutMs: number;
  readonly deadlineMs: number;
  readonly body: Body;
  sends: number;
}

interface Remembered {
  readonly from: Address;
  readonly epoch: number;
  readonly id: number;
  /** The host's answer once given. */
  answer: Uint8Array | null;
}

export class ClusterRequests {
  readonly stats: RequestStats = {
    requestsStarted: 0,
    requestsRefused: 0,
    requestsComplete: 0,
    requestsIncomplete: 0,
    requestDatagramsSent: 0,
    requestRetries: 0,
    answersReceived: 0,
    answersDropped: 0,
    requestsReceived: 0,
    requestsRepeated: 0,
    answersSent: 0,
    answersRefused: 0,
  };
  readonly maxPayloadBytes: number;
  private readonly outgoing = new Map<number, Outgoing>();
  /** Requests of other members, by `from.key/epoch/id`, oldest first. */
  private readonly remembered = new Map<string, Remembered>();
  /** Handles given to the host, to the key in `remembered`. */
  private readonly handles = new Map<number, string>();
  private nextId = 1;
  private nextHandle = 1;

  constructor(
    config: SwimConfig,
    private readonly epoch: number,
    private readonly link: RequestLink,
  ) {
    this.maxPayloadBytes = maxRequestPayloadBytes(config);
  }

  /** Requests of this node in flight. */
  get inFlight(): number {
    return this.outgoing.size;
  }

  /**
   * Starts a request to every member alive now (self excluded). Emits one `requestAnswer` per
   * answering member and then `requestDone`, all with `token`; with no other alive member, the
   * `requestDone` comes at once. A refused request emits nothing.
   */
  start(nowMs: number, kind: number, payload: Uint8Array, timeoutMs: number, token: number, rt: Runtime): RequestOutcome {
    const refused = this.refusal(kind, payload, timeoutMs);
    if (refused !== null) {
      this.stats.requestsRefused++;
      return refused;
    }
    const targets = new Map<string, Address>();
    for (const m of this.link.members()) if (!m.isSelf && m.state === MemberState.Alive) targets.set(m.address.key, m.address);
    if (targets.size > MAX_TARGETS) {
      this.stats.requestsRefused++;
      return { ok: false, code: "TOO_MANY_MEMBERS", message: `a cluster request reaches at most ${MAX_TARGETS} members, ${targets.size} are alive` };
    }
    this.stats.requestsStarted++;
    const id = this.nextId;
    this.nextId = this.nextId >= 0xffffffff ? 1 : this.nextId + 1;
    const body: Body = { type: MessageType.Request, epoch: this.epoch, id, kind, payload: payload.slice() };
    const req: Outgoing = { token, targets, answered: new Set(), timeoutMs, deadlineMs: nowMs + timeoutMs, body, sends: 0 };
    if (targets.size === 0) {
      this.finish(req, rt);
      return { ok: true, targets: 0 };
    }
    this.outgoing.set(id, req);
    this.sendRound(req, rt);
    rt.setTimer(this.nextTimerAt(nowMs, req), { kind: "clusterRequest", id });
    return { ok: true, targets: targets.size };
  }

  /** The host's answer to the request it was handed as `handle`; false if it is forgotten or the answer too large. */
  answer(handle: number, payload: Uint8Array, rt: Runtime): boolean {
    const key = this.handles.get(handle);
    const r = key === undefined ? undefined : this.remembered.get(key);
    if (r === undefined || r.answer !== null || payload.length > this.maxPayloadBytes) {
      this.stats.answersRefused++;
      return false;
    }
    this.handles.delete(handle);
    r.answer = payload.slice();
    this.sendAnswer(r, rt);
    return true;
  }

  /** A REQUEST from another member. */
  onRequest(from: Address, body: Extract<Body, { type: typeof MessageType.Request }>, rt: Runtime): void {
    if (this.link.hasLeft()) return;
    const key = `${from.key}/${body.epoch}/${body.id}`;
    const seen = this.remembered.get(key);
    if (seen !== undefined) {
      this.stats.requestsRepeated++;
      if (seen.answer !== null) this.sendAnswer(seen, rt);
      return;
    }
    if (this.remembered.size >= MAX_REMEMBERED) {
      const oldest = this.remembered.keys().next().value as string;
      this.remembered.delete(oldest);
      for (const [h, k] of this.handles) {
        if (k === oldest) {
          this.handles.delete(h);
          break;
        }
      }
    }
    this.remembered.set(key, { from, epoch: body.epoch, id: body.id, answer: null });
    const handle = this.nextHandle;
    this.nextHandle = this.nextHandle >= 0xffffffff ? 1 : this.nextHandle + 1;
    this.handles.set(handle, key);
    this.stats.requestsReceived++;
    const event: CoreEvent = { type: "request", handle, from, kind: body.kind, payload: body.payload };
    rt.emit(event);
  }

  /** A RESPONSE from another member. */
  onResponse(from: Address, body: Extract<Body, { type: typeof MessageType.Response }>, rt: Runtime): void {
    const req = body.epoch === this.epoch ? this.outgoing.get(body.id) : undefined;
    if (req === undefined || !req.targets.has(from.key) || req.answered.has(from.key) || body.payload.length > this.maxPayloadBytes) {
      this.stats.answersDropped++;
      return;
    }
    req.answered.add(from.key);
    this.stats.answersReceived++;
    rt.emit({ type: "requestAnswer", token: req.token, from: req.targets.get(from.key) as Address, payload: body.payload });
    if (req.answered.size === req.targets.size) {
      this.outgoing.delete(body.id);
      this.finish(req, rt);
    }
  }

  /** The request's timer: a retry round, or the deadline. Stale timers are ignored. */
  onTimer(nowMs: number, id: number, rt: Runtime): void {
    const req = this.outgoing.get(id);
    if (req === undefined) return;
    if (nowMs >= req.deadlineMs) {
      this.outgoing.delete(id);
      this.finish(req, rt);
      return;
    }
    if (req.sends < REQUEST_SENDS) this.sendRound(req, rt);
    rt.setTimer(this.nextTimerAt(nowMs, req), { kind: "clusterRequest", id });
  }

  private refusal(kind: number, payload: Uint8Array, timeoutMs: number): RequestOutcome | null {
    if (this.link.hasLeft()) return { ok: false, code: "LEFT", message: "this node has left the cluster" };
    if (kind >>> 0 !== kind) return { ok: false, code: "BAD_KIND", message: `a request kind is an integer in 0..2^32-1, got ${kind}` };
    if (!Number.isInteger(timeoutMs) || timeoutMs < MIN_REQUEST_TIMEOUT_MS || timeoutMs > MAX_REQUEST_TIMEOUT_MS) {
      return { ok: false, code: "BAD_TIMEOUT", message: `a request timeout is ${MIN_REQUEST_TIMEOUT_MS}..${MAX_REQUEST_TIMEOUT_MS} ms, got ${timeoutMs}` };
    }
    if (payload.length > this.maxPayloadBytes) {
      return { ok: false, code: "TOO_LARGE", message: `a request carries at most ${this.maxPayloadBytes} bytes, got ${payload.length}` };
    }
    if (this.outgoing.size >= MAX_IN_FLIGHT) return { ok: false, code: "BUSY", message: `at most ${MAX_IN_FLIGHT} cluster requests run at a time` };
    return null;
  }

  /** The next retry (a quarter of the timeout after the last send) or the deadline. */
  private nextTimerAt(nowMs: number, req: Outgoing): number {
    if (req.sends >= REQUEST_SENDS) return req.deadlineMs;
    const step = Math.max(1, Math.floor(req.timeoutMs / REQUEST_SENDS));
    return Math.min(req.deadlineMs, nowMs + step);
  }

  private sendRound(req: Outgoing, rt: Runtime): void {
    const retry = req.sends > 0;
    req.sends++;
    for (const [key, to] of req.targets) {
      if (req.answered.has(key)) continue;
      this.stats.requestDatagramsSent++;
      if (retry) this.stats.requestRetries++;
      this.link.send(rt, to, req.body);
    }
  }

  private sendAnswer(r: Remembered, rt: Runtime): void {
    this.stats.answersSent++;
    this.link.send(rt, r.from, { type: MessageType.Response, epoch: r.epoch, id: r.id, payload: r.answer as Uint8Array });
  }

  private finish(req: Outgoing, rt: Runtime): void {
    const missing: Address[] = [];
    for (const [key, a] of req.targets) if (!req.answered.has(key)) missing.push(a);
    if (missing.length === 0) this.stats.requestsComplete++;
    else this.stats.requestsIncomplete++;
    rt.emit({ type: "requestDone", token: req.token, missing });
  }
}
