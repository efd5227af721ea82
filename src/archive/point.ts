import { formatPos, type GtidPos, parsePos } from "./binlog.js";

/** Where to stop: every transaction that started before `time` (whole seconds), or up to and including `gtid`. */
export type RestorePoint = { time: Date } | { gtid: GtidPos };

/**
 * A point as an operator writes it: a GTID position (`0-1-42`, or one per domain joined by
 * commas) or a time `Date.parse` reads (`2026-12-03T10:15:00Z`). Throws an Error naming the text.
 */
export function parseRestorePoint(text: string): RestorePoint {
  if (/^\d+-\d+-\d+(,\s*\d+-\d+-\d+)*$/.test(text.trim())) return { gtid: parsePos(text) };
  const t = Date.parse(text);
  if (!Number.isFinite(t)) throw new Error(`expected a time such as 2026-12-03T10:15:00Z or a GTID such as 0-1-42, got ${JSON.stringify(text)}`);
  return { time: new Date(t) };
}

export function describePoint(p: RestorePoint): string {
  return "time" in p ? p.time.toISOString() : formatPos(p.gtid);
}
