/**
 * The agent's composition root: turns AgentOptions into a running member — protocol config,
 * gossip addresses, the engine (worker-threaded or inline), the RPC listener (which loads the
 * gRPC server with the first connection), event fan-out to Stream/Monitor subscribers,
 * start-up joins, multicast discovery, logging —
 * and shuts it all down gracefully (announce *left* directly to several members, close gRPC,
 * stop the engine: a few tens of milliseconds) on SIGINT, SIGTERM or a LeaveCluster call.
 */

import { rmSync } from "node:fs";
import { networkInterfaces } from "node:os";
import { performance } from "node:perf_hooks";
import { getHeapStatistics } from "node:v8";
import { type Address, formatIp, parseAddress } from "../core/address.js";
import {
  defaultMaxBroadcastBytes,
  defaultPeriodMs,
  faultFields,
  makeConfig,
  periodFields,
  type SwimConfig,
  validateConfig,
} from "../core/config.js";
import { MEMBER_STATE_NAMES } from "../core/wire/messages.js";
import { maxAnswerBytes, maxRequestPayloadBytes } from "../core/requests.js";
import { tagsProblem } from "../core/tags.js";
import type { ClusterEvent, MemberInfo } from "../core/runtime.js";
import { type BroadcastOutcome, ClusterRequestRefusedError, createEngine, type Engine } from "../engine/engine.js";
import type { AgentApi, LogLevelName, MemberView } from "../api/agent-api.js";
import { AgentError, type AgentErrorCode } from "../api/errors.js";
import { decodeTagMap, encodeTagMap, tagKeyProblem, tagsText } from "../api/tags.js";
import { DropLog } from "../seal/drop-log.js";
import { Envelope } from "../seal/envelope.js";
import { Keyring, writeKeyringFile } from "../seal/keyring.js";
import { answerKeyRequest, applyKeyOperation, encodeKeyRequest, fingerprint, KEYRING_REQUEST_KIND, keysOutcome } from "./keys.js";
import { DEFAULT_MULTICAST_IPV4, DEFAULT_MULTICAST_IPV6, MulticastDiscovery } from "../transport/multicast.js";
import { isOwnGossipAddress, resolveGossipAddresses } from "./addresses.js";
import { EVENT_HANDLER_TIMEOUT_MS } from "./event-filter.js";
import { EventHandlers } from "./event-handlers.js";
import { Fanout } from "./fanout.js";
import { listenMetrics, type MetricsEndpoint } from "./metrics.js";
import { type AgentLogger, createLogger } from "./log.js";
import { readSnapshot, SnapshotWriter } from "./snapshot.js";
import { DampedEventFilter } from "./damped-events.js";
import { claimSocketPath, isLocalOnly, removeSocket, rpcEndpoint, secureSocket, withPrivateUmask } from "./rpc-endpoint.js";
import { RpcListener } from "./rpc-listener.js";
import type { AgentOptions } from "./options.js";
import { CommandRunner } from "./command-runner.js";
import { QUERY_REQUEST_KIND } from "./query-codec.js";
import { QueryResponder, runQuery } from "./queries.js";

/** Read by the command line before the agent starts (the keyring file and --encrypt). */
export { startingKeys } from "../seal/keyring.js";

/** The original's default protocol period; used with the default preset when --heartbeat is not given (see defaultPeriodMs). */
export { DEFAULT_HEARTBEAT_MS } from "../core/config.js";
/** The agent error of each reason the core refuses a broadcast for. */
const BROADCAST_REFUSALS = {
  EMPTY: "EMPTY_BROADCAST",
  TOO_LARGE: "BROADCAST_TOO_LARGE",
  LEFT: "LEFT_CLUSTER",
  QUEUE_FULL: "BROADCAST_QUEUE_FULL",
} as const satisfies Record<Exclude<BroadcastOutcome, { ok: true }>["code"], AgentErrorCode>;

/** Items a Stream/Monitor subscriber (or a library iterator) may fall behind by before its oldest are dropped. */
export const SUBSCRIBER_QUEUE_ITEMS = 4096;
const MAX_SUBSCRIBERS = 256;
/** How often start-up seeds are retried until one answers. */
const SEED_RETRY_MS = 5_000;
/**
 * Longest a graceful shutdown waits for the engine to put the leave announcement on the wire
 * (it takes about a millisecond; the members told pass it on, so nothing waits for gossip rounds).
 */
const LEAVE_WAIT_MS = 100;
/** Longest gRPC calls still open at shutdown get, after Stream/Monitor calls ended, before they are cut. */
const RPC_CLOSE_WAIT_MS = 50;
/** Query handler commands running at a time, and waiting beyond those. */
const QUERY_HANDLERS_RUNNING = 4;
const QUERY_HANDLERS_QUEUED = 64;
/** Between SIGTERM and SIGKILL of a query handler at its time limit. */
const QUERY_HANDLER_KILL_GRACE_MS = 500;
export const DEFAULT_QUERY_HANDLER_TIMEOUT_MS = 3_000;

export const BANNER = String.raw`
 _                      _
| |_   __ _  _ __ ___  | |_   __ _  _ __ ___
| __| / _${"`"} || '_ ${"`"} _ \ | __| / _${"`"} || '_ ${"`"} _ \
| |_ | (_| || | | | | || |_ | (_| || | | | | |
 \__| \__,_||_| |_| |_| \__| \__,_||_| |_| |_|
`;

/**
 * The protocol config the options ask for (a preset, the heartbeat, the broadcast limit and the
 * gossip budget).
 * The period and the fields that follow it come from `periodFields`, the rule that the live
 * `configure heartbeat` applies too. Throws a one-line Error for a period out of range.
 */
export function protocolConfig(options: AgentOptions, family: 4 | 6): SwimConfig {
  const preset = makeConfig(options.preset, {
    maxBroadcastBytes: options.maxBroadcastBytes > 0 ? options.maxBroadcastBytes : defaultMaxBroadcastBytes(family),
    ...(options.gossipBudgetBytesPerSec !== undefined && options.gossipBudgetBytesPerSec > 0
      ? { gossipBudgetBytesPerSec: options.gossipBudgetBytesPerSec }
      : {}),
  });
  const base = options.faults === undefined ? preset : faultFields(preset, options.faults);
  const period = periodFields(base, options.heartbeatMs ?? defaultPeriodMs(options.preset));
  if (!period.ok) throw new Error(`heartbeat ${period.problem}, got ${String(options.heartbeatMs)}`);
  if (!enveloped(options)) return { ...base, ...period.fields };
  // The envelope's room (SEALED_OVERHEAD_BYTES, more than a label's tag) is reserved in every
  // datagram; every preset's probe budget holds it (the thread preset's 80 bytes included).
  return { ...base, ...period.fields, sealed: true };
}

/** Whether datagrams go through the envelope: keys are installed or a label is set. */
function enveloped(options: AgentOptions): boolean {
  return options.seal !== undefined && (options.seal.keys.length > 0 || options.seal.label !== null);
}

export interface RunningAgent {
  readonly gossipAddress: Address;
  readonly rpcAddress: string;
  readonly engine: Engine;
  /** The gossip keys (install, use, remove at run time; the keyring file follows), or null without keys and label. */
  readonly keyring: Keyring | null;
  /** What the gRPC service serves (and the library's agent handle wraps, src/lib/agent.ts). */
  readonly api: AgentApi;
  /** Leaves gracefully and stops everything; resolves when done. Idempotent. */
  shutdown(reason: string): Promise<void>;
  /** Resolves with the exit status when the agent has stopped: 0, or 1 after an engine failure. */
  readonly stopped: Promise<number>;
}

/** Undoes one step of the start (closes a listener, stops the engine, ...). */
type Release = () => unknown;

/**
 * Starts an agent; throws Error with a one-line message when it cannot start. A start that
 * fails releases, newest first, everything it had acquired (the metrics listener, the gossip
 * socket and worker threads, handler runners, the snapshot writer, the gRPC server), so that
 * an embedding program can start again on the same ports at once.
 */
export async function startAgent(options: AgentOptions, log: AgentLogger): Promise<RunningAgent> {
  const acquired: Release[] = [];
  try {
    return await startSteps(options, log, acquired);
  } catch (err) {
    for (const release of acquired.reverse()) {
      try {
        await release();
      } catch {
        // releasing goes on; the start's own error is the one reported
      }
    }
    throw err;
  }
}

/** The start, step by step; `acquired` gets the release of each resource as it is acquired. */
async function startSteps(options: AgentOptions, log: AgentLogger, acquired: Release[]): Promise<RunningAgent> {
  const logger = log.logger;
  const addresses = resolveGossipAddresses(options, networkInterfaces());
  for (const w of addresses.warnings) logger.warn(w);
  /** Whether `target` is this agent itself under some address (looked up afresh: interfaces change). */
  const isOwnAddress = (target: Address): boolean => isOwnGossipAddress(target, addresses, networkInterfaces());
  const config = protocolConfig(options, addresses.advertise.family);
  const problems = validateConfig(config);
  if (problems.length > 0) throw new Error(`invalid protocol settings: ${problems.join("; ")}`);
  const endpoint = (() => {
    try {
      return rpcEndpoint(options.rpc);
    } catch (err) {
      throw new Error(`cannot serve gRPC at ${options.rpc}: ${(err as Error).message}`);
    }
  })();

  // Bound first: a bad or busy address stops the start before anything else exists (the
  // listener does not keep the process alive); it answers scrapes once the agent is up.
  const metricsAddress = options.metricsAddress ?? null;
  const metrics: MetricsEndpoint | null =
    metricsAddress === null
      ? null
      : await listenMetrics(metricsAddress).catch((err: Error) => {
          throw new Error(`cannot serve metrics at ${metricsAddress}: ${plainReason(err, "--metrics-address")}`);
        });
  if (metrics !== null) acquired.push(() => metrics.close());

  const gossipText = `${addresses.bindIp.includes(":") ? `[${addresses.bindIp}]` : addresses.bindIp}:${addresses.bindPort}`;
  const seal = options.seal;
  let keyring: Keyring | null = null;
  let envelope: Envelope | null = null;
  if (seal !== undefined && enveloped(options)) {
    if (seal.warning !== null) logger.warn(seal.warning);
    keyring = new Keyring(seal.keys);
    const file = seal.keyringFile;
    if (file !== null) {
      if (seal.createKeyringFile) {
        try {
          writeKeyringFile(file, keyring.keys());
        } catch (err) {
          throw new Error(`cannot create the keyring file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
        }
        logger.info(`created the keyring file ${file}`);
        // A start that fails leaves no keyring file behind: the next start takes its --encrypt key afresh.
        acquired.push(() => rmSync(file, { force: true }));
      }
      keyring.onChange((keys) => {
        try {
          writeKeyringFile(file, keys);
        } catch (err) {
          logger.error(`cannot rewrite the keyring file ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
        }
      });
    }
    const drops = new DropLog((line) => logger.warn(line));
    envelope = new Envelope({
      keyring,
      label: seal.label,
      acceptPlaintext: seal.acceptPlaintext,
      sendPlaintext: seal.sendPlaintext,
      onDrop: (reason, source, count) => drops.record(reason, source, count),
    });
  }
  // Seeds (--join) are joined at start and retried by the core whenever members are lost; the
  // members of the snapshot (--snapshot) are joined at start and stay reconnect targets.
  const seeds: Address[] = [];
  for (const text of options.join) {
    const a = parseAddress(text);
    if (typeof a === "string") throw new Error(`--join: ${a}`);
    if (isOwnAddress(a)) logger.info(`--join ${a.key} is this agent itself; skipped`);
    else seeds.push(a);
  }
  const snapshotFile = options.snapshot ?? null;
  const remembered = snapshotFile === null ? null : readSnapshot(snapshotFile);
  if (remembered?.warning != null) logger.warn(remembered.warning);
  const rememberedMembers = remembered?.members ?? [];
  let currentTags: Record<string, string> = { ...(options.tags ?? {}) };
  const startTags = Object.keys(currentTags).length === 0 ? undefined : encodeTagMap(currentTags);
  if (startTags !== undefined) {
    for (const key of Object.keys(currentTags)) {
      const problem = tagKeyProblem(key);
      if (problem !== null) throw new Error(`--tag: ${problem}`);
    }
    const problem = tagsProblem(config, startTags);
    if (problem !== null) throw new Error(`--tag: ${problem}`);
  }
  const engine = await createEngine({
    seeds,
    reconnectTargets: rememberedMembers,
    bindIp: addresses.bindIp,
    bindPort: addresses.bindPort,
    dualStack: addresses.bindIp === "::",
    advertise: addresses.advertise,
    config,
    workers: options.workers,
    ...(envelope === null ? {} : { envelope }),
    ...(startTags === undefined ? {} : { tags: startTags }),
  }).catch((err: Error) => {
    throw new Error(`cannot use the gossip port ${gossipText}: ${plainReason(err, "-p/--port")}`);
  });
  acquired.push(() => engine.stop());
  const handlers =
    (options.eventHandlers ?? []).length === 0
      ? null
      : new EventHandlers({
          handlers: options.eventHandlers ?? [],
          timeoutMs: options.eventHandlerTimeoutMs ?? EVENT_HANDLER_TIMEOUT_MS,
          self: engine.localAddress,
          log: logger,
        });
  if (handlers !== null) acquired.push(() => handlers.close());

  const broadcasts = new Fanout<Uint8Array>(SUBSCRIBER_QUEUE_ITEMS, MAX_SUBSCRIBERS);
  // Monitor: a reader behind a burst of one member's changes gets its latest state once.
  const memberChanges = new Fanout<MemberView>(SUBSCRIBER_QUEUE_ITEMS, MAX_SUBSCRIBERS, (v) => v.info.address.key);
  /** Damped members' changes are shown to Monitor and event handlers only when damping starts and ends. */
  const damped = new DampedEventFilter();
  const snapshot =
    snapshotFile === null ? null : new SnapshotWriter({ path: snapshotFile, members: () => engine.members(), onError: (line) => logger.error(line) });
  // A start that fails writes no snapshot: the file keeps what an earlier run remembered.
  if (snapshot !== null) acquired.push(() => snapshot.discard());
  const view = (info: MemberInfo, nowMs = performance.now()): MemberView => ({
    info,
    ageMs: Math.max(0, nowMs - (info.lastHeardAtMs >= 0 ? info.lastHeardAtMs : info.stateChangedAtMs)),
    changedAtEpochMs: performance.timeOrigin + info.stateChangedAtMs,
    dampedForMs: info.damped ? Math.max(0, info.dampedUntilMs - nowMs) : 0,
    tags: decodeTagMap(info.tags),
  });
  const queryHandlerTimeoutMs = options.queryHandlerTimeoutMs ?? DEFAULT_QUERY_HANDLER_TIMEOUT_MS;
  const queryRunner = new CommandRunner(
    { maxConcurrent: QUERY_HANDLERS_RUNNING, maxQueued: QUERY_HANDLERS_QUEUED, timeoutMs: queryHandlerTimeoutMs, killGraceMs: QUERY_HANDLER_KILL_GRACE_MS },
    { log: logger },
  );
  acquired.push(() => queryRunner.close());
  // An answer is a status byte and the response.
  const queries = new QueryResponder(options.queryHandlers ?? [], queryRunner, queryHandlerTimeoutMs, maxAnswerBytes(config) - 1, engine.localAddress.key);
  acquired.push(() => queries.close());
  engine.onEvent((coreEvent: ClusterEvent) => {
    if (coreEvent.type === "member" || coreEvent.type === "memberRemoved") snapshot?.changed();
    const event = damped.filter(coreEvent);
    if (event === null) {
      if (coreEvent.type === "member") {
        const m = coreEvent.member;
        logger.debug({ incarnation: m.incarnation }, `node ${m.address.key} (damped) is now ${MEMBER_STATE_NAMES[m.state]}`);
      }
      return;
    }
    handlers?.onEvent(event);
    switch (event.type) {
      case "broadcast":
        broadcasts.publish(event.payload);
        logger.debug({ origin: event.origin.key, bytes: event.payload.length }, "broadcast received");
        return;
      case "member": {
        const m = event.member;
        const state = MEMBER_STATE_NAMES[m.state];
        const who = m.isSelf ? `${m.address.key} (this agent)` : m.address.key;
        memberChanges.publish(view(event.member));
        if (event.dampingChanged) {
          const untilS = Math.max(0, Math.round((m.dampedUntilMs - performance.now()) / 1000));
          logger[m.damped ? "warn" : "info"](
            { incarnation: m.incarnation, flaps: m.flaps, penalty: m.flapPenalty },
            m.damped
              ? `node ${who} keeps failing and coming back (${m.flaps} times): damped for about ${untilS} s; its changes are not shown meanwhile; it is ${state}`
              : `node ${who} is no longer damped; it is ${state}`,
          );
          return;
        }
        const tags = m.tags === null ? "" : ` with tags ${tagsText(decodeTagMap(m.tags)) || "(none)"}`;
        const line =
          event.previous === null
            ? `new node ${who} is ${state}${tags}`
            : event.previous === m.state && m.state === 0
              ? `node ${who} is ${state}${tags}`
              : `node ${who} is now ${state}`;
        logger[m.state === 0 || m.isSelf ? "info" : "warn"]({ incarnation: m.incarnation }, line);
        return;
      }
      case "memberRemoved":
        logger.debug(`node ${event.address.key} was removed from the table`);
        return;
      case "request": {
        if (event.kind === QUERY_REQUEST_KIND) {
          const handle = event.handle;
          queries.handle(event.from, event.payload, (answer) => engine.answerRequest(handle, answer));
          return;
        }
        // Other kinds stay unanswered (their origin reports this agent as not answering).
        if (event.kind !== KEYRING_REQUEST_KIND) return;
        const answer = answerKeyRequest(keyring, event.payload);
        engine.answerRequest(event.handle, answer);
        logger.info(
          { from: event.from.key, done: answer[0] === 0 },
          `gossip key operation ${["list", "install", "use", "remove"][(event.payload[0] ?? 0) - 1] ?? "?"}` +
            (event.payload.length > 1 ? ` of key ${fingerprint(event.payload.subarray(1))}` : ""),
        );
        return;
      }
      default:
        return;
    }
  });

  let shuttingDown: Promise<void> | null = null;
  let discovery: MulticastDiscovery | null = null;
  let seedTimer: NodeJS.Timeout | null = null;
  let exitCode = 0;
  let resolveStopped: (code: number) => void = () => undefined;
  const stopped = new Promise<number>((resolve) => {
    resolveStopped = resolve;
  });

  const api: AgentApi = {
    localAddress: engine.localAddress,
    maxBroadcastBytes: config.maxBroadcastBytes,
    async join(target) {
      // Its own address under another IP (loopback, another interface): nothing would answer.
      if (isOwnAddress(target)) {
        throw new AgentError("SELF_ADDRESS", `${target.key} is this agent itself (it advertises ${engine.localAddress.key}); join another member`);
      }
      const [outcome] = await engine.join([target]);
      if (outcome?.ok !== true) {
        throw new AgentError("NO_ANSWER", `${target.key} did not answer within ${config.requestTimeoutMs * config.joinAttempts} ms`);
      }
    },
    async forget(target) {
      const members = await engine.members();
      if (!members.some((m) => m.address.key === target.key)) throw new AgentError("UNKNOWN_MEMBER", `${target.key} is not a known member`);
      if (!engine.forget(target)) throw new AgentError("ENGINE_BUSY", "the engine is overloaded; try again");
    },
    async broadcast(payload) {
      if (shuttingDown !== null) throw new AgentError("SHUTTING_DOWN", "the agent is shutting down");
      const outcome = await engine.broadcast(payload);
      if (outcome.ok) return;
      throw new AgentError(BROADCAST_REFUSALS[outcome.code], outcome.message);
    },
    async ping(target) {
      const rtt = await engine.ping(target);
      if (rtt === null) throw new AgentError("NO_ANSWER", `${target.key} did not answer the ping within ${config.requestTimeoutMs} ms`);
      return rtt;
    },
    async members() {
      const now = performance.now();
      return (await engine.members()).map((m) => view(m, now));
    },
    async leaveCluster() {
      // Answer first, then leave: the caller gets its OK before the server goes away.
      setImmediate(() => void shutdown("LeaveCluster was called"));
    },
    async setHeartbeatMs(ms) {
      // The rule of start-up (protocolConfig); the core derives the same fields from its config.
      const period = periodFields(config, ms);
      if (!period.ok) throw new AgentError("HEARTBEAT_OUT_OF_RANGE", `heartbeat ${period.problem}, got ${ms}`);
      if (!engine.setProbeIntervalMs(ms)) throw new AgentError("ENGINE_BUSY", "the engine is overloaded; try again");
      logger.info(`protocol period set to ${ms} ms (probe timeout ${period.fields.probeTimeoutMs} ms)`);
    },
    setLogLevel(level: LogLevelName) {
      log.setLevel(level);
      logger.info(`log threshold set to ${level}`);
    },
    async stats() {
      const out: Record<string, number> = { ...(await engine.stats()) };
      const add = (prefix: string, counters: object): void => {
        for (const [k, v] of Object.entries(counters)) if (typeof v === "number") out[`${prefix}.${k}`] = v;
      };
      add("stream", broadcasts.counters);
      add("monitor", memberChanges.counters);
      out["monitor.dampedHeldBack"] = damped.heldBack;
      if (snapshot !== null) add("snapshot", snapshot.counters);
      if (discovery !== null) add("multicast", discovery.counters);
      if (handlers !== null) add("handlers", handlers.stats());
      if (metrics !== null) add("metrics", metrics.counters);
      add("queries", queries.counters);
      add("rpc", listener.counters);
      out["queries.waiting"] = queries.waitingCount;
      add("queryHandlers", queryRunner.stats());
      const memory = process.memoryUsage();
      out["process.rss_bytes"] = memory.rss;
      // The main thread's JavaScript heap (a worker's is `worker.heap_used_bytes`) and the
      // memory outside it (Buffers, ArrayBuffers, shared rings): what a growing RSS is made of.
      out["process.heap_used_bytes"] = getHeapStatistics().used_heap_size;
      out["process.heap_total_bytes"] = memory.heapTotal;
      out["process.external_bytes"] = memory.external;
      out["process.array_buffers_bytes"] = memory.arrayBuffers;
      return out;
    },
    async keys(op, key, { local, timeoutMs }) {
      if (shuttingDown !== null) throw new AgentError("SHUTTING_DOWN", "the agent is shutting down");
      // A key to remove goes last here: members still sealing with it are heard until then.
      const removeLast = op === "remove" && !local;
      applyKeyOperation(keyring, op, key, removeLast);
      if (op !== "list" && key !== null) logger.info(`gossip key operation ${op} of key ${fingerprint(key)}${local ? " (this agent only)" : ""}`);
      const keys = (): Uint8Array[] => keyring?.keys() ?? [];
      if (local) return keysOutcome(keys(), [], []);
      try {
        const result = await engine.request(KEYRING_REQUEST_KIND, encodeKeyRequest(op, key), timeoutMs);
        if (removeLast) applyKeyOperation(keyring, op, key);
        return keysOutcome(keys(), result.answers, result.missing);
      } catch (err) {
        if (err instanceof ClusterRequestRefusedError) {
          throw new AgentError(err.code === "BUSY" ? "ENGINE_BUSY" : err.code === "LEFT" ? "LEFT_CLUSTER" : "INTERNAL", err.message);
        }
        throw err;
      }
    },
    subscribeBroadcasts: () => broadcasts.subscribe(),
    subscribeMembers: () => memberChanges.subscribe(),
    async changeTags(set, remove) {
      if (shuttingDown !== null) throw new AgentError("SHUTTING_DOWN", "the agent is shutting down");
      const next: Record<string, string> = { ...currentTags };
      for (const [key, value] of Object.entries(set)) {
        const problem = tagKeyProblem(key);
        if (problem !== null) throw new AgentError("INVALID_TAG", problem);
        next[key] = value;
      }
      for (const key of remove) delete next[key];
      const bytes = encodeTagMap(next);
      const outcome = await engine.setTags(bytes);
      if (!outcome.ok) {
        throw new AgentError(outcome.code === "TOO_LARGE" ? "TAGS_TOO_LARGE" : outcome.code === "LEFT" ? "LEFT_CLUSTER" : "INVALID_TAG", outcome.message);
      }
      currentTags = decodeTagMap(bytes);
      logger.info({ incarnation: outcome.incarnation }, `tags set to ${tagsText(currentTags) || "(none)"}`);
      return { tags: currentTags, incarnation: outcome.incarnation };
    },
    async query(params, emit) {
      if (shuttingDown !== null) throw new AgentError("SHUTTING_DOWN", "the agent is shutting down");
      await runQuery(engine, queries, maxRequestPayloadBytes(config), params, emit);
    },
    serveQueries: (names) => queries.serve(names),
    respondQuery(id, payload, error) {
      if (!queries.respond(id, payload, error)) throw new AgentError("UNKNOWN_QUERY", `query ${id} is not waiting for an answer (answered, or its time is up)`);
    },
  };

  // gRPC is loaded with the first connection (rpc-listener.ts); until then the agent holds
  // neither grpc-js nor protobuf-es.
  const listener = new RpcListener(
    async () => {
      const { createGrpcServer } = await import("./grpc-server.js");
      return createGrpcServer(api, { rpcToken: options.rpcToken, logLevel: options.logLevel });
    },
    (err) => logger.error(`cannot load the gRPC server, RPC connections are closed: ${err.message}`),
  );
  // A Unix socket (unix:PATH) is created for its owner only (0600) and removed when the agent stops.
  const socketPath = endpoint.socketPath;
  let socketCreated = false;
  acquired.push(() => {
    broadcasts.closeAll();
    memberChanges.closeAll();
    listener.forceClose();
    if (socketPath !== null && socketCreated) removeSocket(socketPath);
  });
  const rpcPort = await (async () => {
    if (socketPath === null) return await listener.listenTcp(endpoint.bindAddress);
    await claimSocketPath(socketPath);
    await withPrivateUmask(() => listener.listenUnix(socketPath));
    socketCreated = true;
    secureSocket(socketPath);
    return 0;
  })().catch((err: Error) => {
    throw new Error(`cannot serve gRPC at ${options.rpc}: ${plainReason(err, "--rpc")}`);
  });
  const rpcAddress = socketPath !== null ? endpoint.bindAddress : options.rpc.replace(/:0$/, `:${rpcPort}`);

  await engine.start();
  // Logged before "Listening for gossip", the line that says the agent is up.
  if (metrics !== null) {
    metrics.serve(() => api.stats());
    logger.info(`Serving Prometheus metrics at ${metrics.url}`);
  }
  if (handlers !== null) logger.info(`running ${options.eventHandlers?.length} event handler${options.eventHandlers?.length === 1 ? "" : "s"}`);
  logger.info(`Listening for gRPC at ${rpcAddress}`);
  if (options.rpcToken === null && !isLocalOnly(rpcAddress)) {
    logger.warn(`gRPC at ${rpcAddress} can be reached from other machines and needs no token: anyone who reaches it controls this agent (set --rpc-token, or serve on localhost or unix:PATH)`);
  }
  logger.info(
    `Listening for gossip at ${gossipText}` +
      ` as ${engine.localAddress.key} (${engineDescription(options.workers)}, preset ${options.preset}, period ${config.probeIntervalMs} ms)`,
  );
  if (envelope !== null) logger.info(sealDescription(envelope, seal?.label ?? null, seal?.acceptPlaintext === true));

  // Start-up seeds and remembered members: retried until one answers (a cluster may come up in any order).
  const contacts = [...new Map([...seeds, ...rememberedMembers].map((a) => [a.key, a])).values()].filter((a) => !isOwnAddress(a));
  if (rememberedMembers.length > 0) logger.info(`rejoining ${rememberedMembers.length} members remembered in ${snapshotFile}`);
  const joinSeeds = async (): Promise<void> => {
    if (contacts.length === 0 || shuttingDown !== null) return;
    const outcomes = await engine.join(contacts).catch(() => []);
    if (shuttingDown !== null) return; // a join cut short by the shutdown is not retried
    if (outcomes.some((o) => o.ok)) {
      logger.info(`joined the cluster through ${outcomes.filter((o) => o.ok).map((o) => o.seed.key).join(", ")}`);
      return;
    }
    logger.warn(`no seed answered (${contacts.map((s) => s.key).join(", ")}); retrying in ${SEED_RETRY_MS / 1000} s`);
    seedTimer = setTimeout(() => void joinSeeds(), SEED_RETRY_MS);
  };
  void joinSeeds();
  acquired.push(() => {
    // No retry of the seeds after a failed start (joinSeeds stops at a shutdown).
    shuttingDown ??= Promise.resolve();
    if (seedTimer !== null) clearTimeout(seedTimer);
  });

  if (options.multicast.enabled) {
    const group = options.multicast.address ?? (engine.localAddress.family === 6 ? DEFAULT_MULTICAST_IPV6 : DEFAULT_MULTICAST_IPV4);
    const known = new Set<string>();
    discovery = new MulticastDiscovery({
      clusterName: options.multicast.clusterName,
      group,
      port: options.multicast.port,
      intervalMs: options.multicast.intervalSeconds * 1000,
      self: engine.localAddress,
      // IPv4 names the interface by the address this agent advertises (an address of its own).
      ...(engine.localAddress.family === 4 ? { interfaceAddress: formatIp(engine.localAddress.ip) } : {}),
      onDiscovered: (address) => {
        void (async () => {
          const members = await engine.members().catch(() => []);
          if (members.some((m) => m.address.key === address.key && (m.state === 0 || m.state === 1)) || known.has(address.key)) return;
          known.add(address.key);
          logger.info(`discovered ${address.key} by multicast; joining`);
          const [outcome] = await engine.join([address]).catch(() => []);
          if (outcome?.ok !== true) known.delete(address.key);
        })();
      },
      onError: (err) => logger.warn(`multicast: ${err.message}`),
      ...(envelope === null ? {} : { envelope }),
    });
    acquired.push(() => discovery?.close());
    try {
      await discovery.start();
      logger.info(`multicast discovery of cluster "${options.multicast.clusterName}" on [${group}]:${options.multicast.port}`);
    } catch (err) {
      logger.warn(`multicast discovery is off: ${(err as Error).message}`);
      discovery.close();
      discovery = null;
    }
  }

  const shutdown = (reason: string): Promise<void> => {
    if (shuttingDown !== null) return shuttingDown;
    shuttingDown = (async () => {
      logger.info(`${reason}: leaving the cluster`);
      if (seedTimer !== null) clearTimeout(seedTimer);
      discovery?.close();
      const stopHandlers = handlers?.close();
      // The core sends *left* at once, directly, to several members, which pass it on; leave()
      // resolves as soon as those datagrams have left the socket (about a millisecond). The
      // deadline only guards against a wedged engine, and never keeps the process alive.
      await new Promise<void>((resolve) => {
        const deadline = setTimeout(resolve, LEAVE_WAIT_MS);
        deadline.unref();
        void engine
          .leave()
          .catch(() => undefined)
          .then(() => {
            clearTimeout(deadline);
            resolve();
          });
      });
      await snapshot?.close();
      // Stream and Monitor calls end normally (status OK) with their subscriptions; calls still
      // open RPC_CLOSE_WAIT_MS later (a client that stopped reading) are cut.
      broadcasts.closeAll();
      memberChanges.closeAll();
      queries.close();
      await queryRunner.close();
      await listener.close(RPC_CLOSE_WAIT_MS);
      if (socketPath !== null) removeSocket(socketPath);
      await Promise.all([stopHandlers, metrics?.close()]);
      // Closes the socket and ends the worker thread: nothing is left to keep the process alive.
      await engine.stop().catch(() => undefined);
      logger.info("stopped");
    })().finally(() => resolveStopped(exitCode));
    return shuttingDown;
  };
  engine.onFailure((err) => {
    // Without its protocol core the agent is no member at all: say so and stop, non-zero.
    exitCode = 1;
    logger.fatal(`the protocol engine failed: ${err.message}`);
    void shutdown("engine failure");
  });

  return { gossipAddress: engine.localAddress, rpcAddress, engine, keyring, api, shutdown, stopped };
}

/** Where the engine runs its work, for the start-up line. */
function engineDescription(workers: number): string {
  if (workers === 0) return "inline core";
  if (workers === 1) return "core on a worker thread, which also seals and opens";
  return `core on a worker thread, ${workers - 1} seal/open worker${workers === 2 ? "" : "s"} in front of it`;
}

/** One line on how gossip is protected (never a key). */
function sealDescription(envelope: Envelope, label: string | null, acceptPlaintext: boolean): string {
  const keys = envelope.stats().keys ?? 0;
  const sending = envelope.sealing ? "sealed (AES-GCM)" : "in plaintext";
  const accepting = envelope.acceptsPlaintext ? (keys > 0 ? "sealed and plaintext" : "plaintext") : "sealed only";
  const labelText = label === null ? "no cluster label" : `cluster label "${label}"`;
  const migration = keys > 0 && (acceptPlaintext || !envelope.sealing) ? " (migration mode)" : "";
  return `gossip is sent ${sending}, accepted ${accepting}, with ${keys} key${keys === 1 ? "" : "s"} and ${labelText}${migration}`;
}

/** The reason in an OS or grpc-js error, in words, with a hint naming the option to change. */
function plainReason(err: Error, option: string): string {
  const text = err.message;
  if (text.includes("EADDRINUSE")) return `address already in use (is another agent running? choose another with ${option})`;
  if (text.includes("EADDRNOTAVAIL")) return `no such address on this machine (see ${option === "-p/--port" ? "--bind" : option})`;
  if (text.includes("EACCES")) return "permission denied";
  if (text.includes("ENOENT")) return "no such directory for the socket";
  return text.split("\n")[0] ?? text;
}

/** `tamtam agent`: runs until SIGINT/SIGTERM or LeaveCluster; returns the exit code. */
export async function runAgent(options: AgentOptions): Promise<number> {
  const log = createLogger(options.logLevel, options.logFormat);
  if (!options.nobanner) process.stderr.write(`${BANNER}\n`);
  let agent: RunningAgent;
  try {
    agent = await startAgent(options, log);
  } catch (err) {
    // One line, as every command reports a mistake.
    process.stderr.write(`tamtam: ${(err as Error).message}\n`);
    return 1;
  }
  let signals = 0;
  const onSignal = (signal: NodeJS.Signals): void => {
    signals++;
    if (signals > 1) {
      process.stderr.write(`tamtam: ${signal} again, exiting now\n`);
      process.exit(130);
    }
    void agent.shutdown(`received ${signal}`);
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  const code = await agent.stopped;
  process.off("SIGINT", onSignal);
  process.off("SIGTERM", onSignal);
  return code;
}
