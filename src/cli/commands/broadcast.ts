/**
 * `tamtam broadcast [MESSAGE]`: asks the agent to gossip MESSAGE to every member; prints
 * `broadcast message was send: MESSAGE`. Without MESSAGE it reads standard input to EOF
 * (one trailing newline dropped). `--base64`: the message (argument or stdin) is base64.
 */

import { Command, Option } from "clipanion";
import { CliError, EXIT, TamTamCommand } from "../base-command.js";

/** Most bytes read from stdin; the agent's own limit (--max, 256/512 by default) is lower and it rejects larger payloads. */
export const MAX_STDIN_BYTES = 65_536;

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Strict base64 (standard alphabet, padded); whitespace is ignored. Null if invalid. */
export function decodeBase64(text: string): Uint8Array | null {
  const compact = text.replace(/\s+/g, "");
  return BASE64.test(compact) ? new Uint8Array(Buffer.from(compact, "base64")) : null;
}

export class BroadcastCommand extends TamTamCommand {
  static override paths = [["broadcast"]];
  static override usage = Command.Usage({
    description: "send a message to every node of the cluster",
    details: `
      The agent disseminates MESSAGE to every member by gossip; every member's \`stream\`
      prints it once. Prints \`broadcast message was send: MESSAGE\`.

      Without MESSAGE the message is read from standard input up to its end (one trailing
      newline is dropped, so \`echo hello | tamtam broadcast\` sends \`hello\`). With
      \`--base64\` the message, from the argument or standard input, is base64 and is decoded
      first: use it for binary payloads. An empty message is refused. The agent refuses a
      message larger than its limit (\`agent --max\`; 256 bytes on IPv4, 512 on IPv6 by default).
    `,
    examples: [
      ["Say hello to the cluster", '$0 broadcast "Hello world!"'],
      ["Send a file's content", "$0 broadcast < message.txt"],
      ["Send binary bytes", "$0 broadcast --base64 AAECAw=="],
    ],
  });

  base64 = Option.Boolean("--base64", false, { description: "the message is base64; it is decoded before sending" });
  message = Option.String({ name: "MESSAGE", required: false });

  async execute(): Promise<number> {
    const { bytes, shown } = this.message !== undefined ? this.fromArgument(this.message) : await this.fromStdin();
    if (bytes.length === 0) throw new CliError("the broadcast message is empty", EXIT.USAGE);
    this.expectOk(await (await this.agent()).broadcast({ bytes }), "the agent did not accept the broadcast");
    await this.line(`broadcast message was send: ${shown}`);
    return 0;
  }

  private fromArgument(text: string): { bytes: Uint8Array; shown: string } {
    if (!this.base64) return { bytes: new TextEncoder().encode(text), shown: text };
    const bytes = decodeBase64(text);
    if (bytes === null) throw new CliError(`--base64: the message is not valid base64: "${text}"`, EXIT.USAGE);
    return { bytes, shown: text };
  }

  private async fromStdin(): Promise<{ bytes: Uint8Array; shown: string }> {
    const stdin = this.context.stdin;
    if ((stdin as { isTTY?: boolean }).isTTY === true) {
      this.context.stderr.write("Reading the message from standard input; end it with Ctrl-D.\n");
    }
    const chunks: Buffer[] = [];
    let total = 0;
    for await (const chunk of stdin) {
      const buffer = typeof chunk === "string" ? Buffer.from(chunk) : (chunk as Buffer);
      total += buffer.length;
      if (total > MAX_STDIN_BYTES) {
        stdin.destroy();
        throw new CliError(`the message on standard input is larger than ${MAX_STDIN_BYTES} bytes`, EXIT.USAGE);
      }
      chunks.push(buffer);
    }
    const input = Buffer.concat(chunks);
    if (this.base64) {
      const text = input.toString("utf8").trim();
      const bytes = decodeBase64(text);
      if (bytes === null) throw new CliError("--base64: standard input is not valid base64", EXIT.USAGE);
      return { bytes, shown: text };
    }
    const end = input.length - (input.at(-1) === 0x0a ? (input.at(-2) === 0x0d ? 2 : 1) : 0);
    const bytes = new Uint8Array(input.subarray(0, end));
    return { bytes, shown: Buffer.from(bytes).toString("utf8") };
  }
}
