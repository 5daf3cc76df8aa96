/**
 * The sealed envelope (src/seal): golden byte vectors, every rejection reason with no state
 * change, replay windows, the label with and without keys, migration modes, announcements,
 * the keyring and its file (mode 0600, atomic rewrite), the rate-limited drop log, the
 * settings of the agent command, the thread preset's budget, and two engines of each mode
 * that seal end to end while a stranger with another key never gets in.
 */

import assert from "node:assert/strict";
import { createCipheriv } from "node:crypto";
import { createSocket } from "node:dgram";
import { chmodSync, closeSync, existsSync, fstatSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { protocolConfig } from "../src/agent/agent.js";
import type { AgentOptions } from "../src/agent/options.js";
import { agentOptions } from "../src/cli/commands/agent.js";
import { AGENT_SETTINGS, resolveSettings, type SettingsIO } from "../src/cli/settings.js";
import { parseAddress, type Address } from "../src/core/address.js";
import { MAX_PING_REQ_HEADER_BYTES, validateConfig } from "../src/core/config.js";
import { SwimNode } from "../src/core/node.js";
import { decodeDatagram, encodeDatagram, headerBytes } from "../src/core/wire/codec.js";
import { MessageType, SEALED_OVERHEAD_BYTES, type Body } from "../src/core/wire/messages.js";
import { createEngine, type Engine } from "../src/engine/engine.js";
import { DropLog } from "../src/seal/drop-log.js";
import { Envelope, labelTag, type DropReason } from "../src/seal/envelope.js";
import { decodeKey, Keyring, keyId, readKeyringFile, startingKeys, writeKeyringFile } from "../src/seal/keyring.js";
import { BOOTS_PER_SENDER, ReplayGuard, WINDOW_BITS } from "../src/seal/replay.js";
import { encodeAnnouncement, decodeAnnouncement } from "../src/transport/announce.js";
import { alive, craft, RecordingRuntime, suspect, SYNC } from "./helpers/cluster.js";
import { poll } from "./helpers/processes.js";

const hex = (b: Uint8Array): string => Buffer.from(b).toString("hex");
const addr = (text: string): Address => parseAddress(text) as Address;
const K16 = Uint8Array.from({ length: 16 }, (_, i) => i);
const K24 = Uint8Array.from({ length: 24 }, (_, i) => 0x40 + i);
const K32 = Uint8Array.from({ length: 32 }, (_, i) => 0x20 + i);
const FROM = addr("10.0.0.1:7946");

function datagram(incarnation = 7, body: Body = { type: MessageType.Ping, seq: 42 }, from = FROM): Uint8Array {
  return encodeDatagram({ from, incarnation, body, updates: [], broadcasts: [] }, 1232);
}

interface Options {
  keys?: Uint8Array[];
  label?: string | null;
  acceptPlaintext?: boolean;
  sendPlaintext?: boolean;
  boot?: number;
  counter?: number;
}

function envelope(o: Options = {}): { env: Envelope; drops: DropReason[] } {
  const drops: DropReason[] = [];
  const env = new Envelope({
    keyring: new Keyring(o.keys ?? [K16]),
    label: o.label ?? null,
    acceptPlaintext: o.acceptPlaintext ?? false,
    sendPlaintext: o.sendPlaintext ?? false,
    onDrop: (reason) => drops.push(reason),
    ...(o.boot === undefined ? {} : { nonceStart: { boot: o.boot, counter: o.counter ?? 0 } }),
  });
  return { env, drops };
}

/** Every counter except the drop of `reason` stays as it was. */
function assertOnlyDropped(before: Record<string, number>, after: Record<string, number>, reason: DropReason): void {
  for (const [k, v] of Object.entries(after)) {
    if (k === `dropped.${reason}`) assert.equal(v, (before[k] ?? 0) + 1, k);
    else assert.equal(v, before[k], k);
  }
}

describe("sealed datagrams: golden vectors", () => {
  const ping = datagram();

  test("the unsealed PING the vectors seal", () => {
    assert.equal(hex(ping), "546d010001040a0000011f0a072a");
  });

  test("AES-128-GCM, label \"prod\", boot 0x01020304, counter 5", () => {
    const { env } = envelope({ keys: [K16], label: "prod", boot: 0x01020304, counter: 5 });
    const sealed = env.wrap(ping);
    assert.equal(
      hex(sealed),
      "546d0101" + "be" + "01020304" + "0000000000000005" + "14f4cd5b0bab086b97dc0c" + "d52163d06d3f06a043b9eadf648f45",
    );
    assert.equal(sealed.length, ping.length + SEALED_OVERHEAD_BYTES);
    assert.equal(sealed[4], keyId(K16), "the key id is the first byte of the key's SHA-256");
    // The same bytes from node:crypto directly: AAD = header + key id + label.
    const cipher = createCipheriv("aes-128-gcm", K16, Buffer.from("010203040000000000000005", "hex"));
    cipher.setAAD(Buffer.concat([Buffer.from("546d0101be", "hex"), Buffer.from("prod")]));
    const body = Buffer.concat([cipher.update(ping.subarray(4)), cipher.final()]);
    assert.equal(hex(sealed.subarray(17)), hex(Buffer.concat([body, cipher.getAuthTag()])));
  });

  test("AES-256-GCM, no label, counter above 2^32", () => {
    const { env } = envelope({ keys: [K32], boot: 0xa0b0c0d0, counter: 2 ** 32 + 1 });
    assert.equal(hex(env.wrap(ping)), "546d010172a0b0c0d00000000100000001400f9cd90ac4066bf50478493584b1ae85bc9d75ef3b9f585567");
  });

  test("labeled plaintext: flags 0x02, then the 8-byte label tag", () => {
    const { env } = envelope({ keys: [], label: "prod" });
    assert.equal(hex(labelTag("prod")), "3b7ea96354555737");
    assert.equal(hex(env.wrap(ping)), "546d0102" + "3b7ea96354555737" + "01040a0000011f0a072a");
  });

  test("a fresh nonce per datagram: the counter grows by one", () => {
    const { env } = envelope({ boot: 9, counter: 100 });
    const a = env.wrap(ping);
    const b = env.wrap(ping);
    assert.equal(hex(a.subarray(5, 17)), "000000090000000000000064");
    assert.equal(hex(b.subarray(5, 17)), "000000090000000000000065");
    assert.notEqual(hex(a.subarray(17)), hex(b.subarray(17)));
  });
});

describe("sealed datagrams: opening and every rejection", () => {
  for (const key of [K16, K24, K32]) {
    test(`a ${key.length}-byte key seals and opens to the exact datagram`, () => {
      const a = envelope({ keys: [key], label: "x" }).env;
      const b = envelope({ keys: [key], label: "x" }).env;
      const d = datagram(123456789, { type: MessageType.Gossip });
      const opened = b.unwrap(a.wrap(d), "10.0.0.1", 7946);
      assert.ok(opened !== null);
      assert.equal(hex(opened), hex(d));
      assert.deepEqual(decodeDatagram(opened).body, { type: MessageType.Gossip });
    });
  }

  test("the primary seals; every installed key opens", () => {
    const old = envelope({ keys: [K16] }).env;
    const rotated = envelope({ keys: [K32, K16] }).env;
    const receiver = envelope({ keys: [K16, K32] }).env;
    assert.ok(receiver.unwrap(old.wrap(datagram()), "10.0.0.1", 1) !== null);
    const sealed = rotated.wrap(datagram());
    assert.equal(sealed[4], keyId(K32));
    assert.ok(receiver.unwrap(sealed, "10.0.0.2", 1) !== null);
  });

  test("keys whose ids collide are all tried", () => {
    let other = K24;
    for (let i = 0; keyId(other) !== keyId(K16); i++) other = Uint8Array.from({ length: 16 }, (_, j) => (j === 0 ? i & 0xff : j === 1 ? i >> 8 : 0x77));
    assert.notEqual(hex(other), hex(K16));
    const receiver = envelope({ keys: [other, K16] }).env;
    assert.ok(receiver.unwrap(envelope({ keys: [K16] }).env.wrap(datagram()), "10.0.0.1", 1) !== null);
  });

  const cases: [string, DropReason, (sealed: Uint8Array) => Uint8Array, Options][] = [
    ["a key this agent does not have", "NO_KEY", (s) => s, { keys: [K32] }],
    ["another cluster label", "BAD_SEAL", (s) => s, { label: "other" }],
    ["no label where one is bound", "BAD_SEAL", (s) => s, { label: null }],
    ["truncated below the envelope", "TRUNCATED", (s) => s.subarray(0, 32), {}],
    ["a sealed datagram at an agent without keys", "NO_KEY", (s) => s, { keys: [], label: "prod" }],
  ];
  for (const [what, reason, mutate, receiverOptions] of cases) {
    test(`dropped: ${what} (${reason}), nothing else changes`, () => {
      const sender = envelope({ label: "prod" }).env;
      const { env, drops } = envelope({ label: "prod", ...receiverOptions });
      const before = env.stats();
      assert.equal(env.unwrap(mutate(sender.wrap(datagram())), "10.0.0.9", 7946), null);
      assertOnlyDropped(before, env.stats(), reason);
      assert.deepEqual(drops, [reason]);
    });
  }

  test("a changed byte anywhere (header, nonce, ciphertext, tag) fails authentication; no window moves", () => {
    const sender = envelope({ boot: 1, counter: 1000 }).env;
    const sealed = sender.wrap(datagram());
    const { env } = envelope();
    for (let i = 2; i < sealed.length; i++) {
      if (i === 3 || i === 4) continue; // the flags and the key id select the path: below
      const bad = sealed.slice();
      bad[i] = (bad[i] as number) ^ 0x01;
      const before = env.stats();
      assert.equal(env.unwrap(bad, "10.0.0.1", 7946), null, `byte ${i}`);
      assertOnlyDropped(before, env.stats(), "BAD_SEAL");
    }
    const otherId = sealed.slice();
    otherId[4] = (otherId[4] as number) ^ 0x01;
    assert.equal(env.unwrap(otherId, "10.0.0.1", 7946), null);
    assert.equal(env.stats()["dropped.NO_KEY"], 1);
    // The genuine datagram still opens: nothing above touched the replay state.
    assert.ok(env.unwrap(sealed, "10.0.0.1", 7946) !== null);
    assert.equal(env.stats().opened, 1);
  });

  test("plaintext while sealing is required: PLAINTEXT", () => {
    const { env } = envelope();
    const before = env.stats();
    assert.equal(env.unwrap(datagram(), "10.0.0.1", 1), null);
    assertOnlyDropped(before, env.stats(), "PLAINTEXT");
    assert.equal(env.unwrap(Uint8Array.of(1, 2, 3), "10.0.0.1", 1), null, "junk too");
    assert.equal(env.stats()["dropped.PLAINTEXT"], 2);
  });

  test("a replayed datagram is dropped and counted (REPLAY); the original opened once", () => {
    const sender = envelope({ boot: 5, counter: 1 }).env;
    const { env } = envelope();
    const sealed = sender.wrap(datagram());
    assert.ok(env.unwrap(sealed, "10.0.0.1", 7946) !== null);
    const before = env.stats();
    assert.equal(env.unwrap(sealed, "10.0.0.1", 7946), null);
    assertOnlyDropped(before, env.stats(), "REPLAY");
  });

  test("reordering inside the window is accepted; older than the window is not", () => {
    const sender = envelope({ boot: 5, counter: 0 }).env;
    const { env } = envelope();
    const all = Array.from({ length: WINDOW_BITS + 2 }, () => sender.wrap(datagram()));
    assert.ok(env.unwrap(all[0] as Uint8Array, "10.0.0.1", 1) !== null);
    assert.ok(env.unwrap(all[WINDOW_BITS + 1] as Uint8Array, "10.0.0.1", 1) !== null, "a jump ahead");
    assert.ok(env.unwrap(all[5] as Uint8Array, "10.0.0.1", 1) !== null, "late but inside the window");
    assert.equal(env.unwrap(all[1] as Uint8Array, "10.0.0.1", 1), null, "older than the window");
    assert.equal(env.unwrap(all[5] as Uint8Array, "10.0.0.1", 1), null, "twice");
    assert.equal(env.stats()["dropped.REPLAY"], 2);
  });
});

describe("replay windows across restarts", () => {
  test("a restarted sender (new boot id, counter from its new start) is accepted", () => {
    const { env } = envelope();
    assert.ok(env.unwrap(envelope({ boot: 1, counter: 1_000_000 }).env.wrap(datagram(100)), "10.0.0.1", 1) !== null);
    assert.ok(env.unwrap(envelope({ boot: 2, counter: 3 }).env.wrap(datagram(200)), "10.0.0.1", 1) !== null);
  });

  test("a datagram of an earlier life replayed after its boot id was evicted is rejected by its older incarnation", () => {
    const { env } = envelope();
    const firstLife = envelope({ boot: 1000, counter: 0 }).env.wrap(datagram(100));
    assert.ok(env.unwrap(firstLife, "10.0.0.1", 1) !== null);
    for (let life = 1; life <= BOOTS_PER_SENDER; life++) {
      assert.ok(env.unwrap(envelope({ boot: 1000 + life, counter: 0 }).env.wrap(datagram(100 + life)), "10.0.0.1", 1) !== null);
    }
    assert.equal(env.stats()["replay.bootsEvicted"], 1);
    assert.equal(env.unwrap(firstLife, "10.0.0.1", 1), null);
    assert.equal(env.stats()["dropped.REPLAY"], 1);
  });

  test("a replay sent from another source address meets the window of the sender it names", () => {
    const { env } = envelope();
    const sealed = envelope({ boot: 9, counter: 100 }).env.wrap(datagram());
    assert.ok(env.unwrap(sealed, "10.0.0.1", 7946) !== null);
    for (const [ip, port] of [["10.0.0.1", 7946], ["203.0.113.5", 4000], ["203.0.113.6", 4001]] as const) {
      assert.equal(env.unwrap(sealed, ip, port), null, `replayed from ${ip}:${port}`);
    }
    assert.equal(env.stats()["dropped.REPLAY"], 3);
  });

  test("a sender restarted within a second, below the incarnation its previous life reached, is no replay", () => {
    const guard = new ReplayGuard(8);
    // A life starts at 524 (wall-clock seconds), refutes to 525 and leaves at 526.
    assert.equal(guard.check("b", 1, 0, 524), "ok");
    assert.equal(guard.check("b", 1, 1, 525), "ok");
    assert.equal(guard.check("b", 1, 2, 526), "ok");
    // Restarted in the same second: a new boot id at 524, then it refutes upwards.
    assert.equal(guard.check("b", 2, 0, 524), "ok");
    assert.equal(guard.check("b", 2, 1, 527), "ok");
    // Its first life's datagrams stay rejected while that boot is remembered.
    assert.equal(guard.check("b", 1, 2, 526), "replay");
    // After more lives (each starting later) evicted it, an older life's datagram is rejected by its incarnation.
    for (let life = 3; life <= 2 + BOOTS_PER_SENDER; life++) assert.equal(guard.check("b", life, 0, 524 + 10 * life), "ok");
    assert.equal(guard.check("b", 1, 3, 526), "replay");
  });

  test("only a key holder can crowd a member's boot window out (then the member's current datagrams replay once each); datagrams that do not open never touch it", () => {
    const { env } = envelope();
    const member = envelope({ boot: 77, counter: 500 }).env;
    const genuine = [member.wrap(datagram(100)), member.wrap(datagram(100))];
    for (const d of genuine) assert.ok(env.unwrap(d, "10.0.0.1", 1) !== null);
    // A stranger (another key) cannot: its datagrams in the member's name do not open.
    for (let boot = 1; boot <= 2 * BOOTS_PER_SENDER; boot++) {
      assert.equal(env.unwrap(envelope({ boot, counter: 0, keys: [K32] }).env.wrap(datagram(100)), "10.0.0.1", 1), null);
    }
    assert.equal(env.unwrap(genuine[0] as Uint8Array, "10.0.0.1", 1), null, "still a replay");
    // A key holder can: BOOTS_PER_SENDER new boot ids in the member's name evict its window.
    for (let boot = 1; boot <= BOOTS_PER_SENDER; boot++) assert.ok(env.unwrap(envelope({ boot, counter: 0 }).env.wrap(datagram(100)), "10.0.0.1", 1) !== null);
    assert.equal(env.stats()["replay.bootsEvicted"], 1);
    assert.ok(env.unwrap(genuine[0] as Uint8Array, "10.0.0.1", 1) !== null, "replayed once (documented in src/seal/replay.ts)");
    assert.equal(env.unwrap(genuine[0] as Uint8Array, "10.0.0.1", 1), null, "and no more");
  });

  test("the guard's tables are bounded; evictions are counted", () => {
    const guard = new ReplayGuard(3);
    for (let i = 0; i < 5; i++) assert.equal(guard.check(`s${i}`, 1, 0, 1), "ok");
    assert.deepEqual(guard.counters, { sendersEvicted: 2, bootsEvicted: 0, senders: 3 });
    assert.equal(guard.check("s4", 1, 0, 1), "replay");
    // An evicted sender is a first contact again.
    assert.equal(guard.check("s0", 1, 0, 1), "ok");
  });
});

describe("labels without keys, and migration", () => {
  test("two plaintext clusters with different labels drop each other's datagrams (LABEL)", () => {
    const a = envelope({ keys: [], label: "alpha" }).env;
    const b = envelope({ keys: [], label: "beta" });
    const none = envelope({ keys: [], label: null }).env;
    assert.equal(b.env.unwrap(a.wrap(datagram()), "10.0.0.1", 1), null);
    assert.equal(b.env.unwrap(datagram(), "10.0.0.1", 1), null, "unlabeled plaintext");
    assert.deepEqual(b.drops, ["LABEL", "LABEL"]);
    const opened = envelope({ keys: [], label: "alpha" }).env.unwrap(a.wrap(datagram()), "10.0.0.1", 1);
    assert.equal(hex(opened as Uint8Array), hex(datagram()));
    const unlabeled = envelope({ keys: [], label: null });
    assert.equal(unlabeled.env.unwrap(a.wrap(datagram()), "10.0.0.1", 1), null);
    assert.equal(hex(unlabeled.env.unwrap(none.wrap(datagram()), "10.0.0.1", 1) as Uint8Array), hex(datagram()));
  });

  test("accept-plaintext takes plaintext and sealed; send-plaintext sends plaintext but still opens sealed", () => {
    const plain = envelope({ keys: [] }).env;
    const accepting = envelope({ acceptPlaintext: true }).env; // sends sealed
    const sendingPlain = envelope({ acceptPlaintext: true, sendPlaintext: true }).env;
    const strict = envelope().env;
    assert.equal(hex(accepting.unwrap(plain.wrap(datagram()), "10.0.0.1", 1) as Uint8Array), hex(datagram()));
    assert.equal(hex(sendingPlain.wrap(datagram())), hex(datagram()), "send-plaintext sends the bare datagram");
    assert.ok(accepting.unwrap(sendingPlain.wrap(datagram()), "10.0.0.2", 1) !== null);
    assert.ok(sendingPlain.unwrap(accepting.wrap(datagram()), "10.0.0.3", 1) !== null);
    assert.equal(strict.unwrap(sendingPlain.wrap(datagram()), "10.0.0.2", 1), null, "a strict agent drops plaintext");
    assert.equal(accepting.stats().sealing, 1);
    assert.equal(sendingPlain.stats().sealing, 0);
  });

  test("an agent that holds keys takes cluster requests only sealed, even while it accepts plaintext", () => {
    const request = datagram(7, { type: MessageType.Request, epoch: 1, id: 1, kind: 1, answerKey: new Uint8Array(16), payload: Uint8Array.of(1) });
    const plain = envelope({ keys: [] }).env;
    const accepting = envelope({ acceptPlaintext: true });
    assert.equal(accepting.env.unwrap(plain.wrap(request), "10.0.0.1", 1), null, "a plaintext request is dropped");
    assert.deepEqual(accepting.drops, ["PLAINTEXT"]);
    assert.ok(accepting.env.unwrap(plain.wrap(datagram()), "10.0.0.1", 2) !== null, "plaintext gossip still passes");
    const sealedRequest = envelope().env.wrap(request);
    assert.equal(hex(accepting.env.unwrap(sealedRequest, "10.0.0.2", 1) as Uint8Array), hex(request), "a sealed request passes");
    // Without keys (a plaintext cluster) requests pass: there is no keyring to act on.
    assert.ok(envelope({ keys: [] }).env.unwrap(plain.wrap(request), "10.0.0.1", 1) !== null);
  });

  test("multicast announcements are sealed and labeled too, and open to version 1", () => {
    const a = encodeAnnouncement({ clusterName: "tamtam", address: FROM });
    for (const o of [{ label: "prod" }, { keys: [] as Uint8Array[], label: "prod" }, { keys: [] as Uint8Array[] }]) {
      const sender = envelope(o).env;
      const wire = sender.wrapAnnouncement(a);
      const opened = envelope(o).env.unwrapAnnouncement(wire, "10.0.0.1", 9998);
      assert.ok(opened !== null, JSON.stringify(o));
      assert.deepEqual(decodeAnnouncement(opened), { clusterName: "tamtam", address: FROM });
    }
    const sealed = envelope({ label: "prod" }).env.wrapAnnouncement(a);
    assert.ok(!Buffer.from(sealed).includes(Buffer.from("tamtam")), "the cluster name is not in clear");
    const other = envelope({ label: "other" });
    assert.equal(other.env.unwrapAnnouncement(sealed, "10.0.0.1", 9998), null);
    assert.equal(envelope({}).env.unwrapAnnouncement(a, "10.0.0.1", 9998), null, "a plaintext announcement at a strict agent");
  });
});

describe("the thread preset's budget when sealed", () => {
  const base = {
    rpc: "localhost:6262", rpcToken: null, bind: "::", port: 9999, ipv6: true, iface: null, advertise: null, heartbeatMs: null,
    maxBroadcastBytes: 0, preset: "thread", workers: 0, join: [], logLevel: "info", logFormat: "json", nobanner: true,
    multicast: { enabled: false, clusterName: "tamtam", address: null, intervalSeconds: 10, port: 9998 },
    faults: { reapAfterMs: null, reconnectIntervalMs: null, reconnectTimeoutMs: null, maxReconnectTargets: null, flapDamping: true },
    snapshot: null,
  } as const satisfies Omit<AgentOptions, "seal">;
  const seal = { keys: [K16], keyringFile: null, createKeyringFile: false, warning: null, label: null, acceptPlaintext: false, sendPlaintext: false };

  test("a sealed ping and ack (largest headers: IPv6, 5-byte incarnation and seq) fit 80 bytes", () => {
    const self = addr("[2001:db8::1]:7946");
    for (const type of [MessageType.Ping, MessageType.Ack] as const) {
      const body = { type, seq: 0xffffffff };
      const bare = headerBytes(self, 0xffffffff, body);
      const sealed = envelope().env.wrap(datagram(0xffffffff, body, self));
      assert.equal(sealed.length, bare + SEALED_OVERHEAD_BYTES);
      assert.ok(sealed.length <= 80, `${sealed.length} > 80`);
    }
  });

  test("the agent's sealed or labeled thread config keeps the 80-byte probe budget and validates", () => {
    const plain = protocolConfig(base, 6);
    assert.equal(plain.sealed, false);
    assert.equal(plain.probePacketBytes, 80);
    const sealed = protocolConfig({ ...base, seal }, 6);
    assert.equal(sealed.sealed, true);
    assert.equal(sealed.probePacketBytes, 80);
    assert.deepEqual(validateConfig(sealed), []);
    const labeled = protocolConfig({ ...base, seal: { ...seal, keys: [], label: "mesh" } }, 6);
    assert.equal(labeled.sealed, true, "a label alone reserves the room too");
    assert.equal(labeled.probePacketBytes, 80);
    assert.deepEqual(validateConfig(labeled), []);
    const lan = protocolConfig({ ...base, preset: "lan", seal: { ...seal, keys: [], label: "x" } }, 6);
    assert.equal(lan.sealed, true);
    assert.equal(lan.probePacketBytes, 1232);
  });

  test("a sealed or labeled thread agent's pings and acks with a full piggyback queue take at most 80 bytes on the wire", () => {
    const cfg = protocolConfig({ ...base, seal }, 6);
    // IPv6 everywhere and 5-byte sequence numbers; incarnation 0, so that an item (21 bytes)
    // fits beside a 30-byte header in the 51 bytes the envelope leaves. (With 5-byte
    // incarnations the headers alone, at most 34 + 29 bytes, still fit: see above.)
    const self = addr("[2001:db8::1]:7946");
    const peer = addr("[2001:db8::2]:7946");
    const members = Array.from({ length: 40 }, (_, i) => addr(`[2001:db8::${(i + 16).toString(16)}]:7946`));
    const rt = new RecordingRuntime(self);
    const node = new SwimNode({ self, config: cfg, seed: 3, incarnation: 0, broadcastEpoch: 0 });
    (node as unknown as { nextSeq: number }).nextSeq = 0xfffffff0;
    node.start(0, rt);
    node.handleDatagram(1, craft(peer, 0, [alive(peer, 0), ...members.map((m) => alive(m, 0))], SYNC), rt);
    node.handleDatagram(1, craft(peer, 0, members.slice(0, 10).map((m) => suspect(m, 0, peer))), rt);
    assert.equal(node.broadcast(1, new Uint8Array(8).fill(1), rt).ok, true);
    // A user ping the peer answers proves its address: its pings then get acks with a full piggyback.
    node.ping(2, peer, 1, rt);
    const ping = rt.sent.at(-1)?.decoded?.body;
    assert.ok(ping?.type === MessageType.Ping);
    node.handleDatagram(2, craft(peer, 0, [], { type: MessageType.Ack, seq: ping.seq }), rt);
    for (let i = 0; i < 5; i++) node.handleDatagram(3, craft(peer, 0, [], { type: MessageType.Ping, seq: 0xfffffff0 + i }), rt);
    // Probes nobody answers: pings, then PING_REQs to helpers.
    rt.nowMs = 3;
    rt.runTimers(node, 30_000);
    const probes = rt.sent.filter((d) => d.decoded?.body.type === MessageType.Ping || d.decoded?.body.type === MessageType.Ack);
    const acks = probes.filter((d) => d.decoded?.body.type === MessageType.Ack);
    assert.ok(probes.length > 5 && acks.length === 5, `${probes.length} probes, ${acks.length} acks`);
    // Whatever fits goes (SUSPECT items, 44 bytes, and the broadcast never fit and stay queued).
    assert.ok(acks.every((d) => (d.decoded?.updates.length ?? 0) > 0), "every ack carries piggyback");
    assert.ok(probes.some((d) => d.bytes.length === 80 - SEALED_OVERHEAD_BYTES), "some are full to the byte");
    const pingReqs = rt.sent.filter((d) => d.decoded?.body.type === MessageType.PingReq);
    assert.ok(pingReqs.length > 0);
    const sealer = envelope().env;
    const labeler = envelope({ keys: [], label: "mesh" }).env;
    for (const d of probes) {
      const sealed = sealer.wrap(d.bytes);
      assert.equal(sealed.length, d.bytes.length + SEALED_OVERHEAD_BYTES);
      assert.ok(sealed.length <= 80, `sealed ${sealed.length} > 80`);
      const labeled = labeler.wrap(d.bytes);
      assert.ok(labeled.length < sealed.length, "a label's tag takes less than the envelope");
      assert.ok(labeled.length <= 80, `labeled ${labeled.length} > 80`);
    }
    // A PING_REQ may be larger: up to its largest header and the envelope.
    for (const d of pingReqs) assert.ok(sealer.wrap(d.bytes).length <= MAX_PING_REQ_HEADER_BYTES + SEALED_OVERHEAD_BYTES);
    assert.deepEqual(rt.problems, []);
  });
});

describe("the keyring and its file", () => {
  const dir = (): string => mkdtempSync(join(tmpdir(), "tamtam-keyring-"));

  test("install, use and remove; the primary cannot be removed; listeners hear every change", () => {
    const ring = new Keyring([K16]);
    const seen: number[] = [];
    ring.onChange((keys) => seen.push(keys.length));
    assert.equal(ring.install(K32), true);
    assert.equal(ring.install(K32), false, "already installed");
    ring.use(K32);
    assert.equal(hex(ring.primary?.key as Uint8Array), hex(K32));
    assert.throws(() => ring.remove(K32), /primary key cannot be removed/);
    ring.remove(K16);
    assert.throws(() => ring.use(K16), /not installed/);
    assert.throws(() => ring.install(new Uint8Array(20)), /16, 24 or 32 bytes/);
    assert.deepEqual(seen, [2, 2, 1]);
  });

  test("the file round trip: created 0600, rewritten atomically on every change, read again", () => {
    const d = dir();
    try {
      const path = join(d, "keyring.json");
      writeKeyringFile(path, [K16]);
      assert.equal(statSync(path).mode & 0o777, 0o600);
      const ring = new Keyring(readKeyringFile(path) ?? []);
      ring.onChange((keys) => writeKeyringFile(path, keys));
      // A reader that opened the file before a change keeps reading the old, whole file.
      const reader = openSync(path, "r");
      try {
        ring.install(K32);
        assert.notEqual(statSync(path).ino, fstatSync(reader).ino, "replaced by a rename, never written in place");
        assert.deepEqual(JSON.parse(readFileSync(reader, "utf8")), [Buffer.from(K16).toString("base64")]);
      } finally {
        closeSync(reader);
      }
      ring.use(K32);
      assert.equal(statSync(path).mode & 0o777, 0o600);
      assert.deepEqual((readKeyringFile(path) ?? []).map(hex), [hex(K32), hex(K16)]);
      assert.deepEqual(readdirSync(d), ["keyring.json"], "no temporary file left");
      // A file a user made readable by others is private again after the next rewrite.
      chmodSync(path, 0o644);
      ring.remove(K16);
      assert.equal(statSync(path).mode & 0o777, 0o600);
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  });

  test("a YAML list is read too; bad files get one line that never shows a key", () => {
    const d = dir();
    try {
      const path = join(d, "keyring.yaml");
      const b64 = Buffer.from(K24).toString("base64");
      writeFileSync(path, `- ${b64}\n- ${Buffer.from(K16).toString("base64")}\n`);
      assert.deepEqual((readKeyringFile(path) ?? []).map(hex), [hex(K24), hex(K16)]);
      const secret = Buffer.from(new Uint8Array(20).fill(7)).toString("base64");
      writeFileSync(path, `["${b64}", "${secret}"]`);
      assert.throws(() => readKeyringFile(path), (err: Error) => {
        assert.equal(err.message, `key 2 of the keyring file ${path} must be a 16-, 24- or 32-byte key in base64, got 20 bytes`);
        assert.ok(!err.message.includes(secret) && !err.message.includes(b64));
        return true;
      });
      writeFileSync(path, "{}");
      assert.throws(() => readKeyringFile(path), /must hold a non-empty list of base64 keys/);
      assert.equal(readKeyringFile(join(d, "missing.json")), null);
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  });

  test("--encrypt and --keyring-file: a file that exists wins; a missing one is created from --encrypt", () => {
    const d = dir();
    try {
      const path = join(d, "keyring.json");
      assert.deepEqual(startingKeys(K16, null), { keys: [K16], createFile: false, warning: null });
      assert.throws(() => startingKeys(null, path), /does not exist; give a first key with --encrypt/);
      const created = startingKeys(K16, path);
      assert.equal(created.createFile, true);
      assert.deepEqual(created.keys.map(hex), [hex(K16)]);
      writeKeyringFile(path, [K32, K16]);
      const same = startingKeys(K16, path);
      assert.deepEqual(same.keys.map(hex), [hex(K32), hex(K16)], "the file's order: its primary stays primary");
      assert.equal(same.warning, null, "the --encrypt key is in the file");
      const other = startingKeys(K24, path);
      assert.deepEqual(other.keys.map(hex), [hex(K32), hex(K16)]);
      assert.match(other.warning ?? "", /the --encrypt key is not in the keyring file .* and is ignored: the keyring file wins/);
      assert.equal(startingKeys(null, path).keys.length, 2);
      assert.ok(!existsSync(join(d, "missing")));
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  });
});

describe("settings of sealing", () => {
  const io = (env: Record<string, string> = {}, file: string | null = null): SettingsIO => ({ env, homeDir: "/home/u", readFile: () => file });
  const b64 = (k: Uint8Array): string => Buffer.from(k).toString("base64");

  test("flag > TAMTAM_ENCRYPT > encrypt in the file; label and migration switches likewise", () => {
    const file = `encrypt: "${b64(K24)}"\nlabel: fromfile\nencrypt-accept-plaintext: true\n`;
    const fromFile = resolveSettings(AGENT_SETTINGS, {}, undefined, io({}, file));
    assert.equal(fromFile.values.encrypt, b64(K24));
    assert.equal(fromFile.values.label, "fromfile");
    assert.equal(fromFile.values.encryptAcceptPlaintext, true);
    const fromEnv = resolveSettings(AGENT_SETTINGS, {}, undefined, io({ TAMTAM_ENCRYPT: b64(K32), TAMTAM_LABEL: "env" }, file));
    assert.equal(fromEnv.values.encrypt, b64(K32));
    assert.equal(fromEnv.values.label, "env");
    const fromFlag = resolveSettings(AGENT_SETTINGS, { encrypt: b64(K16), label: "flag" }, undefined, io({ TAMTAM_ENCRYPT: b64(K32) }, file));
    assert.equal(fromFlag.values.encrypt, b64(K16));
    const options = agentOptions(fromFlag);
    assert.deepEqual(options.seal?.keys.map(hex), [hex(K16)]);
    assert.equal(options.seal?.label, "flag");
    assert.equal(options.seal?.acceptPlaintext, true);
  });

  test("a bad key is one line naming its source, never the key", () => {
    const bad = Buffer.from(new Uint8Array(20).fill(9)).toString("base64");
    const cases: [Parameters<typeof resolveSettings>[1], SettingsIO, string][] = [
      [{ encrypt: bad }, io(), "--encrypt must be a 16-, 24- or 32-byte key in base64, got 20 bytes, got a value that is not shown"],
      [{}, io({ TAMTAM_ENCRYPT: "not base64!" }), "TAMTAM_ENCRYPT must be base64 of a 16-, 24- or 32-byte key (e.g. from `openssl rand -base64 32`), got a value that is not shown"],
      [{}, io({}, `encrypt: "${bad}"\n`), `"encrypt" in /home/u/.tamtam.yaml must be a 16-, 24- or 32-byte key in base64, got 20 bytes, got a value that is not shown`],
    ];
    for (const [flags, sio, message] of cases) {
      assert.throws(() => resolveSettings(AGENT_SETTINGS, flags, undefined, sio), (err: Error) => {
        assert.equal(err.message, message);
        assert.ok(!err.message.includes(bad));
        return true;
      });
    }
    assert.equal(typeof decodeKey(bad), "string");
  });

  test("the migration switches need a key; a label needs none", () => {
    assert.throws(
      () => agentOptions(resolveSettings(AGENT_SETTINGS, { encryptAcceptPlaintext: true }, undefined, io())),
      (err: Error & { exitCode?: number }) => {
        assert.equal(err.message, "--encrypt-accept-plaintext needs a gossip key (--encrypt or --keyring-file)");
        assert.equal(err.exitCode, 2);
        return true;
      },
    );
    assert.throws(
      () => agentOptions(resolveSettings(AGENT_SETTINGS, {}, undefined, io({ TAMTAM_ENCRYPT_SEND_PLAINTEXT: "1" }))),
      /TAMTAM_ENCRYPT_SEND_PLAINTEXT needs a gossip key/,
    );
    const labeled = agentOptions(resolveSettings(AGENT_SETTINGS, { label: "lab" }, undefined, io()));
    assert.deepEqual(labeled.seal?.keys, []);
    assert.equal(labeled.seal?.label, "lab");
    assert.throws(() => resolveSettings(AGENT_SETTINGS, { label: "x".repeat(256) }, undefined, io()), /--label must have 1\.\.255 bytes/);
  });
});

describe("the drop log", () => {
  test("at most one line per reason per interval, with the count since the last", () => {
    const lines: string[] = [];
    let now = 0;
    const log = new DropLog((l) => lines.push(l), 10_000, () => now);
    log.record("NO_KEY", "10.0.0.1:1");
    for (let i = 0; i < 50; i++) log.record("NO_KEY", "10.0.0.2:1");
    log.record("REPLAY", "10.0.0.3:1");
    now = 10_000;
    log.record("NO_KEY", "10.0.0.4:1");
    assert.deepEqual(lines, [
      "dropped a datagram sealed with a key this agent does not have (NO_KEY), the latest from 10.0.0.1:1",
      "dropped a datagram replayed (received before, or from an earlier life of the sender) (REPLAY), the latest from 10.0.0.3:1",
      "dropped 51 datagrams sealed with a key this agent does not have (NO_KEY), the latest from 10.0.0.4:1",
    ]);
  });

  test("drops reported by a worker in batches add up, and a line names no source it does not know", () => {
    const lines: string[] = [];
    let now = 0;
    const log = new DropLog((l) => lines.push(l), 10_000, () => now);
    log.record("BAD_SEAL", null, 7);
    log.record("BAD_SEAL", "10.0.0.9:1", 5);
    now = 10_000;
    log.record("BAD_SEAL", null, 2);
    assert.deepEqual(lines, [
      "dropped 7 datagrams failed authentication (altered, sealed under another cluster label, or under a key whose id collides) (BAD_SEAL)",
      "dropped 7 datagrams failed authentication (altered, sealed under another cluster label, or under a key whose id collides) (BAD_SEAL)",
    ]);
  });
});

describe("engines seal on the wire (inline, one worker, and seal/open workers in front of the protocol worker)", () => {
  for (const workers of [0, 1, 3]) {
    test(`workers ${workers}: sealed engines join and ping; one with another key never gets in; forged bytes change nothing`, { timeout: 30_000 }, async () => {
      const engines: Engine[] = [];
      const make = async (keys: Uint8Array[]): Promise<{ engine: Engine; env: Envelope }> => {
        const env = envelope({ keys, label: "e2e" }).env;
        const engine = await createEngine({
          bindIp: "127.0.0.1",
          workers,
          config: protocolConfig({ ...agentBase, seal: { ...sealBase, keys } }, 4),
          envelope: env,
        });
        engines.push(engine);
        await engine.start();
        return { engine, env };
      };
      const sniffer = createSocket("udp4");
      try {
        const a = await make([K16]);
        const b = await make([K16]);
        const stranger = await make([K32]);
        // Everything on the wire is sealed: listen as a third party would.
        const [outcome] = await b.engine.join([a.engine.localAddress]);
        assert.equal(outcome?.ok, true);
        assert.ok((await a.engine.ping(b.engine.localAddress)) !== null);
        const [refused] = await stranger.engine.join([a.engine.localAddress], 1_500);
        assert.equal(refused?.ok, false);
        // The drop counters of every thread that opens add up in the engine's seal.* stats.
        const sealStat = async (name: string): Promise<number> => (await a.engine.stats())[`seal.${name}`] ?? 0;
        await poll(async () => (await sealStat("dropped.NO_KEY")) >= 1, 5_000, 20);
        // Forged and replayed datagrams at A change nothing: the core sees none of them.
        const before = await a.engine.stats();
        await new Promise<void>((resolve) => sniffer.bind(0, "127.0.0.1", () => resolve()));
        const self = addr(`127.0.0.1:${sniffer.address().port}`);
        const forged = envelope({ keys: [K32], label: "e2e" }).env.wrap(datagram(1, { type: MessageType.Ping, seq: 1 }, self));
        const plain = datagram(1, { type: MessageType.Ping, seq: 2 }, self);
        for (const bytes of [forged, plain, Uint8Array.of(0x54, 0x6d, 1, 1, 0)]) {
          sniffer.send(bytes, a.engine.localAddress.port, "127.0.0.1");
        }
        await poll(async () => (await sealStat("dropped.NO_KEY")) >= 2 && (await sealStat("dropped.PLAINTEXT")) >= 1 && (await sealStat("dropped.TRUNCATED")) >= 1, 5_000, 20);
        const after = await a.engine.stats();
        assert.equal(after["core.protocolErrors"], before["core.protocolErrors"], "nothing malformed reached the core");
        const members = (await a.engine.members()).map((m) => m.address.key).sort();
        assert.deepEqual(members, [a.engine.localAddress.key, b.engine.localAddress.key].sort(), "the stranger and the forger are not members");
      } finally {
        sniffer.close();
        for (const e of engines) await e.stop();
      }
    });
  }
});

describe("worker engine: the keyring stays live and replays are caught with several workers", () => {
  const make = async (engines: Engine[], workers: number, keys: Uint8Array[]): Promise<{ engine: Engine; env: Envelope }> => {
    const env = envelope({ keys, label: "e2e" }).env;
    const engine = await createEngine({ bindIp: "127.0.0.1", workers, config: protocolConfig({ ...agentBase, seal: { ...sealBase, keys } }, 4), envelope: env });
    engines.push(engine);
    await engine.start();
    return { engine, env };
  };

  for (const workers of [1, 2, 3]) {
    test(`workers ${workers}: install, use and remove reach every worker at once; a member left on the old key is shut out`, { timeout: 30_000 }, async () => {
      const engines: Engine[] = [];
      try {
        const a = await make(engines, workers, [K16]);
        const b = await make(engines, workers, [K16]);
        assert.equal((await b.engine.join([a.engine.localAddress]))[0]?.ok, true);
        // Rotate to K32 as `tamtam keys` does it: install everywhere, use, remove the old one.
        a.env.keys.install(K32);
        b.env.keys.install(K32);
        a.env.keys.use(K32);
        // A now seals with K32 only in its workers: B's workers must open it (and A's, B's answer).
        assert.ok((await a.engine.ping(b.engine.localAddress)) !== null, "A (sealing with K32) and B hear each other");
        b.env.keys.use(K32);
        a.env.keys.remove(K16);
        b.env.keys.remove(K16);
        assert.ok((await b.engine.ping(a.engine.localAddress)) !== null, "B and A hear each other on K32 alone");
        const s = await a.engine.stats();
        assert.equal(s["seal.keys"], 1, "the protocol worker holds the one key left");
        // A member that still has only K16 is no longer heard: no worker of A kept the old key.
        const stale = await make(engines, 0, [K16]);
        const [refused] = await stale.engine.join([a.engine.localAddress], 1_500);
        assert.equal(refused?.ok, false);
        await poll(async () => ((await a.engine.stats())["seal.dropped.NO_KEY"] ?? 0) >= 1, 5_000, 20);
        assert.deepEqual(
          (await a.engine.members()).map((m) => m.address.key).sort(),
          [a.engine.localAddress.key, b.engine.localAddress.key].sort(),
        );
      } finally {
        for (const e of engines) await e.stop();
      }
    });

    test(`workers ${workers}: a sealed datagram sent again is dropped as a replay, whichever worker opens each copy`, { timeout: 30_000 }, async () => {
      const engines: Engine[] = [];
      const sniffer = createSocket("udp4");
      try {
        const a = await make(engines, workers, [K16]);
        await new Promise<void>((resolve) => sniffer.bind(0, "127.0.0.1", () => resolve()));
        const self = addr(`127.0.0.1:${sniffer.address().port}`);
        const acks: number[] = [];
        sniffer.on("message", (msg: Buffer) => {
          const opened = envelope({ keys: [K16], label: "e2e" }).env.unwrap(new Uint8Array(msg), "127.0.0.1", a.engine.localAddress.port);
          if (opened === null) return;
          const d = decodeDatagram(opened);
          if (d.body.type === MessageType.Ack) acks.push(d.body.seq);
        });
        const ping = envelope({ keys: [K16], label: "e2e" }).env.wrap(datagram(Math.floor(Date.now() / 1000), { type: MessageType.Ping, seq: 77 }, self));
        // The same bytes three times, back to back: with several seal/open workers the copies
        // are dealt to different workers; the protocol worker's one replay window still sees them all.
        for (let i = 0; i < 3; i++) sniffer.send(ping, a.engine.localAddress.port, "127.0.0.1");
        await poll(async () => ((await a.engine.stats())["seal.dropped.REPLAY"] ?? 0) >= 2 && acks.length >= 1, 5_000, 20);
        const s = await a.engine.stats();
        assert.equal(s["seal.dropped.REPLAY"], 2);
        assert.equal(s["seal.opened"], 1, "one copy admitted");
        assert.deepEqual(acks, [77], "answered once");
      } finally {
        sniffer.close();
        for (const e of engines) await e.stop();
      }
    });
  }
});

const agentBase = {
  rpc: "localhost:6262", rpcToken: null, bind: "127.0.0.1", port: 9999, ipv6: false, iface: null, advertise: null, heartbeatMs: 100,
  maxBroadcastBytes: 0, preset: "local", workers: 0, join: [], logLevel: "info", logFormat: "json", nobanner: true,
  multicast: { enabled: false, clusterName: "tamtam", address: null, intervalSeconds: 10, port: 9998 },
  faults: { reapAfterMs: null, reconnectIntervalMs: null, reconnectTimeoutMs: null, maxReconnectTargets: null, flapDamping: true },
  snapshot: null,
} as const satisfies Omit<AgentOptions, "seal">;
const sealBase = { keyringFile: null, createKeyringFile: false, warning: null, label: "e2e", acceptPlaintext: false, sendPlaintext: false };
