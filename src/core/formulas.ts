/**
 * The protocol's formulas, in one place (memberlist's, so that tuning knowledge carries over):
 * retransmit limit, suspicion timeouts, Lifeguard's shrinking suspicion timeout, the
 * push-pull interval's scaling with cluster size, and the probe timeout's share of the period;
 * and TamTam's own: the spacing of repeated pings within one probe and the number of indirect
 * checks as local health worsens.
 */

/**
 * The probe timeout for a period: max(1, round(periodMs * percent / 100)), so that it keeps its
 * share of the period and indirect probes still fit in it. Used through `periodFields`
 * (config.ts), the one rule for setting the period.
 */
export function probeTimeoutForPeriodMs(periodMs: number, probeTimeoutPercent: number): number {
  return Math.max(1, Math.round((periodMs * probeTimeoutPercent) / 100));
}

/** How many times an update is piggybacked: mult * ceil(log10(n + 1)), at least 1. */
export function retransmitLimit(retransmitMult: number, clusterSize: number): number {
  return Math.max(1, retransmitMult * Math.ceil(Math.log10(Math.max(1, clusterSize) + 1)));
}

/** Lower bound of the suspicion timeout: mult * max(1, log10(n)) * interval (ms). */
export function suspicionMinTimeoutMs(suspicionMult: number, clusterSize: number, probeIntervalMs: number): number {
  const scale = Math.max(1, Math.log10(Math.max(1, clusterSize)));
  return Math.floor(suspicionMult * scale * probeIntervalMs);
}

/**
 * Confirmations expected before a suspicion reaches its minimum timeout (Lifeguard's K): the
 * config's suspicionConfirmations, but no more than the cluster can produce (n - 2 independent
 * suspectors besides the first: everybody but the suspect and the first suspector).
 * memberlist takes K = suspicionMult - 2 and drops it to 0 (the minimum at once) when the
 * cluster is too small; TamTam's presets keep K = suspicionMult - 2 except `lan` (see
 * config.ts), and a small cluster still waits for the confirmations it can give.
 */
export function expectedConfirmations(suspicionConfirmations: number, clusterSize: number): number {
  return Math.max(0, Math.min(suspicionConfirmations, clusterSize - 2));
}

/**
 * Members asked to ping-req a target that missed its direct pings: the configured k, plus
 * one per point of Lifeguard's local health score (a node that misses answers asks more
 * members, so that its own lossy input does not turn into false suspicions), at most
 * MAX_INDIRECT_CHECKS.
 */
export function indirectChecksFor(indirectChecks: number, healthScore: number): number {
  return Math.min(MAX_INDIRECT_CHECKS, indirectChecks + healthScore);
}

/**
 * The chance that a member which hears of a suspicion checks the suspect itself at once
 * (SwimNode.expediteProbe): enough members for 2 * (K + 1) such checks on average, where K is
 * the confirmations the suspicion wants (expectedConfirmations), among the n - 2 that may hear
 * of it; 1 in clusters of up to 2 * (K + 1) + 2 members. So a suspicion costs a bounded number
 * of extra probes however large the cluster is.
 */
export function expediteChance(expected: number, clusterSize: number): number {
  const hearers = clusterSize - 2;
  return hearers <= 0 ? 1 : Math.min(1, (2 * (expected + 1)) / hearers);
}

/** Most members one probe asks for indirect pings. */
export const MAX_INDIRECT_CHECKS = 16;

/**
 * When the i-th of `pings` pings of one probe goes out (ms after the first): evenly spread
 * over `windowMs` (the probe timeout for a direct probe, the relay's nack deadline for a
 * ping-req helper), the first at once. A lost ping or ack then costs a fraction of the window,
 * not the whole probe; with no loss only the first goes out (the ack arrives first).
 */
export function pingOffsetMs(windowMs: number, pings: number, i: number): number {
  return Math.floor((windowMs * i) / Math.max(1, pings));
}

/**
 * Lifeguard's suspicion timeout after `confirmations` independent suspicions:
 * max - (max - min) * log(c + 1) / log(k + 1), never below min. With k = 0 it is min at once.
 */
export function suspicionTimeoutMs(minMs: number, maxMs: number, expected: number, confirmations: number): number {
  if (expected < 1) return minMs;
  const frac = Math.log(confirmations + 1) / Math.log(expected + 1);
  const timeout = Math.floor(maxMs - frac * (maxMs - minMs));
  return Math.max(minMs, timeout);
}

/**
 * What a failed probe adds to Lifeguard's local health score, informed by its nacks. Without
 * indirect checks: 1. When at least one helper nacked: 0, since this node evidently hears its
 * helpers, and the silent ones are down or cut off themselves (SwimNode checks them next).
 * When no helper answered at all: one per helper asked (as Lifeguard: their silence is more
 * likely ours than theirs), unless this node heard from some other member while the probe ran
 * (`heardOthers`): then it is not deaf, the helpers it drew are most likely all cut off with
 * the target (in a partition, all k may lie across the cut), and the probe costs 1, as one
 * without helpers. memberlist counts each missing nack, so in a partition, where the helpers
 * across the cut never answer, every probe on both sides slows down and detection takes
 * seconds longer (bench/detection.bench.ts).
 */
export function probeHealthPenalty(expectedNacks: number, nacks: number, heardOthers = false): number {
  if (expectedNacks <= 0) return 1;
  if (nacks > 0) return 0;
  return heardOthers ? 1 : expectedNacks;
}

/** Lifeguard's local health multiplier applied to the probe interval and timeout. */
export function scaleByHealth(baseMs: number, healthScore: number): number {
  return baseMs * (healthScore + 1);
}

/**
 * Push-pull interval for `clusterSize` live members: memberlist's scaling, which slows it down
 * beyond 32 members by ceil(log2(n) - log2(32)) + 1, so the full-state exchanges of a large
 * cluster stay a bounded share of its traffic.
 */
export function pushPullIntervalMs(baseMs: number, clusterSize: number): number {
  const scale = clusterSize <= 32 ? 1 : Math.ceil(Math.log2(clusterSize) - 5) + 1;
  return baseMs * scale;
}
