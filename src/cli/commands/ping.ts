/** `tamtam ping ADDR:PORT`: the agent sends one SWIM ping to that node; prints `Send a ping message to node ADDR:PORT`. */

import { Command, Option } from "clipanion";
import { REMOTE_TIMEOUT_MS, TamTamCommand } from "../base-command.js";

export class PingCommand extends TamTamCommand {
  static override paths = [["ping"]];
  static override usage = Command.Usage({
    description: "make the agent ping the node at ADDR:PORT",
    details: `
      The agent sends one failure-detector ping to ADDR:PORT. Prints
      \`Send a ping message to node ADDR:PORT\` (the original's wording). Exits with status 1
      and one line on stderr when the node did not answer.
    `,
    examples: [["Ping the agent on port 9998", "$0 ping 127.0.0.1:9998"]],
  });

  address = Option.String({ name: "ADDR:PORT" });

  async execute(): Promise<number> {
    const node = this.nodeAddress(this.address);
    const reply = (await this.agent()).ping({ IP: node.IP, port: node.port }, { timeoutMs: REMOTE_TIMEOUT_MS });
    // The original's line says the ping went out; whether it was answered comes after (a
    // silent node is a gRPC UNAVAILABLE from the agent: one line on stderr, exit status 1).
    await this.line(`Send a ping message to node ${node.key}`);
    this.expectOk(await reply, `node ${node.key} did not answer the ping`);
    return 0;
  }
}
