/**
 * Join cookies and per-source reply limits: what keeps a TamTam node from being an amplifier.
 *
 * A JOIN or push-pull request makes a node send its whole member list (several datagrams) to
 * the address the request names as its sender, and UDP does not prove that address. So a
 * node answers such a request from an address that has not shown it can receive with one
 * small COOKIE datagram instead (see messages.ts); the requester echoes the cookie in a new
 * request, and only then gets the member list. The cookie is stateless, as a TCP SYN cookie
 * or a DTLS HelloVerifyRequest:
 *
 *   cookie = SipHash-2-4(secret, address bytes as on the wire || u32 BE window)
 *   window = floor(nowMs / COOKIE_WINDOW_MS)
 *
 * `secret` is 16 bytes drawn once per node life; an echo is valid in the window it was made
 * in and the next one, so a cookie lives COOKIE_WINDOW_MS..2 * COOKIE_WINDOW_MS. The node
 * keeps nothing per requester.
 *
 * Every reply a request earns (a cookie or a member list) also takes a token from a per-source
 * bucket (SourceRateLimiter), so no address gets more than a trickle of replies however many
 * requests carry it.
 */

import type { Address } from "./address.js";
import { SIPHASH_KEY_BYTES, siphash24 } from "./siphash.js";

/** Bytes of a cookie on the wire. */
export const COOKIE_BYTES = 8;
/** Length of a cookie window (ms); an echo is accepted in its window and the next one. */
export const COOKIE_WINDOW_MS = 30_000;
/** Bytes of the cookie secret. */
export const COOKIE_SECRET_BYTES = SIPHASH_KEY_BYTES;

/** Makes and checks cookies under one secret. */
export class CookieJar {
  private readonly secret: Uint8Array;
  /** address (at most 19 bytes) + window (4). */
  private readonly input = new Uint8Array(23);
  private readonly mac = new Uint8Array(COOKIE_BYTES);

  constructor(secret: Uint8Array) {
    if (secret.length !== COOKIE_SECRET_BYTES) throw new RangeError(`a cookie secret has ${COOKIE_SECRET_BYTES} bytes, got ${secret.length}`);
    this.secret = secret.slice();
  }

  /** The cookie for `address` in the window of `nowMs` (a fresh array). */
  make(address: Address, nowMs: number): Uint8Array {
    return this.compute(address, windowOf(nowMs)).slice();
  }

  /** True if `cookie` is the cookie of `address` in the window of `nowMs` or the one before. */
  check(address: Address, cookie: Uint8Array, nowMs: number): boolean {
    if (cookie.length !== COOKIE_BYTES) return false;
    const w = windowOf(nowMs);
    return equal(this.compute(address, w), cookie) || equal(this.compute(address, (w - 1) >>> 0), cookie);
  }

  private compute(address: Address, window: number): Uint8Array {
    const b = this.input;
    let p = 0;
    b[p++] = address.family;
    for (let i = 0; i < address.ip.length; i++) b[p++] = address.ip[i] as number;
    b[p++] = address.port >>> 8;
    b[p++] = address.port & 0xff;
    b[p++] = window >>> 24;
    b[p++] = (window >>> 16) & 0xff;
    b[p++] = (window >>> 8) & 0xff;
    b[p++] = window & 0xff;
    return siphash24(this.secret, b.subarray(0, p), this.mac);
  }
}

function windowOf(nowMs: number): number {
  return Math.floor(Math.max(0, nowMs) / COOKIE_WINDOW_MS) >>> 0;
}

/** Compares without an early exit. */
function equal(a: Uint8Array, b: Uint8Array): boolean {
  let diff = a.length ^ b.length;
  for (let i = 0; i < a.length && i < b.length; i++) diff |= (a[i] as number) ^ (b[i] as number);
  return diff === 0;
}

/** Sources whose buckets are remembered; the oldest entry is forgotten first. */
export const RATE_LIMIT_SOURCES = 1024;
/** Replies a source may get in a burst. */
export const RATE_LIMIT_BURST = 6;
/** One more reply allowed per this many ms, up to the burst. */
export const RATE_LIMIT_REFILL_MS = 1_000;

interface Bucket {
  tokens: number;
  atMs: number;
}

/**
 * Token buckets keyed by source address, in a bounded table: `maxSources` entries at most,
 * the oldest one (by first sight) forgotten when a new source comes. A forgotten source
 * starts again with a full bucket, which bounds what an attacker gains by flooding the table
 * to `burst` replies per `maxSources` requests.
 */
export class SourceRateLimiter {
  private readonly buckets = new Map<string, Bucket>();

  constructor(
    private readonly maxSources = RATE_LIMIT_SOURCES,
    private readonly burst = RATE_LIMIT_BURST,
    private readonly refillMs = RATE_LIMIT_REFILL_MS,
  ) {}

  /** Sources remembered now. */
  get size(): number {
    return this.buckets.size;
  }

  /** Takes one token from `sourceKey`'s bucket at `nowMs`; false (and nothing taken) if it is empty. */
  take(sourceKey: string, nowMs: number): boolean {
    let b = this.buckets.get(sourceKey);
    if (b === undefined) {
      if (this.buckets.size >= this.maxSources) {
        const oldest = this.buckets.keys().next().value as string;
        this.buckets.delete(oldest);
      }
      b = { tokens: this.burst, atMs: nowMs };
      this.buckets.set(sourceKey, b);
    } else if (nowMs > b.atMs) {
      const refill = Math.floor((nowMs - b.atMs) / this.refillMs);
      if (refill > 0) {
        b.tokens = Math.min(this.burst, b.tokens + refill);
        // A full bucket does not bank time; a partial one keeps the fraction of a token.
        b.atMs = b.tokens === this.burst ? nowMs : b.atMs + refill * this.refillMs;
      }
    }
    if (b.tokens < 1) return false;
    if (b.tokens === this.burst) b.atMs = nowMs;
    b.tokens--;
    return true;
  }
}
