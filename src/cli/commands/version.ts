/**
 * `tamtam version`: the version (package.json), build time and git hash. The last two come
 * from a `build-info.json` ({"buildTime": "...", "gitHash": "..."}) written by a build step
 * into dist/ or the package root, and are "unknown" without one. `tamtam --version` (clipanion's
 * built-in) prints the version alone.
 */

import { readFileSync } from "node:fs";
import { Command } from "clipanion";
import { TamTamCommand } from "../base-command.js";
import { TAMTAM_VERSION } from "../version.js";

export interface BuildInfo {
  readonly version: string;
  readonly buildTime: string;
  readonly gitHash: string;
}

/** Where a build step may leave build-info.json, relative to this compiled file (dist/src/cli/commands/). */
const BUILD_INFO_FILES = ["../../../build-info.json", "../../../../build-info.json"];

export function readBuildInfo(): BuildInfo {
  for (const relative of BUILD_INFO_FILES) {
    try {
      const info = JSON.parse(readFileSync(new URL(relative, import.meta.url), "utf8")) as Record<string, unknown>;
      const text = (v: unknown): string => (typeof v === "string" && v !== "" ? v : "unknown");
      return { version: TAMTAM_VERSION, buildTime: text(info.buildTime), gitHash: text(info.gitHash) };
    } catch {
      // absent or unreadable: try the next place
    }
  }
  return { version: TAMTAM_VERSION, buildTime: "unknown", gitHash: "unknown" };
}

export class VersionInfoCommand extends TamTamCommand {
  static override paths = [["version"]];
  static override usage = Command.Usage({
    description: "print the version, build time and git hash",
    examples: [["Show the version", "$0 version"]],
  });

  async execute(): Promise<number> {
    const info = readBuildInfo();
    this.context.stdout.write(`version: ${info.version}\nbuild time: ${info.buildTime}\ngit hash: ${info.gitHash}\n`);
    return 0;
  }
}
