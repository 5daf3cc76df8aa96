/**
 * From resolved agent settings (src/cli/settings.ts) to the `AgentOptions` the agent starts
 * with: every check across settings, and the starting gossip keys of the keyring file. Shared by
 * `tamtam agent` and the library's startAgent (src/lib/agent.ts), so both start the same agent.
 */

import type { AgentOptions } from "../agent/options.js";
import { type EventHandlerSpec, parseEventHandler, queryEventHandler } from "../agent/event-filter.js";
import { parseAddress, parseIp } from "../core/address.js";
import type { PresetName } from "../core/config.js";
import { parseQueryHandler, type QueryHandlerSpec } from "../agent/query-codec.js";
import { parseTagAssignments } from "../api/tags.js";
import { decodeKey } from "../seal/checks.js";
import type { startingKeys } from "../seal/keyring.js";
import { CliError, EXIT } from "./base-command.js";
import type { AgentSettingName, ResolvedSettings } from "./settings.js";

/** AgentOptions from resolved settings; throws a one-line usage error for inconsistent values. */
export function agentOptions(s: ResolvedSettings<AgentSettingName>): AgentOptions {
  const v = s.values;
  const bindIp = parseIp(v.bind);
  if (v.ipv6 && s.sources.bind !== "default" && bindIp?.length === 4) {
    throw new CliError(`${s.label("ipv6")} conflicts with ${s.label("bind")} ${v.bind}, an IPv4 address`, EXIT.USAGE);
  }
  const bind = v.ipv6 && s.sources.bind === "default" ? "::" : v.bind;
  const advertise = v.advertise === null ? null : parseAddress(v.advertise, v.port);
  const key = (a: ReturnType<typeof parseAddress>): string => (typeof a === "string" ? a : a.key); // checked in settings
  const encryptKey = v.encrypt === null ? null : (decodeKey(v.encrypt) as Uint8Array); // checked in settings
  for (const name of ["encryptAcceptPlaintext", "encryptSendPlaintext"] as const) {
    if (v[name] && encryptKey === null && v.keyringFile === null) {
      throw new CliError(`${s.label(name)} needs a gossip key (--encrypt or --keyring-file)`, EXIT.USAGE);
    }
  }
  let tags: Record<string, string>;
  try {
    tags = parseTagAssignments(v.tag, s.label("tag")); // checked in settings
  } catch (error) {
    throw new CliError((error as Error).message, EXIT.USAGE);
  }
  // Queries are answered by --query-handler NAME=COMMAND and, as in Serf, by
  // --event-handler query:NAME=COMMAND; every other event handler runs for events.
  const queryHandlers: QueryHandlerSpec[] = [];
  const eventHandlers: EventHandlerSpec[] = [];
  const answers = (spec: QueryHandlerSpec, label: string): void => {
    if (queryHandlers.some((h) => h.name === spec.name)) throw new CliError(`${label}: two handlers for the query "${spec.name}"`, EXIT.USAGE);
    queryHandlers.push(spec);
  };
  for (const text of v.queryHandler) answers(parseQueryHandler(text) as QueryHandlerSpec, s.label("queryHandler")); // checked in settings
  for (const text of v.eventHandlers) {
    const query = queryEventHandler(text); // checked in settings
    if (query !== null) answers(query as QueryHandlerSpec, s.label("eventHandlers"));
    else eventHandlers.push(parseEventHandler(text) as EventHandlerSpec);
  }
  return {
    rpc: v.rpc,
    rpcToken: v.rpcToken,
    bind,
    port: v.port,
    ipv6: v.ipv6 || bind.includes(":"),
    iface: v.iface,
    advertise: advertise === null ? null : key(advertise),
    // Checked by the period's one rule (periodProblem) in settings.ts. Unset: the agent keeps
    // the original's 500 ms on the default preset, a preset's own period otherwise (defaultPeriodMs).
    heartbeatMs: s.sources.heartbeatMs === "default" ? null : v.heartbeatMs,
    maxBroadcastBytes: v.maxBroadcastBytes,
    gossipBudgetBytesPerSec: v.gossipBudgetBytesPerSec,
    multicast: {
      enabled: v.multicast,
      clusterName: v.clusterName,
      address: v.multicastAddress === null ? null : v.multicastAddress.replace(/^\[(.*)\]$/, "$1"),
      intervalSeconds: v.multicastIntervalSeconds,
      port: v.multicastPort,
    },
    preset: v.preset as PresetName,
    workers: v.workers,
    join: v.join.map((j) => key(parseAddress(j))),
    logLevel: v.trace ? "trace" : v.verbose ? "debug" : "info",
    logFormat: v.logFormat as AgentOptions["logFormat"],
    nobanner: v.nobanner,
    // Only when given (checked in settings): agents without them are described as before.
    ...(eventHandlers.length === 0 ? {} : { eventHandlers, eventHandlerTimeoutMs: v.eventHandlerTimeoutMs }),
    ...(v.metricsAddress === null ? {} : { metricsAddress: v.metricsAddress }),
    faults: {
      reapAfterMs: v.reapAfterMs === 0 ? null : v.reapAfterMs,
      reconnectIntervalMs: v.reconnectIntervalMs === 0 ? null : v.reconnectIntervalMs,
      reconnectTimeoutMs: v.reconnectTimeoutMs,
      maxReconnectTargets: v.maxReconnectTargets,
      flapDamping: v.flapDamping,
    },
    snapshot: v.snapshot,
    tags,
    queryHandlers,
    queryHandlerTimeoutMs: v.queryHandlerTimeoutMs,
    // Only with a key, a keyring file or a label. The keyring file is read by `execute`
    // (startingKeys), which completes this.
    ...(encryptKey === null && v.keyringFile === null && v.label === null
      ? {}
      : {
          seal: {
            keys: encryptKey === null ? [] : [encryptKey],
            keyringFile: v.keyringFile,
            createKeyringFile: false,
            warning: null,
            label: v.label,
            acceptPlaintext: v.encryptAcceptPlaintext,
            sendPlaintext: v.encryptSendPlaintext,
          },
        }),
  };
}

/**
 * `options` with the starting keys of its keyring file (`startingKeys` of src/seal/keyring.ts,
 * passed in by the caller, which loads it with the agent); a one-line usage error when the file
 * is bad or missing without a key.
 */
export function withStartingKeys(options: AgentOptions, starting: typeof startingKeys): AgentOptions {
  const seal = options.seal;
  if (seal === undefined || seal.keyringFile === null) return options;
  let start;
  try {
    start = starting(seal.keys[0] ?? null, seal.keyringFile);
  } catch (error) {
    throw new CliError((error as Error).message, EXIT.USAGE);
  }
  return { ...options, seal: { ...seal, keys: start.keys, createKeyringFile: start.createFile, warning: start.warning } };
}
