/**
 * gRPC server reflection (grpc.reflection.v1 and v1alpha, via @grpc/reflection) for services
 * described by protobuf-es v2 generated code. This module owns the bridge between the two:
 * @grpc/reflection expects an @grpc/proto-loader `PackageDefinition`, of which it reads only the
 * `fileDescriptorProtos` (serialized google.protobuf.FileDescriptorProto) of each entry; we build
 * that object from the FileDescriptorProtos protobuf-es embeds in the generated `file_*`
 * descriptors, so no .proto file of ours has to be shipped or parsed at run time.
 *
 * @grpc/reflection loads protobufjs and parses its own .proto files, which costs an agent tens
 * of milliseconds at start and megabytes for as long as it runs, for a service only tools such
 * as `buf curl` call. So the agent registers the two reflection methods with pass-through
 * (bytes) serializers and loads the real implementation on the first reflection call, then
 * hands it that call with the implementation's own (de)serializers.
 */

import { EventEmitter } from "node:events";
import type * as grpc from "@grpc/grpc-js";
import { toBinary, type DescFile } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import type { ReflectionService } from "@grpc/reflection";
import { GrpcStatus } from "./grpc-wire.js";

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

/** The paths of the reflection methods, one per reflection protocol version. */
const REFLECTION_METHODS = [
  "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
  "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
] as const;

/** What @grpc/reflection registers for one method: its definition and its bidi handler. */
interface LoadedMethod {
  readonly definition: grpc.MethodDefinition<unknown, unknown>;
  readonly handler: (call: EventEmitter & { write(message: unknown): boolean; end(): void }) => void;
}

/** Runs @grpc/reflection's registration against a recorder and returns its methods by path. */
async function loadReflection(files: readonly DescFile[], services: readonly string[] | undefined): Promise<Map<string, LoadedMethod>> {
  const { ReflectionService: Service } = await import("@grpc/reflection");
  const reflection: ReflectionService = new Service(
    reflectionPackageDefinition(files),
    services === undefined ? undefined : { services: [...services] },
  );
  const methods = new Map<string, LoadedMethod>();
  reflection.addToServer({
    addService(definition: grpc.ServiceDefinition, implementation: grpc.UntypedServiceImplementation) {
      for (const [name, method] of Object.entries(definition)) {
        methods.set(method.path, { definition: method, handler: implementation[name] as LoadedMethod["handler"] });
      }
    },
  } as unknown as grpc.Server);
  return methods;
}

const passThrough = (bytes: Buffer): Buffer => bytes;

/**
 * Registers the reflection service on `server`, describing the services declared in `files`
 * (all of them, or only those named in `services`, e.g. `["service.TamTam"]`). The reflection
 * service itself is not listed, as with grpc-go's default. @grpc/reflection is loaded on the
 * first reflection call (see the header).
 */
export function addReflection(
  server: Pick<grpc.Server, "addService">,
  files: readonly DescFile[],
  services?: readonly string[],
): void {
  let loaded: Promise<Map<string, LoadedMethod>> | null = null;
  for (const path of REFLECTION_METHODS) {
    const definition: grpc.MethodDefinition<Buffer, Buffer> = {
      path,
      requestStream: true,
      responseStream: true,
      requestSerialize: passThrough,
      requestDeserialize: passThrough,
      responseSerialize: passThrough,
      responseDeserialize: passThrough,
    };
    const handler = (call: grpc.ServerDuplexStream<Buffer, Buffer>): void => {
      loaded ??= loadReflection(files, services);
      loaded.then(
        (methods) => {
          const method = methods.get(path);
          if (method === undefined) throw new Error(`@grpc/reflection serves no ${path}`);
          // The implementation reads decoded requests and writes response objects: translate.
          const decoded = Object.assign(new EventEmitter(), {
            write: (message: unknown) => call.write(method.definition.responseSerialize(message)),
            end: () => call.end(),
          });
          call.on("data", (bytes: Buffer) => decoded.emit("data", method.definition.requestDeserialize(bytes)));
          call.on("end", () => decoded.emit("end"));
          call.on("error", () => decoded.emit("end"));
          method.handler(decoded);
        },
        (error: Error) => call.destroy(Object.assign(error, { code: GrpcStatus.INTERNAL, details: `reflection is unavailable: ${error.message}` })),
      );
    };
    server.addService({ ServerReflectionInfo: definition }, { ServerReflectionInfo: handler });
  }
}
