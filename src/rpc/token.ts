/**
 * The agent's token check (`tamtam agent --rpc-token TOKEN`): a grpc-js server interceptor that
 * lets a call reach its handler only when its request metadata carries `authorization: Bearer
 * TOKEN`, and answers every other call with UNAUTHENTICATED ("missing or wrong token"). Given
 * to the server at construction, it guards every method in one place: the TamTam service, the
 * reflection service, and anything registered later. The check runs before the handler starts,
 * so a refused reflection call does not even load the reflection implementation.
 *
 * The token is compared as SHA-256 digests with crypto.timingSafeEqual, so the time taken says
 * nothing about how much of a guess was right; it never appears in a status, a log or an error.
 */

import { createHash, timingSafeEqual } from "node:crypto";
import * as grpc from "@grpc/grpc-js";
import { passesResponsesThrough } from "./adapter.js";
import { AUTHORIZATION_HEADER, BEARER_PREFIX } from "./grpc-wire.js";

/** The details of the UNAUTHENTICATED answer. */
export const UNAUTHENTICATED_DETAILS = "missing or wrong token";

function digest(text: string): Buffer {
  return createHash("sha256").update(text, "utf8").digest();
}

/** True when `metadata` presents exactly one `authorization: Bearer <token>` whose token is `expected`. */
function presents(metadata: grpc.Metadata, expected: Buffer): boolean {
  const values = metadata.get(AUTHORIZATION_HEADER);
  if (values.length !== 1) return false;
  const value = values[0];
  if (typeof value !== "string") return false;
  // The scheme name is case-insensitive (RFC 9110 §11.1).
  if (value.slice(0, BEARER_PREFIX.length).toLowerCase() !== BEARER_PREFIX.toLowerCase()) return false;
  return timingSafeEqual(digest(value.slice(BEARER_PREFIX.length)), expected);
}

/** A server interceptor that requires `token` on every call (see the header). */
export function requireToken(token: string): grpc.ServerInterceptor {
  if (token === "") throw new Error("the RPC token must not be empty");
  const expected = digest(token);
  // Registered as passing responses through: a stream's batched writes may go past it (adapter.ts).
  return (_method, call) =>
    passesResponsesThrough(new grpc.ServerInterceptingCall(call, {
      start: (next) => {
        next({
          onReceiveMetadata: (metadata, pass) => {
            if (presents(metadata, expected)) pass(metadata);
            else call.sendStatus({ code: grpc.status.UNAUTHENTICATED, details: UNAUTHENTICATED_DETAILS, metadata: new grpc.Metadata() });
          },
        });
      },
    }));
}
