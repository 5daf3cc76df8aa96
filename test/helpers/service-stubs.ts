/**
 * Test servers of the TamTam service: every RPC answers harmlessly (an OK response, an empty
 * reply, a stream that ends at once, a client stream read to its end), and a test overrides
 * only the RPCs it is about. A new RPC needs no change to the tests that do not use it.
 */

import { Response_Code, type TamTam } from "../../src/gen/service/tamtam_pb.js";
import type { ServiceImplementation } from "../../src/rpc/adapter.js";

type TamTamImplementation = ServiceImplementation<typeof TamTam.method>;

const OK = { code: Response_Code.OK };

/** Every RPC stubbed, with `overrides` in place of the stubs they name. */
export function stubService(overrides: Partial<TamTamImplementation>): TamTamImplementation {
  const stubs: TamTamImplementation = {
    join: () => OK,
    leave: () => OK,
    broadcast: () => OK,
    async *stream() {},
    async *monitor() {},
    nodes: () => ({ nodes: [] }),
    healthy: () => ({ nodes: [] }),
    setHeartbeat: () => OK,
    setLogThreshold: () => OK,
    ping: () => OK,
    localAddress: () => ({ IP: "10.0.0.1", port: 9999 }),
    leaveCluster: () => OK,
    stats: () => ({ counters: {} }),
    listKeys: () => ({}),
    installKey: () => ({}),
    useKey: () => ({}),
    removeKey: () => ({}),
    setTags: () => ({}),
    deleteTags: () => ({}),
    async *query() {},
    async *serveQueries() {},
    respondQuery: () => OK,
    broadcastStream: async (requests) => {
      for await (const _ of requests);
      return {};
    },
  };
  return { ...stubs, ...overrides };
}
