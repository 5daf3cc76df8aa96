/** `tamtam join ADDR:PORT`: asks the agent to join the cluster through that node; prints `Host was joined.` (the agent itself, under any of its addresses, is refused: exit 2). */

import { Command, Option } from "clipanion";
import { REMOTE_TIMEOUT_MS, TamTamCommand } from "../base-command.js";

export class JoinCommand extends TamTamCommand {
  static override paths = [["join"]];
  static override usage = Command.Usage({
    description: "ask the agent to join a cluster through the node at ADDR:PORT",
    details: `
      The agent contacts the node at ADDR:PORT (an IPv4 \`127.0.0.1:9999\` or IPv6
      \`[::1]:9999\` address) and joins the cluster it belongs to. Prints \`Host was joined.\`
      once that node answered. The agent's own address, also under another IP that reaches
      it (127.0.0.1 or another local address at its port), is refused at once (exit 2).
    `,
    examples: [
      ["Join the agent listening on port 9998", "$0 join 127.0.0.1:9998"],
      ["Join over IPv6", "$0 join [::1]:9998"],
    ],
  });

  address = Option.String({ name: "ADDR:PORT" });

  async execute(): Promise<number> {
    const node = this.nodeAddress(this.address);
    const response = await (await this.agent()).join({ IP: node.IP, port: node.port }, { timeoutMs: REMOTE_TIMEOUT_MS });
    this.expectOk(response, `the agent could not join ${node.key}`);
    await this.line("Host was joined.");
    return 0;
  }
}
