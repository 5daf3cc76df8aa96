/**
 * The boundary between the pure core and its hosts (engine worker, inline host, simulator):
 * what the core asks a host to do (send, set a timer, deliver an event) and the events and
 * timers it speaks of. Hosts call back into the core with time and bytes as arguments.
 */

import type { Address } from "./address.js";
import type { MemberState } from "./wire/messages.js";

/** What the core needs from its host. Every call is synchronous and must not re-enter the core. */
export interface Runtime {
  /** Send one datagram (already within its byte budget) to `to`. */
  send(to: Address, datagram: Uint8Array): void;
  /** Call `SwimNode.handleTimer(atMs', timer)` at or after `atMs`. Timers are never cancelled; stale ones are ignored by the core. */
  setTimer(atMs: number, timer: Timer): void;
  /** Deliver an event to the application. */
  emit(event: CoreEvent): void;
}

export type Timer =
  | { readonly kind: "probe"; readonly epoch: number }
  | { readonly kind: "probeTimeout"; readonly seq: number }
  /** One more direct ping of probe `seq` while it has no ack (see SwimConfig.directPings). */
  | { readonly kind: "probeRetry"; readonly seq: number }
  /** One more ping of a ping-req relay `seq` while the target has not answered. */
  | { readonly kind: "relayRetry"; readonly seq: number }
  | { readonly kind: "probeDeadline"; readonly seq: number }
  | { readonly kind: "relayTimeout"; readonly seq: number }
  | { readonly kind: "suspicion"; readonly key: string; readonly token: number }
  | { readonly kind: "reap"; readonly key: string; readonly token: number }
  /** A damped member's release check (see flap-damping.ts). */
  | { readonly kind: "flapRelease"; readonly key: string }
  | { readonly kind: "gossip" }
  /** A burst gossip round while a deep broadcast queue drains (see dissemination.ts). */
  | { readonly kind: "gossipBurst" }
  /** A broadcast repair round (see repair.ts). */
  | { readonly kind: "repair" }
  | { readonly kind: "reconnect" }
  /** `once`: an extra exchange shortly after a join, not the periodic round. */
  | { readonly kind: "pushPull"; readonly once: boolean }
  | { readonly kind: "request"; readonly seq: number }
  /** A cluster request's retry round or deadline (see requests.ts). */
  | { readonly kind: "clusterRequest"; readonly id: number };

/** A member as the local node sees it. */
export interface MemberInfo {
  readonly address: Address;
  readonly state: MemberState;
  readonly incarnation: number;
  /** Local time (ms) of the last state change. */
  readonly stateChangedAtMs: number;
  /** Local time (ms) a datagram was last received from it; -1 if never. */
  readonly lastHeardAtMs: number;
  /** Round trip of the last answered direct probe (ms); -1 no data yet, -2 the last probe timed out. */
  readonly lastRttMs: number;
  /** Remaining piggyback transmissions of the newest update about it (0 when none queued). */
  readonly pendingTransmits: number;
  readonly isSelf: boolean;
  /** Flap damping (see flap-damping.ts): whether this node holds the member damped now. */
  readonly damped: boolean;
  /** Its flap penalty now (decayed), 0 when it never flapped. */
  readonly flapPenalty: number;
  /** Comebacks (from dead to alive) counted. */
  readonly flaps: number;
  /** When its damping is expected to end (local ms), -1 when not damped. */
  readonly dampedUntilMs: number;
  /** Its tags as last stated (encoded, src/core/tags.ts), or null when none are known. */
  readonly tags: Uint8Array | null;
}

export type CoreEvent =
  /**
   * A member appeared or changed state or incarnation, or its damping started or ended
   * (`dampingChanged`; then `previous` may equal its state). `previous*` are null for a new
   * member. Hosts show applications the events of a damped member only when dampingChanged.
   */
  | {
      readonly type: "member";
      readonly member: MemberInfo;
      readonly previous: MemberState | null;
      readonly previousIncarnation: number | null;
      readonly dampingChanged: boolean;
    }
  /** A dead or left member was reaped from the table. */
  | { readonly type: "memberRemoved"; readonly address: Address }
  /** A user broadcast delivered to this node, exactly once. */
  | {
      readonly type: "broadcast";
      readonly origin: Address;
      readonly epoch: number;
      readonly seq: number;
      readonly payload: Uint8Array;
    }
  /** Outcome of `join` for one seed: the seed answered with its member list, or not in time. */
  | { readonly type: "joinResult"; readonly seed: Address; readonly ok: boolean; readonly token: number }
  /** Outcome of a user `ping`: round trip in ms, or null if it timed out. */
  | { readonly type: "pingResult"; readonly target: Address; readonly rttMs: number | null; readonly token: number }
  /** A cluster request from another member: answer it with `answerRequest(handle, payload)`. */
  | { readonly type: "request"; readonly handle: number; readonly from: Address; readonly kind: number; readonly payload: Uint8Array }
  /** One member's acknowledgement of this node's cluster request `token` (when asked for). */
  | { readonly type: "requestAck"; readonly token: number; readonly from: Address }
  /** One member's answer to this node's cluster request `token`. */
  | { readonly type: "requestAnswer"; readonly token: number; readonly from: Address; readonly payload: Uint8Array }
  /** The end of cluster request `token`: the targets that did not answer (empty: all did). */
  | { readonly type: "requestDone"; readonly token: number; readonly missing: readonly Address[] };

/** The types of RequestOutcome. */
const REQUEST_OUTCOME_TYPES = ["joinResult", "pingResult", "requestAck", "requestAnswer", "requestDone"] as const;
const REQUEST_OUTCOME_TYPE_SET: ReadonlySet<CoreEvent["type"]> = new Set(REQUEST_OUTCOME_TYPES);

/**
 * What answers a request of this node's own host (join, ping, a cluster request), by the
 * request's token: it settles that request, and concerns nobody else.
 */
export type RequestOutcome = Extract<CoreEvent, { type: (typeof REQUEST_OUTCOME_TYPES)[number] }>;

/** What happens in the cluster: every CoreEvent but the outcomes of this node's own requests. */
export type ClusterEvent = Exclude<CoreEvent, RequestOutcome>;

export function isRequestOutcome(event: CoreEvent): event is RequestOutcome {
  return REQUEST_OUTCOME_TYPE_SET.has(event.type);
}
