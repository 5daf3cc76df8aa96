/**
 * How fast a partition is seen on both sides: from the first partition of a scenario on, for
 * every observer this shard runs, the time at which it held every running node across the cut
 * non-alive (suspect or dead), and dead. One shard's observers only; the shards' lists are
 * concatenated, and the report takes the slowest observer (every cross pair seen).
 * Tracks at most MAX_TRACKED_NODES nodes (a bit per pair); larger runs report nothing.
 */

import { MemberState } from "../core/wire/messages.js";
import type { World } from "./world.js";

/** Largest cluster whose cross pairs are tracked (n² bits). */
export const MAX_TRACKED_NODES = 4096;

/** Per observer: [observer, all cross members non-alive at (ms after the cut, -1 never), all dead at (-1 never)]. */
export type CutObservation = readonly [number, number, number];

export interface CutOutcome {
  readonly atMs: number;
  /** Running nodes on each side at the cut. */
  readonly sideA: number;
  readonly sideB: number;
  readonly observers: readonly CutObservation[];
}

export class CutVisibility {
  private atMs = -1;
  private n = 0;
  private splitAt = 0;
  /** Per observer: cross members still to see non-alive / dead; -1 for nodes not observing. */
  private nonAliveLeft = new Int32Array(0);
  private deadLeft = new Int32Array(0);
  private nonAliveAt = new Float64Array(0);
  private deadAt = new Float64Array(0);
  private seenNonAlive = new Uint8Array(0);
  private seenDead = new Uint8Array(0);
  private running = new Uint8Array(0);
  private sides: [number, number] = [0, 0];

  /** The first partition starts: takes every local observer's current view of the other side. */
  start(world: World, splitAt: number, isRunning: (node: number) => boolean): void {
    const n = world.nodes.length;
    if (this.atMs >= 0 || n > MAX_TRACKED_NODES) return;
    this.atMs = world.nowMs;
    this.n = n;
    this.splitAt = splitAt;
    this.running = Uint8Array.from({ length: n }, (_, i) => (isRunning(i) ? 1 : 0));
    this.sides = [0, 0];
    for (let i = 0; i < n; i++) if (this.running[i] === 1) this.sides[i < splitAt ? 0 : 1]++;
    this.nonAliveLeft = new Int32Array(n).fill(-1);
    this.deadLeft = new Int32Array(n).fill(-1);
    this.nonAliveAt = new Float64Array(n).fill(-1);
    this.deadAt = new Float64Array(n).fill(-1);
    this.seenNonAlive = new Uint8Array(Math.ceil((n * n) / 8));
    this.seenDead = new Uint8Array(Math.ceil((n * n) / 8));
    for (const node of world.localNodes) {
      const o = node.index;
      if (this.running[o] !== 1 || node.core === null) continue;
      const across = this.sides[o < splitAt ? 1 : 0];
      this.nonAliveLeft[o] = across;
      this.deadLeft[o] = across;
      for (let s = 0; s < n; s++) {
        if (!this.isCross(o, s)) continue;
        const state = node.core.stateOf((world.nodes[s] as { address: { key: string } }).address.key);
        if (state !== undefined && state !== MemberState.Alive) this.see(o, s, state, world.nowMs);
      }
    }
  }

  /** Observer `o` holds member `s` in `state` now. */
  see(o: number, s: number, state: MemberState, nowMs: number): void {
    if (this.atMs < 0 || !this.isCross(o, s) || (this.nonAliveLeft[o] as number) < 0 || state === MemberState.Alive) return;
    const bit = o * this.n + s;
    if (!this.test(this.seenNonAlive, bit)) {
      this.set(this.seenNonAlive, bit);
      const left = (this.nonAliveLeft[o] as number) - 1;
      this.nonAliveLeft[o] = left;
      if (left === 0) this.nonAliveAt[o] = nowMs - this.atMs;
    }
    if ((state === MemberState.Dead || state === MemberState.Left) && !this.test(this.seenDead, bit)) {
      this.set(this.seenDead, bit);
      const left = (this.deadLeft[o] as number) - 1;
      this.deadLeft[o] = left;
      if (left === 0) this.deadAt[o] = nowMs - this.atMs;
    }
  }

  outcome(): CutOutcome | null {
    if (this.atMs < 0) return null;
    const observers: CutObservation[] = [];
    for (let o = 0; o < this.n; o++) {
      if ((this.nonAliveLeft[o] as number) < 0) continue;
      observers.push([o, this.nonAliveAt[o] as number, this.deadAt[o] as number]);
    }
    return { atMs: this.atMs, sideA: this.sides[0], sideB: this.sides[1], observers };
  }

  private isCross(o: number, s: number): boolean {
    return this.running[o] === 1 && this.running[s] === 1 && o < this.splitAt !== s < this.splitAt;
  }

  private test(bits: Uint8Array, bit: number): boolean {
    return ((bits[bit >> 3] as number) & (1 << (bit & 7))) !== 0;
  }

  private set(bits: Uint8Array, bit: number): void {
    bits[bit >> 3] = (bits[bit >> 3] as number) | (1 << (bit & 7));
  }
}

/** The slowest observer of the merged shards (null: some observer never saw every cross pair). */
export function slowestObserver(cuts: readonly (CutOutcome | null)[]): { nonAliveMs: number | null; deadMs: number | null; crossPairs: number } | null {
  const present = cuts.filter((c): c is CutOutcome => c !== null);
  const first = present[0];
  if (first === undefined) return null;
  const all = present.flatMap((c) => c.observers);
  const worst = (k: 1 | 2): number | null => (all.some((o) => o[k] < 0) ? null : Math.max(0, ...all.map((o) => o[k])));
  return { nonAliveMs: worst(1), deadMs: worst(2), crossPairs: 2 * first.sideA * first.sideB };
}
