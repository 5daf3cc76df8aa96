/**
 * SipHash-2-4 (Aumasson and Bernstein, 2012): a keyed pseudo-random function with a 128-bit
 * key and a 64-bit output, in pure TypeScript on 32-bit halves (no BigInt, no allocation per
 * round). TamTam keys it with a node's secret to make join cookies (see cookie.ts); the test
 * suite checks it against the reference implementation's 64 test vectors.
 */

/** Key bytes. */
export const SIPHASH_KEY_BYTES = 16;
/** Output bytes. */
export const SIPHASH_OUTPUT_BYTES = 8;

// The state v0..v3 as (low, high) 32-bit halves: s[0]=v0.lo, s[1]=v0.hi, s[2]=v1.lo, ...
const s = new Uint32Array(8);

/** a += b (64-bit) for the state words at indexes a, b (low halves; high at +1). */
function add(a: number, b: number): void {
  const lo = ((s[a] as number) + (s[b] as number)) >>> 0;
  const carry = lo < (s[a] as number) ? 1 : 0;
  s[a + 1] = ((s[a + 1] as number) + (s[b + 1] as number) + carry) >>> 0;
  s[a] = lo;
}

/** x = rotl(x, bits) for 0 < bits < 32. */
function rotl(x: number, bits: number): void {
  const lo = s[x] as number;
  const hi = s[x + 1] as number;
  s[x] = ((lo << bits) | (hi >>> (32 - bits))) >>> 0;
  s[x + 1] = ((hi << bits) | (lo >>> (32 - bits))) >>> 0;
}

/** x = rotl(x, 32): swaps the halves. */
function swap(x: number): void {
  const lo = s[x] as number;
  s[x] = s[x + 1] as number;
  s[x + 1] = lo;
}

/** a ^= b. */
function xor(a: number, b: number): void {
  s[a] = ((s[a] as number) ^ (s[b] as number)) >>> 0;
  s[a + 1] = ((s[a + 1] as number) ^ (s[b + 1] as number)) >>> 0;
}

const V0 = 0;
const V1 = 2;
const V2 = 4;
const V3 = 6;

function sipRound(): void {
  add(V0, V1);
  rotl(V1, 13);
  xor(V1, V0);
  swap(V0);
  add(V2, V3);
  rotl(V3, 16);
  xor(V3, V2);
  add(V0, V3);
  rotl(V3, 21);
  xor(V3, V0);
  add(V2, V1);
  rotl(V1, 17);
  xor(V1, V2);
  swap(V2);
}

function le32(b: Uint8Array, p: number): number {
  return ((b[p] as number) | ((b[p + 1] as number) << 8) | ((b[p + 2] as number) << 16) | ((b[p + 3] as number) << 24)) >>> 0;
}

/** One message word (lo, hi) through the compression: v3 ^= m, 2 rounds, v0 ^= m. */
function compress(lo: number, hi: number): void {
  s[V3] = ((s[V3] as number) ^ lo) >>> 0;
  s[V3 + 1] = ((s[V3 + 1] as number) ^ hi) >>> 0;
  sipRound();
  sipRound();
  s[V0] = ((s[V0] as number) ^ lo) >>> 0;
  s[V0 + 1] = ((s[V0 + 1] as number) ^ hi) >>> 0;
}

/**
 * SipHash-2-4 of `message` under the 16-byte `key`: the 8 output bytes in the reference's
 * order (the 64-bit result, little-endian), written to `out` (a new array when omitted).
 */
export function siphash24(key: Uint8Array, message: Uint8Array, out: Uint8Array = new Uint8Array(SIPHASH_OUTPUT_BYTES)): Uint8Array {
  if (key.length !== SIPHASH_KEY_BYTES) throw new RangeError(`a SipHash key has ${SIPHASH_KEY_BYTES} bytes, got ${key.length}`);
  if (out.length < SIPHASH_OUTPUT_BYTES) throw new RangeError(`SipHash writes ${SIPHASH_OUTPUT_BYTES} bytes`);
  const k0lo = le32(key, 0);
  const k0hi = le32(key, 4);
  const k1lo = le32(key, 8);
  const k1hi = le32(key, 12);
  // "somepseudorandomlygeneratedbytes"
  s[V0] = (k0lo ^ 0x70736575) >>> 0;
  s[V0 + 1] = (k0hi ^ 0x736f6d65) >>> 0;
  s[V1] = (k1lo ^ 0x6e646f6d) >>> 0;
  s[V1 + 1] = (k1hi ^ 0x646f7261) >>> 0;
  s[V2] = (k0lo ^ 0x6e657261) >>> 0;
  s[V2 + 1] = (k0hi ^ 0x6c796765) >>> 0;
  s[V3] = (k1lo ^ 0x79746573) >>> 0;
  s[V3 + 1] = (k1hi ^ 0x74656462) >>> 0;
  const n = message.length;
  const full = n - (n % 8);
  for (let p = 0; p < full; p += 8) compress(le32(message, p), le32(message, p + 4));
  // The last block: the remaining bytes, little-endian, with the length's low byte on top.
  let lo = 0;
  let hi = (n & 0xff) << 24;
  for (let i = 0; i < n - full; i++) {
    const byte = message[full + i] as number;
    if (i < 4) lo |= byte << (8 * i);
    else hi |= byte << (8 * (i - 4));
  }
  compress(lo >>> 0, hi >>> 0);
  s[V2] = ((s[V2] as number) ^ 0xff) >>> 0;
  sipRound();
  sipRound();
  sipRound();
  sipRound();
  const rlo = ((s[V0] as number) ^ (s[V1] as number) ^ (s[V2] as number) ^ (s[V3] as number)) >>> 0;
  const rhi = ((s[V0 + 1] as number) ^ (s[V1 + 1] as number) ^ (s[V2 + 1] as number) ^ (s[V3 + 1] as number)) >>> 0;
  for (let i = 0; i < 4; i++) {
    out[i] = (rlo >>> (8 * i)) & 0xff;
    out[4 + i] = (rhi >>> (8 * i)) & 0xff;
  }
  return out;
}
