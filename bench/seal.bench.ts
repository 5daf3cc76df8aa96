/**
 * bench/seal.bench.ts: micro-benchmark of the sealed envelope (src/seal/envelope.ts).
 *
 * For full 1232-byte datagrams (the default maxPacketBytes, envelope included) and 80-byte
 * ones (a thread-preset ping or ack, envelope included), and each AES-GCM key size (16, 24,
 * 32 bytes), with a cluster label: ns per seal (Envelope.wrap), per open (Envelope.unwrap,
 * authentication and the replay window included) and per seal + open, and the datagrams per
 * second one thread manages at that median. Each open takes a datagram sealed beforehand with
 * a fresh nonce (a replay would be dropped), so opening measures the accepting path.
 *
 * Each tinybench call runs a fixed batch; the per-operation time is the call's time divided by
 * the batch; medians with p75/p99 of the samples. The machine may be noisy: compare ratios.
 *
 *   node dist/bench/seal.bench.js [--json]      about 10 s
 */

import { availableParallelism } from "node:os";
import { Bench } from "tinybench";
import { type CaseStats, round1, statsOf, benchArgs } from "./lib.js";
import { SEALED_OVERHEAD_BYTES } from "../src/core/wire/messages.js";
import { Envelope } from "../src/seal/envelope.js";
import { Keyring } from "../src/seal/keyring.js";

const SIZES = [1232, 80] as const;
const KEY_SIZES = [16, 24, 32] as const;
const BATCH = 64;
const BENCH_OPTIONS = { time: 400, warmupTime: 100, throws: true } as const;

/** An unsealed datagram that seals to `wireBytes`: a TamTam header and arbitrary bytes. */
function plainDatagram(wireBytes: number): Uint8Array {
  const d = new Uint8Array(wireBytes - SEALED_OVERHEAD_BYTES);
  for (let i = 0; i < d.length; i++) d[i] = (i * 31 + 7) & 0xff;
  d.set([0x54, 0x6d, 1, 0, 0x07], 0);
  return d;
}

function envelopeOf(key: Uint8Array): Envelope {
  return new Envelope({ keyring: new Keyring([key]), label: "bench", acceptPlaintext: false, sendPlaintext: false });
}

interface Row {
  case: string;
  wireBytes: number;
  keyBytes: number;
  op: "seal" | "open" | "seal+open";
  medianNs: number;
  p75Ns: number;
  p99Ns: number;
  datagramsPerSecPerThread: number;
}

async function main(): Promise<void> {
  const json = benchArgs(import.meta.url).includes("--json");
  const bench = new Bench(BENCH_OPTIONS);
  const meta = new Map<string, Omit<Row, keyof CaseStats | "datagramsPerSecPerThread" | "p75Ns" | "p99Ns" | "medianNs">>();
  for (const wireBytes of SIZES) {
    for (const keyBytes of KEY_SIZES) {
      const key = new Uint8Array(keyBytes).fill(0x5a);
      const plain = plainDatagram(wireBytes);
      const sender = envelopeOf(key);
      let receiver = envelopeOf(key);
      let pool: Uint8Array[] = [];
      let next = 0;
      const refill = (): void => {
        // A fresh receiver per pool keeps the replay table at one sender, as in a cluster.
        receiver = envelopeOf(key);
        pool = Array.from({ length: 4096 }, () => sender.wrap(plain));
        next = 0;
      };
      refill();
      const name = (op: Row["op"]): string => `${wireBytes} B, AES-${keyBytes * 8}-GCM, ${op}`;
      bench.add(name("seal"), () => {
        for (let i = 0; i < BATCH; i++) sender.wrap(plain);
      });
      bench.add(
        name("open"),
        () => {
          for (let i = 0; i < BATCH; i++) {
            if (receiver.unwrap(pool[next++] as Uint8Array, "10.0.0.1", 7946) === null) throw new Error("did not open");
          }
        },
        {
          // Sealing the next pool stays outside the timed calls.
          beforeEach: () => {
            if (next + BATCH > pool.length) refill();
          },
        },
      );
      const rt = envelopeOf(key);
      const rtReceiver = envelopeOf(key);
      bench.add(name("seal+open"), () => {
        for (let i = 0; i < BATCH; i++) {
          if (rtReceiver.unwrap(rt.wrap(plain), "10.0.0.2", 7946) === null) throw new Error("did not open");
        }
      });
      for (const op of ["seal", "open", "seal+open"] as const) meta.set(name(op), { case: name(op), wireBytes, keyBytes, op });
    }
  }
  await bench.run();
  const rows: Row[] = bench.tasks.map((task) => {
    const s = statsOf(task, BATCH);
    const m = meta.get(task.name) as Row;
    return { ...m, medianNs: s.medianNs, p75Ns: s.p75Ns, p99Ns: s.p99Ns, datagramsPerSecPerThread: Math.round(1e9 / s.medianNs) };
  });
  if (json) {
    console.log(JSON.stringify({ bench: "seal", node: process.version, cpus: availableParallelism(), batch: BATCH, rows }));
    return;
  }
  console.log(`sealed envelope, node ${process.version}, ${availableParallelism()} cpus; medians, ns per datagram`);
  console.table(rows.map((r) => ({ case: r.case, "median ns": round1(r.medianNs), "p99 ns": round1(r.p99Ns), "datagrams/s/thread": r.datagramsPerSecPerThread })));
}

await main();
