/**
 * The client side of one HTTP/2 connection (RFC 9113) over an already connected socket, with
 * just what gRPC calls need: streams opened with a header block, request DATA within the
 * peer's flow-control windows, response headers, DATA and trailers, RST_STREAM, SETTINGS, PING,
 * WINDOW_UPDATE and GOAWAY. No server push (disabled in our SETTINGS), no priorities, no TLS.
 *
 * Why not node:http2: loading it pulls in Node's http, tls, crypto and stream modules and
 * starting an nghttp2 session; together that is a large share of a short command-line call
 * (bench/startup.bench.ts measures it). The agent's server is grpc-js on node:http2 either way,
 * and test/h2-session.test.ts runs this client against node:http2 servers that misbehave.
 *
 * The stream API follows the subset of node:http2's ClientHttp2Stream that src/rpc/h2-client.ts
 * uses: events 'response', 'trailers', 'data', 'drain', 'error', 'close'; write/end/close,
 * pause/resume, rstCode. Received data is flow-controlled: window credit goes back to the server
 * only as the reader takes data, so a paused stream stops the server once the window is full.
 */

import { EventEmitter } from "node:events";
import type { Socket } from "node:net";
import { encodeHeaderBlock, HpackDecoder, HpackError, type HeaderField } from "./hpack.js";

/** HTTP/2 error codes (RFC 9113 section 7). */
export const H2Error = {
  NO_ERROR: 0x0,
  PROTOCOL_ERROR: 0x1,
  INTERNAL_ERROR: 0x2,
  FLOW_CONTROL_ERROR: 0x3,
  STREAM_CLOSED: 0x5,
  FRAME_SIZE_ERROR: 0x6,
  REFUSED_STREAM: 0x7,
  CANCEL: 0x8,
  COMPRESSION_ERROR: 0x9,
  ENHANCE_YOUR_CALM: 0xb,
  INADEQUATE_SECURITY: 0xc,
} as const;

const FrameType = {
  DATA: 0x0,
  HEADERS: 0x1,
  PRIORITY: 0x2,
  RST_STREAM: 0x3,
  SETTINGS: 0x4,
  PUSH_PROMISE: 0x5,
  PING: 0x6,
  GOAWAY: 0x7,
  WINDOW_UPDATE: 0x8,
  CONTINUATION: 0x9,
} as const;

const Flag = { END_STREAM: 0x1, ACK: 0x1, END_HEADERS: 0x4, PADDED: 0x8, PRIORITY: 0x20 } as const;
const Setting = { HEADER_TABLE_SIZE: 0x1, ENABLE_PUSH: 0x2, INITIAL_WINDOW_SIZE: 0x4, MAX_FRAME_SIZE: 0x5, MAX_HEADER_LIST_SIZE: 0x6 } as const;

const PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");
const FRAME_HEADER_BYTES = 9;
/** The frame size every peer must accept, and the largest we accept (we never raise it). */
const DEFAULT_MAX_FRAME_BYTES = 16_384;
const DEFAULT_WINDOW_BYTES = 65_535;
const MAX_WINDOW_BYTES = 2 ** 31 - 1;
/** What we let the server send ahead of the reader, per stream and for the whole connection. */
const RECEIVE_WINDOW_BYTES = 1024 * 1024;
/** Largest decoded header list accepted (and advertised). */
const MAX_HEADER_LIST_BYTES = 64 * 1024;
/** A header block split over CONTINUATION frames may not grow beyond this. */
const MAX_HEADER_BLOCK_BYTES = 64 * 1024;

/** Response headers and trailers: names in lower case; a repeated name's values joined with ", ". */
export type H2Headers = Record<string, string>;

/** An error of the connection or of one stream; `code` says which kind (as node's errors do). */
export class H2SessionError extends Error {
  override readonly name = "H2SessionError";
  constructor(
    message: string,
    readonly code: "ERR_H2_CONNECTION" | "ERR_H2_GOAWAY" | "ERR_H2_PROTOCOL",
  ) {
    super(message);
  }
}

function frameHeader(length: number, type: number, flags: number, streamId: number): Buffer {
  const header = Buffer.allocUnsafe(FRAME_HEADER_BYTES);
  header.writeUIntBE(length, 0, 3);
  header[3] = type;
  header[4] = flags;
  header.writeUInt32BE(streamId & 0x7fffffff, 5);
  return header;
}

function headersOf(fields: readonly HeaderField[]): H2Headers {
  const headers: H2Headers = {};
  for (const [name, value] of fields) headers[name] = name in headers ? `${headers[name]}, ${value}` : value;
  return headers;
}

/** One request/response exchange on a session. */
export class H2ClientStream extends EventEmitter {
  /** The RST_STREAM code that ended the stream, when one did (either side). */
  rstCode: number | undefined = undefined;
  #closed = false;
  #localEnded = false;
  #remoteEnded = false;
  #responseSeen = false;
  #paused = false;
  /** Received DATA the reader has not taken yet (only while paused). */
  #held: Buffer[] = [];
  /** Request bytes waiting for send window. */
  #pending: Buffer[] = [];
  #pendingBytes = 0;
  #endAfterPending = false;
  /** What we may still send (the server's window for this stream). */
  sendWindowBytes: number;
  /** Bytes taken by the reader and not yet credited back to the server. */
  #unacknowledgedBytes = 0;
  /** What the server may still send on this stream before our next WINDOW_UPDATE. */
  #receiveWindowBytes = RECEIVE_WINDOW_BYTES;

  constructor(
    private readonly session: H2ClientSession,
    readonly id: number,
    initialSendWindowBytes: number,
  ) {
    super();
    this.sendWindowBytes = initialSendWindowBytes;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Sends request bytes; false when they wait for flow-control window ('drain' follows). */
  write(chunk: Uint8Array): boolean {
    if (this.#localEnded || this.#closed) throw new Error("write after end");
    this.#pending.push(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
    this.#pendingBytes += chunk.byteLength;
    this.flush();
    return this.#pendingBytes === 0;
  }

  /** Sends `chunk` (if any) and ends the request side. */
  end(chunk?: Uint8Array): void {
    if (this.#localEnded || this.#closed) return;
    if (chunk !== undefined && chunk.byteLength > 0) {
      this.#pending.push(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength));
      this.#pendingBytes += chunk.byteLength;
    }
    this.#endAfterPending = true;
    this.flush();
  }

  /** Resets the stream with `code` (CANCEL by default) and closes it. */
  close(code: number = H2Error.CANCEL): void {
    if (this.#closed) return;
    this.session.sendReset(this.id, code);
    this.rstCode = code;
    this.finish();
  }

  pause(): void {
    this.#paused = true;
  }

  resume(): void {
    if (!this.#paused) return;
    this.#paused = false;
    while (!this.#paused && this.#held.length > 0) this.deliver(this.#held.shift() as Buffer);
    if (this.#held.length === 0 && this.#remoteEnded) this.finishIfDone();
  }

  /** Sends what the windows allow. @internal */
  flush(): void {
    while (this.#pending.length > 0 && !this.#closed) {
      const allowed = Math.min(this.sendWindowBytes, this.session.sendWindowBytes, this.session.maxSendFrameBytes);
      if (allowed <= 0) return;
      const head = this.#pending[0] as Buffer;
      const piece = head.length <= allowed ? head : head.subarray(0, allowed);
      if (piece === head) this.#pending.shift();
      else this.#pending[0] = head.subarray(allowed);
      this.#pendingBytes -= piece.length;
      this.sendWindowBytes -= piece.length;
      const last = this.#pendingBytes === 0 && this.#endAfterPending;
      this.session.sendData(this.id, piece, last);
      if (last) this.#localEnded = true;
      if (this.#pendingBytes === 0 && !last) this.emit("drain");
    }
    if (this.#pending.length === 0 && this.#endAfterPending && !this.#localEnded && !this.#closed) {
      this.#localEnded = true;
      this.session.sendData(this.id, Buffer.alloc(0), true);
    }
    if (this.#localEnded) this.finishIfDone();
  }

  /** A header block arrived for this stream. @internal */
  receiveHeaders(headers: H2Headers, endStream: boolean): void {
    if (this.#closed) return;
    if (!this.#responseSeen) {
      const status = Number(headers[":status"]);
      if (status >= 100 && status < 200) return; // informational: the real response follows
      this.#responseSeen = true;
      this.emit("response", headers);
    } else {
      this.emit("trailers", headers);
    }
    if (endStream) this.receiveEnd();
  }

  /** DATA arrived for this stream (`frameBytes` with its padding). @internal */
  receiveData(data: Buffer, frameBytes: number, endStream: boolean): void {
    if (this.#closed) return;
    this.#receiveWindowBytes -= frameBytes;
    if (this.#receiveWindowBytes < 0) {
      // The server ignored our window: what it sends would pile up unread without bound.
      this.close(H2Error.FLOW_CONTROL_ERROR);
      return;
    }
    // Padding is never read: it is credited back with the next window update.
    this.#unacknowledgedBytes += frameBytes - data.length;
    if (this.#paused || this.#held.length > 0) this.#held.push(data);
    else this.deliver(data);
    if (endStream) this.receiveEnd();
  }

  /** The server reset the stream. @internal */
  receiveReset(code: number): void {
    if (this.#closed) return;
    this.rstCode = code;
    this.finish();
  }

  /** The connection failed under this stream. @internal */
  fail(error: Error): void {
    if (this.#closed) return;
    this.emit("error", error);
    this.finish();
  }

  private deliver(data: Buffer): void {
    if (data.length > 0) this.emit("data", data);
    this.#unacknowledgedBytes += data.length;
    if (this.#unacknowledgedBytes >= RECEIVE_WINDOW_BYTES / 2 && !this.#remoteEnded) {
      this.session.sendWindowUpdate(this.id, this.#unacknowledgedBytes);
      this.#receiveWindowBytes += this.#unacknowledgedBytes;
      this.#unacknowledgedBytes = 0;
    }
    this.session.creditConnection(data.length);
  }

  private receiveEnd(): void {
    this.#remoteEnded = true;
    this.finishIfDone();
  }

  private finishIfDone(): void {
    // The stream is over once the server ended it and everything received was read. A request
    // side still open is ended for it (gRPC answers only after the request, or not at all).
    if (this.#remoteEnded && this.#held.length === 0 && !this.#paused) {
      if (!this.#localEnded) this.session.sendReset(this.id, H2Error.NO_ERROR);
      this.finish();
    }
  }

  private finish(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#pending = [];
    this.#held = [];
    this.session.forget(this.id);
    this.emit("close");
  }
}

/** One client connection. Create with `new H2ClientSession(socket, authority)`. */
export class H2ClientSession extends EventEmitter {
  #socket: Socket;
  #streams = new Map<number, H2ClientStream>();
  #nextStreamId = 1;
  #decoder = new HpackDecoder(undefined, MAX_HEADER_LIST_BYTES);
  #input: Buffer = Buffer.alloc(0);
  /** A header block being continued: its stream, flags and fragments so far. */
  #continuation: { streamId: number; endStream: boolean; fragments: Buffer[]; bytes: number } | null = null;
  #peerInitialWindowBytes = DEFAULT_WINDOW_BYTES;
  #unacknowledgedConnectionBytes = 0;
  /** What the server may still send on the connection before our next WINDOW_UPDATE. */
  #receiveWindowBytes = RECEIVE_WINDOW_BYTES;
  #closing = false;
  #destroyed = false;
  #goawayReceived = false;
  /** What we may still send on the connection (the server's connection window). */
  sendWindowBytes = DEFAULT_WINDOW_BYTES;
  maxSendFrameBytes = DEFAULT_MAX_FRAME_BYTES;

  constructor(
    socket: Socket,
    private readonly authority: string,
  ) {
    super();
    this.#socket = socket;
    socket.setNoDelay(true);
    const settings = Buffer.alloc(18);
    settings.writeUInt16BE(Setting.ENABLE_PUSH, 0);
    settings.writeUInt32BE(0, 2);
    settings.writeUInt16BE(Setting.INITIAL_WINDOW_SIZE, 6);
    settings.writeUInt32BE(RECEIVE_WINDOW_BYTES, 8);
    settings.writeUInt16BE(Setting.MAX_HEADER_LIST_SIZE, 12);
    settings.writeUInt32BE(MAX_HEADER_LIST_BYTES, 14);
    const connectionCredit = Buffer.alloc(4);
    connectionCredit.writeUInt32BE(RECEIVE_WINDOW_BYTES - DEFAULT_WINDOW_BYTES, 0);
    socket.write(
      Buffer.concat([
        PREFACE,
        frameHeader(settings.length, FrameType.SETTINGS, 0, 0),
        settings,
        frameHeader(4, FrameType.WINDOW_UPDATE, 0, 0),
        connectionCredit,
      ]),
    );
    socket.on("data", (chunk: Buffer) => this.#receive(chunk));
    socket.on("error", (error) => this.destroy(error));
    socket.on("close", () => this.destroy(new H2SessionError("the connection closed", "ERR_H2_CONNECTION")));
  }

  /** True once no new stream can be opened (closing, closed, or told to go away). */
  get closed(): boolean {
    return this.#closing || this.#destroyed || this.#goawayReceived;
  }

  get destroyed(): boolean {
    return this.#destroyed;
  }

  /** Opens a stream: `headers` holds the request's pseudo-headers and headers (lower case). */
  request(headers: Readonly<Record<string, string>>): H2ClientStream {
    if (this.closed) throw new H2SessionError("the connection is closed", "ERR_H2_CONNECTION");
    const id = this.#nextStreamId;
    this.#nextStreamId += 2;
    const fields: HeaderField[] = [[":method", headers[":method"] ?? "POST"], [":scheme", "http"], [":authority", this.authority], [":path", headers[":path"] ?? "/"]];
    for (const [name, value] of Object.entries(headers)) if (!name.startsWith(":")) fields.push([name.toLowerCase(), value]);
    const stream = new H2ClientStream(this, id, this.#peerInitialWindowBytes);
    this.#streams.set(id, stream);
    this.#sendHeaderBlock(id, encodeHeaderBlock(fields));
    return stream;
  }

  /** Ends the connection once its streams are over (GOAWAY, then the socket). */
  close(): void {
    if (this.#closing || this.#destroyed) return;
    this.#closing = true;
    if (this.#streams.size === 0) this.#shutDown();
  }

  /** Ends the connection now; open streams fail with `error`. */
  destroy(error?: Error): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    const failure = error ?? new H2SessionError("the connection was closed", "ERR_H2_CONNECTION");
    for (const stream of [...this.#streams.values()]) stream.fail(failure);
    this.#streams.clear();
    this.#socket.destroy();
    this.emit("close");
  }

  // -- used by streams -------------------------------------------------------------------------

  /** @internal */
  sendData(streamId: number, data: Buffer, endStream: boolean): void {
    this.sendWindowBytes -= data.length;
    this.#write(frameHeader(data.length, FrameType.DATA, endStream ? Flag.END_STREAM : 0, streamId), data);
  }

  /** @internal */
  sendReset(streamId: number, code: number): void {
    const payload = Buffer.alloc(4);
    payload.writeUInt32BE(code, 0);
    this.#write(frameHeader(4, FrameType.RST_STREAM, 0, streamId), payload);
  }

  /** @internal */
  sendWindowUpdate(streamId: number, bytes: number): void {
    const payload = Buffer.alloc(4);
    payload.writeUInt32BE(bytes, 0);
    this.#write(frameHeader(4, FrameType.WINDOW_UPDATE, 0, streamId), payload);
  }

  /** Received bytes the reader took (or that no stream will take): credit them back. @internal */
  creditConnection(bytes: number): void {
    this.#unacknowledgedConnectionBytes += bytes;
    if (this.#unacknowledgedConnectionBytes >= RECEIVE_WINDOW_BYTES / 2) {
      this.sendWindowUpdate(0, this.#unacknowledgedConnectionBytes);
      this.#receiveWindowBytes += this.#unacknowledgedConnectionBytes;
      this.#unacknowledgedConnectionBytes = 0;
    }
  }

  /** @internal */
  forget(streamId: number): void {
    this.#streams.delete(streamId);
    if (this.#closing && this.#streams.size === 0) this.#shutDown();
  }

  // -- internals -------------------------------------------------------------------------------

  #write(header: Buffer, payload?: Buffer): void {
    if (this.#destroyed) return;
    this.#socket.write(payload === undefined || payload.length === 0 ? header : Buffer.concat([header, payload]));
  }

  #sendHeaderBlock(streamId: number, block: Uint8Array): void {
    const bytes = Buffer.from(block.buffer, block.byteOffset, block.byteLength);
    let offset = 0;
    let first = true;
    do {
      const piece = bytes.subarray(offset, offset + this.maxSendFrameBytes);
      offset += piece.length;
      const last = offset >= bytes.length;
      const type = first ? FrameType.HEADERS : FrameType.CONTINUATION;
      this.#write(frameHeader(piece.length, type, last ? Flag.END_HEADERS : 0, streamId), piece);
      first = false;
    } while (offset < bytes.length);
  }

  #shutDown(): void {
    const payload = Buffer.alloc(8);
    payload.writeUInt32BE(0, 0); // we accept no streams from the server
    payload.writeUInt32BE(H2Error.NO_ERROR, 4);
    this.#write(frameHeader(8, FrameType.GOAWAY, 0, 0), payload);
    this.#socket.end();
    // Nothing more is wanted from this connection: waiting for the server's side of the close
    // would only keep a finished program alive for another round trip.
    this.#socket.unref();
    this.#destroyed = true;
    this.emit("close");
  }

  /** A connection error: tell the server why, and fail every stream. */
  #connectionError(code: number, message: string): void {
    if (this.#destroyed) return;
    const payload = Buffer.alloc(8);
    payload.writeUInt32BE(0, 0);
    payload.writeUInt32BE(code, 4);
    this.#write(frameHeader(8, FrameType.GOAWAY, 0, 0), payload);
    this.destroy(new H2SessionError(message, "ERR_H2_PROTOCOL"));
  }

  #receive(chunk: Buffer): void {
    this.#input = this.#input.length === 0 ? chunk : Buffer.concat([this.#input, chunk]);
    while (this.#input.length >= FRAME_HEADER_BYTES && !this.#destroyed) {
      const length = this.#input.readUIntBE(0, 3);
      if (length > DEFAULT_MAX_FRAME_BYTES) {
        this.#connectionError(H2Error.FRAME_SIZE_ERROR, `a frame of ${length} bytes exceeds ${DEFAULT_MAX_FRAME_BYTES}`);
        return;
      }
      if (this.#input.length < FRAME_HEADER_BYTES + length) return;
      const type = this.#input[3] as number;
      const flags = this.#input[4] as number;
      const streamId = this.#input.readUInt32BE(5) & 0x7fffffff;
      const payload = this.#input.subarray(FRAME_HEADER_BYTES, FRAME_HEADER_BYTES + length);
      this.#input = this.#input.subarray(FRAME_HEADER_BYTES + length);
      try {
        this.#frame(type, flags, streamId, payload);
      } catch (error) {
        if (error instanceof HpackError) this.#connectionError(H2Error.COMPRESSION_ERROR, error.message);
        else if (error instanceof ProtocolViolation) this.#connectionError(error.code, error.message);
        else throw error;
      }
    }
  }

  #frame(type: number, flags: number, streamId: number, payload: Buffer): void {
    if (this.#continuation !== null && (type !== FrameType.CONTINUATION || streamId !== this.#continuation.streamId)) {
      throw new ProtocolViolation(H2Error.PROTOCOL_ERROR, "a header block was interrupted");
    }
    switch (type) {
      case FrameType.DATA:
        return this.#data(flags, streamId, payload);
      case FrameType.HEADERS:
        return this.#headers(flags, streamId, payload);
      case FrameType.CONTINUATION:
        return this.#continue(flags, streamId, payload);
      case FrameType.RST_STREAM:
        if (payload.length !== 4) throw new ProtocolViolation(H2Error.FRAME_SIZE_ERROR, "RST_STREAM of the wrong size");
        this.#streams.get(streamId)?.receiveReset(payload.readUInt32BE(0));
        return;
      case FrameType.SETTINGS:
        return this.#settings(flags, streamId, payload);
      case FrameType.PING:
        if (payload.length !== 8) throw new ProtocolViolation(H2Error.FRAME_SIZE_ERROR, "PING of the wrong size");
        if ((flags & Flag.ACK) === 0) this.#write(frameHeader(8, FrameType.PING, Flag.ACK, 0), payload);
        return;
      case FrameType.GOAWAY:
        return this.#goaway(payload);
      case FrameType.WINDOW_UPDATE:
        return this.#windowUpdate(streamId, payload);
      case FrameType.PUSH_PROMISE:
        throw new ProtocolViolation(H2Error.PROTOCOL_ERROR, "PUSH_PROMISE although push is disabled");
      default:
        return; // PRIORITY and unknown frame types are ignored (section 5.5)
    }
  }

  /** The payload without its padding (and the priority fields of HEADERS). */
  #unpadded(flags: number, payload: Buffer, priorityBytes: number): Buffer {
    let start = 0;
    let padding = 0;
    if (flags & Flag.PADDED) {
      if (payload.length < 1) throw new ProtocolViolation(H2Error.FRAME_SIZE_ERROR, "a padded frame without padding length");
      padding = payload[0] as number;
      start = 1;
    }
    start += priorityBytes;
    if (start + padding > payload.length) throw new ProtocolViolation(H2Error.PROTOCOL_ERROR, "padding longer than the frame");
    return payload.subarray(start, payload.length - padding);
  }

  #data(flags: number, streamId: number, payload: Buffer): void {
    if (streamId === 0) throw new ProtocolViolation(H2Error.PROTOCOL_ERROR, "DATA on stream 0");
    const data = this.#unpadded(flags, payload, 0);
    this.#receiveWindowBytes -= payload.length;
    if (this.#receiveWindowBytes < 0) throw new ProtocolViolation(H2Error.FLOW_CONTROL_ERROR, "the server sent beyond the connection window");
    const stream = this.#streams.get(streamId);
    // Padding and data for streams that are gone still used connection window.
    const unread = payload.length - (stream === undefined ? 0 : data.length);
    if (unread > 0) this.creditConnection(unread);
    stream?.receiveData(Buffer.from(data), payload.length, (flags & Flag.END_STREAM) !== 0);
  }

  #headers(flags: number, streamId: number, payload: Buffer): void {
    if (streamId === 0) throw new ProtocolViolation(H2Error.PROTOCOL_ERROR, "HEADERS on stream 0");
    const fragment = this.#unpadded(flags, payload, flags & Flag.PRIORITY ? 5 : 0);
    const endStream = (flags & Flag.END_STREAM) !== 0;
    if (flags & Flag.END_HEADERS) this.#headerBlock(streamId, fragment, endStream);
    else this.#continuation = { streamId, endStream, fragments: [Buffer.from(fragment)], bytes: fragment.length };
  }

  #continue(flags: number, streamId: number, payload: Buffer): void {
    const continuation = this.#continuation;
    if (continuation === null) throw new ProtocolViolation(H2Error.PROTOCOL_ERROR, "CONTINUATION without HEADERS");
    continuation.fragments.push(Buffer.from(payload));
    continuation.bytes += payload.length;
    if (continuation.bytes > MAX_HEADER_BLOCK_BYTES) throw new ProtocolViolation(H2Error.ENHANCE_YOUR_CALM, `a header block beyond ${MAX_HEADER_BLOCK_BYTES} bytes`);
    if (flags & Flag.END_HEADERS) {
      this.#continuation = null;
      this.#headerBlock(streamId, Buffer.concat(continuation.fragments), continuation.endStream);
    }
  }

  #headerBlock(streamId: number, block: Uint8Array, endStream: boolean): void {
    // Decoded even for a stream that is gone: the dynamic table must stay in step.
    const headers = headersOf(this.#decoder.decode(block));
    this.#streams.get(streamId)?.receiveHeaders(headers, endStream);
  }

  #settings(flags: number, streamId: number, payload: Buffer): void {
    if (streamId !== 0) throw new ProtocolViolation(H2Error.PROTOCOL_ERROR, "SETTINGS on a stream");
    if (flags & Flag.ACK) return;
    if (payload.length % 6 !== 0) throw new ProtocolViolation(H2Error.FRAME_SIZE_ERROR, "SETTINGS of the wrong size");
    for (let offset = 0; offset < payload.length; offset += 6) {
      const id = payload.readUInt16BE(offset);
      const value = payload.readUInt32BE(offset + 2);
      if (id === Setting.INITIAL_WINDOW_SIZE) {
        if (value > MAX_WINDOW_BYTES) throw new ProtocolViolation(H2Error.FLOW_CONTROL_ERROR, "an initial window beyond 2^31-1");
        const delta = value - this.#peerInitialWindowBytes;
        this.#peerInitialWindowBytes = value;
        for (const stream of this.#streams.values()) stream.sendWindowBytes += delta;
      } else if (id === Setting.MAX_FRAME_SIZE) {
        if (value < DEFAULT_MAX_FRAME_BYTES || value > 2 ** 24 - 1) throw new ProtocolViolation(H2Error.PROTOCOL_ERROR, "an invalid maximum frame size");
        this.maxSendFrameBytes = value;
      }
      // HEADER_TABLE_SIZE needs nothing (our encoder uses no dynamic table); others do not apply.
    }
    this.#write(frameHeader(0, FrameType.SETTINGS, Flag.ACK, 0));
    for (const stream of [...this.#streams.values()]) stream.flush();
  }

  #goaway(payload: Buffer): void {
    if (payload.length < 8) throw new ProtocolViolation(H2Error.FRAME_SIZE_ERROR, "GOAWAY too short");
    const lastStreamId = payload.readUInt32BE(0) & 0x7fffffff;
    const code = payload.readUInt32BE(4);
    this.#goawayReceived = true;
    // The connection ends once the streams the server still serves are over.
    this.#closing = true;
    // Streams the server never processed can be retried elsewhere; the others finish as usual.
    for (const stream of [...this.#streams.values()]) {
      if (stream.id > lastStreamId) stream.fail(new H2SessionError(`the server is going away (HTTP/2 code ${code})`, "ERR_H2_GOAWAY"));
    }
    if (this.#streams.size === 0) this.#shutDown();
  }

  #windowUpdate(streamId: number, payload: Buffer): void {
    if (payload.length !== 4) throw new ProtocolViolation(H2Error.FRAME_SIZE_ERROR, "WINDOW_UPDATE of the wrong size");
    const increment = payload.readUInt32BE(0) & 0x7fffffff;
    if (increment === 0) throw new ProtocolViolation(H2Error.PROTOCOL_ERROR, "a window increment of 0");
    if (streamId === 0) {
      this.sendWindowBytes += increment;
      if (this.sendWindowBytes > MAX_WINDOW_BYTES) throw new ProtocolViolation(H2Error.FLOW_CONTROL_ERROR, "the connection window beyond 2^31-1");
      for (const stream of [...this.#streams.values()]) stream.flush();
      return;
    }
    const stream = this.#streams.get(streamId);
    if (stream === undefined) return;
    stream.sendWindowBytes += increment;
    stream.flush();
  }
}

/** A connection error found while reading a frame. */
class ProtocolViolation extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
  }
}
