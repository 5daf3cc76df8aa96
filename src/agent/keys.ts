/**
 * Cluster-wide key management (`tamtam keys`, the ListKeys/InstallKey/UseKey/RemoveKey RPCs),
 * built on the core's cluster requests (src/core/requests.ts) of kind KEYRING_REQUEST_KIND.
 *
 * The agent applies the operation to its own keyring first (refusing, e.g., to remove its
 * primary key), then sends it to every alive member and waits for their answers; a key to
 * remove is removed here last, so that members still sealing with it are heard until then. Each member
 * applies it to its keyring (which rewrites its keyring file) and answers with the
 * fingerprints of the keys it then holds, or with its refusal. Members that refuse or do not
 * answer in time are reported; keys are counted over the members that answered.
 *
 * Request payload: u8 operation (1 list, 2 install, 3 use, 4 remove), then the key (none for
 * list). Answer payload: u8 0 (done), u8 count, count * 8-byte fingerprint (primary first);
 * or u8 1 (refused), then a UTF-8 reason. The requests travel sealed under the primary key,
 * like every datagram; keys never appear in logs, answers or replies, only fingerprints.
 */

import { createHash } from "node:crypto";
import type { Address } from "../core/address.js";
import type { KeyFailure, KeyOperation, KeysOutcome } from "../api/agent-api.js";
import { AgentError, isAgentError } from "../api/errors.js";
import type { Keyring } from "../seal/keyring.js";

/** Cluster request kind of keyring operations. */
export const KEYRING_REQUEST_KIND = 1;
const FINGERPRINT_BYTES = 8;
const MAX_REASON_BYTES = 200;

const OPS: readonly KeyOperation[] = ["list", "install", "use", "remove"];

/** The fingerprint bytes of `key`. */
function fingerprintBytes(key: Uint8Array): Uint8Array {
  return new Uint8Array(createHash("sha256").update(key).digest().subarray(0, FINGERPRINT_BYTES));
}

export function fingerprintText(bytes: Uint8Array): string {
  return `sha256:${Buffer.from(bytes).toString("hex")}`;
}

/** The fingerprint of `key` as shown to operators. */
export function fingerprint(key: Uint8Array): string {
  return fingerprintText(fingerprintBytes(key));
}

export function encodeKeyRequest(op: KeyOperation, key: Uint8Array | null): Uint8Array {
  const out = new Uint8Array(1 + (key?.length ?? 0));
  out[0] = OPS.indexOf(op) + 1;
  if (key !== null) out.set(key, 1);
  return out;
}

/**
 * Applies `op` to `keyring`; throws AgentError (a one-line reason, never the key) if refused.
 * `checkOnly`: only checks that it would be done, changing nothing.
 */
export function applyKeyOperation(keyring: Keyring | null, op: KeyOperation, key: Uint8Array | null, checkOnly = false): void {
  if (keyring === null || keyring.size === 0) throw new AgentError("NO_KEYRING", "this agent has no gossip keys; start it with --encrypt");
  if (op === "list") return;
  if (key === null) throw new AgentError("INVALID_KEY", "a key is required");
  try {
    if (op === "install") {
      keyring.install(key);
    } else if (op === "use") {
      keyring.use(key);
    } else {
      if (keyring.primary !== null && Buffer.from(keyring.primary.key).equals(Buffer.from(key))) {
        throw new AgentError("KEY_IS_PRIMARY", "the primary key cannot be removed; make another key primary first (keys use)");
      }
      // Removing a key that is not installed is done already.
      if (!checkOnly && keyring.keys().some((k) => Buffer.from(k).equals(Buffer.from(key)))) keyring.remove(key);
    }
  } catch (err) {
    if (isAgentError(err)) throw err;
    const message = (err as Error).message;
    throw new AgentError(message.includes("not installed") ? "UNKNOWN_KEY" : "INVALID_KEY", message);
  }
}

/** A member's answer to a keyring request from another member. */
export function answerKeyRequest(keyring: Keyring | null, payload: Uint8Array): Uint8Array {
  const op = OPS[(payload[0] ?? 0) - 1];
  try {
    if (op === undefined) throw new AgentError("INVALID_KEY", "unknown key operation");
    applyKeyOperation(keyring, op, op === "list" ? null : payload.slice(1));
  } catch (err) {
    const reason = new TextEncoder().encode((err as Error).message).subarray(0, MAX_REASON_BYTES);
    const out = new Uint8Array(1 + reason.length);
    out[0] = 1;
    out.set(reason, 1);
    return out;
  }
  const keys = (keyring as Keyring).keys();
  const out = new Uint8Array(2 + keys.length * FINGERPRINT_BYTES);
  out[1] = keys.length;
  keys.forEach((k, i) => out.set(fingerprintBytes(k), 2 + i * FINGERPRINT_BYTES));
  return out;
}

/** Decodes an answer: the fingerprints (primary first), or the member's refusal. */
export function decodeKeyAnswer(payload: Uint8Array): { ok: true; fingerprints: string[] } | { ok: false; reason: string } {
  if (payload[0] === 1) return { ok: false, reason: new TextDecoder().decode(payload.subarray(1)) };
  const count = payload[1] ?? 0;
  if (payload[0] !== 0 || payload.length !== 2 + count * FINGERPRINT_BYTES) return { ok: false, reason: "a malformed answer" };
  const fingerprints: string[] = [];
  for (let i = 0; i < count; i++) fingerprints.push(fingerprintText(payload.subarray(2 + i * FINGERPRINT_BYTES, 2 + (i + 1) * FINGERPRINT_BYTES)));
  return { ok: true, fingerprints };
}

/** Counts keys over this agent's keyring and the members' answers. */
export function keysOutcome(
  local: readonly Uint8Array[],
  answers: readonly { from: Address; payload: Uint8Array }[],
  missing: readonly Address[],
): KeysOutcome {
  const counts = new Map<string, { installed: number; primary: number; local: boolean }>();
  const count = (fps: readonly string[], isLocal: boolean): void => {
    fps.forEach((fp, i) => {
      const c = counts.get(fp) ?? { installed: 0, primary: 0, local: false };
      c.installed++;
      if (i === 0) c.primary++;
      if (isLocal) c.local = true;
      counts.set(fp, c);
    });
  };
  count(local.map(fingerprint), true);
  const failures: KeyFailure[] = [];
  let confirmed = 1;
  for (const a of answers) {
    const answer = decodeKeyAnswer(a.payload);
    if (answer.ok) {
      confirmed++;
      count(answer.fingerprints, false);
    } else {
      failures.push({ member: a.from, reason: answer.reason });
    }
  }
  for (const m of missing) failures.push({ member: m, reason: "did not answer in time" });
  failures.sort((a, b) => (a.member.key < b.member.key ? -1 : a.member.key > b.member.key ? 1 : 0));
  const keys = [...counts.entries()].map(([fp, c]) => ({ fingerprint: fp, ...c }));
  return { members: 1 + answers.length + missing.length, confirmed, keys, failures };
}
