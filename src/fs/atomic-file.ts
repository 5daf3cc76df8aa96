/**
 * Atomic file replacement for the files the agent keeps up to date (the keyring file, the
 * member snapshot): the text goes to a private temporary file in the same directory, is
 * fsynced, and renamed over the target, so that a reader (or a restart after a crash) sees the
 * old file or the new one, never a torn one.
 */

import { chmodSync, closeSync, fsyncSync, openSync, renameSync, unlinkSync, writeSync } from "node:fs";
import { basename, dirname, join } from "node:path";

/** Replaces `path` with `text` atomically; the file gets `mode` (also when it existed before). Throws on failure, leaving no temporary file. */
export function writeFileAtomic(path: string, text: string, mode: number): void {
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.tmp`);
  const fd = openSync(tmp, "w", mode);
  try {
    writeSync(fd, text);
    fsyncSync(fd);
  } catch (err) {
    closeSync(fd);
    unlinkSafe(tmp);
    throw err;
  }
  closeSync(fd);
  try {
    chmodSync(tmp, mode); // an existing file of that name kept its mode
    renameSync(tmp, path);
  } catch (err) {
    unlinkSafe(tmp);
    throw err;
  }
}

function unlinkSafe(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // gone already
  }
}
