/**
 * Purity of the core: every .ts file under src/core is scanned (outside comments) for names that
 * reach for a clock, timers, randomness, the process, Node modules or shared memory; and
 * src/core/tsconfig.json must type-check it with no ambient types at all. And the folders of src
 * depend on each other without a cycle (src/agent on src/rpc and src/api, never the way back).
 */

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, readdirSync, statSync } from "node:fs";
import { join, relative, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";

/** The repository's src/core, from dist/test/tidy.test.js (or test/tidy.test.ts). */
const CORE_DIR = fileURLToPath(new URL("../../src/core/", import.meta.url));
const SRC_DIR = fileURLToPath(new URL("../../src/", import.meta.url));

const FORBIDDEN: readonly [name: string, pattern: RegExp][] = [
  ["Date.now", /\bDate\s*\.\s*now\b/],
  ["new Date", /\bnew\s+Date\b/],
  ["Math.random", /\bMath\s*\.\s*random\b/],
  ["setTimeout", /\bsetTimeout\b/],
  ["setInterval", /\bsetInterval\b/],
  ["setImmediate", /\bsetImmediate\b/],
  ["performance.now", /\bperformance\s*\.\s*now\b/],
  ["process.", /(?<![.\w$])process\s*\./],
  ['from "node:', /\bfrom\s*["']node:/],
  ['import("node:', /\bimport\s*\(\s*["']node:/],
  ["require(", /(?<![.\w$])require\s*\(/],
  ["globalThis", /\bglobalThis\b/],
  ["console.", /(?<![.\w$])console\s*\./],
  ["SharedArrayBuffer", /\bSharedArrayBuffer\b/],
  ["Atomics", /\bAtomics\b/],
];

/**
 * Replaces comments with spaces (keeping line breaks, so line numbers stay right) and leaves
 * code, strings, template literals and regular-expression literals alone.
 */
function stripComments(src: string): string {
  const out: string[] = [];
  let i = 0;
  const n = src.length;
  // Nesting of template literals: each entry counts open braces inside a `${ ... }`.
  const templates: number[] = [];
  let lastSignificant = "";
  const blank = (s: string): string => s.replace(/[^\n]/g, " ");
  const regexCanFollow = (): boolean =>
    lastSignificant === "" || /[(,=:[!&|?{};+\-*%<>~^]$/.test(lastSignificant) || /\b(return|typeof|case|do|else|in|of|void|yield|await)$/.test(lastSignificant);

  while (i < n) {
    const c = src[i] as string;
    const next = src[i + 1];
    if (c === "/" && next === "/") {
      let j = src.indexOf("\n", i);
      if (j < 0) j = n;
      out.push(blank(src.slice(i, j)));
      i = j;
      continue;
    }
    if (c === "/" && next === "*") {
      let j = src.indexOf("*/", i + 2);
      j = j < 0 ? n : j + 2;
      out.push(blank(src.slice(i, j)));
      i = j;
      continue;
    }
    if (c === '"' || c === "'") {
      let j = i + 1;
      while (j < n && src[j] !== c && src[j] !== "\n") j += src[j] === "\\" ? 2 : 1;
      out.push(src.slice(i, j + 1));
      i = j + 1;
      lastSignificant = "x";
      continue;
    }
    if (c === "`" || (c === "}" && templates.length > 0 && templates[templates.length - 1] === 0)) {
      // Start of a template, or the end of a `${ }` resuming one: scan to the closing backtick
      // or the next `${`.
      if (c === "}") templates.pop();
      let j = i + 1;
      while (j < n && src[j] !== "`" && !(src[j] === "$" && src[j + 1] === "{")) j += src[j] === "\\" ? 2 : 1;
      if (j < n && src[j] === "$") {
        templates.push(0);
        out.push(src.slice(i, j + 2));
        i = j + 2;
        lastSignificant = "{";
      } else {
        out.push(src.slice(i, j + 1));
        i = j + 1;
        lastSignificant = "x";
      }
      continue;
    }
    if (c === "/" && regexCanFollow()) {
      let j = i + 1;
      let inClass = false;
      while (j < n && src[j] !== "\n") {
        const d = src[j];
        if (d === "\\") {
          j += 2;
          continue;
        }
        if (d === "[") inClass = true;
        else if (d === "]") inClass = false;
        else if (d === "/" && !inClass) break;
        j++;
      }
      out.push(src.slice(i, j + 1));
      i = j + 1;
      lastSignificant = "x";
      continue;
    }
    if (templates.length > 0) {
      if (c === "{") templates[templates.length - 1] = (templates[templates.length - 1] as number) + 1;
      else if (c === "}") templates[templates.length - 1] = (templates[templates.length - 1] as number) - 1;
    }
    out.push(c);
    if (!/\s/.test(c)) lastSignificant = /[\w$]/.test(c) ? (lastSignificant + c).slice(-16) : c;
    i++;
  }
  return out.join("");
}

function tsFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir).sort()) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) out.push(...tsFiles(path));
    else if (name.endsWith(".ts")) out.push(path);
  }
  return out;
}

describe("the comment stripper", () => {
  test("removes line and block comments, keeps code, strings, templates and regexes", () => {
    const src = [
      "const a = 1; // Date.now() in a comment",
      "/* Math.random()",
      "   setTimeout */ const b = 2;",
      'const s = "// not a comment"; const t = \'/* nor this */\';',
      "const u = `x ${a + 1} // still template ${`nested ${b}`}`; Date.now();",
      "const r = /\\/\\/[/]x/g; const q = a / b / 2; // trailing",
    ].join("\n");
    const out = stripComments(src);
    assert.equal(out.split("\n").length, src.split("\n").length, "line breaks kept");
    assert.ok(!out.includes("in a comment") && !out.includes("Math.random") && !out.includes("setTimeout") && !out.includes("trailing"));
    assert.ok(out.includes('"// not a comment"') && out.includes("'/* nor this */'"));
    assert.ok(out.includes("// still template") && out.includes("Date.now();"));
    assert.ok(out.includes("const r = /\\/\\/[/]x/g;") && out.includes("const q = a / b / 2;"));
  });

  test("the patterns catch what they should and spare look-alikes", () => {
    const hit = (code: string): string[] => FORBIDDEN.filter(([, re]) => re.test(stripComments(code))).map(([name]) => name);
    assert.deepEqual(hit("const t = Date.now();"), ["Date.now"]);
    assert.deepEqual(hit('import { x } from "node:fs";'), ['from "node:']);
    assert.deepEqual(hit("process.exit(1)"), ["process."]);
    assert.deepEqual(hit("globalThis.foo"), ["globalThis"]);
    assert.deepEqual(hit("this.process.x(); obj.require(1); myconsole.log()"), []);
    assert.deepEqual(hit("// Date.now() and Math.random() are forbidden"), []);
  });
});

describe("src/core is pure", () => {
  const files = tsFiles(CORE_DIR);

  test("there are core sources to check", () => {
    const names = files.map((f) => relative(CORE_DIR, f));
    for (const expected of ["node.ts", "runtime.ts", "config.ts", "formulas.ts", "address.ts", "wire/codec.ts"]) {
      assert.ok(names.includes(expected), `${expected} in ${names.join(", ")}`);
    }
  });

  for (const file of files) {
    const name = relative(CORE_DIR, file);
    test(`${name} uses no clock, timer, randomness, process, node: module or shared memory`, () => {
      const code = stripComments(readFileSync(file, "utf8"));
      const lines = code.split("\n");
      const found: string[] = [];
      lines.forEach((line, i) => {
        for (const [forbidden, re] of FORBIDDEN) if (re.test(line)) found.push(`${name}:${i + 1}: ${forbidden}: ${line.trim()}`);
      });
      assert.deepEqual(found, []);
    });

    test(`${name}: only comments were blanked before the scan`, () => {
      const original = readFileSync(file, "utf8");
      const code = stripComments(original);
      assert.equal(code.length, original.length);
      for (let i = 0; i < original.length; ) {
        if (code[i] === original[i]) {
          i++;
          continue;
        }
        const opener = original.slice(i, i + 2);
        assert.ok(opener === "//" || opener === "/*", `${name}: code blanked at offset ${i}: ${JSON.stringify(original.slice(i, i + 40))}`);
        // A blanked run goes on over the comment's own whitespace, to the next kept non-space.
        while (i < original.length && (code[i] !== original[i] || /\s/.test(original[i] as string))) i++;
      }
    });

    test(`${name} imports only from inside src/core`, () => {
      const code = stripComments(readFileSync(file, "utf8"));
      const specifiers = [...code.matchAll(/\b(?:import|export)\b[^;"']*?\bfrom\s*["']([^"']+)["']|\bimport\s*\(\s*["']([^"']+)["']/g)].map(
        (m) => (m[1] ?? m[2]) as string,
      );
      for (const spec of specifiers) {
        assert.ok(spec.startsWith("./") || spec.startsWith("../"), `${name} imports the package "${spec}"`);
        const target = resolve(dirname(file), spec);
        assert.ok(!relative(CORE_DIR, target).startsWith(".."), `${name} imports ${spec}, outside src/core`);
      }
    });
  }

  test('src/core/tsconfig.json has "types": [] (no ambient types, no node:*)', () => {
    const text = readFileSync(join(CORE_DIR, "tsconfig.json"), "utf8");
    const config = JSON.parse(stripComments(text)) as { compilerOptions?: { types?: unknown; lib?: unknown } };
    assert.deepEqual(config.compilerOptions?.types, []);
    const lib = config.compilerOptions?.lib;
    assert.ok(Array.isArray(lib) && lib.every((l) => typeof l === "string" && !/^dom/i.test(l)), `lib ${JSON.stringify(lib)} has no DOM`);
  });
});

/** The relative import and export specifiers of one source file (comments stripped). */
function relativeSpecifiers(file: string): string[] {
  const code = stripComments(readFileSync(file, "utf8"));
  return [...code.matchAll(/\b(?:import|export)\b[^;"']*?\bfrom\s*["']([^"']+)["']|\bimport\s*\(\s*["']([^"']+)["']|\bimport\s*["']([^"']+)["']/g)]
    .map((m) => (m[1] ?? m[2] ?? m[3]) as string)
    .filter((spec) => spec.startsWith("./") || spec.startsWith("../"));
}

/** src/<folder> of a path under src (files directly in src have none). */
function folderOf(path: string): string | null {
  const parts = relative(SRC_DIR, path).split(/[\\/]/);
  return parts.length > 1 && parts[0] !== ".." ? (parts[0] as string) : null;
}

/** Every cycle of the graph, as folder paths that start and end at the same folder. */
function folderCycles(edges: ReadonlyMap<string, ReadonlySet<string>>): string[][] {
  const cycles: string[][] = [];
  const visit = (path: string[]): void => {
    const last = path[path.length - 1] as string;
    for (const next of edges.get(last) ?? []) {
      if (next === path[0]) cycles.push([...path, next]);
      // Each cycle once: from its smallest folder name.
      else if (next > (path[0] as string) && !path.includes(next)) visit([...path, next]);
    }
  };
  for (const start of [...edges.keys()].sort()) visit([start]);
  return cycles;
}

describe("src folders depend on each other without a cycle", () => {
  test("the cycle finder finds cycles", () => {
    const edges = new Map([
      ["a", new Set(["b"])],
      ["b", new Set(["c", "a"])],
      ["c", new Set(["a"])],
    ]);
    assert.deepEqual(folderCycles(edges), [
      ["a", "b", "c", "a"],
      ["a", "b", "a"],
    ]);
    assert.deepEqual(folderCycles(new Map([["a", new Set(["b"])]])), []);
  });

  test("no folder of src imports, through any chain, from a folder that imports it", () => {
    const edges = new Map<string, Set<string>>();
    for (const file of tsFiles(SRC_DIR)) {
      const from = folderOf(file);
      if (from === null || from === "gen") continue;
      for (const spec of relativeSpecifiers(file)) {
        const to = folderOf(resolve(dirname(file), spec));
        if (to === null || to === from) continue;
        let set = edges.get(from);
        if (set === undefined) edges.set(from, (set = new Set()));
        set.add(to);
      }
    }
    assert.ok((edges.get("agent")?.size ?? 0) > 0, "src/agent imports from other folders");
    assert.deepEqual(folderCycles(edges).map((c) => c.join(" -> ")), []);
  });
});
