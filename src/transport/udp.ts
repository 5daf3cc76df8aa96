/**
 * src/transport/udp.ts: owns UdpTransport, the one UDP socket of an engine (node:dgram, udp4 or
 * udp6 by the bind address's family; dual stack on `::` when asked). It raises the kernel
 * buffers, hands every received datagram to one callback with the source as text (IPv4-mapped
 * IPv6 sources `::ffff:a.b.c.d` become `a.b.c.d`), sends to core Addresses, tells when what it
 * was given has left the socket (flush, before a close), and counts what it did. It never throws
 * out of a socket callback: errors are counted. Multicast is not its job.
 */

import dgram from "node:dgram";
import { formatIp, parseIp, type Address, type AddressFamily } from "../core/address.js";

/** Kernel socket buffer size asked for by default (4 MiB); the kernel may cap it silently. */
export const DEFAULT_SOCKET_BUFFER_BYTES = 4 * 1024 * 1024;

export interface UdpTransportOptions {
  /** IP literal to bind: `0.0.0.0` / `::` for every interface, or a specific address. */
  readonly ip: string;
  /** UDP port; 0 asks the kernel for an ephemeral one (see `localPort`). */
  readonly port: number;
  /**
   * Only for an IPv6 bind address: also receive and send IPv4 (ipv6Only false). Default false:
   * a udp6 socket speaks IPv6 only.
   */
  readonly dualStack?: boolean;
  /** SO_RCVBUF to ask for (bytes). Default DEFAULT_SOCKET_BUFFER_BYTES; failure is tolerated. */
  readonly recvBufferBytes?: number;
  /** SO_SNDBUF to ask for (bytes). Default DEFAULT_SOCKET_BUFFER_BYTES; failure is tolerated. */
  readonly sendBufferBytes?: number;
}

/** Receives one datagram; `bytes` is the socket's own Buffer (the callee may keep it). */
export type DatagramCallback = (bytes: Uint8Array, fromIp: string, fromPort: number) => void;

export interface UdpTransportStats {
  datagramsSent: number;
  bytesSent: number;
  datagramsReceived: number;
  bytesReceived: number;
  /** Sends the kernel refused, plus sends to an address family this socket cannot reach. */
  sendErrors: number;
  /** 'error' events of the socket after it was bound. */
  socketErrors: number;
  /** Exceptions thrown by the datagram callback (caught and counted). */
  callbackErrors: number;
  /** Socket buffer sizes actually granted (bytes); 0 if unknown. */
  recvBufferBytes: number;
  sendBufferBytes: number;
}

/** Resolves IP literals synchronously, so that dgram sends without a nextTick per datagram. */
function literalLookup(
  hostname: string,
  _options: unknown,
  callback: (err: NodeJS.ErrnoException | null, address: string, family: number) => void,
): void {
  callback(null, hostname, hostname.includes(":") ? 6 : 4);
}

export class UdpTransport {
  readonly family: AddressFamily;
  /** The bound IP as text (e.g. `0.0.0.0`, `::1`). */
  readonly localIp: string;
  /** The bound port (the kernel's choice when 0 was asked). */
  readonly localPort: number;
  /** Whether this udp6 socket also carries IPv4 (as IPv4-mapped addresses). */
  readonly dualStack: boolean;

  private readonly socket: dgram.Socket;
  private receiver: DatagramCallback | null = null;
  private closed = false;
  private closing: Promise<void> | null = null;
  /** Destination host text per (interned) Address. */
  private readonly hostText = new WeakMap<Address, string>();
  private readonly counters: UdpTransportStats;
  private readonly onSent: (err: Error | null, bytes?: number) => void;
  /** Sends handed to dgram, and those whose callback has run (sent, failed or cancelled). */
  private sendsStarted = 0;
  private sendsDone = 0;
  /** flush() callers, each waiting for sendsDone to reach its mark (marks ascend). */
  private flushWaiters: { readonly mark: number; readonly resolve: () => void }[] = [];

  private constructor(socket: dgram.Socket, family: AddressFamily, dualStack: boolean) {
    this.socket = socket;
    this.family = family;
    this.dualStack = dualStack;
    const bound = socket.address();
    this.localIp = bound.address;
    this.localPort = bound.port;
    this.counters = {
      datagramsSent: 0,
      bytesSent: 0,
      datagramsReceived: 0,
      bytesReceived: 0,
      sendErrors: 0,
      socketErrors: 0,
      callbackErrors: 0,
      recvBufferBytes: 0,
      sendBufferBytes: 0,
    };
    this.onSent = (err, bytes) => {
      if (err) this.counters.sendErrors++;
      else {
        this.counters.datagramsSent++;
        this.counters.bytesSent += bytes ?? 0;
      }
      this.sendsDone++;
      if (this.flushWaiters.length > 0) this.wakeFlushes();
    };
    socket.on("error", () => {
      this.counters.socketErrors++;
    });
    socket.on("message", (msg, rinfo) => {
      this.counters.datagramsReceived++;
      this.counters.bytesReceived += msg.length;
      const receiver = this.receiver;
      if (receiver === null) return;
      try {
        receiver(msg, sourceIpText(rinfo.address), rinfo.port);
      } catch {
        this.counters.callbackErrors++;
      }
    });
  }

  /** Creates and binds a socket. Rejects with the bind error (e.g. EADDRINUSE, EADDRNOTAVAIL). */
  static async bind(options: UdpTransportOptions): Promise<UdpTransport> {
    const ipBytes = parseIp(options.ip);
    if (ipBytes === null) throw new RangeError(`bind address "${options.ip}" is not an IPv4 or IPv6 literal`);
    if (!Number.isInteger(options.port) || options.port < 0 || options.port > 65535) {
      throw new RangeError(`bind port must be an integer in 0..65535, got ${options.port}`);
    }
    const family: AddressFamily = ipBytes.length === 4 ? 4 : 6;
    const dualStack = family === 6 && options.dualStack === true;
    const socket = dgram.createSocket({
      type: family === 4 ? "udp4" : "udp6",
      ipv6Only: family === 6 && !dualStack,
      lookup: literalLookup as unknown as dgram.SocketOptions["lookup"],
    });
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error): void => {
        socket.off("listening", onListening);
        try {
          socket.close();
        } catch {
          // already closed
        }
        reject(err);
      };
      const onListening = (): void => {
        socket.off("error", onError);
        resolve();
      };
      socket.once("error", onError);
      socket.once("listening", onListening);
      socket.bind({ address: options.ip, port: options.port, exclusive: true });
    });
    const transport = new UdpTransport(socket, family, dualStack);
    transport.counters.recvBufferBytes = trySetBuffer(
      () => socket.setRecvBufferSize(options.recvBufferBytes ?? DEFAULT_SOCKET_BUFFER_BYTES),
      () => socket.getRecvBufferSize(),
    );
    transport.counters.sendBufferBytes = trySetBuffer(
      () => socket.setSendBufferSize(options.sendBufferBytes ?? DEFAULT_SOCKET_BUFFER_BYTES),
      () => socket.getSendBufferSize(),
    );
    return transport;
  }

  /** Sets the one receiver of incoming datagrams (replacing any previous one). */
  onDatagram(callback: DatagramCallback): void {
    this.receiver = callback;
  }

  /**
   * Sends `bytes` to `to`. The bytes must stay unchanged until the send completes (hand over a
   * copy of anything that will be reused). Returns false (counted as a send error) when the
   * socket is closed or cannot reach `to`'s address family; kernel errors are counted later.
   */
  send(to: Address, bytes: Uint8Array): boolean {
    if (this.closed) {
      this.counters.sendErrors++;
      return false;
    }
    let host = this.hostText.get(to);
    if (host === undefined) {
      const text = this.destinationText(to);
      if (text === null) {
        this.counters.sendErrors++;
        return false;
      }
      host = text;
      this.hostText.set(to, host);
    }
    this.sendsStarted++;
    try {
      this.socket.send(bytes, to.port, host, this.onSent);
      return true;
    } catch {
      this.sendsStarted--;
      this.counters.sendErrors++;
      return false;
    }
  }

  /**
   * Resolves once every datagram passed to `send` so far has left this process: handed to the
   * kernel, or failed (counted). Later sends are not waited for, so a busy socket cannot hold
   * it up. Closing the socket before that would drop datagrams still queued in it.
   */
  flush(): Promise<void> {
    const mark = this.sendsStarted;
    if (this.sendsDone >= mark || this.closing !== null) return Promise.resolve();
    return new Promise<void>((resolve) => {
      this.flushWaiters.push({ mark, resolve });
    });
  }

  /** Closes the socket (idempotent). Datagrams arriving afterwards are not delivered. */
  close(): Promise<void> {
    if (this.closing !== null) return this.closing;
    this.closed = true;
    this.receiver = null;
    // Sends still queued are cancelled by the close (their callbacks report it): nothing to wait for.
    const waiters = this.flushWaiters;
    this.flushWaiters = [];
    for (const w of waiters) w.resolve();
    this.closing = new Promise<void>((resolve) => {
      try {
        this.socket.close(() => resolve());
      } catch {
        resolve();
      }
    });
    return this.closing;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  stats(): UdpTransportStats {
    return { ...this.counters };
  }

  private wakeFlushes(): void {
    const waiters = this.flushWaiters;
    let woken = 0;
    for (const w of waiters) {
      if (w.mark > this.sendsDone) break;
      w.resolve();
      woken++;
    }
    if (woken > 0) waiters.splice(0, woken);
  }

  /** Host text dgram needs to reach `to` from this socket, or null if it cannot. */
  private destinationText(to: Address): string | null {
    const ip = formatIp(to.ip);
    if (this.family === 4) return to.family === 4 ? ip : null;
    if (to.family === 6) return ip;
    return this.dualStack ? `::ffff:${ip}` : null;
  }
}

/** `::ffff:a.b.c.d` becomes `a.b.c.d`; a zone suffix (`%eth0`) is dropped. */
export function sourceIpText(address: string): string {
  const zone = address.indexOf("%");
  const text = zone < 0 ? address : address.slice(0, zone);
  if (text.length > 7 && text.charCodeAt(0) === 58 /* : */ && /^::ffff:\d+\.\d+\.\d+\.\d+$/i.test(text)) {
    return text.slice(7);
  }
  return text;
}

function trySetBuffer(set: () => void, get: () => number): number {
  try {
    set();
  } catch {
    // the kernel refused (e.g. above rmem_max on some systems): keep the default
  }
  try {
    return get();
  } catch {
    return 0;
  }
}
