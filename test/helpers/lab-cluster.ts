/**
 * A cluster of real `tamtam agent` processes on the hosts of a NetLab (one agent per network
 * namespace, IPv4 or IPv6), each serving gRPC on a Unix socket (a path, so the test process
 * reaches it from outside the namespaces), and a recorder of every membership change each
 * agent reports on its Monitor stream, with the time it arrived. Shared by the network-
 * namespace detection test and the detection benchmark: start, converge, SIGKILL, SIGSTOP /
 * SIGCONT, and the figures (time until every observer holds a member non-alive or dead; the
 * (observer, member) pairs falsely suspected or declared dead in a window).
 */

import { join } from "node:path";
import { TamTam } from "../../src/gen/service/tamtam_pb.js";
import { createH2Client, type H2ServiceClient } from "../../src/rpc/h2-client.js";
import type { NetLab } from "./netns.js";
import { binPath, type Proc, ProcessGroup, waitForLine } from "./processes.js";

export interface LabClusterOptions {
  readonly lab: NetLab;
  /** Lab hosts that run an agent (1-based). */
  readonly hosts: readonly number[];
  readonly family: 4 | 6;
  readonly port: number;
  /** Directory of the gRPC sockets and the agents' HOME. */
  readonly dir: string;
  readonly heartbeatMs: number;
  readonly env: Record<string, string>;
}

/** One membership change reported by an agent's Monitor stream. */
export interface Sighting {
  readonly atMs: number;
  readonly observer: number;
  readonly member: number;
  readonly state: string;
  readonly incarnation: number;
}

export class LabCluster {
  readonly group = new ProcessGroup();
  readonly sightings: Sighting[] = [];
  private readonly procs = new Map<number, Proc>();
  private readonly clients = new Map<number, H2ServiceClient<typeof TamTam.method>>();
  private readonly streams: AbortController[] = [];
  private readonly hostByKey = new Map<string, number>();

  constructor(readonly o: LabClusterOptions) {
    for (const h of o.hosts) this.hostByKey.set(this.key(this.ip(h), o.port), h);
  }

  ip(host: number): string {
    const h = this.o.lab.host(host);
    return this.o.family === 4 ? h.ipv4 : h.ipv6;
  }

  gossip(host: number): string {
    return this.o.family === 4 ? `${this.ip(host)}:${this.o.port}` : `[${this.ip(host)}]:${this.o.port}`;
  }

  private key(ip: string, port: number): string {
    return `${ip}|${port}`;
  }

  private socket(host: number): string {
    return join(this.o.dir, `f${this.o.family}p${this.o.port}h${host}.sock`);
  }

  /** Starts every agent (the first alone, the others joining it) and follows their Monitor streams. */
  async start(): Promise<void> {
    const [first, ...rest] = this.o.hosts;
    await this.startAgent(first as number, null);
    await Promise.all(rest.map((h) => this.startAgent(h, this.gossip(first as number))));
    for (const h of this.o.hosts) this.follow(h);
  }

  private async startAgent(host: number, seed: string | null): Promise<void> {
    const args = [binPath(), "--rpc", `unix:${this.socket(host)}`, "agent", "--bind", this.ip(host), "-p", String(this.o.port)];
    args.push("--heartbeat", String(this.o.heartbeatMs), "--nobanner", "--log-format", "json");
    if (this.o.family === 6) args.push("-6");
    if (seed !== null) args.push("--join", seed);
    const [cmd, ...rest] = this.o.lab.exec(host, [process.execPath, ...args]);
    const proc = this.group.spawn(cmd as string, rest, { env: { ...this.o.env, HOME: this.o.dir }, label: `agent on host ${host}` });
    this.procs.set(host, proc);
    await waitForLine(proc, (t) => t.includes("Listening for gossip"), 20_000, { stream: "stderr" });
    this.clients.set(host, createH2Client(TamTam, `unix:${this.socket(host)}`, { defaultTimeoutMs: 5_000 }));
  }

  private client(host: number): H2ServiceClient<typeof TamTam.method> {
    const c = this.clients.get(host);
    if (c === undefined) throw new Error(`no agent on host ${host}`);
    return c;
  }

  private follow(host: number): void {
    const ctl = new AbortController();
    this.streams.push(ctl);
    void (async () => {
      try {
        for await (const n of this.client(host).monitor({}, { signal: ctl.signal })) {
          const member = this.hostByKey.get(this.key(n.address?.IP ?? "", n.address?.port ?? 0));
          if (member === undefined || member === host) continue;
          this.sightings.push({ atMs: performance.now(), observer: host, member, state: n.state, incarnation: n.incarnation });
        }
      } catch {
        // The stream ends when the agent is killed or the cluster stops.
      }
    })();
  }

  /** Every agent in `observers` sees every host in `members` in state `state` (by Nodes). */
  async allSee(observers: readonly number[], members: readonly number[], state: string): Promise<boolean> {
    const views = await Promise.all(observers.map((h) => this.client(h).nodes({})));
    return views.every((v) =>
      members.every((m) => v.nodes.some((n) => this.hostByKey.get(this.key(n.address?.IP ?? "", n.address?.port ?? 0)) === m && n.state === state)),
    );
  }

  /** Polls until every running agent sees every running agent alive. */
  async converge(timeoutMs: number, running: readonly number[] = this.o.hosts): Promise<number> {
    const started = performance.now();
    while (!(await this.allSee(running, running, "alive"))) {
      if (performance.now() - started > timeoutMs) throw new Error(`no one view within ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 100));
    }
    return performance.now() - started;
  }

  signal(host: number, signal: NodeJS.Signals): void {
    (this.procs.get(host) as Proc).child.kill(signal);
  }

  /**
   * The time from `sinceMs` until every host of `observers` had reported `member` in one of
   * `states` (ms), or null if one has not (yet).
   */
  timeUntilAll(member: number, observers: readonly number[], states: readonly string[], sinceMs: number): number | null {
    let last = 0;
    for (const o of observers) {
      const s = this.sightings.find((x) => x.atMs >= sinceMs && x.observer === o && x.member === member && states.includes(x.state));
      if (s === undefined) return null;
      last = Math.max(last, s.atMs - sinceMs);
    }
    return last;
  }

  /** Waits (polling the recorded sightings) until timeUntilAll is known, or rejects after timeoutMs. */
  async awaitAll(member: number, observers: readonly number[], states: readonly string[], sinceMs: number, timeoutMs: number): Promise<number> {
    for (;;) {
      const t = this.timeUntilAll(member, observers, states, sinceMs);
      if (t !== null) return t;
      if (performance.now() - sinceMs > timeoutMs) throw new Error(`host ${member} not ${states.join("/")} at every observer within ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** Distinct (observer, member) pairs that reported `state` between the two times. */
  pairs(state: string, fromMs: number, toMs: number): number {
    const seen = new Set<string>();
    for (const s of this.sightings) if (s.state === state && s.atMs >= fromMs && s.atMs <= toMs) seen.add(`${s.observer}/${s.member}`);
    return seen.size;
  }

  async stop(): Promise<void> {
    for (const c of this.streams) c.abort();
    for (const c of this.clients.values()) c.close();
    for (const h of this.o.hosts) if (this.procs.get(h)?.exitStatus === null) this.signal(h, "SIGCONT");
    await this.group.killAll();
  }
}
