/**
 * The `tamtam` command line: builds the clipanion CLI from one command class per command and
 * runs it (bin.ts is the executable). Command classes are light: each imports its heavy part
 * (the agent, the gRPC client, the simulator) only when it runs, and only the commands named on
 * the command line are registered. Colours only on a terminal and never when NO_COLOR
 * is set. Parse errors (unknown command or flag, missing argument) are one line on stderr with
 * exit code 2, like every other error (see base-command.ts).
 */

import { type BaseContext, Builtins, Cli, type Command, type CommandClass } from "clipanion";
import { EXIT, reportError, useColors, withOneLineErrors } from "./base-command.js";
import { AddressCommand } from "./commands/address.js";
import { AgentCommand } from "./commands/agent.js";
import { BroadcastCommand } from "./commands/broadcast.js";
import { ConfigureHeartbeatCommand } from "./commands/configure-heartbeat.js";
import { ConfigureThresholdCommand } from "./commands/configure-threshold.js";
import { GendocCommand } from "./commands/gendoc.js";
import { HealthyCommand } from "./commands/healthy.js";
import { JoinCommand } from "./commands/join.js";
import { KeysInstallCommand, KeysListCommand, KeysRemoveCommand, KeysUseCommand } from "./commands/keys.js";
import { LeaveCommand } from "./commands/leave.js";
import { MonitorCommand } from "./commands/monitor.js";
import { NodesCommand } from "./commands/nodes.js";
import { PingCommand } from "./commands/ping.js";
import { SimulateCommand } from "./commands/simulate.js";
import { StreamCommand } from "./commands/stream.js";
import { TagsDeleteCommand, TagsSetCommand } from "./commands/tags.js";
import { QueryCommand } from "./commands/query.js";
import { VersionInfoCommand } from "./commands/version.js";
import { commandWord } from "./command-word.js";
import { TAMTAM_VERSION } from "./version.js";

/**
 * A clipanion Cli whose parse errors are one line on stderr (clipanion prints them, with usages,
 * on stdout), and where `--help` without a command prints the general help even after global
 * options (`tamtam --rpc localhost:6363 --help`), which clipanion alone rejects.
 */
export class TamTamCli extends Cli {
  override async run(input: Command | string[], userContext?: Partial<BaseContext> | void): Promise<number> {
    const context = { ...Cli.defaultContext, ...(userContext ?? {}) };
    // The general help needs no parsing: clipanion would first build its parser from every
    // command, which costs as much again as the help itself.
    if (Array.isArray(input) && commandWord(input) === undefined && (input.includes("--help") || input.includes("-h"))) {
      context.stdout.write(this.usage(null));
      return 0;
    }
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
  /**
   * The command line about to run: only the commands it names are registered (see
   * `commandsFor`). Default: every command.
   */
  readonly args?: readonly string[];
}

/** Every command, in the order `tamtam --help` lists them. */
const COMMANDS: readonly CommandClass[] = [
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
  KeysListCommand,
  KeysInstallCommand,
  KeysUseCommand,
  KeysRemoveCommand,
  TagsSetCommand,
  TagsDeleteCommand,
  QueryCommand,
  VersionInfoCommand,
  GendocCommand,
  withOneLineErrors(SimulateCommand),
];

/**
 * The commands worth registering for `args`. clipanion builds its parser from every registered
 * command on each run, which costs more than the rest of a CLI call; so when the first word
 * names a command (`nodes`, or `configure` for both configure commands), only those are
 * registered. Without such a word (`--help`, a typo) every command is, so that help lists them
 * all and a mistake gets its suggestions; `gendoc` documents them all.
 */
export function commandsFor(args: readonly string[]): readonly CommandClass[] {
  const word = commandWord(args);
  const named = COMMANDS.filter((command) => (command.paths ?? []).some((path) => path[0] === word));
  return named.length === 0 || named.includes(GendocCommand) ? COMMANDS : named;
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
  for (const command of options.args === undefined ? COMMANDS : commandsFor(options.args)) cli.register(command);
  return cli;
}

/** Runs the command line on `args` (the words after `tamtam`) and exits with its status. */
export async function runProgram(args: readonly string[]): Promise<void> {
  // A reader that goes away (`tamtam nodes | head -1`) is not an error; commands that stream
  // stop on their own, this catches a late EPIPE of any other.
  process.stdout.on("error", (error: NodeJS.ErrnoException) => {
    if (error.code === "EPIPE") process.exit(EXIT.OK);
    throw error;
  });
  await buildCli({ args }).runExit([...args], Cli.defaultContext);
}
