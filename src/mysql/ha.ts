import type { MysqlConfig } from "../config/schema.js";
import { formatDuration } from "../config/duration.js";
import { parseRecord, readRecord, type CheckStatus, type Coordinator, type LockEntry } from "../discovery/coordination.js";
import type { HealthResult, ServiceHealth } from "../discovery/service-health.js";
import type { Logger } from "../log.js";
import type { MysqlCredentials } from "./credentials.js";
import type { Dialect } from "./dialect.js";
import { decideRace, received, type MemberRecord, type Peer, type PrimaryRecord } from "./election.js";
import { gtidSubset, mariaStateContained } from "./gtid.js";
import { remoteState, waitForRemote, type LocalServer, type LocalState } from "./local.js";
import type { MysqlMetrics, Role } from "./metrics.js";

export interface SwitchoverRecord {
  id: string;
  /** Requested target; the primary picks the best replica when absent. */
  to?: string | undefined;
  state: "requested" | "handover" | "done" | "failed";
  requestedAt: string;
  from?: string;
  position?: string;
  fencedAt?: number;
  promotedAt?: number;
  unavailableMs?: number;
  error?: string;
}

export interface HaStatus {
  node: string;
  role: Role;
  up: boolean;
  readOnly: boolean | undefined;
  health: CheckStatus;
  reason: string;
  primary: { node: string; host: string; port: number; term: number } | undefined;
  lagSeconds: number | null;
  replication: { io: string; sql: boolean; ioError: string; sqlError: string } | undefined;
  executed: string;
  received: string;
  blocked: string;
  lastFailoverMs: number | undefined;
}

export interface HaDeps {
  cfg: MysqlConfig;
  node: string;
  serverId: number;
  advertise: { host: string; port: number };
  creds: MysqlCredentials;
  coordinator: Coordinator;
  local: LocalServer;
  /** The node's `mysql` service: its TTL check is what the session follows. */
  health: ServiceHealth;
  /** `<service>-primary`, registered only while primary. */
  primaryHealth: ServiceHealth;
  logger: Logger;
  metrics: MysqlMetrics | undefined;
  mysqldRunning: () => boolean;
  /** Maintenance mode: the node does not run for primary (a primary keeps its role: switch over first). */
  inMaintenance: () => boolean;
  /** The running mysqld's pid: replication that statepilot started belongs to one server process. */
  mysqldPid: () => number | undefined;
  /** Hard fence: SIGKILL mysqld (it restarts read-only). */
  killMysqld: () => void;
  /** Once per datadir, before anything else is done with the server. */
  bootstrapLocal: () => Promise<void>;
  /** On the cluster's first primary, before it turns writable. */
  bootstrapCluster: () => Promise<void>;
  /** The GTID a node restored from a snapshot replicates from, until it has done so once. */
  restoredGtid: () => string | undefined;
  restoredGtidApplied: () => void;
}

const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(t);
      resolve();
    }, { once: true });
  });

/**
 * A member record as published. The sequence makes every publication a new value: Consul keeps a
 * key's ModifyIndex when the same value is written again, and freshness is judged by that index.
 */
export function memberPayload(record: MemberRecord, seq: number): string {
  return JSON.stringify({ ...record, seq });
}

const errText = (err: unknown): string => (err instanceof Error ? err.message : String(err));

/**
 * The HA loop, after Patroni's ha.py: every `interval` it observes the local server and the lock,
 * decides from that alone, acts, and refreshes the TTL check the lock's session follows. A watchdog
 * fences a primary that cannot confirm its lock within `fenceAfter`, which the config guarantees is
 * shorter than the time any other node needs to take the lock.
 */
export class MysqlHa {
  private readonly keys: { lock: string; members: string; initialized: string; switchover: string };
  private session: string | undefined;
  private role: Role = "starting";
  private running = false;
  private wake = new AbortController();
  private loopDone: Promise<void> | undefined;
  private watchdog: NodeJS.Timeout | undefined;
  private leaseConfirmedAt = 0;
  private fencing: Promise<void> | undefined;
  private lastState: LocalState | undefined;
  private lastLock: { entry: LockEntry | undefined; primary: PrimaryRecord | undefined; index: number } | undefined;
  private lockFree: { index: number; since: number } | undefined;
  private blocked = "";
  private lastIoRunningAt = Date.now();
  /** The mysqld pid on which statepilot last started replication (skip-slave-start: a restart stops it). */
  private replicationStartedOn: number | undefined;
  private lastKnownLag = 0;
  private checks = 0;
  private lastFailoverMs: number | undefined;
  private status: { health: CheckStatus; reason: string } = { health: "critical", reason: "starting" };
  private readonly log: Logger;
  private dialect: Dialect | undefined;
  private bootstrapped = false;
  /** This process has held the primary role (a later divergence is then a former primary's tail). */
  private wasPrimary = false;
  /** Once true it stays true: the initialized key is never removed. */
  private clusterInitializedSeen = false;

  constructor(private readonly d: HaDeps, bootstrapped: boolean) {
    const base = `statepilot/${d.cfg.cluster}`;
    this.keys = { lock: `${base}/primary`, members: `${base}/members/`, initialized: `${base}/initialized`, switchover: `${base}/switchover` };
    this.log = d.logger.child({ component: "mysql-ha" });
    this.bootstrapped = bootstrapped;
  }

  get currentRole(): Role {
    return this.role;
  }

  /** What the snapshot scheduler needs: role, health, and the session its lock can use. */
  get view(): { role: Role; health: string; session: string | undefined } {
    return { role: this.role, health: this.status.health, session: this.session };
  }

  get serverVersion(): { flavor: "mariadb" | "mysql"; version: string } | undefined {
    return this.dialect ? { flavor: this.dialect.flavor, version: this.dialect.server.version } : undefined;
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.watchdog = setInterval(() => this.checkLease(), 100);
    this.loopDone = this.loop();
  }

  /** The local mysqld exited: act now rather than at the next tick. */
  mysqldExited(): void {
    this.wake.abort();
  }

  private async loop(): Promise<void> {
    while (this.running) {
      let delay = this.d.cfg.interval;
      try {
        delay = await this.iteration();
      } catch (err) {
        this.log.warn({ err: errText(err) }, "HA loop iteration failed");
      }
      if (!this.running) break;
      await this.waitForChange(delay);
    }
  }

  /** Sleeps up to `ms`, waking early when the lock key changes or a local event arrives. */
  private async waitForChange(ms: number): Promise<void> {
    if (this.wake.signal.aborted) this.wake = new AbortController();
    const signal = this.wake.signal;
    const index = this.lastLock?.entry ? this.lastLock.index : undefined;
    if (index === undefined || ms < 200) return sleep(ms, signal);
    const started = Date.now();
    try {
      // Returns when the lock key changes (or the wait ends): a released lock is seen at once.
      await this.d.coordinator.read(this.keys.lock, { index, wait: formatDuration(ms), signal });
    } catch {
      // Consul unreachable (or woken by a local event): do not spin; sleep out the rest.
      const left = ms - (Date.now() - started);
      if (left > 0 && !signal.aborted) await sleep(left, signal);
    }
  }

  // ---- observing ------------------------------------------------------------------------------

  private async observeLocal(): Promise<{ state: LocalState | undefined; error: string }> {
    if (!this.d.mysqldRunning()) return { state: undefined, error: "mysqld is not running" };
    try {
      if (!this.bootstrapped) {
        await this.d.bootstrapLocal();
        this.bootstrapped = true;
      }
      this.dialect ??= await this.d.local.ready();
      const state = await this.d.local.observe();
      return { state, error: "" };
    } catch (err) {
      return { state: undefined, error: `mysqld does not answer: ${errText(err)}` };
    }
  }

  private async readLock(): Promise<{ entry: LockEntry | undefined; primary: PrimaryRecord | undefined; index: number }> {
    const { entry, index } = await this.d.coordinator.read(this.keys.lock);
    const primary = parseRecord<PrimaryRecord>(entry?.value);
    const r = { entry, primary, index: entry ? Math.max(index, entry.modifyIndex) : index };
    this.lastLock = r;
    return r;
  }

  private memberRecord(state: LocalState | undefined): MemberRecord {
    const rep = state?.replication;
    return {
      node: this.d.node,
      serverId: this.d.serverId,
      host: this.d.advertise.host,
      port: this.d.advertise.port,
      role: this.role,
      up: state !== undefined,
      executed: state?.executed ?? "",
      received: rep?.received ?? "",
      lagSeconds: this.lagSeconds(state),
      sqlError: rep && !rep.sqlRunning && rep.sqlErrno ? rep.sqlError : "",
      nofailover: this.d.cfg.nofailover,
      blocked: this.blocked,
    };
  }

  /** Seconds behind, or since the receiver last ran when it is down (the primary is 0). */
  private lagSeconds(state: LocalState | undefined): number | null {
    if (!state) return null;
    if (this.role === "primary") return 0;
    const rep = state.replication;
    if (!rep.configured) return null;
    if (rep.lagSeconds !== null && rep.ioRunning === "Yes") return rep.lagSeconds;
    return Math.round(this.lastKnownLag + (Date.now() - this.lastIoRunningAt) / 1000);
  }

  private publications = 0;

  private async publish(state: LocalState | undefined): Promise<void> {
    try {
      await this.d.coordinator.write(`${this.keys.members}${this.d.node}`, memberPayload(this.memberRecord(state), ++this.publications));
    } catch (err) {
      this.log.debug({ err: errText(err) }, "could not publish member record");
    }
  }

  private async peers(): Promise<Peer[]> {
    const [{ entries }, { instances }] = await Promise.all([
      this.d.coordinator.list(this.keys.members),
      this.d.coordinator.watchService(this.d.cfg.serviceName, { index: 0, wait: "1s" }),
    ]);
    const alive = new Map<string, boolean>();
    for (const i of instances) {
      const node = i.meta["statepilot-node"];
      if (node) alive.set(node, i.checks.every((c) => c.status !== "critical"));
    }
    const out: Peer[] = [];
    for (const e of entries) {
      // A record that cannot be read does not vote.
      const record = parseRecord<MemberRecord>(e.value);
      if (record) out.push({ record, modifyIndex: e.modifyIndex, alive: alive.get(record.node) ?? false });
    }
    return out;
  }

  // ---- reporting ------------------------------------------------------------------------------

  private setRole(role: Role): void {
    if (role === this.role) return;
    this.log.info({ from: this.role, to: role }, "role changed");
    this.role = role;
    if (role === "primary") this.wasPrimary = true;
    this.d.metrics?.setRole(role);
    const tag = role === "primary" ? ["primary"] : role === "replica" ? ["replica"] : [role];
    this.d.health.setTags(tag);
    if (role !== "primary" && this.d.primaryHealth.isRegistered) void this.d.primaryHealth.stop(true);
  }

  private async report(health: CheckStatus, reason: string): Promise<boolean> {
    this.status = { health, reason };
    const result: HealthResult = { status: health, output: `${this.role}: ${reason}`, durationMs: 0 };
    return this.d.health.report(result);
  }

  private updateMetrics(state: LocalState | undefined): void {
    const m = this.d.metrics;
    if (!m) return;
    m.up.set(state ? 1 : 0);
    if (!state) return;
    m.readOnly.set(state.readOnly ? 1 : 0);
    m.threadRunning.set({ thread: "io" }, state.replication.ioRunning === "Yes" ? 1 : 0);
    m.threadRunning.set({ thread: "sql" }, state.replication.sqlRunning ? 1 : 0);
    const lag = this.lagSeconds(state);
    m.lag.set(lag ?? Number.NaN);
  }

  // ---- the loop -------------------------------------------------------------------------------

  private async iteration(): Promise<number> {
    const t0 = Date.now();
    this.checks++;
    const { state, error } = await this.observeLocal();
    this.lastState = state;
    if (state?.replication.ioRunning === "Yes") {
      this.lastIoRunningAt = Date.now();
      this.lastKnownLag = state.replication.lagSeconds ?? 0;
    }
    this.updateMetrics(state);

    let lock;
    try {
      lock = await this.readLock();
    } catch (err) {
      // Without Consul nothing can be decided; the watchdog fences a primary in time.
      this.status = { health: "critical", reason: `Consul unreachable: ${errText(err)}` };
      this.log.warn({ err: errText(err) }, "cannot read the lock");
      return this.d.cfg.interval;
    }
    const holder = lock.entry?.session;
    const mine = holder !== undefined && holder === this.session;

    if (!state) return this.whenDown(error, mine, lock.entry);
    if (mine) return this.asPrimary(t0, state);
    if (holder) return this.asReplica(state, lock.primary);
    return this.whenFree(state, lock);
  }

  private async whenDown(error: string, mine: boolean, entry: LockEntry | undefined): Promise<number> {
    if (this.role === "primary" || mine) {
      // A primary whose server hangs may still accept writes: kill it before giving up the lock.
      if (this.d.mysqldRunning()) {
        this.d.metrics?.fencing.inc({ reason: "server_unresponsive" });
        this.log.error({ error }, "primary's server does not answer: killing it before releasing the lock");
        this.d.killMysqld();
        for (let i = 0; i < 100 && this.d.mysqldRunning(); i++) await sleep(20);
      }
      if (mine && entry && !this.d.mysqldRunning()) await this.releaseLock(entry.value ?? "");
    }
    // Still starting (crash recovery, first boot) is not "down".
    if (this.role !== "starting" || !this.d.mysqldRunning()) this.setRole("down");
    await this.report("critical", error);
    await this.publish(undefined);
    return this.d.cfg.interval;
  }

  private async releaseLock(value: string): Promise<void> {
    if (!this.session) return;
    try {
      await this.d.coordinator.release(this.keys.lock, value, this.session);
      this.log.info("lock released");
    } catch (err) {
      this.log.warn({ err: errText(err) }, "lock release failed; the check's failure will free it");
    }
  }

  /** A session that follows this node's check; created only while the check is not critical. */
  private async ensureSession(): Promise<string | undefined> {
    if (this.session) {
      try {
        if ((await this.d.coordinator.renewSession(this.session)) === "ok") return this.session;
      } catch (err) {
        this.log.debug({ err: errText(err) }, "session renewal failed");
        return undefined;
      }
      this.log.info({ session: this.session }, "session is gone");
      this.session = undefined;
    }
    if (this.status.health === "critical" || !this.d.health.checkId) return undefined;
    try {
      this.session = await this.d.coordinator.createSession({
        name: `statepilot ${this.d.cfg.cluster} ${this.d.node}`,
        checkIds: [this.d.health.checkId],
        ttl: formatDuration(this.d.cfg.sessionTtl),
        lockDelay: formatDuration(this.d.cfg.lockDelay),
      });
      this.log.debug({ session: this.session }, "session created");
    } catch (err) {
      this.log.debug({ err: errText(err) }, "session creation failed");
    }
    return this.session;
  }

  /** Report, renew, and re-read: only then is the lock confirmed as of `t0`. */
  private async confirmLease(t0: number): Promise<boolean> {
    if (!(await this.report("passing", "primary, lock held"))) return false;
    if (!this.session || (await this.d.coordinator.renewSession(this.session)) !== "ok") return false;
    const { entry } = await this.readLock();
    if (entry?.session !== this.session) return false;
    this.leaseConfirmedAt = t0;
    return true;
  }

  private async asPrimary(t0: number, state: LocalState): Promise<number> {
    let confirmed = false;
    try {
      confirmed = await this.confirmLease(t0);
    } catch (err) {
      this.log.warn({ err: errText(err) }, "could not confirm the lock");
    }
    if (!confirmed) return this.d.cfg.interval;
    if (this.role !== "primary" || state.readOnly) {
      // Held the lock but was fenced (Consul was unreachable for a while): writable again.
      await this.becomeWritable(undefined);
    }
    this.lockFree = undefined;
    await this.d.primaryHealth.report({ status: "passing", output: "primary", durationMs: 0 });
    await this.publish(state);
    await this.handleSwitchover();
    return this.d.cfg.interval;
  }

  private async asReplica(state: LocalState, primary: PrimaryRecord | undefined): Promise<number> {
    this.lockFree = undefined;
    await this.fenceWithoutLock(state, "writable without the lock", "lock_held_elsewhere");
    await this.ensureSession();
    if (!primary) {
      await this.report("warning", "lock held but its value is unreadable");
      await this.publish(state);
      return this.d.cfg.interval;
    }
    const rep = state.replication;
    const pointsThere = rep.configured && rep.sourceHost === primary.host && rep.sourcePort === primary.port;
    const source = { host: primary.host, port: primary.port, user: this.d.creds.replUser, password: this.d.creds.replPassword };
    let health: CheckStatus = "passing";
    let reason = `replicating from ${primary.node}`;
    try {
      if (!pointsThere || this.checks % 10 === 0 || this.role === "diverged" || this.role === "fenced" || this.role === "starting") {
        this.blocked = await this.divergence(state, source);
      }
      if (this.blocked) {
        this.setRole("diverged");
        await this.report("critical", this.blocked);
        await this.publish(state);
        return this.d.cfg.interval;
      }
      if (!pointsThere) {
        const restored = this.d.restoredGtid();
        const slavePos = restored ?? (this.dialect?.flavor === "mariadb" && !gtidSubset("mariadb", state.binlogPos, state.slavePos) ? "binlog" : undefined);
        this.log.info({ primary: primary.node, host: primary.host, port: primary.port, slavePos }, "replicating from the primary");
        await this.d.local.replicateFrom(source, slavePos);
        this.replicationStartedOn = this.d.mysqldPid();
        if (restored) this.d.restoredGtidApplied();
        if (state.semiSyncPrimary) await this.d.local.semiSyncPrimary(false);
        this.lastIoRunningAt = Date.now();
        this.setRole("replica");
        // Passing only once the next look confirms both threads run.
        health = "warning";
        reason = `replication to ${primary.node} started`;
      } else {
        this.setRole("replica");
        if (rep.sqlErrno) {
          health = "critical";
          reason = `replication SQL thread stopped: ${rep.sqlError}`;
        } else if (rep.ioRunning === "No" && !rep.sqlRunning && !rep.ioError && this.replicationStartedOn !== this.d.mysqldPid()) {
          // Stopped because this server process was (re)started with skip-slave-start: resume it.
          await this.d.local.startReplica();
          this.replicationStartedOn = this.d.mysqldPid();
          health = "warning";
          reason = `replication from ${primary.node} resumed after a server restart`;
        } else if (rep.ioRunning === "No" && !rep.sqlRunning && !rep.ioError) {
          health = "warning";
          reason = "replication was stopped by hand; statepilot leaves it stopped (START SLAVE to resume)";
        } else if (rep.ioRunning !== "Yes") {
          health = "warning";
          reason = `replication receiver ${rep.ioRunning === "Connecting" ? "connecting" : "stopped"}${rep.ioError ? `: ${rep.ioError}` : ""}`;
          if (rep.ioRunning === "No") {
            await this.d.local.startReplica();
            this.replicationStartedOn = this.d.mysqldPid();
          }
        } else if (!rep.sqlRunning) {
          health = "warning";
          reason = "replication applier stopped";
          await this.d.local.startReplica();
          this.replicationStartedOn = this.d.mysqldPid();
        } else {
          const lag = this.lagSeconds(state) ?? 0;
          if (lag * 1000 > this.d.cfg.healthyLag) {
            health = "warning";
            reason = `lagging ${lag}s behind ${primary.node}`;
          } else reason = `replicating from ${primary.node}, ${lag}s behind`;
        }
      }
    } catch (err) {
      health = "warning";
      reason = `replication setup failed: ${errText(err)}`;
      this.log.warn({ err: errText(err) }, "replication setup failed");
    }
    await this.report(health, reason);
    await this.publish(state);
    return this.d.cfg.interval;
  }

  /** Why this node's data is not contained in the primary's (diverged tail, errant GTIDs), or "". */
  private async divergence(state: LocalState, source: { host: string; port: number; user: string; password: string }): Promise<string> {
    if (!this.dialect) return "";
    let remote;
    try {
      remote = await remoteState(source, this.dialect);
    } catch (err) {
      // Unreachable primary: nothing learned; keep the previous verdict.
      this.log.debug({ err: errText(err) }, "cannot read the primary's GTID state");
      return this.blocked;
    }
    if (this.dialect.flavor === "mariadb") {
      const c = mariaStateContained(state.state, remote.state);
      if (c.contained) return "";
      const former = this.wasPrimary && c.missing.some((g) => g.split("-")[1] === String(this.d.serverId));
      return `${former ? "diverged former primary: " : ""}errant GTIDs: this node has transactions the primary does not have (${c.missing.join(", ")}); it stays read-only until rebuilt from a snapshot`;
    }
    return gtidSubset("mysql", state.executed, remote.executed) ? "" : `errant GTIDs: ${state.executed} is not contained in the primary's ${remote.executed}; it stays read-only until rebuilt`;
  }

  private async clusterInitialized(): Promise<boolean> {
    if (this.clusterInitializedSeen) return true;
    const { entry } = await this.d.coordinator.read(this.keys.initialized);
    this.clusterInitializedSeen = entry !== undefined;
    return this.clusterInitializedSeen;
  }

  private async switchoverRecord(): Promise<{ record: SwitchoverRecord | undefined; modifyIndex: number }> {
    const { value, modifyIndex } = await readRecord<SwitchoverRecord>(this.d.coordinator, this.keys.switchover);
    return { record: value, modifyIndex };
  }

  private async whenFree(observed: LocalState, lock: { entry: LockEntry | undefined; primary: PrimaryRecord | undefined; index: number }): Promise<number> {
    // Observe again now that the lock is known to be free: a position read before the old primary
    // stopped could miss a transaction this node received (and acknowledged) just before.
    const state = await this.d.local.observe().catch(() => observed);
    this.lastState = state;
    await this.fenceWithoutLock(state, "writable while nobody holds the lock", "lock_lost");
    this.lockFree ??= { index: lock.index, since: Date.now() };
    if (this.role === "starting") this.setRole("replica");
    const rep = state.replication;
    const health: CheckStatus = rep.sqlErrno ? "critical" : "passing";
    await this.report(health, rep.sqlErrno ? `SQL thread stopped: ${rep.sqlError}` : "no primary; election under way");
    await this.publish(state);
    if (this.d.inMaintenance()) {
      this.log.debug("in maintenance: not racing for the lock");
      return 250;
    }
    const [peers, initialized, sw] = await Promise.all([this.peers(), this.clusterInitialized(), this.switchoverRecord()]);
    const handover = sw.record?.state === "handover" && Date.now() - Date.parse(sw.record.requestedAt) < this.d.cfg.switchoverTimeout * 2 ? sw.record : undefined;
    const decision = decideRace({
      flavor: this.dialect?.flavor ?? "mariadb",
      self: this.memberRecord(state),
      peers,
      freeIndex: this.lockFree.index,
      freeForMs: Date.now() - this.lockFree.since,
      peerWaitMs: this.d.cfg.checkTtl + this.d.cfg.interval,
      maximumLagSeconds: this.d.cfg.maximumLagOnFailover / 1000,
      lastPrimary: lock.primary,
      clusterInitialized: initialized,
      switchoverTarget: handover?.to,
    });
    if (!decision.race) {
      this.log.debug({ reason: decision.reason }, "not racing for the lock");
      return decision.wait ? 100 : 250;
    }
    if (handover && !(await this.d.local.waitApplied(handover.position ?? "", this.d.cfg.switchoverTimeout))) {
      this.log.warn({ position: handover.position }, "switchover target could not apply the old primary's position in time");
      return 250;
    }
    const session = await this.ensureSession();
    if (!session) return 250;
    const value = this.primaryRecord(state, lock.entry?.lockIndex ?? 0);
    let acquired = false;
    try {
      acquired = await this.d.coordinator.acquire(this.keys.lock, JSON.stringify(value), session);
    } catch (err) {
      this.log.debug({ err: errText(err) }, "acquire failed");
    }
    if (!acquired) return 100;
    this.log.info({ reason: decision.reason }, "lock acquired; promoting");
    await this.promote(state, handover);
    return this.d.cfg.interval;
  }

  private primaryRecord(state: LocalState, prevLockIndex: number): PrimaryRecord {
    return {
      node: this.d.node,
      serverId: this.d.serverId,
      host: this.d.advertise.host,
      port: this.d.advertise.port,
      flavor: this.dialect?.flavor ?? "mariadb",
      version: this.dialect?.server.version ?? "",
      gtid: state.executed,
      term: prevLockIndex + 1,
      promotedAt: new Date().toISOString(),
    };
  }

  /** Drain what was received, stop replicating, bootstrap a new cluster, confirm the lock, turn writable. */
  private async promote(state: LocalState, handover: SwitchoverRecord | undefined): Promise<void> {
    const freeSince = this.lockFree?.since ?? Date.now();
    try {
      const rep = state.replication;
      if (rep.configured) {
        await this.d.local.stopReceiver();
        const after = await this.d.local.observe();
        const want = received(this.dialect!.flavor, { executed: after.executed, received: after.replication.received });
        if (!(await this.d.local.waitApplied(want, this.d.cfg.promoteTimeout))) {
          throw new Error(`relay log not applied within ${formatDuration(this.d.cfg.promoteTimeout)}`);
        }
        await this.d.local.resetReplication();
      }
      const now = await this.d.local.observe();
      if (!(await this.clusterInitialized())) {
        if (now.executed === "") {
          this.log.info("first primary of the cluster: creating the database, users and running init scripts");
          await this.d.bootstrapCluster();
        }
        await this.d.coordinator.write(this.keys.initialized, JSON.stringify({ node: this.d.node, at: new Date().toISOString() }));
        this.clusterInitializedSeen = true;
      }
      const final = await this.d.local.observe();
      const entry = (await this.readLock()).entry;
      if (!entry || entry.session !== this.session) throw new Error("lock lost during promotion");
      const value = { ...this.primaryRecord(final, entry.lockIndex - 1), term: entry.lockIndex };
      await this.d.coordinator.acquire(this.keys.lock, JSON.stringify(value), this.session!);
      await this.becomeWritable(handover);
      const ms = Date.now() - freeSince;
      this.lastFailoverMs = ms;
      this.d.metrics?.failovers.inc();
      this.d.metrics?.lastFailover.set(ms / 1000);
      this.log.info({ durationMs: ms, gtid: final.executed, term: entry.lockIndex }, "promoted to primary");
    } catch (err) {
      this.log.error({ err: errText(err) }, "promotion failed; giving the lock back");
      await this.fence("promotion failed", "promotion_failed");
      await this.releaseLock("");
      this.setRole("replica");
    }
  }

  private async becomeWritable(handover: SwitchoverRecord | undefined): Promise<void> {
    const t0 = Date.now();
    if (!(await this.confirmLease(t0))) throw new Error("could not confirm the lock before turning writable");
    if (this.d.cfg.lossless.enabled) await this.d.local.semiSyncPrimary(true);
    // The only place read_only is turned off, and only right after the lock was confirmed.
    await this.d.local.setReadOnly(false);
    this.setRole("primary");
    this.blocked = "";
    await this.d.primaryHealth.report({ status: "passing", output: "primary", durationMs: 0 });
    if (handover) {
      const promotedAt = Date.now();
      const rec: SwitchoverRecord = { ...handover, state: "done", promotedAt, unavailableMs: handover.fencedAt ? promotedAt - handover.fencedAt : undefined };
      await this.d.coordinator.write(this.keys.switchover, JSON.stringify(rec));
      this.d.metrics?.switchovers.inc({ side: "target", outcome: "done" });
      this.log.info({ unavailableMs: rec.unavailableMs, from: handover.from }, "switchover complete");
    }
  }

  // ---- fencing --------------------------------------------------------------------------------

  /** This node does not hold the lock: a primary fences by policy, any other writable server goes read-only. */
  private async fenceWithoutLock(state: LocalState, writableReason: string, label: string): Promise<void> {
    if (this.role === "primary") await this.fence("lock lost", label, "policy");
    else if (!state.readOnly) await this.fence(writableReason, label, "read-only");
  }

  private checkLease(): void {
    if (this.role !== "primary") return;
    const age = Date.now() - this.leaseConfirmedAt;
    const takeover = Math.min(this.d.cfg.checkTtl, this.d.cfg.sessionTtl) + this.d.cfg.lockDelay;
    if (age > takeover) {
      // Past the earliest moment another node could hold the lock: this process was paused (SIGSTOP,
      // a frozen VM) or starved. mysqld may resume serving any instant, so it is killed, not asked.
      this.setRole("fenced");
      this.d.metrics?.fencing.inc({ reason: "paused_past_takeover" });
      this.log.error({ leaseAgeMs: age, takeoverMs: takeover }, "lease older than the takeover time: killing mysqld");
      this.d.killMysqld();
      return;
    }
    if (!this.fencing && age > this.d.cfg.fenceAfter) {
      void this.fence(`could not confirm the lock for ${formatDuration(age)} (fenceAfter ${formatDuration(this.d.cfg.fenceAfter)})`, "lease_expired");
    }
  }

  /**
   * Read-only, writers killed, semi-sync off; if the server does not obey, it is killed. A primary
   * that lost its lock is killed outright under `fenceBy: kill` (auto in lossless mode): a commit
   * still waiting for a replica's ack would otherwise complete locally once its client is killed,
   * leaving a tail no replica has; after SIGKILL, recovery as a replica rolls it back.
   */
  fence(reason: string, label: string, how: "policy" | "read-only" = "policy"): Promise<void> {
    this.fencing ??= (async () => {
      const started = Date.now();
      const wasPrimary = this.role === "primary";
      if (wasPrimary) this.setRole("fenced");
      this.d.metrics?.fencing.inc({ reason: label });
      const kill = how === "policy" && wasPrimary && (this.d.cfg.fenceBy === "kill" || (this.d.cfg.fenceBy === "auto" && this.d.cfg.lossless.enabled));
      if (kill) {
        this.log.warn({ reason }, "fenced: killing mysqld (it restarts read-only, as a replica)");
        this.d.killMysqld();
        return;
      }
      try {
        await this.d.local.setReadOnly(true);
        const killed = await this.d.local.killWriters();
        await this.d.local.semiSyncPrimary(false);
        this.log.warn({ reason, killedConnections: killed, durationMs: Date.now() - started }, "fenced: read-only");
      } catch (err) {
        this.d.metrics?.fencing.inc({ reason: "kill_server" });
        this.log.error({ reason, err: errText(err) }, "could not make the server read-only; killing it");
        this.d.killMysqld();
      }
    })().finally(() => (this.fencing = undefined));
    return this.fencing;
  }

  // ---- switchover -----------------------------------------------------------------------------

  private async handleSwitchover(): Promise<void> {
    const { record, modifyIndex } = await this.switchoverRecord();
    if (!record || record.state !== "requested") return;
    const fail = async (error: string) => {
      this.log.warn({ error }, "switchover refused");
      this.d.metrics?.switchovers.inc({ side: "primary", outcome: "failed" });
      await this.d.coordinator.writeCas(this.keys.switchover, JSON.stringify({ ...record, state: "failed", error, from: this.d.node }), modifyIndex);
    };
    const peers = (await this.peers()).filter((p) => p.record.node !== this.d.node && p.alive && p.record.up && !p.record.blocked && !p.record.nofailover && !p.record.sqlError && p.record.role === "replica");
    const flavor = this.dialect!.flavor;
    const target = record.to
      ? peers.find((p) => p.record.node === record.to)
      : [...peers].sort((a, b) => (gtidSubset(flavor, received(flavor, a.record), received(flavor, b.record)) ? 1 : -1))[0];
    if (!target) {
      await fail(record.to ? `${record.to} is not a healthy replica that may be promoted` : "no healthy replica to hand over to");
      return;
    }
    const to = target.record;
    this.log.info({ to: to.node }, "switchover: fencing and handing over");
    const fencedAt = Date.now();
    await this.fence(`switchover to ${to.node}`, "switchover", "read-only");
    const position = (await this.d.local.observe()).executed;
    const handover: SwitchoverRecord = { ...record, to: to.node, state: "handover", from: this.d.node, position, fencedAt };
    if (!(await this.d.coordinator.writeCas(this.keys.switchover, JSON.stringify(handover), modifyIndex))) {
      await this.unfenceAfterAbort("switchover record changed under us");
      return;
    }
    // The target must have everything before it may take the lock: nothing acknowledged is lost.
    const deadline = Date.now() + this.d.cfg.switchoverTimeout;
    const source = { host: to.host, port: to.port, user: this.d.creds.replUser, password: this.d.creds.replPassword };
    const caught = await waitForRemote(source, this.dialect!, (remote) => gtidSubset(flavor, position, remote.executed), deadline);
    if (!caught) {
      await this.d.coordinator.write(this.keys.switchover, JSON.stringify({ ...handover, state: "failed", error: `${to.node} did not catch up within ${formatDuration(this.d.cfg.switchoverTimeout)}` }));
      await this.unfenceAfterAbort(`${to.node} did not catch up`);
      return;
    }
    const entry = (await this.readLock()).entry;
    await this.releaseLock(entry?.value ?? "");
    if (this.session) {
      await this.d.coordinator.destroySession(this.session).catch(() => undefined);
      this.session = undefined;
    }
    this.d.metrics?.switchovers.inc({ side: "primary", outcome: "handed_over" });
    this.setRole("replica");
    this.wake.abort();
  }

  private async unfenceAfterAbort(why: string): Promise<void> {
    this.log.warn({ why }, "switchover aborted; staying primary");
    this.d.metrics?.switchovers.inc({ side: "primary", outcome: "failed" });
    if (await this.confirmLease(Date.now())) {
      await this.d.local.setReadOnly(false);
      this.setRole("primary");
    }
  }

  // ---- status and shutdown --------------------------------------------------------------------

  statusView(): HaStatus {
    const s = this.lastState;
    const p = this.lastLock?.entry?.session ? this.lastLock.primary : undefined;
    const rep = s?.replication;
    return {
      node: this.d.node,
      role: this.role,
      up: s !== undefined,
      readOnly: s?.readOnly,
      health: this.status.health,
      reason: this.status.reason,
      primary: p ? { node: p.node, host: p.host, port: p.port, term: p.term } : undefined,
      lagSeconds: this.lagSeconds(s),
      replication: rep?.configured ? { io: rep.ioRunning, sql: rep.sqlRunning, ioError: rep.ioError, sqlError: rep.sqlError } : undefined,
      executed: s?.executed ?? "",
      received: s?.replication.received ?? "",
      blocked: this.blocked,
      lastFailoverMs: this.lastFailoverMs,
    };
  }

  /** Graceful stop: a primary fences itself and releases the lock so a replica takes over at once. */
  async stop(): Promise<void> {
    this.running = false;
    clearInterval(this.watchdog);
    this.wake.abort();
    await this.loopDone;
    if (this.role === "primary") {
      await this.fence("shutting down", "shutdown", "read-only");
      const entry = this.lastLock?.entry;
      await this.releaseLock(entry?.value ?? "");
    }
    if (this.session) await this.d.coordinator.destroySession(this.session).catch(() => undefined);
    this.session = undefined;
    await this.report("critical", "statepilot is stopping").catch(() => undefined);
    if (this.d.primaryHealth.isRegistered) await this.d.primaryHealth.stop(true);
    this.d.local.close();
  }
}
