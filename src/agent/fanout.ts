/**
 * Fan-out of agent events (broadcasts, membership changes) to any number of subscribers, such
 * as gRPC Stream and Monitor calls. Each subscriber has its own bounded queue: a subscriber that
 * stops reading loses its oldest undelivered items (counted), and never slows the engine or the
 * other subscribers. Subscriptions are async iterables that end when closed.
 */

export interface FanoutCounters {
  published: number;
  delivered: number;
  dropped: number;
  subscribers: number;
}

export class Subscription<T> implements AsyncIterable<T> {
  /** Items lost because this subscriber fell behind by more than its capacity. */
  dropped = 0;
  private readonly items: (T | undefined)[];
  private head = 0;
  private count = 0;
  private closed = false;
  private waiter: ((r: IteratorResult<T>) => void) | null = null;

  constructor(
    readonly capacity: number,
    private readonly onClose: (s: Subscription<T>) => void,
    private readonly counters: FanoutCounters,
  ) {
    this.items = new Array<T | undefined>(capacity);
  }

  get size(): number {
    return this.count;
  }

  /** Called by the fan-out; never blocks. */
  push(item: T): void {
    if (this.closed) return;
    const waiter = this.waiter;
    if (waiter !== null) {
      this.waiter = null;
      this.counters.delivered++;
      waiter({ value: item, done: false });
      return;
    }
    if (this.count === this.capacity) {
      // Full: forget the oldest, keep the newest.
      this.items[this.head] = undefined;
      this.head = (this.head + 1) % this.capacity;
      this.count--;
      this.dropped++;
      this.counters.dropped++;
    }
    this.items[(this.head + this.count) % this.capacity] = item;
    this.count++;
  }

  next(): Promise<IteratorResult<T>> {
    if (this.count > 0) {
      const value = this.items[this.head] as T;
      this.items[this.head] = undefined;
      this.head = (this.head + 1) % this.capacity;
      this.count--;
      this.counters.delivered++;
      return Promise.resolve({ value, done: false });
    }
    if (this.closed) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve) => {
      this.waiter = resolve;
    });
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.count = 0;
    this.items.fill(undefined);
    const waiter = this.waiter;
    this.waiter = null;
    waiter?.({ value: undefined, done: true });
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
  readonly counters: FanoutCounters = { published: 0, delivered: 0, dropped: 0, subscribers: 0 };
  private readonly subscribers = new Set<Subscription<T>>();

  constructor(
    private readonly capacityPerSubscriber: number,
    private readonly maxSubscribers: number,
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
    }, this.counters);
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
