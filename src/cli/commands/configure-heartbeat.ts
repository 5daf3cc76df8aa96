/** `tamtam configure heartbeat MS`: changes the agent's protocol period live (10..600000 ms, see PERIOD_RANGE_TEXT). */

import { Command, Option } from "clipanion";
import { PERIOD_RANGE_TEXT, periodProblem } from "../../core/config.js";
import { CliError, EXIT, TamTamCommand } from "../base-command.js";
import { PRESET_PERIODS_TEXT } from "../settings.js";

export class ConfigureHeartbeatCommand extends TamTamCommand {
  static override paths = [["configure", "heartbeat"]];
  static override usage = Command.Usage({
    category: "Configure a running agent",
    description: "change the agent's protocol period (heartbeat) live",
    details: `
      Sets the interval between the agent's failure-detector probes to MS milliseconds,
      ${PERIOD_RANGE_TEXT}: the range of \`tamtam agent --heartbeat\`, the same for every preset
      and holding each one's own period (${PRESET_PERIODS_TEXT}). The probe timeout keeps the
      preset's share of the period, as at start-up. Prints \`Heartbeat was set to MS ms.\`
    `,
    examples: [
      ["Probe every 250 ms", "$0 configure heartbeat 250"],
      ["Return a wan or thread agent to its preset's period", "$0 configure heartbeat 5000"],
    ],
  });

  millis = Option.String({ name: "MS" });

  async execute(): Promise<number> {
    const text = this.millis.trim();
    const heartbeatMs = /^[0-9]+$/.test(text) ? Number(text) : NaN;
    const problem = periodProblem(heartbeatMs);
    if (problem !== null) throw new CliError(`heartbeat ${problem}, got "${this.millis}"`, EXIT.USAGE);
    this.expectOk(await (await this.agent()).setHeartbeat({ millis: heartbeatMs }), "the agent did not change its heartbeat");
    await this.line(`Heartbeat was set to ${heartbeatMs} ms.`);
    return 0;
  }
}
