#!/usr/bin/env node
// Writes dist/build-info.json ({ buildTime, gitHash }) for `tamtam version`. Outside a git
// checkout (e.g. an unpacked npm tarball) the hash is "unknown".
import { execFileSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";

const root = new URL("..", import.meta.url).pathname;
let gitHash = "unknown";
try {
  gitHash = execFileSync("git", ["rev-parse", "--short=12", "HEAD"], { cwd: root, stdio: ["ignore", "pipe", "ignore"] }).toString().trim();
} catch {
  // not a git checkout
}
mkdirSync(`${root}dist`, { recursive: true });
writeFileSync(`${root}dist/build-info.json`, `${JSON.stringify({ buildTime: new Date().toISOString(), gitHash })}\n`);
