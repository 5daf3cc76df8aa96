/**
 * test/shm.test.ts: tests of src/shm: the SPSC frame ring (empty, single frame, the three write
 * paths, seeded wrap-around property loop, full/oversize refusal and counters, canaries and
 * corruption detection, drain stop/throw semantics, the doorbell protocol in one thread) and,
 * through real worker threads (test/fixtures/shm-echo-worker.ts), the doorbell across threads
 * for a plain ring pair and for the engine ring bundle.
 */

import { test } from "node:test";
import assert from "node:assert/strict";
import { Worker } from "node:worker_threads";
import { Prng } from "../src/core/prng.js";
import {
  Doorbell,
  RingCorruptedError,
  SharedCounters,
  ShmRing,
  attachMainSide,
  createEngineRingBuffers,
  type RingConsumer,
  type RingProducer,
} from "../src/shm/index.js";
import type { EchoWorkerData } from "./fixtures/shm-echo-worker.js";

const HEADER_BYTES = 256;

/** Deterministic content of frame `seq` with `lengthBytes` bytes. */
function patternByte(seq: number, i: number): number {
  return (Math.imul(seq, 131) + Math.imul(i, 29) + (seq >>> 8)) & 0xff;
}

function makeFrame(seq: number, lengthBytes: number): Uint8Array {
  const frame = new Uint8Array(lengthBytes);
  for (let i = 0; i < lengthBytes; i++) frame[i] = patternByte(seq, i);
  return frame;
}

function fillFrame(dst: Uint8Array, offset: number, seq: number, lengthBytes: number): void {
  for (let i = 0; i < lengthBytes; i++) dst[offset + i] = patternByte(seq, i);
}

/** Frame `seq` of a stream: 4-byte little-endian seq then the pattern; length from seq. */
function streamLength(seq: number): number {
  return 4 + ((Math.imul(seq, 7919) >>> 0) % 125);
}

function writeStreamFrame(ring: RingProducer, seq: number): boolean {
  const lengthBytes = streamLength(seq);
  return ring.tryWriteWith(lengthBytes, (dst, offset) => {
    dst[offset] = seq & 0xff;
    dst[offset + 1] = (seq >>> 8) & 0xff;
    dst[offset + 2] = (seq >>> 16) & 0xff;
    dst[offset + 3] = (seq >>> 24) & 0xff;
    fillFrame(dst, offset + 4, seq, lengthBytes - 4);
  });
}

function assertStreamFrame(frame: Uint8Array, expectedSeq: number): void {
  const seq = (frame[0]! | (frame[1]! << 8) | (frame[2]! << 16) | (frame[3]! << 24)) >>> 0;
  if (seq !== expectedSeq) assert.fail(`frame out of order: got seq ${seq}, expected ${expectedSeq}`);
  if (frame.length !== streamLength(seq)) assert.fail(`frame ${seq} has ${frame.length} bytes`);
  for (let i = 4; i < frame.length; i++) {
    if (frame[i] !== patternByte(seq, i - 4)) assert.fail(`frame ${seq} differs at byte ${i}`);
  }
}

function drainAll(ring: RingConsumer): Uint8Array[] {
  const out: Uint8Array[] = [];
  ring.drain((frame) => {
    out.push(frame.slice());
  });
  return out;
}

/** Raw bytes of a ring's shared memory, for deliberate corruption. */
function rawBytes(ring: ShmRing): Uint8Array {
  return new Uint8Array(ring.sharedBuffer);
}

test("an empty ring has nothing to read and zero counters", () => {
  const ring = ShmRing.create(1024, 200);
  assert.equal(ring.hasData(), false);
  assert.equal(ring.read(), null);
  assert.equal(ring.drain(() => assert.fail("visited a frame of an empty ring")), 0);
  assert.equal(ring.publish(), false);
  assert.equal(ring.freeBytes(), 1024);
  ring.check({ deep: true });
  assert.deepEqual(ring.stats(), {
    capacityBytes: 1024,
    maxFrameBytes: 200,
    usedBytes: 0,
    framesWritten: 0,
    bytesWritten: 0,
    framesRead: 0,
    framesDroppedFull: 0,
    framesDroppedOversize: 0,
    doorbellRings: 0,
    consumerSleeps: 0,
  });
});

test("one frame is invisible until published, then read back exactly once", () => {
  const ring = ShmRing.create(1024, 200);
  assert.equal(ring.tryWrite(Uint8Array.of(1, 2, 3)), true);
  assert.equal(ring.hasData(), false, "unpublished frames must not be visible");
  assert.equal(ring.publish(), true);
  assert.equal(ring.hasData(), true);
  assert.equal(ring.stats().usedBytes, 8); // 4-byte prefix + 3 bytes padded to 4
  assert.deepEqual(ring.read(), Uint8Array.of(1, 2, 3));
  assert.equal(ring.read(), null);
  const stats = ring.stats();
  assert.equal(stats.framesWritten, 1);
  assert.equal(stats.bytesWritten, 3);
  assert.equal(stats.framesRead, 1);
  assert.equal(stats.usedBytes, 0);
});

test("tryWrite2 and tryWriteWith frame a head and body; a throwing fill appends nothing", () => {
  const ring = ShmRing.create(1024, 200);
  assert.equal(ring.tryWrite2(Uint8Array.of(9, 8), makeFrame(5, 40)), true);
  assert.equal(ring.tryWrite2(makeFrame(1, 20), makeFrame(2, 0)), true);
  assert.equal(ring.tryWriteWith(7, (dst, offset) => fillFrame(dst, offset, 3, 7)), true);
  assert.throws(() =>
    ring.tryWriteWith(9, () => {
      throw new Error("fill failed");
    }),
  /fill failed/);
  assert.equal(ring.tryWrite(new Uint8Array(0)), true);
  assert.throws(() => ring.tryWriteWith(-1, () => {}), RangeError);
  ring.publish();
  const frames = drainAll(ring);
  assert.deepEqual(frames, [
    Uint8Array.of(9, 8, ...makeFrame(5, 40)),
    makeFrame(1, 20),
    makeFrame(3, 7),
    new Uint8Array(0),
  ]);
  assert.equal(ring.stats().framesWritten, 4);
});

test("property: thousands of wrap-arounds with varying frame sizes keep content and order", () => {
  for (const seed of [1, 2, 3]) {
    const prng = new Prng(seed);
    const capacityBytes = 1024;
    const maxFrameBytes = 200;
    const ring = ShmRing.create(capacityBytes, maxFrameBytes);
    const expected: Uint8Array[] = [];
    let head = 0; // index of the next expected frame in `expected`
    let seq = 0;
    let refused = 0;
    for (let round = 0; round < 4000; round++) {
      const writes = prng.nextInt(12);
      for (let w = 0; w < writes; w++) {
        const lengthBytes = prng.chance(0.1) ? maxFrameBytes : prng.nextInt(maxFrameBytes + 1);
        const frame = makeFrame(seq, lengthBytes);
        const path = prng.nextInt(3);
        const ok =
          path === 0
            ? ring.tryWrite(frame)
            : path === 1
              ? ring.tryWrite2(frame.subarray(0, Math.min(5, lengthBytes)), frame.subarray(Math.min(5, lengthBytes)))
              : ring.tryWriteWith(lengthBytes, (dst, offset) => dst.set(frame, offset));
        if (ok) {
          expected.push(frame);
          seq++;
        } else {
          refused++;
        }
      }
      if (prng.chance(0.8)) ring.publish();
      const maxFrames = prng.chance(0.5) ? Infinity : prng.nextInt(6);
      ring.drain((frame) => {
        const want = expected[head++];
        assert.ok(want !== undefined, "read more frames than were written");
        assert.deepEqual(frame, want);
      }, maxFrames);
      if (round % 97 === 0) ring.check({ deep: true });
    }
    ring.publish();
    ring.drain((frame) => assert.deepEqual(frame, expected[head++]));
    assert.equal(head, expected.length, "every written frame was read");
    const stats = ring.stats();
    assert.equal(stats.framesWritten, expected.length);
    assert.equal(stats.framesRead, expected.length);
    assert.equal(stats.framesDroppedFull, refused);
    assert.equal(stats.usedBytes, 0);
    assert.equal(stats.bytesWritten, expected.reduce((sum, f) => sum + f.length, 0));
    assert.ok(stats.bytesWritten > 200 * capacityBytes, `only ${stats.bytesWritten} bytes: too few wraps`);
    assert.ok(refused > 0, "the loop should also hit a full ring");
  }
});

test("a full ring refuses frames and counts them, then accepts again after a drain", () => {
  const ring = ShmRing.create(256, 124);
  const frame = makeFrame(1, 60); // 64-byte records: exactly 4 fit
  for (let i = 0; i < 4; i++) assert.equal(ring.tryWrite(frame), true, `frame ${i}`);
  assert.equal(ring.hasSpaceFor(60), false);
  assert.equal(ring.tryWrite(frame), false);
  assert.equal(ring.tryWrite(new Uint8Array(0)), false);
  ring.publish();
  assert.equal(ring.stats().framesDroppedFull, 2);
  assert.equal(ring.stats().usedBytes, 256);
  assert.equal(ring.drain(() => {}, 1), 1);
  assert.equal(ring.hasSpaceFor(60), true);
  assert.equal(ring.tryWrite(frame), true);
  assert.equal(ring.tryWrite(frame), false);
  ring.publish();
  assert.equal(ring.drain(() => {}), 4);
  const stats = ring.stats();
  assert.equal(stats.framesDroppedFull, 3);
  assert.equal(stats.framesWritten, 5);
  assert.equal(stats.framesRead, 5);
});

test("an oversize frame is refused and counted separately; bad configs are rejected", () => {
  const ring = ShmRing.create(1024, 100);
  assert.equal(ring.tryWrite(new Uint8Array(101)), false);
  assert.equal(ring.tryWrite2(new Uint8Array(50), new Uint8Array(51)), false);
  assert.equal(ring.tryWriteWith(101, () => assert.fail("fill called for an oversize frame")), false);
  assert.equal(ring.tryWrite(new Uint8Array(100)), true);
  const stats = ring.stats();
  assert.equal(stats.framesDroppedOversize, 3);
  assert.equal(stats.framesDroppedFull, 0);
  assert.throws(() => ShmRing.create(1000, 100), RangeError); // not a power of two
  assert.throws(() => ShmRing.create(32, 4), RangeError); // below the minimum
  assert.throws(() => ShmRing.create(1024, 509), RangeError); // 4 + 512 > 1024 / 2
  assert.doesNotThrow(() => ShmRing.create(1024, 508));
});

test("canaries and index checks detect clobbered memory", () => {
  const capacityBytes = 1024;
  const ring = ShmRing.create(capacityBytes, 200);
  ring.tryWrite(makeFrame(1, 33));
  ring.tryWrite(makeFrame(2, 17));
  ring.publish();
  ring.check({ deep: true });
  const bytes = rawBytes(ring);

  const clobber = (offset: number, pattern: RegExp): void => {
    const saved = bytes[offset]!;
    bytes[offset] = saved ^ 0x41;
    assert.throws(() => ring.check(), (error: unknown) => {
      assert.ok(error instanceof RingCorruptedError);
      assert.match(error.message, pattern);
      return true;
    });
    bytes[offset] = saved;
    ring.check({ deep: true });
  };
  clobber(0, /head canary/);
  clobber(HEADER_BYTES - 1, /canary before the data area at byte 252/);
  clobber(HEADER_BYTES + capacityBytes, /canary after the data area at byte 1280/); // one-byte overrun
  clobber(8, /capacity word/);
  clobber(64, /write index/); // producer line: write index

  // A clobbered length word: the deep check and the consumer both refuse to trust it.
  const savedLength = bytes[HEADER_BYTES + 1]!;
  bytes[HEADER_BYTES + 1] = 0x7f; // length 33 -> 0x7f21
  assert.throws(() => ring.check({ deep: true }), /frame length word at data offset 0/);
  assert.throws(() => ring.drain(() => {}), RingCorruptedError);
  bytes[HEADER_BYTES + 1] = savedLength;
  assert.equal(drainAll(ring).length, 2);

  // attach() validates before handing out a ring.
  bytes[0] = bytes[0]! ^ 1;
  assert.throws(() => ShmRing.attach(ring.sharedBuffer), /magic/);
  bytes[0] = bytes[0]! ^ 1;
  assert.doesNotThrow(() => ShmRing.attach(ring.sharedBuffer));
  assert.throws(() => ShmRing.attach(new Uint8Array(64) as unknown as ShmRing["sharedBuffer"]), TypeError);
});

test("drain: a visitor returning false keeps its frame; one that throws consumes it", () => {
  const ring = ShmRing.create(1024, 100);
  for (let i = 0; i < 5; i++) ring.tryWrite(makeFrame(i, 10 + i));
  ring.publish();
  let seen = 0;
  assert.equal(
    ring.drain(() => {
      seen++;
      return seen < 3;
    }),
    2,
  );
  assert.throws(
    () =>
      ring.drain(() => {
        throw new Error("visitor failed");
      }),
    /visitor failed/,
  );
  const rest = drainAll(ring);
  assert.deepEqual(rest, [makeFrame(3, 13), makeFrame(4, 14)]);
  assert.equal(ring.stats().framesRead, 5);
  const raw: number[] = [];
  ring.tryWrite(makeFrame(9, 6));
  ring.publish();
  ring.drainRaw((data, offset, lengthBytes) => {
    raw.push(...data.subarray(offset, offset + lengthBytes));
  });
  assert.deepEqual(Uint8Array.from(raw), makeFrame(9, 6));
});

test("doorbell in one thread: publish rings only a sleeping consumer, waits time out", async () => {
  const ring = ShmRing.create(1024, 100);
  ring.tryWrite(makeFrame(1, 10));
  ring.publish();
  assert.equal(ring.stats().doorbellRings, 0, "an awake consumer is never notified");
  assert.equal(await ring.waitAsync(1000), true, "data already there resolves at once");
  drainAll(ring);

  const waiting = ring.waitAsync(10_000);
  assert.equal(ring.doorbell.isConsumerSleeping(), true);
  ring.tryWrite(makeFrame(2, 10));
  ring.publish();
  ring.tryWrite(makeFrame(3, 10));
  ring.publish();
  assert.equal(await waiting, true);
  assert.equal(ring.doorbell.isConsumerSleeping(), false);
  const stats = ring.stats();
  assert.equal(stats.doorbellRings, 1, "one wake-up however many publishes land meanwhile");
  assert.equal(stats.consumerSleeps, 1);
  assert.equal(drainAll(ring).length, 2);

  assert.equal(await ring.waitAsync(5), false, "times out on an empty ring");
  assert.equal(ring.doorbell.isConsumerSleeping(), false);

  assert.throws(() => ring.waitSync(0), /main thread/);
  const blocking = ShmRing.attach(ring.sharedBuffer, { allowBlockingMainThread: true, spinIterations: 10 });
  assert.equal(blocking.waitSync(1), false);
  ring.tryWrite(makeFrame(4, 10));
  ring.publish();
  assert.equal(blocking.waitSync(1), true);
});

test("a ring on an external doorbell must be attached with that doorbell", () => {
  const doorbell = Doorbell.create();
  const ring = ShmRing.create(1024, 100, { doorbell });
  assert.throws(() => ShmRing.attach(ring.sharedBuffer), /external doorbell/);
  assert.throws(() => ShmRing.attach(ring.sharedBuffer, { doorbell: Doorbell.create() }), /external doorbell/);
  const attached = ShmRing.attach(ring.sharedBuffer, { doorbell: Doorbell.attach(doorbell.sharedBuffer) });
  assert.equal(attached.doorbell.id, doorbell.id);
  assert.throws(() => ShmRing.attach(ShmRing.create(1024, 100).sharedBuffer, { doorbell }), /built-in/);
});

/** Starts the echo worker; `failed` rejects if it errors or exits before `exited` is awaited. */
function startEchoWorker(data: EchoWorkerData): { worker: Worker; exited: Promise<number>; failed: Promise<never> } {
  const worker = new Worker(new URL("./fixtures/shm-echo-worker.js", import.meta.url), { workerData: data });
  const exited = new Promise<number>((resolve, reject) => {
    worker.once("exit", resolve);
    worker.once("error", reject);
  });
  const failed = exited.then((code) => {
    throw new Error(`echo worker exited early with code ${code}`);
  });
  failed.catch(() => {}); // only meaningful while raced below
  exited.catch(() => {});
  return { worker, exited, failed };
}

test("doorbell across threads: 200k frames echoed by a worker arrive in order", { timeout: 20_000 }, async () => {
  const total = 200_000;
  const batchFrames = 512;
  const windowFrames = 2_048; // 2,048 x at most 132-byte records < 512 KiB: never full
  const toWorker = ShmRing.create(1 << 19, 256);
  const fromWorker = ShmRing.create(1 << 19, 256);
  const { worker, exited, failed } = startEchoWorker({
    mode: "ring",
    input: toWorker.sharedBuffer,
    output: fromWorker.sharedBuffer,
  });
  try {
    let sent = 0;
    let received = 0;
    let publishes = 0;
    let payloadBytes = 0;
    const verify = (frame: Uint8Array): void => {
      assertStreamFrame(frame, received);
      received++;
    };
    while (received < total) {
      let wrote = 0;
      while (sent < total && sent - received < windowFrames && wrote < batchFrames) {
        assert.equal(writeStreamFrame(toWorker, sent), true, "ring full despite the window");
        payloadBytes += streamLength(sent);
        sent++;
        wrote++;
      }
      if (wrote > 0 && toWorker.publish()) publishes++;
      const got = fromWorker.drain(verify);
      if (got === 0 && wrote === 0) {
        const ready = await Promise.race([fromWorker.waitAsync(5_000), failed]);
        assert.equal(ready, true, `no echo for 5 s at ${received}/${total} frames`);
      }
    }
    assert.equal(toWorker.tryWrite(new Uint8Array(0)), true); // stop frame
    toWorker.publish();
    publishes++;
    assert.equal(await exited, 0);

    const out = toWorker.stats();
    const back = fromWorker.stats();
    assert.equal(out.framesWritten, total + 1);
    assert.equal(out.framesRead, total + 1);
    assert.equal(out.bytesWritten, payloadBytes);
    assert.equal(back.framesWritten, total);
    assert.equal(back.framesRead, total);
    assert.equal(back.bytesWritten, payloadBytes);
    for (const stats of [out, back]) {
      assert.equal(stats.framesDroppedFull, 0);
      assert.equal(stats.framesDroppedOversize, 0);
      assert.equal(stats.usedBytes, 0);
    }
    assert.ok(out.doorbellRings <= publishes, "rang more often than it published");
    toWorker.check({ deep: true });
    fromWorker.check({ deep: true });
  } finally {
    await worker.terminate();
  }
});

test("engine ring bundle: a worker sleeps on inbound+commands, main awaits outbound+events", { timeout: 20_000 }, async () => {
  const buffers = createEngineRingBuffers({
    inbound: { capacityBytes: 1 << 18, maxFrameBytes: 256 },
    commands: { capacityBytes: 1 << 16, maxFrameBytes: 256 },
    outbound: { capacityBytes: 1 << 18, maxFrameBytes: 256 },
    events: { capacityBytes: 1 << 16, maxFrameBytes: 256 },
  });
  const main = attachMainSide(buffers);
  const { worker, exited, failed } = startEchoWorker({ mode: "engine", buffers, spinIterations: 0 });
  try {
    const datagrams = 20_000;
    const commandEvery = 50; // one command per 50 datagrams
    let sent = 0;
    let echoed = 0;
    let commandsSent = 0;
    let eventsSeen = 0;
    const verifyDatagram = (frame: Uint8Array): void => {
      assertStreamFrame(frame, echoed);
      echoed++;
    };
    const verifyEvent = (frame: Uint8Array): void => {
      assert.deepEqual(frame, makeFrame(eventsSeen, 1 + (eventsSeen % 200)));
      eventsSeen++;
    };
    while (echoed < datagrams || eventsSeen < commandsSent) {
      // Small batches and a sleeping-only worker (no spin) exercise the shared doorbell often.
      let wrote = 0;
      while (sent < datagrams && sent - echoed < 1_000 && wrote < 64) {
        assert.equal(writeStreamFrame(main.inbound, sent), true);
        sent++;
        wrote++;
        if (sent % commandEvery === 0) {
          assert.equal(main.commands.tryWrite(makeFrame(commandsSent, 1 + (commandsSent % 200))), true);
          commandsSent++;
        }
      }
      main.inbound.publish();
      main.commands.publish();
      const got = main.outbound.drain(verifyDatagram) + main.events.drain(verifyEvent);
      if (got === 0 && wrote === 0) {
        const ready = await Promise.race([main.waitAsync(5_000), failed]);
        assert.equal(ready, true, `no echo for 5 s at ${echoed}/${datagrams}`);
      }
    }
    assert.equal(main.commands.tryWrite(new Uint8Array(0)), true); // stop command
    main.commands.publish();
    assert.equal(await exited, 0);

    const stats = main.stats();
    assert.equal(stats.inbound.framesRead, datagrams);
    assert.equal(stats.outbound.framesWritten, datagrams);
    assert.equal(stats.commands.framesRead, commandsSent + 1);
    assert.equal(stats.events.framesWritten, commandsSent);
    assert.ok(stats.inbound.consumerSleeps > 0, "the worker never slept: doorbell path not exercised");
    assert.equal(stats.inbound.consumerSleeps, stats.commands.consumerSleeps, "one doorbell for both rings");
    main.check({ deep: true });
  } finally {
    await worker.terminate();
  }
});

test("shared counters: adds from several threads never hand out the same value twice (nonces)", { timeout: 20_000 }, async () => {
  const counters = SharedCounters.create(2, [2 ** 40]);
  assert.equal(counters.add(0), 2 ** 40);
  assert.equal(counters.load(0), 2 ** 40 + 1);
  counters.bumpControl();
  assert.equal(counters.controlWord(), 1);
  assert.throws(() => counters.add(2), RangeError);
  const url = new URL("../src/shm/counters.js", import.meta.url).href;
  // Each thread takes 20,000 values and returns them; together they must be 40,000 distinct ones.
  const code = `
    const { workerData, parentPort } = require("node:worker_threads");
    import(workerData.url).then(({ SharedCounters }) => {
      const c = SharedCounters.attach(workerData.buffer);
      const taken = new Float64Array(20000);
      for (let i = 0; i < taken.length; i++) taken[i] = c.add(0);
      parentPort.postMessage(taken);
    });`;
  const takes = await Promise.all(
    [0, 1].map(
      () =>
        new Promise<Float64Array>((resolve, reject) => {
          const w = new Worker(code, { eval: true, workerData: { url, buffer: counters.sharedBuffer } });
          w.once("message", (m: Float64Array) => {
            resolve(m);
            void w.terminate();
          });
          w.once("error", reject);
        }),
    ),
  );
  const all = new Set<number>();
  for (const t of takes) for (const v of t) all.add(v);
  assert.equal(all.size, 40_000);
  assert.equal(counters.load(0), 2 ** 40 + 1 + 40_000);
});
