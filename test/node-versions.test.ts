/**
 * What depends on the Node version running TamTam (CI runs the whole suite on Node 20 and 24):
 * Node's own on-disk compile cache (`module.enableCompileCache`, Node 22.1 and newer) is turned
 * on by the bin when this Node has it, and then holds the code of what Node's loader loads
 * after it: the packages left outside the bundle, such as piscina for `simulate --workers 1`;
 * on a Node without it the same command runs, and nothing is written. The cache goes to
 * Node's default place under the temporary directory, which the test points at its own.
 */

import assert from "node:assert/strict";
import { existsSync, mkdirSync, readdirSync } from "node:fs";
import * as nodeModule from "node:module";
import { join } from "node:path";
import { test } from "node:test";
import { binPath, cleanEnv, removeDir, run, tempDir } from "./helpers/processes.js";

binPath(); // fail at once, with a clear message, when the bin was not built

const hasCompileCache = typeof (nodeModule as { enableCompileCache?: unknown }).enableCompileCache === "function";

/** Every file under `dir`, relative paths. */
function filesUnder(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, withFileTypes: true }).filter((e) => e.isFile()).map((e) => join(e.parentPath ?? e.path, e.name));
}

test(`Node's compile cache is ${hasCompileCache ? "used" : "absent, and skipped"} on ${process.version}: a simulation on a worker thread runs either way`, { timeout: 60_000 }, async () => {
  const home = tempDir();
  const temporary = join(home, "tmp");
  try {
    mkdirSync(temporary, { recursive: true });
    const r = await run(["simulate", "--nodes", "20", "--periods", "10", "--workers", "1", "--json"], { env: cleanEnv(home, { TMPDIR: temporary }), timeoutMs: 60_000 });
    assert.equal(r.code, 0, r.stderr);
    assert.equal((JSON.parse(r.stdout) as { violations: { total: number } }).violations.total, 0);
    const cached = filesUnder(join(temporary, "node-compile-cache"));
    if (hasCompileCache) {
      assert.ok(cached.length > 0, "Node's compile cache holds the code this run compiled");
    } else {
      assert.deepEqual(cached, [], "no compile cache on a Node without one");
    }
  } finally {
    removeDir(home);
  }
});
