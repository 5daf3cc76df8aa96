/**
 * A simulation scenario: cluster size, seed, protocol preset and overrides, the network model
 * (latency, loss, duplication) and a timeline of faults and actions. Plain data, so that it can
 * be printed in a report and replayed exactly.
 */

import type { PresetName, SwimConfig } from "../core/config.js";
import { Prng } from "../core/prng.js";
import { encodeTags } from "../core/tags.js";

export interface NetworkModel {
  /** Smallest one-way latency (ms); every datagram takes at least this long. */
  readonly latencyMinMs: number;
  /** Mean one-way latency (ms): min plus an exponential tail with mean (mean - min). */
  readonly latencyMeanMs: number;
  /** Probability that a datagram is lost, 0..1 (independent per datagram). */
  readonly lossRate: number;
  /** Probability that a datagram is delivered twice (the copy takes its own latency), 0..1. */
  readonly duplicateRate: number;
}

export type ScenarioAction =
  /** Crash: the node stops at once, without a word. */
  | { readonly kind: "kill"; readonly atMs: number; readonly node: number }
  /** Start a crashed or stopped node again on the same address, then join through `seed`. */
  | { readonly kind: "restart"; readonly atMs: number; readonly node: number }
  /** Freeze the node (no timers, inbound datagrams wait in a bounded socket buffer). */
  | { readonly kind: "pause"; readonly atMs: number; readonly node: number; readonly durationMs: number }
  /** Graceful leave, as the agent leaves: the core tells members directly, then the process stops at once. */
  | { readonly kind: "leave"; readonly atMs: number; readonly node: number }
  /** Split the cluster into nodes [0, splitAt) and [splitAt, n) until `untilMs`. One-way drops only A→B. */
  | {
      readonly kind: "partition";
      readonly atMs: number;
      readonly untilMs: number;
      readonly splitAt: number;
      readonly oneWay: boolean;
    }
  /** Every datagram to `node` is lost from `atMs` until `untilMs` (its incoming traffic only: a flapping link). */
  | { readonly kind: "deafen"; readonly atMs: number; readonly untilMs: number; readonly node: number }
  /** Change the loss rate from `atMs` until `untilMs`. */
  | { readonly kind: "loss"; readonly atMs: number; readonly untilMs: number; readonly lossRate: number }
  /** A user broadcast from `node`. */
  | { readonly kind: "broadcast"; readonly atMs: number; readonly node: number; readonly bytes: number };

export interface Scenario {
  readonly nodes: number;
  readonly seed: number;
  readonly preset: PresetName;
  readonly overrides: Partial<SwimConfig>;
  /** Simulated duration in protocol periods (of the preset's probe interval). */
  readonly periods: number;
  readonly network: NetworkModel;
  /** Addresses: all IPv4, all IPv6, or alternating. */
  readonly addressing: "ipv4" | "ipv6" | "mixed";
  /** Nodes start within this window (ms), each then joins node 0 (the seed). */
  readonly startSpreadMs: number;
  /**
   * Start from a converged cluster instead: every node starts at time 0 already knowing every
   * other node alive at incarnation 0 (no join storm), which large simulations need.
   */
  readonly warmStart: boolean;
  /** Starting incarnation of a restarted node: from the (virtual) clock, as the agent does, or 0. */
  readonly restartIncarnation: "clock" | "zero";
  /** Every node starts with tags (simNodeTags) that its alive statements carry. */
  readonly tags: boolean;
  /**
   * Each node's wall clock is off by up to this much either way (ms; per node, from the seed,
   * see clockOffsetMs): it moves the rounds of the shared probe schedule. 0: one clock for all
   * (whose epoch the seed draws).
   */
  readonly clockSkewMs: number;
  readonly actions: readonly ScenarioAction[];
}

export const DEFAULT_NETWORK: NetworkModel = {
  latencyMinMs: 0.2,
  latencyMeanMs: 1,
  lossRate: 0,
  duplicateRate: 0,
};

export function makeScenario(partial: Partial<Scenario> & Pick<Scenario, "nodes" | "seed">): Scenario {
  return {
    preset: "lan",
    overrides: {},
    periods: 30,
    network: DEFAULT_NETWORK,
    addressing: "ipv4",
    startSpreadMs: 100,
    warmStart: false,
    restartIncarnation: "clock",
    tags: false,
    clockSkewMs: 0,
    actions: [],
    ...partial,
  };
}

const ascii = (text: string): Uint8Array => Uint8Array.from(text, (c) => c.charCodeAt(0));

/**
 * Node `index`'s wall clock at virtual time 0 (ms since the Unix epoch): the scenario's own
 * epoch, drawn from the seed (so that seeds sample different rounds of the shared probe
 * schedule, as clusters started at different times do), off by up to ±skewMs for this node.
 */
export function clockOffsetMs(seed: number, index: number, skewMs: number): number {
  const epochMs = new Prng(seed, CLOCK_STREAM - 1).nextU32() * 1000;
  if (skewMs <= 0) return epochMs;
  return epochMs + (new Prng(seed, CLOCK_STREAM + index).nextU32() / 2 ** 32) * 2 * skewMs - skewMs;
}

/** PRNG streams of the clock offsets: apart from the nodes' (2i + 1, 2i + 2) and the scenario's. */
const CLOCK_STREAM = 0x40000000;

/** The tags of simulated node `index` (encoded): node=INDEX and role=web (every third node) or db. */
export function simNodeTags(index: number): Uint8Array {
  return encodeTags([
    [ascii("node"), ascii(String(index))],
    [ascii("role"), ascii(index % 3 === 0 ? "web" : "db")],
  ]);
}
