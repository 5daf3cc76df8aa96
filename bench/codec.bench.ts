/**
 * bench/codec.bench.ts: micro-benchmark of the gossip wire codec (src/core/wire/codec.ts).
 *
 *  1. Per message type, IPv4 and IPv6, ns per encodeDatagram (to a 1232-byte limit) and per
 *     decodeDatagram of pre-encoded bytes. PING, ACK, PING_REQ, NACK and JOIN are bare (header
 *     and body; what piggyback adds is per item, see 3); SYNC is a small cluster's member-list
 *     snapshot (10 ALIVE items); GOSSIP carries a typical piggyback after a membership change
 *     (2 ALIVE, 1 SUSPECT, 1 DEAD, one 64-byte user broadcast). Also encodeUpdateItem and
 *     encodeBroadcastItem, the pre-encoding the node does once per queued update.
 *  2. Bytes per membership item (updateItemBytes, cross-checked with encodeUpdateItem) for
 *     IPv4/IPv6 and small/large incarnations, and how many ALIVE items a 1232-byte GOSSIP and
 *     an 80-byte (Thread) PING hold: a computed table, not timed.
 *  3. Throughput on a full 1232-byte GOSSIP of ALIVE items at wall-clock incarnations (what the
 *     agent starts at, 5-byte varints): encodeDatagram, decodeDatagram, the node's send path
 *     (DatagramWriter begin + tryAppend of pre-encoded items + finish) and the encode+decode
 *     round trip, in updates/s = items per datagram x datagrams per second, reported against
 *     the 5 M updates/s target (met or missed; nothing is asserted).
 *
 * Each tinybench call runs a fixed batch of operations and the per-operation time is the
 * call's time divided by the batch; medians with p75/p99/min/max of the samples are reported.
 * Ratios (IPv6/IPv4, decode/encode) come from the same run. The machine may be noisy: compare
 * ratios, not absolute numbers across runs.
 *
 *   node dist/bench/codec.bench.js [--json]      about 20 s
 */

import { Bench } from "tinybench";
import { type CaseStats, type Family, FAMILIES, memberAddress, PORT, round1, statsOf, benchArgs } from "./lib.js";
import { availableParallelism } from "node:os";
import { makeAddress, type Address } from "../src/core/address.js";
import {
  DatagramWriter,
  decodeDatagram,
  encodeBroadcastItem,
  encodeDatagram,
  encodeUpdateItem,
  headerBytes,
  updateItemBytes,
} from "../src/core/wire/codec.js";
import {
  MemberState,
  MessageType,
  type Body,
  type Datagram,
  type MemberUpdate,
  type UserBroadcast,
} from "../src/core/wire/messages.js";

/** Default maxPacketBytes: the IPv6 minimum-MTU UDP payload. */
const FULL_BYTES = 1232;
/** probePacketBytes of the `thread` preset: one 802.15.4 frame's payload. */
const THREAD_PROBE_BYTES = 80;
/** The agent's starting incarnation is wall-clock seconds (a 5-byte varint). */
const WALL_CLOCK_INCARNATION = 1_750_000_000;
/** A sequence number a day into a node's life (a 3-byte varint). */
const TYPICAL_SEQ = 123_456;
const TARGET_UPDATES_PER_SEC = 5_000_000;

const BENCH_OPTIONS = { time: 300, warmupTime: 100, throws: true } as const;
/** Operations per tinybench call, by rough cost, so that one sample is tens of microseconds. */
const BATCH_SMALL = 256;
const BATCH_MEDIUM = 64;
const BATCH_FULL = 8;


/** The sending node, outside the member range. */
function senderAddress(family: Family): Address {
  return memberAddress(family, 0xfff0);
}

function alive(family: Family, i: number, incarnation: number): MemberUpdate {
  return { state: MemberState.Alive, incarnation, member: memberAddress(family, i) };
}

function datagram(family: Family, body: Body, updates: MemberUpdate[] = [], broadcasts: UserBroadcast[] = []): Datagram {
  return { from: senderAddress(family), incarnation: WALL_CLOCK_INCARNATION, body, updates, broadcasts };
}

function payloadOf(lengthBytes: number): Uint8Array {
  const p = new Uint8Array(lengthBytes);
  for (let i = 0; i < lengthBytes; i++) p[i] = (i * 37 + 11) & 0xff;
  return p;
}

/** The per-type messages of part 1, in display order. */
function messagesOf(family: Family): { name: string; d: Datagram }[] {
  const seq = TYPICAL_SEQ;
  const inc = WALL_CLOCK_INCARNATION;
  const snapshot: MemberUpdate[] = [];
  for (let i = 0; i < 10; i++) snapshot.push(alive(family, i, inc + i));
  const piggyback: MemberUpdate[] = [
    alive(family, 100, inc),
    alive(family, 101, inc + 3),
    { state: MemberState.Suspect, incarnation: inc, member: memberAddress(family, 102), suspectedBy: memberAddress(family, 103) },
    { state: MemberState.Dead, incarnation: inc + 1, member: memberAddress(family, 104) },
  ];
  const broadcast: UserBroadcast = { origin: memberAddress(family, 105), epoch: 0x5eed_1234, seq: 4321, payload: payloadOf(64) };
  return [
    { name: "PING", d: datagram(family, { type: MessageType.Ping, seq }) },
    { name: "ACK", d: datagram(family, { type: MessageType.Ack, seq }) },
    { name: "PING_REQ", d: datagram(family, { type: MessageType.PingReq, seq, target: memberAddress(family, 7) }) },
    { name: "NACK", d: datagram(family, { type: MessageType.Nack, seq }) },
    { name: "JOIN", d: datagram(family, { type: MessageType.Join, seq }) },
    { name: "SYNC (10 members)", d: datagram(family, { type: MessageType.Sync, replyWanted: false, seq }, snapshot) },
    { name: "GOSSIP (4 upd + 1 bcast)", d: datagram(family, { type: MessageType.Gossip }, piggyback, [broadcast]) },
  ];
}

/** A full GOSSIP: as many ALIVE items at `incarnation` as fit in FULL_BYTES. */
function fullGossip(family: Family, incarnation: number): Datagram {
  const d0 = datagram(family, { type: MessageType.Gossip });
  let room = FULL_BYTES - headerBytes(d0.from, d0.incarnation, d0.body);
  const updates: MemberUpdate[] = [];
  for (let i = 0; ; i++) {
    const u = alive(family, i, incarnation);
    const n = updateItemBytes(u);
    if (n > room) break;
    room -= n;
    updates.push(u);
  }
  return { ...d0, updates };
}

// ---------------------------------------------------------------------------------------------
// Statistics.




// ---------------------------------------------------------------------------------------------
// Part 1 and 3: timed cases.

let sink = 0;

interface TimedCase {
  readonly name: string;
  readonly opsPerCall: number;
}

function addBatched(bench: Bench, cases: TimedCase[], name: string, opsPerCall: number, op: () => void): void {
  const fn = (): void => {
    for (let i = 0; i < opsPerCall; i++) op();
  };
  bench.add(name, fn, { async: false });
  cases.push({ name, opsPerCall });
}

interface ThroughputSetup {
  readonly label: string;
  readonly family: Family;
  readonly incarnation: number;
  readonly d: Datagram;
  readonly bytes: Uint8Array;
  readonly items: number;
  /** Which parts to time; the round trip is always timed. */
  readonly allParts: boolean;
}

function throughputSetups(): ThroughputSetup[] {
  const variants: { label: string; family: Family; incarnation: number; allParts: boolean }[] = [
    { label: "IPv4", family: 4, incarnation: WALL_CLOCK_INCARNATION, allParts: true },
    { label: "IPv6", family: 6, incarnation: WALL_CLOCK_INCARNATION, allParts: true },
    { label: "IPv4 small inc", family: 4, incarnation: 1, allParts: false },
  ];
  return variants.map((v) => {
    const d = fullGossip(v.family, v.incarnation);
    const bytes = encodeDatagram(d, FULL_BYTES);
    const back = decodeDatagram(bytes);
    if (back.updates.length !== d.updates.length) throw new Error("full gossip does not round-trip");
    return { ...v, d, bytes, items: d.updates.length };
  });
}

async function timed(): Promise<{ cases: Record<string, CaseStats>; perType: Record<string, unknown>[]; setups: ThroughputSetup[] }> {
  const bench = new Bench(BENCH_OPTIONS);
  const cases: TimedCase[] = [];
  const sizes = new Map<string, number>();

  // Part 1: per message type.
  const typeNames: string[] = [];
  for (const family of FAMILIES) {
    for (const { name, d } of messagesOf(family)) {
      if (family === 4) typeNames.push(name);
      const bytes = encodeDatagram(d, FULL_BYTES);
      if (decodeDatagram(bytes).updates.length !== d.updates.length) throw new Error(`${name} does not round-trip`);
      sizes.set(`${name} v${family}`, bytes.length);
      const batch = d.updates.length + d.broadcasts.length === 0 ? BATCH_SMALL : BATCH_MEDIUM;
      addBatched(bench, cases, `encode ${name} v${family}`, batch, () => {
        sink += encodeDatagram(d, FULL_BYTES).length;
      });
      addBatched(bench, cases, `decode ${name} v${family}`, batch, () => {
        sink += decodeDatagram(bytes).updates.length;
      });
    }
    const u = alive(family, 42, WALL_CLOCK_INCARNATION);
    addBatched(bench, cases, `encodeUpdateItem ALIVE v${family}`, BATCH_SMALL, () => {
      sink += encodeUpdateItem(u).length;
    });
    const b: UserBroadcast = { origin: memberAddress(family, 43), epoch: 0x5eed_1234, seq: 4321, payload: payloadOf(64) };
    addBatched(bench, cases, `encodeBroadcastItem 64B v${family}`, BATCH_SMALL, () => {
      sink += encodeBroadcastItem(b).length;
    });
  }

  // Part 3: full GOSSIP throughput.
  const setups = throughputSetups();
  for (const s of setups) {
    const { d, bytes } = s;
    addBatched(bench, cases, `full ${s.label} encode+decode`, BATCH_FULL, () => {
      sink += decodeDatagram(encodeDatagram(d, FULL_BYTES)).updates.length;
    });
    if (!s.allParts) continue;
    addBatched(bench, cases, `full ${s.label} encodeDatagram`, BATCH_FULL, () => {
      sink += encodeDatagram(d, FULL_BYTES).length;
    });
    addBatched(bench, cases, `full ${s.label} decodeDatagram`, BATCH_FULL, () => {
      sink += decodeDatagram(bytes).updates.length;
    });
    const items = d.updates.map((u) => encodeUpdateItem(u));
    const writer = new DatagramWriter(FULL_BYTES);
    addBatched(bench, cases, `full ${s.label} writer (pre-encoded items)`, BATCH_FULL, () => {
      writer.begin(d.from, d.incarnation, d.body);
      for (let i = 0; i < items.length; i++) writer.tryAppend(items[i] as Uint8Array);
      sink += writer.finish().length;
    });
  }

  await bench.run();
  if (sink === 42) console.log("");

  const out: Record<string, CaseStats> = {};
  for (const c of cases) {
    const task = bench.getTask(c.name);
    if (task === undefined) throw new Error(`missing task ${c.name}`);
    out[c.name] = statsOf(task, c.opsPerCall);
  }
  const perType = typeNames.map((name) => {
    const e4 = out[`encode ${name} v4`] as CaseStats;
    const d4 = out[`decode ${name} v4`] as CaseStats;
    const e6 = out[`encode ${name} v6`] as CaseStats;
    const d6 = out[`decode ${name} v6`] as CaseStats;
    return {
      message: name,
      "v4 bytes": sizes.get(`${name} v4`),
      "v4 encode ns": e4.medianNs,
      "v4 decode ns": d4.medianNs,
      "v6 bytes": sizes.get(`${name} v6`),
      "v6 encode ns": e6.medianNs,
      "v6 decode ns": d6.medianNs,
      "v6/v4 enc": round2(e6.medianNs / e4.medianNs),
      "v6/v4 dec": round2(d6.medianNs / d4.medianNs),
    };
  });
  return { cases: out, perType, setups };
}

function round2(x: number): number {
  return Math.round(x * 100) / 100;
}

// ---------------------------------------------------------------------------------------------
// Part 2: bytes per item (computed).

interface ItemSizeRow {
  family: string;
  incarnation: number;
  "ALIVE/DEAD/LEFT B": number;
  "SUSPECT B": number;
  "ALIVE per 1232B GOSSIP": number;
  "ALIVE per 80B PING": number;
}

function itemSizes(): ItemSizeRow[] {
  const rows: ItemSizeRow[] = [];
  for (const family of FAMILIES) {
    for (const incarnation of [1, 1_000_000, WALL_CLOCK_INCARNATION]) {
      const a = alive(family, 1, incarnation);
      const s: MemberUpdate = { state: MemberState.Suspect, incarnation, member: memberAddress(family, 1), suspectedBy: memberAddress(family, 2) };
      const aliveBytes = updateItemBytes(a);
      const suspectBytes = updateItemBytes(s);
      if (encodeUpdateItem(a).length !== aliveBytes || encodeUpdateItem(s).length !== suspectBytes) {
        throw new Error("updateItemBytes disagrees with encodeUpdateItem");
      }
      // The sender states the same incarnation as its items, as in a cluster started together.
      const from = senderAddress(family);
      const gossipRoom = FULL_BYTES - headerBytes(from, incarnation, { type: MessageType.Gossip });
      const pingRoom = THREAD_PROBE_BYTES - headerBytes(from, incarnation, { type: MessageType.Ping, seq: TYPICAL_SEQ });
      rows.push({
        family: `IPv${family}`,
        incarnation,
        "ALIVE/DEAD/LEFT B": aliveBytes,
        "SUSPECT B": suspectBytes,
        "ALIVE per 1232B GOSSIP": Math.floor(gossipRoom / aliveBytes),
        "ALIVE per 80B PING": Math.max(0, Math.floor(pingRoom / aliveBytes)),
      });
    }
  }
  return rows;
}

// ---------------------------------------------------------------------------------------------

interface ThroughputRow {
  case: string;
  items: number;
  datagramBytes: number;
  medianNsPerDatagram: number;
  updatesPerSec: number;
  /** Updates/s at the p75 and p99 datagram times (slower samples). */
  updatesPerSecAtP75: number;
  updatesPerSecAtP99: number;
}

function rateOf(items: number, ns: number): number {
  return Math.round((items * 1e9) / ns);
}

function throughputRows(cases: Record<string, CaseStats>, setups: ThroughputSetup[]): ThroughputRow[] {
  const rows: ThroughputRow[] = [];
  for (const s of setups) {
    for (const part of ["encode+decode", "encodeDatagram", "decodeDatagram", "writer (pre-encoded items)"]) {
      const c = cases[`full ${s.label} ${part}`];
      if (c === undefined) continue;
      rows.push({
        case: `${s.label} ${part}`,
        items: s.items,
        datagramBytes: s.bytes.length,
        medianNsPerDatagram: c.medianNs,
        updatesPerSec: rateOf(s.items, c.medianNs),
        updatesPerSecAtP75: rateOf(s.items, c.p75Ns),
        updatesPerSecAtP99: rateOf(s.items, c.p99Ns),
      });
    }
  }
  return rows;
}

function verdict(updatesPerSec: number): string {
  const ratio = updatesPerSec / TARGET_UPDATES_PER_SEC;
  const pct = Math.abs(Math.round((ratio - 1) * 1000) / 10);
  return ratio >= 1 ? `met (${round2(ratio)}x the target, ${pct}% above)` : `missed (${round2(ratio)}x the target, ${pct}% below)`;
}

async function main(): Promise<void> {
  const json = benchArgs(import.meta.url).includes("--json");
  const sizesTable = itemSizes();
  const { cases, perType, setups } = await timed();
  const throughput = throughputRows(cases, setups);
  const roundTrips = throughput.filter((r) => r.case.endsWith("encode+decode"));
  const target = roundTrips.map((r) => ({
    case: r.case,
    updatesPerSec: r.updatesPerSec,
    updatesPerSecAtP75: r.updatesPerSecAtP75,
    targetUpdatesPerSec: TARGET_UPDATES_PER_SEC,
    ratio: round2(r.updatesPerSec / TARGET_UPDATES_PER_SEC),
    met: r.updatesPerSec >= TARGET_UPDATES_PER_SEC,
    verdict: verdict(r.updatesPerSec),
  }));

  if (json) {
    console.log(
      JSON.stringify({
        bench: "codec",
        node: process.version,
        cpus: availableParallelism(),
        datagramBytes: FULL_BYTES,
        cases,
        itemBytes: sizesTable,
        throughput,
        target,
      }),
    );
    return;
  }
  console.log(`wire codec, node ${process.version}, ${availableParallelism()} cpus; medians, ns per operation`);
  console.log("\nper message type (encodeDatagram / decodeDatagram, wall-clock incarnation, seq 123456):");
  console.table(perType);
  console.log("\nbytes per membership item (tag included) and items per datagram:");
  console.table(sizesTable);
  console.log(`\nfull ${FULL_BYTES}-byte GOSSIP of ALIVE items, updates/s = items x datagrams/s:`);
  console.table(throughput);
  console.log(`target ${TARGET_UPDATES_PER_SEC / 1e6} M updates/s encoded+decoded (median):`);
  for (const t of target) console.log(`  ${t.case}: ${(t.updatesPerSec / 1e6).toFixed(2)} M/s, ${t.verdict}`);
  console.log("\nall cases, ns per operation (spread of the samples):");
  console.table(Object.entries(cases).map(([name, c]) => ({ case: name, ...c })));
}

await main();
