import type { z } from "zod";
import { describeIssues, showValue } from "../../cluster/records.js";
import type { InvalidRecord } from "../../cluster/store.js";

/**
 * How the cluster store lays its records out in Consul's KV: keys, JSON encoding and reading back.
 * Nothing here leaves this folder; the HA core sees records, terms and versions.
 */
export interface ClusterKeys {
  /** Everything the store owns (and watches) is under this prefix. */
  prefix: string;
  /** The leader lock: held by a session, its value the LeaderRecord. */
  leader: string;
  /** `members/<node>`: each node's MemberRecord. */
  members: string;
  initialized: string;
  switchover: string;
  /** The operator's pause of automatic failover (a PauseRecord). */
  pause: string;
  /** The binlog archiver's lock: held by its own session, its value the ArchiverRecord. */
  archiver: string;
}

export function clusterKeys(cluster: string): ClusterKeys {
  const prefix = `statepilot/${cluster}/`;
  return {
    prefix,
    leader: `${prefix}primary`,
    members: `${prefix}members/`,
    initialized: `${prefix}initialized`,
    switchover: `${prefix}switchover`,
    pause: `${prefix}pause`,
    archiver: `${prefix}archiver`,
  };
}

/**
 * A member record as written: the sequence makes every publication a new value, because Consul keeps
 * a key's ModifyIndex when the same value is written again and freshness is judged by that index.
 */
export function encodeMember(record: object, seq: number): string {
  return JSON.stringify({ ...record, seq });
}

export type Decoded<T> = { ok: true; record: T } | { ok: false; invalid: InvalidRecord };

/**
 * Parses a stored JSON value and validates it with the record's schema; the internal `seq` is
 * dropped first. A value that is not JSON or does not match is an InvalidRecord naming the field.
 */
export function decodeRecord<S extends z.ZodType>(schema: S, what: string, text: string | null): Decoded<z.output<S>> {
  if (text === null || text === "") return { ok: false, invalid: { what, error: "empty value" } };
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    return { ok: false, invalid: { what, error: `not JSON (${err instanceof Error ? err.message : String(err)}): ${showValue(text)}` } };
  }
  if (raw !== null && typeof raw === "object" && !Array.isArray(raw) && "seq" in raw) {
    const { seq: _seq, ...rest } = raw as Record<string, unknown>;
    raw = rest;
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success) return { ok: false, invalid: { what, error: describeIssues(parsed.error.issues, raw) } };
  return { ok: true, record: parsed.data };
}
