import { z } from "zod";

/**
 * The records the HA core keeps in the cluster store, in the problem's words. The store encodes
 * them (JSON in Consul and etcd) and validates what it reads back with these schemas: a record that
 * does not match is reported (`ClusterState.invalid`), never trusted.
 */

export const ROLES = ["starting", "primary", "replica", "fenced", "diverged", "down"] as const;
export type Role = (typeof ROLES)[number];

export const Flavor = z.enum(["mariadb", "mysql"]);

/** What every node publishes each loop. */
export const MemberRecord = z.object({
  node: z.string().min(1),
  serverId: z.number().int().nonnegative(),
  host: z.string(),
  port: z.number().int().min(0).max(65535),
  role: z.enum(ROLES),
  /** mysqld answers. */
  up: z.boolean(),
  /** Applied (MariaDB gtid_binlog_pos ∪ gtid_slave_pos / MySQL gtid_executed). */
  executed: z.string(),
  /** Applied plus what sits in the relay log: what the node could serve once it has drained it. */
  received: z.string(),
  lagSeconds: z.number().nullable(),
  /** The SQL thread stopped on an error: this node cannot apply what it received. */
  sqlError: z.string(),
  nofailover: z.boolean(),
  /** Why the node must not be promoted (diverged or errant GTIDs), empty when it may. */
  blocked: z.string(),
  /** In maintenance: never runs for primary. */
  maintenance: z.boolean().default(false),
  /** The node this one replicates from, when it does. */
  source: z.string().default(""),
  /** When the node wrote this record (its own clock, ISO 8601): shown as the record's age. */
  at: z.string().default(""),
  /**
   * The leader in the view the node decided on before writing this record ("" none): an election
   * counts the record as news from after the leadership was freed only if that view showed it free
   * (a node whose loop stalled may write late what it decided while the old primary led).
   */
  viewLeader: z.string().optional(),
  /**
   * A primary in failsafe mode: the members it would rely on if the store became unreachable (see
   * src/mysql/ha/failsafe.ts). A member not listed does not run for primary while it is named.
   */
  failsafe: z.array(z.string()).optional(),
  /**
   * The node remembers this cluster's store initialised (its last leader and members, kept on its
   * disk): when the store comes back without its data, a node that never saw it initialised (a
   * new or restored node) does not run while a member that remembers it is alive.
   */
  remembers: z.boolean().optional(),
  /** Failsafe mode: the primary this node promised not to elect another primary against, while that promise runs. */
  promised: z.string().optional(),
  /** The node's HTTP port (same host), where a failsafe primary reaches it without the store. */
  httpPort: z.number().int().min(1).max(65535).optional(),
});
export type MemberRecord = z.infer<typeof MemberRecord>;

/** The leader key's value: who is primary, where, and from which position it started. */
export const LeaderRecord = z.object({
  node: z.string().min(1),
  serverId: z.number().int().nonnegative(),
  host: z.string(),
  port: z.number().int().min(0).max(65535),
  flavor: Flavor,
  version: z.string(),
  /** Executed GTIDs when the node was promoted; every later candidate must have them. */
  gtid: z.string(),
  promotedAt: z.string(),
});
export type LeaderRecord = z.infer<typeof LeaderRecord>;

/**
 * requested (by the CLI) → handover (the primary fenced itself and named a target and a position)
 * → released (the primary let the lock go for that target) → done (the target leads), or failed.
 */
export const SWITCHOVER_STATES = ["requested", "handover", "released", "done", "failed"] as const;

/** A switchover request and its progress; every step is a compare-and-set on the previous version. */
export const SwitchoverRecord = z.object({
  id: z.string().min(1),
  /** Requested target; the primary picks the best replica when absent. */
  to: z.string().optional(),
  state: z.enum(SWITCHOVER_STATES),
  requestedAt: z.string(),
  /** A scheduled switchover: the primary starts it at this time (ISO 8601), not before. */
  at: z.string().optional(),
  from: z.string().optional(),
  /** The old primary's executed GTIDs once fenced: the target applies them before it takes the lock. */
  position: z.string().optional(),
  fencedAt: z.number().optional(),
  promotedAt: z.number().optional(),
  unavailableMs: z.number().optional(),
  error: z.string().optional(),
});
export type SwitchoverRecord = z.infer<typeof SwitchoverRecord>;

/** Cluster-wide pause: no automatic failover while `paused` (an operator's `mysql pause`). */
export const PauseRecord = z.object({
  paused: z.boolean(),
  /** Who asked (a user or host name, free text). */
  by: z.string().default(""),
  reason: z.string().default(""),
  at: z.string(),
});
export type PauseRecord = z.infer<typeof PauseRecord>;

/** The binlog archiver's lock record: which node streams the cluster's binlogs into the snapshot store. */
export const ArchiverRecord = z.object({
  node: z.string().min(1),
  /** When this holder took the lock (ISO 8601). */
  since: z.string(),
});
export type ArchiverRecord = z.infer<typeof ArchiverRecord>;

/** A value as an error message shows it: JSON, cut at 80 characters. */
export const showValue = (v: unknown): string => {
  if (v === undefined) return "nothing";
  const text = JSON.stringify(v);
  return text === undefined ? String(v) : text.length > 80 ? `${text.slice(0, 77)}...` : text;
};

function valueAt(input: unknown, path: readonly PropertyKey[]): unknown {
  let v = input;
  for (const p of path) {
    if (v === null || typeof v !== "object") return undefined;
    v = (v as Record<PropertyKey, unknown>)[p];
  }
  return v;
}

/** `port: expected number, got "x"` for each problem zod found (its "Invalid input: " prefix dropped). */
export function describeIssues(issues: readonly z.core.$ZodIssue[], input: unknown): string {
  return issues
    .map((issue) => {
      const path = issue.path.map(String).join(".") || "(record)";
      // "Invalid input: expected number, received string" -> "expected number" (the value follows).
      const detail = issue.message.replace(/^[A-Z][a-z]+(?: [a-z]+)?: /, "").replace(/, received \w+$/, "");
      return `${path}: ${detail}, got ${showValue(valueAt(input, issue.path))}`;
    })
    .join("; ");
}
