/**
 * TamTam's security features between REAL agents on separate hosts, with real packets: one
 * `tamtam agent` per network namespace on a bridge (198.18.0.x). Every agent serves gRPC on a
 * Unix socket, which the test (in the root namespace) reaches through the filesystem.
 *
 *  1. Five sealed agents rotate their key cluster-wide (`keys install`, `use`, `remove`, each
 *     confirmed by all five) under a steady broadcast load: no broadcast is lost and no agent
 *     ever suspects another.
 *  2. An agent with the retired key and one with another label, both joining the cluster, never
 *     appear in any member's table, while the seed counts their dropped datagrams.
 *  3. A plaintext cluster of three is moved to sealed gossip agent by agent (the README's three
 *     rounds of restarts), converged and carrying a broadcast after every restart.
 *  4. A sealed datagram captured on the network and sent again is dropped as a replay and
 *     changes nothing.
 *  5. JOINs forged in the name of a third host earn that host only a few small COOKIE datagrams
 *     (never a member list): a TamTam agent is no amplifier.
 *  6. gRPC on a Unix socket (mode 0600) with a token: commands work with the token and fail in
 *     one line, exit status 1, without it.
 *
 * Needs root and iproute2 (skipped otherwise; in CI, where `.ci/run` installs them, a missing
 * prerequisite fails). Every process is killed by PID and every namespace deleted by exact name
 * in `finally`/`after`; waits are on output lines and polled conditions, never sleeps.
 */

import assert from "node:assert/strict";
import { statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { after, before, describe, test } from "node:test";
import { addr } from "../src/core/address.js";
import { RATE_LIMIT_BURST, RATE_LIMIT_REFILL_MS } from "../src/core/cookie.js";
import { decodeDatagram, encodeDatagram } from "../src/core/wire/codec.js";
import { MessageType } from "../src/core/wire/messages.js";
import { labAvailable, NetLab } from "./helpers/netns.js";
import { binPath, cleanEnv, logMessages, poll, type Proc, ProcessGroup, removeDir, tempDir, waitForExit, waitForLine } from "./helpers/processes.js";
import { agentStats } from "./helpers/agent-stats.js";

const K1 = Buffer.alloc(32, 0x31).toString("base64");
const K2 = Buffer.alloc(32, 0x32).toString("base64");
const K = Buffer.alloc(32, 0x4b).toString("base64");
const LABEL = "lab";
const HEARTBEAT = "200";

const unavailable = labAvailable();
if (unavailable !== null && process.env.CI === "true") {
  test("network-namespace prerequisites (security)", () => assert.fail(`${unavailable}; .ci/run should have installed them`));
}

/** A UDP socket in a namespace, driven by the test: prints what it receives, sends what it is told. */
const UDP_TOOL = `
import { createSocket } from "node:dgram";
import { createInterface } from "node:readline";
const [ip, port] = process.argv.slice(2);
const s = createSocket("udp4");
s.on("message", (m, r) => process.stdout.write("recv " + r.address + " " + r.port + " " + m.toString("hex") + "\\n"));
s.bind(Number(port), ip, () => process.stdout.write("ready\\n"));
createInterface({ input: process.stdin }).on("line", (line) => {
  const [cmd, host, p, hex] = line.split(" ");
  if (cmd === "send") s.send(Buffer.from(hex, "hex"), Number(p), host, (err) => process.stdout.write(err ? "error " + err.message + "\\n" : "sent\\n"));
});
`;

interface Agent {
  readonly proc: Proc;
  readonly host: number;
  readonly rpc: string;
  readonly gossip: string;
}

interface Received {
  readonly from: string;
  readonly bytes: Buffer;
}

interface NodeRow {
  readonly address: string;
  readonly state: string;
  readonly status: string;
}

interface KeysJson {
  members: number;
  confirmed: number;
  failures: { member: string; reason: string }[];
  keys: { fingerprint: string; installed: number; primary: number }[];
}

describe("security between agents on separate hosts (network namespaces)", { skip: unavailable ?? false, timeout: 120_000 }, () => {
  let lab: NetLab;
  let home: string;
  let env: Record<string, string>;
  let udpTool: string;
  /** The sealed cluster of checks 1 and 2. */
  const shared = new ProcessGroup();
  let cluster: Agent[] = [];
  /** Set once the cluster confirmed all three rotation steps (K1 is retired). */
  let rotated = false;

  before(() => {
    home = tempDir("tamtam-nssec-");
    env = cleanEnv(home, {}, null);
    udpTool = join(home, "udp-tool.mjs");
    writeFileSync(udpTool, UDP_TOOL);
    binPath();
    lab = new NetLab(`ts${process.pid % 100000}`, 7);
  });

  after(async () => {
    await shared.killAll();
    lab?.destroy();
    removeDir(home);
  });

  const ip = (host: number): string => `198.18.0.${host}`;

  /** Starts an agent in `host`'s namespace on `port`, gRPC on a Unix socket; resolves once it listens. */
  async function startAgent(group: ProcessGroup, host: number, port: number, extra: readonly string[], rpcExtra: readonly string[] = [], heartbeat = HEARTBEAT): Promise<Agent> {
    const rpc = `unix:${join(home, `h${host}-${port}.sock`)}`;
    const args = [process.execPath, binPath(), "--rpc", rpc, ...rpcExtra, "agent", "--bind", ip(host), "-p", String(port), "--heartbeat", heartbeat, "--nobanner", "--log-format", "json", ...extra];
    const proc = group.spawn("ip", lab.exec(host, args).slice(1), { env, label: `agent on host ${host}:${port}` });
    await waitForLine(proc, (t) => t.includes("Listening for gossip"), 15_000, { stream: "stderr" });
    return { proc, host, rpc, gossip: `${ip(host)}:${port}` };
  }

  /** Starts the UDP tool in `host`'s namespace bound to ip:port. */
  async function startUdp(group: ProcessGroup, host: number, port: number): Promise<Proc> {
    const proc = group.spawn("ip", lab.exec(host, [process.execPath, udpTool, ip(host), String(port)]).slice(1), { env, label: `udp tool on host ${host}`, stdin: "pipe" });
    await waitForLine(proc, (t) => t === "ready", 10_000, { stream: "stdout" });
    return proc;
  }

  function received(tool: Proc): Received[] {
    return tool.linesOf("stdout").flatMap((l) => {
      const m = /^recv (\S+) (\d+) ([0-9a-f]*)$/.exec(l);
      return m === null ? [] : [{ from: `${m[1]}:${m[2]}`, bytes: Buffer.from(m[3] as string, "hex") }];
    });
  }

  /** Sends each datagram from the tool and resolves once the tool reported every send done. */
  async function sendFrom(tool: Proc, to: string, datagrams: readonly Uint8Array[]): Promise<void> {
    const [host, port] = to.split(":") as [string, string];
    const before = tool.linesOf("stdout").filter((l) => l === "sent").length;
    for (const d of datagrams) tool.child.stdin?.write(`send ${host} ${port} ${Buffer.from(d).toString("hex")}\n`);
    await poll(() => tool.linesOf("stdout").filter((l) => l === "sent").length >= before + datagrams.length, 10_000, 20, () => tool.tail());
    assert.ok(!tool.linesOf("stdout").some((l) => l.startsWith("error")), tool.tail());
  }

  const stats = (agent: Agent, token?: string): Promise<Record<string, number>> => agentStats(agent.rpc, token);

  const tamtam = (group: ProcessGroup, agent: Agent, args: readonly string[]) => group.run(["--rpc", agent.rpc, ...args], { env, timeoutMs: 20_000 });

  /** `tamtam nodes --json` of `agent`. */
  async function nodes(group: ProcessGroup, agent: Agent): Promise<NodeRow[]> {
    const r = await tamtam(group, agent, ["nodes", "--json"]);
    assert.equal(r.code, 0, r.stderr);
    return (JSON.parse(r.stdout) as { nodes: NodeRow[] }).nodes;
  }

  const aliveSet = (rows: readonly NodeRow[]): string => JSON.stringify(rows.filter((n) => n.state === "alive").map((n) => n.address).sort());

  /** Waits until every agent holds exactly `members` alive. */
  async function converged(group: ProcessGroup, members: readonly Agent[]): Promise<void> {
    const want = JSON.stringify(members.map((a) => a.gossip).sort());
    let last = "";
    for (const agent of members) {
      await poll(async () => (last = aliveSet(await nodes(group, agent))) === want, 20_000, 100, () => `${agent.gossip} sees ${last}, want ${want}`);
    }
  }

  async function keys(group: ProcessGroup, agent: Agent, args: readonly string[]): Promise<KeysJson> {
    const r = await tamtam(group, agent, ["keys", ...args, "--json"]);
    assert.equal(r.code, 0, `keys ${args[0]}: ${r.stderr}`);
    return JSON.parse(r.stdout) as KeysJson;
  }

  /** `tamtam stream` (or `monitor --json`) on `agent`, resolved once the agent counts it as a subscriber. */
  async function subscribe(group: ProcessGroup, agent: Agent, kind: "stream" | "monitor"): Promise<Proc> {
    const counter = `${kind}.subscribers`;
    const before = (await stats(agent))[counter] ?? 0;
    const proc = group.tamtam(["--rpc", agent.rpc, ...(kind === "stream" ? ["stream"] : ["monitor", "--json"])], env);
    await poll(async () => ((await stats(agent))[counter] ?? 0) > before, 10_000, 50);
    return proc;
  }
  const stream = (group: ProcessGroup, agent: Agent): Promise<Proc> => subscribe(group, agent, "stream");

  test("five sealed agents rotate their key under a steady broadcast load: no broadcast lost, nobody suspected", async () => {
    const port = 7946;
    const sealed = ["--encrypt", K1, "--label", LABEL];
    // The default period: a suspicion here must come from the rotation, not from a busy machine.
    const first = await startAgent(shared, 1, port, sealed, [], "500");
    const rest = await Promise.all([2, 3, 4, 5].map((h) => startAgent(shared, h, port, [...sealed, "--join", first.gossip], [], "500")));
    cluster = [first, ...rest];
    await converged(shared, cluster);

    // Agent 5 prints every broadcast; agents 2 and 4 report every membership change.
    const received5 = await stream(shared, cluster[4] as Agent);
    const monitors = await Promise.all([cluster[1] as Agent, cluster[3] as Agent].map((a) => subscribe(shared, a, "monitor")));

    // One broadcast about every 100 ms through agent 1, until told to stop.
    const sent: string[] = [];
    const failed: string[] = [];
    let stopping = false;
    const load = (async () => {
      for (let i = 1; !stopping; i++) {
        const text = `load ${i}`;
        const r = await tamtam(shared, first, ["broadcast", text]);
        if (r.code === 0) sent.push(text);
        else failed.push(`${text}: ${r.stderr.trim()}`);
        if (r.ms < 100) await new Promise((done) => setTimeout(done, 100 - r.ms));
      }
    })();
    /** When each rotation step was asked for (performance.now()), to place any suspicion. */
    const stepAtMs: Record<string, number> = {};
    const sentAtLeast = (n: number): Promise<boolean> => poll(() => sent.length >= n, 30_000, 20);

    try {
      await sentAtLeast(3);
      const fp = (await keys(shared, first, ["list"])).keys;
      assert.equal(fp.length, 1);
      for (const [step, args] of [
        ["install", ["install", K2]],
        ["use", ["use", K2]],
        ["remove", ["remove", K1]],
      ] as const) {
        stepAtMs[step] = performance.now();
        const r = await keys(shared, cluster[(step === "use" ? 2 : 0)] as Agent, args);
        assert.deepEqual([r.members, r.confirmed, r.failures], [5, 5, []], `keys ${step}`);
        for (const k of r.keys) assert.equal(k.installed, 5, `keys ${step}: ${JSON.stringify(r.keys)}`);
        // The load keeps running between the steps.
        await sentAtLeast(sent.length + 3);
      }
      rotated = true;
      const list = await keys(shared, cluster[3] as Agent, ["list"]);
      assert.equal(list.keys.length, 1);
      assert.deepEqual([list.keys[0]?.installed, list.keys[0]?.primary], [5, 5]);
      assert.notEqual(list.keys[0]?.fingerprint, fp[0]?.fingerprint, "the new key is the only one left");
    } finally {
      stopping = true;
      await load;
    }
    assert.deepEqual(failed, [], "every broadcast command succeeded");
    assert.ok(sent.length >= 12, `${sent.length} broadcasts sent`);

    // Every broadcast sent reaches agent 5's stream (waiting while any is still missing).
    const missing = (): string[] => {
      const got = new Set(received5.linesOf("stdout"));
      return sent.filter((t) => !got.has(t));
    };
    await poll(() => missing().length === 0, 15_000, 100, () => `missing ${missing().join(", ")}`).catch(() => undefined);
    assert.deepEqual(missing(), [], `lost broadcasts out of ${sent.length}`);
    const survivors = new Set(received5.linesOf("stdout"));
    assert.equal(survivors.size, received5.linesOf("stdout").length, "no broadcast printed twice");

    // No member dropped a datagram of another member: each step reached everyone before the next.
    for (const a of cluster) {
      const s = await stats(a);
      const drops = Object.entries(s).filter(([k, v]) => k.startsWith("seal.dropped.") && v > 0);
      assert.deepEqual(drops, [], `host ${a.host} dropped datagrams of members during the rotation`);
    }
    // Nobody was ever suspected or declared dead: the monitors' changes and every agent's log.
    await converged(shared, cluster);
    for (const m of monitors) {
      const bad = m.lines.filter((l) => l.stream === "stdout" && l.text.startsWith("{") && ["SUSPECTED", "DEAD"].includes((JSON.parse(l.text) as NodeRow).status));
      const when = (ms: number): string => Object.entries(stepAtMs).map(([k, v]) => `${k}${ms >= v ? "+" : ""}${Math.round(ms - v)} ms`).join(" ");
      assert.deepEqual(bad.map((l) => `${(JSON.parse(l.text) as NodeRow).address} ${(JSON.parse(l.text) as NodeRow).status} (${when(l.atMs)})`), [], `${m.label}`);
    }
    for (const a of cluster) {
      const bad = logMessages(a.proc).filter((msg) => / is now (suspect|dead)$/.test(msg));
      assert.deepEqual(bad, [], `agent on host ${a.host}`);
      assert.ok(!a.proc.output("stderr").includes(K1) && !a.proc.output("stderr").includes(K2), "no key in the logs");
    }
    console.log(`# rotation under load: ${sent.length} broadcasts, all delivered`);
  });

  test("an agent with the retired key and one with another label never get into the cluster", async () => {
    assert.ok(cluster.length === 5 && rotated, "needs the sealed cluster of the rotation check, with K1 retired");
    const group = new ProcessGroup();
    try {
      const seed = cluster[0] as Agent;
      const before = await stats(seed);
      const dropped = (s: Record<string, number>): number => (s["seal.dropped.NO_KEY"] ?? 0) + (s["seal.dropped.BAD_SEAL"] ?? 0);
      const oldKey = await startAgent(group, 6, 7946, ["--encrypt", K1, "--label", LABEL, "--join", seed.gossip]);
      const otherLabel = await startAgent(group, 7, 7946, ["--encrypt", K2, "--label", "elsewhere", "--join", seed.gossip]);
      const strangers = [oldKey.gossip, otherLabel.gossip];
      // While the strangers try to join (three attempts each, then again after a pause), no
      // member ever lists them.
      let rounds = 0;
      await poll(async () => {
        const views = await Promise.all(cluster.map((a) => nodes(group, a)));
        for (const [k, v] of views.entries()) {
          const seen = v.filter((n) => strangers.includes(n.address));
          assert.deepEqual(seen, [], `host ${cluster[k]?.host} lists a stranger`);
        }
        rounds++;
        return dropped(await stats(seed)) - dropped(before) >= 6 && rounds >= 3;
      }, 30_000, 100);
      const after = await stats(seed);
      console.log(`# seed dropped NO_KEY +${(after["seal.dropped.NO_KEY"] ?? 0) - (before["seal.dropped.NO_KEY"] ?? 0)}, BAD_SEAL +${(after["seal.dropped.BAD_SEAL"] ?? 0) - (before["seal.dropped.BAD_SEAL"] ?? 0)} over ${rounds} table checks`);
      for (const s of [oldKey, otherLabel]) assert.equal(aliveSet(await nodes(group, s)), JSON.stringify([s.gossip]), "the stranger is alone");
      await converged(group, cluster);
    } finally {
      await group.killAll();
      await shared.killAll();
    }
  });

  // Restarts here follow each other within a second or two, so each new life starts below
  // the incarnation its previous life reached by refuting and leaving: the replay guard must
  // not take it for a replay (src/seal/replay.ts compares with the newest life's start).
  test("a plaintext cluster of three moves to sealed gossip agent by agent, converged and carrying a broadcast after every restart", async () => {
    const group = new ProcessGroup();
    try {
      const port = 7950;
      const hosts = [1, 2, 3];
      const agents: Agent[] = [await startAgent(group, 1, port, [])];
      for (const h of [2, 3]) agents.push(await startAgent(group, h, port, ["--join", `${ip(1)}:${port}`]));
      await converged(group, agents);
      let step = 0;
      const rounds = [
        ["--encrypt", K, "--encrypt-accept-plaintext", "--encrypt-send-plaintext"],
        ["--encrypt", K, "--encrypt-accept-plaintext"],
        ["--encrypt", K],
      ];
      for (const flags of rounds) {
        for (const [k, h] of hosts.entries()) {
          const old = agents[k] as Agent;
          old.proc.signal("SIGTERM");
          await waitForExit(old.proc, 10_000);
          const seeds = hosts.filter((o) => o !== h).flatMap((o) => ["--join", `${ip(o)}:${port}`]);
          agents[k] = await startAgent(group, h, port, [...flags, ...seeds]);
          await converged(group, agents);
          const listener = agents[(k + 1) % 3] as Agent;
          const out = await stream(group, listener);
          const text = `migration step ${++step}`;
          const r = await tamtam(group, agents[k] as Agent, ["broadcast", text]);
          assert.equal(r.code, 0, r.stderr);
          await waitForLine(out, (l) => l === text, 15_000, { stream: "stdout" });
          await out.kill();
        }
      }
      // Sealed only now: every agent opens sealed datagrams and accepts plaintext no more.
      for (const a of agents) {
        assert.ok(logMessages(a.proc).includes("gossip is sent sealed (AES-GCM), accepted sealed only, with 1 key and no cluster label"), logMessages(a.proc).filter((m) => m.startsWith("gossip is")).join(" | "));
        const s = await stats(a);
        assert.ok((s["seal.opened"] ?? 0) > 0, `host ${a.host} opened sealed datagrams`);
      }
    } finally {
      await group.killAll();
    }
  });

  test("a captured sealed datagram sent again is dropped as a replay and changes nothing", async () => {
    const group = new ProcessGroup();
    try {
      const port = 7960;
      const sealed = ["--encrypt", K, "--label", LABEL];
      // The eavesdropper's socket on host 3 is one of B's seeds, so B's first datagrams reach it.
      const eve = await startUdp(group, 3, port);
      const a = await startAgent(group, 1, port, sealed);
      const b = await startAgent(group, 2, port, [...sealed, "--join", `${ip(3)}:${port}`, "--join", a.gossip]);
      await converged(group, [a, b]);
      const captured = (await poll(() => received(eve).find((r) => r.from === b.gossip), 10_000, 50)).bytes;
      assert.equal(captured[3], 0x01, "the captured datagram is sealed");
      const table = aliveSet(await nodes(group, a));
      const before = (await stats(a))["seal.dropped.REPLAY"] ?? 0;
      // The first copy is the first datagram A gets from Eve's address (accepted once, as the
      // README says); every later copy is a replay.
      const copies = 5;
      await sendFrom(eve, a.gossip, Array.from({ length: copies }, () => captured));
      const replays = await poll(async () => {
        const n = ((await stats(a))["seal.dropped.REPLAY"] ?? 0) - before;
        return n >= copies - 1 ? n : false;
      }, 10_000, 50);
      assert.ok(replays <= copies, `${replays} replays counted for ${copies} copies`);
      assert.equal(aliveSet(await nodes(group, a)), table, "A's table did not change");
      assert.equal(table, JSON.stringify([a.gossip, b.gossip].sort()));
      await converged(group, [a, b]);
    } finally {
      await group.killAll();
    }
  });

  test("JOINs forged in a victim's name earn the victim only a few small cookies, never a member list", async () => {
    const group = new ProcessGroup();
    try {
      const port = 7970;
      const a = await startAgent(group, 1, port, []);
      const b = await startAgent(group, 2, port, ["--join", a.gossip]);
      await converged(group, [a, b]);
      const victim = await startUdp(group, 4, port);
      const attacker = await startUdp(group, 3, port);
      const marker = await startUdp(group, 1, port + 1);
      const before = await stats(a);
      const refused = (s: Record<string, number>): number => s["core.requestsRefused"] ?? 0;
      const forged = Array.from({ length: 20 }, (_, i) =>
        encodeDatagram({ from: addr(`${ip(4)}:${port}`), incarnation: 1, body: { type: MessageType.Join, seq: 100 + i }, updates: [], broadcasts: [] }),
      );
      const startedMs = performance.now();
      await sendFrom(attacker, a.gossip, forged);
      // A handled all 20 (each refused: a cookie, or nothing once the victim's bucket is empty).
      await poll(async () => refused(await stats(a)) - refused(before) >= 20, 10_000, 50);
      const handledMs = performance.now() - startedMs;
      // Whatever A sent the victim left through the same link before this marker does.
      await sendFrom(marker, `${ip(4)}:${port}`, [Buffer.from("marker")]);
      await poll(() => received(victim).some((r) => r.from === `${ip(1)}:${port + 1}`), 10_000, 20);
      const fromA = received(victim).filter((r) => r.from === a.gossip);
      const allowed = RATE_LIMIT_BURST + Math.floor(handledMs / RATE_LIMIT_REFILL_MS);
      console.log(`# 20 forged JOINs: the victim got ${fromA.length} datagrams (${fromA.map((r) => r.bytes.length).join(", ")} bytes), at most ${allowed} allowed`);
      assert.ok(fromA.length >= 1 && fromA.length <= allowed, `${fromA.length} datagrams to the victim, at most ${allowed} allowed`);
      for (const r of fromA) {
        assert.ok(r.bytes.length <= 50, `a ${r.bytes.length}-byte datagram to the victim`);
        assert.equal(decodeDatagram(r.bytes).body.type, MessageType.Cookie, "only cookies, never a SYNC");
      }
      const after = await stats(a);
      assert.equal((after["core.cookiesSent"] ?? 0) - (before["core.cookiesSent"] ?? 0), fromA.length, "every cookie A sent reached the victim");
      // The victim never became a member.
      for (const agent of [a, b]) assert.ok(!(await nodes(group, agent)).some((n) => n.address === `${ip(4)}:${port}`));
    } finally {
      await group.killAll();
    }
  });

  test("gRPC on a Unix socket with a token: mode 0600, commands work with the token and fail in one line without it", async () => {
    const group = new ProcessGroup();
    try {
      const token = "netns-T0ken";
      const agent = await startAgent(group, 5, 7980, [], ["--rpc-token", token]);
      const socket = agent.rpc.slice("unix:".length);
      assert.ok(statSync(socket).isSocket());
      assert.equal(statSync(socket).mode & 0o777, 0o600);
      assert.ok(!agent.proc.output("stderr").includes(token), "the token is not logged");
      const ok = await tamtam(group, agent, ["--rpc-token", token, "nodes", "--json"]);
      assert.equal(ok.code, 0, ok.stderr);
      assert.deepEqual((JSON.parse(ok.stdout) as { nodes: NodeRow[] }).nodes.map((n) => [n.address, n.state]), [[agent.gossip, "alive"]]);
      const sent = await tamtam(group, agent, ["--rpc-token", token, "broadcast", "with the token"]);
      assert.equal(sent.code, 0, sent.stderr);
      const needsToken = /^tamtam: the agent at unix:\S+ requires --rpc-token \(or TAMTAM_RPC_TOKEN, or rpc-token in the config file\), or the given token is wrong\n$/;
      for (const args of [["nodes"], ["broadcast", "no token"], ["keys", "list"], ["--rpc-token", "wrong", "nodes"]]) {
        const r = await tamtam(group, agent, args);
        assert.equal(r.code, 1, `${args.join(" ")}: ${r.stderr}`);
        assert.match(r.stderr, needsToken, args.join(" "));
        assert.equal(r.stdout, "");
      }
      assert.ok(Object.keys(await stats(agent, token)).length > 0, "Stats with the token");
    } finally {
      await group.killAll();
    }
  });
});
