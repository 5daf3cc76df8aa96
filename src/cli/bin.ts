#!/usr/bin/env node
/**
 * The `tamtam` executable. Turns on Node's on-disk compile cache where this Node has one (22.1
 * and newer; Node 20 has none) before any of the command line is loaded, so that later calls
 * skip compiling it, then runs the command line.
 */

import * as nodeModule from "node:module";

(nodeModule as { enableCompileCache?: () => unknown }).enableCompileCache?.();
const { runProgram } = await import("./main.js");
await runProgram(process.argv.slice(2));
