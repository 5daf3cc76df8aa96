/**
 * The agent's logger (pino): readable lines on a terminal (pino-pretty, colours unless
 * NO_COLOR), JSON lines otherwise, to stderr. The level can change while the agent runs
 * (`tamtam configure threshold`).
 */

import { createRequire } from "node:module";
import { pino, type Logger } from "pino";
import type { PrettyStream } from "pino-pretty";
import type { LogLevelName } from "../api/agent-api.js";

// pino-pretty is loaded only when a terminal reads the log: JSON-logging agents never pay for it.
const requireModule = createRequire(import.meta.url);

const PINO_LEVEL: Record<LogLevelName, pino.LevelWithSilent> = {
  all: "trace",
  trace: "trace",
  debug: "debug",
  info: "info",
  warn: "warn",
  error: "error",
  fatal: "fatal",
  off: "silent",
};

export interface AgentLogger {
  readonly logger: Logger;
  setLevel(level: LogLevelName): void;
}

export function createLogger(
  level: LogLevelName,
  format: "auto" | "pretty" | "json",
  stream: NodeJS.WritableStream & { isTTY?: boolean } = process.stderr,
  env: NodeJS.ProcessEnv = process.env,
): AgentLogger {
  const usePretty = format === "pretty" || (format === "auto" && stream.isTTY === true);
  const pretty = usePretty ? (requireModule("pino-pretty") as { default: (o: object) => PrettyStream }).default : null;
  const destination = pretty !== null
    ? pretty({
        destination: stream,
        colorize: stream.isTTY === true && env.NO_COLOR === undefined,
        translateTime: "SYS:HH:MM:ss.l",
        ignore: "pid,hostname",
        sync: true,
      })
    : stream;
  const logger = pino({ level: PINO_LEVEL[level], base: undefined }, destination);
  return {
    logger,
    setLevel: (next) => {
      logger.level = PINO_LEVEL[next];
    },
  };
}
