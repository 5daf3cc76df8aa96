#!/usr/bin/env node
/**
 * The `tamtam` command line: builds the clipanion CLI from one command class per command and,
 * when this file is the program, runs it. Colours only on a terminal and never when NO_COLOR
 * is set. Parse errors (unknown command or flag, missing argument) are one line on stderr with
 * exit code 2, like every other error (see base-command.ts).
 */

import { realpathSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { type BaseContext, Builtins, Cli, type Command } from "clipanion";
import { EXIT, reportError, useColors, withOneLineErrors } from "./base-command.js";
import { AddressCommand } from "./commands/address.js";
import { AgentCommand } from "./commands/agent.js";
import { BroadcastCommand } from "./commands/broadcast.js";
import { ConfigureHeartbeatCommand } from "./commands/configure-heartbeat.js";
import { ConfigureThresholdCommand } from "./commands/configure-threshold.js";
import { GendocCommand } from "./commands/gendoc.js";
import { HealthyCommand } from "./commands/healthy.js";
import { JoinCommand } from "./commands/join.js";
import { LeaveCommand } from "./commands/leave.js";
import { MonitorCommand } from "./commands/monitor.js";
import { NodesCommand } from "./commands/nodes.js";
import { PingCommand } from "./commands/ping.js";
import { SimulateCommand } from "./commands/simulate.js";
import { StreamCommand } from "./commands/stream.js";
import { VersionInfoCommand } from "./commands/version.js";
import { TAMTAM_VERSION } from "./version.js";

/** A clipanion Cli whose parse errors are one line on stderr (clipanion prints them, with usages, on stdout). */
export class TamTamCli extends Cli {
  override async run(input: Command | string[], userContext?: Partial<BaseContext> | void): Promise<number> {
    const context = { ...Cli.defaultContext, ...(userContext ?? {}) };
    let command: Command;
    try {
      command = Array.isArray(input) ? this.process(input, context) : input;
    } catch (error) {
      const trace = Array.isArray(input) && input.includes("--trace");
      return reportError(error, context, { rpc: "", trace, verbose: false });
    }
    return super.run(command, context);
  }
}

export interface BuildOptions {
  /** Colour help output; default: stdout is a terminal and NO_COLOR is not set. */
  readonly colors?: boolean;
}

export function buildCli(options: BuildOptions = {}): TamTamCli {
  const cli = new TamTamCli({
    binaryLabel: "TamTam",
    binaryName: "tamtam",
    binaryVersion: TAMTAM_VERSION,
    enableColors: options.colors ?? useColors(Cli.defaultContext),
  });
  cli.register(Builtins.HelpCommand);
  cli.register(Builtins.VersionCommand);
  for (const command of [
    AgentCommand,
    JoinCommand,
    LeaveCommand,
    BroadcastCommand,
    StreamCommand,
    MonitorCommand,
    NodesCommand,
    HealthyCommand,
    PingCommand,
    AddressCommand,
    ConfigureHeartbeatCommand,
    ConfigureThresholdCommand,
    VersionInfoCommand,
    GendocCommand,
  ]) {
    cli.register(command);
  }
  cli.register(withOneLineErrors(SimulateCommand));
  return cli;
}

/** True when this module is the program (`node dist/src/cli/main.js`, or the `tamtam` bin link). */
function isProgram(): boolean {
  const entry = process.argv[1];
  if (entry === undefined) return false;
  try {
    return realpathSync(entry) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (isProgram()) {
  // A reader that goes away (`tamtam nodes | head -1`) is not an error; commands that stream
  // stop on their own, this catches a late EPIPE of any other.
  process.stdout.on("error", (error: NodeJS.ErrnoException) => {
    if (error.code === "EPIPE") process.exit(EXIT.OK);
    throw error;
  });
  await buildCli().runExit(process.argv.slice(2), Cli.defaultContext);
}
