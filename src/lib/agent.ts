/**
 * The embeddable agent of the `tamtam` package: `startAgent(options)` starts the same agent as
 * `tamtam agent` in the calling process and returns a handle to it. The options object is the
 * command line's settings table (src/cli/settings.ts) under the settings' names, checked by the
 * same rules and completed with the same defaults (agent-options.ts turns them into the agent's
 * options for both). Errors of the handle's calls are AgentError with the stable codes the gRPC
 * API sends in its `tamtam-error` trailer (src/rpc/status.ts).
 */

import type { ItemSubscription, LogLevelName, MemberView } from "../api/agent-api.js";
import { checkedBroadcast, checkedForget, checkedJoin } from "../api/checks.js";
import { AgentError, type AgentErrorCode } from "../api/errors.js";
import { parseAddress, type Address } from "../core/address.js";
import { MEMBER_STATE_NAMES } from "../core/wire/messages.js";
import type { AgentOptions } from "../agent/options.js";
import { agentOptions, withStartingKeys } from "../cli/agent-options.js";
import { AGENT_SETTINGS, type AgentSettingName, type FlagValues, resolveSettings, type SettingValue, systemIO } from "../cli/settings.js";

export { AgentError, type AgentErrorCode };

/** The settings an embedded agent takes: every setting of `tamtam agent` but the banner (never printed here). */
export type AgentSettingsName = Exclude<AgentSettingName, "nobanner">;

/**
 * The settings, named as in src/cli/settings.ts (`port`, `heartbeatMs`, `join`, `rpc`,
 * `keyringFile`, ...), each optional with the command line's default. Integers are numbers,
 * `join` a list. They are checked as the command line checks its flags: a bad value rejects
 * with one line naming it (`option port must be in 1..65535, got 0`).
 */
export type AgentSettings = { readonly [N in AgentSettingsName]?: SettingValue<N> };

export interface StartAgentOptions extends AgentSettings {
  /** Log threshold; default as the command line's: trace with `trace`, debug with `verbose`, else info. */
  readonly logLevel?: LogLevelName;
  /** Where the log lines go (pino; JSON lines unless `logFormat` is pretty or the stream is a terminal); default stderr. */
  readonly logStream?: NodeJS.WritableStream & { isTTY?: boolean };
  /**
   * Environment to read TAMTAM_* settings from, below the options (pass `process.env` to behave
   * as the command line); default: none, only the options and the defaults count.
   */
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** A YAML config file as `--config` reads it, below the options and `env`; default: none (not ~/.tamtam.yaml). */
  readonly configFile?: string;
}

/** One member of the cluster as this agent sees it. */
export interface Member {
  /** `ip:port`, `[ipv6]:port`. */
  readonly address: string;
  readonly state: "alive" | "suspect" | "dead" | "left";
  readonly incarnation: number;
  /** The agent itself. */
  readonly isSelf: boolean;
  /** ms since the agent last heard from the member (or learned of it). */
  readonly ageMs: number;
  /** When the member's state last changed. */
  readonly changedAt: Date;
  /** Round trip of the last answered direct probe (ms); null before any, or when the last one timed out. */
  readonly rttMs: number | null;
}

/**
 * Events as they happen, in a bounded buffer of its own (4096 items, the gRPC Stream and
 * Monitor calls' size). A consumer that falls further behind loses the OLDEST items, never
 * slows the agent or other consumers; `dropped` counts what it lost (also in the agent's
 * stats, `stream.dropped` / `monitor.dropped`). Membership events are those a Monitor call
 * gets: several undelivered changes of one member are coalesced into its latest state, and a
 * damped (flapping) member's changes are held back. Ends when closed (`close()`, `break` out
 * of `for await`) or when the agent stops.
 */
export interface EventStream<T> extends AsyncIterable<T> {
  /** Items this consumer lost because its buffer was full. */
  readonly dropped: number;
  close(): void;
}

export interface AgentHandle {
  /** The gossip address other members reach this agent at (`ip:port`). */
  readonly address: string;
  /** Where the agent serves gRPC (`host:port`, the port resolved when `rpc` asked for port 0, or `unix:PATH`). */
  readonly rpcAddress: string;
  /** Every known member, this agent included. */
  members(): Promise<Member[]>;
  /** Joins the cluster through `address` (`ip:port`); rejects with NO_ANSWER when it does not answer. */
  join(address: string): Promise<void>;
  /** Drops `address` from this agent's table (as `tamtam leave ADDR`); the agent itself leaves with `stop()`. */
  leave(address: string): Promise<void>;
  /** Round trip to `address` in ms; rejects with NO_ANSWER when it does not answer. */
  ping(address: string): Promise<number>;
  /** Sends `message` (a string is sent as UTF-8) to every member. */
  broadcast(message: Uint8Array | string): Promise<void>;
  /** Broadcasts received from now on. */
  broadcasts(): EventStream<Uint8Array>;
  /** Membership changes from now on: the member as it is after the change. */
  memberEvents(): EventStream<Member>;
  /** The agent's counters (as the Stats RPC). */
  stats(): Promise<Readonly<Record<string, number>>>;
  /** Leaves the cluster gracefully (members report *left*, not failed) and stops; idempotent. */
  stop(): Promise<void>;
  /** Resolves with 0 when the agent has stopped, 1 after an engine failure stopped it. */
  readonly stopped: Promise<number>;
}

function memberOf(view: MemberView): Member {
  const info = view.info;
  return {
    address: info.address.key,
    state: MEMBER_STATE_NAMES[info.state],
    incarnation: info.incarnation,
    isSelf: info.isSelf,
    ageMs: view.ageMs,
    changedAt: new Date(view.changedAtEpochMs),
    rttMs: info.lastRttMs < 0 ? null : info.lastRttMs,
  };
}

function addressOf(text: string): Address {
  const a = parseAddress(text);
  if (typeof a === "string") throw new AgentError("INVALID_ADDRESS", a);
  return a;
}

function eventStream<A, B>(subscription: ItemSubscription<A> | null, map: (item: A) => B): EventStream<B> {
  if (subscription === null) throw new AgentError("TOO_MANY_SUBSCRIBERS", "too many subscribers; close one first");
  return {
    get dropped() {
      return subscription.dropped;
    },
    close: () => subscription.close(),
    [Symbol.asyncIterator]: () => {
      const items = subscription[Symbol.asyncIterator]();
      return {
        next: async () => {
          const r = await items.next();
          return r.done === true ? r : { value: map(r.value), done: false };
        },
        return: async () => {
          subscription.close();
          return { value: undefined, done: true };
        },
      };
    },
  };
}

const OPTION_NAMES: ReadonlySet<string> = new Set([
  ...AGENT_SETTINGS.filter((name) => name !== "nobanner"),
  "logLevel",
  "logStream",
  "env",
  "configFile",
]);

/**
 * The agent's options from the library's: the command line's resolution and checks
 * (src/cli/settings.ts, agent-options.ts) with the options in the place of flags, then `env`,
 * then `configFile`, then the defaults. Throws one line for a bad or unknown option.
 */
export function resolveAgentOptions(options: StartAgentOptions): AgentOptions {
  const unknown = Object.keys(options).filter((key) => !OPTION_NAMES.has(key));
  if (unknown.length > 0) throw new Error(`unknown option${unknown.length === 1 ? "" : "s"} ${unknown.join(", ")}`);
  const { logLevel, logStream: _stream, env = {}, configFile, ...settingValues } = options;
  const given = Object.fromEntries(Object.entries(settingValues).filter(([, value]) => value !== undefined)) as FlagValues;
  // No ~/.tamtam.yaml: only an explicit configFile is read.
  const io = { ...systemIO(env), homeDir: null };
  const resolved = agentOptions(resolveSettings(AGENT_SETTINGS, { ...given, nobanner: true }, configFile, io, "option"));
  return logLevel === undefined ? resolved : { ...resolved, logLevel };
}

/**
 * Starts an agent in this process: gossip on UDP at `bind`:`port`, gRPC at `rpc` (default
 * localhost:6262, as the command line; `unix:PATH` for a private socket). Rejects with one
 * line when a setting is bad or a port cannot be used. Call `stop()` to leave and release
 * everything; the process does not exit by itself.
 */
export async function startAgent(options: StartAgentOptions = {}): Promise<AgentHandle> {
  const resolved = resolveAgentOptions(options);
  // The agent layer (engine, grpc-js, pino) loads with the first agent, not with the package.
  const layer = await import("../agent/agent.js");
  const { createLogger } = await import("../agent/log.js");
  const agentOpts = withStartingKeys(resolved, layer.startingKeys);
  const log = createLogger(agentOpts.logLevel, agentOpts.logFormat, options.logStream);
  const agent = await layer.startAgent(agentOpts, log);
  const api = agent.api;
  const utf8 = new TextEncoder();
  return {
    address: agent.gossipAddress.key,
    rpcAddress: agent.rpcAddress,
    members: async () => (await api.members()).map(memberOf),
    // async: a bad address rejects the returned promise, as every other failure does.
    join: async (address) => checkedJoin(api, addressOf(address)),
    leave: async (address) => checkedForget(api, addressOf(address)),
    ping: async (address) => api.ping(addressOf(address)),
    broadcast: async (message) => checkedBroadcast(api, typeof message === "string" ? utf8.encode(message) : message),
    broadcasts: () => eventStream(api.subscribeBroadcasts(), (bytes) => bytes),
    memberEvents: () => eventStream(api.subscribeMembers(), memberOf),
    stats: () => api.stats(),
    stop: () => agent.shutdown("stop() was called"),
    stopped: agent.stopped,
  };
}
