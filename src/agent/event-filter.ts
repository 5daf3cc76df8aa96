/**
 * The grammar of `--event-handler [FILTER=]COMMAND`: which events exist, how a handler names
 * the ones it wants, and the one-line reason a value is refused. Pure and stateless (the command
 * line checks values with it before the agent loads; the agent dispatches with it).
 *
 *   FILTER   := EVENT ("," EVENT)*
 *   EVENT    := "member-join" | "member-leave" | "member-failed" | "member-update" | "user" | "*"
 *
 * Without a FILTER the handler runs for every event. The text before the first `=` is no FILTER
 * when there is none, when it holds other characters than lower-case letters, digits and `-*:,._`,
 * or when it is a shell variable name other than `user` (`FOO=bar ./x.sh`, `f=$(mktemp); ...`);
 * to run such a command for every event, write `*=COMMAND`. `query:NAME=COMMAND` alone (as in
 * Serf) answers the query NAME: it is the same as `--query-handler NAME=COMMAND`, and
 * `queryEventHandler` tells it apart; `user:NAME` is refused because broadcasts carry no name.
 */

import { parseQueryHandler, type QueryHandlerSpec } from "./query-codec.js";

/** Default time limit of one handler run (--event-handler-timeout). */
export const EVENT_HANDLER_TIMEOUT_MS = 30_000;

export const MEMBER_EVENTS = ["member-join", "member-leave", "member-failed", "member-update"] as const;
export type MemberEventName = (typeof MEMBER_EVENTS)[number];
export const EVENT_NAMES = [...MEMBER_EVENTS, "user"] as const;
export type EventName = (typeof EVENT_NAMES)[number];

export interface EventHandlerSpec {
  /** The events the command runs for. */
  readonly events: ReadonlySet<EventName>;
  /** The command, run by `/bin/sh -c`. */
  readonly command: string;
  /** The filter as written ("*" without one), for log lines. */
  readonly filter: string;
}

/** A text before `=` that may be meant as a filter: lower-case words, digits and `-*:,._` only. */
const FILTER_LIKE = /^[a-z0-9*:,._-]+$/;
/** A shell variable name: `NAME=...` at the start of a command is an assignment, not a filter. */
const SHELL_VARIABLE = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** The handler `text` describes, or the reason it is refused ("must ..." / "...: ..."), one line. */
export function parseEventHandler(text: string): EventHandlerSpec | string {
  const eq = text.indexOf("=");
  const head = eq < 0 ? "" : text.slice(0, eq);
  if (eq < 0 || !FILTER_LIKE.test(head) || (SHELL_VARIABLE.test(head) && head !== "user")) {
    return text.trim() === "" ? "must be [FILTER=]COMMAND with a command" : { events: new Set(EVENT_NAMES), command: text, filter: "*" };
  }
  const command = text.slice(eq + 1);
  if (command.trim() === "") return `has no command after "${head}="`;
  const events = new Set<EventName>();
  for (const word of head.split(",")) {
    if (word === "*") {
      for (const name of EVENT_NAMES) events.add(name);
    } else if ((EVENT_NAMES as readonly string[]).includes(word)) {
      events.add(word as EventName);
    } else if (word.startsWith("query:")) {
      return `cannot mix ${word} with other events: query:NAME=COMMAND answers one query (as --query-handler NAME=COMMAND)`;
    } else if (word.startsWith("user:")) {
      return `cannot filter ${word}: broadcasts carry no name; use "user" (the payload is on standard input)`;
    } else {
      return `has an unknown event "${word}" (events: ${EVENT_NAMES.join(", ")}, *; write *=COMMAND when the command itself starts with NAME=)`;
    }
  }
  return { events, command, filter: head };
}

/**
 * `query:NAME=COMMAND`: the query handler it is (the command's output answers the query NAME,
 * as with --query-handler), a one-line problem with NAME or COMMAND, or null for any other text.
 */
export function queryEventHandler(text: string): QueryHandlerSpec | string | null {
  const match = /^query:([^=,]*)=/.exec(text);
  if (match === null) return null;
  return parseQueryHandler(`${match[1] as string}=${text.slice(match[0].length)}`);
}

/** `parseEventHandler`'s (or for query:NAME, `queryEventHandler`'s) refusal, or null: a setting's check. */
export function eventHandlerProblem(text: string): string | null {
  const parsed = queryEventHandler(text) ?? parseEventHandler(text);
  return typeof parsed === "string" ? parsed : null;
}
