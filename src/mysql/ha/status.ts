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
}
