#!/usr/bin/env node
// Bundles the `tamtam` bin with esbuild into dist/bin/, one self-contained file per layer:
//
//   tamtam.cjs       the executable (src/cli/layer-loader.ts): loads the other layers through
//                    V8's code cache (see that file)
//   cli.cjs          the command line: clipanion, every command's options and help, settings
//   client.cjs       what commands that talk to the agent add: the gRPC client over node:http2,
//                    protobuf-es and the generated service, the node table
//   agent.cjs        the agent: engine, RPC listener, pino
//   agent-grpc.cjs   the agent's gRPC server (grpc-js, the service, protobuf-es), loaded by the
//                    agent when the first RPC client connects
//   simulate.cjs     the simulator (piscina stays in node_modules)
//   worker-entry.js  the engine's protocol worker thread (ES module, started by file name)
//   opener-entry.js  a seal/open worker thread of the engine (ES module, started by file name)
//   shard-worker.js  a simulation shard's worker thread (ES module, started by file name)
//
// A layer is loaded by a dynamic import() of its entry module; every other import is bundled
// into the layer that makes it. So each command reads two or three files instead of hundreds of
// modules, and loads only what it uses. The CommonJS layers turn a dynamic import of another
// layer into require("./layer.cjs"), which the executable serves from its code cache. A module
// may sit in two layers only if it holds no state and defines no class that is checked with
// instanceof across them: the build fails otherwise (SHAREABLE says which may).
//
// The library entries of the package (`import ... from "tamtam"` and "tamtam/client") are
// bundled too, as ES modules in dist/lib/ with esbuild's code splitting: index.js (startAgent,
// simulate), client.js (the gRPC client) and the worker threads' files, which the agent and the
// simulator start by file name next to their own code; what two entries share is a chunk, and
// the agent and the simulator load with their first use. Their types come from tsc
// (tsconfig.types.json, dist/types/).
//
// tsc still type-checks and compiles dist/src for the tests; this only packages the same
// sources. Packages that find files next to their own code at run time, or that only a few
// calls need, stay in node_modules: yaml (loaded only when a config file exists), piscina
// (its worker script), @grpc/reflection (its .proto files; loaded on the first reflection
// call), pino-pretty (loaded only when a terminal reads the log), @grpc/proto-loader (grpc-js
// requires it only to serve channelz and ORCA, which TamTam does not), typanion (clipanion
// requires it only to validate option schemas, which TamTam does not use).
import { chmodSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { relative, resolve } from "node:path";
import { fileDesc } from "@bufbuild/protobuf/codegenv2";
import { build } from "esbuild";

const root = resolve(new URL("..", import.meta.url).pathname);
const outdir = `${root}/dist/bin`;
const libdir = `${root}/dist/lib`;
const metadir = `${root}/dist/bin-meta`;
const pkg = JSON.parse(readFileSync(`${root}/package.json`, "utf8"));
const buildInfo = JSON.parse(readFileSync(`${root}/dist/build-info.json`, "utf8"));

/** Entry module (relative to the root) -> output file in dist/bin. */
const LAYERS = {
  "src/cli/layer-loader.ts": "tamtam.cjs",
  "src/cli/main.ts": "cli.cjs",
  "src/cli/agent-client.ts": "client.cjs",
  "src/agent/agent.ts": "agent.cjs",
  "src/agent/grpc-server.ts": "agent-grpc.cjs",
  "src/engine/worker-entry.ts": "worker-entry.js",
  "src/engine/opener-entry.ts": "opener-entry.js",
  "src/sim/sharded.ts": "simulate.cjs",
  "src/sim/shard-worker.ts": "shard-worker.js",
};
const EXTERNAL = ["yaml", "pino-pretty", "piscina", "@grpc/reflection", "@grpc/proto-loader", "typanion", "prom-client"];
/**
 * Modules that may be bundled into more than one layer: stateless, no instanceof across layers
 * (generated schemas are compared by type name, never by identity).
 */
const SHAREABLE = [/^</, /^src\/gen\//, /^src\/core\//, /^src\/shm\//, /^src\/agent\/event-filter\.ts$/, /^src\/engine\/limits\.ts$/, /^src\/rpc\/grpc-wire\.ts$/, /^src\/rpc\/embedded-descriptor\.ts$/, /^src\/api\/(agent-api|errors|tags)\.ts$/, /^src\/seal\/checks\.ts$/, /^src\/sim\/params\.ts$/, /^src\/agent\/query-codec\.ts$/, /(^|\/)node_modules\//];
/** The worker threads run in their own module graphs, so what they share with others is not shared at run time. */
const OWN_GRAPH = new Set(["worker-entry.js", "opener-entry.js", "shard-worker.js"]);
/** The executable only loads the others; it shares no module with them. */
const EXECUTABLE = "tamtam.cjs";

/** Entry module (relative to the root) -> output file in dist/lib: the package's library entries and the worker threads they start. */
const LIBRARY = {
  "src/lib/index.ts": "index",
  "src/lib/client.ts": "client",
  "src/engine/worker-entry.ts": "worker-entry",
  "src/engine/opener-entry.ts": "opener-entry",
  "src/sim/shard-worker.ts": "shard-worker",
};
/** ES modules bundled from CommonJS dependencies call require() for Node's own modules. */
const ESM_REQUIRE_BANNER = 'import { createRequire as __tamtamCreateRequire } from "node:module";\nconst require = __tamtamCreateRequire(import.meta.url);';

/** A dynamic import of another layer's entry becomes an import of that layer's file. */
function layerImports(self) {
  return {
    name: "tamtam-layers",
    setup(b) {
      b.onResolve({ filter: /.*/ }, (args) => {
        if (args.kind !== "dynamic-import" || EXTERNAL.includes(args.path)) return undefined;
        const key = relative(root, resolve(args.resolveDir, args.path)).replace(/\.js$/, ".ts");
        const file = LAYERS[key];
        if (file === undefined) {
          return { errors: [{ text: `dynamic import of "${args.path}" is no layer entry: add it to LAYERS in scripts/bundle.mjs` }] };
        }
        if (file === self) return undefined;
        return { path: `./${file}`, external: true };
      });
    },
  };
}

/**
 * The generated code's `fileDesc("<base64>", deps)` becomes `fileDescFromJson("<json>", deps)`:
 * the FileDescriptorProto decoded here, at build time, by protobuf-es, so that no process boots
 * descriptor.proto to decode it at start (src/rpc/embedded-descriptor.ts says why and how).
 */
function embeddedDescriptors() {
  const runtime = `${root}/src/rpc/embedded-descriptor.ts`;
  return {
    name: "tamtam-embedded-descriptors",
    async setup(b) {
      const { encodeEmbeddedFile } = await import(`${root}/dist/src/rpc/embedded-descriptor.js`);
      b.onLoad({ filter: /[\\/]src[\\/]gen[\\/].*_pb\.ts$/ }, (args) => {
        let calls = 0;
        const contents = readFileSync(args.path, "utf8").replace(/\bfileDesc\("([A-Za-z0-9+/=]*)"/g, (_, base64) => {
          calls++;
          return `__tamtamFileDescFromJson(${JSON.stringify(encodeEmbeddedFile(fileDesc(base64).proto))}`;
        });
        if (calls !== 1) return { errors: [{ text: `expected one fileDesc("<base64>", ...) in ${args.path}, found ${calls}` }] };
        return { contents: `import { fileDescFromJson as __tamtamFileDescFromJson } from ${JSON.stringify(runtime)};\n${contents}`, loader: "ts" };
      });
    },
  };
}

rmSync(outdir, { recursive: true, force: true });
rmSync(libdir, { recursive: true, force: true });
rmSync(metadir, { recursive: true, force: true });
mkdirSync(metadir, { recursive: true });
const inputsOf = new Map();
for (const [entry, file] of Object.entries(LAYERS)) {
  const commonJs = file.endsWith(".cjs");
  const result = await build({
    absWorkingDir: root,
    entryPoints: [entry],
    outfile: `${outdir}/${file}`,
    bundle: true,
    format: commonJs ? "cjs" : "esm",
    platform: "node",
    target: "node20",
    external: EXTERNAL,
    plugins: [layerImports(file), embeddedDescriptors()],
    // CommonJS layers: import() becomes require(), which the executable's loader serves.
    ...(commonJs ? { supported: { "dynamic-import": false } } : {}),
    banner: {
      js: [
        file === EXECUTABLE ? "#!/usr/bin/env node" : "",
        commonJs
          ? 'var __tamtamImportMetaUrl = require("node:url").pathToFileURL(__filename).href;'
          : ESM_REQUIRE_BANNER,
      ].filter((line) => line !== "").join("\n"),
    },
    define: {
      TAMTAM_BUILD_INFO: JSON.stringify({ version: pkg.version, buildTime: buildInfo.buildTime, gitHash: buildInfo.gitHash }),
      ...(commonJs ? { "import.meta.url": "__tamtamImportMetaUrl" } : {}),
    },
    // Smaller source is less to read, parse and keep in memory, in every process, for as long
    // as an agent runs; the source maps (for `node --enable-source-maps`) name the real lines.
    minify: true,
    sourcemap: "linked",
    legalComments: "none",
    metafile: true,
    logLevel: "warning",
  });
  inputsOf.set(file, Object.keys(result.metafile.inputs));
  // What went into each layer, for esbuild's analyzer (outside dist/bin, which is shipped).
  writeFileSync(`${metadir}/${file.replace(/\.c?js$/, ".meta.json")}`, JSON.stringify(result.metafile));
}

// A stateful module in two layers that run in one module graph would be two modules at run time.
const layerOf = new Map();
const problems = [];
for (const [file, inputs] of inputsOf) {
  if (OWN_GRAPH.has(file) || file === EXECUTABLE) continue;
  for (const input of inputs) {
    if (SHAREABLE.some((pattern) => pattern.test(input))) continue;
    const other = layerOf.get(input);
    if (other !== undefined) problems.push(`${input} is in both ${other} and ${file}`);
    else layerOf.set(input, file);
  }
}
// The library: one build with code splitting (ES modules only), no layers.
const library = await build({
  absWorkingDir: root,
  entryPoints: Object.entries(LIBRARY).map(([entry, out]) => ({ in: entry, out })),
  outdir: libdir,
  bundle: true,
  splitting: true,
  format: "esm",
  platform: "node",
  target: "node20",
  external: EXTERNAL,
  banner: { js: ESM_REQUIRE_BANNER },
  plugins: [embeddedDescriptors()],
  define: { TAMTAM_BUILD_INFO: JSON.stringify({ version: pkg.version, buildTime: buildInfo.buildTime, gitHash: buildInfo.gitHash }) },
  chunkNames: "chunk-[hash]",
  minify: true,
  legalComments: "none",
  metafile: true,
  logLevel: "warning",
});
writeFileSync(`${metadir}/lib.meta.json`, JSON.stringify(library.metafile));

chmodSync(`${outdir}/${EXECUTABLE}`, 0o755);
if (problems.length > 0) {
  console.error(`scripts/bundle.mjs: modules bundled into two layers:\n  ${problems.join("\n  ")}`);
  process.exit(1);
}
