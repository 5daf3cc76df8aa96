/**
 * The bytes of user queries (`tamtam query`, the Query RPC) inside cluster requests of kind
 * QUERY_REQUEST_KIND (src/core/requests.ts), the rules for query names, and `NAME=COMMAND`
 * handler specs. Pure functions; the agent's side is src/agent/queries.ts.
 *
 * Request payload: u8 nameLength (1..MAX_QUERY_NAME_BYTES), the name (UTF-8), the user's payload.
 * Answer payload:  u8 status, then the handler's response (status 0) or a UTF-8 reason:
 *   0 RESPONDED   a handler answered; the bytes are its response
 *   1 NO_HANDLER  the member has no handler for the name (it acknowledges, nothing more)
 *   2 FAILED      the handler failed: it exited non-zero, timed out, or the agent was too busy
 */

/** Cluster request kind of user queries (keyring operations are 1). */
export const QUERY_REQUEST_KIND = 2;
export const MAX_QUERY_NAME_BYTES = 64;
/** Longest reason a failed answer carries (bytes). */
export const MAX_QUERY_REASON_BYTES = 200;

export const QueryStatus = { Responded: 0, NoHandler: 1, Failed: 2 } as const;
export type QueryStatus = (typeof QueryStatus)[keyof typeof QueryStatus];

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Why `name` cannot name a query (one line), or null: 1..64 bytes of letters, digits and `._:-`. */
export function queryNameProblem(name: string): string | null {
  if (!/^[A-Za-z0-9._:-]+$/.test(name)) return `a query name is letters, digits and . _ : - only, got "${name}"`;
  if (name.length > MAX_QUERY_NAME_BYTES) return `a query name has at most ${MAX_QUERY_NAME_BYTES} characters, got ${name.length}`;
  return null;
}

export interface QueryHandlerSpec {
  readonly name: string;
  readonly command: string;
}

/** `NAME=COMMAND`: the spec, or a one-line problem. */
export function parseQueryHandler(text: string): QueryHandlerSpec | string {
  const eq = text.indexOf("=");
  if (eq < 0) return `a query handler is NAME=COMMAND, got "${text}"`;
  const name = text.slice(0, eq).trim();
  const command = text.slice(eq + 1).trim();
  const problem = queryNameProblem(name);
  if (problem !== null) return problem;
  if (command === "") return `the query handler for "${name}" has no command`;
  return { name, command };
}

/** For the settings table: why `text` is no NAME=COMMAND (a "must be ..." phrase), or null. */
export function queryHandlerProblem(text: string): string | null {
  const spec = parseQueryHandler(text);
  return typeof spec === "string" ? `must be NAME=COMMAND (${spec})` : null;
}

/** Bytes a query of `name` adds in front of its payload. */
export function queryHeaderBytes(name: string): number {
  return 1 + encoder.encode(name).length;
}

export function encodeQuery(name: string, payload: Uint8Array): Uint8Array {
  const nameBytes = encoder.encode(name);
  const out = new Uint8Array(1 + nameBytes.length + payload.length);
  out[0] = nameBytes.length;
  out.set(nameBytes, 1);
  out.set(payload, 1 + nameBytes.length);
  return out;
}

/** A query's name and payload, or null if the bytes are no query. */
export function decodeQuery(bytes: Uint8Array): { name: string; payload: Uint8Array } | null {
  const n = bytes[0] ?? 0;
  if (n < 1 || n > MAX_QUERY_NAME_BYTES || bytes.length < 1 + n) return null;
  const name = decoder.decode(bytes.subarray(1, 1 + n));
  if (queryNameProblem(name) !== null) return null;
  return { name, payload: bytes.slice(1 + n) };
}

export function encodeAnswer(status: QueryStatus, body: Uint8Array): Uint8Array {
  const out = new Uint8Array(1 + body.length);
  out[0] = status;
  out.set(body, 1);
  return out;
}

export function encodeFailure(status: typeof QueryStatus.NoHandler | typeof QueryStatus.Failed, reason: string): Uint8Array {
  return encodeAnswer(status, encoder.encode(reason).subarray(0, MAX_QUERY_REASON_BYTES));
}

export type DecodedAnswer =
  | { readonly status: typeof QueryStatus.Responded; readonly payload: Uint8Array }
  | { readonly status: typeof QueryStatus.NoHandler | typeof QueryStatus.Failed; readonly reason: string };

/** A member's answer; malformed bytes count as a failure. */
export function decodeAnswer(bytes: Uint8Array): DecodedAnswer {
  const status = bytes[0];
  if (status === QueryStatus.Responded) return { status, payload: bytes.slice(1) };
  if (status === QueryStatus.NoHandler || status === QueryStatus.Failed) return { status, reason: decoder.decode(bytes.subarray(1)) };
  return { status: QueryStatus.Failed, reason: "a malformed answer" };
}
