/**
 * HPACK (RFC 7541), the header compression of HTTP/2, as the command line's gRPC client needs
 * it: a complete decoder (static and dynamic tables, table size updates, Huffman-coded strings)
 * for the header blocks the agent's server sends, and a minimal encoder for requests (literal
 * fields without indexing, no Huffman coding, no dynamic table: always valid, and request
 * headers here are few and small). Everything is bounded: integers, strings, the dynamic table
 * and the decoded header list. A malformed block throws `HpackError`, which the connection turns
 * into a COMPRESSION_ERROR.
 */

/** A malformed header block: the connection cannot continue (its tables may be out of step). */
export class HpackError extends Error {
  override readonly name = "HpackError";
}

/** One header field, name in lower case. */
export type HeaderField = readonly [name: string, value: string];

/** RFC 7541 Appendix A. Index i of the static table is STATIC_TABLE[i - 1]. */
const STATIC_TABLE: readonly HeaderField[] = [
  [":authority", ""], [":method", "GET"], [":method", "POST"], [":path", "/"], [":path", "/index.html"],
  [":scheme", "http"], [":scheme", "https"], [":status", "200"], [":status", "204"], [":status", "206"],
  [":status", "304"], [":status", "400"], [":status", "404"], [":status", "500"], ["accept-charset", ""],
  ["accept-encoding", "gzip, deflate"], ["accept-language", ""], ["accept-ranges", ""], ["accept", ""],
  ["access-control-allow-origin", ""], ["age", ""], ["allow", ""], ["authorization", ""], ["cache-control", ""],
  ["content-disposition", ""], ["content-encoding", ""], ["content-language", ""], ["content-length", ""],
  ["content-location", ""], ["content-range", ""], ["content-type", ""], ["cookie", ""], ["date", ""], ["etag", ""],
  ["expect", ""], ["expires", ""], ["from", ""], ["host", ""], ["if-match", ""], ["if-modified-since", ""],
  ["if-none-match", ""], ["if-range", ""], ["if-unmodified-since", ""], ["last-modified", ""], ["link", ""],
  ["location", ""], ["max-forwards", ""], ["proxy-authenticate", ""], ["proxy-authorization", ""], ["range", ""],
  ["referer", ""], ["refresh", ""], ["retry-after", ""], ["server", ""], ["set-cookie", ""],
  ["strict-transport-security", ""], ["transfer-encoding", ""], ["user-agent", ""], ["vary", ""], ["via", ""],
  ["www-authenticate", ""],
];

/**
 * Code lengths in bits of the HPACK Huffman code (RFC 7541 Appendix B), symbols 0..255 and
 * EOS (256), one base-32 digit each (5..30). The code is canonical: codes of one length are
 * consecutive in symbol order, and each length starts where the shorter ones ended, shifted
 * left. So the lengths alone define it (`huffmanCodes()` rebuilds the codes; a test checks
 * them against the RFC's and that they fill the code space exactly).
 */
const HUFFMAN_CODE_LENGTHS =
  "dnsssssssoussussssssssusssssssss6aacd68baa8b8666555666666678f6ca" +
  "d67777777777777777777777878djde6f56565666577666567655677777fbeds" +
  "kmkkmmmnmnnnnnonoomnonnnnlmnmnnomlkmmnnlnmmolmnnllmlnmnnkmmmnmmn" +
  "qqkjmnmpqqqrrqopjlqrrqrollqqsrrrkoklmllnmmppooqnqrqqrrrrrsrrrrrq" +
  "u";

const EOS = 256;
const MAX_CODE_BITS = 30;

function codeLengths(): number[] {
  const lengths = [...HUFFMAN_CODE_LENGTHS].map((digit) => Number.parseInt(digit, 32));
  if (lengths.length !== EOS + 1) throw new Error(`the Huffman table has ${lengths.length} lengths, not 257`);
  return lengths;
}

interface HuffmanDecodeTable {
  /** Symbols ordered by (code length, symbol): the canonical order. */
  readonly symbols: Uint16Array;
  /** counts[n]: how many codes have n bits. */
  readonly counts: Uint16Array;
}

let decodeTable: HuffmanDecodeTable | null = null;

function huffmanDecodeTable(): HuffmanDecodeTable {
  if (decodeTable !== null) return decodeTable;
  const lengths = codeLengths();
  const counts = new Uint16Array(MAX_CODE_BITS + 1);
  for (const length of lengths) counts[length] = (counts[length] as number) + 1;
  const order = lengths.map((length, symbol) => ({ length, symbol })).sort((a, b) => a.length - b.length || a.symbol - b.symbol);
  decodeTable = { symbols: Uint16Array.from(order, (entry) => entry.symbol), counts };
  return decodeTable;
}

/** The canonical Huffman code of every symbol (0..256) as [code, bits]; for tests and encoders. */
export function huffmanCodes(): Array<readonly [code: number, bits: number]> {
  const { symbols, counts } = huffmanDecodeTable();
  const lengths = codeLengths();
  const codes: Array<readonly [number, number]> = new Array(EOS + 1);
  let code = 0;
  let index = 0;
  for (let bits = 1; bits <= MAX_CODE_BITS; bits++) {
    for (let i = 0; i < (counts[bits] as number); i++, index++, code++) {
      const symbol = symbols[index] as number;
      codes[symbol] = [code, lengths[symbol] as number];
    }
    code <<= 1;
  }
  return codes;
}

/** Decodes a Huffman-coded string (RFC 7541 section 5.2), padding checked. */
export function huffmanDecode(bytes: Uint8Array): Uint8Array {
  const { symbols, counts } = huffmanDecodeTable();
  // Every symbol takes at least 5 bits, so the output is at most 8/5 of the input.
  const out = new Uint8Array(Math.ceil((bytes.length * 8) / 5));
  let written = 0;
  let code = 0; // bits read since the last symbol
  let first = 0; // first code of the current length
  let index = 0; // index in `symbols` of that first code
  let bits = 0;
  for (const byte of bytes) {
    for (let shift = 7; shift >= 0; shift--) {
      code |= (byte >> shift) & 1;
      bits++;
      const count = counts[bits] as number;
      if (code - first < count) {
        const symbol = symbols[index + code - first] as number;
        if (symbol === EOS) throw new HpackError("a Huffman-coded string contains EOS");
        out[written++] = symbol;
        code = first = index = bits = 0;
        continue;
      }
      if (bits === MAX_CODE_BITS) throw new HpackError("an invalid Huffman code");
      index += count;
      first = (first + count) << 1;
      code <<= 1;
    }
  }
  // What is left must be padding: fewer than 8 bits, all ones (a prefix of EOS). `code` was
  // shifted once more after its last bit.
  if (bits > 7 || (bits > 0 && code >> 1 !== (1 << bits) - 1)) {
    throw new HpackError("invalid padding after a Huffman-coded string");
  }
  return out.subarray(0, written);
}

// ---------------------------------------------------------------------------------------------
// Decoding

/** The dynamic table's size limit that we advertise (SETTINGS_HEADER_TABLE_SIZE default). */
export const DEFAULT_HEADER_TABLE_BYTES = 4096;
/** Each entry's size counts its name and value plus 32 bytes (RFC 7541 section 4.1). */
const ENTRY_OVERHEAD_BYTES = 32;

const latin1 = new TextDecoder("latin1");

/** Decodes the header blocks of one connection, in order (they share the dynamic table). */
export class HpackDecoder {
  /** Newest first, as indices count them. */
  #dynamic: HeaderField[] = [];
  #dynamicBytes = 0;
  #maxDynamicBytes: number;

  constructor(
    /** The table size we allow the peer (our SETTINGS_HEADER_TABLE_SIZE). */
    private readonly allowedTableBytes = DEFAULT_HEADER_TABLE_BYTES,
    /** Largest decoded header list (names + values + 32 per field) accepted. */
    private readonly maxHeaderListBytes = 64 * 1024,
  ) {
    this.#maxDynamicBytes = allowedTableBytes;
  }

  decode(block: Uint8Array): HeaderField[] {
    const fields: HeaderField[] = [];
    let listBytes = 0;
    const at = { offset: 0 };
    let fieldSeen = false;
    while (at.offset < block.length) {
      const first = block[at.offset] as number;
      let field: HeaderField;
      if (first & 0x80) {
        field = this.#entry(readInteger(block, at, 7));
      } else if ((first & 0xe0) === 0x20) {
        // A dynamic table size update: only at the start of a block.
        if (fieldSeen) throw new HpackError("a table size update after a header field");
        const size = readInteger(block, at, 5);
        if (size > this.allowedTableBytes) throw new HpackError(`a table size of ${size} bytes exceeds ${this.allowedTableBytes}`);
        this.#maxDynamicBytes = size;
        this.#evict(0);
        continue;
      } else {
        const indexed = (first & 0xc0) === 0x40;
        const nameIndex = readInteger(block, at, indexed ? 6 : 4);
        const name = nameIndex === 0 ? readString(block, at) : (this.#entry(nameIndex)[0]);
        field = [name, readString(block, at)];
        if (indexed) this.#insert(field);
      }
      fieldSeen = true;
      listBytes += field[0].length + field[1].length + ENTRY_OVERHEAD_BYTES;
      if (listBytes > this.maxHeaderListBytes) throw new HpackError(`a header list larger than ${this.maxHeaderListBytes} bytes`);
      fields.push(field);
    }
    return fields;
  }

  #entry(index: number): HeaderField {
    if (index === 0) throw new HpackError("header index 0");
    if (index <= STATIC_TABLE.length) return STATIC_TABLE[index - 1] as HeaderField;
    const entry = this.#dynamic[index - STATIC_TABLE.length - 1];
    if (entry === undefined) throw new HpackError(`header index ${index} is not in the table`);
    return entry;
  }

  #insert(field: HeaderField): void {
    const size = field[0].length + field[1].length + ENTRY_OVERHEAD_BYTES;
    this.#evict(size);
    // An entry larger than the whole table empties it and is not added (section 4.4).
    if (size > this.#maxDynamicBytes) return;
    this.#dynamic.unshift(field);
    this.#dynamicBytes += size;
  }

  /** Evicts the oldest entries until `incomingBytes` more fit. */
  #evict(incomingBytes: number): void {
    while (this.#dynamic.length > 0 && this.#dynamicBytes + incomingBytes > this.#maxDynamicBytes) {
      const [name, value] = this.#dynamic.pop() as HeaderField;
      this.#dynamicBytes -= name.length + value.length + ENTRY_OVERHEAD_BYTES;
    }
  }
}

/** An HPACK integer with an N-bit prefix (section 5.1), at most 2^28. */
function readInteger(block: Uint8Array, at: { offset: number }, prefixBits: number): number {
  const limit = (1 << prefixBits) - 1;
  let value = (block[at.offset++] as number) & limit;
  if (value < limit) return value;
  for (let shift = 0; ; shift += 7) {
    if (at.offset >= block.length) throw new HpackError("a truncated integer");
    if (shift > 21) throw new HpackError("an integer larger than 2^28");
    const byte = block[at.offset++] as number;
    value += (byte & 0x7f) * 2 ** shift;
    if ((byte & 0x80) === 0) return value;
  }
}

/** A string literal (section 5.2), as latin1 (header bytes one to one). */
function readString(block: Uint8Array, at: { offset: number }): string {
  if (at.offset >= block.length) throw new HpackError("a truncated string");
  const huffman = ((block[at.offset] as number) & 0x80) !== 0;
  const length = readInteger(block, at, 7);
  if (at.offset + length > block.length) throw new HpackError("a string longer than its block");
  const raw = block.subarray(at.offset, at.offset + length);
  at.offset += length;
  return latin1.decode(huffman ? huffmanDecode(raw) : raw);
}

// ---------------------------------------------------------------------------------------------
// Encoding

function pushInteger(out: number[], value: number, prefixBits: number, flags: number): void {
  const limit = (1 << prefixBits) - 1;
  if (value < limit) {
    out.push(flags | value);
    return;
  }
  out.push(flags | limit);
  let rest = value - limit;
  while (rest >= 0x80) {
    out.push((rest & 0x7f) | 0x80);
    rest = Math.floor(rest / 0x80);
  }
  out.push(rest);
}

function pushString(out: number[], text: string): void {
  const bytes = Buffer.from(text, "latin1");
  pushInteger(out, bytes.length, 7, 0);
  for (const byte of bytes) out.push(byte);
}

/**
 * A header block for `fields`: each a literal without indexing, its name by static index when
 * the static table has it. Stateless, so blocks can be sent in any order.
 */
export function encodeHeaderBlock(fields: readonly HeaderField[]): Uint8Array {
  const out: number[] = [];
  for (const [name, value] of fields) {
    const nameIndex = STATIC_TABLE.findIndex(([staticName]) => staticName === name) + 1;
    pushInteger(out, nameIndex, 4, 0x00);
    if (nameIndex === 0) pushString(out, name);
    pushString(out, value);
  }
  return Uint8Array.from(out);
}
