/**
 * The executable of the bundled bin (dist/bin/tamtam.cjs; scripts/bundle.mjs builds it from
 * this file). It loads the bin's layers, CommonJS files next to it (cli.cjs, client.cjs,
 * agent.cjs, simulate.cjs), through V8's code cache: the first run of a layer compiles it and,
 * at exit, saves the bytecode of everything that ran; later runs start from that bytecode
 * instead of parsing and compiling again. That is most of what a CLI call costs beyond Node's
 * own start, on every Node version (Node 22's module.enableCompileCache does the same for
 * modules its own loader loads, which these are not; it is still turned on where this Node has
 * it, for the packages left outside the bundle: piscina, yaml, pino-pretty, @grpc/reflection.
 * Worker threads do not inherit it).
 *
 * The cache lives in $XDG_CACHE_HOME/tamtam (else ~/.cache/tamtam), a directory of this user's
 * with mode 0700; cached code is trusted, so a directory another user can write to is never
 * used. Files are named by layer, Node version and build, written atomically (temporary file,
 * then rename), and V8 itself rejects a cache that does not match the source or the flags. Any
 * problem with the cache only means compiling as usual. NODE_DISABLE_COMPILE_CACHE=1 turns it
 * off, as it does Node's own.
 *
 * A layer's `require("./other.cjs")` (what esbuild makes of a dynamic import of another layer)
 * goes through the same loader; every other `require` is Node's own. This file runs only as the
 * bundled executable (it uses CommonJS's __dirname); dist/src/cli/bin.js is the unbundled one.
 */

import { closeSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, statSync, unlinkSync, writeSync } from "node:fs";
import * as nodeModule from "node:module";
import { homedir } from "node:os";
import { dirname, join } from "node:path";
import { Script } from "node:vm";
import { commandWord } from "./command-word.js";
import { withDeferredStdin } from "./deferred-stdin.js";

declare const TAMTAM_BUILD_INFO: { readonly version: string; readonly buildTime: string; readonly gitHash: string };

interface LoadedLayer {
  readonly exports: unknown;
}

interface PendingCache {
  readonly script: Script;
  readonly file: string;
}

const here = __dirname;
const layers = new Map<string, LoadedLayer>();
const toSave: PendingCache[] = [];
const cacheDir = codeCacheDir();

/** This user's private cache directory, or null when there is none to use. */
function codeCacheDir(): string | null {
  if (process.env.NODE_DISABLE_COMPILE_CACHE !== undefined && process.env.NODE_DISABLE_COMPILE_CACHE !== "") return null;
  try {
    const base = process.env.XDG_CACHE_HOME !== undefined && process.env.XDG_CACHE_HOME !== "" ? process.env.XDG_CACHE_HOME : join(homedir(), ".cache");
    const dir = join(base, "tamtam");
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const stat = statSync(dir);
    const uid = process.getuid?.();
    // Owned by someone else, or writable by others: cached code from there is not trusted.
    if ((uid !== undefined && stat.uid !== uid) || (stat.mode & 0o022) !== 0) return null;
    return dir;
  } catch {
    return null;
  }
}

const BUILD = `${TAMTAM_BUILD_INFO.version}-${TAMTAM_BUILD_INFO.gitHash}-${TAMTAM_BUILD_INFO.buildTime.replace(/[^0-9]/g, "")}`;

/**
 * One cache per layer and command: a command's cache then holds exactly the code it runs (a
 * cache is written once, after the first run that had none).
 */
const word = commandWord(process.argv.slice(2));
const COMMAND = word !== undefined && /^[a-z][a-z0-9-]{0,31}$/.test(word) ? word : "other";

function cacheFileOf(layer: string): string | null {
  return cacheDir === null ? null : join(cacheDir, `${layer}-${COMMAND}-${BUILD}-node${process.version}-${process.arch}.v8cache`);
}

function readCache(file: string | null): Buffer | undefined {
  if (file === null) return undefined;
  try {
    return readFileSync(file);
  } catch {
    return undefined;
  }
}

/** Loads (once) and returns the exports of the layer file `name` (e.g. "cli.cjs") next to this file. */
function loadLayer(name: string): unknown {
  const loaded = layers.get(name);
  if (loaded !== undefined) return loaded.exports;
  const path = join(here, name);
  const source = readFileSync(path, "utf8");
  const cacheFile = cacheFileOf(name);
  const cachedData = readCache(cacheFile);
  const script = new Script(nodeModule.wrap(source), { filename: path, ...(cachedData === undefined ? {} : { cachedData }) });
  if (cacheFile !== null && (cachedData === undefined || script.cachedDataRejected === true)) toSave.push({ script, file: cacheFile });
  const module = { exports: {} as unknown };
  const nodeRequire = nodeModule.createRequire(path);
  const layerRequire = Object.assign(
    (id: string): unknown => (id.startsWith("./") && id.endsWith(".cjs") ? loadLayer(id.slice(2)) : nodeRequire(id)),
    { resolve: nodeRequire.resolve, cache: nodeRequire.cache, main: undefined },
  );
  layers.set(name, module);
  const wrapper = script.runInThisContext() as (exports: unknown, require: unknown, module: unknown, filename: string, dirname: string) => void;
  wrapper.call(module.exports, module.exports, layerRequire, module, path, dirname(path));
  return module.exports;
}

/** Saves the code of every layer that ran without a usable cache (at exit: it then holds all that ran). */
function saveCaches(): void {
  for (const { script, file } of toSave.splice(0)) {
    try {
      const temporary = `${file}.${process.pid}.tmp`;
      const fd = openSync(temporary, "wx", 0o600);
      try {
        writeSync(fd, script.createCachedData());
      } finally {
        closeSync(fd);
      }
      renameSync(temporary, file);
      // Caches of other builds or Node versions of this layer are of no further use.
      const dir = dirname(file);
      const prefix = file.slice(dir.length + 1).split("-").slice(0, 2).join("-");
      for (const other of readdirSync(dir)) {
        if (other.startsWith(`${prefix}-`) && other.endsWith(".v8cache") && join(dir, other) !== file) unlinkSync(join(dir, other));
      }
    } catch {
      // a cache that cannot be written is only a slower next start
    }
  }
}

(nodeModule as { enableCompileCache?: () => unknown }).enableCompileCache?.();
process.once("exit", saveCaches);
const cli = withDeferredStdin(() => loadLayer("cli.cjs")) as { runProgram(args: readonly string[]): Promise<void> };
void cli.runProgram(process.argv.slice(2));
