/**
 * `tamtam query NAME [PAYLOAD]`: asks the members (those matching `--tag` and `--node`, this
 * agent included) a question through the Query RPC and prints each acknowledgement and answer
 * as it arrives, one line each (one JSON object per line with --json), then a summary line.
 */

import { Command, Option } from "clipanion";
import type { NodeAddress, QueryEvent } from "../../gen/service/tamtam_pb.js";
import { queryNameProblem } from "../../agent/query-codec.js";
import { MAX_RELAY_COUNT } from "../../core/wire/messages.js";
import { CliError, EXIT, TamTamCommand } from "../base-command.js";
import { TAG_FILTER_HELP, tagFilters } from "./nodes.js";

const DEFAULT_TIMEOUT_MS = 5_000;
/** Past the query's own timeout, how long the command waits for the agent's summary. */
const SUMMARY_GRACE_MS = 5_000;

function hostPortOf(a: NodeAddress | undefined): string {
  const ip = a?.IP ?? "?";
  return ip.includes(":") ? `[${ip}]:${a?.port ?? 0}` : `${ip}:${a?.port ?? 0}`;
}

export class QueryCommand extends TamTamCommand {
  static override paths = [["query"]];
  static override usage = Command.Usage({
    description: "ask the cluster's members a question and print their answers",
    details: `
      Sends the query NAME with PAYLOAD (default empty) to every alive or suspected member whose tags match
      \`--tag KEY=REGEXP\` (anchored regular expressions; all must match) and, with \`--node\`,
      only to the members named, this agent included. Each member answers through its handler
      for NAME: a command (\`agent --query-handler NAME=COMMAND\`: PAYLOAD on its standard input,
      its standard output the response) or a program on the ServeQueries RPC. A member without
      one answers that it has none.

      Prints, as they arrive, \`ack from MEMBER\` when a member got the query, \`response from
      MEMBER: TEXT\` for an answer and \`error from MEMBER: REASON\` for a member without a
      handler or whose handler failed; then \`asked N, acknowledged N, answered N, failed N,
      missing N (T ms)\` and one line per member that did not answer. The query ends as soon as
      every member asked has answered, or after \`--timeout\`. Lost datagrams are retried;
      \`--relay N\` also sends each acknowledgement and answer through N other members.

      With \`--json\` every line is a JSON object (\`{"type":"response","from":...,"payload":...}\`,
      the summary \`{"type":"summary",...}\`). Exit status 1 when a member did not answer or
      answered with an error.
    `,
    examples: [
      ["Ask every member for its uptime", "$0 query uptime"],
      ["Only the web servers in Europe, within 2 s", "$0 query load --tag role=web --tag 'dc=eu.*' --timeout 2000"],
      ["One member, answers relayed through two others", "$0 query version --node 10.0.0.7:9999 --relay 2"],
      ["As JSON lines", "$0 query uptime --json | jq -r 'select(.type==\"response\") | .payload'"],
    ],
  });

  name = Option.String({ name: "NAME" });
  payload = Option.String({ name: "PAYLOAD", required: false });
  tag = Option.Array("--tag", { description: `KEY=REGEXP: ${TAG_FILTER_HELP}` });
  node = Option.Array("--node", { description: "ADDR:PORT of a member to ask (repeatable; default every member that matches)" });
  timeout = Option.String("--timeout", { description: `how long to wait for answers (ms, 100..600000; default ${DEFAULT_TIMEOUT_MS})` });
  noAck = Option.Boolean("--no-ack", false, { description: "do not ask members to acknowledge the query" });
  relay = Option.String("--relay", { description: `also send acknowledgements and answers through N other members (0..${MAX_RELAY_COUNT}; default 0)` });
  json = Option.Boolean("--json", false, { description: "print one JSON object per line" });

  async execute(): Promise<number> {
    const problem = queryNameProblem(this.name);
    if (problem !== null) throw new CliError(problem, EXIT.USAGE);
    const timeoutMillis = this.integer("--timeout", this.timeout, 100, 600_000, DEFAULT_TIMEOUT_MS);
    const relay = this.integer("--relay", this.relay, 0, MAX_RELAY_COUNT, 0);
    const tagFilterMap: Record<string, string> = {};
    for (const f of tagFilters(this.tag)) tagFilterMap[f.key] = f.text.slice(f.key.length + 1);
    const nodes = (this.node ?? []).map((text) => {
      const a = this.nodeAddress(text);
      return { IP: a.IP, port: a.port };
    });
    const agent = await this.agent();
    const deadline = AbortSignal.timeout(timeoutMillis + SUMMARY_GRACE_MS);
    const call = agent.query(
      { name: this.name, payload: new TextEncoder().encode(this.payload ?? ""), tagFilters: tagFilterMap, nodes, timeoutMillis, noAck: this.noAck, relay },
      { signal: AbortSignal.any([this.stopSignal, deadline]) },
    );
    const release = this.stopOnSignals();
    let complete = true;
    try {
      for await (const event of call) {
        if (event.type === "summary" && (event.missing.length > 0 || event.failed > 0)) complete = false;
        await this.print(event);
        if (this.stopped) break;
      }
    } catch (error) {
      if (!this.stopped) throw error;
    } finally {
      release();
    }
    return complete ? 0 : EXIT.FAILED;
  }

  private async print(e: QueryEvent): Promise<void> {
    const from = hostPortOf(e.from);
    const text = new TextDecoder().decode(e.payload).replace(/\r?\n$/, "");
    if (this.json) {
      switch (e.type) {
        case "ack":
          return this.line(JSON.stringify({ type: "ack", from }));
        case "response":
          return this.line(JSON.stringify({ type: "response", from, payload: text }));
        case "error":
          return this.line(JSON.stringify({ type: "error", from, error: e.error }));
        default:
          return this.line(
            JSON.stringify({
              type: "summary",
              asked: e.asked,
              acknowledged: e.acknowledged,
              answered: e.answered,
              failed: e.failed,
              missing: e.missing.map(hostPortOf),
              elapsedMs: e.elapsedMillis,
            }),
          );
      }
    }
    switch (e.type) {
      case "ack":
        return this.line(`ack from ${from}`);
      case "response":
        return this.line(`response from ${from}: ${text}`);
      case "error":
        return this.line(`error from ${from}: ${e.error}`);
      default: {
        let out = `asked ${e.asked}, acknowledged ${e.acknowledged}, answered ${e.answered}, failed ${e.failed}, missing ${e.missing.length} (${e.elapsedMillis} ms)\n`;
        for (const m of e.missing) out += `${hostPortOf(m)} did not answer\n`;
        return this.write(out);
      }
    }
  }

  private integer(flag: string, text: string | undefined, min: number, max: number, fallback: number): number {
    if (text === undefined) return fallback;
    const n = Number(text);
    if (!Number.isInteger(n) || n < min || n > max) throw new CliError(`${flag} must be an integer in ${min}..${max}, got "${text}"`, EXIT.USAGE);
    return n;
  }
}
