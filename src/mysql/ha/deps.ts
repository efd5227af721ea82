import type { Clock } from "../../cluster/clock.js";
import type { ClusterStore } from "../../cluster/store.js";
import type { Role } from "../../cluster/records.js";
import type { Logger } from "../../log.js";
import type { MysqlMetrics } from "../metrics.js";
import type { Database, ServerProcess } from "./database.js";
import type { HaSettings } from "./settings.js";
import type { FailsafePeers } from "./failsafe.js";
import type { LeaderRecord, MemberRecord } from "../../cluster/records.js";

/** The cluster as a node last saw it in an initialised store: the last leader and every member's record. */
export interface ClusterMemory {
  lastLeader: LeaderRecord | undefined;
  members: readonly MemberRecord[];
}

/**
 * Test-only switches that break one safety mechanism each. The simulation plants them to prove it
 * catches the violation; production never sets them (the autopilot passes none).
 */
export interface PlantedFaults {
  /** The lease watchdog never fences (nor does the server's dead man's switch, which it arms). */
  watchdogNeverFences?: boolean;
  /** The server's dead man's switch is never armed (the watchdog in statepilot still is). */
  serverFenceSwitchOff?: boolean;
  /** The loop keeps no memory of the cluster: a store that comes back empty is trusted as a new cluster. */
  forgetsWipedStore?: boolean;
  /** Promotion does not drain what the relay log received before turning writable. */
  promotionIgnoresReceived?: boolean;
  /** A primary turns writable without turning semi-sync on first. */
  writableWithoutSemiSync?: boolean;
  /** Fencing keeps the clients' connections and turns semi-sync off first (their waiting commits complete). */
  fenceKeepsConnections?: boolean;
  /** A rebuild ignores that the node leads: accepted on the primary, whose loop then neither fences nor releases while it rebuilds. */
  rebuildIgnoresLeadership?: boolean;
  /** A node being rebuilt throws its data away at once, without waiting for another replica to hold what it received. */
  rebuildWipesUnheld?: boolean;
  /** Failsafe: a member that accepted a primary still runs for primary (it keeps no promise). */
  failsafeBreaksPromise?: boolean;
}

export interface HaHooks {
  /** The role changed (production: Consul tags, the mysql-primary registration). */
  roleChanged?(role: Role): void;
  /** Each loop of a confirmed primary (production: refreshes the mysql-primary check). */
  leading?(): void;
}

export interface HaDeps {
  settings: HaSettings;
  node: string;
  serverId: number;
  /** Where members reach this node: mysqld's address, and the node's HTTP port (failsafe requests). */
  advertise: { host: string; port: number; httpPort?: number | undefined };
  store: ClusterStore;
  db: Database;
  process: ServerProcess;
  clock: Clock;
  logger: Logger;
  metrics?: MysqlMetrics | undefined;
  hooks?: HaHooks;
  /** Maintenance mode: the node does not run for primary (a primary keeps its role: switch over first). */
  inMaintenance: () => boolean;
  /** Once per datadir, before anything else is done with the server. */
  bootstrapLocal: () => Promise<void>;
  /** On the cluster's first primary, before it turns writable. */
  bootstrapCluster: () => Promise<void>;
  /**
   * Where the loop keeps its memory of the cluster across its own restarts (production: the node
   * state file in the datadir), so that a store that lost its data is recognised even then.
   */
  clusterMemory?: { load(): ClusterMemory | undefined; save(memory: ClusterMemory): void };
  restored: {
    /**
     * A node restored from a snapshot, until it replicated once: the backup's GTID position and
     * the binlog state its binlog starts with (the position alone when the snapshot has none).
     */
    pending(): { gtid: string; state: string } | undefined;
    applied(): void;
  };
  faults?: PlantedFaults;
  /** How a primary in failsafe mode reaches the other members without the store. */
  failsafePeers?: FailsafePeers | undefined;
}
