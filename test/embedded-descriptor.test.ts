/**
 * Tests of src/rpc/embedded-descriptor.ts: the service's descriptor written at build time and
 * hydrated at run time is the one protobuf-es's generated `fileDesc` builds (the same
 * FileDescriptorProto, field presence included, the same schemas and the same bytes on the
 * wire), the encoder refuses what it cannot carry, and the command line's client layer no
 * longer carries google/protobuf/descriptor.proto.
 */

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { create, equals, fromBinary, toBinary, type DescMessage } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { encodeEmbeddedFile, fileDescFromJson } from "../src/rpc/embedded-descriptor.js";
import { file_service_tamtam, NodeSchema, QueryRequestSchema, StatsReplySchema } from "../src/gen/service/tamtam_pb.js";

const hydrated = fileDescFromJson(encodeEmbeddedFile(file_service_tamtam.proto));

/** Own keys, own values and prototype defaults of two protobuf-es message trees, compared exactly. */
function assertSameTree(actual: unknown, expected: unknown, path: string): void {
  if (expected === null || typeof expected !== "object") {
    assert.equal(actual, expected, path);
    return;
  }
  if (Array.isArray(expected)) {
    assert.ok(Array.isArray(actual), `${path} is an array`);
    assert.equal(actual.length, expected.length, `${path}.length`);
    expected.forEach((item, i) => assertSameTree((actual as unknown[])[i], item, `${path}[${i}]`));
    return;
  }
  const a = actual as Record<string, unknown>;
  const e = expected as Record<string, unknown>;
  const definedKeys = (o: Record<string, unknown>): string[] => Object.keys(o).filter((k) => o[k] !== undefined).sort();
  assert.deepEqual(definedKeys(a), definedKeys(e), `${path}: own fields`);
  for (const key of definedKeys(e)) assertSameTree(a[key], e[key], `${path}.${key}`);
  const expectedDefaults = Object.getPrototypeOf(e) as Record<string, unknown>;
  const actualDefaults = Object.getPrototypeOf(a) as Record<string, unknown>;
  for (const key of Object.keys(expectedDefaults)) assert.equal(actualDefaults[key], expectedDefaults[key], `${path}: default of ${key}`);
}

test("the hydrated FileDescriptorProto is the generated one, presence and defaults included", () => {
  assert.ok(equals(FileDescriptorProtoSchema, hydrated.proto, file_service_tamtam.proto));
  assertSameTree(hydrated.proto, file_service_tamtam.proto, file_service_tamtam.proto.name);
  // Serialized (what reflection serves), the two are byte for byte the same.
  assert.deepEqual(toBinary(FileDescriptorProtoSchema, hydrated.proto), toBinary(FileDescriptorProtoSchema, file_service_tamtam.proto));
});

test("every message, field, enum and method of the hydrated file matches the generated one", () => {
  assert.deepEqual(hydrated.messages.map((m) => m.typeName), file_service_tamtam.messages.map((m) => m.typeName));
  const describeField = (message: DescMessage): unknown[] =>
    message.fields.map((f) => [f.name, f.number, f.fieldKind, f.jsonName, f.presence, f.oneof?.name, f.fieldKind === "scalar" ? f.scalar : undefined, f.fieldKind === "map" ? f.mapKey : undefined, f.fieldKind === "list" ? f.listKind : undefined, f.fieldKind === "enum" ? f.enum.typeName : undefined, f.fieldKind === "message" ? f.message.typeName : undefined]);
  const all = (messages: readonly DescMessage[]): DescMessage[] => messages.flatMap((m) => [m, ...all(m.nestedMessages)]);
  const expectedMessages = all(file_service_tamtam.messages);
  const actualMessages = all(hydrated.messages);
  assert.equal(actualMessages.length, expectedMessages.length);
  expectedMessages.forEach((m, i) => assert.deepEqual(describeField(actualMessages[i] as DescMessage), describeField(m), m.typeName));
  assert.deepEqual(
    hydrated.enums.map((e) => [e.typeName, e.values.map((v) => [v.name, v.number])]),
    file_service_tamtam.enums.map((e) => [e.typeName, e.values.map((v) => [v.name, v.number])]),
  );
  assert.deepEqual(
    hydrated.services.flatMap((s) => s.methods.map((m) => [s.typeName, m.name, m.methodKind, m.input.typeName, m.output.typeName])),
    file_service_tamtam.services.flatMap((s) => s.methods.map((m) => [s.typeName, m.name, m.methodKind, m.input.typeName, m.output.typeName])),
  );
});

test("messages encode to the same bytes with either schema, maps and repeated fields included", () => {
  const schemaOf = (schema: DescMessage): DescMessage => hydrated.messages.find((m) => m.typeName === schema.typeName) as DescMessage;
  const node = create(NodeSchema, { address: { IP: "10.0.0.1", port: 9999 }, age: 12, incarnation: 7, tags: { dc: "eu", role: "db" }, damped: true, flapPenalty: 3 });
  const query = create(QueryRequestSchema, { name: "load", payload: new Uint8Array([1, 2, 3]), tagFilters: { dc: "eu.*" }, nodes: [{ IP: "::1", port: 1 }], relay: 2 });
  const stats = create(StatsReplySchema, { counters: { ping_sent: 5n, bytes_in: 1n << 40n } });
  for (const [schema, message] of [[NodeSchema, node], [QueryRequestSchema, query], [StatsReplySchema, stats]] as const) {
    const bytes = toBinary(schema as DescMessage, message);
    assert.deepEqual(toBinary(schemaOf(schema), { ...message, $typeName: schema.typeName }), bytes, schema.typeName);
    assert.ok(equals(schema as DescMessage, fromBinary(schemaOf(schema), bytes) as typeof message, message), schema.typeName);
  }
});

test("the encoder refuses what its JSON form cannot carry, so the build fails instead of changing the schema", () => {
  const withBytes = { ...file_service_tamtam.proto, options: { $typeName: "google.protobuf.FileOptions", raw: new Uint8Array(1) } };
  assert.throws(() => encodeEmbeddedFile(withBytes as never), /cannot carry/);
  const withBigint = { ...file_service_tamtam.proto, options: { $typeName: "google.protobuf.FileOptions", big: 1n } };
  assert.throws(() => encodeEmbeddedFile(withBigint as never), /cannot carry/);
  const notAMessage = { ...file_service_tamtam.proto, options: { javaPackage: "x" } };
  assert.throws(() => encodeEmbeddedFile(notAMessage as never), /not a protobuf-es message/);
});

test("the command line's client layer does not carry descriptor.proto", () => {
  const meta = JSON.parse(readFileSync(fileURLToPath(new URL("../../dist/bin-meta/client.meta.json", import.meta.url)), "utf8")) as {
    outputs: Record<string, { inputs: Record<string, { bytesInOutput: number }> }>;
  };
  const bundled = Object.values(meta.outputs).flatMap((output) => Object.entries(output.inputs).filter(([, input]) => input.bytesInOutput > 0).map(([name]) => name));
  assert.ok(bundled.some((name) => name.endsWith("src/gen/service/tamtam_pb.ts")), "the generated service is in the client layer");
  assert.ok(bundled.some((name) => name.endsWith("src/rpc/embedded-descriptor.ts")));
  assert.deepEqual(bundled.filter((name) => /descriptor_pb|codegenv2\/(file|boot)\.js$/.test(name)), []);
});
