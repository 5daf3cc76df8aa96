/**
 * Broadcast repair: anti-entropy for user broadcasts, so that delivery under loss does not rest
 * on gossip redundancy alone. It owns
 *  - the progress of each recently active origin epoch: the lowest seq not yet settled
 *    (`floor`), the highest seq known to exist (seen here, or advertised by a member's digest),
 *    and which member told of it (`hint`);
 *  - the digest: while an origin epoch was active lately, "the highest seq I have seen of it"
 *    rides, at most twice per probe interval, in the room a datagram has left (a DIGEST item),
 *    so that a member that missed the last broadcasts of a stream (tail loss) learns of them;
 *    gaps (seq 10 and 12 seen, 11 not) show by themselves;
 *  - the repair round: every `tickMs`, the seqs still missing on two rounds in a row are asked
 *    for (REPAIR_REQUEST, at most MAX_REPAIR_SEQS each, at most MAX_REQUESTS_PER_TICK a round),
 *    from the member that told of them, then the origin, then any live member, in turn; seqs
 *    asked for MAX_ATTEMPTS rounds without the lowest missing one moving are given up (the
 *    lower half of the last request, or all of it when nothing else is missing; counted), and
 *    the next ones are asked for (beyond MAX_REPAIR_SEQS missing, a request asks for the
 *    oldest and the newest half and half);
 *  - the store of recent broadcasts (encoded items) that answers such requests, bounded by count
 *    (maxQueuedBroadcasts), bytes (REPAIR_STORE_MAX_BYTES) and age (`windowMs`): overflow evicts
 *    the oldest and is counted.
 * The node sends and receives; this module decides. Pure: time comes in as an argument.
 *
 * A member only asks for what its peers stored since it started (REPAIR_REQUEST's maxAgeMs is
 * its uptime), so a member that joins late is not handed the history it never was there for.
 * Of an origin epoch it first hears of at seq s, it asks for the seqs before s as far back as
 * the dedupe window reaches (it may have been cut off from that origin by a partition), or for
 * at most BACKFILL_SEQS of them in its first window after start (it is most likely joining,
 * and its peers would serve none of them anyway).
 */

import type { Address } from "./address.js";
import type { SwimConfig } from "./config.js";
import type { DigestEntry, RepairRequestBody, UserBroadcast } from "./wire/messages.js";
import type { SightingLog } from "./dedupe.js";
import { MAX_REPAIR_SEQS, MessageType } from "./wire/messages.js";

/** Bytes of broadcast items the store keeps at most. */
export const REPAIR_STORE_MAX_BYTES = 1 << 20;
/** Origin epochs whose progress is followed at most; the least recently active is forgotten first. */
export const MAX_TRACKED_ORIGINS = 256;
/** REPAIR_REQUESTs one repair round sends at most. */
export const MAX_REQUESTS_PER_TICK = 4;
/** REPAIR datagrams one request is answered with at most. */
export const MAX_REPAIR_DATAGRAMS = 4;
/** Repair rounds without progress before the missing seqs of an origin epoch are given up. */
export const MAX_ATTEMPTS = 8;
/** Seqs before the first one heard of an origin epoch still asked for by a node that started within the window. */
export const BACKFILL_SEQS = 64;
/** Repair rounds are this many gossip intervals apart. */
const TICK_GOSSIP_INTERVALS = 2;
/** Digests one node sends per probe interval at most (and at most one per gossip interval). */
const DIGESTS_PER_PROBE_INTERVAL = 2;
/** Origins stay active, and stored broadcasts kept, this many probe intervals. */
const WINDOW_PROBE_INTERVALS = 10;

export interface RepairStats {
  /** REPAIR_REQUESTs sent, and received from members. */
  repairRequestsSent: number;
  repairRequestsReceived: number;
  /** Requests not answered: the gossip budget had no room, or nothing asked for was stored. */
  repairRequestsUnanswered: number;
  /** REPAIR datagrams sent in answer. */
  repairDatagramsSent: number;
  /** Broadcasts delivered here for the first time by a REPAIR datagram. */
  broadcastsRepaired: number;
  /** Seqs given up after MAX_ATTEMPTS rounds, or pushed out of the dedupe window. */
  repairSeqsGivenUp: number;
  /** Stored broadcasts evicted by the count or byte bound (not by age). */
  repairStoreEvictions: number;
  /** Origin epochs forgotten because MAX_TRACKED_ORIGINS were followed. */
  repairOriginsEvicted: number;
  /** DIGEST items sent. */
  repairDigestsSent: number;
}

export function emptyRepairStats(): RepairStats {
  return {
    repairRequestsSent: 0,
    repairRequestsReceived: 0,
    repairRequestsUnanswered: 0,
    repairDatagramsSent: 0,
    broadcastsRepaired: 0,
    repairSeqsGivenUp: 0,
    repairStoreEvictions: 0,
    repairOriginsEvicted: 0,
    repairDigestsSent: 0,
  };
}

interface Progress {
  readonly origin: Address;
  readonly epoch: number;
  /** Every seq below is settled (seen here, or given up). */
  floor: number;
  /** The highest seq seen here. */
  highestSeen: number;
  /** The highest seq known to exist. */
  highest: number;
  /** When `highest` last grew. */
  activeAtMs: number;
  /** The member that told of `highest` (sent it, or advertised it). */
  hint: Address | null;
  /** Seqs were missing on the last round. */
  waiting: boolean;
  attempts: number;
  /** The lowest missing seq when `attempts` began counting. */
  attemptsFrom: number;
  /** Seqs missing at the last round (requests carry at most MAX_REPAIR_SEQS of them). */
  missingCount: number;
}

interface Stored {
  readonly item: Uint8Array;
  readonly atMs: number;
}

/** A REPAIR_REQUEST to send: to whom (the hint, the origin, or null: any live member). */
export interface RepairAsk {
  readonly to: Address | null;
  readonly body: RepairRequestBody;
}

export class BroadcastRepair {
  readonly tickMs: number;
  readonly windowMs: number;
  private readonly digestIntervalMs: number;
  private readonly maxStored: number;
  /** When this node started: requests ask only for what was stored since. */
  private startedAtMs = Infinity;
  private readonly progress = new Map<string, Progress>();
  /** Stored broadcast items by `originKey/epoch/seq`, oldest first. */
  private readonly store = new Map<string, Stored>();
  private storedBytes = 0;
  private nextDigestAtMs = -Infinity;
  private digestCursor = 0;
  /** Where the next repair round starts among the origin epochs followed. */
  private tickCursor = 0;
  /** A repair-round timer is pending. */
  tickArmed = false;

  constructor(
    config: SwimConfig,
    private readonly self: Address,
    /** What was delivered here (the dedupe windows). */
    private readonly sightings: SightingLog,
    private readonly dedupeWindow: number,
    private readonly stats: RepairStats,
  ) {
    this.tickMs = Math.max(1, TICK_GOSSIP_INTERVALS * config.gossipIntervalMs);
    this.windowMs = WINDOW_PROBE_INTERVALS * config.probeIntervalMs;
    this.digestIntervalMs = Math.max(1, config.gossipIntervalMs, Math.floor(config.probeIntervalMs / DIGESTS_PER_PROBE_INTERVAL));
    this.maxStored = config.maxQueuedBroadcasts;
  }

  /** The node started at `nowMs`. */
  begin(nowMs: number): void {
    this.startedAtMs = nowMs;
  }

  /** Origin epochs followed (repair rounds run while there are any). */
  get trackedOrigins(): number {
    return this.progress.size;
  }

  get storedCount(): number {
    return this.store.size;
  }

  /** A broadcast delivered here (or originated here, `from` null), with its encoded item. */
  onDelivered(nowMs: number, b: UserBroadcast, item: Uint8Array, from: Address | null): void {
    this.keep(nowMs, `${b.origin.key}/${b.epoch}/${b.seq}`, item);
    const own = b.origin.key === this.self.key;
    const p = this.follow(nowMs, b.origin, b.epoch, own ? b.seq : Math.max(0, b.seq - this.backfill(nowMs)));
    if (b.seq > p.highestSeen || p.highestSeen < 0) p.highestSeen = b.seq;
    this.advertised(nowMs, p, b.seq, from);
  }

  /** A member's digest. */
  onDigest(nowMs: number, from: Address, entries: readonly DigestEntry[]): void {
    for (const e of entries) {
      // Nobody knows more of this node's own broadcasts than this node.
      if (e.origin.key === this.self.key) continue;
      const key = `${e.origin.key}/${e.epoch}`;
      const known = this.progress.get(key);
      if (known !== undefined && e.highestSeq <= known.highest) continue;
      this.advertised(nowMs, known ?? this.follow(nowMs, e.origin, e.epoch, Math.max(0, e.highestSeq + 1 - this.backfill(nowMs))), e.highestSeq, from);
    }
  }

  /**
   * The entries of a digest due now (origin epochs active within the window, taken in turn
   * from where the last digest stopped), or null when none is due. `digestSent` says how many went.
   */
  digestDue(nowMs: number): DigestEntry[] | null {
    if (nowMs < this.nextDigestAtMs || this.progress.size === 0) return null;
    const active: DigestEntry[] = [];
    for (const p of this.progress.values()) {
      if (p.highestSeen >= 0 && nowMs - p.activeAtMs <= this.windowMs) active.push({ origin: p.origin, epoch: p.epoch, highestSeq: p.highestSeen });
    }
    if (active.length === 0) return null;
    const start = this.digestCursor % active.length;
    return start === 0 ? active : active.slice(start).concat(active.slice(0, start));
  }

  digestSent(nowMs: number, count: number): void {
    this.nextDigestAtMs = nowMs + this.digestIntervalMs;
    this.digestCursor += count;
    this.stats.repairDigestsSent++;
  }

  /**
   * One repair round: the requests to send now (the node picks a live member where `to` is
   * null and sends them), after forgetting what aged out. False in `more` when nothing is
   * followed any longer (no further round is needed until something new arrives).
   */
  tick(nowMs: number, originLive: (a: Address) => boolean): { readonly asks: RepairAsk[]; readonly more: boolean } {
    this.expire(nowMs);
    const asks: RepairAsk[] = [];
    const maxAgeMs = Math.min(0xffffffff, Math.max(0, Math.floor(nowMs - this.startedAtMs)));
    // Origin epochs take turns from where the last round's requests stopped: MAX_REQUESTS_PER_TICK
    // must not let the first ones (a joiner's unservable history, say) starve the others.
    const entries = [...this.progress];
    const start = entries.length === 0 ? 0 : this.tickCursor % entries.length;
    for (let i = 0; i < entries.length; i++) {
      const [key, p] = entries[(start + i) % entries.length] as [string, Progress];
      const missing = this.missing(p);
      if (missing.length === 0) {
        p.waiting = false;
        p.attempts = 0;
        if (nowMs - p.activeAtMs > this.windowMs) this.progress.delete(key);
        continue;
      }
      // Missing on two rounds in a row: gossip had its chance.
      if (!p.waiting) {
        p.waiting = true;
        continue;
      }
      // The lowest missing one moved: the last requests were answered; count afresh.
      if (missing[0] !== p.attemptsFrom) {
        p.attempts = 0;
        p.attemptsFrom = missing[0] as number;
      }
      if (p.attempts >= MAX_ATTEMPTS) {
        this.giveUp(p, missing);
        continue;
      }
      if (asks.length >= MAX_REQUESTS_PER_TICK) continue;
      this.tickCursor = start + i + 1;
      const turn = p.attempts++ % 3;
      const to = turn === 0 && p.hint !== null ? p.hint : turn === 1 && originLive(p.origin) ? p.origin : null;
      asks.push({ to, body: { type: MessageType.RepairRequest, origin: p.origin, epoch: p.epoch, maxAgeMs, seqs: missing } });
    }
    return { asks, more: this.progress.size > 0 };
  }

  /** The stored items a REPAIR_REQUEST asks for (stored at most its maxAgeMs ago), in its order. */
  serve(nowMs: number, body: RepairRequestBody): Uint8Array[] {
    this.expire(nowMs);
    const out: Uint8Array[] = [];
    const prefix = `${body.origin.key}/${body.epoch}/`;
    for (const seq of body.seqs) {
      const s = this.store.get(prefix + seq);
      if (s !== undefined && nowMs - s.atMs <= body.maxAgeMs) out.push(s.item);
    }
    return out;
  }

  /**
   * The missing seqs of `p` to ask for, lowest first: all of them, or the lowest and the highest
   * MAX_REPAIR_SEQS / 2 when there are more; moves its floor past what is settled.
   */
  private missing(p: Progress): number[] {
    const log = this.sightings;
    const originKey = p.origin.key;
    const epoch = p.epoch;
    // Older than the dedupe window: a late copy would be taken as stale anyway.
    const lowest = p.highest - this.dedupeWindow + 1;
    if (p.floor < lowest) {
      // Only the last window's worth can still be unseen (the rest is stale to the dedupe windows too).
      this.stats.repairSeqsGivenUp += log.countUnseen(originKey, epoch, Math.max(p.floor, lowest - this.dedupeWindow), lowest - 1);
      p.floor = lowest;
    }
    if (p.floor > p.highest) {
      p.missingCount = 0;
      return [];
    }
    p.floor = log.firstUnseen(originKey, epoch, p.floor, p.highest);
    p.missingCount = log.countUnseen(originKey, epoch, p.floor, p.highest);
    // All of them, or the oldest and the newest: the oldest leave the stores first, and the
    // newest are the ones most likely stored at all (a member that just started misses history
    // nobody serves it).
    const all = p.missingCount <= MAX_REPAIR_SEQS;
    const oldest = all ? p.missingCount : MAX_REPAIR_SEQS >> 1;
    const out: number[] = [];
    for (let next = p.floor; out.length < oldest; next++) {
      next = log.firstUnseen(originKey, epoch, next, p.highest);
      out.push(next);
    }
    if (all) return out;
    const newest: number[] = [];
    for (let next = p.highest; newest.length < MAX_REPAIR_SEQS - oldest; next--) {
      next = log.lastUnseen(originKey, epoch, p.floor, next);
      newest.push(next);
    }
    return out.concat(newest.reverse());
  }

  /**
   * Gives up the lower half of `missing` (the seqs the last requests asked for, lowest first;
   * all of them when they were all that was missing): the floor moves past them.
   */
  private giveUp(p: Progress, missing: readonly number[]): void {
    const below = p.missingCount <= missing.length ? missing.length : MAX_REPAIR_SEQS >> 1;
    this.stats.repairSeqsGivenUp += below;
    p.floor = (missing[below - 1] as number) + 1;
    p.attempts = 0;
  }

  /** Seqs before the first one heard of an origin epoch that are asked for (see the header). */
  private backfill(nowMs: number): number {
    return nowMs - this.startedAtMs >= this.windowMs ? this.dedupeWindow : BACKFILL_SEQS;
  }

  /** The progress of (origin, epoch), created with `floor` if new (evicting the stalest one when full). */
  private follow(nowMs: number, origin: Address, epoch: number, floor: number): Progress {
    const key = `${origin.key}/${epoch}`;
    let p = this.progress.get(key);
    if (p !== undefined) return p;
    if (this.progress.size >= MAX_TRACKED_ORIGINS) {
      // The least recently active one goes (map order is creation order; find the stalest).
      let stalest: string | null = null;
      let stalestAtMs = Infinity;
      for (const [k, q] of this.progress) {
        if (q.activeAtMs < stalestAtMs) {
          stalestAtMs = q.activeAtMs;
          stalest = k;
        }
      }
      if (stalest !== null) this.progress.delete(stalest);
      this.stats.repairOriginsEvicted++;
    }
    p = { origin, epoch, floor, highestSeen: -1, highest: floor - 1, activeAtMs: nowMs, hint: null, waiting: false, attempts: 0, attemptsFrom: -1, missingCount: 0 };
    this.progress.set(key, p);
    return p;
  }

  private advertised(nowMs: number, p: Progress, seq: number, from: Address | null): void {
    if (seq <= p.highest) return;
    p.highest = seq;
    p.activeAtMs = nowMs;
    if (from !== null) p.hint = from;
  }

  private keep(nowMs: number, key: string, item: Uint8Array): void {
    if (this.store.has(key)) return;
    this.store.set(key, { item, atMs: nowMs });
    this.storedBytes += item.length;
    while (this.store.size > this.maxStored || this.storedBytes > REPAIR_STORE_MAX_BYTES) {
      this.dropOldest();
      this.stats.repairStoreEvictions++;
    }
  }

  /** Forgets stored broadcasts older than the window. */
  private expire(nowMs: number): void {
    for (const s of this.store.values()) {
      if (nowMs - s.atMs <= this.windowMs) break;
      this.dropOldest();
    }
  }

  private dropOldest(): void {
    const first = this.store.entries().next().value;
    if (first === undefined) return;
    this.store.delete(first[0]);
    this.storedBytes -= first[1].item.length;
  }
}
