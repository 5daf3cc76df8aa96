/**
 * gRPC server reflection (grpc.reflection.v1 and v1alpha, via @grpc/reflection) for services
 * described by protobuf-es v2 generated code. This module owns the bridge between the two:
 * @grpc/reflection expects an @grpc/proto-loader `PackageDefinition`, of which it reads only the
 * `fileDescriptorProtos` (serialized google.protobuf.FileDescriptorProto) of each entry; we build
 * that object from the FileDescriptorProtos protobuf-es embeds in the generated `file_*`
 * descriptors, so no .proto file has to be shipped or parsed at run time.
 */

import type * as grpc from "@grpc/grpc-js";
import { toBinary, type DescFile } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { ReflectionService } from "@grpc/reflection";

/** The package-definition type @grpc/reflection's constructor takes (proto-loader's shape). */
export type ReflectionPackageDefinition = ConstructorParameters<typeof ReflectionService>[0];

/** `files` and everything they import, each once, imports before importers. */
function withDependencies(files: readonly DescFile[]): DescFile[] {
  const seen = new Set<string>();
  const ordered: DescFile[] = [];
  const visit = (file: DescFile): void => {
    if (seen.has(file.name)) return;
    seen.add(file.name);
    for (const dep of file.dependencies) visit(dep);
    ordered.push(file);
  };
  for (const file of files) visit(file);
  return ordered;
}

/**
 * A minimal proto-loader-shaped package definition for `files` (e.g. `[file_service_tamtam]`):
 * one entry per top-level message and enum, keyed by full name as proto-loader does, each
 * carrying the serialized descriptors of its file and of the file's transitive imports (the
 * services are found inside those descriptors).
 */
export function reflectionPackageDefinition(files: readonly DescFile[]): ReflectionPackageDefinition {
  const encoded = new Map<string, Buffer>();
  for (const file of withDependencies(files)) {
    const bytes = toBinary(FileDescriptorProtoSchema, file.proto);
    encoded.set(file.name, Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
  }
  const definition: ReflectionPackageDefinition = {};
  for (const file of files) {
    const fileDescriptorProtos = withDependencies([file]).map((f) => encoded.get(f.name) as Buffer);
    for (const message of file.messages) {
      definition[message.typeName] = {
        format: "Protocol Buffer 3 DescriptorProto",
        type: message.proto,
        fileDescriptorProtos,
      };
    }
    for (const enumeration of file.enums) {
      definition[enumeration.typeName] = {
        format: "Protocol Buffer 3 EnumDescriptorProto",
        type: enumeration.proto,
        fileDescriptorProtos,
      };
    }
    if (file.messages.length === 0 && file.enums.length === 0) {
      // A file declaring only services (its messages all imported) still has to reach the
      // reflection index; @grpc/reflection reads nothing but `fileDescriptorProtos`.
      definition[`${file.name}.proto`] = {
        format: "Protocol Buffer 3 DescriptorProto",
        type: file.proto,
        fileDescriptorProtos,
      };
    }
  }
  return definition;
}

/**
 * Registers the reflection service on `server`, describing the services declared in `files`
 * (all of them, or only those named in `services`, e.g. `["service.TamTam"]`). The reflection
 * service itself is not listed, as with grpc-go's default.
 */
export function addReflection(
  server: Pick<grpc.Server, "addService">,
  files: readonly DescFile[],
  services?: readonly string[],
): ReflectionService {
  const reflection = new ReflectionService(
    reflectionPackageDefinition(files),
    services === undefined ? undefined : { services: [...services] },
  );
  reflection.addToServer(server);
  return reflection;
}
