/**
 * Checks of gossip keys and cluster labels as the command line reads them. No node:crypto or
 * file system here, so the command line can check settings without loading either. Messages
 * never contain the key text.
 */

/** Key sizes of AES-128/192/256-GCM (bytes). */
export const KEY_SIZES: readonly number[] = [16, 24, 32];
/** Longest cluster label (UTF-8 bytes). */
export const MAX_LABEL_BYTES = 255;

/** The key bytes of base64 `text`, or a one-line reason ("must be ...") that never shows the text. */
export function decodeKey(text: string): Uint8Array | string {
  const t = text.trim();
  if (t.length === 0 || t.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(t)) {
    return "must be base64 of a 16-, 24- or 32-byte key (e.g. from `openssl rand -base64 32`)";
  }
  const bytes = new Uint8Array(Buffer.from(t, "base64"));
  if (!KEY_SIZES.includes(bytes.length)) return `must be a 16-, 24- or 32-byte key in base64, got ${bytes.length} bytes`;
  return bytes;
}

/** Why `text` is not a gossip key ("must be ..."), or null. Never mentions the text itself. */
export function keyProblem(text: string): string | null {
  const key = decodeKey(text);
  return typeof key === "string" ? key : null;
}

/** Why `label` cannot be a cluster label ("must have ..."), or null. */
export function labelProblem(label: string): string | null {
  const bytes = Buffer.byteLength(label, "utf8");
  return bytes >= 1 && bytes <= MAX_LABEL_BYTES ? null : `must have 1..${MAX_LABEL_BYTES} bytes`;
}
