/**
 * Queries between agents on separate hosts (network namespaces) under 20 % random loss on every
 * host's input: with `--relay 2` every query still collects every member's answer (retries and
 * relayed acknowledgements and answers make up for the lost datagrams), over sealed gossip.
 * Needs root; in CI (CI=true) missing prerequisites fail the test instead of skipping it, since
 * `.ci/run` installs them. Every agent is killed in `after`; waits poll outcomes, never sleep.
 */

import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { labAvailable, NetLab, runInHost, startInHost } from "./helpers/netns.js";

const ROOT = new URL("../../", import.meta.url).pathname;
const BIN = join(ROOT, (JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { bin: { tamtam: string } }).bin.tamtam);
const GOSSIP_PORT = 7946;
const RPC = "127.0.0.1:6262"; // each namespace has its own loopback
const KEY = Buffer.alloc(32, 0x77).toString("base64");
const QUERIES = 6;

const unavailable = labAvailable();
if (unavailable !== null && process.env.CI === "true") {
  test("network-namespace prerequisites (queries)", () => assert.fail(`${unavailable}; .ci/run should have installed them`));
}

interface Line {
  type: string;
  from?: string;
  payload?: string;
  asked?: number;
  answered?: number;
  missing?: string[];
}

describe("queries between hosts under 20 % loss (network namespaces)", { skip: unavailable ?? false, timeout: 240_000 }, () => {
  let lab: NetLab;
  let home: string;
  const agents: ChildProcess[] = [];
  const env = (): NodeJS.ProcessEnv => ({ ...process.env, HOME: home, NO_COLOR: "1", TAMTAM_ENCRYPT: KEY });

  before(() => {
    home = mkdtempSync(join(tmpdir(), "tamtam-netns-q-"));
    lab = new NetLab(`tq${process.pid % 100000}`, 5);
  });

  after(() => {
    for (const a of agents) if (a.exitCode === null && a.pid !== undefined) a.kill("SIGKILL");
    lab?.destroy();
    rmSync(home, { recursive: true, force: true });
  });

  async function startAgent(i: number, seed: string | null): Promise<void> {
    const args = [
      "agent", "--bind", `198.18.0.${i}`, "-p", String(GOSSIP_PORT), "--rpc", RPC, "--heartbeat", "200", "--nobanner", "--log-format", "json",
      "--query-handler", 'whoami=printf %s "$TAMTAM_SELF_ADDRESS"',
    ];
    if (seed !== null) args.push("--join", seed);
    agents.push(await startInHost(lab, i, [process.execPath, BIN, ...args], env()));
  }

  /** Runs `tamtam ARGS` inside host i. */
  function tamtam(i: number, args: readonly string[], timeoutMs = 30_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
    return runInHost(lab, i, [process.execPath, BIN, "--rpc", RPC, ...args], env(), timeoutMs);
  }

  const all = [1, 2, 3, 4, 5];
  const addr4 = (i: number): string => `198.18.0.${i}:${GOSSIP_PORT}`;

  test("with --relay 2, every query collects every member's answer", async () => {
    await startAgent(1, null);
    await Promise.all([2, 3, 4, 5].map((i) => startAgent(i, addr4(1))));
    // Converged: every host sees all five alive.
    const deadline = Date.now() + 30_000;
    for (;;) {
      const views = await Promise.all(all.map((i) => tamtam(i, ["healthy", "--json"])));
      const ok = views.every((v) => v.code === 0 && (JSON.parse(v.stdout) as { nodes: unknown[] }).nodes.length === 5);
      if (ok) break;
      assert.ok(Date.now() < deadline, "the five agents did not converge");
      await new Promise((r) => setTimeout(r, 200));
    }
    for (const i of all) lab.addLoss(i, 0.2);
    try {
      const summaries: Line[] = [];
      for (let q = 0; q < QUERIES; q++) {
        const from = all[q % all.length] as number;
        const r = await tamtam(from, ["query", "whoami", "--relay", "2", "--timeout", "8000", "--json"]);
        const lines = r.stdout.split("\n").filter((l) => l !== "").map((l) => JSON.parse(l) as Line);
        const responses = lines.filter((l) => l.type === "response");
        for (const l of responses) assert.equal(l.payload, l.from);
        const summary = lines.at(-1) as Line;
        // Every member asked answered. (Asked: the members the asking host holds alive or
        // suspected; a member it has declared dead under the loss is not asked.)
        assert.equal(summary.type, "summary", `query ${q} from host ${from}: ${r.stdout} ${r.stderr}`);
        assert.deepEqual([summary.answered, summary.missing], [summary.asked, []], `query ${q} from host ${from}: ${r.stdout}`);
        assert.equal(new Set(responses.map((l) => l.from)).size, summary.asked, "one answer per member");
        assert.equal(r.code, 0);
        summaries.push(summary);
      }
      const asked = summaries.reduce((n, s) => n + (s.asked ?? 0), 0);
      assert.ok(asked >= QUERIES * 4, `${asked} members asked in ${QUERIES} queries`);
      console.log(`# ${QUERIES} queries under 20 % loss: ${asked} of ${QUERIES * 5} members asked (alive or suspected), every answer collected`);
    } finally {
      lab.heal();
    }
  });
});
