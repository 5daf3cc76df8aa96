/**
 * `tamtam broadcast [MESSAGE]`: asks the agent to gossip MESSAGE to every member; prints
 * `broadcast message was send: MESSAGE`. Without MESSAGE it reads standard input to EOF
 * (one trailing newline dropped). `--base64`: the message (argument or stdin) is base64.
 * `--lines`: one broadcast per line of standard input, over one BroadcastStream call whose flow
 * control holds the reading back while the agent's queue is full; prints how many the agent
 * accepted and refused.
 */

import { Command, Option } from "clipanion";
import { CliError, EXIT, TamTamCommand } from "../base-command.js";

/** Most bytes read from stdin; the agent's own limit (--max, 256/512 by default) is lower and it rejects larger payloads. */
export const MAX_STDIN_BYTES = 65_536;
/** Longest line `--lines` reads (bytes, without the newline); the agent refuses lines over its own limit anyway. */
export const MAX_LINE_BYTES = 65_536;

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

      With \`--lines\`, every line of standard input is one broadcast (\`producer | tamtam
      broadcast --lines\`; with \`--base64\`, every line is base64), sent over one stream.
      When the agent's broadcast queue is full it stops reading, and the producer waits
      instead of failing. Prints \`broadcast: N accepted\` (and how many the agent refused:
      empty lines, lines over its limit; exit 1 then). A queue that stays full for 30 s ends
      the command with exit code 5, as a single \`broadcast\` into a full queue does.
    `,
    examples: [
      ["Say hello to the cluster", '$0 broadcast "Hello world!"'],
      ["Send a file's content", "$0 broadcast < message.txt"],
      ["Send binary bytes", "$0 broadcast --base64 AAECAw=="],
      ["One broadcast per line of a log", "tail -f app.log | $0 broadcast --lines"],
    ],
  });

  base64 = Option.Boolean("--base64", false, { description: "the message is base64; it is decoded before sending" });
  lines = Option.Boolean("--lines", false, { description: "one broadcast per line of standard input, with backpressure; prints how many were accepted" });
  message = Option.String({ name: "MESSAGE", required: false });

  async execute(): Promise<number> {
    if (this.lines) {
      if (this.message !== undefined) throw new CliError("--lines reads standard input; give no MESSAGE with it", EXIT.USAGE);
      return await this.sendLines();
    }
    const { bytes, shown } = this.message !== undefined ? this.fromArgument(this.message) : await this.fromStdin();
    if (bytes.length === 0) throw new CliError("the broadcast message is empty", EXIT.USAGE);
    this.expectOk(await (await this.agent()).broadcast({ bytes }), "the agent did not accept the broadcast");
    await this.line(`broadcast message was send: ${shown}`);
    return 0;
  }

  /** `--lines`: streams every line of stdin as one broadcast; the summary goes to stdout. */
  private async sendLines(): Promise<number> {
    const client = await this.agent();
    const stopSignals = this.stopOnSignals();
    // A bad line ends the call; it is reported as itself, not as the call's failure.
    let inputError: unknown = null;
    const { stdin } = this.context;
    const base64 = this.base64;
    async function* requests(): AsyncGenerator<{ bytes: Uint8Array }> {
      let lineNumber = 0;
      try {
        for await (const line of stdinLines(stdin, MAX_LINE_BYTES)) {
          lineNumber++;
          const bytes = base64 ? decodeBase64(Buffer.from(line).toString("utf8")) : line;
          if (bytes === null) throw new CliError(`--base64: line ${lineNumber} of standard input is not valid base64`, EXIT.USAGE);
          // Taken from stdin only as fast as HTTP/2 flow control lets the call send.
          yield { bytes };
        }
      } catch (error) {
        inputError = error;
        throw error;
      }
    }
    try {
      const reply = await client.broadcastStream(requests(), { signal: this.stopSignal });
      const refused = reply.refused > 0n ? `, ${reply.refused} refused (first: ${reply.firstRefusal})` : "";
      const waits = reply.queueFullWaits > 0n ? `; waited ${reply.queueFullWaits} times for room in the agent's broadcast queue` : "";
      await this.line(`broadcast: ${reply.accepted} accepted${refused}${waits}`);
      return reply.refused > 0n ? EXIT.FAILED : EXIT.OK;
    } catch (error) {
      throw inputError ?? error;
    } finally {
      stopSignals();
    }
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

/**
 * The lines of `input` (LF or CRLF; the last one may lack its newline), as bytes, read only as
 * fast as the consumer takes them. A line longer than `maxLineBytes` is a usage error.
 */
export async function* stdinLines(input: AsyncIterable<unknown>, maxLineBytes: number): AsyncGenerator<Uint8Array> {
  let pending: Buffer = Buffer.alloc(0);
  let lineNumber = 0;
  const tooLong = (): CliError => new CliError(`line ${lineNumber + 1} of standard input is longer than ${maxLineBytes} bytes`, EXIT.USAGE);
  for await (const chunk of input) {
    const buffer = typeof chunk === "string" ? Buffer.from(chunk) : (chunk as Buffer);
    pending = pending.length === 0 ? buffer : Buffer.concat([pending, buffer]);
    let start = 0;
    for (let nl = pending.indexOf(0x0a, start); nl >= 0; nl = pending.indexOf(0x0a, start)) {
      const end = nl > start && pending[nl - 1] === 0x0d ? nl - 1 : nl;
      if (end - start > maxLineBytes) throw tooLong();
      lineNumber++;
      yield new Uint8Array(pending.subarray(start, end));
      start = nl + 1;
    }
    pending = pending.subarray(start);
    if (pending.length > maxLineBytes + 1) throw tooLong();
  }
  if (pending.length > 0) {
    const end = pending.at(-1) === 0x0d ? pending.length - 1 : pending.length;
    if (end > maxLineBytes) throw tooLong();
    yield new Uint8Array(pending.subarray(0, end));
  }
}
