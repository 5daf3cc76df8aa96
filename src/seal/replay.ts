/**
 * Replay protection of sealed datagrams.
 *
 * Every sealed datagram's nonce is a 4-byte boot id, drawn at random when the agent starts,
 * and an 8-byte counter that starts at a random value below 2^48 and grows by one per sealed
 * datagram (whatever its destination). So nonces never repeat within a life, and two lives
 * share a nonce only if they drew the same boot id AND their counter ranges overlap, which
 * the random start makes negligible (AES-GCM must never see a nonce twice under one key).
 *
 * A receiver keeps, per sender (the address the sender names inside the authenticated datagram,
 * not the UDP source, which an attacker chooses), the boot ids it heard from that sender
 * (at most BOOTS_PER_SENDER, least recently used evicted), each with a sliding bitmap window
 * of WINDOW_BITS counters as IPsec and WireGuard do: a counter above the highest seen moves
 * the window; one inside it is accepted once; one below it is rejected. Only datagrams that
 * opened (authentic) ever touch this state, so strangers cannot move a window.
 *
 * Why honest traffic is not rejected:
 *   - reordering: a datagram is rejected as too old only when WINDOW_BITS newer datagrams of
 *     the same sender arrived before it (the counter counts all of the sender's datagrams, so
 *     the window spans more than the traffic one receiver sees);
 *   - restarts: a restarted sender has a new boot id, so its counter starting over is no
 *     replay; a restarted receiver starts with an empty table and accepts every sender anew;
 *   - clock steps: nothing here reads a clock.
 *
 * What a replay of a previous boot's datagram can do: while that boot is in the sender's
 * table, nothing (the window rejects it). Once it was evicted (the sender restarted more than
 * BOOTS_PER_SENDER times since, or more than MAX_SENDERS addresses crowded the sender out),
 * an unknown boot id is accepted for a known sender only if the datagram's incarnation is at
 * least the incarnation at which the sender's newest known life started (its first datagram
 * we opened), less one. TamTam starts every life at the wall clock's seconds, so a later life
 * starts at or above an earlier one's start; a datagram replayed from an earlier life carries
 * that life's incarnation, which is below the start of the lives heard since, unless that life
 * raised its incarnation (refutations) past the next life's start, in the few seconds between
 * them. The comparison is with the newest life's START, not with the highest incarnation a
 * life reached: a life raises its incarnation by refuting (and by leaving), so an agent
 * restarted within a second or two starts below what its previous life reached, and must not
 * be taken for a replay (it would be shut out for good: the members hold it as left and never
 * contact it). The one of slack covers a restart within the same second as a previous start
 * whose first datagram we saw only after a refutation. A restart after the clock stepped back starts lower: its first datagrams are
 * rejected until it refutes the newer claims about itself that the cluster gossips to it
 * (the core raises its incarnation above them), and from then on it is accepted. Only when a
 * sender is not in the table at all (first contact, a restarted receiver, or a sender crowded
 * out) is an old datagram accepted, once; it still carries that old incarnation, which the
 * protocol core ranks below every newer claim about the sender.
 *
 * The counter is the sender's, across all its destinations: a datagram it sent to one member
 * can be delivered to another once, if that one never saw its counter and it is among the
 * sender's latest WINDOW_BITS datagrams (what it says is then at most that old). Binding the
 * destination into the seal would close this, but a sender does not always know the address
 * its receiver calls its own (a seed given by another address than it advertises).
 *
 * Everything is bounded: MAX_SENDERS senders (least recently heard evicted, counted), each
 * with at most BOOTS_PER_SENDER windows of WINDOW_BITS bits.
 *
 * What a key holder can do to these windows: it can seal datagrams that name any member as
 * their sender, with boot ids of its choosing, and every such datagram opens. So BOOTS_PER_SENDER
 * new boot ids in a member's name (at an incarnation not below that member's newest start,
 * less one) crowd that member's real boot window out, and the member's datagrams of its current
 * life can then be replayed to this receiver, each once (the first one replayed starts a new
 * window for that boot). The same holds for the sender table as a whole (MAX_SENDERS names
 * crowd a member out). This is accepted, not fixed: it gives a key holder nothing it does not
 * have already, since it can seal any datagram in any member's name, newer and saying more than
 * a replay would; and any table of bounded size can be crowded out by a party that can mint
 * authentic boot ids at will. Strangers cannot do it: only datagrams that opened touch the
 * windows. A key holder removed from the keyring (a key rotation) can no longer add windows;
 * windows it crowded out before its key was removed stay out (until the member restarts or
 * this agent does), which lets whoever recorded that member's sealed datagrams of its current
 * life replay each of them once, with the old content and incarnation that the core ranks
 * below everything newer.
 */

export const WINDOW_BITS = 1024;
export const BOOTS_PER_SENDER = 4;
export const MAX_SENDERS = 4096;

const WORDS = WINDOW_BITS / 32;

interface BootWindow {
  readonly boot: number;
  /** Highest counter accepted. */
  top: number;
  /** Bit i (of word i >> 5) is counter top - i: accepted already. */
  readonly bits: Uint32Array;
}

interface Sender {
  /** Most recently used last. */
  readonly boots: BootWindow[];
  /** Incarnation of the first datagram opened of the newest life (boot id) heard from this sender (-1: none). */
  newestStart: number;
}

export interface ReplayCounters {
  /** Senders evicted from the table to make room. */
  sendersEvicted: number;
  /** Boot windows evicted from a sender to make room. */
  bootsEvicted: number;
  /** Senders in the table now. */
  senders: number;
}

export type ReplayVerdict = "ok" | "replay";

export class ReplayGuard {
  private readonly senders = new Map<string, Sender>();
  readonly counters: ReplayCounters = { sendersEvicted: 0, bootsEvicted: 0, senders: 0 };

  constructor(private readonly maxSenders = MAX_SENDERS) {}

  /**
   * Checks an authentic datagram from `source` with nonce (boot, counter) and, if it is no
   * replay, records it. `incarnation` is the sender's incarnation from the datagram's
   * header, or null for a datagram without one (a multicast announcement).
   */
  check(source: string, boot: number, counter: number, incarnation: number | null): ReplayVerdict {
    let sender = this.senders.get(source);
    if (sender === undefined) {
      if (this.senders.size >= this.maxSenders) {
        const oldest = this.senders.keys().next().value as string;
        this.senders.delete(oldest);
        this.counters.sendersEvicted++;
      }
      sender = { boots: [], newestStart: -1 };
      this.senders.set(source, sender);
      this.counters.senders = this.senders.size;
      this.addBoot(sender, boot, counter);
      if (incarnation !== null) sender.newestStart = incarnation;
      return "ok";
    }
    // Most recently heard last: the Map's order is the eviction order.
    this.senders.delete(source);
    this.senders.set(source, sender);
    const i = sender.boots.findIndex((b) => b.boot === boot);
    if (i < 0) {
      if (incarnation !== null && incarnation + 1 < sender.newestStart) return "replay";
      this.addBoot(sender, boot, counter);
      if (incarnation !== null && incarnation > sender.newestStart) sender.newestStart = incarnation;
    } else {
      const w = sender.boots[i] as BootWindow;
      if (!accept(w, counter)) return "replay";
      if (i !== sender.boots.length - 1) {
        sender.boots.splice(i, 1);
        sender.boots.push(w);
      }
    }
    return "ok";
  }

  private addBoot(sender: Sender, boot: number, counter: number): void {
    if (sender.boots.length >= BOOTS_PER_SENDER) {
      sender.boots.shift();
      this.counters.bootsEvicted++;
    }
    const bits = new Uint32Array(WORDS);
    bits[0] = 1;
    sender.boots.push({ boot, top: counter, bits });
  }
}

/** Accepts `counter` into the window once; false for a repeat or a counter below the window. */
function accept(w: BootWindow, counter: number): boolean {
  if (counter > w.top) {
    shift(w.bits, counter - w.top);
    w.top = counter;
    (w.bits as Uint32Array)[0] = ((w.bits[0] as number) | 1) >>> 0;
    return true;
  }
  const age = w.top - counter;
  if (age >= WINDOW_BITS) return false;
  const word = age >>> 5;
  const mask = 1 << (age & 31);
  const v = w.bits[word] as number;
  if ((v & mask) !== 0) return false;
  w.bits[word] = (v | mask) >>> 0;
  return true;
}

/** Moves every bit `by` positions up (older); bits beyond the window fall off. */
function shift(bits: Uint32Array, by: number): void {
  if (by >= WINDOW_BITS) {
    bits.fill(0);
    return;
  }
  const words = Math.floor(by / 32);
  const rest = by % 32;
  for (let i = WORDS - 1; i >= 0; i--) {
    const src = i - words;
    const hi = src >= 0 ? (bits[src] as number) : 0;
    const lo = src - 1 >= 0 ? (bits[src - 1] as number) : 0;
    bits[i] = rest === 0 ? hi : ((hi << rest) | (lo >>> (32 - rest))) >>> 0;
  }
}
