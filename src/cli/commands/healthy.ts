/** `tamtam healthy`: the table of the nodes the agent considers ALIVE (or JSON with --json). */

import { Command } from "clipanion";
import type { NodeList } from "../../gen/service/tamtam_pb.js";
import type { AgentClient } from "../base-command.js";
import { NodeListCommand } from "./nodes.js";

export class HealthyCommand extends NodeListCommand {
  static override paths = [["healthy"]];
  static override usage = Command.Usage({
    description: "list the healthy nodes (alive or suspected: still members)",
    details: `
      Prints the same table as \`nodes\`, restricted to the nodes the agent currently
      considers ALIVE. With \`--json\` it prints one object \`{"nodes":[...]}\`.
    `,
    examples: [
      ["List the healthy nodes", "$0 healthy"],
      ["Count them", "$0 healthy --json | jq '.nodes | length'"],
    ],
  });

  protected list(agent: AgentClient): Promise<NodeList> {
    return agent.healthy({});
  }
}
