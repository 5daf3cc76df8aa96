/** MemberInfo records for tests that feed member events or member lists by hand. */

import { addr } from "../../src/core/address.js";
import type { MemberInfo } from "../../src/core/runtime.js";
import type { MemberState } from "../../src/core/wire/messages.js";

/** The member at `key` in `state` (incarnation 1, never probed, not damped, no tags), with `fields` over it. */
export function memberInfo(key: string, state: MemberState, fields: Partial<MemberInfo> = {}): MemberInfo {
  return {
    address: addr(key),
    state,
    incarnation: 1,
    stateChangedAtMs: 0,
    lastHeardAtMs: 0,
    lastRttMs: -1,
    pendingTransmits: 0,
    isSelf: false,
    damped: false,
    flapPenalty: 0,
    flaps: 0,
    dampedUntilMs: -1,
    tags: null,
    ...fields,
  };
}
