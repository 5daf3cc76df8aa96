/**
 * The protocol's formulas, in one place (memberlist's, so that tuning knowledge carries over):
 * retransmit limit, suspicion timeouts, Lifeguard's shrinking suspicion timeout, the
 * push-pull interval's scaling with cluster size, and the probe timeout's share of the period.
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
 * Confirmations expected before a suspicion reaches its minimum timeout (Lifeguard's K):
 * suspicionMult - 2, or 0 when the cluster is too small to produce that many independent
 * suspicions.
 */
export function expectedConfirmations(suspicionMult: number, clusterSize: number): number {
  const k = suspicionMult - 2;
  return clusterSize - 2 < k || k < 0 ? 0 : k;
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
