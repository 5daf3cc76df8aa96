/**
 * `tamtam monitor`: prints a table row (or with --json one JSON object per line) for every
 * membership status change, as it happens, until interrupted or until stdout is closed.
 */

import { Command, Option } from "clipanion";
import { TamTamCommand } from "../base-command.js";

export class MonitorCommand extends TamTamCommand {
  static override paths = [["monitor"]];
  static override usage = Command.Usage({
    description: "print every membership status change as it happens",
    details: `
      Subscribes to the agent's membership changes and prints one table row per change (the
      columns of \`nodes\`), until interrupted with Ctrl-C or until the reader of its output
      goes away. A row of a member with tags ends with them (\`role=web,dc=eu\`). With
      \`--json\` it prints one JSON object per line instead (the entries of \`nodes --json\`, tags
      included), for scripts.
    `,
    examples: [
      ["Watch the cluster", "$0 monitor"],
      ["Log every change as JSON", "$0 monitor --json >> changes.jsonl"],
    ],
  });

  json = Option.Boolean("--json", false, { description: "print one JSON object per line instead of table rows" });

  async execute(): Promise<number> {
    const call = (await this.agent()).monitor({}, { signal: this.stopSignal });
    const { MONITOR_WIDTHS, NODE_COLUMNS, columnWidths, hasTags, nodeCells, nodeJson, statusStyle, tableLine } = await import("../agent-client.js");
    const release = this.stopOnSignals();
    try {
      if (!this.json) await this.line(this.paint(tableLine(NODE_COLUMNS, columnWidths([], MONITOR_WIDTHS)), "bold"));
      for await (const node of call) {
        if (this.json) {
          await this.line(JSON.stringify(nodeJson(node)));
        } else {
          const cells = nodeCells(node, hasTags(node));
          await this.line(tableLine(cells, columnWidths([cells], MONITOR_WIDTHS), (s) => this.paint(s, statusStyle(s))));
        }
        if (this.stopped) break;
      }
    } catch (error) {
      if (!this.stopped) throw error;
    } finally {
      release();
    }
    return 0;
  }
}
