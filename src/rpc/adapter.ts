/**
 * Generic glue between protobuf-es v2 service descriptors (`GenService`, e.g. `TamTam` from
 * src/gen/service/tamtam_pb.ts) and @grpc/grpc-js. This module owns:
 *
 *   - `serviceDefinition(service)`: the grpc-js `ServiceDefinition` (method paths
 *     `/<package>.<Service>/<Method>`, stream flags from `methodKind`, binary (de)serializers);
 *   - `addService(server, service, impl)`: registers promise/async-iterable handlers, typed from
 *     the descriptor, with cancellation (an AbortSignal per call) and status-error mapping;
 *     a client-streaming handler reads its requests as an async iterable, which pulls from the
 *     transport only as fast as the handler goes (HTTP/2 flow control holds the client back);
 *   - `makeClientClass(service)` / `createClient(...)`: a typed client whose unary methods return
 *     promises, whose server-streaming methods return cancellable async iterables and whose
 *     client-streaming methods return a `ClientStreamingCall` (send with backpressure, then
 *     finish for the response), with per-call deadlines, a client-wide default timeout, and
 *     AbortSignal cancellation;
 *   - `RpcError`: the error handlers throw to answer with a specific gRPC status.
 *
 * Bidi-streaming methods are not supported (the TamTam API has none); a service containing one
 * is rejected when the definition is built.
 */

import { type EventEmitter, once } from "node:events";
import * as grpc from "@grpc/grpc-js";
import {
  create,
  fromBinary,
  toBinary,
  type DescMessage,
  type DescMethod,
  type MessageInitShape,
  type MessageShape,
} from "@bufbuild/protobuf";
import type { GenService, GenServiceMethods } from "@bufbuild/protobuf/codegenv2";
import { framedMessage, MESSAGE_PREFIX_BYTES, methodPath } from "./grpc-wire.js";

// ---------------------------------------------------------------------------------------------
// Errors

/**
 * A gRPC status as an Error. Thrown by handlers to answer with that status; also what clients
 * reject with when a call is refused before it starts (e.g. an already-aborted signal). Shaped
 * like grpc-js's `ServiceError` (`code`, `details`, `metadata`), so callers can treat both alike.
 */
export class RpcError extends Error implements grpc.StatusObject {
  override readonly name = "RpcError";
  readonly code: grpc.status;
  readonly details: string;
  readonly metadata: grpc.Metadata;

  constructor(code: grpc.status, details: string, metadata: grpc.Metadata = new grpc.Metadata()) {
    super(`${code} ${grpc.status[code] ?? "UNKNOWN"}: ${details}`);
    this.code = code;
    this.details = details;
    this.metadata = metadata;
  }
}

/** What a handler's failure turns into: its own status if it carries one, else UNKNOWN. */
function toStatus(err: unknown): grpc.StatusObject {
  if (typeof err === "object" && err !== null) {
    const e = err as { code?: unknown; details?: unknown; message?: unknown; metadata?: unknown };
    const metadata = e.metadata instanceof grpc.Metadata ? e.metadata : new grpc.Metadata();
    // Only integer gRPC codes count: Node errors carry string codes such as "ECONNREFUSED".
    if (typeof e.code === "number" && Number.isInteger(e.code) && e.code >= 0 && e.code <= 16) {
      const details =
        typeof e.details === "string" ? e.details : typeof e.message === "string" ? e.message : "";
      return { code: e.code, details, metadata };
    }
    if (typeof e.message === "string") {
      return { code: grpc.status.UNKNOWN, details: e.message, metadata };
    }
  }
  return { code: grpc.status.UNKNOWN, details: String(err), metadata: new grpc.Metadata() };
}

// ---------------------------------------------------------------------------------------------
// Service definition

type Input<M extends GenServiceMethods, K extends keyof M> = M[K]["input"];
type Output<M extends GenServiceMethods, K extends keyof M> = M[K]["output"];

/** The grpc-js definition of a service, keyed by the methods' `localName` (e.g. `setHeartbeat`). */
export type TypedServiceDefinition<M extends GenServiceMethods> = {
  readonly [K in keyof M]: grpc.MethodDefinition<
    MessageShape<Input<M, K>>,
    MessageShape<Output<M, K>>
  >;
};

export { methodPath };

function serializer<D extends DescMessage>(schema: D): (value: MessageShape<D>) => Buffer {
  return (value) => {
    const bytes = toBinary(schema, value);
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  };
}

/** `fn`, computed once per argument object and remembered while that object lives (weakly held). */
export function oncePerObject<T extends object, R>(fn: (value: T) => R): (value: T) => R {
  const results = new WeakMap<T, R>();
  return (value) => {
    if (results.has(value)) return results.get(value) as R;
    const result = fn(value);
    results.set(value, result);
    return result;
  };
}

/**
 * A server stream's response serializer: encodes each message object once, however many calls
 * write it. A fan-out (Stream, Monitor) hands every subscriber the same object, so a broadcast
 * to 100 subscribers costs one encoding, not 100.
 */
function sharedSerializer<D extends DescMessage>(schema: D): (value: MessageShape<D>) => Buffer {
  return oncePerObject(serializer(schema));
}

function deserializer<D extends DescMessage>(schema: D): (bytes: Buffer) => MessageShape<D> {
  return (bytes) => fromBinary(schema, bytes);
}

function methodDefinition<I extends DescMessage, O extends DescMessage>(
  method: DescMethod & { input: I; output: O },
): grpc.MethodDefinition<MessageShape<I>, MessageShape<O>> {
  if (method.methodKind === "bidi_streaming") {
    throw new Error(`${methodPath(method)}: ${method.methodKind} methods are not supported`);
  }
  return {
    path: methodPath(method),
    originalName: method.name,
    requestStream: method.methodKind === "client_streaming",
    responseStream: method.methodKind === "server_streaming",
    requestSerialize: serializer(method.input),
    requestDeserialize: deserializer(method.input),
    responseSerialize: method.methodKind === "server_streaming" ? sharedSerializer(method.output) : serializer(method.output),
    responseDeserialize: deserializer(method.output),
  };
}

/**
 * The grpc-js `ServiceDefinition` of a protobuf-es service: usable with `server.addService`
 * (with raw grpc-js handlers) or `grpc.makeGenericClientConstructor`.
 */
export function serviceDefinition<M extends GenServiceMethods>(
  service: GenService<M>,
): TypedServiceDefinition<M> {
  const out: Record<string, grpc.MethodDefinition<MessageShape<DescMessage>, MessageShape<DescMessage>>> = {};
  for (const method of service.methods) out[method.localName] = methodDefinition(method);
  // Built by iterating the descriptor, so every key of M is present with its own schemas.
  return out as unknown as TypedServiceDefinition<M>;
}

// ---------------------------------------------------------------------------------------------
// Server side

/** Per-call information handed to every handler. */
export interface CallContext {
  /** Aborted when the client cancels, the deadline passes, or the connection drops. */
  readonly signal: AbortSignal;
  /** The request metadata (headers). */
  readonly metadata: grpc.Metadata;
  /** The client's address as grpc-js reports it, e.g. "127.0.0.1:53412". */
  readonly peer: string;
  /** The call's deadline (`Infinity` when the client set none). */
  readonly deadline: grpc.Deadline;
}

/** A unary handler: resolves to the response (a message or its init shape) or throws. */
export type UnaryHandler<I extends DescMessage, O extends DescMessage> = (
  request: MessageShape<I>,
  context: CallContext,
) => MessageInitShape<O> | Promise<MessageInitShape<O>>;

/**
 * Several messages a server-streaming handler yields at once (e.g. everything a subscriber has
 * queued): written in order, and leaving in one HTTP/2 write, with one pass through the
 * handler's async iterator instead of one per message.
 */
export class MessageBatch<T> {
  constructor(readonly messages: readonly T[]) {}
}

/**
 * A server-streaming handler: the async iterable's items (messages, or batches of them) are sent
 * in order; the stream ends OK when the iterable completes, or with the thrown status. On
 * cancellation the adapter stops pulling and calls the iterator's `return()`; a generator
 * blocked on an await should watch `context.signal` to end promptly.
 */
export type ServerStreamHandler<I extends DescMessage, O extends DescMessage> = (
  request: MessageShape<I>,
  context: CallContext,
) => AsyncIterable<MessageInitShape<O> | MessageBatch<MessageInitShape<O>>>;

/**
 * A client-streaming handler: reads the requests from the async iterable (it pulls from the
 * transport only as fast as the handler iterates: flow control) and resolves to the one
 * response, or throws. The iterable ends when the client finishes sending; a cancelled call
 * aborts `context.signal`.
 */
export type ClientStreamHandler<I extends DescMessage, O extends DescMessage> = (
  requests: AsyncIterable<MessageShape<I>>,
  context: CallContext,
) => Promise<MessageInitShape<O>>;

/** The handlers of a service, keyed by method `localName`, typed from the descriptor. */
export type ServiceImplementation<M extends GenServiceMethods> = {
  [K in keyof M]: M[K]["methodKind"] extends "unary"
    ? UnaryHandler<Input<M, K>, Output<M, K>>
    : M[K]["methodKind"] extends "server_streaming"
      ? ServerStreamHandler<Input<M, K>, Output<M, K>>
      : M[K]["methodKind"] extends "client_streaming"
        ? ClientStreamHandler<Input<M, K>, Output<M, K>>
        : never;
};

type AnyUnaryCall = grpc.ServerUnaryCall<MessageShape<DescMessage>, MessageShape<DescMessage>>;
type AnyStreamCall = grpc.ServerWritableStream<MessageShape<DescMessage>, MessageShape<DescMessage>>;
/** What every kind of server call offers the context: its cancellation event and request facts. */
type AnyCall = Pick<AnyUnaryCall, "cancelled" | "metadata" | "getPeer" | "getDeadline"> & EventEmitter;

function contextFor(call: AnyCall): { context: CallContext; done: () => void } {
  const controller = new AbortController();
  const onCancel = (): void => controller.abort(new RpcError(grpc.status.CANCELLED, "call cancelled"));
  if (call.cancelled) onCancel();
  else call.once("cancelled", onCancel);
  return {
    context: {
      signal: controller.signal,
      metadata: call.metadata,
      peer: call.getPeer(),
      deadline: call.getDeadline(),
    },
    done: () => call.removeListener("cancelled", onCancel),
  };
}

/**
 * Answers a call that has one response (unary, client streaming): runs `produce` with the
 * call's context and sends its value, or the status of what it threw.
 */
function answerOnce(
  method: DescMethod,
  call: AnyCall,
  callback: grpc.sendUnaryData<MessageShape<DescMessage>>,
  produce: (context: CallContext) => MessageInitShape<DescMessage> | Promise<MessageInitShape<DescMessage>>,
): void {
  const { context, done } = contextFor(call);
  // Promise.resolve().then(...) turns a synchronous throw into a rejection too.
  Promise.resolve()
    .then(() => produce(context))
    .then(
      (init) => callback(null, create(method.output, init)),
      (err: unknown) => callback(toStatus(err)),
    )
    .catch((err: unknown) => callback(toStatus(err))) // create() rejected the handler's value
    .finally(done);
}

function unaryHandler(
  method: DescMethod,
  handler: UnaryHandler<DescMessage, DescMessage>,
): grpc.handleUnaryCall<MessageShape<DescMessage>, MessageShape<DescMessage>> {
  return (call, callback) => answerOnce(method, call, callback, (context) => handler(call.request, context));
}

/**
 * Messages a server stream may have written but not yet handed to HTTP/2 before its handler
 * waits for the transport (grpc-js's own mark is 16), checked after each message or batch; the
 * Stream and Monitor handlers take batches of at most this many from their queues. Bounds what a
 * slow reader holds in the agent per call, beyond the handler's own bounded queue (at most twice
 * this many messages), and how much one stream writes per event-loop turn: with 100
 * subscribers, 256 per turn made turns long enough to double the agent's ACK round-trip p99
 * (bench/RESULTS.md).
 */
export const STREAM_WRITE_AHEAD_MESSAGES = 64;

/**
 * The parts of grpc-js's base server call (1.x, `BaseServerInterceptingCall`, no interceptors)
 * that its `sendMessage` uses to send one message: the HTTP/2 stream and the checks around it.
 */
interface BaseServerCall {
  readonly stream: { write(chunk: Buffer, callback: (error?: Error | null) => void): boolean };
  readonly maxSendMessageSize: number;
  readonly callEventTracker?: { addMessageSent(): void } | null;
  checkCancelled(): boolean;
  maybeSendMetadata(): void;
  sendStatus(status: { code: grpc.status; details: string; metadata: grpc.Metadata | null }): void;
}

/**
 * Interceptor calls known to pass messages, headers and statuses through untouched (the token
 * check: it only looks at the request's metadata). sendFramedBatches looks through them to the
 * base call; any other interceptor keeps grpc-js's own writes.
 */
const passThroughCalls = new WeakSet<object>();

/** Registers an interceptor call whose responder leaves sendMetadata, sendMessage and sendStatus to grpc-js's defaults. */
export function passesResponsesThrough(call: grpc.ServerInterceptingCall): grpc.ServerInterceptingCall {
  passThroughCalls.add(call);
  return call;
}

/** The grpc-js base call under a server stream, or null where it has another shape (another version, an interceptor). */
function baseServerCall(call: AnyStreamCall): BaseServerCall | null {
  let inner = (call as unknown as { call?: Partial<Record<keyof BaseServerCall, unknown>> }).call;
  while (inner !== undefined && inner !== null && passThroughCalls.has(inner)) {
    inner = (inner as { nextCall?: Partial<Record<keyof BaseServerCall, unknown>> }).nextCall;
  }
  if (inner === undefined || inner === null) return null;
  const stream = inner.stream as { write?: unknown } | undefined;
  const ok =
    typeof stream?.write === "function" &&
    typeof inner.maxSendMessageSize === "number" &&
    typeof inner.checkCancelled === "function" &&
    typeof inner.maybeSendMetadata === "function" &&
    typeof inner.sendStatus === "function";
  return ok ? (inner as unknown as BaseServerCall) : null;
}

/**
 * Makes a grpc-js server stream send each batch of messages as one HTTP/2 write of their framed
 * bytes, each message framed once for every call that writes it (`framed`, memoized per
 * message object by the caller).
 *
 * grpc-js's writable has no `_writev`: it sends one message, waits for that write's callback
 * (which HTTP/2 completes once per event-loop turn), and frames and copies every message for
 * every call. With 100 subscribers at 2,000 broadcasts/s that was 200,000 framings, stream
 * writes and write callbacks per second on the main thread (bench/RESULTS.md). Here, whatever
 * the writable has buffered leaves in one write, in order, framed from the shared bytes, and the
 * callback is that write's. What grpc-js's `sendMessage` does around a message is kept: nothing
 * is sent on a cancelled call, the response headers go first, a message over the call's send
 * limit ends the call with RESOURCE_EXHAUSTED, a failed write with INTERNAL, and the call's
 * channelz counters see every message.
 *
 * Returns false (the stream keeps grpc-js's one-at-a-time writes) where the call does not have
 * grpc-js's base call (another version, an interceptor in front).
 */
export function sendFramedBatches(call: AnyStreamCall, framed: (message: unknown) => Buffer): boolean {
  const base = baseServerCall(call);
  if (base === null) return false;
  const write = (buffers: readonly Buffer[], bytes: number, callback: () => void): void => {
    base.maybeSendMetadata();
    const chunk = buffers.length === 1 ? (buffers[0] as Buffer) : Buffer.concat(buffers, bytes);
    base.stream.write(chunk, (error) => {
      if (error !== undefined && error !== null) {
        base.sendStatus({ code: grpc.status.INTERNAL, details: "Internal server error", metadata: null });
        return;
      }
      for (let i = 0; i < buffers.length; i++) base.callEventTracker?.addMessageSent();
      callback();
    });
  };
  const checkedFrame = (message: unknown): { buffer: Buffer } | { code: grpc.status; details: string } => {
    let buffer: Buffer;
    try {
      buffer = framed(message);
    } catch {
      return { code: grpc.status.INTERNAL, details: "Error serializing response" };
    }
    if (base.maxSendMessageSize !== -1 && buffer.length - MESSAGE_PREFIX_BYTES > base.maxSendMessageSize) {
      return { code: grpc.status.RESOURCE_EXHAUSTED, details: `Sent message larger than max (${buffer.length} vs. ${base.maxSendMessageSize})` };
    }
    return { buffer };
  };
  const send = (messages: readonly unknown[], callback: () => void): void => {
    if (base.checkCancelled()) return;
    const buffers: Buffer[] = [];
    let bytes = 0;
    for (const message of messages) {
      const checked = checkedFrame(message);
      if ("code" in checked) {
        // As grpc-js: the messages before it are sent, then the call ends with the status.
        if (buffers.length > 0) write(buffers, bytes, () => undefined);
        base.sendStatus({ ...checked, metadata: null });
        return;
      }
      buffers.push(checked.buffer);
      bytes += checked.buffer.length;
    }
    write(buffers, bytes, callback);
  };
  const writable = call as unknown as {
    _write: (chunk: unknown, encoding: string, callback: () => void) => void;
    _writev: (chunks: { chunk: unknown }[], callback: () => void) => void;
  };
  writable._write = (chunk, _encoding, callback) => send([chunk], callback);
  writable._writev = (chunks, callback) => send(chunks.map((c) => c.chunk), callback);
  return true;
}

function serverStreamHandler(
  method: DescMethod,
  handler: ServerStreamHandler<DescMessage, DescMessage>,
): grpc.handleServerStreamingCall<MessageShape<DescMessage>, MessageShape<DescMessage>> {
  // One framing per message object for all the calls of this method (a fan-out shares them).
  const framedOnce = oncePerObject((message: MessageShape<DescMessage>) => framedMessage(toBinary(method.output, message)));
  const framed = (message: unknown): Buffer => framedOnce(message as MessageShape<DescMessage>);
  return (call) => {
    const { context, done } = contextFor(call);
    sendFramedBatches(call, framed);
    // Everything the handler yields within one tick (a fan-out delivers a turn's items to every
    // subscriber in one microtask cascade) leaves in one write: corked at the tick's first
    // message, uncorked once the tick's microtasks are done.
    let corked = false;
    const uncork = (): void => {
      corked = false;
      call.uncork();
    };
    const run = async (): Promise<void> => {
      for await (const init of handler(call.request, context)) {
        if (context.signal.aborted) break;
        if (!corked) {
          corked = true;
          call.cork();
          process.nextTick(uncork);
        }
        if (init instanceof MessageBatch) for (const message of init.messages) call.write(create(method.output, message));
        else call.write(create(method.output, init));
        if (call.writableLength >= STREAM_WRITE_AHEAD_MESSAGES) {
          // Backpressure: wait for the transport, unless the call goes away first.
          try {
            await once(call, "drain", { signal: context.signal });
          } catch {
            break;
          }
        }
      }
    };
    run()
      .then(
        () => {
          if (!context.signal.aborted) call.end();
        },
        (err: unknown) => {
          // grpc-js turns an 'error' event on a server stream into the call's final status.
          if (!context.signal.aborted) call.emit("error", toStatus(err));
        },
      )
      .finally(done);
  };
}

function clientStreamHandler(
  method: DescMethod,
  handler: ClientStreamHandler<DescMessage, DescMessage>,
): grpc.handleClientStreamingCall<MessageShape<DescMessage>, MessageShape<DescMessage>> {
  return (call, callback) => answerOnce(method, call, callback, (context) => handler(call as AsyncIterable<MessageShape<DescMessage>>, context));
}

/** grpc-js handlers for a typed implementation (for `server.addService(definition, ...)`). */
export function serviceHandlers<M extends GenServiceMethods>(
  service: GenService<M>,
  implementation: ServiceImplementation<M>,
): grpc.UntypedServiceImplementation {
  const impl = implementation as Record<string, unknown>;
  const out: grpc.UntypedServiceImplementation = {};
  for (const method of service.methods) {
    const handler = impl[method.localName];
    if (typeof handler !== "function") {
      throw new Error(`${methodPath(method)}: no handler "${method.localName}"`);
    }
    out[method.localName] =
      method.methodKind === "unary"
        ? unaryHandler(method, handler as UnaryHandler<DescMessage, DescMessage>)
        : method.methodKind === "client_streaming"
          ? clientStreamHandler(method, handler as ClientStreamHandler<DescMessage, DescMessage>)
          : serverStreamHandler(method, handler as ServerStreamHandler<DescMessage, DescMessage>);
  }
  return out;
}

/** Registers a typed implementation of `service` on a grpc-js server. */
export function addService<M extends GenServiceMethods>(
  server: grpc.Server,
  service: GenService<M>,
  implementation: ServiceImplementation<M>,
): void {
  server.addService(serviceDefinition(service), serviceHandlers(service, implementation));
}

// ---------------------------------------------------------------------------------------------
// Client side

/** Options of one call. */
export interface CallOptions {
  /** Relative deadline in milliseconds; overrides the client's `defaultTimeoutMs`. */
  timeoutMs?: number;
  /** Absolute deadline; takes precedence over `timeoutMs`. */
  deadline?: Date;
  /** Aborting cancels the call; the promise / iterator then fails with CANCELLED. */
  signal?: AbortSignal;
  /** Request metadata (headers). */
  metadata?: grpc.Metadata;
}

/** Options of a client: grpc-js channel options plus adapter defaults. */
export interface ClientOptions extends grpc.ClientOptions {
  /**
   * Deadline applied to unary calls that set neither `timeoutMs` nor `deadline`. Server streams
   * are long-lived and get no default deadline.
   */
  defaultTimeoutMs?: number;
}

/** A running server-streaming call: iterate it for the responses, or cancel it. */
export interface ServerStreamingCall<T> extends AsyncIterable<T> {
  /** Cancels the call; iteration then ends with a CANCELLED error (unless already finished). */
  cancel(): void;
}

/**
 * A running client-streaming call: `send` the requests one by one (each resolves once the
 * transport takes more: await it, and a slow server holds the sender back), then `finish` for
 * the response. A call that failed rejects every later `send` and `finish` with its status.
 */
export interface ClientStreamingCall<I, O> {
  send(request: I): Promise<void>;
  /** Ends the request stream; resolves to the response. */
  finish(): Promise<O>;
  /** Cancels the call; `finish` then rejects with CANCELLED. */
  cancel(): void;
}

export type UnaryMethod<I extends DescMessage, O extends DescMessage> = (
  request: MessageInitShape<I>,
  options?: CallOptions,
) => Promise<MessageShape<O>>;

export type ServerStreamingMethod<I extends DescMessage, O extends DescMessage> = (
  request: MessageInitShape<I>,
  options?: CallOptions,
) => ServerStreamingCall<MessageShape<O>>;

export type ClientStreamingMethod<I extends DescMessage, O extends DescMessage> = (
  options?: CallOptions,
) => ClientStreamingCall<MessageInitShape<I>, MessageShape<O>>;

/** Lifecycle members shared by every generated client; RPC names must not collide with them. */
export interface ClientLifecycle {
  /** The underlying grpc-js client (channel access, interceptors, ...). */
  readonly grpcClient: grpc.Client;
  /** Resolves once the channel is connected, rejects if not by `deadline`. */
  waitForReady(deadline: Date | number): Promise<void>;
  /** Closes the channel; calls in flight are cancelled. */
  close(): void;
}

/** A typed client of `service`: one method per RPC, keyed by `localName`. */
export type ServiceClient<M extends GenServiceMethods> = ClientLifecycle & {
  readonly [K in keyof M]: M[K]["methodKind"] extends "unary"
    ? UnaryMethod<Input<M, K>, Output<M, K>>
    : M[K]["methodKind"] extends "server_streaming"
      ? ServerStreamingMethod<Input<M, K>, Output<M, K>>
      : M[K]["methodKind"] extends "client_streaming"
        ? ClientStreamingMethod<Input<M, K>, Output<M, K>>
        : never;
};

export interface ServiceClientConstructor<M extends GenServiceMethods> {
  new (address: string, credentials: grpc.ChannelCredentials, options?: ClientOptions): ServiceClient<M>;
  /** The descriptor the class was made from. */
  readonly service: GenService<M>;
}

function deadlineOf(options: CallOptions | undefined, defaultTimeoutMs: number | undefined): grpc.Deadline | undefined {
  if (options?.deadline !== undefined) return options.deadline;
  const timeout = options?.timeoutMs ?? defaultTimeoutMs;
  return timeout === undefined ? undefined : Date.now() + timeout;
}

function abortedError(): RpcError {
  return new RpcError(grpc.status.CANCELLED, "Cancelled on client");
}

class ClientBase implements ClientLifecycle {
  readonly grpcClient: grpc.Client;
  readonly defaultTimeoutMs: number | undefined;

  constructor(address: string, credentials: grpc.ChannelCredentials, options: ClientOptions = {}) {
    const { defaultTimeoutMs, ...channelOptions } = options;
    this.grpcClient = new grpc.Client(address, credentials, channelOptions);
    this.defaultTimeoutMs = defaultTimeoutMs;
  }

  waitForReady(deadline: Date | number): Promise<void> {
    return new Promise((resolve, reject) => {
      this.grpcClient.waitForReady(deadline, (err) => (err ? reject(err) : resolve()));
    });
  }

  close(): void {
    this.grpcClient.close();
  }
}

function callUnary(
  client: ClientBase,
  method: DescMethod,
  request: MessageInitShape<DescMessage>,
  options: CallOptions | undefined,
): Promise<MessageShape<DescMessage>> {
  return new Promise((resolve, reject) => {
    const signal = options?.signal;
    if (signal?.aborted) {
      reject(abortedError());
      return;
    }
    const deadline = deadlineOf(options, client.defaultTimeoutMs);
    const callOptions: grpc.CallOptions = deadline === undefined ? {} : { deadline };
    const onAbort = (): void => call.cancel();
    const call = client.grpcClient.makeUnaryRequest(
      methodPath(method),
      serializer(method.input),
      deserializer(method.output),
      create(method.input, request),
      options?.metadata ?? new grpc.Metadata(),
      callOptions,
      (err, value) => {
        signal?.removeEventListener("abort", onAbort);
        if (err) reject(err);
        else if (value === undefined) reject(new RpcError(grpc.status.INTERNAL, "no response message"));
        else resolve(value);
      },
    );
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

function callServerStream(
  client: ClientBase,
  method: DescMethod,
  request: MessageInitShape<DescMessage>,
  options: CallOptions | undefined,
): ServerStreamingCall<MessageShape<DescMessage>> {
  const signal = options?.signal;
  if (signal?.aborted) {
    return {
      cancel: () => {},
      [Symbol.asyncIterator]: () => ({ next: () => Promise.reject(abortedError()) }),
    };
  }
  const deadline = deadlineOf(options, undefined);
  const call = client.grpcClient.makeServerStreamRequest(
    methodPath(method),
    serializer(method.input),
    deserializer(method.output),
    create(method.input, request),
    options?.metadata ?? new grpc.Metadata(),
    deadline === undefined ? {} : { deadline },
  );
  // grpc-js emits the final non-OK status as an 'error' event, even after the consumer stopped
  // reading; without a listener that would crash the process. The iterator below still sees it.
  call.on("error", () => {});
  const onAbort = (): void => call.cancel();
  signal?.addEventListener("abort", onAbort, { once: true });
  call.once("close", () => signal?.removeEventListener("abort", onAbort));

  async function* iterate(): AsyncGenerator<MessageShape<DescMessage>> {
    let finished = false;
    try {
      for await (const message of call as AsyncIterable<MessageShape<DescMessage>>) yield message;
      finished = true;
    } finally {
      // Early exit (break / return / throw in the consumer): tell the server to stop.
      if (!finished) call.cancel();
      signal?.removeEventListener("abort", onAbort);
    }
  }
  return { cancel: () => call.cancel(), [Symbol.asyncIterator]: iterate };
}

function callClientStream(
  client: ClientBase,
  method: DescMethod,
  options: CallOptions | undefined,
): ClientStreamingCall<MessageInitShape<DescMessage>, MessageShape<DescMessage>> {
  const signal = options?.signal;
  if (signal?.aborted) {
    const failed = Promise.reject(abortedError());
    failed.catch(() => {});
    return { send: () => failed, finish: () => failed, cancel: () => {} };
  }
  const deadline = deadlineOf(options, undefined);
  let failure: Error | null = null;
  // Assigned synchronously by the promise's executor below.
  let writer!: grpc.ClientWritableStream<MessageShape<DescMessage>>;
  const response = new Promise<MessageShape<DescMessage>>((resolve, reject) => {
    const call = client.grpcClient.makeClientStreamRequest(
      methodPath(method),
      serializer(method.input),
      deserializer(method.output),
      options?.metadata ?? new grpc.Metadata(),
      deadline === undefined ? {} : { deadline },
      (err, value) => {
        signal?.removeEventListener("abort", onAbort);
        if (err) {
          failure = err;
          reject(err);
        } else if (value === undefined) reject(new RpcError(grpc.status.INTERNAL, "no response message"));
        else resolve(value);
      },
    );
    const onAbort = (): void => call.cancel();
    signal?.addEventListener("abort", onAbort, { once: true });
    writer = call;
  });
  response.catch(() => {}); // seen through send/finish
  return {
    send: async (request) => {
      if (failure !== null) throw failure;
      if (!writer.write(create(method.input, request))) {
        // Backpressure: wait until the transport drains, or the call ends.
        await Promise.race([once(writer, "drain"), response.then(() => undefined)]);
      }
      if (failure !== null) throw failure;
    },
    finish: () => {
      writer.end();
      return response;
    },
    cancel: () => writer.cancel(),
  };
}

/**
 * A client class for `service`. Its instances have one method per RPC (by `localName`: `join`,
 * `setHeartbeat`, ...): unary ones return a promise of the response, server-streaming ones a
 * `ServerStreamingCall`. Failures reject with grpc-js `ServiceError`s (`code`, `details`).
 */
export function makeClientClass<M extends GenServiceMethods>(
  service: GenService<M>,
): ServiceClientConstructor<M> {
  class Client extends ClientBase {
    static readonly service = service;
  }
  for (const method of service.methods) {
    methodDefinition(method); // validates the method kind
    if (method.localName in Client.prototype || method.localName === "grpcClient" || method.localName === "defaultTimeoutMs") {
      throw new Error(`${methodPath(method)}: method name "${method.localName}" collides with a client member`);
    }
    const invoke =
      method.methodKind === "unary"
        ? function (this: ClientBase, request: MessageInitShape<DescMessage>, options?: CallOptions) {
            return callUnary(this, method, request, options);
          }
        : method.methodKind === "client_streaming"
          ? function (this: ClientBase, options?: CallOptions) {
              return callClientStream(this, method, options);
            }
          : function (this: ClientBase, request: MessageInitShape<DescMessage>, options?: CallOptions) {
              return callServerStream(this, method, request, options);
            };
    Object.defineProperty(Client.prototype, method.localName, { value: invoke, writable: true, configurable: true });
  }
  // The per-method members are attached above at run time; the type is their static description.
  return Client as unknown as ServiceClientConstructor<M>;
}

const clientClasses = new WeakMap<object, unknown>();

/**
 * Shorthand for `new (makeClientClass(service))(address, credentials, options)`, with the class
 * made once per service. Credentials default to insecure (plaintext HTTP/2).
 */
export function createClient<M extends GenServiceMethods>(
  service: GenService<M>,
  address: string,
  credentials: grpc.ChannelCredentials = grpc.credentials.createInsecure(),
  options?: ClientOptions,
): ServiceClient<M> {
  let Client = clientClasses.get(service) as ServiceClientConstructor<M> | undefined;
  if (Client === undefined) {
    Client = makeClientClass(service);
    clientClasses.set(service, Client);
  }
  return new Client(address, credentials, options);
}
