/**
 * bench/member-table-memory.ts: memory of full member tables. Creates K SwimNodes, starts them
 * and warm-starts each with the same M addresses (addConvergedMembers: all alive, nothing
 * queued), forces garbage collection and reports the bytes each (node, member) pair costs:
 *
 *   bytesPerPair          (heapUsed + external) growth over nodes with full tables / (K x M)
 *   memberBytesPerPair    the same, less the nodes' own cost when empty: the table alone
 *   nodeBytes             one started node with an empty table
 *
 * (`arrayBuffers`, where typed-array columns live, is part of `external` and reported apart.)
 * The addresses are created before the first measurement: interned, they are shared by every
 * node of a process and are not a per-pair cost. Also reports how long the warm start took.
 *
 *   node --expose-gc dist/bench/member-table-memory.js [--nodes 2000] [--members 2000] [--json]
 */

import { availableParallelism } from "node:os";
import { makeConfig } from "../src/core/config.js";
import { SwimNode } from "../src/core/node.js";
import type { Runtime } from "../src/core/runtime.js";
import { memberAddress, round1, benchArgs, unknownArgument } from "./lib.js";

interface Args {
  nodes: number;
  members: number;
  json: boolean;
}

function parseArgs(argv: string[]): Args {
  const a: Args = { nodes: 2000, members: 2000, json: false };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const next = (): number => Number(argv[++i]);
    if (arg === "--nodes") a.nodes = next();
    else if (arg === "--members") a.members = next();
    else if (arg === "--json") a.json = true;
    else unknownArgument(arg);
  }
  if (!Number.isInteger(a.nodes) || a.nodes < 1 || !Number.isInteger(a.members) || a.members < 1) {
    throw new Error("--nodes and --members take positive integers");
  }
  return a;
}

interface Usage {
  heapUsed: number;
  external: number;
  arrayBuffers: number;
}

function measure(gc: () => void): Usage {
  for (let i = 0; i < 3; i++) gc();
  const u = process.memoryUsage();
  return { heapUsed: u.heapUsed, external: u.external, arrayBuffers: u.arrayBuffers };
}

const bytesOf = (u: Usage): number => u.heapUsed + u.external;

const NULL_RUNTIME: Runtime = {
  send: () => undefined,
  setTimer: () => undefined,
  emit: () => undefined,
};

function main(): void {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc === undefined) throw new Error("run with node --expose-gc");
  const args = parseArgs(benchArgs(import.meta.url));
  const config = makeConfig("lan", { maxMembers: Math.max(1024, args.members + 1) });
  const addresses = Array.from({ length: args.members }, (_, i) => memberAddress(4, i));

  const start = measure(gc);
  const nodes: SwimNode[] = [];
  for (let k = 0; k < args.nodes; k++) {
    const node = new SwimNode({ self: addresses[k % args.members] ?? memberAddress(4, k), config, seed: k + 1, incarnation: 1, broadcastEpoch: 0 });
    node.start(0, NULL_RUNTIME);
    nodes.push(node);
  }
  const empty = measure(gc);
  const t0 = performance.now();
  for (const node of nodes) node.addConvergedMembers(0, addresses, 1);
  const warmStartMs = performance.now() - t0;
  const full = measure(gc);

  let pairs = 0;
  for (const node of nodes) pairs += node.memberCount;
  const result = {
    bench: "member-table-memory",
    node: process.version,
    cpus: availableParallelism(),
    nodes: args.nodes,
    members: args.members,
    pairs,
    bytesPerPair: round1((bytesOf(full) - bytesOf(start)) / pairs),
    memberBytesPerPair: round1((bytesOf(full) - bytesOf(empty)) / pairs),
    nodeBytes: Math.round((bytesOf(empty) - bytesOf(start)) / args.nodes),
    arrayBuffersPerPair: round1((full.arrayBuffers - start.arrayBuffers) / pairs),
    heapUsedPerPair: round1((full.heapUsed - start.heapUsed) / pairs),
    warmStartMs: Math.round(warmStartMs),
    warmStartNsPerPair: round1((warmStartMs * 1e6) / pairs),
  };
  if (args.json) {
    console.log(JSON.stringify(result));
    return;
  }
  console.log(`member table memory, node ${process.version}: ${args.nodes} nodes x ${args.members} members (${pairs} pairs)`);
  console.log(`  ${result.bytesPerPair} bytes per pair in all (${result.memberBytesPerPair} for the tables alone; ${result.nodeBytes} bytes per empty node)`);
  console.log(`  of which JS heap ${result.heapUsedPerPair}, array buffers ${result.arrayBuffersPerPair}`);
  console.log(`  warm start ${result.warmStartMs} ms (${result.warmStartNsPerPair} ns per pair)`);
}

main();
