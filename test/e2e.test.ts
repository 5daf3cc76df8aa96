/**
 * End-to-end tests: REAL `tamtam` processes started through the package's bin (`node <bin>`),
 * talking UDP and gRPC on loopback only. Every agent gets TAMTAM_ADVERTISE (or a specific
 * --bind) so that nothing is sent beyond loopback, a temporary HOME (no user ~/.tamtam.yaml)
 * and NO_COLOR=1. Every process is killed by PID in a `finally`; waits are on output lines or
 * on real conditions polled through the CLI or gRPC, never fixed sleeps.
 *
 *   a. the original README's walkthrough on IPv4 loopback with free ports; a'. once, the
 *      defaults alone (the only agent of the suite on the fixed ports 9999/6262)
 *   b. the same walkthrough on IPv6 loopback with ephemeral ports
 *   (every test runs twice: with the worker engine and with the inline one)
 *   c. 5 agents; SIGKILL -> DEAD everywhere (timed);
 *      SIGTERM (worker engine) or SIGINT (inline) -> a graceful leave: exit 0 within 1 s, LEFT
 *      everywhere, never DEAD
 *   d. nodes / healthy / monitor output (tables and --json)
 *   e. config file < environment < flag, against real agents
 *   f. bad inputs: one line on stderr, non-zero exit, no stack trace
 *   g. the 11 original RPCs by path with hand-written protobuf bytes, as a foreign client would
 *   h. SIGTERM and `leave --self` on a 3-agent cluster: the others report LEFT (never DEAD) and
 *      the leaver's own Stream/Monitor subscribers end normally
 */

import assert from "node:assert/strict";
import { writeFileSync, chmodSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { after, before, describe, test, type TestContext } from "node:test";
import * as grpc from "@grpc/grpc-js";
import { TamTam } from "../src/gen/service/tamtam_pb.js";
import { createClient } from "../src/rpc/adapter.js";
import {
  type AgentProc,
  binPath,
  cleanEnv,
  useEngine,
  freeTcpPort,
  freeUdpPort,
  killAllLive,
  logMessages,
  poll,
  type Proc,
  ProcessGroup,
  removeDir,
  tcpPortIsFree,
  tempDir,
  udpPortIsFree,
  waitForExit,
  waitForLine,
  writeTamtamShim,
} from "./helpers/processes.js";
import type { NodeJson } from "../src/cli/commands/node-table.js";

binPath(); // fail at once, with a clear message, when the bin was not built

// ---------------------------------------------------------------------------------------------
// Shared helpers

type Env = Record<string, string>;


/** A fresh temporary HOME and process group; everything is killed and removed afterwards. */
async function withSandbox<T>(fn: (group: ProcessGroup, home: string) => Promise<T>): Promise<T> {
  const group = new ProcessGroup();
  const home = tempDir();
  try {
    return await fn(group, home);
  } finally {
    await group.killAll();
    removeDir(home);
  }
}

/** `count` distinct ports that were free a moment ago. */
async function ports(count: number, kind: "udp" | "tcp", host = "127.0.0.1"): Promise<number[]> {
  const out = new Set<number>();
  while (out.size < count) out.add(kind === "udp" ? await freeUdpPort(host) : await freeTcpPort(host));
  return [...out];
}

/** A counter of the agent's Stats RPC (an added RPC: used here only to await subscriptions). */
async function counter(rpc: string, name: string): Promise<number> {
  const client = createClient(TamTam, rpc, grpc.credentials.createInsecure(), { defaultTimeoutMs: 3_000 });
  try {
    const reply = await client.stats({});
    return Number(reply.counters[name] ?? 0n);
  } finally {
    client.close();
  }
}

/** Waits until the agent's Stats counter `name` is at least `atLeast`. */
function awaitCounter(rpc: string, name: string, atLeast: number, timeoutMs = 10_000): Promise<number> {
  let last = -1;
  return poll(
    async () => {
      last = await counter(rpc, name);
      return last >= atLeast ? last : false;
    },
    timeoutMs,
    50,
    () => `${name} = ${last} at ${rpc}, waiting for >= ${atLeast}`,
  );
}

/** `tamtam --rpc RPC nodes --json`, parsed. */
async function nodesOf(group: ProcessGroup, env: Env, rpc: string, command: "nodes" | "healthy" = "nodes"): Promise<NodeJson[]> {
  const r = await group.run(["--rpc", rpc, command, "--json"], { env, timeoutMs: 10_000 });
  if (r.code !== 0) throw new Error(`${command} --json at ${rpc} exited ${r.code}: ${r.stderr.trim()}`);
  return (JSON.parse(r.stdout) as { nodes: NodeJson[] }).nodes;
}

/** Polls `nodes --json` of `agent` until `check` holds for its list. */
function pollNodes(
  group: ProcessGroup,
  env: Env,
  agent: AgentProc,
  check: (nodes: NodeJson[]) => boolean,
  timeoutMs: number,
  intervalMs = 100,
): Promise<NodeJson[]> {
  let last: NodeJson[] = [];
  return poll(
    async () => {
      last = await nodesOf(group, env, agent.rpc);
      return check(last) ? last : false;
    },
    timeoutMs,
    intervalMs,
    () => `nodes of ${agent.gossip}: ${last.map((n) => `${n.address}=${n.status}`).join(", ")}`,
  );
}

/** A predicate for `monitor --json` lines about `port` in `state`. */
function monitorLine(port: number, state?: string): (text: string) => boolean {
  return (text) => {
    try {
      const n = JSON.parse(text) as NodeJson;
      return n.port === port && (state === undefined || n.state === state);
    } catch {
      return false;
    }
  };
}

/** The node JSON lines a `monitor --json` printed (from line index `from`). */
function monitorNodes(proc: Proc, from = 0): NodeJson[] {
  return proc.lines
    .slice(from)
    .filter((l) => l.stream === "stdout")
    .flatMap((l) => {
      try {
        return [JSON.parse(l.text) as NodeJson];
      } catch {
        return [];
      }
    });
}

/** Quotes a word for bash when it has characters the shell would interpret. */
function shellWord(word: string): string {
  return /^[A-Za-z0-9_./:=@%+-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`;
}

/** The README's handler script, verbatim. */
const HANDLER_SH = '#!/bin/bash\nwhile read msg; do\n    printf "${msg}\\n"\ndone\n';

/** Asserts the one-line error policy: non-zero exit, exactly one line on stderr, no stack frames. */
function assertOneLineError(r: { code: number | null; stdout: string; stderr: string }, what: string, expectedCode?: number): void {
  assert.notEqual(r.code, 0, `${what}: expected a non-zero exit, got 0 (stdout ${JSON.stringify(r.stdout)})`);
  assert.notEqual(r.code, null, `${what}: killed by a signal`);
  if (expectedCode !== undefined) assert.equal(r.code, expectedCode, `${what}: exit code (stderr ${JSON.stringify(r.stderr)})`);
  assert.ok(r.stderr.endsWith("\n"), `${what}: stderr does not end with a newline: ${JSON.stringify(r.stderr)}`);
  const lines = r.stderr.slice(0, -1).split("\n");
  assert.equal(lines.length, 1, `${what}: expected exactly one line on stderr, got ${JSON.stringify(r.stderr)}`);
  assert.match(lines[0] as string, /^tamtam: \S/, `${what}: stderr line`);
  assert.doesNotMatch(r.stderr, /^\s+at /m, `${what}: a stack trace on stderr`);
  assert.equal(r.stdout, "", `${what}: nothing on stdout`);
}

// ---------------------------------------------------------------------------------------------
// a + b: the README walkthrough

interface Walkthrough {
  readonly env: Env;
  /** Full argument lists of the two agents, as typed. */
  readonly agent1: readonly string[];
  readonly agent2: readonly string[];
  /** Words before the command for talking to agent 1 / agent 2 (`[]` = the default --rpc). */
  readonly via1: readonly string[];
  readonly via2: readonly string[];
  /** gRPC address of agent 1 (to await stream subscriptions). */
  readonly rpc1: string;
  /** Advertised addresses the agents must log, e.g. 127.0.0.1:9999. */
  readonly gossip1: string;
  readonly gossip2: string;
  /** The `join` argument (agent 2's address). */
  readonly joinAddress: string;
}

async function walkthrough(t: TestContext, group: ProcessGroup, dir: string, w: Walkthrough): Promise<void> {
  // Terminal 1 and 2: the two agents, exactly as typed (flags: false adds nothing).
  const [a1, a2] = await Promise.all([
    group.agent(w.agent1, w.env, { flags: false }),
    group.agent(w.agent2, w.env, { flags: false }),
  ]);
  assert.equal(a1.gossip, w.gossip1);
  assert.equal(a2.gossip, w.gossip2);

  // Terminal 3: join, then stream.
  const joined = await group.run([...w.via1, "join", w.joinAddress], { env: w.env });
  assert.deepEqual([joined.code, joined.stdout, joined.stderr], [0, "Host was joined.\n", ""], "join");
  const stream = group.tamtam([...w.via1, "stream"], w.env);
  await awaitCounter(w.rpc1, "stream.subscribers", 1);

  // Terminal 4: broadcast through the OTHER agent; the line appears in the stream.
  const sentAt = performance.now();
  const sent = await group.run([...w.via2, "broadcast", "Hello world!"], { env: w.env });
  assert.deepEqual([sent.code, sent.stdout, sent.stderr], [0, "broadcast message was send: Hello world!\n", ""], "broadcast");
  const got = await waitForLine(stream, (l) => l === "Hello world!", 10_000, { stream: "stdout" });
  t.diagnostic(`broadcast reached the other agent's stream ${Math.round(got.atMs - sentAt)} ms after \`broadcast\` started`);

  // The handler script bound with `tamtam stream | ./handler.sh`.
  const handler = join(dir, "handler.sh");
  writeFileSync(handler, HANDLER_SH);
  chmodSync(handler, 0o755);
  const binDir = join(dir, "bin");
  mkdirSync(binDir, { recursive: true });
  writeTamtamShim(binDir);
  const commandLine = ["tamtam", ...w.via1.map(shellWord), "stream", "|", "./handler.sh"].join(" ");
  const pipeline = group.spawn("bash", ["-c", commandLine], {
    env: { ...w.env, PATH: `${binDir}:${w.env.PATH}` },
    cwd: dir,
    group: true, // its own process group: bash, tamtam and handler.sh are killed together
    label: commandLine,
  });
  await awaitCounter(w.rpc1, "stream.subscribers", 2);
  const again = await group.run([...w.via2, "broadcast", "Hello again!"], { env: w.env });
  assert.equal(again.code, 0, again.stderr);
  await waitForLine(pipeline, (l) => l === "Hello again!", 10_000, { stream: "stdout" });
  await waitForLine(stream, (l) => l === "Hello again!", 10_000, { stream: "stdout" });
  assert.deepEqual(stream.linesOf("stdout"), ["Hello world!", "Hello again!"], "each broadcast printed once by `stream`");
  assert.deepEqual(pipeline.linesOf("stdout"), ["Hello again!"], "the handler got the next broadcast");
  assert.equal(stream.linesOf("stderr").length, 0, `stream wrote on stderr:\n${stream.tail()}`);
  assert.ok(stream.running && pipeline.running, "`stream` keeps waiting for more broadcasts");
}

// The same tests for both engines: every agent of a suite runs its engine (TAMTAM_WORKERS).
for (const engine of [1, 0] as const) {
describe(`tamtam end to end, ${engine === 1 ? "worker" : "inline"} engine (real processes on loopback)`, () => {
  before(() => useEngine(engine));
  // Each test kills its own processes in a finally; this catches those of a test that timed out.
  after(killAllLive);

  test("a. the README walkthrough on IPv4 loopback with free ports", { timeout: 30_000 }, async (t) => {
    await withSandbox(async (group, home) => {
      const [p1, p2] = (await ports(2, "udp")) as [number, number];
      const [r1, r2] = (await ports(2, "tcp")) as [number, number];
      await walkthrough(t, group, home, {
        env: cleanEnv(home), // TAMTAM_ADVERTISE=127.0.0.1: loopback only on this machine
        agent1: ["--rpc", `localhost:${r1}`, "agent", "-p", String(p1)],
        agent2: ["--rpc", `localhost:${r2}`, "agent", "-p", String(p2)],
        via1: ["--rpc", `localhost:${r1}`],
        via2: ["--rpc", `localhost:${r2}`],
        rpc1: `localhost:${r1}`,
        gossip1: `127.0.0.1:${p1}`,
        gossip2: `127.0.0.1:${p2}`,
        joinAddress: `127.0.0.1:${p2}`,
      });
    });
  });

  // The defaults themselves, once (with the worker engine, the default): the only test that
  // starts an agent on the fixed ports 9999/6262.
  if (engine === 1) {
    test("a'. the defaults: `tamtam agent` gossips on 9999 and serves gRPC on localhost:6262, where a bare command finds it", { timeout: 30_000 }, async () => {
      const busy: string[] = [];
      if (!(await udpPortIsFree(9999))) busy.push("UDP 9999");
      if (!(await tcpPortIsFree(6262))) busy.push("TCP 6262");
      assert.deepEqual(busy, [], "the default ports must be free");
      await withSandbox(async (group, home) => {
        const env = cleanEnv(home);
        const agent = await group.agent(["agent"], env, { flags: false });
        assert.equal(agent.gossip, "127.0.0.1:9999");
        const address = await group.run(["address"], { env });
        assert.deepEqual([address.code, address.stdout, address.stderr], [0, "The local address of the agent is: [127.0.0.1]:9999\n", ""]);
      });
    });
  }

  test("b. the walkthrough on IPv6 loopback [::1] with ephemeral ports", { timeout: 30_000 }, async (t) => {
    await withSandbox(async (group, home) => {
      const [p1, p2] = (await ports(2, "udp", "::1")) as [number, number];
      const [r1, r2] = (await ports(2, "tcp", "::1")) as [number, number];
      const env = cleanEnv(home, {}, "::1");
      await walkthrough(t, group, home, {
        env,
        agent1: ["--rpc", `[::1]:${r1}`, "agent", "-6", "--bind", "::1", "-p", String(p1)],
        agent2: ["--rpc", `[::1]:${r2}`, "agent", "-6", "--bind", "::1", "-p", String(p2)],
        via1: ["--rpc", `[::1]:${r1}`],
        via2: ["--rpc", `[::1]:${r2}`],
        rpc1: `[::1]:${r1}`,
        gossip1: `[::1]:${p1}`,
        gossip2: `[::1]:${p2}`,
        joinAddress: `[::1]:${p2}`,
      });
      const address = await group.run(["--rpc", `[::1]:${r1}`, "address"], { env });
      assert.equal(address.stdout, `The local address of the agent is: [::1]:${p1}\n`);
      const nodes = await nodesOf(group, env, `[::1]:${r2}`);
      assert.deepEqual(
        nodes.map((n) => [n.address, n.status]).sort(),
        [[`[::1]:${p1}`, "ALIVE"], [`[::1]:${p2}`, "ALIVE"]].sort(),
      );
    });
  });

  // -------------------------------------------------------------------------------------------
  // c: failure detection and graceful leave, both engines

  for (const workers of [engine]) {
    test(`c. --workers ${workers}: 5 agents; SIGKILL -> DEAD everywhere; SIGTERM -> LEFT everywhere, never DEAD`, { timeout: 45_000 }, async (t) => {
      await withSandbox(async (group, home) => {
        const env = cleanEnv(home);
        const gossipPorts = await ports(5, "udp");
        const rpcPorts = await ports(5, "tcp");
        const seed = `127.0.0.1:${gossipPorts[0]}`;
        const agents = await Promise.all(
          gossipPorts.map((port, i) =>
            group.agent(
              [
                "--rpc", `127.0.0.1:${rpcPorts[i]}`, "agent",
                "--bind", "127.0.0.1", "-p", String(port),
                "--heartbeat", "100", "--workers", String(workers),
                ...(i === 0 ? [] : ["--join", seed]),
              ],
              env,
            ),
          ),
        );
        const engine = workers === 0 ? "inline core" : "core on a worker thread";
        for (const a of agents) assert.ok(logMessages(a).some((m) => m.includes(engine)), `${a.gossip} runs the ${engine}`);

        // Every agent sees the 5 members alive.
        const all = new Set(gossipPorts);
        const convergedAt = performance.now();
        await Promise.all(
          agents.map((a) =>
            pollNodes(group, env, a, (nodes) => nodes.length === 5 && nodes.every((n) => n.status === "ALIVE" && all.has(n.port)), 20_000),
          ),
        );
        t.diagnostic(`workers ${workers}: 5 agents converged ${Math.round(performance.now() - convergedAt)} ms after start-up`);

        // Watch every survivor's membership changes from before the failure on.
        const victim = agents[4] as AgentProc;
        const survivors = agents.slice(0, 4);
        const monitors = survivors.map((a) => group.tamtam(["--rpc", a.rpc, "monitor", "--json"], env));
        await Promise.all(survivors.map((a) => awaitCounter(a.rpc, "monitor.subscribers", 1)));
        const marks = monitors.map((m) => m.mark());

        // SIGKILL one agent: every other agent must report it DEAD.
        const killedAt = performance.now();
        await victim.kill();
        const deadLines = await Promise.all(
          monitors.map((m, i) => waitForLine(m, monitorLine(victim.port, "dead"), 30_000, { stream: "stdout", from: marks[i] })),
        );
        const perAgent = deadLines.map((l) => Math.round(l.atMs - killedAt));
        const killToDead = Math.max(...perAgent);
        await Promise.all(
          survivors.map((a) => pollNodes(group, env, a, (nodes) => nodes.find((n) => n.port === victim.port)?.status === "DEAD", 10_000)),
        );
        const confirmed = Math.round(performance.now() - killedAt);
        const summary =
          `workers ${workers}: kill -> DEAD on the last of 4 agents after ${killToDead} ms ` +
          `(per agent ${perAgent.join(", ")} ms; all \`nodes --json\` showed DEAD by ${confirmed} ms)`;
        t.diagnostic(summary);

        // Signal another agent: a graceful leave, then exit 0 within a second. Both signals are
        // covered: SIGTERM with the worker engine, SIGINT (Ctrl-C) inline.
        const leaver = agents[3] as AgentProc;
        const remaining = agents.slice(0, 3);
        const leaveMarks = monitors.slice(0, 3).map((m) => m.mark());
        const signal = workers === 1 ? "SIGTERM" : "SIGINT";
        const termAt = performance.now();
        leaver.signal(signal);
        const status = await waitForExit(leaver, 5_000);
        const exitMs = Math.round(performance.now() - termAt);
        assert.deepEqual(status, { code: 0, signal: null }, `graceful leave exit status; output:\n${leaver.tail()}`);
        assert.ok(exitMs <= 1_000, `the leaving agent took ${exitMs} ms to exit after ${signal} (limit 1000 ms)`);
        const leaveSummary = `workers ${workers}: ${signal} -> exit 0 in ${exitMs} ms`;
        t.diagnostic(leaveSummary);

        await Promise.all(
          remaining.map((a) => pollNodes(group, env, a, (nodes) => nodes.find((n) => n.port === leaver.port)?.status === "LEFT", 10_000)),
        );
        // Let several more protocol periods pass (counted in probes sent), then check nobody
        // turned the leaver into a failure.
        const pingsBefore = await Promise.all(remaining.map((a) => counter(a.rpc, "core.pingsSent")));
        await Promise.all(remaining.map((a, i) => awaitCounter(a.rpc, "core.pingsSent", (pingsBefore[i] as number) + 10, 15_000)));
        for (const [i, a] of remaining.entries()) {
          const nodes = await nodesOf(group, env, a.rpc);
          assert.equal(nodes.find((n) => n.port === leaver.port)?.status, "LEFT", `${a.gossip} still reports the leaver LEFT`);
          const states = monitorNodes(monitors[i] as Proc, leaveMarks[i]).filter((n) => n.port === leaver.port).map((n) => n.state);
          assert.ok(states.includes("left"), `${a.gossip}'s monitor saw the leaver leave: ${states.join(", ")}`);
          assert.ok(!states.includes("dead"), `${a.gossip} reported the gracefully leaving agent dead: ${states.join(", ")}`);
          if (states.some((s) => s !== "left")) t.diagnostic(`${a.gossip} saw the leaver as: ${states.join(" -> ")}`);
        }
      });
    });
  }

  // -------------------------------------------------------------------------------------------
  // h: a leave ends the agent at once, yet every member hears of it

  test("h. SIGTERM and leave --self: peers see LEFT (never DEAD), the leaver's Stream/Monitor end cleanly, exit 0", { timeout: 30_000 }, async (t) => {
    await withSandbox(async (group, home) => {
      const env = cleanEnv(home);
      const gossipPorts = await ports(3, "udp");
      const rpcPorts = await ports(3, "tcp");
      const agents = await Promise.all(
        gossipPorts.map((port, i) =>
          group.agent(
            [
              "--rpc", `127.0.0.1:${rpcPorts[i]}`, "agent", "--bind", "127.0.0.1", "-p", String(port), "--heartbeat", "100",
              ...(i === 0 ? [] : ["--join", `127.0.0.1:${gossipPorts[0]}`]),
            ],
            env,
          ),
        ),
      );
      const [a, b, c] = agents as [AgentProc, AgentProc, AgentProc];
      const all = new Set(gossipPorts);
      await Promise.all(
        agents.map((x) => pollNodes(group, env, x, (nodes) => nodes.length === 3 && nodes.every((n) => n.status === "ALIVE" && all.has(n.port)), 20_000)),
      );

      // Watch a and b; subscribe to c's own Stream and Monitor, which must end normally with it.
      const monitors = [a, b].map((x) => group.tamtam(["--rpc", x.rpc, "monitor", "--json"], env));
      const cMonitor = group.tamtam(["--rpc", c.rpc, "monitor", "--json"], env);
      const cStream = group.tamtam(["--rpc", c.rpc, "stream"], env);
      await Promise.all([a, b, c].map((x) => awaitCounter(x.rpc, "monitor.subscribers", 1)));
      await awaitCounter(c.rpc, "stream.subscribers", 1);
      const marks = monitors.map((m) => m.mark());

      // SIGTERM c: it leaves and exits 0; its subscribers end with status OK (exit 0, nothing on stderr).
      const termAt = performance.now();
      c.signal("SIGTERM");
      const status = await waitForExit(c, 5_000);
      t.diagnostic(`SIGTERM -> exit ${String(status.code)} in ${Math.round(performance.now() - termAt)} ms`);
      assert.deepEqual(status, { code: 0, signal: null }, `exit status; output:\n${c.tail()}`);
      for (const sub of [cMonitor, cStream]) {
        assert.deepEqual(await waitForExit(sub, 5_000), { code: 0, signal: null }, `${sub.label} ended cleanly:\n${sub.tail()}`);
        assert.deepEqual(sub.linesOf("stderr"), [], `${sub.label} wrote on stderr`);
      }
      await Promise.all(monitors.map((m, i) => waitForLine(m, monitorLine(c.port, "left"), 10_000, { stream: "stdout", from: marks[i] })));
      for (const x of [a, b]) {
        const nodes = await nodesOf(group, env, x.rpc);
        assert.equal(nodes.find((n) => n.port === c.port)?.status, "LEFT", `${x.gossip} reports the SIGTERMed agent LEFT`);
      }

      // `leave --self` (LeaveCluster): b answers, leaves and exits 0; a sees it LEFT.
      const markA = (monitors[0] as Proc).mark();
      const left = await group.run(["--rpc", b.rpc, "leave", "--self"], { env });
      assert.deepEqual([left.code, left.stdout, left.stderr], [0, "The agent left the cluster.\n", ""], "leave --self");
      assert.deepEqual(await waitForExit(b, 5_000), { code: 0, signal: null }, `exit status; output:\n${b.tail()}`);
      assert.deepEqual(await waitForExit(monitors[1] as Proc, 5_000), { code: 0, signal: null }, "b's monitor ended cleanly");
      await waitForLine(monitors[0] as Proc, monitorLine(b.port, "left"), 10_000, { stream: "stdout", from: markA });
      const nodes = await nodesOf(group, env, a.rpc);
      assert.deepEqual(
        nodes.map((n) => [n.port, n.status]).sort(),
        [[a.port, "ALIVE"], [b.port, "LEFT"], [c.port, "LEFT"]].sort(),
      );
      // Gracefully left, so never reported failed.
      const states = monitorNodes(monitors[0] as Proc, marks[0]).filter((n) => n.port !== a.port).map((n) => `${n.port} ${n.state}`);
      assert.ok(!states.some((s) => s.endsWith(" dead") || s.endsWith(" suspect")), `a saw: ${states.join(", ")}`);
    });
  });

  // -------------------------------------------------------------------------------------------
  // d: nodes, healthy, monitor

  test("d. nodes, healthy and monitor: table shape, rows, --json, live changes", { timeout: 30_000 }, async () => {
    await withSandbox(async (group, home) => {
      const env = cleanEnv(home);
      const [pa, pb] = (await ports(2, "udp")) as [number, number];
      const [ra, rb] = (await ports(2, "tcp")) as [number, number];
      const agentArgs = (rpc: number, port: number, extra: string[] = []): string[] =>
        ["--rpc", `127.0.0.1:${rpc}`, "agent", "--bind", "127.0.0.1", "-p", String(port), "--heartbeat", "100", ...extra];
      const a = await group.agent(agentArgs(ra, pa), env);
      const via = ["--rpc", a.rpc];

      // Monitors started before the change.
      const table = group.tamtam([...via, "monitor"], env);
      const json = group.tamtam([...via, "monitor", "--json"], env);
      await awaitCounter(a.rpc, "monitor.subscribers", 2);
      const b = await group.agent(agentArgs(rb, pb, ["--join", `127.0.0.1:${pa}`]), env);
      const joinedLine = await waitForLine(json, monitorLine(pb, "alive"), 10_000, { stream: "stdout" });
      const joined = JSON.parse(joinedLine.text) as NodeJson;
      assert.deepEqual([joined.address, joined.ip, joined.status, joined.self], [`127.0.0.1:${pb}`, "127.0.0.1", "ALIVE", false]);
      const row = (port: number, status: string): RegExp => new RegExp(`^\\[127\\.0\\.0\\.1\\]:${port} {2,}\\d+ {2,}-?\\d+ {2,}-?\\d+ {2,}${status}$`);
      await waitForLine(table, (l) => row(pb, "ALIVE").test(l), 10_000, { stream: "stdout" });
      assert.match(table.linesOf("stdout")[0] ?? "", /^NODE {2,}AGE {2,}EMIT # {2,}MILLIS {2,}STATUS$/, "monitor prints the table header first");

      // nodes / healthy tables: header and one aligned row per member.
      const columnStarts = (line: string): number[] => [0, ...[...line.matchAll(/ {2,}(?=\S)/g)].map((m) => (m.index as number) + m[0].length)];
      for (const command of ["nodes", "healthy"] as const) {
        const r = await poll(async () => {
          const out = await group.run([...via, command], { env });
          return out.code === 0 && out.stdout.split("\n").filter((l) => / ALIVE$/.test(l)).length === 2 ? out : false;
        }, 10_000);
        assert.equal(r.stderr, "");
        const lines = r.stdout.trimEnd().split("\n");
        assert.equal(lines.length, 3, `${command}: header and two rows:\n${r.stdout}`);
        assert.match(lines[0] as string, /^NODE {2,}AGE {2,}EMIT # {2,}MILLIS {2,}STATUS$/);
        const [low, high] = pa < pb ? [pa, pb] : [pb, pa]; // rows are sorted by address, then port
        assert.match(lines[1] as string, row(low, "ALIVE"));
        assert.match(lines[2] as string, row(high, "ALIVE"));
        for (const l of lines.slice(1)) assert.deepEqual(columnStarts(l), columnStarts(lines[0] as string), `${command}: columns aligned`);

        const j = await nodesOf(group, env, a.rpc, command);
        assert.deepEqual(
          j.map((n) => [n.address, n.port, n.status, n.state, n.self]).sort(),
          [[`127.0.0.1:${pa}`, pa, "ALIVE", "alive", true], [`127.0.0.1:${pb}`, pb, "ALIVE", "alive", false]].sort(),
        );
        for (const n of j) assert.ok(Number.isInteger(n.ageMs) && Number.isInteger(n.emitCounter) && Number.isInteger(n.pingMillis));
      }

      // A change: b leaves gracefully -> both monitors print it; healthy drops it, nodes shows LEFT.
      const mark = json.mark();
      b.signal("SIGTERM");
      await waitForLine(json, monitorLine(pb, "left"), 10_000, { stream: "stdout", from: mark });
      await waitForLine(table, (l) => row(pb, "LEFT").test(l), 10_000, { stream: "stdout" });
      assert.equal((await waitForExit(b, 5_000)).code, 0);
      const nodes = await nodesOf(group, env, a.rpc);
      assert.equal(nodes.find((n) => n.port === pb)?.status, "LEFT");
      const healthy = await nodesOf(group, env, a.rpc, "healthy");
      assert.deepEqual(healthy.map((n) => n.port), [pa]);
      const healthyTable = await group.run([...via, "healthy"], { env });
      assert.equal(healthyTable.stdout.trimEnd().split("\n").length, 2, healthyTable.stdout);
      const nodesTable = await group.run([...via, "nodes"], { env });
      assert.ok(nodesTable.stdout.split("\n").some((l) => row(pb, "LEFT").test(l)), nodesTable.stdout);
    });
  });

  // -------------------------------------------------------------------------------------------
  // e: configuration precedence

  test("e. config file < TAMTAM_RPC < --rpc, and an agent's port from the YAML file", { timeout: 30_000 }, async () => {
    await withSandbox(async (group, home) => {
      const agentEnv = cleanEnv(home); // an empty HOME: the agents read no config file
      const [pa, pb, pc, pd] = (await ports(4, "udp")) as [number, number, number, number];
      const [ra, rb, rc] = (await ports(3, "tcp")) as [number, number, number];
      const [a, b] = await Promise.all([
        group.agent(["--rpc", `localhost:${ra}`, "agent", "-p", String(pa)], agentEnv),
        group.agent(["--rpc", `localhost:${rb}`, "agent", "-p", String(pb)], agentEnv),
      ]);
      assert.deepEqual([a.gossip, b.gossip], [`127.0.0.1:${pa}`, `127.0.0.1:${pb}`]);

      const userHome = join(home, "user");
      mkdirSync(userHome);
      writeFileSync(join(userHome, ".tamtam.yaml"), `rpc: "localhost:${ra}"\n`);
      const address = async (args: string[], env: Env): Promise<string> => {
        const r = await group.run([...args, "address"], { env });
        assert.equal(r.code, 0, r.stderr);
        return r.stdout;
      };
      const says = (port: number): string => `The local address of the agent is: [127.0.0.1]:${port}\n`;
      const fileOnly = cleanEnv(userHome);
      const fileAndEnv = cleanEnv(userHome, { TAMTAM_RPC: `localhost:${rb}` });
      assert.equal(await address([], fileOnly), says(pa), "~/.tamtam.yaml's rpc is used");
      assert.equal(await address([], fileAndEnv), says(pb), "TAMTAM_RPC overrides the file");
      assert.equal(await address(["--rpc", `localhost:${ra}`], fileAndEnv), says(pa), "--rpc overrides TAMTAM_RPC");
      const other = join(home, "other.yaml");
      writeFileSync(other, `rpc: "localhost:${rb}"\n`);
      assert.equal(await address(["--config", other], fileOnly), says(pb), "--config FILE replaces ~/.tamtam.yaml");

      // An agent whose port (and rpc) come from the YAML file; TAMTAM_PORT would override it.
      const agentHome = join(home, "agent");
      mkdirSync(agentHome);
      writeFileSync(join(agentHome, ".tamtam.yaml"), `port: ${pc}\nrpc: "localhost:${rc}"\nnobanner: true\n`);
      const c = await group.agent(["agent"], cleanEnv(agentHome), { flags: false });
      assert.equal(c.gossip, `127.0.0.1:${pc}`);
      assert.equal(c.rpc, `localhost:${rc}`);
      assert.ok(!c.linesOf("stderr").some((l) => l.includes("|_")), "nobanner: true in the file hides the banner");
      assert.equal(await address([], cleanEnv(agentHome)), says(pc));
      await c.kill();
      const d = await group.agent(["agent"], cleanEnv(agentHome, { TAMTAM_PORT: String(pd) }), { flags: false });
      assert.equal(d.gossip, `127.0.0.1:${pd}`, "TAMTAM_PORT overrides the file's port");
    });
  });

  // -------------------------------------------------------------------------------------------
  // f: bad inputs

  test("f. bad inputs: one line on stderr, non-zero exit, no stack trace", { timeout: 40_000 }, async () => {
    await withSandbox(async (group, home) => {
      const env = cleanEnv(home);
      const [port] = (await ports(1, "udp")) as [number];
      const [rpc, unusedRpc, agentRpc] = (await ports(3, "tcp")) as [number, number, number];
      let silent = await freeUdpPort();
      while (silent === port) silent = await freeUdpPort();
      const a = await group.agent(["--rpc", `localhost:${rpc}`, "agent", "--bind", "127.0.0.1", "-p", String(port)], env);
      const via = ["--rpc", a.rpc];
      const USAGE = 2;
      const UNREACHABLE = 3;
      const cases: Array<{ args: string[]; code?: number; stderr?: RegExp }> = [
        { args: [...via, "join", "300.1.1.1:9999"], code: USAGE, stderr: /300\.1\.1\.1/ },
        { args: [...via, "join", "127.0.0.1:0"], code: USAGE, stderr: /port/ },
        { args: [...via, "join", "127.0.0.1:70000"], code: USAGE, stderr: /port/ },
        { args: [...via, "configure", "heartbeat", "5"], code: USAGE, stderr: /heartbeat/ },
        { args: [...via, "configure", "threshold", "loud"], code: USAGE, stderr: /loud/ },
        { args: [...via, "broadcast", ""], code: USAGE, stderr: /empty/ },
        { args: ["--rpc", `localhost:${unusedRpc}`, "nodes"], code: UNREACHABLE, stderr: /cannot reach the agent/ },
        { args: ["--rpc", `localhost:${unusedRpc}`, "broadcast", "hi"], code: UNREACHABLE, stderr: /cannot reach the agent/ },
        { args: ["--rpc", `127.0.0.1:${agentRpc}`, "agent", "-p", "70000"], code: USAGE, stderr: /70000/ },
        // A live agent, but nothing answers at the target: the agent must say so (not "cannot reach the agent").
        { args: [...via, "join", `127.0.0.1:${silent}`], stderr: /did not answer/ },
      ];
      const results = await Promise.all(cases.map((c) => group.run(c.args, { env, timeoutMs: 30_000 })));
      for (const [i, c] of cases.entries()) {
        const r = results[i] as Awaited<(typeof results)[number]>;
        const what = `tamtam ${c.args.map((w) => (w === "" ? '""' : w)).join(" ")}`;
        assertOneLineError(r, what, c.code);
        if (c.stderr !== undefined) assert.match(r.stderr, c.stderr, what);
      }
      const joinSilent = results.at(-1) as Awaited<(typeof results)[number]>;
      assert.doesNotMatch(joinSilent.stderr, /cannot reach the agent/, "the agent answered; the joined host did not");
      // The agent is still fine and did not add the silent host as alive.
      const nodes = await nodesOf(group, env, a.rpc);
      assert.notEqual(nodes.find((n) => n.port === silent)?.status, "ALIVE");
    });
  });

  // -------------------------------------------------------------------------------------------
  // g: the gRPC wire contract, by hand

  test("g. every original RPC by path with hand-written protobuf bytes", { timeout: 30_000 }, async () => {
    await withSandbox(async (group, home) => {
      const env = cleanEnv(home);
      const [pa, pb] = (await ports(2, "udp")) as [number, number];
      const [ra, rb] = (await ports(2, "tcp")) as [number, number];
      const [a, b] = await Promise.all([
        group.agent(["--rpc", `127.0.0.1:${ra}`, "agent", "--bind", "127.0.0.1", "-p", String(pa), "--heartbeat", "100"], env),
        group.agent(["--rpc", `127.0.0.1:${rb}`, "agent", "--bind", "127.0.0.1", "-p", String(pb), "--heartbeat", "100"], env),
      ]);
      const clientA = new grpc.Client(a.rpc, grpc.credentials.createInsecure());
      const clientB = new grpc.Client(b.rpc, grpc.credentials.createInsecure());
      const calls: grpc.ClientReadableStream<Buffer>[] = [];
      try {
        const EMPTY = Buffer.alloc(0);
        // Response{code: OK} encodes as no bytes at all.
        const OK = EMPTY;

        // LocalAddress(Empty) -> NodeAddress{IP, port}
        const local = decode(await unary(clientA, "LocalAddress", EMPTY));
        assert.deepEqual([str(local, 1), num(local, 2)], ["127.0.0.1", pa]);

        // SetLogThreshold(LogLevel{level: DEBUG = 2})
        const logMark = a.mark();
        assert.deepEqual(await unary(clientA, "SetLogThreshold", Buffer.from([0x08, 0x02])), OK);
        await waitForLine(a, (l) => l.includes("log threshold set to debug"), 5_000, { stream: "stderr", from: logMark });

        // SetHeartbeat(Heartbeat{millis: 5}) is out of range; {millis: 200} is fine.
        await assert.rejects(unary(clientA, "SetHeartbeat", Buffer.from([0x08, 0x05])), (e: grpc.ServiceError) => {
          assert.equal(e.code, grpc.status.INVALID_ARGUMENT, e.message);
          return true;
        });
        assert.deepEqual(await unary(clientA, "SetHeartbeat", Buffer.from([0x08, 0xc8, 0x01])), OK);
        assert.equal(await counter(a.rpc, "core.probeIntervalMs"), 200);

        // Monitor(Empty) -> stream Node, subscribed before the change.
        const monitor = serverStream(clientA, "Monitor", calls);
        await awaitCounter(a.rpc, "monitor.subscribers", 1);

        // Join(NodeAddress{IP: "127.0.0.1", port: pb})
        assert.deepEqual(await unary(clientA, "Join", nodeAddress("127.0.0.1", pb), 30_000), OK);
        const change = await monitor.next((m) => {
          const node = decode(m);
          const addr = decode(bytes(node, 1));
          return num(addr, 2) === pb && num(node, 6) === 1; // Status.ALIVE
        }, 10_000);
        assert.equal(str(decode(bytes(decode(change), 1)), 1), "127.0.0.1");

        // Nodes(Empty) / Healthy(Empty) -> NodeList{nodes: [Node{address, ..., status}]}
        for (const method of ["Nodes", "Healthy"]) {
          const members = await poll(async () => {
            const list = nodeList(await unary(clientA, method, EMPTY));
            return list.length === 2 ? list : false;
          }, 10_000);
          assert.deepEqual(members.map((m) => [m.ip, m.port, m.status]).sort(), [["127.0.0.1", pa, 1], ["127.0.0.1", pb, 1]].sort(), method);
        }
        await poll(async () => nodeList(await unary(clientB, "Nodes", EMPTY)).some((m) => m.port === pa && m.status === 1), 10_000);

        // Ping(NodeAddress)
        assert.deepEqual(await unary(clientA, "Ping", nodeAddress("127.0.0.1", pb), 30_000), OK);

        // Stream(Empty) -> stream Message; Broadcast(Message{bytes}) on the other agent.
        const stream = serverStream(clientA, "Stream", calls);
        await awaitCounter(a.rpc, "stream.subscribers", 1);
        const payload = Buffer.concat([Buffer.from([0x00, 0xff, 0x0a]), Buffer.from("raw bytes from a foreign client")]);
        const message = Buffer.concat([Buffer.from([0x0a, payload.length]), payload]);
        assert.deepEqual(await unary(clientB, "Broadcast", message), OK);
        const delivered = await stream.next((m) => bytes(decode(m), 1).equals(payload), 10_000);
        assert.deepEqual(delivered, message, "Message{bytes} arrives byte for byte");

        // Leave(NodeAddress): drops b from a's table.
        assert.deepEqual(await unary(clientA, "Leave", nodeAddress("127.0.0.1", pb)), OK);
      } finally {
        for (const call of calls) call.cancel();
        clientA.close();
        clientB.close();
      }
    });
  });
});
}

// ---------------------------------------------------------------------------------------------
// Hand-made protobuf, as a client in another language would write it

const identity = (b: Buffer): Buffer => b;

function unary(client: grpc.Client, method: string, request: Buffer, timeoutMs = 10_000): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    client.makeUnaryRequest(
      `/service.TamTam/${method}`,
      identity,
      identity,
      request,
      new grpc.Metadata(),
      { deadline: Date.now() + timeoutMs },
      (error, value) => (error !== null ? reject(error) : resolve(value ?? Buffer.alloc(0))),
    );
  });
}

interface RawStream {
  /** The first message (already received or coming) that satisfies `predicate`. */
  next(predicate: (message: Buffer) => boolean, timeoutMs: number): Promise<Buffer>;
}

function serverStream(client: grpc.Client, method: string, calls: grpc.ClientReadableStream<Buffer>[]): RawStream {
  const call = client.makeServerStreamRequest(`/service.TamTam/${method}`, identity, identity, Buffer.alloc(0), new grpc.Metadata(), {});
  calls.push(call);
  const received: Buffer[] = [];
  let failure: Error | null = null;
  call.on("data", (m: Buffer) => received.push(m));
  call.on("error", (e: Error) => {
    failure = e;
  });
  return {
    next(predicate, timeoutMs) {
      const found = received.find(predicate);
      if (found !== undefined) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          call.off("data", onData);
          reject(new Error(`${method}: no matching message within ${timeoutMs} ms (${received.length} received${failure ? `, ${failure.message}` : ""})`));
        }, timeoutMs);
        const onData = (m: Buffer): void => {
          if (!predicate(m)) return;
          clearTimeout(timer);
          call.off("data", onData);
          resolve(m);
        };
        call.on("data", onData);
      });
    },
  };
}

function varint(n: number): number[] {
  const out: number[] = [];
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return out;
}

/** NodeAddress{IP = 1 (string), port = 2 (uint32)}: 0x0a LEN IP-BYTES 0x10 VARINT. */
function nodeAddress(ip: string, port: number): Buffer {
  const text = Buffer.from(ip, "utf8");
  return Buffer.from([0x0a, text.length, ...text, 0x10, ...varint(port)]);
}

/** Field number -> values (bigint for varints and fixed, Buffer for length-delimited). */
type Fields = Map<number, Array<bigint | Buffer>>;

function decode(buf: Buffer): Fields {
  const fields: Fields = new Map();
  let i = 0;
  const readVarint = (): bigint => {
    let value = 0n;
    let shift = 0n;
    for (;;) {
      if (i >= buf.length) throw new Error("truncated varint");
      const byte = buf[i++] as number;
      value |= BigInt(byte & 0x7f) << shift;
      if ((byte & 0x80) === 0) return value;
      shift += 7n;
    }
  };
  while (i < buf.length) {
    const tag = Number(readVarint());
    const field = tag >>> 3;
    let value: bigint | Buffer;
    switch (tag & 7) {
      case 0:
        value = readVarint();
        break;
      case 1:
        value = buf.readBigUInt64LE(i);
        i += 8;
        break;
      case 2: {
        const length = Number(readVarint());
        value = buf.subarray(i, i + length);
        if (value.length !== length) throw new Error("truncated field");
        i += length;
        break;
      }
      case 5:
        value = BigInt(buf.readUInt32LE(i));
        i += 4;
        break;
      default:
        throw new Error(`unexpected wire type ${tag & 7}`);
    }
    fields.set(field, [...(fields.get(field) ?? []), value]);
  }
  return fields;
}

function bytes(fields: Fields, field: number): Buffer {
  const v = fields.get(field)?.at(-1);
  return Buffer.isBuffer(v) ? v : Buffer.alloc(0);
}

function str(fields: Fields, field: number): string {
  return bytes(fields, field).toString("utf8");
}

function num(fields: Fields, field: number): number {
  const v = fields.get(field)?.at(-1);
  return typeof v === "bigint" ? Number(BigInt.asIntN(64, v)) : 0;
}

/** NodeList{nodes = 1: Node{address = 1: NodeAddress, status = 6}} -> ip, port, status. */
function nodeList(buf: Buffer): Array<{ ip: string; port: number; status: number }> {
  return (decode(buf).get(1) ?? []).map((raw) => {
    const node = decode(raw as Buffer);
    const address = decode(bytes(node, 1));
    return { ip: str(address, 1), port: num(address, 2), status: num(node, 6) };
  });
}
