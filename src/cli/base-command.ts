/**
 * The base of every `tamtam` command (`TamTamCommand`) and the command line's error policy.
 * This module owns:
 *   - the global options `--config`, `--rpc`, `--verbose`, `--trace`, `--nobanner` (descriptions
 *     as in the original) and `--rpc-token`, resolved with the environment and config file by
 *     settings.ts;
 *   - the typed gRPC client of the agent at `--rpc` (presenting `--rpc-token` on every call),
 *     with per-call timeouts, loaded (with
 *     node:http2 and protobuf-es) only when a command talks to the agent;
 *   - ONE table mapping gRPC status codes to one-line messages and exit codes (`EXIT`), and
 *     `reportError`, which prints every failure as ONE line `tamtam: ...` on stderr (the stack
 *     only with --trace) and returns the exit code;
 *   - stopping long-running commands cleanly on SIGINT/SIGTERM and when stdout goes away (EPIPE);
 *   - output helpers that colour only on a TTY and never with NO_COLOR.
 *
 * Errors are reported from `validateAndExecute`, not `catch`: clipanion 3.2.1 maps any `catch`
 * that does not rethrow to exit code 0, so `catch` cannot choose the exit code.
 */

import { once } from "node:events";
import type { Writable } from "node:stream";
import { type BaseContext, Command, Option, UsageError } from "clipanion";
import { formatIp, parseAddress } from "../core/address.js";
import type { Response, Response_Code } from "../gen/service/tamtam_pb.js";
import { ERROR_CODE_TRAILER, GrpcStatus, grpcStatusName, isGrpcStatusCode } from "../rpc/grpc-wire.js";
import type { AgentClient } from "./agent-client.js";
import {
  GLOBAL_SETTINGS,
  resolveSettings,
  systemIO,
  type FlagValues,
  type GlobalSettingName,
  type ResolvedSettings,
  type SettingName,
  type SettingsIO,
} from "./settings.js";

export const BINARY_NAME = "tamtam";

/** Exit codes of every command. */
export const EXIT = {
  /** Done. */
  OK: 0,
  /** The agent answered but the operation failed, or an unexpected error. */
  FAILED: 1,
  /** Bad command line, flag value, argument or config file; or the agent rejected the request as invalid. */
  USAGE: 2,
  /** No agent answers at --rpc. */
  UNREACHABLE: 3,
  /** The agent did not answer in time. */
  TIMEOUT: 4,
  /** The agent is overloaded (e.g. its broadcast queue is full): try again later. */
  BUSY: 5,
} as const;

/** Deadline of ordinary unary calls. */
export const UNARY_TIMEOUT_MS = 5_000;
/** Deadline of calls that wait for another node (join, ping): the agent retries before answering. */
export const REMOTE_TIMEOUT_MS = 30_000;

/** A failure with its one-line message and exit code. */
export class CliError extends Error {
  override readonly name = "CliError";
  constructor(
    message: string,
    readonly exitCode: number = EXIT.FAILED,
  ) {
    super(message);
  }
}

// ---------------------------------------------------------------------------------------------
// The error policy

interface GrpcFailure {
  readonly exitCode: number;
  readonly message: (details: string, rpc: string) => string;
}

const serverSaid = (prefix: string) => (details: string) => (details === "" ? prefix : `${prefix}: ${details}`);

/** gRPC status -> one-line message and exit code. The one table of the command line. */
const GRPC_FAILURES: Readonly<Record<number, GrpcFailure>> = {
  [GrpcStatus.UNAVAILABLE]: {
    exitCode: EXIT.UNREACHABLE,
    message: (_, rpc) => `cannot reach the agent at ${rpc} (is \`tamtam agent\` running?)`,
  },
  [GrpcStatus.DEADLINE_EXCEEDED]: { exitCode: EXIT.TIMEOUT, message: (_, rpc) => `the agent at ${rpc} did not answer in time` },
  [GrpcStatus.INVALID_ARGUMENT]: { exitCode: EXIT.USAGE, message: serverSaid("the agent rejected the request") },
  [GrpcStatus.OUT_OF_RANGE]: { exitCode: EXIT.USAGE, message: serverSaid("the agent rejected the request") },
  [GrpcStatus.FAILED_PRECONDITION]: { exitCode: EXIT.FAILED, message: serverSaid("the agent cannot do that now") },
  [GrpcStatus.NOT_FOUND]: { exitCode: EXIT.FAILED, message: serverSaid("not found") },
  [GrpcStatus.ALREADY_EXISTS]: { exitCode: EXIT.FAILED, message: serverSaid("already exists") },
  [GrpcStatus.RESOURCE_EXHAUSTED]: { exitCode: EXIT.BUSY, message: serverSaid("the agent is overloaded") },
  [GrpcStatus.UNIMPLEMENTED]: {
    exitCode: EXIT.FAILED,
    message: (_, rpc) => `the agent at ${rpc} does not support this command (an older agent?)`,
  },
  [GrpcStatus.CANCELLED]: { exitCode: EXIT.FAILED, message: () => "the call was cancelled" },
  [GrpcStatus.PERMISSION_DENIED]: { exitCode: EXIT.FAILED, message: serverSaid("permission denied") },
  [GrpcStatus.UNAUTHENTICATED]: {
    exitCode: EXIT.FAILED,
    message: (_, rpc) =>
      `the agent at ${rpc} requires --rpc-token (or TAMTAM_RPC_TOKEN, or rpc-token in the config file), or the given token is wrong`,
  },
  [GrpcStatus.ABORTED]: { exitCode: EXIT.FAILED, message: serverSaid("the agent aborted the request") },
  [GrpcStatus.INTERNAL]: { exitCode: EXIT.FAILED, message: serverSaid("the agent failed") },
  [GrpcStatus.UNKNOWN]: { exitCode: EXIT.FAILED, message: serverSaid("the agent failed") },
  [GrpcStatus.DATA_LOSS]: { exitCode: EXIT.FAILED, message: serverSaid("the agent failed") },
};

function grpcStatusOf(error: unknown): { code: number; details: string } | null {
  if (typeof error !== "object" || error === null) return null;
  const e = error as { code?: unknown; details?: unknown };
  if (!isGrpcStatusCode(e.code) || e.code === GrpcStatus.OK) return null;
  return { code: e.code, details: typeof e.details === "string" ? e.details.split("\n")[0] ?? "" : "" };
}

/** True when the agent itself sent the status: its handlers tag every error with the tamtam-error trailer. */
function sentByAgent(error: unknown): boolean {
  const metadata = (error as { metadata?: { get?: unknown } }).metadata;
  return typeof metadata?.get === "function" && (metadata.get(ERROR_CODE_TRAILER) as unknown[]).length > 0;
}

/** One line for clipanion's parse errors (they are multi-line, with candidate usages). */
function syntaxErrorLine(error: Error): string {
  const e = error as Error & { candidates?: Array<{ usage: string; reason: string | null }>; input?: unknown[] };
  // clipanion brackets the input with START_OF_INPUT (\u0001) and END_OF_INPUT (\u0000) tokens
  const rawInput = (e.input ?? []).filter((t): t is string => typeof t === "string" && t !== "\u0001" && t !== "\u0000");
  const candidates = e.candidates ?? [];
  // "tamtam configure heartbeat [--config #0] ... <MS>" -> "configure heartbeat"
  const commandPath = (usage: string): string => {
    const words = usage.split(" ").slice(1);
    const end = words.findIndex((w) => !/^[a-z][a-z0-9-]*$/.test(w));
    return (end < 0 ? words : words.slice(0, end)).join(" ");
  };
  // The words the user typed, without options and the values of the global options that take
  // one; a token given on the command line is never repeated in a message.
  const input = rawInput.map((t, i) =>
    rawInput[i - 1] === "--rpc-token" ? "***" : t.startsWith("--rpc-token=") ? "--rpc-token=***" : t,
  );
  const words = input.filter((t, i) => !t.startsWith("-") && !["--rpc", "--rpc-token", "--config"].includes(input[i - 1] as string));
  const typed = (path: string): boolean => path !== "" && path.split(" ").every((w, i) => words[i] === w);
  const paths = [...new Set(candidates.map((c) => commandPath(c.usage)))];
  const path = paths.length === 1 && paths[0] !== undefined && typed(paths[0]) ? paths[0] : null;
  const first = candidates[0];
  if (path !== null && first !== undefined && first.reason !== null && candidates.every((c) => c.reason === first.reason)) {
    const reason = first.reason.replace(/\.$/, "").replace(/^[A-Z](?=[a-z])/, (c) => c.toLowerCase());
    return `${reason}; see \`${BINARY_NAME} ${path} --help\``;
  }
  if (path !== null) return `cannot understand the arguments "${input.join(" ")}"; see \`${BINARY_NAME} ${path} --help\``;
  const similar = paths.filter((p) => p !== "" && words[0] !== undefined && p.startsWith(words[0]));
  const suggestion = similar.length > 0 ? ` (did you mean: ${similar.join(", ")}?)` : "";
  return `unknown command "${words.join(" ")}"${suggestion}; see \`${BINARY_NAME} --help\``;
}

/** The one-line message and exit code of any failure. */
export function describeError(error: unknown, rpc: string): { message: string; exitCode: number } {
  if (error instanceof CliError) return { message: error.message, exitCode: error.exitCode };
  if (error instanceof Error && (error.name === "UnknownSyntaxError" || error.name === "AmbiguousSyntaxError")) {
    return { message: syntaxErrorLine(error), exitCode: EXIT.USAGE };
  }
  if (error instanceof UsageError || (error instanceof Error && (error as { clipanion?: { type?: string } }).clipanion?.type === "usage")) {
    return { message: (error.message.split("\n")[0] ?? "").trim(), exitCode: EXIT.USAGE };
  }
  const status = grpcStatusOf(error);
  if (status !== null && status.code === GrpcStatus.UNAVAILABLE && sentByAgent(error) && status.details !== "") {
    // The agent answered; something it contacted (a node to join or ping) did not, or it is stopping.
    return { message: status.details, exitCode: EXIT.FAILED };
  }
  if (status !== null) {
    const failure = GRPC_FAILURES[status.code] ?? { exitCode: EXIT.FAILED, message: serverSaid("the agent failed") };
    return { message: failure.message(status.details, rpc), exitCode: failure.exitCode };
  }
  const text = error instanceof Error ? error.message : String(error);
  return { message: `internal error: ${(text.split("\n")[0] ?? "").trim()} (run with --trace for details)`, exitCode: EXIT.FAILED };
}

export interface ReportOptions {
  /** The agent address, for messages. */
  readonly rpc: string;
  /** Print the stack after the line. */
  readonly trace: boolean;
  /** Print the gRPC status after the line. */
  readonly verbose: boolean;
}

/** Prints `tamtam: <one line>` on the context's stderr and returns the exit code. */
export function reportError(error: unknown, context: Pick<BaseContext, "stderr">, options: ReportOptions): number {
  const { message, exitCode } = describeError(error, options.rpc);
  let text = `${BINARY_NAME}: ${message}\n`;
  const status = grpcStatusOf(error);
  if (options.verbose && status !== null) text += `${BINARY_NAME}: gRPC status ${grpcStatusName(status.code)}: ${status.details}\n`;
  if (options.trace && error instanceof Error && error.stack !== undefined) text += `${error.stack}\n`;
  context.stderr.write(text);
  return exitCode;
}

/** Gives a clipanion command class (e.g. `simulate`) the same one-line error policy. */
export function withOneLineErrors<C extends new (...args: any[]) => Command & { execute(): Promise<number | void> }>(Base: C): C {
  return class extends Base {
    override async validateAndExecute(): Promise<number> {
      try {
        return await super.validateAndExecute();
      } catch (error) {
        return reportError(error, this.context, { rpc: "", trace: false, verbose: false });
      }
    }
  };
}

// ---------------------------------------------------------------------------------------------
// Colours

function isTty(stream: Writable): boolean {
  return (stream as { isTTY?: boolean }).isTTY === true;
}

/** Colours only on a terminal and never when NO_COLOR is set (and not empty). */
export function useColors(context: Pick<BaseContext, "stdout" | "env">): boolean {
  const noColor = context.env.NO_COLOR;
  return isTty(context.stdout) && (noColor === undefined || noColor === "");
}

const SGR = { bold: [1, 22], dim: [2, 22], red: [31, 39], green: [32, 39], yellow: [33, 39] } as const;
export type Style = keyof typeof SGR;

// ---------------------------------------------------------------------------------------------
// The base command

export type { AgentClient };

/** `Response_Code.OK`, without loading the generated code for one constant. */
const RESPONSE_OK = 0 satisfies Response_Code;

export abstract class TamTamCommand extends Command {
  config = Option.String("--config", { description: "Config file (default is $HOME/.tamtam.yaml)" });
  rpc = Option.String("--rpc", {
    description:
      'The RPC address the agent binds to or other commands query a running agent on: HOST:PORT, or unix:PATH for a Unix socket (default "localhost:6262")',
  });
  rpcToken = Option.String("--rpc-token", {
    description: "The token the agent requires on every RPC call, and other commands present to it (default: none; TAMTAM_RPC_TOKEN keeps it out of the process list)",
  });
  verbose = Option.Boolean("--verbose", { description: "turn on verbose logging" });
  trace = Option.Boolean("--trace", { description: "turn on trace logging" });
  nobanner = Option.Boolean("--nobanner", { description: "disables printing the banner" });

  #settings: ResolvedSettings<GlobalSettingName> | undefined;
  #client: AgentClient | undefined;
  #stop = new AbortController();
  #outputClosed = false;
  #warnedUnknownKeys = false;

  /** Where settings come from; tests replace the environment through the clipanion context. */
  protected settingsIO(): SettingsIO {
    return systemIO(this.context.env);
  }

  /** Resolves `names` (plus nothing else) with this command's flags. */
  protected resolve<N extends SettingName>(names: readonly N[], flags: FlagValues = {}): ResolvedSettings<N> {
    const globals: FlagValues = { rpc: this.rpc, rpcToken: this.rpcToken, verbose: this.verbose, trace: this.trace, nobanner: this.nobanner };
    const settings = resolveSettings(names, { ...globals, ...flags }, this.config, this.settingsIO());
    // Always said (not only with --verbose): a misspelt key would otherwise be ignored silently.
    if (settings.unknownKeys.length > 0 && !this.#warnedUnknownKeys) {
      this.#warnedUnknownKeys = true;
      this.context.stderr.write(`${BINARY_NAME}: ignoring unknown keys in ${settings.configFile}: ${settings.unknownKeys.join(", ")}\n`);
    }
    return settings;
  }

  /** The global settings (rpc, rpc-token, verbose, trace, nobanner), resolved once. */
  protected get settings(): ResolvedSettings<GlobalSettingName> {
    this.#settings ??= this.resolve(GLOBAL_SETTINGS);
    return this.#settings;
  }

  /** The agent's gRPC client, loaded and created on first use and closed when the command ends. */
  protected async agent(): Promise<AgentClient> {
    if (this.#client === undefined) {
      const { rpc, rpcToken } = this.settings.values;
      const { connectAgent } = await import("./agent-client.js");
      this.#client ??= connectAgent(rpc, UNARY_TIMEOUT_MS, rpcToken);
    }
    return this.#client;
  }

  /** Aborted on SIGINT/SIGTERM (see `stopOnSignals`) and when stdout is closed under us. */
  protected get stopSignal(): AbortSignal {
    return this.#stop.signal;
  }

  override async validateAndExecute(): Promise<number> {
    const stdout = this.context.stdout;
    const onOutputError = (error: NodeJS.ErrnoException): void => {
      if (error.code === "EPIPE" || error.code === "ERR_STREAM_DESTROYED") {
        this.#outputClosed = true;
        this.#stop.abort();
      }
    };
    stdout.on("error", onOutputError);
    try {
      return await super.validateAndExecute();
    } catch (error) {
      if (this.#outputClosed) return EXIT.OK; // the reader went away (`| head`): not a failure
      return reportError(error, this.context, this.reportOptions());
    } finally {
      stdout.removeListener("error", onOutputError);
      this.#client?.close();
    }
  }

  private reportOptions(): ReportOptions {
    const fallback = { rpc: this.rpc ?? "the --rpc address", trace: this.trace === true, verbose: this.verbose === true };
    try {
      const v = this.settings.values;
      return { rpc: v.rpc, trace: v.trace, verbose: v.verbose };
    } catch {
      return fallback; // the settings themselves are what failed
    }
  }

  /** Until the returned function is called, SIGINT and SIGTERM stop this command cleanly. */
  protected stopOnSignals(): () => void {
    const stop = (): void => this.#stop.abort();
    process.on("SIGINT", stop);
    process.on("SIGTERM", stop);
    return () => {
      process.removeListener("SIGINT", stop);
      process.removeListener("SIGTERM", stop);
    };
  }

  /** True once the command was told to stop (signal or closed stdout). */
  protected get stopped(): boolean {
    return this.#stop.signal.aborted;
  }

  // --- output -------------------------------------------------------------------------------

  protected get colors(): boolean {
    return useColors(this.context);
  }

  /** `text` in `style` when colours are on. */
  protected paint(text: string, style: Style): string {
    if (!this.colors) return text;
    const [on, off] = SGR[style];
    return `\x1b[${on}m${text}\x1b[${off}m`;
  }

  /** Writes to stdout, waiting while the reader is slow; a no-op once stdout is closed. */
  protected async write(chunk: string | Uint8Array): Promise<void> {
    if (this.#outputClosed) return;
    const stdout = this.context.stdout;
    if (!stdout.write(chunk)) {
      try {
        await once(stdout, "drain", { signal: this.#stop.signal });
      } catch {
        // stopped while waiting
      }
    }
  }

  /** Writes one line to stdout. */
  protected line(text: string): Promise<void> {
    return this.write(`${text}\n`);
  }

  // --- arguments ----------------------------------------------------------------------------

  /** A node address typed by the user, checked before any RPC. */
  protected nodeAddress(text: string): { IP: string; port: number; key: string } {
    const a = parseAddress(text);
    if (typeof a === "string") throw new CliError(a, EXIT.USAGE);
    return { IP: formatIp(a.ip), port: a.port, key: a.key };
  }

  /** Fails with `message` unless the agent answered OK. */
  protected expectOk(response: Response, message: string): void {
    if (response.code !== RESPONSE_OK) throw new CliError(message, EXIT.FAILED);
  }
}
