/** Awaiting a gRPC call that must fail, for tests of the HTTP/2 client and the agent's server. */

import assert from "node:assert/strict";
import { GrpcCallError } from "../../src/rpc/h2-client.js";

/** The GrpcCallError `promise` rejects with; fails the test if it resolves or rejects otherwise. */
export async function rejection(promise: Promise<unknown>): Promise<GrpcCallError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof GrpcCallError, `a GrpcCallError, got ${String(error)}`);
    return error;
  }
  assert.fail("the call should have failed");
}
