/**
 * Queries in the real protocol core (src/core/requests.ts) on five virtual members in virtual
 * time (test/helpers/cluster.ts, 1 ms links), with datagram loss drawn from a seeded PRNG: how
 * many queries collect every member's answer within their timeout, how long they take, and how
 * many datagrams they cost, for relay counts 0, 1 and 2, at 0 % and 20 % loss, against the
 * query's timeout (which a query that cannot end early always waits out). Deterministic: the
 * same seed gives the same figures.
 *
 *   node dist/bench/queries.bench.js [--queries 500] [--timeout 2000] [--seed 1] [--json]
 */

import { Prng } from "../src/core/prng.js";
import { MessageType } from "../src/core/wire/messages.js";
import type { CoreEvent } from "../src/core/runtime.js";
import { ManualCluster } from "../test/helpers/cluster.js";
import { benchArgs } from "./lib.js";

interface Args {
  queries: number;
  timeoutMs: number;
  seed: number;
  json: boolean;
}

function parseArgs(argv: string[]): Args {
  const args: Args = { queries: 500, timeoutMs: 2000, seed: 1, json: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = (): number => Number(argv[++i]);
    if (a === "--queries") args.queries = next();
    else if (a === "--timeout") args.timeoutMs = next();
    else if (a === "--seed") args.seed = next();
    else if (a === "--json") args.json = true;
  }
  return args;
}

interface Row {
  readonly loss: number;
  readonly relay: number;
  readonly queries: number;
  /** Queries that got every target's answer. */
  readonly complete: number;
  /** Answers collected over answers wanted. */
  readonly answerRate: number;
  readonly medianMs: number;
  readonly p95Ms: number;
  /** Median time over the timeout (what a query that waits out its timeout takes). */
  readonly medianOverTimeout: number;
  readonly datagramsPerQuery: number;
}

const KIND = 2;
const QUERY_DATAGRAMS = new Set<number>([MessageType.Request, MessageType.Response, MessageType.RequestAck, MessageType.Relay, MessageType.Relayed]);

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? NaN;
}

function measure(args: Args, loss: number, relay: number): Row {
  const c = new ManualCluster({ size: 5, seed: args.seed });
  c.bootstrap();
  const rng = new Prng(args.seed * 7919 + relay * 31 + Math.round(loss * 100));
  // Loss on every datagram from now on (probes and gossip too, as on a lossy network).
  c.addDropRule(() => rng.nextInt(1_000_000) < loss * 1_000_000);
  const targets = [1, 2, 3, 4].map((i) => c.address(i));
  const answeredHandles = new Set<string>();
  let seen = 0;
  const answerNew = (): void => {
    const log = c.eventLog;
    for (; seen < log.length; seen++) {
      const e = log[seen] as { node: string; event: CoreEvent };
      if (e.event.type !== "request") continue;
      const i = [0, 1, 2, 3, 4].find((n) => c.key(n) === e.node) as number;
      const id = `${i}/${e.event.handle}`;
      if (answeredHandles.has(id)) continue;
      answeredHandles.add(id);
      const handle = e.event.handle;
      c.call(c.slot(i), () => c.node(i).clusterRequests.answer(handle, Uint8Array.of(i), c.rt(i)));
    }
  };
  const times: number[] = [];
  let complete = 0;
  let answers = 0;
  let wanted = 0;
  let datagrams = 0;
  for (let q = 1; q <= args.queries; q++) {
    const t0 = c.nowMs;
    const sentBefore = c.sentLog.length;
    const outcome = c.call(c.slot(0), () =>
      c.node(0).clusterRequests.start(c.nowMs, KIND, Uint8Array.of(q & 0xff), args.timeoutMs, q, c.rt(0), { targets, answer: { ackWanted: true, relayCount: relay } }),
    );
    if (!outcome.ok) throw new Error(`query ${q} refused: ${outcome.message}`);
    wanted += outcome.targets;
    let done: Extract<CoreEvent, { type: "requestDone" }> | undefined;
    c.runUntil(() => {
      answerNew();
      for (let k = c.eventLog.length - 1; k >= 0 && done === undefined; k--) {
        const ev = c.eventLog[k]?.event;
        if (ev?.type === "requestDone" && ev.token === q) done = ev;
        if (ev?.type === "requestDone" && ev.token < q) break;
      }
      return done !== undefined;
    }, args.timeoutMs + 100);
    if (done === undefined) throw new Error(`query ${q} never ended`);
    times.push(c.nowMs - t0);
    if (done.missing.length === 0) complete++;
    answers += outcome.targets - done.missing.length;
    datagrams += c.sentLog.slice(sentBefore).filter((d) => d.decoded !== null && d.decoded !== undefined && QUERY_DATAGRAMS.has(d.decoded.body.type)).length;
    // The next query starts a little later, as a person would ask again.
    c.advanceBy(50);
  }
  times.sort((a, b) => a - b);
  const median = percentile(times, 0.5);
  return {
    loss,
    relay,
    queries: args.queries,
    complete,
    answerRate: Math.round((answers / wanted) * 1e6) / 1e6,
    medianMs: median,
    p95Ms: percentile(times, 0.95),
    medianOverTimeout: Math.round((median / args.timeoutMs) * 1e4) / 1e4,
    datagramsPerQuery: Math.round((datagrams / args.queries) * 10) / 10,
  };
}

const args = parseArgs(benchArgs(import.meta.url));
const rows: Row[] = [];
for (const loss of [0, 0.2]) for (const relay of [0, 1, 2]) rows.push(measure(args, loss, relay));
if (args.json) {
  process.stdout.write(`${JSON.stringify({ args, rows })}\n`);
} else {
  process.stdout.write(`queries from one of 5 members to the 4 others, timeout ${args.timeoutMs} ms, ${args.queries} per row, seed ${args.seed}\n`);
  process.stdout.write("loss  relay  complete      answers    median ms  p95 ms  median/timeout  datagrams/query\n");
  for (const r of rows) {
    process.stdout.write(
      `${`${r.loss * 100} %`.padEnd(6)}${String(r.relay).padEnd(7)}${`${r.complete}/${r.queries}`.padEnd(14)}${String(r.answerRate).padEnd(11)}` +
        `${String(r.medianMs).padEnd(11)}${String(r.p95Ms).padEnd(8)}${String(r.medianOverTimeout).padEnd(16)}${r.datagramsPerQuery}\n`,
    );
  }
}
