/**
 * `tamtam stream`: prints every broadcast the agent receives, one per line, until interrupted
 * (SIGINT/SIGTERM) or until its reader goes away (`tamtam stream | head -1`), then exits 0.
 * `--encoding string` (default) prints the payload as UTF-8 text, `base64` as base64, `bytes`
 * writes the raw payload bytes with nothing added.
 */

import { Command, Option } from "clipanion";
import { CliError, EXIT, TamTamCommand } from "../base-command.js";

export const ENCODINGS = ["string", "base64", "bytes"] as const;
export type Encoding = (typeof ENCODINGS)[number];

/** What `stream` writes for one payload. */
export function encodePayload(bytes: Uint8Array, encoding: Encoding): string | Uint8Array {
  switch (encoding) {
    case "string":
      return `${Buffer.from(bytes).toString("utf8")}\n`;
    case "base64":
      return `${Buffer.from(bytes).toString("base64")}\n`;
    case "bytes":
      return bytes;
  }
}

export class StreamCommand extends TamTamCommand {
  static override paths = [["stream"]];
  static override usage = Command.Usage({
    description: "print every broadcast message the agent receives",
    details: `
      Prints each broadcast message received from the cluster, one per line, until
      interrupted with Ctrl-C or until the program reading its output exits. Made to be piped
      into a handler: \`tamtam stream | ./handler.sh\`.

      \`--encoding string\` (the default) prints the message as text, \`base64\` prints it
      base64-encoded (safe for binary payloads, one line each), \`bytes\` writes the raw
      bytes with no separator.
    `,
    examples: [
      ["Print the broadcasts", "$0 stream"],
      ["Feed them to a script, one line each", "$0 stream | ./handler.sh"],
      ["Binary-safe, one base64 line per message", "$0 stream --encoding base64"],
    ],
  });

  encoding = Option.String("--encoding", "string", { description: "string, base64 or bytes (raw)" });

  async execute(): Promise<number> {
    const encoding = this.encoding as Encoding;
    if (!ENCODINGS.includes(encoding)) {
      throw new CliError(`--encoding must be one of ${ENCODINGS.join(", ")}, got "${this.encoding}"`, EXIT.USAGE);
    }
    const call = (await this.agent()).stream({}, { signal: this.stopSignal });
    const release = this.stopOnSignals();
    try {
      for await (const message of call) {
        await this.write(encodePayload(message.bytes, encoding));
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
