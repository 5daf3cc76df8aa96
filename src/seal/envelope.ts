/**
 * The sealed envelope of TamTam's gossip: AES-GCM over every datagram an agent sends (probes,
 * gossip, member lists, cookies, multicast announcements), and the cluster label, which keeps
 * the datagrams of different clusters apart, with or without keys. The engine applies it where
 * datagrams leave for and arrive from the socket, before the protocol core sees anything, so
 * both engines (inline and worker) use this one implementation.
 *
 * Sealed gossip datagram (FLAG_SEALED, see src/core/wire/messages.ts):
 *
 *   offset 0   u8  'T' 0x54, u8 'm' 0x6D, u8 version, u8 flags = 0x01   in clear, authenticated
 *          4   u8  key id: the first byte of SHA-256(key)                  in clear, authenticated
 *          5   u8[12] nonce: u32 boot id, u64 counter (big-endian)         in clear (the GCM IV)
 *         17   ciphertext of the unsealed datagram from offset 4 on (type, from, incarnation, ...)
 *        end   u8[16] GCM tag
 *
 *   additional authenticated data = bytes 0..4 (header and key id) + the label's UTF-8 bytes.
 *   That is SEALED_OVERHEAD_BYTES (29) more than the unsealed datagram, the room the protocol
 *   config reserves when `sealed` is set.
 *
 * Labeled plaintext datagram (FLAG_LABELED, used when a label is set and the agent sends
 * without keys, or with `sendPlaintext`):
 *
 *   offset 0   'T' 'm' version, flags = 0x02
 *          4   u8[8] label tag: the first 8 bytes of SHA-256("TamTam label" 0x00 label)
 *         12   the unsealed datagram from offset 4 on
 *
 * The label tag separates two plaintext clusters that share a network (a datagram of another
 * label, or without one, is dropped); it protects against mistakes, not attackers, who can
 * copy it. In sealed datagrams the label is not sent at all: it is part of the authenticated
 * data, so a datagram sealed under another label fails authentication like a forged one.
 *
 * Multicast announcements (src/transport/announce.ts, magic 'T' 'A', version 1) travel in the
 * same envelope as version 2: 'T' 'A' 0x02 flags, then the envelope over the version-1
 * announcement from its byte 3 on; opening gives back the version-1 announcement.
 *
 * The primary key seals; every installed key whose id matches is tried to open. A datagram
 * that no key opens, that is plaintext while sealing is required, that fails the label, that
 * is too short, or that is a replay (see replay.ts) is dropped before the core sees it,
 * counted by reason, and reported to `onDrop` (which the agent logs, rate-limited); it
 * changes no state. Nothing here ever logs, counts or reports key material.
 */

import { createCipheriv, createDecipheriv, createHash, randomBytes } from "node:crypto";
import { ANNOUNCE_MAGIC_1, MessageType, FLAG_LABELED, FLAG_SEALED, SEALED_OVERHEAD_BYTES, WIRE_MAGIC_0, WIRE_MAGIC_1 } from "../core/wire/messages.js";
import { labelProblem } from "./checks.js";
import type { Keyring } from "./keyring.js";
import { ReplayGuard } from "./replay.js";

export const KEY_ID_BYTES = 1;
export const NONCE_BYTES = 12;
export const TAG_BYTES = 16;
export const LABEL_TAG_BYTES = 8;
/** The version byte of an announcement in the envelope. */
export const ANNOUNCE_ENVELOPE_VERSION = 2;

export const DROP_REASONS = ["NO_KEY", "BAD_SEAL", "TRUNCATED", "PLAINTEXT", "LABEL", "REPLAY"] as const;
export type DropReason = (typeof DROP_REASONS)[number];

/** What each drop reason means, for log lines. */
export const DROP_REASON_TEXT: Readonly<Record<DropReason, string>> = {
  NO_KEY: "sealed with a key this agent does not have",
  BAD_SEAL: "failed authentication (altered, sealed under another cluster label, or under a key whose id collides)",
  TRUNCATED: "too short for a sealed or labeled datagram",
  PLAINTEXT: "not sealed while this agent requires sealing",
  LABEL: "of another cluster label, or without the label",
  REPLAY: "replayed (received before, or from an earlier life of the sender)",
};

export interface EnvelopeOptions {
  readonly keyring: Keyring;
  /** The cluster label (bound into every datagram), or null for none. */
  readonly label: string | null;
  /** Accept plaintext datagrams even though keys are installed (migration). */
  readonly acceptPlaintext: boolean;
  /** Send plaintext even though keys are installed (migration). */
  readonly sendPlaintext: boolean;
  /** Called for dropped datagrams with their reason, source (`ip:port`; null where it is not known) and count (default 1). */
  readonly onDrop?: (reason: DropReason, source: string | null, count?: number) => void;
  /** Where nonces come from; default a random boot id and counter of this Envelope's own. */
  readonly nonces?: NonceSource;
  /** Tests only: a fixed boot id and first counter, for golden vectors. */
  readonly nonceStart?: { readonly boot: number; readonly counter: number };
}

/**
 * The nonces of sealed datagrams: one boot id per agent life and a counter that `next()`
 * advances by one per datagram. Envelopes in several threads share one (src/shm SharedCounters
 * behind `next`), so no two datagrams of a life carry the same nonce, whichever thread sealed.
 */
export interface NonceSource {
  readonly boot: number;
  next(): number;
}

/** An authenticated datagram that is not yet admitted by the replay check (Envelope.admit). */
export interface Opened {
  /** The datagram as the core reads it (the clear header, then the plaintext). */
  readonly datagram: Uint8Array;
  /** Whether it came sealed (only sealed datagrams have a nonce and a replay check). */
  readonly sealed: boolean;
  readonly boot: number;
  readonly counter: number;
}

/** What an Envelope in another thread needs to behave as this one (no key: keys travel apart). */
export interface EnvelopeSettings {
  readonly label: string | null;
  readonly acceptPlaintext: boolean;
  readonly sendPlaintext: boolean;
}

/** The 8-byte tag of `label` in labeled plaintext datagrams. */
export function labelTag(label: string): Uint8Array {
  return new Uint8Array(createHash("sha256").update("TamTam label\0").update(label, "utf8").digest().subarray(0, LABEL_TAG_BYTES));
}

const EMPTY = new Uint8Array(0);

export class Envelope {
  private readonly keyring: Keyring;
  private readonly labelBytes: Uint8Array;
  private readonly tag: Uint8Array | null;
  private readonly acceptPlaintext: boolean;
  private readonly sendPlaintext: boolean;
  private readonly onDrop: ((reason: DropReason, source: string | null, count?: number) => void) | undefined;
  private readonly label: string | null;
  private nonces: NonceSource;
  private readonly replays = new ReplayGuard();
  private readonly dropped: Record<DropReason, number> = { NO_KEY: 0, BAD_SEAL: 0, TRUNCATED: 0, PLAINTEXT: 0, LABEL: 0, REPLAY: 0 };
  private readonly counts = { sealed: 0, opened: 0, plaintextSent: 0, plaintextAccepted: 0 };

  constructor(options: EnvelopeOptions) {
    this.keyring = options.keyring;
    if (options.label !== null) {
      const problem = labelProblem(options.label);
      if (problem !== null) throw new RangeError(`label ${problem}`);
    }
    this.labelBytes = options.label === null ? EMPTY : new Uint8Array(Buffer.from(options.label, "utf8"));
    this.tag = options.label === null ? null : labelTag(options.label);
    this.acceptPlaintext = options.acceptPlaintext;
    this.sendPlaintext = options.sendPlaintext;
    this.onDrop = options.onDrop;
    this.label = options.label;
    if (options.nonces !== undefined) {
      this.nonces = options.nonces;
    } else {
      // A random boot id, and a random first counter below 2^48 (exact as a number for 2^52 more datagrams).
      const start = randomBytes(10);
      let counter = options.nonceStart?.counter ?? start.readUIntBE(4, 6);
      this.nonces = { boot: options.nonceStart?.boot ?? start.readUInt32BE(0), next: () => counter++ };
    }
  }

  /** The keyring this envelope seals and opens with. */
  get keys(): Keyring {
    return this.keyring;
  }

  /** The options an Envelope in another thread needs to behave as this one (keys apart). */
  get settings(): EnvelopeSettings {
    return { label: this.label, acceptPlaintext: this.acceptPlaintext, sendPlaintext: this.sendPlaintext };
  }

  /** The boot id, and a counter no datagram has used or will use from this source (a gap is harmless). */
  nonceState(): { boot: number; counter: number } {
    return { boot: this.nonces.boot, counter: this.nonces.next() };
  }

  /** Passes drops that an Envelope in another thread counted (it has no onDrop of its own) to this one's onDrop. */
  reportDrops(reason: DropReason, count: number, source: string | null): void {
    this.onDrop?.(reason, source, count);
  }

  /** Seals with nonces from `source` from now on (shared with envelopes in other threads). */
  useNonces(source: NonceSource): void {
    this.nonces = source;
  }

  /** Whether outgoing datagrams are sealed (a key is installed and sendPlaintext is off). */
  get sealing(): boolean {
    return !this.sendPlaintext && this.keyring.size > 0;
  }

  /** Whether plaintext datagrams (labeled as required) are accepted. */
  get acceptsPlaintext(): boolean {
    return this.acceptPlaintext || this.keyring.size === 0;
  }

  /** An outgoing gossip datagram as it goes on the wire (a fresh buffer). */
  wrap(datagram: Uint8Array): Uint8Array {
    return this.wrapAs(WIRE_MAGIC_1, datagram[2] as number, datagram.subarray(4));
  }

  /** An outgoing multicast announcement (version 1) as it goes on the wire. */
  wrapAnnouncement(announcement: Uint8Array): Uint8Array {
    return this.wrapAs(ANNOUNCE_MAGIC_1, ANNOUNCE_ENVELOPE_VERSION, announcement.subarray(3));
  }

  /** A received gossip datagram as the core reads it, or null when it is dropped (counted). */
  unwrap(bytes: Uint8Array, sourceIp: string, sourcePort: number): Uint8Array | null {
    const opened = this.authenticate(bytes, sourceIp, sourcePort);
    return opened === null ? null : this.admit(opened, sourceIp, sourcePort);
  }

  /**
   * The first half of unwrap, which needs no per-sender state: checks the envelope (label,
   * plaintext rules) and opens a sealed datagram. Several threads may authenticate at once
   * (each with its own Envelope over the same keys); the one owner of the replay windows then
   * admits what they opened. `sourceIp` null: the source is not known (drop reports omit it).
   */
  authenticate(bytes: Uint8Array, sourceIp: string | null, sourcePort: number): Opened | null {
    const ok = bytes.length >= 4 && bytes[0] === WIRE_MAGIC_0 && bytes[1] === WIRE_MAGIC_1;
    if (!ok) return this.plainOpened(this.plain(bytes, false, sourceIp, sourcePort));
    const flags = bytes[3] as number;
    if (flags !== FLAG_SEALED) return this.plainOpened(this.plain(bytes, flags === FLAG_LABELED, sourceIp, sourcePort));
    const sealed = this.open(bytes, sourceIp, sourcePort);
    if (sealed === null) return null;
    return { datagram: prefixed([WIRE_MAGIC_0, WIRE_MAGIC_1, bytes[2] as number, 0], sealed.plain), sealed: true, boot: sealed.boot, counter: sealed.counter };
  }

  /**
   * The second half of unwrap: the replay check of an authenticated datagram, against the
   * window of the sender it names inside (see replay.ts). Returns the datagram, or null when it
   * is a replay (counted). A datagram too malformed to name its sender is passed on: the core
   * rejects it as a protocol error, changing nothing.
   */
  admit(opened: Opened, sourceIp: string | null = null, sourcePort = 0): Uint8Array | null {
    // Counted here, where every datagram that gets in passes, whichever thread authenticated it.
    if (!opened.sealed) {
      this.counts.plaintextAccepted++;
      return opened.datagram;
    }
    const rest = opened.datagram.subarray(4);
    const sender = senderKey(rest) ?? (sourceIp === null ? null : `${sourceIp}|${sourcePort}`);
    if (sender !== null && this.replays.check(sender, opened.boot, opened.counter, senderIncarnation(rest)) === "replay") {
      return this.drop("REPLAY", sourceIp, sourcePort);
    }
    this.counts.opened++;
    return opened.datagram;
  }

  /** A received multicast datagram as a version-1 announcement, or null when it is dropped (counted). */
  unwrapAnnouncement(bytes: Uint8Array, sourceIp: string, sourcePort: number): Uint8Array | null {
    const enveloped = bytes.length >= 4 && bytes[0] === WIRE_MAGIC_0 && bytes[1] === ANNOUNCE_MAGIC_1 && bytes[2] === ANNOUNCE_ENVELOPE_VERSION;
    if (!enveloped) return this.acceptedPlain(this.plain(bytes, false, sourceIp, sourcePort, true));
    const flags = bytes[3] as number;
    if (flags !== FLAG_SEALED) return this.acceptedPlain(this.plain(bytes, flags === FLAG_LABELED, sourceIp, sourcePort, true));
    const sealed = this.open(bytes, sourceIp, sourcePort);
    if (sealed === null) return null;
    if (this.replays.check(`${sourceIp}|${sourcePort}`, sealed.boot, sealed.counter, null) === "replay") return this.drop("REPLAY", sourceIp, sourcePort);
    this.counts.opened++;
    return prefixed(ANNOUNCE_HEADER, sealed.plain);
  }

  /** Counters under flat names (no key material): dropped.REASON, sealed, opened, ... */
  stats(): Record<string, number> {
    const out: Record<string, number> = { keys: this.keyring.size, sealing: this.sealing ? 1 : 0 };
    for (const reason of DROP_REASONS) out[`dropped.${reason}`] = this.dropped[reason];
    for (const [k, v] of Object.entries(this.counts)) out[k] = v;
    for (const [k, v] of Object.entries(this.replays.counters)) out[`replay.${k}`] = v;
    return out;
  }

  private wrapAs(magic1: number, version: number, rest: Uint8Array): Uint8Array {
    const primary = this.keyring.primary;
    if (this.sendPlaintext || primary === null) {
      this.counts.plaintextSent++;
      if (this.tag === null) {
        const out = new Uint8Array(4 + rest.length);
        out[0] = WIRE_MAGIC_0;
        out[1] = magic1;
        out[2] = version;
        out[3] = 0;
        out.set(rest, 4);
        return magic1 === ANNOUNCE_MAGIC_1 ? restoreAnnouncement(out) : out;
      }
      const out = new Uint8Array(4 + LABEL_TAG_BYTES + rest.length);
      out[0] = WIRE_MAGIC_0;
      out[1] = magic1;
      out[2] = version;
      out[3] = FLAG_LABELED;
      out.set(this.tag, 4);
      out.set(rest, 4 + LABEL_TAG_BYTES);
      return out;
    }
    const out = Buffer.allocUnsafe(SEALED_OVERHEAD_BYTES + 4 + rest.length);
    out[0] = WIRE_MAGIC_0;
    out[1] = magic1;
    out[2] = version;
    out[3] = FLAG_SEALED;
    out[4] = primary.id;
    const counter = this.nonces.next();
    out.writeUInt32BE(this.nonces.boot, 5);
    out.writeUInt32BE(Math.floor(counter / 2 ** 32), 9);
    out.writeUInt32BE(counter >>> 0, 13);
    const cipher = createCipheriv(cipherName(primary.key), primary.key, out.subarray(5, 17), { authTagLength: TAG_BYTES });
    cipher.setAAD(this.aad(out));
    const body = cipher.update(rest);
    cipher.final();
    body.copy(out, 17);
    cipher.getAuthTag().copy(out, 17 + body.length);
    this.counts.sealed++;
    return new Uint8Array(out.buffer, out.byteOffset, out.length);
  }

  private aad(datagram: Uint8Array): Uint8Array {
    if (this.labelBytes.length === 0) return datagram.subarray(0, 5);
    const aad = new Uint8Array(5 + this.labelBytes.length);
    aad.set(datagram.subarray(0, 5));
    aad.set(this.labelBytes, 5);
    return aad;
  }

  /** Authenticates and decrypts a sealed datagram: its plaintext from offset 4 on, and its nonce. Null when dropped. */
  private open(bytes: Uint8Array, ip: string | null, port: number): { plain: Buffer; boot: number; counter: number } | null {
    if (this.keyring.size === 0) return this.drop("NO_KEY", ip, port);
    if (bytes.length < 4 + SEALED_OVERHEAD_BYTES) return this.drop("TRUNCATED", ip, port);
    const candidates = this.keyring.withId(bytes[4] as number);
    if (candidates.length === 0) return this.drop("NO_KEY", ip, port);
    const nonce = bytes.subarray(5, 17);
    const body = bytes.subarray(17, bytes.length - TAG_BYTES);
    const tag = bytes.subarray(bytes.length - TAG_BYTES);
    const aad = this.aad(bytes);
    let plain: Buffer | null = null;
    for (const { key } of candidates) {
      try {
        const decipher = createDecipheriv(cipherName(key), key, nonce, { authTagLength: TAG_BYTES });
        decipher.setAAD(aad);
        decipher.setAuthTag(tag);
        const first = decipher.update(body);
        decipher.final();
        plain = first;
        break;
      } catch {
        // not this key
      }
    }
    if (plain === null) return this.drop("BAD_SEAL", ip, port);
    const view = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
    return { plain, boot: view.readUInt32BE(5), counter: view.readUInt32BE(9) * 2 ** 32 + view.readUInt32BE(13) };
  }

  private acceptedPlain(announcement: Uint8Array | null): Uint8Array | null {
    if (announcement !== null) this.counts.plaintextAccepted++;
    return announcement;
  }

  private plainOpened(datagram: Uint8Array | null): Opened | null {
    return datagram === null ? null : { datagram, sealed: false, boot: 0, counter: 0 };
  }

  /** A datagram that is not sealed: labeled (`labeled`) or bare. */
  private plain(bytes: Uint8Array, labeled: boolean, ip: string | null, port: number, announcement = false): Uint8Array | null {
    if (!this.acceptsPlaintext) return this.drop("PLAINTEXT", ip, port);
    // An agent that holds keys takes cluster requests (keyring operations among them) only
    // sealed, even while it accepts plaintext gossip during a migration: anyone can send
    // plaintext, and a keyring operation must come from a key holder.
    const type = bytes[labeled ? 4 + LABEL_TAG_BYTES : 4];
    if (!announcement && this.keyring.size > 0 && type === MessageType.Request) return this.drop("PLAINTEXT", ip, port);
    if (this.tag === null) {
      if (labeled) return this.drop("LABEL", ip, port);
      return bytes;
    }
    if (!labeled) return this.drop("LABEL", ip, port);
    if (bytes.length < 4 + LABEL_TAG_BYTES) return this.drop("TRUNCATED", ip, port);
    for (let i = 0; i < LABEL_TAG_BYTES; i++) if (bytes[4 + i] !== this.tag[i]) return this.drop("LABEL", ip, port);
    const rest = bytes.subarray(4 + LABEL_TAG_BYTES);
    return announcement ? prefixed(ANNOUNCE_HEADER, rest) : prefixed([bytes[0] as number, bytes[1] as number, bytes[2] as number, 0], rest);
  }

  private drop(reason: DropReason, ip: string | null, port: number): null {
    this.dropped[reason]++;
    this.onDrop?.(reason, ip === null ? null : ip.includes(":") ? `[${ip}]:${port}` : `${ip}:${port}`);
    return null;
  }
}

/** A bare announcement goes out exactly as version 1 (its byte 3 is the name length, not flags). */
function restoreAnnouncement(out: Uint8Array): Uint8Array {
  // wrapAs put 'T' 'A' 2 0 + rest; version 1 is 'T' 'A' 1 + rest.
  const v1 = new Uint8Array(out.length - 1);
  v1[0] = out[0] as number;
  v1[1] = out[1] as number;
  v1[2] = 1;
  v1.set(out.subarray(4), 3);
  return v1;
}

function cipherName(key: Uint8Array): "aes-128-gcm" | "aes-192-gcm" | "aes-256-gcm" {
  return key.length === 16 ? "aes-128-gcm" : key.length === 24 ? "aes-192-gcm" : "aes-256-gcm";
}

/** The header of an opened announcement: magic and version 1. */
const ANNOUNCE_HEADER: readonly number[] = [WIRE_MAGIC_0, ANNOUNCE_MAGIC_1, 1];

/** `head` followed by `rest`, in a new array: an opened datagram with its clear header. */
function prefixed(head: readonly number[], rest: Uint8Array): Uint8Array {
  const out = new Uint8Array(head.length + rest.length);
  out.set(head);
  out.set(rest, head.length);
  return out;
}

/** The sender's address as the opened datagram states it (type, then `from`), as a key; null if malformed. */
function senderKey(rest: Uint8Array): string | null {
  const family = rest[1];
  const end = family === 4 ? 2 + 4 + 2 : family === 6 ? 2 + 16 + 2 : -1;
  if (end < 0 || rest.length < end) return null;
  return Buffer.from(rest.buffer, rest.byteOffset + 1, end - 1).toString("latin1");
}

/**
 * The sender's incarnation in an opened gossip datagram (from its offset 4 on: type, from
 * address, varint incarnation), or null when the bytes do not hold one (the core rejects
 * such a datagram anyway).
 */
function senderIncarnation(rest: Uint8Array): number | null {
  const family = rest[1];
  let p = family === 4 ? 2 + 4 + 2 : family === 6 ? 2 + 16 + 2 : -1;
  if (p < 0) return null;
  let value = 0;
  for (let shift = 0; shift < 35; shift += 7) {
    const b = rest[p++];
    if (b === undefined) return null;
    value += (b & 0x7f) * 2 ** shift;
    if ((b & 0x80) === 0) return value;
  }
  return null;
}
