/**
 * The TamTam gRPC service: validates every request (one-line reasons, proper status codes via
 * the status table) and translates between protobuf messages and the AgentApi.
 */

import { create } from "@bufbuild/protobuf";
import { type Address, formatIp, isValidPort, makeAddress, parseIp } from "../core/address.js";
import { periodProblem } from "../core/config.js";
import { MemberState } from "../core/wire/messages.js";
import {
  type AgentApi,
  DEFAULT_KEYS_TIMEOUT_MS,
  DEFAULT_QUERY_TIMEOUT_MS,
  type ItemSubscription,
  type KeyOperation,
  type KeysOutcome,
  LOG_LEVELS,
  MAX_KEYS_TIMEOUT_MS,
  MAX_QUERY_TIMEOUT_MS,
  type MemberView,
  MIN_KEYS_TIMEOUT_MS,
  MIN_QUERY_TIMEOUT_MS,
  type QueryEvent,
} from "../api/agent-api.js";
import { decodeKey } from "../seal/checks.js";
import { tagFilter, type TagFilter } from "../api/tags.js";
import { MAX_RELAY_COUNT } from "../core/wire/messages.js";
import {
  LogLevel_Level,
  MessageSchema,
  type KeysReply,
  KeysReplySchema,
  type Node,
  type NodeAddress,
  NodeAddressSchema,
  NodeSchema,
  type QueryEvent as QueryEventMessage,
  QueryEventSchema,
  type QueryRequest,
  Response_Code,
  Status,
  TamTam,
} from "../gen/service/tamtam_pb.js";
import { MessageBatch, oncePerObject, STREAM_WRITE_AHEAD_MESSAGES, type CallContext, type ServiceImplementation } from "./adapter.js";
import { broadcastStream } from "./broadcast-stream.js";
import { checkedBroadcast, checkedForget, checkedJoin } from "../api/checks.js";
import { AgentError } from "../api/errors.js";
import { toRpcError } from "./status.js";

const STATUS_OF: Record<MemberState, Status> = {
  [MemberState.Alive]: Status.ALIVE,
  [MemberState.Suspect]: Status.SUSPECTED,
  [MemberState.Dead]: Status.DEAD,
  [MemberState.Left]: Status.LEFT,
};

const STATE_NAME: Record<MemberState, string> = {
  [MemberState.Alive]: "alive",
  [MemberState.Suspect]: "suspect",
  [MemberState.Dead]: "dead",
  [MemberState.Left]: "left",
};

/** Validates a NodeAddress from a client. */
export function addressFrom(a: NodeAddress | undefined): Address {
  if (a === undefined) throw new AgentError("INVALID_ADDRESS", "an address (IP and port) is required");
  const ip = parseIp(a.IP.trim());
  if (ip === null) throw new AgentError("INVALID_ADDRESS", `"${a.IP}" is not an IPv4 or IPv6 address`);
  if (!isValidPort(a.port)) throw new AgentError("INVALID_PORT", `port ${a.port} is out of range 1..65535`);
  return makeAddress(ip, a.port);
}

function nodeAddress(a: Address): NodeAddress {
  return create(NodeAddressSchema, { IP: formatIp(a.ip), port: a.port });
}

/** A member as the protobuf Node existing clients know, plus the added fields. */
export function nodeFrom(m: MemberView): Node {
  const info = m.info;
  return create(NodeSchema, {
    address: nodeAddress(info.address),
    age: clampU32(Math.round(m.ageMs)),
    emitCounter: info.pendingTransmits,
    pingMillis: info.lastRttMs < 0 ? info.lastRttMs : Math.max(0, Math.round(info.lastRttMs)),
    // As the original: epoch milliseconds truncated to 32 bits.
    timestamp: Math.floor(m.changedAtEpochMs) % 2 ** 32,
    status: STATUS_OF[info.state],
    incarnation: info.incarnation,
    state: STATE_NAME[info.state],
    isSelf: info.isSelf,
    damped: info.damped,
    flapPenalty: clampU32(Math.round(info.flapPenalty)),
    flaps: clampU32(info.flaps),
    dampedForMillis: clampU32(Math.round(m.dampedForMs)),
    tags: { ...m.tags },
  });
}

function clampU32(x: number): number {
  return Math.min(Math.max(0, x), 2 ** 32 - 1);
}

const OK = { code: Response_Code.OK } as const;

/** A key operation's timeout from a request: 0 is the default. */
function keysTimeout(millis: number): number {
  if (millis === 0) return DEFAULT_KEYS_TIMEOUT_MS;
  if (millis < MIN_KEYS_TIMEOUT_MS || millis > MAX_KEYS_TIMEOUT_MS) {
    throw new AgentError("INVALID_TIMEOUT", `the timeout must be ${MIN_KEYS_TIMEOUT_MS}..${MAX_KEYS_TIMEOUT_MS} ms, got ${millis}`);
  }
  return millis;
}

/** The key of a KeyRequest; never echoes the text. */
function keyFrom(text: string): Uint8Array {
  const key = decodeKey(text);
  if (typeof key === "string") throw new AgentError("INVALID_KEY", `the key ${key}`);
  return key;
}

function keysReply(o: KeysOutcome): KeysReply {
  return create(KeysReplySchema, {
    members: o.members,
    confirmed: o.confirmed,
    keys: o.keys.map((k) => ({ fingerprint: k.fingerprint, installed: k.installed, primary: k.primary, local: k.local })),
    failures: o.failures.map((f) => ({ member: nodeAddress(f.member), reason: f.reason })),
  });
}

/** A subscription's items, mapped, in batches; ends `sub` when the call is cancelled, so a blocked read returns at once. */
async function* drain<T, O>(sub: ItemSubscription<T> | null, context: CallContext, map: (item: T) => O): AsyncGenerator<MessageBatch<O>> {
  if (sub === null) throw new AgentError("TOO_MANY_SUBSCRIBERS", "too many stream subscribers; try again later");
  const onAbort = (): void => sub.close();
  context.signal.addEventListener("abort", onAbort, { once: true });
  try {
    // Whatever queued up since the last pass goes out together (one HTTP/2 write), at most what
    // the stream may write ahead of its transport.
    for (;;) {
      const items = await sub.nextBatch(STREAM_WRITE_AHEAD_MESSAGES);
      if (items === null) break;
      yield new MessageBatch(items.map(map));
    }
  } finally {
    context.signal.removeEventListener("abort", onAbort);
    sub.close();
  }
}

/** Wraps a handler so that every error leaves as a mapped gRPC status. */
function mapped<A extends unknown[], R>(fn: (...args: A) => Promise<R>): (...args: A) => Promise<R> {
  return async (...args: A) => {
    try {
      return await fn(...args);
    } catch (err) {
      throw toRpcError(err);
    }
  };
}

async function* mappedStream<O>(gen: AsyncGenerator<O>): AsyncGenerator<O> {
  try {
    yield* gen;
  } catch (err) {
    throw toRpcError(err);
  }
}

export function tamTamService(agent: AgentApi): ServiceImplementation<typeof TamTam.method> {
  // A fan-out hands every subscriber the same item object: each item becomes one message (made
  // with `create`, so the stream handler passes it on as it is), which the stream's serializer
  // then encodes once for all of them (sharedSerializer in adapter.ts).
  const broadcastMessage = oncePerObject((bytes: Uint8Array) => create(MessageSchema, { bytes }));
  const nodeMessage = oncePerObject(nodeFrom);
  return {
    join: mapped(async (req) => {
      await checkedJoin(agent, addressFrom(req));
      return OK;
    }),
    leave: mapped(async (req) => {
      await checkedForget(agent, addressFrom(req));
      return OK;
    }),
    broadcast: mapped(async (req) => {
      await checkedBroadcast(agent, req.bytes);
      return OK;
    }),
    broadcastStream: mapped(async (requests, context) => await broadcastStream(agent, requests, context)),
    stream: (_req, context) => mappedStream(drain(agent.subscribeBroadcasts(), context, broadcastMessage)),
    monitor: (_req, context) => mappedStream(drain(agent.subscribeMembers(), context, nodeMessage)),
    nodes: mapped(async () => ({ nodes: (await agent.members()).map(nodeFrom) })),
    healthy: mapped(async () => ({
      // Healthy: still a member, i.e. alive or suspected (not dead, not left).
      nodes: (await agent.members())
        .filter((m) => m.info.state === MemberState.Alive || m.info.state === MemberState.Suspect)
        .map(nodeFrom),
    })),
    setHeartbeat: mapped(async (req) => {
      // The one range of the protocol period (the original's own check never fired; ours does).
      // The agent then derives the period's fields with periodFields, as at start-up.
      const problem = periodProblem(req.millis);
      if (problem !== null) throw new AgentError("HEARTBEAT_OUT_OF_RANGE", `heartbeat ${problem}, got ${req.millis}`);
      await agent.setHeartbeatMs(req.millis);
      return OK;
    }),
    setLogThreshold: mapped(async (req) => {
      const name = LogLevel_Level[req.level];
      if (name === undefined) throw new AgentError("UNKNOWN_LOG_LEVEL", `unknown log level ${req.level}; use one of ${LOG_LEVELS.join(", ")}`);
      agent.setLogLevel(name.toLowerCase() as (typeof LOG_LEVELS)[number]);
      return OK;
    }),
    ping: mapped(async (req) => {
      await agent.ping(addressFrom(req));
      return OK;
    }),
    localAddress: mapped(async () => nodeAddress(agent.localAddress)),
    leaveCluster: mapped(async () => {
      await agent.leaveCluster();
      return OK;
    }),
    listKeys: mapped(async (req) => keysReply(await agent.keys("list", null, { local: req.local, timeoutMs: keysTimeout(req.timeoutMillis) }))),
    installKey: mapped(async (req) => keyOp(agent, "install", req)),
    useKey: mapped(async (req) => keyOp(agent, "use", req)),
    removeKey: mapped(async (req) => keyOp(agent, "remove", req)),
    setTags: mapped(async (req) => {
      const state = await agent.changeTags(req.tags, []);
      return { tags: { ...state.tags }, incarnation: state.incarnation };
    }),
    deleteTags: mapped(async (req) => {
      const state = await agent.changeTags({}, req.keys);
      return { tags: { ...state.tags }, incarnation: state.incarnation };
    }),
    query: (req) => mappedStream(queryStream(agent, req)),
    serveQueries: (req, context) =>
      mappedStream(
        drain(agent.serveQueries(req.names), context, (q) => ({
          id: q.id,
          name: q.name,
          payload: q.payload,
          from: nodeAddress(q.from),
          timeoutMillis: q.timeoutMs,
          maxResponseBytes: q.maxResponseBytes,
        })),
      ),
    respondQuery: mapped(async (req) => {
      agent.respondQuery(req.id, req.payload, req.error);
      return OK;
    }),
    stats: mapped(async () => {
      const counters: Record<string, bigint> = {};
      for (const [name, value] of Object.entries(await agent.stats())) counters[name] = BigInt(Math.max(0, Math.floor(value)));
      return { counters };
    }),
  };
}

/** A query's validated parameters from its request. */
function queryParams(req: QueryRequest): Parameters<AgentApi["query"]>[0] {
  const timeoutMs = req.timeoutMillis === 0 ? DEFAULT_QUERY_TIMEOUT_MS : req.timeoutMillis;
  if (timeoutMs < MIN_QUERY_TIMEOUT_MS || timeoutMs > MAX_QUERY_TIMEOUT_MS) {
    throw new AgentError("INVALID_TIMEOUT", `the timeout must be ${MIN_QUERY_TIMEOUT_MS}..${MAX_QUERY_TIMEOUT_MS} ms, got ${timeoutMs}`);
  }
  if (req.relay > MAX_RELAY_COUNT) throw new AgentError("INVALID_QUERY", `--relay must be 0..${MAX_RELAY_COUNT}, got ${req.relay}`);
  const filters: TagFilter[] = [];
  for (const [key, source] of Object.entries(req.tagFilters)) {
    const f = tagFilter(key, source);
    if (typeof f === "string") throw new AgentError("INVALID_TAG", f);
    filters.push(f);
  }
  return {
    name: req.name,
    payload: req.payload,
    filters,
    nodes: req.nodes.map(addressFrom),
    timeoutMs,
    ack: !req.noAck,
    relayCount: req.relay,
  };
}

function queryEventMessage(e: QueryEvent): QueryEventMessage {
  switch (e.type) {
    case "ack":
      return create(QueryEventSchema, { type: "ack", from: nodeAddress(e.from) });
    case "response":
      return create(QueryEventSchema, { type: "response", from: nodeAddress(e.from), payload: e.payload });
    case "error":
      return create(QueryEventSchema, { type: "error", from: nodeAddress(e.from), error: e.error });
    case "summary":
      return create(QueryEventSchema, {
        type: "summary",
        asked: e.asked,
        acknowledged: e.acknowledged,
        answered: e.answered,
        failed: e.failed,
        missing: e.missing.map(nodeAddress),
        elapsedMillis: clampU32(e.elapsedMs),
      });
  }
}

/**
 * The events of one query as a stream. The agent emits at most two events per member asked and
 * a summary (a bounded number), so they are queued as they come; the stream ends after the summary.
 */
async function* queryStream(agent: AgentApi, req: QueryRequest): AsyncGenerator<QueryEventMessage> {
  const params = queryParams(req);
  const queue: QueryEventMessage[] = [];
  let wake: (() => void) | null = null;
  let done = false;
  let failure: unknown = null;
  const running = agent
    .query(params, (e) => {
      queue.push(queryEventMessage(e));
      wake?.();
    })
    .catch((err: unknown) => {
      failure = err;
    })
    .finally(() => {
      done = true;
      wake?.();
    });
  for (;;) {
    const next = queue.shift();
    if (next !== undefined) {
      yield next;
      continue;
    }
    if (done) break;
    await new Promise<void>((resolve) => {
      wake = resolve;
    });
    wake = null;
  }
  await running;
  if (failure !== null) throw failure;
}

async function keyOp(agent: AgentApi, op: KeyOperation, req: { key: string; local: boolean; timeoutMillis: number }): Promise<KeysReply> {
  const key = keyFrom(req.key);
  return keysReply(await agent.keys(op, key, { local: req.local, timeoutMs: keysTimeout(req.timeoutMillis) }));
}
