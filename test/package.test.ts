/**
 * The npm package as a user gets it: `npm pack` of the built tree, installed with `npm install
 * <tarball>` into an empty directory (dependencies only, from the npm cache when it has them),
 * then, from the installed package, with the same Node that runs the tests:
 *   - the tarball holds what runs (the bin, the library, its types, the proto, the systemd
 *     unit, the README) and nothing else (no sources, tests, benchmarks or source maps);
 *   - no dev dependency is installed, and nothing is built on the user's machine;
 *   - `npx tamtam version`, `npx tamtam simulate --nodes 50` and `npx tamtam agent` work (the
 *     agent answers `npx tamtam nodes` and leaves on SIGTERM);
 *   - a program imports "tamtam" and "tamtam/client" by name: simulate, startAgent, connect;
 *   - TypeScript type-checks a program against the shipped types (and rejects a wrong option);
 *   - the systemd unit passes `systemd-analyze verify` without a warning, and its ExecStart
 *     line, run with the directories systemd would give it, starts an agent that creates its
 *     keyring in the state directory, serves gRPC on the socket in the runtime directory and
 *     leaves on SIGTERM.
 * Every process is killed by PID in a `finally`.
 */

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { delimiter, dirname, join } from "node:path";
import { after, before, describe, test } from "node:test";
import { cpSync, existsSync, readFileSync, statSync } from "node:fs";
import { freeTcpPort, freeUdpPort, logRecord, ProcessGroup, removeDir, repoRoot, tempDir, waitForExit, waitForLine } from "./helpers/processes.js";

const root = repoRoot();
const work = tempDir("tamtam-package-");
const app = join(work, "app");

/**
 * The environment of npm, npx and the programs here: the test run's own (proxies, extra CA
 * certificates) without its TAMTAM_* settings and the npm_* variables `npm test` sets (one of
 * them names this repository as the project); this Node first on PATH; the user's npm cache
 * and npm config (registry, CA file), but a HOME of its own.
 */
function npmEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (value !== undefined && !key.startsWith("TAMTAM_") && !key.toLowerCase().startsWith("npm_")) env[key] = value;
  }
  return {
    ...env,
    PATH: [dirname(process.execPath), process.env.PATH ?? ""].join(delimiter),
    HOME: join(work, "home"),
    XDG_CACHE_HOME: join(work, "cache"),
    npm_config_cache: process.env.npm_config_cache ?? join(homedir(), ".npm"),
    npm_config_userconfig: process.env.npm_config_userconfig ?? join(homedir(), ".npmrc"),
    npm_config_update_notifier: "false",
    npm_config_fund: "false",
    npm_config_audit: "false",
  };
}

/** Runs a command to completion in `cwd`; throws with its output when it fails. */
function sh(command: string, args: readonly string[], cwd: string, timeoutMs = 120_000): string {
  const r = spawnSync(command, [...args], { cwd, env: npmEnv(), encoding: "utf8", timeout: timeoutMs });
  if (r.status !== 0) throw new Error(`${command} ${args.join(" ")} failed (${r.status ?? r.signal}):\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

let tarball = "";
let packedFiles: string[] = [];

before(() => {
  mkdirSync(join(work, "home"), { recursive: true });
  mkdirSync(app, { recursive: true });
  // The suite runs on a built tree (`npm test` builds first); prepack would build it again.
  const packed = JSON.parse(sh("npm", ["pack", "--ignore-scripts", "--json", "--pack-destination", work], root)) as Array<{
    filename: string;
    files: Array<{ path: string }>;
  }>;
  tarball = join(work, packed[0]?.filename as string);
  packedFiles = (packed[0]?.files ?? []).map((f) => f.path).sort();
  writeFileSync(join(app, "package.json"), JSON.stringify({ name: "tamtam-user", private: true, type: "module" }));
  sh("npm", ["install", "--prefer-offline", "--no-audit", "--no-fund", "--omit=dev", tarball], app);
});

after(() => removeDir(work));

describe("the npm package, installed from its tarball into an empty directory", () => {
  test("the tarball ships what runs and nothing else", () => {
    for (const required of [
      "package.json", "README.md", "proto/service/tamtam.proto", "systemd/tamtam.service",
      "dist/bin/tamtam.cjs", "dist/bin/cli.cjs", "dist/bin/agent.cjs", "dist/bin/worker-entry.js",
      "dist/lib/index.js", "dist/lib/client.js", "dist/lib/worker-entry.js", "dist/lib/opener-entry.js", "dist/lib/shard-worker.js",
      "dist/types/lib/index.d.ts", "dist/types/lib/client.d.ts",
    ]) {
      assert.ok(packedFiles.includes(required), `${required} is in the tarball`);
    }
    const unexpected = packedFiles.filter(
      (path) => !/^(package\.json|README\.md|proto\/.*\.proto|systemd\/[^/]+|dist\/bin\/[^/]+\.c?js|dist\/lib\/[^/]+\.js|dist\/types\/.+\.d\.ts)$/.test(path),
    );
    assert.deepEqual(unexpected, [], "no sources, tests, benchmarks, source maps or build metadata");
  });

  test("dependencies only: no dev dependency is installed, nothing is built", () => {
    const pkg = JSON.parse(sh("node", ["-p", "JSON.stringify(require('./package.json'))"], root)) as { devDependencies: Record<string, string> };
    const installed = new Set(readdirSync(join(app, "node_modules")).flatMap((name) =>
      name.startsWith("@") ? readdirSync(join(app, "node_modules", name)).map((sub) => `${name}/${sub}`) : [name],
    ));
    // A dev dependency may still arrive as a dependency of a dependency (protobufjs, under
    // @grpc/proto-loader, depends on @types/node): only then.
    const depended = new Set<string>();
    for (const name of installed) {
      const manifest = join(app, "node_modules", name, "package.json");
      if (!existsSync(manifest)) continue;
      const deps = (JSON.parse(readFileSync(manifest, "utf8")) as { dependencies?: Record<string, string> }).dependencies ?? {};
      for (const dep of Object.keys(deps)) depended.add(dep);
    }
    for (const dev of Object.keys(pkg.devDependencies)) {
      assert.ok(!installed.has(dev) || depended.has(dev), `${dev} (a dev dependency) is not installed`);
    }
    assert.ok(!installed.has("typescript") && !installed.has("esbuild"), "no compiler, no bundler");
    assert.ok(installed.has("tamtam") && installed.has("piscina") && installed.has("yaml"), "the package and what it loads at run time");
  });

  test("npx tamtam version and npx tamtam simulate --nodes 50", { timeout: 120_000 }, () => {
    assert.match(sh("npx", ["--no", "tamtam", "version"], app), /0\.1\.0/);
    const out = sh("npx", ["--no", "--", "tamtam", "simulate", "--nodes", "50", "--json"], app);
    const report = JSON.parse(out) as { parameters: { nodes: number }; violations: { total: number } };
    assert.equal(report.parameters.nodes, 50);
    assert.equal(report.violations.total, 0);
  });

  test("npx tamtam agent runs, answers npx tamtam nodes, and leaves on SIGTERM", { timeout: 120_000 }, async () => {
    const group = new ProcessGroup();
    try {
      const rpc = `localhost:${await freeTcpPort()}`;
      const port = String(await freeUdpPort());
      // Its own process group: the signal reaches npx and the agent it started (npx does not
      // pass signals on), as Ctrl-C in a terminal does.
      const agent = group.spawn("npx", ["--no", "--", "tamtam", "--rpc", rpc, "--nobanner", "agent", "-p", port, "--bind", "127.0.0.1", "--log-format", "json"], {
        env: npmEnv(),
        cwd: app,
        group: true,
        label: "npx tamtam agent",
      });
      const msg = (text: string): string => logRecord(text)?.msg ?? "";
      await waitForLine(agent, (text) => msg(text).startsWith("Listening for gossip at 127.0.0.1:"), 60_000, { stream: "stderr" });
      const nodes = sh("npx", ["--no", "--", "tamtam", "--rpc", rpc, "nodes", "--json"], app);
      assert.match(nodes, new RegExp(`127\\.0\\.0\\.1`));
      agent.signal("SIGTERM");
      await waitForLine(agent, (text) => msg(text) === "stopped", 30_000, { stream: "stderr" });
      // npx itself ends by the signal; the agent left gracefully ("stopped" after "left").
      const status = await waitForExit(agent, 30_000);
      assert.ok(status.code === 0 || status.signal === "SIGTERM", `${JSON.stringify(status)}\n${agent.tail()}`);
      assert.ok(agent.linesOf("stderr").some((line) => msg(line).endsWith("(this agent) is now left")), "it left the cluster");
    } finally {
      await group.killAll();
    }
  });

  test('a program imports "tamtam" and "tamtam/client" by name from the installed package', { timeout: 120_000 }, async () => {
    writeFileSync(
      join(app, "check.mjs"),
      `import { simulate, startAgent } from "tamtam";
import { connect, TamTam } from "tamtam/client";
const [port, rpcPort] = process.argv.slice(2);
const report = await simulate({ nodes: 20, periods: 12 });
const agent = await startAgent({ port: Number(port), bind: "127.0.0.1", advertise: "127.0.0.1", rpc: "localhost:" + rpcPort, logLevel: "off" });
const client = connect(agent.rpcAddress, { timeoutMs: 10000 });
try {
  const nodes = (await client.nodes({})).nodes.map((n) => n.address.IP + ":" + n.address.port);
  console.log(JSON.stringify({ violations: report.violations.total, address: agent.address, nodes, methods: TamTam.methods.length }));
} finally {
  client.close();
  await agent.stop();
}
`,
    );
    const group = new ProcessGroup();
    try {
      const proc = group.spawn(process.execPath, ["check.mjs", String(await freeUdpPort()), String(await freeTcpPort())], { env: npmEnv(), cwd: app });
      const status = await waitForExit(proc, 60_000);
      assert.equal(status.code, 0, proc.tail());
      const result = JSON.parse(proc.linesOf("stdout").at(-1) ?? "{}") as { violations: number; address: string; nodes: string[]; methods: number };
      assert.equal(result.violations, 0);
      assert.deepEqual(result.nodes, [result.address]);
      assert.ok(result.methods >= 17, "the client's descriptor has every RPC");
    } finally {
      await group.killAll();
    }
  });

  test("TypeScript checks a program against the shipped types", { timeout: 120_000 }, () => {
    writeFileSync(
      join(app, "check.ts"),
      `import { simulate, startAgent, type AgentHandle, type SimReport } from "tamtam";
import { connect, GrpcCallError, type NodeList, type TamTamClient } from "tamtam/client";
export async function use(): Promise<number> {
  const report: SimReport = await simulate({ nodes: 3, loss: 0.1 });
  const agent: AgentHandle = await startAgent({ port: 9999, join: ["10.0.0.1:9999"], heartbeatMs: 500 });
  for await (const member of agent.memberEvents()) if (member.state === "left") break;
  const client: TamTamClient = connect(agent.rpcAddress, { token: "t" });
  const list: NodeList = await client.nodes({});
  for await (const message of client.stream({})) if (message.bytes.length > 0) break;
  await client.installKey({ key: "k", local: true });
  try { await client.ping({ IP: "10.0.0.1", port: 9999 }); } catch (e) { if (e instanceof GrpcCallError) return e.code; }
  // @ts-expect-error: the port is a number, as in the settings table
  await startAgent({ port: "9999" });
  // @ts-expect-error: no such RPC
  await client.noSuchCall({});
  return report.violations.total + list.nodes.length;
}
`,
    );
    writeFileSync(
      join(app, "tsconfig.json"),
      JSON.stringify({
        compilerOptions: {
          module: "NodeNext", moduleResolution: "NodeNext", target: "ES2023", lib: ["ES2023"], strict: true, noEmit: true,
          types: ["node"], typeRoots: [join(root, "node_modules", "@types")], skipLibCheck: true,
        },
        files: ["check.ts"],
      }),
    );
    sh(process.execPath, [join(root, "node_modules", "typescript", "bin", "tsc"), "-p", "tsconfig.json"], app);
  });

  test("the systemd unit passes systemd-analyze verify without a warning", { timeout: 60_000 }, (t) => {
    if (spawnSync("systemd-analyze", ["--version"]).status !== 0) {
      t.skip("systemd-analyze is not installed (.ci/run installs the systemd package)");
      return;
    }
    // A root with the system's own units (for the targets it names) and the executable at the
    // path ExecStart names, running the installed package's bin.
    const sdroot = join(work, "sdroot");
    mkdirSync(join(sdroot, "etc/systemd/system"), { recursive: true });
    mkdirSync(join(sdroot, "usr/lib/systemd"), { recursive: true });
    cpSync("/usr/lib/systemd/system", join(sdroot, "usr/lib/systemd/system"), { recursive: true, verbatimSymlinks: true });
    const unit = readFileSync(join(app, "node_modules/tamtam/systemd/tamtam.service"), "utf8");
    const exec = (/^ExecStart=(\S+)/m.exec(unit) as RegExpExecArray)[1] as string;
    mkdirSync(join(sdroot, dirname(exec)), { recursive: true });
    writeFileSync(join(sdroot, exec), `#!/bin/sh\nexec ${join(app, "node_modules/.bin/tamtam")} "$@"\n`, { mode: 0o755 });
    writeFileSync(join(sdroot, "etc/systemd/system/tamtam.service"), unit);
    const r = spawnSync("systemd-analyze", ["verify", `--root=${sdroot}`, "tamtam.service"], { encoding: "utf8", timeout: 30_000 });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(`${r.stdout}${r.stderr}`.trim(), "", "no warning (systemd ignores what it cannot parse, with a warning)");
  });

  test("the unit's ExecStart starts an agent with its keyring, socket and snapshot in systemd's directories", { timeout: 60_000 }, async () => {
    const unit = readFileSync(join(app, "node_modules/tamtam/systemd/tamtam.service"), "utf8");
    const dirs = { t: join(work, "run"), S: join(work, "state"), C: join(work, "cache") };
    for (const dir of Object.values(dirs)) mkdirSync(join(dir, "tamtam"), { recursive: true, mode: 0o700 });
    const words = ((/^ExecStart=(.+)$/m.exec(unit) as RegExpExecArray)[1] as string)
      .split(/\s+/)
      .map((word) => word.replace(/%([tSC])/g, (_, key: "t" | "S" | "C") => dirs[key]));
    const args = words.slice(1);
    const bin = join(app, "node_modules/.bin/tamtam");
    const group = new ProcessGroup();
    try {
      const key = Buffer.alloc(32, 7).toString("base64");
      const msg = (text: string): string => logRecord(text)?.msg ?? "";
      // A member to join, so that the snapshot has someone to remember.
      const seedPort = String(await freeUdpPort());
      const seed = group.spawn(bin, ["--rpc", `localhost:${await freeTcpPort()}`, "--nobanner", "agent", "-p", seedPort, "--bind", "127.0.0.1", "--log-format", "json"], {
        env: { ...npmEnv(), TAMTAM_ENCRYPT: key },
        label: "a seed",
      });
      await waitForLine(seed, (text) => msg(text).startsWith("Listening for gossip"), 30_000, { stream: "stderr" });
      const env = {
        ...npmEnv(),
        XDG_CACHE_HOME: dirs.C,
        TAMTAM_LOG_FORMAT: "json",
        TAMTAM_ENCRYPT: key,
        TAMTAM_PORT: String(await freeUdpPort()),
        TAMTAM_BIND: "127.0.0.1",
        TAMTAM_JOIN: `127.0.0.1:${seedPort}`,
      };
      const agent = group.spawn(bin, args, { env, label: "the unit's ExecStart" });
      await waitForLine(agent, (text) => msg(text).startsWith("joined the cluster through"), 30_000, { stream: "stderr" });
      const keyring = join(dirs.S, "tamtam/keyring.json");
      assert.equal(statSync(keyring).mode & 0o777, 0o600, "the keyring file is created, private, in the state directory");
      const socket = join(dirs.t, "tamtam/agent.sock");
      assert.ok(statSync(socket).isSocket(), "the control plane is a Unix socket in the runtime directory");
      const nodes = spawnSync(bin, ["--rpc", `unix:${socket}`, "nodes", "--json"], { env: npmEnv(), encoding: "utf8", timeout: 30_000 });
      assert.equal(nodes.status, 0, nodes.stderr);
      agent.signal("SIGTERM");
      assert.equal((await waitForExit(agent, 30_000)).code, 0, agent.tail());
      assert.ok(!existsSync(socket), "the socket is removed when the agent stops");
      const snapshot = JSON.parse(readFileSync(join(dirs.S, "tamtam/members.snapshot"), "utf8")) as { members: string[] };
      assert.deepEqual(snapshot.members, [`127.0.0.1:${seedPort}`], "the member snapshot, in the state directory, remembers the seed");
    } finally {
      await group.killAll();
    }
  });
});
