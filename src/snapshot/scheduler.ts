import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import type { SnapshotsConfig } from "../config/schema.js";
import { formatDuration } from "../config/duration.js";
import { readRecord, type Coordinator, type ServiceInstance } from "../discovery/coordination.js";
import type { Logger } from "../log.js";
import type { Flavor } from "../mysql/gtid.js";
import type { LocalServer } from "../mysql/local.js";
import type { Role } from "../mysql/metrics.js";
import { pruneSnapshots, SnapshotError, takeSnapshot, type Manifest } from "./snapshot.js";
import type { SnapshotStore } from "./store.js";

export class SnapshotMetrics {
  readonly duration: Histogram;
  readonly size: Gauge;
  readonly throughput: Gauge;
  readonly latestAge: Gauge;
  readonly failures: Counter;
  readonly taken: Counter;
  readonly restores: Counter;
  latestCreatedAt: number | undefined;

  constructor(registry: Registry) {
    const registers = [registry];
    this.duration = new Histogram({ name: "statepilot_snapshot_duration_seconds", help: "Duration of snapshots this node took.", buckets: [1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600], registers });
    this.size = new Gauge({ name: "statepilot_snapshot_size_bytes", help: "Stored size of the last snapshot this node took.", registers });
    this.throughput = new Gauge({ name: "statepilot_snapshot_throughput_bytes_per_second", help: "Backup stream rate of the last snapshot (or restore) on this node.", labelNames: ["operation"], registers });
    const self = this;
    this.latestAge = new Gauge({
      name: "statepilot_snapshot_latest_age_seconds",
      help: "Age of the cluster's latest good snapshot as this node last saw it; NaN when there is none.",
      registers,
      collect() {
        this.set(self.latestCreatedAt === undefined ? Number.NaN : (Date.now() - self.latestCreatedAt) / 1000);
      },
    });
    this.failures = new Counter({ name: "statepilot_snapshot_failures_total", help: "Failed snapshots and restores, by stage.", labelNames: ["stage"], registers });
    this.taken = new Counter({ name: "statepilot_snapshots_total", help: "Snapshots this node completed.", registers });
    this.restores = new Counter({ name: "statepilot_snapshot_restores_total", help: "Restores of this node from a snapshot.", registers });
  }
}

export interface SnapshotRequest {
  id: string;
  requestedAt: string;
  /** The client stops waiting then: a request nobody started by this time is not started any more. */
  expiresAt?: string;
  state: "requested" | "running" | "done" | "failed";
  node?: string;
  snapshotId?: string;
  error?: string;
}

export function snapshotKeys(cluster: string) {
  const base = `statepilot/${cluster}/snapshots`;
  return { latest: `${base}/latest`, lock: `${base}/lock`, request: `${base}/request` };
}

export interface SchedulerDeps {
  cfg: SnapshotsConfig;
  cluster: string;
  serviceName: string;
  node: string;
  coordinator: Coordinator;
  store: SnapshotStore;
  local: LocalServer;
  backup: { socket: string; datadir: string; user: string; password: string };
  server: () => { flavor: Flavor; version: string } | undefined;
  ha: () => { role: Role; health: string };
  /** The node's TTL check: the snapshot lock's session follows it, so a dead node's lock is freed. */
  checkId: string | undefined;
  logger: Logger;
  metrics: SnapshotMetrics | undefined;
}

/** A request whose client gave up waiting: taking it now would surprise (and load) the cluster later. */
export function requestExpired(r: Pick<SnapshotRequest, "expiresAt">, now: number): boolean {
  const at = r.expiresAt === undefined ? Number.NaN : Date.parse(r.expiresAt);
  return Number.isFinite(at) && now >= at;
}

/** Due checks in a row without a healthy replica before the primary takes a snapshot itself. */
const PRIMARY_AFTER_CHECKS = 3;

/** Only this cluster's replicas count: another cluster may register the same service name. */
export function hasHealthyReplica(instances: ReadonlyArray<Pick<ServiceInstance, "healthy" | "tags" | "meta">>, cluster: string): boolean {
  return instances.some((i) => i.healthy && i.tags.includes("replica") && i.meta.cluster === cluster);
}

/**
 * Decides when this node takes the cluster's snapshot: when one is requested, when the latest is
 * older than `interval`, or after enough binlog since; only a healthy replica does it (the primary
 * only when no healthy replica exists), and only the holder of the cluster's snapshot lock.
 */
export class SnapshotScheduler {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private readonly log: Logger;
  private binlogBaseline: { latestId: string | undefined; file: string; bytes: number } | undefined;
  private readonly keys: ReturnType<typeof snapshotKeys>;
  private stopped = false;
  private watching: Promise<void> | undefined;
  private readonly abort = new AbortController();
  /** After a failure, scheduled snapshots wait (checkEvery × 2^n, at most 5 min) before trying again. */
  private failures = 0;
  private retryAfter = 0;

  constructor(private readonly d: SchedulerDeps) {
    this.log = d.logger.child({ component: "snapshot" });
    this.keys = snapshotKeys(d.cluster);
  }

  start(): void {
    this.timer = setInterval(() => this.check(), this.d.cfg.checkEvery);
    this.watching = this.watchRequests();
  }

  private check(): void {
    this.running ??= this.tick()
      .then(() => undefined)
      .catch((err: unknown) => this.log.warn({ err: err instanceof Error ? err.message : String(err) }, "snapshot check failed"))
      .finally(() => (this.running = undefined));
  }

  /** A request is acted on when it is written (a blocking read on its key), not at the next check. */
  private async watchRequests(): Promise<void> {
    let index = 0;
    while (!this.stopped) {
      try {
        const r = await this.d.coordinator.read(this.keys.request, { index, wait: "30s", signal: this.abort.signal });
        if (this.stopped) return;
        if (r.index !== index) {
          const first = index === 0;
          index = r.index;
          if (!first && r.entry?.value?.includes('"requested"')) this.check();
        }
      } catch (err) {
        if (this.stopped) return;
        this.log.debug({ err: err instanceof Error ? err.message : String(err) }, "snapshot request watch failed; retrying");
        index = 0;
        await new Promise((r) => setTimeout(r, this.d.cfg.checkEvery).unref());
      }
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    this.abort.abort();
    await Promise.all([this.running, this.watching]);
  }

  /** Binlog files and bytes on this node since it first saw the current latest snapshot. */
  private async binlogSince(latestId: string | undefined): Promise<{ rotations: number; bytes: number }> {
    const rows = await this.d.local.query("SHOW BINARY LOGS");
    const files = rows.map((r) => ({ name: String(r.Log_name), size: Number(r.File_size) }));
    const total = files.reduce((a, f) => a + f.size, 0);
    const last = files[files.length - 1]?.name ?? "";
    if (!this.binlogBaseline || this.binlogBaseline.latestId !== latestId) this.binlogBaseline = { latestId, file: last, bytes: total };
    const base = this.binlogBaseline;
    return { rotations: files.filter((f) => f.name > base.file).length, bytes: Math.max(0, total - base.bytes) };
  }

  private async due(latest: Manifest | undefined, request: SnapshotRequest | undefined): Promise<string | undefined> {
    if (request?.state === "requested" && !requestExpired(request, Date.now())) return `requested (${request.id})`;
    const c = this.d.cfg;
    if (c.interval !== undefined) {
      if (!latest) return "no snapshot yet";
      const age = Date.now() - Date.parse(latest.createdAt);
      if (age >= c.interval) return `latest is ${formatDuration(age)} old (interval ${formatDuration(c.interval)})`;
    }
    if (c.afterBinlogRotations !== undefined || c.afterBinlogBytes !== undefined) {
      const since = await this.binlogSince(latest?.id);
      if (c.afterBinlogRotations !== undefined && since.rotations >= c.afterBinlogRotations) return `${since.rotations} binlog rotations since the latest`;
      if (c.afterBinlogBytes !== undefined && since.bytes >= c.afterBinlogBytes) return `${since.bytes} binlog bytes since the latest`;
    }
    return undefined;
  }

  /**
   * A healthy replica takes snapshots; the primary only when there is none: for an operator's
   * request at once, for a scheduled one after PRIMARY_AFTER_CHECKS due checks in a row found none
   * (a replica that lags for a moment on a busy host does not hand the primary a backup's load).
   */
  private async eligible(requested: boolean): Promise<boolean> {
    const ha = this.d.ha();
    if (ha.health !== "passing") return false;
    if (ha.role === "replica") return true;
    if (ha.role !== "primary") return false;
    const { instances } = await this.d.coordinator.watchService(this.d.serviceName, { index: 0, wait: "1s" });
    this.withoutReplica = hasHealthyReplica(instances, this.d.cluster) ? 0 : this.withoutReplica + 1;
    return this.withoutReplica > 0 && (requested || this.withoutReplica >= PRIMARY_AFTER_CHECKS);
  }

  /** Checks in a row (due ones, on the primary) that found no healthy replica. */
  private withoutReplica = 0;

  async tick(): Promise<Manifest | undefined> {
    if (this.stopped) return undefined;
    const [{ value: latest }, { value: request, modifyIndex: requestIndex }] = await Promise.all([
      readRecord<Manifest>(this.d.coordinator, this.keys.latest),
      readRecord<SnapshotRequest>(this.d.coordinator, this.keys.request),
    ]);
    if (latest && this.d.metrics) this.d.metrics.latestCreatedAt = Date.parse(latest.createdAt);
    const reason = await this.due(latest, request);
    if (!reason || !(await this.eligible(request?.state === "requested"))) return undefined;
    if (request?.state !== "requested" && Date.now() < this.retryAfter) return undefined;
    const server = this.d.server();
    if (!this.d.checkId || !server) return undefined;
    const session = await this.d.coordinator.createSession({ name: `statepilot snapshot ${this.d.cluster} ${this.d.node}`, checkIds: [this.d.checkId], lockDelay: "0s" });
    let locked = false;
    try {
      locked = await this.d.coordinator.acquire(this.keys.lock, JSON.stringify({ node: this.d.node, startedAt: new Date().toISOString() }), session);
    } finally {
      if (!locked) await this.d.coordinator.destroySession(session).catch(() => undefined);
    }
    if (!locked) return undefined;
    try {
      if (request?.state === "requested") {
        await this.d.coordinator.writeCas(this.keys.request, JSON.stringify({ ...request, state: "running", node: this.d.node }), requestIndex);
      }
      this.log.info({ reason, store: this.d.store.description }, "taking a snapshot");
      // Holding the cluster's snapshot lock, no other upload can be running: leftovers of one that
      // could not be aborted (the store was down) are removed now.
      const stale = await this.d.store.abortIncomplete(`${this.d.cluster}/`).catch(() => 0);
      if (stale) this.log.info({ aborted: stale }, "removed incomplete uploads of earlier failed snapshots");
      let manifest: Manifest;
      try {
        manifest = await takeSnapshot({
          store: this.d.store,
          cluster: this.d.cluster,
          node: this.d.node,
          flavor: server.flavor,
          version: server.version,
          ...this.d.backup,
          compression: this.d.cfg.compression,
          partSize: this.d.cfg.partSize,
          logger: this.log,
          binlogState: async () => String((await this.d.local.query("SELECT @@GLOBAL.gtid_binlog_state AS s"))[0]?.s ?? "").replace(/\s+/g, ""),
        });
      } catch (err) {
        const stage = err instanceof SnapshotError ? err.stage : "backup";
        const message = err instanceof Error ? err.message : String(err);
        this.d.metrics?.failures.inc({ stage });
        this.failures++;
        const backoff = Math.min(300_000, this.d.cfg.checkEvery * 2 ** this.failures);
        this.retryAfter = Date.now() + backoff;
        this.log.error({ stage, err: message, retryIn: formatDuration(backoff) }, "snapshot failed; the database keeps serving");
        if (request?.state === "requested") await this.d.coordinator.write(this.keys.request, JSON.stringify({ ...request, state: "failed", node: this.d.node, error: message }));
        return undefined;
      }
      this.failures = 0;
      this.retryAfter = 0;
      await this.d.coordinator.write(this.keys.latest, JSON.stringify(manifest));
      const m = this.d.metrics;
      if (m) {
        m.taken.inc();
        m.duration.observe(manifest.durationMs / 1000);
        m.size.set(manifest.size);
        m.throughput.set({ operation: "backup" }, manifest.rawSize / Math.max(0.001, manifest.durationMs / 1000));
        m.latestCreatedAt = Date.parse(manifest.createdAt);
      }
      if (request?.state === "requested") await this.d.coordinator.write(this.keys.request, JSON.stringify({ ...request, state: "done", node: this.d.node, snapshotId: manifest.id }));
      let pruned: string[] = [];
      try {
        pruned = await pruneSnapshots(this.d.store, this.d.cluster, this.d.cfg.keepLast, this.d.cfg.keepDays);
      } catch (err) {
        this.d.metrics?.failures.inc({ stage: "prune" });
        this.log.warn({ err: err instanceof Error ? err.message : String(err) }, "pruning old snapshots failed");
      }
      this.log.info(
        { id: manifest.id, gtid: manifest.gtid, sizeBytes: manifest.size, rawBytes: manifest.rawSize, durationMs: manifest.durationMs, mbPerSecond: +(manifest.rawSize / 1048576 / Math.max(0.001, manifest.durationMs / 1000)).toFixed(1), sha256: manifest.sha256, pruned },
        "snapshot done",
      );
      return manifest;
    } finally {
      await this.d.coordinator.release(this.keys.lock, "", session).catch(() => undefined);
      await this.d.coordinator.destroySession(session).catch(() => undefined);
    }
  }
}
