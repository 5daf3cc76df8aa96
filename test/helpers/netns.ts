/**
 * A small network lab for tests: N hosts, each in its own network namespace with its own
 * addresses (198.18.0.i/24 and fd77::i/64, benchmark and unique-local ranges) on one bridge in
 * a "switch" namespace, plus fault injection with iptables and ip6tables inside a host (random
 * loss, drops from chosen peers). No default route: nothing can leave the lab. Needs root and iproute2 +
 * iptables (`.ci/run` installs them). Every namespace carries a per-run prefix and is deleted
 * by exact name in `destroy()`.
 */

import { type ChildProcess, execFileSync, spawn, spawnSync } from "node:child_process";
import { createInterface } from "node:readline";

export interface LabHost {
  readonly index: number;
  readonly ns: string;
  readonly ipv4: string;
  readonly ipv6: string;
}

export function labAvailable(): string | null {
  if (process.getuid?.() !== 0) return "network-namespace tests need root";
  for (const tool of ["ip", "iptables", "ip6tables", "iptables-restore", "ip6tables-restore"]) {
    if (spawnSync("sh", ["-c", `command -v ${tool}`]).status !== 0) return `network-namespace tests need ${tool} (apt-get install iproute2 iptables)`;
  }
  const probe = `ttprobe${process.pid}`;
  const made = spawnSync("ip", ["netns", "add", probe]);
  spawnSync("ip", ["netns", "del", probe]);
  return made.status === 0 ? null : `cannot create network namespaces: ${made.stderr.toString().trim()}`;
}

function sh(args: readonly string[]): void {
  execFileSync(args[0] as string, args.slice(1), { stdio: ["ignore", "ignore", "pipe"] });
}

export class NetLab {
  readonly hosts: LabHost[] = [];
  private readonly switchNs: string;
  private destroyed = false;

  constructor(
    readonly prefix: string,
    count: number,
  ) {
    this.switchNs = `${prefix}-sw`;
    try {
      sh(["ip", "netns", "add", this.switchNs]);
      sh(["ip", "netns", "exec", this.switchNs, "ip", "link", "add", "br0", "type", "bridge"]);
      sh(["ip", "netns", "exec", this.switchNs, "ip", "link", "set", "br0", "up"]);
      for (let i = 1; i <= count; i++) {
        const ns = `${prefix}-n${i}`;
        const hostSide = `${prefix}h${i}`;
        sh(["ip", "netns", "add", ns]);
        this.hosts.push({ index: i, ns, ipv4: `198.18.0.${i}`, ipv6: `fd77::${i}` });
        sh(["ip", "link", "add", hostSide, "type", "veth", "peer", "name", "eth0", "netns", ns]);
        sh(["ip", "link", "set", hostSide, "netns", this.switchNs]);
        sh(["ip", "netns", "exec", this.switchNs, "ip", "link", "set", hostSide, "master", "br0", "up"]);
        sh(["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"]);
        sh(["ip", "netns", "exec", ns, "ip", "addr", "add", `198.18.0.${i}/24`, "dev", "eth0"]);
        // nodad: without it, bind() fails with EADDRNOTAVAIL for a second or two.
        sh(["ip", "netns", "exec", ns, "ip", "-6", "addr", "add", `fd77::${i}/64`, "dev", "eth0", "nodad"]);
        sh(["ip", "netns", "exec", ns, "ip", "link", "set", "eth0", "up"]);
      }
    } catch (err) {
      this.destroy();
      throw err;
    }
  }

  host(i: number): LabHost {
    const h = this.hosts[i - 1];
    if (h === undefined) throw new RangeError(`no lab host ${i}`);
    return h;
  }

  /** Drops a random share (0..1) of the UDP datagrams arriving at host i (IPv4 and IPv6). */
  addLoss(i: number, probability: number): void {
    for (const tool of ["iptables", "ip6tables"]) {
      sh(["ip", "netns", "exec", this.host(i).ns, tool, "-A", "INPUT", "-p", "udp", "-m", "statistic", "--mode", "random", "--probability", String(probability), "-j", "DROP"]);
    }
  }

  /** Host i drops everything from host j (one direction; IPv4 and IPv6). */
  dropFrom(i: number, j: number): void {
    sh(["ip", "netns", "exec", this.host(i).ns, "iptables", "-A", "INPUT", "-s", this.host(j).ipv4, "-j", "DROP"]);
    sh(["ip", "netns", "exec", this.host(i).ns, "ip6tables", "-A", "INPUT", "-s", this.host(j).ipv6, "-j", "DROP"]);
  }

  /**
   * Splits the hosts into two sides that cannot hear each other (IPv4 and IPv6): one
   * iptables-restore per host and family, so the cut is in place within a few commands.
   */
  partition(sideA: readonly number[], sideB: readonly number[]): void {
    const cut = (host: number, others: readonly number[]): void => {
      for (const [tool, ip] of [
        ["iptables-restore", (h: LabHost): string => h.ipv4],
        ["ip6tables-restore", (h: LabHost): string => h.ipv6],
      ] as const) {
        const rules = others.map((o) => `-A INPUT -s ${ip(this.host(o))} -j DROP`).join("\n");
        execFileSync("ip", ["netns", "exec", this.host(host).ns, tool, "--noflush"], { input: `*filter\n${rules}\nCOMMIT\n`, stdio: ["pipe", "ignore", "pipe"] });
      }
    };
    for (const a of sideA) cut(a, sideB);
    for (const b of sideB) cut(b, sideA);
  }

  /** Removes every fault from every host. */
  heal(): void {
    for (const h of this.hosts) for (const tool of ["iptables", "ip6tables"]) sh(["ip", "netns", "exec", h.ns, tool, "-F", "INPUT"]);
  }

  /** The command line that runs `argv` inside host i's namespace. */
  exec(i: number, argv: readonly string[]): string[] {
    return ["ip", "netns", "exec", this.host(i).ns, ...argv];
  }

  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    for (const h of this.hosts) spawnSync("ip", ["netns", "del", h.ns]);
    spawnSync("ip", ["netns", "del", this.switchNs]);
  }
}

/**
 * Starts `argv` (an agent) inside host i of `lab` and resolves once it logs "Listening for
 * gossip"; rejects when it exits first or takes longer than 15 s. The caller kills it.
 */
export function startInHost(lab: NetLab, i: number, argv: readonly string[], env: NodeJS.ProcessEnv): Promise<ChildProcess> {
  const [cmd, ...rest] = lab.exec(i, argv);
  const child = spawn(cmd as string, rest, { env, stdio: ["ignore", "ignore", "pipe"] });
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: child.stderr as NodeJS.ReadableStream });
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`agent ${i} did not start in time`));
    }, 15_000);
    lines.on("line", (line) => {
      if (line.includes("Listening for gossip")) {
        clearTimeout(timer);
        resolve(child);
      }
    });
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`agent ${i} exited with ${code} before listening`));
    });
  });
}

/** Runs `argv` to completion inside host i (SIGKILL after `timeoutMs`): exit code and output. */
export function runInHost(
  lab: NetLab,
  i: number,
  argv: readonly string[],
  env: NodeJS.ProcessEnv,
  timeoutMs: number,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const [cmd, ...rest] = lab.exec(i, argv);
  return new Promise((resolve) => {
    const child = spawn(cmd as string, rest, { env, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}
