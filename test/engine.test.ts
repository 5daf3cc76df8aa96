/**
 * test/engine.test.ts: end-to-end tests of src/engine and src/transport over real UDP sockets
 * on 127.0.0.1 and ::1 with ephemeral ports, run in both modes (workers 0 and 1): join and
 * mutual liveness, a broadcast delivered exactly once, failure detection (suspect, then dead)
 * after an abrupt stop, graceful leave (also with the leaver stopped as soon as leave()
 * resolves: the announcement is on the wire by then), ping round trips and timeouts, bad
 * datagrams counted without harm, and a full inbound ring dropping and counting datagrams.
 * Waits are driven by engine events (or by stats, for queue drain and counters) and bounded by
 * timeouts; every engine is stopped in a finally. Also: every ring frame of
 * src/engine/protocol.ts round-trips, a member snapshot splits into parts and is cut short
 * (flagged) to the ring's free space, and UdpTransport.flush waits for the sends made before it.
 */

import { test, describe } from "node:test";
import assert from "node:assert/strict";
import dgram from "node:dgram";
import type { Worker } from "node:worker_threads";
import { addr, type Address } from "../src/core/address.js";
import { makeConfig, validateConfig, type SwimConfig } from "../src/core/config.js";
import { type CoreEvent, isRequestOutcome } from "../src/core/runtime.js";
import { RATE_LIMIT_BURST } from "../src/core/cookie.js";
import { decodeDatagram, encodeDatagram } from "../src/core/wire/codec.js";
import { MEMBER_STATE_NAMES, MessageType, type Datagram } from "../src/core/wire/messages.js";
import { createEngine, type Engine, type EngineOptions } from "../src/engine/engine.js";
import {
  MAX_MEMBER_RECORD_BYTES,
  newDatagramInView,
  newDatagramOutView,
  readCommand,
  readDatagramIn,
  readDatagramOpened,
  readDatagramOut,
  readOutput,
  writeCommand,
  writeDatagramIn,
  writeDatagramOpened,
  writeDatagramOut,
  writeEvent,
  writeReply,
  type Command,
  type EngineOutput,
  type Reply,
} from "../src/engine/protocol.js";
import { Envelope } from "../src/seal/envelope.js";
import { Keyring } from "../src/seal/keyring.js";
import { ShmRing } from "../src/shm/index.js";
import { UdpTransport } from "../src/transport/udp.js";

/** Bound for every event-driven wait (ms); the conditions normally hold within a few hundred. */
const WAIT_MS = 5_000;
const TEST_TIMEOUT_MS = 15_000;

/** A fast, valid protocol config: 100 ms probes, 50 ms probe timeout, 100 ms suspicion. */
function fastConfig(): SwimConfig {
  const config = makeConfig("local", {
    probeIntervalMs: 100,
    probeTimeoutMs: 50,
    suspicionMult: 1,
    reapAfterMs: 1_000,
    gossipIntervalMs: 20,
    requestTimeoutMs: 200,
  });
  assert.deepEqual(validateConfig(config), []);
  return config;
}

type StateName = "alive" | "suspect" | "dead" | "left" | "removed";

/** Follows one engine's events: member state history per key, and every event. */
class Watch {
  readonly events: CoreEvent[] = [];
  readonly history = new Map<string, StateName[]>();
  private readonly waiters = new Set<() => void>();

  constructor(engine: Engine) {
    engine.onEvent((event) => {
      this.events.push(event);
      if (event.type === "member") this.record(event.member.address.key, MEMBER_STATE_NAMES[event.member.state]);
      else if (event.type === "memberRemoved") this.record(event.address.key, "removed");
      for (const wake of [...this.waiters]) wake();
    });
  }

  state(key: string): StateName | undefined {
    const h = this.history.get(key);
    return h?.[h.length - 1];
  }

  /** The types of the events seen that answer this engine's own requests: none ever should. */
  outcomesSeen(): string[] {
    return this.events.filter((e) => isRequestOutcome(e)).map((e) => e.type);
  }

  broadcasts(): Extract<CoreEvent, { type: "broadcast" }>[] {
    return this.events.filter((e): e is Extract<CoreEvent, { type: "broadcast" }> => e.type === "broadcast");
  }

  /** Resolves once `check()` holds (tested now and after every event); rejects after `timeoutMs`. */
  until(what: string, check: () => boolean, timeoutMs = WAIT_MS): Promise<void> {
    if (check()) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const wake = (): void => {
        if (!check()) return;
        this.waiters.delete(wake);
        clearTimeout(timer);
        resolve();
      };
      const timer = setTimeout(() => {
        this.waiters.delete(wake);
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
      }, timeoutMs);
      this.waiters.add(wake);
    });
  }

  private record(key: string, state: StateName): void {
    let h = this.history.get(key);
    if (h === undefined) this.history.set(key, (h = []));
    h.push(state);
  }
}

/** Creates `count` started engines (with watches), runs `body`, and stops them all. */
async function withEngines(
  count: number,
  options: EngineOptions,
  body: (engines: Engine[], watches: Watch[]) => Promise<void>,
): Promise<void> {
  const engines: Engine[] = [];
  try {
    for (let i = 0; i < count; i++) engines.push(await createEngine({ bindIp: "127.0.0.1", config: fastConfig(), ...options }));
    const watches = engines.map((e) => new Watch(e));
    await Promise.all(engines.map((e) => e.start()));
    await body(engines, watches);
  } finally {
    await Promise.all(engines.map((e) => e.stop()));
  }
}

/** Every engine but the first joins the first; resolves once every engine sees all alive. */
async function joinAll(engines: Engine[], watches: Watch[]): Promise<void> {
  const [first, ...rest] = engines;
  assert.ok(first !== undefined);
  const outcomes = await Promise.all(rest.map((e) => e.join([first.localAddress])));
  for (const o of outcomes) assert.deepEqual(o.map((r) => [r.seed.key, r.ok]), [[first.localAddress.key, true]]);
  const keys = engines.map((e) => e.localAddress.key);
  await Promise.all(
    watches.map((w, i) => w.until(`engine ${i} to see all ${keys.length} alive`, () => keys.every((k) => w.state(k) === "alive"))),
  );
  // A join's outcome settles join() and reaches no listener.
  for (const w of watches) assert.deepEqual(w.outcomesSeen(), []);
}

/** Polls `engine.stats()` until `check` holds (for counters that raise no event). */
async function statsUntil(
  engine: Engine,
  what: string,
  check: (s: Record<string, number>) => boolean,
  timeoutMs = WAIT_MS,
): Promise<Record<string, number>> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const s = await engine.stats();
    if (check(s)) return s;
    if (performance.now() > deadline) assert.fail(`timed out waiting for ${what}: ${JSON.stringify(s)}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

function stat(s: Record<string, number>, name: string): number {
  const v = s[name];
  assert.equal(typeof v, "number", `stats has ${name}`);
  return v as number;
}

/** An address with nothing listening: an ephemeral port bound, then closed. */
async function closedPort(): Promise<Address> {
  const socket = dgram.createSocket("udp4");
  await new Promise<void>((resolve) => socket.bind(0, "127.0.0.1", resolve));
  const { port } = socket.address();
  await new Promise<void>((resolve) => socket.close(resolve));
  return addr(`127.0.0.1:${port}`);
}

/** Sends `count` datagrams of `sizeBytes` garbage (bad magic) to `to` from a plain socket. */
async function sendGarbage(socket: dgram.Socket, to: Address, count: number, sizeBytes: number): Promise<void> {
  const garbage = new Uint8Array(sizeBytes).fill(0xee);
  const sends: Promise<void>[] = [];
  for (let i = 0; i < count; i++) {
    sends.push(new Promise<void>((resolve) => socket.send(garbage, to.port, "127.0.0.1", () => resolve())));
  }
  await Promise.all(sends);
}

for (const workers of [0, 1, 2]) {
  describe(`engine, workers: ${workers}`, () => {
    for (const bindIp of ["127.0.0.1", "::1"]) {
      test(`two engines on ${bindIp} join and see each other alive`, { timeout: TEST_TIMEOUT_MS }, async () => {
        await withEngines(2, { workers, bindIp }, async (engines, watches) => {
          const [a, b] = engines as [Engine, Engine];
          assert.equal(a.workers, workers);
          assert.equal(a.localAddress.family, bindIp === "::1" ? 6 : 4);
          await joinAll(engines, watches);
          const members = await b.members();
          assert.deepEqual(
            members.map((m) => [m.address.key, MEMBER_STATE_NAMES[m.state], m.isSelf]).sort(),
            [
              [a.localAddress.key, "alive", false],
              [b.localAddress.key, "alive", true],
            ].sort(),
          );
          const s = await a.stats();
          assert.ok(stat(s, "core.datagramsReceived") > 0);
          assert.ok(stat(s, "transport.datagramsSent") > 0);
          assert.equal(stat(s, "transport.sendErrors"), 0);
          assert.equal(stat(s, "drops.datagramsIn"), 0);
          assert.equal(stat(s, "engine.workers"), workers);
          if (workers === 1) assert.ok(stat(s, "ring.inbound.framesRead") > 0);
          // Past the seal/open worker while the protocol worker sleeps, or through it (both ways are
          // tested in "both ways in to the protocol worker" below).
          if (workers === 2) assert.ok(stat(s, "ring.inbound.framesRead") + stat(s, "ring.opened.1.framesRead") > 0);
        });
      });
    }

    test("a broadcast from one engine is delivered exactly once to the other", { timeout: TEST_TIMEOUT_MS }, async () => {
      await withEngines(2, { workers }, async (engines, watches) => {
        const [a, b] = engines as [Engine, Engine];
        const [wa, wb] = watches as [Watch, Watch];
        await joinAll(engines, watches);
        const payload = new TextEncoder().encode(`hello from workers ${workers}`);
        const outcome = await a.broadcast(payload);
        assert.equal(outcome.ok, true);
        await wb.until("the broadcast at b", () => wb.broadcasts().length > 0);
        // Wait until neither side holds a copy to send any more, then count deliveries.
        await statsUntil(a, "a's broadcast queue to drain", (s) => s["core.queuedBroadcasts"] === 0);
        const sb = await statsUntil(b, "b's broadcast queue to drain", (s) => s["core.queuedBroadcasts"] === 0);
        const got = wb.broadcasts();
        assert.equal(got.length, 1);
        assert.deepEqual([...(got[0]?.payload ?? [])], [...payload]);
        assert.equal(got[0]?.origin.key, a.localAddress.key);
        assert.equal(wa.broadcasts().length, 0, "a broadcast is not delivered to its origin");
        assert.equal(stat(sb, "core.broadcastsDelivered"), 1);
        const tooLarge = await a.broadcast(new Uint8Array(fastConfig().maxBroadcastBytes + 1));
        assert.equal(tooLarge.ok, false);
        const empty = await a.broadcast(new Uint8Array(0));
        assert.deepEqual(empty.ok ? null : empty.code, "EMPTY");
      });
    });

    test("a cluster request reaches the other engines as events; their answers come back through commands", { timeout: TEST_TIMEOUT_MS }, async () => {
      await withEngines(3, { workers }, async (engines, watches) => {
        const [a, b, c] = engines as [Engine, Engine, Engine];
        await joinAll(engines, watches);
        // b answers with its port and the request's first byte; c holds the request unanswered.
        b.onEvent((e) => {
          if (e.type === "request") b.answerRequest(e.handle, Uint8Array.of(e.kind, e.payload[0] ?? 0, b.localAddress.port & 0xff));
        });
        const result = await a.request(9, Uint8Array.of(42), 500);
        assert.deepEqual(
          result.answers.map((x) => [x.from.key, [...x.payload]]),
          [[b.localAddress.key, [9, 42, b.localAddress.port & 0xff]]],
        );
        assert.deepEqual(result.missing.map((m) => m.key), [c.localAddress.key]);
        const held = (watches[2] as Watch).events.filter((e) => e.type === "request");
        assert.ok(held.length === 1 && held[0]?.type === "request" && held[0].from.key === a.localAddress.key && held[0].kind === 9);
        // Once c answers too, a request completes with every answer before its timeout.
        c.onEvent((e) => {
          if (e.type === "request") c.answerRequest(e.handle, Uint8Array.of(1));
        });
        const all = await a.request(9, Uint8Array.of(1), 60_000);
        assert.deepEqual(all.answers.map((x) => x.from.key).sort(), [b.localAddress.key, c.localAddress.key].sort());
        assert.deepEqual(all.missing, []);
        // Acks, answers and the end of a request settle request() and reach no listener.
        assert.deepEqual((watches[0] as Watch).outcomesSeen(), []);
        await assert.rejects(a.request(9, new Uint8Array(fastConfig().maxPacketBytes), 500), { name: "ClusterRequestRefusedError", code: "TOO_LARGE" });
        const s = await a.stats();
        assert.equal(stat(s, "core.clusterRequests.requestsComplete"), 1);
        assert.equal(stat(s, "core.clusterRequests.requestsIncomplete"), 1);
      });
    });

    test("an abruptly stopped engine is suspected, then declared dead", { timeout: TEST_TIMEOUT_MS }, async () => {
      await withEngines(3, { workers }, async (engines, watches) => {
        await joinAll(engines, watches);
        const victim = engines[2] as Engine;
        const key = victim.localAddress.key;
        await victim.stop();
        const survivors = watches.slice(0, 2);
        await Promise.all(survivors.map((w, i) => w.until(`survivor ${i} to see ${key} dead`, () => (w.history.get(key) ?? []).includes("dead"))));
        // Whoever declared it dead suspected it first. The other survivor may learn "dead"
        // before any "suspect" reaches it (SWIM allows that), so only one history must show it.
        const histories = survivors.map((w) => w.history.get(key) ?? []);
        const suspectedFirst = histories.filter((h) => h.includes("suspect") && h.indexOf("suspect") < h.indexOf("dead"));
        assert.ok(suspectedFirst.length >= 1, `suspect before dead, got ${histories.map((h) => h.join(" -> ")).join(" | ")}`);
        for (const h of histories) assert.equal(h[0], "alive");
      });
    });

    test("a graceful leave is seen as left", { timeout: TEST_TIMEOUT_MS }, async () => {
      await withEngines(2, { workers }, async (engines, watches) => {
        const [, b] = engines as [Engine, Engine];
        const [wa] = watches as [Watch, Watch];
        await joinAll(engines, watches);
        const started = performance.now();
        await b.leave();
        assert.ok(performance.now() - started < 1_500, "leave resolves within about a second");
        await wa.until("a to see b left", () => wa.state(b.localAddress.key) === "left");
        await b.stop();
      });
    });

    test("leave, then stop at once: every member sees it left, none dead", { timeout: TEST_TIMEOUT_MS }, async () => {
      await withEngines(4, { workers }, async (engines, watches) => {
        const leaver = engines[3] as Engine;
        const key = leaver.localAddress.key;
        const others = watches.slice(0, 3);
        await joinAll(engines, watches);
        // leave() resolves once the announcement is on the wire; stop() closes the socket right
        // after, so the others can only learn of the leave from those datagrams.
        await leaver.leave();
        await leaver.stop();
        await Promise.all(others.map((w, i) => w.until(`engine ${i} to see the leaver left`, () => w.state(key) === "left")));
        for (const w of others) {
          const h = w.history.get(key) ?? [];
          assert.ok(!h.includes("dead") && !h.includes("suspect"), `seen as: ${h.join(" -> ")}`);
        }
      });
    });

    test("ping returns an rtt for a live engine and null for a closed port", { timeout: TEST_TIMEOUT_MS }, async () => {
      await withEngines(2, { workers }, async (engines, watches) => {
        const [a, b] = engines as [Engine, Engine];
        const rttMs = await a.ping(b.localAddress);
        assert.equal(typeof rttMs, "number");
        assert.ok((rttMs as number) >= 0 && (rttMs as number) < 1_000);
        assert.equal(await a.ping(await closedPort()), null);
        assert.deepEqual((watches[0] as Watch).outcomesSeen(), [], "a ping's outcome reaches no listener");
      });
    });

    test(
      workers >= 1 ? "a full inbound ring drops datagrams and counts them" : "bad datagrams are counted and harmless",
      { timeout: TEST_TIMEOUT_MS },
      async () => {
        const rings = workers >= 1 ? { inbound: { capacityBytes: 4_096, maxFrameBytes: 2_044 } } : undefined;
        const raw = dgram.createSocket("udp4");
        await new Promise<void>((resolve) => raw.bind(0, "127.0.0.1", resolve));
        try {
          await withEngines(2, { workers, ...(rings === undefined ? {} : { rings }) }, async (engines) => {
            const [a, b] = engines as [Engine, Engine];
            let sent = 0;
            let s = await a.stats();
            // Bursts of 64 x 1000-byte datagrams: the tiny ring holds ~3 per event-loop turn.
            for (let burst = 0; burst < 20; burst++) {
              await sendGarbage(raw, a.localAddress, 64, 1_000);
              sent += 64;
              s = await a.stats();
              if (workers === 0 || stat(s, "drops.datagramsIn") > 0) break;
            }
            // Every garbage datagram (a sees no other traffic) is either dropped or refused by the core.
            s = await statsUntil(
              a,
              `${sent} datagrams dropped or handled`,
              (x) => (x["drops.datagramsIn"] ?? 0) + (x["core.datagramsReceived"] ?? 0) === sent,
            );
            assert.equal(stat(s, "transport.datagramsReceived"), sent);
            assert.ok(stat(s, "core.protocolErrors") > 0);
            assert.equal(stat(s, "core.protocolErrors.BAD_MAGIC"), stat(s, "core.protocolErrors"));
            if (workers >= 1) {
              assert.ok(stat(s, "drops.datagramsIn") > 0, "drops counted");
              const ring = workers === 1 ? "inbound" : "raw.1"; // with seal/open workers, the first raw ring fills first
              assert.ok(stat(s, `ring.${ring}.framesDroppedFull`) > 0, "ring counts full drops");
            } else {
              assert.equal(stat(s, "drops.datagramsIn"), 0);
            }
            // Still a working member.
            assert.equal(typeof (await b.ping(a.localAddress)), "number");
          });
        } finally {
          await new Promise<void>((resolve) => raw.close(resolve));
        }
      },
    );

    test("JOINs naming an address get a few small cookies back, never the member list, until the cookie comes back", { timeout: TEST_TIMEOUT_MS }, async () => {
      // The raw socket plays the address a forger names: it counts what the agent sends it.
      const raw = dgram.createSocket("udp4");
      await new Promise<void>((resolve) => raw.bind(0, "127.0.0.1", resolve));
      const received: Datagram[] = [];
      raw.on("message", (msg) => received.push(decodeDatagram(new Uint8Array(msg))));
      const victim = addr(`127.0.0.1:${raw.address().port}`);
      const send = (to: Address, d: Datagram): Promise<void> =>
        new Promise((resolve, reject) => raw.send(encodeDatagram(d), to.port, "127.0.0.1", (err) => (err ? reject(err) : resolve())));
      try {
        await withEngines(3, { workers }, async (engines, watches) => {
          await joinAll(engines, watches);
          const [a] = engines as [Engine, Engine, Engine];
          const joins = 20;
          // The joins above took their cookie round trips: count from here on.
          const base = await a.stats();
          const delta = (x: Record<string, number>, name: string): number => (x[name] ?? 0) - (base[name] ?? 0);
          for (let i = 0; i < joins; i++) {
            await send(a.localAddress, { from: victim, incarnation: 0, body: { type: MessageType.Join, seq: 1000 + i }, updates: [], broadcasts: [] });
          }
          const s = await statsUntil(a, "every JOIN handled", (x) => delta(x, "core.requestsRefused") === joins);
          assert.equal(delta(s, "core.cookiesSent"), RATE_LIMIT_BURST);
          assert.equal(delta(s, "core.requestsRefused.NO_COOKIE"), RATE_LIMIT_BURST);
          assert.equal(delta(s, "core.requestsRefused.RATE_LIMITED"), joins - RATE_LIMIT_BURST);
          const deadline = Date.now() + 2_000;
          while (received.length < RATE_LIMIT_BURST && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
          assert.equal(received.length, RATE_LIMIT_BURST);
          assert.ok(received.every((d) => d.body.type === MessageType.Cookie && d.updates.length === 0));
          assert.ok(!(await a.members()).some((m) => m.address.key === victim.key), "the named address is not learned");
          // The address that does receive can echo the cookie: then it gets the member list.
          const cookieBody = received[0]?.body;
          assert.ok(cookieBody !== undefined && cookieBody.type === MessageType.Cookie);
          received.length = 0;
          await new Promise((r) => setTimeout(r, 1_100)); // one reply more in its bucket
          await send(a.localAddress, { from: victim, incarnation: 0, body: { type: MessageType.Join, seq: 5 }, updates: [], broadcasts: [], cookie: cookieBody.cookie });
          // (It is a member now, so pings and gossip may follow the list.)
          const syncs = (): Datagram[] => received.filter((d) => d.body.type === MessageType.Sync);
          while (syncs().length === 0 && Date.now() < deadline + 3_000) await new Promise((r) => setTimeout(r, 10));
          assert.ok(syncs().length > 0, "the member list");
          const listed = new Set(syncs().flatMap((d) => d.updates.map((u) => u.member.key)));
          for (const e of engines) assert.ok(listed.has(e.localAddress.key), `${e.localAddress.key} listed`);
        });
      } finally {
        await new Promise<void>((resolve) => raw.close(resolve));
      }
    });
  });
}

describe("sealed engines with a seal/open worker: both ways in to the protocol worker", () => {
  const key = new Uint8Array(32).fill(7);
  const sealedOptions = (directPerTurn: number | undefined): EngineOptions => ({
    workers: 2,
    config: { ...fastConfig(), sealed: true },
    envelope: new Envelope({ keyring: new Keyring([key]), label: null, acceptPlaintext: false, sendPlaintext: false }),
    ...(directPerTurn === undefined ? {} : { directPerTurn }),
  });
  // 0: every datagram is opened by the seal/open worker; the default: while the protocol worker
  // sleeps, the first datagrams of a turn go straight to it, and it opens them itself.
  for (const directPerTurn of [0, undefined]) {
    test(`directPerTurn ${directPerTurn ?? "default"}: sealed engines join, ping and broadcast`, { timeout: TEST_TIMEOUT_MS }, async () => {
      const engines: Engine[] = [];
      try {
        for (let i = 0; i < 3; i++) engines.push(await createEngine({ bindIp: "127.0.0.1", ...sealedOptions(directPerTurn) }));
        const watches = engines.map((e) => new Watch(e));
        await Promise.all(engines.map((e) => e.start()));
        await joinAll(engines, watches);
        const [a, b, c] = engines as [Engine, Engine, Engine];
        assert.equal(typeof (await a.ping(b.localAddress)), "number");
        await a.broadcast(Uint8Array.of(1, 2, 3));
        for (const w of [watches[1], watches[2]] as Watch[]) {
          await w.until("the broadcast", () => w.broadcasts().some((x) => x.payload.length === 3 && x.payload[2] === 3));
        }
        for (const e of [a, b, c]) {
          const s = await e.stats();
          const direct = stat(s, "ring.inbound.framesWritten");
          const opened = stat(s, "ring.raw.1.framesWritten");
          for (const [name, value] of Object.entries(s)) if (name.startsWith("seal.dropped.")) assert.equal(value, 0, name);
          if (directPerTurn === 0) {
            assert.equal(direct, 0, "nothing past the seal/open worker");
            assert.ok(opened > 0, "the seal/open worker opened them");
          } else {
            assert.ok(direct > 0, "a lightly loaded engine hands datagrams straight to its sleeping protocol worker");
          }
          assert.equal(stat(s, "core.protocolErrors"), 0);
        }
      } finally {
        await Promise.all(engines.map((e) => e.stop()));
      }
    });
  }

  test("createEngine rejects a directPerTurn that is not a whole number >= 0", async () => {
    await assert.rejects(createEngine({ bindIp: "127.0.0.1", config: fastConfig(), workers: 2, directPerTurn: -1 }), /directPerTurn must be a whole number >= 0/);
    await assert.rejects(createEngine({ bindIp: "127.0.0.1", config: fastConfig(), workers: 2, directPerTurn: 1.5 }), /directPerTurn/);
  });
});

test("createEngine rejects an invalid config and too-small rings", async () => {
  const bad = { ...fastConfig(), probeTimeoutMs: 0 };
  await assert.rejects(createEngine({ bindIp: "127.0.0.1", config: bad, workers: 0 }), /probeTimeoutMs must be in/);
  await assert.rejects(
    createEngine({ bindIp: "127.0.0.1", config: fastConfig(), workers: 1, rings: { inbound: { capacityBytes: 1024, maxFrameBytes: 500 } } }),
    /rings\.inbound\.maxFrameBytes must be at least/,
  );
});

test("engine ring frames round-trip; a snapshot splits into parts and is truncated to the ring", () => {
  const ring = ShmRing.create(1 << 16, 8_192);
  const drainOne = <T>(read: (data: Uint8Array, offset: number, lengthBytes: number) => T): T => {
    let out: T | undefined;
    assert.ok(ring.publish());
    assert.equal(ring.drainRaw((d, o, n) => void (out = read(d, o, n)), 1), 1);
    return out as T;
  };
  const v4 = addr("10.1.2.3:7946");
  const v6 = addr("[2001:db8::7]:65535");

  assert.ok(writeDatagramIn(ring, 1234.5, new Uint8Array([9, 8, 7])));
  const inView = drainOne((d, o, n) => {
    const view = newDatagramInView();
    assert.ok(readDatagramIn(d, o, n, view));
    return { ...view, bytes: [...d.subarray(view.payloadOffset, view.payloadOffset + view.payloadBytes)] };
  });
  assert.equal(inView.receivedAtMs, 1234.5);
  assert.deepEqual(inView.bytes, [9, 8, 7]);
  assert.ok(writeDatagramOpened(ring, 99.25, true, 0xfedcba98, 2 ** 47 + 5, new Uint8Array([4, 5])));
  const openedView = drainOne((d, o, n) => {
    const view = newDatagramInView();
    assert.ok(readDatagramOpened(d, o, n, view));
    assert.ok(!readDatagramIn(d, o, n, newDatagramInView()), "an opened frame is not a raw one");
    return { ...view, bytes: [...d.subarray(view.payloadOffset, view.payloadOffset + view.payloadBytes)] };
  });
  assert.deepEqual(
    [openedView.receivedAtMs, openedView.sealed, openedView.boot, openedView.counter, openedView.bytes],
    [99.25, true, 0xfedcba98, 2 ** 47 + 5, [4, 5]],
  );
  assert.ok(writeDatagramOut(ring, v4, new Uint8Array([1, 2])));
  const outView = drainOne((d, o, n) => {
    const view = newDatagramOutView();
    assert.ok(readDatagramOut(d, o, n, view));
    return { to: view.to, bytes: [...d.subarray(view.payloadOffset, view.payloadOffset + view.payloadBytes)] };
  });
  assert.equal(outView.to, v4);
  assert.deepEqual(outView.bytes, [1, 2]);

  const commands: Command[] = [
    { type: "start", token: 1 },
    { type: "join", token: 2, seeds: [v4, v6] },
    { type: "broadcast", token: 3, payload: new Uint8Array([5, 6]) },
    { type: "leave", token: 4 },
    { type: "ping", token: 5, target: v6 },
    { type: "forget", address: v4 },
    { type: "setProbeInterval", probeIntervalMs: 250 },
    { type: "snapshot", token: 6 },
    { type: "stats", token: 0xffffffff },
    { type: "stop", token: 8 },
    { type: "request", token: 9, kind: 2, timeoutMs: 500, payload: new Uint8Array([1]), options: {} },
    {
      type: "request",
      token: 10,
      kind: 2,
      timeoutMs: 500,
      payload: new Uint8Array([1, 2]),
      options: { answer: { ackWanted: true, relayCount: 3 }, targets: [v4, v6] },
    },
    { type: "request", token: 11, kind: 1, timeoutMs: 60, payload: new Uint8Array(0), options: { answer: { ackWanted: false, relayCount: 0 } } },
    { type: "setTags", token: 12, tags: Uint8Array.of(1, 1, 0x61, 0) },
  ];
  for (const cmd of commands) {
    assert.ok(writeCommand(ring, cmd));
    assert.deepEqual(drainOne(readCommand), cmd);
  }

  const member = {
    address: v6,
    state: 1 as const,
    incarnation: 0xfffffffe,
    stateChangedAtMs: 10.25,
    lastHeardAtMs: -1,
    lastRttMs: -2,
    pendingTransmits: 3,
    isSelf: false,
    damped: true,
    flapPenalty: 2345.5,
    flaps: 4,
    dampedUntilMs: 99_000.5,
    // Tags cross the ring with the member: one tag, "a" = "b".
    tags: Uint8Array.of(1, 1, 0x61, 1, 0x62) as Uint8Array | null,
  };
  const events: CoreEvent[] = [
    { type: "member", member, previous: 0, previousIncarnation: 7, dampingChanged: true },
    { type: "member", member: { ...member, address: v4, isSelf: true, damped: false, tags: null }, previous: null, previousIncarnation: null, dampingChanged: false },
    { type: "memberRemoved", address: v4 },
    { type: "broadcast", origin: v6, epoch: 99, seq: 100, payload: new Uint8Array([42]) },
    { type: "joinResult", seed: v4, ok: true, token: 11 },
    { type: "pingResult", target: v6, rttMs: 0.5, token: 12 },
    { type: "pingResult", target: v6, rttMs: null, token: 13 },
    { type: "requestAck", token: 14, from: v6 },
  ];
  for (const event of events) {
    assert.ok(writeEvent(ring, event));
    assert.deepEqual(drainOne(readOutput), { kind: "event", event });
  }
  const replies: Exclude<Reply, { type: "snapshot" }>[] = [
    { type: "started", token: 1 },
    { type: "broadcast", token: 2, outcome: { ok: true, epoch: 3, seq: 4 } },
    { type: "broadcast", token: 2, outcome: { ok: false, code: "TOO_LARGE", message: "too large" } },
    { type: "left", token: 5 },
    { type: "stats", token: 6, stats: { "core.a": 1.5, "ring.x.y": 2 ** 40 } },
    { type: "stopped", token: 7 },
    { type: "request", token: 8, outcome: { ok: true, targets: 4 } },
    { type: "request", token: 8, outcome: { ok: false, code: "BAD_OPTIONS", message: "a request is relayed through 0..5 members" } },
    { type: "tags", token: 9, outcome: { ok: true, incarnation: 77 } },
    { type: "tags", token: 9, outcome: { ok: false, code: "TOO_LARGE", message: "the tags take 2000 bytes" } },
  ];
  for (const reply of replies) {
    assert.ok(writeReply(ring, reply));
    assert.deepEqual(drainOne(readOutput), { kind: "reply", reply });
  }

  // 2,000 IPv6 members: more than one part holds (8 KiB frames) and more than the 64 KiB ring.
  const members = Array.from({ length: 2_000 }, (_, i) => ({ ...member, address: addr(`[2001:db8::${(i + 1).toString(16)}]:7946`) }));
  assert.ok(writeReply(ring, { type: "snapshot", token: 9, members }));
  ring.publish();
  const parts: Extract<EngineOutput, { kind: "snapshotPart" }>[] = [];
  ring.drainRaw((d, o, n) => {
    const out = readOutput(d, o, n);
    assert.equal(out.kind, "snapshotPart");
    if (out.kind === "snapshotPart") parts.push(out);
  });
  assert.ok(parts.length > 1);
  assert.ok(parts.every((p, i) => p.token === 9 && p.last === (i === parts.length - 1)));
  // A part fills a frame by the records' real sizes (IPv6, 5 bytes of tags: 80 bytes each).
  const recordBytes = 54 + 19 + 2 + 5;
  assert.ok(parts.every((p) => p.members.length <= Math.floor((8_192 - 8) / recordBytes)));
  assert.ok(parts.slice(0, -1).every((p) => p.members.length === Math.floor((8_192 - 8) / recordBytes)), "parts are full");
  assert.ok(MAX_MEMBER_RECORD_BYTES >= recordBytes);
  const got = parts.flatMap((p) => p.members);
  assert.ok(got.length > 500 && got.length < members.length, `truncated to ${got.length}`);
  assert.equal(parts[parts.length - 1]?.truncated, true);
  assert.deepEqual(got, members.slice(0, got.length));
});

for (const [workers, which] of [[1, 0], [3, 0], [3, 2]] as const) {
  test(`workers ${workers}: a dead ${which === 0 ? "protocol" : "seal/open"} worker is reported through onFailure, later calls are refused, stop() still ends every thread`, async () => {
    const engine = await createEngine({ bindIp: "127.0.0.1", bindPort: 0, workers });
    try {
      await engine.start();
      const failed = new Promise<Error>((resolve) => engine.onFailure(resolve));
      const threads = (engine as unknown as { threads(): { worker: Worker }[] }).threads();
      assert.equal(threads.length, workers);
      // Kill one worker from outside, as a crash would.
      await (threads[which] as { worker: Worker }).worker.terminate();
      const err = await failed;
      assert.match(err.message, which === 0 ? /protocol worker exited unexpectedly/ : /seal\/open worker 2 exited unexpectedly/);
      await assert.rejects(engine.members());
      await engine.stop();
      assert.deepEqual(threads.map((t) => t.worker.threadId), threads.map(() => -1), "every worker thread has ended");
    } finally {
      await engine.stop();
    }
  });
}

test("UdpTransport.flush resolves once every datagram sent so far has left the socket", async () => {
  const receiver = dgram.createSocket("udp4");
  await new Promise<void>((resolve) => receiver.bind(0, "127.0.0.1", resolve));
  const to = addr(`127.0.0.1:${receiver.address().port}`);
  const transport = await UdpTransport.bind({ ip: "127.0.0.1", port: 0 });
  try {
    await transport.flush(); // nothing sent: at once
    for (let i = 0; i < 200; i++) assert.ok(transport.send(to, new Uint8Array(512).fill(i)));
    const flushed = transport.flush();
    // Sends after the flush was asked for are not waited for.
    transport.send(to, new Uint8Array(8));
    await flushed;
    const s = transport.stats();
    assert.ok(s.datagramsSent + s.sendErrors >= 200, `every send completed: ${JSON.stringify(s)}`);
    assert.equal(s.sendErrors, 0);
  } finally {
    await transport.close();
    await new Promise<void>((resolve) => receiver.close(() => resolve()));
  }
  // A closed transport has nothing left to send.
  await transport.flush();
});
