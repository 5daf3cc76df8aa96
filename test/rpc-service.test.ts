/**
 * The TamTam gRPC service against a fake agent: request validation with proper status codes
 * and one-line messages, translation of members into the original Node shape, and stream
 * fan-out where a subscriber that stops reading never blocks the others.
 */

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import * as http2 from "node:http2";
import * as grpc from "@grpc/grpc-js";
import { addr, type Address } from "../src/core/address.js";
import { MemberState } from "../src/core/wire/messages.js";
import type {
  AgentApi,
  IncomingQuery,
  KeyOperation,
  KeysOutcome,
  LogLevelName,
  MemberView,
  QueryEvent,
  QueryParams,
  TagsState,
} from "../src/api/agent-api.js";
import type { Tags } from "../src/api/tags.js";
import { Fanout } from "../src/agent/fanout.js";
import type { AgentOptions } from "../src/agent/options.js";
import { LogLevel_Level, Response_Code, Status, TamTam } from "../src/gen/service/tamtam_pb.js";
import { addService, createClient, type ServiceClient } from "../src/rpc/adapter.js";
import { tamTamService } from "../src/rpc/service.js";
import { AgentError } from "../src/api/errors.js";
import { ERROR_CODE_TRAILER } from "../src/rpc/grpc-wire.js";
import { applyKeyOperation, fingerprint, keysOutcome } from "../src/agent/keys.js";
import { Keyring } from "../src/seal/keyring.js";

const KEY_A = new Uint8Array(32).fill(1);
const KEY_B = new Uint8Array(16).fill(2);
import { protocolConfig } from "../src/agent/agent.js";
import { periodFields, type PresetName, type SwimConfig } from "../src/core/config.js";

class FakeAgent implements AgentApi {
  readonly localAddress = addr("127.0.0.1:9999");
  readonly maxBroadcastBytes = 256;
  readonly calls: string[] = [];
  readonly broadcasts = new Fanout<Uint8Array>(4, 8);
  readonly memberEvents = new Fanout<MemberView>(4, 8);
  heartbeatMs = 500;
  logLevel: LogLevelName = "info";
  readonly answering = new Set<string>(["127.0.0.1:9998"]);
  readonly keyring = new Keyring([KEY_A]);

  async join(target: Address): Promise<void> {
    this.calls.push(`join ${target.key}`);
    if (!this.answering.has(target.key)) throw new AgentError("NO_ANSWER", `${target.key} did not answer within 1000 ms`);
  }
  async forget(target: Address): Promise<void> {
    this.calls.push(`forget ${target.key}`);
  }
  async broadcast(payload: Uint8Array): Promise<void> {
    this.calls.push(`broadcast ${Buffer.from(payload).toString()}`);
  }
  async ping(target: Address): Promise<number> {
    this.calls.push(`ping ${target.key}`);
    if (!this.answering.has(target.key)) throw new AgentError("NO_ANSWER", `${target.key} did not answer within 1000 ms`);
    return 3;
  }
  async members(): Promise<readonly MemberView[]> {
    const view = (key: string, state: MemberState, isSelf = false): MemberView => ({
      info: {
        address: addr(key),
        state,
        incarnation: 7,
        stateChangedAtMs: 0,
        lastHeardAtMs: 0,
        lastRttMs: isSelf ? -1 : 2,
        pendingTransmits: 3,
        isSelf,
        damped: false,
        flapPenalty: 0,
        flaps: 0,
        dampedUntilMs: -1,
        tags: null,
      },
      ageMs: 6024.4,
      changedAtEpochMs: 2 ** 32 + 1234,
      dampedForMs: 0,
      tags: isSelf ? this.tags : {},
    });
    return [
      view("127.0.0.1:9999", MemberState.Alive, true),
      view("127.0.0.1:9998", MemberState.Alive),
      view("[::1]:9997", MemberState.Suspect),
      view("127.0.0.1:9996", MemberState.Dead),
      view("127.0.0.1:9995", MemberState.Left),
    ];
  }
  async leaveCluster(): Promise<void> {
    this.calls.push("leaveCluster");
  }
  async setHeartbeatMs(ms: number): Promise<void> {
    this.heartbeatMs = ms;
  }
  setLogLevel(level: LogLevelName): void {
    this.logLevel = level;
  }
  async stats(): Promise<Record<string, number>> {
    return { datagrams_sent: 12, ring_drops: 0 };
  }
  async keys(op: KeyOperation, key: Uint8Array | null, options: { local: boolean; timeoutMs: number }): Promise<KeysOutcome> {
    this.calls.push(`keys ${op} ${options.local ? "local" : "cluster"} ${options.timeoutMs}`);
    applyKeyOperation(this.keyring, op, key);
    if (options.local) return keysOutcome(this.keyring.keys(), [], []);
    // One member holds the same keys, one never answers.
    const fps = this.keyring.keys().map((k) => Buffer.from(fingerprint(k).slice(7), "hex"));
    const payload = Uint8Array.from([0, fps.length, ...fps.flatMap((b) => [...b])]);
    return keysOutcome(this.keyring.keys(), [{ from: addr("127.0.0.1:9998"), payload }], [addr("[::1]:9997")]);
  }
  subscribeBroadcasts() {
    return this.broadcasts.subscribe();
  }
  subscribeMembers() {
    return this.memberEvents.subscribe();
  }
  tags: Record<string, string> = { role: "web" };
  async changeTags(set: Tags, remove: readonly string[]): Promise<TagsState> {
    const next: Record<string, string> = { ...this.tags, ...set };
    for (const key of remove) delete next[key];
    if (Object.keys(next).some((k) => k.includes(" "))) throw new AgentError("INVALID_TAG", "a tag key has no white space");
    if (JSON.stringify(next).length > 200) throw new AgentError("TAGS_TOO_LARGE", "the tags take too many bytes");
    this.tags = next;
    return { tags: next, incarnation: 8 };
  }
  lastQuery: QueryParams | null = null;
  async query(params: QueryParams, emit: (event: QueryEvent) => void): Promise<void> {
    this.lastQuery = params;
    if (params.name === "busy") throw new AgentError("ENGINE_BUSY", "at most 16 cluster requests run at a time");
    emit({ type: "ack", from: addr("127.0.0.1:9998") });
    emit({ type: "response", from: addr("127.0.0.1:9998"), payload: Buffer.from("pong") });
    emit({ type: "error", from: addr("[::1]:9997"), error: 'no handler for "ping"' });
    emit({ type: "summary", asked: 3, acknowledged: 2, answered: 1, failed: 1, missing: [addr("127.0.0.1:9996")], elapsedMs: 12 });
  }
  readonly queryServer = new Fanout<IncomingQuery>(4, 1);
  readonly responses: string[] = [];
  private served: () => void = () => undefined;
  /** Resolves once a ServeQueries stream is subscribed. */
  readonly serving = new Promise<void>((resolve) => {
    this.served = resolve;
  });
  serveQueries(names: readonly string[]) {
    this.calls.push(`serveQueries ${names.join(",")}`);
    const sub = this.queryServer.subscribe();
    this.served();
    return sub;
  }
  respondQuery(id: bigint, payload: Uint8Array, error: string): void {
    if (id !== 1n) throw new AgentError("UNKNOWN_QUERY", `query ${id} is not waiting for an answer`);
    this.responses.push(error !== "" ? `error ${error}` : Buffer.from(payload).toString());
  }
}

/**
 * A fake agent started on a preset: it builds its protocol config as the real agent does
 * (protocolConfig) and applies a live period with the same rule (periodFields).
 */
class PresetAgent extends FakeAgent {
  config: SwimConfig;
  constructor(readonly preset: PresetName) {
    super();
    const faults = { reapAfterMs: null, reconnectIntervalMs: null, reconnectTimeoutMs: null, maxReconnectTargets: null, flapDamping: true };
    this.config = protocolConfig({ preset, heartbeatMs: null, maxBroadcastBytes: 0, faults } as AgentOptions, 4);
    this.heartbeatMs = this.config.probeIntervalMs;
  }
  override async setHeartbeatMs(ms: number): Promise<void> {
    const period = periodFields(this.config, ms);
    if (!period.ok) throw new AgentError("HEARTBEAT_OUT_OF_RANGE", `heartbeat ${period.problem}, got ${ms}`);
    this.config = { ...this.config, ...period.fields };
    this.heartbeatMs = ms;
  }
}

async function withServer(
  fn: (client: ServiceClient<typeof TamTam.method>, agent: FakeAgent) => Promise<void>,
  agent: FakeAgent = new FakeAgent(),
): Promise<void> {
  const server = new grpc.Server();
  addService(server, TamTam, tamTamService(agent));
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  const client = createClient(TamTam, `127.0.0.1:${port}`, undefined, { defaultTimeoutMs: 5000 });
  try {
    await fn(client, agent);
  } finally {
    client.close();
    server.forceShutdown();
  }
}

/** Every message of a server stream. */
async function collect<T>(stream: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of stream) out.push(item);
  return out;
}

async function rejects(call: Promise<unknown>, code: grpc.status, message: RegExp, agentCode?: string): Promise<void> {
  await assert.rejects(call, (err: grpc.ServiceError) => {
    assert.equal(err.code, code, `status ${err.code} (${err.details})`);
    assert.match(err.details, message);
    assert.ok(!err.details.includes("\n"), "one line");
    if (agentCode !== undefined) assert.equal(err.metadata.get(ERROR_CODE_TRAILER)[0], agentCode);
    return true;
  });
}

describe("TamTam gRPC service", () => {
  test("join and ping report whether the target answered", () =>
    withServer(async (client, agent) => {
      assert.equal((await client.join({ IP: "127.0.0.1", port: 9998 })).code, Response_Code.OK);
      await rejects(client.join({ IP: "127.0.0.1", port: 9000 }), grpc.status.UNAVAILABLE, /did not answer/, "NO_ANSWER");
      assert.equal((await client.ping({ IP: "127.0.0.1", port: 9998 })).code, Response_Code.OK);
      await rejects(client.ping({ IP: "127.0.0.1", port: 9000 }), grpc.status.UNAVAILABLE, /did not answer/);
      assert.deepEqual(agent.calls, ["join 127.0.0.1:9998", "join 127.0.0.1:9000", "ping 127.0.0.1:9998", "ping 127.0.0.1:9000"]);
    }));

  test("bad input gets INVALID_ARGUMENT with a clear message, and reaches no agent method", () =>
    withServer(async (client, agent) => {
      await rejects(client.join({ IP: "300.1.1.1", port: 9998 }), grpc.status.INVALID_ARGUMENT, /"300.1.1.1" is not an IPv4 or IPv6 address/, "INVALID_ADDRESS");
      await rejects(client.join({ IP: "", port: 9998 }), grpc.status.INVALID_ARGUMENT, /not an IPv4 or IPv6/);
      await rejects(client.ping({ IP: "127.0.0.1", port: 0 }), grpc.status.INVALID_ARGUMENT, /port 0 is out of range 1..65535/, "INVALID_PORT");
      await rejects(client.leave({ IP: "::1", port: 70000 }), grpc.status.INVALID_ARGUMENT, /port 70000 is out of range/);
      await rejects(client.join({ IP: "127.0.0.1", port: 9999 }), grpc.status.INVALID_ARGUMENT, /own address/, "SELF_ADDRESS");
      await rejects(client.broadcast({ bytes: new Uint8Array() }), grpc.status.INVALID_ARGUMENT, /at least 1 byte/, "EMPTY_BROADCAST");
      await rejects(client.broadcast({ bytes: new Uint8Array(257) }), grpc.status.INVALID_ARGUMENT, /at most 256 bytes, got 257/, "BROADCAST_TOO_LARGE");
      for (const millis of [0, 9, 600_001, -5]) {
        await rejects(
          client.setHeartbeat({ millis }),
          grpc.status.INVALID_ARGUMENT,
          new RegExp(`^heartbeat must be an integer in 10\\.\\.600000 ms, got ${millis}$`),
          "HEARTBEAT_OUT_OF_RANGE",
        );
      }
      await rejects(client.setLogThreshold({ level: 42 as LogLevel_Level }), grpc.status.INVALID_ARGUMENT, /unknown log level 42/, "UNKNOWN_LOG_LEVEL");
      assert.deepEqual(agent.calls, []);
      assert.equal(agent.heartbeatMs, 500);
    }));

  for (const [preset, own, timeout] of [["wan", 5000, 3000], ["thread", 5000, 2000]] as const) {
    test(`SetHeartbeat on a ${preset} agent accepts the preset's own period (${own} ms) and derives its ${timeout} ms probe timeout`, async () => {
      const agent = new PresetAgent(preset);
      assert.deepEqual([agent.config.probeIntervalMs, agent.config.probeTimeoutMs], [own, timeout], "start-up");
      await withServer(async (client) => {
        assert.equal((await client.setHeartbeat({ millis: 250 })).code, Response_Code.OK);
        assert.deepEqual([agent.config.probeIntervalMs, agent.config.probeTimeoutMs], [250, (250 * timeout) / own]);
        assert.equal((await client.setHeartbeat({ millis: own })).code, Response_Code.OK, "back to its own period");
        assert.deepEqual([agent.config.probeIntervalMs, agent.config.probeTimeoutMs], [own, timeout], "as at start-up");
        await rejects(client.setHeartbeat({ millis: 600_001 }), grpc.status.INVALID_ARGUMENT, /10\.\.600000 ms/, "HEARTBEAT_OUT_OF_RANGE");
        assert.equal(agent.heartbeatMs, own);
      }, agent);
    });
  }

  test("valid settings reach the agent", () =>
    withServer(async (client, agent) => {
      await client.setHeartbeat({ millis: 10 });
      await client.setHeartbeat({ millis: 600_000 });
      await client.setHeartbeat({ millis: 1000 });
      assert.equal(agent.heartbeatMs, 1000);
      await client.setLogThreshold({ level: LogLevel_Level.DEBUG });
      assert.equal(agent.logLevel, "debug");
      await client.broadcast({ bytes: new Uint8Array(256).fill(0x41) });
      await client.leave({ IP: "::1", port: 9997 });
      await client.leaveCluster({});
      assert.deepEqual(agent.calls.slice(1), ["forget [::1]:9997", "leaveCluster"]);
      const stats = await client.stats({});
      assert.equal(stats.counters.datagrams_sent, 12n);
      const local = await client.localAddress({});
      assert.deepEqual([local.IP, local.port], ["127.0.0.1", 9999]);
    }));

  test("key RPCs: validated keys and timeouts, counts per key, failures per member, the primary refused", () =>
    withServer(async (client, agent) => {
      const b64 = (k: Uint8Array): string => Buffer.from(k).toString("base64");
      await rejects(client.installKey({ key: "not-a-key" }), grpc.status.INVALID_ARGUMENT, /^the key must be base64/, "INVALID_KEY");
      await rejects(client.installKey({ key: b64(new Uint8Array(20)) }), grpc.status.INVALID_ARGUMENT, /got 20 bytes/, "INVALID_KEY");
      await rejects(client.listKeys({ timeoutMillis: 99 }), grpc.status.INVALID_ARGUMENT, /100\.\.60000 ms, got 99/, "INVALID_TIMEOUT");
      assert.deepEqual(agent.calls, []);
      const installed = await client.installKey({ key: b64(KEY_B) });
      assert.equal(installed.members, 3);
      assert.equal(installed.confirmed, 2);
      assert.deepEqual(
        installed.keys.map((k) => [k.fingerprint, k.installed, k.primary, k.local]),
        [
          [fingerprint(KEY_A), 2, 2, true],
          [fingerprint(KEY_B), 2, 0, true],
        ],
      );
      assert.deepEqual(installed.failures.map((f) => [f.member?.IP, f.member?.port, f.reason]), [["::1", 9997, "did not answer in time"]]);
      await rejects(client.removeKey({ key: b64(KEY_A) }), grpc.status.FAILED_PRECONDITION, /primary key cannot be removed/, "KEY_IS_PRIMARY");
      await rejects(client.useKey({ key: b64(new Uint8Array(24)) }), grpc.status.FAILED_PRECONDITION, /not installed/, "UNKNOWN_KEY");
      const used = await client.useKey({ key: b64(KEY_B), local: true, timeoutMillis: 2000 });
      assert.deepEqual([used.members, used.confirmed, used.failures.length, used.keys[0]?.fingerprint], [1, 1, 0, fingerprint(KEY_B)]);
      const removed = await client.removeKey({ key: b64(KEY_A) });
      assert.deepEqual(removed.keys.map((k) => k.fingerprint), [fingerprint(KEY_B)]);
      assert.deepEqual(agent.calls, [
        "keys install cluster 5000",
        "keys remove cluster 5000",
        "keys use cluster 5000",
        "keys use local 2000",
        "keys remove cluster 5000",
      ]);
    }));

  test("tag RPCs: set and delete reach the agent and return its tags; a bad or too large change keeps its status code", () =>
    withServer(async (client, agent) => {
      const set = await client.setTags({ tags: { dc: "eu" } });
      assert.deepEqual([set.tags, set.incarnation], [{ role: "web", dc: "eu" }, 8]);
      const deleted = await client.deleteTags({ keys: ["role", "absent"] });
      assert.deepEqual(deleted.tags, { dc: "eu" });
      await rejects(client.setTags({ tags: { "a b": "x" } }), grpc.status.INVALID_ARGUMENT, /white space/, "INVALID_TAG");
      await rejects(client.setTags({ tags: { blob: "x".repeat(300) } }), grpc.status.INVALID_ARGUMENT, /too many bytes/, "TAGS_TOO_LARGE");
      assert.deepEqual(agent.tags, { dc: "eu" }, "a refused change changes nothing");
      // Nodes carry the tags (field 10).
      const self = (await client.nodes({})).nodes.find((n) => n.isSelf);
      assert.deepEqual(self?.tags, { dc: "eu" });
    }));

  test("Query: validated parameters reach the agent; its events stream in order, the summary last", () =>
    withServer(async (client, agent) => {
      await rejects(collect(client.query({ name: "q", timeoutMillis: 50 })), grpc.status.INVALID_ARGUMENT, /100\.\.600000 ms, got 50/, "INVALID_TIMEOUT");
      await rejects(collect(client.query({ name: "q", relay: 6 })), grpc.status.INVALID_ARGUMENT, /0\.\.5, got 6/, "INVALID_QUERY");
      await rejects(collect(client.query({ name: "q", tagFilters: { dc: "(" } })), grpc.status.INVALID_ARGUMENT, /not a regular expression/, "INVALID_TAG");
      await rejects(collect(client.query({ name: "busy" })), grpc.status.RESOURCE_EXHAUSTED, /at most 16/, "ENGINE_BUSY");
      const events = await collect(
        client.query({ name: "ping", payload: Buffer.from("hi"), tagFilters: { dc: "eu.*" }, nodes: [{ IP: "127.0.0.1", port: 9998 }], relay: 2, noAck: true }),
      );
      const q = agent.lastQuery;
      assert.ok(q !== null);
      assert.deepEqual(
        [q.name, Buffer.from(q.payload).toString(), q.filters.map((f) => f.text), q.nodes.map((n) => n.key), q.timeoutMs, q.ack, q.relayCount],
        ["ping", "hi", ["dc=eu.*"], ["127.0.0.1:9998"], 5000, false, 2],
      );
      assert.ok(q.filters[0]?.pattern.test("eu-west") === true && q.filters[0]?.pattern.test("us-eu") === false, "anchored");
      assert.deepEqual(events.map((e) => e.type), ["ack", "response", "error", "summary"]);
      assert.equal(Buffer.from(events[1]?.payload ?? []).toString(), "pong");
      assert.equal(events[2]?.error, 'no handler for "ping"');
      const summary = events[3];
      assert.deepEqual(
        [summary?.asked, summary?.acknowledged, summary?.answered, summary?.failed, summary?.missing.map((m) => m.port), summary?.elapsedMillis],
        [3, 2, 1, 1, [9996], 12],
      );
    }));

  test("ServeQueries hands queries to the program; RespondQuery answers them, NOT_FOUND when none waits", () =>
    withServer(async (client, agent) => {
      const controller = new AbortController();
      const stream = client.serveQueries({ names: ["uptime"] }, { signal: controller.signal });
      const first = (async () => {
        for await (const q of stream) return q;
        return undefined;
      })();
      await agent.serving;
      agent.queryServer.publish({ id: 1n, name: "uptime", payload: Buffer.from("p"), from: addr("127.0.0.1:9998"), timeoutMs: 3000, maxResponseBytes: 1169 });
      const got = await first;
      assert.deepEqual([got?.id, got?.name, got?.from?.port, got?.timeoutMillis, got?.maxResponseBytes], [1n, "uptime", 9998, 3000, 1169]);
      controller.abort();
      await client.respondQuery({ id: 1n, payload: Buffer.from("up 3 days") });
      await client.respondQuery({ id: 1n, error: "boom" });
      assert.deepEqual(agent.responses, ["up 3 days", "error boom"]);
      await rejects(client.respondQuery({ id: 2n }), grpc.status.NOT_FOUND, /not waiting/, "UNKNOWN_QUERY");
    }));

  test("nodes keep the original shape; healthy lists alive and suspected members", () =>
    withServer(async (client) => {
      const nodes = (await client.nodes({})).nodes;
      assert.equal(nodes.length, 5);
      const peer = nodes[1];
      assert.ok(peer !== undefined);
      assert.deepEqual([peer.address?.IP, peer.address?.port, peer.age, peer.emitCounter, peer.pingMillis, peer.status], ["127.0.0.1", 9998, 6024, 3, 2, Status.ALIVE]);
      assert.equal(peer.timestamp, 1234, "epoch ms truncated to 32 bits");
      assert.deepEqual([peer.incarnation, peer.state, peer.isSelf], [7, "alive", false]);
      assert.equal(nodes[0]?.isSelf, true);
      assert.equal(nodes[0]?.pingMillis, -1);
      assert.deepEqual(nodes.map((n) => n.status), [Status.ALIVE, Status.ALIVE, Status.SUSPECTED, Status.DEAD, Status.LEFT]);
      assert.equal(nodes[2]?.address?.IP, "::1");
      const healthy = (await client.healthy({})).nodes;
      assert.deepEqual(healthy.map((n) => n.state), ["alive", "alive", "suspect"]);
    }));

  test("a stream subscriber that stops reading never blocks the others", () =>
    withServer(async (client, agent) => {
      const fast = client.stream({});
      // The slow subscriber is a raw HTTP/2 gRPC call that stops reading: flow control then
      // pushes back on the server, as with a client that stopped reading its socket.
      const target = client.grpcClient.getChannel().getTarget().replace(/^dns:/, "");
      const session = http2.connect(`http://${target}`);
      session.on("error", () => undefined);
      const slow = session.request({
        ":method": "POST",
        ":path": "/service.TamTam/Stream",
        "content-type": "application/grpc",
        te: "trailers",
      });
      slow.on("error", () => undefined);
      slow.end(Buffer.from([0, 0, 0, 0, 0])); // one uncompressed, empty message: Empty {}
      slow.pause();
      try {
        const fastIt = fast[Symbol.asyncIterator]();
        while (agent.broadcasts.subscriberCount < 2) await new Promise((r) => setImmediate(r));
        // Far more bytes than HTTP/2 flow-control windows and socket buffers hold, so the slow
        // reader's transport backs up and its bounded queue must overflow.
        const total = 3000;
        const payload = (i: number): Buffer => Buffer.concat([Buffer.from(`m${i}:`), Buffer.alloc(250, 0x2e)]);
        let last = "";
        for (let i = 0; i < total; i++) {
          agent.broadcasts.publish(payload(i));
          const next = await fastIt.next();
          assert.equal(next.done, false);
          last = Buffer.from(next.value.bytes).subarray(0, 6).toString();
        }
        assert.equal(last, `m${total - 1}:`.slice(0, 6), "the fast reader got every message, in order");
        assert.ok(agent.broadcasts.counters.dropped > 0, "the slow reader's queue overflowed and counted drops instead of growing");
        const first = await new Promise<Buffer>((resolve) => {
          slow.once("data", resolve);
          slow.resume();
        });
        assert.ok(first.length > 0, "the slow reader still gets what was kept");
      } finally {
        fast.cancel();
        slow.close();
        session.destroy();
      }
    }));

  test("too many subscribers are refused with RESOURCE_EXHAUSTED", () =>
    withServer(async (client, agent) => {
      const streams = Array.from({ length: 9 }, () => client.stream({}));
      try {
        const firsts = streams.map((s) => s[Symbol.asyncIterator]().next());
        const refused = await Promise.race(
          firsts.map((p, i) => p.then(() => -1, (err: grpc.ServiceError) => (err.code === grpc.status.RESOURCE_EXHAUSTED ? i : -2))),
        );
        assert.ok(refused >= 0, "one stream is refused first");
        assert.equal(agent.broadcasts.subscriberCount, 8);
        agent.broadcasts.publish(Buffer.from("hello"));
        const results = await Promise.allSettled(firsts);
        assert.equal(results.filter((r) => r.status === "fulfilled").length, 8);
      } finally {
        for (const s of streams) s.cancel();
      }
    }));
});

describe("fan-out", () => {
  test("bounded per-subscriber queues drop the oldest and count, delivery in order", async () => {
    const f = new Fanout<number>(3, 2);
    const a = f.subscribe();
    const b = f.subscribe();
    assert.ok(a !== null && b !== null);
    assert.equal(f.subscribe(), null, "max subscribers");
    for (let i = 0; i < 5; i++) f.publish(i);
    assert.equal(a.dropped, 2);
    const got: number[] = [];
    for (let i = 0; i < 3; i++) got.push((await a.next()).value as number);
    assert.deepEqual(got, [2, 3, 4]);
    const pending = a.next();
    f.publish(9);
    assert.deepEqual(await pending, { value: 9, done: false });
    a.close();
    assert.deepEqual(await a.next(), { value: undefined, done: true });
    assert.equal(f.subscriberCount, 1);
    assert.equal(b.dropped, 3, "b never read: 5 + 1 items into 3 places");
    assert.equal(f.counters.dropped, 5);
  });
});
