/**
 * `tamtam version`: the version, build time and git hash (see ../version.ts for where they come
 * from). `tamtam --version` (clipanion's built-in) prints the version alone.
 */

import { Command } from "clipanion";
import { TamTamCommand } from "../base-command.js";
import { BUILD_INFO } from "../version.js";

export class VersionInfoCommand extends TamTamCommand {
  static override paths = [["version"]];
  static override usage = Command.Usage({
    description: "print the version, build time and git hash",
    examples: [["Show the version", "$0 version"]],
  });

  async execute(): Promise<number> {
    const info = BUILD_INFO;
    this.context.stdout.write(`version: ${info.version}\nbuild time: ${info.buildTime}\ngit hash: ${info.gitHash}\n`);
    return 0;
  }
}
