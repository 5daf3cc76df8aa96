/**
 * `tamtam nodes`: the table of every node the agent knows (or `{"nodes":[...]}` with --json).
 * Also the shared implementation of `healthy`, which lists through another RPC.
 */

import { Command, Option } from "clipanion";
import type { NodeList } from "../../gen/service/tamtam_pb.js";
import { TamTamCommand, type AgentClient } from "../base-command.js";

export abstract class NodeListCommand extends TamTamCommand {
  json = Option.Boolean("--json", false, { description: "print one JSON object instead of a table" });

  /** The RPC that lists the nodes. */
  protected abstract list(agent: AgentClient): Promise<NodeList>;

  async execute(): Promise<number> {
    const list = await this.list(await this.agent());
    const { NODE_COLUMNS, columnWidths, nodeCells, nodeJson, sortNodes, statusStyle, tableLine } = await import("../agent-client.js");
    const nodes = sortNodes(list.nodes);
    if (this.json) {
      await this.line(JSON.stringify({ nodes: nodes.map(nodeJson) }));
      return 0;
    }
    const rows = nodes.map(nodeCells);
    const widths = columnWidths(rows);
    let text = `${this.paint(tableLine(NODE_COLUMNS, widths), "bold")}\n`;
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
      and STATUS (ALIVE, SUSPECTED, DEAD, LEFT).

      With \`--json\` it prints one object \`{"nodes":[...]}\` whose entries also carry the
      incarnation, the lower-case state and whether the entry is the agent itself.
    `,
    examples: [
      ["List the nodes", "$0 nodes"],
      ["List the nodes of the agent at another RPC address, as JSON", "$0 --rpc localhost:6363 nodes --json"],
    ],
  });

  protected list(agent: AgentClient): Promise<NodeList> {
    return agent.nodes({});
  }
}
