import type { z } from "zod";
import type { Clock } from "./clock.js";
import { ArchiverRecord, describeIssues, LeaderRecord, MemberRecord, PauseRecord, SwitchoverRecord } from "./records.js";
import { StoreUnavailable, type ClusterState, type ClusterStore, type Health, type Leader, type Member, type StoreTiming } from "./store.js";

/**
 * A cluster store that lives in process memory, for tests and for the deterministic simulation.
 *
 * One `MemoryStoreServer` plays the role of the store cluster; every node gets its own handle
 * through `server.connect(node)`. All time comes from the injected `Clock`: liveness deadlines,
 * lock-delay, watch timeouts and injected latency are measured in clock time, and the only timers
 * ever set are `clock.sleep` calls made while someone waits (a watch, or a call under latency).
 *
 * Liveness is evaluated lazily: before any operation (and in `snapshot()`), members whose deadline
 * has passed are marked dead, a leadership they held is invalidated as of their deadline (not as of
 * when it was noticed), and the version grows. `leaderVersion` is the version at which the
 * leadership last changed (Consul: the leader key's modify index); only its moves wake a `watch`,
 * and a pending watch sleeps no further than the holder's liveness deadline, so the holder's
 * expiry wakes watchers at the moment it happens.
 */

interface Entry {
  readonly node: string;
  record: MemberRecord;
  /** Store version of the last write of `record`. */
  version: number;
  /** Clock time at which liveness ends; alive while `now < deadline`. */
  deadline: number;
  /** Liveness as last settled (may lag `deadline` until the next `settle()`). */
  alive: boolean;
  /** The frozen `Member` that snapshots share until the entry changes. */
  view: Member;
}

const NO_INVALID: ClusterState["invalid"] = Object.freeze([]);

/**
 * Parses `value` with `schema` (defaults applied, result frozen); throws an Error naming every bad
 * field, and the `node` field when `node` is given and the record names another node.
 */
function validate<T extends object>(schema: z.ZodType<T>, value: unknown, what: string, node?: string, enabled = true): T {
  if (!enabled) return Object.freeze(value as T);
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    throw new Error(`invalid ${what}: ${describeIssues(parsed.error.issues, value)}`);
  }
  const got = (parsed.data as { node?: unknown }).node;
  if (node !== undefined && got !== node) throw new Error(`invalid ${what}: node: is "${String(got)}" but the handle is for "${node}"`);
  return Object.freeze(parsed.data);
}

function memberView(e: Pick<Entry, "node" | "record" | "alive" | "version">): Member {
  return Object.freeze({ node: e.node, record: e.record, alive: e.alive, version: e.version });
}

export interface MemoryStoreOptions {
  clock: Clock;
  timing: StoreTiming;
  /**
   * Validate every record written against the zod schemas (default true). The simulation, whose
   * records all come from the typed HA code, turns it off: it is most of a write's cost.
   */
  validateRecords?: boolean;
}

/** The shared in-memory store: one per simulated cluster. */
export class MemoryStoreServer {
  readonly clock: Clock;
  readonly timing: StoreTiming;
  readonly validateRecords: boolean;

  private version = 0;
  /** The version at which the leadership last changed (taken, released, invalidated, rewritten): what watch() waits on. */
  private leaderVersion = 0;
  /** The leadership changed since the last `bump()`, which then moves `leaderVersion` and wakes watches. */
  private leaderMoved = false;
  private term = 0;
  private leader: Leader | undefined;
  private lastLeader: LeaderRecord | undefined;
  /** Members sorted by node name (the order snapshots list them in). */
  private readonly members: Entry[] = [];
  private switchover: ClusterState["switchover"];
  private initialized = false;
  private pause: PauseRecord | undefined;
  /** Nobody may acquire before this clock time (set when a holder's leadership is invalidated). */
  private lockDelayUntil = -Infinity;
  /** Smallest deadline among members settled as alive: `settle()` has nothing to do before it. */
  private earliestDeadline = Infinity;
  private cached: ClusterState | undefined;
  /** Wake-up functions of pending watches (woken when the leadership moves); each removes itself. */
  private readonly waiters = new Set<() => void>();

  private outageOn = false;
  private readonly cut = new Set<string>();
  private latency = 0;
  private callCount = 0;

  constructor(options: MemoryStoreOptions) {
    const { leaseMs, lockDelayMs } = options.timing;
    if (!(Number.isFinite(leaseMs) && leaseMs > 0)) throw new RangeError(`timing.leaseMs must be a positive number, got ${leaseMs}`);
    if (!(Number.isFinite(lockDelayMs) && lockDelayMs >= 0)) throw new RangeError(`timing.lockDelayMs must be a non-negative number, got ${lockDelayMs}`);
    this.clock = options.clock;
    this.timing = Object.freeze({ leaseMs, lockDelayMs });
    this.validateRecords = options.validateRecords ?? true;
  }

  /** A handle through which `node` talks to this store. */
  connect(node: string): MemoryClusterStore {
    if (node.length === 0) throw new Error("invalid node name: empty");
    return new MemoryClusterStore(this, node);
  }

  // ---- Test-rig hooks: fault injection and inspection, for tests and the simulation only. ----

  /** Cuts `node` off (`true`) or reconnects it (`false`): its calls throw StoreUnavailable and change nothing. */
  partition(node: string, cut: boolean): void {
    if (cut) this.cut.add(node);
    else this.cut.delete(node);
  }

  /**
   * The store loses everything (a Consul dev agent restarted, a store rebuilt from nothing): the
   * leadership and its history, every member, the switchover, the initialised flag. Versions keep
   * rising here; a real store may start them again from 1, which the HA loop also handles.
   */
  wipe(): void {
    this.settle();
    if (this.leader) this.leaderMoved = true;
    this.leader = undefined;
    this.lastLeader = undefined;
    this.members.length = 0;
    this.switchover = undefined;
    this.initialized = false;
    this.pause = undefined;
    this.lockDelayUntil = -Infinity;
    this.earliestDeadline = Infinity;
    this.bump();
  }

  /** Takes the whole store down (`true`) or back up: every call throws StoreUnavailable and changes nothing. */
  outage(on: boolean): void {
    this.outageOn = on;
  }

  /**
   * Every call answers after `ms` of clock time (0: on the next microtask, with no timer). A call
   * takes effect when issued; if its node is cut off by the time the answer is due, it throws
   * StoreUnavailable anyway (the write happened, the answer was lost), as a network store may.
   */
  setLatency(ms: number): void {
    if (!(Number.isFinite(ms) && ms >= 0)) throw new RangeError(`latency must be a non-negative number, got ${ms}`);
    this.latency = ms;
  }

  /** How many calls the handles have issued (including those that failed). */
  get calls(): number {
    return this.callCount;
  }

  /** The state as of `clock.now()`, bypassing faults, latency and the call counter (invariant checks). */
  snapshot(): ClusterState {
    this.settle();
    this.cached ??= this.build();
    return this.cached;
  }

  /** Clock time before which nobody can acquire the leadership (lock-delay); -Infinity when none ran. */
  get lockDelayEndsAt(): number {
    return this.lockDelayUntil;
  }

  // ---- Used by MemoryClusterStore only (not for callers): the calls, and the operations. ----

  /** Starts a call: counts it; false when `node` cannot reach the store, else brings liveness up to date. */
  admit(node: string): boolean {
    this.callCount++;
    if (this.outageOn || this.cut.has(node)) return false;
    this.settle();
    return true;
  }

  /**
   * Finishes a call, after the latency (a promise) or at once (undefined): throws StoreUnavailable
   * if it was refused or `node` is cut off by then; an aborted `signal` ends the wait quietly.
   */
  respond(operation: string, node: string, ok: boolean, signal?: AbortSignal): Promise<void> | undefined {
    if (this.latency > 0) return this.clock.sleep(this.latency, signal).then(() => this.verdict(operation, node, ok, signal));
    this.verdict(operation, node, ok, signal);
    return undefined;
  }

  private verdict(operation: string, node: string, ok: boolean, signal: AbortSignal | undefined): void {
    if (signal?.aborted) return;
    if (!ok || this.outageOn || this.cut.has(node)) throw new StoreUnavailable(operation);
  }

  touch(node: string, record: MemberRecord, health: Health): void {
    const now = this.clock.now();
    const deadline = health.status === "critical" ? now : now + this.timing.leaseMs;
    const alive = deadline > now;
    const e = this.find(node);
    if (e?.alive && !alive && this.leader?.node === node) this.invalidate(now);
    const version = this.bump();
    if (e) {
      e.record = record;
      e.version = version;
      e.deadline = deadline;
      e.alive = alive;
      e.view = memberView(e);
    } else {
      const added: Entry = { node, record, version, deadline, alive, view: memberView({ node, record, alive, version }) };
      const at = this.members.findIndex((m) => m.node > node);
      this.members.splice(at < 0 ? this.members.length : at, 0, added);
    }
    this.recomputeEarliest();
  }

  remove(node: string): void {
    const i = this.members.findIndex((m) => m.node === node);
    if (i < 0) return;
    const [e] = this.members.splice(i, 1);
    if (e?.alive && this.leader?.node === node) this.invalidate(this.clock.now());
    this.bump();
    this.recomputeEarliest();
  }

  acquire(node: string, record: LeaderRecord): { acquired: true; term: number } | { acquired: false } {
    const held = this.leader;
    if (held && held.node !== node) return { acquired: false };
    if (!held && (this.clock.now() < this.lockDelayUntil || !this.find(node)?.alive)) return { acquired: false };
    const term = held ? held.term : ++this.term;
    this.setLeader(node, term, record);
    return { acquired: true, term };
  }

  holds(node: string): boolean {
    return this.leader?.node === node;
  }

  update(node: string, record: LeaderRecord): boolean {
    const held = this.leader;
    if (held?.node !== node) return false;
    this.setLeader(node, held.term, record);
    return true;
  }

  release(node: string): void {
    if (this.leader?.node !== node) return;
    this.leader = undefined;
    this.leaderMoved = true;
    this.bump();
  }

  /** The archiver's lock: held while its holder is alive (no lock-delay). */
  private archiverLock: { node: string; record: ArchiverRecord } | undefined;

  acquireArchiver(node: string, record: ArchiverRecord): boolean {
    this.settle();
    const held = this.archiverLock;
    if (held && held.node !== node && this.find(held.node)?.alive) return false;
    if (!this.find(node)?.alive) return false;
    this.archiverLock = { node, record };
    return true;
  }

  releaseArchiver(node: string): void {
    if (this.archiverLock?.node === node) this.archiverLock = undefined;
  }

  archiverHolder(): ArchiverRecord | undefined {
    this.settle();
    const held = this.archiverLock;
    return held && this.find(held.node)?.alive ? held.record : undefined;
  }

  casSwitchover(record: SwitchoverRecord, expectedVersion: number): boolean {
    if ((this.switchover?.version ?? 0) !== expectedVersion) return false;
    const version = this.bump();
    this.switchover = Object.freeze({ record, version });
    return true;
  }

  setPause(record: PauseRecord): void {
    this.pause = Object.freeze({ ...record });
    this.bump();
  }

  markInitialized(): void {
    if (this.initialized) return;
    this.initialized = true;
    this.bump();
  }

  /**
   * Waits until `leaderVersion` moved from `seen`, `timeoutMs` elapse, `signal` aborts or `stop()`
   * turns true (checked whenever the watch wakes). It wakes at the holder's liveness deadline to
   * notice an expiry; other members' publications and expiries do not wake it.
   */
  async waitPast(seen: number, timeoutMs: number, signal: AbortSignal | undefined, stop: () => boolean): Promise<void> {
    const end = this.clock.now() + Math.max(0, timeoutMs);
    for (;;) {
      this.settle();
      if (this.leaderVersion !== seen || signal?.aborted || stop()) return;
      const now = this.clock.now();
      if (now >= end) return;
      const holder = this.leader ? this.find(this.leader.node) : undefined;
      await this.waitChange(Math.min(end, holder ? holder.deadline : Infinity) - now, signal);
    }
  }

  /** Wakes every pending watch so it re-checks its conditions. */
  wakeAll(): void {
    for (const wake of this.waiters) wake();
  }

  // ---- Internals. ----

  private find(node: string): Entry | undefined {
    for (const e of this.members) if (e.node === node) return e;
    return undefined;
  }

  private setLeader(node: string, term: number, record: LeaderRecord): void {
    this.leader = Object.freeze({ node, term, record });
    this.lastLeader = record;
    this.leaderMoved = true;
    this.bump();
  }

  /** The holder's liveness ended at `at`: the leadership is gone, and nobody acquires for lock-delay. */
  private invalidate(at: number): void {
    this.leader = undefined;
    this.leaderMoved = true;
    this.lockDelayUntil = Math.max(this.lockDelayUntil, at + this.timing.lockDelayMs);
  }

  /** Marks members whose deadline has passed as dead; a leadership held by one ends at its deadline. */
  private settle(): void {
    const now = this.clock.now();
    if (now < this.earliestDeadline) return;
    for (const e of this.members) {
      if (!e.alive || e.deadline > now) continue;
      e.alive = false;
      e.view = memberView(e);
      if (this.leader?.node === e.node) this.invalidate(e.deadline);
    }
    this.bump();
    this.recomputeEarliest();
  }

  private recomputeEarliest(): void {
    let earliest = Infinity;
    for (const e of this.members) if (e.alive && e.deadline < earliest) earliest = e.deadline;
    this.earliestDeadline = earliest;
  }

  /** Records a change of the loadable state (new version, stale snapshot); a leadership move wakes watches. */
  private bump(): number {
    this.cached = undefined;
    this.version++;
    if (this.leaderMoved) {
      this.leaderMoved = false;
      this.leaderVersion = this.version;
      if (this.waiters.size > 0) this.wakeAll();
    }
    return this.version;
  }

  private build(): ClusterState {
    const { version, leaderVersion, leader, lastLeader, switchover, initialized, pause } = this;
    const members = Object.freeze(this.members.map((e) => e.view));
    return Object.freeze({ version, leaderVersion, leader, lastLeader, members, switchover, initialized, pause, invalid: NO_INVALID });
  }

  /** Resolves on the next leadership move (or `wakeAll`), after `ms` of clock time, or when `signal` aborts, whichever is first. */
  private waitChange(ms: number, signal: AbortSignal | undefined): Promise<void> {
    return new Promise<void>((resolve) => {
      let finished = false;
      const done = (): void => {
        if (finished) return;
        finished = true;
        cancel();
        this.waiters.delete(done);
        signal?.removeEventListener("abort", done);
        resolve();
      };
      const cancel = this.clock.after(ms, done);
      this.waiters.add(done);
      if (signal?.aborted) return done();
      signal?.addEventListener("abort", done, { once: true });
    });
  }
}

/**
 * One node's handle on a MemoryStoreServer. Each call takes effect at the clock time it is issued
 * and answers after the server's latency. Records are validated on the way in (a bad one is a
 * thrown Error naming the field, not StoreUnavailable), and must name this handle's node.
 *
 * Beyond the interface's contract: re-acquiring a leadership this node already holds succeeds with
 * the same term and rewrites the record (as a Consul session re-acquiring its own lock); removing
 * a live member that holds the leadership invalidates it, with lock-delay; `close()` ends pending
 * watches, makes later calls throw StoreUnavailable, and leaves the node's liveness to lapse.
 */
export class MemoryClusterStore implements ClusterStore {
  readonly kind = "memory" as const;
  readonly timing: StoreTiming;
  private closed = false;
  private readonly isClosed = (): boolean => this.closed;

  constructor(
    private readonly server: MemoryStoreServer,
    readonly node: string,
  ) {
    this.timing = server.timing;
  }

  async load(): Promise<ClusterState> {
    const ok = this.enter("load");
    const state = ok ? this.server.snapshot() : undefined;
    await this.server.respond("load", this.node, ok);
    return state!;
  }

  async watch(leaderVersion: number, timeoutMs: number, signal?: AbortSignal): Promise<void> {
    const ok = this.enter("watch");
    if (ok) await this.server.waitPast(leaderVersion, timeoutMs, signal, this.isClosed);
    if (signal?.aborted || this.closed) return;
    await this.server.respond("watch", this.node, ok, signal);
  }

  async touchMember(record: MemberRecord, health: Health): Promise<void> {
    const valid = validate(MemberRecord, record, `member record from ${this.node}`, this.node, this.server.validateRecords);
    const ok = this.enter("touchMember");
    if (ok) this.server.touch(this.node, valid, health);
    await this.server.respond("touchMember", this.node, ok);
  }

  async attemptToAcquireLeader(record: LeaderRecord): Promise<{ acquired: true; term: number } | { acquired: false }> {
    const valid = validate(LeaderRecord, record, "leader record", this.node, this.server.validateRecords);
    const ok = this.enter("attemptToAcquireLeader");
    const result = ok ? this.server.acquire(this.node, valid) : undefined;
    await this.server.respond("attemptToAcquireLeader", this.node, ok);
    return result!;
  }

  async renewLeader(): Promise<boolean> {
    const ok = this.enter("renewLeader");
    const held = ok && this.server.holds(this.node);
    await this.server.respond("renewLeader", this.node, ok);
    return held;
  }

  async updateLeader(record: LeaderRecord): Promise<boolean> {
    const valid = validate(LeaderRecord, record, "leader record", this.node, this.server.validateRecords);
    const ok = this.enter("updateLeader");
    const updated = ok && this.server.update(this.node, valid);
    await this.server.respond("updateLeader", this.node, ok);
    return updated;
  }

  async releaseLeader(): Promise<void> {
    const ok = this.enter("releaseLeader");
    if (ok) this.server.release(this.node);
    await this.server.respond("releaseLeader", this.node, ok);
  }

  async acquireArchiver(record: ArchiverRecord): Promise<boolean> {
    const valid = validate(ArchiverRecord, record, "archiver record", this.node, this.server.validateRecords);
    const ok = this.enter("acquireArchiver");
    const held = ok && this.server.acquireArchiver(this.node, valid);
    await this.server.respond("acquireArchiver", this.node, ok);
    return held;
  }

  async releaseArchiver(): Promise<void> {
    const ok = this.enter("releaseArchiver");
    if (ok) this.server.releaseArchiver(this.node);
    await this.server.respond("releaseArchiver", this.node, ok);
  }

  async archiver(): Promise<ArchiverRecord | undefined> {
    const ok = this.enter("archiver");
    const held = ok ? this.server.archiverHolder() : undefined;
    await this.server.respond("archiver", this.node, ok);
    return held;
  }

  async writeSwitchover(record: SwitchoverRecord, expectedVersion: number): Promise<boolean> {
    const valid = validate(SwitchoverRecord, record, "switchover record", undefined, this.server.validateRecords);
    const ok = this.enter("writeSwitchover");
    const written = ok && this.server.casSwitchover(valid, expectedVersion);
    await this.server.respond("writeSwitchover", this.node, ok);
    return written;
  }

  async setPause(record: PauseRecord): Promise<void> {
    const valid = validate(PauseRecord, record, "pause record", undefined, this.server.validateRecords);
    const ok = this.enter("setPause");
    if (ok) this.server.setPause(valid);
    await this.server.respond("setPause", this.node, ok);
  }

  /** Marks the cluster bootstrapped; who did it (`node`) is not kept by the memory store. */
  async markInitialized(_node: string): Promise<void> {
    const ok = this.enter("markInitialized");
    if (ok) this.server.markInitialized();
    await this.server.respond("markInitialized", this.node, ok);
  }

  async removeMember(node: string): Promise<void> {
    const ok = this.enter("removeMember");
    if (ok) this.server.remove(node);
    await this.server.respond("removeMember", this.node, ok);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.server.wakeAll();
  }

  /** Starts a call: throws once closed; false when this node is cut off (the call must change nothing). */
  private enter(operation: string): boolean {
    if (this.closed) throw new StoreUnavailable(operation, { cause: new Error(`store handle of ${this.node} is closed`) });
    return this.server.admit(this.node);
  }
}
