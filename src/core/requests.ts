/**
 * Cluster requests: one request (a kind and payload bytes) sent to every alive member (or to
 * the members the host names), and their answers collected by a deadline. Users: keyring
 * rotation (`tamtam keys`) and user queries (`tamtam query`, src/agent/queries.ts); `kind` is
 * opaque to the core.
 *
 * The origin:
 *   - sends REQUEST (epoch, id, kind, payload) to each target (every member alive when the
 *     request starts, self excluded), then again to those that have not answered, at every
 *     quarter of the timeout (REQUEST_SENDS sends in all; with answer options, every eighth,
 *     QUERY_SENDS), so a lost datagram costs one retry;
 *   - takes the first RESPONSE of each target (duplicates and answers of non-targets are
 *     dropped and counted), emits a `requestAnswer` event for it, and ends the request with a
 *     `requestDone` event naming the targets that did not answer: at the deadline, or as soon
 *     as every target answered.
 * Options (a REQUEST_OPTIONS item on the REQUEST, when the origin asks for them):
 *   - ACK_WANTED: a target sends REQUEST_ACK at once (and again for every repeat of the request
 *     while its host has not answered); the origin emits `requestAck` once per target;
 *   - relay count r: a target sends its acknowledgement and its answer directly and, as RELAY
 *     datagrams, through r random alive members, which pass them on to the origin (RELAYED);
 *     so an answer is lost only when the direct path and all r relayed paths lose it.
 * The receiver:
 *   - hands a REQUEST to its host as a `request` event with a handle; the host answers through
 *     `answer(handle, payload)`, which sends the RESPONSE (and its relayed copies);
 *   - remembers the last MAX_REMEMBERED requests it saw (by sender, epoch and id): a repeated
 *     request is not handed to the host again; it gets the remembered answer again (or nothing
 *     while the host has not answered yet).
 *
 * Bounds: MAX_IN_FLIGHT requests of this node at a time, MAX_TARGETS members per request,
 * MAX_REMEMBERED requests (and their answers) remembered, request payloads of at most
 * maxRequestPayloadBytes(config) and answers of at most maxAnswerBytes(config) (a REQUEST,
 * RESPONSE or RELAYED answer is one datagram with room to spare). A member passes on only
 * RELAYs of members, each one datagram; the origin takes one answer per target, dropping
 * (and counting) duplicates, late ones and those of members not asked.
 * The epoch is the node's broadcast epoch: (epoch, id) never repeats across lives.
 *
 * Who can answer for a target (threat model). A target's acknowledgement and answer count only
 * when they carry its answer MAC: SipHash-2-4, keyed by the answer key, of (what, epoch, id,
 * payload) (answerMac). The answer key is the origin's for this request and this target
 * (answerKey: SipHash-2-4 under a secret of the origin's life, of (epoch, id, target address)),
 * sent only to that target, in its REQUEST; the origin recomputes it to check, and keeps
 * nothing. So:
 *   - a relay, which sees the RELAY it passes on (MAC and payload) but never the REQUEST (that
 *     goes straight from origin to target), can pass an answer on or drop it, but cannot alter
 *     it or make one up: a changed payload or a made-up RELAYED fails the MAC, and is dropped
 *     and counted (answerMacsRefused);
 *   - another target gets a REQUEST too, but with its own key, so it cannot answer for others;
 *   - neither can anyone else who names a target as the sender of a RESPONSE or REQUEST_ACK
 *     (TamTam knows a sender by the address its datagram names, not by the UDP source).
 * What is left: in a plaintext cluster, whoever can read the origin's REQUEST to a target on
 * the network (on the path, or on a shared segment) learns that target's answer key and can
 * answer in its name; plaintext gossip trusts its network in any case. Sealed, REQUESTs are
 * secret, and every key holder is trusted (it can seal anything in any member's name), so
 * this adds nothing there. A replayed answer of an earlier request fails too (epoch and id are
 * in the MAC). Without a key anyone can still send a REQUEST in a member's name (requests are
 * not authenticated), also one with the (epoch, id) of a real one before the real one arrives:
 * the target then answers under the wrong key and the origin drops that answer, a lost answer
 * (reported missing), never a forged one.
 */

import type { Address } from "./address.js";
import type { SwimConfig } from "./config.js";
import type { CoreEvent, MemberInfo, Runtime } from "./runtime.js";
import { SIPHASH_KEY_BYTES, SIPHASH_OUTPUT_BYTES, siphash24 } from "./siphash.js";
import { encodeRequestOptionsItem } from "./wire/codec.js";
import {
  ANSWER_KEY_BYTES,
  ANSWER_MAC_BYTES,
  type Body,
  MAX_RELAY_COUNT,
  MemberState,
  MessageType,
  RELAY_ACK,
  RELAY_RESPONSE,
  type RequestOptions,
  SEALED_OVERHEAD_BYTES,
} from "./wire/messages.js";

/** Requests of this node in flight at a time; more are refused (BUSY). */
export const MAX_IN_FLIGHT = 16;
/** Members one request reaches at most; a larger cluster is refused (TOO_MANY_MEMBERS). */
export const MAX_TARGETS = 2048;
/** Requests of other members remembered (with their answers), oldest forgotten first. */
export const MAX_REMEMBERED = 256;
/** Times a request goes to a target that does not answer: at 0, 1/4, 1/2 and 3/4 of the timeout. */
export const REQUEST_SENDS = 4;
/**
 * Times a request with answer options (a query) goes to a target that has not answered: at every
 * eighth of its timeout. Queries are made for lossy networks (relays, acknowledgements): at 20 %
 * loss one round gets an answer back with probability about 0.78 (relay count 2), so eight rounds
 * leave a member unheard with probability about 0.22^8, 6e-6.
 */
export const QUERY_SENDS = 8;
/** Range of a request's timeout (ms). */
export const MIN_REQUEST_TIMEOUT_MS = 10;
export const MAX_REQUEST_TIMEOUT_MS = 600_000;
/**
 * Largest REQUEST header: fixed header 5, IPv6 from 19, incarnation 5, epoch 5, id 5, kind 5,
 * answer key 16, payload length 3.
 */
const MAX_REQUEST_HEADER_BYTES = 5 + 19 + 5 + 5 + 5 + 5 + ANSWER_KEY_BYTES + 3;
/** The REQUEST_OPTIONS item a REQUEST may carry. */
const REQUEST_OPTIONS_BYTES = 4;
/**
 * Largest RELAY or RELAYED header (a RESPONSE's is smaller): fixed header 5, IPv6 from 19,
 * incarnation 5, IPv6 peer 19, epoch 5, id 5, what 1, answer MAC 8, payload length 3.
 */
const MAX_RELAY_HEADER_BYTES = 5 + 19 + 5 + 19 + 5 + 5 + 1 + ANSWER_MAC_BYTES + 3;
/** Bytes of the secret answer keys are derived from. */
export const ANSWER_SECRET_BYTES = SIPHASH_KEY_BYTES;

/** Largest request payload under `config` (bytes): one datagram with its options item, envelope included. */
export function maxRequestPayloadBytes(config: SwimConfig): number {
  return Math.max(0, config.maxPacketBytes - (config.sealed ? SEALED_OVERHEAD_BYTES : 0) - MAX_REQUEST_HEADER_BYTES - REQUEST_OPTIONS_BYTES);
}

/** Largest answer payload under `config` (bytes): one RESPONSE or RELAYED datagram, envelope included. */
export function maxAnswerBytes(config: SwimConfig): number {
  return Math.max(0, config.maxPacketBytes - (config.sealed ? SEALED_OVERHEAD_BYTES : 0) - MAX_RELAY_HEADER_BYTES);
}

export type RequestRefusal = "BUSY" | "TOO_LARGE" | "TOO_MANY_MEMBERS" | "LEFT" | "BAD_TIMEOUT" | "BAD_KIND" | "BAD_OPTIONS";

/** What a request asks beyond kind and payload. */
export interface RequestStartOptions {
  /** The members asked; those that are neither alive nor suspected (and self) are left out. Default: every alive member. */
  readonly targets?: readonly Address[];
  /** How the targets answer (acknowledgements, relays); default neither, and no REQUEST_OPTIONS item. */
  readonly answer?: RequestOptions;
}

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
  /** Acknowledgements taken (one per target) and dropped (repeated, late, or not asked for). */
  acksReceived: number;
  acksDropped: number;
  /** REQUEST_ACKs sent (first and repeated), and RELAY datagrams sent for our acks and answers. */
  acksSent: number;
  relaysSent: number;
  /** RELAYs of other members passed on to their origin; refused (from a non-member, too large, to ourselves). */
  relaysForwarded: number;
  relaysRefused: number;
  /** RELAYED datagrams received (each then counts as an ack or answer, taken or dropped). */
  relayedReceived: number;
  /**
   * Acks and answers of targets (direct or relayed) whose answer MAC is not the target's:
   * made up or altered on the way (a relay or anyone naming a target); dropped.
   */
  answerMacsRefused: number;
}

/** What the requests need from their node. */
export interface RequestLink {
  /** Sends one datagram with `body` (`priority`, an encoded item, first; then piggyback) to `to`. */
  send(rt: Runtime, to: Address, body: Body, priority?: Uint8Array | null): void;
  /** Up to `count` random alive members other than self and those in `exclude` (relays). */
  relays(count: number, exclude: readonly Address[]): Address[];
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
  /** Keys of the targets that acknowledged (or answered). */
  readonly acked: Set<string>;
  /** The REQUEST_OPTIONS item of every REQUEST datagram, or null. */
  readonly optionsItem: Uint8Array | null;
  /** REQUEST_SENDS, or QUERY_SENDS with answer options. */
  readonly maxSends: number;
  readonly timeoutMs: number;
  readonly deadlineMs: number;
  readonly id: number;
  readonly kind: number;
  readonly payload: Uint8Array;
  sends: number;
}

interface Remembered {
  readonly from: Address;
  readonly epoch: number;
  readonly id: number;
  /** The answer key the origin gave this node for it. */
  readonly answerKey: Uint8Array;
  /** The host's answer once given. */
  answer: Uint8Array | null;
  /** How the origin wants it answered (its REQUEST_OPTIONS), or null. */
  readonly options: RequestOptions | null;
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
    acksReceived: 0,
    acksDropped: 0,
    acksSent: 0,
    relaysSent: 0,
    relaysForwarded: 0,
    relaysRefused: 0,
    relayedReceived: 0,
    answerMacsRefused: 0,
  };
  readonly maxPayloadBytes: number;
  readonly maxAnswerBytes: number;
  private readonly outgoing = new Map<number, Outgoing>();
  /** Requests of other members, by `from.key/epoch/id`, oldest first. */
  private readonly remembered = new Map<string, Remembered>();
  /** Handles given to the host, to the key in `remembered`. */
  private readonly handles = new Map<number, string>();
  private nextId = 1;
  private nextHandle = 1;
  private readonly secret: Uint8Array;

  /** `secret`: ANSWER_SECRET_BYTES drawn once per node life (answer keys are derived from it). */
  constructor(
    config: SwimConfig,
    private readonly epoch: number,
    private readonly link: RequestLink,
    secret: Uint8Array,
  ) {
    if (secret.length !== ANSWER_SECRET_BYTES) throw new RangeError(`an answer secret has ${ANSWER_SECRET_BYTES} bytes, got ${secret.length}`);
    this.secret = secret.slice();
    this.maxPayloadBytes = maxRequestPayloadBytes(config);
    this.maxAnswerBytes = maxAnswerBytes(config);
  }

  /** Requests of this node in flight. */
  get inFlight(): number {
    return this.outgoing.size;
  }

  /**
   * Starts a request to every member alive now (self excluded), or to those of
   * `options.targets` that are. Emits one `requestAck` per acknowledging target (when asked
   * for), one `requestAnswer` per answering target and then `requestDone`, all with `token`;
   * with no target, the `requestDone` comes at once. A refused request emits nothing.
   */
  start(nowMs: number, kind: number, payload: Uint8Array, timeoutMs: number, token: number, rt: Runtime, options: RequestStartOptions = {}): RequestOutcome {
    const refused = this.refusal(kind, payload, timeoutMs, options);
    if (refused !== null) {
      this.stats.requestsRefused++;
      return refused;
    }
    const wanted = options.targets === undefined ? null : new Set(options.targets.map((a) => a.key));
    const targets = new Map<string, Address>();
    for (const m of this.link.members()) {
      // Named members are asked while they are members at all (alive or suspected: a suspicion
      // under loss is no reason to leave one out); by default, the alive ones.
      const live = m.state === MemberState.Alive || (wanted !== null && m.state === MemberState.Suspect);
      if (!m.isSelf && live && (wanted === null || wanted.has(m.address.key))) targets.set(m.address.key, m.address);
    }
    if (targets.size > MAX_TARGETS) {
      this.stats.requestsRefused++;
      return { ok: false, code: "TOO_MANY_MEMBERS", message: `a cluster request reaches at most ${MAX_TARGETS} members, ${targets.size} are alive` };
    }
    this.stats.requestsStarted++;
    const id = this.nextId;
    this.nextId = this.nextId >= 0xffffffff ? 1 : this.nextId + 1;
    const optionsItem = options.answer === undefined ? null : encodeRequestOptionsItem(options.answer);
    const maxSends = optionsItem === null ? REQUEST_SENDS : QUERY_SENDS;
    const req: Outgoing = { token, targets, answered: new Set(), acked: new Set(), optionsItem, maxSends, timeoutMs, deadlineMs: nowMs + timeoutMs, id, kind, payload: payload.slice(), sends: 0 };
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
    if (r === undefined || r.answer !== null || payload.length > this.maxAnswerBytes) {
      this.stats.answersRefused++;
      return false;
    }
    this.handles.delete(handle);
    r.answer = payload.slice();
    this.sendAnswer(r, rt);
    return true;
  }

  /** A REQUEST from another member, with its REQUEST_OPTIONS if it had any. */
  onRequest(from: Address, body: Extract<Body, { type: typeof MessageType.Request }>, options: RequestOptions | undefined, rt: Runtime): void {
    if (this.link.hasLeft()) return;
    const key = `${from.key}/${body.epoch}/${body.id}`;
    const seen = this.remembered.get(key);
    if (seen !== undefined) {
      this.stats.requestsRepeated++;
      if (seen.answer !== null) this.sendAnswer(seen, rt);
      else if (seen.options?.ackWanted === true) this.sendAck(seen, rt);
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
    const remembered: Remembered = { from, epoch: body.epoch, id: body.id, answerKey: body.answerKey, answer: null, options: options ?? null };
    this.remembered.set(key, remembered);
    const handle = this.nextHandle;
    this.nextHandle = this.nextHandle >= 0xffffffff ? 1 : this.nextHandle + 1;
    this.handles.set(handle, key);
    this.stats.requestsReceived++;
    if (options?.ackWanted === true) this.sendAck(remembered, rt);
    const event: CoreEvent = { type: "request", handle, from, kind: body.kind, payload: body.payload };
    rt.emit(event);
  }

  /** A REQUEST_ACK from a target (or passed on by a relay), with its MAC: emits `requestAck` the first time. */
  onAck(from: Address, epoch: number, id: number, mac: Uint8Array, rt: Runtime): void {
    const req = epoch === this.epoch ? this.outgoing.get(id) : undefined;
    if (req === undefined || req.optionsItem === null || !req.targets.has(from.key) || req.acked.has(from.key)) {
      this.stats.acksDropped++;
      return;
    }
    if (!this.macIsTargets(from, id, RELAY_ACK, EMPTY, mac)) return;
    req.acked.add(from.key);
    this.stats.acksReceived++;
    rt.emit({ type: "requestAck", token: req.token, from: req.targets.get(from.key) as Address });
  }

  /** A RELAY from member `from`: passes its ack or answer on to the origin it names. */
  onRelay(from: Address, self: Address, body: Extract<Body, { type: typeof MessageType.Relay }>, rt: Runtime): void {
    // (A RELAY of an ack with a payload does not decode: BAD_LENGTH.)
    if (body.peer.key === self.key || body.payload.length > this.maxAnswerBytes) {
      this.stats.relaysRefused++;
      return;
    }
    this.stats.relaysForwarded++;
    this.link.send(rt, body.peer, { type: MessageType.Relayed, peer: from, epoch: body.epoch, id: body.id, what: body.what, mac: body.mac, payload: body.payload });
  }

  /**
   * A RELAYED ack or answer: as if it came from the target that sent it (body.peer), which its
   * MAC must prove (see the header: a relay cannot make one up).
   */
  onRelayed(body: Extract<Body, { type: typeof MessageType.Relayed }>, rt: Runtime): void {
    this.stats.relayedReceived++;
    if (body.what === RELAY_ACK) this.onAck(body.peer, body.epoch, body.id, body.mac, rt);
    else this.onResponse(body.peer, { type: MessageType.Response, epoch: body.epoch, id: body.id, mac: body.mac, payload: body.payload }, rt);
  }

  /** A RESPONSE from another member (or passed on by a relay), with its MAC. */
  onResponse(from: Address, body: Extract<Body, { type: typeof MessageType.Response }>, rt: Runtime): void {
    const req = body.epoch === this.epoch ? this.outgoing.get(body.id) : undefined;
    if (req === undefined || !req.targets.has(from.key) || req.answered.has(from.key) || body.payload.length > this.maxAnswerBytes) {
      this.stats.answersDropped++;
      return;
    }
    if (!this.macIsTargets(from, body.id, RELAY_RESPONSE, body.payload, body.mac)) return;
    req.answered.add(from.key);
    req.acked.add(from.key);
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
    if (req.sends < req.maxSends) this.sendRound(req, rt);
    rt.setTimer(this.nextTimerAt(nowMs, req), { kind: "clusterRequest", id });
  }

  private refusal(kind: number, payload: Uint8Array, timeoutMs: number, options: RequestStartOptions): RequestOutcome | null {
    if (this.link.hasLeft()) return { ok: false, code: "LEFT", message: "this node has left the cluster" };
    const relayCount = options.answer?.relayCount ?? 0;
    if (relayCount >>> 0 !== relayCount || relayCount > MAX_RELAY_COUNT) {
      return { ok: false, code: "BAD_OPTIONS", message: `a request is relayed through 0..${MAX_RELAY_COUNT} members, got ${relayCount}` };
    }
    if (options.targets !== undefined && options.targets.length > MAX_TARGETS) {
      return { ok: false, code: "TOO_MANY_MEMBERS", message: `a cluster request reaches at most ${MAX_TARGETS} members, ${options.targets.length} were named` };
    }
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

  /** The next retry (a quarter, or an eighth, of the timeout after the last send) or the deadline. */
  private nextTimerAt(nowMs: number, req: Outgoing): number {
    if (req.sends >= req.maxSends) return req.deadlineMs;
    const step = Math.max(1, Math.floor(req.timeoutMs / req.maxSends));
    return Math.min(req.deadlineMs, nowMs + step);
  }

  private sendRound(req: Outgoing, rt: Runtime): void {
    const retry = req.sends > 0;
    req.sends++;
    for (const [key, to] of req.targets) {
      if (req.answered.has(key)) continue;
      this.stats.requestDatagramsSent++;
      if (retry) this.stats.requestRetries++;
      // Each target its own answer key (the same in every send of this request).
      const answerKey = answerKeyOf(this.secret, this.epoch, req.id, to);
      this.link.send(rt, to, { type: MessageType.Request, epoch: this.epoch, id: req.id, kind: req.kind, answerKey, payload: req.payload }, req.optionsItem);
    }
  }

  /** Whether `mac` is the answer MAC target `from` makes for request `id` of this life; counted when not. */
  private macIsTargets(from: Address, id: number, what: number, payload: Uint8Array, mac: Uint8Array): boolean {
    const expected = answerMac(answerKeyOf(this.secret, this.epoch, id, from), what, this.epoch, id, payload);
    if (sameMac(expected, mac)) return true;
    this.stats.answerMacsRefused++;
    return false;
  }

  private sendAck(r: Remembered, rt: Runtime): void {
    this.stats.acksSent++;
    const mac = answerMac(r.answerKey, RELAY_ACK, r.epoch, r.id, EMPTY);
    this.link.send(rt, r.from, { type: MessageType.RequestAck, epoch: r.epoch, id: r.id, mac });
    this.sendRelays(r, RELAY_ACK, EMPTY, mac, rt);
  }

  private sendAnswer(r: Remembered, rt: Runtime): void {
    this.stats.answersSent++;
    const payload = r.answer as Uint8Array;
    const mac = answerMac(r.answerKey, RELAY_RESPONSE, r.epoch, r.id, payload);
    this.link.send(rt, r.from, { type: MessageType.Response, epoch: r.epoch, id: r.id, mac, payload });
    this.sendRelays(r, RELAY_RESPONSE, payload, mac, rt);
  }

  /** The relayed copies of an ack or answer, through the relay count of random members the origin asked for. */
  private sendRelays(r: Remembered, what: number, payload: Uint8Array, mac: Uint8Array, rt: Runtime): void {
    const count = r.options?.relayCount ?? 0;
    if (count === 0) return;
    for (const via of this.link.relays(count, [r.from])) {
      this.stats.relaysSent++;
      this.link.send(rt, via, { type: MessageType.Relay, peer: r.from, epoch: r.epoch, id: r.id, what, mac, payload });
    }
  }

  private finish(req: Outgoing, rt: Runtime): void {
    const missing: Address[] = [];
    for (const [key, a] of req.targets) if (!req.answered.has(key)) missing.push(a);
    if (missing.length === 0) this.stats.requestsComplete++;
    else this.stats.requestsIncomplete++;
    rt.emit({ type: "requestDone", token: req.token, missing });
  }
}

const EMPTY = new Uint8Array(0);

/**
 * The answer key of request (epoch, id) for `target`: two SipHash-2-4 outputs under the
 * origin's `secret`, of a domain byte (1, 2), epoch and id (u32 BE) and the target's address as
 * on the wire. Deterministic, so every send of a request carries the same key and the origin
 * keeps none.
 */
export function answerKeyOf(secret: Uint8Array, epoch: number, id: number, target: Address): Uint8Array {
  const ipBytes = target.ip.length;
  const input = new Uint8Array(1 + 4 + 4 + 1 + ipBytes + 2);
  putU32(input, 1, epoch);
  putU32(input, 5, id);
  input[9] = target.family;
  input.set(target.ip, 10);
  input[10 + ipBytes] = target.port >>> 8;
  input[11 + ipBytes] = target.port & 0xff;
  const key = new Uint8Array(ANSWER_KEY_BYTES);
  input[0] = 1;
  siphash24(secret, input, key.subarray(0, SIPHASH_OUTPUT_BYTES));
  input[0] = 2;
  siphash24(secret, input, key.subarray(SIPHASH_OUTPUT_BYTES));
  return key;
}

/** The answer MAC: SipHash-2-4 under `answerKey` of what (u8), epoch and id (u32 BE), payload. */
export function answerMac(answerKey: Uint8Array, what: number, epoch: number, id: number, payload: Uint8Array): Uint8Array {
  const input = new Uint8Array(9 + payload.length);
  input[0] = what;
  putU32(input, 1, epoch);
  putU32(input, 5, id);
  input.set(payload, 9);
  return siphash24(answerKey, input, new Uint8Array(ANSWER_MAC_BYTES));
}

function putU32(b: Uint8Array, p: number, v: number): void {
  b[p] = v >>> 24;
  b[p + 1] = (v >>> 16) & 0xff;
  b[p + 2] = (v >>> 8) & 0xff;
  b[p + 3] = v & 0xff;
}

/** Compares two MACs without an early exit. */
function sameMac(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= (a[i] as number) ^ (b[i] as number);
  return diff === 0;
}
