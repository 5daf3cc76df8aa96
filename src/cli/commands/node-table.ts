/**
 * How `nodes`, `healthy` and `monitor` show members: the original's table (columns
 * `NODE AGE EMIT # MILLIS STATUS`, rows like `[127.0.0.1]:9998  6024  0  -1  ALIVE`), with a
 * last column TAGS (`role=web,dc=eu`) when any member shown has tags, the `--json` object of one
 * node, and the `--tag KEY=REGEXP` filter. Pure formatting; the commands do the I/O.
 */

import { parseIp } from "../../core/address.js";
import { Status, type Node } from "../../gen/service/tamtam_pb.js";
import type { Style } from "../base-command.js";
import { matchesTags, type TagFilter, tagsText } from "../../api/tags.js";

export const NODE_COLUMNS = ["NODE", "AGE", "EMIT #", "MILLIS", "STATUS"] as const;
/** The columns when some member shown has tags. */
export const NODE_COLUMNS_WITH_TAGS = [...NODE_COLUMNS, "TAGS"] as const;
/** Where the status is in a row (the cell painted by its state). */
const STATUS_COLUMN = 4;

/** Column widths `monitor` starts from (it cannot measure rows it has not seen yet). */
export const MONITOR_WIDTHS: readonly number[] = [23, 6, 6, 6];

const COLUMN_GAP = "  ";

/** The original's address form: brackets for IPv4 and IPv6 alike, `[127.0.0.1]:9998`. */
export function bracketed(ip: string, port: number): string {
  return `[${ip}]:${port}`;
}

/** `127.0.0.1:9998` or `[::1]:9998`. */
export function hostPort(ip: string, port: number): string {
  return ip.includes(":") ? `[${ip}]:${port}` : `${ip}:${port}`;
}

export function statusName(status: Status): string {
  return Status[status] ?? String(status);
}

const STATE_OF_STATUS: Readonly<Partial<Record<Status, string>>> = {
  [Status.ALIVE]: "alive",
  [Status.SUSPECTED]: "suspect",
  [Status.DEAD]: "dead",
  [Status.LEFT]: "left",
};

/** The colour of a status cell on a terminal. */
export function statusStyle(status: string): Style {
  return status === "ALIVE" ? "green" : status === "SUSPECTED" ? "yellow" : status === "DEAD" ? "red" : "dim";
}

/** The row of one node: address, age (ms), emit counter, ping (ms), status; then its tags when `withTags`. */
export function nodeCells(node: Node, withTags = false): string[] {
  const cells = [
    bracketed(node.address?.IP ?? "", node.address?.port ?? 0),
    String(node.age),
    String(node.emitCounter),
    String(node.pingMillis),
    statusName(node.status),
  ];
  if (withTags) cells.push(tagsText(node.tags));
  return cells;
}

export function hasTags(node: Node): boolean {
  return Object.keys(node.tags).length > 0;
}

/** The nodes whose tags pass every filter. */
export function filterNodes(nodes: readonly Node[], filters: readonly TagFilter[]): Node[] {
  return nodes.filter((node) => matchesTags(node.tags, filters));
}

export interface NodeJson {
  address: string;
  ip: string;
  port: number;
  ageMs: number;
  emitCounter: number;
  pingMillis: number;
  status: string;
  state: string;
  incarnation: number;
  self: boolean;
  /** Flap damping (see the README's "Flapping members"). */
  damped: boolean;
  flapPenalty: number;
  flaps: number;
  dampedForMs: number;
  tags: Record<string, string>;
}

export function nodeJson(node: Node): NodeJson {
  const ip = node.address?.IP ?? "";
  const port = node.address?.port ?? 0;
  return {
    address: hostPort(ip, port),
    ip,
    port,
    ageMs: node.age,
    emitCounter: node.emitCounter,
    pingMillis: node.pingMillis,
    status: statusName(node.status),
    // Older agents do not fill `state`; derive it from the status then.
    state: node.state !== "" ? node.state : (STATE_OF_STATUS[node.status] ?? "unknown"),
    incarnation: node.incarnation,
    self: node.isSelf,
    damped: node.damped,
    flapPenalty: node.flapPenalty,
    flaps: node.flaps,
    dampedForMs: node.dampedForMillis,
    tags: { ...node.tags },
  };
}

/** Nodes in a stable order: IPv4 before IPv6, then by address bytes, then by port. */
export function sortNodes(nodes: readonly Node[]): Node[] {
  const keyed = nodes.map((node) => {
    const ip = parseIp(node.address?.IP ?? "") ?? new Uint8Array(0);
    return { node, key: [ip.length, ...ip, node.address?.port ?? 0] };
  });
  keyed.sort((a, b) => {
    for (let i = 0; i < Math.min(a.key.length, b.key.length); i++) {
      const d = (a.key[i] as number) - (b.key[i] as number);
      if (d !== 0) return d;
    }
    return a.key.length - b.key.length;
  });
  return keyed.map((k) => k.node);
}

/** Column widths fitting the header and every row (the last column is never padded). */
export function columnWidths(rows: readonly (readonly string[])[], minimum: readonly number[] = [], columns: readonly string[] = NODE_COLUMNS): number[] {
  const widths: number[] = [];
  for (let c = 0; c < columns.length - 1; c++) {
    widths.push(Math.max(minimum[c] ?? 0, (columns[c] as string).length, ...rows.map((r) => (r[c] ?? "").length)));
  }
  return widths;
}

/**
 * One table line from cells, padded to `widths` (the last cell is not padded). `paintStatus`
 * styles the status cell, after padding so that colour codes do not disturb the alignment.
 */
export function tableLine(cells: readonly string[], widths: readonly number[], paintStatus: (s: string) => string = (s) => s): string {
  const last = cells.length - 1;
  return cells
    .map((cell, c) => {
      const padded = c === last ? cell : cell.padEnd(widths[c] ?? 0);
      return c === STATUS_COLUMN ? paintStatus(padded.slice(0, cell.length)) + padded.slice(cell.length) : padded;
    })
    .join(COLUMN_GAP);
}
