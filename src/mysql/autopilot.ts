import { renameSync, rmSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { Job as JobSchema, type Config, type MysqlConfig } from "../config/schema.js";
import { formatDuration } from "../config/duration.js";
import { resolveAddress } from "../discovery/address.js";
import { readRecord, type Coordinator } from "../discovery/coordination.js";
import { ServiceHealth } from "../discovery/service-health.js";
import type { Logger } from "../log.js";
import type { Supervisor } from "../supervisor/supervisor.js";
import type { Metrics } from "../telemetry/metrics.js";
import type { TelemetryServer } from "../telemetry/server.js";
import { BACKUP_USER, backupPassword, CLONE_USER, clonePassword } from "./accounts.js";
import { resolveCredentials } from "./credentials.js";
import { MysqlHa } from "./ha/loop.js";
import { failsafeRoute, HttpFailsafePeers } from "./failsafe-http.js";
import { resolveTelemetryToken } from "../telemetry/auth.js";
import { primaryCheck, replicaCheck, type HaStatus } from "./ha/status.js";
import { MysqlDatabase } from "./ha/mysql-database.js";
import { haSettings } from "./ha/settings.js";
import { systemClock } from "../cluster/clock.js";
import { createClusterStore } from "../discovery/cluster-store-factory.js";
import { LocalServer } from "./local.js";
import { MysqlMetrics } from "./metrics.js";
import { createStore, type SnapshotStore } from "../snapshot/store.js";
import { restoreSnapshot, SnapshotError, listSnapshots, type Manifest } from "../snapshot/snapshot.js";
import { SnapshotMetrics, SnapshotScheduler, snapshotKeys } from "../snapshot/scheduler.js";
import { RebuildWorker, type PreSeed } from "./rebuild.js";
import type { ClusterState } from "../cluster/store.js";
import { ArchiveMetrics, BinlogArchiver } from "../archive/archiver.js";
import { startFromArchive } from "./start-from-archive.js";
import {
  allocateServerId,
  discardInterruptedRestore,
  inspectDatadir,
  markRestoring,
  restoreFinished,
  binaryVersion,
  bootstrapCluster,
  bootstrapLocal,
  datadirOwner,
  initializeDatadir,
  mysqldArgv,
  mysqldBinary,
  readNodeState,
  socketPath,
  writeNodeState,
  type NodeState,
} from "./provision.js";

export const MYSQLD_JOB = "mysqld";


/**
 * Wires the MySQL autopilot into the supervisor: provisions the datadir, adds mysqld as the main
 * job, runs the HA loop, and serves the load-balancer checks on the telemetry endpoint.
 */
export class MysqlAutopilot {
  private ha: MysqlHa | undefined;
  /** The cluster secret of failsafe mode (undefined: off). */
  private failsafeSecret: string | undefined;
  /** Where members reach this node; the HTTP port is known once telemetry listens. */
  private advertise: { host: string; port: number; httpPort?: number | undefined } | undefined;
  private scheduler: SnapshotScheduler | undefined;
  private rebuilder: RebuildWorker | undefined;
  private archiver: BinlogArchiver | undefined;

  private constructor(
    readonly cfg: MysqlConfig,
    private readonly logger: Logger,
  ) {}

  /** Validates credentials, initialises an empty datadir and registers the mysqld job. */
  static async prepare(config: Config, supervisor: Supervisor, opts: { env: NodeJS.ProcessEnv; source: string; logger: Logger; metrics?: Metrics | undefined }): Promise<MysqlAutopilot> {
    const cfg = config.mysql!;
    const creds = resolveCredentials(cfg, opts.env, opts.source);
    const failsafeSecret = cfg.failsafe.enabled ? resolveTelemetryToken(cfg.failsafe, opts.env, opts.source, "mysql.failsafe") : undefined;
    const log = opts.logger.child({ component: "mysql" });
    const ap = new MysqlAutopilot(cfg, log);
    const binary = mysqldBinary(cfg);
    const version = await binaryVersion(binary);
    log.info({ binary, flavor: version.flavor, version: version.version }, "mysql server found");
    const advertise: { host: string; port: number; httpPort?: number | undefined } = { host: resolveAddress(cfg.interfaces), port: cfg.port };
    ap.advertise = advertise;
    ap.failsafeSecret = failsafeSecret;

    const coordinator = supervisor.coordination();
    const store = await createStore(cfg.snapshots.store);
    const snapshotMetrics = opts.metrics ? new SnapshotMetrics(opts.metrics.registry) : undefined;
    discardInterruptedRestore(cfg.datadir, log);
    const empty = inspectDatadir(cfg.datadir) === "empty";
    const { restoreOnEmpty, restoreFrom } = cfg.snapshots;
    const own = empty && (restoreOnEmpty || restoreFrom) ? await ap.withConsulRetry("looking for a snapshot to restore", () => latestSnapshot(cfg, store, coordinator)) : undefined;
    const source = restoreOnEmpty ? own : undefined;
    const fromArchive = empty && !own && restoreFrom;
    if (source || fromArchive) markRestoring(cfg.datadir);
    const restored = source ? await restore({ cfg, store, manifest: source, logger: log, metrics: snapshotMetrics }) : undefined;
    if (fromArchive) await startFromArchive({ cfg, from: fromArchive, ownStore: store, mysqld: binary, logger: log });
    if (source || fromArchive) restoreFinished(cfg.datadir);
    const fresh = restored || fromArchive ? false : await initializeDatadir(cfg, version, binary, log);
    let state = readNodeState(cfg.datadir);
    if (!state || state.cluster !== cfg.cluster) {
      const serverId = cfg.serverId ?? (await ap.withConsulRetry("server_id allocation", () => allocateServerId(supervisor.coordination(), cfg.cluster, supervisor.node)));
      // A datadir statepilot did not create already has its root password.
      state = {
        cluster: cfg.cluster,
        serverId,
        bootstrapped: state?.bootstrapped ?? !fresh,
        createdAt: new Date().toISOString(),
        ...(restored ? { restoredFrom: { id: restored.id, gtid: restored.gtid, pending: true, ...(restored.binlogState ? { binlogState: restored.binlogState } : {}) } } : {}),
      };
      writeNodeState(cfg.datadir, state);
    }
    if (cfg.serverId !== undefined && cfg.serverId !== state.serverId) {
      state = { ...state, serverId: cfg.serverId };
      writeNodeState(cfg.datadir, state);
    }
    const nodeState: NodeState = state;
    log.info({ serverId: nodeState.serverId, advertise }, "node identity");

    const argv = mysqldArgv(cfg, { binary, flavor: version.flavor, serverId: nodeState.serverId, reportHost: advertise.host });
    supervisor.addInternalJob(
      JobSchema.parse({ name: MYSQLD_JOB, exec: argv, main: true, output: "wrapped", restarts: "unlimited", stopTimeout: formatDuration(cfg.stopTimeout), backoff: { initial: "1s", max: "15s" } }),
    );

    let onSwitchFired: (() => void) | undefined;
    const local = new LocalServer(
      socketPath(cfg),
      () => (nodeState.bootstrapped ? creds.rootPassword : ""),
      (e) => {
        if (e.kind === "fired") {
          log.warn("the server's fence switch fired: its lease was not confirmed in time, the server made itself read-only");
          onSwitchFired?.();
        } else log.warn({ err: e.message }, "the server's fence switch lost its connection (re-armed at the next lease confirmation; the watchdog still fences)");
      },
    );
    const serviceHealth = (name: string, jobName: string, tags: string[]) =>
      new ServiceHealth({
        jobName,
        node: supervisor.node,
        health: { interval: cfg.interval, ttl: cfg.checkTtl, timeout: cfg.interval },
        service: { name, port: cfg.port, interfaces: cfg.interfaces, tags, meta: { cluster: cfg.cluster, "server-id": String(nodeState.serverId) }, enableTagOverride: false, initialStatus: "critical", deregisterCriticalServiceAfter: undefined },
        // With registrations in etcd the cluster store publishes these instances itself (same keys).
        coordinator: supervisor.registersInEtcd() ? undefined : supervisor.coordination(),
        bus: supervisor.bus,
        logger: opts.logger,
        env: () => supervisor.env(),
        processUp: () => undefined,
        onConsulError: (op) => supervisor.observer.consulError?.(op),
      });
    const health = serviceHealth(cfg.serviceName, "mysql", ["starting"]);
    const primaryHealth = serviceHealth(`${cfg.serviceName}-primary`, "mysql-primary", ["primary"]);
    // Maintenance takes the node out of the replica pools; the primary's write service stays (it
    // keeps taking writes until a switchover moves them), and the operator is told so.
    supervisor.followMaintenance(health);
    supervisor.bus.subscribe(
      "mysql-maintenance",
      () => {
        if (ap.ha?.statusView().role === "primary") log.warn("maintenance on the primary: it keeps its role and its writes (mysql-primary stays registered); run `statepilot mysql switchover` to move them");
      },
      (e) => e.code === "enterMaintenance",
    );

    const clusterStore = createClusterStore({ coordinator: supervisor.coordination(), node: supervisor.node, cfg, health, store: config.store, env: opts.env });
    const metrics = opts.metrics ? new MysqlMetrics(opts.metrics.registry) : undefined;
    onSwitchFired = () => metrics?.fencing.inc({ reason: "server_switch" });
    ap.ha = new MysqlHa(
      {
        settings: haSettings(cfg, clusterStore.timing),
        node: supervisor.node,
        serverId: nodeState.serverId,
        advertise,
        store: clusterStore,
        db: new MysqlDatabase(local, creds),
        process: { running: () => supervisor.jobRunning(MYSQLD_JOB), pid: () => supervisor.jobPid(MYSQLD_JOB), kill: () => supervisor.killJob(MYSQLD_JOB) },
        clock: systemClock,
        logger: opts.logger,
        metrics,
        hooks: {
          roleChanged: (role) => {
            health.setTags([role]);
            if (role !== "primary" && primaryHealth.isRegistered) void primaryHealth.stop(true);
          },
          leading: () => void primaryHealth.report({ status: "passing", output: "primary", durationMs: 0 }),
        },
        inMaintenance: () => supervisor.inMaintenance,
        failsafePeers: failsafeSecret ? new HttpFailsafePeers(failsafeSecret) : undefined,
        bootstrapLocal: async () => {
          const dialect = await local.ready();
          await bootstrapLocal(local, dialect, creds, { rootHosts: cfg.credentials.rootHosts, onChange: (what) => log.warn({ account: what }, "account removed: not in the configuration") });
          if (!nodeState.bootstrapped) {
            nodeState.bootstrapped = true;
            writeNodeState(cfg.datadir, nodeState);
          }
          log.info({ rootHosts: cfg.credentials.rootHosts }, "accounts match the configuration");
        },
        bootstrapCluster: async () => {
          const r = await bootstrapCluster({ socket: socketPath(cfg), creds, initDir: cfg.initDir, logger: log });
          log.info({ database: creds.database, user: creds.user, scripts: r.scripts.length }, "cluster bootstrapped");
        },
        clusterMemory: {
          load: () => nodeState.clusterMemory,
          save: (memory) => {
            nodeState.clusterMemory = memory;
            writeNodeState(cfg.datadir, nodeState);
          },
        },
        restored: {
          pending: () => (nodeState.restoredFrom?.pending ? { gtid: nodeState.restoredFrom.gtid, state: nodeState.restoredFrom.binlogState ?? "" } : undefined),
          applied: () => {
            if (!nodeState.restoredFrom) return;
            nodeState.restoredFrom = { ...nodeState.restoredFrom, pending: false };
            writeNodeState(cfg.datadir, nodeState);
          },
        },
      },
      // Accounts are checked on every start, not only on the first: an existing datadir is
      // brought to what the configuration says as well.
      false,
    );
    supervisor.bus.subscribe("mysql-ha", () => ap.ha?.mysqldExited(), (e) => e.source === MYSQLD_JOB && (e.code === "exitFailed" || e.code === "exitSuccess"));
    ap.scheduler = new SnapshotScheduler({
      cfg: cfg.snapshots,
      cluster: cfg.cluster,
      serviceName: cfg.serviceName,
      node: supervisor.node,
      coordinator,
      store,
      local,
      backup: { socket: socketPath(cfg), datadir: cfg.datadir, user: BACKUP_USER, password: backupPassword(creds) },
      server: () => ap.ha?.serverVersion,
      ha: () => {
        const st = ap.ha!.statusView();
        return { role: st.role, health: st.health };
      },
      checkId: health.checkId,
      logger: opts.logger,
      metrics: snapshotMetrics,
    });
    if (cfg.snapshots.archive.enabled) {
      if (version.flavor !== "mariadb") log.warn("mysql.snapshots.archive: the binlog archive supports MariaDB only; not started");
      else {
        ap.archiver = new BinlogArchiver({
          cfg: cfg.snapshots.archive,
          cluster: cfg.cluster,
          node: supervisor.node,
          serverId: nodeState.serverId,
          datadir: cfg.datadir,
          store,
          clusterStore,
          repl: { user: creds.replUser, password: creds.replPassword },
          ha: () => {
            const st = ap.ha!.statusView();
            return { role: st.role, health: st.health };
          },
          logger: opts.logger,
          metrics: opts.metrics ? new ArchiveMetrics(opts.metrics.registry) : undefined,
        });
        supervisor.addStatus("archive", () => ap.archiver?.status());
      }
    }
    // `statepilot mysql rebuild NODE`: this node replaces its own datadir, seeded as at start-up.
    ap.rebuilder = new RebuildWorker({
      cluster: cfg.cluster,
      node: supervisor.node,
      coordinator,
      store: clusterStore,
      ha: ap.ha,
      datadir: cfg.datadir,
      stopServer: () => supervisor.pauseJob(MYSQLD_JOB),
      startServer: (serverId) => supervisor.resumeJob(MYSQLD_JOB, mysqldArgv(cfg, { binary, flavor: version.flavor, serverId, reportHost: advertise.host })),
      // MySQL: a copy of a healthy replica (else the primary) by CLONE INSTANCE into a new
      // directory while this server still runs; it becomes the datadir once the server stopped.
      ...(version.flavor === "mysql"
        ? {
            preSeed: async (cluster: ClusterState, dir: string, stage: (what: string) => void): Promise<PreSeed> => {
              const leader = cluster.leader;
              if (!leader) return { dir: undefined, note: "no primary to clone from" };
              const replica = cluster.members.find((m) => m.node !== supervisor.node && m.alive && m.record.up && m.record.role === "replica" && m.record.source === leader.node && !m.record.blocked && !m.record.sqlError);
              const donor = replica ? { node: replica.node, host: replica.record.host, port: replica.record.port } : { node: leader.node, host: leader.record.host, port: leader.record.port };
              stage(`cloning ${donor.node} (CLONE INSTANCE from ${donor.host}:${donor.port}) into ${dir}`);
              try {
                rmSync(dir, { recursive: true, force: true });
                await local.query("SET GLOBAL clone_valid_donor_list = ?", [`${donor.host}:${donor.port}`]);
                await local.query("CLONE INSTANCE FROM ?@?:? IDENTIFIED BY ? DATA DIRECTORY = ?", [CLONE_USER, donor.host, donor.port, clonePassword(creds), dir], 3_600_000);
                return { dir, seed: `CLONE of ${donor.node}` };
              } catch (err) {
                rmSync(dir, { recursive: true, force: true });
                return { dir: undefined, note: `CLONE of ${donor.node} failed (${err instanceof Error ? err.message : String(err)})` };
              }
            },
          }
        : {}),
      seed: async (stage, pre) => {
        if (pre?.dir) {
          renameSync(pre.dir, cfg.datadir);
          const serverId = cfg.serverId ?? (await allocateServerId(coordinator, cfg.cluster, supervisor.node));
          delete nodeState.restoredFrom;
          // The clone carries the donor's accounts: the root password is the cluster's.
          Object.assign(nodeState, { cluster: cfg.cluster, serverId, bootstrapped: true, createdAt: new Date().toISOString() } satisfies NodeState);
          writeNodeState(cfg.datadir, nodeState);
          return { seed: pre.seed, serverId, fromPeer: true };
        }
        const tried = pre && pre.dir === undefined ? `${pre.note}; ` : "";
        stage(`${tried}looking for a snapshot to seed from`);
        const manifest = cfg.snapshots.restoreOnEmpty ? await latestSnapshot(cfg, store, coordinator) : undefined;
        if (manifest) stage(`restoring snapshot ${manifest.id} (gtid ${manifest.gtid})`);
        else stage("no snapshot: initialising an empty datadir (it catches up by GTID)");
        const restoredNow = manifest ? await restore({ cfg, store, manifest, logger: log, metrics: snapshotMetrics }) : undefined;
        if (!restoredNow) await initializeDatadir(cfg, version, binary, log);
        // A datadir new to the cluster gets a server_id never used before (see allocateServerId).
        const serverId = cfg.serverId ?? (await allocateServerId(coordinator, cfg.cluster, supervisor.node));
        const next: NodeState = {
          cluster: cfg.cluster,
          serverId,
          bootstrapped: restoredNow !== undefined,
          createdAt: new Date().toISOString(),
          ...(restoredNow ? { restoredFrom: { id: restoredNow.id, gtid: restoredNow.gtid, pending: true, ...(restoredNow.binlogState ? { binlogState: restoredNow.binlogState } : {}) } } : {}),
        };
        delete nodeState.restoredFrom;
        Object.assign(nodeState, next);
        writeNodeState(cfg.datadir, nodeState);
        return { seed: `${tried}${restoredNow ? `snapshot ${restoredNow.id} (gtid ${restoredNow.gtid})` : "empty datadir, catching up by GTID"}`, serverId };
      },
      // A clone carries its donor's replication metadata (relay log positions this node has no
      // relay logs for): reset before the HA loop configures replication from the primary.
      afterStart: async (seeded, deadline) => {
        if (!seeded.fromPeer) return;
        for (;;) {
          try {
            await local.query("SELECT 1");
            break;
          } catch (err) {
            if (Date.now() > deadline) throw new Error(`the cloned server did not answer: ${err instanceof Error ? err.message : String(err)}`);
            await sleep(250);
          }
        }
        await local.query("RESET REPLICA ALL");
      },
      reloadState: () => {
        const old = readNodeState(cfg.datadir);
        delete nodeState.restoredFrom;
        if (old) Object.assign(nodeState, old);
        return nodeState.serverId;
      },
      flavor: () => ap.ha?.flavor ?? version.flavor,
      logger: opts.logger,
    });
    supervisor.onStopping(async () => {
      await ap.rebuilder?.stop();
      await ap.scheduler?.stop();
      await ap.archiver?.stop();
      await ap.ha?.stop();
      store.close();
      clusterStore.close();
    });
    supervisor.addStatus("mysql", () => ap.status());
    return ap;
  }

  private async withConsulRetry<T>(what: string, fn: () => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await fn();
      } catch (err) {
        if (attempt >= 60) throw err;
        this.logger.warn({ err: err instanceof Error ? err.message : String(err), attempt }, `${what}: Consul not reachable yet; retrying`);
        await sleep(Math.min(5_000, 250 * attempt));
      }
    }
  }

  start(): void {
    this.ha?.start();
    this.scheduler?.start();
    this.rebuilder?.start();
    this.archiver?.start();
  }

  /** Telemetry listens on `port`: members (a failsafe primary) reach this node there. */
  httpListening(port: number): void {
    if (this.advertise) this.advertise.httpPort = port;
  }

  status(): HaStatus | undefined {
    return this.ha?.statusView();
  }

  /**
   * /primary, /replica[?lag=S], /read-only, /health: 200 or 503, for HAProxy or ProxySQL. /primary
   * answers 200 only while the leadership is confirmed (younger than fenceAfter); replicas in
   * maintenance answer 503 on /replica and /read-only.
   */
  serveChecks(server: TelemetryServer): void {
    const secret = this.failsafeSecret;
    if (secret) {
      server.addPostRoute(
        "/failsafe",
        failsafeRoute(secret, (r) => {
          if (!this.ha) throw new Error("the HA loop is not running yet");
          return this.ha.answerFailsafe(r);
        }),
      );
    }
    const answer = (ok: boolean) => ({ status: ok ? 200 : 503, body: this.status() ?? {} });
    const replicaOk = replicaCheck;
    const primaryOk = primaryCheck;
    server.addRoute("/primary", () => {
      const s = this.status();
      return answer(!!s && primaryOk(s));
    });
    server.addRoute("/replica", (q) => {
      const s = this.status();
      const raw = q.get("lag");
      const maxLag = raw === null ? this.cfg.healthyLag / 1000 : Number(raw);
      if (!Number.isFinite(maxLag) || maxLag < 0) throw new Error(`lag: expected a number of seconds, got ${JSON.stringify(raw)}`);
      return answer(!!s && replicaOk(s, maxLag));
    });
    server.addRoute("/read-only", () => {
      const s = this.status();
      return answer(!!s && (primaryOk(s) || replicaOk(s, this.cfg.healthyLag / 1000)));
    });
    server.addRoute("/health", () => {
      const s = this.status();
      return answer(!!s && s.up);
    });
  }
}

/** The snapshot an empty datadir in an initialised cluster starts from: Consul's latest, else the store's newest. */
async function latestSnapshot(cfg: MysqlConfig, store: SnapshotStore, coordinator: Coordinator): Promise<Manifest | undefined> {
  const { entry: initialized } = await coordinator.read(`statepilot/${cfg.cluster}/initialized`);
  if (!initialized) return undefined;
  const { value } = await readRecord<Manifest>(coordinator, snapshotKeys(cfg.cluster).latest);
  return value ?? (await listSnapshots(store, cfg.cluster))[0];
}

/** Restores into the empty datadir; a failure stops start-up with the reason (the datadir is left empty). */
async function restore(o: { cfg: MysqlConfig; store: SnapshotStore; manifest: Manifest; logger: Logger; metrics: SnapshotMetrics | undefined }): Promise<{ id: string; gtid: string; binlogState: string | undefined }> {
  const { manifest } = o;
  o.logger.info({ id: manifest.id, gtid: manifest.gtid, sizeBytes: manifest.size, store: o.store.description }, "empty datadir: restoring the latest snapshot");
  try {
    const r = await restoreSnapshot({ store: o.store, manifest, datadir: o.cfg.datadir, logger: o.logger, runAs: datadirOwner(o.cfg) });
    o.metrics?.restores.inc();
    o.metrics?.throughput.set({ operation: "restore" }, manifest.rawSize / Math.max(0.001, r.durationMs / 1000));
    o.logger.info({ id: manifest.id, gtid: r.gtid, bytes: r.bytes, durationMs: r.durationMs, stagesMs: r.stagesMs, mbPerSecond: +(manifest.rawSize / 1048576 / Math.max(0.001, r.durationMs / 1000)).toFixed(1) }, "restore done");
    // The manifest's state is as of its GTID; a restore that found another position has none.
    return { id: manifest.id, gtid: r.gtid, binlogState: r.gtid === manifest.gtid ? manifest.binlogState : undefined };
  } catch (err) {
    o.metrics?.failures.inc({ stage: err instanceof SnapshotError ? err.stage : "restore" });
    throw err;
  }
}
