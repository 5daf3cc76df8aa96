/**
 * A small gRPC client for short-lived processes: the command line makes one
 * call (or follows one stream) and exits. It speaks gRPC over HTTP/2 exactly as the agent's
 * grpc-js server expects it (length-prefixed protobuf-es messages, `grpc-timeout`, status in the
 * `grpc-status` / `grpc-message` trailers, trailers-only answers) for every kind of method
 * (unary, server-streaming, client-streaming and bidirectional: requests are written as the
 * caller's iterable yields them, within HTTP/2 flow control), on one plaintext connection per
 * client (TCP, or a Unix socket for `unix:PATH`), without retries, compression or TLS. HTTP/2
 * itself is `h2-session.ts`, not node:http2 (which loads Node's http, tls and crypto modules: a
 * large share of a command-line call). The public client of the package (src/lib/client.ts)
 * is this one too.
 *
 * Why not the grpc-js client: loading @grpc/grpc-js (channels, resolvers, load balancing,
 * keep-alive, channelz) costs more than a whole CLI call; `bench/startup.bench.ts` measures it.
 * Long-lived programs keep using the grpc-js client in adapter.ts, and the agent's server is
 * grpc-js either way.
 *
 * Failures reject with `GrpcCallError` (`code`, `details`, `metadata.get(key)`), shaped like
 * grpc-js's ServiceError so that callers treat both alike.
 */

import { createConnection, type Socket } from "node:net";
import { create, fromBinary, toBinary, type DescMessage, type DescMethod, type MessageInitShape, type MessageShape } from "@bufbuild/protobuf";
import type { GenService, GenServiceMethods } from "@bufbuild/protobuf/codegenv2";
import type { ServerStreamingCall } from "./adapter.js";
import { ERROR_CODE_TRAILER, framedMessage, GrpcStatus, grpcStatusName, MESSAGE_PREFIX_BYTES, methodPath, parseHostPort, unixSocketPath } from "./grpc-wire.js";
import { H2ClientSession, H2Error, type H2ClientStream, type H2Headers } from "./h2-session.js";

/** Largest response message accepted (grpc-js's default receive limit). */
export const MAX_RESPONSE_MESSAGE_BYTES = 4 * 1024 * 1024;
/** Stream messages decoded ahead of the reader before the HTTP/2 stream is paused (flow control). */
const STREAM_HIGH_WATER_MESSAGES = 64;

/** Trailers of a failed call, read like grpc-js's Metadata. */
export interface CallMetadata {
  /** Every value of `key` (lower case), or an empty list. */
  get(key: string): string[];
}

/** A failed call: its gRPC status, the server's message and the trailers. */
export class GrpcCallError extends Error {
  override readonly name = "GrpcCallError";
  constructor(
    readonly code: number,
    readonly details: string,
    readonly metadata: CallMetadata = metadataOf({}),
  ) {
    super(`${code}: ${details}`);
  }

  /** The status's name: `UNAVAILABLE` for 14. */
  get codeName(): string {
    return grpcStatusName(this.code);
  }

  /** The agent's stable error code (`NO_ANSWER`, `BROADCAST_TOO_LARGE`, ...: the `tamtam-error` trailer), or null when the agent sent none. */
  get agentCode(): string | null {
    return this.metadata.get(ERROR_CODE_TRAILER)[0] ?? null;
  }
}

export interface H2CallOptions {
  /** Deadline of this call in ms (sent as `grpc-timeout` and enforced here too). */
  timeoutMs?: number;
  /** Aborting cancels the call; it then fails with CANCELLED. */
  signal?: AbortSignal;
}

export interface H2ClientOptions {
  /** Deadline of unary calls that set no `timeoutMs`; streams get none by default. */
  defaultTimeoutMs?: number;
  /**
   * Request headers sent with every call, e.g. `{ authorization: "Bearer TOKEN" }` (names in
   * lower case). They cannot replace the headers gRPC itself needs (`:path`, `content-type`, ...).
   */
  headers?: Readonly<Record<string, string>>;
}

type Input<M extends GenServiceMethods, K extends keyof M> = M[K]["input"];
type Output<M extends GenServiceMethods, K extends keyof M> = M[K]["output"];

/** Requests of a client-streaming or bidirectional call: sent as they are yielded; the call's request side ends with the iterable. */
type Requests<I extends DescMessage> = AsyncIterable<MessageInitShape<I>> | Iterable<MessageInitShape<I>>;

/** A typed client of `service`: one method per RPC, keyed by `localName`, and `close()`. */
export type H2ServiceClient<M extends GenServiceMethods> = { close(): void } & {
  readonly [K in keyof M]: M[K]["methodKind"] extends "unary"
    ? (request: MessageInitShape<Input<M, K>>, options?: H2CallOptions) => Promise<MessageShape<Output<M, K>>>
    : M[K]["methodKind"] extends "server_streaming"
      ? (request: MessageInitShape<Input<M, K>>, options?: H2CallOptions) => ServerStreamingCall<MessageShape<Output<M, K>>>
      : M[K]["methodKind"] extends "client_streaming"
        ? (requests: Requests<Input<M, K>>, options?: H2CallOptions) => Promise<MessageShape<Output<M, K>>>
        : M[K]["methodKind"] extends "bidi_streaming"
          ? (requests: Requests<Input<M, K>>, options?: H2CallOptions) => ServerStreamingCall<MessageShape<Output<M, K>>>
          : never;
};

// ---------------------------------------------------------------------------------------------
// Status from HTTP/2

function metadataOf(headers: H2Headers): CallMetadata {
  return {
    get: (key) => {
      const value = headers[key.toLowerCase()];
      return value === undefined ? [] : [value];
    },
  };
}

/** The gRPC status of an HTTP status other than 200 (gRPC's "HTTP to gRPC status code mapping"). */
function statusOfHttp(httpStatus: number): number {
  switch (httpStatus) {
    case 400:
      return GrpcStatus.INTERNAL;
    case 401:
      return GrpcStatus.UNAUTHENTICATED;
    case 403:
      return GrpcStatus.PERMISSION_DENIED;
    case 404:
      return GrpcStatus.UNIMPLEMENTED;
    case 429:
    case 502:
    case 503:
    case 504:
      return GrpcStatus.UNAVAILABLE;
    default:
      return GrpcStatus.UNKNOWN;
  }
}

/** The gRPC status of a stream the server reset without trailers. */
function statusOfReset(rstCode: number): number {
  switch (rstCode) {
    case H2Error.REFUSED_STREAM:
      return GrpcStatus.UNAVAILABLE;
    case H2Error.CANCEL:
      return GrpcStatus.CANCELLED;
    case H2Error.ENHANCE_YOUR_CALM:
      return GrpcStatus.RESOURCE_EXHAUSTED;
    case H2Error.INADEQUATE_SECURITY:
      return GrpcStatus.PERMISSION_DENIED;
    default:
      return GrpcStatus.INTERNAL;
  }
}

function decodeMessage(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

/** The status carried by trailers (or by the headers of a trailers-only answer), or null. */
function statusOfTrailers(trailers: H2Headers): GrpcCallError | null {
  const raw = trailers["grpc-status"];
  if (raw === undefined) return null;
  const code = Number(raw);
  const details = decodeMessage(trailers["grpc-message"] ?? "");
  if (code === GrpcStatus.OK) return new GrpcCallError(GrpcStatus.OK, details, metadataOf(trailers));
  return new GrpcCallError(Number.isInteger(code) ? code : GrpcStatus.UNKNOWN, details, metadataOf(trailers));
}

/** A connection or stream error as a gRPC status (no agent answered: UNAVAILABLE). */
function statusOfNodeError(error: Error & { code?: unknown }): GrpcCallError {
  return new GrpcCallError(GrpcStatus.UNAVAILABLE, error.message);
}

// ---------------------------------------------------------------------------------------------
// One call

interface CallSink {
  /** A whole response message (without its frame header). */
  message(bytes: Uint8Array): void;
  /** The call is over: null when it ended with OK. Called exactly once. */
  end(error: GrpcCallError | null): void;
}

interface RunningCall {
  cancel(): void;
  pause(): void;
  resume(): void;
}

/**
 * Starts a call once `session` is up, with one request message or the messages an iterable
 * yields (each written when the stream has room for it); responses and the end go to `sink`.
 */
function startCall(
  session: Promise<H2ClientSession>,
  path: string,
  request: Uint8Array | AsyncIterable<Uint8Array>,
  options: H2CallOptions,
  sink: CallSink,
  extraHeaders: Readonly<Record<string, string>> = {},
): RunningCall {
  const headers: Record<string, string> = {
    ...extraHeaders,
    ":method": "POST",
    ":path": path,
    "content-type": "application/grpc+proto",
    te: "trailers",
  };
  if (options.timeoutMs !== undefined) headers["grpc-timeout"] = `${Math.max(1, Math.ceil(options.timeoutMs))}m`;

  let finished = false;
  let stream: H2ClientStream | null = null;
  let timer: NodeJS.Timeout | null = null;
  const signal = options.signal;
  const finish = (error: GrpcCallError | null): void => {
    if (finished) return;
    finished = true;
    if (timer !== null) clearTimeout(timer);
    signal?.removeEventListener("abort", onAbort);
    if (stream !== null && !stream.closed) stream.close(H2Error.CANCEL);
    sink.end(error);
  };
  const onAbort = (): void => finish(new GrpcCallError(GrpcStatus.CANCELLED, "Cancelled on client"));
  const call: RunningCall = {
    cancel: onAbort,
    pause: () => stream?.pause(),
    resume: () => stream?.resume(),
  };
  if (signal?.aborted) {
    queueMicrotask(onAbort);
    return call;
  }
  signal?.addEventListener("abort", onAbort, { once: true });
  if (options.timeoutMs !== undefined) {
    timer = setTimeout(() => finish(new GrpcCallError(GrpcStatus.DEADLINE_EXCEEDED, "Deadline exceeded")), options.timeoutMs);
  }

  session.then(
    (connected) => {
      if (finished) return;
      try {
        stream = connected.request(headers);
      } catch (error) {
        finish(statusOfNodeError(error as Error));
        return;
      }
      readResponse(stream);
      if (request instanceof Uint8Array) stream.end(framedMessage(request));
      else void writeRequests(stream, request);
    },
    (error: Error) => finish(statusOfNodeError(error)),
  );
  return call;

  /** Writes each request as it comes, waiting while the stream is full; a failing iterable cancels the call. */
  async function writeRequests(stream: H2ClientStream, requests: AsyncIterable<Uint8Array>): Promise<void> {
    try {
      for await (const bytes of requests) {
        if (finished) return;
        if (!stream.write(framedMessage(bytes))) {
          await new Promise<void>((resolve) => {
            const done = (): void => {
              stream.off("drain", done);
              stream.off("close", done);
              resolve();
            };
            stream.on("drain", done);
            stream.on("close", done);
          });
        }
      }
      if (!finished) stream.end();
    } catch (error) {
      finish(new GrpcCallError(GrpcStatus.CANCELLED, `the requests failed: ${(error as Error).message}`));
    }
  }

  function readResponse(stream: H2ClientStream): void {
    let httpError: GrpcCallError | null = null;
    let status: GrpcCallError | null = null;
    let pending: Buffer = Buffer.alloc(0);
    stream.on("response", (responseHeaders: H2Headers) => {
      const httpStatus = Number(responseHeaders[":status"]);
      if (httpStatus !== 200) httpError = new GrpcCallError(statusOfHttp(httpStatus), `HTTP status ${httpStatus}`);
      status = statusOfTrailers(responseHeaders); // a trailers-only answer
    });
    stream.on("trailers", (trailers: H2Headers) => {
      status = statusOfTrailers(trailers);
    });
    stream.on("data", (chunk: Buffer) => {
      if (finished) return;
      pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
      while (pending.length >= MESSAGE_PREFIX_BYTES) {
        if ((pending[0] as number) !== 0) {
          finish(new GrpcCallError(GrpcStatus.INTERNAL, "compressed responses are not supported"));
          return;
        }
        const length = pending.readUInt32BE(1);
        if (length > MAX_RESPONSE_MESSAGE_BYTES) {
          finish(new GrpcCallError(GrpcStatus.RESOURCE_EXHAUSTED, `response message of ${length} bytes exceeds ${MAX_RESPONSE_MESSAGE_BYTES}`));
          return;
        }
        if (pending.length < MESSAGE_PREFIX_BYTES + length) break;
        try {
          sink.message(pending.subarray(MESSAGE_PREFIX_BYTES, MESSAGE_PREFIX_BYTES + length));
        } catch (error) {
          // A message that does not decode fails this call, never the program.
          finish(new GrpcCallError(GrpcStatus.INTERNAL, `a response message does not decode: ${(error as Error).message}`));
          return;
        }
        pending = pending.subarray(MESSAGE_PREFIX_BYTES + length);
        if (finished) return;
      }
    });
    stream.on("error", (error: Error) => finish(statusOfNodeError(error)));
    stream.on("close", () => {
      const rstCode = stream.rstCode ?? H2Error.NO_ERROR;
      const final: GrpcCallError | null = status ?? httpError;
      if (final !== null) finish(final.code === GrpcStatus.OK ? (pending.length > 0 ? truncated() : null) : final);
      else if (rstCode !== H2Error.NO_ERROR) finish(new GrpcCallError(statusOfReset(rstCode), `stream reset by the server (HTTP/2 code ${rstCode})`));
      else finish(new GrpcCallError(GrpcStatus.UNKNOWN, "the server closed the call without a status"));
    });
  }
}

function truncated(): GrpcCallError {
  return new GrpcCallError(GrpcStatus.INTERNAL, "the response ended inside a message");
}

// ---------------------------------------------------------------------------------------------
// Typed methods

type RequestInit = MessageInitShape<DescMessage>;

/** The request bytes of a call: one message, or (streaming requests) each message as it is yielded. */
function encodeRequests(method: DescMethod, request: RequestInit | Requests<DescMessage>): Uint8Array | AsyncIterable<Uint8Array> {
  const encode = (init: RequestInit): Uint8Array => toBinary(method.input, create(method.input, init));
  if (method.methodKind === "unary" || method.methodKind === "server_streaming") return encode(request as RequestInit);
  const requests = request as Requests<DescMessage>;
  return (async function* () {
    for await (const init of requests) yield encode(init);
  })();
}

/** A call with one response message (unary and client-streaming methods). */
function unary(
  connection: Connection,
  method: DescMethod,
  request: RequestInit | Requests<DescMessage>,
  options: H2CallOptions,
): Promise<MessageShape<DescMessage>> {
  return new Promise((resolve, reject) => {
    let response: MessageShape<DescMessage> | null = null;
    let extra = false;
    const bytes = encodeRequests(method, request);
    startCall(connection.session(), methodPath(method), bytes, options, {
      message: (data) => {
        if (response !== null) extra = true;
        else response = fromBinary(method.output, data);
      },
      end: (error) => {
        if (error !== null) reject(error);
        else if (response === null) reject(new GrpcCallError(GrpcStatus.INTERNAL, "no response message"));
        else if (extra) reject(new GrpcCallError(GrpcStatus.INTERNAL, "more than one response message to a unary call"));
        else resolve(response);
      },
    }, connection.headers);
  });
}

/** A call with a stream of response messages (server-streaming and bidirectional methods). */
function serverStream(
  connection: Connection,
  method: DescMethod,
  request: RequestInit | Requests<DescMessage>,
  options: H2CallOptions,
): ServerStreamingCall<MessageShape<DescMessage>> {
  const queue: MessageShape<DescMessage>[] = [];
  let ended = false;
  let failure: GrpcCallError | null = null;
  let wake: (() => void) | null = null;
  const bytes = encodeRequests(method, request);
  const call = startCall(connection.session(), methodPath(method), bytes, options, {
    message: (data) => {
      queue.push(fromBinary(method.output, data));
      if (queue.length >= STREAM_HIGH_WATER_MESSAGES) call.pause();
      wake?.();
    },
    end: (error) => {
      ended = true;
      failure = error;
      wake?.();
    },
  }, connection.headers);
  async function* iterate(): AsyncGenerator<MessageShape<DescMessage>> {
    let done = false;
    try {
      for (;;) {
        const next = queue.shift();
        if (next !== undefined) {
          if (queue.length === STREAM_HIGH_WATER_MESSAGES / 2) call.resume();
          yield next;
          continue;
        }
        if (ended) {
          done = true;
          if (failure !== null) throw failure;
          return;
        }
        await new Promise<void>((resolve) => {
          wake = resolve;
        });
        wake = null;
      }
    } finally {
      // The reader stopped early (break, return, throw): tell the server.
      if (!done) call.cancel();
    }
  }
  return { cancel: () => call.cancel(), [Symbol.asyncIterator]: iterate };
}

/** Where to connect: a Unix socket, or TCP hosts to try in order and a port. */
type DialTarget = { readonly path: string } | { readonly hosts: string[]; readonly port: number };

/** `unix:PATH` -> the socket path; `host:port` or `[v6]:port` -> the hosts to try, in order, and the port. */
function dialTargets(address: string): DialTarget {
  const path = unixSocketPath(address);
  if (path !== null) {
    if (path === "") throw new Error(`"${address}" names no socket path (use unix:PATH)`);
    return { path };
  }
  const parsed = parseHostPort(address);
  if (parsed === null) throw new Error(`"${address}" is not HOST:PORT`);
  const { host, port } = parsed;
  // `localhost` is the loopback addresses themselves (RFC 6761): trying them directly skips a
  // name lookup and Node's first IPv6-address check, which together cost several ms of a CLI
  // call. The agent's default `--rpc localhost:6262` listens on both.
  return { hosts: host === "localhost" ? ["127.0.0.1", "::1"] : [host], port };
}

/** A connection to the Unix socket, or to the first of the TCP hosts that accepts one. */
async function dial(target: DialTarget): Promise<Socket> {
  let lastError: Error = new Error("no address to connect to");
  const endpoints = "path" in target ? [{ path: target.path }] : target.hosts.map((host) => ({ host, port: target.port }));
  for (const endpoint of endpoints) {
    try {
      return await new Promise<Socket>((resolve, reject) => {
        const socket = createConnection(endpoint);
        socket.once("connect", () => {
          socket.removeListener("error", reject);
          resolve(socket);
        });
        socket.once("error", reject);
      });
    } catch (error) {
      lastError = error as Error;
    }
  }
  throw lastError;
}

/** One HTTP/2 connection, opened on the first call and again after it closed. */
class Connection {
  #session: Promise<H2ClientSession> | null = null;
  #open: H2ClientSession | null = null;

  constructor(
    private readonly address: string,
    /** Request headers of every call on this connection. */
    readonly headers: Readonly<Record<string, string>> = {},
  ) {}

  session(): Promise<H2ClientSession> {
    const open = this.#open;
    if (this.#session !== null && (open === null || (!open.closed && !open.destroyed))) return this.#session;
    this.#open = null;
    const opening = (async () => {
      const target = dialTargets(this.address);
      const socket = await dial(target);
      // The :authority of calls over a Unix socket is "localhost", as grpc-js sends it.
      const authority = "path" in target ? "localhost" : this.address;
      // A connection that fails later (reset, protocol error) fails every call on it.
      const session = new H2ClientSession(socket, authority);
      this.#open = session;
      return session;
    })();
    // A failed attempt is not kept: the next call dials again.
    opening.catch(() => {
      if (this.#session === opening) this.#session = null;
    });
    this.#session = opening;
    return opening;
  }

  close(): void {
    const session = this.#session;
    this.#session = null;
    this.#open = null;
    session?.then((s) => s.close(), () => undefined);
  }
}

/**
 * A client of `service` at `address` (`host:port`, `[v6]:port`, or `unix:PATH`, see
 * `unixSocketPath`). Connects on the first call;
 * `close()` ends the connection once the calls on it are over.
 */
export function createH2Client<M extends GenServiceMethods>(
  service: GenService<M>,
  address: string,
  options: H2ClientOptions = {},
): H2ServiceClient<M> {
  const connection = new Connection(address, options.headers);
  const client: Record<string, unknown> = { close: () => connection.close() };
  for (const method of service.methods) {
    if (method.localName === "close") throw new Error(`${methodPath(method)}: method name "close" collides with the client's close()`);
    // One response (unary, client-streaming) or a stream of them (server-streaming,
    // bidirectional); only calls with one request get the default deadline.
    client[method.localName] =
      method.methodKind === "unary"
        ? (request: RequestInit, callOptions: H2CallOptions = {}) =>
            unary(connection, method, request, { timeoutMs: options.defaultTimeoutMs, ...callOptions })
        : method.methodKind === "client_streaming"
          ? (requests: Requests<DescMessage>, callOptions: H2CallOptions = {}) => unary(connection, method, requests, callOptions)
          : (request: RequestInit | Requests<DescMessage>, callOptions: H2CallOptions = {}) => serverStream(connection, method, request, callOptions);
  }
  // Built from the descriptor, so every method of M is present with its own schemas.
  return client as H2ServiceClient<M>;
}
