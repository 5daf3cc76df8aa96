/**
 * A UDP load generator for one TamTam agent, run as its own process by engine-load.bench.ts (or
 * by hand). It binds `--sources` sockets on 127.0.0.1, each connected to the target agent, so
 * each socket is one distinct member to the agent: every PING names its own socket's real
 * address as `from`, so the agent adds it as a member and sends the ACK back to that socket.
 * It depends on nothing of the agent but the wire codec.
 *
 * Per step it sends PINGs at a fixed offered rate for a fixed time (hrtime pacing in
 * setImmediate batches, round robin over the sockets, one fresh seq per PING), then waits
 * `drainMs` for stragglers, and counts the ACKs by seq (each seq once; late and duplicate ACKs
 * apart). It answers the agent's own probes (PING -> ACK, PING_REQ -> ACK with the requester's
 * seq) so that its fake members stay alive, and ignores gossip and member-list syncs.
 *
 *   node dist/bench/load-generator.js --target 127.0.0.1:PORT [--sources 256]
 *        [--rates 20000,40000] [--duration-ms 2000] [--drain-ms 300] [--control stdin]
 *
 * Output: JSON lines on stdout: {"type":"ready",...} once the agent has acked every source,
 * then one {"type":"step",...} per step, then {"type":"done"}. With `--control stdin` the steps
 * come as JSON lines on stdin instead of --rates: {"rate":R,"durationMs":D,"drainMs":M}, and
 * {"exit":true} (or the end of stdin) ends the process.
 */

import dgram from "node:dgram";
import { readFileSync } from "node:fs";
import { createInterface } from "node:readline";
import { makeAddress, parseIp, type Address } from "../src/core/address.js";
import { decodeDatagram, encodeDatagram } from "../src/core/wire/codec.js";
import { MessageType, WIRE_MAGIC_0, WIRE_MAGIC_1 } from "../src/core/wire/messages.js";

interface Args {
  targetIp: string;
  targetPort: number;
  sources: number;
  rates: number[];
  durationMs: number;
  drainMs: number;
  control: "args" | "stdin";
  recvBufferBytes: number;
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
    else throw new Error(`unknown argument ${a}`);
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

function onMessage(source: Source, msg: Buffer): void {
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
  if (body.type === MessageType.Ping || body.type === MessageType.PingReq) {
    if (body.type === MessageType.Ping) counters.agentPings++;
    else counters.agentPingReqs++;
    // A PING_REQ's target is another of our sockets: answer for it at once.
    const ack = encodeDatagram({ from: source.address, incarnation: INCARNATION, body: { type: MessageType.Ack, seq: body.seq }, updates: [], broadcasts: [] });
    source.socket.send(ack, (err) => {
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
    source.socket.send(buf);
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

/** Every source pings once (retried) until the agent has acked each: it then knows them all. */
async function warmup(): Promise<{ acked: number; ms: number }> {
  const t0 = performance.now();
  warmupBase = takeSeqs(sources.length);
  for (let attempt = 0; attempt < 10 && warmupAcked.size < sources.length; attempt++) {
    for (let i = 0; i < sources.length; i++) if (!warmupAcked.has(i)) sendPing(sources[i] as Source, warmupBase + i);
    const until = performance.now() + 300;
    while (performance.now() < until && warmupAcked.size < sources.length) await sleep(5);
  }
  const acked = warmupAcked.size;
  warmupBase = -1;
  return { acked, ms: Math.round(performance.now() - t0) };
}

async function runStep(rate: number, durationMs: number, drainMs: number, ports: Set<number>): Promise<Record<string, unknown>> {
  const capacity = Math.ceil((rate * durationMs) / 1000) + 1;
  const s: StepState = {
    base: takeSeqs(capacity),
    capacity,
    sentAt: new Float64Array(capacity),
    acked: new Uint8Array(capacity),
    rtts: new Float64Array(capacity),
    sent: 0,
    acks: 0,
    duplicates: 0,
  };
  const lateBefore = counters.lateAcks;
  const errorsBefore = counters.sendErrors + counters.socketErrors;
  const dropsBefore = socketDrops(ports);
  const cpu0 = process.cpuUsage();
  // Each turn may send at most ~2 ms worth of datagrams, so that receiving is never starved.
  const maxBatch = Math.max(64, Math.ceil(rate / 500));
  const n = sources.length;
  let next = 0;
  let turns = 0;
  let lagTurns = 0;
  step = s;
  const t0 = performance.now();
  for (;;) {
    const now = performance.now();
    const elapsed = now - t0;
    if (elapsed >= durationMs) break;
    let due = Math.min(capacity, Math.floor((rate * elapsed) / 1000)) - s.sent;
    if (due > maxBatch) {
      due = maxBatch;
      lagTurns++;
    }
    const sentAt = s.sentAt;
    for (let k = 0; k < due; k++) {
      const i = s.sent;
      sentAt[i] = now;
      // Counted before the send, so that an ACK handled re-entrantly would still match.
      s.sent++;
      sendPing(sources[next] as Source, s.base + i);
      next = next + 1 === n ? 0 : next + 1;
    }
    turns++;
    // Behind: go on at once (after the poll phase has taken the ACKs in); on time: sleep until
    // the next timer tick rather than spin, which would take a core from the agent.
    if (due === maxBatch) await immediate();
    else await sleep(1);
  }
  const sendMs = performance.now() - t0;
  const sent = s.sent;
  const drainStart = performance.now();
  while (performance.now() - drainStart < drainMs && s.acks < sent) await sleep(5);
  // Late ACKs beyond the drain still count as late, not as this step's.
  step = null;
  const cpu = process.cpuUsage(cpu0);
  const wallMs = performance.now() - t0;
  const dropsAfter = socketDrops(ports);
  const rtts = s.rtts.subarray(0, s.acks).sort();
  return {
    type: "step",
    offeredRate: rate,
    durationMs,
    sendMs: Math.round(sendMs),
    wallMs: Math.round(wallMs),
    sent,
    achievedRate: Math.round((sent * 1000) / sendMs),
    acks: s.acks,
    loss: sent === 0 ? 0 : 1 - s.acks / sent,
    duplicateAcks: s.duplicates,
    lateAcksBefore: lateBefore,
    sendErrors: counters.sendErrors + counters.socketErrors - errorsBefore,
    rttMs: { p50: r3(percentile(rtts, 0.5)), p99: r3(percentile(rtts, 0.99)), max: r3(rtts.length > 0 ? (rtts[rtts.length - 1] as number) : NaN) },
    generatorCpuMs: { user: Math.round(cpu.user / 1000), system: Math.round(cpu.system / 1000) },
    generatorSocketDrops: dropsBefore === null || dropsAfter === null ? null : dropsAfter - dropsBefore,
    turns,
    lagTurns,
  };
}

function emit(obj: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(obj)}\n`);
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  sources = [];
  try {
    for (let i = 0; i < args.sources; i++) sources.push(await openSource(args));
    const ports = new Set(sources.map((s) => s.address.port));
    const w = await warmup();
    emit({ type: "ready", sources: sources.length, warmupAcked: w.acked, warmupMs: w.ms, recvBufferBytes: sources[0]?.socket.getRecvBufferSize() ?? 0 });
    if (args.control === "args") {
      for (const rate of args.rates) emit(await runStep(rate, args.durationMs, args.drainMs, ports));
    } else {
      const lines = createInterface({ input: process.stdin });
      for await (const line of lines) {
        if (line.trim() === "") continue;
        const cmd = JSON.parse(line) as { rate?: number; durationMs?: number; drainMs?: number; exit?: boolean };
        if (cmd.exit === true) break;
        emit(await runStep(cmd.rate ?? 20_000, cmd.durationMs ?? args.durationMs, cmd.drainMs ?? args.drainMs, ports));
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
