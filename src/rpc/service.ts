/**
 * The TamTam gRPC service: validates every request (one-line reasons, proper status codes via
 * the status table) and translates between protobuf messages and the AgentApi.
 */

import { create } from "@bufbuild/protobuf";
import { type Address, formatIp, isValidPort, makeAddress, parseIp } from "../core/address.js";
import { periodProblem } from "../core/config.js";
import { MemberState } from "../core/wire/messages.js";
import type { AgentApi, MemberView } from "../agent/api.js";
import { DEFAULT_KEYS_TIMEOUT_MS, MAX_KEYS_TIMEOUT_MS, MIN_KEYS_TIMEOUT_MS, type KeyOperation, type KeysOutcome } from "../agent/keys.js";
import { decodeKey } from "../seal/checks.js";
import type { Subscription } from "../agent/fanout.js";
import { LOG_LEVELS } from "../agent/options.js";
import {
  LogLevel_Level,
  type KeysReply,
  KeysReplySchema,
  type Node,
  type NodeAddress,
  NodeAddressSchema,
  NodeSchema,
  Response_Code,
  Status,
  TamTam,
} from "../gen/service/tamtam_pb.js";
import type { CallContext, ServiceImplementation } from "./adapter.js";
import { broadcastStream, checkBroadcast } from "./broadcast-stream.js";
import { AgentError, toRpcError } from "./status.js";

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

/** Ends `sub` when the call is cancelled, so a blocked `next()` returns at once. */
async function* drain<T, O>(sub: Subscription<T> | null, context: CallContext, map: (item: T) => O): AsyncGenerator<O> {
  if (sub === null) throw new AgentError("TOO_MANY_SUBSCRIBERS", "too many stream subscribers; try again later");
  const onAbort = (): void => sub.close();
  context.signal.addEventListener("abort", onAbort, { once: true });
  try {
    for await (const item of sub) yield map(item);
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
  return {
    join: mapped(async (req) => {
      const target = addressFrom(req);
      if (target.key === agent.localAddress.key) throw new AgentError("SELF_ADDRESS", `${target.key} is this agent's own address`);
      await agent.join(target);
      return OK;
    }),
    leave: mapped(async (req) => {
      const target = addressFrom(req);
      if (target.key === agent.localAddress.key) {
        throw new AgentError("SELF_ADDRESS", `${target.key} is this agent itself; use LeaveCluster to leave gracefully`);
      }
      await agent.forget(target);
      return OK;
    }),
    broadcast: mapped(async (req) => {
      checkBroadcast(agent, req.bytes);
      await agent.broadcast(req.bytes);
      return OK;
    }),
    broadcastStream: mapped(async (requests, context) => await broadcastStream(agent, requests, context)),
    stream: (_req, context) => mappedStream(drain(agent.subscribeBroadcasts(), context, (bytes) => ({ bytes }))),
    monitor: (_req, context) => mappedStream(drain(agent.subscribeMembers(), context, nodeFrom)),
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
    stats: mapped(async () => {
      const counters: Record<string, bigint> = {};
      for (const [name, value] of Object.entries(await agent.stats())) counters[name] = BigInt(Math.max(0, Math.floor(value)));
      return { counters };
    }),
  };
}

async function keyOp(agent: AgentApi, op: KeyOperation, req: { key: string; local: boolean; timeoutMillis: number }): Promise<KeysReply> {
  const key = keyFrom(req.key);
  return keysReply(await agent.keys(op, key, { local: req.local, timeoutMs: keysTimeout(req.timeoutMillis) }));
}
