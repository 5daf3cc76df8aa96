/**
 * What the package's library entries cost a program, measured in fresh Node processes, runs
 * interleaved (baseline, case, baseline, case, ...), medians and ratios to `node -e 0` in the
 * same run:
 *   - importing "tamtam" (startAgent and simulate, which load their parts on first use) and
 *     "tamtam/client";
 *   - importing @grpc/grpc-js, what a client built on grpc-js loads first;
 *   - one `nodes` call against a running agent, process start to exit: through
 *     "tamtam/client" (the command line's HTTP/2 client) and through the grpc-js client of
 *     src/rpc/adapter.ts, both with the same descriptor;
 *   - `startAgent` in a fresh process: import to ready, then stop.
 * The processes run in the repository, so "tamtam" resolves through the package's exports map
 * to the built dist/lib. The agent is a real `tamtam agent` on free loopback ports, killed by
 * PID in a finally.
 *
 *   node dist/bench/package.bench.js [--runs 15] [--json]
 */

import { spawn } from "node:child_process";
import { join } from "node:path";
import { freePort, killChildren, track, benchArgs } from "./lib.js";

const ROOT = new URL("../../", import.meta.url).pathname;

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

/** Wall time (ms) of `node --input-type=module -e script`, run in the repository; throws when it fails. */
function timedScript(script: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    const child = track(spawn(process.execPath, ["--input-type=module", "-e", script], { cwd: ROOT, stdio: ["ignore", "ignore", "pipe"] }));
    let stderr = "";
    child.stderr?.on("data", (chunk: Buffer) => {
      stderr += chunk.toString();
    });
    child.once("exit", (code) => {
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      if (code === 0) resolve(ms);
      else reject(new Error(`script failed (${code}): ${stderr.trim().split("\n").slice(-3).join(" | ")}\n${script}`));
    });
  });
}

interface Row {
  readonly name: string;
  readonly medianMs: number;
  readonly baselineMs: number;
  readonly ratio: number;
}

async function main(): Promise<number> {
  const argv = benchArgs(import.meta.url);
  const runsAt = argv.indexOf("--runs");
  const runs = runsAt >= 0 ? Number(argv[runsAt + 1]) : 15;
  const json = argv.includes("--json");
  const rpcPort = await freePort("tcp");
  const agent = track(
    spawn(process.execPath, [join(ROOT, "dist/bin/tamtam.cjs"), "--rpc", `127.0.0.1:${rpcPort}`, "--nobanner", "agent", "-p", String(await freePort("udp")), "--bind", "127.0.0.1", "--log-format", "json"], {
      cwd: ROOT,
      stdio: ["ignore", "ignore", "pipe"],
      env: { ...process.env, HOME: "/nonexistent", XDG_CACHE_HOME: join(ROOT, ".cache") },
    }),
  );
  try {
    await new Promise<void>((resolve, reject) => {
      let seen = "";
      agent.stderr?.on("data", (chunk: Buffer) => {
        seen += chunk.toString();
        if (seen.includes("Listening for gossip")) resolve();
      });
      agent.once("exit", () => reject(new Error(`the agent exited: ${seen}`)));
    });
    const rpc = `127.0.0.1:${rpcPort}`;
    const gossipPort = await freePort("udp");
    const grpcClient =
      `const { createClient } = await import("./dist/src/rpc/adapter.js"); const { TamTam } = await import("./dist/src/gen/service/tamtam_pb.js");` +
      `const c = createClient(TamTam, "${rpc}"); await c.nodes({}, { deadline: Date.now() + 10000 }); c.close();`;
    const cases: Array<[string, string]> = [
      ['import "tamtam"', 'await import("tamtam");'],
      ['import "tamtam/client"', 'await import("tamtam/client");'],
      ["import @grpc/grpc-js", 'await import("@grpc/grpc-js");'],
      ['nodes through "tamtam/client"', `const { connect } = await import("tamtam/client"); const c = connect("${rpc}", { timeoutMs: 10000 }); await c.nodes({}); c.close();`],
      ["nodes through grpc-js (adapter.ts)", grpcClient],
      [
        "startAgent to ready, then stop()",
        `const { startAgent } = await import("tamtam"); const a = await startAgent({ port: ${gossipPort}, bind: "127.0.0.1", rpc: "127.0.0.1:${await freePort("tcp")}", logLevel: "off" }); await a.stop();`,
      ],
    ];
    const samples = new Map<string, number[]>(cases.map(([name]) => [name, []]));
    const baseline: number[] = [];
    for (let run = 0; run < runs; run++) {
      for (const [name, script] of cases) {
        baseline.push(await timedScript("0;"));
        samples.get(name)?.push(await timedScript(script));
      }
    }
    const baselineMs = median(baseline);
    const rows: Row[] = cases.map(([name]) => {
      const m = median(samples.get(name) ?? []);
      return { name, medianMs: Math.round(m * 10) / 10, baselineMs: Math.round(baselineMs * 10) / 10, ratio: Math.round((m / baselineMs) * 100) / 100 };
    });
    if (json) {
      console.log(JSON.stringify({ bench: "package", node: process.version, runs, rows }));
    } else {
      console.log(`package entries, node ${process.version}, ${runs} runs each, interleaved with node -e 0 (median ${rows[0]?.baselineMs} ms)`);
      for (const r of rows) console.log(`  ${r.name.padEnd(36)} ${String(r.medianMs).padStart(7)} ms  ${r.ratio.toFixed(2)}x node -e 0`);
    }
    return 0;
  } finally {
    killChildren();
  }
}

process.exitCode = await main();
