import type { z } from "zod";
import { describeIssues, showValue } from "../../cluster/records.js";
import type { InvalidRecord } from "../../cluster/store.js";

/**
 * How the cluster store lays its records out in etcd v3: keys, JSON encoding and reading back.
 * Nothing here leaves this folder; the HA core sees records, terms and versions.
 *
 * Under `statepilot/<cluster>/` (the same prefix and record names as on Consul):
 *
 * | key                | value                                   | lease                |
 * |--------------------|-----------------------------------------|----------------------|
 * | `primary`          | LeaderRecord of the holder              | the holder's lease   |
 * | `last-primary`     | LeaderRecord + `released`               | none                 |
 * | `members/<node>`   | MemberRecord                            | none                 |
 * | `alive/<node>`     | `{status, output}` of the last touch    | the node's lease     |
 * | `switchover`       | SwitchoverRecord                        | none                 |
 * | `pause`            | PauseRecord                             | none                 |
 * | `initialized`      | `{node, at}` of the first primary       | none                 |
 *
 * Service discovery for confd-style readers (a node whose store is etcd; `services` option), on
 * the node's lease so that an instance disappears with its node:
 *
 * | key                                          | value                                   |
 * |----------------------------------------------|-----------------------------------------|
 * | `statepilot/services/<service>/<node>`       | `{node, cluster, address, port, role, tags, status, output}` |
 * | `statepilot/services/<service>-primary/<node>` | the same, only while the node is primary and passing |
 *
 * e.g. confd: `{{range gets "/statepilot/services/mysql/*"}}{{$i := json .Value}}server {{$i.node}} {{$i.address}}:{{$i.port}}{{end}}`.
 *
 * With the store's `registrations: etcd`, jobs' services live there too (registry.ts), one key per
 * instance on a lease of its own (the health check's ttl): `{node, id, address, port, tags, meta,
 * status, output, maintenance?}`.
 *
 * The leadership is the `primary` key: it exists only while the holder's lease lives, its
 * `create_revision` is the term (a new holder creates the key again, at a higher revision), its
 * `mod_revision` the leader version. `last-primary` keeps the latest holder's record after the key is
 * gone (lease expired or released), and whether it was released (then no lock-delay applies).
 */
export interface EtcdKeys {
  /** Everything the store owns is under this prefix. */
  prefix: string;
  leader: string;
  lastLeader: string;
  members: string;
  alive: string;
  initialized: string;
  switchover: string;
  pause: string;
  /** The binlog archiver's lock, on its holder's lease. */
  archiver: string;
}

export function etcdKeys(cluster: string): EtcdKeys {
  const prefix = `statepilot/${cluster}/`;
  return {
    prefix,
    leader: `${prefix}primary`,
    lastLeader: `${prefix}last-primary`,
    members: `${prefix}members/`,
    alive: `${prefix}alive/`,
    initialized: `${prefix}initialized`,
    switchover: `${prefix}switchover`,
    pause: `${prefix}pause`,
    archiver: `${prefix}archiver`,
  };
}

/** Where a service's instances live (see the table above). */
export function serviceKey(service: string, node: string): string {
  return `statepilot/services/${service}/${node}`;
}

/** Internal fields of `last-primary`, next to the LeaderRecord's own. */
export interface LastLeaderMeta {
  /** The holder gave the leadership up (no lock-delay), rather than losing its lease. */
  released: boolean;
}

export function encodeLastLeader(record: object, meta: LastLeaderMeta): string {
  return JSON.stringify({ ...record, released: meta.released });
}

/** The internal fields of a `last-primary` value (zeros when absent or unreadable). */
export function lastLeaderMeta(text: string): LastLeaderMeta {
  try {
    const raw = JSON.parse(text) as { released?: unknown } | null;
    return { released: raw?.released === true };
  } catch {
    return { released: false };
  }
}

export type Decoded<T> = { ok: true; record: T } | { ok: false; invalid: InvalidRecord };

/**
 * Parses a stored JSON value and validates it with the record's schema, after dropping the
 * internal fields named in `internal`. A value that is not JSON or does not match is an
 * InvalidRecord naming the field.
 */
export function decodeRecord<S extends z.ZodType>(schema: S, what: string, text: string, internal: readonly string[] = []): Decoded<z.output<S>> {
  if (text === "") return { ok: false, invalid: { what, error: "empty value" } };
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    return { ok: false, invalid: { what, error: `not JSON (${err instanceof Error ? err.message : String(err)}): ${showValue(text)}` } };
  }
  if (internal.length && raw !== null && typeof raw === "object" && !Array.isArray(raw)) {
    const rest: Record<string, unknown> = { ...(raw as Record<string, unknown>) };
    for (const k of internal) delete rest[k];
    raw = rest;
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success) return { ok: false, invalid: { what, error: describeIssues(parsed.error.issues, raw) } };
  return { ok: true, record: parsed.data };
}
