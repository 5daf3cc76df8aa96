/**
 * The live socket under fire: a running agent takes structure-aware invalid datagrams from a
 * sender process (test/fixtures/fuzz-sender.ts) — built by the codec, then truncated, flipped,
 * inflated, given unknown types and oversized lists — 1,000,000 plaintext ones by default
 * (TAMTAM_FUZZ_DATAGRAMS to change it) and a tenth as many sealed ones at a sealed pair (a
 * valid envelope over an invalid datagram, or a damaged envelope). The agent must not crash
 * (it runs under a 192 MiB heap limit, so memory that grows with the datagrams would end it),
 * must count every one (protocol errors plus seal drops, exactly the number sent: the sender
 * waits for the count after every window, so the kernel drops none), and its members and
 * incarnations, and its member's view of it, must not change (the pair runs a 5 s period, so
 * that the flood's queueing delay cannot fail a probe). Every process is killed by PID in a
 * `finally`.
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { describe, test } from "node:test";
import { TamTam } from "../src/gen/service/tamtam_pb.js";
import { createH2Client } from "../src/rpc/h2-client.js";
import { agentStats } from "./helpers/agent-stats.js";
import { cleanEnv, freeUdpPort, poll, ProcessGroup, removeDir, repoRoot, tempDir, type AgentProc } from "./helpers/processes.js";

const PLAINTEXT_DATAGRAMS = Number(process.env.TAMTAM_FUZZ_DATAGRAMS ?? 1_000_000);
const SEALED_DATAGRAMS = Math.ceil(PLAINTEXT_DATAGRAMS / 10);
/**
 * The pair's protocol period: long enough that the flood's queueing delay (thousands of
 * datagrams ahead of a member's ping in the socket buffer, on a loaded machine) never fails a
 * probe, so that any change of membership would come from the datagrams themselves.
 */
const HEARTBEAT_MS = 5_000;
const HEAP_LIMIT_MIB = 192;
const KEY = Buffer.alloc(32, 0x5a).toString("base64");
const LABEL = "under-fire";
const SENDER = join(repoRoot(), "dist", "test", "fixtures", "fuzz-sender.js");

/** An agent's members as `address state incarnation` lines, sorted. */
async function membership(rpc: string): Promise<string[]> {
  const client = createH2Client(TamTam, rpc, { defaultTimeoutMs: 5_000 });
  try {
    const { nodes } = await client.nodes({});
    return nodes.map((n) => `${n.address?.IP}:${n.address?.port} ${n.state} ${n.incarnation}`).sort();
  } finally {
    client.close();
  }
}

/** Protocol errors and seal drops: where an invalid datagram is counted. */
function rejected(s: Record<string, number>): number {
  return Object.entries(s).reduce((n, [k, v]) => (k === "core.protocolErrors" || k.startsWith("seal.dropped.") ? n + v : n), 0);
}

interface SenderReport {
  readonly sent: number;
  readonly distinct: number;
  readonly byKind: Record<string, number>;
  readonly elapsedMs: number;
}

async function fire(group: ProcessGroup, target: AgentProc, count: number, extra: readonly string[]): Promise<SenderReport> {
  const args = [SENDER, "--target", target.gossip, "--rpc", target.rpc, "--count", String(count), "--seed", "7", ...extra];
  const proc = group.spawn(process.execPath, args, { env: { ...process.env } as Record<string, string>, label: "fuzz-sender" });
  const status = await proc.closed;
  assert.equal(status.code, 0, `the sender failed:\n${proc.tail()}`);
  return JSON.parse(proc.output("stdout").trim()) as SenderReport;
}

describe("the live socket under fire", () => {
  for (const sealed of [false, true]) {
    const count = sealed ? SEALED_DATAGRAMS : PLAINTEXT_DATAGRAMS;
    test(`${count.toLocaleString("en")} ${sealed ? "sealed" : "plaintext"} invalid datagrams: no crash, every one counted, no state change`, { timeout: 900_000 }, async () => {
      const home = tempDir();
      const group = new ProcessGroup();
      try {
        const env = cleanEnv(home, sealed ? { TAMTAM_ENCRYPT: KEY, TAMTAM_LABEL: LABEL } : {});
        const limited = { ...env, NODE_OPTIONS: `--max-old-space-size=${HEAP_LIMIT_MIB}` };
        const start = async (name: string, e: Record<string, string>, joining: string[]): Promise<AgentProc> =>
          group.agent(["--rpc", `unix:${home}/${name}.sock`, "agent", "-p", String(await freeUdpPort()), "--heartbeat", String(HEARTBEAT_MS), ...joining], e);
        const target = await start("target", limited, []);
        const member = await start("member", env, ["--join", target.gossip]);
        await poll(async () => (await membership(target.rpc)).length === 2 && (await membership(member.rpc)).every((l) => l.includes(" alive ")), 20_000, 100);
        const before = await membership(target.rpc);
        const seenBefore = await membership(member.rpc);
        const statsBefore = await agentStats(target.rpc);

        const extra = sealed ? ["--key", KEY, "--label", LABEL, "--avoid", `${target.gossip},${member.gossip}`] : [];
        const report = await fire(group, target, count, extra);
        console.log(`${report.sent} datagrams (${report.distinct} distinct) in ${report.elapsedMs} ms: ${JSON.stringify(report.byKind)}`);

        const statsAfter = await agentStats(target.rpc);
        assert.equal(report.sent, count);
        assert.equal(rejected(statsAfter) - rejected(statsBefore), count, "every invalid datagram counted once, as a protocol error or a seal drop");
        assert.equal(target.child.exitCode, null, "the agent is still running");
        assert.deepEqual(await membership(target.rpc), before, "the target's members, states and incarnations");
        assert.deepEqual(await membership(member.rpc), seenBefore, "the member's view of the target");
        const rssMiB = (statsAfter["process.rss_bytes"] ?? 0) / 2 ** 20;
        console.log(`resident memory ${((statsBefore["process.rss_bytes"] ?? 0) / 2 ** 20).toFixed(1)} MiB before, ${rssMiB.toFixed(1)} MiB after (heap limit ${HEAP_LIMIT_MIB} MiB)`);
      } finally {
        await group.killAll();
        removeDir(home);
      }
    });
  }
});
