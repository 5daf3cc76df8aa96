/**
 * The TamTam version and build facts shown by `tamtam version` and `--version`. The bundled bin
 * has them compiled in (scripts/bundle.mjs defines TAMTAM_BUILD_INFO), so it reads no file at
 * start-up; the unbundled code reads package.json and build-info.json (written by
 * scripts/build-info.mjs into dist/) next to the compiled files, with "unknown" for what is
 * missing.
 */

import { readFileSync } from "node:fs";

export interface BuildInfo {
  readonly version: string;
  readonly buildTime: string;
  readonly gitHash: string;
}

declare const TAMTAM_BUILD_INFO: BuildInfo | undefined;

/** `file` (relative to this compiled file, dist/src/cli/) as a JSON object, or null. */
function readJson(file: string): Record<string, unknown> | null {
  try {
    return JSON.parse(readFileSync(new URL(file, import.meta.url), "utf8")) as Record<string, unknown>;
  } catch {
    return null; // absent or unreadable
  }
}

function readBuildInfo(): BuildInfo {
  if (typeof TAMTAM_BUILD_INFO === "object") return TAMTAM_BUILD_INFO;
  const text = (v: unknown): string => (typeof v === "string" && v !== "" ? v : "unknown");
  const info = readJson("../../build-info.json") ?? readJson("../../../build-info.json") ?? {};
  return { version: text(readJson("../../../package.json")?.version), buildTime: text(info.buildTime), gitHash: text(info.gitHash) };
}

export const BUILD_INFO: BuildInfo = readBuildInfo();
export const TAMTAM_VERSION = BUILD_INFO.version;
