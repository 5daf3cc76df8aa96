/**
 * bench/piggyback.bench.ts: micro-benchmark of piggyback dissemination and of the receive hot
 * path of the core.
 *
 *  1. TransmitQueue.fill (src/core/transmit-queue.ts): one writer.begin + fill per tinybench
 *     call, into a 1232-byte GOSSIP (maxPacketBytes) and into an 80-byte PING (the `thread`
 *     preset's probePacketBytes), with 10, 1000 and 10000 pending ALIVE updates at wall-clock
 *     incarnations (13-byte items on IPv4, 25 on IPv6), retransmit limit 16 (lan, 1000
 *     members). Between calls, outside the timing, the queue is topped up to its size with
 *     fresh updates (as many as reached their limit), so every fill sees a steady queue whose
 *     items have mixed send counts. Reports ns per fill (timer overhead subtracted), items per
 *     fill and bytes used.
 *  2. TransmitQueue.enqueue, batches of 256: replacing a queued key (a member changes again),
 *     a new key into a full queue (evicts one), and the node's queueUpdate (encodeUpdateItem +
 *     enqueue), at the same queue sizes.
 *  3. SwimNode.handleDatagram (src/core/node.ts), the steady-state hot path: a started lan node
 *     with 1000 known members and a counting no-op Runtime receives pre-encoded full 1232-byte
 *     GOSSIP datagrams whose ALIVE items it already knows (decode + merge, nothing changes and
 *     nothing is sent), compared with decodeDatagram alone on the same bytes in the same run;
 *     plus a bare PING from a known member answered with an ACK (queue drained first).
 *
 * Medians with p75/p99/min/max of the samples; ratios come from the same run.
 *
 *   node dist/bench/piggyback.bench.js [--json]      about 25 s
 */

import { Bench, type Task } from "tinybench";
import { type CaseStats, type Family, FAMILIES, memberAddress, PORT, round1, statsOf, benchArgs } from "./lib.js";
import { availableParallelism } from "node:os";
import { makeAddress, type Address } from "../src/core/address.js";
import { makeConfig } from "../src/core/config.js";
import { retransmitLimit } from "../src/core/formulas.js";
import { SwimNode } from "../src/core/node.js";
import type { CoreEvent, Runtime, Timer } from "../src/core/runtime.js";
import { TransmitQueue } from "../src/core/transmit-queue.js";
import { DatagramWriter, decodeDatagram, encodeDatagram, encodeUpdateItem, headerBytes, updateItemBytes } from "../src/core/wire/codec.js";
import { MemberState, MessageType, type Body, type MemberUpdate } from "../src/core/wire/messages.js";

const FULL_BYTES = 1232;
const THREAD_PROBE_BYTES = 80;
const WALL_CLOCK_INCARNATION = 1_750_000_000;
const TYPICAL_SEQ = 123_456;
const QUEUE_SIZES = [10, 1000, 10000] as const;
const LAN = makeConfig("lan");
/** Transmissions per update in a 1000-member lan cluster: 4 * ceil(log10(1001)) = 16. */
const LIMIT = retransmitLimit(LAN.retransmitMult, 1000);
const ENQUEUE_BATCH = 256;
const CLUSTER_MEMBERS = 1000;
const GOSSIP_DATAGRAMS = 32;
const HANDLE_BATCH = 4;



/** The local node, outside the member range. */
function selfAddress(family: Family): Address {
  return memberAddress(family, 0xfffff0);
}

function alive(family: Family, i: number): MemberUpdate {
  return { state: MemberState.Alive, incarnation: WALL_CLOCK_INCARNATION, member: memberAddress(family, i) };
}

// ---------------------------------------------------------------------------------------------
// Statistics.



function round2(x: number): number {
  return Math.round(x * 100) / 100;
}


let sink = 0;

// ---------------------------------------------------------------------------------------------
// Part 1: fill.

interface FillCase {
  readonly name: string;
  readonly family: Family;
  readonly budget: string;
  readonly pending: number;
  /** Per measured call (run phase only). */
  calls: number;
  items: number;
  bytes: number;
  minItems: number;
  maxItems: number;
}

function addFill(bench: Bench, family: Family, budgetBytes: number, pending: number): FillCase {
  const budget = budgetBytes === FULL_BYTES ? `${FULL_BYTES}B GOSSIP` : `${budgetBytes}B PING`;
  const body: Body = budgetBytes === FULL_BYTES ? { type: MessageType.Gossip } : { type: MessageType.Ping, seq: TYPICAL_SEQ };
  const from = selfAddress(family);
  const pool = 4 * pending;
  const keys: string[] = [];
  const items: Uint8Array[] = [];
  for (let i = 0; i < pool; i++) {
    const u = alive(family, i);
    keys.push(u.member.key);
    items.push(encodeUpdateItem(u));
  }
  const queue = new TransmitQueue(LAN.maxQueuedUpdates);
  let cursor = 0;
  const topUp = (): void => {
    while (queue.size < pending) {
      queue.enqueue(keys[cursor] as string, items[cursor] as Uint8Array);
      cursor = cursor + 1 === pool ? 0 : cursor + 1;
    }
  };
  topUp();
  const writer = new DatagramWriter(budgetBytes);
  const c: FillCase = {
    name: `fill ${budget} v${family} pending=${pending}`,
    family,
    budget,
    pending,
    calls: 0,
    items: 0,
    bytes: 0,
    minItems: Infinity,
    maxItems: 0,
  };
  let appended = 0;
  let running = false;
  bench.add(
    c.name,
    () => {
      writer.begin(from, WALL_CLOCK_INCARNATION, body);
      appended = queue.fill(writer, LIMIT);
    },
    {
      async: false,
      beforeAll: (mode) => {
        running = mode === "run";
      },
      beforeEach: topUp,
      afterEach: () => {
        if (!running) return;
        c.calls++;
        c.items += appended;
        c.bytes += writer.length;
        if (appended < c.minItems) c.minItems = appended;
        if (appended > c.maxItems) c.maxItems = appended;
      },
    },
  );
  return c;
}

// ---------------------------------------------------------------------------------------------
// Part 2: enqueue.

function addEnqueue(bench: Bench, names: string[], family: Family, pending: number): void {
  // Replace: every key is queued already.
  {
    const keys: string[] = [];
    const items: Uint8Array[] = [];
    for (let i = 0; i < pending; i++) {
      const u = alive(family, i);
      keys.push(u.member.key);
      items.push(encodeUpdateItem(u));
    }
    const queue = new TransmitQueue(LAN.maxQueuedUpdates);
    for (let i = 0; i < pending; i++) queue.enqueue(keys[i] as string, items[i] as Uint8Array);
    let cursor = 0;
    const name = `enqueue replace v${family} pending=${pending}`;
    bench.add(
      name,
      () => {
        for (let i = 0; i < ENQUEUE_BATCH; i++) {
          queue.enqueue(keys[cursor] as string, items[cursor] as Uint8Array);
          cursor = cursor + 1 === pending ? 0 : cursor + 1;
        }
        sink += queue.size;
      },
      { async: false },
    );
    names.push(name);
  }
  // New key into a full queue: cycling over 2 * pending keys, the key enqueued `pending` ago
  // (the oldest, unsent) is evicted, and each key comes back after it left.
  {
    const pool = 2 * pending;
    const keys: string[] = [];
    const items: Uint8Array[] = [];
    for (let i = 0; i < pool; i++) {
      const u = alive(family, i);
      keys.push(u.member.key);
      items.push(encodeUpdateItem(u));
    }
    const queue = new TransmitQueue(pending);
    for (let i = 0; i < pending; i++) queue.enqueue(keys[i] as string, items[i] as Uint8Array);
    let cursor = pending;
    const name = `enqueue new+evict v${family} pending=${pending}`;
    bench.add(
      name,
      () => {
        for (let i = 0; i < ENQUEUE_BATCH; i++) {
          queue.enqueue(keys[cursor] as string, items[cursor] as Uint8Array);
          cursor = cursor + 1 === pool ? 0 : cursor + 1;
        }
        sink += queue.dropped;
      },
      { async: false },
    );
    names.push(name);
  }
  // The node's queueUpdate: encode the member's update, then enqueue (replacing).
  {
    const updates: MemberUpdate[] = [];
    for (let i = 0; i < pending; i++) updates.push(alive(family, i));
    const queue = new TransmitQueue(LAN.maxQueuedUpdates);
    for (const u of updates) queue.enqueue(u.member.key, encodeUpdateItem(u));
    let cursor = 0;
    const name = `encodeUpdateItem+enqueue v${family} pending=${pending}`;
    bench.add(
      name,
      () => {
        for (let i = 0; i < ENQUEUE_BATCH; i++) {
          const u = updates[cursor] as MemberUpdate;
          queue.enqueue(u.member.key, encodeUpdateItem(u));
          cursor = cursor + 1 === pending ? 0 : cursor + 1;
        }
        sink += queue.size;
      },
      { async: false },
    );
    names.push(name);
  }
}

// ---------------------------------------------------------------------------------------------
// Part 3: SwimNode.handleDatagram.

/** A no-op Runtime that counts what the core asks of it. */
class CountingRuntime implements Runtime {
  sends = 0;
  bytesSent = 0;
  timers = 0;
  events = 0;
  send(_to: Address, datagram: Uint8Array): void {
    this.sends++;
    this.bytesSent += datagram.length;
  }
  setTimer(_atMs: number, _timer: Timer): void {
    this.timers++;
  }
  emit(_event: CoreEvent): void {
    this.events++;
  }
  snapshot(): { sends: number; timers: number; events: number } {
    return { sends: this.sends, timers: this.timers, events: this.events };
  }
}

interface HandleSetup {
  readonly family: Family;
  readonly node: SwimNode;
  readonly rt: CountingRuntime;
  readonly gossip: Uint8Array[];
  readonly itemsPerGossip: number;
  readonly ping: Uint8Array;
  readonly before: { sends: number; timers: number; events: number };
  readonly pingsToDrain: number;
  nowMs: number;
}

function handleSetup(family: Family): HandleSetup {
  const config = makeConfig("lan");
  const self = selfAddress(family);
  const node = new SwimNode({ self, config, seed: 12345, incarnation: WALL_CLOCK_INCARNATION, broadcastEpoch: 777 });
  const rt = new CountingRuntime();
  node.start(0, rt);
  // Full GOSSIP datagrams: datagram d comes from member (d * 31) % N and speaks of a window of
  // known members (ALIVE at the incarnation they hold), so the windows cover the cluster.
  const body: Body = { type: MessageType.Gossip };
  const room = FULL_BYTES - headerBytes(memberAddress(family, 0), WALL_CLOCK_INCARNATION, body);
  const itemsPerGossip = Math.floor(room / updateItemBytes(alive(family, 0)));
  const gossip: Uint8Array[] = [];
  for (let d = 0; d < GOSSIP_DATAGRAMS; d++) {
    const updates: MemberUpdate[] = [];
    for (let i = 0; i < itemsPerGossip; i++) updates.push(alive(family, (d * itemsPerGossip + i) % CLUSTER_MEMBERS));
    const from = memberAddress(family, (d * 31) % CLUSTER_MEMBERS);
    const bytes = encodeDatagram({ from, incarnation: WALL_CLOCK_INCARNATION, body, updates, broadcasts: [] }, FULL_BYTES);
    if (bytes.length > FULL_BYTES || FULL_BYTES - bytes.length >= updateItemBytes(alive(family, 0))) {
      throw new Error(`gossip datagram of ${bytes.length} bytes is not full`);
    }
    gossip.push(bytes);
  }
  // Learn the whole cluster (one SYNC-sized pass of ALIVE statements), then the windows.
  let nowMs = 1;
  for (let start = 0; start < CLUSTER_MEMBERS; start += itemsPerGossip) {
    const updates: MemberUpdate[] = [];
    for (let i = start; i < Math.min(CLUSTER_MEMBERS, start + itemsPerGossip); i++) updates.push(alive(family, i));
    const from = memberAddress(family, start);
    node.handleDatagram(nowMs++, encodeDatagram({ from, incarnation: WALL_CLOCK_INCARNATION, body, updates, broadcasts: [] }, FULL_BYTES), rt);
  }
  for (const bytes of gossip) node.handleDatagram(nowMs++, bytes, rt);
  if (node.memberCount !== CLUSTER_MEMBERS + 1) throw new Error(`node knows ${node.memberCount} members, expected ${CLUSTER_MEMBERS + 1}`);
  // Drain the update queue with pings (each ACK carries piggyback) so that the ACK case
  // measures the steady state, with nothing left to disseminate.
  const ping = encodeDatagram(
    { from: memberAddress(family, 1), incarnation: WALL_CLOCK_INCARNATION, body: { type: MessageType.Ping, seq: TYPICAL_SEQ }, updates: [], broadcasts: [] },
    FULL_BYTES,
  );
  let pingsToDrain = 0;
  while (node.queuedUpdates > 0 && pingsToDrain < 100_000) {
    node.handleDatagram(nowMs++, ping, rt);
    pingsToDrain++;
  }
  if (node.queuedUpdates !== 0) throw new Error("update queue did not drain");
  return { family, node, rt, gossip, itemsPerGossip, ping, before: rt.snapshot(), pingsToDrain, nowMs };
}

function addHandle(bench: Bench, names: string[], s: HandleSetup): void {
  let cursor = 0;
  const gossipName = `handleDatagram GOSSIP v${s.family}`;
  bench.add(
    gossipName,
    () => {
      for (let i = 0; i < HANDLE_BATCH; i++) {
        s.node.handleDatagram(s.nowMs++, s.gossip[cursor] as Uint8Array, s.rt);
        cursor = (cursor + 1) % GOSSIP_DATAGRAMS;
      }
    },
    { async: false },
  );
  names.push(gossipName);
  let decodeCursor = 0;
  const decodeName = `decodeDatagram GOSSIP v${s.family}`;
  bench.add(
    decodeName,
    () => {
      for (let i = 0; i < HANDLE_BATCH; i++) {
        sink += decodeDatagram(s.gossip[decodeCursor] as Uint8Array).updates.length;
        decodeCursor = (decodeCursor + 1) % GOSSIP_DATAGRAMS;
      }
    },
    { async: false },
  );
  names.push(decodeName);
  const pingName = `handleDatagram PING->ACK v${s.family}`;
  bench.add(
    pingName,
    () => {
      for (let i = 0; i < HANDLE_BATCH; i++) s.node.handleDatagram(s.nowMs++, s.ping, s.rt);
    },
    { async: false },
  );
  names.push(pingName);
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const json = benchArgs(import.meta.url).includes("--json");

  // Part 1: one fill per call, so a short budget, a precise clock and the timer cost removed.
  const fillBench = new Bench({ time: 100, warmupTime: 50, throws: true, timestampProvider: "hrtimeNow", subtractTimerOverhead: true });
  const fills: FillCase[] = [];
  for (const family of FAMILIES) {
    for (const budgetBytes of [FULL_BYTES, THREAD_PROBE_BYTES]) {
      for (const pending of QUEUE_SIZES) fills.push(addFill(fillBench, family, budgetBytes, pending));
    }
  }
  await fillBench.run();

  // Parts 2 and 3: batched calls.
  const opsBench = new Bench({ time: 300, warmupTime: 100, throws: true });
  const enqueueNames: string[] = [];
  for (const family of FAMILIES) for (const pending of QUEUE_SIZES) addEnqueue(opsBench, enqueueNames, family, pending);
  const handleNames: string[] = [];
  const setups = FAMILIES.map((family) => handleSetup(family));
  for (const s of setups) addHandle(opsBench, handleNames, s);
  await opsBench.run();
  if (sink === 42) console.log("");

  const fillRows = fills.map((c) => {
    const st = statsOf(fillBench.getTask(c.name) as Task, 1);
    return {
      case: c.name,
      ...st,
      itemsPerFill: round1(c.items / c.calls),
      minItems: c.minItems,
      maxItems: c.maxItems,
      bytesUsed: round1(c.bytes / c.calls),
      nsPerItem: round1(st.medianNs / (c.items / c.calls)),
    };
  });
  const enqueueRows = enqueueNames.map((name) => ({ case: name, ...statsOf(opsBench.getTask(name) as Task, ENQUEUE_BATCH) }));
  const handleRows = handleNames.map((name) => ({ case: name, ...statsOf(opsBench.getTask(name) as Task, HANDLE_BATCH) }));
  const handleSummary = setups.map((s) => {
    const handle = handleRows.find((r) => r.case === `handleDatagram GOSSIP v${s.family}`) as CaseStats & { case: string };
    const decode = handleRows.find((r) => r.case === `decodeDatagram GOSSIP v${s.family}`) as CaseStats & { case: string };
    const ack = handleRows.find((r) => r.case === `handleDatagram PING->ACK v${s.family}`) as CaseStats & { case: string };
    const after = s.rt.snapshot();
    return {
      family: `IPv${s.family}`,
      itemsPerGossip: s.itemsPerGossip,
      handleNsPerDatagram: handle.medianNs,
      decodeNsPerDatagram: decode.medianNs,
      handleOverDecode: round2(handle.medianNs / decode.medianNs),
      handleNsPerItem: round1(handle.medianNs / s.itemsPerGossip),
      updatesMergedPerSec: Math.round((s.itemsPerGossip * 1e9) / handle.medianNs),
      pingToAckNs: ack.medianNs,
      // Everything the node did during the timed runs: only the ACKs are expected.
      acksSent: after.sends - s.before.sends,
      eventsDuringRun: after.events - s.before.events,
      timersDuringRun: after.timers - s.before.timers,
      protocolErrors: s.node.stats.protocolErrors,
      queuedUpdatesAfter: s.node.queuedUpdates,
    };
  });
  const fillRatios = FAMILIES.flatMap((family) =>
    QUEUE_SIZES.map((pending) => {
      const full = fillRows.find((r) => r.case === `fill ${FULL_BYTES}B GOSSIP v${family} pending=${pending}`);
      const thread = fillRows.find((r) => r.case === `fill ${THREAD_PROBE_BYTES}B PING v${family} pending=${pending}`);
      const base = fillRows.find((r) => r.case === `fill ${FULL_BYTES}B GOSSIP v${family} pending=10`);
      return {
        family: `IPv${family}`,
        pending,
        "1232B ns": full?.medianNs,
        "80B ns": thread?.medianNs,
        "80B/1232B": full && thread ? round2(thread.medianNs / full.medianNs) : undefined,
        "1232B vs pending=10": full && base ? round2(full.medianNs / base.medianNs) : undefined,
      };
    }),
  );

  if (json) {
    console.log(
      JSON.stringify({
        bench: "piggyback",
        node: process.version,
        cpus: availableParallelism(),
        retransmitLimit: LIMIT,
        fill: Object.fromEntries(fillRows.map(({ case: name, ...rest }) => [name, rest])),
        enqueue: Object.fromEntries(enqueueRows.map(({ case: name, ...rest }) => [name, rest])),
        handleDatagram: Object.fromEntries(handleRows.map(({ case: name, ...rest }) => [name, rest])),
        handleSummary,
      }),
    );
    return;
  }
  console.log(`piggyback and receive path, node ${process.version}, ${availableParallelism()} cpus; medians`);
  console.log(`\nTransmitQueue.fill (writer.begin + fill, one per sample, retransmit limit ${LIMIT}), ns per fill:`);
  console.table(fillRows);
  console.log("fill, same-run ratios:");
  console.table(fillRatios);
  console.log(`\nTransmitQueue.enqueue, ns per enqueue (batches of ${ENQUEUE_BATCH}):`);
  console.table(enqueueRows);
  console.log(`\nSwimNode.handleDatagram, ${CLUSTER_MEMBERS} known members, ns per datagram (batches of ${HANDLE_BATCH}):`);
  console.table(handleRows);
  console.table(handleSummary);
}

await main();
