/**
 * Multicast discovery: announces "cluster NAME is at ADDRESS" on a multicast group every few
 * seconds and reports announcements of the same cluster from other members, so agents on one
 * link (or one Thread mesh, with the realm-local ff03::1 default) find each other without seeds.
 * With an envelope (src/seal/envelope.ts), announcements are sealed and labeled as gossip is,
 * and received ones that do not open are dropped (counted by the envelope).
 */

import { createSocket, type Socket } from "node:dgram";
import type { Address } from "../core/address.js";
import { decodeAnnouncement, encodeAnnouncement } from "./announce.js";
import { ProtocolError } from "../core/errors.js";
import type { Envelope } from "../seal/envelope.js";

/** Organisation-local IPv4 group (239.255.0.0/16); the original's 224.0.0.0 is not a usable group. */
export const DEFAULT_MULTICAST_IPV4 = "239.255.84.84";
/** Realm-local all-nodes: spans a whole Thread mesh, where ff02::1 reaches one radio hop only. */
export const DEFAULT_MULTICAST_IPV6 = "ff03::1";

export interface MulticastDiscoveryOptions {
  readonly clusterName: string;
  readonly group: string;
  readonly port: number;
  readonly intervalMs: number;
  /** This agent's advertised gossip address (announced; its own announcements are ignored). */
  readonly self: Address;
  /** IPv4: an address of the interface to use (tried first); IPv6: an interface scope like `::%eth0`. */
  readonly interfaceAddress?: string;
  readonly onDiscovered: (address: Address) => void;
  readonly onError?: (error: Error) => void;
  /** Seals and labels announcements as the gossip datagrams are; each announcement is sealed anew. */
  readonly envelope?: Envelope;
}

export interface DiscoveryCounters {
  announcementsSent: number;
  announcementsReceived: number;
  announcementsIgnored: number;
  malformed: number;
  sendErrors: number;
}

export class MulticastDiscovery {
  readonly counters: DiscoveryCounters = {
    announcementsSent: 0,
    announcementsReceived: 0,
    announcementsIgnored: 0,
    malformed: 0,
    sendErrors: 0,
  };
  private readonly socket: Socket;
  private timer: NodeJS.Timeout | null = null;
  private readonly announcement: Uint8Array;
  private readonly ipv6: boolean;

  constructor(private readonly options: MulticastDiscoveryOptions) {
    this.ipv6 = options.group.includes(":");
    this.socket = createSocket({ type: this.ipv6 ? "udp6" : "udp4", reuseAddr: true });
    this.announcement = encodeAnnouncement({ clusterName: options.clusterName, address: options.self });
    this.socket.on("message", (msg, rinfo) => {
      const opened = options.envelope === undefined ? msg : options.envelope.unwrapAnnouncement(msg, rinfo.address, rinfo.port);
      if (opened !== null) this.receive(opened);
    });
    this.socket.on("error", (err) => options.onError?.(err));
  }

  async start(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.socket.once("error", reject);
      this.socket.bind(this.options.port, () => {
        this.socket.off("error", reject);
        resolve();
      });
    });
    // On IPv4 the interface is named by one of its addresses. The kernel's own choice follows
    // the default route, and a host without one (an isolated LAN, a lab) fails with ENODEV,
    // so the given interface comes first and the kernel's choice is the fallback.
    const iface = this.options.interfaceAddress;
    try {
      this.socket.addMembership(this.options.group, iface);
      if (iface !== undefined) this.socket.setMulticastInterface(iface);
    } catch (err) {
      if (iface === undefined) throw err;
      this.socket.addMembership(this.options.group);
    }
    this.socket.setMulticastLoopback(true);
    this.socket.setMulticastTTL(this.ipv6 ? 8 : 1);
    this.announce();
    this.timer = setInterval(() => this.announce(), this.options.intervalMs);
    this.timer.unref();
  }

  announce(): void {
    const bytes = this.options.envelope === undefined ? this.announcement : this.options.envelope.wrapAnnouncement(this.announcement);
    this.socket.send(bytes, this.options.port, this.options.group, (err) => {
      if (err) {
        this.counters.sendErrors++;
        this.options.onError?.(err);
      } else {
        this.counters.announcementsSent++;
      }
    });
  }

  close(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    try {
      this.socket.close();
    } catch {
      // already closed
    }
  }

  private receive(msg: Uint8Array): void {
    let announcement;
    try {
      announcement = decodeAnnouncement(msg);
    } catch (err) {
      if (!(err instanceof ProtocolError)) throw err;
      this.counters.malformed++;
      return;
    }
    if (announcement.clusterName !== this.options.clusterName || announcement.address.key === this.options.self.key) {
      this.counters.announcementsIgnored++;
      return;
    }
    this.counters.announcementsReceived++;
    this.options.onDiscovered(announcement.address);
  }
}
