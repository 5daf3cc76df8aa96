/**
 * Everything `tamtam agent` can be told, after flags, environment and config file have been
 * merged (flag > env > file > default). The CLI builds this; `runAgent` consumes it.
 */

import type { LogLevelName } from "../api/agent-api.js";
import type { FaultSettings, PresetName } from "../core/config.js";
import type { EventHandlerSpec } from "./event-filter.js";
import type { QueryHandlerSpec } from "./query-codec.js";

export interface MulticastOptions {
  /** Announce and discover members by cluster name. */
  readonly enabled: boolean;
  readonly clusterName: string;
  /** Group address; default 239.255.84.84 on IPv4, ff03::1 (realm-local, spans a Thread mesh) on IPv6. */
  readonly address: string | null;
  /** Seconds between announcements. */
  readonly intervalSeconds: number;
  readonly port: number;
}

/** Gossip sealing and the cluster label (src/seal). */
export interface SealOptions {
  /** Starting keys, primary first (see `startingKeys` in src/seal/keyring.ts); empty: no sealing. */
  readonly keys: readonly Uint8Array[];
  /** The keyring file kept up to date with the keys, or null. */
  readonly keyringFile: string | null;
  /** The keyring file does not exist yet: the agent creates it (mode 0600) with `keys`. */
  readonly createKeyringFile: boolean;
  /** Logged at start (never contains a key), or null. */
  readonly warning: string | null;
  /** Cluster label bound into every datagram, or null. */
  readonly label: string | null;
  /** Accept plaintext datagrams although keys are installed (migration). */
  readonly acceptPlaintext: boolean;
  /** Send plaintext datagrams although keys are installed (migration). */
  readonly sendPlaintext: boolean;
}

export interface AgentOptions {
  /** gRPC listen address `host:port`, or a Unix socket `unix:PATH` (the global --rpc). */
  readonly rpc: string;
  /** When set, every gRPC call must present it (`authorization: Bearer TOKEN`; the global --rpc-token). */
  readonly rpcToken: string | null;
  /** Gossip bind address: an IP, or 0.0.0.0 / :: for all. */
  readonly bind: string;
  /** Gossip UDP port, 1..65535. */
  readonly port: number;
  /** Bind `::` instead of 0.0.0.0 when bind is the default. */
  readonly ipv6: boolean;
  /** Interface whose address is advertised when bind is a wildcard (optional here, unlike the original). */
  readonly iface: string | null;
  /** Address (ip or ip:port) other members reach this node at; default: derived from bind/iface. */
  readonly advertise: string | null;
  /**
   * Protocol period (ms), in the period's one range for every preset (PERIOD_RANGE_TEXT,
   * 10..600000, checked by `periodProblem` in src/core/config.ts); null when not given: then
   * 500 ms (the original's default) with the default `lan` preset, the preset's own otherwise
   * (`defaultPeriodMs`). `periodFields` derives the probe timeout from it.
   */
  readonly heartbeatMs: number | null;
  /** Largest broadcast payload (bytes); 0 = 256 on IPv4, 512 on IPv6. */
  readonly maxBroadcastBytes: number;
  /** Gossip bandwidth budget (bytes/s, see SwimConfig.gossipBudgetBytesPerSec); absent or 0 = the preset's. */
  readonly gossipBudgetBytesPerSec?: number;
  readonly multicast: MulticastOptions;
  /** Protocol preset (lan, local, wan, thread); --heartbeat overrides its period. */
  readonly preset: PresetName;
  /** Worker threads of the engine: 0 = the core inline on the main thread, 1 = on a worker thread, N = it and N - 1 seal/open workers. */
  readonly workers: number;
  /** Seeds to join at start-up (ip:port), retried until one answers. */
  readonly join: readonly string[];
  readonly logLevel: LogLevelName;
  /** pretty on a terminal, json otherwise, unless forced. */
  readonly logFormat: "auto" | "pretty" | "json";
  readonly nobanner: boolean;
  /** Sealing and label; absent or without keys and label: plain datagrams as before. */
  readonly seal?: SealOptions;
  /** Commands run on membership and user events (--event-handler), in the order given; absent: none. */
  readonly eventHandlers?: readonly EventHandlerSpec[];
  /** Time limit of one event handler run (ms); absent: EVENT_HANDLER_TIMEOUT_MS (event-filter.ts). */
  readonly eventHandlerTimeoutMs?: number;
  /** HOST:PORT of the Prometheus endpoint (--metrics-address); absent or null: none. */
  readonly metricsAddress?: string | null;
  /** Partition healing and flap damping (--reap-after, --reconnect-*, --flap-damping); see faultFields. Absent: the preset's. */
  readonly faults?: FaultSettings;
  /** The member snapshot file (--snapshot); absent or null: none. */
  readonly snapshot?: string | null;
  /** This agent's tags at start (--tag KEY=VALUE); none when absent. */
  readonly tags?: Readonly<Record<string, string>>;
  /** Commands that answer queries by name (--query-handler NAME=COMMAND). */
  readonly queryHandlers?: readonly QueryHandlerSpec[];
  /** Time limit of a query handler, command or ServeQueries stream (ms); default 3000. */
  readonly queryHandlerTimeoutMs?: number;
}
