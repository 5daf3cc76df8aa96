/** The Stats counters of a running agent, for end-to-end tests that await or check them. */

import { TamTam } from "../../src/gen/service/tamtam_pb.js";
import { createH2Client } from "../../src/rpc/h2-client.js";

/** Every counter of the agent at `rpc` (`host:port` or `unix:PATH`), presenting `token` if given. */
export async function agentStats(rpc: string, token?: string): Promise<Record<string, number>> {
  const headers = token === undefined ? undefined : { authorization: `Bearer ${token}` };
  const client = createH2Client(TamTam, rpc, { defaultTimeoutMs: 3_000, headers });
  try {
    const out: Record<string, number> = {};
    for (const [k, v] of Object.entries((await client.stats({})).counters)) out[k] = Number(v);
    return out;
  } finally {
    client.close();
  }
}
