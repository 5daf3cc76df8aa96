/**
 * One path for each setting, on the command line: the protocol period (`--heartbeat`,
 * TAMTAM_HEARTBEAT, `heartbeat:` in the config file, `configure heartbeat`) follows the one rule
 * of src/core/config.ts, with the same range from every source and for every preset, stated in
 * `--help` and in every message; `--workers` means the same for `agent` and `simulate`; an
 * unknown config-file key is reported on stderr without --verbose. Commands run in-process
 * through the clipanion Cli with captured streams, against a fake agent served by the real
 * gRPC service handlers.
 */

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough, Readable } from "node:stream";
import * as grpc from "@grpc/grpc-js";
import { protocolConfig } from "../src/agent/agent.js";
import type { AgentApi, MemberView } from "../src/api/agent-api.js";
import { Fanout } from "../src/agent/fanout.js";
import type { AgentOptions } from "../src/agent/options.js";
import { EXIT } from "../src/cli/base-command.js";
import { agentOptions } from "../src/cli/commands/agent.js";
import { buildCli } from "../src/cli/main.js";
import { AGENT_SETTINGS, type FlagValues, resolveSettings, type SettingsIO } from "../src/cli/settings.js";
import { addr } from "../src/core/address.js";
import { periodFields, type PresetName, type SwimConfig } from "../src/core/config.js";
import { TamTam } from "../src/gen/service/tamtam_pb.js";
import { addService } from "../src/rpc/adapter.js";
import { tamTamService } from "../src/rpc/service.js";
import { AgentError } from "../src/api/errors.js";

const RANGE = "10..600000 ms";

// ---------------------------------------------------------------------------------------------
// A fake agent on a preset, served by the real gRPC service

/** Builds its protocol config as the real agent does and applies a live period with the same rule. */
class PresetAgent implements AgentApi {
  readonly localAddress = addr("127.0.0.1:9999");
  readonly maxBroadcastBytes = 256;
  config: SwimConfig;
  readonly periods: number[] = [];

  constructor(preset: PresetName) {
    this.config = protocolConfig(options({ preset }), 4);
  }
  async setHeartbeatMs(ms: number): Promise<void> {
    const period = periodFields(this.config, ms);
    if (!period.ok) throw new AgentError("HEARTBEAT_OUT_OF_RANGE", `heartbeat ${period.problem}, got ${ms}`);
    this.config = { ...this.config, ...period.fields };
    this.periods.push(ms);
  }
  async join(): Promise<void> {}
  async forget(): Promise<void> {}
  async broadcast(): Promise<void> {}
  async ping(): Promise<number> {
    return 1;
  }
  async members(): Promise<readonly MemberView[]> {
    return [];
  }
  async leaveCluster(): Promise<void> {}
  setLogLevel(): void {}
  async stats(): Promise<Record<string, number>> {
    return {};
  }
  async keys(): Promise<never> {
    throw new AgentError("NO_KEYRING", "this agent has no gossip keys; start it with --encrypt");
  }
  subscribeBroadcasts() {
    return new Fanout<Uint8Array>(1, 1).subscribe();
  }
  subscribeMembers() {
    return new Fanout<MemberView>(1, 1).subscribe();
  }
  async changeTags(): Promise<never> {
    throw new AgentError("INTERNAL", "not used here");
  }
  async query(): Promise<never> {
    throw new AgentError("INTERNAL", "not used here");
  }
  serveQueries() {
    return null;
  }
  respondQuery(): void {
    throw new AgentError("UNKNOWN_QUERY", "not used here");
  }
}

/** AgentOptions with the defaults of `tamtam agent`, for protocolConfig. */
function options(overrides: Partial<AgentOptions>): AgentOptions {
  const s = resolveSettings(AGENT_SETTINGS, {}, undefined, memoryIO({}));
  return { ...agentOptions(s), ...overrides };
}

interface Served {
  readonly rpc: string;
  close(): void;
}

async function serve(agent: AgentApi): Promise<Served> {
  const server = new grpc.Server();
  addService(server, TamTam, tamTamService(agent));
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  return { rpc: `127.0.0.1:${port}`, close: () => server.forceShutdown() };
}

// ---------------------------------------------------------------------------------------------
// Running commands and resolving settings

interface Result {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

let home = ""; // a HOME without a config file
const dirs: string[] = [];

before(() => {
  home = mkdtempSync(join(tmpdir(), "tamtam-period-"));
  dirs.push(home);
});

after(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

async function run(args: readonly string[], env: Record<string, string> = {}): Promise<Result> {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  stdout.on("data", (b: Buffer) => out.push(b));
  stderr.on("data", (b: Buffer) => err.push(b));
  const code = await buildCli({ colors: false }).run([...args], {
    stdin: Readable.from([]),
    stdout,
    stderr,
    env: { HOME: home, ...env },
    colorDepth: 1,
  });
  return { code, stdout: Buffer.concat(out).toString("utf8"), stderr: Buffer.concat(err).toString("utf8") };
}

function memoryIO(files: Record<string, string>, env: Record<string, string> = {}): SettingsIO {
  return { env, homeDir: "/home/u", readFile: (path) => files[path] ?? null };
}

const FILE = "/home/u/.tamtam.yaml";
type Source = "flag" | "env" | "file";

/** Resolves the agent's settings with `heartbeat` (unless null) and `preset` (if given) from `source`. */
function fromSource(source: Source, heartbeat: string | number | null, preset?: PresetName) {
  const flags: FlagValues = {};
  const env: Record<string, string> = {};
  const lines: string[] = [];
  if (source === "flag") Object.assign(flags, { preset, heartbeatMs: heartbeat === null ? undefined : String(heartbeat) });
  if (source === "env") {
    if (preset !== undefined) env.TAMTAM_PRESET = preset;
    if (heartbeat !== null) env.TAMTAM_HEARTBEAT = String(heartbeat);
  }
  if (source === "file") {
    if (preset !== undefined) lines.push(`preset: ${preset}`);
    if (heartbeat !== null) lines.push(`heartbeat: ${typeof heartbeat === "number" ? heartbeat : JSON.stringify(heartbeat)}`);
  }
  return resolveSettings(AGENT_SETTINGS, flags, undefined, memoryIO(lines.length > 0 ? { [FILE]: `${lines.join("\n")}\n` } : {}, env));
}

const LABEL: Record<Source, string> = { flag: "--heartbeat", env: "TAMTAM_HEARTBEAT", file: `"heartbeat" in ${FILE}` };

// ---------------------------------------------------------------------------------------------

describe("the heartbeat: one range from every source", () => {
  // [value, accepted]
  const values: [string | number, boolean][] = [
    [10, true],
    [500, true],
    [1000, true],
    [5000, true],
    [600_000, true],
    [9, false],
    [0, false],
    [-5, false],
    [600_001, false],
    ["abc", false],
    ["1.5", false],
  ];
  for (const source of ["flag", "env", "file"] as const) {
    for (const [value, accepted] of values) {
      test(`${LABEL[source]} ${JSON.stringify(value)}: ${accepted ? "accepted" : `refused, naming ${RANGE}`}`, () => {
        if (accepted) {
          const s = fromSource(source, value);
          assert.deepEqual([s.values.heartbeatMs, s.sources.heartbeatMs], [Number(value), source]);
          assert.equal(agentOptions(s).heartbeatMs, Number(value));
        } else {
          const shown = source === "file" && typeof value === "number" ? String(value) : `"${value}"`;
          assert.throws(() => fromSource(source, value), {
            name: "UsageError",
            message: `${LABEL[source]} must be an integer in ${RANGE}, got ${shown}`,
          });
        }
      });
    }
  }

  // [preset, period given or null, the period and probe timeout the agent starts with]
  const starts: [PresetName, number | null, number, number][] = [
    ["wan", 5000, 5000, 3000],
    ["thread", 5000, 5000, 2000],
    ["wan", null, 5000, 3000],
    ["thread", null, 5000, 2000],
    ["lan", null, 500, 250],
    ["lan", 1000, 1000, 500],
    ["local", null, 1000, 200],
    ["wan", 100, 100, 60],
    ["thread", 20_000, 20_000, 8000],
  ];
  for (const [preset, given, period, timeout] of starts) {
    for (const source of ["flag", "env", "file"] as const) {
      test(`--preset ${preset}${given === null ? "" : ` with ${LABEL[source]} ${given}`}: period ${period} ms, probe timeout ${timeout} ms`, () => {
        const o = agentOptions(fromSource(source, given, preset));
        assert.deepEqual([o.preset, o.heartbeatMs], [preset, given]);
        const config = protocolConfig(o, 4);
        assert.deepEqual([config.probeIntervalMs, config.probeTimeoutMs], [period, timeout]);
      });
    }
  }

  test("a heartbeat out of range is refused with the range at start-up too (protocolConfig)", () => {
    assert.throws(() => protocolConfig(options({ preset: "wan", heartbeatMs: 600_001 }), 4), { message: `heartbeat must be an integer in ${RANGE}, got 600001` });
  });

  test("tamtam agent refuses an out-of-range heartbeat from each source in one line, before starting", async () => {
    const file = join(home, "bad-heartbeat.yaml");
    writeFileSync(file, "heartbeat: 9\npreset: wan\n");
    const cases: [string[], Record<string, string>, string][] = [
      [["agent", "--preset", "wan", "--heartbeat", "600001"], {}, `tamtam: --heartbeat must be an integer in ${RANGE}, got "600001"\n`],
      [["agent", "--preset", "thread"], { TAMTAM_HEARTBEAT: "5" }, `tamtam: TAMTAM_HEARTBEAT must be an integer in ${RANGE}, got "5"\n`],
      [["--config", file, "agent"], {}, `tamtam: "heartbeat" in ${file} must be an integer in ${RANGE}, got 9\n`],
    ];
    for (const [args, env, stderr] of cases) {
      const r = await run(args, env);
      assert.deepEqual(r, { code: EXIT.USAGE, stdout: "", stderr }, args.join(" "));
    }
  });
});

describe("configure heartbeat and SetHeartbeat on wan and thread agents", () => {
  for (const [preset, own, timeout] of [["wan", 5000, 3000], ["thread", 5000, 2000]] as const) {
    test(`a ${preset} agent set to 100 ms returns to its own ${own} ms period and ${timeout} ms probe timeout`, async () => {
      const agent = new PresetAgent(preset);
      const served = await serve(agent);
      try {
        for (const ms of [100, own]) {
          const r = await run(["--rpc", served.rpc, "configure", "heartbeat", String(ms)]);
          assert.deepEqual(r, { code: 0, stdout: `Heartbeat was set to ${ms} ms.\n`, stderr: "" });
        }
        assert.deepEqual(agent.periods, [100, own]);
        assert.deepEqual([agent.config.probeIntervalMs, agent.config.probeTimeoutMs], [own, timeout], "as at start-up");
        assert.deepEqual(agent.config, protocolConfig(options({ preset }), 4), "the whole config is the start-up one again");
      } finally {
        served.close();
      }
    });
  }

  test("configure heartbeat refuses values out of range with the range, before any RPC", async () => {
    const agent = new PresetAgent("wan");
    const served = await serve(agent);
    try {
      for (const bad of ["9", "600001", "abc", "1.5"]) {
        const r = await run(["--rpc", served.rpc, "configure", "heartbeat", bad]);
        assert.deepEqual(r, { code: EXIT.USAGE, stdout: "", stderr: `tamtam: heartbeat must be an integer in ${RANGE}, got "${bad}"\n` });
      }
      assert.deepEqual(agent.periods, []);
    } finally {
      served.close();
    }
  });
});

describe("help states the range and what --workers means", () => {
  test("agent --help: --heartbeat names the range and every preset's default", async () => {
    const r = await run(["agent", "--help"]);
    assert.equal(r.code, 0);
    const line = r.stdout.split("\n").find((l) => l.trimStart().startsWith("--heartbeat"));
    assert.ok(line !== undefined, r.stdout);
    assert.match(line, /10\.\.600000 ms for every preset/);
    assert.match(line, /default 500 ms with lan, else the preset's own: local 1000 ms, wan 5000 ms, thread 5000 ms/);
  });

  test("configure heartbeat --help names the range and the presets' own periods", async () => {
    const r = await run(["configure", "heartbeat", "--help"]);
    assert.equal(r.code, 0);
    const text = r.stdout.replace(/\s+/g, " ");
    assert.match(text, /10\.\.600000 ms/);
    assert.match(text, /lan 1000 ms, local 1000 ms, wan 5000 ms, thread 5000 ms/);
  });

  test("--workers: worker threads that run protocol work, 0 = the main thread, for agent and simulate", async () => {
    for (const command of ["agent", "simulate"]) {
      const r = await run([command, "--help"]);
      const line = r.stdout.split("\n").find((l) => l.trimStart().startsWith("--workers"));
      assert.ok(line !== undefined, command);
      assert.match(line, /worker threads that run the (protocol core|nodes): 0 = on the main thread/, command);
      // simulate runs on the main thread by default; the agent's engine uses a protocol worker and a seal/open worker.
      assert.match(line, command === "agent" ? /default 2/ : /0 = on the main thread \(default/, command);
    }
    const defaults = resolveSettings(AGENT_SETTINGS, {}, undefined, memoryIO({}));
    assert.equal(agentOptions(defaults).workers, 2);
  });

  test("simulate --workers accepts 0..64 (1 = one worker thread); 65 and non-integers are one-line usage errors", async () => {
    for (const bad of ["65", "1.5", "x"]) {
      const r = await run(["simulate", "--nodes", "2", "--periods", "10", "--workers", bad]);
      assert.deepEqual(r, { code: EXIT.USAGE, stdout: "", stderr: `tamtam: --workers must be 0 (the main thread) or 1..64 worker threads, got "${bad}"\n` });
    }
    const r = await run(["simulate", "--nodes", "3", "--periods", "10", "--workers", "0", "--json"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal((JSON.parse(r.stdout) as { parameters: { nodes: number } }).parameters.nodes, 3);
    const one = await run(["simulate", "--nodes", "3", "--periods", "10", "--workers", "1", "--json"]);
    assert.deepEqual(one, r, "one worker thread prints what the main thread prints");
  });
});

describe("config file", () => {
  test("unknown keys give one warning line on stderr without --verbose", async () => {
    const agent = new PresetAgent("lan");
    const served = await serve(agent);
    try {
      const file = join(home, "typo.yaml");
      writeFileSync(file, `rpc: ${served.rpc}\nheartbaet: 100\nworker: 1\n`);
      const r = await run(["--config", file, "configure", "heartbeat", "250"]);
      assert.deepEqual(r, { code: 0, stdout: "Heartbeat was set to 250 ms.\n", stderr: `tamtam: ignoring unknown keys in ${file}: heartbaet, worker\n` });
      const known = join(home, "known.yaml");
      writeFileSync(known, `rpc: ${served.rpc}\nheartbeat: 300\n`);
      const quiet = await run(["--config", known, "configure", "heartbeat", "250"]);
      assert.deepEqual(quiet, { code: 0, stdout: "Heartbeat was set to 250 ms.\n", stderr: "" }, "known keys say nothing");
    } finally {
      served.close();
    }
  });
});
