/**
 * Fan-out of agent events (broadcasts, membership changes) to any number of subscribers, such
 * as gRPC Stream and Monitor calls. Each subscriber has its own bounded queue: a subscriber that
 * stops reading loses its oldest undelivered items (counted), and never slows the engine or the
 * other subscribers. Subscriptions are async iterables that end when closed.
 *
 * With a coalescing key (membership changes: the member's address), an item whose key already
 * has an undelivered item in a subscriber's queue replaces it in place (counted as coalesced):
 * a reader that falls behind a burst of changes of one member gets its latest state once, in
 * the place of the first, instead of every step.
 *
 * A subscriber reads one item at a time (the async iterator) or, where it can write many at once
 * (a gRPC stream), everything queued at once (`nextBatch`): a waiting reader then wakes once for
 * all the items published in the same synchronous run (one engine turn's deliveries), not once
 * per item.
 */

export interface FanoutCounters {
  published: number;
  delivered: number;
  dropped: number;
  /** Items that replaced an undelivered item of the same key (coalescing fan-outs only). */
  coalesced: number;
  subscribers: number;
}

export class Subscription<T> implements AsyncIterable<T> {
  /** Items lost because this subscriber fell behind by more than its capacity. */
  dropped = 0;
  private readonly items: (T | undefined)[];
  private head = 0;
  private count = 0;
  /** Items taken off the queue so far (delivered or dropped): the absolute number of `head`. */
  private popped = 0;
  /** Absolute queue number of the undelivered item of each key (coalescing only; bounded by the queue). */
  private readonly queuedByKey = new Map<string, number>();
  private closed = false;
  private waiter: ((r: IteratorResult<T>) => void) | null = null;
  /** A reader waiting in nextBatch(); woken in a microtask, after the publishes of this run. */
  private batchWaiter: ((items: T[] | null) => void) | null = null;
  private batchWakeScheduled = false;
  private batchMaxItems = 1;

  constructor(
    readonly capacity: number,
    private readonly onClose: (s: Subscription<T>) => void,
    private readonly counters: FanoutCounters,
    private readonly keyOf: ((item: T) => string) | null = null,
  ) {
    this.items = new Array<T | undefined>(capacity);
  }

  get size(): number {
    return this.count;
  }

  /** Called by the fan-out; never blocks. */
  push(item: T): void {
    if (this.closed) return;
    const key = this.keyOf === null ? null : this.keyOf(item);
    if (key !== null) {
      const at = this.queuedByKey.get(key);
      if (at !== undefined && at >= this.popped) {
        this.items[at % this.capacity] = item;
        this.counters.coalesced++;
        return;
      }
    }
    const waiter = this.waiter;
    if (waiter !== null) {
      this.waiter = null;
      this.counters.delivered++;
      waiter({ value: item, done: false });
      return;
    }
    if (this.batchWaiter !== null && !this.batchWakeScheduled) {
      this.batchWakeScheduled = true;
      queueMicrotask(this.wakeBatchReader);
    }
    if (this.count === this.capacity) {
      // Full: forget the oldest, keep the newest.
      this.take();
      this.dropped++;
      this.counters.dropped++;
    }
    if (key !== null) this.queuedByKey.set(key, this.popped + this.count);
    this.items[(this.head + this.count) % this.capacity] = item;
    this.count++;
  }

  /** Removes and returns the oldest queued item (count > 0). */
  private take(): T {
    const value = this.items[this.head] as T;
    this.items[this.head] = undefined;
    if (this.keyOf !== null) {
      const key = this.keyOf(value);
      if (this.queuedByKey.get(key) === this.popped) this.queuedByKey.delete(key);
    }
    this.head = (this.head + 1) % this.capacity;
    this.count--;
    this.popped++;
    return value;
  }

  next(): Promise<IteratorResult<T>> {
    if (this.count > 0) {
      const value = this.take();
      this.counters.delivered++;
      return Promise.resolve({ value, done: false });
    }
    if (this.closed) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve) => {
      this.waiter = resolve;
    });
  }

  /**
   * The oldest queued items, up to `maxItems`, as soon as there is one; null once closed. Items
   * published while the reader waits are handed over together, after the run that published them.
   */
  nextBatch(maxItems: number): Promise<T[] | null> {
    if (this.count > 0) return Promise.resolve(this.takeUpTo(maxItems));
    if (this.closed) return Promise.resolve(null);
    this.batchMaxItems = maxItems;
    return new Promise((resolve) => {
      this.batchWaiter = resolve;
    });
  }

  private readonly wakeBatchReader = (): void => {
    this.batchWakeScheduled = false;
    const waiter = this.batchWaiter;
    if (waiter === null || this.count === 0) return;
    this.batchWaiter = null;
    waiter(this.takeUpTo(this.batchMaxItems));
  };

  private takeUpTo(maxItems: number): T[] {
    const items = new Array<T>(Math.max(1, Math.min(this.count, maxItems)));
    for (let i = 0; i < items.length; i++) items[i] = this.take();
    this.counters.delivered += items.length;
    return items;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.count = 0;
    this.items.fill(undefined);
    this.queuedByKey.clear();
    const waiter = this.waiter;
    this.waiter = null;
    waiter?.({ value: undefined, done: true });
    const batchWaiter = this.batchWaiter;
    this.batchWaiter = null;
    batchWaiter?.(null);
    this.onClose(this);
  }

  [Symbol.asyncIterator](): AsyncIterator<T> {
    return {
      next: () => this.next(),
      return: () => {
        this.close();
        return Promise.resolve({ value: undefined, done: true });
      },
    };
  }
}

export class Fanout<T> {
  readonly counters: FanoutCounters = { published: 0, delivered: 0, dropped: 0, coalesced: 0, subscribers: 0 };
  private readonly subscribers = new Set<Subscription<T>>();

  constructor(
    private readonly capacityPerSubscriber: number,
    private readonly maxSubscribers: number,
    /** The coalescing key of an item, or null: no coalescing. */
    private readonly keyOf: ((item: T) => string) | null = null,
  ) {
    if (!Number.isInteger(capacityPerSubscriber) || capacityPerSubscriber < 1) throw new RangeError("capacityPerSubscriber must be >= 1");
  }

  get subscriberCount(): number {
    return this.subscribers.size;
  }

  /** A new subscription, or null when `maxSubscribers` are already connected. */
  subscribe(): Subscription<T> | null {
    if (this.subscribers.size >= this.maxSubscribers) return null;
    const s = new Subscription<T>(this.capacityPerSubscriber, (x) => {
      this.subscribers.delete(x);
      this.counters.subscribers = this.subscribers.size;
    }, this.counters, this.keyOf);
    this.subscribers.add(s);
    this.counters.subscribers = this.subscribers.size;
    return s;
  }

  publish(item: T): void {
    this.counters.published++;
    for (const s of this.subscribers) s.push(item);
  }

  closeAll(): void {
    for (const s of [...this.subscribers]) s.close();
  }
}
