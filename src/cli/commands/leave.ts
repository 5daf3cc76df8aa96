/**
 * `tamtam leave ADDR:PORT`: asks the agent to drop that node from its table (the original's
 * meaning; prints `Host was left.`). `tamtam leave --self`: the agent itself leaves the cluster
 * gracefully (the LeaveCluster RPC), so peers mark it LEFT instead of suspecting it.
 */

import { Command, Option } from "clipanion";
import { CliError, EXIT, TamTamCommand } from "../base-command.js";

export class LeaveCommand extends TamTamCommand {
  static override paths = [["leave"]];
  static override usage = Command.Usage({
    description: "drop a node from the agent's table, or make the agent leave the cluster (--self)",
    details: `
      With ADDR:PORT the agent drops that node from its member table and prints
      \`Host was left.\` (the original's behaviour; the node itself keeps running).

      With \`--self\` the agent leaves the cluster gracefully: it tells the other members it
      is leaving, so they mark it LEFT rather than suspect it failed, and stops taking part.
      Prints \`The agent left the cluster.\`
    `,
    examples: [
      ["Drop the node on port 9998 from the table", "$0 leave 127.0.0.1:9998"],
      ["Leave the cluster gracefully before a shutdown", "$0 leave --self"],
    ],
  });

  self = Option.Boolean("--self", false, { description: "make the agent itself leave the cluster gracefully" });
  address = Option.String({ name: "ADDR:PORT", required: false });

  async execute(): Promise<number> {
    if (this.self) {
      if (this.address !== undefined) throw new CliError("give either ADDR:PORT or --self, not both", EXIT.USAGE);
      this.expectOk(await (await this.agent()).leaveCluster({}), "the agent could not leave the cluster");
      await this.line("The agent left the cluster.");
      return 0;
    }
    if (this.address === undefined) {
      throw new CliError("leave needs ADDR:PORT (drop that node) or --self (the agent leaves the cluster)", EXIT.USAGE);
    }
    const node = this.nodeAddress(this.address);
    this.expectOk(await (await this.agent()).leave({ IP: node.IP, port: node.port }), `the agent could not drop ${node.key}`);
    await this.line("Host was left.");
    return 0;
  }
}
