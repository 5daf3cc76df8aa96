/**
 * Tests of src/rpc/h2-session.ts, the command line's HTTP/2 client connection, against
 * node:http2 servers (nghttp2: Huffman coding, dynamic table, CONTINUATION, PING, flow control)
 * and against raw sockets that break the protocol.
 */

import { test } from "node:test";
import assert from "node:assert/strict";
import { once } from "node:events";
import { createServer as createH2Server, type Http2Server, type ServerHttp2Stream, type IncomingHttpHeaders } from "node:http2";
import { connect, createServer as createTcpServer, type AddressInfo, type Server, type Socket } from "node:net";
import { H2ClientSession, H2Error, type H2ClientStream, type H2Headers } from "../src/rpc/h2-session.js";

type Handler = (stream: ServerHttp2Stream, headers: IncomingHttpHeaders) => void;

async function h2Server(handler: Handler): Promise<{ server: Http2Server; port: number }> {
  const server = createH2Server();
  server.on("stream", handler);
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return { server, port: (server.address() as AddressInfo).port };
}

async function session(port: number): Promise<H2ClientSession> {
  const socket = connect(port, "127.0.0.1");
  await once(socket, "connect");
  return new H2ClientSession(socket, `127.0.0.1:${port}`);
}

interface Exchange {
  response: H2Headers | null;
  trailers: H2Headers | null;
  body: Buffer;
  error: Error | null;
  rstCode: number | undefined;
}

/** Everything a stream delivers until it closes. */
function collect(stream: H2ClientStream): Promise<Exchange> {
  const seen: Exchange = { response: null, trailers: null, body: Buffer.alloc(0), error: null, rstCode: undefined };
  const chunks: Buffer[] = [];
  stream.on("response", (headers: H2Headers) => (seen.response = headers));
  stream.on("trailers", (headers: H2Headers) => (seen.trailers = headers));
  stream.on("data", (chunk: Buffer) => chunks.push(chunk));
  stream.on("error", (error: Error) => (seen.error = error));
  return new Promise((resolve) => {
    stream.on("close", () => {
      seen.body = Buffer.concat(chunks);
      seen.rstCode = stream.rstCode;
      resolve(seen);
    });
  });
}

const PRINTABLE = Array.from({ length: 0x7f - 0x20 }, (_, i) => String.fromCharCode(0x20 + i)).join("");

test("headers and trailers arrive as sent: Huffman strings, the dynamic table, CONTINUATION frames", async () => {
  const big = "v".repeat(40_000); // beyond one 16 KiB frame: CONTINUATION
  const { server, port } = await h2Server((stream, headers) => {
    stream.respond({ ":status": 200, "x-echo": String(headers["x-request"]), "x-printable": PRINTABLE, "x-big": big }, { waitForTrailers: true });
    stream.on("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0", "grpc-message": "all%20good" }));
    stream.end("body");
  });
  const client = await session(port);
  try {
    // Several calls on one connection: later header blocks refer to the table the first built.
    for (let i = 0; i < 3; i++) {
      const stream = client.request({ ":method": "POST", ":path": "/x", "x-request": `call ${i}` });
      stream.end(Buffer.from("hello"));
      const seen = await collect(stream);
      assert.equal(seen.error, null);
      assert.equal(seen.response?.[":status"], "200");
      assert.equal(seen.response?.["x-echo"], `call ${i}`);
      assert.equal(seen.response?.["x-printable"], PRINTABLE);
      assert.equal(seen.response?.["x-big"], big);
      assert.deepEqual(seen.trailers, { "grpc-status": "0", "grpc-message": "all%20good" });
      assert.equal(seen.body.toString(), "body");
      assert.equal(seen.rstCode, undefined);
    }
  } finally {
    client.destroy();
    server.close();
  }
});

/** Resolves once `condition` holds (checked every 20 ms, for at most 10 s). */
async function until(condition: () => boolean): Promise<void> {
  for (let waitedMs = 0; !condition(); waitedMs += 20) {
    if (waitedMs > 10_000) throw new Error("condition not reached in 10 s");
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

test("a paused reader stops the server at the window; resuming delivers everything in order", async () => {
  const total = 3 * 1024 * 1024; // three times the window we grant
  const payload = Buffer.alloc(total);
  for (let i = 0; i < total; i++) payload[i] = i % 251;
  let serverStream: ServerHttp2Stream | null = null;
  const { server, port } = await h2Server((stream) => {
    serverStream = stream;
    stream.respond({ ":status": 200 });
    stream.end(payload);
  });
  const client = await session(port);
  try {
    const stream = client.request({ ":path": "/big" });
    stream.end();
    stream.pause();
    let deliveredWhilePaused = 0;
    const countPaused = (chunk: Buffer): void => {
      deliveredWhilePaused += chunk.length;
    };
    stream.on("data", countPaused);
    const done = collect(stream);
    // The server runs out of window: we credit nothing back while the reader is paused.
    await until(() => (serverStream as ServerHttp2Stream | null)?.session?.state.remoteWindowSize === 0);
    assert.equal(deliveredWhilePaused, 0);
    stream.off("data", countPaused);
    stream.resume();
    const seen = await done;
    assert.equal(seen.error, null);
    assert.equal(seen.body.length, total);
    assert.ok(seen.body.equals(payload));
  } finally {
    client.destroy();
    server.close();
  }
});

test("request data beyond the server's windows waits for WINDOW_UPDATE and arrives whole", async () => {
  const total = 2 * 1024 * 1024 + 17;
  const { server, port } = await h2Server((stream) => {
    const chunks: Buffer[] = [];
    stream.on("data", (chunk: Buffer) => chunks.push(chunk));
    stream.on("end", () => {
      stream.respond({ ":status": 200 });
      stream.end(String(Buffer.concat(chunks).length));
    });
  });
  const client = await session(port);
  try {
    const stream = client.request({ ":path": "/upload" });
    const done = collect(stream);
    const accepted = stream.write(Buffer.alloc(total, 7));
    assert.equal(accepted, false, "more than the initial 64 KiB window cannot leave at once");
    await once(stream, "drain");
    stream.end();
    const seen = await done;
    assert.equal(seen.body.toString(), String(total));
  } finally {
    client.destroy();
    server.close();
  }
});

test("a reset stream closes with its code; the connection stays usable", async () => {
  const { server, port } = await h2Server((stream, headers) => {
    if (headers[":path"] === "/reset") {
      stream.on("error", () => undefined); // node reports its own reset as an error too
      stream.close(H2Error.ENHANCE_YOUR_CALM);
    }
    else {
      stream.respond({ ":status": 200 });
      stream.end("fine");
    }
  });
  const client = await session(port);
  try {
    const reset = client.request({ ":path": "/reset" });
    reset.end();
    const seen = await collect(reset);
    assert.equal(seen.rstCode, H2Error.ENHANCE_YOUR_CALM);
    assert.equal(seen.response, null);
    const next = client.request({ ":path": "/ok" });
    next.end();
    assert.equal((await collect(next)).body.toString(), "fine");
  } finally {
    client.destroy();
    server.close();
  }
});

test("a cancelled stream is reset towards the server; the server's PING is answered", async () => {
  let serverStream: ServerHttp2Stream | null = null;
  const { server, port } = await h2Server((stream) => {
    serverStream = stream;
    stream.respond({ ":status": 200 });
    stream.write("first");
  });
  const client = await session(port);
  try {
    const stream = client.request({ ":path": "/hang" });
    stream.end();
    await once(stream, "data");
    const pinged = await new Promise<boolean>((resolve) => {
      (serverStream as unknown as ServerHttp2Stream).session?.ping((error) => resolve(error === null));
    });
    assert.equal(pinged, true);
    const closedOnServer = once(serverStream as unknown as ServerHttp2Stream, "close");
    stream.close();
    await closedOnServer;
    assert.equal((serverStream as unknown as ServerHttp2Stream).rstCode, H2Error.CANCEL);
  } finally {
    client.destroy();
    server.close();
  }
});

/** A raw server that answers the client's preface with `bytes`. */
async function rawServer(bytes: Buffer): Promise<{ server: Server; port: number }> {
  const server = createTcpServer((socket: Socket) => {
    socket.once("data", () => socket.write(bytes));
    socket.on("error", () => undefined);
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return { server, port: (server.address() as AddressInfo).port };
}

function rawFrame(type: number, flags: number, streamId: number, payload: Buffer): Buffer {
  const header = Buffer.alloc(9);
  header.writeUIntBE(payload.length, 0, 3);
  header[3] = type;
  header[4] = flags;
  header.writeUInt32BE(streamId, 5);
  return Buffer.concat([header, payload]);
}

test("GOAWAY fails the streams the server did not take and refuses new ones", async () => {
  const goaway = Buffer.alloc(8); // last stream 0, NO_ERROR
  const { server, port } = await rawServer(Buffer.concat([rawFrame(0x4, 0, 0, Buffer.alloc(0)), rawFrame(0x7, 0, 0, goaway)]));
  const client = await session(port);
  try {
    const stream = client.request({ ":path": "/late" });
    stream.end();
    const seen = await collect(stream);
    assert.match(String(seen.error?.message), /going away/);
    assert.equal(client.closed, true);
    assert.throws(() => client.request({ ":path": "/again" }), /closed/);
  } finally {
    client.destroy();
    server.close();
  }
});

test("protocol violations fail the streams with an error, never the process", async () => {
  const cases: Array<[string, Buffer]> = [
    ["an oversized frame", rawFrame(0x0, 0, 1, Buffer.alloc(20_000))],
    ["a bad header block", rawFrame(0x1, 0x4, 1, Buffer.from([0x80]))],
    ["a push promise", rawFrame(0x5, 0x4, 1, Buffer.alloc(4))],
    ["a short WINDOW_UPDATE", rawFrame(0x8, 0, 0, Buffer.alloc(2))],
    ["a CONTINUATION without HEADERS", rawFrame(0x9, 0x4, 1, Buffer.from([0x88]))],
  ];
  for (const [what, bytes] of cases) {
    const { server, port } = await rawServer(bytes);
    const client = await session(port);
    try {
      const stream = client.request({ ":path": "/x" });
      stream.end();
      const seen = await collect(stream);
      assert.ok(seen.error !== null, what);
      assert.equal(client.destroyed, true, what);
    } finally {
      client.destroy();
      server.close();
    }
  }
});

test("a server that sends beyond the window we granted a paused reader fails the connection", async () => {
  // A response (":status: 200", static index 8), then more DATA than the 1 MiB we granted.
  const frames = [rawFrame(0x1, 0x4, 1, Buffer.from([0x88])), ...Array.from({ length: 70 }, () => rawFrame(0x0, 0, 1, Buffer.alloc(16_384)))];
  const { server, port } = await rawServer(Buffer.concat(frames));
  const client = await session(port);
  try {
    const stream = client.request({ ":path": "/x" });
    stream.pause(); // nothing is read, so nothing is credited back
    stream.end();
    const seen = await collect(stream);
    assert.match(String(seen.error?.message), /beyond the connection window/);
    assert.equal(client.destroyed, true);
  } finally {
    client.destroy();
    server.close();
  }
});
