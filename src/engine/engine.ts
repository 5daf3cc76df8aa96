/**
 * src/engine/engine.ts: the engine's public API and factory. createEngine() binds the UDP
 * socket (src/transport/udp.ts), resolves the advertised address, validates the protocol
 * config, and returns one of two implementations of the same Engine (src/engine/engine-api.ts),
 * split by mode as undici splits its clients over a dispatcher base:
 *
 *   - src/engine/engine-base.ts: what both share (requests and replies, listeners, stats);
 *   - src/engine/inline-engine.ts (`workers: 0`): the core on the main thread;
 *   - src/engine/worker-engine.ts (`workers` >= 1, the default 1): the main thread only moves
 *     bytes between the socket and shared-memory rings; the core, sealing and opening run on
 *     worker threads (with N >= 2, N - 1 seal/open workers in front of the protocol worker).
 *
 * nowMs is performance.now() on the main thread's time base; wall-clock time only seeds the
 * starting incarnation and counts the shared probe schedule's rounds (nowMs + timeOrigin).
 *
 * Advertised address: `advertise` if given; else the bind address and bound port; for a
 * wildcard bind (`0.0.0.0` / `::`) the loopback of that family (`127.0.0.1` / `::1`), since
 * the engine cannot know which interface peers reach it on. Clusters spanning hosts must pass
 * `advertise`.
 */

import { randomBytes, randomInt } from "node:crypto";
import { parseAddress, parseIp, type Address } from "../core/address.js";
import { defaultMaxBroadcastBytes, makeConfig, validateConfig, type SwimConfig } from "../core/config.js";
import { COOKIE_SECRET_BYTES } from "../core/cookie.js";
import type { SwimNodeOptions } from "../core/node.js";
import { MAX_TARGETS, maxAnswerBytes, maxRequestPayloadBytes } from "../core/requests.js";
import { tagsProblem } from "../core/tags.js";
import { DEFAULT_ENGINE_RINGS_CONFIG, type EngineRingsConfig } from "../shm/index.js";
import { UdpTransport } from "../transport/udp.js";
import type { Engine, EngineOptions } from "./engine-api.js";
import { MAX_ENGINE_WORKERS } from "./limits.js";
import { DEFAULT_REPLY_TIMEOUT_MS, type EngineInit } from "./engine-base.js";
import { InlineEngine } from "./inline-engine.js";
import {
  DATAGRAM_IN_MAX_HEADER_BYTES,
  DATAGRAM_OPENED_HEADER_BYTES,
  DATAGRAM_OUT_MAX_HEADER_BYTES,
  EVENT_BROADCAST_MAX_HEADER_BYTES,
  MAX_MEMBER_RECORD_BYTES,
  MAX_REQUEST_COMMAND_HEADER_BYTES,
} from "./protocol.js";
import { WorkerEngine } from "./worker-engine.js";

export * from "./engine-api.js";
export { LEAVE_TIMEOUT_MS } from "./engine-base.js";

/** Creates an engine: binds the socket, builds the core (and worker). Call start() next. */
export async function createEngine(options: EngineOptions = {}): Promise<Engine> {
  const workers = options.workers ?? 1;
  if (!Number.isInteger(workers) || workers < 0 || workers > MAX_ENGINE_WORKERS) {
    throw new RangeError(`workers must be an integer in 0..${MAX_ENGINE_WORKERS}, got ${String(workers)}`);
  }
  const transport = await UdpTransport.bind({
    ip: options.bindIp ?? "0.0.0.0",
    port: options.bindPort ?? 0,
    dualStack: options.dualStack ?? false,
    ...(options.socketBufferBytes === undefined
      ? {}
      : { recvBufferBytes: options.socketBufferBytes, sendBufferBytes: options.socketBufferBytes }),
  });
  try {
    const self = resolveAdvertise(options.advertise, transport);
    const config = options.config ?? makeConfig("lan", { maxBroadcastBytes: defaultMaxBroadcastBytes(self.family) });
    const problems = validateConfig(config);
    if (problems.length > 0) throw new RangeError(`invalid protocol config: ${problems.join("; ")}`);
    if (options.envelope !== undefined && !config.sealed) throw new RangeError("an envelope needs config.sealed, which reserves its room");
    if (options.directPerTurn !== undefined && !(Number.isSafeInteger(options.directPerTurn) && options.directPerTurn >= 0)) {
      throw new RangeError(`directPerTurn must be a whole number >= 0, not ${options.directPerTurn}`);
    }
    const node: SwimNodeOptions = {
      self,
      config,
      seed: options.seed ?? (Math.random() * 2 ** 32) >>> 0,
      incarnation: options.incarnation ?? Math.floor(Date.now() / 1000),
      // Random, so that a restart within the same second still gets fresh broadcast ids.
      broadcastEpoch: options.broadcastEpoch ?? randomInt(2 ** 32 - 1),
      // Keys the join cookies: unguessable, unlike the 32-bit PRNG seed.
      cookieSecret: new Uint8Array(randomBytes(COOKIE_SECRET_BYTES)),
      ...(options.tags === undefined ? {} : { tags: options.tags }),
      seeds: options.seeds ?? [],
      reconnectTargets: options.reconnectTargets ?? [],
      // nowMs is performance.now(): wall-clock time is that plus its origin.
      wallClockOffsetMs: performance.timeOrigin,
    };
    if (options.tags !== undefined) {
      const problem = tagsProblem(config, options.tags);
      if (problem !== null) throw new RangeError(problem);
    }
    const init: EngineInit = {
      transport,
      node,
      replyTimeoutMs: options.replyTimeoutMs ?? DEFAULT_REPLY_TIMEOUT_MS,
      envelope: options.envelope ?? null,
    };
    if (workers === 0) return new InlineEngine(init);

    const ringsConfig = mergeRings(options.rings);
    checkRings(ringsConfig, config);
    return new WorkerEngine(init, node, {
      workers,
      rings: ringsConfig,
      ...(options.spinIterations === undefined ? {} : { spinIterations: options.spinIterations }),
      ...(options.directPerTurn === undefined ? {} : { directPerTurn: options.directPerTurn }),
    });
  } catch (err) {
    await transport.close();
    throw err;
  }
}

function resolveAdvertise(advertise: Address | string | undefined, transport: UdpTransport): Address {
  let self: Address;
  if (advertise === undefined) {
    const ip = parseIp(transport.localIp);
    const wildcard = ip === null || ip.every((b) => b === 0);
    const text = wildcard ? (transport.family === 4 ? "127.0.0.1" : "::1") : transport.localIp;
    const parsed = parseAddress(transport.family === 6 ? `[${text}]` : text, transport.localPort);
    if (typeof parsed === "string") throw new RangeError(`cannot advertise the bound address: ${parsed}`);
    self = parsed;
  } else if (typeof advertise === "string") {
    const parsed = parseAddress(advertise, transport.localPort);
    if (typeof parsed === "string") throw new RangeError(`advertise: ${parsed}`);
    self = parsed;
  } else {
    self = advertise;
  }
  const reachable = self.family === transport.family || (transport.family === 6 && transport.dualStack);
  if (!reachable) {
    throw new RangeError(
      `advertised address ${self.key} is IPv${self.family} but the socket is bound to IPv${transport.family} ${transport.localIp}`,
    );
  }
  return self;
}

function mergeRings(rings: Partial<EngineRingsConfig> | undefined): EngineRingsConfig {
  return { ...DEFAULT_ENGINE_RINGS_CONFIG, ...(rings ?? {}) };
}

/** The ring frame limits the protocol needs for `config`; RangeError naming the first short one. */
function checkRings(rings: EngineRingsConfig, config: SwimConfig): void {
  const needs: [keyof EngineRingsConfig, number, string][] = [
    ["inbound", config.maxPacketBytes + Math.max(DATAGRAM_IN_MAX_HEADER_BYTES, DATAGRAM_OPENED_HEADER_BYTES), "a maxPacketBytes datagram"],
    ["outbound", config.maxPacketBytes + DATAGRAM_OUT_MAX_HEADER_BYTES, "a maxPacketBytes datagram"],
    ["commands", 5 + config.maxBroadcastBytes, "a maxBroadcastBytes broadcast"],
    ["commands", MAX_REQUEST_COMMAND_HEADER_BYTES + maxRequestPayloadBytes(config), "a cluster request"],
    ["events", Math.max(EVENT_BROADCAST_MAX_HEADER_BYTES + config.maxBroadcastBytes, 8 + MAX_MEMBER_RECORD_BYTES, 256), "a broadcast event"],
    ["events", EVENT_BROADCAST_MAX_HEADER_BYTES + Math.max(maxRequestPayloadBytes(config), maxAnswerBytes(config)), "a cluster request event"],
    ["events", 7 + 19 * MAX_TARGETS, "the end of a cluster request (its silent members)"],
  ];
  for (const [ring, minBytes, what] of needs) {
    if (rings[ring].maxFrameBytes < minBytes) {
      throw new RangeError(`rings.${ring}.maxFrameBytes must be at least ${minBytes} to carry ${what}, got ${rings[ring].maxFrameBytes}`);
    }
  }
}
