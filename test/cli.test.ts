/**
 * Tests of the `tamtam` command line (src/cli): every command against an in-process FAKE agent
 * (a grpc-js server implementing the TamTam service with canned data, recording each call),
 * run (a) through the clipanion Cli object with captured stdin/stdout/stderr/env and (b) a few
 * through the real bin as a child process, for exit codes, stderr one-liners, SIGINT and EPIPE.
 * Output shapes are the original TamTam's; settings precedence is flag > env > file > default.
 */

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough, Readable } from "node:stream";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { LogLevel_Level, Response_Code, Status, TamTam, type NodeSchema } from "../src/gen/service/tamtam_pb.js";
import { RpcError, addService } from "../src/rpc/adapter.js";
import { AgentError } from "../src/api/errors.js";
import { toRpcError } from "../src/rpc/status.js";
import { EXIT, describeError } from "../src/cli/base-command.js";
import { buildCli } from "../src/cli/main.js";
import { AGENT_SETTINGS, GLOBAL_SETTINGS, resolveSettings, type SettingsIO } from "../src/cli/settings.js";
import { agentOptions } from "../src/cli/commands/agent.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url)); // dist/test/ -> repo root
const MAIN = join(ROOT, "dist", "src", "cli", "bin.js");
const UNREACHABLE_RPC = "127.0.0.1:1"; // nothing listens on port 1: connection refused at once
const ANSI = /\x1b\[/;

// ---------------------------------------------------------------------------------------------
// The fake agent

type NodeInit = MessageInitShape<typeof NodeSchema>;

const NODE_PEER: NodeInit = {
  address: { IP: "127.0.0.1", port: 9998 },
  age: 6024,
  emitCounter: 0,
  pingMillis: -1,
  timestamp: 1_700_000_000,
  status: Status.ALIVE,
  incarnation: 3,
  state: "alive",
  isSelf: false,
};
const NODE_SELF: NodeInit = {
  address: { IP: "127.0.0.1", port: 9999 },
  age: 12,
  emitCounter: 2,
  pingMillis: 1,
  status: Status.ALIVE,
  incarnation: 1,
  state: "alive",
  isSelf: true,
};
/** As an older agent reports it: no `state`, so the CLI derives it from the status. */
const NODE_V6: NodeInit = {
  address: { IP: "fd00::7", port: 9999 },
  age: 250,
  emitCounter: 5,
  pingMillis: -2,
  status: Status.SUSPECTED,
  incarnation: 9,
};

interface Call {
  readonly method: string;
  readonly request: Record<string, unknown>;
}

interface FakeAgent {
  readonly rpc: string;
  readonly calls: Call[];
  /** Payloads `Stream` sends before ending (or, with `streamForever`, before ticking). */
  streamPayloads: Uint8Array[];
  /** Keep `Stream` and `Monitor` open, sending a message every 20 ms, until cancelled. */
  streamForever: boolean;
  /** `Nodes` lists tagged members. */
  tagged: boolean;
  close(): Promise<void>;
}

const TAGGED_NODES = [
  { ...NODE_SELF, tags: { role: "web", dc: "eu-west" } },
  { ...NODE_PEER, tags: { role: "db", dc: "eu-west" } },
  { ...NODE_V6, tags: { role: "web", dc: "us-eu" } },
];

const OK = { code: Response_Code.OK };
const FP_A = "sha256:0102030405060708";
const FP_B = "sha256:a1a2a3a4a5a6a7a8";
/** Three members asked, one silent. */
const KEYS_REPLY = {
  members: 3,
  confirmed: 2,
  keys: [
    { fingerprint: FP_A, installed: 2, primary: 2, local: true },
    { fingerprint: FP_B, installed: 1, primary: 0, local: false },
  ],
  failures: [{ member: { IP: "fd00::9", port: 7946 }, reason: "did not answer in time" }],
};
const ERROR = { code: Response_Code.ERROR };
const BROADCAST_LIMIT_BYTES = 256;

async function startFakeAgent(): Promise<FakeAgent> {
  const server = new grpc.Server();
  const calls: Call[] = [];
  const record = (method: string, request: object): void => {
    calls.push({ method, request: { ...(request as Record<string, unknown>) } });
  };
  const fake: Omit<FakeAgent, "rpc" | "close"> = { calls, streamPayloads: [], streamForever: false, tagged: false };
  addService(server, TamTam, {
    join(req) {
      record("join", req);
      return req.IP === "10.9.9.9" ? ERROR : OK; // a seed that "did not answer"
    },
    leave(req) {
      record("leave", req);
      return OK;
    },
    broadcast(req) {
      record("broadcast", req);
      if (req.bytes.length > BROADCAST_LIMIT_BYTES) {
        throw new RpcError(grpc.status.INVALID_ARGUMENT, `message is ${req.bytes.length} bytes, the limit is ${BROADCAST_LIMIT_BYTES}`);
      }
      if (Buffer.from(req.bytes).toString() === "full") throw toRpcError(new AgentError("BROADCAST_QUEUE_FULL", "the broadcast queue is full"));
      return OK;
    },
    async broadcastStream(requests) {
      let accepted = 0n;
      let refused = 0n;
      let firstRefusal = "";
      for await (const req of requests) {
        record("broadcastStream", req);
        if (Buffer.from(req.bytes).toString() === "stuck") {
          throw toRpcError(new AgentError("BROADCAST_QUEUE_FULL", "the broadcast queue stayed full for 30 s"));
        }
        if (req.bytes.length === 0 || req.bytes.length > BROADCAST_LIMIT_BYTES) {
          refused++;
          if (firstRefusal === "") firstRefusal = req.bytes.length === 0 ? "a broadcast needs at least 1 byte" : "too large";
        } else accepted++;
      }
      return { accepted, refused, firstRefusal, queueFullWaits: 3n };
    },
    async *stream(req, ctx) {
      record("stream", req);
      for (const bytes of fake.streamPayloads) yield { bytes };
      for (let i = 0; fake.streamForever && !ctx.signal.aborted; i++) {
        yield { bytes: Buffer.from(`tick ${i}`) };
        await sleep(20, undefined, { signal: ctx.signal }).catch(() => undefined);
      }
    },
    async *monitor(req, ctx) {
      record("monitor", req);
      yield NODE_PEER;
      yield NODE_V6;
      while (fake.streamForever && !ctx.signal.aborted) {
        yield NODE_SELF;
        await sleep(20, undefined, { signal: ctx.signal }).catch(() => undefined);
      }
    },
    nodes(req) {
      record("nodes", req);
      return { nodes: fake.tagged ? TAGGED_NODES : [NODE_V6, NODE_SELF, NODE_PEER] };
    },
    healthy(req) {
      record("healthy", req);
      return { nodes: [NODE_SELF, NODE_PEER] };
    },
    setHeartbeat(req) {
      record("setHeartbeat", req);
      return OK;
    },
    setLogThreshold(req) {
      record("setLogThreshold", req);
      return OK;
    },
    ping(req) {
      record("ping", req);
      return req.port === 9997 ? ERROR : OK; // port 9997: the node does not answer
    },
    localAddress(req) {
      record("localAddress", req);
      return { IP: "127.0.0.1", port: 9999 };
    },
    leaveCluster(req) {
      record("leaveCluster", req);
      return OK;
    },
    stats: () => ({ counters: {} }),
    listKeys(req) {
      record("listKeys", req);
      return KEYS_REPLY;
    },
    installKey(req) {
      record("installKey", req);
      // Acting on the agent only: every member (the agent) confirmed.
      return req.local ? { members: 1, confirmed: 1, keys: [{ fingerprint: FP_A, installed: 1, primary: 1, local: true }] } : KEYS_REPLY;
    },
    useKey(req) {
      record("useKey", req);
      return KEYS_REPLY;
    },
    removeKey(req) {
      record("removeKey", req);
      throw new RpcError(grpc.status.FAILED_PRECONDITION, "the primary key cannot be removed; make another key primary first (keys use)");
    },
    setTags(req) {
      record("setTags", req);
      if ("big" in req.tags) throw new RpcError(grpc.status.INVALID_ARGUMENT, "the tags take 2000 bytes encoded, more than the 1159 that fit");
      return { tags: { dc: "eu", ...req.tags }, incarnation: 12 };
    },
    deleteTags(req) {
      record("deleteTags", req);
      return { tags: { dc: "eu" }, incarnation: 13 };
    },
    async *query(req) {
      record("query", req);
      const peer = { IP: "127.0.0.1", port: 9998 };
      yield { type: "ack", from: peer };
      yield { type: "response", from: peer, payload: Buffer.from("pong\n") };
      yield { type: "error", from: { IP: "fd00::7", port: 9999 }, error: 'no handler for "ping"' };
      const missing = req.name === "partial" ? [{ IP: "10.0.0.9", port: 9999 }] : [];
      yield { type: "summary", asked: 2 + missing.length, acknowledged: 2, answered: 1, failed: 1, missing, elapsedMillis: 7 };
    },
    async *serveQueries(req) {
      record("serveQueries", req);
    },
    respondQuery(req) {
      record("respondQuery", req);
      return OK;
    },
  });
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p)));
  });
  return Object.assign(fake, {
    rpc: `127.0.0.1:${port}`,
    close: () => new Promise<void>((resolve) => server.tryShutdown(() => resolve())),
  });
}

// ---------------------------------------------------------------------------------------------
// Running commands

interface Result {
  readonly code: number;
  readonly stdout: string;
  readonly stdoutBytes: Buffer;
  readonly stderr: string;
}

interface RunOptions {
  readonly env?: Record<string, string>;
  readonly stdin?: string | Buffer;
  /** Pretend stdout is a terminal. */
  readonly tty?: boolean;
}

let emptyHome = ""; // a HOME without a config file, so the developer's ~/.tamtam.yaml never leaks in

/** Runs `tamtam ARGS` in-process with captured streams and an environment of only `env` (+ HOME). */
async function run(args: readonly string[], options: RunOptions = {}): Promise<Result> {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  if (options.tty === true) Object.assign(stdout, { isTTY: true });
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  stdout.on("data", (b: Buffer) => out.push(b));
  stderr.on("data", (b: Buffer) => err.push(b));
  const stdin = Readable.from(options.stdin === undefined ? [] : [Buffer.from(options.stdin)]);
  const env = { HOME: emptyHome, ...options.env };
  const code = await buildCli({ colors: false }).run([...args], { stdin, stdout, stderr, env, colorDepth: 1 });
  const stdoutBytes = Buffer.concat(out);
  return { code, stdout: stdoutBytes.toString("utf8"), stdoutBytes, stderr: Buffer.concat(err).toString("utf8") };
}

/** The environment of a child process: no TAMTAM_* of the developer's, HOME without config. */
function childEnv(extra: Record<string, string> = {}): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith("TAMTAM_")) env[k] = v;
  return { ...env, HOME: emptyHome, NO_COLOR: "1", ...extra };
}

interface Child {
  readonly child: ChildProcess;
  readonly stdout: () => string;
  readonly stderr: () => string;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function startBin(args: readonly string[], env: Record<string, string> = childEnv()): Child {
  const child = spawn(process.execPath, [MAIN, ...args], { env, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout?.setEncoding("utf8").on("data", (s: string) => (stdout += s));
  child.stderr?.setEncoding("utf8").on("data", (s: string) => (stderr += s));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve, reject) => {
    child.once("error", reject);
    child.once("close", (code, signal) => resolve({ code, signal }));
  });
  return { child, stdout: () => stdout, stderr: () => stderr, exited };
}

function killChild(c: Child): void {
  if (c.child.pid !== undefined && c.child.exitCode === null && c.child.signalCode === null) c.child.kill("SIGKILL");
}

async function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: timed out after ${ms} ms`)), ms))),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Runs the real bin to completion (killed in a finally). */
async function runBin(args: readonly string[], env?: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const c = startBin(args, env);
  try {
    const { code } = await withTimeout(c.exited, 15_000, `tamtam ${args.join(" ")}`);
    return { code, stdout: c.stdout(), stderr: c.stderr() };
  } finally {
    killChild(c);
  }
}

/** Asserts a failure: the exit code, exactly one line on stderr (no stack), nothing on stdout. */
function assertOneLineError(r: { code: number | null; stdout: string; stderr: string }, code: number, pattern: RegExp): void {
  assert.equal(r.code, code, `exit code; stderr: ${r.stderr}`);
  assert.equal(r.stdout, "", "nothing on stdout");
  assert.match(r.stderr, /^tamtam: [^\n]+\n$/, `one line on stderr, got: ${JSON.stringify(r.stderr)}`);
  assert.match(r.stderr, pattern);
  assert.doesNotMatch(r.stderr, /\n\s+at /, "no stack trace");
}

let agent: FakeAgent;
const tempDirs: string[] = [];

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "tamtam-cli-"));
  tempDirs.push(dir);
  return dir;
}

before(async () => {
  emptyHome = tempDir();
  agent = await startFakeAgent();
});

after(async () => {
  await agent.close();
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
});

/** Calls the fake agent received during `fn`. */
async function callsDuring<T>(fn: () => Promise<T>): Promise<{ result: T; calls: Call[] }> {
  const start = agent.calls.length;
  const result = await fn();
  return { result, calls: agent.calls.slice(start) };
}

// ---------------------------------------------------------------------------------------------
// Commands: output shapes as the original

describe("commands against a fake agent", () => {
  test("join prints `Host was joined.` and sends the address (IPv4 and IPv6)", async () => {
    const { result, calls } = await callsDuring(() => run(["--rpc", agent.rpc, "join", "127.0.0.1:9998"]));
    assert.deepEqual(result, { code: 0, stdout: "Host was joined.\n", stdoutBytes: Buffer.from("Host was joined.\n"), stderr: "" });
    assert.deepEqual(calls.map((c) => [c.method, c.request.IP, c.request.port]), [["join", "127.0.0.1", 9998]]);

    const v6 = await callsDuring(() => run(["join", "--rpc", agent.rpc, "[::1]:9998"]));
    assert.equal(v6.result.stdout, "Host was joined.\n");
    assert.deepEqual(v6.calls.map((c) => [c.request.IP, c.request.port]), [["::1", 9998]]);
  });

  test("join: an ERROR response is a one-line failure with exit 1", async () => {
    const r = await run(["--rpc", agent.rpc, "join", "10.9.9.9:9999"]);
    assertOneLineError(r, EXIT.FAILED, /^tamtam: the agent could not join 10\.9\.9\.9:9999\n$/);
  });

  test("leave ADDR:PORT prints `Host was left.`; leave --self calls LeaveCluster", async () => {
    const peer = await callsDuring(() => run(["--rpc", agent.rpc, "leave", "127.0.0.1:9998"]));
    assert.equal(peer.result.code, 0);
    assert.equal(peer.result.stdout, "Host was left.\n");
    assert.deepEqual(peer.calls.map((c) => [c.method, c.request.IP, c.request.port]), [["leave", "127.0.0.1", 9998]]);

    const self = await callsDuring(() => run(["--rpc", agent.rpc, "leave", "--self"]));
    assert.equal(self.result.code, 0);
    assert.equal(self.result.stdout, "The agent left the cluster.\n");
    assert.deepEqual(self.calls.map((c) => c.method), ["leaveCluster"]);
  });

  test("leave with neither or both of ADDR:PORT and --self is a usage error, no RPC", async () => {
    const neither = await callsDuring(() => run(["--rpc", agent.rpc, "leave"]));
    assertOneLineError(neither.result, EXIT.USAGE, /leave needs ADDR:PORT .* or --self/);
    const both = await callsDuring(() => run(["--rpc", agent.rpc, "leave", "--self", "127.0.0.1:9998"]));
    assertOneLineError(both.result, EXIT.USAGE, /either ADDR:PORT or --self/);
    assert.deepEqual([...neither.calls, ...both.calls], []);
  });

  test("broadcast MESSAGE prints `broadcast message was send: MESSAGE`", async () => {
    const { result, calls } = await callsDuring(() => run(["--rpc", agent.rpc, "broadcast", "Hello world!"]));
    assert.equal(result.code, 0);
    assert.equal(result.stdout, "broadcast message was send: Hello world!\n");
    assert.equal(Buffer.from(calls[0]?.request.bytes as Uint8Array).toString(), "Hello world!");
  });

  test("broadcast --base64 decodes the argument", async () => {
    const { result, calls } = await callsDuring(() => run(["--rpc", agent.rpc, "broadcast", "--base64", "AAECAw=="]));
    assert.equal(result.code, 0);
    assert.equal(result.stdout, "broadcast message was send: AAECAw==\n");
    assert.deepEqual([...(calls[0]?.request.bytes as Uint8Array)], [0, 1, 2, 3]);
  });

  test("broadcast without MESSAGE reads stdin to EOF (one trailing newline dropped)", async () => {
    const text = await callsDuring(() => run(["--rpc", agent.rpc, "broadcast"], { stdin: "line one\nline two\n" }));
    assert.equal(text.result.code, 0);
    assert.equal(text.result.stdout, "broadcast message was send: line one\nline two\n");
    assert.equal(Buffer.from(text.calls[0]?.request.bytes as Uint8Array).toString(), "line one\nline two");

    const b64 = await callsDuring(() => run(["--rpc", agent.rpc, "broadcast", "--base64"], { stdin: "/wAK\n" }));
    assert.equal(b64.result.code, 0);
    assert.deepEqual([...(b64.calls[0]?.request.bytes as Uint8Array)], [0xff, 0x00, 0x0a]);
  });

  test("broadcast: empty message and bad base64 are one-line usage errors, no RPC", async () => {
    const { calls, result } = await callsDuring(async () => [
      await run(["--rpc", agent.rpc, "broadcast"], { stdin: "" }),
      await run(["--rpc", agent.rpc, "broadcast"], { stdin: "\n" }),
      await run(["--rpc", agent.rpc, "broadcast", ""]),
      await run(["--rpc", agent.rpc, "broadcast", "--base64", "abc"]),
      await run(["--rpc", agent.rpc, "broadcast", "--base64", "!!!!"]),
      await run(["--rpc", agent.rpc, "broadcast", "--base64"], { stdin: "not base64 at all" }),
    ]);
    const [empty, newline, emptyArg, short, bad, badStdin] = result;
    for (const r of [empty, newline, emptyArg]) assertOneLineError(r as Result, EXIT.USAGE, /^tamtam: the broadcast message is empty\n$/);
    for (const r of [short, bad, badStdin]) assertOneLineError(r as Result, EXIT.USAGE, /not valid base64/);
    assert.deepEqual(calls, []);
  });

  test("broadcast over the agent's limit: the agent's INVALID_ARGUMENT message, exit 2", async () => {
    const r = await run(["--rpc", agent.rpc, "broadcast", "x".repeat(300)]);
    assertOneLineError(r, EXIT.USAGE, /^tamtam: the agent rejected the request: message is 300 bytes, the limit is 256\n$/);
  });

  test("broadcast into a full queue: one line, exit 5", async () => {
    const r = await run(["--rpc", agent.rpc, "broadcast", "full"]);
    assertOneLineError(r, EXIT.BUSY, /^tamtam: the agent is overloaded: the broadcast queue is full\n$/);
  });

  test("broadcast --lines streams one broadcast per line (LF and CRLF) and reports accepted and refused", async () => {
    const good = await callsDuring(() => run(["--rpc", agent.rpc, "broadcast", "--lines"], { stdin: "one\r\ntwo\nthree" }));
    assert.equal(good.result.code, EXIT.OK, good.result.stderr);
    assert.equal(good.result.stdout, "broadcast: 3 accepted; waited 3 times for room in the agent's broadcast queue\n");
    assert.deepEqual(good.calls.map((c) => [c.method, Buffer.from(c.request.bytes as Uint8Array).toString()]), [
      ["broadcastStream", "one"],
      ["broadcastStream", "two"],
      ["broadcastStream", "three"],
    ]);

    const many = Array.from({ length: 2000 }, (_, i) => `line ${i}`);
    const bulk = await callsDuring(() => run(["--rpc", agent.rpc, "broadcast", "--lines"], { stdin: `${many.join("\n")}\n` }));
    assert.equal(bulk.result.code, EXIT.OK, bulk.result.stderr);
    assert.match(bulk.result.stdout, /^broadcast: 2000 accepted/);
    assert.deepEqual(bulk.calls.map((c) => Buffer.from(c.request.bytes as Uint8Array).toString()), many);

    const mixed = await run(["--rpc", agent.rpc, "broadcast", "--lines"], { stdin: `a\n\n${"x".repeat(300)}\nb\n` });
    assert.equal(mixed.code, EXIT.FAILED);
    assert.equal(mixed.stdout, "broadcast: 2 accepted, 2 refused (first: a broadcast needs at least 1 byte); waited 3 times for room in the agent's broadcast queue\n");

    const b64 = await callsDuring(() => run(["--rpc", agent.rpc, "broadcast", "--lines", "--base64"], { stdin: "AAECAw==\n/wAK\n" }));
    assert.equal(b64.result.code, EXIT.OK);
    assert.deepEqual(b64.calls.map((c) => [...(c.request.bytes as Uint8Array)]), [[0, 1, 2, 3], [0xff, 0x00, 0x0a]]);
  });

  test("broadcast --lines: a queue that stays full is exit 5; bad input is a usage error", async () => {
    const stuck = await run(["--rpc", agent.rpc, "broadcast", "--lines"], { stdin: "a\nstuck\nb\n" });
    assertOneLineError(stuck, EXIT.BUSY, /^tamtam: the agent is overloaded: the broadcast queue stayed full for 30 s\n$/);
    const withMessage = await run(["--rpc", agent.rpc, "broadcast", "--lines", "hello"]);
    assertOneLineError(withMessage, EXIT.USAGE, /^tamtam: --lines reads standard input; give no MESSAGE with it\n$/);
    const badBase64 = await run(["--rpc", agent.rpc, "broadcast", "--lines", "--base64"], { stdin: "AAECAw==\nnot base64\n" });
    assertOneLineError(badBase64, EXIT.USAGE, /^tamtam: --base64: line 2 of standard input is not valid base64\n$/);
    const long = await run(["--rpc", agent.rpc, "broadcast", "--lines"], { stdin: `ok\n${"z".repeat(70_000)}\n` });
    assertOneLineError(long, EXIT.USAGE, /^tamtam: line 2 of standard input is longer than 65536 bytes\n$/);
  });

  test("stream prints one line per message; --encoding base64 and bytes", async () => {
    agent.streamPayloads = [Buffer.from("Hello world!"), Buffer.from("second"), Buffer.from([0xff, 0x00, 0x0a])];
    try {
      const text = await run(["--rpc", agent.rpc, "stream"]);
      assert.equal(text.code, 0);
      assert.equal(text.stdout, "Hello world!\nsecond\n\ufffd\u0000\n\n");

      const b64 = await run(["--rpc", agent.rpc, "stream", "--encoding", "base64"]);
      assert.equal(b64.code, 0);
      assert.equal(b64.stdout, "SGVsbG8gd29ybGQh\nc2Vjb25k\n/wAK\n");

      const raw = await run(["--rpc", agent.rpc, "stream", "--encoding", "bytes"]);
      assert.equal(raw.code, 0);
      assert.deepEqual(raw.stdoutBytes, Buffer.concat([Buffer.from("Hello world!second"), Buffer.from([0xff, 0x00, 0x0a])]));

      const bad = await callsDuring(() => run(["--rpc", agent.rpc, "stream", "--encoding", "hex"]));
      assertOneLineError(bad.result, EXIT.USAGE, /--encoding must be one of string, base64, bytes, got "hex"/);
      assert.deepEqual(bad.calls, []);
    } finally {
      agent.streamPayloads = [];
    }
  });

  test("tags set and delete print the agent's tags (sorted), or one JSON object", async () => {
    const set = await callsDuring(() => run(["--rpc", agent.rpc, "tags", "set", "role=web", "note=a=b,c", "empty="]));
    assert.equal(set.result.code, 0, set.result.stderr);
    assert.equal(set.result.stdout, "dc=eu\nempty=\nnote=a=b,c\nrole=web\n");
    assert.deepEqual(set.calls[0]?.request.tags, { role: "web", note: "a=b,c", empty: "" });
    const del = await callsDuring(() => run(["--rpc", agent.rpc, "tags", "delete", "role", "note", "--json"]));
    assert.equal(del.result.code, 0);
    assert.deepEqual(JSON.parse(del.result.stdout), { tags: { dc: "eu" }, incarnation: 13 });
    assert.deepEqual(del.calls[0]?.request.keys, ["role", "note"]);
    const big = await run(["--rpc", agent.rpc, "tags", "set", "big=x"]);
    assertOneLineError(big, EXIT.USAGE, /^tamtam: the agent rejected the request: the tags take 2000 bytes encoded/);
  });

  test("nodes with tags: a TAGS column, tags in --json, --tag filters (anchored, all must match)", async () => {
    agent.tagged = true;
    try {
      const table = await run(["--rpc", agent.rpc, "nodes"]);
      assert.equal(
        table.stdout,
        [
          "NODE              AGE   EMIT #  MILLIS  STATUS     TAGS",
          "[127.0.0.1]:9998  6024  0       -1      ALIVE      dc=eu-west,role=db",
          "[127.0.0.1]:9999  12    2       1       ALIVE      dc=eu-west,role=web",
          "[fd00::7]:9999    250   5       -2      SUSPECTED  dc=us-eu,role=web",
          "",
        ].join("\n"),
      );
      const web = await run(["--rpc", agent.rpc, "nodes", "--tag", "role=web", "--tag", "dc=eu.*", "--json"]);
      const nodes = (JSON.parse(web.stdout) as { nodes: { address: string; tags: Record<string, string> }[] }).nodes;
      assert.deepEqual(nodes.map((n) => [n.address, n.tags]), [["127.0.0.1:9999", { role: "web", dc: "eu-west" }]]);
      const none = await run(["--rpc", agent.rpc, "nodes", "--tag", "role=we"]);
      assert.equal(none.stdout, "NODE  AGE  EMIT #  MILLIS  STATUS\n", "anchored: we does not match web");
    } finally {
      agent.tagged = false;
    }
  });

  test("query prints acks, responses and errors as they come, then the summary; --json one object per line", async () => {
    const text = await callsDuring(() =>
      run(["--rpc", agent.rpc, "query", "ping", "hello", "--tag", "role=web", "--node", "127.0.0.1:9998", "--timeout", "2000", "--relay", "2", "--no-ack"]),
    );
    assert.equal(text.result.code, 1, "a member answered with an error");
    assert.equal(
      text.result.stdout,
      [
        "ack from 127.0.0.1:9998",
        "response from 127.0.0.1:9998: pong",
        'error from [fd00::7]:9999: no handler for "ping"',
        "asked 2, acknowledged 2, answered 1, failed 1, missing 0 (7 ms)",
        "",
      ].join("\n"),
    );
    const req = text.calls[0]?.request as { name: string; payload: Uint8Array; tagFilters: Record<string, string>; nodes: { IP: string; port: number }[]; timeoutMillis: number; noAck: boolean; relay: number };
    assert.deepEqual(
      [req.name, Buffer.from(req.payload).toString(), req.tagFilters, req.nodes.map((n) => `${n.IP}:${n.port}`), req.timeoutMillis, req.noAck, req.relay],
      ["ping", "hello", { role: "web" }, ["127.0.0.1:9998"], 2000, true, 2],
    );
    const json = await run(["--rpc", agent.rpc, "query", "partial", "--json"]);
    assert.equal(json.code, 1);
    const lines = json.stdout.trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.deepEqual(lines[1], { type: "response", from: "127.0.0.1:9998", payload: "pong" });
    assert.deepEqual(lines[3], { type: "summary", asked: 3, acknowledged: 2, answered: 1, failed: 1, missing: ["10.0.0.9:9999"], elapsedMs: 7 });
    const textPartial = await run(["--rpc", agent.rpc, "query", "partial"]);
    assert.match(textPartial.stdout, /missing 1 \(7 ms\)\n10\.0\.0\.9:9999 did not answer\n$/);
  });

  test("nodes prints the aligned table, sorted by address", async () => {
    const r = await run(["--rpc", agent.rpc, "nodes"]);
    assert.equal(r.code, 0);
    assert.equal(
      r.stdout,
      [
        "NODE              AGE   EMIT #  MILLIS  STATUS",
        "[127.0.0.1]:9998  6024  0       -1      ALIVE",
        "[127.0.0.1]:9999  12    2       1       ALIVE",
        "[fd00::7]:9999    250   5       -2      SUSPECTED",
        "",
      ].join("\n"),
    );
    // The original's row shape, whitespace aside.
    assert.match(r.stdout, /^\[127\.0\.0\.1\]:9998\s+6024\s+0\s+-1\s+ALIVE$/m);
  });

  test("nodes --json and healthy --json print {\"nodes\":[...]}", async () => {
    const r = await run(["--rpc", agent.rpc, "nodes", "--json"]);
    assert.equal(r.code, 0);
    assert.equal(r.stdout.split("\n").length, 2, "one line");
    assert.deepEqual(JSON.parse(r.stdout), {
      nodes: [
        {
          address: "127.0.0.1:9998", ip: "127.0.0.1", port: 9998, ageMs: 6024, emitCounter: 0, pingMillis: -1,
          status: "ALIVE", state: "alive", incarnation: 3, self: false,
          damped: false, flapPenalty: 0, flaps: 0, dampedForMs: 0, tags: {},
        },
        {
          address: "127.0.0.1:9999", ip: "127.0.0.1", port: 9999, ageMs: 12, emitCounter: 2, pingMillis: 1,
          status: "ALIVE", state: "alive", incarnation: 1, self: true,
          damped: false, flapPenalty: 0, flaps: 0, dampedForMs: 0, tags: {},
        },
        {
          address: "[fd00::7]:9999", ip: "fd00::7", port: 9999, ageMs: 250, emitCounter: 5, pingMillis: -2,
          status: "SUSPECTED", state: "suspect", incarnation: 9, self: false,
          damped: false, flapPenalty: 0, flaps: 0, dampedForMs: 0, tags: {},
        },
      ],
    });
    const h = await run(["--rpc", agent.rpc, "healthy", "--json"]);
    assert.equal(h.code, 0);
    const healthy = JSON.parse(h.stdout) as { nodes: Array<{ address: string }> };
    assert.deepEqual(healthy.nodes.map((n) => n.address), ["127.0.0.1:9998", "127.0.0.1:9999"]);
  });

  test("healthy prints the table of the healthy nodes", async () => {
    const { result, calls } = await callsDuring(() => run(["--rpc", agent.rpc, "healthy"]));
    assert.equal(result.code, 0);
    assert.equal(
      result.stdout,
      [
        "NODE              AGE   EMIT #  MILLIS  STATUS",
        "[127.0.0.1]:9998  6024  0       -1      ALIVE",
        "[127.0.0.1]:9999  12    2       1       ALIVE",
        "",
      ].join("\n"),
    );
    assert.deepEqual(calls.map((c) => c.method), ["healthy"]);
  });

  test("monitor prints a header and one row per change; --json one object per line", async () => {
    const r = await run(["--rpc", agent.rpc, "monitor"]);
    assert.equal(r.code, 0);
    assert.equal(
      r.stdout,
      [
        "NODE                     AGE     EMIT #  MILLIS  STATUS",
        "[127.0.0.1]:9998         6024    0       -1      ALIVE",
        "[fd00::7]:9999           250     5       -2      SUSPECTED",
        "",
      ].join("\n"),
    );
    const j = await run(["--rpc", agent.rpc, "monitor", "--json"]);
    assert.equal(j.code, 0);
    const lines = j.stdout.trimEnd().split("\n").map((l) => JSON.parse(l) as { address: string; state: string });
    assert.deepEqual(lines.map((n) => [n.address, n.state]), [["127.0.0.1:9998", "alive"], ["[fd00::7]:9999", "suspect"]]);
  });

  test("ping prints `Send a ping message to node ADDR:PORT`; no answer is exit 1", async () => {
    const ok = await callsDuring(() => run(["--rpc", agent.rpc, "ping", "127.0.0.1:9998"]));
    assert.deepEqual([ok.result.code, ok.result.stdout, ok.result.stderr], [0, "Send a ping message to node 127.0.0.1:9998\n", ""]);
    assert.deepEqual(ok.calls.map((c) => [c.method, c.request.IP, c.request.port]), [["ping", "127.0.0.1", 9998]]);

    const silent = await run(["--rpc", agent.rpc, "ping", "127.0.0.1:9997"]);
    assert.equal(silent.code, EXIT.FAILED);
    assert.equal(silent.stdout, "Send a ping message to node 127.0.0.1:9997\n");
    assert.equal(silent.stderr, "tamtam: node 127.0.0.1:9997 did not answer the ping\n");
  });

  test("keys: counts per key, one line per member that did not confirm and exit 1; --local, --json, --timeout", async () => {
    const key = Buffer.alloc(32, 7).toString("base64");
    const { result: list, calls: listCalls } = await callsDuring(() => run(["--rpc", agent.rpc, "keys", "list"]));
    assert.equal(list.code, EXIT.FAILED);
    assert.equal(
      list.stdout,
      `2 of 3 members confirmed\n${FP_A}  installed on 2 of 2, primary on 2\n${FP_B}  installed on 1 of 2 (not on this agent)\n`,
    );
    assert.equal(list.stderr, "[fd00::9]:7946 did not confirm: did not answer in time\n");
    const { result: local, calls: localCalls } = await callsDuring(() => run(["--rpc", agent.rpc, "keys", "install", key, "--local", "--timeout", "2000"]));
    assert.deepEqual([local.code, local.stdout, local.stderr], [0, `1 of 1 members confirmed\n${FP_A}  installed on 1 of 1, primary on 1\n`, ""]);
    const { result: json, calls: useCalls } = await callsDuring(() => run(["--rpc", agent.rpc, "keys", "use", key, "--json"]));
    assert.equal(json.code, EXIT.FAILED);
    assert.deepEqual(JSON.parse(json.stdout).failures, [{ member: "[fd00::9]:7946", reason: "did not answer in time" }]);
    assert.equal(JSON.parse(json.stdout).keys[0].installed, 2);
    const { result: removed, calls: removeCalls } = await callsDuring(() => run(["--rpc", agent.rpc, "keys", "remove", key]));
    assert.equal(removed.code, EXIT.FAILED);
    assert.match(removed.stderr, /primary key cannot be removed/);
    const { result: bad, calls: badCalls } = await callsDuring(() => run(["--rpc", agent.rpc, "keys", "list", "--timeout", "5"]));
    assert.equal(bad.code, EXIT.USAGE);
    assert.deepEqual(badCalls, []);
    const summary = [...listCalls, ...localCalls, ...useCalls, ...removeCalls].map((c) => [
      c.method,
      c.request.local,
      c.request.timeoutMillis,
      c.request.key === key ? "KEY" : "",
    ]);
    assert.deepEqual(summary, [
      ["listKeys", false, 0, ""],
      ["installKey", true, 2000, "KEY"],
      ["useKey", false, 0, "KEY"],
      ["removeKey", false, 0, "KEY"],
    ]);
  });

  test("address prints `The local address of the agent is: [IP]:PORT`", async () => {
    const r = await run(["--rpc", agent.rpc, "address"]);
    assert.deepEqual([r.code, r.stdout, r.stderr], [0, "The local address of the agent is: [127.0.0.1]:9999\n", ""]);
  });

  test("configure heartbeat MS and configure threshold LEVEL", async () => {
    const hb = await callsDuring(() => run(["--rpc", agent.rpc, "configure", "heartbeat", "250"]));
    assert.deepEqual([hb.result.code, hb.result.stdout], [0, "Heartbeat was set to 250 ms.\n"]);
    assert.deepEqual(hb.calls.map((c) => [c.method, c.request.millis]), [["setHeartbeat", 250]]);

    const th = await callsDuring(() => run(["--rpc", agent.rpc, "configure", "threshold", "DEBUG"]));
    assert.deepEqual([th.result.code, th.result.stdout], [0, "Log threshold was set to debug.\n"]);
    assert.deepEqual(th.calls.map((c) => [c.method, c.request.level]), [["setLogThreshold", LogLevel_Level.DEBUG]]);
  });

  test("version prints version, build time and git hash; --version the version", async () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { version: string };
    const r = await run(["version"]);
    assert.equal(r.code, 0);
    assert.match(r.stdout, new RegExp(`^version: ${pkg.version.replace(/\./g, "\\.")}\nbuild time: .+\ngit hash: .+\n$`));
    const v = await run(["--version"]);
    assert.equal(v.stdout, `${pkg.version}\n`);
  });

  test("gendoc writes one Markdown file per command", async () => {
    const dir = join(tempDir(), "docs");
    const r = await run(["gendoc", dir]);
    assert.equal(r.code, 0, r.stderr);
    const files = readdirSync(dir).sort();
    const documented = buildCli({ colors: false }).definitions().length;
    assert.equal(files.length, documented);
    for (const name of ["tamtam_agent.md", "tamtam_join.md", "tamtam_configure_heartbeat.md", "tamtam_stream.md", "tamtam_gendoc.md"]) {
      assert.ok(files.includes(name), `${name} in ${files.join(", ")}`);
    }
    const join_ = readFileSync(join(dir, "tamtam_join.md"), "utf8");
    assert.match(join_, /^# tamtam join\n/);
    assert.match(join_, /## Usage\n\n```\ntamtam join .*<ADDR:PORT>\n```/);
    assert.match(join_, /\| `--rpc #0` \| The RPC address the agent binds to/);
    assert.match(join_, /## Examples\n/);
    const agentDoc = readFileSync(join(dir, "tamtam_agent.md"), "utf8");
    assert.match(agentDoc, /\| `-p,--port #0` \| UDP port of the gossip protocol \(default 9999\) \|/);
    assert.doesNotMatch(agentDoc, ANSI);
  });

  test("--help works on every command and the top level", async () => {
    const top = await run(["--help"]);
    assert.equal(top.code, 0);
    for (const path of ["agent", "join", "leave", "broadcast", "stream", "monitor", "nodes", "healthy", "ping", "address", "configure heartbeat", "configure threshold", "version", "gendoc", "simulate"]) {
      assert.ok(top.stdout.includes(`tamtam ${path}`), `top-level help lists ${path}`);
      const r = await run([...path.split(" "), "--help"]);
      assert.equal(r.code, 0, path);
      assert.match(r.stdout, new RegExp(`\\$ tamtam ${path}`), path);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Bad input: one line, non-zero exit, no RPC

describe("bad input is refused before any RPC", () => {
  const cases: Array<[string, string[], RegExp]> = [
    ["join: not an address", ["join", "not-an-address"], /^tamtam: "not-an-address" is not an IPv4 or IPv6 address\n$/],
    ["join: no port", ["join", "127.0.0.1"], /has no port/],
    ["join: port 0", ["join", "127.0.0.1:0"], /port 0 is out of range 1\.\.65535/],
    ["join: port 70000", ["join", "127.0.0.1:70000"], /port 70000 is out of range 1\.\.65535/],
    ["leave: bad address", ["leave", "[::1:9998"], /missing "\]"/],
    ["ping: bad address", ["ping", "300.1.1.1:9998"], /not an IPv4 or IPv6 address/],
    ["configure heartbeat 5", ["configure", "heartbeat", "5"], /heartbeat must be an integer in 10\.\.600000 ms, got "5"/],
    ["configure heartbeat 600001", ["configure", "heartbeat", "600001"], /got "600001"/],
    ["configure heartbeat abc", ["configure", "heartbeat", "abc"], /got "abc"/],
    ["configure threshold loud", ["configure", "threshold", "loud"], /log level must be one of all, trace, debug, info, warn, error, fatal, off, got "loud"/],
    ["agent --port 0", ["agent", "--port", "0"], /^tamtam: --port must be in 1\.\.65535, got "0"\n$/],
    ["agent --port 70000", ["agent", "-p", "70000"], /--port must be in 1\.\.65535, got "70000"/],
    ["agent --port abc", ["agent", "-p", "abc"], /--port must be an integer in 1\.\.65535, got "abc"/],
    ["agent --heartbeat 5", ["agent", "--heartbeat", "5"], /--heartbeat must be an integer in 10\.\.600000 ms, got "5"/],
    ["agent --heartbeat 600001", ["agent", "--heartbeat", "600001"], /--heartbeat must be an integer in 10\.\.600000 ms, got "600001"/],
    ["agent --join bad", ["agent", "--join", "127.0.0.1:9998", "--join", "nope:1"], /--join item "nope:1" must be ADDR:PORT/],
    ["agent --preset", ["agent", "--preset", "moon"], /--preset must be one of lan, local, wan, thread, got "moon"/],
    ["agent --workers 9", ["agent", "--workers", "9"], /--workers must be in 0\.\.8, got "9"/],
    ["agent --log-format", ["agent", "--log-format", "xml"], /--log-format must be one of auto, pretty, json/],
    ["agent --bind", ["agent", "--bind", "localhost"], /--bind must be an IPv4 or IPv6 address/],
    ["agent --ipv6 with an IPv4 bind", ["agent", "-6", "--bind", "10.0.0.1"], /--ipv6 conflicts with --bind 10\.0\.0\.1/],
    ["agent --multicast-address", ["agent", "--multicast-address", "10.0.0.1"], /must be a multicast group address/],
    ["agent --advertise", ["agent", "--advertise", "10.0.0.1:0"], /--advertise must be IP or IP:PORT/],
    ["agent --reap-after 5", ["agent", "--reap-after", "5"], /--reap-after must be in 1000\.\.604800000 ms \(or 0: the preset's\), got "5"/],
    ["agent --reconnect-interval 1", ["agent", "--reconnect-interval", "1"], /--reconnect-interval must be in 10\.\.86400000 ms \(or 0: the preset's\), got "1"/],
    ["agent --reconnect-timeout 10", ["agent", "--reconnect-timeout", "10"], /--reconnect-timeout must be in 1000\.\.2592000000 ms \(or 0 to disable\), got "10"/],
    ["agent --reconnect-max -1", ["agent", "--reconnect-max=-1"], /--reconnect-max must be in 0\.\.65536 members, got "-1"/],
    ["agent --snapshot ''", ["agent", "--snapshot", " "], /--snapshot must not be empty/],
    ["--rpc without port", ["nodes", "--rpc", "localhost"], /--rpc must be HOST:PORT/],
    ["unknown flag", ["nodes", "--jsn"], /^tamtam: unsupported option name \("--jsn"\); see `tamtam nodes --help`\n$/],
    ["unknown command", ["nodez"], /^tamtam: unknown command "nodez"/],
    ["missing argument", ["join"], /not enough positional arguments; see `tamtam join --help`/],
    ["extra argument", ["ping", "127.0.0.1:1", "127.0.0.1:2"], /extraneous positional argument/],
    ["agent --tag without =", ["agent", "--tag", "role"], /^tamtam: --tag item "role" must be KEY=VALUE \(a tag is KEY=VALUE, got "role"\)\n$/],
    ["agent --tag empty key", ["agent", "--tag", "=web"], /--tag item "=web" must be KEY=VALUE \(a tag key cannot be empty\)/],
    ["agent --query-handler bad name", ["agent", "--query-handler", "up time=uptime"], /--query-handler item "up time=uptime" must be NAME=COMMAND/],
    ["agent --query-handler twice", ["agent", "--query-handler", "a=x", "--query-handler", "a=y"], /--query-handler: two handlers for the query "a"/],
    ["agent --query-handler-timeout 5", ["agent", "--query-handler-timeout", "5"], /--query-handler-timeout must be in 10\.\.600000 \(ms\), got "5"/],
    ["tags set without =", ["tags", "set", "role"], /^tamtam: tags set: a tag is KEY=VALUE, got "role"\n$/],
    ["tags delete bad key", ["tags", "delete", "a b"], /tags delete: a tag key has no "=" and no white space/],
    ["tags set nothing", ["tags", "set"], /not enough positional arguments/],
    ["nodes --tag bad regexp", ["nodes", "--tag", "dc=("], /^tamtam: --tag: the tag filter dc=\( is not a regular expression/],
    ["nodes --tag without =", ["nodes", "--tag", "dc"], /--tag: a tag is KEY=REGEXP, got "dc"/],
    ["query bad name", ["query", "no/slash"], /a query name is letters, digits and \. _ : - only, got "no\/slash"/],
    ["query --timeout 50", ["query", "q", "--timeout", "50"], /--timeout must be an integer in 100\.\.600000, got "50"/],
    ["query --relay 6", ["query", "q", "--relay", "6"], /--relay must be an integer in 0\.\.5, got "6"/],
    ["query --node bad", ["query", "q", "--node", "nope"], /not an IPv4 or IPv6 address/],
    ["query --tag bad", ["query", "q", "--tag", "role=[" ], /the tag filter role=\[ is not a regular expression/],
  ];
  for (const [name, args, pattern] of cases) {
    test(name, async () => {
      const rpc = args.includes("--rpc") ? [] : ["--rpc", agent.rpc];
      const { result, calls } = await callsDuring(() => run([...rpc, ...args]));
      assertOneLineError(result, EXIT.USAGE, pattern);
      assert.deepEqual(calls, [], "no RPC made");
    });
  }
});

// ---------------------------------------------------------------------------------------------
// Unreachable agent and the status table

describe("agent errors", () => {
  test("an unreachable agent is one line and exit 3, for unary and streaming commands", async () => {
    for (const args of [["nodes"], ["join", "127.0.0.1:9998"], ["stream"], ["monitor", "--json"]]) {
      const r = await run(["--rpc", UNREACHABLE_RPC, ...args]);
      assertOneLineError(r, EXIT.UNREACHABLE, /^tamtam: cannot reach the agent at 127\.0\.0\.1:1 \(is `tamtam agent` running\?\)\n$/);
    }
  });

  test("--verbose adds the gRPC status; --trace adds the stack", async () => {
    const v = await run(["--rpc", UNREACHABLE_RPC, "--verbose", "nodes"]);
    assert.equal(v.code, EXIT.UNREACHABLE);
    assert.match(v.stderr, /^tamtam: cannot reach the agent .*\ntamtam: gRPC status UNAVAILABLE: .*\n$/);
    const t = await run(["--rpc", UNREACHABLE_RPC, "--trace", "nodes"]);
    assert.match(t.stderr, /\n\s+at /);
  });

  test("every gRPC status maps to one line and an exit code", () => {
    const rpc = "localhost:6262";
    const status = (code: grpc.status, details = "") => ({ code, details, message: `${code} ${details}`, metadata: new grpc.Metadata() });
    assert.deepEqual(describeError(status(grpc.status.UNAVAILABLE, "No connection established"), rpc), {
      message: "cannot reach the agent at localhost:6262 (is `tamtam agent` running?)",
      exitCode: EXIT.UNREACHABLE,
    });
    assert.deepEqual(describeError(status(grpc.status.DEADLINE_EXCEEDED, "Deadline exceeded"), rpc), {
      message: "the agent at localhost:6262 did not answer in time",
      exitCode: EXIT.TIMEOUT,
    });
    assert.deepEqual(describeError(status(grpc.status.INVALID_ARGUMENT, "heartbeat must be positive"), rpc), {
      message: "the agent rejected the request: heartbeat must be positive",
      exitCode: EXIT.USAGE,
    });
    assert.equal(describeError(status(grpc.status.UNIMPLEMENTED), rpc).message, "the agent at localhost:6262 does not support this command (an older agent?)");
    assert.equal(describeError(status(grpc.status.INTERNAL, "boom\nsecond line"), rpc).message, "the agent failed: boom");
    for (let code = 1; code <= 16; code++) {
      const d = describeError(status(code, "x"), rpc);
      assert.ok(d.exitCode > 0 && !d.message.includes("\n"), `status ${code}`);
    }
    assert.equal(describeError(new Error("bug\nmore"), rpc).message, "internal error: bug (run with --trace for details)");
  });
});

// ---------------------------------------------------------------------------------------------
// Settings: flag > env > file > default

function memoryIO(files: Record<string, string>, env: Record<string, string> = {}, homeDir: string | null = "/home/u"): SettingsIO {
  return { env, homeDir, readFile: (path) => files[path] ?? null };
}

describe("settings", () => {
  test("defaults", () => {
    const s = resolveSettings(AGENT_SETTINGS, {}, undefined, memoryIO({}));
    assert.equal(s.configFile, null);
    assert.deepEqual(
      [s.values.rpc, s.values.verbose, s.values.trace, s.values.nobanner, s.values.port, s.values.bind, s.values.heartbeatMs],
      ["localhost:6262", false, false, false, 9999, "0.0.0.0", 500],
    );
    assert.deepEqual(
      [s.values.maxBroadcastBytes, s.values.clusterName, s.values.multicastIntervalSeconds, s.values.multicastPort, s.values.preset, s.values.workers],
      [0, "tamtam", 10, 9998, "lan", 2],
    );
    assert.deepEqual([s.values.iface, s.values.advertise, s.values.multicastAddress, s.values.join, s.values.logFormat], [null, null, null, [], "auto"]);
    assert.equal(s.sources.rpc, "default");
  });

  test("flag > env > file > default, key by key", () => {
    const io = memoryIO(
      { "/home/u/.tamtam.yaml": "rpc: file:1\nverbose: true\nnobanner: true\ntrace: false\nport: 7000\nheartbeat: 100\njoin: [10.0.0.1:9999]\n" },
      { TAMTAM_RPC: "env:2", TAMTAM_TRACE: "yes", TAMTAM_PORT: "7001", TAMTAM_NOBANNER: "off" },
    );
    const s = resolveSettings(AGENT_SETTINGS, { rpc: "flag:3", heartbeatMs: "200" }, undefined, io);
    assert.equal(s.configFile, "/home/u/.tamtam.yaml");
    assert.deepEqual([s.values.rpc, s.sources.rpc], ["flag:3", "flag"]);
    assert.deepEqual([s.values.trace, s.sources.trace], [true, "env"]);
    assert.deepEqual([s.values.nobanner, s.sources.nobanner], [false, "env"]);
    assert.deepEqual([s.values.verbose, s.sources.verbose], [true, "file"]);
    assert.deepEqual([s.values.port, s.sources.port], [7001, "env"]);
    assert.deepEqual([s.values.heartbeatMs, s.sources.heartbeatMs], [200, "flag"]);
    assert.deepEqual([s.values.join, s.sources.join], [["10.0.0.1:9999"], "file"]);
    assert.deepEqual([s.values.bind, s.sources.bind], ["0.0.0.0", "default"]);
    assert.equal(s.label("port"), "TAMTAM_PORT");
    assert.equal(s.label("verbose"), '"verbose" in /home/u/.tamtam.yaml');
  });

  test("environment booleans: 1/true/yes/on and 0/false/no/off; empty is unset", () => {
    for (const [text, value] of [["1", true], ["TRUE", true], ["yes", true], ["on", true], ["0", false], ["false", false], ["No", false], ["off", false]] as const) {
      const s = resolveSettings(GLOBAL_SETTINGS, {}, undefined, memoryIO({}, { TAMTAM_VERBOSE: text }));
      assert.equal(s.values.verbose, value, text);
    }
    const empty = resolveSettings(GLOBAL_SETTINGS, {}, undefined, memoryIO({ "/home/u/.tamtam.yaml": "verbose: true" }, { TAMTAM_VERBOSE: "" }));
    assert.deepEqual([empty.values.verbose, empty.sources.verbose], [true, "file"]);
    assert.throws(
      () => resolveSettings(GLOBAL_SETTINGS, {}, undefined, memoryIO({}, { TAMTAM_VERBOSE: "maybe" })),
      { message: 'TAMTAM_VERBOSE must be true or false (1/true/yes/on or 0/false/no/off), got "maybe"' },
    );
  });

  test("config file: --config, else .tamtam.yaml, else .tamtam.yml", () => {
    const yml = resolveSettings(GLOBAL_SETTINGS, {}, undefined, memoryIO({ "/home/u/.tamtam.yml": "rpc: yml:1" }));
    assert.deepEqual([yml.values.rpc, yml.configFile], ["yml:1", "/home/u/.tamtam.yml"]);
    const both = resolveSettings(GLOBAL_SETTINGS, {}, undefined, memoryIO({ "/home/u/.tamtam.yml": "rpc: yml:1", "/home/u/.tamtam.yaml": "rpc: yaml:1" }));
    assert.equal(both.values.rpc, "yaml:1");
    const explicit = resolveSettings(GLOBAL_SETTINGS, {}, "/etc/t.yaml", memoryIO({ "/etc/t.yaml": "rpc: etc:1", "/home/u/.tamtam.yaml": "rpc: yaml:1" }));
    assert.deepEqual([explicit.values.rpc, explicit.configFile], ["etc:1", "/etc/t.yaml"]);
    const noHome = resolveSettings(GLOBAL_SETTINGS, {}, undefined, memoryIO({}, {}, null));
    assert.equal(noHome.values.rpc, "localhost:6262");
  });

  test("config file problems are one-line usage errors", () => {
    const attempt = (files: Record<string, string>, config?: string) => () => resolveSettings(GLOBAL_SETTINGS, {}, config, memoryIO(files));
    assert.throws(attempt({}, "/missing.yaml"), { name: "UsageError", message: "config file /missing.yaml does not exist" });
    assert.throws(attempt({ "/home/u/.tamtam.yaml": "rpc: [unclosed" }), (e: Error) => /^config file \/home\/u\/\.tamtam\.yaml is not valid YAML: [^\n]+$/.test(e.message));
    assert.throws(attempt({ "/home/u/.tamtam.yaml": "- a\n- b\n" }), { message: "config file /home/u/.tamtam.yaml must be a YAML mapping of keys to values" });
    assert.throws(attempt({ "/home/u/.tamtam.yaml": "verbose: 3" }), { message: '"verbose" in /home/u/.tamtam.yaml must be true or false (1/true/yes/on or 0/false/no/off), got 3' });
    assert.throws(attempt({ "/home/u/.tamtam.yaml": "rpc: true" }), { message: '"rpc" in /home/u/.tamtam.yaml must be a string, got true' });
    const unreadable: SettingsIO = { env: {}, homeDir: "/h", readFile: () => { throw new Error("EACCES: permission denied"); } };
    assert.throws(() => resolveSettings(GLOBAL_SETTINGS, {}, undefined, unreadable), { message: "cannot read config file /h/.tamtam.yaml: EACCES: permission denied" });
    // Only requested keys are checked: a bad agent key does not break the other commands.
    const ok = resolveSettings(GLOBAL_SETTINGS, {}, undefined, memoryIO({ "/home/u/.tamtam.yaml": "port: 70000\nfuture-key: 1\n" }));
    assert.deepEqual(ok.unknownKeys, ["future-key"]);
  });

  test("tags and query handlers from flag, environment and file: tags are comma-separated, a handler is one whole item (one per line in the environment)", () => {
    const fromEnv = resolveSettings(AGENT_SETTINGS, {}, undefined, memoryIO({}, { TAMTAM_TAG: "role=web, dc=eu", TAMTAM_QUERY_HANDLER: "a=echo 1,2\nb=cat" }));
    assert.deepEqual(fromEnv.values.tag, ["role=web", "dc=eu"]);
    assert.deepEqual(fromEnv.values.queryHandler, ["a=echo 1,2", "b=cat"]);
    const fromFlag = resolveSettings(AGENT_SETTINGS, { tag: ["role=web,dc=eu"], queryHandler: ["c=echo x,y"] }, undefined, memoryIO({}));
    assert.deepEqual([fromFlag.values.tag, fromFlag.values.queryHandler], [["role=web", "dc=eu"], ["c=echo x,y"]]);
    const fromFile = resolveSettings(AGENT_SETTINGS, {}, undefined, memoryIO({ "/home/u/.tamtam.yaml": "tag: [role=db, x=1]\nquery-handler-timeout: 700\n" }));
    assert.deepEqual([fromFile.values.tag, fromFile.values.queryHandlerTimeoutMs], [["role=db", "x=1"], 700]);
    const options = agentOptions(fromEnv);
    assert.deepEqual(options.tags, { role: "web", dc: "eu" });
    assert.deepEqual(options.queryHandlers, [{ name: "a", command: "echo 1,2" }, { name: "b", command: "cat" }]);
  });

  test("agent keys from file and environment reach AgentOptions", () => {
    const io = memoryIO(
      {
        "/home/u/.tamtam.yaml":
          "port: 9998\nipv6: true\nheartbeat: '250'\npreset: thread\nworkers: 1\nlog-format: json\nmulticast-address: '[ff03::1]'\nadvertise: fd00::1\n" +
          "reap-after: 30000\nreconnect-max: 16\nsnapshot: /var/lib/tamtam/members.json\ngossip-budget: 2000000\n",
      },
      {
        TAMTAM_JOIN: "[fd00::2]:9999, [fd00::3]:9999", TAMTAM_MULTICAST: "1", TAMTAM_VERBOSE: "on", TAMTAM_RPC: "[::1]:6363",
        TAMTAM_FLAP_DAMPING: "off", TAMTAM_RECONNECT_TIMEOUT: "0",
      },
    );
    const options = agentOptions(resolveSettings(AGENT_SETTINGS, { clusterName: "lab" }, undefined, io));
    assert.deepEqual(options, {
      rpc: "[::1]:6363",
      rpcToken: null,
      bind: "::",
      port: 9998,
      ipv6: true,
      iface: null,
      advertise: "[fd00::1]:9998",
      heartbeatMs: 250,
      maxBroadcastBytes: 0,
      gossipBudgetBytesPerSec: 2_000_000,
      multicast: { enabled: true, clusterName: "lab", address: "ff03::1", intervalSeconds: 10, port: 9998 },
      preset: "thread",
      workers: 1,
      join: ["[fd00::2]:9999", "[fd00::3]:9999"],
      logLevel: "debug",
      logFormat: "json",
      nobanner: false,
      faults: { reapAfterMs: 30_000, reconnectIntervalMs: null, reconnectTimeoutMs: 0, maxReconnectTargets: 16, flapDamping: false },
      snapshot: "/var/lib/tamtam/members.json",
      tags: {},
      queryHandlers: [],
      queryHandlerTimeoutMs: 3000,
    });
  });

  test("gossip budget: 0 (the preset's) or 1000..1000000000 bytes/s from every source", () => {
    const budget = (flags: Record<string, string>, env: Record<string, string> = {}): number =>
      resolveSettings(AGENT_SETTINGS, flags, undefined, memoryIO({}, env)).values.gossipBudgetBytesPerSec;
    assert.equal(budget({}), 0);
    assert.equal(budget({}, { TAMTAM_GOSSIP_BUDGET: "1000" }), 1000);
    assert.equal(budget({ gossipBudgetBytesPerSec: "8000000" }, { TAMTAM_GOSSIP_BUDGET: "1000" }), 8_000_000);
    const message = "must be in 1000..1000000000 bytes/s (or 0: the preset's)";
    assert.throws(() => budget({}, { TAMTAM_GOSSIP_BUDGET: "999" }), (e: Error) => e.message.startsWith(`TAMTAM_GOSSIP_BUDGET ${message}`));
    assert.throws(() => budget({ gossipBudgetBytesPerSec: "2000000000" }), (e: Error) => e.message.startsWith(`--gossip-budget ${message}`));
  });

  test("precedence end to end: file, then env over file, then flag over env", async () => {
    const home = tempDir();
    writeFileSync(join(home, ".tamtam.yaml"), `rpc: ${agent.rpc}\n`);
    const fromFile = await callsDuring(() => run(["address"], { env: { HOME: home } }));
    assert.equal(fromFile.result.code, 0, fromFile.result.stderr);
    assert.deepEqual(fromFile.calls.map((c) => c.method), ["localAddress"]);

    const envWins = await run(["address"], { env: { HOME: home, TAMTAM_RPC: UNREACHABLE_RPC } });
    assertOneLineError(envWins, EXIT.UNREACHABLE, /cannot reach the agent at 127\.0\.0\.1:1 /);

    const flagWins = await run(["address", "--rpc", agent.rpc], { env: { HOME: home, TAMTAM_RPC: UNREACHABLE_RPC } });
    assert.equal(flagWins.code, 0, flagWins.stderr);

    const badFile = join(home, "bad.yaml");
    writeFileSync(badFile, "heartbeat: 5\n");
    const r = await run(["--config", badFile, "agent"]);
    assertOneLineError(r, EXIT.USAGE, new RegExp(`^tamtam: "heartbeat" in ${badFile.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&")} must be an integer in 10\\.\\.600000 ms, got 5\\n$`));
    const flagOverFile = await run(["--config", badFile, "agent", "--heartbeat", "600001"]);
    assertOneLineError(flagOverFile, EXIT.USAGE, /^tamtam: --heartbeat must be an integer in 10\.\.600000 ms, got "600001"\n$/);
  });
});

// ---------------------------------------------------------------------------------------------
// Colours

describe("colours", () => {
  test("status colours on a TTY; none with NO_COLOR or off a TTY", async () => {
    const tty = await run(["--rpc", agent.rpc, "nodes"], { tty: true });
    assert.match(tty.stdout, ANSI);
    const noColor = await run(["--rpc", agent.rpc, "nodes"], { tty: true, env: { NO_COLOR: "1" } });
    assert.doesNotMatch(noColor.stdout, ANSI);
    const pipe = await run(["--rpc", agent.rpc, "nodes"]);
    assert.doesNotMatch(pipe.stdout, ANSI);
    // Alignment does not depend on colours.
    assert.equal(tty.stdout.replace(/\x1b\[[0-9;]*m/g, ""), pipe.stdout);
  });
});

// ---------------------------------------------------------------------------------------------
// The real bin, as a child process

describe("the tamtam bin", () => {
  test("success, one-line errors and exit codes", async () => {
    const nodes = await runBin(["--rpc", agent.rpc, "nodes"]);
    assert.equal(nodes.code, 0, nodes.stderr);
    assert.match(nodes.stdout, /^NODE {14}AGE {3}EMIT # {2}MILLIS {2}STATUS\n/);

    assertOneLineError(await runBin(["--rpc", UNREACHABLE_RPC, "nodes"]), EXIT.UNREACHABLE, /cannot reach the agent at 127\.0\.0\.1:1/);
    assertOneLineError(await runBin(["--rpc", agent.rpc, "join", "nonsense"]), EXIT.USAGE, /"nonsense" is not an IPv4 or IPv6 address/);
    assertOneLineError(await runBin(["agent", "--port", "0"]), EXIT.USAGE, /--port must be in 1\.\.65535/);
    assertOneLineError(await runBin(["nodes", "--bogus"]), EXIT.USAGE, /unsupported option name \("--bogus"\)/);
    assertOneLineError(
      await runBin(["nodes"], childEnv({ TAMTAM_RPC: UNREACHABLE_RPC })),
      EXIT.UNREACHABLE,
      /cannot reach the agent at 127\.0\.0\.1:1/,
    );
    const help = await runBin(["--help"]);
    assert.equal(help.code, 0);
    assert.doesNotMatch(help.stdout, ANSI);
  });

  test("stream exits 0 on SIGINT", async () => {
    agent.streamForever = true;
    const c = startBin(["--rpc", agent.rpc, "stream"]);
    try {
      await withTimeout(
        (async () => {
          while (!c.stdout().includes("tick 1\n")) await sleep(10);
        })(),
        10_000,
        "first stream lines",
      );
      c.child.kill("SIGINT");
      const { code, signal } = await withTimeout(c.exited, 10_000, "stream after SIGINT");
      assert.deepEqual([code, signal], [0, null]);
      assert.equal(c.stderr(), "");
    } finally {
      agent.streamForever = false;
      killChild(c);
    }
  });

  test("stream exits 0 when its reader goes away (EPIPE, as `| head -1`)", async () => {
    agent.streamForever = true;
    const c = startBin(["--rpc", agent.rpc, "monitor", "--json"]);
    const c2 = startBin(["--rpc", agent.rpc, "stream", "--encoding", "base64"]);
    try {
      for (const child of [c, c2]) {
        await withTimeout(
          new Promise<void>((resolve) => child.child.stdout?.once("data", () => resolve())),
          10_000,
          "first line",
        );
        child.child.stdout?.destroy(); // the reader exits
      }
      for (const child of [c, c2]) {
        const { code, signal } = await withTimeout(child.exited, 10_000, "exit after EPIPE");
        assert.deepEqual([code, signal], [0, null]);
        assert.equal(child.stderr(), "");
      }
    } finally {
      agent.streamForever = false;
      killChild(c);
      killChild(c2);
    }
  });
});
