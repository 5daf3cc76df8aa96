/**
 * The gossip keyring: the AES-GCM keys an agent seals and opens datagrams with, and the keyring
 * file that keeps them across restarts.
 *
 * - Keys are 16, 24 or 32 bytes (AES-128/192/256-GCM), given as base64. The first key is the
 *   primary: it seals every outgoing datagram; every installed key is tried to open.
 * - A key's id is the first byte of its SHA-256. It travels in every sealed datagram, so a
 *   receiver tries only the keys with that id (several when ids collide), never all of them.
 * - `install`, `use` and `remove` change the keyring at run time (one small API for the later
 *   cluster-wide rotation); listeners hear of every change, so the keyring file is rewritten.
 * - The keyring file is a JSON or YAML list of base64 keys, primary first. TamTam creates it
 *   with mode 0600 and rewrites it atomically (a private temporary file in the same directory,
 *   fsync, rename) on every change; a restarted agent reads it again and so keeps the keys it
 *   was last given.
 *
 * No message, log line or counter ever contains key material: keys are named by position or
 * by their one-byte id only.
 */

import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { writeFileAtomic } from "../fs/atomic-file.js";
import { decodeKey, KEY_SIZES } from "./checks.js";

export { decodeKey, keyProblem, KEY_SIZES } from "./checks.js";

/** Keys a keyring holds at most. */
export const MAX_KEYS = 32;

/** The one-byte key id of `key`: the first byte of its SHA-256. */
export function keyId(key: Uint8Array): number {
  return createHash("sha256").update(key).digest()[0] as number;
}

export function encodeKey(key: Uint8Array): string {
  return Buffer.from(key).toString("base64");
}

export interface KeyEntry {
  readonly key: Uint8Array;
  readonly id: number;
}

function sameKey(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.from(a).equals(Buffer.from(b));
}

/** The installed keys; the first is the primary. */
export class Keyring {
  private entries: KeyEntry[] = [];
  private readonly listeners = new Set<(keys: readonly Uint8Array[]) => void>();

  constructor(keys: readonly Uint8Array[] = []) {
    for (const key of keys) this.install(key);
  }

  /** The primary key (seals), or null when the keyring is empty. */
  get primary(): KeyEntry | null {
    return this.entries[0] ?? null;
  }

  get size(): number {
    return this.entries.length;
  }

  /** The installed keys with id `id`, primary first. */
  withId(id: number): KeyEntry[] {
    return this.entries.filter((e) => e.id === id);
  }

  /** Copies of the keys, primary first (for the keyring file). */
  keys(): Uint8Array[] {
    return this.entries.map((e) => e.key.slice());
  }

  /** Adds a key (primary if it is the first); a key already installed is left as it is. Returns whether it was added. */
  install(key: Uint8Array): boolean {
    if (!KEY_SIZES.includes(key.length)) throw new RangeError(`a key has 16, 24 or 32 bytes, got ${key.length}`);
    if (this.entries.some((e) => sameKey(e.key, key))) return false;
    if (this.entries.length >= MAX_KEYS) throw new RangeError(`a keyring holds at most ${MAX_KEYS} keys`);
    this.entries.push({ key: key.slice(), id: keyId(key) });
    this.changed();
    return true;
  }

  /** Makes an installed key the primary. RangeError if it is not installed. */
  use(key: Uint8Array): void {
    const i = this.entries.findIndex((e) => sameKey(e.key, key));
    if (i < 0) throw new RangeError("that key is not installed");
    if (i === 0) return;
    const [entry] = this.entries.splice(i, 1);
    this.entries.unshift(entry as KeyEntry);
    this.changed();
  }

  /** Removes an installed key other than the primary. RangeError if it is the primary or not installed. */
  remove(key: Uint8Array): void {
    const i = this.entries.findIndex((e) => sameKey(e.key, key));
    if (i < 0) throw new RangeError("that key is not installed");
    if (i === 0) throw new RangeError("the primary key cannot be removed; make another key primary first");
    this.entries.splice(i, 1);
    this.changed();
  }

  /**
   * Replaces every key with `keys` (primary first), as another thread's keyring holds them.
   * RangeError (nothing changed) for a bad key or too many.
   */
  replace(keys: readonly Uint8Array[]): void {
    if (keys.length > MAX_KEYS) throw new RangeError(`a keyring holds at most ${MAX_KEYS} keys`);
    const entries: KeyEntry[] = [];
    for (const key of keys) {
      if (!KEY_SIZES.includes(key.length)) throw new RangeError(`a key has 16, 24 or 32 bytes, got ${key.length}`);
      if (!entries.some((e) => sameKey(e.key, key))) entries.push({ key: key.slice(), id: keyId(key) });
    }
    this.entries = entries;
    this.changed();
  }

  /** Calls `listener` with the keys after every change; returns the unsubscribe function. */
  onChange(listener: (keys: readonly Uint8Array[]) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private changed(): void {
    const keys = this.keys();
    for (const l of this.listeners) l(keys);
  }
}

// ---------------------------------------------------------------------------------------------
// The keyring file

const requireModule = createRequire(import.meta.url);

/**
 * The keys of the keyring file at `path`, primary first; null when the file does not exist.
 * Throws Error with one line naming the file (and the position of a bad key, never the key).
 */
export function readKeyringFile(path: string): Uint8Array[] | null {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw new Error(`cannot read the keyring file ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  let data: unknown;
  try {
    // YAML is a superset of JSON: one parser reads both forms.
    data = (requireModule("yaml") as typeof import("yaml")).parse(text);
  } catch {
    throw new Error(`the keyring file ${path} is neither JSON nor YAML`);
  }
  if (!Array.isArray(data) || data.length === 0) throw new Error(`the keyring file ${path} must hold a non-empty list of base64 keys`);
  if (data.length > MAX_KEYS) throw new Error(`the keyring file ${path} holds ${data.length} keys, at most ${MAX_KEYS} are allowed`);
  const keys: Uint8Array[] = [];
  data.forEach((item: unknown, i: number) => {
    const key = typeof item === "string" ? decodeKey(item) : "must be a base64 string";
    if (typeof key === "string") throw new Error(`key ${i + 1} of the keyring file ${path} ${key}`);
    keys.push(key);
  });
  return keys;
}

/**
 * Writes `keys` (primary first) to `path` atomically with mode 0600: a temporary file in the
 * same directory, created 0600 and fsynced, renamed over the old file.
 */
export function writeKeyringFile(path: string, keys: readonly Uint8Array[]): void {
  writeFileAtomic(path, `${JSON.stringify(keys.map(encodeKey), null, 2)}\n`, 0o600);
}

/** Where an agent's starting keys come from, and what it says about it. */
export interface StartingKeys {
  readonly keys: Uint8Array[];
  /** The keyring file does not exist yet: the agent creates it with `keys`. */
  readonly createFile: boolean;
  /** A warning to log (never contains a key), or null. */
  readonly warning: string | null;
}

/**
 * The starting keys from `--encrypt` (already decoded) and `--keyring-file`. The rule:
 *   - a keyring file that exists wins: it holds what the agent was last given (rotations
 *     included). An `--encrypt` key it does not contain is ignored, with a warning;
 *   - a keyring file that does not exist is created with the `--encrypt` key as its only key;
 *   - without a keyring file, the `--encrypt` key is the only key (nothing is written).
 * Throws Error (one line) for an unreadable or bad file, or a missing file without `--encrypt`.
 */
export function startingKeys(encrypt: Uint8Array | null, keyringFile: string | null): StartingKeys {
  if (keyringFile === null) return { keys: encrypt === null ? [] : [encrypt], createFile: false, warning: null };
  const fromFile = readKeyringFile(keyringFile);
  if (fromFile === null) {
    if (encrypt === null) throw new Error(`the keyring file ${keyringFile} does not exist; give a first key with --encrypt`);
    return { keys: [encrypt], createFile: true, warning: null };
  }
  const ignored = encrypt !== null && !fromFile.some((k) => sameKey(k, encrypt));
  return {
    keys: fromFile,
    createFile: false,
    warning: ignored ? `the --encrypt key is not in the keyring file ${keyringFile} and is ignored: the keyring file wins` : null,
  };
}
