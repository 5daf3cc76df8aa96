/**
 * bench/repair.bench.ts: micro-benchmark of broadcast-repair rounds (BroadcastRepair.tick,
 * src/core/repair.ts) over origins whose seqs have gaps, the load that once stalled the core
 * for 45 ms every 400 ms (bench/RESULTS.md, busy main thread).
 *
 * The setup mirrors the engine benchmark's load generator: `--origins` (64) members number
 * their broadcasts from one shared counter, 4 per datagram, so each origin sees 4 seqs in
 * every 4 × origins and its dedupe window (4,096, the default) is mostly gaps. A fresh node's
 * repair state is built before each sample (not timed); the sample is its first two rounds,
 * each of which reads every origin's window (the first notes what is missing, the second asks
 * for it).
 *
 * The round's decisions (the requests it sends) are reported too: both ways must agree.
 *
 * Two ways of reading the windows, in the same run:
 *  - `span reads`: DedupeWindows' own SightingLog (32 seqs per step), what the core uses;
 *  - `seq by seq`: the same questions answered through `seen`, one seq at a time, as repair
 *    read them before (one string key and map lookup per seq).
 *
 *   node dist/bench/repair.bench.js [--origins 64] [--json]      about 15 s (the setup of each sample is most of it)
 */

import { Bench, type Task } from "tinybench";
import { availableParallelism } from "node:os";
import { makeAddress, type Address } from "../src/core/address.js";
import { makeConfig } from "../src/core/config.js";
import { DedupeWindows, type SightingLog } from "../src/core/dedupe.js";
import { BroadcastRepair, emptyRepairStats } from "../src/core/repair.js";
import { encodeBroadcastItem } from "../src/core/wire/codec.js";
import { benchArgs, statsOf, unknownArgument } from "./lib.js";

const BROADCASTS_PER_DATAGRAM = 4;
const PAYLOAD = new Uint8Array(64).fill(7);

/** `log`'s questions answered through `seen`, one seq at a time. */
function seqBySeq(log: DedupeWindows): SightingLog {
  const seen = (k: string, e: number, s: number): boolean => log.seen(k, e, s);
  return {
    seen,
    countUnseen: (k, e, from, to) => {
      let n = 0;
      for (let s = from; s <= to; s++) if (!seen(k, e, s)) n++;
      return n;
    },
    firstUnseen: (k, e, from, to) => {
      let s = from;
      while (s <= to && seen(k, e, s)) s++;
      return s;
    },
    lastUnseen: (k, e, from, to) => {
      let s = to;
      while (s >= from && seen(k, e, s)) s--;
      return s;
    },
  };
}

interface Round {
  repair: BroadcastRepair;
}

/** A node that delivered `origins` × 64 datagrams of broadcasts numbered from one counter. */
function buildRound(origins: readonly Address[], read: "span reads" | "seq by seq"): Round {
  const config = makeConfig("lan");
  const windows = new DedupeWindows(config.broadcastDedupeWindow, config.maxBroadcastOrigins);
  const self = makeAddress(new Uint8Array([10, 0, 0, 1]), 7946);
  const repair = new BroadcastRepair(config, self, read === "span reads" ? windows : seqBySeq(windows), config.broadcastDedupeWindow, emptyRepairStats());
  repair.begin(0);
  let seq = 0;
  for (let d = 0; d < origins.length * 64; d++) {
    const origin = origins[d % origins.length] as Address;
    for (let k = 0; k < BROADCASTS_PER_DATAGRAM; k++) {
      const b = { origin, epoch: 2, seq: seq++, payload: PAYLOAD };
      windows.sight(origin.key, b.epoch, b.seq);
      repair.onDelivered(1_000, b, encodeBroadcastItem(b), origin);
    }
  }
  return { repair };
}

async function main(): Promise<void> {
  const args = benchArgs(import.meta.url);
  let originCount = 64;
  let json = false;
  for (let i = 0; i < args.length; i++) {
    const a = args[i] as string;
    if (a === "--origins") originCount = Number(args[++i]);
    else if (a === "--json") json = true;
    else unknownArgument(a);
  }
  const origins = Array.from({ length: originCount }, (_, i) => makeAddress(new Uint8Array([10, 1, i >> 8, i & 0xff]), 7946));
  const bench = new Bench({ time: 500, warmupTime: 100, throws: true });
  const asks: Record<string, number> = {};
  for (const read of ["span reads", "seq by seq"] as const) {
    let round: Round | null = null;
    bench.add(
      read,
      () => {
        const repair = (round as Round).repair;
        repair.tick(1_100, () => true);
        asks[read] = repair.tick(1_500, () => true).asks.length;
      },
      { beforeEach: () => void (round = buildRound(origins, read)) },
    );
  }
  await bench.run();
  // Both read the same windows, so their rounds decide alike: the requests a round sends.
  const rows = (["span reads", "seq by seq"] as const).map((read) => ({ case: read, ...statsOf(bench.getTask(read) as Task, 1), origins: originCount, requestsPerRound: asks[read] }));
  const span = rows[0] as (typeof rows)[number];
  const perSeq = rows[1] as (typeof rows)[number];
  const ratio = Math.round((perSeq.medianNs / span.medianNs) * 10) / 10;
  if (json) {
    console.log(JSON.stringify({ bench: "repair", node: process.version, cpus: availableParallelism(), rows, seqBySeqOverSpanReads: ratio }, null, 2));
    return;
  }
  console.log(`broadcast repair, two rounds over ${originCount} origins with gaps, node ${process.version}; medians`);
  console.table(rows.map((r) => ({ case: r.case, "median µs": Math.round(r.medianNs / 100) / 10, "p99 µs": Math.round(r.p99Ns / 100) / 10, samples: r.samples, "requests per round": r.requestsPerRound })));
  console.log(`seq by seq / span reads: ${ratio}× (same run)`);
}

await main();
