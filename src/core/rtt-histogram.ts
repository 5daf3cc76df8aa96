/**
 * The round trips of answered direct probes, counted into fixed buckets (the ack RTT
 * histogram of `Stats` and of the Prometheus endpoint). Pure: the core hands in each measured
 * round trip; the bounds are fixed so every node, and every scrape, speaks of the same buckets.
 */

/**
 * Upper bounds (ms, inclusive) of the buckets, from loopback (tens of microseconds) to the
 * longest probe timeout of any preset (wan: 3000 ms); a last, unbounded bucket takes the rest.
 */
export const ACK_RTT_BUCKETS_MS = [0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000] as const;

export class RttHistogram {
  /** Observations per bucket, not cumulative; the last entry counts those above every bound. */
  readonly counts = new Array<number>(ACK_RTT_BUCKETS_MS.length + 1).fill(0);
  count = 0;
  sumMs = 0;

  observe(rttMs: number): void {
    let i = 0;
    while (i < ACK_RTT_BUCKETS_MS.length && rttMs > (ACK_RTT_BUCKETS_MS[i] as number)) i++;
    this.counts[i] = (this.counts[i] as number) + 1;
    this.count++;
    this.sumMs += rttMs;
  }

  /** Observations at or below each bound, in the order of ACK_RTT_BUCKETS_MS (Prometheus' `le`). */
  cumulative(): number[] {
    const out: number[] = [];
    let total = 0;
    for (let i = 0; i < ACK_RTT_BUCKETS_MS.length; i++) {
      total += this.counts[i] as number;
      out.push(total);
    }
    return out;
  }
}
