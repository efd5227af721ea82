import { StoreUnavailable, type ClusterState } from "../../cluster/store.js";
import type { Role, SwitchoverRecord } from "../../cluster/records.js";
import type { Logger } from "../../log.js";
import { decide, decideRebuild, decideWipe, memberRecordFor, needsDivergenceCheck, type Decision, type Observation } from "./decide.js";
import type { LocalState, RemoteState } from "./database.js";
import type { HaDeps } from "./deps.js";
import { checkInvariants } from "./invariants.js";
import { Actions } from "./act.js";
import type { HaStatus } from "./status.js";
import { FailsafeKeeper } from "./failsafe-keeper.js";
import type { FailsafeAnswer, FailsafeRequest } from "./failsafe.js";

const errText = (err: unknown): string => (err instanceof Error ? err.message : String(err));

/**
 * The HA loop, after Patroni's ha.py: every `interval` it observes the local server and the
 * cluster store, asks `decide` for one action, carries it out, and touches its member record
 * (which keeps its liveness, and so its leadership). A watchdog fences a primary whose lease it
 * could not confirm within `fenceAfter`, before any other node can take over.
 */
export class MysqlHa {
  readonly log: Logger;
  role: Role = "starting";
  wasPrimary = false;
  blocked = "";
  free: { version: number; since: number } | undefined;
  /** The cluster as last seen in an initialised store (see Observation.memory). */
  memory: Observation["memory"];
  private memoryShape = "";
  leaseConfirmedAt: number | undefined;
  replicationStartedOnPid: number | undefined;
  receiverStoppedByUs = false;
  handover: { record: SwitchoverRecord; version: number } | undefined;
  flavor: "mariadb" | "mysql" = "mariadb";
  version = "";
  lastFailoverMs: number | undefined;
  wake = new AbortController();
  /** An operator's rebuild under way: its stage, which `decide` reports (the loop leaves the server alone). */
  rebuilding: string | undefined;
  private loops = 0;
  private running = false;
  private loopDone: Promise<void> | undefined;
  private bootstrapped: boolean;
  private lastLocal: LocalState | undefined;
  /** The last state the server answered with (kept while it is down, for the member record). */
  private lastAnswered: LocalState | undefined;
  private lastCluster: ClusterState | undefined;
  private lastDecision: Decision | undefined;
  private stopWatchdog: (() => void) | undefined;
  private readonly act: Actions;
  readonly failsafe: FailsafeKeeper;
  /** When the members (not the store) last confirmed this primary. */
  private failsafeConfirmedAt: number | undefined;

  constructor(readonly d: HaDeps, bootstrapped: boolean) {
    this.log = d.logger.child({ component: "mysql-ha" });
    this.bootstrapped = bootstrapped;
    this.act = new Actions(this);
    this.failsafe = new FailsafeKeeper({ node: d.node, cluster: d.settings.cluster, settings: d.settings, clock: d.clock, log: this.log, peers: d.failsafePeers });
    try {
      this.memory = d.faults?.forgetsWipedStore ? undefined : d.clusterMemory?.load();
    } catch (err) {
      this.log.warn({ err: errText(err) }, "could not read the memory of the cluster; starting without it");
    }
  }

  get serverVersion(): { flavor: "mariadb" | "mysql"; version: string } | undefined {
    return this.version ? { flavor: this.flavor, version: this.version } : undefined;
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.loopDone = this.loop();
  }

  /** The local mysqld exited: act now rather than at the next tick. */
  mysqldExited(): void {
    this.wake.abort("wake");
  }

  /** What the loop is doing now and since when: a watchdog that fences says where the time went. */
  private phase = { name: "starting", since: 0 };

  private enter(name: string): void {
    this.phase = { name, since: this.d.clock.now() };
  }

  private async loop(): Promise<void> {
    while (this.running) {
      let delay = this.d.settings.interval;
      try {
        delay = await this.iteration();
      } catch (err) {
        this.log.error({ err: errText(err) }, "HA loop iteration failed");
      }
      if (!this.running) break;
      this.enter("waiting for the next look");
      await this.waitForChange(delay);
    }
  }

  /** Sleeps up to `ms`, waking early when the cluster state changes or a local event arrives. */
  private async waitForChange(ms: number): Promise<void> {
    if (this.wake.signal.aborted) {
      // Woken while the iteration ran (an action asked for a prompt next look): no sleep at all.
      this.wake = new AbortController();
      return;
    }
    const signal = this.wake.signal;
    const version = this.lastCluster?.leaderVersion;
    const started = this.d.clock.now();
    if (version !== undefined && ms >= 200) {
      try {
        await this.d.store.watch(version, ms, signal);
        return;
      } catch {
        // Store unreachable: do not spin; sleep out the rest.
      }
    }
    const left = ms - (this.d.clock.now() - started);
    if (left > 0 && !signal.aborted) await this.d.clock.sleep(left, signal);
  }

  // ---- observing ------------------------------------------------------------------------------

  private async observeLocal(): Promise<{ local: LocalState | undefined; error: string }> {
    if (!this.d.process.running()) return { local: undefined, error: "mysqld is not running" };
    try {
      if (!this.bootstrapped) {
        await this.d.bootstrapLocal();
        this.bootstrapped = true;
      }
      if (!this.version) ({ flavor: this.flavor, version: this.version } = await this.d.db.ready());
      return { local: await this.d.db.observe(), error: "" };
    } catch (err) {
      return { local: undefined, error: `mysqld does not answer: ${errText(err)}` };
    }
  }

  private async remote(host: string, port: number): Promise<RemoteState | undefined> {
    try {
      return await this.d.db.remoteState({ host, port });
    } catch (err) {
      this.log.debug({ err: errText(err), host, port }, "cannot read a peer's GTID state");
      return undefined;
    }
  }

  /** Everything `decide` needs, gathered with as few calls as the situation allows. */
  private async observe(t0: number): Promise<Observation> {
    this.loops++;
    this.enter("reading the local server");
    const { local, error } = await this.observeLocal();
    this.enter("reading the cluster store");
    let cluster: ClusterState | undefined;
    let storeError = "";
    // Failsafe mode: a primary does not wait on the store past what its confirmation can spare.
    // The members are asked at once when they confirmed it last time, else as soon as the store
    // fails or has kept it waiting half an interval; the store gets max(interval, fenceAfter/2).
    const s = this.d.settings;
    const failsafePrimary = this.failsafe.enabled && this.role === "primary";
    const viaFailsafe = failsafePrimary && this.restsOnMembers;
    let asking: Promise<boolean> | undefined;
    const ask = () => {
      const confirmed = this.leaseConfirmedAt !== undefined && this.d.clock.now() - this.leaseConfirmedAt < s.fenceAfter;
      if (!asking && failsafePrimary && local && !local.readOnly && confirmed) asking = this.failsafe.confirm(this.lastCluster);
    };
    if (viaFailsafe) ask();
    const stopEarly = failsafePrimary ? this.d.clock.after(s.interval / 2, ask) : undefined;
    try {
      cluster = await (failsafePrimary ? this.loadWithin(Math.max(s.interval, s.fenceAfter / 2)) : this.d.store.load());
      this.failsafe.noteView(cluster);
      for (const bad of cluster.invalid) this.log.warn({ record: bad.what, error: bad.error }, "unreadable record in the cluster store; it does not vote");
    } catch (err) {
      storeError = errText(err);
      ask();
    } finally {
      stopEarly?.();
    }
    if (local) this.observed(local);
    else this.lastLocal = undefined;
    this.lastCluster = cluster ?? this.lastCluster;
    // Remember the cluster while the store is initialised; a store that comes back uninitialised
    // lost its data, and the memory then stands in for it (see decideFree).
    if (cluster?.initialized && !this.d.faults?.forgetsWipedStore) this.remember({ lastLeader: cluster.lastLeader ?? cluster.leader?.record, members: cluster.members.map((m) => m.record) });
    // A store that started its versions again (rebuilt empty): "free since version N" means nothing now.
    if (cluster && this.free && cluster.version < this.free.version) this.free = undefined;
    const leader = cluster?.leader;
    const mine = leader?.node === this.d.node;
    let leaseConfirmed = false;
    if (mine && local) {
      this.enter("renewing the leadership");
      const renewal = await this.renewLease(t0, local);
      leaseConfirmed = renewal.confirmed;
      // Failsafe: the store answered the read and then stopped answering (it went down between
      // the two): as unreachable as a failed read, so the members are asked, and the decision
      // sees an unreachable store rather than a lease it could not renew.
      if (renewal.unavailable !== undefined && failsafePrimary) {
        storeError = renewal.unavailable;
        cluster = undefined;
        ask();
      }
    }
    // Every member accepted: a confirmation as of t0 (before any request was sent).
    let failsafe: string | undefined;
    if (asking) {
      this.enter("asking the members (failsafe)");
      if (await asking) {
        this.confirmed(t0);
        this.failsafeConfirmedAt = t0;
        failsafe = this.failsafe.lastOutcome;
      }
    }
    const failsafeHolds = this.restsOnMembers && this.d.clock.now() - this.failsafeConfirmedAt! < this.d.settings.fenceAfter;
    // Free "since" the moment this node saw it so, not since the iteration began: a loop stalled on
    // a frozen mysqld or a slow store must not count its stall as time spent waiting for peers.
    if (cluster && !leader) this.free ??= { version: cluster.version, since: this.d.clock.now() };
    else if (leader) this.free = undefined;
    const failsafeHold = cluster && !leader && !this.d.faults?.failsafeBreaksPromise ? this.failsafe.holdsElection(cluster, this.free ? this.d.clock.now() - this.free.since : 0, this.memory) : undefined;
    const base = { role: this.role, local, loops: this.loops, settings: this.d.settings, blocked: this.blocked, receiverStoppedByUs: this.receiverStoppedByUs };
    this.enter("reading peers' GTID state");
    const primaryState = leader && !mine && local && needsDivergenceCheck(base, leader) ? await this.remote(leader.record.host, leader.record.port) : undefined;
    const target = this.handover?.record.to ? cluster?.members.find((m) => m.node === this.handover?.record.to) : undefined;
    const targetState = target ? await this.remote(target.record.host, target.record.port) : undefined;
    return {
      now: this.d.clock.now(),
      node: this.d.node,
      serverId: this.d.serverId,
      flavor: this.flavor,
      settings: this.d.settings,
      role: this.role,
      wasPrimary: this.wasPrimary,
      mysqldRunning: this.d.process.running(),
      mysqldPid: this.d.process.pid(),
      local,
      localError: error,
      cluster,
      storeError,
      leaseConfirmed,
      failsafe,
      failsafeHolds,
      failsafeHold,
      maintenance: this.d.inMaintenance(),
      free: this.free,
      memory: this.memory,
      replicationStartedOnPid: this.replicationStartedOnPid,
      receiverStoppedByUs: this.receiverStoppedByUs,
      primaryState,
      blocked: this.blocked,
      restored: this.d.restored.pending(),
      handover: this.handover?.record,
      targetState,
      loops: this.loops,
      rebuilding: this.rebuilding,
    };
  }

  /** The store's view, or StoreUnavailable if it takes longer than `ms` (the call goes on, its result unused). */
  private loadWithin(ms: number): Promise<ClusterState> {
    const load = this.d.store.load();
    let cancel: (() => void) | undefined;
    const late = new Promise<never>((_, reject) => {
      cancel = this.d.clock.after(ms, () => reject(new StoreUnavailable("load", { cause: new Error(`no answer within ${ms} ms`) })));
    });
    load.catch(() => undefined);
    return Promise.race([load, late]).finally(() => cancel?.());
  }

  /** The last confirmation of the leadership came from the members (failsafe), not from the store. */
  private get restsOnMembers(): boolean {
    return this.failsafeConfirmedAt !== undefined && this.failsafeConfirmedAt === this.leaseConfirmedAt;
  }

  /** Keeps the memory, and saves it when its shape (last leader, members, their sources and a primary's failsafe list) changed. */
  private remember(memory: NonNullable<Observation["memory"]>): void {
    this.memory = memory;
    const shape = JSON.stringify([memory.lastLeader?.node, memory.lastLeader?.serverId, memory.members.map((r) => [r.node, r.serverId, r.source, r.role, r.failsafe ?? null])]);
    if (shape === this.memoryShape || !this.d.clusterMemory) return;
    this.memoryShape = shape;
    try {
      this.d.clusterMemory.save(memory);
    } catch (err) {
      this.log.warn({ err: errText(err) }, "could not save the memory of the cluster (used if the store loses its data)");
    }
  }

  /** Touch (liveness), then renew: only then is the leadership confirmed as of `t0`. */
  async confirmLease(t0: number, local: LocalState | undefined = this.lastLocal): Promise<boolean> {
    return (await this.renewLease(t0, local)).confirmed;
  }

  /**
   * Renews the leadership and this node's liveness in the store. `unavailable`: the store did not
   * answer (as opposed to answering that the lease is gone), with the error's text.
   */
  private async renewLease(t0: number, local: LocalState | undefined): Promise<{ confirmed: boolean; unavailable?: string }> {
    try {
      const rec = this.record(local, "primary");
      // Both requests leave at once (each is a round trip to the store); the confirmation is as of
      // t0, before either was sent, and holds only if both succeeded.
      const [, renewed] = await Promise.all([this.d.store.touchMember(rec, { status: "passing", output: "primary, lock held" }), this.d.store.renewLeader()]);
      this.failsafe.publishedList(rec.failsafe);
      if (!renewed) return { confirmed: false };
    } catch (err) {
      this.log.warn({ err: errText(err) }, "could not confirm the leadership");
      return { confirmed: false, ...(err instanceof StoreUnavailable ? { unavailable: errText(err) } : {}) };
    }
    this.confirmed(t0);
    return { confirmed: true };
  }

  /** The leadership is confirmed as of `t0` (by the store, or in failsafe mode by every member): watchdog and switch move on. */
  private confirmed(t0: number): void {
    this.leaseConfirmedAt = t0;
    this.armWatchdog(t0);
    if (this.role === "primary") {
      // The server's own switch moves with the watchdog; a late re-arm can only fence early.
      this.armServerFence(t0).catch((err: unknown) => this.log.warn({ err: errText(err) }, "could not re-arm the server's fence switch (the watchdog still fences)"));
    }
  }

  /** A primary's failsafe request reaches this node (production: POST /failsafe with the cluster secret). */
  answerFailsafe(request: FailsafeRequest): FailsafeAnswer {
    const writable = this.lastLocal !== undefined && !this.lastLocal.readOnly;
    return this.failsafe.answer(request, { role: this.role, writable, view: this.lastCluster });
  }

  /** Arms the server's dead man's switch for the same instant as the watchdog (confirmed + fenceAfter). */
  armServerFence(confirmedAt: number): Promise<void> {
    if (this.d.faults?.watchdogNeverFences || this.d.faults?.serverFenceSwitchOff) return Promise.resolve();
    return this.d.db.armFence(confirmedAt + this.d.settings.fenceAfter - this.d.clock.now());
  }

  // ---- the watchdog ---------------------------------------------------------------------------

  /**
   * One timer per confirmation, at `fenceAfter`: if no later confirmation came, the primary fences
   * itself; if the timer fires past the takeover time (the process was paused or starved), another
   * node may already lead and mysqld could serve any instant, so it is killed outright.
   */
  private armWatchdog(confirmedAt: number): void {
    this.stopWatchdog?.();
    if (this.d.faults?.watchdogNeverFences) return;
    this.stopWatchdog = this.d.clock.after(this.d.settings.fenceAfter, () => {
      if (this.leaseConfirmedAt !== confirmedAt) return;
      if (this.role !== "primary" && this.role !== "fenced") return;
      const age = this.d.clock.now() - confirmedAt;
      if (age >= this.d.settings.takeover) {
        this.role = "fenced";
        this.d.metrics?.fencing.inc({ reason: "paused_past_takeover" });
        this.log.error({ leaseAgeMs: age, takeoverMs: this.d.settings.takeover }, "lease older than the takeover time: killing mysqld");
        this.d.process.kill();
        return;
      }
      if (this.role === "primary") {
        // Where the time went: the loop's step now, and how late this timer ran (a starved process).
        const now = this.d.clock.now();
        const where = `the loop has been ${this.phase.name} for ${Math.round(now - this.phase.since)} ms; this timer ran ${Math.round(age - this.d.settings.fenceAfter)} ms late`;
        void this.act.fence(`could not confirm the leadership for ${age} ms (fenceAfter ${this.d.settings.fenceAfter} ms; ${where})`, "lease_expired", this.d.settings.fenceBy);
      }
    });
  }

  // ---- one loop -------------------------------------------------------------------------------

  async iteration(): Promise<number> {
    const t0 = this.d.clock.now();
    const o = await this.observe(t0);
    const decision = this.d.faults?.rebuildIgnoresLeadership && o.rebuilding !== undefined ? plantedRebuildDecision(o.role, o.rebuilding) : decide(o);
    for (const v of checkInvariants(o, this.leaseConfirmedAt)) {
      this.d.metrics?.invariantViolations.inc({ invariant: v.invariant });
      this.log.error({ invariant: v.invariant, detail: v.detail, action: decision.action.kind }, "safety invariant violated; repairing");
    }
    if (decision.blocked !== undefined) this.blocked = decision.blocked;
    // Logged when the reason changes or something is done (a primary's routine "lead" with nobody
    // to expire is the steady state, not news: it filled the log twice a second).
    const routine = decision.action.kind === "none" || (decision.action.kind === "lead" && decision.action.expire.length === 0);
    if (decision.reason !== this.lastDecision?.reason || !routine) {
      const level = decision.health.status === "critical" ? "warn" : "info";
      this.log[level]({ action: decision.action.kind, role: decision.role }, decision.reason);
    }
    this.lastDecision = decision;
    if (decision.action.kind !== "acquire") this.setRole(decision.role);
    this.enter(`acting (${decision.action.kind})`);
    try {
      await this.act.run(decision, o);
    } catch (err) {
      this.log.error({ err: errText(err), action: decision.action.kind }, "action failed");
    }
    if (!(o.cluster?.leader?.node === this.d.node && o.leaseConfirmed && this.role === "primary")) {
      this.enter("publishing the member record");
      try {
        await this.d.store.touchMember(this.record(this.lastLocal), decision.health);
      } catch (err) {
        this.log.debug({ err: errText(err) }, "could not publish the member record");
      }
    }
    return decision.nextIn ?? this.d.settings.interval;
  }

  /** Whether this node carries out an operator's rebuild now (see decideRebuild). */
  rebuildVerdict(cluster: ClusterState | undefined, storeError: string, expiresAt: number): { accept: boolean; reason: string } {
    if (this.d.faults?.rebuildIgnoresLeadership) return { accept: true, reason: `rebuilding ${this.d.node} (planted fault: leadership ignored)` };
    return decideRebuild({ now: this.d.clock.now(), node: this.d.node, role: this.role, cluster, storeError, expiresAt });
  }

  /** A rebuild may stop the server and replace its data: the loop has taken the node out (down, never running for primary). */
  fencedOutForRebuild(): boolean {
    if (this.d.faults?.rebuildIgnoresLeadership === true) return this.rebuilding !== undefined && this.lastDecision?.reason.startsWith("rebuilding") === true;
    // Down, and its receiver already stopped (the rebuilding rule's "none" comes after stop-receiver).
    return this.rebuilding !== undefined && this.role === "down" && this.lastDecision?.reason.startsWith("rebuilding") === true && this.lastDecision.action.kind === "none";
  }

  /** Whether the node being rebuilt may throw its data away now (see decideWipe). */
  wipeVerdict(cluster: ClusterState | undefined, storeError: string, stoppedAtVersion: number, need: string | undefined): { wipe: boolean; reason: string; need: string | undefined } {
    if (this.d.faults?.rebuildIgnoresLeadership) return { wipe: true, reason: "planted fault: leadership ignored", need };
    if (this.d.faults?.rebuildWipesUnheld) return { wipe: true, reason: "planted fault: wiped without another copy", need };
    const ownReceived = this.lastLocal?.replication.received ?? "";
    return decideWipe({ node: this.d.node, flavor: this.flavor, cluster, storeError, stoppedAtVersion, need, ownReceived });
  }

  /** Marks a rebuild's stage (undefined: over) and looks again at once. */
  setRebuilding(stage: string | undefined): void {
    this.rebuilding = stage;
    this.wake.abort("wake");
  }

  /**
   * The datadir was replaced: what this process learnt about the old server no longer holds.
   * Accounts are checked again and the replication bookkeeping starts over; on a fresh datadir the
   * divergence verdict and the former primary's mark do too (`fresh` false: the old datadir was put
   * back, and they stay).
   */
  datadirReplaced(fresh: boolean): void {
    this.bootstrapped = false;
    if (fresh) {
      this.wasPrimary = false;
      this.blocked = "";
    }
    this.replicationStartedOnPid = undefined;
    this.receiverStoppedByUs = false;
    this.version = "";
    this.lastLocal = undefined;
    this.setRole("starting");
  }

  /** A fresher look at the local server taken while acting (published by this loop's touch). */
  observed(local: LocalState): void {
    this.lastLocal = local;
    this.lastAnswered = local;
    // A look that shows replication configured names the source itself (see record()).
    if (local.replication.configured) this.sourceIntent = undefined;
  }

  setRole(role: Role): void {
    if (role === this.role) return;
    this.log.info({ from: this.role, to: role }, "role changed");
    this.role = role;
    if (role === "primary") this.wasPrimary = true;
    this.d.metrics?.setRole(role);
    this.d.hooks?.roleChanged?.(role);
  }

  /** The source published before replication was started (see publishSource). */
  private sourceIntent: { node: string; host: string; port: number } | undefined;

  record(local: LocalState | undefined, role: Role = this.role) {
    const rec = memberRecordFor({ node: this.d.node, serverId: this.d.serverId, role, local, settings: this.d.settings, blocked: this.blocked, maintenance: this.d.inMaintenance(), now: this.d.clock.now() }, this.d.advertise);
    // Server down: the record still says what it last held and where from (up: false), so that a
    // lossless election knows this replica of the old primary may hold acknowledged writes.
    const known = local ?? this.lastAnswered;
    if (role === "primary") {
      const list = this.failsafe.listFor(this.lastCluster, this.restsOnMembers);
      if (list) rec.failsafe = list;
    }
    if (this.d.advertise.httpPort !== undefined) rec.httpPort = this.d.advertise.httpPort;
    if (this.memory) rec.remembers = true;
    const promised = this.failsafe.promisedTo();
    if (promised !== undefined) rec.promised = promised;
    if (this.lastCluster) rec.viewLeader = this.lastCluster.leader?.node ?? "";
    if (!local && known) {
      rec.executed = known.executed;
      rec.received = known.replication.received ?? "";
    }
    const rep = known?.replication;
    // The node it replicates from, named when that is the leader or, with none, the last leader (a
    // lossless election must keep seeing which replicas of the old primary may hold its writes).
    const c = this.lastCluster;
    // A store that lost its data names no last leader: the node's memory of the cluster does.
    const from = c?.leader ? { node: c.leader.node, host: c.leader.record.host, port: c.leader.record.port } : (c?.lastLeader ?? (c?.initialized === false ? this.memory?.lastLeader : undefined));
    if (rep?.configured && from && rep.sourceHost === from.host && rep.sourcePort === from.port) rec.source = from.node;
    // Published before replication started (publishSource) and not yet seen configured (the look
    // after starting it failed, say): the source stands until a look shows the server's own.
    const intent = this.sourceIntent;
    if (!rec.source && intent && from && intent.node === from.node && intent.host === from.host && intent.port === from.port) rec.source = from.node;
    return rec;
  }

  /**
   * Publishes that this node replicates from `leader` before its receiver connects: in lossless
   * mode, from the first write it acknowledges, an election must count it among the replicas that
   * may hold the leader's acknowledged writes (found by the simulation, seed 88722: a node that
   * crashed right after it started replicating had acknowledged a write its record never tied to
   * that primary, and a node without the write was elected). Throws if the store did not take it.
   */
  async publishSource(leader: { node: string; host: string; port: number }): Promise<void> {
    this.sourceIntent = { node: leader.node, host: leader.host, port: leader.port };
    const rec = this.record(this.lastLocal);
    rec.source = leader.node;
    await this.d.store.touchMember(rec, this.lastDecision?.health ?? { status: "warning", output: `replication from ${leader.node} starting` });
  }

  // ---- status and shutdown --------------------------------------------------------------------

  statusView(): HaStatus {
    const s = this.lastLocal;
    const leader = this.lastCluster?.leader;
    const rep = s?.replication;
    return {
      node: this.d.node,
      role: this.role,
      up: s !== undefined,
      readOnly: s?.readOnly,
      health: this.lastDecision?.health.status ?? "critical",
      reason: this.lastDecision?.reason ?? "starting",
      action: this.lastDecision?.action.kind ?? "none",
      primary: leader ? { node: leader.node, host: leader.record.host, port: leader.record.port, term: leader.term } : undefined,
      lagSeconds: s ? (this.role === "primary" ? 0 : (rep?.lagSeconds ?? null)) : null,
      replication: rep?.configured ? { io: rep.ioRunning, sql: rep.sqlRunning, ioError: rep.ioError, sqlError: rep.sqlError } : undefined,
      executed: s?.executed ?? "",
      received: s?.replication.received ?? "",
      blocked: this.blocked,
      lastFailoverMs: this.lastFailoverMs,
      leaseAgeMs: this.role === "primary" && this.leaseConfirmedAt !== undefined ? Math.max(0, this.d.clock.now() - this.leaseConfirmedAt) : null,
      fenceAfterMs: this.d.settings.fenceAfter,
      maintenance: this.d.inMaintenance(),
    };
  }

  /** Stops at once without any graceful step, as a crash would (the simulation's process death). */
  halt(): void {
    this.running = false;
    this.stopWatchdog?.();
    this.wake.abort("wake");
  }

  /** Graceful stop: a primary fences itself and releases the leadership so a replica takes over at once. */
  async stop(): Promise<void> {
    this.running = false;
    this.stopWatchdog?.();
    this.wake.abort("wake");
    await this.loopDone;
    if (this.role === "primary") {
      await this.act.fence("shutting down", "shutdown", "read-only");
      await this.d.store.releaseLeader().catch((err: unknown) => this.log.warn({ err: errText(err) }, "could not release the leadership; its lease will lapse"));
    }
    await this.d.store.touchMember(this.record(this.lastLocal), { status: "critical", output: "statepilot is stopping" }).catch(() => undefined);
    this.d.db.close();
  }
}

/** The planted fault `rebuildIgnoresLeadership`: a rebuilding node does nothing and keeps its role and health, even while it leads. */
function plantedRebuildDecision(role: Role, stage: string): Decision {
  return { action: { kind: "none" }, role, health: { status: "passing", output: `rebuilding: ${stage}` }, reason: `rebuilding on the operator's request: ${stage}` };
}
