/**
 * Event handlers (`tamtam agent --event-handler [FILTER=]COMMAND`): turns the engine's member and
 * broadcast events into runs of the user's commands through a bounded CommandRunner.
 *
 * - Membership events are coalesced: each member's latest event is kept until no new one came for
 *   COALESCE_QUIET_MS, or COALESCE_MAX_DELAY_MS after the first of the batch (or the batch holds
 *   COALESCE_MAX_MEMBERS), then each handler runs once per event name with every member of that
 *   event on standard input. A rack restarting runs a handler a few times, not once per member.
 * - Which member events there are: member-join (a member appears alive, or comes back after
 *   dead/left; this agent's own start included), member-failed (declared dead), member-leave (left
 *   gracefully), member-update (an alive member re-announced itself with a higher incarnation, as
 *   it does when its tags change, or to refute a suspicion this agent had not heard of; tags that
 *   arrive after a statement without them at the same incarnation are no new event, nor is the
 *   end of flap damping at the incarnation shown). Suspicion and recovery from it are no events,
 *   as in Serf.
 *   Within a batch a later event replaces an earlier one of the same member, except that an
 *   update does not replace a join (the handler of joins still sees the member).
 * - Every broadcast delivered is a `user` event of its own (no coalescing), its payload on stdin.
 * - Environment: TAMTAM_EVENT, TAMTAM_SELF_ADDRESS, TAMTAM_USER_ORIGIN (user events), and this
 *   agent's tags as TAMTAM_TAG_<KEY> (the key upper-cased, other characters than A-Z, 0-9 and _
 *   as _). Standard input, member events: one line per member, `ADDRESS<TAB>STATE`, then
 *   `<TAB>key=value,key=value` when it has tags (keys and values percent-encode `%`, `,`, `=`,
 *   tab, CR and LF). Data never reaches the shell's command line (see command-runner.ts).
 * - A batch whose member lines exceed the standard input limit of one run (4 MiB, the runner's
 *   maxStdinBytes) runs the handler several times, each with whole lines within the limit and the
 *   same environment; the extra runs are counted (`batchSplitRuns`).
 * - A handler that fails, hangs (killed at its time limit) or cannot start is logged by the
 *   runner and counted; the agent carries on. At shutdown the pending batch is dropped and
 *   running handlers are killed.
 */

import type { Address } from "../core/address.js";
import type { ClusterEvent, MemberInfo } from "../core/runtime.js";
import { MEMBER_STATE_NAMES, MemberState } from "../core/wire/messages.js";
import { type CommandLog, CommandRunner, type CommandRunnerStats, DEFAULT_MAX_STDIN_BYTES } from "./command-runner.js";
import type { EventHandlerSpec, EventName, MemberEventName } from "./event-filter.js";
import { decodeTagMap } from "../api/tags.js";

/**
 * Quiet time that closes a batch of membership events, and the longest an event waits in one:
 * Serf's agent defaults (QuiescentPeriod 1 s, CoalescePeriod 3 s). A lone survivor of a rack
 * declares its members dead one probe at a time, about a second apart: these windows gather them.
 */
export const COALESCE_QUIET_MS = 1_000;
export const COALESCE_MAX_DELAY_MS = 3_000;
/** Members in one batch; one more closes it at once. */
export const COALESCE_MAX_MEMBERS = 65_536;
/** Handler runs at the same time, and waiting for a slot (beyond: refused and counted). */
export const HANDLERS_MAX_CONCURRENT = 4;
export const HANDLERS_MAX_QUEUED = 64;

/** A member's tags (as it last stated them), for TAMTAM_TAG_* and the stdin lines: the one place tags enter event handlers. */
export function memberTags(member: MemberInfo): ReadonlyMap<string, string> {
  return new Map(Object.entries(decodeTagMap(member.tags)));
}

export interface EventHandlersOptions {
  readonly handlers: readonly EventHandlerSpec[];
  /** Time limit of one run. */
  readonly timeoutMs: number;
  readonly self: Address;
  readonly log: CommandLog & { debug(fields: object, message: string): void };
  /** Environment the commands start from (default: the agent's). */
  readonly baseEnv?: NodeJS.ProcessEnv;
  /** Standard input bytes of one run (default the runner's, 4 MiB); a larger batch is split. */
  readonly maxStdinBytes?: number;
}

export interface EventHandlersStats extends CommandRunnerStats {
  /** Membership events taken into batches. */
  readonly memberEvents: number;
  /** Batches closed (each runs the matching handlers once per event name). */
  readonly batches: number;
  /** Broadcasts handed to `user` handlers. */
  readonly userEvents: number;
  /** Membership events dropped with the open batch at shutdown. */
  readonly droppedAtClose: number;
  /** Extra runs of handlers because a batch's member lines exceeded one run's standard input. */
  readonly batchSplitRuns: number;
}

interface Pending {
  event: MemberEventName;
  member: MemberInfo;
}

/** The member event a change is, or null (suspicion, recovery from it, news of a member already gone). */
export function memberEventOf(member: MemberInfo, previous: MemberState | null, previousIncarnation: number | null): MemberEventName | null {
  const live = member.state === MemberState.Alive || member.state === MemberState.Suspect;
  const wasLive = previous === MemberState.Alive || previous === MemberState.Suspect;
  if (live) {
    if (!wasLive) return "member-join";
    if (previous === MemberState.Alive && member.state === MemberState.Alive && member.incarnation > (previousIncarnation ?? Infinity)) {
      return "member-update";
    }
    return null;
  }
  if (member.state === MemberState.Dead) return wasLive ? "member-failed" : null;
  return previous !== null && previous !== MemberState.Left ? "member-leave" : null;
}

/** `key=value,...` with `%`, `,`, `=`, tab, CR and LF percent-encoded; "" without tags. */
export function formatTags(tags: ReadonlyMap<string, string>): string {
  const enc = (s: string): string => s.replace(/[%,=\t\r\n]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase().padStart(2, "0")}`);
  return [...tags].map(([k, v]) => `${enc(k)}=${enc(v)}`).join(",");
}

/** A handler as log lines name it: its filter and the start of its command. */
function handlerName(handler: EventHandlerSpec): string {
  const command = handler.command.length > 60 ? `${handler.command.slice(0, 59)}…` : handler.command;
  return JSON.stringify(`${handler.filter}=${command}`);
}

/** One stdin line of a member event. */
export function memberLine(member: MemberInfo): string {
  const tags = formatTags(memberTags(member));
  return `${member.address.key}\t${MEMBER_STATE_NAMES[member.state]}${tags === "" ? "" : `\t${tags}`}\n`;
}

/**
 * `lines` as standard inputs of at most `maxBytes` each, in order, a line never cut (a single
 * line above the limit is an input of its own, which the runner then refuses and counts).
 */
export function stdinParts(lines: readonly string[], maxBytes: number): Buffer[] {
  const parts: Buffer[] = [];
  let chunk: Buffer[] = [];
  let chunkBytes = 0;
  for (const line of lines) {
    const bytes = Buffer.from(line);
    if (chunkBytes + bytes.length > maxBytes && chunk.length > 0) {
      parts.push(Buffer.concat(chunk, chunkBytes));
      chunk = [];
      chunkBytes = 0;
    }
    chunk.push(bytes);
    chunkBytes += bytes.length;
  }
  if (chunk.length > 0) parts.push(Buffer.concat(chunk, chunkBytes));
  return parts;
}

/** TAMTAM_TAG_<KEY> variables of `tags` (values holding NUL, which no environment can carry, left out). */
export function tagEnvironment(tags: ReadonlyMap<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of tags) {
    if (value.includes("\0")) continue;
    out[`TAMTAM_TAG_${key.toUpperCase().replace(/[^A-Z0-9_]/g, "_")}`] = value;
  }
  return out;
}

export class EventHandlers {
  private readonly runner: CommandRunner;
  private readonly pending = new Map<string, Pending>();
  private quietTimer: NodeJS.Timeout | null = null;
  private maxDelayTimer: NodeJS.Timeout | null = null;
  private selfInfo: MemberInfo | null = null;
  private closed = false;
  private readonly wanted: ReadonlySet<EventName>;
  private readonly counters = { memberEvents: 0, batches: 0, userEvents: 0, droppedAtClose: 0, batchSplitRuns: 0 };
  private readonly maxStdinBytes: number;

  constructor(private readonly options: EventHandlersOptions) {
    this.maxStdinBytes = options.maxStdinBytes ?? DEFAULT_MAX_STDIN_BYTES;
    this.runner = new CommandRunner(
      { maxConcurrent: HANDLERS_MAX_CONCURRENT, maxQueued: HANDLERS_MAX_QUEUED, timeoutMs: options.timeoutMs, maxStdinBytes: this.maxStdinBytes },
      { log: options.log, ...(options.baseEnv === undefined ? {} : { baseEnv: options.baseEnv }) },
    );
    this.wanted = new Set(options.handlers.flatMap((h) => [...h.events]));
  }

  /** Takes one engine event (subscribe with `engine.onEvent((e) => handlers.onEvent(e))`). */
  onEvent(event: ClusterEvent): void {
    if (this.closed) return;
    if (event.type === "broadcast") {
      if (!this.wanted.has("user")) return;
      this.counters.userEvents++;
      this.dispatch("user", event.payload, { TAMTAM_USER_ORIGIN: event.origin.key });
      return;
    }
    if (event.type !== "member") return;
    if (event.member.isSelf) this.selfInfo = event.member;
    const name = memberEventOf(event.member, event.previous, event.previousIncarnation);
    if (name === null || !this.wanted.has(name)) return;
    this.counters.memberEvents++;
    const key = event.member.address.key;
    const earlier = this.pending.get(key);
    this.pending.set(key, { event: earlier?.event === "member-join" && name === "member-update" ? "member-join" : name, member: event.member });
    if (this.pending.size >= COALESCE_MAX_MEMBERS) {
      this.flush();
      return;
    }
    if (this.quietTimer !== null) clearTimeout(this.quietTimer);
    this.quietTimer = setTimeout(() => this.flush(), COALESCE_QUIET_MS);
    this.maxDelayTimer ??= setTimeout(() => this.flush(), COALESCE_MAX_DELAY_MS);
  }

  stats(): EventHandlersStats {
    return { ...this.runner.stats(), ...this.counters };
  }

  /** Drops the open batch, refuses new runs, kills the running ones; resolves when they ended. */
  async close(): Promise<void> {
    this.closed = true;
    this.clearTimers();
    this.counters.droppedAtClose += this.pending.size;
    this.pending.clear();
    await this.runner.close();
  }

  private clearTimers(): void {
    if (this.quietTimer !== null) clearTimeout(this.quietTimer);
    if (this.maxDelayTimer !== null) clearTimeout(this.maxDelayTimer);
    this.quietTimer = null;
    this.maxDelayTimer = null;
  }

  /** Closes the batch: one run per handler and event name (more for a batch beyond one standard input), the members sorted by address. */
  private flush(): void {
    this.clearTimers();
    if (this.closed || this.pending.size === 0) return;
    this.counters.batches++;
    const byEvent = new Map<MemberEventName, MemberInfo[]>();
    for (const { event, member } of this.pending.values()) {
      const list = byEvent.get(event);
      if (list === undefined) byEvent.set(event, [member]);
      else list.push(member);
    }
    this.pending.clear();
    for (const [event, members] of byEvent) {
      members.sort((a, b) => (a.address.key < b.address.key ? -1 : a.address.key > b.address.key ? 1 : 0));
      const parts = stdinParts(members.map(memberLine), this.maxStdinBytes);
      this.options.log.debug({ event, members: members.length, runs: parts.length }, "running event handlers");
      for (const stdin of parts) {
        const runs = this.dispatch(event, stdin, {});
        if (stdin !== parts[0]) this.counters.batchSplitRuns += runs;
      }
    }
  }

  /** Runs every handler of `event`; returns how many it ran. */
  private dispatch(event: EventName, stdin: Uint8Array, extra: Readonly<Record<string, string>>): number {
    const env = {
      ...(this.selfInfo === null ? {} : tagEnvironment(memberTags(this.selfInfo))),
      ...extra,
      TAMTAM_EVENT: event,
      TAMTAM_SELF_ADDRESS: this.options.self.key,
    };
    let runs = 0;
    for (const handler of this.options.handlers) {
      if (!handler.events.has(event)) continue;
      // The runner logs and counts every outcome; nothing comes back to the agent.
      void this.runner.run({ command: handler.command, env, stdin, label: `${event} handler ${handlerName(handler)}` });
      runs++;
    }
    return runs;
  }
}
