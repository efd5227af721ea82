import { loadConfigFile, validateConfig } from "../config/load.js";
import type { Config, MysqlConfig } from "../config/schema.js";
import { clusterClient } from "../discovery/cluster-store-factory.js";
import { ConsulCoordinator } from "../discovery/consul/coordinator.js";
import { resolveConsulConnection } from "../discovery/consul/connection.js";
import type { ClusterStore } from "../cluster/store.js";
import { removeNode, setClusterPause } from "../mysql/cluster-admin.js";
import { clusterView, switchover, type ClusterView } from "../mysql/switchover.js";
import type { SwitchoverRecord } from "../cluster/records.js";
import { requestSnapshot } from "../snapshot/request.js";
import { requestRebuild, type RebuildResult } from "../mysql/rebuild.js";
import { listSnapshots, restoreSnapshot, type Manifest } from "../snapshot/snapshot.js";
import { createStore, type SnapshotStore } from "../snapshot/store.js";
import { createLogger, type Logger } from "../log.js";

export interface ConnectOptions {
  /** A node's statepilot config file: it names the store (Consul), the cluster and the snapshot store. */
  configFile?: string;
  /** Or the same configuration as an object (validated exactly as a file is). */
  config?: unknown;
  /** Variables the config may refer to, and CONSUL_* settings; default process.env. */
  env?: NodeJS.ProcessEnv;
  /** For long operations (restore); default: a quiet logger (warnings and errors only). */
  logger?: Logger;
}

export interface SwitchoverResult extends SwitchoverRecord {
  /** Milliseconds from the request to the confirmed outcome, as this client saw them. */
  observedMs: number;
}

/** A misuse of the API (bad options, no mysql section): the message says what to pass. */
export class ApiUsageError extends Error {
  override name = "ApiUsageError";
}

/**
 * A MySQL cluster driven from code: one handle per cluster, over its store. Every operation is the
 * one the CLI runs (the CLI is built on this class); results and errors are typed.
 */
export class Cluster {
  private closed = false;
  private snapshotStore: Promise<SnapshotStore> | undefined;

  private constructor(
    readonly name: string,
    private readonly config: Config & { mysql: MysqlConfig },
    private readonly coordinator: ConsulCoordinator,
    private readonly store: ClusterStore,
    private readonly logger: Logger,
  ) {}

  /** Connects to the cluster a node's configuration names. Nothing is written by connecting. */
  static connect(opts: ConnectOptions): Cluster {
    const env = opts.env ?? process.env;
    if ((opts.configFile === undefined) === (opts.config === undefined)) throw new ApiUsageError("connect: pass exactly one of configFile or config");
    const config = opts.configFile !== undefined ? loadConfigFile(opts.configFile, env) : validateConfig(opts.config, "connect({ config })");
    return Cluster.fromConfig(config, { env, ...(opts.logger ? { logger: opts.logger } : {}), source: opts.configFile ?? "the config" });
  }

  /** From a configuration already loaded and validated (what the CLI holds). */
  static fromConfig(config: Config, opts: { env?: NodeJS.ProcessEnv; logger?: Logger; source?: string } = {}): Cluster {
    if (!config.mysql) throw new ApiUsageError(`connect: ${opts.source ?? "the config"} has no mysql section (it names the cluster)`);
    const mysqlConfig = config as Config & { mysql: MysqlConfig };
    const coordinator = new ConsulCoordinator(resolveConsulConnection(config.consul, opts.env ?? process.env));
    const store = clusterClient(coordinator, mysqlConfig.mysql, config.store, opts.env ?? process.env);
    return new Cluster(mysqlConfig.mysql.cluster, mysqlConfig, coordinator, store, opts.logger ?? createLogger({ level: "warn", format: "json" }, process.stderr));
  }

  /** The cluster as the store has it now: primary, members with liveness and age, switchover, pause. */
  view(): Promise<ClusterView> {
    return clusterView(this.store);
  }

  /**
   * Every change of the cluster, as views: the current one first, then one per change (leadership
   * changes at once, members' publications within `pollMs`). Ends when `signal` aborts or on close().
   */
  async *watch(opts: { signal?: AbortSignal; pollMs?: number } = {}): AsyncGenerator<ClusterView> {
    const pollMs = opts.pollMs ?? 1_000;
    let last = -1;
    while (!this.closed && !opts.signal?.aborted) {
      const st = await this.store.load();
      if (st.version !== last) {
        last = st.version;
        yield await clusterView(this.store);
      }
      try {
        await this.store.watch(st.leaderVersion, pollMs, opts.signal);
      } catch (err) {
        if (opts.signal?.aborted) return;
        throw err;
      }
    }
  }

  /** Hands the primary role over with no transaction lost; resolves once the target leads. */
  switchover(opts: { to?: string; timeoutMs?: number; at?: Date } = {}): Promise<SwitchoverResult> {
    return switchover(this.store, this.name, { to: opts.to, timeoutMs: opts.timeoutMs ?? this.config.mysql.switchoverTimeout, at: opts.at });
  }

  /** No automatic failover, cluster-wide, until resume(); fencing stays on. */
  pause(opts: { reason?: string } = {}): Promise<{ changed: boolean }> {
    return setClusterPause(this.store, { paused: true, reason: opts.reason });
  }

  resume(): Promise<{ changed: boolean }> {
    return setClusterPause(this.store, { paused: false });
  }

  /** Forgets a stopped node's record (refused while it is alive or primary). */
  remove(node: string): Promise<void> {
    return removeNode(this.store, this.name, node);
  }

  /**
   * Rebuilds a node's datadir: the node's own statepilot fences it out of the replica set, stops
   * its server, moves its datadir aside, seeds a fresh one (MySQL: a CLONE of a healthy replica,
   * else the primary; otherwise, or when the clone fails, the newest snapshot, else an empty
   * datadir that catches up by GTID), starts the server and replicates again. Resolves once the
   * cluster shows the node as a replica of the primary holding the primary's position; the old
   * datadir is removed then (put back on failure). Refused on the primary and on unknown nodes
   * (ClusterAdminError); a failure on the node is a RebuildError with its reason. A request the
   * node did not take by `timeoutMs` (default 10 min) is withdrawn.
   */
  rebuild(node: string, opts: { timeoutMs?: number; onProgress?: (what: string) => void } = {}): Promise<RebuildResult> {
    return requestRebuild(this.store, this.coordinator, this.name, node, { timeoutMs: opts.timeoutMs ?? 600_000, ...(opts.onProgress ? { onState: opts.onProgress } : {}) });
  }

  /** Snapshots of this cluster in its snapshot store, newest first. */
  async listSnapshots(): Promise<Manifest[]> {
    return listSnapshots(await this.snapshots(), this.name);
  }

  /** Asks the cluster for a snapshot now (a healthy replica takes it); resolves with its manifest. */
  createSnapshot(opts: { timeoutMs?: number } = {}): Promise<Manifest> {
    return requestSnapshot(this.coordinator, this.name, opts.timeoutMs ?? 3_600_000);
  }

  /** Restores a snapshot (the newest by default) into an empty directory. */
  async restoreSnapshot(opts: { datadir: string; id?: string }): Promise<{ manifest: Manifest; gtid: string; durationMs: number }> {
    const store = await this.snapshots();
    const all = await listSnapshots(store, this.name);
    const manifest = opts.id ? all.find((s) => s.id === opts.id) : all[0];
    if (!manifest) throw new ApiUsageError(opts.id ? `restoreSnapshot: no snapshot ${JSON.stringify(opts.id)} in ${store.description}` : `restoreSnapshot: no snapshot of cluster ${this.name} in ${store.description}`);
    const r = await restoreSnapshot({ store, manifest, datadir: opts.datadir, logger: this.logger, runAs: this.config.mysql.runAs });
    return { manifest, gtid: r.gtid, durationMs: r.durationMs };
  }

  close(): void {
    this.closed = true;
    this.coordinator.close();
    this.store.close();
    void this.snapshotStore?.then((s) => s.close());
  }

  private snapshots(): Promise<SnapshotStore> {
    this.snapshotStore ??= createStore(this.config.mysql.snapshots.store);
    return this.snapshotStore;
  }
}

/** Connects to a MySQL cluster: `const cluster = connect({ configFile: "statepilot.json5" })`. */
export function connect(opts: ConnectOptions): Cluster {
  return Cluster.connect(opts);
}
