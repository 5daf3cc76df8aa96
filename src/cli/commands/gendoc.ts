/**
 * `tamtam gendoc [PATH]`: writes one Markdown file per command into PATH (default ./docs/cli),
 * generated from the clipanion definitions of the registered commands: name, description,
 * usage line, options with their descriptions, details and examples.
 */

import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Command, Option, type Definition } from "clipanion";
import { CliError, EXIT, TamTamCommand } from "../base-command.js";

export const DEFAULT_DOC_DIR = "./docs/cli";

/** `tamtam configure heartbeat` -> `tamtam_configure_heartbeat.md`. */
export function docFileName(path: string): string {
  return `${path.trim().split(/\s+/).join("_")}.md`;
}

function cell(text: string): string {
  return text.replace(/\s*\n\s*/g, " ").replace(/\|/g, "\\|").trim();
}

/** The Markdown page of one command. */
export function commandMarkdown(d: Definition): string {
  let md = `# ${d.path}\n\n`;
  const description = d.description?.trim() ?? "";
  if (description !== "") md += `${description[0]?.toUpperCase()}${description.slice(1)}\n\n`;
  md += "## Usage\n\n```\n" + `${d.usage.trim()}\n` + "```\n\n";
  if (d.options.length > 0) {
    md += "## Options\n\n| Option | Description |\n| --- | --- |\n";
    for (const o of d.options) md += `| \`${cell(o.definition)}\` | ${cell(o.description ?? "")} |\n`;
    md += "\n";
  }
  if (d.details !== undefined && d.details.trim() !== "") md += `## Details\n\n${d.details.trim()}\n\n`;
  if (d.examples !== undefined && d.examples.length > 0) {
    md += "## Examples\n\n";
    for (const [label, command] of d.examples) md += `${label.trim()}:\n\n` + "```sh\n" + `${command}\n` + "```\n\n";
  }
  return `${md.trimEnd()}\n`;
}

export class GendocCommand extends TamTamCommand {
  static override paths = [["gendoc"]];
  static override usage = Command.Usage({
    description: "write the Markdown documentation of every command",
    details: `
      Writes one Markdown file per command (\`tamtam_join.md\`, \`tamtam_configure_heartbeat.md\`,
      ...) into PATH, default \`${DEFAULT_DOC_DIR}\`, generated from the same definitions as
      \`--help\`. The directory is created when missing; existing files are replaced.
    `,
    examples: [
      ["Write the docs into ./docs/cli", "$0 gendoc"],
      ["Write them elsewhere", "$0 gendoc /tmp/tamtam-docs"],
    ],
  });

  dir = Option.String({ name: "PATH", required: false });

  async execute(): Promise<number> {
    const dir = this.dir ?? DEFAULT_DOC_DIR;
    const definitions = this.cli.definitions();
    try {
      mkdirSync(dir, { recursive: true });
      for (const d of definitions) writeFileSync(join(dir, docFileName(d.path)), commandMarkdown(d));
    } catch (error) {
      throw new CliError(`cannot write the documentation into ${dir}: ${(error as Error).message}`, EXIT.FAILED);
    }
    this.context.stdout.write(`Documentation of ${definitions.length} commands was written to ${dir}\n`);
    return 0;
  }
}
