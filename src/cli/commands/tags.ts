/**
 * `tamtam tags set KEY=VALUE ...` and `tamtam tags delete KEY ...`: change the agent's tags live
 * (the SetTags and DeleteTags RPCs). Both print the agent's tags afterwards, one `KEY=VALUE` per
 * line (or one JSON object with --json).
 */

import { Command, Option } from "clipanion";
import type { TagsReply } from "../../gen/service/tamtam_pb.js";
import { parseTagAssignments, tagKeyProblem } from "../../api/tags.js";
import { CliError, EXIT, TamTamCommand, type AgentClient } from "../base-command.js";

const DETAILS_COMMON = `      The change travels with the agent's alive statement (its incarnation goes up by one) and
      reaches every member within a few gossip rounds; \`tamtam nodes\` shows the tags. The encoded
      tags must fit one datagram with the statement: 1159 bytes with the default 1232-byte datagrams
      (1130 sealed); the agent refuses more (INVALID_ARGUMENT, exit status 2) and keeps its tags.

      Prints the agent's tags afterwards, one \`KEY=VALUE\` per line, or with \`--json\` one object
      \`{"tags":{...},"incarnation":N}\`.`;

abstract class TagsCommand extends TamTamCommand {
  json = Option.Boolean("--json", false, { description: "print one JSON object" });

  protected abstract call(agent: AgentClient): Promise<TagsReply>;

  async execute(): Promise<number> {
    const reply = await this.call(await this.agent());
    const tags = Object.fromEntries(Object.entries(reply.tags).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
    if (this.json) {
      await this.line(JSON.stringify({ tags, incarnation: reply.incarnation }));
    } else {
      await this.write(Object.entries(tags).map(([k, v]) => `${k}=${v}\n`).join(""));
    }
    return 0;
  }
}

export class TagsSetCommand extends TagsCommand {
  static override paths = [["tags", "set"]];
  static override usage = Command.Usage({
    description: "add or change tags of the agent",
    details: `
      Adds each KEY=VALUE to the agent's tags, or replaces the value of a KEY it has. A key has
      1..128 bytes, no \`=\` and no white space; a value is any text, possibly empty.

${DETAILS_COMMON}
    `,
    examples: [
      ["Tag the agent as a web server in eu-west", "$0 tags set role=web dc=eu-west"],
      ["As JSON", "$0 tags set version=1.4.2 --json"],
    ],
  });

  assignments = Option.Rest({ name: "KEY=VALUE", required: 1 });

  protected call(agent: AgentClient): Promise<TagsReply> {
    let tags: Record<string, string>;
    try {
      tags = parseTagAssignments(this.assignments, "tags set");
    } catch (error) {
      throw new CliError((error as Error).message, EXIT.USAGE);
    }
    return agent.setTags({ tags });
  }
}

export class TagsDeleteCommand extends TagsCommand {
  static override paths = [["tags", "delete"]];
  static override usage = Command.Usage({
    description: "delete tags of the agent",
    details: `
      Deletes each KEY from the agent's tags (a key it does not have is ignored).

${DETAILS_COMMON}
    `,
    examples: [["Delete the role tag", "$0 tags delete role"]],
  });

  keys = Option.Rest({ name: "KEY", required: 1 });

  protected call(agent: AgentClient): Promise<TagsReply> {
    for (const key of this.keys) {
      const problem = tagKeyProblem(key);
      if (problem !== null) throw new CliError(`tags delete: ${problem}`, EXIT.USAGE);
    }
    return agent.deleteTags({ keys: this.keys });
  }
}
