/**
 * A binary min-heap of timers ordered by (atMs, seq): the single timer ordering used by every
 * host of the core (engine worker, inline host, simulator). `seq` is assigned on push, so two
 * timers due at the same millisecond fire in the order they were set.
 */

export interface TimerEntry<T> {
  readonly atMs: number;
  readonly seq: number;
  readonly value: T;
}

export class TimerQueue<T> {
  private readonly heap: TimerEntry<T>[] = [];
  private nextSeq = 0;

  get size(): number {
    return this.heap.length;
  }

  push(atMs: number, value: T): void {
    const entry: TimerEntry<T> = { atMs, seq: this.nextSeq++, value };
    const heap = this.heap;
    heap.push(entry);
    let i = heap.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      const p = heap[parent] as TimerEntry<T>;
      if (!before(entry, p)) break;
      heap[i] = p;
      i = parent;
    }
    heap[i] = entry;
  }

  /** Deadline of the earliest timer, or Infinity when empty. */
  peekAtMs(): number {
    const top = this.heap[0];
    return top === undefined ? Infinity : top.atMs;
  }

  /** Removes and returns the earliest timer if it is due at or before `nowMs`. */
  popDue(nowMs: number): TimerEntry<T> | undefined {
    const top = this.heap[0];
    if (top === undefined || top.atMs > nowMs) return undefined;
    return this.pop();
  }

  pop(): TimerEntry<T> | undefined {
    const heap = this.heap;
    const top = heap[0];
    if (top === undefined) return undefined;
    const last = heap.pop() as TimerEntry<T>;
    if (heap.length > 0) {
      let i = 0;
      const n = heap.length;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= n) break;
        const r = l + 1;
        let child = l;
        if (r < n && before(heap[r] as TimerEntry<T>, heap[l] as TimerEntry<T>)) child = r;
        const c = heap[child] as TimerEntry<T>;
        if (!before(c, last)) break;
        heap[i] = c;
        i = child;
      }
      heap[i] = last;
    }
    return top;
  }

  clear(): void {
    this.heap.length = 0;
  }
}

function before<T>(x: TimerEntry<T>, y: TimerEntry<T>): boolean {
  return x.atMs < y.atMs || (x.atMs === y.atMs && x.seq < y.seq);
}
