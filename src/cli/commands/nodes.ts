/**
 * `tamtam nodes`: the table of every node the agent knows (or `{"nodes":[...]}` with --json),
 * optionally only those whose tags match `--tag KEY=REGEXP` filters. Also the shared
 * implementation of `healthy`, which lists through another RPC.
 */

import { Command, Option } from "clipanion";
import type { NodeList } from "../../gen/service/tamtam_pb.js";
import { parseTagFilter, type TagFilter } from "../../api/tags.js";
import { CliError, EXIT, TamTamCommand, type AgentClient } from "../base-command.js";

/** `--tag KEY=REGEXP` filters from the command line; a bad one is a usage error. */
export function tagFilters(texts: readonly string[] | undefined): TagFilter[] {
  return (texts ?? []).map((text) => {
    const f = parseTagFilter(text);
    if (typeof f === "string") throw new CliError(`--tag: ${f}`, EXIT.USAGE);
    return f;
  });
}

export const TAG_FILTER_HELP = "only members whose tag KEY matches the regular expression (anchored: the whole value); repeatable, all must match";

export abstract class NodeListCommand extends TamTamCommand {
  json = Option.Boolean("--json", false, { description: "print one JSON object instead of a table" });
  tag = Option.Array("--tag", { description: `KEY=REGEXP: ${TAG_FILTER_HELP}` });

  /** The RPC that lists the nodes. */
  protected abstract list(agent: AgentClient): Promise<NodeList>;

  async execute(): Promise<number> {
    const filters = tagFilters(this.tag);
    const list = await this.list(await this.agent());
    const { NODE_COLUMNS, NODE_COLUMNS_WITH_TAGS, columnWidths, filterNodes, hasTags, nodeCells, nodeJson, sortNodes, statusStyle, tableLine } =
      await import("../agent-client.js");
    const nodes = filterNodes(sortNodes(list.nodes), filters);
    if (this.json) {
      await this.line(JSON.stringify({ nodes: nodes.map(nodeJson) }));
      return 0;
    }
    const withTags = nodes.some(hasTags);
    const columns = withTags ? NODE_COLUMNS_WITH_TAGS : NODE_COLUMNS;
    const rows = nodes.map((node) => nodeCells(node, withTags));
    const widths = columnWidths(rows, [], columns);
    let text = `${this.paint(tableLine(columns, widths), "bold")}\n`;
    for (const row of rows) text += `${tableLine(row, widths, (s) => this.paint(s, statusStyle(s)))}\n`;
    await this.write(text);
    return 0;
  }
}

export class NodesCommand extends NodeListCommand {
  static override paths = [["nodes"]];
  static override usage = Command.Usage({
    description: "list all nodes known to the agent",
    details: `
      Prints a table of every node the agent knows, whatever its status, with the columns
      NODE (address), AGE (ms since its status last changed), EMIT # (how many more times the
      latest update about it will be gossiped), MILLIS (last ping round trip in ms; -1 no data)
      and STATUS (ALIVE, SUSPECTED, DEAD, LEFT); when any node shown has tags, a last column
      TAGS (\`role=web,dc=eu\`).

      \`--tag KEY=REGEXP\` (repeatable) shows only the nodes whose tag KEY exists and matches the
      regular expression as a whole (\`--tag dc=eu.*\` matches \`eu-west\`, not \`us-eu\`); with
      several, all must match.

      With \`--json\` it prints one object \`{"nodes":[...]}\` whose entries also carry the
      incarnation, the lower-case state, whether the entry is the agent itself and its tags.
    `,
    examples: [
      ["List the nodes", "$0 nodes"],
      ["The web servers in Europe", "$0 nodes --tag role=web --tag 'dc=eu.*'"],
      ["List the nodes of the agent at another RPC address, as JSON", "$0 --rpc localhost:6363 nodes --json"],
    ],
  });

  protected list(agent: AgentClient): Promise<NodeList> {
    return agent.nodes({});
  }
}
