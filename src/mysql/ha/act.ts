import type { LeaderRecord, SwitchoverRecord } from "../../cluster/records.js";
import { received } from "../election.js";
import type { Decision, Observation } from "./decide.js";
import type { LocalState } from "./database.js";
import type { MysqlHa } from "./loop.js";

const errText = (err: unknown): string => (err instanceof Error ? err.message : String(err));

/** Carries out what `decide` chose. Each step re-checks what it relies on (a lease, a version). */
export class Actions {
  private fencing: Promise<void> | undefined;
  /**
   * Fencing (from the watchdog) and turning writable (from the loop) change the same two settings;
   * they run one after the other, never interleaved, or a fence's "semi-sync off" could land after
   * a "read_only off" and leave a writable server without semi-sync.
   */
  private serial: Promise<unknown> = Promise.resolve();

  private exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.serial.then(fn, fn);
    this.serial = run.catch(() => undefined);
    return run;
  }

  constructor(private readonly ha: MysqlHa) {}

  private get d() {
    return this.ha.d;
  }

  async run(decision: Decision, o: Observation): Promise<void> {
    const a = decision.action;
    switch (a.kind) {
      case "none":
        return;
      case "kill-server":
        return this.killServer(o);
      case "fence":
        return this.fence(decision.reason, a.label, a.how);
      case "release":
        await this.d.store.releaseLeader();
        this.ha.log.info("leadership released");
        return;
      case "become-writable":
        return this.becomeWritable();
      case "step-down":
        await this.fence(decision.reason, "own_tail_elsewhere", "read-only");
        await this.d.store.releaseLeader();
        this.ha.log.warn("leadership released: another node holds this node's lost transactions");
        return;
      case "lead":
        this.d.hooks?.leading?.();
        for (const node of a.expire) {
          await this.d.store.removeMember(node);
          this.ha.log.info({ member: node, expiryMs: this.d.settings.memberExpiry }, "removed the record of a member gone longer than memberExpiry");
        }
        return;
      case "replicate": {
        const pid = this.d.process.pid();
        if (a.seedState) await this.d.db.seedBinlogState(a.seedState);
        await this.ha.publishSource({ node: a.leader.node, host: a.leader.record.host, port: a.leader.record.port });
        await this.d.db.replicateFrom({ host: a.leader.record.host, port: a.leader.record.port }, a.slavePos);
        this.ha.replicationStartedOnPid = pid;
        this.ha.receiverStoppedByUs = false;
        if (this.d.restored.pending()) this.d.restored.applied();
        if (o.local?.semiSyncPrimary) await this.d.db.semiSyncPrimary(false);
        // The loop publishes its record after this action: from what the server says now (it
        // replicates from the leader), not from the look before it, which would take back the
        // source published above.
        this.ha.observed(await this.d.db.observe());
        return;
      }
      case "start-replica": {
        const pid = this.d.process.pid();
        await this.d.db.startReplica();
        this.ha.replicationStartedOnPid = pid;
        this.ha.receiverStoppedByUs = false;
        return;
      }
      case "stop-receiver":
        await this.d.db.stopReceiver();
        this.ha.receiverStoppedByUs = true;
        // Publish what was received up to the stop, not what was seen before it.
        this.ha.observed(await this.d.db.observe());
        return;
      case "acquire":
        return this.acquire(o, a.handover);
      case "take-back":
        return this.takeBack(o);
      case "refuse-switchover":
        this.d.metrics?.switchovers.inc({ side: "primary", outcome: "failed" });
        await this.d.store.writeSwitchover({ ...a.record, state: "failed", error: a.error, from: this.d.node }, a.version);
        return;
      case "start-switchover":
        return this.startSwitchover(a.record, a.version, a.to);
      case "finish-switchover":
        return this.finishSwitchover();
      case "abort-switchover":
        return this.abortSwitchover(a.error);
    }
  }

  private async killServer(o: Observation): Promise<void> {
    this.d.metrics?.fencing.inc({ reason: "server_unresponsive" });
    this.d.process.kill();
    for (let i = 0; i < 100 && this.d.process.running(); i++) await this.d.clock.sleep(20);
    if (o.cluster?.leader?.node === this.d.node && !this.d.process.running()) await this.d.store.releaseLeader();
  }

  /**
   * Read-only, writers killed, semi-sync off; if the server does not obey, it is killed. A primary
   * fenced by `kill` is SIGKILLed: a commit still waiting for a replica's ack would otherwise
   * complete locally once its client is killed, leaving a tail no replica has; after SIGKILL,
   * crash recovery as a replica rolls it back.
   */
  fence(reason: string, label: string, how: "kill" | "read-only"): Promise<void> {
    this.fencing ??= this.exclusive(async () => {
      const wasPrimary = this.ha.role === "primary";
      if (wasPrimary) this.ha.setRole("fenced");
      this.d.metrics?.fencing.inc({ reason: label });
      if (how === "kill" && wasPrimary) {
        this.ha.log.warn({ reason }, "fenced: killing mysqld (it restarts read-only, as a replica)");
        this.d.process.kill();
        return;
      }
      try {
        if (this.d.faults?.fenceKeepsConnections) {
          // Planted fault: clients stay connected and semi-sync goes off first, so a commit still
          // waiting for a replica's ack completes and is acknowledged by a server being fenced.
          await this.d.db.semiSyncPrimary(false);
          await this.d.db.setReadOnly(true);
          return;
        }
        // read_only first: it waits for commits in flight (or times out, and the server is killed),
        // so no commit waiting for an ack is ever released by the semi-sync switch below. While it
        // waits the server still reads read_only=0: it must end (or the server die) well before
        // another node can take over, so it gets what is left of takeover after fenceAfter.
        const s = this.d.settings;
        await this.d.db.setReadOnly(true, undefined, Math.max(200, Math.min(3_000, s.takeover - s.fenceAfter - 250)));
        const killed = await this.d.db.killWriters();
        await this.d.db.semiSyncPrimary(false);
        this.ha.log.warn({ reason, killedConnections: killed }, "fenced: read-only");
      } catch (err) {
        this.d.metrics?.fencing.inc({ reason: "kill_server" });
        this.ha.log.error({ reason, err: errText(err) }, "could not make the server read-only; killing it");
        this.d.process.kill();
      }
    }).finally(() => (this.fencing = undefined));
    return this.fencing;
  }

  /** Turns writable only on a lease confirmed within fenceAfter; in lossless mode semi-sync first. */
  private becomeWritable(): Promise<void> {
    return this.exclusive(() => this.turnWritable());
  }

  private async turnWritable(): Promise<void> {
    const confirmed = this.ha.leaseConfirmedAt;
    if (confirmed === undefined || this.d.clock.now() - confirmed >= this.d.settings.fenceAfter) throw new Error("the leadership is not confirmed recently enough to turn writable");
    // Semi-sync on (lossless) and the server's own fence armed, both before read_only goes off; they
    // use different connections, so they run at once. The server fences itself at the watchdog's
    // instant even if this process is frozen with it.
    await Promise.all([this.d.settings.lossless && !this.d.faults?.writableWithoutSemiSync ? this.d.db.semiSyncPrimary(true) : undefined, this.ha.armServerFence(confirmed)]);
    // The awaits above may have taken long (a frozen server): the lease must still be fresh, and
    // the statement carries its deadline, which the server checks when it runs it.
    const left = confirmed + this.d.settings.fenceAfter - this.d.clock.now();
    if (left <= 0) throw new Error("the leadership was not confirmed recently enough to turn writable (the server took too long to answer)");
    // The only place read_only is turned off, and only right after the lease was confirmed.
    await this.d.db.setReadOnly(false, left);
    this.ha.setRole("primary");
    this.ha.blocked = "";
    this.d.hooks?.leading?.();
  }

  private leaderRecord(state: LocalState): LeaderRecord {
    return {
      node: this.d.node,
      serverId: this.d.serverId,
      host: this.d.advertise.host,
      port: this.d.advertise.port,
      flavor: this.ha.flavor,
      version: this.ha.version,
      gtid: state.executed,
      promotedAt: new Date(this.d.clock.now()).toISOString(),
    };
  }

  /**
   * Failsafe: the primary, writable and still confirmed by its members, takes the free leadership
   * back. Its executed set may hold a commit still waiting for an ack, so the record keeps the
   * GTIDs of its promotion (what every later candidate must have), not its position now. If this
   * fails, its watchdog fences it when the members' confirmation lapses.
   */
  private async takeBack(o: Observation): Promise<void> {
    if (!o.local || !this.ha.failsafe.mayRun()) return;
    const last = o.cluster?.lastLeader ?? o.memory?.lastLeader;
    const record = { ...this.leaderRecord(o.local), gtid: last?.node === this.d.node ? last.gtid : "", ...(last?.node === this.d.node ? { promotedAt: last.promotedAt } : {}) };
    const got = await this.d.store.attemptToAcquireLeader(record);
    if (!got.acquired) return;
    if (!o.cluster?.initialized) await this.d.store.markInitialized(this.d.node);
    if (await this.ha.confirmLease(this.d.clock.now())) this.ha.log.info({ term: got.term }, "failsafe: leadership taken back in the store; writes never stopped");
  }

  private async acquire(o: Observation, handover: SwitchoverRecord | undefined): Promise<void> {
    if (!o.local) return;
    // Failsafe: a promise made since the decision wins; from here on this node confirms no primary it may replace.
    if (!this.d.faults?.failsafeBreaksPromise && !this.ha.failsafe.mayRun()) return;
    const got = await this.d.store.attemptToAcquireLeader(this.leaderRecord(o.local));
    if (!got.acquired) return;
    this.ha.log.info({ term: got.term }, "leadership acquired; promoting");
    await this.promote(o, handover, got.term);
  }

  /** Drain what was received, stop replicating, bootstrap a new cluster, confirm the lease, turn writable. */
  private async promote(o: Observation, handover: SwitchoverRecord | undefined, term: number): Promise<void> {
    const freeSince = this.ha.free?.since ?? o.now;
    const db = this.d.db;
    // Where a promotion's time goes, in the "promoted" log line (ms per step).
    const steps: Record<string, number> = {};
    let mark = this.d.clock.now();
    const step = (name: string) => {
      const now = this.d.clock.now();
      steps[name] = Math.round(now - mark);
      mark = now;
    };
    // Warms the server's fence switch (its connections and statement) while the promotion runs:
    // turning writable re-arms it on the confirmed lease, and waits for that. Early, it can only
    // ever make this still read-only server read-only; a failure here is the later arm's to report.
    this.ha.armServerFence(this.d.clock.now()).catch((err: unknown) => this.ha.log.debug({ err: errText(err) }, "warming the fence switch failed (turning writable arms it again, and fails loudly)"));
    try {
      if (o.local?.replication.configured) {
        await db.stopReceiver();
        step("stopReceiver");
        if (!this.d.faults?.promotionIgnoresReceived) {
          const after = await db.observe();
          const want = received(this.ha.flavor, { executed: after.executed, received: after.replication.received });
          if (!(await db.waitApplied(want, this.d.settings.promoteTimeout))) throw new Error(`relay log not applied within ${this.d.settings.promoteTimeout} ms`);
          step("drain");
        }
        await db.resetReplication();
        step("resetReplication");
      }
      // A node restored from a snapshot that never replicated (elected before any primary came
      // back): its binlog must start with the snapshot's binlog state before it writes, or every
      // replica's history looks errant against it and the cluster is poisoned.
      const restored = this.d.restored.pending();
      if (restored) {
        await db.seedBinlogState(restored.state || restored.gtid);
        this.d.restored.applied();
      }
      let final = await db.observe();
      if (!o.cluster?.initialized) {
        if (final.executed === "") {
          this.ha.log.info("first primary of the cluster: creating the database, users and running init scripts");
          await this.d.bootstrapCluster();
          final = await db.observe();
        }
        await this.d.store.markInitialized(this.d.node);
      }
      step("observe");
      if (!(await this.d.store.updateLeader(this.leaderRecord(final)))) throw new Error("leadership lost during promotion");
      step("updateLeader");
      if (!(await this.ha.confirmLease(this.d.clock.now(), final))) throw new Error("could not confirm the leadership before turning writable");
      step("confirmLease");
      await this.becomeWritable();
      step("becomeWritable");
      const ms = this.d.clock.now() - freeSince;
      this.ha.lastFailoverMs = ms;
      this.d.metrics?.failovers.inc();
      this.d.metrics?.lastFailover.set(ms / 1000);
      this.ha.log.info({ durationMs: ms, gtid: final.executed, term, steps }, "promoted to primary");
      if (handover) await this.completeHandover(handover);
    } catch (err) {
      this.ha.log.error({ err: errText(err) }, "promotion failed; giving the leadership back");
      await this.fence("promotion failed", "promotion_failed", "read-only");
      await this.d.store.releaseLeader().catch(() => undefined);
      this.ha.setRole("replica");
    }
  }

  /** The target records the switchover as done, only over the handover it was given. */
  private async completeHandover(handover: SwitchoverRecord): Promise<void> {
    const cur = (await this.d.store.load()).switchover;
    if (!cur || cur.record.id !== handover.id || cur.record.state !== "released") return;
    const promotedAt = this.d.clock.now();
    const rec: SwitchoverRecord = { ...cur.record, state: "done", promotedAt, ...(cur.record.fencedAt !== undefined ? { unavailableMs: promotedAt - cur.record.fencedAt } : {}) };
    if (await this.d.store.writeSwitchover(rec, cur.version)) {
      this.d.metrics?.switchovers.inc({ side: "target", outcome: "done" });
      this.ha.log.info({ unavailableMs: rec.unavailableMs, from: rec.from }, "switchover complete");
    }
  }

  private async startSwitchover(record: SwitchoverRecord, version: number, to: string): Promise<void> {
    const fencedAt = this.d.clock.now();
    await this.fence(`switchover to ${to}`, "switchover", "read-only");
    this.ha.setRole("primary");
    const position = (await this.d.db.observe()).executed;
    const handover: SwitchoverRecord = { ...record, to, state: "handover", from: this.d.node, position, fencedAt };
    if (!(await this.d.store.writeSwitchover(handover, version))) {
      // Someone changed the request: stay primary (the next loop turns writable again).
      this.ha.log.warn("switchover record changed under us; staying primary");
      return;
    }
    const now = (await this.d.store.load()).switchover;
    this.ha.handover = { record: handover, version: now?.record.id === handover.id ? now.version : version };
    this.ha.wake.abort("wake");
  }

  private async finishSwitchover(): Promise<void> {
    const h = this.ha.handover;
    // The record says "released" before the lock goes: only a released handover binds the
    // election to its target. A primary that dies while fenced leaves "handover", and the next
    // election is an ordinary failover.
    if (h && !(await this.d.store.writeSwitchover({ ...h.record, state: "released" }, h.version))) {
      this.ha.handover = undefined;
      this.ha.log.warn("switchover record changed under us; staying primary");
      return;
    }
    await this.d.store.releaseLeader();
    this.ha.handover = undefined;
    this.d.metrics?.switchovers.inc({ side: "primary", outcome: "handed_over" });
    this.ha.setRole("replica");
    this.ha.wake.abort("wake");
  }

  private async abortSwitchover(error: string): Promise<void> {
    const h = this.ha.handover;
    this.ha.handover = undefined;
    this.d.metrics?.switchovers.inc({ side: "primary", outcome: "failed" });
    if (h) {
      const cur = (await this.d.store.load()).switchover;
      if (cur?.record.id === h.record.id) await this.d.store.writeSwitchover({ ...cur.record, state: "failed", error }, cur.version);
    }
    // Writable again at the next loop, through become-writable (semi-sync first in lossless mode).
    this.ha.log.warn({ error }, "switchover aborted; staying primary");
  }
}
