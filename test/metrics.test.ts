/**
 * test/metrics.test.ts: the Prometheus endpoint (`--metrics-address`, src/agent/metrics.ts).
 *
 * - The strict exposition parser of the tests (test/helpers/prometheus-text.ts) rejects what
 *   Prometheus rejects, so that the other checks can fail.
 * - A Stats snapshot renders as valid text: `tamtam_` names, HELP and TYPE for each, `_total`
 *   counters only, base units (seconds), a cumulative ack RTT histogram, label values from fixed
 *   sets (the series count does not grow with the cluster).
 * - Real agents: the endpoint parses, and its counters move with real traffic (probes, datagrams,
 *   bytes, a broadcast, a failure); other paths and methods are refused; a bad or busy address is
 *   one line at start and a non-zero exit.
 */

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { createServer, type Server } from "node:net";
import { createRequire } from "node:module";
import type * as PromClient from "prom-client";
import { METRICS, renderMetrics } from "../src/agent/metrics.js";
import { ACK_RTT_BUCKETS_MS } from "../src/core/rtt-histogram.js";
import { cleanEnv, freeTcpPort, freeUdpPort, logMessages, poll, ProcessGroup, removeDir, tempDir, type AgentProc } from "./helpers/processes.js";
import { type MetricFamily, parsePrometheusText, sampleValue } from "./helpers/prometheus-text.js";

const prom = createRequire(import.meta.url)("prom-client") as typeof PromClient;

/** A snapshot as an agent's Stats returns it (with `alive` live members). */
function snapshot(alive: number): Record<string, number> {
  const s: Record<string, number> = {
    "core.membersByState.alive": alive, "core.membersByState.suspect": 1, "core.membersByState.dead": 2, "core.membersByState.left": 0,
    "core.healthScore": 3, "core.incarnation": 1796411174, "core.probeIntervalMs": 500,
    "core.pingsSent": 40, "core.probesAckedDirect": 30, "core.probesAckedIndirect": 6, "core.probesFailed": 3,
    "core.pingReqsSent": 27, "core.nacksSent": 1, "core.nacksReceived": 2,
    "core.suspicionsRaised": 4, "core.deadDeclared": 2, "core.refutations": 1,
    "transport.datagramsSent": 100, "transport.datagramsReceived": 90, "transport.bytesSent": 12_345, "transport.bytesReceived": 11_111,
    "transport.sendErrors": 0, "core.protocolErrors.TRUNCATED": 5, "core.requestsRefused.NO_COOKIE": 2,
    "core.queuedUpdates": 7, "core.queuedBroadcasts": 1, "host.timersQueued": 3, "engine.pendingRequests": 0,
    "core.updatesDropped": 0, "core.broadcastsSent": 2, "core.broadcastsDelivered": 5, "core.broadcastsDuplicate": 9, "core.broadcastsStale": 0,
    "core.broadcastsDropped": 0, "stream.dropped": 4, "monitor.dropped": 0, "stream.subscribers": 1, "monitor.subscribers": 0,
    "drops.datagramsIn": 0, "drops.datagramsOut": 0, "drops.events": 0, "drops.commands": 0,
    "core.clusterRequests.requestsComplete": 1, "core.clusterRequests.requestsIncomplete": 1, "core.clusterRequests.requestsRefused": 0,
    "core.clusterRequests.requestRetries": 2, "core.clusterRequests.requestsReceived": 3, "core.clusterRequests.answersSent": 3,
    "core.clusterRequests.answersReceived": 2, "process.rss_bytes": 60_000_000,
    "queries.answeredByCommand": 4, "queries.answeredByStream": 1, "queries.noHandler": 2, "queries.failed": 1, "queries.busy": 0,
    "queries.malformed": 0, "queries.waiting": 1, "queryHandlers.succeeded": 3, "queryHandlers.failed": 0, "queryHandlers.timedOut": 1,
    "queryHandlers.spawnErrors": 0, "queryHandlers.refusedQueueFull": 0, "queryHandlers.refusedStdinTooLarge": 0, "queryHandlers.refusedClosed": 0,
    "core.ackRttMs.count": 30, "core.ackRttMs.sum": 45,
  };
  // 10 round trips of 0.3 ms, 20 of 2 ms (cumulative counts per bound, as the core reports them).
  for (const ms of ACK_RTT_BUCKETS_MS) s[`core.ackRttMs.le.${ms}`] = ms < 0.3 ? 0 : ms < 2 ? 10 : 30;
  return s;
}

async function families(stats: Record<string, number>): Promise<Map<string, MetricFamily>> {
  return parsePrometheusText((await renderMetrics(prom, stats)).text);
}

describe("Prometheus text", () => {
  test("the test parser refuses malformed expositions", () => {
    const bad = [
      "tamtam_x 1", // no final newline
      "tamtam-x 1\n",
      "tamtam_x{a=\"b\" 1\n",
      'tamtam_x{a="b\\t"} 1\n',
      "tamtam_x one\n",
      "tamtam_x 1\ntamtam_x 2\n",
      "tamtam_x 1\n# TYPE tamtam_x counter\n",
      "# TYPE tamtam_x counter\ntamtam_x -1\n",
      "# TYPE tamtam_x gauge\n# TYPE tamtam_x gauge\n",
      "tamtam_a 1\ntamtam_b 1\ntamtam_a{x=\"1\"} 1\n",
      '# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="2"} 1\nh_bucket{le="+Inf"} 2\nh_sum 1\nh_count 2\n',
      '# TYPE h histogram\nh_bucket{le="1"} 2\nh_sum 1\nh_count 2\n',
      '# TYPE h histogram\nh_bucket{le="1"} 1\nh_bucket{le="+Inf"} 2\nh_sum 1\nh_count 3\n',
    ];
    for (const text of bad) assert.throws(() => parsePrometheusText(text), Error, JSON.stringify(text));
    const good = parsePrometheusText('# HELP g a \\\\ help\n# TYPE g gauge\ng{a="x\\"y\\n"} -1.5e3\ng{a="z"} NaN 1700000000000\n');
    assert.equal(good.get("g")?.help, "a \\ help");
    assert.equal(sampleValue(good, "g", { a: 'x"y\n' }), -1500);
  });

  test("a snapshot renders as valid text: tamtam_ names, HELP and TYPE, _total counters, base units", async () => {
    const f = await families(snapshot(3));
    assert.ok(f.size >= METRICS.length, `${f.size} families`);
    for (const family of f.values()) {
      assert.match(family.name, /^tamtam_[a-z_]+$/);
      assert.ok(family.help !== null && family.help.length > 10, `${family.name} has help`);
      assert.notEqual(family.type, "untyped", `${family.name} has a TYPE`);
      if (family.type === "counter") assert.match(family.name, /_total$/);
      else assert.doesNotMatch(family.name, /_total$/);
      assert.doesNotMatch(family.name, /_ms$|_millis|_kb|_mb/, "base units");
    }
    assert.equal(sampleValue(f, "tamtam_members", { state: "alive" }), 3);
    assert.equal(sampleValue(f, "tamtam_members", { state: "dead" }), 2);
    assert.equal(sampleValue(f, "tamtam_probe_interval_seconds"), 0.5);
    assert.equal(sampleValue(f, "tamtam_health_score"), 3);
    assert.equal(sampleValue(f, "tamtam_probe_outcomes_total", { outcome: "indirect_ack" }), 6);
    assert.equal(sampleValue(f, "tamtam_sent_bytes_total"), 12_345);
    assert.equal(sampleValue(f, "tamtam_protocol_errors_total", { code: "TRUNCATED" }), 5);
    assert.equal(sampleValue(f, "tamtam_protocol_errors_total", { code: "BAD_MAGIC" }), 0, "every code, seen or not");
    assert.equal(sampleValue(f, "tamtam_queue_items", { queue: "updates" }), 7);
    assert.equal(sampleValue(f, "tamtam_stream_dropped_total", { stream: "broadcasts" }), 4);
    assert.equal(sampleValue(f, "tamtam_cluster_requests_total", { outcome: "incomplete" }), 1);
    assert.equal(sampleValue(f, "tamtam_queries_received_total", { outcome: "command" }), 4);
    assert.equal(sampleValue(f, "tamtam_queries_received_total", { outcome: "no_handler" }), 2);
    assert.equal(sampleValue(f, "tamtam_queries_waiting"), 1);
    assert.equal(sampleValue(f, "tamtam_query_handler_runs_total", { outcome: "timeout" }), 1);
    // The ack RTT histogram, in seconds, cumulative.
    assert.equal(f.get("tamtam_ack_rtt_seconds")?.type, "histogram");
    assert.equal(sampleValue(f, "tamtam_ack_rtt_seconds_bucket", { le: "0.00025" }), 0);
    assert.equal(sampleValue(f, "tamtam_ack_rtt_seconds_bucket", { le: "0.0005" }), 10);
    assert.equal(sampleValue(f, "tamtam_ack_rtt_seconds_bucket", { le: "0.0025" }), 30);
    assert.equal(sampleValue(f, "tamtam_ack_rtt_seconds_bucket", { le: "+Inf" }), 30);
    assert.equal(sampleValue(f, "tamtam_ack_rtt_seconds_sum"), 0.045);
    assert.equal(sampleValue(f, "tamtam_ack_rtt_seconds_count"), 30);
    // Families of parts that are off (no event handlers, no sealing) have no series.
    assert.equal(f.get("tamtam_event_handler_runs_total")?.samples.length, 0);
    assert.equal(f.get("tamtam_sealed_datagrams_dropped_total")?.samples.length, 0);
  });

  test("label values come from fixed sets: the series do not grow with the cluster", async () => {
    const small = await families(snapshot(3));
    const large = await families(snapshot(50_000));
    const series = (f: Map<string, MetricFamily>): string[] => [...f.values()].flatMap((x) => x.samples.map((s) => `${s.name}${JSON.stringify(s.labels)}`));
    assert.deepEqual(series(large), series(small));
    for (const family of small.values()) {
      for (const s of family.samples) for (const v of Object.values(s.labels)) assert.match(v, /^[A-Za-z_+.0-9-]+$/, `${s.name} label ${v}`);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Real agents

async function scrape(url: string): Promise<Map<string, MetricFamily>> {
  const res = await fetch(url);
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("content-type"), "text/plain; version=0.0.4; charset=utf-8");
  return parsePrometheusText(await res.text());
}

const value = (f: Map<string, MetricFamily>, name: string, labels: Record<string, string> = {}): number => {
  const v = sampleValue(f, name, labels);
  assert.ok(v !== undefined, `${name}${JSON.stringify(labels)} is missing`);
  return v;
};

function metricsUrl(agent: AgentProc): string {
  const line = logMessages(agent).find((m) => m.startsWith("Serving Prometheus metrics at "));
  assert.ok(line !== undefined, "the agent logs where it serves metrics");
  return line.slice("Serving Prometheus metrics at ".length);
}

describe("the /metrics endpoint of a real agent", () => {
  test("parses, and its counters move with real traffic", { timeout: 60_000 }, async () => {
    const group = new ProcessGroup();
    const home = tempDir();
    try {
      const env = cleanEnv(home);
      const [pa, pb] = [await freeUdpPort(), await freeUdpPort()];
      const [ra, rb] = [await freeTcpPort(), await freeTcpPort()];
      const a = await group.agent(
        ["--rpc", `127.0.0.1:${ra}`, "agent", "--bind", "127.0.0.1", "-p", String(pa), "--heartbeat", "100", "--metrics-address", "127.0.0.1:0"],
        env,
      );
      const url = metricsUrl(a);
      assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
      const first = await scrape(url);
      assert.equal(value(first, "tamtam_members", { state: "alive" }), 1);
      const b = await group.agent(
        ["--rpc", `127.0.0.1:${rb}`, "agent", "--bind", "127.0.0.1", "-p", String(pb), "--heartbeat", "100", "--join", a.gossip],
        env,
      );
      // Both alive, and a few probes answered.
      const joined = await poll(async () => {
        const f = await scrape(url);
        return value(f, "tamtam_members", { state: "alive" }) === 2 && value(f, "tamtam_ack_rtt_seconds_count") >= 3 ? f : null;
      }, 20_000);
      for (const name of ["tamtam_datagrams_sent_total", "tamtam_datagrams_received_total", "tamtam_sent_bytes_total", "tamtam_received_bytes_total", "tamtam_probes_total"]) {
        assert.ok(value(joined, name) > value(first, name), `${name} grew with traffic`);
      }
      assert.ok(value(joined, "tamtam_probe_outcomes_total", { outcome: "direct_ack" }) >= 3);
      assert.ok(value(joined, "tamtam_ack_rtt_seconds_sum") > 0);
      assert.ok(value(joined, "tamtam_ack_rtt_seconds_bucket", { le: "+Inf" }) === value(joined, "tamtam_ack_rtt_seconds_count"));

      // A broadcast from b is delivered to a.
      const sent = await group.run(["--rpc", b.rpc, "broadcast", "metrics test"], { env });
      assert.equal(sent.code, 0, sent.stderr);
      await poll(async () => value(await scrape(url), "tamtam_broadcasts_delivered_total") === 1, 10_000);

      // b fails: a suspects it, declares it dead, and its probes of b fail.
      await b.kill();
      const failed = await poll(async () => {
        const f = await scrape(url);
        return value(f, "tamtam_members", { state: "dead" }) === 1 ? f : null;
      }, 20_000);
      assert.ok(value(failed, "tamtam_suspicions_total") >= 1);
      assert.ok(value(failed, "tamtam_members_declared_dead_total") >= 1);
      assert.ok(value(failed, "tamtam_probe_outcomes_total", { outcome: "failed" }) >= 1);

      // Other paths and methods are refused; HEAD works.
      const base = url.replace(/\/metrics$/, "");
      assert.equal((await fetch(`${base}/`)).status, 404);
      assert.equal((await fetch(url, { method: "POST" })).status, 405);
      assert.equal((await fetch(url, { method: "HEAD" })).status, 200);
      assert.equal((await fetch(`${url}?x=1`)).status, 200);
    } finally {
      await group.killAll();
      removeDir(home);
    }
  });

  test("a bad or busy address is one line at start and a non-zero exit", { timeout: 30_000 }, async () => {
    const group = new ProcessGroup();
    const home = tempDir();
    let busy: Server | null = null;
    try {
      const env = cleanEnv(home);
      const base = async (): Promise<string[]> => ["--rpc", `127.0.0.1:${await freeTcpPort()}`, "agent", "--bind", "127.0.0.1", "-p", String(await freeUdpPort()), "--nobanner"];
      const bad = await group.run([...(await base()), "--metrics-address", "9100"], { env });
      assert.equal(bad.code, 2);
      assert.equal(bad.stderr.trim().split("\n").length, 1, bad.stderr);
      assert.match(bad.stderr, /--metrics-address must be HOST:PORT/);

      const port = await freeTcpPort();
      const server = createServer();
      busy = server;
      await new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve));
      const taken = await group.run([...(await base()), "--metrics-address", `127.0.0.1:${port}`], { env });
      assert.equal(taken.code, 1);
      assert.equal(taken.stderr.trim().split("\n").length, 1, taken.stderr);
      assert.match(taken.stderr, new RegExp(`^tamtam: cannot serve metrics at 127\\.0\\.0\\.1:${port}: address already in use`));

      const foreign = await group.run([...(await base()), "--metrics-address", "192.0.2.1:9100"], { env });
      assert.equal(foreign.code, 1);
      assert.match(foreign.stderr, /^tamtam: cannot serve metrics at 192\.0\.2\.1:9100: no such address on this machine/);
    } finally {
      busy?.close();
      await group.killAll();
      removeDir(home);
    }
  });
});
