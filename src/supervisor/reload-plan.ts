import type { Config, ConfigInput, JobConfig } from "../config/schema.js";
import { encodeConfig } from "../config/load.js";
import { formatPath } from "../config/interpolate.js";
import { maskSecrets, maskValue } from "../config/secrets.js";

/**
 * The settings a reload applies at once. Every other one is read only at start-up, and a reload
 * that changes it is refused, naming it: the MySQL autopilot (which derives the mysqld job and its
 * argv from the mysql section), the telemetry endpoint (port, bind, token, metrics, sensors), the
 * Consul connection, the control socket, the node name, the logger's format, and any section added
 * later until it is made reloadable here.
 */
export const LIVE: ReadonlyArray<ReadonlyArray<string>> = [["jobs"], ["watches"], ["templates"], ["logging", "level"], ["logging", "childOutput"], ["reloadOnSighup"], ["stopTimeout"]];

/** A reload refused as a whole: nothing of it was applied. */
export class ReloadRefused extends Error {
  override name = "ReloadRefused";
}

export interface ReloadPlan {
  restarted: string[];
  added: string[];
  removed: string[];
  unchanged: string[];
}

export interface Change {
  keys: PropertyKey[];
  path: string;
  before: string;
  after: string;
}

const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === "object" && !Array.isArray(v);

/** A value fit for a message: secrets masked (by the nearest key name), long values cut. */
function show(path: ReadonlyArray<PropertyKey>, v: unknown): string {
  if (v === undefined) return "(unset)";
  const key = [...path].reverse().find((p): p is string => typeof p === "string") ?? "";
  const text = JSON.stringify(v !== null && typeof v === "object" ? maskSecrets(v) : maskValue(key, v)) ?? String(v);
  return text.length > 60 ? `${text.slice(0, 57)}...` : text;
}

/** Leaf paths where two written configs differ, with both values masked. */
export function changedPaths(before: unknown, after: unknown, path: PropertyKey[] = []): Change[] {
  if (isObject(before) && isObject(after)) {
    const keys = [...new Set([...Object.keys(before), ...Object.keys(after)])];
    return keys.flatMap((k) => changedPaths(before[k], after[k], [...path, k]));
  }
  if (Array.isArray(before) && Array.isArray(after) && before.length === after.length) {
    return before.flatMap((b, i) => changedPaths(b, after[i], [...path, i]));
  }
  if (JSON.stringify(before) === JSON.stringify(after)) return [];
  return [{ keys: path, path: formatPath(path), before: show(path, before), after: show(path, after) }];
}

/** The settings a reload from `before` to `after` would change that only a restart applies. */
export function restartOnlyChanges(before: ConfigInput, after: ConfigInput): Change[] {
  return changedPaths(before, after).filter((c) => !LIVE.some((live) => live.every((k, i) => c.keys[i] === k)));
}

const MAX_LISTED = 10;

/**
 * What a reload from `current` to `next` (both validated configs as the user wrote them, without
 * the jobs other parts define) restarts, adds and removes. Throws ReloadRefused, naming every
 * field, when `next` changes a start-up-only setting or reuses the name of an internal job.
 */
export function planReload(current: Config, next: Config, internalJobs: ReadonlyArray<JobConfig>): ReloadPlan {
  const internal = new Set(internalJobs.map((j) => j.name));
  const clash = next.jobs.findIndex((j) => internal.has(j.name));
  if (clash >= 0) {
    throw new ReloadRefused(`jobs[${clash}].name: "${next.jobs[clash]!.name}" is the job the mysql section runs; choose another name (nothing was changed)`);
  }
  const fixed = restartOnlyChanges(encodeConfig(current), encodeConfig(next));
  if (fixed.length) {
    const listed = fixed.slice(0, MAX_LISTED).map((c) => `${c.path}: ${c.before} -> ${c.after}`);
    if (fixed.length > MAX_LISTED) listed.push(`... and ${fixed.length - MAX_LISTED} more`);
    throw new ReloadRefused(`these settings apply only at start-up; restart statepilot to change them (nothing was changed): ${listed.join("; ")}`);
  }
  const key = (j: JobConfig) => JSON.stringify(j);
  const before = new Map([...current.jobs, ...internalJobs].map((j) => [j.name, j]));
  const after = new Map([...next.jobs, ...internalJobs].map((j) => [j.name, j]));
  const removed = [...before.keys()].filter((n) => !after.has(n));
  const added = [...after.keys()].filter((n) => !before.has(n));
  const restarted = [...after.keys()].filter((n) => before.has(n) && key(before.get(n)!) !== key(after.get(n)!));
  const unchanged = [...after.keys()].filter((n) => before.has(n) && !restarted.includes(n));
  return { restarted, added, removed, unchanged };
}
