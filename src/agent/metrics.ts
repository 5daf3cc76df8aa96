/**
 * The Prometheus endpoint (`tamtam agent --metrics-address HOST:PORT`): an HTTP listener that
 * answers `GET /metrics` in the Prometheus text format (prom-client), and the one table that
 * names every metric after the `Stats` counters it is read from.
 *
 * - Every value comes from one `Stats` snapshot (the same counters the Stats RPC returns) taken
 *   per scrape: no second counting path. Counters are `tamtam_*_total`, in base units (seconds,
 *   bytes); labels take values from fixed sets only (member states, protocol error codes, drop
 *   reasons, ...), never from member addresses, so the series count does not grow with the cluster.
 * - node:http is loaded only when the endpoint is asked for, and prom-client only by the first
 *   scrape: agents without `--metrics-address` pay nothing for it, and those with it start as fast.
 * - Bounded: MAX_SCRAPES_IN_FLIGHT scrapes at once (more get 503 and are counted), at most
 *   MAX_CONNECTIONS connections, and header/request time limits. The listener is bound before
 *   the engine starts (a bad or busy address stops the start with one line) and does not keep
 *   the process alive on its own.
 */

import { createRequire } from "node:module";
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import type * as PromClient from "prom-client";
import { PROTOCOL_ERROR_CODES } from "../core/errors.js";
import { ACK_RTT_BUCKETS_MS } from "../core/rtt-histogram.js";
import { MEMBER_STATE_NAMES } from "../core/wire/messages.js";
import { parseHostPort } from "../rpc/grpc-wire.js";

const requireModule = createRequire(import.meta.url);

export const METRICS_PATH = "/metrics";
export const MAX_SCRAPES_IN_FLIGHT = 4;
export const MAX_CONNECTIONS = 64;
const HEADERS_TIMEOUT_MS = 10_000;
const REQUEST_TIMEOUT_MS = 30_000;

type Stats = Readonly<Record<string, number>>;

/** One metric: its name, help, type, optional label and how to read its values from a snapshot. */
interface MetricSpec {
  readonly name: string;
  readonly help: string;
  readonly type: "counter" | "gauge";
  readonly label?: string;
  /** [label value ("" without a label), value] pairs. */
  readonly read: (s: Stats) => Array<readonly [string, number]>;
}

/** The value at `key` (times `scale`), if the snapshot has it. */
const one =
  (key: string, scale = 1) =>
  (s: Stats): Array<readonly [string, number]> =>
    s[key] === undefined ? [] : [["", (s[key] as number) * scale]];

/** One labelled value per entry of `keys` (label value -> Stats key), those the snapshot has. */
const labelled =
  (keys: Readonly<Record<string, string | readonly string[]>>) =>
  (s: Stats): Array<readonly [string, number]> => {
    const out: Array<readonly [string, number]> = [];
    for (const [labelValue, key] of Object.entries(keys)) {
      const parts = typeof key === "string" ? [key] : key;
      if (parts.every((k) => s[k] === undefined)) continue;
      out.push([labelValue, parts.reduce((sum, k) => sum + (s[k] ?? 0), 0)]);
    }
    return out;
  };

/** One labelled value per Stats key under `prefix` (label value: the rest of the key), `zeros` always present. */
const underPrefix =
  (prefix: string, zeros: readonly string[] = []) =>
  (s: Stats): Array<readonly [string, number]> => {
    const values = new Map<string, number>(zeros.map((z) => [z, 0]));
    for (const [key, value] of Object.entries(s)) if (key.startsWith(prefix)) values.set(key.slice(prefix.length), value);
    return [...values];
  };

/** What `/metrics` shows, in order. */
export const METRICS: readonly MetricSpec[] = [
  {
    name: "tamtam_members", type: "gauge", label: "state", help: "Members in the local member table by state, this agent included.",
    read: labelled(Object.fromEntries(Object.values(MEMBER_STATE_NAMES).map((state) => [state, `core.membersByState.${state}`]))),
  },
  { name: "tamtam_health_score", type: "gauge", help: "Lifeguard local health multiplier score (0 is healthy; higher stretches probe timeouts).", read: one("core.healthScore") },
  { name: "tamtam_incarnation", type: "gauge", help: "This agent's incarnation number.", read: one("core.incarnation") },
  { name: "tamtam_probe_interval_seconds", type: "gauge", help: "Protocol period.", read: one("core.probeIntervalMs", 1e-3) },
  { name: "tamtam_probes_total", type: "counter", help: "Failure-detection probes started.", read: one("core.pingsSent") },
  {
    name: "tamtam_probe_outcomes_total", type: "counter", label: "outcome",
    help: "Probes by outcome: acknowledged by the target, acknowledged through a helper (ping-req), or failed.",
    read: labelled({ direct_ack: "core.probesAckedDirect", indirect_ack: "core.probesAckedIndirect", failed: "core.probesFailed" }),
  },
  { name: "tamtam_indirect_probes_total", type: "counter", help: "Ping-req messages sent to helpers after a direct probe went unanswered.", read: one("core.pingReqsSent") },
  {
    name: "tamtam_nacks_total", type: "counter", label: "direction", help: "Lifeguard nacks sent and received.",
    read: labelled({ sent: "core.nacksSent", received: "core.nacksReceived" }),
  },
  { name: "tamtam_suspicions_total", type: "counter", help: "Members this agent started to suspect.", read: one("core.suspicionsRaised") },
  { name: "tamtam_members_declared_dead_total", type: "counter", help: "Suspicions that expired into a dead verdict here.", read: one("core.deadDeclared") },
  { name: "tamtam_refutations_total", type: "counter", help: "Times this agent refuted a suspicion or death of itself.", read: one("core.refutations") },
  {
    name: "tamtam_repeated_pings_total", type: "counter", label: "role",
    help: "Pings repeated within a probe's timeout while unanswered: as the prober, and as a ping-req helper.",
    read: labelled({ prober: "core.pingsRepeated", helper: "core.relayPingsRepeated" }),
  },
  {
    name: "tamtam_expedited_probes_total", type: "counter",
    help: "Probes started beside the round robin: of a suspect another member reported, or of a helper that stayed silent.",
    read: one("core.probesExpedited"),
  },
  {
    name: "tamtam_suspicions_extended_total", type: "counter",
    help: "Suspicions that ran out while the suspect had been heard from since: started afresh instead of a dead verdict.",
    read: one("core.suspicionsExtended"),
  },
  { name: "tamtam_datagrams_sent_total", type: "counter", help: "Datagrams handed to the socket.", read: one("transport.datagramsSent") },
  { name: "tamtam_datagrams_received_total", type: "counter", help: "Datagrams received from the socket.", read: one("transport.datagramsReceived") },
  { name: "tamtam_sent_bytes_total", type: "counter", help: "Bytes of the datagrams handed to the socket.", read: one("transport.bytesSent") },
  { name: "tamtam_received_bytes_total", type: "counter", help: "Bytes of the datagrams received.", read: one("transport.bytesReceived") },
  { name: "tamtam_send_errors_total", type: "counter", help: "Datagrams the socket refused to send.", read: one("transport.sendErrors") },
  {
    name: "tamtam_protocol_errors_total", type: "counter", label: "code", help: "Datagrams the core refused as malformed, by error code.",
    read: underPrefix("core.protocolErrors.", PROTOCOL_ERROR_CODES),
  },
  {
    name: "tamtam_member_list_requests_refused_total", type: "counter", label: "reason",
    help: "Requests for the member list (or cluster requests) not served, by reason.", read: underPrefix("core.requestsRefused."),
  },
  {
    name: "tamtam_sealed_datagrams_dropped_total", type: "counter", label: "reason",
    help: "Datagrams dropped by the envelope (keys, label, replay) before the core, by reason.", read: underPrefix("seal.dropped."),
  },
  {
    name: "tamtam_queue_items", type: "gauge", label: "queue",
    help: "Items waiting: membership updates and broadcasts to piggyback, timers, engine requests, event handler runs.",
    read: labelled({
      updates: "core.queuedUpdates", broadcasts: "core.queuedBroadcasts", timers: "host.timersQueued",
      engine_requests: "engine.pendingRequests", event_handlers: "handlers.queued",
    }),
  },
  { name: "tamtam_updates_dropped_total", type: "counter", help: "Membership updates dropped from a full piggyback queue.", read: one("core.updatesDropped") },
  { name: "tamtam_broadcasts_sent_total", type: "counter", help: "User broadcasts this agent originated.", read: one("core.broadcastsSent") },
  { name: "tamtam_broadcasts_delivered_total", type: "counter", help: "User broadcasts delivered to this agent (once each).", read: one("core.broadcastsDelivered") },
  {
    name: "tamtam_broadcasts_ignored_total", type: "counter", label: "reason", help: "User broadcasts received again or too old to deliver.",
    read: labelled({ duplicate: "core.broadcastsDuplicate", stale: "core.broadcastsStale" }),
  },
  { name: "tamtam_broadcasts_dropped_total", type: "counter", help: "User broadcasts dropped from a full piggyback queue.", read: one("core.broadcastsDropped") },
  { name: "tamtam_broadcasts_repaired_total", type: "counter", help: "User broadcasts first delivered here by broadcast repair (gossip had missed them).", read: one("core.broadcastsRepaired") },
  {
    name: "tamtam_broadcast_repair_requests_total", type: "counter", label: "direction",
    help: "Broadcast repair requests sent and received (from members).",
    read: labelled({ sent: "core.repairRequestsSent", received: "core.repairRequestsReceived" }),
  },
  {
    name: "tamtam_broadcast_repair_given_up_total", type: "counter",
    help: "Missing broadcasts given up on: no member had them after every attempt, or they left the dedupe window.", read: one("core.repairSeqsGivenUp"),
  },
  {
    name: "tamtam_broadcast_repair_store_evictions_total", type: "counter",
    help: "Recent broadcasts evicted from the repair store by its count or byte bound.", read: one("core.repairStoreEvictions"),
  },
  {
    name: "tamtam_stream_dropped_total", type: "counter", label: "stream",
    help: "Items lost by Stream (broadcasts) and Monitor (members) subscribers that fell behind.",
    read: labelled({ broadcasts: "stream.dropped", members: "monitor.dropped" }),
  },
  {
    name: "tamtam_stream_subscribers", type: "gauge", label: "stream", help: "Open Stream (broadcasts) and Monitor (members) subscriptions.",
    read: labelled({ broadcasts: "stream.subscribers", members: "monitor.subscribers" }),
  },
  {
    name: "tamtam_ring_dropped_total", type: "counter", label: "ring",
    help: "Frames dropped between the main thread and the protocol core (full or oversize).",
    read: labelled({ inbound: "drops.datagramsIn", outbound: "drops.datagramsOut", events: "drops.events", commands: "drops.commands" }),
  },
  {
    name: "tamtam_cluster_requests_total", type: "counter", label: "outcome",
    help: "Cluster requests (key operations and queries) this agent sent, by outcome: every member answered, some did not, refused.",
    read: labelled({
      complete: "core.clusterRequests.requestsComplete", incomplete: "core.clusterRequests.requestsIncomplete",
      refused: "core.clusterRequests.requestsRefused",
    }),
  },
  { name: "tamtam_cluster_request_retries_total", type: "counter", help: "Cluster request datagrams sent again to members that had not answered.", read: one("core.clusterRequests.requestRetries") },
  { name: "tamtam_cluster_requests_received_total", type: "counter", help: "Cluster requests from other members.", read: one("core.clusterRequests.requestsReceived") },
  {
    name: "tamtam_cluster_request_answers_total", type: "counter", label: "direction", help: "Answers to cluster requests sent and received.",
    read: labelled({ sent: "core.clusterRequests.answersSent", received: "core.clusterRequests.answersReceived" }),
  },
  {
    name: "tamtam_event_handler_runs_total", type: "counter", label: "outcome",
    help: "Event handler runs by outcome (refused: the queue was full or the agent was stopping).",
    read: labelled({
      ok: "handlers.succeeded", failed: "handlers.failed", timeout: "handlers.timedOut", spawn_error: "handlers.spawnErrors",
      refused: ["handlers.refusedQueueFull", "handlers.refusedStdinTooLarge", "handlers.refusedClosed"],
    }),
  },
  { name: "tamtam_event_handlers_running", type: "gauge", help: "Event handler commands running now.", read: one("handlers.running") },
  {
    name: "tamtam_queries_received_total", type: "counter", label: "outcome",
    help: "Queries this agent received, by how it answered: by a --query-handler command or a ServeQueries program, no handler, failed, busy, malformed.",
    read: labelled({
      command: "queries.answeredByCommand", stream: "queries.answeredByStream", no_handler: "queries.noHandler",
      failed: "queries.failed", busy: "queries.busy", malformed: "queries.malformed",
    }),
  },
  { name: "tamtam_queries_waiting", type: "gauge", help: "Received queries waiting for a ServeQueries program's answer.", read: one("queries.waiting") },
  {
    name: "tamtam_query_handler_runs_total", type: "counter", label: "outcome",
    help: "Query handler command runs by outcome (refused: the queue was full or the agent was stopping).",
    read: labelled({
      ok: "queryHandlers.succeeded", failed: "queryHandlers.failed", timeout: "queryHandlers.timedOut", spawn_error: "queryHandlers.spawnErrors",
      refused: ["queryHandlers.refusedQueueFull", "queryHandlers.refusedStdinTooLarge", "queryHandlers.refusedClosed"],
    }),
  },
  { name: "tamtam_resident_memory_bytes", type: "gauge", help: "Resident set size of the agent process.", read: one("process.rss_bytes") },
];

const ACK_RTT_NAME = "tamtam_ack_rtt_seconds";
const ACK_RTT_HELP = "Round trip of failure-detection probes answered directly by their target.";

export interface MetricsCounters {
  scrapes: number;
  /** Scrapes answered 503: too many at once, or the agent's counters could not be read. */
  scrapesRefused: number;
  /** Requests for other paths or methods. */
  badRequests: number;
}

export interface MetricsEndpoint {
  /** `http://HOST:PORT/metrics`, with the port bound. */
  readonly url: string;
  readonly counters: Readonly<MetricsCounters>;
  /** Starts answering scrapes from `stats` (until then: 503). */
  serve(stats: () => Promise<Stats>): void;
  close(): Promise<void>;
}

/** The `/metrics` text of one Stats snapshot (what a scrape returns). */
export async function renderMetrics(prom: typeof PromClient, stats: Stats): Promise<{ text: string; contentType: string }> {
  const registry = new prom.Registry();
  for (const spec of METRICS) {
    const labelNames = spec.label === undefined ? [] : [spec.label];
    const values = spec.read(stats).filter(([, v]) => Number.isFinite(v) && (spec.type === "gauge" || v >= 0));
    const at = (labelValue: string): PromClient.LabelValues<string> => (spec.label === undefined ? {} : { [spec.label]: labelValue });
    if (spec.type === "counter") {
      const counter = new prom.Counter({ name: spec.name, help: spec.help, labelNames, registers: [registry] });
      for (const [labelValue, value] of values) counter.inc(at(labelValue), value);
    } else {
      const gauge = new prom.Gauge({ name: spec.name, help: spec.help, labelNames, registers: [registry] });
      for (const [labelValue, value] of values) gauge.set(at(labelValue), value);
    }
  }
  registry.registerMetric(ackRttHistogram(prom, stats));
  return { text: await registry.metrics(), contentType: registry.contentType };
}

/**
 * The ack RTT histogram from the core's cumulative bucket counts (core.ackRttMs.*). prom-client
 * histograms only take single observations, so this one reports the snapshot's buckets through
 * the hook prom-client's registry renders histograms with (`getForPromString`, present in the
 * pinned 15.1.3; the endpoint test parses its output).
 */
function ackRttHistogram(prom: typeof PromClient, stats: Stats): PromClient.Histogram<string> {
  const buckets = ACK_RTT_BUCKETS_MS.map((ms) => ms / 1000);
  const values = [
    ...ACK_RTT_BUCKETS_MS.map((ms, i) => ({ labels: { le: buckets[i] as number }, value: stats[`core.ackRttMs.le.${ms}`] ?? 0, metricName: `${ACK_RTT_NAME}_bucket` })),
    { labels: { le: "+Inf" }, value: stats["core.ackRttMs.count"] ?? 0, metricName: `${ACK_RTT_NAME}_bucket` },
    { labels: {}, value: (stats["core.ackRttMs.sum"] ?? 0) / 1000, metricName: `${ACK_RTT_NAME}_sum` },
    { labels: {}, value: stats["core.ackRttMs.count"] ?? 0, metricName: `${ACK_RTT_NAME}_count` },
  ];
  const histogram = new prom.Histogram({ name: ACK_RTT_NAME, help: ACK_RTT_HELP, buckets, registers: [] });
  Object.defineProperty(histogram, "getForPromString", {
    value: async () => ({ name: ACK_RTT_NAME, help: ACK_RTT_HELP, type: "histogram", values, aggregator: "sum" }),
  });
  return histogram;
}

/**
 * Binds the endpoint at `address` (HOST:PORT; port 0 takes a free one). Rejects with the
 * listener's error (EADDRINUSE, EADDRNOTAVAIL, ...).
 */
export async function listenMetrics(address: string): Promise<MetricsEndpoint> {
  const where = parseHostPort(address);
  if (where === null) throw new Error("must be HOST:PORT (like 127.0.0.1:9100 or [::1]:9100)");
  const http = requireModule("node:http") as typeof import("node:http");
  // prom-client is loaded by the first scrape, not at start-up (it costs start-up time).
  let prom: typeof PromClient | null = null;
  const counters: MetricsCounters = { scrapes: 0, scrapesRefused: 0, badRequests: 0 };
  let source: (() => Promise<Stats>) | null = null;
  let inFlight = 0;

  const answer = (res: ServerResponse, status: number, body: string, contentType = "text/plain; charset=utf-8"): void => {
    res.writeHead(status, { "content-type": contentType, "content-length": Buffer.byteLength(body) });
    res.end(body);
  };
  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    const path = (req.url ?? "").split("?")[0];
    if (path !== METRICS_PATH) {
      counters.badRequests++;
      answer(res, 404, `not found: metrics are at ${METRICS_PATH}\n`);
      return;
    }
    if (req.method !== "GET" && req.method !== "HEAD") {
      counters.badRequests++;
      res.setHeader("allow", "GET, HEAD");
      answer(res, 405, "method not allowed\n");
      return;
    }
    if (source === null || inFlight >= MAX_SCRAPES_IN_FLIGHT) {
      counters.scrapesRefused++;
      answer(res, 503, source === null ? "the agent is starting\n" : "too many scrapes at once\n");
      return;
    }
    inFlight++;
    const read = source;
    void (async () => {
      try {
        prom ??= requireModule("prom-client") as typeof PromClient;
        const { text, contentType } = await renderMetrics(prom, await read());
        counters.scrapes++;
        answer(res, 200, req.method === "HEAD" ? "" : text, contentType);
      } catch (err) {
        counters.scrapesRefused++;
        answer(res, 503, `cannot read the agent's counters: ${(err as Error).message.split("\n")[0] ?? ""}\n`);
      } finally {
        inFlight--;
      }
    })();
  };

  const server: Server = http.createServer({ requestTimeout: REQUEST_TIMEOUT_MS, headersTimeout: HEADERS_TIMEOUT_MS }, onRequest);
  server.maxConnections = MAX_CONNECTIONS;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen({ host: where.host, port: where.port }, () => {
      server.off("error", reject);
      resolve();
    });
  });
  server.on("error", () => undefined); // after listening, errors concern single connections
  server.unref();
  const bound = server.address();
  const port = typeof bound === "object" && bound !== null ? bound.port : where.port;
  const host = where.host.includes(":") ? `[${where.host}]` : where.host;
  return {
    url: `http://${host}:${port}${METRICS_PATH}`,
    counters,
    serve(stats) {
      source = stats;
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
