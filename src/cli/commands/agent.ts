/**
 * `tamtam agent`: runs the agent in the foreground until SIGINT/SIGTERM. Resolves the settings
 * (flags > TAMTAM_* environment > config file > defaults, see settings.ts), turns them into
 * `AgentOptions` (agent-options.ts, shared with the library's startAgent), then calls
 * `runAgent` from src/agent/agent.ts.
 */

import { Command, Option } from "clipanion";
import { agentOptions, withStartingKeys } from "../agent-options.js";
import { CliError, EXIT, TamTamCommand } from "../base-command.js";
import { AGENT_SETTINGS, HEARTBEAT_HELP, PRESET_GOSSIP_BUDGETS_TEXT } from "../settings.js";

export { agentOptions };

type AgentLayer = typeof import("../../agent/agent.js");

/** Loaded on demand: only `tamtam agent` needs the engine, grpc-js and pino. */
async function loadAgentLayer(): Promise<AgentLayer> {
  try {
    return await import("../../agent/agent.js");
  } catch (error) {
    throw new CliError(`cannot load the agent: ${((error as Error).message.split("\n")[0] ?? "").trim()}`, EXIT.FAILED);
  }
}

export class AgentCommand extends TamTamCommand {
  static override paths = [["agent"]];
  static override usage = Command.Usage({
    description: "run a TamTam agent in the foreground",
    details: `
      Runs the agent until interrupted (SIGINT or SIGTERM): it gossips over UDP on
      \`--bind\`:\`--port\` and serves the gRPC API on \`--rpc\` (default localhost:6262),
      which every other command talks to.

      Every flag can also be set in the environment (\`TAMTAM_PORT\`, \`TAMTAM_HEARTBEAT\`,
      \`TAMTAM_JOIN\` comma-separated, ...: TAMTAM_ and the flag's name in upper case with
      \`_\` for \`-\`) or in the config file under the flag's name (\`port: 9998\`,
      \`join: [10.0.0.1:9999]\`, \`log-format: json\`). A flag wins over the environment,
      which wins over the file.

      \`--heartbeat\` accepts the same range from every source and for every preset, as
      \`tamtam configure heartbeat\` does live; the probe timeout keeps the preset's share of
      the period.

      \`--gossip-budget\` caps the bytes per second of this agent's gossip rounds. While a
      deep broadcast queue drains, burst rounds send as fast as the budget allows; when
      producers offer more than the cluster carries, the agent's bounded broadcast queue
      fills and \`broadcast\` answers that it is full (RESOURCE_EXHAUSTED) until it drains.

      Unlike the original, \`--iface\` is optional with a wildcard bind address;
      \`--advertise\` sets the address other members reach this agent at explicitly.

      \`--rpc unix:PATH\` serves gRPC on a Unix socket only its owner can use (mode 0600),
      removed when the agent stops. With \`--rpc-token\` (better: \`TAMTAM_RPC_TOKEN\` or
      \`rpc-token:\` in the config file, out of the process list) every call must present
      the token, as every other command does when given the same setting. Serving on an
      address other machines can reach without a token logs a warning.

      \`--encrypt KEY\` (base64 of 16, 24 or 32 bytes; better \`TAMTAM_ENCRYPT\` or
      \`encrypt:\` in the config file) seals every gossip datagram with AES-GCM and drops
      what does not open. \`--keyring-file FILE\` keeps the keys (primary first) across
      restarts: a file that exists wins over \`--encrypt\`; a missing one is created (mode
      0600) with the \`--encrypt\` key. \`--label NAME\` binds a cluster label into every
      datagram, with or without keys. \`--encrypt-accept-plaintext\` and
      \`--encrypt-send-plaintext\` let a running cluster move to sealing agent by agent.

      \`--event-handler [FILTER=]COMMAND\` (repeatable) runs COMMAND with \`/bin/sh -c\` on
      membership events (member-join, member-leave, member-failed, member-update; coalesced
      over a second, three at most) and on broadcasts (user); FILTER is a comma-separated list of them,
      or \`*\`. The event is in \`TAMTAM_EVENT\`, \`TAMTAM_SELF_ADDRESS\` and
      \`TAMTAM_TAG_*\`; the members (one line each: address, state) or the broadcast's bytes
      are on standard input. A run is killed after \`--event-handler-timeout\` ms.

      \`--metrics-address HOST:PORT\` serves Prometheus metrics at
      \`http://HOST:PORT/metrics\`.

      \`--tag KEY=VALUE\` (repeatable, or comma-separated as \`--join\`; \`TAMTAM_TAG\`, \`tag:\` a
      list in the config file) gives the agent tags that every member sees (\`tamtam nodes\`), changed live
      with \`tamtam tags set\` and \`tamtam tags delete\`. Tags larger than fit one datagram with
      the agent's alive statement (1159 bytes encoded with the default datagrams, 1130 sealed)
      keep the agent from starting.

      \`--query-handler NAME=COMMAND\` (repeatable; \`TAMTAM_QUERY_HANDLER\` one per line) answers
      \`tamtam query NAME\`: COMMAND runs with \`/bin/sh -c\`, the query's payload on its
      standard input and TAMTAM_QUERY_NAME, TAMTAM_QUERY_FROM and TAMTAM_SELF_ADDRESS in its
      environment; the first bytes of its standard output that fit one datagram are the
      response. It is killed after \`--query-handler-timeout\` ms (default 3000) and the query is
      answered as failed, as it is when the command exits with a non-zero status.
    `,
    examples: [
      ["Run an agent with the defaults", "$0 agent"],
      ["A second agent on the same host", "$0 --rpc localhost:6363 agent -p 9998"],
      ["Join seeds at start-up, JSON logs", "$0 agent --join 10.0.0.1:9999 --join 10.0.0.2:9999 --log-format json"],
      ["An IPv6 agent on a Thread mesh", "$0 agent -6 --preset thread --multicast"],
      ["gRPC on a private Unix socket, with a token", "TAMTAM_RPC_TOKEN=s3cret $0 --rpc unix:/run/tamtam/agent.sock agent"],
      ["Log every join and failure through a script", "$0 agent --event-handler 'member-join,member-failed=logger -t tamtam \"$TAMTAM_EVENT: $(cat)\"'"],
      ["Prometheus metrics on port 9100 of localhost", "$0 agent --metrics-address 127.0.0.1:9100"],
      ["A tagged web server that answers the query \"load\"", "$0 agent --tag role=web --tag dc=eu-west --query-handler 'load=cat /proc/loadavg'"],
      ["Sealed gossip, keys kept in a keyring file", "TAMTAM_ENCRYPT=$(openssl rand -base64 32) $0 agent --keyring-file /var/lib/tamtam/keyring.json --label prod"],
    ],
  });

  port = Option.String("-p,--port", { description: "UDP port of the gossip protocol (default 9999)" });
  bind = Option.String("-b,--bind", { description: "IP address to bind the gossip socket to (default 0.0.0.0, or :: with --ipv6)" });
  ipv6 = Option.Boolean("-6,--ipv6", { description: "use IPv6: bind :: unless --bind is given" });
  iface = Option.String("-i,--iface", { description: "network interface whose address is advertised when bound to a wildcard address" });
  heartbeat = Option.String("--heartbeat", { description: `protocol period in milliseconds: ${HEARTBEAT_HELP}` });
  max = Option.String("--max", { description: "largest broadcast message in bytes; 0 = 256 on IPv4, 512 on IPv6 (default 0)" });
  gossipBudget = Option.String("--gossip-budget", {
    description: `bytes per second this agent's gossip rounds may send, bursts for deep broadcast queues included; 0 = the preset's (${PRESET_GOSSIP_BUDGETS_TEXT}; default 0)`,
  });
  multicast = Option.Boolean("--multicast", { description: "announce and discover members on the link by cluster name" });
  clustername = Option.String("--clustername", { description: 'cluster name of the multicast announcements (default "tamtam")' });
  multicastAddress = Option.String("--multicast-address", {
    description: "multicast group of the announcements (default: the agent's group for the address family)",
  });
  multicastInterval = Option.String("--multicast-interval", { description: "seconds between multicast announcements (default 10)" });
  multicastPort = Option.String("--multicast-port", { description: "UDP port of the multicast announcements (default 9998)" });
  advertise = Option.String("--advertise", { description: "IP[:PORT] other members reach this agent at (default: derived from --bind/--iface)" });
  preset = Option.String("--preset", { description: "protocol timing preset: lan, local, wan or thread (default lan)" });
  workers = Option.String("--workers", {
    description: "worker threads that run the protocol core: 0 = on the main thread, 1 = one worker thread that also seals and opens, N = it and N - 1 seal/open workers (up to 8; default 2, see bench/RESULTS.md)",
  });
  join = Option.Array("--join", { description: "ADDR:PORT of a member to join at start-up (repeatable)" });
  logFormat = Option.String("--log-format", { description: "auto (pretty on a terminal, JSON otherwise), pretty or json (default auto)" });
  encrypt = Option.String("--encrypt", { description: "base64 AES-GCM key (16, 24 or 32 bytes) that seals gossip; a keyring file that exists wins" });
  keyringFile = Option.String("--keyring-file", {
    description: "file of the gossip keys (JSON or YAML list of base64, primary first), created 0600 and kept up to date",
  });
  label = Option.String("--label", { description: "cluster label bound into every datagram (1..255 bytes), with or without keys" });
  encryptAcceptPlaintext = Option.Boolean("--encrypt-accept-plaintext", { description: "with keys: also accept plaintext datagrams (migration)" });
  encryptSendPlaintext = Option.Boolean("--encrypt-send-plaintext", { description: "with keys: send plaintext datagrams (migration)" });
  eventHandler = Option.Array("--event-handler", {
    description: "[FILTER=]COMMAND run on member-join, member-leave, member-failed, member-update or user events (FILTER: comma list or *; repeatable)",
  });
  eventHandlerTimeout = Option.String("--event-handler-timeout", { description: "milliseconds an event handler may run before it is killed (default 30000)" });
  metricsAddress = Option.String("--metrics-address", { description: "HOST:PORT to serve Prometheus metrics at /metrics (default: none)" });
  reapAfter = Option.String("--reap-after", { description: "ms after which dead and left members leave the table (default 0: the preset's)" });
  reconnectInterval = Option.String("--reconnect-interval", {
    description: "ms between reconnect rounds, each contacting one failed member or seed (default 0: the preset's)",
  });
  reconnectTimeout = Option.String("--reconnect-timeout", {
    description: "ms a failed member stays a reconnect target, also once reaped (default 86400000, 24 h; 0: not once reaped)",
  });
  reconnectMax = Option.String("--reconnect-max", { description: "reaped failed members kept as reconnect targets (default 1024)" });
  flapDamping = Option.Boolean("--flap-damping", { description: "damp members that keep dying and coming back (default on; --no-flap-damping)" });
  snapshot = Option.String("--snapshot", { description: "FILE where the agent keeps the members it knows, and rejoins them from after a restart" });
  tag = Option.Array("--tag", { description: "KEY=VALUE tag of this agent, seen by every member (repeatable)" });
  queryHandler = Option.Array("--query-handler", { description: "NAME=COMMAND that answers queries named NAME (repeatable)" });
  queryHandlerTimeout = Option.String("--query-handler-timeout", { description: "time limit of a query handler in ms (10..600000; default 3000)" });

  async execute(): Promise<number> {
    const settings = this.resolve(AGENT_SETTINGS, {
      port: this.port,
      bind: this.bind,
      ipv6: this.ipv6,
      iface: this.iface,
      heartbeatMs: this.heartbeat,
      maxBroadcastBytes: this.max,
      gossipBudgetBytesPerSec: this.gossipBudget,
      multicast: this.multicast,
      clusterName: this.clustername,
      multicastAddress: this.multicastAddress,
      multicastIntervalSeconds: this.multicastInterval,
      multicastPort: this.multicastPort,
      advertise: this.advertise,
      preset: this.preset,
      workers: this.workers,
      join: this.join,
      logFormat: this.logFormat,
      encrypt: this.encrypt,
      keyringFile: this.keyringFile,
      label: this.label,
      encryptAcceptPlaintext: this.encryptAcceptPlaintext,
      encryptSendPlaintext: this.encryptSendPlaintext,
      eventHandlers: this.eventHandler,
      eventHandlerTimeoutMs: this.eventHandlerTimeout,
      metricsAddress: this.metricsAddress,
      reapAfterMs: this.reapAfter,
      reconnectIntervalMs: this.reconnectInterval,
      reconnectTimeoutMs: this.reconnectTimeout,
      maxReconnectTargets: this.reconnectMax,
      flapDamping: this.flapDamping,
      snapshot: this.snapshot,
      tag: this.tag,
      queryHandler: this.queryHandler,
      queryHandlerTimeoutMs: this.queryHandlerTimeout,
    });
    const layer = await loadAgentLayer();
    return await layer.runAgent(withStartingKeys(agentOptions(settings), layer.startingKeys));
  }
}
