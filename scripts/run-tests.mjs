#!/usr/bin/env node
// Runs the compiled test files (dist/test/**/*.test.js) with Node's built-in test runner.
// Node 20 does not expand globs itself, so the list is collected here. Arguments narrow the
// run to files whose path contains one of them: `node scripts/run-tests.mjs wire sim`.
import { readdirSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { spawnSync } from "node:child_process";

const root = new URL("..", import.meta.url).pathname;
const testDir = join(root, "dist", "test");

function collect(dir) {
  const out = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) out.push(...collect(path));
    else if (name.endsWith(".test.js")) out.push(path);
  }
  return out;
}

const filters = process.argv.slice(2).filter((a) => !a.startsWith("-"));
const files = collect(testDir)
  .filter((f) => filters.length === 0 || filters.some((needle) => relative(root, f).includes(needle)))
  .sort();
if (files.length === 0) {
  console.error(`no test files matched under ${relative(root, testDir)}`);
  process.exit(1);
}
const concurrency = process.env.TAMTAM_TEST_CONCURRENCY ?? "2";
// Into a pipe (CI), TAP on every Node: Node 20 picks it there by itself, Node 22 and newer the
// spec reporter, whose closing lines ("ℹ pass N") are not the `# pass N` / `# fail N` CI reads.
const reporter = process.stdout.isTTY ? [] : ["--test-reporter=tap"];
const result = spawnSync(
  process.execPath,
  ["--test", `--test-concurrency=${concurrency}`, ...reporter, ...files],
  { stdio: "inherit", env: process.env },
);
process.exit(result.status ?? 1);
