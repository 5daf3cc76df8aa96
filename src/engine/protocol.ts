/**
 * src/engine/protocol.ts: owns the byte layout of the frames that travel through the engine's
 * four shared-memory rings (src/shm) between the main thread and the protocol worker, the typed
 * Command and Reply unions that the core host (src/engine/host.ts) speaks in both engine modes,
 * and the workerData contract of the worker. Encoders write straight into a ring slot
 * (tryWriteWith: one copy); decoders read from the ring's data area in place.
 *
 * Every frame starts with a type byte. Integers are little-endian (both ends are one process);
 * f64 is an IEEE double. `addr` is `u8 family (4|6), u16 port, 4|16 IP bytes`: 7 or 19 bytes.
 * `member` is a MemberInfo record: `u8 state, u8 flags (bit 0 isSelf, bit 1 damped, bit 2 the
 * event's dampingChanged), u32 incarnation, u32 pendingTransmits, f64 stateChangedAtMs,
 * f64 lastHeardAtMs, f64 lastRttMs, u32 flaps, f64 flapPenalty, f64 dampedUntilMs, addr,
 * u16 tagsLength (0xffff: none known), tags bytes`: 63 or 75 bytes and the tags.
 *
 *   inbound ring (main -> worker), and raw rings (main -> seal/open worker)
 *     0x01 DATAGRAM_IN     f64 receivedAtMs, bytes...                       header 9
 *        (no source address: nothing reads it. TamTam knows a sender by the address its
 *        datagram names, authenticated when sealed; replies go to that address)
 *   opened rings (seal/open worker -> protocol worker)
 *     0x03 DATAGRAM_OPENED u8 sealed, f64 receivedAtMs, u32 boot, f64 counter, bytes...
 *                                                                          header 22
 *        (the datagram as the core reads it; boot and counter are its nonce, for the replay
 *        check that the protocol worker owns; 0 when it came unsealed)
 *   outbound ring (worker -> main)
 *     0x02 DATAGRAM_OUT    addr destination, bytes...                       header 8 | 20
 *   commands ring (main -> worker); `token` (u32, non-zero) pairs a command with its reply
 *     0x10 START           u32 token                                        reply STARTED
 *     0x11 JOIN            u32 token, u16 count, addr seed * count          joinResult events
 *     0x12 BROADCAST       u32 token, payload bytes...                      reply BROADCAST
 *     0x13 LEAVE           u32 token                                        reply LEFT
 *     0x14 PING            u32 token, addr target                           a pingResult event
 *     0x15 FORGET          addr member                                      (none)
 *     0x16 SET_PROBE_INT.  u32 probeIntervalMs                              (none)
 *     0x17 SNAPSHOT        u32 token                                        reply SNAPSHOT parts
 *     0x18 STATS           u32 token                                        reply STATS
 *     0x19 STOP            u32 token                                        reply STOPPED (last)
 *     0x1A REQUEST         u32 token, u32 kind, u32 timeoutMs, u8 flags     reply REQUEST, then
 *                          (bit 0 options, bit 1 ack wanted, bit 2        requestAck and
 *                          targets), u8 relayCount, u16 count,            requestAnswer events
 *                          addr target * count, payload...                and requestDone
 *     0x1B ANSWER          u32 handle, payload...                           (none)
 *     0x1C SET_TAGS        u32 token, tags bytes...                         reply TAGS
 *   events ring (worker -> main): CoreEvents, then replies, in emission order
 *     0x20 MEMBER          u8 previous (0xff: null), u32 previousIncarnation, member
 *     0x21 MEMBER_REMOVED  addr
 *     0x22 BROADCAST       u32 epoch, u32 seq, addr origin, payload bytes...
 *     0x23 JOIN_RESULT     u32 token, u8 ok, addr seed
 *     0x24 PING_RESULT     u32 token, f64 rttMs (NaN: timed out), addr target
 *     0x25 REQUEST         u32 handle, u32 kind, addr from, payload...      (a cluster request)
 *     0x26 REQUEST_ANSWER  u32 token, addr from, payload...
 *     0x27 REQUEST_DONE    u32 token, u16 count, addr missing * count
 *     0x28 REQUEST_ACK     u32 token, addr from
 *     0x30 STARTED         u32 token
 *     0x31 BROADCAST_DONE  u32 token, u8 ok; ok: u32 epoch, u32 seq;
 *                          else u8 code (1 EMPTY, 2 TOO_LARGE, 3 LEFT, 4 QUEUE_FULL), UTF-8 message...
 *     0x32 LEFT            u32 token
 *     0x33 SNAPSHOT_PART   u32 token, u8 flags (bit 0 last, bit 1 truncated), u16 count,
 *                          member * count
 *     0x34 STATS           u32 token, u16 count, (u8 nameBytes, ASCII name, f64 value) * count
 *     0x35 STOPPED         u32 token
 *     0x36 REQUEST         u32 token, u8 ok; ok: u32 targets;
 *                          else u8 code (REQUEST_REFUSALS index + 1), UTF-8 message...
 *     0x37 TAGS            u32 token, u8 ok; ok: u32 incarnation;
 *                          else u8 code (1 TOO_LARGE, 2 BAD_TAGS, 3 LEFT), UTF-8 message...
 *
 * Bounds. A member snapshot spans as many SNAPSHOT_PART frames as it needs, each carrying at
 * the members whose records fit one frame (873 IPv6 members without tags with the default 64 KiB frames),
 * and in all at most what fits in the events ring's free space when the request is served
 * (about 14,000 members in the default 1 MiB ring, less what is queued); the rest is left out
 * and the last part carries the truncated flag. STATS keeps the entries that fit one frame.
 * A frame that does not fit its ring is dropped and counted by the ring (never queued).
 */

import { internIpv4, internIpv6, isValidPort, type Address } from "../core/address.js";
import type { SwimConfig } from "../core/config.js";
import type { BroadcastOutcome, TagsOutcome } from "../core/node.js";
import type { RequestOutcome, RequestRefusal, RequestStartOptions } from "../core/requests.js";
import { MAX_TARGETS } from "../core/requests.js";
import { MAX_TAGS_BYTES_CAP } from "../core/tags.js";
import type { CoreEvent, MemberInfo } from "../core/runtime.js";
import type { MemberState } from "../core/wire/messages.js";
import { DROP_REASONS, type DropReason, type EnvelopeSettings } from "../seal/envelope.js";
import type { EngineRingBuffers, RingProducer } from "../shm/index.js";

export const FrameType = {
  DatagramIn: 0x01,
  DatagramOut: 0x02,
  DatagramOpened: 0x03,
  CmdStart: 0x10,
  CmdJoin: 0x11,
  CmdBroadcast: 0x12,
  CmdLeave: 0x13,
  CmdPing: 0x14,
  CmdForget: 0x15,
  CmdSetProbeInterval: 0x16,
  CmdSnapshot: 0x17,
  CmdStats: 0x18,
  CmdStop: 0x19,
  CmdRequest: 0x1a,
  CmdAnswer: 0x1b,
  CmdSetTags: 0x1c,
  EvMember: 0x20,
  EvMemberRemoved: 0x21,
  EvBroadcast: 0x22,
  EvJoinResult: 0x23,
  EvPingResult: 0x24,
  EvRequest: 0x25,
  EvRequestAnswer: 0x26,
  EvRequestDone: 0x27,
  EvRequestAck: 0x28,
  RepStarted: 0x30,
  RepBroadcast: 0x31,
  RepLeft: 0x32,
  RepSnapshotPart: 0x33,
  RepStats: 0x34,
  RepStopped: 0x35,
  RepRequest: 0x36,
  RepTags: 0x37,
} as const;

/** DATAGRAM_IN header: inbound and raw ring frames must be this much above the datagram. */
export const DATAGRAM_IN_MAX_HEADER_BYTES = 1 + 8;
/** DATAGRAM_OPENED header; an opened datagram is never longer than the one received. */
export const DATAGRAM_OPENED_HEADER_BYTES = 1 + 1 + 8 + 4 + 8;
/** Largest DATAGRAM_OUT header (IPv6 destination). */
export const DATAGRAM_OUT_MAX_HEADER_BYTES = 1 + 19;
/** Largest event BROADCAST header (IPv6 origin); the payload follows. */
export const EVENT_BROADCAST_MAX_HEADER_BYTES = 1 + 4 + 4 + 19;
/** Bytes of a member record before its address. */
const MEMBER_FIXED_BYTES = 54;
/** Largest member record (IPv6 address, the largest tags any config allows). */
export const MAX_MEMBER_RECORD_BYTES = MEMBER_FIXED_BYTES + 19 + 2 + MAX_TAGS_BYTES_CAP;
/** Largest REQUEST command header: fixed fields and MAX_TARGETS IPv6 targets. */
export const MAX_REQUEST_COMMAND_HEADER_BYTES = 17 + 19 * MAX_TARGETS;
const SNAPSHOT_PART_HEADER_BYTES = 1 + 4 + 1 + 2;

// ---------------------------------------------------------------------------------------------
// Typed commands and replies (both engine modes; the worker mode also encodes them).

export type Command =
  | { readonly type: "start"; readonly token: number }
  | { readonly type: "join"; readonly token: number; readonly seeds: readonly Address[] }
  | { readonly type: "broadcast"; readonly token: number; readonly payload: Uint8Array }
  | { readonly type: "leave"; readonly token: number }
  | { readonly type: "ping"; readonly token: number; readonly target: Address }
  | { readonly type: "forget"; readonly address: Address }
  | { readonly type: "setProbeInterval"; readonly probeIntervalMs: number }
  | { readonly type: "snapshot"; readonly token: number }
  | { readonly type: "stats"; readonly token: number }
  | { readonly type: "stop"; readonly token: number }
  | {
      readonly type: "request";
      readonly token: number;
      readonly kind: number;
      readonly timeoutMs: number;
      readonly payload: Uint8Array;
      readonly options?: RequestStartOptions;
    }
  | { readonly type: "answer"; readonly handle: number; readonly payload: Uint8Array }
  | { readonly type: "setTags"; readonly token: number; readonly tags: Uint8Array };

export type Reply =
  | { readonly type: "started"; readonly token: number }
  | { readonly type: "broadcast"; readonly token: number; readonly outcome: BroadcastOutcome }
  | { readonly type: "left"; readonly token: number }
  | { readonly type: "snapshot"; readonly token: number; readonly members: readonly MemberInfo[] }
  | { readonly type: "stats"; readonly token: number; readonly stats: Readonly<Record<string, number>> }
  | { readonly type: "stopped"; readonly token: number }
  | { readonly type: "request"; readonly token: number; readonly outcome: RequestOutcome }
  | { readonly type: "tags"; readonly token: number; readonly outcome: TagsOutcome };

/** One decoded frame of the events ring. */
export type EngineOutput =
  | { readonly kind: "event"; readonly event: CoreEvent }
  | { readonly kind: "reply"; readonly reply: Exclude<Reply, { type: "snapshot" }> }
  | {
      readonly kind: "snapshotPart";
      readonly token: number;
      readonly members: MemberInfo[];
      readonly last: boolean;
      readonly truncated: boolean;
    };

/** What the main thread hands the worker (structured-cloned; the ring buffers are shared). */
export interface EngineWorkerData {
  readonly buffers: EngineRingBuffers;
  /** The advertised address as canonical text (`ip:port` / `[ip]:port`). */
  readonly selfKey: string;
  readonly config: SwimConfig;
  readonly seed: number;
  readonly incarnation: number;
  readonly broadcastEpoch: number;
  /** The 16 bytes that key the core's join cookies (SwimNodeOptions.cookieSecret). */
  readonly cookieSecret: Uint8Array;
  /** SwimNodeOptions.seeds and .reconnectTargets, as canonical address text. */
  readonly seedKeys: readonly string[];
  readonly reconnectTargetKeys: readonly string[];
  /** This member's tags at start (SwimNodeOptions.tags), if any. */
  readonly tags?: Uint8Array;
  /** The main thread's performance.timeOrigin: both threads express nowMs on its time base. */
  readonly baseTimeOriginMs: number;
  readonly spinIterations?: number;
  /** Sealing (src/seal): the protocol worker seals what it sends and admits (replay check) what it receives. */
  readonly seal: WorkerSealData | null;
}

/** What a worker needs to build its Envelope; the keys come (and change) over its control port. */
export interface WorkerSealData {
  readonly settings: EnvelopeSettings;
  /** The keys at start, primary first. */
  readonly keys: readonly Uint8Array[];
  /** The shared nonce counter (src/shm SharedCounters, slot 0) and the life's boot id. */
  readonly nonceCounter: SharedArrayBuffer;
  readonly boot: number;
}

/** What a seal/open worker gets (structured-cloned; the buffers are shared). */
export interface OpenerWorkerData {
  readonly buffers: EngineRingBuffers;
  /** Which opener this is (its rings in buffers.openers). */
  readonly index: number;
  readonly seal: WorkerSealData | null;
  /** Its counters (OPENER_COUNTERS slots) and control word, read by the main thread. */
  readonly counters: SharedArrayBuffer;
  readonly spinIterations?: number;
}

/** Messages on a worker's control port (main -> worker), drained with receiveMessageOnPort. */
export type ControlMessage = { readonly type: "keys"; readonly keys: readonly Uint8Array[] };

/**
 * Messages a worker posts back (worker -> main): dropped datagrams, by reason, batched; with the
 * latest one's place (`ring`: -1 the inbound ring, k the raw ring of opener k; `frame`: its
 * position among the frames written to that ring, -1 when not known), where the main thread
 * may still find its source (it keeps the sources of the last datagrams it wrote, unparsed).
 */
export type WorkerNotice = { readonly type: "drops"; readonly reason: DropReason; readonly count: number; readonly ring: number; readonly frame: number };

/**
 * Slots of a worker's SharedCounters (whose control word the main thread bumps after each
 * control message, so that a sleeping worker wakes and drains its port).
 */
export const WorkerSlot = {
  /** Datagrams a seal/open worker authenticated and passed on. */
  DatagramsOpened: 0,
  /** Opened datagrams its opened ring could not take. */
  RingDrops: 1,
  BadFrames: 2,
  /** Then one slot per DROP_REASONS entry, in that order: datagrams this worker's envelope dropped. */
  DroppedBase: 3,
} as const;
export const WORKER_COUNTER_SLOTS = WorkerSlot.DroppedBase + DROP_REASONS.length;

/** A malformed frame: a bug or a clobbered ring, never input from the network. */
export class FrameError extends Error {
  override readonly name = "FrameError";
}

// ---------------------------------------------------------------------------------------------
// Primitive field access over a ring's data area.

const views = new WeakMap<Uint8Array, DataView>();

/** A DataView over the same bytes as `data` (cached per array: one per ring end). */
function viewOf(data: Uint8Array): DataView {
  let v = views.get(data);
  if (v === undefined) {
    v = new DataView(data.buffer, data.byteOffset, data.byteLength);
    views.set(data, v);
  }
  return v;
}

function addressBytes(a: Address): number {
  return a.family === 4 ? 7 : 19;
}

function writeAddress(dst: Uint8Array, v: DataView, at: number, a: Address): number {
  return writeRawAddress(dst, v, at, a.family, a.ip, a.port);
}

function writeRawAddress(dst: Uint8Array, v: DataView, at: number, family: 4 | 6, ip: Uint8Array, port: number): number {
  dst[at] = family;
  v.setUint16(at + 1, port, true);
  const n = family === 4 ? 4 : 16;
  for (let i = 0; i < n; i++) dst[at + 3 + i] = ip[i] as number;
  return at + 3 + n;
}

/** Reads an address at `at` of a frame ending at `end`; the Address is interned (no copy kept of the ring). */
function readAddress(src: Uint8Array, v: DataView, at: number, end: number): Address {
  const family = src[at];
  const ipBytes = family === 4 ? 4 : family === 6 ? 16 : -1;
  if (ipBytes < 0 || at + 3 + ipBytes > end) throw new FrameError(`bad address at data offset ${at}`);
  const port = v.getUint16(at + 1, true);
  if (!isValidPort(port)) throw new FrameError(`bad port ${port} at data offset ${at}`);
  return ipBytes === 4 ? internIpv4(src, at + 3, port) : internIpv6(src, at + 3, port);
}

/** `count` addresses from `at` of a frame ending at `end`, and the offset after them. */
function readAddresses(src: Uint8Array, v: DataView, at: number, count: number, end: number): { readonly list: Address[]; readonly next: number } {
  const list: Address[] = [];
  let p = at;
  for (let i = 0; i < count; i++) {
    const a = readAddress(src, v, p, end);
    list.push(a);
    p += addressBytes(a);
  }
  return { list, next: p };
}

function need(at: number, bytes: number, end: number): void {
  if (at + bytes > end) throw new FrameError(`frame truncated at data offset ${at}`);
}

// ---------------------------------------------------------------------------------------------
// Datagrams.

/** Appends a DATAGRAM_IN frame. False if the ring refused it (full or oversize; counted by the ring). */
export function writeDatagramIn(ring: RingProducer, receivedAtMs: number, bytes: Uint8Array): boolean {
  return ring.tryWriteWith(DATAGRAM_IN_MAX_HEADER_BYTES + bytes.length, (dst, at) => {
    dst[at] = FrameType.DatagramIn;
    viewOf(dst).setFloat64(at + 1, receivedAtMs, true);
    dst.set(bytes, at + DATAGRAM_IN_MAX_HEADER_BYTES);
  });
}

/** Where a DATAGRAM_IN or DATAGRAM_OPENED frame's parts are: filled in place by the readers (no allocation). */
export interface DatagramInView {
  receivedAtMs: number;
  /** DATAGRAM_OPENED: whether it came sealed, and its nonce (boot, counter). */
  sealed: boolean;
  boot: number;
  counter: number;
  payloadOffset: number;
  payloadBytes: number;
}

export function newDatagramInView(): DatagramInView {
  return { receivedAtMs: 0, sealed: false, boot: 0, counter: 0, payloadOffset: 0, payloadBytes: 0 };
}

/** Fills `out` from the DATAGRAM_IN frame at data[offset, offset + lengthBytes); false if malformed. */
export function readDatagramIn(data: Uint8Array, offset: number, lengthBytes: number, out: DatagramInView): boolean {
  if (lengthBytes < DATAGRAM_IN_MAX_HEADER_BYTES || data[offset] !== FrameType.DatagramIn) return false;
  out.receivedAtMs = viewOf(data).getFloat64(offset + 1, true);
  out.sealed = false;
  out.payloadOffset = offset + DATAGRAM_IN_MAX_HEADER_BYTES;
  out.payloadBytes = lengthBytes - DATAGRAM_IN_MAX_HEADER_BYTES;
  return true;
}

/** Appends a DATAGRAM_OPENED frame; false if the ring refused it. */
export function writeDatagramOpened(ring: RingProducer, receivedAtMs: number, sealed: boolean, boot: number, counter: number, bytes: Uint8Array): boolean {
  return ring.tryWriteWith(DATAGRAM_OPENED_HEADER_BYTES + bytes.length, (dst, at) => {
    const v = viewOf(dst);
    dst[at] = FrameType.DatagramOpened;
    dst[at + 1] = sealed ? 1 : 0;
    v.setFloat64(at + 2, receivedAtMs, true);
    v.setUint32(at + 10, boot >>> 0, true);
    v.setFloat64(at + 14, counter, true);
    dst.set(bytes, at + DATAGRAM_OPENED_HEADER_BYTES);
  });
}

/** Fills `out` from the DATAGRAM_OPENED frame at data[offset, offset + lengthBytes); false if malformed. */
export function readDatagramOpened(data: Uint8Array, offset: number, lengthBytes: number, out: DatagramInView): boolean {
  if (lengthBytes < DATAGRAM_OPENED_HEADER_BYTES || data[offset] !== FrameType.DatagramOpened) return false;
  const v = viewOf(data);
  out.sealed = data[offset + 1] === 1;
  out.receivedAtMs = v.getFloat64(offset + 2, true);
  out.boot = v.getUint32(offset + 10, true);
  out.counter = v.getFloat64(offset + 14, true);
  out.payloadOffset = offset + DATAGRAM_OPENED_HEADER_BYTES;
  out.payloadBytes = lengthBytes - DATAGRAM_OPENED_HEADER_BYTES;
  return true;
}

/** Appends a DATAGRAM_OUT frame; false if the ring refused it. */
export function writeDatagramOut(ring: RingProducer, to: Address, bytes: Uint8Array): boolean {
  const header = 1 + addressBytes(to);
  return ring.tryWriteWith(header + bytes.length, (dst, at) => {
    dst[at] = FrameType.DatagramOut;
    writeAddress(dst, viewOf(dst), at + 1, to);
    dst.set(bytes, at + header);
  });
}

export interface DatagramOutView {
  to: Address | null;
  payloadOffset: number;
  payloadBytes: number;
}

export function newDatagramOutView(): DatagramOutView {
  return { to: null, payloadOffset: 0, payloadBytes: 0 };
}

/** Fills `out` from the DATAGRAM_OUT frame at data[offset, offset + lengthBytes); false if malformed. */
export function readDatagramOut(data: Uint8Array, offset: number, lengthBytes: number, out: DatagramOutView): boolean {
  if (lengthBytes < 8 || data[offset] !== FrameType.DatagramOut) return false;
  const end = offset + lengthBytes;
  try {
    out.to = readAddress(data, viewOf(data), offset + 1, end);
  } catch {
    return false;
  }
  const header = 1 + addressBytes(out.to);
  out.payloadOffset = offset + header;
  out.payloadBytes = lengthBytes - header;
  return true;
}

// ---------------------------------------------------------------------------------------------
// Commands.

function commandBytes(cmd: Command): number {
  switch (cmd.type) {
    case "start":
    case "leave":
    case "snapshot":
    case "stats":
    case "stop":
      return 5;
    case "join": {
      let n = 7;
      for (const s of cmd.seeds) n += addressBytes(s);
      return n;
    }
    case "broadcast":
      return 5 + cmd.payload.length;
    case "ping":
      return 5 + addressBytes(cmd.target);
    case "forget":
      return 1 + addressBytes(cmd.address);
    case "setProbeInterval":
      return 5;
    case "request": {
      let n = 17 + cmd.payload.length;
      for (const a of cmd.options?.targets ?? []) n += addressBytes(a);
      return n;
    }
    case "answer":
      return 5 + cmd.payload.length;
    case "setTags":
      return 5 + cmd.tags.length;
  }
}

const COMMAND_TYPE: Record<Command["type"], number> = {
  start: FrameType.CmdStart,
  join: FrameType.CmdJoin,
  broadcast: FrameType.CmdBroadcast,
  leave: FrameType.CmdLeave,
  ping: FrameType.CmdPing,
  forget: FrameType.CmdForget,
  setProbeInterval: FrameType.CmdSetProbeInterval,
  snapshot: FrameType.CmdSnapshot,
  stats: FrameType.CmdStats,
  stop: FrameType.CmdStop,
  request: FrameType.CmdRequest,
  answer: FrameType.CmdAnswer,
  setTags: FrameType.CmdSetTags,
};

/** Bytes the frame of `cmd` takes (to check it against a ring's maxFrameBytes). */
export function commandFrameBytes(cmd: Command): number {
  return commandBytes(cmd);
}

/** Appends one command frame; false if the ring refused it. Seeds beyond 65,535 are a RangeError. */
export function writeCommand(ring: RingProducer, cmd: Command): boolean {
  if (cmd.type === "join" && cmd.seeds.length > 0xffff) throw new RangeError(`at most 65535 seeds, got ${cmd.seeds.length}`);
  if (cmd.type === "request" && (cmd.options?.targets?.length ?? 0) > 0xffff) throw new RangeError(`at most 65535 targets, got ${cmd.options?.targets?.length}`);
  return ring.tryWriteWith(commandBytes(cmd), (dst, at) => {
    const v = viewOf(dst);
    dst[at] = COMMAND_TYPE[cmd.type];
    switch (cmd.type) {
      case "start":
      case "leave":
      case "snapshot":
      case "stats":
      case "stop":
        v.setUint32(at + 1, cmd.token, true);
        return;
      case "join": {
        v.setUint32(at + 1, cmd.token, true);
        v.setUint16(at + 5, cmd.seeds.length, true);
        let p = at + 7;
        for (const s of cmd.seeds) p = writeAddress(dst, v, p, s);
        return;
      }
      case "broadcast":
        v.setUint32(at + 1, cmd.token, true);
        dst.set(cmd.payload, at + 5);
        return;
      case "ping":
        v.setUint32(at + 1, cmd.token, true);
        writeAddress(dst, v, at + 5, cmd.target);
        return;
      case "forget":
        writeAddress(dst, v, at + 1, cmd.address);
        return;
      case "setProbeInterval":
        v.setUint32(at + 1, cmd.probeIntervalMs, true);
        return;
      case "request": {
        v.setUint32(at + 1, cmd.token, true);
        v.setUint32(at + 5, cmd.kind >>> 0, true);
        v.setUint32(at + 9, cmd.timeoutMs >>> 0, true);
        const answer = cmd.options?.answer;
        const targets = cmd.options?.targets;
        dst[at + 13] = (answer === undefined ? 0 : 1) | (answer?.ackWanted === true ? 2 : 0) | (targets === undefined ? 0 : 4);
        dst[at + 14] = answer?.relayCount ?? 0;
        v.setUint16(at + 15, targets?.length ?? 0, true);
        let p = at + 17;
        for (const a of targets ?? []) p = writeAddress(dst, v, p, a);
        dst.set(cmd.payload, p);
        return;
      }
      case "answer":
        v.setUint32(at + 1, cmd.handle >>> 0, true);
        dst.set(cmd.payload, at + 5);
        return;
      case "setTags":
        v.setUint32(at + 1, cmd.token, true);
        dst.set(cmd.tags, at + 5);
        return;
    }
  });
}

/** Decodes the command frame at data[offset, offset + lengthBytes). FrameError if malformed. */
export function readCommand(data: Uint8Array, offset: number, lengthBytes: number): Command {
  const v = viewOf(data);
  const end = offset + lengthBytes;
  need(offset, 1, end);
  const type = data[offset];
  const token = (): number => {
    need(offset + 1, 4, end);
    return v.getUint32(offset + 1, true);
  };
  switch (type) {
    case FrameType.CmdStart:
      return { type: "start", token: token() };
    case FrameType.CmdLeave:
      return { type: "leave", token: token() };
    case FrameType.CmdSnapshot:
      return { type: "snapshot", token: token() };
    case FrameType.CmdStats:
      return { type: "stats", token: token() };
    case FrameType.CmdStop:
      return { type: "stop", token: token() };
    case FrameType.CmdJoin: {
      const t = token();
      need(offset + 5, 2, end);
      const seeds = readAddresses(data, v, offset + 7, v.getUint16(offset + 5, true), end).list;
      return { type: "join", token: t, seeds };
    }
    case FrameType.CmdBroadcast: {
      const t = token();
      return { type: "broadcast", token: t, payload: data.slice(offset + 5, end) };
    }
    case FrameType.CmdPing: {
      const t = token();
      return { type: "ping", token: t, target: readAddress(data, v, offset + 5, end) };
    }
    case FrameType.CmdForget:
      return { type: "forget", address: readAddress(data, v, offset + 1, end) };
    case FrameType.CmdSetProbeInterval:
      need(offset + 1, 4, end);
      return { type: "setProbeInterval", probeIntervalMs: v.getUint32(offset + 1, true) };
    case FrameType.CmdRequest: {
      const t = token();
      need(offset + 5, 12, end);
      const flags = data[offset + 13] as number;
      const { list: targets, next: p } = readAddresses(data, v, offset + 17, v.getUint16(offset + 15, true), end);
      const options: RequestStartOptions = {
        ...((flags & 1) !== 0 ? { answer: { ackWanted: (flags & 2) !== 0, relayCount: data[offset + 14] as number } } : {}),
        ...((flags & 4) !== 0 ? { targets } : {}),
      };
      return {
        type: "request",
        token: t,
        kind: v.getUint32(offset + 5, true),
        timeoutMs: v.getUint32(offset + 9, true),
        payload: data.slice(p, end),
        options,
      };
    }
    case FrameType.CmdAnswer:
      return { type: "answer", handle: token(), payload: data.slice(offset + 5, end) };
    case FrameType.CmdSetTags:
      return { type: "setTags", token: token(), tags: data.slice(offset + 5, end) };
    default:
      throw new FrameError(`unknown command frame type ${String(type)}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Events and replies.

function memberRecordBytes(m: MemberInfo): number {
  return MEMBER_FIXED_BYTES + addressBytes(m.address) + 2 + (m.tags?.length ?? 0);
}

const MEMBER_FLAG_SELF = 1;
const MEMBER_FLAG_DAMPED = 2;
/** Set on the member record of a `member` event whose dampingChanged is true. */
const MEMBER_FLAG_DAMPING_CHANGED = 4;

function writeMember(dst: Uint8Array, v: DataView, at: number, m: MemberInfo, dampingChanged = false): number {
  dst[at] = m.state;
  dst[at + 1] = (m.isSelf ? MEMBER_FLAG_SELF : 0) | (m.damped ? MEMBER_FLAG_DAMPED : 0) | (dampingChanged ? MEMBER_FLAG_DAMPING_CHANGED : 0);
  v.setUint32(at + 2, m.incarnation >>> 0, true);
  v.setUint32(at + 6, Math.min(m.pendingTransmits, 0xffffffff) >>> 0, true);
  v.setFloat64(at + 10, m.stateChangedAtMs, true);
  v.setFloat64(at + 18, m.lastHeardAtMs, true);
  v.setFloat64(at + 26, m.lastRttMs, true);
  v.setUint32(at + 34, Math.min(m.flaps, 0xffffffff) >>> 0, true);
  v.setFloat64(at + 38, m.flapPenalty, true);
  v.setFloat64(at + 46, m.dampedUntilMs, true);
  const p = writeAddress(dst, v, at + MEMBER_FIXED_BYTES, m.address);
  const tags = m.tags;
  v.setUint16(p, tags === null ? 0xffff : tags.length, true);
  if (tags !== null) dst.set(tags, p + 2);
  return p + 2 + (tags?.length ?? 0);
}

function readMember(src: Uint8Array, v: DataView, at: number, end: number): MemberInfo {
  need(at, MEMBER_FIXED_BYTES, end);
  const state = src[at] as number;
  if (state > 3) throw new FrameError(`bad member state ${state}`);
  const address = readAddress(src, v, at + MEMBER_FIXED_BYTES, end);
  const p = at + MEMBER_FIXED_BYTES + addressBytes(address);
  need(p, 2, end);
  const tagsLength = v.getUint16(p, true);
  if (tagsLength !== 0xffff) need(p + 2, tagsLength, end);
  return {
    state: state as MemberState,
    isSelf: ((src[at + 1] as number) & MEMBER_FLAG_SELF) !== 0,
    damped: ((src[at + 1] as number) & MEMBER_FLAG_DAMPED) !== 0,
    flaps: v.getUint32(at + 34, true),
    flapPenalty: v.getFloat64(at + 38, true),
    dampedUntilMs: v.getFloat64(at + 46, true),
    incarnation: v.getUint32(at + 2, true),
    pendingTransmits: v.getUint32(at + 6, true),
    stateChangedAtMs: v.getFloat64(at + 10, true),
    lastHeardAtMs: v.getFloat64(at + 18, true),
    lastRttMs: v.getFloat64(at + 26, true),
    address,
    tags: tagsLength === 0xffff ? null : src.slice(p + 2, p + 2 + tagsLength),
  };
}

function eventBytes(e: CoreEvent): number {
  switch (e.type) {
    case "member":
      return 6 + memberRecordBytes(e.member);
    case "memberRemoved":
      return 1 + addressBytes(e.address);
    case "broadcast":
      return 9 + addressBytes(e.origin) + e.payload.length;
    case "joinResult":
      return 6 + addressBytes(e.seed);
    case "pingResult":
      return 13 + addressBytes(e.target);
    case "request":
      return 9 + addressBytes(e.from) + e.payload.length;
    case "requestAnswer":
      return 5 + addressBytes(e.from) + e.payload.length;
    case "requestAck":
      return 5 + addressBytes(e.from);
    case "requestDone": {
      let n = 7;
      for (const a of e.missing) n += addressBytes(a);
      return n;
    }
  }
}

/** Appends one CoreEvent frame; false if the ring refused it. */
export function writeEvent(ring: RingProducer, e: CoreEvent): boolean {
  return ring.tryWriteWith(eventBytes(e), (dst, at) => {
    const v = viewOf(dst);
    switch (e.type) {
      case "member":
        dst[at] = FrameType.EvMember;
        dst[at + 1] = e.previous === null ? 0xff : e.previous;
        v.setUint32(at + 2, (e.previousIncarnation ?? 0) >>> 0, true);
        writeMember(dst, v, at + 6, e.member, e.dampingChanged);
        return;
      case "memberRemoved":
        dst[at] = FrameType.EvMemberRemoved;
        writeAddress(dst, v, at + 1, e.address);
        return;
      case "broadcast": {
        dst[at] = FrameType.EvBroadcast;
        v.setUint32(at + 1, e.epoch >>> 0, true);
        v.setUint32(at + 5, e.seq >>> 0, true);
        const p = writeAddress(dst, v, at + 9, e.origin);
        dst.set(e.payload, p);
        return;
      }
      case "joinResult":
        dst[at] = FrameType.EvJoinResult;
        v.setUint32(at + 1, e.token >>> 0, true);
        dst[at + 5] = e.ok ? 1 : 0;
        writeAddress(dst, v, at + 6, e.seed);
        return;
      case "pingResult":
        dst[at] = FrameType.EvPingResult;
        v.setUint32(at + 1, e.token >>> 0, true);
        v.setFloat64(at + 5, e.rttMs === null ? NaN : e.rttMs, true);
        writeAddress(dst, v, at + 13, e.target);
        return;
      case "request": {
        dst[at] = FrameType.EvRequest;
        v.setUint32(at + 1, e.handle >>> 0, true);
        v.setUint32(at + 5, e.kind >>> 0, true);
        const p = writeAddress(dst, v, at + 9, e.from);
        dst.set(e.payload, p);
        return;
      }
      case "requestAnswer": {
        dst[at] = FrameType.EvRequestAnswer;
        v.setUint32(at + 1, e.token >>> 0, true);
        const p = writeAddress(dst, v, at + 5, e.from);
        dst.set(e.payload, p);
        return;
      }
      case "requestAck":
        dst[at] = FrameType.EvRequestAck;
        v.setUint32(at + 1, e.token >>> 0, true);
        writeAddress(dst, v, at + 5, e.from);
        return;
      case "requestDone": {
        dst[at] = FrameType.EvRequestDone;
        v.setUint32(at + 1, e.token >>> 0, true);
        v.setUint16(at + 5, e.missing.length, true);
        let p = at + 7;
        for (const a of e.missing) p = writeAddress(dst, v, p, a);
        return;
      }
    }
  });
}

/** Refusal codes of a broadcast, in frame order (append only). */
const OUTCOME_CODES = ["EMPTY", "TOO_LARGE", "LEFT", "QUEUE_FULL"] as const;
/** Refusal codes of a cluster request, in frame order (append only). */
const REQUEST_REFUSALS: readonly RequestRefusal[] = ["BUSY", "TOO_LARGE", "TOO_MANY_MEMBERS", "LEFT", "BAD_TIMEOUT", "BAD_KIND", "BAD_OPTIONS"];
/** Refusal codes of new tags, in frame order (append only). */
const TAGS_REFUSALS = ["TOO_LARGE", "BAD_TAGS", "LEFT"] as const;
const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder();

/**
 * Appends the frame(s) of one reply; false if it could not be delivered at all. A snapshot
 * is split into parts and cut short (flagged truncated) to what the ring can take now.
 */
export function writeReply(ring: RingProducer, r: Reply): boolean {
  switch (r.type) {
    case "started":
    case "left":
    case "stopped": {
      const type = r.type === "started" ? FrameType.RepStarted : r.type === "left" ? FrameType.RepLeft : FrameType.RepStopped;
      return ring.tryWriteWith(5, (dst, at) => {
        dst[at] = type;
        viewOf(dst).setUint32(at + 1, r.token, true);
      });
    }
    case "broadcast": {
      const o = r.outcome;
      if (o.ok) {
        return ring.tryWriteWith(14, (dst, at) => {
          const v = viewOf(dst);
          dst[at] = FrameType.RepBroadcast;
          v.setUint32(at + 1, r.token, true);
          dst[at + 5] = 1;
          v.setUint32(at + 6, o.epoch >>> 0, true);
          v.setUint32(at + 10, o.seq >>> 0, true);
        });
      }
      const message = textEncoder.encode(o.message).subarray(0, 1024);
      return ring.tryWriteWith(7 + message.length, (dst, at) => {
        dst[at] = FrameType.RepBroadcast;
        viewOf(dst).setUint32(at + 1, r.token, true);
        dst[at + 5] = 0;
        dst[at + 6] = OUTCOME_CODES.indexOf(o.code) + 1;
        dst.set(message, at + 7);
      });
    }
    case "request": {
      const o = r.outcome;
      return o.ok ? writeCountReply(ring, FrameType.RepRequest, r.token, o.targets) : writeRefusal(ring, FrameType.RepRequest, r.token, REQUEST_REFUSALS.indexOf(o.code), o.message);
    }
    case "tags": {
      const o = r.outcome;
      return o.ok ? writeCountReply(ring, FrameType.RepTags, r.token, o.incarnation) : writeRefusal(ring, FrameType.RepTags, r.token, TAGS_REFUSALS.indexOf(o.code), o.message);
    }
    case "stats":
      return writeStats(ring, r.token, r.stats);
    case "snapshot":
      return writeSnapshot(ring, r.token, r.members);
  }
}

/** A reply `type` that says ok with one u32 (targets, incarnation). */
function writeCountReply(ring: RingProducer, type: number, token: number, value: number): boolean {
  return ring.tryWriteWith(10, (dst, at) => {
    const v = viewOf(dst);
    dst[at] = type;
    v.setUint32(at + 1, token, true);
    dst[at + 5] = 1;
    v.setUint32(at + 6, value >>> 0, true);
  });
}

/** A reply `type` that refuses: the code's index in its table (+1 on the wire) and a message. */
function writeRefusal(ring: RingProducer, type: number, token: number, codeIndex: number, text: string): boolean {
  const message = textEncoder.encode(text).subarray(0, 1024);
  return ring.tryWriteWith(7 + message.length, (dst, at) => {
    dst[at] = type;
    viewOf(dst).setUint32(at + 1, token, true);
    dst[at + 5] = 0;
    dst[at + 6] = codeIndex + 1;
    dst.set(message, at + 7);
  });
}

function writeStats(ring: RingProducer, token: number, stats: Readonly<Record<string, number>>): boolean {
  const names: string[] = [];
  let bytes = 7;
  for (const name of Object.keys(stats)) {
    if (name.length > 255 || names.length >= 0xffff) continue;
    const entryBytes = 1 + name.length + 8;
    if (bytes + entryBytes > ring.maxFrameBytes) break;
    names.push(name);
    bytes += entryBytes;
  }
  return ring.tryWriteWith(bytes, (dst, at) => {
    const v = viewOf(dst);
    dst[at] = FrameType.RepStats;
    v.setUint32(at + 1, token, true);
    v.setUint16(at + 5, names.length, true);
    let p = at + 7;
    for (const name of names) {
      dst[p++] = name.length;
      for (let i = 0; i < name.length; i++) dst[p++] = name.charCodeAt(i) & 0x7f;
      v.setFloat64(p, stats[name] as number, true);
      p += 8;
    }
  });
}

function writeSnapshot(ring: RingProducer, token: number, members: readonly MemberInfo[]): boolean {
  const partBytes = ring.maxFrameBytes - SNAPSHOT_PART_HEADER_BYTES;
  // Room for the whole snapshot now: free space less one frame's worth of wrap-around slack
  // and the final part's header. Parts are cut where the next record would not fit a frame.
  let budget = ring.freeBytes() - (ring.maxFrameBytes + 8) - (SNAPSHOT_PART_HEADER_BYTES + 8);
  const partEnds: number[] = [];
  let inPart = 0;
  let partCount = 0;
  let count = 0;
  for (let i = 0; i < members.length; i++) {
    const record = memberRecordBytes(members[i] as MemberInfo);
    const newPart = partCount === 0 || inPart + record > partBytes || partCount >= 0xffff;
    const extra = (newPart ? SNAPSHOT_PART_HEADER_BYTES + 8 : 0) + record;
    if (extra > budget) break;
    budget -= extra;
    if (newPart && partCount > 0) {
      partEnds.push(i);
      inPart = 0;
      partCount = 0;
    }
    inPart += record;
    partCount++;
    count++;
  }
  partEnds.push(count);
  const truncated = count < members.length;
  let from = 0;
  for (let part = 0; part < partEnds.length; part++) {
    const to = partEnds[part] as number;
    const last = part === partEnds.length - 1;
    let bytes = SNAPSHOT_PART_HEADER_BYTES;
    for (let j = from; j < to; j++) bytes += memberRecordBytes(members[j] as MemberInfo);
    const start = from;
    const ok = ring.tryWriteWith(bytes, (dst, at) => {
      const v = viewOf(dst);
      dst[at] = FrameType.RepSnapshotPart;
      v.setUint32(at + 1, token, true);
      dst[at + 5] = (last ? 1 : 0) | (last && truncated ? 2 : 0);
      v.setUint16(at + 6, to - start, true);
      let p = at + 8;
      for (let j = start; j < to; j++) p = writeMember(dst, v, p, members[j] as MemberInfo);
    });
    if (!ok) {
      // Not expected (the budget said it fits): end the reply with an empty truncated part.
      return ring.tryWriteWith(SNAPSHOT_PART_HEADER_BYTES, (dst, at) => {
        const v = viewOf(dst);
        dst[at] = FrameType.RepSnapshotPart;
        v.setUint32(at + 1, token, true);
        dst[at + 5] = 3;
        v.setUint16(at + 6, 0, true);
      });
    }
    from = to;
  }
  return true;
}

/** The outcome in a reply written by writeCountReply or writeRefusal. */
function readCountReply<C extends string>(
  data: Uint8Array,
  v: DataView,
  offset: number,
  end: number,
  codes: readonly C[],
  what: string,
): { ok: true; value: number } | { ok: false; code: C; message: string } {
  need(offset, 6, end);
  if (data[offset + 5] === 1) {
    need(offset, 10, end);
    return { ok: true, value: v.getUint32(offset + 6, true) };
  }
  need(offset, 7, end);
  const code = codes[(data[offset + 6] as number) - 1];
  if (code === undefined) throw new FrameError(`bad ${what} outcome code ${String(data[offset + 6])}`);
  return { ok: false, code, message: textDecoder.decode(data.slice(offset + 7, end)) };
}

/** Decodes the events-ring frame at data[offset, offset + lengthBytes). FrameError if malformed. */
export function readOutput(data: Uint8Array, offset: number, lengthBytes: number): EngineOutput {
  const v = viewOf(data);
  const end = offset + lengthBytes;
  need(offset, 1, end);
  const type = data[offset];
  const token = (): number => {
    need(offset + 1, 4, end);
    return v.getUint32(offset + 1, true);
  };
  switch (type) {
    case FrameType.EvMember: {
      need(offset, 6, end);
      const previous = data[offset + 1] as number;
      const member = readMember(data, v, offset + 6, end);
      const event: CoreEvent = {
        type: "member",
        member,
        previous: previous === 0xff ? null : (previous as MemberState),
        previousIncarnation: previous === 0xff ? null : v.getUint32(offset + 2, true),
        dampingChanged: ((data[offset + 7] as number) & MEMBER_FLAG_DAMPING_CHANGED) !== 0,
      };
      return { kind: "event", event };
    }
    case FrameType.EvMemberRemoved:
      return { kind: "event", event: { type: "memberRemoved", address: readAddress(data, v, offset + 1, end) } };
    case FrameType.EvBroadcast: {
      need(offset, 9, end);
      const origin = readAddress(data, v, offset + 9, end);
      const p = offset + 9 + addressBytes(origin);
      const event: CoreEvent = {
        type: "broadcast",
        origin,
        epoch: v.getUint32(offset + 1, true),
        seq: v.getUint32(offset + 5, true),
        payload: data.slice(p, end),
      };
      return { kind: "event", event };
    }
    case FrameType.EvJoinResult: {
      const t = token();
      need(offset, 6, end);
      const event: CoreEvent = { type: "joinResult", token: t, ok: data[offset + 5] === 1, seed: readAddress(data, v, offset + 6, end) };
      return { kind: "event", event };
    }
    case FrameType.EvPingResult: {
      const t = token();
      need(offset, 13, end);
      const rtt = v.getFloat64(offset + 5, true);
      const event: CoreEvent = {
        type: "pingResult",
        token: t,
        rttMs: Number.isNaN(rtt) ? null : rtt,
        target: readAddress(data, v, offset + 13, end),
      };
      return { kind: "event", event };
    }
    case FrameType.RepStarted:
      return { kind: "reply", reply: { type: "started", token: token() } };
    case FrameType.RepLeft:
      return { kind: "reply", reply: { type: "left", token: token() } };
    case FrameType.RepStopped:
      return { kind: "reply", reply: { type: "stopped", token: token() } };
    case FrameType.RepBroadcast: {
      const t = token();
      need(offset, 6, end);
      if (data[offset + 5] === 1) {
        need(offset, 14, end);
        return {
          kind: "reply",
          reply: { type: "broadcast", token: t, outcome: { ok: true, epoch: v.getUint32(offset + 6, true), seq: v.getUint32(offset + 10, true) } },
        };
      }
      need(offset, 7, end);
      const code = OUTCOME_CODES[(data[offset + 6] as number) - 1];
      if (code === undefined) throw new FrameError(`bad broadcast outcome code ${String(data[offset + 6])}`);
      const message = textDecoder.decode(data.slice(offset + 7, end));
      return { kind: "reply", reply: { type: "broadcast", token: t, outcome: { ok: false, code, message } } };
    }
    case FrameType.RepRequest: {
      const t = token();
      const o = readCountReply(data, v, offset, end, REQUEST_REFUSALS, "request");
      return { kind: "reply", reply: { type: "request", token: t, outcome: o.ok ? { ok: true, targets: o.value } : o } };
    }
    case FrameType.RepTags: {
      const t = token();
      const o = readCountReply(data, v, offset, end, TAGS_REFUSALS, "tags");
      return { kind: "reply", reply: { type: "tags", token: t, outcome: o.ok ? { ok: true, incarnation: o.value } : o } };
    }
    case FrameType.EvRequestAck: {
      const t = token();
      return { kind: "event", event: { type: "requestAck", token: t, from: readAddress(data, v, offset + 5, end) } };
    }
    case FrameType.EvRequest: {
      const t = token();
      need(offset, 9, end);
      const from = readAddress(data, v, offset + 9, end);
      const event: CoreEvent = {
        type: "request",
        handle: t,
        kind: v.getUint32(offset + 5, true),
        from,
        payload: data.slice(offset + 9 + addressBytes(from), end),
      };
      return { kind: "event", event };
    }
    case FrameType.EvRequestAnswer: {
      const t = token();
      const from = readAddress(data, v, offset + 5, end);
      const event: CoreEvent = { type: "requestAnswer", token: t, from, payload: data.slice(offset + 5 + addressBytes(from), end) };
      return { kind: "event", event };
    }
    case FrameType.EvRequestDone: {
      const t = token();
      need(offset, 7, end);
      const missing = readAddresses(data, v, offset + 7, v.getUint16(offset + 5, true), end).list;
      return { kind: "event", event: { type: "requestDone", token: t, missing } };
    }
    case FrameType.RepStats: {
      const t = token();
      need(offset, 7, end);
      const count = v.getUint16(offset + 5, true);
      const stats: Record<string, number> = {};
      let p = offset + 7;
      for (let i = 0; i < count; i++) {
        need(p, 1, end);
        const nameBytes = data[p] as number;
        need(p + 1, nameBytes + 8, end);
        let name = "";
        for (let j = 0; j < nameBytes; j++) name += String.fromCharCode(data[p + 1 + j] as number);
        stats[name] = v.getFloat64(p + 1 + nameBytes, true);
        p += 1 + nameBytes + 8;
      }
      return { kind: "reply", reply: { type: "stats", token: t, stats } };
    }
    case FrameType.RepSnapshotPart: {
      const t = token();
      need(offset, SNAPSHOT_PART_HEADER_BYTES, end);
      const flags = data[offset + 5] as number;
      const count = v.getUint16(offset + 6, true);
      const members: MemberInfo[] = [];
      let p = offset + 8;
      for (let i = 0; i < count; i++) {
        const m = readMember(data, v, p, end);
        members.push(m);
        p += memberRecordBytes(m);
      }
      return { kind: "snapshotPart", token: t, members, last: (flags & 1) !== 0, truncated: (flags & 2) !== 0 };
    }
    default:
      throw new FrameError(`unknown event frame type ${String(type)}`);
  }
}
