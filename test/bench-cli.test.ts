/**
 * The benchmark suites' command lines (bench/lib.ts benchArgs and unknownArgument): every
 * suite answers `--help` with its header comment and exit code 0, before measuring anything;
 * an argument a suite does not know is one line on stderr and exit code 2.
 */

import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const BENCH_DIR = fileURLToPath(new URL("../bench/", import.meta.url)); // dist/bench
const SUITES = readdirSync(BENCH_DIR).filter((f) => f.endsWith(".bench.js"));

test("every benchmark suite answers --help", { timeout: 120_000 }, () => {
  assert.ok(SUITES.length >= 10, `only ${SUITES.length} suites found in ${BENCH_DIR}`);
  for (const suite of SUITES) {
    const r = spawnSync(process.execPath, [join(BENCH_DIR, suite), "--help"], { encoding: "utf8", timeout: 30_000 });
    assert.equal(r.status, 0, `${suite} --help: exit ${r.status}, ${r.stderr}`);
    assert.ok(r.stdout.split("\n").length >= 3, `${suite} --help printed ${JSON.stringify(r.stdout)}`);
    assert.doesNotMatch(r.stdout, /^\s*\*/m, `${suite} --help left comment markers`);
  }
});

test("a benchmark suite refuses an unknown argument in one line, exit code 2", () => {
  for (const suite of ["broadcast.bench.js", "detection.bench.js", "startup.bench.js"]) {
    const r = spawnSync(process.execPath, [join(BENCH_DIR, suite), "--no-such-option"], { encoding: "utf8", timeout: 30_000 });
    assert.equal(r.status, 2, `${suite}: exit ${r.status}`);
    assert.equal(r.stderr, `${suite}: unknown argument --no-such-option; see --help\n`);
  }
});
