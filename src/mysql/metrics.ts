import { Counter, Gauge, type Registry } from "prom-client";

import { ROLES, type Role } from "../cluster/records.js";

export { ROLES, type Role };

/** The autopilot's view for Prometheus; labels are bounded (roles, fixed reasons, thread names). */
export class MysqlMetrics {
  readonly role: Gauge;
  readonly up: Gauge;
  readonly readOnly: Gauge;
  readonly threadRunning: Gauge;
  readonly lag: Gauge;
  readonly failovers: Counter;
  readonly lastFailover: Gauge;
  readonly fencing: Counter;
  readonly switchovers: Counter;
  readonly invariantViolations: Counter;

  constructor(registry: Registry) {
    const registers = [registry];
    this.role = new Gauge({ name: "statepilot_mysql_role", help: "1 for this node's current role.", labelNames: ["role"], registers });
    this.up = new Gauge({ name: "statepilot_mysql_up", help: "1 when statepilot can query the local server.", registers });
    this.readOnly = new Gauge({ name: "statepilot_mysql_read_only", help: "1 when the local server is read-only.", registers });
    this.threadRunning = new Gauge({ name: "statepilot_mysql_replication_thread_running", help: "1 when the replication thread runs (io, sql).", labelNames: ["thread"], registers });
    this.lag = new Gauge({ name: "statepilot_mysql_replication_lag_seconds", help: "Replica lag; NaN when unknown, 0 on the primary.", registers });
    this.failovers = new Counter({ name: "statepilot_mysql_failovers_total", help: "Promotions of this node after the lock was found free.", registers });
    this.lastFailover = new Gauge({ name: "statepilot_mysql_last_failover_duration_seconds", help: "From the lock found free to this node accepting writes, at its last promotion.", registers });
    this.fencing = new Counter({ name: "statepilot_mysql_fencing_actions_total", help: "Times this node made itself read-only or killed its server to fence, by reason.", labelNames: ["reason"], registers });
    this.switchovers = new Counter({ name: "statepilot_mysql_switchovers_total", help: "Switchovers this node took part in, by side and outcome.", labelNames: ["side", "outcome"], registers });
    this.invariantViolations = new Counter({ name: "statepilot_mysql_invariant_violations_total", help: "Times a safety invariant was found violated on this node (and repaired), by invariant.", labelNames: ["invariant"], registers });
    for (const r of ROLES) this.role.set({ role: r }, r === "starting" ? 1 : 0);
  }

  setRole(role: Role): void {
    for (const r of ROLES) this.role.set({ role: r }, r === role ? 1 : 0);
  }
}
