/**
 * The piscina worker of a sharded simulation: each task runs one shard to the end (see
 * runShard in src/sim/sharded.ts) and returns what its monitor saw.
 */

import { runShard, type ShardTask, type ShardTaskResult } from "./sharded.js";

export default function shardTask(task: ShardTask): ShardTaskResult {
  return runShard(task);
}
