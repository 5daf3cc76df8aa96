/**
 * `npm run bench`: runs every benchmark suite in this folder (compiled `*.bench.js` next to
 * this file), one after the other in its own process, passing the arguments through (e.g.
 * `--json`). Benchmarks measure; they never fail on a number.
 */

import { spawnSync } from "node:child_process";
import { readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const suites = readdirSync(here).filter((f) => f.endsWith(".bench.js")).sort();
let failed = 0;
for (const suite of suites) {
  process.stderr.write(`\n== ${suite}\n`);
  const r = spawnSync(process.execPath, [join(here, suite), ...process.argv.slice(2)], { stdio: "inherit" });
  if (r.status !== 0) failed++;
}
process.exit(failed === 0 ? 0 : 1);
