/**
 * Tests of the bundled bin itself (dist/bin, package.json "bin"): every command's help comes out
 * of the bundle (nothing left out of a layer), the general help after global options, the
 * build facts compiled in, the agent layer's lazily loaded reflection answering `buf curl`, and
 * the executable's code cache (written once per layer and command in a private directory,
 * reused, a damaged file recompiled and replaced, an unsafe directory or
 * NODE_DISABLE_COMPILE_CACHE=1 leaving the cache alone).
 */

import { test } from "node:test";
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { chmodSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { buildCli } from "../src/cli/main.js";
import { cleanEnv, freeTcpPort, freeUdpPort, ProcessGroup, removeDir, repoRoot, run, spawnAgent, tempDir } from "./helpers/processes.js";

const execFileAsync = promisify(execFile);

/** Every command path the command line knows (`["configure", "heartbeat"]`, ...). */
function commandPaths(): string[][] {
  return buildCli()
    .definitions()
    .map((d) => d.path.split(" ").slice(1))
    .filter((path) => path.length > 0 && !path[0]?.startsWith("-"));
}

test("every command's --help comes out of the bundled bin", async () => {
  const home = tempDir();
  try {
    const paths = commandPaths();
    assert.ok(paths.length >= 15, `found ${paths.length} commands`);
    for (const path of paths) {
      const result = await run([...path, "--help"], { env: cleanEnv(home) });
      assert.equal(result.code, 0, `${path.join(" ")} --help: ${result.stderr}`);
      assert.match(result.stdout, new RegExp(`\\$ tamtam ${path.join(" ")}`), `${path.join(" ")} --help shows its usage`);
      assert.equal(result.stderr, "", `${path.join(" ")} --help writes nothing on stderr`);
    }
  } finally {
    removeDir(home);
  }
});

test("the general help lists every command, also after global options", async () => {
  const home = tempDir();
  try {
    for (const args of [["--help"], ["-h"], ["--rpc", "localhost:6363", "--help"], ["--nobanner", "--help"], []]) {
      const result = await run(args, { env: cleanEnv(home) });
      assert.equal(result.code, 0, `tamtam ${args.join(" ")}: ${result.stderr}`);
      for (const path of commandPaths()) assert.ok(result.stdout.includes(`tamtam ${path.join(" ")}`), `tamtam ${args.join(" ")} lists ${path.join(" ")}`);
    }
  } finally {
    removeDir(home);
  }
});

test("version and --version print the version and build facts compiled into the bundle", async () => {
  const home = tempDir();
  try {
    const pkg = JSON.parse(readFileSync(join(repoRoot(), "package.json"), "utf8")) as { version: string };
    const info = await run(["version"], { env: cleanEnv(home) });
    assert.equal(info.code, 0);
    assert.match(info.stdout, new RegExp(`^version: ${pkg.version.replace(/\./g, "\\.")}\\nbuild time: \\d{4}-\\d\\d-\\d\\dT[^\\n]+\\ngit hash: \\S+\\n$`));
    assert.doesNotMatch(info.stdout, /build time: unknown/);
    const short = await run(["--version"], { env: cleanEnv(home) });
    assert.equal(short.stdout.trim(), pkg.version);
  } finally {
    removeDir(home);
  }
});

test("the bundled agent serves reflection, loaded on the first call", async () => {
  const home = tempDir();
  const group = new ProcessGroup();
  try {
    const rpc = `127.0.0.1:${await freeTcpPort()}`;
    await spawnAgent(["--rpc", rpc, "agent", "-p", String(await freeUdpPort())], cleanEnv(home), { group });
    const buf = join(repoRoot(), "node_modules", ".bin", "buf");
    const flags = ["curl", "--protocol", "grpc", "--http2-prior-knowledge"];
    const listed = await execFileAsync(buf, [...flags, "--list-methods", `http://${rpc}`], { timeout: 20_000 });
    assert.match(listed.stdout, /^service\.TamTam\/Nodes$/m);
    const called = await execFileAsync(buf, [...flags, `http://${rpc}/service.TamTam/LocalAddress`], { timeout: 20_000 });
    assert.match(called.stdout, /"port"/);
  } finally {
    await group.killAll();
    removeDir(home);
  }
});

function cacheFiles(dir: string): string[] {
  try {
    return readdirSync(dir).filter((f) => f.endsWith(".v8cache")).sort();
  } catch {
    return [];
  }
}

test("the code cache: one private file per layer and command, reused, replaced when damaged", async () => {
  const home = tempDir();
  try {
    const cacheHome = join(home, "cache");
    const dir = join(cacheHome, "tamtam");
    const env = cleanEnv(home, { XDG_CACHE_HOME: cacheHome });
    const first = await run(["version"], { env });
    assert.equal(first.code, 0);
    const files = cacheFiles(dir);
    assert.equal(files.length, 1, `one cache file after one command: ${files.join(", ")}`);
    assert.match(files[0] as string, /^cli\.cjs-version-/);
    assert.equal(statSync(dir).mode & 0o777, 0o700, "the directory is the user's alone");
    assert.equal(statSync(join(dir, files[0] as string)).mode & 0o777, 0o600);

    const again = await run(["version"], { env });
    assert.equal(again.stdout, first.stdout, "a run from the cache prints the same");
    assert.deepEqual(cacheFiles(dir), files, "nothing new is written when the cache was used");

    await run(["healthy", "--help"], { env });
    assert.ok(cacheFiles(dir).some((f) => f.startsWith("cli.cjs-healthy-")), "another command gets its own cache");

    const damaged = join(dir, files[0] as string);
    writeFileSync(damaged, "not a code cache");
    const afterDamage = await run(["version"], { env });
    assert.equal(afterDamage.code, 0);
    assert.equal(afterDamage.stdout, first.stdout);
    assert.notEqual(readFileSync(damaged, "utf8"), "not a code cache", "a rejected cache is compiled again and replaced");
  } finally {
    removeDir(home);
  }
});

test("the code cache is not used from a directory others can write, nor when turned off", async () => {
  const home = tempDir();
  try {
    const shared = join(home, "shared");
    mkdirSync(join(shared, "tamtam"), { recursive: true });
    chmodSync(join(shared, "tamtam"), 0o777);
    const unsafe = await run(["version"], { env: cleanEnv(home, { XDG_CACHE_HOME: shared }) });
    assert.equal(unsafe.code, 0);
    assert.deepEqual(cacheFiles(join(shared, "tamtam")), [], "nothing is written to (or read from) a world-writable directory");

    const off = join(home, "off");
    const disabled = await run(["version"], { env: cleanEnv(home, { XDG_CACHE_HOME: off, NODE_DISABLE_COMPILE_CACHE: "1" }) });
    assert.equal(disabled.code, 0);
    assert.deepEqual(cacheFiles(join(off, "tamtam")), []);
  } finally {
    removeDir(home);
  }
});
