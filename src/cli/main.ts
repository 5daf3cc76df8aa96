#!/usr/bin/env node
/**
 * The `tamtam` command line: builds the clipanion CLI from one command class per command and
 * runs it. Colours only on a terminal and never when NO_COLOR is set.
 */

import { Builtins, Cli } from "clipanion";
import { SimulateCommand } from "./commands/simulate.js";
import { TAMTAM_VERSION } from "./version.js";

export function buildCli(): Cli {
  const cli = new Cli({
    binaryLabel: "TamTam",
    binaryName: "tamtam",
    binaryVersion: TAMTAM_VERSION,
    enableColors: process.stdout.isTTY === true && process.env.NO_COLOR === undefined,
  });
  cli.register(Builtins.HelpCommand);
  cli.register(Builtins.VersionCommand);
  cli.register(SimulateCommand);
  return cli;
}

const cli = buildCli();
await cli.runExit(process.argv.slice(2), Cli.defaultContext);
