/** `tamtam configure heartbeat MS`: changes the agent's protocol period live (10..1000 ms). */

import { Command, Option } from "clipanion";
import { CliError, EXIT, TamTamCommand } from "../base-command.js";

export const HEARTBEAT_MIN_MS = 10;
export const HEARTBEAT_MAX_MS = 1000;

export class ConfigureHeartbeatCommand extends TamTamCommand {
  static override paths = [["configure", "heartbeat"]];
  static override usage = Command.Usage({
    category: "Configure a running agent",
    description: "change the agent's protocol period (heartbeat) live",
    details: `
      Sets the interval between the agent's failure-detector probes to MS milliseconds,
      ${HEARTBEAT_MIN_MS}..${HEARTBEAT_MAX_MS}. Prints \`Heartbeat was set to MS ms.\`
    `,
    examples: [["Probe every 250 ms", "$0 configure heartbeat 250"]],
  });

  millis = Option.String({ name: "MS" });

  async execute(): Promise<number> {
    const text = this.millis.trim();
    const heartbeatMs = /^[0-9]+$/.test(text) ? Number(text) : NaN;
    if (!(heartbeatMs >= HEARTBEAT_MIN_MS && heartbeatMs <= HEARTBEAT_MAX_MS)) {
      throw new CliError(`heartbeat must be an integer in ${HEARTBEAT_MIN_MS}..${HEARTBEAT_MAX_MS} (ms), got "${this.millis}"`, EXIT.USAGE);
    }
    this.expectOk(await this.agent.setHeartbeat({ millis: heartbeatMs }), "the agent did not change its heartbeat");
    await this.line(`Heartbeat was set to ${heartbeatMs} ms.`);
    return 0;
  }
}
