/**
 * The gossip wire format of TamTam, version 1: message and item types, and the exact byte
 * layout. The message-type and item-tag registries are append-only: a number, once shipped,
 * keeps its meaning forever; new kinds take new numbers.
 *
 * All integers are big-endian. `varint` is unsigned LEB128, 1..5 bytes, value < 2^32, and must
 * be minimally encoded. `address` is `u8 family (4|6)`, 4 or 16 IP bytes, `u16 port (1..65535)`:
 * 7 bytes for IPv4, 19 for IPv6.
 *
 *   offset 0  u8  0x54 'T'     magic
 *          1  u8  0x6D 'm'     magic
 *          2  u8  version = 1
 *          3  u8  flags        bit 0 SEALED: an AES-GCM envelope follows (key id, nonce,
 *                              ciphertext, tag; SEALED_OVERHEAD_BYTES in all). The envelope
 *                              layer opens it before decoding; other bits must be 0.
 *                              bit 1 LABELED: an 8-byte cluster label tag follows the
 *                              flags (plaintext with a label, see src/seal/envelope.ts);
 *                              the envelope layer checks and strips it before decoding.
 *          4  u8  message type (MessageType)
 *          5  address  from         the sender's advertised address
 *             varint   incarnation  the sender's current incarnation
 *             body                  per message type, below
 *             items...              piggybacked items up to the end of the datagram
 *
 * Bodies:
 *   PING     0x01  varint seq
 *   ACK      0x02  varint seq
 *   PING_REQ 0x03  varint seq, address target
 *   NACK     0x04  varint seq
 *   JOIN     0x05  varint seq                   "send me your member list"; answered with a
 *                                               COOKIE unless the sender is proven or its
 *                                               COOKIE_ECHO item carries a valid cookie
 *   SYNC     0x06  u8 syncFlags, varint seq     bit 0 REPLY_WANTED (push-pull); others 0.
 *                                               Its items are a member-list snapshot. seq:
 *                                               in a reply, the seq of the JOIN or SYNC it
 *                                               answers (so a seed reached at one address
 *                                               that advertises another is still matched);
 *                                               in a push-pull request, a fresh seq; else 0.
 *   GOSSIP   0x07  (empty)                      items only
 *   COOKIE   0x08  varint seq, u8[8] cookie     "prove you can receive": the answer to a JOIN
 *                                               or push-pull SYNC from an address that has
 *                                               not shown it can receive (see core/cookie.ts).
 *                                               seq: the request's. The requester repeats its
 *                                               request with a COOKIE_ECHO item carrying the
 *                                               cookie. Sent without items.
 *   REQUEST  0x09  varint epoch, varint id,     a cluster request (see core/requests.ts):
 *                  varint kind,                 (epoch, id) names it among all requests of
 *                  u8[16] answer key,           the sender's life (epoch: its broadcast
 *                  varint length, bytes payload epoch); kind says what it is for (1 keyring
 *                                               operation; the receiving host decides);
 *                                               payload 0..length bytes. The answer key is
 *                                               the origin's for this request AND this
 *                                               target (each target gets its own): the target
 *                                               MACs its acknowledgement and answer with it,
 *                                               and only the origin and the target know it
 *                                               (see core/requests.ts). Answered with a
 *                                               RESPONSE; a repeated request gets the same
 *                                               answer again.
 *   RESPONSE 0x0A  varint epoch, varint id,     the answer to REQUEST (epoch, id), payload
 *                  u8[8] mac,                   of 0..length bytes, as the host gave it.
 *                  varint length, bytes payload mac: the answer MAC (core/requests.ts
 *                                               answerMac: SipHash-2-4 under the answer key
 *                                               of what 1, epoch, id, payload).
 *   REQUEST_ACK 0x10  varint epoch, varint id,  "request (epoch, id) arrived; its answer is
 *                  u8[8] mac                    being prepared": sent by a target when the
 *                                               REQUEST's REQUEST_OPTIONS item asks for it.
 *                                               mac: the answer MAC of what 0, no payload.
 *   RELAY    0x11  address peer, varint epoch,  "pass this on to peer": a target's ACK (what 0)
 *                  varint id, u8 what,          or RESPONSE (what 1) of request (epoch, id),
 *                  u8[8] mac,                   with its answer MAC, sent through another
 *                  varint length, bytes payload member as well as directly (REQUEST_OPTIONS
 *                                               relay count). peer: the request's origin.
 *                                               An ACK has length 0 (any other is BAD_LENGTH).
 *   RELAYED  0x12  (the RELAY layout)           a RELAY passed on by the member that got it:
 *                                               peer is the target that sent the RELAY, the
 *                                               datagram goes to the origin, which believes
 *                                               it only when its MAC is the target's. what > 1
 *                                               is BAD_FLAGS.
 *   REPAIR_REQUEST 0x0B  address origin,        "send me these broadcasts of (origin, epoch) again"
 *                  varint epoch, varint maxAgeMs, (see core/repair.ts): seqs, strictly increasing,
 *                  varint count (1..MAX_REPAIR_  delta-encoded (the first as is, then each one's
 *                  SEQS), varint first seq,      distance to the one before, >= 1; no seq past
 *                  (count - 1) x varint delta    2^32-1). maxAgeMs: only broadcasts the answering
 *                                               member stored at most that long ago (the
 *                                               requester's uptime: nothing from before it ran).
 *                                               Anything else is BAD_LENGTH.
 *   REPAIR   0x0C  (empty)                      the answer to a REPAIR_REQUEST: BROADCAST items
 *                                               only, as stored; the receiver delivers the new
 *                                               ones (exactly once, as any other) and does not
 *                                               gossip them on.
 *
 * Items (the canonical encoding puts membership items before broadcast items; the decoder
 * accepts any order):
 *   0x10 ALIVE      varint incarnation, address member
 *   0x11 SUSPECT    varint incarnation, address member, address suspectedBy
 *   0x12 DEAD       varint incarnation, address member
 *   0x13 LEFT       varint incarnation, address member
 *   0x20 BROADCAST  address origin, varint epoch, varint seq, varint length (>= 1), bytes payload
 *   0x80..0xFF      extension items: varint length, then that many bytes. A decoder skips the
 *                   ones it does not know, so later versions can add item kinds without
 *                   breaking older nodes. Unknown tags below 0x80 are an error (UNKNOWN_ITEM).
 *   0x80 COOKIE_ECHO  extension item: varint length = 8, u8[8] cookie. The cookie a COOKIE
 *                   message gave, echoed in a JOIN or push-pull SYNC (canonically the first
 *                   item). Any other length is BAD_LENGTH; after the first, more are ignored.
 *   0x81 TAGS       extension item: varint length, then the tags of the member of the ALIVE
 *                   item right before it (src/core/tags.ts: varint count, then key/value
 *                   pairs, keys unique and in order). An ALIVE item with its TAGS item is one
 *                   statement ("alive at incarnation i with these tags"); an ALIVE item without
 *                   one says nothing about tags. A TAGS item anywhere else, or malformed, is
 *                   BAD_TAGS. Older versions skip it and still read the ALIVE item.
 *   0x82 REQUEST_OPTIONS  extension item: varint length = 2, u8 flags (bit 0 ACK_WANTED),
 *                   u8 relay count (0..MAX_RELAY_COUNT): how a target answers the REQUEST
 *                   it rides on. Any other length is BAD_LENGTH; on other messages it is
 *                   ignored; unknown flag bits are BAD_FLAGS.
 *   0x83 DIGEST     extension item: varint length (>= 1), then 1..MAX_DIGEST_ENTRIES entries
 *                   filling exactly that length, each `address origin, varint epoch, varint
 *                   highestSeq`: the highest broadcast seq the sender has seen of each origin
 *                   epoch that was active lately (see core/repair.ts). Entries that do not fill
 *                   the length exactly, or none, or too many, are BAD_LENGTH; after the first
 *                   DIGEST item of a datagram, more are ignored. Older versions skip it.
 */

import type { Address } from "../address.js";

export const WIRE_MAGIC_0 = 0x54;
export const WIRE_MAGIC_1 = 0x6d;
/** Second magic byte of a multicast discovery announcement (src/transport/announce.ts), after WIRE_MAGIC_0. */
export const ANNOUNCE_MAGIC_1 = 0x41;
export const WIRE_VERSION = 1;
export const FLAG_SEALED = 0x01;
export const FLAG_LABELED = 0x02;
export const SYNC_REPLY_WANTED = 0x01;

/** magic (2) + version (1) + flags (1) + type (1) */
export const FIXED_HEADER_BYTES = 5;
/** key id (1) + AES-GCM nonce (12) + tag (16): what a sealed datagram adds. */
export const SEALED_OVERHEAD_BYTES = 29;
/** The largest UDP payload over IPv4; nothing larger is ever decoded. */
export const MAX_DATAGRAM_BYTES = 65507;

export const MessageType = {
  Ping: 0x01,
  Ack: 0x02,
  PingReq: 0x03,
  Nack: 0x04,
  Join: 0x05,
  Sync: 0x06,
  Gossip: 0x07,
  Cookie: 0x08,
  Request: 0x09,
  Response: 0x0a,
  RequestAck: 0x10,
  Relay: 0x11,
  Relayed: 0x12,
  RepairRequest: 0x0b,
  Repair: 0x0c,
} as const;
export type MessageType = (typeof MessageType)[keyof typeof MessageType];

/** Member states; the numeric order is the precedence at equal incarnation. */
export const MemberState = {
  Alive: 0,
  Suspect: 1,
  Dead: 2,
  Left: 3,
} as const;
export type MemberState = (typeof MemberState)[keyof typeof MemberState];

export const MEMBER_STATE_NAMES: Record<MemberState, "alive" | "suspect" | "dead" | "left"> = {
  0: "alive",
  1: "suspect",
  2: "dead",
  3: "left",
};

export const ItemTag = {
  Alive: 0x10,
  Suspect: 0x11,
  Dead: 0x12,
  Left: 0x13,
  Broadcast: 0x20,
  /** An extension item (length-prefixed): see the layout above. */
  CookieEcho: 0x80,
  /** An extension item: the tags of the ALIVE item before it. */
  Tags: 0x81,
  /** An extension item: how a REQUEST is to be answered. */
  RequestOptions: 0x82,
  /** An extension item: the highest broadcast seq seen per recently active origin epoch. */
  Digest: 0x83,
} as const;
export type ItemTag = (typeof ItemTag)[keyof typeof ItemTag];

/** The largest message type this version knows (0x0d..0x0f are not assigned yet: UNKNOWN_TYPE). */
export const MAX_MESSAGE_TYPE = MessageType.Relayed;
/** REQUEST_OPTIONS flag: targets acknowledge the request at once. */
export const REQUEST_ACK_WANTED = 0x01;
/** Most members a target sends its acknowledgement and answer through, besides directly. */
export const MAX_RELAY_COUNT = 5;
/** RELAY / RELAYED `what`: an acknowledgement or an answer. */
export const RELAY_ACK = 0;
export const RELAY_RESPONSE = 1;
/** Bytes of the answer key in a REQUEST body (a SipHash-2-4 key). */
export const ANSWER_KEY_BYTES = 16;
/** Bytes of the answer MAC in a RESPONSE, REQUEST_ACK, RELAY and RELAYED body. */
export const ANSWER_MAC_BYTES = 8;
/** Bytes of a cookie in a COOKIE body and a COOKIE_ECHO item. */
export const WIRE_COOKIE_BYTES = 8;

/** Most seqs one REPAIR_REQUEST asks for. */
export const MAX_REPAIR_SEQS = 64;
/** Most entries of one DIGEST item. */
export const MAX_DIGEST_ENTRIES = 64;

/** Item tags from here on carry a varint length and are skipped when unknown. */
export const EXTENSION_TAG_MIN = 0x80;

/** A statement about one member. `suspectedBy` is present exactly when state is Suspect. */
export interface MemberUpdate {
  readonly state: MemberState;
  readonly incarnation: number;
  readonly member: Address;
  readonly suspectedBy?: Address;
  /** Alive statements only: the member's encoded tags (src/core/tags.ts), when the statement carries them. */
  readonly tags?: Uint8Array;
}

/** How the targets of a REQUEST answer it (its REQUEST_OPTIONS item). */
export interface RequestOptions {
  readonly ackWanted: boolean;
  /** 0..MAX_RELAY_COUNT. */
  readonly relayCount: number;
}

/** A user broadcast, identified by (origin, epoch, seq). */
export interface UserBroadcast {
  readonly origin: Address;
  /** Chosen by the origin at start so that a restarted origin never reuses ids. */
  readonly epoch: number;
  readonly seq: number;
  readonly payload: Uint8Array;
}

/** One entry of a DIGEST item: the highest seq the sender has seen of (origin, epoch). */
export interface DigestEntry {
  readonly origin: Address;
  readonly epoch: number;
  readonly highestSeq: number;
}

export type Body =
  | { readonly type: typeof MessageType.Ping; readonly seq: number }
  | { readonly type: typeof MessageType.Ack; readonly seq: number }
  | { readonly type: typeof MessageType.PingReq; readonly seq: number; readonly target: Address }
  | { readonly type: typeof MessageType.Nack; readonly seq: number }
  | { readonly type: typeof MessageType.Join; readonly seq: number }
  | { readonly type: typeof MessageType.Sync; readonly replyWanted: boolean; readonly seq: number }
  | { readonly type: typeof MessageType.Gossip }
  | { readonly type: typeof MessageType.Cookie; readonly seq: number; readonly cookie: Uint8Array }
  | {
      readonly type: typeof MessageType.Request;
      readonly epoch: number;
      readonly id: number;
      readonly kind: number;
      /** ANSWER_KEY_BYTES: the key this target MACs its answers with. */
      readonly answerKey: Uint8Array;
      readonly payload: Uint8Array;
    }
  | {
      readonly type: typeof MessageType.Response;
      readonly epoch: number;
      readonly id: number;
      /** ANSWER_MAC_BYTES. */
      readonly mac: Uint8Array;
      readonly payload: Uint8Array;
    }
  | { readonly type: typeof MessageType.RequestAck; readonly epoch: number; readonly id: number; readonly mac: Uint8Array }
  | RelayBody<typeof MessageType.Relay>
  | RelayBody<typeof MessageType.Relayed>
  | RepairRequestBody
  | { readonly type: typeof MessageType.Repair };

/** A REPAIR_REQUEST body: seqs of (origin, epoch) the sender misses. */
export interface RepairRequestBody {
  readonly type: typeof MessageType.RepairRequest;
  readonly origin: Address;
  readonly epoch: number;
  /** Only broadcasts stored at most this long ago (ms) are wanted. */
  readonly maxAgeMs: number;
  /** 1..MAX_REPAIR_SEQS seqs, strictly increasing. */
  readonly seqs: readonly number[];
}

/** A RELAY or RELAYED body: an ack or answer of request (epoch, id) passed through another member. */
export interface RelayBody<T extends typeof MessageType.Relay | typeof MessageType.Relayed> {
  readonly type: T;
  readonly peer: Address;
  readonly epoch: number;
  readonly id: number;
  /** RELAY_ACK or RELAY_RESPONSE. */
  readonly what: number;
  /** The target's answer MAC (ANSWER_MAC_BYTES), passed on unchanged. */
  readonly mac: Uint8Array;
  readonly payload: Uint8Array;
}

export interface Datagram {
  readonly from: Address;
  readonly incarnation: number;
  readonly body: Body;
  readonly updates: readonly MemberUpdate[];
  readonly broadcasts: readonly UserBroadcast[];
  /** The cookie of a COOKIE_ECHO item, when the datagram carries one. */
  readonly cookie?: Uint8Array;
  /** The REQUEST_OPTIONS item of a REQUEST, when it carries one. */
  readonly requestOptions?: RequestOptions;
  /** The entries of the datagram's (first) DIGEST item, when it carries one. */
  readonly digest?: readonly DigestEntry[];
}
