/**
 * Settings of the `tamtam` command line, resolved in ONE place with the precedence
 *
 *     flag  >  environment (TAMTAM_*)  >  YAML config file  >  default
 *
 * The config file is `--config FILE` if given (it must exist), else `$HOME/.tamtam.yaml`, else
 * `$HOME/.tamtam.yml` (a missing default file is fine). Every setting has one YAML key, one
 * environment variable and one flag:
 *
 *   YAML key             environment variable        flag                   default
 *   rpc                  TAMTAM_RPC                  --rpc                  localhost:6262 (HOST:PORT, or unix:PATH:
 *                                                                            a Unix socket, PATH absolute or relative
 *                                                                            to the working directory, or unix:///PATH)
 *   rpc-token            TAMTAM_RPC_TOKEN            --rpc-token            none (the agent requires it on every call;
 *                                                                            printable ASCII, no spaces; never shown)
 *   verbose              TAMTAM_VERBOSE              --verbose              false
 *   trace                TAMTAM_TRACE                --trace                false
 *   nobanner             TAMTAM_NOBANNER             --nobanner             false
 *   port                 TAMTAM_PORT                 -p, --port             9999 (UDP, 1..65535)
 *   bind                 TAMTAM_BIND                 -b, --bind             0.0.0.0 (:: with --ipv6)
 *   ipv6                 TAMTAM_IPV6                 -6, --ipv6             false
 *   iface                TAMTAM_IFACE                -i, --iface            none
 *   advertise            TAMTAM_ADVERTISE            --advertise            none (IP or IP:PORT)
 *   heartbeat            TAMTAM_HEARTBEAT            --heartbeat            500 on lan, else the preset's own period
 *                                                                            (ms; 10..600000 for every preset and source:
 *                                                                            PERIOD_RANGE_TEXT in src/core/config.ts)
 *   max                  TAMTAM_MAX                  --max                  0 (bytes; 0 = 256 IPv4 / 512 IPv6)
 *   gossip-budget        TAMTAM_GOSSIP_BUDGET        --gossip-budget        0 (bytes/s of gossip rounds; 0 = the preset's:
 *                                                                            lan 4000000, local 8000000, wan 1000000,
 *                                                                            thread 4000; else 1000..1000000000)
 *   multicast            TAMTAM_MULTICAST            --multicast            false
 *   clustername          TAMTAM_CLUSTERNAME          --clustername          tamtam
 *   multicast-address    TAMTAM_MULTICAST_ADDRESS    --multicast-address    none (the agent's default group)
 *   multicast-interval   TAMTAM_MULTICAST_INTERVAL   --multicast-interval   10 (s, 1..3600)
 *   multicast-port       TAMTAM_MULTICAST_PORT       --multicast-port       9998
 *   preset               TAMTAM_PRESET               --preset               lan (lan, local, wan, thread)
 *   workers              TAMTAM_WORKERS              --workers              2 (worker threads of the engine: 0 = the
 *                                                                            core on the main thread; 1 = on a worker;
 *                                                                            N = it and N - 1 seal/open workers; 0..8)
 *   join                 TAMTAM_JOIN                 --join (repeatable)    none (list of ADDR:PORT;
 *                                                                            comma-separated in env)
 *   log-format           TAMTAM_LOG_FORMAT           --log-format           auto (auto, pretty, json)
 *   encrypt              TAMTAM_ENCRYPT              --encrypt              none (base64 16/24/32-byte gossip key;
 *                                                                            never shown; a keyring file that exists wins)
 *   keyring-file         TAMTAM_KEYRING_FILE         --keyring-file         none (JSON/YAML list of base64 keys, primary
 *                                                                            first; created 0600 from --encrypt)
 *   label                TAMTAM_LABEL                --label                none (cluster label, 1..255 bytes)
 *   encrypt-accept-plaintext TAMTAM_ENCRYPT_ACCEPT_PLAINTEXT --encrypt-accept-plaintext  false (migration)
 *   encrypt-send-plaintext   TAMTAM_ENCRYPT_SEND_PLAINTEXT   --encrypt-send-plaintext    false (migration)
 *   event-handler        TAMTAM_EVENT_HANDLER        --event-handler        none ([FILTER=]COMMAND, repeatable; one per
 *                        (repeatable)                                        line in env; see src/agent/event-filter.ts)
 *   event-handler-timeout TAMTAM_EVENT_HANDLER_TIMEOUT --event-handler-timeout 30000 (ms a handler may run, 100..3600000)
 *   metrics-address      TAMTAM_METRICS_ADDRESS      --metrics-address      none (HOST:PORT of the Prometheus endpoint)
 *   reap-after           TAMTAM_REAP_AFTER           --reap-after           0 (ms; 0 = the preset's reapAfterMs)
 *   reconnect-interval   TAMTAM_RECONNECT_INTERVAL   --reconnect-interval   0 (ms; 0 = the preset's reconnectIntervalMs)
 *   reconnect-timeout    TAMTAM_RECONNECT_TIMEOUT    --reconnect-timeout    86400000 (ms a failed member stays a reconnect
 *                                                                            target; 0 = not once reaped)
 *   reconnect-max        TAMTAM_RECONNECT_MAX        --reconnect-max        1024 (reaped reconnect targets kept)
 *   flap-damping         TAMTAM_FLAP_DAMPING         --flap-damping         true (--no-flap-damping turns it off)
 *   snapshot             TAMTAM_SNAPSHOT             --snapshot             none (file of the members known, rejoined
 *                                                                            after a restart)
 *   tag                  TAMTAM_TAG                  --tag (repeatable)     none (list of KEY=VALUE, comma-separated
 *                                                                            as --join; the agent's tags)
 *   query-handler        TAMTAM_QUERY_HANDLER        --query-handler (rep.) none (list of NAME=COMMAND; one per line
 *                                                                            in env, as commands may hold commas)
 *   query-handler-timeout TAMTAM_QUERY_HANDLER_TIMEOUT --query-handler-timeout 3000 (ms, 10..600000: a query handler
 *                                                                            is killed and the query answered as failed)
 * The five protocol settings among them become config fields through `faultFields` in
 * src/core/config.ts, and are checked against the fields' own ranges (`fieldProblem`).
 *
 * Booleans in the environment accept 1/true/yes/on and 0/false/no/off; an empty variable counts
 * as unset. In YAML, booleans are YAML booleans (or the same words as strings), integers are
 * numbers (or digit strings), `join` is a list (or a comma-separated string), `event-handler` a list
 * (or one string) of whole commands, which may hold commas (and, in YAML, newlines). Unknown YAML keys
 * are ignored and reported in `unknownKeys`. Every problem is a clipanion UsageError with one
 * line that names where the bad value came from (`--port`, `TAMTAM_PORT`, `"port" in FILE`).
 * The heartbeat is checked by the protocol period's one rule (`periodProblem` in
 * src/core/config.ts), which `configure heartbeat`, the SetHeartbeat RPC and the agent's
 * start-up apply too, so every source accepts the same range and says it the same way.
 *
 * Only the settings a command asks for are resolved, so a bad agent key in the file does not
 * break `tamtam nodes`. All I/O goes through `SettingsIO`, which tests replace.
 */

import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { homedir } from "node:os";
import { join as joinPath } from "node:path";
import { UsageError } from "clipanion";
import { parseAddress, parseIp } from "../core/address.js";
import {
  DEFAULT_HEARTBEAT_MS,
  fieldProblem,
  PERIOD_RANGE_TEXT,
  PRESET_NAMES,
  PRESETS,
  type PresetName,
  periodProblem,
} from "../core/config.js";
import { parseHostPort, unixSocketPath } from "../rpc/grpc-wire.js";
import { keyProblem, labelProblem } from "../seal/checks.js";
import { EVENT_HANDLER_TIMEOUT_MS, eventHandlerProblem } from "../agent/event-filter.js";
import { MAX_ENGINE_WORKERS } from "../engine/limits.js";
import { parseTagAssignment } from "../api/tags.js";
import { queryHandlerProblem } from "../agent/query-codec.js";

// The YAML parser is loaded only when a config file is read: most calls have none, and loading
// it would cost every command start-up time (it stays in node_modules, outside the bundle).
const requireModule = createRequire(import.meta.url);

function parseYaml(text: string): unknown {
  return (requireModule("yaml") as typeof import("yaml")).parse(text);
}

// ---------------------------------------------------------------------------------------------
// The table of settings

type Kind = "string" | "optional-string" | "boolean" | "integer" | "list";

interface Spec {
  readonly kind: Kind;
  /** YAML key. */
  readonly key: string;
  /** Environment variable. */
  readonly env: string;
  /** Command-line flag, as named in messages. */
  readonly flag: string;
  readonly default: string | boolean | number | null | readonly string[];
  /** Integers: inclusive range and unit (for messages). */
  readonly min?: number;
  readonly max?: number;
  readonly unit?: string;
  /** Integers: the rule a value must follow instead of min..max ("must be ...", or null); NaN when not an integer. */
  readonly rule?: (value: number) => string | null;
  /** Strings: the allowed values. */
  readonly oneOf?: readonly string[];
  /** Strings and list items: why the value is invalid ("must be ..."), or null. */
  readonly check?: (value: string) => string | null;
  /** A secret: messages never show its value. */
  readonly secret?: boolean;
  /**
   * Lists: flag and file items are taken whole (they may hold commas and newlines) and the
   * environment holds one item per line, instead of comma-separated items everywhere.
   */
  readonly wholeItems?: boolean;
}

/** Every preset's gossip budget, for help texts: "lan 4000000, local 8000000, ...". */
export const PRESET_GOSSIP_BUDGETS_TEXT = PRESET_NAMES.map((name) => `${name} ${PRESETS[name].gossipBudgetBytesPerSec}`).join(", ");

/** An RPC address: HOST:PORT, or a Unix socket unix:PATH (see `unixSocketPath`). */
function checkHostPortOrUnix(value: string): string | null {
  const path = unixSocketPath(value);
  const port = parseHostPort(value)?.port ?? NaN;
  return (path !== null ? path !== "" : port >= 1)
    ? null
    : "must be HOST:PORT (like localhost:6262 or [::1]:6262) or unix:PATH (like unix:/run/tamtam.sock)";
}

/** A token as an HTTP/2 header value carries it: printable ASCII without spaces. */
function checkToken(value: string): string | null {
  return /^[\x21-\x7e]+$/.test(value) ? null : "must be printable ASCII without spaces";
}

function checkIp(value: string): string | null {
  return parseIp(value) === null ? "must be an IPv4 or IPv6 address" : null;
}

function checkAddress(value: string): string | null {
  const a = parseAddress(value);
  return typeof a === "string" ? `must be ADDR:PORT (${a})` : null;
}

function checkAdvertise(value: string): string | null {
  const a = parseAddress(value, 1); // the port is optional here
  return typeof a === "string" ? `must be IP or IP:PORT (${a})` : null;
}

/** IPv4 224.0.0.0/4 or IPv6 ff00::/8, optionally in brackets. */
function checkMulticastGroup(value: string): string | null {
  const ip = parseIp(value.replace(/^\[(.*)\]$/, "$1"));
  const isGroup = ip !== null && (ip.length === 4 ? (ip[0] as number) >= 224 && (ip[0] as number) <= 239 : ip[0] === 0xff);
  return isGroup ? null : "must be a multicast group address (224.0.0.0/4 or ff00::/8)";
}

/** The Prometheus endpoint's address: HOST:PORT, port 0 for any free one. */
function checkMetricsAddress(value: string): string | null {
  return parseHostPort(value) !== null ? null : "must be HOST:PORT (like 127.0.0.1:9100 or [::1]:9100)";
}

function checkNonEmpty(value: string): string | null {
  return value.trim() === "" ? "must not be empty" : null;
}

/** A setting of config field `field` where 0 keeps the preset's value: checked by the field's own range. */
function presetFieldRule(field: "reapAfterMs" | "reconnectIntervalMs" | "gossipBudgetBytesPerSec"): (value: number) => string | null {
  return (value) => {
    if (value === 0) return null;
    const problem = fieldProblem(field, value);
    return problem === null ? null : `${problem.replace(/ \(or 0 to disable\)/, "")} (or 0: the preset's)`;
  };
}

function checkTag(value: string): string | null {
  const pair = parseTagAssignment(value);
  return typeof pair === "string" ? `must be KEY=VALUE (${pair})` : null;
}

export const SETTINGS = {
  rpc: { kind: "string", key: "rpc", env: "TAMTAM_RPC", flag: "--rpc", default: "localhost:6262", check: checkHostPortOrUnix },
  rpcToken: {
    kind: "optional-string", key: "rpc-token", env: "TAMTAM_RPC_TOKEN", flag: "--rpc-token", default: null, check: checkToken, secret: true,
  },
  verbose: { kind: "boolean", key: "verbose", env: "TAMTAM_VERBOSE", flag: "--verbose", default: false },
  trace: { kind: "boolean", key: "trace", env: "TAMTAM_TRACE", flag: "--trace", default: false },
  nobanner: { kind: "boolean", key: "nobanner", env: "TAMTAM_NOBANNER", flag: "--nobanner", default: false },
  port: { kind: "integer", key: "port", env: "TAMTAM_PORT", flag: "--port", default: 9999, min: 1, max: 65535 },
  bind: { kind: "string", key: "bind", env: "TAMTAM_BIND", flag: "--bind", default: "0.0.0.0", check: checkIp },
  ipv6: { kind: "boolean", key: "ipv6", env: "TAMTAM_IPV6", flag: "--ipv6", default: false },
  iface: { kind: "optional-string", key: "iface", env: "TAMTAM_IFACE", flag: "--iface", default: null, check: checkNonEmpty },
  advertise: {
    kind: "optional-string", key: "advertise", env: "TAMTAM_ADVERTISE", flag: "--advertise", default: null, check: checkAdvertise,
  },
  heartbeatMs: {
    kind: "integer", key: "heartbeat", env: "TAMTAM_HEARTBEAT", flag: "--heartbeat", default: DEFAULT_HEARTBEAT_MS, rule: periodProblem,
  },
  maxBroadcastBytes: { kind: "integer", key: "max", env: "TAMTAM_MAX", flag: "--max", default: 0, min: 0, max: 65535, unit: "bytes" },
  gossipBudgetBytesPerSec: {
    kind: "integer", key: "gossip-budget", env: "TAMTAM_GOSSIP_BUDGET", flag: "--gossip-budget", default: 0,
    rule: presetFieldRule("gossipBudgetBytesPerSec"),
  },
  multicast: { kind: "boolean", key: "multicast", env: "TAMTAM_MULTICAST", flag: "--multicast", default: false },
  clusterName: {
    kind: "string", key: "clustername", env: "TAMTAM_CLUSTERNAME", flag: "--clustername", default: "tamtam", check: checkNonEmpty,
  },
  multicastAddress: {
    kind: "optional-string", key: "multicast-address", env: "TAMTAM_MULTICAST_ADDRESS", flag: "--multicast-address",
    default: null, check: checkMulticastGroup,
  },
  multicastIntervalSeconds: {
    kind: "integer", key: "multicast-interval", env: "TAMTAM_MULTICAST_INTERVAL", flag: "--multicast-interval",
    default: 10, min: 1, max: 3600, unit: "s",
  },
  multicastPort: {
    kind: "integer", key: "multicast-port", env: "TAMTAM_MULTICAST_PORT", flag: "--multicast-port", default: 9998, min: 1, max: 65535,
  },
  preset: { kind: "string", key: "preset", env: "TAMTAM_PRESET", flag: "--preset", default: "lan", oneOf: PRESET_NAMES },
  // 2: the protocol worker and one seal/open worker; why in the README (Performance) and bench/RESULTS.md.
  workers: { kind: "integer", key: "workers", env: "TAMTAM_WORKERS", flag: "--workers", default: 2, min: 0, max: MAX_ENGINE_WORKERS },
  join: { kind: "list", key: "join", env: "TAMTAM_JOIN", flag: "--join", default: [], check: checkAddress },
  logFormat: {
    kind: "string", key: "log-format", env: "TAMTAM_LOG_FORMAT", flag: "--log-format", default: "auto", oneOf: ["auto", "pretty", "json"],
  },
  encrypt: { kind: "optional-string", key: "encrypt", env: "TAMTAM_ENCRYPT", flag: "--encrypt", default: null, check: keyProblem, secret: true },
  keyringFile: {
    kind: "optional-string", key: "keyring-file", env: "TAMTAM_KEYRING_FILE", flag: "--keyring-file", default: null, check: checkNonEmpty,
  },
  label: { kind: "optional-string", key: "label", env: "TAMTAM_LABEL", flag: "--label", default: null, check: labelProblem },
  encryptAcceptPlaintext: {
    kind: "boolean", key: "encrypt-accept-plaintext", env: "TAMTAM_ENCRYPT_ACCEPT_PLAINTEXT", flag: "--encrypt-accept-plaintext", default: false,
  },
  encryptSendPlaintext: {
    kind: "boolean", key: "encrypt-send-plaintext", env: "TAMTAM_ENCRYPT_SEND_PLAINTEXT", flag: "--encrypt-send-plaintext", default: false,
  },
  eventHandlers: {
    kind: "list", key: "event-handler", env: "TAMTAM_EVENT_HANDLER", flag: "--event-handler", default: [], check: eventHandlerProblem,
    wholeItems: true,
  },
  eventHandlerTimeoutMs: {
    kind: "integer", key: "event-handler-timeout", env: "TAMTAM_EVENT_HANDLER_TIMEOUT", flag: "--event-handler-timeout",
    default: EVENT_HANDLER_TIMEOUT_MS, min: 100, max: 3_600_000, unit: "ms",
  },
  metricsAddress: {
    kind: "optional-string", key: "metrics-address", env: "TAMTAM_METRICS_ADDRESS", flag: "--metrics-address", default: null,
    check: checkMetricsAddress,
  },
  reapAfterMs: {
    kind: "integer", key: "reap-after", env: "TAMTAM_REAP_AFTER", flag: "--reap-after", default: 0, rule: presetFieldRule("reapAfterMs"),
  },
  reconnectIntervalMs: {
    kind: "integer", key: "reconnect-interval", env: "TAMTAM_RECONNECT_INTERVAL", flag: "--reconnect-interval", default: 0,
    rule: presetFieldRule("reconnectIntervalMs"),
  },
  reconnectTimeoutMs: {
    kind: "integer", key: "reconnect-timeout", env: "TAMTAM_RECONNECT_TIMEOUT", flag: "--reconnect-timeout",
    default: PRESETS.lan.reconnectTimeoutMs, rule: (v) => fieldProblem("reconnectTimeoutMs", v),
  },
  maxReconnectTargets: {
    kind: "integer", key: "reconnect-max", env: "TAMTAM_RECONNECT_MAX", flag: "--reconnect-max",
    default: PRESETS.lan.maxReconnectTargets, rule: (v) => fieldProblem("maxReconnectTargets", v),
  },
  flapDamping: { kind: "boolean", key: "flap-damping", env: "TAMTAM_FLAP_DAMPING", flag: "--flap-damping", default: true },
  snapshot: { kind: "optional-string", key: "snapshot", env: "TAMTAM_SNAPSHOT", flag: "--snapshot", default: null, check: checkNonEmpty },
  tag: { kind: "list", key: "tag", env: "TAMTAM_TAG", flag: "--tag", default: [], check: checkTag },
  queryHandler: {
    kind: "list", key: "query-handler", env: "TAMTAM_QUERY_HANDLER", flag: "--query-handler", default: [], check: queryHandlerProblem,
    wholeItems: true,
  },
  queryHandlerTimeoutMs: {
    kind: "integer", key: "query-handler-timeout", env: "TAMTAM_QUERY_HANDLER_TIMEOUT", flag: "--query-handler-timeout",
    default: 3000, min: 10, max: 600_000, unit: "ms",
  },
} as const satisfies Record<string, Spec>;

export type SettingName = keyof typeof SETTINGS;

const presetPeriods = (names: readonly PresetName[]): string =>
  names.map((name) => `${name} ${PRESETS[name].probeIntervalMs} ms`).join(", ");

/** Every preset's own protocol period, for help texts: "lan 1000 ms, local 1000 ms, ...". */
export const PRESET_PERIODS_TEXT = presetPeriods(PRESET_NAMES);

/** What `--heartbeat` accepts and defaults to, for help texts. */
export const HEARTBEAT_HELP =
  `${PERIOD_RANGE_TEXT} for every preset (default ${DEFAULT_HEARTBEAT_MS} ms with lan, ` +
  `else the preset's own: ${presetPeriods(PRESET_NAMES.filter((name) => name !== "lan"))})`;

type ValueOfKind<K extends Kind> = K extends "boolean"
  ? boolean
  : K extends "integer"
    ? number
    : K extends "list"
      ? readonly string[]
      : K extends "optional-string"
        ? string | null
        : string;

export type SettingValue<N extends SettingName> = ValueOfKind<(typeof SETTINGS)[N]["kind"]>;

/** The settings every command resolves. */
export const GLOBAL_SETTINGS = ["rpc", "rpcToken", "verbose", "trace", "nobanner"] as const satisfies readonly SettingName[];
/** The settings `tamtam agent` resolves (the global ones included). */
export const AGENT_SETTINGS = [
  ...GLOBAL_SETTINGS,
  "port", "bind", "ipv6", "iface", "advertise", "heartbeatMs", "maxBroadcastBytes", "gossipBudgetBytesPerSec", "multicast", "clusterName",
  "multicastAddress", "multicastIntervalSeconds", "multicastPort", "preset", "workers", "join", "logFormat",
  "encrypt", "keyringFile", "label", "encryptAcceptPlaintext", "encryptSendPlaintext",
  "eventHandlers", "eventHandlerTimeoutMs", "metricsAddress",
  "reapAfterMs", "reconnectIntervalMs", "reconnectTimeoutMs", "maxReconnectTargets", "flapDamping", "snapshot",
  "tag", "queryHandler", "queryHandlerTimeoutMs",
] as const satisfies readonly SettingName[];

export type GlobalSettingName = (typeof GLOBAL_SETTINGS)[number];
export type AgentSettingName = (typeof AGENT_SETTINGS)[number];

// ---------------------------------------------------------------------------------------------
// Resolution

/** Where a value came from: "option" is the options object of the library's startAgent (src/lib). */
export type Source = "flag" | "option" | "env" | "file" | "default";

/**
 * Flag values as clipanion hands them over (undefined when the flag was not given), or the
 * typed values of the library's options object (numbers for integers).
 */
export type FlagValues = { readonly [N in SettingName]?: string | number | boolean | readonly string[] | undefined };

export interface SettingsIO {
  readonly env: Readonly<Record<string, string | undefined>>;
  /** Directory holding the default config file; null when there is none. */
  readonly homeDir: string | null;
  /** The file's text, or null when it does not exist; throws on any other failure. */
  readonly readFile: (path: string) => string | null;
}

export interface ResolvedSettings<N extends SettingName> {
  readonly values: { readonly [K in N]: SettingValue<K> };
  readonly sources: { readonly [K in N]: Source };
  /** The config file that was read, or null. */
  readonly configFile: string | null;
  /** Keys of the config file this version does not know (ignored). */
  readonly unknownKeys: readonly string[];
  /** How a setting's value is named in messages: `--port`, `TAMTAM_PORT`, `"port" in FILE`. */
  label(name: N): string;
}

/** SettingsIO over the real file system, with HOME taken from `env` (else the OS). */
export function systemIO(env: Readonly<Record<string, string | undefined>>): SettingsIO {
  const home = env.HOME !== undefined && env.HOME !== "" ? env.HOME : safeHomedir();
  return {
    env,
    homeDir: home,
    readFile: (path) => {
      try {
        return readFileSync(path, "utf8");
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === "ENOENT") return null;
        throw error;
      }
    },
  };
}

function safeHomedir(): string | null {
  try {
    return homedir();
  } catch {
    return null;
  }
}

const BOOLEAN_WORDS: Readonly<Record<string, boolean>> = {
  "1": true, true: true, yes: true, on: true,
  "0": false, false: false, no: false, off: false,
};

interface ConfigFile {
  readonly path: string | null;
  readonly data: Readonly<Record<string, unknown>>;
}

/** Reads and parses the config file (explicit path, else the default names in homeDir). */
export function loadConfigFile(explicitPath: string | undefined, io: SettingsIO): ConfigFile {
  const candidates =
    explicitPath !== undefined
      ? [explicitPath]
      : io.homeDir === null
        ? []
        : [joinPath(io.homeDir, ".tamtam.yaml"), joinPath(io.homeDir, ".tamtam.yml")];
  for (const path of candidates) {
    let text: string | null;
    try {
      text = io.readFile(path);
    } catch (error) {
      throw new UsageError(`cannot read config file ${path}: ${errorText(error)}`);
    }
    if (text === null) continue;
    let data: unknown;
    try {
      data = parseYaml(text);
    } catch (error) {
      throw new UsageError(`config file ${path} is not valid YAML: ${errorText(error)}`);
    }
    if (data === null || data === undefined) return { path, data: {} };
    if (typeof data !== "object" || Array.isArray(data)) {
      throw new UsageError(`config file ${path} must be a YAML mapping of keys to values`);
    }
    return { path, data: data as Record<string, unknown> };
  }
  if (explicitPath !== undefined) throw new UsageError(`config file ${explicitPath} does not exist`);
  return { path: null, data: {} };
}

function errorText(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return (message.split("\n")[0] ?? "").trim().replace(/:$/, "");
}

/**
 * Resolves `names` from flags, environment, config file and defaults. Throws a one-line
 * UsageError for a missing explicit config file, unparsable YAML, or a bad value. `given` says
 * where `flags` came from: the command line (named `--port` in messages) or the options object
 * of the library's startAgent (named `option port`), which holds typed values (numbers, lists).
 */
export function resolveSettings<N extends SettingName>(
  names: readonly N[],
  flags: FlagValues,
  configPath: string | undefined,
  io: SettingsIO,
  given: "flag" | "option" = "flag",
): ResolvedSettings<N> {
  const file = loadConfigFile(configPath, io);
  const values: Record<string, unknown> = {};
  const sources: Record<string, Source> = {};
  const label = (name: N): string => labelFor(name, sources[name] ?? "default", file.path);

  for (const name of names) {
    const spec: Spec = SETTINGS[name];
    const flag = flags[name];
    const envText = io.env[spec.env];
    let source: Source;
    let raw: unknown;
    if (flag !== undefined) {
      [source, raw] = [given, flag];
    } else if (envText !== undefined && envText.trim() !== "") {
      [source, raw] = ["env", envText];
    } else if (file.data[spec.key] !== undefined && file.data[spec.key] !== null) {
      [source, raw] = ["file", file.data[spec.key]];
    } else {
      [source, raw] = ["default", spec.default];
    }
    sources[name] = source;
    values[name] = source === "default" ? spec.default : convert(spec, raw, source, labelFor(name, source, file.path));
  }

  const known = new Set(Object.values(SETTINGS).map((s: Spec) => s.key));
  return {
    values: values as ResolvedSettings<N>["values"],
    sources: sources as ResolvedSettings<N>["sources"],
    configFile: file.path,
    unknownKeys: Object.keys(file.data).filter((k) => !known.has(k)),
    label,
  };
}

function labelFor(name: SettingName, source: Source, file: string | null): string {
  const spec: Spec = SETTINGS[name];
  switch (source) {
    case "flag":
      return spec.flag;
    case "option":
      return `option ${name}`;
    case "env":
      return spec.env;
    case "file":
      return `"${spec.key}" in ${file ?? "the config file"}`;
    case "default":
      return `the default ${spec.key}`;
  }
}

/** Turns a flag, environment or YAML value into the setting's type, checking it. */
function convert(spec: Spec, raw: unknown, source: Source, label: string): unknown {
  const shown = spec.secret === true ? "a value that is not shown" : typeof raw === "string" ? `"${raw}"` : JSON.stringify(raw);
  const fail = (must: string): never => {
    throw new UsageError(`${label} ${must}, got ${shown}`);
  };
  switch (spec.kind) {
    case "boolean": {
      if (typeof raw === "boolean") return raw;
      const word = typeof raw === "string" ? BOOLEAN_WORDS[raw.trim().toLowerCase()] : undefined;
      return word ?? fail("must be true or false (1/true/yes/on or 0/false/no/off)");
    }
    case "integer": {
      const text = typeof raw === "number" ? String(raw) : typeof raw === "string" ? raw.trim() : "";
      if (spec.rule !== undefined) {
        const n = /^[+-]?[0-9]+$/.test(text) ? Number(text) : NaN;
        const problem = spec.rule(n);
        return problem === null ? n : fail(problem);
      }
      const range = `${spec.min}..${spec.max}${spec.unit === undefined ? "" : ` (${spec.unit})`}`;
      if (!/^[+-]?[0-9]+$/.test(text)) return fail(`must be an integer in ${range}`);
      const n = Number(text);
      if (n < (spec.min as number) || n > (spec.max as number)) return fail(`must be in ${range}`);
      return n;
    }
    case "string":
    case "optional-string": {
      const text = typeof raw === "string" ? raw.trim() : typeof raw === "number" && source === "file" ? String(raw) : undefined;
      if (text === undefined) return fail("must be a string");
      if (spec.oneOf !== undefined && !spec.oneOf.includes(text)) return fail(`must be one of ${spec.oneOf.join(", ")}`);
      const problem = spec.check?.(text) ?? null;
      return problem === null ? text : fail(problem);
    }
    case "list": {
      const items = Array.isArray(raw) ? raw : [raw];
      const out: string[] = [];
      const separator = spec.wholeItems !== true ? "," : source === "env" ? "\n" : null;
      for (const item of items) {
        if (typeof item !== "string") return fail("must be a list of strings");
        for (const part of separator === null ? [item] : item.split(separator)) {
          const text = part.trim();
          if (text === "") continue;
          const problem = spec.check?.(text) ?? null;
          if (problem !== null) throw new UsageError(`${label} item "${text}" ${problem}`);
          out.push(text);
        }
      }
      return out;
    }
  }
}
