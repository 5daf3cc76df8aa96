/**
 * The service's file descriptor in a form that is cheap to load.
 *
 * The generated code (src/gen) carries each .proto file as a base64 FileDescriptorProto and
 * hydrates it with protobuf-es's `fileDesc`, which first boots google/protobuf/descriptor.proto
 * (thirty-odd messages) only to decode those bytes. That is about half of what the command
 * line spends on protobuf-es before its first call. The bundler (scripts/bundle.mjs) therefore
 * replaces each `fileDesc("<base64>", deps)` in the bundles with `fileDescFromJson("<json>",
 * deps)`: the same FileDescriptorProto, decoded at build time by protobuf-es itself and written
 * by `encodeEmbeddedFile` below, object by object, keeping protobuf-es's own shape (a message's
 * set fields as its own properties, the defaults of its type on its prototype, which is how
 * proto2 presence is told). `fileDescFromJson` rebuilds that tree and hands it to protobuf-es's
 * registry, exactly as `fileDesc` does after decoding; test/embedded-descriptor.test.ts holds
 * the two results equal.
 *
 * Encoded form (JSON): [typeNames, defaultsPerType, root], where every message object of the
 * tree carries `"$": index into typeNames` instead of its `$typeName`.
 */

import { createFileRegistry, type DescFile } from "@bufbuild/protobuf";
import type { FileDescriptorProto } from "@bufbuild/protobuf/wkt";

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type Encoded = [typeNames: string[], defaults: Record<string, Json>[], root: Json];

/** The key that names an object's message type in the encoded form. */
const TYPE_KEY = "$";

/**
 * Writes a FileDescriptorProto (as protobuf-es decoded it: `fileDesc(b64).proto`) in the
 * encoded form. Throws on anything the form cannot carry (64-bit integers, bytes, a prototype
 * chain deeper than protobuf-es's one level of defaults), so that the build fails instead of
 * changing the schema.
 */
export function encodeEmbeddedFile(proto: FileDescriptorProto): string {
  const typeNames: string[] = [];
  const defaults: Record<string, Json>[] = [];
  const indexOf = new Map<string, number>();
  const encode = (value: unknown, path: string): Json => {
    if (value === null || typeof value === "boolean" || typeof value === "string") return value;
    if (typeof value === "number") {
      if (!Number.isFinite(value)) throw new Error(`embedded descriptor: ${path} is ${value}`);
      return value;
    }
    if (Array.isArray(value)) return value.map((item, i) => encode(item, `${path}[${i}]`));
    if (typeof value !== "object" || value instanceof Uint8Array) {
      throw new Error(`embedded descriptor: ${path} holds a ${typeof value} the JSON form cannot carry`);
    }
    const record = value as Record<string, unknown>;
    const typeName = record.$typeName;
    if (typeof typeName !== "string" || !Object.hasOwn(record, "$typeName")) {
      throw new Error(`embedded descriptor: ${path} is not a protobuf-es message`);
    }
    let index = indexOf.get(typeName);
    if (index === undefined) {
      const prototype = Object.getPrototypeOf(record) as object;
      if (prototype !== Object.prototype && Object.getPrototypeOf(prototype) !== Object.prototype) {
        throw new Error(`embedded descriptor: ${typeName} has a deeper prototype chain than protobuf-es builds`);
      }
      index = typeNames.length;
      indexOf.set(typeName, index);
      typeNames.push(typeName);
      defaults.push(prototype === Object.prototype ? {} : (encode({ ...prototype, $typeName: typeName }, `${typeName} defaults`) as Record<string, Json>));
    }
    const out: Record<string, Json> = { [TYPE_KEY]: index };
    for (const key of Object.keys(record)) {
      if (key === "$typeName") continue;
      if (key === TYPE_KEY) throw new Error(`embedded descriptor: ${path} has a field named "${TYPE_KEY}"`);
      const field = record[key];
      // An own property holding undefined reads as unset, exactly like an absent one.
      if (field !== undefined) out[key] = encode(field, `${path}.${key}`);
    }
    return out;
  };
  const root = encode(proto, proto.name);
  // The defaults were encoded as messages of their own type; keep only their fields.
  for (const entry of defaults) delete entry[TYPE_KEY];
  const encoded: Encoded = [typeNames, defaults, root];
  return JSON.stringify(encoded);
}

/** Rebuilds the tree `encodeEmbeddedFile` wrote, with one shared prototype of defaults per message type. */
function decodeEmbeddedFile(json: string): FileDescriptorProto {
  const [typeNames, defaults, root] = JSON.parse(json) as Encoded;
  const decode = (value: Json): unknown => {
    if (value === null || typeof value !== "object") return value;
    if (Array.isArray(value)) return value.map(decode);
    const index = value[TYPE_KEY] as number;
    const message = Object.create(defaults[index] as object) as Record<string, unknown>;
    message.$typeName = typeNames[index];
    for (const key of Object.keys(value)) {
      if (key !== TYPE_KEY) message[key] = decode(value[key] as Json);
    }
    return message;
  };
  return decode(root) as FileDescriptorProto;
}

/**
 * What the generated `fileDesc(b64, imports)` returns, from the encoded form: the file's
 * descriptor, with its imports resolved from the already hydrated `imports`.
 */
export function fileDescFromJson(json: string, imports?: readonly DescFile[]): DescFile {
  const proto = decodeEmbeddedFile(json);
  proto.dependency = imports?.map((file) => file.proto.name) ?? [];
  const registry = createFileRegistry(proto, (protoFileName) => imports?.find((file) => file.proto.name === protoFileName));
  const file = registry.getFile(proto.name);
  if (file === undefined) throw new Error(`embedded descriptor: ${proto.name} is missing from its own registry`);
  return file;
}
