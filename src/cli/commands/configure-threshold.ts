/** `tamtam configure threshold LEVEL`: changes the agent's log level live. */

import { Command, Option } from "clipanion";
import { LOG_LEVELS, type LogLevelName } from "../../api/agent-api.js";
import type { LogLevel_Level } from "../../gen/service/tamtam_pb.js";
import { CliError, EXIT, TamTamCommand } from "../base-command.js";

function levelOfName(levels: typeof LogLevel_Level): Readonly<Record<LogLevelName, LogLevel_Level>> {
  return {
    all: levels.ALL,
    trace: levels.TRACE,
    debug: levels.DEBUG,
    info: levels.INFO,
    warn: levels.WARN,
    error: levels.ERROR,
    fatal: levels.FATAL,
    off: levels.OFF,
  };
}

export class ConfigureThresholdCommand extends TamTamCommand {
  static override paths = [["configure", "threshold"]];
  static override usage = Command.Usage({
    category: "Configure a running agent",
    description: "change the agent's log level live",
    details: `
      Sets the agent's log threshold to LEVEL, one of ${LOG_LEVELS.join(", ")} (any case).
      Prints \`Log threshold was set to LEVEL.\`
    `,
    examples: [["Log debugging detail", "$0 configure threshold debug"]],
  });

  level = Option.String({ name: "LEVEL" });

  async execute(): Promise<number> {
    const name = this.level.trim().toLowerCase();
    if (!(LOG_LEVELS as readonly string[]).includes(name)) {
      throw new CliError(`log level must be one of ${LOG_LEVELS.join(", ")}, got "${this.level}"`, EXIT.USAGE);
    }
    const agent = await this.agent();
    const { LogLevel_Level: levels } = await import("../agent-client.js");
    const level = levelOfName(levels)[name as LogLevelName];
    this.expectOk(await agent.setLogThreshold({ level }), "the agent did not change its log threshold");
    await this.line(`Log threshold was set to ${name}.`);
    return 0;
  }
}
