/**
 * Flap damping, after BGP route flap damping (RFC 2439): a member that keeps dying and coming
 * back (a bad NIC, a congested link) is *damped* by each observer, so that it stops driving
 * applications through endless dead/alive cycles and event storms.
 *
 * The policy, per observed member (self is never damped):
 * - every comeback (the member was held dead, or had been reaped as failed, and is alive or
 *   suspect again) is a flap and adds FLAP_PENALTY (1000) to the member's penalty; refuted
 *   suspicions do not count (under heavy datagram loss every member gets some, and damping
 *   healthy members would hide real changes);
 * - the penalty decays exponentially with a half-life of `flapHalfLifeMs`, and never exceeds
 *   flapReusePenalty * 2^(flapMaxSuppressMs / flapHalfLifeMs), so that no member is damped for
 *   longer than flapMaxSuppressMs after its last flap;
 * - when a flap lifts the penalty to `flapSuppressPenalty` or above, the member is damped until
 *   the penalty has decayed below `flapReusePenalty` (a timer at the computed time releases it).
 *   With the lan defaults (half-life 60 s, suppress 2000, reuse 750), a member that comes back
 *   every 40 s is damped at its third comeback, and released about 2 minutes after its last one;
 *   one restart, or two far apart, never damp.
 *
 * What damping changes:
 * - what the node reports: member events carry the damping state (`damped`, `dampingChanged`),
 *   and a host shows applications one event when damping starts and one when it ends, instead
 *   of every change in between (see the agent's Monitor fan-out); `nodes --json` shows it;
 * - whom the node believes: suspicions raised by a member it holds damped (whoever passes them
 *   on), and the dead statements about other members such a member sends, are not taken up
 *   (counted in accusationsIgnored). A member whose own link flaps suspects everyone it cannot
 *   hear, and every such suspicion otherwise makes the whole cluster flip a healthy member to
 *   suspect (or dead) and back. Suspicions raised by undamped members are taken up as before,
 *   also when a damped member passes them on, so that they still reach the accused.
 * The damped member itself is probed, suspected, declared dead and refutes exactly as before,
 * so detecting its real failure and healing are not slowed.
 * The table is bounded (`maxEntries`); when full, the entry updated longest ago that is not
 * damped is forgotten (counted). Only when every entry is damped does a damped one go (the one
 * updated longest ago): its damping ends then, and recordFlap names it, so that the node tells
 * its host (a release event) and whoever saw the member damped also sees it released.
 */

import type { SwimConfig } from "./config.js";

/** The penalty of one flap (BGP's withdrawal penalty). */
export const FLAP_PENALTY = 1000;

/** The config fields of flap damping (see SwimConfig for units and ranges). */
export type DampingConfig = Pick<SwimConfig, "flapDamping" | "flapHalfLifeMs" | "flapSuppressPenalty" | "flapReusePenalty" | "flapMaxSuppressMs">;

/** Counters of flap damping; all monotonic but membersDamped (members damped right now). */
export interface DampingStats {
  flapsRecorded: number;
  /** Suspicions raised by a damped member, not taken up. */
  accusationsIgnored: number;
  dampingStarted: number;
  dampingReleased: number;
  dampingEntriesDropped: number;
  membersDamped: number;
}

export function emptyDampingStats(): DampingStats {
  return { flapsRecorded: 0, accusationsIgnored: 0, dampingStarted: 0, dampingReleased: 0, dampingEntriesDropped: 0, membersDamped: 0 };
}

/** A member's damping state as hosts show it. */
export interface DampingView {
  readonly damped: boolean;
  /** Penalty now (decayed), rounded. */
  readonly flapPenalty: number;
  /** Comebacks counted since this node first saw the member flap (bounded table: may restart). */
  readonly flaps: number;
  /** When damping is expected to end (local ms), or -1 when not damped. */
  readonly dampedUntilMs: number;
}

export const NOT_DAMPED: DampingView = { damped: false, flapPenalty: 0, flaps: 0, dampedUntilMs: -1 };

/** What one flap did: when to check the member's release (-1: no damping started), and a damped member whose entry was evicted to make room (its damping ended), or null. */
export interface FlapOutcome {
  readonly releaseAtMs: number;
  readonly evictedDamped: string | null;
}

const NO_CHANGE: FlapOutcome = { releaseAtMs: -1, evictedDamped: null };

interface Entry {
  penalty: number;
  atMs: number;
  flaps: number;
  damped: boolean;
}

export class FlapDamping {
  private readonly entries = new Map<string, Entry>();
  private readonly ceiling: number;

  constructor(
    private readonly config: DampingConfig,
    private readonly maxEntries: number,
    readonly stats: DampingStats,
  ) {
    this.ceiling = config.flapReusePenalty * 2 ** (config.flapMaxSuppressMs / config.flapHalfLifeMs);
  }

  /**
   * The member at `key` came back. Returns the time its damping should be checked for release
   * when this flap starts a damping episode (else -1), and the key of a damped member whose
   * entry had to go to make room (its damping ended: the caller reports the release).
   */
  recordFlap(key: string, nowMs: number): FlapOutcome {
    if (!this.config.flapDamping) return NO_CHANGE;
    this.stats.flapsRecorded++;
    let e = this.entries.get(key);
    let evictedDamped: string | null = null;
    if (e === undefined) {
      if (this.entries.size >= this.maxEntries) evictedDamped = this.evict();
      e = { penalty: 0, atMs: nowMs, flaps: 0, damped: false };
      this.entries.set(key, e);
    }
    this.decay(e, nowMs);
    e.penalty = Math.min(this.ceiling, e.penalty + FLAP_PENALTY);
    e.flaps++;
    if (e.damped || e.penalty < this.config.flapSuppressPenalty) return evictedDamped === null ? NO_CHANGE : { releaseAtMs: -1, evictedDamped };
    e.damped = true;
    this.stats.dampingStarted++;
    this.stats.membersDamped++;
    return { releaseAtMs: this.releaseAtMs(e), evictedDamped };
  }

  /**
   * A release check for the member at `key`: "released" when its damping ends now, "later"
   * with the time of the next check when it is still damped, "none" when it is not damped.
   */
  checkRelease(key: string, nowMs: number): { readonly outcome: "released" | "none" } | { readonly outcome: "later"; readonly atMs: number } {
    const e = this.entries.get(key);
    if (e === undefined || !e.damped) return { outcome: "none" };
    this.decay(e, nowMs);
    if (e.penalty >= this.config.flapReusePenalty) return { outcome: "later", atMs: Math.max(nowMs + 1, this.releaseAtMs(e)) };
    e.damped = false;
    this.stats.dampingReleased++;
    this.stats.membersDamped--;
    return { outcome: "released" };
  }

  isDamped(key: string): boolean {
    return this.entries.get(key)?.damped === true;
  }

  view(key: string, nowMs: number): DampingView {
    const e = this.entries.get(key);
    if (e === undefined) return NOT_DAMPED;
    const penalty = e.penalty * 2 ** (-(nowMs - e.atMs) / this.config.flapHalfLifeMs);
    return { damped: e.damped, flapPenalty: Math.round(penalty), flaps: e.flaps, dampedUntilMs: e.damped ? this.releaseAtMs(e) : -1 };
  }

  /** When the penalty of `e` decays below the reuse threshold. */
  private releaseAtMs(e: Entry): number {
    const halfLives = Math.log2(Math.max(1, e.penalty / this.config.flapReusePenalty));
    return e.atMs + Math.ceil(halfLives * this.config.flapHalfLifeMs) + 1;
  }

  private decay(e: Entry, nowMs: number): void {
    if (nowMs > e.atMs) e.penalty *= 2 ** (-(nowMs - e.atMs) / this.config.flapHalfLifeMs);
    e.atMs = Math.max(e.atMs, nowMs);
  }

  /**
   * Forgets the undamped entry updated longest ago; if every entry is damped, the damped one
   * updated longest ago, whose damping ends with it (counted as released): returns its key then,
   * else null.
   */
  private evict(): string | null {
    let undamped: string | null = null;
    let undampedAt = Infinity;
    let damped: string | null = null;
    let dampedAt = Infinity;
    for (const [key, e] of this.entries) {
      if (!e.damped && e.atMs < undampedAt) {
        undamped = key;
        undampedAt = e.atMs;
      } else if (e.damped && e.atMs < dampedAt) {
        damped = key;
        dampedAt = e.atMs;
      }
    }
    this.stats.dampingEntriesDropped++;
    if (undamped !== null) {
      this.entries.delete(undamped);
      return null;
    }
    const victim = damped as string;
    this.entries.delete(victim);
    this.stats.dampingReleased++;
    this.stats.membersDamped--;
    return victim;
  }
}
