/**
 * The agent's control-plane guard: `--rpc-token` (src/rpc/token.ts) against a grpc-js server
 * built as the agent builds it (the token interceptor, the TamTam service, reflection), called
 * by the command line's HTTP/2 client and by grpc-js: no token or a wrong one gets
 * UNAUTHENTICATED and never reaches a handler, the right one gets through, for unary,
 * server-streaming and reflection calls. Also: the settings of --rpc (unix:PATH) and
 * --rpc-token (never shown in a message), the command line's one line for UNAUTHENTICATED,
 * and which --rpc addresses count as reachable from this machine only.
 */

import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { PassThrough, Readable } from "node:stream";
import * as grpc from "@grpc/grpc-js";
import { file_service_tamtam, Response_Code, TamTam } from "../src/gen/service/tamtam_pb.js";
import { isLocalOnly, rpcEndpoint } from "../src/agent/rpc-endpoint.js";
import { describeError } from "../src/cli/base-command.js";
import { buildCli } from "../src/cli/main.js";
import { GLOBAL_SETTINGS, resolveSettings, type SettingsIO } from "../src/cli/settings.js";
import { addService } from "../src/rpc/adapter.js";
import { GrpcStatus } from "../src/rpc/grpc-wire.js";
import { createH2Client, GrpcCallError } from "../src/rpc/h2-client.js";
import { addReflection } from "../src/rpc/reflection.js";
import { requireToken, UNAUTHENTICATED_DETAILS } from "../src/rpc/token.js";
import { rejection } from "./helpers/rpc-errors.js";
import { stubService } from "./helpers/service-stubs.js";

const TOKEN = "s3cret-Token_42";

interface Guarded {
  readonly address: string;
  /** Handler calls that got through. */
  readonly calls: string[];
  close(): void;
}

async function startGuarded(): Promise<Guarded> {
  const calls: string[] = [];
  const server = new grpc.Server({ interceptors: [requireToken(TOKEN)] });
  const OK = { code: Response_Code.OK };
  addService(
    server,
    TamTam,
    stubService({
      broadcast: () => {
        calls.push("broadcast");
        return OK;
      },
      broadcastStream: async (requests) => {
        calls.push("broadcastStream");
        for await (const _ of requests);
        return {};
      },
      async *stream() {
        calls.push("stream");
        yield { bytes: Buffer.from("one") };
        yield { bytes: Buffer.from("two") };
      },
      nodes: () => {
        calls.push("nodes");
        return { nodes: [{ address: { IP: "10.0.0.2", port: 7946 }, state: "alive" }] };
      },
    }),
  );
  addReflection(server, [file_service_tamtam]);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  return { address: `127.0.0.1:${port}`, calls, close: () => server.forceShutdown() };
}

function withAuthorization(value: string | null): Record<string, string> {
  return value === null ? {} : { authorization: value };
}

/** Every message of a stream, as text. */
async function drain(call: AsyncIterable<{ bytes: Uint8Array }>): Promise<string[]> {
  const out: string[] = [];
  for await (const message of call) out.push(Buffer.from(message.bytes).toString());
  return out;
}

/**
 * One grpc.reflection.v1 `list_services` request (field 7, "*"), hand-encoded, through a raw
 * grpc-js bidi call with `metadata`; resolves with the response bytes or rejects with the status.
 */
function listServices(address: string, metadata: grpc.Metadata): Promise<Buffer> {
  const client = new grpc.Client(address, grpc.credentials.createInsecure());
  const bytes = (b: Buffer): Buffer => b;
  return new Promise<Buffer>((resolve, reject) => {
    const call = client.makeBidiStreamRequest(
      "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
      bytes,
      bytes,
      metadata,
      { deadline: Date.now() + 10_000 },
    );
    const chunks: Buffer[] = [];
    call.on("data", (chunk: Buffer) => chunks.push(chunk));
    call.on("error", reject);
    call.on("end", () => resolve(Buffer.concat(chunks)));
    call.write(Buffer.from([0x3a, 0x01, 0x2a]));
    call.end();
  }).finally(() => client.close());
}

describe("--rpc-token: every call must present the token", () => {
  test("unary and server-streaming calls: no token or a wrong one is UNAUTHENTICATED and reaches no handler; the right one passes", async () => {
    const server = await startGuarded();
    try {
      const refused = [null, "Bearer wrong", `Bearer ${TOKEN}x`, `Bearer ${TOKEN.slice(0, -1)}`, `Basic ${TOKEN}`, TOKEN, "Bearer "];
      for (const authorization of refused) {
        const client = createH2Client(TamTam, server.address, { defaultTimeoutMs: 5_000, headers: withAuthorization(authorization) });
        try {
          for (const call of [client.nodes({}), client.broadcast({ bytes: Buffer.from("hi") }), drain(client.stream({}))]) {
            const error = await rejection(call);
            assert.equal(error.code, GrpcStatus.UNAUTHENTICATED, `authorization ${String(authorization)}`);
            assert.equal(error.details, UNAUTHENTICATED_DETAILS);
            assert.ok(!error.details.includes(TOKEN), "the answer never names the token");
          }
        } finally {
          client.close();
        }
      }
      assert.deepEqual(server.calls, [], "no refused call reached a handler");

      for (const authorization of [`Bearer ${TOKEN}`, `bearer ${TOKEN}`]) {
        const client = createH2Client(TamTam, server.address, { defaultTimeoutMs: 5_000, headers: withAuthorization(authorization) });
        try {
          assert.equal((await client.nodes({})).nodes[0]?.address?.IP, "10.0.0.2");
          assert.equal((await client.broadcast({ bytes: Buffer.from("hi") })).code, Response_Code.OK);
          assert.deepEqual(await drain(client.stream({})), ["one", "two"]);
        } finally {
          client.close();
        }
      }
      assert.deepEqual(server.calls, ["nodes", "broadcast", "stream", "nodes", "broadcast", "stream"]);
    } finally {
      server.close();
    }
  });

  test("reflection calls are guarded too", async () => {
    const server = await startGuarded();
    try {
      for (const authorization of [null, "Bearer wrong"]) {
        const metadata = new grpc.Metadata();
        if (authorization !== null) metadata.set("authorization", authorization);
        await assert.rejects(listServices(server.address, metadata), (err: grpc.ServiceError) => {
          assert.equal(err.code, grpc.status.UNAUTHENTICATED, String(authorization));
          assert.equal(err.details, UNAUTHENTICATED_DETAILS);
          return true;
        });
      }
      const metadata = new grpc.Metadata();
      metadata.set("authorization", `Bearer ${TOKEN}`);
      const answer = await listServices(server.address, metadata);
      assert.ok(answer.includes(Buffer.from("service.TamTam")), "the right token lists the service");
    } finally {
      server.close();
    }
  });

  test("an empty token is refused when the server is built", () => {
    assert.throws(() => requireToken(""), /must not be empty/);
  });
});

function memoryIO(files: Record<string, string>, env: Record<string, string> = {}): SettingsIO {
  return { env, homeDir: "/home/u", readFile: (path) => files[path] ?? null };
}

describe("--rpc unix:PATH and --rpc-token settings", () => {
  test("--rpc takes HOST:PORT or unix:PATH (absolute, relative, unix:///PATH)", () => {
    for (const rpc of ["unix:/run/tamtam.sock", "unix:tamtam.sock", "unix:///run/tamtam.sock", "localhost:6262", "[::1]:6262"]) {
      assert.equal(resolveSettings(GLOBAL_SETTINGS, { rpc }, undefined, memoryIO({})).values.rpc, rpc);
    }
    for (const rpc of ["unix:", "unix://host/run/tamtam.sock", "localhost"]) {
      assert.throws(() => resolveSettings(GLOBAL_SETTINGS, { rpc }, undefined, memoryIO({})), {
        name: "UsageError",
        message: `--rpc must be HOST:PORT (like localhost:6262 or [::1]:6262) or unix:PATH (like unix:/run/tamtam.sock), got "${rpc}"`,
      });
    }
    assert.deepEqual(rpcEndpoint("unix:agent.sock", "/srv/tamtam"), { bindAddress: "unix:/srv/tamtam/agent.sock", socketPath: "/srv/tamtam/agent.sock" });
    assert.deepEqual(rpcEndpoint("unix:///run/a.sock", "/srv"), { bindAddress: "unix:/run/a.sock", socketPath: "/run/a.sock" });
    assert.deepEqual(rpcEndpoint("localhost:6262"), { bindAddress: "localhost:6262", socketPath: null });
  });

  test("--rpc-token > TAMTAM_RPC_TOKEN > rpc-token in the file; default none; a bad value is never shown", () => {
    const file = { "/home/u/.tamtam.yaml": "rpc-token: from-file\n" };
    assert.equal(resolveSettings(GLOBAL_SETTINGS, {}, undefined, memoryIO({})).values.rpcToken, null);
    assert.equal(resolveSettings(GLOBAL_SETTINGS, {}, undefined, memoryIO(file)).values.rpcToken, "from-file");
    assert.equal(resolveSettings(GLOBAL_SETTINGS, {}, undefined, memoryIO(file, { TAMTAM_RPC_TOKEN: "from-env" })).values.rpcToken, "from-env");
    const flag = resolveSettings(GLOBAL_SETTINGS, { rpcToken: "from-flag" }, undefined, memoryIO(file, { TAMTAM_RPC_TOKEN: "from-env" }));
    assert.deepEqual([flag.values.rpcToken, flag.sources.rpcToken], ["from-flag", "flag"]);
    assert.deepEqual(resolveSettings(GLOBAL_SETTINGS, {}, undefined, memoryIO(file)).unknownKeys, []);
    for (const [flags, env, label] of [
      [{ rpcToken: "has space" }, {}, "--rpc-token"],
      [{}, { TAMTAM_RPC_TOKEN: "tab\tinside" }, "TAMTAM_RPC_TOKEN"],
    ] as const) {
      assert.throws(() => resolveSettings(GLOBAL_SETTINGS, flags, undefined, memoryIO({}, env)), (e: Error) => {
        assert.equal(e.message, `${label} must be printable ASCII without spaces, got a value that is not shown`);
        return true;
      });
    }
  });

  test("UNAUTHENTICATED is one line that says what to do", () => {
    const { message, exitCode } = describeError(new GrpcCallError(GrpcStatus.UNAUTHENTICATED, UNAUTHENTICATED_DETAILS), "unix:/run/tamtam.sock");
    assert.equal(
      message,
      "the agent at unix:/run/tamtam.sock requires --rpc-token (or TAMTAM_RPC_TOKEN, or rpc-token in the config file), or the given token is wrong",
    );
    assert.equal(exitCode, 1);
  });

  test("a mistyped command line never repeats the token", async () => {
    for (const args of [["--rpc-token", TOKEN, "nodez"], [`--rpc-token=${TOKEN}`, "nodes", "--bogus"], ["nodes", "--rpc-token", TOKEN, "extra"]]) {
      const stdout = new PassThrough();
      const stderr = new PassThrough();
      let text = "";
      stdout.on("data", (b: Buffer) => (text += b.toString()));
      stderr.on("data", (b: Buffer) => (text += b.toString()));
      const context = { stdin: Readable.from([]), stdout, stderr, env: { HOME: "/nonexistent" }, colorDepth: 1 };
      const code = await buildCli({ colors: false, args }).run(args, context);
      assert.equal(code, 2, `${args.join(" ")}: ${text}`);
      assert.equal(text.split("\n").filter((l) => l !== "").length, 1, text);
      assert.ok(!text.includes(TOKEN), `the token appears in: ${text}`);
    }
  });

  test("which --rpc addresses only this machine can reach", () => {
    for (const rpc of ["localhost:6262", "LOCALHOST:1", "127.0.0.1:6262", "127.1.2.3:6262", "[::1]:6262", "[::ffff:127.0.0.1]:6262", "unix:/run/t.sock", "unix:t.sock"]) {
      assert.equal(isLocalOnly(rpc), true, rpc);
    }
    for (const rpc of ["0.0.0.0:6262", "[::]:6262", "10.0.0.1:6262", "[fe80::1]:6262", "agent.example.com:6262", "128.0.0.1:6262"]) {
      assert.equal(isLocalOnly(rpc), false, rpc);
    }
  });
});
