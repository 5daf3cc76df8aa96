#!/usr/bin/env node
// Bundles the `tamtam` bin with esbuild into dist/bin/, one self-contained file per layer:
//
//   tamtam.js        the executable (src/cli/bin.ts): turns on the compile cache, loads cli.js
//   cli.js           the command line: clipanion, every command's options and help, settings
//   yaml.js          the YAML parser, loaded only when a config file exists
//   client.js        what commands that talk to the agent add: the gRPC client over node:http2,
//                    protobuf-es and the generated service, the node table
//   agent.js         the agent: engine, grpc-js server, pino
//   worker-entry.js  the engine's worker thread
//   simulate.js      the simulator (piscina stays in node_modules)
//   shard-worker.js  a simulation shard's worker thread
//
// A layer is loaded by a dynamic import() of its entry module; every other import is bundled
// into the layer that makes it. So each command reads two to four files instead of hundreds of
// modules (or a dozen shared chunks), and loads only what it uses. A module may sit in two
// layers only if it holds no state and defines no class that is checked with instanceof across
// them: the build fails otherwise (SHAREABLE says which may).
//
// tsc still type-checks and compiles dist/src for the tests; this only packages the same
// sources. Packages that find files next to their own code at run time stay in node_modules:
// piscina (its worker script), @grpc/reflection (its .proto files), pino-pretty (loaded with
// require(), only when a terminal reads the log), @grpc/proto-loader (grpc-js requires it only
// to serve channelz and ORCA, which TamTam does not), typanion (clipanion requires it only to
// validate option schemas, which TamTam does not use).
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { relative, resolve } from "node:path";
import { build } from "esbuild";

const root = resolve(new URL("..", import.meta.url).pathname);
const outdir = `${root}/dist/bin`;
const pkg = JSON.parse(readFileSync(`${root}/package.json`, "utf8"));
const buildInfo = JSON.parse(readFileSync(`${root}/dist/build-info.json`, "utf8"));

/** Entry module (relative to the root, or a package name) -> output file in dist/bin. */
const LAYERS = {
  "src/cli/bin.ts": "tamtam.js",
  "src/cli/main.ts": "cli.js",
  yaml: "yaml.js",
  "src/cli/agent-client.ts": "client.js",
  "src/agent/agent.ts": "agent.js",
  "src/engine/worker-entry.ts": "worker-entry.js",
  "src/sim/sharded.ts": "simulate.js",
  "src/sim/shard-worker.ts": "shard-worker.js",
};
/** What a package layer exports (its entry is written here, not a file). */
const PACKAGE_EXPORTS = { yaml: "parse" };
const EXTERNAL = ["pino-pretty", "piscina", "@grpc/reflection", "@grpc/proto-loader", "typanion"];
/**
 * Modules that may be bundled into more than one layer: stateless, no instanceof across layers
 * (generated schemas are compared by type name, never by identity).
 */
const SHAREABLE = [/^</, /^src\/gen\//, /^src\/core\//, /^src\/shm\//, /^src\/agent\/options\.ts$/, /^src\/rpc\/grpc-wire\.ts$/, /^src\/sim\/params\.ts$/, /^node_modules\//];
/** The worker threads run in their own module graphs, so what they share with others is not shared at run time. */
const OWN_GRAPH = new Set(["worker-entry.js", "shard-worker.js"]);

/** A dynamic import of another layer's entry becomes an import of that layer's file. */
function layerImports(self) {
  return {
    name: "tamtam-layers",
    setup(b) {
      b.onResolve({ filter: /.*/ }, (args) => {
        if (args.kind !== "dynamic-import") return undefined;
        const key = args.path.startsWith(".")
          ? relative(root, resolve(args.resolveDir, args.path)).replace(/\.js$/, ".ts")
          : args.path;
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

rmSync(outdir, { recursive: true, force: true });
const inputsOf = new Map();
for (const [entry, file] of Object.entries(LAYERS)) {
  const isPackage = !entry.startsWith("src/");
  const result = await build({
    absWorkingDir: root,
    ...(isPackage
      ? { stdin: { contents: `export { ${PACKAGE_EXPORTS[entry]} } from ${JSON.stringify(entry)};`, resolveDir: root, loader: "js" } }
      : { entryPoints: [entry] }),
    outfile: `${outdir}/${file}`,
    bundle: true,
    format: "esm",
    platform: "node",
    target: "node20",
    external: EXTERNAL,
    plugins: [layerImports(file)],
    // CommonJS dependencies bundled into ESM call require() for Node's own modules.
    banner: { js: 'import { createRequire as __tamtamCreateRequire } from "node:module";\nconst require = __tamtamCreateRequire(import.meta.url);' },
    define: {
      TAMTAM_BUILD_INFO: JSON.stringify({ version: pkg.version, buildTime: buildInfo.buildTime, gitHash: buildInfo.gitHash }),
    },
    legalComments: "none",
    metafile: true,
    logLevel: "warning",
  });
  inputsOf.set(file, Object.keys(result.metafile.inputs));
  writeFileSync(`${outdir}/${file.replace(/\.js$/, ".meta.json")}`, JSON.stringify(result.metafile));
}

// A stateful module in two layers that run in one module graph would be two modules at run time.
const layerOf = new Map();
const problems = [];
for (const [file, inputs] of inputsOf) {
  if (OWN_GRAPH.has(file)) continue;
  for (const input of inputs) {
    if (SHAREABLE.some((pattern) => pattern.test(input))) continue;
    const other = layerOf.get(input);
    if (other !== undefined) problems.push(`${input} is in both ${other} and ${file}`);
    else layerOf.set(input, file);
  }
}
if (problems.length > 0) {
  console.error(`scripts/bundle.mjs: modules bundled into two layers:\n  ${problems.join("\n  ")}`);
  process.exit(1);
}
