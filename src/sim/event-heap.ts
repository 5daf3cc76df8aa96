/**
 * The simulator's event queue: a binary min-heap ordered by (atMs, node, origin, originSeq).
 * The order depends only on what each node did, never on the order events were inserted, so a
 * world split across shards processes every node's inputs in the same order as a single world.
 */

export interface SimEventKey {
  readonly atMs: number;
  /** Node the event happens at. */
  readonly node: number;
  /** Node whose action caused it (sender, or the node itself for timers); -1 for the scenario. */
  readonly origin: number;
  /** Per-origin sequence number. */
  readonly originSeq: number;
}

export class EventHeap<E extends SimEventKey> {
  private readonly heap: E[] = [];

  get size(): number {
    return this.heap.length;
  }

  peek(): E | undefined {
    return this.heap[0];
  }

  push(e: E): void {
    const heap = this.heap;
    heap.push(e);
    let i = heap.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      const p = heap[parent] as E;
      if (!precedes(e, p)) break;
      heap[i] = p;
      i = parent;
    }
    heap[i] = e;
  }

  pop(): E | undefined {
    const heap = this.heap;
    const top = heap[0];
    if (top === undefined) return undefined;
    const last = heap.pop() as E;
    const n = heap.length;
    if (n > 0) {
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        if (l >= n) break;
        const r = l + 1;
        let child = l;
        if (r < n && precedes(heap[r] as E, heap[l] as E)) child = r;
        const c = heap[child] as E;
        if (!precedes(c, last)) break;
        heap[i] = c;
        i = child;
      }
      heap[i] = last;
    }
    return top;
  }
}

export function precedes(a: SimEventKey, b: SimEventKey): boolean {
  if (a.atMs !== b.atMs) return a.atMs < b.atMs;
  if (a.node !== b.node) return a.node < b.node;
  if (a.origin !== b.origin) return a.origin < b.origin;
  return a.originSeq < b.originSeq;
}
