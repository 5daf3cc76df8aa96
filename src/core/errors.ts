/**
 * Typed protocol errors. Decoding hostile or truncated bytes from the network ends in a
 * ProtocolError with a stable code string, never in any other exception; the core counts
 * them per code and changes no state.
 */

export const PROTOCOL_ERROR_CODES = [
  "TRUNCATED",
  "BAD_MAGIC",
  "BAD_VERSION",
  "BAD_FLAGS",
  "SEALED",
  "UNKNOWN_TYPE",
  "UNKNOWN_ITEM",
  "BAD_ADDRESS",
  "VARINT_OVERFLOW",
  "VARINT_NONCANONICAL",
  "BAD_LENGTH",
  "TOO_LARGE",
  "BAD_TAGS",
] as const;

export type ProtocolErrorCode = (typeof PROTOCOL_ERROR_CODES)[number];

export class ProtocolError extends Error {
  override readonly name = "ProtocolError";
  constructor(
    readonly code: ProtocolErrorCode,
    readonly offset: number,
    detail?: string,
  ) {
    super(`${code} at byte ${offset}${detail === undefined ? "" : `: ${detail}`}`);
  }
}
