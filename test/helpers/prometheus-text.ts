/**
 * A strict parser of the Prometheus text exposition format (version 0.0.4), for tests of the
 * `/metrics` endpoint. It throws, naming the line, on anything a Prometheus server would reject
 * or that the format forbids: bad metric or label names, bad escapes, bad numbers, duplicate
 * HELP/TYPE or series, a TYPE after its samples, a family split in two groups, histogram
 * buckets out of order, not cumulative, or without a `+Inf` bucket equal to `_count`, and
 * negative counters.
 */

export type MetricType = "counter" | "gauge" | "histogram" | "summary" | "untyped";

export interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

export interface MetricFamily {
  readonly name: string;
  help: string | null;
  type: MetricType;
  readonly samples: Sample[];
}

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const FLOAT = /^[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$/;
const TYPES: readonly MetricType[] = ["counter", "gauge", "histogram", "summary", "untyped"];

function parseValue(text: string, where: string): number {
  if (text === "NaN") return NaN;
  if (text === "+Inf" || text === "Inf") return Infinity;
  if (text === "-Inf") return -Infinity;
  if (!FLOAT.test(text)) throw new Error(`${where}: bad value "${text}"`);
  return Number(text);
}

/** The family a sample name belongs to, given the declared types. */
function familyOf(name: string, types: ReadonlyMap<string, MetricType>): string {
  for (const suffix of ["_bucket", "_sum", "_count"]) {
    if (!name.endsWith(suffix)) continue;
    const base = name.slice(0, -suffix.length);
    const type = types.get(base);
    if (type === "histogram" || (type === "summary" && suffix !== "_bucket")) return base;
  }
  return name;
}

/** Parses `{a="x",b="y"}` starting at `text[0] === "{"`; returns the labels and the rest of the line. */
function parseLabels(text: string, where: string): { labels: Record<string, string>; rest: string } {
  const labels: Record<string, string> = {};
  let i = 1;
  for (;;) {
    if (text[i] === "}") return { labels, rest: text.slice(i + 1) };
    const eq = text.indexOf("=", i);
    if (eq < 0) throw new Error(`${where}: unterminated label set`);
    const name = text.slice(i, eq);
    if (!LABEL_NAME.test(name) || name.startsWith("__")) throw new Error(`${where}: bad label name "${name}"`);
    if (name in labels) throw new Error(`${where}: label "${name}" given twice`);
    if (text[eq + 1] !== '"') throw new Error(`${where}: label value of "${name}" not quoted`);
    let value = "";
    let j = eq + 2;
    for (;;) {
      const c = text[j];
      if (c === undefined) throw new Error(`${where}: unterminated label value`);
      if (c === '"') break;
      if (c === "\\") {
        const next = text[j + 1];
        if (next === "\\") value += "\\";
        else if (next === '"') value += '"';
        else if (next === "n") value += "\n";
        else throw new Error(`${where}: bad escape \\${next ?? ""} in a label value`);
        j += 2;
        continue;
      }
      value += c;
      j++;
    }
    labels[name] = value;
    i = j + 1;
    if (text[i] === ",") i++;
    else if (text[i] !== "}") throw new Error(`${where}: expected "," or "}" after label "${name}"`);
  }
}

function unescapeHelp(text: string, where: string): string {
  return text.replace(/\\(.?)/g, (_, c: string) => {
    if (c === "\\") return "\\";
    if (c === "n") return "\n";
    throw new Error(`${where}: bad escape \\${c} in HELP`);
  });
}

/** Parses an exposition; the families in order of appearance, by name. */
export function parsePrometheusText(text: string): Map<string, MetricFamily> {
  if (text.length > 0 && !text.endsWith("\n")) throw new Error("the exposition does not end with a newline");
  const families = new Map<string, MetricFamily>();
  const types = new Map<string, MetricType>();
  const helps = new Set<string>();
  const series = new Set<string>();
  const finished = new Set<string>();
  let current: string | null = null;
  const family = (name: string): MetricFamily => {
    let f = families.get(name);
    if (f === undefined) {
      f = { name, help: null, type: "untyped", samples: [] };
      families.set(name, f);
    }
    return f;
  };
  const enter = (name: string, where: string): void => {
    if (current === name) return;
    if (finished.has(name)) throw new Error(`${where}: the lines of ${name} are not one group`);
    if (current !== null) finished.add(current);
    current = name;
  };
  const lines = text.split("\n");
  lines.pop();
  lines.forEach((line, index) => {
    const where = `line ${index + 1}`;
    if (line.trim() === "") return;
    if (line.startsWith("#")) {
      const m = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line);
      if (m === null) return; // a plain comment
      const [, keyword, name, rest] = m as unknown as [string, string, string, string];
      if (!METRIC_NAME.test(name)) throw new Error(`${where}: bad metric name "${name}"`);
      enter(name, where);
      if (keyword === "HELP") {
        if (helps.has(name)) throw new Error(`${where}: second HELP for ${name}`);
        helps.add(name);
        family(name).help = unescapeHelp(rest, where);
      } else {
        if (types.has(name)) throw new Error(`${where}: second TYPE for ${name}`);
        if ((families.get(name)?.samples.length ?? 0) > 0) throw new Error(`${where}: TYPE of ${name} after its samples`);
        if (!TYPES.includes(rest as MetricType)) throw new Error(`${where}: unknown type "${rest}"`);
        types.set(name, rest as MetricType);
        family(name).type = rest as MetricType;
      }
      return;
    }
    const nameMatch = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line);
    if (nameMatch === null) throw new Error(`${where}: no metric name in "${line}"`);
    const name = nameMatch[0];
    let rest = line.slice(name.length);
    let labels: Record<string, string> = {};
    if (rest.startsWith("{")) ({ labels, rest } = parseLabels(rest, where));
    const parts = rest.split(" ");
    if (parts[0] !== "" || parts.length < 2 || parts.length > 3) throw new Error(`${where}: expected "name[{labels}] value [timestamp]"`);
    const value = parseValue(parts[1] as string, where);
    if (parts[2] !== undefined && !/^-?[0-9]+$/.test(parts[2])) throw new Error(`${where}: bad timestamp "${parts[2]}"`);
    const base = familyOf(name, types);
    enter(base, where);
    const f = family(base);
    const key = `${name}{${Object.keys(labels).sort().map((k) => `${k}=${JSON.stringify(labels[k])}`).join(",")}}`;
    if (series.has(key)) throw new Error(`${where}: series ${key} given twice`);
    series.add(key);
    if (f.type === "counter" && !(value >= 0)) throw new Error(`${where}: counter ${name} is ${value}`);
    if (f.type === "histogram" && name.endsWith("_bucket") && labels.le === undefined) throw new Error(`${where}: bucket without le`);
    f.samples.push({ name, labels, value });
  });
  for (const f of families.values()) if (f.type === "histogram") checkHistogram(f);
  return families;
}

/** Buckets (per label set without `le`) in increasing `le`, cumulative, ending at +Inf = _count. */
function checkHistogram(f: MetricFamily): void {
  const groups = new Map<string, { les: number[]; counts: number[]; count: number | null }>();
  const groupOf = (labels: Readonly<Record<string, string>>): { les: number[]; counts: number[]; count: number | null } => {
    const key = JSON.stringify(Object.entries(labels).filter(([k]) => k !== "le").sort());
    let g = groups.get(key);
    if (g === undefined) {
      g = { les: [], counts: [], count: null };
      groups.set(key, g);
    }
    return g;
  };
  for (const s of f.samples) {
    const g = groupOf(s.labels);
    if (s.name === `${f.name}_bucket`) {
      g.les.push(parseValue(s.labels.le as string, `${f.name} le`));
      g.counts.push(s.value);
    } else if (s.name === `${f.name}_count`) {
      g.count = s.value;
    }
  }
  for (const g of groups.values()) {
    for (let i = 1; i < g.les.length; i++) {
      if (!((g.les[i] as number) > (g.les[i - 1] as number))) throw new Error(`${f.name}: buckets not in increasing le`);
      if ((g.counts[i] as number) < (g.counts[i - 1] as number)) throw new Error(`${f.name}: buckets not cumulative`);
    }
    if (g.les.at(-1) !== Infinity) throw new Error(`${f.name}: no +Inf bucket`);
    if (g.count === null || g.counts.at(-1) !== g.count) throw new Error(`${f.name}: the +Inf bucket differs from _count`);
  }
}

/** The value of the sample `name` with exactly `labels`, or undefined. */
export function sampleValue(families: ReadonlyMap<string, MetricFamily>, name: string, labels: Readonly<Record<string, string>> = {}): number | undefined {
  for (const f of families.values()) {
    for (const s of f.samples) {
      if (s.name !== name) continue;
      const keys = Object.keys(s.labels);
      if (keys.length === Object.keys(labels).length && keys.every((k) => s.labels[k] === labels[k])) return s.value;
    }
  }
  return undefined;
}
