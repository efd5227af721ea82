import type { Role } from "../../cluster/records.js";

/** What /status, the load-balancer checks and `statepilot mysql status` show of one node. */
export interface HaStatus {
  node: string;
  role: Role;
  up: boolean;
  readOnly: boolean | undefined;
  health: "passing" | "warning" | "critical";
  /** Why the node does what it does: the reason of the last decision. */
  reason: string;
  /** The last decision's action. */
  action: string;
  primary: { node: string; host: string; port: number; term: number } | undefined;
  lagSeconds: number | null;
  replication: { io: string; sql: boolean; ioError: string; sqlError: string } | undefined;
  executed: string;
  received: string;
  blocked: string;
  lastFailoverMs: number | undefined;
  /** The primary's time since it last confirmed its leadership (null on other nodes). */
  leaseAgeMs: number | null;
  /** Older than this, a lease is no longer trusted: the primary fences itself. */
  fenceAfterMs: number;
  /** In maintenance: out of the load balancers' replica checks, never runs for primary. */
  maintenance: boolean;
}

/** The load balancers' write check: only a primary whose leadership was confirmed within fenceAfter. */
export function primaryCheck(s: HaStatus): boolean {
  return s.role === "primary" && s.up && s.readOnly === false && s.leaseAgeMs !== null && s.leaseAgeMs < s.fenceAfterMs;
}

/** The read check: a replicating replica within `maxLagSeconds`, not in maintenance (it leaves the pool). */
export function replicaCheck(s: HaStatus, maxLagSeconds: number): boolean {
  return s.role === "replica" && !s.maintenance && s.up && s.replication?.io === "Yes" && s.replication.sql && s.lagSeconds !== null && s.lagSeconds <= maxLagSeconds;
}
