/**
 * The member table of one SwimNode, struct-of-arrays. A member is an integer slot (self is
 * slot 0); its fields live in typed-array columns that grow by doubling (or are presized by
 * `reserve`). New members take the next slot, so slot order is the order in which members
 * were added, as a Map's iteration order was; when the columns are full and enough slots were
 * freed, the members move down over the free slots in the same order (compaction) instead of
 * growing, so the table stays bounded by maxMembers.
 *
 * MemberTable owns the columns (state, incarnation, state-change and last-heard times, last
 * round trip, address number, set position), the rare fields as sparse maps by slot
 * (suspicion, who suspected, reap token, last sync sent, tags), and the address -> slot index: an
 * open-addressing Int32Array of slots under a per-table seeded hash of Address.id (which the
 * address's bytes determine, not the interning), so a look-up allocates nothing, an entry
 * costs a few bytes, and the index is sized by the members held, not by how many addresses
 * were ever seen. The Address objects live in a registry that all tables of a thread share;
 * the columns hold their numbers, so they hold no pointer for the garbage collector to trace.
 *
 * Also here: SlotSet, a random set of slots (the probeable and the dead members), and
 * ProbeOrder, the shuffled probe round. Nothing ever iterates the hash index: every order is
 * slot order or set order, which follow from the sequence of operations alone, never from hash
 * values or from the order in which a process interned its addresses.
 */

import { addressOfKey, fmix32, type Address } from "./address.js";
import type { Prng } from "./prng.js";
import type { MemberState } from "./wire/messages.js";

/** No member (a failed look-up, an empty pick). */
export const NO_SLOT = -1;
/** The state column's value at a free slot. */
const FREE = 0xff;
/** Most members per address-index entry before the index grows. */
const MAX_LOAD = 0.5;
const MIN_SLOTS = 8;
const MIN_INDEX_ENTRIES = 16;
/** 2^-32: maps a 32-bit hash onto [0, n) by multiplication (no power-of-two sizes needed). */
const TWO_TO_MINUS_32 = 1 / 4294967296;

/** Same ip and port, for two Address objects with the same id (re-interned, or an IPv6 id collision). */
function sameAddress(a: Address, b: Address): boolean {
  if (a.port !== b.port || a.ip.length !== b.ip.length) return false;
  for (let i = a.ip.length - 1; i >= 0; i--) if (a.ip[i] !== b.ip[i]) return false;
  return true;
}

/** The registry's Address objects, by number (see AddressRegistry). */
const registered: (Address | undefined)[] = [];

/**
 * Open-addressing hash index (linear probing, backward-shift deletion) of non-negative integer
 * entries by their Address, hashed from Address.id under `hashKey`: entry e stands for the
 * registered address number `numbers[e]`, or number e itself when `numbers` is null. Rebuilds
 * itself larger when more than half full. Only look-ups read it: no order comes from it.
 */
class AddressIndex {
  private entries = new Int32Array(MIN_INDEX_ENTRIES).fill(NO_SLOT);
  private count = 0;
  /** The owner replaces it when it grows. */
  numbers: Int32Array | null = null;

  constructor(private readonly hashKey: number) {}

  private resolve(entry: number): Address {
    const numbers = this.numbers;
    return registered[numbers === null ? entry : (numbers[entry] as number)] as Address;
  }

  /** The entry whose address has the ip and port of `a`, or NO_SLOT. */
  find(a: Address): number {
    const entries = this.entries;
    const n = entries.length;
    for (let i = this.positionOf(a, n); ; ) {
      const entry = entries[i] as number;
      if (entry === NO_SLOT) return NO_SLOT;
      const b = this.resolve(entry);
      if (b === a || (b.id === a.id && sameAddress(a, b))) return entry;
      if (++i === n) i = 0;
    }
  }

  /** Adds `entry`, whose address must not have one yet. */
  add(entry: number): void {
    if (++this.count > this.entries.length * MAX_LOAD) this.rehash(2 * this.entries.length);
    this.place(entry);
  }

  delete(entry: number): void {
    const entries = this.entries;
    const n = entries.length;
    let hole = this.positionOf(this.resolve(entry), n);
    while (entries[hole] !== entry) {
      if (entries[hole] === NO_SLOT) throw new Error(`entry ${entry} is not in the index`);
      if (++hole === n) hole = 0;
    }
    for (let j = hole; ; ) {
      if (++j === n) j = 0;
      const other = entries[j] as number;
      if (other === NO_SLOT) break;
      // `other` may move back into the hole unless its home lies cyclically in (hole, j].
      const home = this.positionOf(this.resolve(other), n);
      const stays = hole <= j ? home > hole && home <= j : home > hole || home <= j;
      if (!stays) {
        entries[hole] = other;
        hole = j;
      }
    }
    entries[hole] = NO_SLOT;
    this.count--;
  }

  /** Makes room for `count` entries in all without rebuilding. */
  reserve(count: number): void {
    if (count > this.entries.length * MAX_LOAD) this.rehash(Math.ceil(count / MAX_LOAD));
  }

  /** Starts afresh with entries 0 .. count - 1 (their addresses renumbered). */
  rebuild(count: number): void {
    this.entries.fill(NO_SLOT);
    this.count = 0;
    this.reserve(count);
    for (let entry = 0; entry < count; entry++) this.add(entry);
  }

  /** Home position of `a` in `n` places: its id's low and high 32 bits, mixed with the key. */
  private positionOf(a: Address, n: number): number {
    const id = a.id;
    const h = fmix32(fmix32((id >>> 0) ^ this.hashKey) ^ ((id * TWO_TO_MINUS_32) >>> 0)) >>> 0;
    return (h * n * TWO_TO_MINUS_32) | 0;
  }

  private place(entry: number): void {
    const entries = this.entries;
    const n = entries.length;
    let i = this.positionOf(this.resolve(entry), n);
    while (entries[i] !== NO_SLOT) if (++i === n) i = 0;
    entries[i] = entry;
  }

  private rehash(n: number): void {
    const old = this.entries;
    this.entries = new Int32Array(Math.max(MIN_INDEX_ENTRIES, n)).fill(NO_SLOT);
    for (let i = 0; i < old.length; i++) if (old[i] !== NO_SLOT) this.place(old[i] as number);
  }
}

/**
 * The Address objects that member tables hold, shared by every table of a thread (one per
 * module instance). A table keeps a 32-bit number per member instead of a pointer, so that
 * millions of (node, member) pairs leave nothing for the garbage collector to trace.
 * References are counted: an address no table holds any more is dropped, so the registry is
 * bounded by the tables' members. The numbers depend on the order in which a thread's tables
 * met their addresses, so nothing may be decided by them.
 */
class AddressRegistry {
  private refs = new Int32Array(MIN_INDEX_ENTRIES);
  private readonly freeNumbers: number[] = [];
  private index = new AddressIndex(0x2545f491);
  private keyed = false;

  /** Keys the index's hash with the first table's seed (a host's random one), while empty. */
  keyOnce(hashKey: number): void {
    if (this.keyed || registered.length > 0) return;
    this.keyed = true;
    this.index = new AddressIndex(fmix32(hashKey ^ 0x2545f491));
  }

  /** The number of `a`'s ip and port, with one more reference to it. */
  acquire(a: Address): number {
    let n = this.index.find(a);
    if (n === NO_SLOT) {
      n = this.freeNumbers.pop() ?? registered.length;
      registered[n] = a;
      if (n >= this.refs.length) {
        const refs = new Int32Array(2 * this.refs.length);
        refs.set(this.refs);
        this.refs = refs;
      }
      this.refs[n] = 0;
      this.index.add(n);
    }
    this.refs[n] = (this.refs[n] as number) + 1;
    return n;
  }

  release(n: number): void {
    const refs = (this.refs[n] as number) - 1;
    this.refs[n] = refs;
    if (refs > 0) return;
    this.index.delete(n);
    registered[n] = undefined;
    this.freeNumbers.push(n);
  }

  at(n: number): Address {
    return registered[n] as Address;
  }
}

const registry = new AddressRegistry();

export class MemberTable<S> {
  /** Columns, indexed by slot. Growth replaces them: read them through the table each time. */
  state: Uint8Array;
  incarnation: Uint32Array;
  stateChangedAtMs: Float64Array;
  /** -1 if never heard from. */
  lastHeardAtMs: Float64Array;
  /** -1 no data yet, -2 the last probe timed out. */
  lastRttMs: Float32Array;
  /**
   * 1 once the member has shown that it receives at its address (it answered a ping from this
   * node, answered a request, or echoed a valid cookie); 0 otherwise. Cleared when it dies or
   * leaves. A proven member's requests get the member list without a cookie round trip.
   */
  proven: Uint8Array;
  /** The slot's place in a SlotSet, tagged with the set's id (see SlotSet); -1 in none. */
  setPosition: Int32Array;
  /** Rare fields, present only while they apply; removed with the member. */
  readonly suspicion = new Map<number, S>();
  /** Who suspected it last, while it is suspect. */
  readonly suspectedBy = new Map<number, Address>();
  /** The token of its pending reap timer (one per member at most). */
  readonly reapToken = new Map<number, number>();
  /** When a SYNC was last sent to it because it spoke while held dead or left. */
  readonly lastSyncToMs = new Map<number, number>();
  /** Its tags (encoded, src/core/tags.ts) and the incarnation of the statement they came with. */
  readonly tags = new Map<number, { readonly incarnation: number; readonly bytes: Uint8Array }>();

  /** The member's number in the thread's address registry. */
  private addressNumber: Int32Array;
  private readonly index: AddressIndex;
  /** Slots handed out so far: every slot below it is a member or free. */
  private used = 0;
  private count = 0;

  /**
   * `hashSeed` keys the index's hash (a host's random seed keeps crafted addresses from
   * piling up in one place); `maxSlots` caps growth (the node's maxMembers). `onCompact`
   * hears of every compaction, with each old slot's new one (NO_SLOT for a free one), to
   * renumber the slots the owner keeps elsewhere.
   */
  constructor(
    hashSeed: number,
    private readonly maxSlots: number,
    private readonly onCompact: (newSlots: Int32Array) => void,
  ) {
    this.state = new Uint8Array(MIN_SLOTS);
    this.incarnation = new Uint32Array(MIN_SLOTS);
    this.stateChangedAtMs = new Float64Array(MIN_SLOTS);
    this.lastHeardAtMs = new Float64Array(MIN_SLOTS);
    this.lastRttMs = new Float32Array(MIN_SLOTS);
    this.proven = new Uint8Array(MIN_SLOTS);
    this.setPosition = new Int32Array(MIN_SLOTS);
    this.addressNumber = new Int32Array(MIN_SLOTS);
    this.index = new AddressIndex(fmix32(hashSeed ^ 0x5bd1e995));
    this.index.numbers = this.addressNumber;
    registry.keyOnce(hashSeed);
  }

  /** Members held. */
  get size(): number {
    return this.count;
  }

  /** Every member's slot is below this (some slots below it may be free). */
  get slotLimit(): number {
    return this.used;
  }

  isMember(slot: number): boolean {
    return slot >= 0 && slot < this.used && this.state[slot] !== FREE;
  }

  address(slot: number): Address {
    return registry.at(this.addressNumber[slot] as number);
  }

  /** The slot of the member at `a` (any Address object of that ip and port), or NO_SLOT. */
  find(a: Address): number {
    return this.index.find(a);
  }

  /** The slot of the member whose canonical key is `key`, or NO_SLOT. */
  findKey(key: string): number {
    const a = addressOfKey(key);
    return a === undefined ? NO_SLOT : this.index.find(a);
  }

  /**
   * Adds a member at `a` (which must not be one already) and returns its slot, after every
   * other member's. May compact first (see onCompact). The caller bounds the number of members.
   */
  add(a: Address, state: MemberState, incarnation: number, nowMs: number): number {
    if (this.used === this.state.length) {
      const free = this.used - this.count;
      if (free > 0 && (4 * free >= this.used || this.used >= this.maxSlots)) this.compact();
      else this.growSlots(Math.max(this.used + 1, Math.min(this.maxSlots, 2 * this.used)));
    }
    const slot = this.used++;
    this.count++;
    this.state[slot] = state;
    this.incarnation[slot] = incarnation;
    this.stateChangedAtMs[slot] = nowMs;
    this.lastHeardAtMs[slot] = -1;
    this.lastRttMs[slot] = -1;
    this.proven[slot] = 0;
    this.setPosition[slot] = -1;
    this.addressNumber[slot] = registry.acquire(a);
    this.index.add(slot);
    return slot;
  }

  /** Removes the member at `slot` (already out of every SlotSet); the slot stays free until a compaction. */
  remove(slot: number): void {
    this.index.delete(slot);
    registry.release(this.addressNumber[slot] as number);
    this.state[slot] = FREE;
    this.setPosition[slot] = -1;
    this.suspicion.delete(slot);
    this.suspectedBy.delete(slot);
    this.reapToken.delete(slot);
    this.lastSyncToMs.delete(slot);
    this.tags.delete(slot);
    this.count--;
  }

  /** Moves the members down over the free slots, in order, and tells onCompact. */
  private compact(): void {
    const newSlots = new Int32Array(this.used);
    let next = 0;
    for (let slot = 0; slot < this.used; slot++) {
      if (this.state[slot] === FREE) {
        newSlots[slot] = NO_SLOT;
        continue;
      }
      newSlots[slot] = next;
      if (next !== slot) {
        this.state[next] = this.state[slot] as number;
        this.incarnation[next] = this.incarnation[slot] as number;
        this.stateChangedAtMs[next] = this.stateChangedAtMs[slot] as number;
        this.lastHeardAtMs[next] = this.lastHeardAtMs[slot] as number;
        this.lastRttMs[next] = this.lastRttMs[slot] as number;
        this.proven[next] = this.proven[slot] as number;
        this.setPosition[next] = this.setPosition[slot] as number;
        this.addressNumber[next] = this.addressNumber[slot] as number;
      }
      next++;
    }
    this.used = next;
    for (const rare of [this.suspicion, this.suspectedBy, this.reapToken, this.lastSyncToMs, this.tags] as Map<number, unknown>[]) {
      const entries = [...rare];
      rare.clear();
      for (const [slot, value] of entries) rare.set(newSlots[slot] as number, value);
    }
    this.index.rebuild(next);
    this.onCompact(newSlots);
  }

  /** Makes room for `members` members in all (exactly, if that is more than there is room for now). */
  reserve(members: number): void {
    const n = Math.min(members, this.maxSlots);
    if (n > this.state.length) this.growSlots(n);
    this.index.reserve(n);
  }

  private growSlots(n: number): void {
    const grown = <T extends Uint8Array | Uint32Array | Float64Array | Float32Array | Int32Array>(old: T, fresh: T): T => {
      fresh.set(old);
      return fresh;
    };
    this.state = grown(this.state, new Uint8Array(n));
    this.incarnation = grown(this.incarnation, new Uint32Array(n));
    this.stateChangedAtMs = grown(this.stateChangedAtMs, new Float64Array(n));
    this.lastHeardAtMs = grown(this.lastHeardAtMs, new Float64Array(n));
    this.lastRttMs = grown(this.lastRttMs, new Float32Array(n));
    this.proven = grown(this.proven, new Uint8Array(n));
    this.setPosition = grown(this.setPosition, new Int32Array(n));
    this.addressNumber = grown(this.addressNumber, new Int32Array(n));
    this.index.numbers = this.addressNumber;
  }
}

/**
 * A set of slots with O(1) add, delete and uniform random pick (an Int32Array of items with
 * swap-remove). Two sets (ids 0 and 1) share the table's setPosition column: a slot is in at
 * most one of them, and its entry there is (place << 1) | id.
 */
export class SlotSet {
  private items = new Int32Array(MIN_SLOTS);
  private n = 0;

  constructor(
    private readonly table: { readonly setPosition: Int32Array },
    private readonly id: 0 | 1,
  ) {}

  get size(): number {
    return this.n;
  }

  has(slot: number): boolean {
    const p = this.table.setPosition[slot] as number;
    return p >= 0 && (p & 1) === this.id;
  }

  add(slot: number): boolean {
    const positions = this.table.setPosition;
    const p = positions[slot] as number;
    if (p >= 0) {
      if ((p & 1) === this.id) return false;
      throw new Error(`slot ${slot} is in another set`);
    }
    if (this.n === this.items.length) this.reserve(2 * this.n);
    this.items[this.n] = slot;
    positions[slot] = (this.n << 1) | this.id;
    this.n++;
    return true;
  }

  delete(slot: number): boolean {
    const positions = this.table.setPosition;
    const p = positions[slot] as number;
    if (p < 0 || (p & 1) !== this.id) return false;
    const i = p >> 1;
    const last = this.items[--this.n] as number;
    if (last !== slot) {
      this.items[i] = last;
      positions[last] = (i << 1) | this.id;
    }
    positions[slot] = -1;
    return true;
  }

  /** Renumbers the items after a compaction (`newSlots` as MemberTable's onCompact). */
  renumber(newSlots: Int32Array): void {
    for (let i = 0; i < this.n; i++) this.items[i] = newSlots[this.items[i] as number] as number;
  }

  /** The i-th item, 0 <= i < size (set order: insertion order as changed by swap-removes). */
  at(i: number): number {
    return this.items[i] as number;
  }

  /** A uniformly random item, or NO_SLOT when empty. */
  /** The items, copied. */
  toArray(): Int32Array {
    return this.items.slice(0, this.n);
  }

  pick(rng: Prng): number {
    return this.n === 0 ? NO_SLOT : (this.items[rng.nextInt(this.n)] as number);
  }

  /**
   * Up to `count` distinct items chosen uniformly at random, skipping those `exclude` rejects.
   * Tries at most 3 * count random draws, then falls back to a scan, so it is cheap in large sets.
   */
  sample(rng: Prng, count: number, exclude: (slot: number) => boolean): number[] {
    const out: number[] = [];
    const n = this.n;
    if (count <= 0 || n === 0) return out;
    for (let tries = 0; tries < 3 * count && out.length < count; tries++) {
      const slot = this.items[rng.nextInt(n)] as number;
      if (!exclude(slot) && !out.includes(slot)) out.push(slot);
    }
    if (out.length < count && n <= 4 * count + 8) {
      const start = rng.nextInt(n);
      for (let i = 0; i < n && out.length < count; i++) {
        const slot = this.items[(start + i) % n] as number;
        if (!exclude(slot) && !out.includes(slot)) out.push(slot);
      }
    }
    return out;
  }

  /** Makes room for `items` items (exactly, if that is more than there is room for now). */
  reserve(items: number): void {
    if (items <= this.items.length) return;
    const grown = new Int32Array(Math.max(MIN_SLOTS, items));
    grown.set(this.items.subarray(0, this.n));
    this.items = grown;
  }
}

/**
 * The probe round: the probeable members in random order, walked by a cursor; a new round is
 * a fresh shuffle. Members that become probeable mid-round are inserted at a random place in
 * the rest of it; members that stop being probeable leave stale entries, skipped when reached.
 */
export class ProbeOrder {
  private entries = new Int32Array(MIN_SLOTS);
  private length = 0;
  private cursor = 0;

  /** Inserts `slot` at a random place in the rest of this round, as memberlist does. */
  insert(slot: number, rng: Prng): void {
    if (this.length === this.entries.length) this.reserve(2 * this.length);
    const entries = this.entries;
    entries[this.length++] = slot;
    const span = this.length - this.cursor;
    if (span > 1) {
      const j = this.cursor + rng.nextInt(span);
      const last = this.length - 1;
      entries[last] = entries[j] as number;
      entries[j] = slot;
    }
  }

  /**
   * The next member of `probeable` in this round, or NO_SLOT if there is none. Skips every
   * stale entry of the current round, then at most one fresh round, whose entries are all
   * probeable: each entry is passed once, O(1) amortized.
   */
  next(probeable: SlotSet, rng: Prng): number {
    for (let reshuffled = false; ; ) {
      if (this.cursor >= this.length) {
        if (reshuffled) return NO_SLOT;
        this.reshuffle(probeable, rng);
        reshuffled = true;
        if (this.length === 0) return NO_SLOT;
      }
      const slot = this.entries[this.cursor++] as number;
      if (slot !== NO_SLOT && probeable.has(slot)) return slot;
    }
  }

  /** Renumbers the entries after a compaction; those of freed slots become NO_SLOT (stale). */
  renumber(newSlots: Int32Array): void {
    const entries = this.entries;
    for (let i = 0; i < this.length; i++) {
      const slot = entries[i] as number;
      if (slot !== NO_SLOT) entries[i] = newSlots[slot] as number;
    }
  }

  /** Makes room for `entries` entries (exactly, if that is more than there is room for now). */
  reserve(entries: number): void {
    if (entries <= this.entries.length) return;
    const grown = new Int32Array(Math.max(MIN_SLOTS, entries));
    grown.set(this.entries.subarray(0, this.length));
    this.entries = grown;
  }

  /** A new round: `probeable` in Fisher-Yates order (the draws of Prng.shuffle). */
  private reshuffle(probeable: SlotSet, rng: Prng): void {
    const n = probeable.size;
    if (n > this.entries.length || this.entries.length > 4 * Math.max(n, MIN_SLOTS)) this.entries = new Int32Array(Math.max(MIN_SLOTS, n));
    const entries = this.entries;
    for (let i = 0; i < n; i++) entries[i] = probeable.at(i);
    for (let i = n - 1; i > 0; i--) {
      const j = rng.nextInt(i + 1);
      const tmp = entries[i] as number;
      entries[i] = entries[j] as number;
      entries[j] = tmp;
    }
    this.length = n;
    this.cursor = 0;
  }
}
