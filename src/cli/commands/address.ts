/** `tamtam address`: prints `The local address of the agent is: [IP]:PORT`. */

import { Command } from "clipanion";
import { TamTamCommand } from "../base-command.js";

export class AddressCommand extends TamTamCommand {
  static override paths = [["address"]];
  static override usage = Command.Usage({
    description: "print the address the agent advertises to the cluster",
    details: `
      Prints \`The local address of the agent is: [IP]:PORT\`, the address other members
      reach the agent at (brackets around IPv4 addresses too, as the original).
    `,
    examples: [["Show the agent's address", "$0 address"]],
  });

  async execute(): Promise<number> {
    const a = await (await this.agent()).localAddress({});
    const { bracketed } = await import("../agent-client.js");
    await this.line(`The local address of the agent is: ${bracketed(a.IP, a.port)}`);
    return 0;
  }
}
