/**
 * What applications see of damped members (see src/core/flap-damping.ts): the membership
 * events of a member the core holds damped are held back from Monitor subscribers and event
 * handlers, except the one that starts its damping and the one that ends it. The event that
 * ends it is rewritten to follow the last one shown (its `previous` state and incarnation are
 * those shown when damping started), so that a member that ended its damping dead reads as a
 * failure, and one that is alive as it was as nothing. Bounded: the states shown are kept for
 * damped members only, at most MAX_DAMPED_SHOWN (the oldest is forgotten first).
 */

import type { ClusterEvent } from "../core/runtime.js";
import type { MemberState } from "../core/wire/messages.js";

/** Damped members whose last shown state is kept at most (the core's damping table holds 4096). */
const MAX_DAMPED_SHOWN = 4096;

export class DampedEventFilter {
  /** Events held back because their member was damped (Stats `monitor.dampedHeldBack`). */
  heldBack = 0;
  private readonly shown = new Map<string, { readonly state: MemberState; readonly incarnation: number }>();

  /** The event applications should see instead of `event`, or null to hold it back. */
  filter(event: ClusterEvent): ClusterEvent | null {
    if (event.type === "memberRemoved") {
      this.shown.delete(event.address.key);
      return event;
    }
    if (event.type !== "member") return event;
    const m = event.member;
    const key = m.address.key;
    if (m.damped && !event.dampingChanged) {
      this.heldBack++;
      return null;
    }
    if (m.damped) {
      if (this.shown.size >= MAX_DAMPED_SHOWN) this.shown.delete(this.shown.keys().next().value as string);
      this.shown.set(key, { state: m.state, incarnation: m.incarnation });
      return event;
    }
    if (!event.dampingChanged) return event;
    const last = this.shown.get(key);
    this.shown.delete(key);
    return last === undefined ? event : { ...event, previous: last.state, previousIncarnation: last.incarnation };
  }
}
