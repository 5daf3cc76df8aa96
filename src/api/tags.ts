/**
 * src/api/tags.ts: member tags as users write and read them: `KEY=VALUE` assignments (the
 * agent's --tag, `tamtam tags set`), string maps to and from the core's byte encoding (src/core/tags.ts), and tag
 * filters `KEY=REGEXP` (`tamtam nodes --tag`, `tamtam query --tag`), whose values are regular
 * expressions anchored at both ends, as Serf's are. Pure functions; no I/O.
 */

import { decodeTags, encodeTags, MAX_TAG_KEY_BYTES, type TagPair } from "../core/tags.js";

export type Tags = Readonly<Record<string, string>>;

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: false });

/** Why `key` cannot be a tag key (a one-line reason), or null. */
export function tagKeyProblem(key: string): string | null {
  const bytes = encoder.encode(key).length;
  if (bytes === 0) return "a tag key cannot be empty";
  if (bytes > MAX_TAG_KEY_BYTES) return `a tag key has at most ${MAX_TAG_KEY_BYTES} bytes, "${key.slice(0, 20)}..." has ${bytes}`;
  if (/[=\s]/.test(key)) return `a tag key has no "=" and no white space, got "${key}"`;
  return null;
}

/** `KEY=VALUE` (the value may be empty or contain "="): the pair, or a one-line problem. */
export function parseTagAssignment(text: string): readonly [string, string] | string {
  const eq = text.indexOf("=");
  if (eq < 0) return `a tag is KEY=VALUE, got "${text}"`;
  const key = text.slice(0, eq);
  const problem = tagKeyProblem(key);
  return problem ?? [key, text.slice(eq + 1)];
}

/** Parses every assignment; throws an Error with the first problem, prefixed by `source`. */
export function parseTagAssignments(texts: readonly string[], source: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const text of texts) {
    const pair = parseTagAssignment(text);
    if (typeof pair === "string") throw new Error(`${source}: ${pair}`);
    out[pair[0]] = pair[1];
  }
  return out;
}

/** The core's canonical encoding of `tags`. */
export function encodeTagMap(tags: Tags): Uint8Array {
  const pairs: TagPair[] = Object.entries(tags).map(([k, v]) => [encoder.encode(k), encoder.encode(v)]);
  return encodeTags(pairs);
}

/** Tags from the core's encoding (null: none known) as a plain object, keys in byte order. */
export function decodeTagMap(bytes: Uint8Array | null): Record<string, string> {
  const out: Record<string, string> = {};
  if (bytes === null) return out;
  const pairs = decodeTags(bytes);
  if (typeof pairs === "string") return out;
  for (const [k, v] of pairs) out[decoder.decode(k)] = decoder.decode(v);
  return out;
}

/** One filter: the tag `key` must exist and match `pattern` as a whole. */
export interface TagFilter {
  readonly key: string;
  readonly pattern: RegExp;
  /** As the user wrote it (KEY=REGEXP). */
  readonly text: string;
}

/** `KEY=REGEXP`: the filter, or a one-line problem (a bad key or regular expression). */
export function parseTagFilter(text: string): TagFilter | string {
  const pair = parseTagAssignment(text);
  if (typeof pair === "string") return pair.replace("KEY=VALUE", "KEY=REGEXP");
  return tagFilter(pair[0], pair[1]);
}

/** The filter for `key` and the regular expression `source` (anchored), or a one-line problem. */
export function tagFilter(key: string, source: string): TagFilter | string {
  const problem = tagKeyProblem(key);
  if (problem !== null) return problem;
  try {
    return { key, pattern: new RegExp(`^(?:${source})$`, "u"), text: `${key}=${source}` };
  } catch (err) {
    return `the tag filter ${key}=${source} is not a regular expression: ${(err as Error).message.split("\n")[0]}`;
  }
}

/** Whether `tags` pass every filter (an empty list passes everything). */
export function matchesTags(tags: Tags, filters: readonly TagFilter[]): boolean {
  for (const f of filters) {
    const value = tags[f.key];
    if (value === undefined || !f.pattern.test(value)) return false;
  }
  return true;
}

/** `k1=v1,k2=v2` (keys sorted), as the nodes table shows tags; "" for none. */
export function tagsText(tags: Tags): string {
  return Object.keys(tags)
    .sort()
    .map((k) => `${k}=${tags[k] as string}`)
    .join(",");
}
