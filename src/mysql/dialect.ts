import type { Flavor } from "./gtid.js";

export type { Flavor } from "./gtid.js";

export interface ServerVersion {
  flavor: Flavor;
  /** e.g. "10.11.19" */
  version: string;
  major: number;
  minor: number;
}

/** From `SELECT VERSION()` ("10.11.19-MariaDB-0+deb12u1-log") or `mysqld --version`. */
export function parseServerVersion(text: string): ServerVersion {
  const m = /(\d+)\.(\d+)\.(\d+)/.exec(text);
  if (!m) throw new Error(`cannot read a server version from "${text.slice(0, 120)}"`);
  return { flavor: /mariadb/i.test(text) ? "mariadb" : "mysql", version: `${m[1]}.${m[2]}.${m[3]}`, major: Number(m[1]), minor: Number(m[2]) };
}

export interface ReplicationStatus {
  configured: boolean;
  sourceHost: string | undefined;
  sourcePort: number | undefined;
  ioRunning: "Yes" | "No" | "Connecting";
  sqlRunning: boolean;
  lagSeconds: number | null;
  ioError: string;
  sqlError: string;
  sqlErrno: number;
  /** GTIDs received into the relay log (MariaDB Gtid_IO_Pos; MySQL Retrieved_Gtid_Set). */
  received: string;
}

type Row = Record<string, unknown>;

const str = (v: unknown): string => (v === null || v === undefined ? "" : String(v));

/**
 * SQL by flavor and version. MySQL 8.4 removed CHANGE MASTER and the SLAVE statements; MariaDB
 * 10.11 still uses CHANGE MASTER (with MASTER_USE_GTID) and accepts both START SLAVE and REPLICA.
 */
export class Dialect {
  constructor(readonly server: ServerVersion) {}

  get flavor(): Flavor {
    return this.server.flavor;
  }

  private get mysqlNewSyntax(): boolean {
    return this.flavor === "mysql" && (this.server.major > 8 || (this.server.major === 8 && (this.server.minor > 0 || Number(this.server.version.split(".")[2]) >= 23)));
  }

  private get replica(): string {
    return this.mysqlNewSyntax ? "REPLICA" : "SLAVE";
  }

  changeSource(): string {
    if (this.flavor === "mariadb") {
      return "CHANGE MASTER TO MASTER_HOST = ?, MASTER_PORT = ?, MASTER_USER = ?, MASTER_PASSWORD = ?, MASTER_USE_GTID = slave_pos, MASTER_CONNECT_RETRY = 1, MASTER_HEARTBEAT_PERIOD = 1";
    }
    if (this.mysqlNewSyntax) {
      return "CHANGE REPLICATION SOURCE TO SOURCE_HOST = ?, SOURCE_PORT = ?, SOURCE_USER = ?, SOURCE_PASSWORD = ?, SOURCE_AUTO_POSITION = 1, SOURCE_CONNECT_RETRY = 1, SOURCE_HEARTBEAT_PERIOD = 1, GET_SOURCE_PUBLIC_KEY = 1";
    }
    return "CHANGE MASTER TO MASTER_HOST = ?, MASTER_PORT = ?, MASTER_USER = ?, MASTER_PASSWORD = ?, MASTER_AUTO_POSITION = 1, MASTER_CONNECT_RETRY = 1, MASTER_HEARTBEAT_PERIOD = 1, GET_MASTER_PUBLIC_KEY = 1";
  }

  startReplica(): string {
    return `START ${this.replica}`;
  }

  stopReplica(): string {
    return `STOP ${this.replica}`;
  }

  stopReceiver(): string {
    return `STOP ${this.replica} IO_THREAD`;
  }

  resetReplicaAll(): string {
    return `RESET ${this.replica} ALL`;
  }

  showReplicaStatus(): string {
    return `SHOW ${this.replica} STATUS`;
  }

  parseReplicaStatus(row: Row | undefined): ReplicationStatus {
    if (!row) return { configured: false, sourceHost: undefined, sourcePort: undefined, ioRunning: "No", sqlRunning: false, lagSeconds: null, ioError: "", sqlError: "", sqlErrno: 0, received: "" };
    const f = (...names: string[]): unknown => names.map((n) => row[n]).find((v) => v !== undefined);
    const io = str(f("Slave_IO_Running", "Replica_IO_Running"));
    const lag = f("Seconds_Behind_Master", "Seconds_Behind_Source");
    const host = str(f("Master_Host", "Source_Host"));
    return {
      configured: host !== "",
      sourceHost: host || undefined,
      sourcePort: Number(f("Master_Port", "Source_Port")) || undefined,
      ioRunning: io === "Yes" ? "Yes" : io === "Connecting" ? "Connecting" : "No",
      sqlRunning: str(f("Slave_SQL_Running", "Replica_SQL_Running")) === "Yes",
      lagSeconds: lag === null || lag === undefined || lag === "" ? null : Number(lag),
      ioError: str(f("Last_IO_Error")),
      sqlError: str(f("Last_SQL_Error")),
      sqlErrno: Number(f("Last_SQL_Errno") ?? 0) || 0,
      received: str(this.flavor === "mariadb" ? f("Gtid_IO_Pos") : f("Retrieved_Gtid_Set")).replace(/\s+/g, ""),
    };
  }

  /** One row: `executed` (what this server has, as a position or set) and `state` (per-server detail). */
  positions(): string {
    return this.flavor === "mariadb"
      ? "SELECT @@GLOBAL.gtid_binlog_pos AS executed, @@GLOBAL.gtid_binlog_state AS state, @@GLOBAL.gtid_slave_pos AS slavePos, @@GLOBAL.read_only AS readOnly, @@GLOBAL.server_id AS serverId"
      : "SELECT @@GLOBAL.gtid_executed AS executed, @@GLOBAL.gtid_executed AS state, '' AS slavePos, @@GLOBAL.read_only AS readOnly, @@GLOBAL.server_id AS serverId";
  }

  /**
   * `untilEpochMs` (turning writable): the server turns writable only if the statement runs before
   * that wall-clock time, else it sets read-only; a statement sent just before the node froze and
   * run when it wakes, past its lease, cannot make it writable.
   */
  setReadOnly(on: boolean, untilEpochMs?: number): string[] {
    const off = untilEpochMs === undefined ? "OFF" : `IF(UNIX_TIMESTAMP(NOW(6)) * 1000 < ${Math.floor(untilEpochMs)}, 0, 1)`;
    if (this.flavor === "mysql") return on ? ["SET GLOBAL super_read_only = ON"] : [`SET GLOBAL super_read_only = ${off}`, `SET GLOBAL read_only = ${off}`];
    return [`SET GLOBAL read_only = ${on ? "ON" : off}`];
  }

  /** Waits until the given GTIDs are applied; the query returns 0 on success. */
  waitForApplied(): string {
    return this.flavor === "mariadb" ? "SELECT MASTER_GTID_WAIT(?, ?) AS r" : "SELECT WAIT_FOR_EXECUTED_GTID_SET(?, ?) AS r";
  }

  semiSyncPrimary(on: boolean): string {
    return this.flavor === "mariadb" ? `SET GLOBAL rpl_semi_sync_master_enabled = ${on ? "ON" : "OFF"}` : `SET GLOBAL rpl_semi_sync_source_enabled = ${on ? "ON" : "OFF"}`;
  }

  semiSyncStatus(): string {
    return this.flavor === "mariadb" ? "SELECT @@GLOBAL.rpl_semi_sync_master_enabled AS enabled" : "SELECT @@GLOBAL.rpl_semi_sync_source_enabled AS enabled";
  }

  /** Client connections that could still write: not replication, not system threads, not us. */
  writerConnections(): string {
    return (
      "SELECT ID AS id, USER AS user FROM information_schema.PROCESSLIST WHERE ID <> CONNECTION_ID() " +
      "AND COMMAND NOT IN ('Binlog Dump', 'Binlog Dump GTID', 'Daemon', 'Slave_IO', 'Slave_SQL', 'Slave_worker', 'Killed') " +
      "AND USER NOT IN ('system user', 'event_scheduler', 'unauthenticated user')"
    );
  }
}

/** Server arguments that make a node fit for GTID replication and safe to start in any role. */
export function replicationArgs(flavor: Flavor, opts: { serverId: number; reportHost: string; lossless: boolean; ackTimeoutMs: number }): string[] {
  if (flavor === "mariadb") {
    return [
      `--server-id=${opts.serverId}`,
      `--report-host=${opts.reportHost}`,
      "--log-bin=mysql-bin",
      "--log-slave-updates",
      "--gtid-strict-mode=1",
      "--binlog-format=ROW",
      "--relay-log=relay-bin",
      "--skip-slave-start",
      // Every server starts read-only; only the lock holder turns it off.
      "--read-only=1",
      ...(opts.lossless
        ? [
            "--rpl-semi-sync-slave-enabled=ON",
            "--rpl-semi-sync-master-wait-point=AFTER_SYNC",
            `--rpl-semi-sync-master-timeout=${opts.ackTimeoutMs}`,
            // Crash recovery as a replica rolls back a binlog tail no replica acknowledged.
            "--init-rpl-role=SLAVE",
          ]
        : []),
    ];
  }
  return [
    `--server-id=${opts.serverId}`,
    `--report-host=${opts.reportHost}`,
    "--log-bin=mysql-bin",
    "--log-replica-updates",
    "--gtid-mode=ON",
    "--enforce-gtid-consistency=ON",
    "--relay-log=relay-bin",
    "--skip-replica-start",
    "--super-read-only=ON",
    // CLONE INSTANCE (a rebuild seeds from a peer); a plugin cannot be installed under super_read_only.
    "--plugin-load-add=mysql_clone.so",
    ...(opts.lossless
      ? [
          "--plugin-load-add=semisync_source.so",
          "--plugin-load-add=semisync_replica.so",
          "--rpl-semi-sync-replica-enabled=ON",
          "--rpl-semi-sync-source-wait-point=AFTER_SYNC",
          `--rpl-semi-sync-source-timeout=${opts.ackTimeoutMs}`,
        ]
      : []),
  ];
}
