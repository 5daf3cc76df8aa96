/**
 * bench/ring.bench.ts: micro-benchmark of the src/shm frame ring, in records per second.
 * Single thread (tinybench): write a batch of 256 frames, publish once, drain them all; for
 * 64- and 512-byte frames, with the copying path (tryWrite + drain, one view per frame) and the
 * zero-copy path (tryWriteWith + drainRaw). Two threads (wall time): the main thread produces N
 * frames in batches, a worker (this same file, started as a Worker) consumes them with
 * drainRaw + waitSync; the clock stops when the producer sees the ring empty; median of 5 runs.
 * `node dist/bench/ring.bench.js [--json]`; about 10-15 s.
 */

import { Bench } from "tinybench";
import { Worker, isMainThread, parentPort, workerData } from "node:worker_threads";
import { availableParallelism } from "node:os";
import { ShmRing } from "../src/shm/index.js";
import { benchArgs } from "./lib.js";

const BATCH_FRAMES = 256;
const FRAME_SIZES_BYTES = [64, 512] as const;
const CAPACITY_BYTES = 1 << 20;
const MAX_FRAME_BYTES = 1024;
const TWO_THREAD_RUNS = 5;
const TWO_THREAD_BYTES_PER_RUN = 128 << 20; // 2M 64-byte frames, 256k 512-byte frames

interface ConsumerData {
  readonly role: "consumer";
  readonly ring: ShmRing["sharedBuffer"];
}

interface ConsumerReport {
  readonly frames: number;
  readonly checksum: number;
  readonly sleeps: number;
}

/** Worker side of the two-thread run: drain until the zero-length stop frame, then report. */
function runConsumer(data: ConsumerData): void {
  const ring = ShmRing.attach(data.ring);
  let frames = 0;
  let checksum = 0;
  let running = true;
  const visit = (bytes: Uint8Array, offset: number, lengthBytes: number): void => {
    if (lengthBytes === 0) {
      running = false;
      return;
    }
    frames++;
    checksum = (checksum + bytes[offset]! + bytes[offset + lengthBytes - 1]!) | 0;
  };
  parentPort!.postMessage("ready");
  while (running) {
    if (ring.drainRaw(visit) === 0) ring.waitSync(1_000);
  }
  const report: ConsumerReport = { frames, checksum, sleeps: ring.stats().consumerSleeps };
  parentPort!.postMessage(report);
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

function frameOf(sizeBytes: number): Uint8Array {
  const frame = new Uint8Array(sizeBytes);
  for (let i = 0; i < sizeBytes; i++) frame[i] = (i * 31 + 7) & 0xff;
  return frame;
}

async function singleThread(): Promise<{ rows: Record<string, number>; table: unknown }> {
  const bench = new Bench({ time: 1000 });
  let sink = 0;
  for (const sizeBytes of FRAME_SIZES_BYTES) {
    const ring = ShmRing.create(CAPACITY_BYTES, MAX_FRAME_BYTES);
    const frame = frameOf(sizeBytes);
    bench.add(`${sizeBytes}B tryWrite+drain x${BATCH_FRAMES}`, () => {
      for (let i = 0; i < BATCH_FRAMES; i++) if (!ring.tryWrite(frame)) throw new Error("ring full");
      ring.publish();
      ring.drain((view) => {
        sink += view.length;
      });
    });
    const zeroCopy = ShmRing.create(CAPACITY_BYTES, MAX_FRAME_BYTES);
    const fill = (dst: Uint8Array, offset: number): void => {
      dst.set(frame, offset);
    };
    bench.add(`${sizeBytes}B tryWriteWith+drainRaw x${BATCH_FRAMES}`, () => {
      for (let i = 0; i < BATCH_FRAMES; i++) if (!zeroCopy.tryWriteWith(sizeBytes, fill)) throw new Error("ring full");
      zeroCopy.publish();
      zeroCopy.drainRaw((_data, _offset, lengthBytes) => {
        sink += lengthBytes;
      });
    });
  }
  await bench.run();
  if (sink === 42) console.log("");
  const rows: Record<string, number> = {};
  for (const task of bench.tasks) {
    const result = task.result;
    if (!("latency" in result)) throw new Error(`task ${task.name} did not complete: ${result.state}`);
    rows[task.name] = Math.round((BATCH_FRAMES * 1000) / result.latency.p50);
  }
  return { rows, table: bench.table() };
}

/** One two-thread run: wall time in ms for `frames` frames of `sizeBytes`. */
async function twoThreadRun(sizeBytes: number, frames: number): Promise<{ wallMs: number; sleeps: number }> {
  const ring = ShmRing.create(CAPACITY_BYTES, MAX_FRAME_BYTES);
  const data: ConsumerData = { role: "consumer", ring: ring.sharedBuffer };
  const worker = new Worker(new URL(import.meta.url), { workerData: data });
  try {
    const messages: unknown[] = [];
    let wake: (() => void) | null = null;
    worker.on("message", (message: unknown) => {
      messages.push(message);
      wake?.();
    });
    const failed = new Promise<never>((_, reject) => {
      worker.once("error", reject);
      worker.once("exit", (code) => reject(new Error(`consumer exited with code ${code}`)));
    });
    failed.catch(() => {});
    const nextMessage = async (): Promise<unknown> => {
      while (messages.length === 0) {
        await Promise.race([new Promise<void>((resolve) => (wake = resolve)), failed]);
      }
      return messages.shift();
    };
    if ((await nextMessage()) !== "ready") throw new Error("consumer did not start");

    const frame = frameOf(sizeBytes);
    const startMs = performance.now();
    let sent = 0;
    while (sent < frames) {
      const end = Math.min(frames, sent + BATCH_FRAMES);
      while (sent < end && ring.tryWrite(frame)) sent++;
      ring.publish();
      while (!ring.hasSpaceFor(sizeBytes)) {
        // full: spin until the consumer releases space (bench only; the engine never spins)
      }
    }
    while (ring.freeBytes() !== CAPACITY_BYTES) {
      // wait for the consumer to release the last frame
    }
    const wallMs = performance.now() - startMs;
    if (!ring.tryWrite(new Uint8Array(0))) throw new Error("stop frame refused");
    ring.publish();
    const report = (await nextMessage()) as ConsumerReport;
    const expectedChecksum = Math.imul(frames, frame[0]! + frame[sizeBytes - 1]!) | 0;
    if (report.frames !== frames || report.checksum !== expectedChecksum) {
      throw new Error(`consumer saw ${report.frames}/${frames} frames, checksum ${report.checksum}`);
    }
    const stats = ring.stats();
    if (stats.framesDroppedOversize !== 0 || stats.framesRead !== frames + 1) {
      throw new Error(`bad counters ${JSON.stringify(stats)}`);
    }
    return { wallMs, sleeps: report.sleeps };
  } finally {
    await worker.terminate();
  }
}

async function twoThread(): Promise<Record<string, { recordsPerSec: number; medianWallMs: number; frames: number; consumerSleeps: number }>> {
  const out: Record<string, { recordsPerSec: number; medianWallMs: number; frames: number; consumerSleeps: number }> = {};
  for (const sizeBytes of FRAME_SIZES_BYTES) {
    const frames = Math.floor(TWO_THREAD_BYTES_PER_RUN / sizeBytes);
    await twoThreadRun(sizeBytes, frames >> 3); // warm-up
    const wallsMs: number[] = [];
    let sleeps = 0;
    for (let run = 0; run < TWO_THREAD_RUNS; run++) {
      const result = await twoThreadRun(sizeBytes, frames);
      wallsMs.push(result.wallMs);
      sleeps += result.sleeps;
    }
    const medianWallMs = median(wallsMs);
    out[`${sizeBytes}B main->worker x${frames}`] = {
      recordsPerSec: Math.round((frames * 1000) / medianWallMs),
      medianWallMs: Math.round(medianWallMs * 10) / 10,
      frames,
      consumerSleeps: Math.round(sleeps / TWO_THREAD_RUNS),
    };
  }
  return out;
}

async function main(): Promise<void> {
  const json = benchArgs(import.meta.url).includes("--json");
  const single = await singleThread();
  const dual = await twoThread();
  if (json) {
    console.log(
      JSON.stringify({
        bench: "shm-ring",
        node: process.version,
        cpus: availableParallelism(),
        batchFrames: BATCH_FRAMES,
        singleThreadRecordsPerSec: single.rows,
        twoThread: dual,
      }),
    );
    return;
  }
  console.log(`shm ring, node ${process.version}, ${availableParallelism()} cpus, batches of ${BATCH_FRAMES}`);
  console.table(single.table);
  console.log("single thread, median records/s:");
  console.table(Object.entries(single.rows).map(([task, recordsPerSec]) => ({ task, recordsPerSec })));
  console.log(`two threads (main produces, worker consumes), median of ${TWO_THREAD_RUNS} runs:`);
  console.table(Object.entries(dual).map(([task, row]) => ({ task, ...row })));
}

if (isMainThread) {
  await main();
} else {
  runConsumer(workerData as ConsumerData);
}
