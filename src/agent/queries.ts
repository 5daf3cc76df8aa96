/**
 * User queries in the agent (`tamtam query`, the Query, ServeQueries and RespondQuery RPCs),
 * on the core's cluster requests of kind QUERY_REQUEST_KIND (bytes in query-codec.ts).
 *
 * QueryResponder answers the queries this agent receives: a program on a ServeQueries stream
 * that serves the query's name (the most recent such stream) gets it and answers through
 * RespondQuery; else the `--query-handler NAME=COMMAND` for the name runs (payload on standard
 * input, the first maxResponseBytes of standard output as the response, killed at the handler
 * timeout; CommandRunner in command-runner.ts); else the answer says "no handler". A stream
 * that does not answer within the handler timeout, a handler that fails or is killed, and a
 * query beyond MAX_WAITING_QUERIES waiting answers are answered as failed, so that the origin
 * never waits out its timeout for this member.
 *
 * runQuery sends a query from this agent: it picks the alive or suspected members whose tags match the
 * filters (and that are named, if any are), asks them through the core (acknowledgements and
 * relays as the caller wants), answers it locally too when this agent matches, and reports each
 * acknowledgement and answer as it arrives, then a summary. The core ends the request as soon as
 * every member asked has answered.
 */

import type { Address } from "../core/address.js";
import { MAX_TARGETS } from "../core/requests.js";
import { MemberState } from "../core/wire/messages.js";
import type { ClusterRequestProgress, Engine } from "../engine/engine.js";
import { ClusterRequestRefusedError } from "../engine/engine.js";
import type { IncomingQuery, QueryEvent, QueryParams } from "../api/agent-api.js";
import { AgentError } from "../api/errors.js";
import { decodeTagMap, matchesTags, type TagFilter } from "../api/tags.js";
import type { CommandRunner } from "./command-runner.js";
import { Fanout, type Subscription } from "./fanout.js";
import {
  decodeAnswer,
  decodeQuery,
  encodeAnswer,
  encodeFailure,
  encodeQuery,
  QUERY_REQUEST_KIND,
  type QueryHandlerSpec,
  queryHeaderBytes,
  queryNameProblem,
  QueryStatus,
} from "./query-codec.js";

/** What `handle` returns for a query answered at once. */
const NOTHING_TO_WITHDRAW = (): void => undefined;

/** Queries received and waiting for their answer at a time; more are answered as failed at once. */
export const MAX_WAITING_QUERIES = 256;
/** ServeQueries streams at a time. */
export const MAX_QUERY_SERVERS = 64;
/**
 * A command killed at its time limit settles within two kill grace periods (command-runner.ts);
 * the answer's own timer waits that much longer, so that the command's outcome is the answer.
 */
const COMMAND_SETTLE_MS = 2_000;
/** Queries one ServeQueries stream may fall behind by before its oldest are dropped (and answered as failed at their timeout). */
const SERVER_QUEUE_ITEMS = 256;

export interface QueryResponderCounters {
  received: number;
  malformed: number;
  answeredByStream: number;
  answeredByCommand: number;
  noHandler: number;
  failed: number;
  busy: number;
  streamTimeouts: number;
  lateResponses: number;
  /** Queries withdrawn before their answer (a local query the engine refused). */
  cancelled: number;
}

interface Waiting {
  readonly timer: NodeJS.Timeout;
  readonly answer: (bytes: Uint8Array) => void;
}

interface Server {
  readonly names: ReadonlySet<string> | null;
  readonly queries: Fanout<IncomingQuery>;
}

/** Answers received queries (see the file header). `answer` delivers the encoded answer. */
export class QueryResponder {
  readonly counters: QueryResponderCounters = {
    received: 0,
    malformed: 0,
    answeredByStream: 0,
    answeredByCommand: 0,
    noHandler: 0,
    failed: 0,
    busy: 0,
    streamTimeouts: 0,
    lateResponses: 0,
    cancelled: 0,
  };
  private readonly handlers: ReadonlyMap<string, string>;
  /** ServeQueries streams, oldest first; one whose program went away (no subscriber) is dropped when met. */
  private readonly servers: Server[] = [];
  private readonly waiting = new Map<bigint, Waiting>();
  private nextId = 1n;

  constructor(
    handlers: readonly QueryHandlerSpec[],
    private readonly runner: CommandRunner,
    private readonly timeoutMs: number,
    /** The largest response payload (bytes): an answer, less its status byte. */
    readonly maxResponseBytes: number,
    private readonly selfKey: string,
  ) {
    this.handlers = new Map(handlers.map((h) => [h.name, h.command]));
  }

  /**
   * Answers one query (`bytes` as sent) from `from`; `answer` gets the encoded answer exactly
   * once, unless the returned function withdraws the query first: its timer stops, its handler
   * command is cancelled (killed if it runs), a stream's late answer is refused, and `answer`
   * is never called.
   */
  handle(from: Address, bytes: Uint8Array, answer: (bytes: Uint8Array) => void): () => void {
    this.counters.received++;
    const query = decodeQuery(bytes);
    if (query === null) {
      this.counters.malformed++;
      answer(encodeFailure(QueryStatus.Failed, "a malformed query"));
      return NOTHING_TO_WITHDRAW;
    }
    const server = this.serverFor(query.name);
    const command = this.handlers.get(query.name);
    if (server === null && command === undefined) {
      this.counters.noHandler++;
      answer(encodeFailure(QueryStatus.NoHandler, `no handler for "${query.name}"`));
      return NOTHING_TO_WITHDRAW;
    }
    if (this.waiting.size >= MAX_WAITING_QUERIES) {
      this.counters.busy++;
      answer(encodeFailure(QueryStatus.Failed, `${MAX_WAITING_QUERIES} queries are waiting for their handlers`));
      return NOTHING_TO_WITHDRAW;
    }
    const id = this.nextId++;
    let answered = false;
    const handlerRun = new AbortController();
    const settle = (): boolean => {
      if (answered) return false;
      answered = true;
      const w = this.waiting.get(id);
      if (w !== undefined) clearTimeout(w.timer);
      this.waiting.delete(id);
      return true;
    };
    const once = (out: Uint8Array): void => {
      if (settle()) answer(out);
    };
    const withdraw = (): void => {
      if (!settle()) return;
      this.counters.cancelled++;
      handlerRun.abort();
    };
    const timer = setTimeout(() => {
      this.counters.streamTimeouts++;
      this.counters.failed++;
      once(encodeFailure(QueryStatus.Failed, `no answer from the handler within ${this.timeoutMs} ms`));
    }, this.timeoutMs + (server === null ? COMMAND_SETTLE_MS : 0));
    timer.unref();
    this.waiting.set(id, { timer, answer: once });
    if (server !== null) {
      server.queries.publish({ id, name: query.name, payload: query.payload, from, timeoutMs: this.timeoutMs, maxResponseBytes: this.maxResponseBytes });
      return withdraw;
    }
    void this.runner
      .run({
        command: command as string,
        stdin: query.payload,
        timeoutMs: this.timeoutMs,
        maxStdoutBytes: this.maxResponseBytes,
        label: `query handler ${query.name}`,
        env: { TAMTAM_QUERY_NAME: query.name, TAMTAM_QUERY_FROM: from.key, TAMTAM_SELF_ADDRESS: this.selfKey },
        signal: handlerRun.signal,
      })
      .then((result) => {
        if (result.outcome === "cancelled") return; // withdrawn: nobody waits for it
        if (result.outcome === "ok") {
          this.counters.answeredByCommand++;
          once(encodeAnswer(QueryStatus.Responded, result.stdout));
          return;
        }
        this.counters.failed++;
        const why =
          result.outcome === "timeout"
            ? `the handler was killed at its time limit of ${this.timeoutMs} ms`
            : result.outcome === "failed"
              ? result.signal !== null
                ? `the handler ended by ${result.signal}`
                : `the handler failed with exit status ${result.exitCode}`
              : `the handler did not run: ${result.problem}`;
        once(encodeFailure(QueryStatus.Failed, why));
      });
    return withdraw;
  }

  /** A program's answer (RespondQuery) to query `id`; false when it is no longer waiting. */
  respond(id: bigint, payload: Uint8Array, error: string): boolean {
    const w = this.waiting.get(id);
    if (w === undefined) {
      this.counters.lateResponses++;
      return false;
    }
    if (error !== "") {
      this.counters.failed++;
      w.answer(encodeFailure(QueryStatus.Failed, error));
    } else {
      this.counters.answeredByStream++;
      w.answer(encodeAnswer(QueryStatus.Responded, payload.subarray(0, this.maxResponseBytes)));
    }
    return true;
  }

  /** A ServeQueries stream for `names` (empty: all); null when MAX_QUERY_SERVERS are open. Closing it stops it. */
  serve(names: readonly string[]): Subscription<IncomingQuery> | null {
    for (const name of names) {
      const problem = queryNameProblem(name);
      if (problem !== null) throw new AgentError("INVALID_QUERY", problem);
    }
    this.dropClosedServers();
    if (this.servers.length >= MAX_QUERY_SERVERS) return null;
    const queries = new Fanout<IncomingQuery>(SERVER_QUEUE_ITEMS, 1);
    const sub = queries.subscribe() as Subscription<IncomingQuery>;
    this.servers.push({ names: names.length === 0 ? null : new Set(names), queries });
    return sub;
  }

  get waitingCount(): number {
    return this.waiting.size;
  }

  /** Ends every stream and answers every waiting query as failed. */
  close(): void {
    for (const s of [...this.servers]) s.queries.closeAll();
    this.servers.length = 0;
    for (const w of [...this.waiting.values()]) w.answer(encodeFailure(QueryStatus.Failed, "the agent is shutting down"));
  }

  private dropClosedServers(): void {
    for (let i = this.servers.length - 1; i >= 0; i--) if ((this.servers[i] as Server).queries.subscriberCount === 0) this.servers.splice(i, 1);
  }

  /** The most recent open stream that serves `name`. */
  private serverFor(name: string): Server | null {
    this.dropClosedServers();
    for (let i = this.servers.length - 1; i >= 0; i--) {
      const s = this.servers[i] as Server;
      if (s.names === null || s.names.has(name)) return s;
    }
    return null;
  }
}

// ---------------------------------------------------------------------------------------------
// Sending a query.

/** Largest query payload for `name` (bytes), given the core's largest request payload. */
export function maxQueryPayloadBytes(maxRequestPayloadBytes: number, name: string): number {
  return Math.max(0, maxRequestPayloadBytes - queryHeaderBytes(name));
}

/**
 * Runs a query; `emit` gets each event (the summary last) and the promise resolves after the
 * summary. Throws AgentError for a query it cannot send (bad name, too large, busy).
 */
export async function runQuery(
  engine: Engine,
  responder: QueryResponder,
  maxRequestPayloadBytes: number,
  params: QueryParams,
  emit: (event: QueryEvent) => void,
): Promise<void> {
  const problem = queryNameProblem(params.name);
  if (problem !== null) throw new AgentError("INVALID_QUERY", problem);
  const max = maxQueryPayloadBytes(maxRequestPayloadBytes, params.name);
  if (params.payload.length > max) {
    throw new AgentError("QUERY_TOO_LARGE", `a query named "${params.name}" carries at most ${max} bytes of payload, got ${params.payload.length}`);
  }
  const startedMs = performance.now();
  const named = new Set(params.nodes.map((a) => a.key));
  // Members are asked while alive or suspected (healthy): under loss a suspected member often
  // is alive, and its answer is as good as any.
  const members = (await engine.members()).filter(
    (m) =>
      (m.state === MemberState.Alive || m.state === MemberState.Suspect) &&
      (named.size === 0 || named.has(m.address.key)) &&
      matchesTags(decodeTagMap(m.tags), params.filters),
  );
  const self = members.find((m) => m.isSelf);
  const targets = members.filter((m) => !m.isSelf).map((m) => m.address);
  // Named members that are not alive or suspected members of ours are asked in vain: they count as missing.
  const unknown = params.nodes.filter((a) => !members.some((m) => m.address.key === a.key));
  if (targets.length > MAX_TARGETS) {
    throw new AgentError("INVALID_QUERY", `a query reaches at most ${MAX_TARGETS} members, ${targets.length} match; narrow it with --tag or --node`);
  }
  const bytes = encodeQuery(params.name, params.payload);
  const acked = new Set<string>();
  let answered = 0;
  let failed = 0;
  const onAnswer = (from: Address, answer: Uint8Array): void => {
    if (!acked.has(from.key)) {
      acked.add(from.key);
      if (params.ack) emit({ type: "ack", from });
    }
    const a = decodeAnswer(answer);
    if (a.status === QueryStatus.Responded) {
      answered++;
      emit({ type: "response", from, payload: a.payload });
    } else {
      failed++;
      emit({ type: "error", from, error: a.reason });
    }
  };
  // This agent answers too when it matches, through its own handlers, within the query's time.
  // If the engine refuses the query, the local answer is withdrawn: its timer stops and its
  // handler is cancelled (killed if it runs).
  let localDone = self === undefined;
  let withdrawLocal = (): void => undefined;
  const local =
    self === undefined
      ? Promise.resolve()
      : new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, params.timeoutMs);
          const withdrawAnswer = responder.handle(self.address, bytes, (answer) => {
            if (localDone) return;
            localDone = true;
            clearTimeout(timer);
            onAnswer(self.address, answer);
            resolve();
          });
          withdrawLocal = () => {
            if (localDone) return;
            localDone = true;
            clearTimeout(timer);
            withdrawAnswer();
            resolve();
          };
        });
  const onProgress = (p: ClusterRequestProgress): void => {
    if (p.type === "ack" && !acked.has(p.from.key)) {
      acked.add(p.from.key);
      emit({ type: "ack", from: p.from });
    } else if (p.type === "answer") {
      onAnswer(p.from, p.payload);
    }
  };
  let missing: readonly Address[] = [];
  if (targets.length > 0) {
    try {
      const result = await engine.request(QUERY_REQUEST_KIND, bytes, params.timeoutMs, {
        targets,
        answer: { ackWanted: params.ack, relayCount: params.relayCount },
        onProgress,
      });
      missing = result.missing;
    } catch (err) {
      withdrawLocal();
      if (err instanceof ClusterRequestRefusedError) {
        throw new AgentError(err.code === "BUSY" ? "ENGINE_BUSY" : err.code === "LEFT" ? "LEFT_CLUSTER" : "INVALID_QUERY", err.message);
      }
      throw err;
    }
  }
  await local;
  if (!localDone && self !== undefined) {
    localDone = true;
    missing = [...missing, self.address];
  }
  missing = [...missing, ...unknown];
  emit({
    type: "summary",
    asked: members.length + unknown.length,
    acknowledged: acked.size,
    answered,
    failed,
    missing,
    elapsedMs: Math.round(performance.now() - startedMs),
  });
}
