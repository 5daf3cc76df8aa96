/**
 * Tests of src/rpc/hpack.ts: the Huffman code against RFC 7541 Appendix B, the decoder against
 * the RFC's Appendix C examples (shared dynamic table across blocks), round trips of random
 * strings and header lists, and typed errors for malformed blocks.
 */

import { test } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";
import { encodeHeaderBlock, HpackDecoder, HpackError, huffmanCodes, huffmanDecode } from "../src/rpc/hpack.js";

function hex(text: string): Uint8Array {
  return Uint8Array.from(Buffer.from(text.replace(/\s+/g, ""), "hex"));
}

/** Huffman-codes `bytes` with the decoder's own table, padded with ones. */
function huffmanEncode(bytes: Uint8Array): Uint8Array {
  const codes = huffmanCodes();
  let bits = "";
  for (const byte of bytes) {
    const [code, length] = codes[byte] as readonly [number, number];
    bits += code.toString(2).padStart(length, "0");
  }
  bits += "1".repeat((8 - (bits.length % 8)) % 8);
  return Uint8Array.from(bits.match(/.{8}/g) ?? [], (octet) => Number.parseInt(octet, 2));
}

test("the Huffman code is RFC 7541's: known codes, and it fills the code space exactly", () => {
  const codes = huffmanCodes();
  assert.equal(codes.length, 257);
  const known: Array<[symbol: number, code: number, bits: number]> = [
    [0, 0x1ff8, 13],
    [10, 0x3ffffffc, 30],
    [32, 0x14, 6],
    [48, 0x0, 5],
    [97, 0x3, 5],
    [116, 0x9, 5],
    [254, 0x7fffff0, 27],
    [255, 0x3ffffee, 26],
    [256, 0x3fffffff, 30],
  ];
  for (const [symbol, code, bits] of known) assert.deepEqual(codes[symbol], [code, bits], `symbol ${symbol}`);
  // Kraft: a complete prefix code has sum(2^-bits) = 1.
  assert.equal(codes.reduce((sum, [, bits]) => sum + 2 ** (30 - bits), 0), 2 ** 30);
});

test("Huffman decoding undoes encoding for any bytes", () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
      assert.deepEqual(huffmanDecode(huffmanEncode(bytes)), bytes);
    }),
    { numRuns: 500 },
  );
});

test("Huffman padding must be fewer than 8 one bits, and EOS never appears", () => {
  assert.deepEqual(Buffer.from(huffmanDecode(hex("f1e3c2e5f23a6ba0ab90f4ff"))).toString(), "www.example.com");
  // "0" is 00000 and three bits of padding: 000 is not EOS's prefix.
  assert.throws(() => huffmanDecode(Uint8Array.of(0b00000000)), HpackError);
  assert.deepEqual(huffmanDecode(Uint8Array.of(0b00000111)), Uint8Array.of(48));
  // A whole byte of padding.
  assert.throws(() => huffmanDecode(Uint8Array.of(0b00000111, 0xff)), HpackError);
  // EOS itself (30 ones) followed by two padding ones.
  assert.throws(() => huffmanDecode(Uint8Array.of(0xff, 0xff, 0xff, 0xff)), HpackError);
});

test("RFC 7541 C.3 and C.4: requests on one connection share the dynamic table", () => {
  for (const [name, blocks] of [
    ["C.3 (plain strings)", ["828684410f7777772e6578616d706c652e636f6d", "828684be58086e6f2d6361636865", "828785bf400a637573746f6d2d6b65790c637573746f6d2d76616c7565"]],
    ["C.4 (Huffman)", ["828684418cf1e3c2e5f23a6ba0ab90f4ff", "828684be5886a8eb10649cbf", "828785bf408825a849e95ba97d7f8925a849e95bb8e8b4bf"]],
  ] as const) {
    const decoder = new HpackDecoder();
    assert.deepEqual(decoder.decode(hex(blocks[0])), [[":method", "GET"], [":scheme", "http"], [":path", "/"], [":authority", "www.example.com"]], name);
    assert.deepEqual(
      decoder.decode(hex(blocks[1])),
      [[":method", "GET"], [":scheme", "http"], [":path", "/"], [":authority", "www.example.com"], ["cache-control", "no-cache"]],
      name,
    );
    assert.deepEqual(
      decoder.decode(hex(blocks[2])),
      [[":method", "GET"], [":scheme", "https"], [":path", "/index.html"], [":authority", "www.example.com"], ["custom-key", "custom-value"]],
      name,
    );
  }
});

test("an encoded header list decodes to itself", () => {
  const name = fc.stringMatching(/^[a-z][a-z0-9-]{0,30}$/);
  const value = fc.string({ unit: fc.integer({ min: 0x20, max: 0x7e }).map((code) => String.fromCharCode(code)), maxLength: 300 });
  fc.assert(
    fc.property(fc.array(fc.tuple(name, value), { maxLength: 20 }), (fields) => {
      assert.deepEqual(new HpackDecoder().decode(encodeHeaderBlock(fields)), fields);
    }),
    { numRuns: 300 },
  );
});

test("malformed blocks are typed errors, and limits hold", () => {
  const decoder = (): HpackDecoder => new HpackDecoder(4096, 1024);
  const bad: Array<[string, string]> = [
    ["index 0", "80"],
    ["an index beyond the tables", "be"],
    ["a truncated integer", "ff"],
    ["an integer beyond 2^28", "ffffffffffff7f"],
    ["a string longer than its block", "0005616263"],
    ["a table size above the allowed 4096", "3fe21f"],
    ["a table size update after a field", "8220"],
    ["a truncated string", "00"],
  ];
  for (const [what, block] of bad) assert.throws(() => decoder().decode(hex(block)), HpackError, what);
  const big = encodeHeaderBlock([["x", "y".repeat(2000)]]);
  assert.throws(() => decoder().decode(big), /larger than 1024 bytes/);
  // An entry larger than the whole table empties it and is not kept.
  const tiny = new HpackDecoder(4096);
  assert.deepEqual(tiny.decode(hex("3f01 4003 616263 0178")), [["abc", "x"]]); // size 32 table: the entry (36) does not fit
  assert.throws(() => tiny.decode(hex("be")), HpackError);
});
