/**
 * A set with O(1) add, remove and uniform random pick (array + index map, swap-remove), used
 * for the probeable and the dead members so that sampling stays cheap in large clusters.
 */

import type { Prng } from "./prng.js";

export class RandomSet<T> {
  private readonly items: T[] = [];
  private readonly index = new Map<T, number>();

  get size(): number {
    return this.items.length;
  }

  has(item: T): boolean {
    return this.index.has(item);
  }

  add(item: T): boolean {
    if (this.index.has(item)) return false;
    this.index.set(item, this.items.length);
    this.items.push(item);
    return true;
  }

  delete(item: T): boolean {
    const i = this.index.get(item);
    if (i === undefined) return false;
    const last = this.items.pop() as T;
    if (last !== item) {
      this.items[i] = last;
      this.index.set(last, i);
    }
    this.index.delete(item);
    return true;
  }

  pick(rng: Prng): T | undefined {
    return this.items.length === 0 ? undefined : this.items[rng.nextInt(this.items.length)];
  }

  /**
   * Up to `count` distinct items chosen uniformly at random, skipping those `exclude` rejects.
   * Tries at most 3 * count random draws, then falls back to a scan, so it is cheap in large sets.
   */
  sample(rng: Prng, count: number, exclude: (item: T) => boolean): T[] {
    const out: T[] = [];
    const n = this.items.length;
    if (count <= 0 || n === 0) return out;
    for (let tries = 0; tries < 3 * count && out.length < count; tries++) {
      const item = this.items[rng.nextInt(n)] as T;
      if (!exclude(item) && !out.includes(item)) out.push(item);
    }
    if (out.length < count && n <= 4 * count + 8) {
      const start = rng.nextInt(n);
      for (let i = 0; i < n && out.length < count; i++) {
        const item = this.items[(start + i) % n] as T;
        if (!exclude(item) && !out.includes(item)) out.push(item);
      }
    }
    return out;
  }

  values(): readonly T[] {
    return this.items;
  }
}
