/**
 * bench/timers.bench.ts: micro-benchmark of TimerQueue (src/core/timer-queue.ts), the binary
 * min-heap every host of the core uses, with 100, 10k and 100k pending timers.
 *
 * One operation is the hold model of a timer loop: popDue(the earliest deadline) takes the due
 * timer, and its handler pushes the next one at that deadline + a delay, so the queue keeps its
 * size. Two delay mixes:
 *   - "lan mix": the core's timers under the lan preset, with 0..99 ms of jitter: gossip 200,
 *     relay timeout 400, probe timeout 500, probe and request 1000, probe deadline 2000,
 *     suspicion 12000, reap 300000 (ms); pushes land anywhere in the heap.
 *   - "constant 1000 ms": every push is the latest deadline (a periodic timer), the heap's best
 *     case: no sift-up, a full sift-down per pop.
 * The queue is filled with deadlines drawn from the mix, then run for 2 x size operations
 * before timing so that it is in its steady state. Each tinybench call runs 1000 operations;
 * ns per operation (push + popDue) is the call's time / 1000; medians with p75/p99/min/max.
 *
 *   node dist/bench/timers.bench.js [--json]      about 6 s
 */

import { Bench, type Task } from "tinybench";
import { type CaseStats, round1, statsOf, benchArgs } from "./lib.js";
import { availableParallelism } from "node:os";
import { Prng } from "../src/core/prng.js";
import type { Timer } from "../src/core/runtime.js";
import { TimerQueue, type TimerEntry } from "../src/core/timer-queue.js";

const SIZES = [100, 10_000, 100_000] as const;
const OPS_PER_CALL = 1000;
const DELAY_TABLE_BITS = 16;
const LAN_DELAYS_MS = [200, 400, 500, 1000, 1000, 2000, 12_000, 300_000] as const;

type Mix = "lan mix" | "constant 1000 ms";
const MIXES: readonly Mix[] = ["lan mix", "constant 1000 ms"];

function delayTable(mix: Mix, seed: number): Int32Array {
  const rng = new Prng(seed);
  const table = new Int32Array(1 << DELAY_TABLE_BITS);
  for (let i = 0; i < table.length; i++) {
    table[i] = mix === "constant 1000 ms" ? 1000 : (LAN_DELAYS_MS[rng.nextInt(LAN_DELAYS_MS.length)] as number) + rng.nextInt(100);
  }
  return table;
}

const TIMER_VALUES: readonly Timer[] = [
  { kind: "gossip" },
  { kind: "probe", epoch: 0 },
  { kind: "probeTimeout", seq: 1 },
  { kind: "relayTimeout", seq: 2 },
  { kind: "suspicion", key: "10.0.0.1:7946", token: 3 },
  { kind: "reap", key: "10.0.0.2:7946", token: 4 },
  { kind: "request", seq: 5 },
  { kind: "reconnect" },
];




let sink = 0;

/** A queue of `size` timers in its steady state, and the hold operation on it. */
function holdCase(mix: Mix, size: number): () => void {
  const delays = delayTable(mix, 0x7173 + size);
  const mask = delays.length - 1;
  const q = new TimerQueue<Timer>();
  const rng = new Prng(size);
  const spanMs = mix === "constant 1000 ms" ? 1000 : 300_100;
  for (let i = 0; i < size; i++) q.push(rng.nextInt(spanMs), TIMER_VALUES[i % TIMER_VALUES.length] as Timer);
  let j = 0;
  const hold = (n: number): void => {
    for (let i = 0; i < n; i++) {
      const e = q.popDue(q.peekAtMs()) as TimerEntry<Timer> | undefined;
      if (e === undefined) throw new Error("popDue found nothing due at the earliest deadline");
      q.push(e.atMs + (delays[j] as number), e.value);
      j = (j + 1) & mask;
    }
  };
  hold(2 * size);
  if (q.size !== size) throw new Error(`queue holds ${q.size}, expected ${size}`);
  return () => {
    hold(OPS_PER_CALL);
    sink += q.size;
  };
}

async function main(): Promise<void> {
  const json = benchArgs(import.meta.url).includes("--json");
  const bench = new Bench({ time: 500, warmupTime: 150, throws: true });
  const names: { name: string; mix: Mix; size: number }[] = [];
  for (const mix of MIXES) {
    for (const size of SIZES) {
      const name = `${mix} pending=${size}`;
      bench.add(name, holdCase(mix, size), { async: false });
      names.push({ name, mix, size });
    }
  }
  await bench.run();
  if (sink === 42) console.log("");

  const cases: Record<string, CaseStats & { opsPerSec: number; vsPending100: number }> = {};
  for (const { name, mix } of names) {
    const st = statsOf(bench.getTask(name) as Task, OPS_PER_CALL);
    const base = statsOf(bench.getTask(`${mix} pending=${SIZES[0]}`) as Task, OPS_PER_CALL);
    cases[name] = { ...st, opsPerSec: Math.round(1e9 / st.medianNs), vsPending100: Math.round((st.medianNs / base.medianNs) * 100) / 100 };
  }

  if (json) {
    console.log(JSON.stringify({ bench: "timers", node: process.version, cpus: availableParallelism(), opsPerCall: OPS_PER_CALL, cases }));
    return;
  }
  console.log(`TimerQueue hold model (popDue + push), node ${process.version}, ${availableParallelism()} cpus`);
  console.log(`ns per operation (batches of ${OPS_PER_CALL}), opsPerSec from the median, vsPending100 = same-run ratio:`);
  console.table(Object.entries(cases).map(([name, c]) => ({ case: name, ...c })));
}

await main();
