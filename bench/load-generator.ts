/**
 * A UDP load generator for one TamTam agent, run as its own process by engine-load.bench.ts (or
 * by hand). It binds `--sources` sockets on 127.0.0.1, each connected to the target agent, so
 * each socket is one distinct member to the agent: every PING names its own socket's real
 * address as `from`, so the agent adds it as a member and sends the ACK back to that socket.
 * It depends on nothing of the agent but the wire codec.
 *
 * A step sends one kind of traffic at a fixed offered rate for a fixed time (hrtime pacing in
 * setImmediate batches, round robin over the sockets), then waits `drainMs` for stragglers:
 *
 *   - "ping": PINGs, one fresh seq each; the ACKs are counted by seq (each seq once; late and
 *     duplicate ACKs apart), with their round-trip times.
 *   - "gossip": full GOSSIP datagrams as members exchange them: each carries as many ALIVE
 *     updates about the other sources as fit (at their current incarnation, so merging them
 *     changes nothing) and one 64-byte broadcast of a pool of 64 the agent has seen before (a
 *     retransmission). Built (and sealed) before the step's clock starts, so the generator only
 *     sends while it is timed. Nothing answers them: the benchmark counts what the agent's core
 *     handled (its Stats) against what was sent. With a `pingRate`, PINGs go beside them
 *     (reported as `probes`: sent, ACKs, round-trip times), timing the agent's ACKs under that load.
 *   - "busy": PINGs at `pingRate` (RTTs measured) and, beside them, GOSSIP datagrams carrying
 *     `broadcastRate` fresh 64-byte broadcasts per second (BUSY_BROADCASTS_PER_DATAGRAM each),
 *     which the agent delivers to its Stream subscribers: the load that keeps its main thread busy.
 *     With a `gossipRate`, the retransmission GOSSIP of "gossip" steps goes beside it at that
 *     rate: the background traffic of a large cluster, which the agent must open and merge too.
 *
 * With `--key` (base64) every datagram is sealed as an agent seals it (src/seal: one boot id
 * and nonce counter for the generator, each source naming itself inside), and what the agent
 * sends is opened; `--label` binds a cluster label. It answers the agent's own probes (PING ->
 * ACK, PING_REQ -> ACK with the requester's seq) so that its fake members stay alive, and
 * ignores gossip and member-list syncs.
 *
 *   node dist/bench/load-generator.js --target 127.0.0.1:PORT [--sources 256]
 *        [--rates 20000,40000] [--duration-ms 2000] [--drain-ms 300] [--control stdin]
 *        [--key BASE64] [--label NAME]
 *
 * Output: JSON lines on stdout: {"type":"ready",...} once the agent has acked every source,
 * then per step {"type":"go"} as its clock starts (after any building) and {"type":"step",...}, then {"type":"done"}. With `--control stdin` the steps
 * come as JSON lines on stdin instead of --rates:
 * {"traffic":"ping"|"gossip"|"busy","rate":R,"durationMs":D,"drainMs":M,"pingRate":P,"broadcastRate":B,"gossipRate":G},
 * and {"exit":true} (or the end of stdin) ends the process.
 */

import dgram from "node:dgram";
import { readFileSync } from "node:fs";
import { createInterface } from "node:readline";
import { makeAddress, parseIp, type Address } from "../src/core/address.js";
import { decodeDatagram, encodeDatagram } from "../src/core/wire/codec.js";
import { MemberState, MessageType, SEALED_OVERHEAD_BYTES, WIRE_MAGIC_0, WIRE_MAGIC_1, type MemberUpdate, type UserBroadcast } from "../src/core/wire/messages.js";
import { decodeKey } from "../src/seal/checks.js";
import { Envelope, LABEL_TAG_BYTES } from "../src/seal/envelope.js";
import { Keyring } from "../src/seal/keyring.js";
import { benchArgs, unknownArgument } from "./lib.js";

interface Args {
  targetIp: string;
  targetPort: number;
  sources: number;
  rates: number[];
  durationMs: number;
  drainMs: number;
  control: "args" | "stdin";
  recvBufferBytes: number;
  key: Uint8Array | null;
  label: string | null;
}

function parseArgs(argv: string[]): Args {
  const args: Args = {
    targetIp: "",
    targetPort: 0,
    sources: 256,
    rates: [20_000],
    durationMs: 2_000,
    drainMs: 300,
    control: "args",
    recvBufferBytes: 4 * 1024 * 1024,
    key: null,
    label: null,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = (): string => argv[++i] ?? "";
    if (a === "--target") {
      const text = next();
      const colon = text.lastIndexOf(":");
      args.targetIp = text.slice(0, colon).replace(/^\[|\]$/g, "");
      args.targetPort = Number(text.slice(colon + 1));
    } else if (a === "--sources") args.sources = Number(next());
    else if (a === "--rates") args.rates = next().split(",").map(Number);
    else if (a === "--duration-ms") args.durationMs = Number(next());
    else if (a === "--drain-ms") args.drainMs = Number(next());
    else if (a === "--control") args.control = next() === "stdin" ? "stdin" : "args";
    else if (a === "--recv-buffer") args.recvBufferBytes = Number(next());
    else if (a === "--key") {
      const key = decodeKey(next());
      if (typeof key === "string") throw new Error(`--key ${key}`);
      args.key = key;
    } else if (a === "--label") args.label = next();
    else unknownArgument(a);
  }
  if (parseIp(args.targetIp) === null || !(args.targetPort > 0 && args.targetPort < 65536)) throw new Error("--target IP:PORT is required");
  if (!(args.sources >= 1 && args.sources <= 4096)) throw new Error("--sources must be 1..4096");
  return args;
}

// ---------------------------------------------------------------------------------------------
// Wire bits. PINGs are built once per source by the codec with a 4-byte seq varint; the seqs
// used stay in [2^21, 2^28), whose varints are 4 bytes, so only the last 4 bytes are patched.

const SEQ_MIN = 1 << 21;
const SEQ_MAX = 1 << 28;
const INCARNATION = 1;

function writeSeq4(buf: Uint8Array, p: number, seq: number): void {
  buf[p] = (seq & 0x7f) | 0x80;
  buf[p + 1] = ((seq >>> 7) & 0x7f) | 0x80;
  buf[p + 2] = ((seq >>> 14) & 0x7f) | 0x80;
  buf[p + 3] = (seq >>> 21) & 0x7f;
}

/** The seq of an ACK (or PING / NACK), read per the header layout; -1 if not that shape. */
function headerSeq(b: Uint8Array): number {
  const n = b.length;
  if (n < 8 || b[0] !== WIRE_MAGIC_0 || b[1] !== WIRE_MAGIC_1 || b[3] !== 0) return -1;
  let p = 5 + (b[5] === 4 ? 7 : b[5] === 6 ? 19 : n);
  // incarnation varint
  while (p < n && (b[p] as number) >= 0x80) p++;
  p++;
  let value = 0;
  let shift = 0;
  while (p < n) {
    const byte = b[p++] as number;
    value += (byte & 0x7f) * 2 ** shift;
    if (byte < 0x80) return value;
    shift += 7;
    if (shift > 28) return -1;
  }
  return -1;
}

// ---------------------------------------------------------------------------------------------

interface Source {
  readonly socket: dgram.Socket;
  readonly address: Address;
  /** The PING template with this source's `from`; the seq sits in its last 4 bytes. */
  readonly ping: Uint8Array;
}

interface StepState {
  readonly base: number;
  readonly capacity: number;
  readonly sentAt: Float64Array;
  readonly acked: Uint8Array;
  readonly rtts: Float64Array;
  sent: number;
  acks: number;
  duplicates: number;
}

const counters = {
  lateAcks: 0,
  agentPings: 0,
  agentPingReqs: 0,
  otherMessages: 0,
  badMessages: 0,
  sendErrors: 0,
  socketErrors: 0,
  /** ACKs sent to the agent's own probes (datagrams the agent receives beside the step's). */
  repliesSent: 0,
};

let nextSeq = SEQ_MIN;
let step: StepState | null = null;
const warmupAcked = new Set<number>();
let warmupBase = -1;

function takeSeqs(count: number): number {
  if (nextSeq + count >= SEQ_MAX) nextSeq = SEQ_MIN;
  const base = nextSeq;
  nextSeq += count;
  return base;
}

/**
 * Seals (or labels) what the generator sends, and opens what the agent sends; null: plaintext.
 * Datagrams built before a step (`txBulk`) take their nonces from a boot id of their own: a
 * reply sealed on the fly meanwhile takes a later counter than the prebuilt datagrams still to
 * go, which the agent's replay window (per sender and boot id) would then drop as too old.
 */
let tx: Envelope | null = null;
let txBulk: Envelope | null = null;
let rx: Envelope | null = null;

/** A datagram as it goes on the wire: sealed or labeled when the agent expects it. */
function wire(bytes: Uint8Array): Uint8Array {
  return tx === null ? bytes : tx.wrap(bytes);
}

function onMessage(source: Source, received: Buffer): void {
  let msg: Uint8Array = received;
  if (rx !== null) {
    const opened = rx.unwrap(received, "agent", 0);
    if (opened === null) {
      counters.badMessages++;
      return;
    }
    msg = opened;
  }
  const type = msg.length > 4 ? msg[4] : -1;
  if (type === MessageType.Ack) {
    const seq = headerSeq(msg);
    const s = step;
    if (s !== null && seq >= s.base && seq < s.base + s.sent) {
      const i = seq - s.base;
      if (s.acked[i] === 0) {
        s.acked[i] = 1;
        s.rtts[s.acks++] = performance.now() - (s.sentAt[i] as number);
      } else s.duplicates++;
      return;
    }
    if (warmupBase >= 0 && seq >= warmupBase && seq < warmupBase + sources.length) {
      warmupAcked.add(seq - warmupBase);
      return;
    }
    if (seq < 0) counters.badMessages++;
    else counters.lateAcks++;
    return;
  }
  // Anything else is rare: decode it properly.
  let d;
  try {
    d = decodeDatagram(msg);
  } catch {
    counters.badMessages++;
    return;
  }
  const body = d.body;
  if (body.type === MessageType.Cookie && joinSeq >= 0) {
    // The agent's answer to a JOIN from an address it has not heard from: join again with its cookie.
    const join = encodeDatagram({ from: source.address, incarnation: INCARNATION, body: { type: MessageType.Join, seq: body.seq }, updates: [], broadcasts: [], cookie: body.cookie });
    source.socket.send(wire(join));
    return;
  }
  if (body.type === MessageType.Sync && joinSeq >= 0) {
    joined.add(source.address.port);
    return;
  }
  if (body.type === MessageType.Ping || body.type === MessageType.PingReq) {
    if (body.type === MessageType.Ping) counters.agentPings++;
    else counters.agentPingReqs++;
    // A PING_REQ's target is another of our sockets: answer for it at once.
    const ack = encodeDatagram({ from: source.address, incarnation: INCARNATION, body: { type: MessageType.Ack, seq: body.seq }, updates: [], broadcasts: [] });
    counters.repliesSent++;
    source.socket.send(wire(ack), (err) => {
      if (err) counters.sendErrors++;
    });
    return;
  }
  counters.otherMessages++;
}

async function openSource(args: Args): Promise<Source> {
  const socket = dgram.createSocket({ type: args.targetIp.includes(":") ? "udp6" : "udp4" });
  const localIp = args.targetIp.includes(":") ? "::1" : "127.0.0.1";
  await new Promise<void>((resolve, reject) => {
    socket.once("error", reject);
    socket.bind({ address: localIp, port: 0, exclusive: true }, () => {
      socket.off("error", reject);
      resolve();
    });
  });
  try {
    socket.setRecvBufferSize(args.recvBufferBytes);
  } catch {
    // capped by the kernel: keep what it gives
  }
  await new Promise<void>((resolve, reject) => {
    socket.once("error", reject);
    socket.connect(args.targetPort, args.targetIp, () => {
      socket.off("error", reject);
      resolve();
    });
  });
  socket.on("error", () => counters.socketErrors++);
  const address = makeAddress(parseIp(localIp) as Uint8Array, socket.address().port);
  const ping = encodeDatagram({ from: address, incarnation: INCARNATION, body: { type: MessageType.Ping, seq: SEQ_MIN }, updates: [], broadcasts: [] });
  // Self-check of the patching: a patched template must decode to the patched seq.
  const probe = ping.slice();
  writeSeq4(probe, probe.length - 4, SEQ_MAX - 3);
  const decoded = decodeDatagram(probe);
  if (decoded.body.type !== MessageType.Ping || decoded.body.seq !== SEQ_MAX - 3 || decoded.from.key !== address.key) {
    throw new Error("PING template patching is broken");
  }
  const source: Source = { socket, address, ping };
  socket.on("message", (msg: Buffer) => onMessage(source, msg));
  return source;
}

function sendPing(source: Source, seq: number): void {
  const t = source.ping;
  const buf = Buffer.allocUnsafe(t.length);
  buf.set(t);
  writeSeq4(buf, t.length - 4, seq);
  try {
    source.socket.send(wire(buf));
  } catch {
    counters.sendErrors++;
  }
}

/** Sum of the kernel's per-socket receive drops over our sockets (/proc/net/udp{,6}), or null. */
function socketDrops(ports: Set<number>): number | null {
  let total = 0;
  let found = false;
  for (const file of ["/proc/net/udp", "/proc/net/udp6"]) {
    let text: string;
    try {
      text = readFileSync(file, "utf8");
    } catch {
      continue;
    }
    for (const line of text.split("\n").slice(1)) {
      const cols = line.trim().split(/\s+/);
      const local = cols[1];
      if (local === undefined || cols.length < 13) continue;
      const port = parseInt(local.slice(local.lastIndexOf(":") + 1), 16);
      if (!ports.has(port)) continue;
      found = true;
      total += Number(cols[cols.length - 1]);
    }
  }
  return found ? total : null;
}

const immediate = (): Promise<void> => new Promise((r) => setImmediate(r));
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function percentile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] as number;
}

const r3 = (x: number): number => Math.round(x * 1000) / 1000;

let sources: Source[] = [];

/** The JOIN seq of the warm-up (-1 outside it) and the sources whose JOIN the agent answered with its member list. */
let joinSeq = -1;
const joined = new Set<number>();

/**
 * Every source joins the agent (JOIN, the agent's COOKIE, JOIN with the cookie, its member
 * list), as a real member does, so that the agent holds it as a member that has shown it
 * receives (answered in full, never rate-limited as a stranger); then pings once (retried)
 * until the agent has acked each.
 */
async function warmup(): Promise<{ acked: number; joined: number; ms: number }> {
  const t0 = performance.now();
  joinSeq = takeSeqs(1);
  for (let attempt = 0; attempt < 10 && joined.size < sources.length; attempt++) {
    for (const s of sources) {
      if (joined.has(s.address.port)) continue;
      s.socket.send(wire(encodeDatagram({ from: s.address, incarnation: INCARNATION, body: { type: MessageType.Join, seq: joinSeq }, updates: [], broadcasts: [] })));
    }
    const until = performance.now() + 300;
    while (performance.now() < until && joined.size < sources.length) await sleep(5);
  }
  joinSeq = -1;
  warmupBase = takeSeqs(sources.length);
  for (let attempt = 0; attempt < 10 && warmupAcked.size < sources.length; attempt++) {
    for (let i = 0; i < sources.length; i++) if (!warmupAcked.has(i)) sendPing(sources[i] as Source, warmupBase + i);
    const until = performance.now() + 300;
    while (performance.now() < until && warmupAcked.size < sources.length) await sleep(5);
  }
  const acked = warmupAcked.size;
  warmupBase = -1;
  return { acked, joined: joined.size, ms: Math.round(performance.now() - t0) };
}

/** What one step sends (see the file header). */
interface StepSpec {
  traffic: "ping" | "gossip" | "busy";
  /** Datagrams per second (ping, gossip). */
  rate: number;
  durationMs: number;
  drainMs: number;
  /** busy: PINGs per second, and fresh broadcasts per second beside them; gossip: PINGs per second beside the gossip (0: none). */
  pingRate: number;
  broadcastRate: number;
  /** busy: retransmission GOSSIP datagrams per second beside the busy traffic (0: none). */
  gossipRate: number;
}

/** Fresh broadcasts per GOSSIP datagram of a busy step. */
const BUSY_BROADCASTS_PER_DATAGRAM = 10;
const BROADCAST_PAYLOAD_BYTES = 64;
/** Broadcasts the gossip steps retransmit (the agent has seen each after the first step). */
const BROADCAST_POOL = 64;
/** Frames built and sealed between two turns of the event loop before a gossip step. */
const BUILD_BATCH = 1_000;
/** Largest datagram on the wire (the agents' maxPacketBytes). */
const MAX_PACKET_BYTES = 1232;

let freshSeq = 0;

/** The ALIVE updates that source `i` gossips: as many of the other sources as fit a full datagram. */
const updatesOf: MemberUpdate[][] = [];
/** Plaintext GOSSIP of source `i` retransmitting pool broadcast `b`, by i * BROADCAST_POOL + b. */
const gossipCache = new Map<number, Uint8Array>();
let pool: UserBroadcast[] = [];

function budgetBytes(): number {
  if (tx === null) return MAX_PACKET_BYTES;
  return MAX_PACKET_BYTES - (tx.sealing ? SEALED_OVERHEAD_BYTES : LABEL_TAG_BYTES);
}

function payload(tag: number): Uint8Array {
  const p = new Uint8Array(BROADCAST_PAYLOAD_BYTES);
  new DataView(p.buffer).setUint32(0, tag);
  return p;
}

function gossipPlain(i: number, broadcasts: readonly UserBroadcast[]): Uint8Array {
  const from = (sources[i] as Source).address;
  let updates = updatesOf[i];
  if (updates === undefined) {
    const all: MemberUpdate[] = [];
    for (let j = 1; j < sources.length; j++) {
      all.push({ state: MemberState.Alive, incarnation: INCARNATION, member: (sources[(i + j) % sources.length] as Source).address });
    }
    // As many as fit beside one pool broadcast (the fresh ones of busy steps take the same room).
    let n = all.length;
    const probe = (k: number): number =>
      encodeDatagram({ from, incarnation: INCARNATION, body: { type: MessageType.Gossip }, updates: all.slice(0, k), broadcasts: pool.slice(0, 1) }, 65_000).length;
    while (n > 0 && probe(n) > budgetBytes()) n--;
    updates = all.slice(0, n);
    updatesOf[i] = updates;
  }
  return encodeDatagram({ from, incarnation: INCARNATION, body: { type: MessageType.Gossip }, updates, broadcasts }, 65_000);
}

/** Sends `count` datagrams paced at `rate` per second over `durationMs`, `send(k)` the k-th; returns how many went out and when. */
async function paced(rate: number, durationMs: number, count: number, send: (k: number) => void): Promise<{ sent: number; sendMs: number; turns: number; lagTurns: number }> {
  // Each turn may send at most ~2 ms worth of datagrams, so that receiving is never starved.
  const maxBatch = Math.max(64, Math.ceil(rate / 500));
  let sent = 0;
  let turns = 0;
  let lagTurns = 0;
  const t0 = performance.now();
  for (;;) {
    const elapsed = performance.now() - t0;
    if (elapsed >= durationMs) break;
    let due = Math.min(count, Math.floor((rate * elapsed) / 1000)) - sent;
    if (due > maxBatch) {
      due = maxBatch;
      lagTurns++;
    }
    for (let k = 0; k < due; k++) send(sent++);
    turns++;
    // Behind: go on at once (after the poll phase has taken the ACKs in); on time: sleep until
    // the next timer tick rather than spin, which would take a core from the agent.
    if (due === maxBatch) await immediate();
    else await sleep(1);
  }
  return { sent, sendMs: performance.now() - t0, turns, lagTurns };
}

function newStepState(rate: number, durationMs: number): StepState {
  const capacity = Math.ceil((rate * durationMs) / 1000) + 1;
  return { base: takeSeqs(capacity), capacity, sentAt: new Float64Array(capacity), acked: new Uint8Array(capacity), rtts: new Float64Array(capacity), sent: 0, acks: 0, duplicates: 0 };
}

function sendStepPing(s: StepState, k: number): void {
  s.sentAt[k] = performance.now();
  // Counted before the send, so that an ACK handled re-entrantly would still match.
  s.sent++;
  sendPing(sources[k % sources.length] as Source, s.base + k);
}

function pingResults(s: StepState): Record<string, unknown> {
  const rtts = s.rtts.subarray(0, s.acks).sort();
  return {
    acks: s.acks,
    loss: s.sent === 0 ? 0 : 1 - s.acks / s.sent,
    duplicateAcks: s.duplicates,
    rttMs: { p50: r3(percentile(rtts, 0.5)), p99: r3(percentile(rtts, 0.99)), max: r3(rtts.length > 0 ? (rtts[rtts.length - 1] as number) : NaN) },
  };
}

async function runStep(spec: StepSpec, ports: Set<number>): Promise<Record<string, unknown>> {
  const lateBefore = counters.lateAcks;
  const errorsBefore = counters.sendErrors + counters.socketErrors;
  const repliesBefore = counters.repliesSent;
  const n = sources.length;
  let run: { sent: number; sendMs: number; turns: number; lagTurns: number };
  let prepMs = 0;
  let broadcastsSent = 0;
  let frames: Uint8Array[] = [];
  const gossipRate = spec.traffic === "gossip" ? spec.rate : spec.traffic === "busy" ? spec.gossipRate : 0;
  if (gossipRate > 0) {
    // Built and sealed before the clock starts: while timed, the generator only sends. Building
    // yields every BUILD_BATCH frames, so that the members go on answering the agent's probes
    // (sealing 100,000 frames takes about a second, long enough for the agent to suspect them).
    // The first step that carries the pool broadcasts delivers them once to the agent's
    // subscribers (64 items); the busy runs' untimed warm-up takes them.
    const p0 = performance.now();
    frames = new Array<Uint8Array>(Math.ceil((gossipRate * spec.durationMs) / 1000));
    for (let k = 0; k < frames.length; k++) {
      if (k % BUILD_BATCH === BUILD_BATCH - 1) await immediate();
      const i = k % n;
      const b = k % BROADCAST_POOL;
      let plain = gossipCache.get(i * BROADCAST_POOL + b);
      if (plain === undefined) {
        plain = gossipPlain(i, [pool[b] as UserBroadcast]);
        gossipCache.set(i * BROADCAST_POOL + b, plain);
      }
      frames[k] = txBulk === null ? plain : txBulk.wrap(plain);
    }
    prepMs = performance.now() - p0;
  }
  const ping = spec.traffic === "gossip" ? null : newStepState(spec.traffic === "ping" ? spec.rate : spec.pingRate, spec.durationMs);
  // Gossip steps with a pingRate: PINGs beside the gossip, to time the agent's ACKs under that load.
  const probes = spec.traffic === "gossip" && spec.pingRate > 0 ? newStepState(spec.pingRate, spec.durationMs) : null;
  step = ping ?? probes;
  const dropsBefore = socketDrops(ports);
  emit({ type: "go" });
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const sendFrame = (k: number): void => {
    try {
      (sources[k % n] as Source).socket.send(frames[k] as Uint8Array);
    } catch {
      counters.sendErrors++;
    }
  };
  let gossipSent = 0;
  if (ping === null) {
    const probing = probes === null ? null : paced(spec.pingRate, spec.durationMs, probes.capacity, (k) => sendStepPing(probes, k));
    run = await paced(spec.rate, spec.durationMs, frames.length, sendFrame);
    await probing;
  } else if (spec.traffic === "ping") {
    run = await paced(spec.rate, spec.durationMs, ping.capacity, (k) => sendStepPing(ping, k));
  } else {
    const background = frames.length === 0 ? null : paced(gossipRate, spec.durationMs, frames.length, sendFrame);
    const gossip = paced(spec.broadcastRate / BUSY_BROADCASTS_PER_DATAGRAM, spec.durationMs, Infinity, (k) => {
      const i = k % n;
      const origin = (sources[i] as Source).address;
      const broadcasts: UserBroadcast[] = [];
      for (let j = 0; j < BUSY_BROADCASTS_PER_DATAGRAM; j++) broadcasts.push({ origin, epoch: 2, seq: freshSeq++, payload: payload(freshSeq) });
      broadcastsSent += broadcasts.length;
      try {
        (sources[i] as Source).socket.send(wire(gossipPlain(i, broadcasts)));
      } catch {
        counters.sendErrors++;
      }
    });
    run = await paced(spec.pingRate, spec.durationMs, ping.capacity, (k) => sendStepPing(ping, k));
    await gossip;
    gossipSent = background === null ? 0 : (await background).sent;
  }
  const sendMs = run.sendMs;
  const sent = run.sent;
  const drainStart = performance.now();
  const timed = ping ?? probes;
  while (performance.now() - drainStart < spec.drainMs && (timed === null || timed.acks < timed.sent)) await sleep(5);
  // Late ACKs beyond the drain still count as late, not as this step's.
  step = null;
  const cpu = process.cpuUsage(cpu0);
  const wallMs = performance.now() - t0;
  const dropsAfter = socketDrops(ports);
  return {
    type: "step",
    traffic: spec.traffic,
    offeredRate: spec.traffic === "busy" ? spec.pingRate : spec.rate,
    durationMs: spec.durationMs,
    prepMs: Math.round(prepMs),
    sendMs: Math.round(sendMs),
    wallMs: Math.round(wallMs),
    sent,
    achievedRate: Math.round((sent * 1000) / sendMs),
    broadcastsSent,
    ...(spec.traffic === "busy" ? { gossipSent } : {}),
    repliesSent: counters.repliesSent - repliesBefore,
    ...(ping === null ? {} : pingResults(ping)),
    ...(probes === null ? {} : { probes: { sent: probes.sent, ...pingResults(probes) } }),
    lateAcksBefore: lateBefore,
    sendErrors: counters.sendErrors + counters.socketErrors - errorsBefore,
    generatorCpuMs: { user: Math.round(cpu.user / 1000), system: Math.round(cpu.system / 1000) },
    generatorSocketDrops: dropsBefore === null || dropsAfter === null ? null : dropsAfter - dropsBefore,
    turns: run.turns,
    lagTurns: run.lagTurns,
  };
}

function emit(obj: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(obj)}\n`);
}

async function main(): Promise<void> {
  const args = parseArgs(benchArgs(import.meta.url));
  sources = [];
  try {
    if (args.key !== null || args.label !== null) {
      const envelopeOf = (): Envelope =>
        new Envelope({ keyring: new Keyring(args.key === null ? [] : [args.key]), label: args.label, acceptPlaintext: false, sendPlaintext: false });
      tx = envelopeOf();
      txBulk = envelopeOf();
      rx = envelopeOf();
    }
    for (let i = 0; i < args.sources; i++) sources.push(await openSource(args));
    pool = Array.from({ length: BROADCAST_POOL }, (_, b) => ({ origin: (sources[0] as Source).address, epoch: 1, seq: b, payload: payload(b) }));
    const ports = new Set(sources.map((s) => s.address.port));
    const w = await warmup();
    emit({ type: "ready", sources: sources.length, warmupAcked: w.acked, warmupJoined: w.joined, warmupMs: w.ms, recvBufferBytes: sources[0]?.socket.getRecvBufferSize() ?? 0 });
    if (args.control === "args") {
      for (const rate of args.rates) emit(await runStep({ traffic: "ping", rate, durationMs: args.durationMs, drainMs: args.drainMs, pingRate: 0, broadcastRate: 0, gossipRate: 0 }, ports));
    } else {
      const lines = createInterface({ input: process.stdin });
      for await (const line of lines) {
        if (line.trim() === "") continue;
        const cmd = JSON.parse(line) as Partial<StepSpec> & { exit?: boolean };
        if (cmd.exit === true) break;
        emit(
          await runStep(
            {
              traffic: cmd.traffic ?? "ping",
              rate: cmd.rate ?? 20_000,
              durationMs: cmd.durationMs ?? args.durationMs,
              drainMs: cmd.drainMs ?? args.drainMs,
              pingRate: cmd.pingRate ?? 500,
              broadcastRate: cmd.broadcastRate ?? 2_000,
              gossipRate: cmd.gossipRate ?? 0,
            },
            ports,
          ),
        );
      }
      lines.close();
    }
    emit({ type: "done", ...counters });
  } finally {
    for (const s of sources) {
      try {
        s.socket.close();
      } catch {
        // already closed
      }
    }
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`load-generator: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
