import type { Flavor } from "../gtid.js";
import type { ReplicationStatus } from "../dialect.js";

/**
 * The database facade the HA core acts through (after Patroni's Postgresql class): the node's own
 * server, its process, and read-only looks at peers. Production implements it over mysql2
 * (`LocalServer`, `remoteState`); the simulation implements it over a model of MySQL.
 */

export interface LocalState {
  readOnly: boolean;
  /** What this server has applied: MariaDB gtid_binlog_pos ∪ gtid_slave_pos / MySQL gtid_executed. */
  executed: string;
  /** MariaDB gtid_binlog_pos alone (MySQL: gtid_executed). */
  binlogPos: string;
  /** MariaDB gtid_binlog_state (per domain and server) / MySQL gtid_executed. */
  state: string;
  slavePos: string;
  serverId: number;
  replication: ReplicationStatus;
  semiSyncPrimary: boolean;
}

export interface RemoteState {
  executed: string;
  state: string;
  readOnly: boolean;
}

export interface Endpoint {
  host: string;
  port: number;
}

export interface Database {
  /** Connects (first call) and returns the server's flavor and version. */
  ready(): Promise<{ flavor: Flavor; version: string }>;
  observe(): Promise<LocalState>;
  /**
   * `writableForMs` (turning writable): the server turns writable only if the statement runs
   * within that time of being sent (else it stays read-only), so a statement held up by a frozen
   * server cannot make it writable past the lease it was sent under.
   */
  setReadOnly(on: boolean, writableForMs?: number, timeoutMs?: number): Promise<void>;
  /**
   * The server's own dead man's switch: it turns read-only `afterMs` from now unless armed again
   * before. Unlike statepilot's watchdog it acts inside mysqld, so a node frozen whole (docker
   * pause) is read-only as it wakes, not once statepilot is scheduled. Resolves once armed.
   */
  armFence(afterMs: number): Promise<void>;
  /** Kills client connections that could still write; returns how many. */
  killWriters(): Promise<number>;
  /** Semi-sync on the primary side; turning it off never throws. */
  semiSyncPrimary(on: boolean): Promise<void>;
  /**
   * Points replication at a source with GTID auto-positioning and starts it. `slavePos`: "binlog"
   * aligns MariaDB's gtid_slave_pos with the binlog; a position string sets it (a restored node).
   */
  replicateFrom(source: Endpoint, slavePos: "binlog" | string | undefined): Promise<void>;
  /**
   * MariaDB, a node restored from a snapshot: while its binlog is still empty, starts it with this
   * binlog state (RESET MASTER; SET GLOBAL gtid_binlog_state). A no-op otherwise.
   */
  seedBinlogState(state: string): Promise<void>;
  startReplica(): Promise<void>;
  stopReceiver(): Promise<void>;
  /** Waits until `gtids` are applied; false on timeout. */
  waitApplied(gtids: string, timeoutMs: number): Promise<boolean>;
  /** Stops replication and forgets the source. */
  resetReplication(): Promise<void>;
  /** A peer's GTID state (as the replication user). */
  remoteState(peer: Endpoint): Promise<RemoteState>;
  close(): void;
}

/** The node's mysqld process as the supervisor runs it. */
export interface ServerProcess {
  running(): boolean;
  /** The running process's id: replication statepilot started belongs to one server process. */
  pid(): number | undefined;
  /** Hard fence: SIGKILL (the supervisor restarts it read-only). */
  kill(): void;
}
