import type { z } from "zod";
import type { Clock } from "./clock.js";
import { LeaderRecord, MemberRecord, SwitchoverRecord } from "./records.js";
import {
  StoreUnavailable,
  type ClusterState,
  type ClusterStore,
  type Health,
  type Leader,
  type Member,
  type StoreTiming,
} from "./store.js";

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
 * when it was noticed), and the version grows. A pending `watch` sleeps no further than the next
 * liveness deadline, so an expiry wakes watchers at the moment it happens.
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

type Switchover = NonNullable<ClusterState["switchover"]>;

const NO_INVALID: ClusterState["invalid"] = Object.freeze([]);

/** Parses `value` with `schema`; throws an Error naming every bad field. The result is frozen. */
function validate<T extends object>(schema: z.ZodType<T>, value: unknown, what: string): T {
  const parsed = schema.safeParse(value);
  if (parsed.success) return Object.freeze(parsed.data);
  const problems = parsed.error.issues.map((i) => `${i.path.map(String).join(".") || "(record)"}: ${i.message}`);
  throw new Error(`invalid ${what}: ${problems.join("; ")}`);
}

function sameNode(record: { node: string }, node: string, what: string): void {
  if (record.node !== node) throw new Error(`invalid ${what}: node: is "${record.node}" but the handle is for "${node}"`);
}

function memberView(e: Pick<Entry, "node" | "record" | "alive" | "version">): Member {
  return Object.freeze({ node: e.node, record: e.record, alive: e.alive, version: e.version });
}

export interface MemoryStoreOptions {
  clock: Clock;
  timing: StoreTiming;
}

/** The shared in-memory store: one per simulated cluster. */
export class MemoryStoreServer {
  readonly clock: Clock;
  readonly timing: StoreTiming;

  private version = 0;
  private term = 0;
  private leader: Leader | undefined;
  private lastLeader: LeaderRecord | undefined;
  /** Members sorted by node name (the order snapshots list them in). */
  private readonly members: Entry[] = [];
  private switchover: Switchover | undefined;
  private initialized = false;
  /** Nobody may acquire before this clock time (set when a holder's leadership is invalidated). */
  private lockDelayUntil = -Infinity;
  /** Smallest deadline among members settled as alive: `settle()` has nothing to do before it. */
  private earliestDeadline = Infinity;
  private cached: ClusterState | undefined;
  /** Wake-up functions of pending watches; each removes itself when called. */
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
    return (this.cached ??= this.build());
  }

  /** Clock time before which nobody can acquire the leadership (lock-delay); -Infinity when none ran. */
  get lockDelayEndsAt(): number {
    return this.lockDelayUntil;
  }

  // ---- The operations, called by MemoryClusterStore once a call is admitted. ----

  /** @internal Counts a call; false when `node` cannot reach the store. Otherwise brings liveness up to date. */
  admit(node: string): boolean {
    this.callCount++;
    if (this.isCut(node)) return false;
    this.settle();
    return true;
  }

  /** @internal */
  isCut(node: string): boolean {
    return this.outageOn || this.cut.has(node);
  }

  /** @internal */
  get latencyMs(): number {
    return this.latency;
  }

  /** @internal */
  touch(node: string, record: MemberRecord, health: Health): void {
    const now = this.clock.now();
    const deadline = health.status === "critical" ? now : now + this.timing.leaseMs;
    const alive = deadline > now;
    const version = this.bump();
    const e = this.find(node);
    if (e) {
      if (e.alive && !alive && this.leader?.node === node) this.invalidate(now);
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

  /** @internal */
  remove(node: string): void {
    const i = this.members.findIndex((m) => m.node === node);
    if (i < 0) return;
    const [e] = this.members.splice(i, 1);
    if (e?.alive && this.leader?.node === node) this.invalidate(this.clock.now());
    this.bump();
    this.recomputeEarliest();
  }

  /** @internal */
  acquire(node: string, record: LeaderRecord): { acquired: true; term: number } | { acquired: false } {
    const held = this.leader;
    if (held && held.node !== node) return { acquired: false };
    if (!held && (this.clock.now() < this.lockDelayUntil || !this.find(node)?.alive)) return { acquired: false };
    const term = held ? held.term : ++this.term;
    this.setLeader(node, term, record);
    return { acquired: true, term };
  }

  /** @internal */
  holds(node: string): boolean {
    return this.leader?.node === node;
  }

  /** @internal */
  update(node: string, record: LeaderRecord): boolean {
    const held = this.leader;
    if (held?.node !== node) return false;
    this.setLeader(node, held.term, record);
    return true;
  }

  /** @internal */
  release(node: string): void {
    if (this.leader?.node !== node) return;
    this.leader = undefined;
    this.bump();
  }

  /** @internal */
  casSwitchover(record: SwitchoverRecord, expectedVersion: number): boolean {
    if ((this.switchover?.version ?? 0) !== expectedVersion) return false;
    const version = this.bump();
    this.switchover = Object.freeze({ record, version });
    return true;
  }

  /** @internal */
  markInitialized(): void {
    if (this.initialized) return;
    this.initialized = true;
    this.bump();
  }

  /**
   * @internal Waits until the version passes `since`, `timeoutMs` elapse, `signal` aborts or
   * `stop()` turns true (checked whenever the watch wakes).
   */
  async waitPast(since: number, timeoutMs: number, signal: AbortSignal | undefined, stop: () => boolean): Promise<void> {
    const end = this.clock.now() + Math.max(0, timeoutMs);
    for (;;) {
      this.settle();
      if (this.version > since || signal?.aborted || stop()) return;
      const now = this.clock.now();
      if (now >= end) return;
      await this.waitChange(Math.min(end, this.earliestDeadline) - now, signal);
    }
  }

  /** @internal Wakes every pending watch so it re-checks its conditions. */
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
    this.bump();
  }

  /** The holder's liveness ended at `at`: the leadership is gone, and nobody acquires for lock-delay. */
  private invalidate(at: number): void {
    this.leader = undefined;
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

  /** Records a change of the loadable state: new version, stale snapshot, watches woken. */
  private bump(): number {
    this.cached = undefined;
    this.version++;
    if (this.waiters.size > 0) this.wakeAll();
    return this.version;
  }

  private build(): ClusterState {
    const members = new Array<Member>(this.members.length);
    for (let i = 0; i < members.length; i++) members[i] = this.members[i]!.view;
    return Object.freeze({
      version: this.version,
      leader: this.leader,
      lastLeader: this.lastLeader,
      members: Object.freeze(members),
      switchover: this.switchover,
      initialized: this.initialized,
      invalid: NO_INVALID,
    });
  }

  /** Resolves on the next change, after `ms` of clock time, or when `signal` aborts, whichever is first. */
  private waitChange(ms: number, signal: AbortSignal | undefined): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = new AbortController();
      const done = (): void => {
        if (timer.signal.aborted) return;
        timer.abort();
        this.waiters.delete(done);
        signal?.removeEventListener("abort", done);
        resolve();
      };
      this.waiters.add(done);
      signal?.addEventListener("abort", done, { once: true });
      void this.clock.sleep(ms, timer.signal).then(done);
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
    const answer = this.answer("load", ok);
    if (answer) await answer;
    return state!;
  }

  async watch(sinceVersion: number, timeoutMs: number, signal?: AbortSignal): Promise<void> {
    const ok = this.enter("watch");
    if (ok) await this.server.waitPast(sinceVersion, timeoutMs, signal, this.isClosed);
    if (this.server.latencyMs > 0 && !signal?.aborted && !this.closed) await this.server.clock.sleep(this.server.latencyMs, signal);
    if (signal?.aborted || this.closed) return;
    this.verdict("watch", ok);
  }

  async touchMember(record: MemberRecord, health: Health): Promise<void> {
    const what = `member record from ${this.node}`;
    const valid = validate(MemberRecord, record, what);
    sameNode(valid, this.node, what);
    const ok = this.enter("touchMember");
    if (ok) this.server.touch(this.node, valid, health);
    const answer = this.answer("touchMember", ok);
    if (answer) await answer;
  }

  async attemptToAcquireLeader(record: LeaderRecord): Promise<{ acquired: true; term: number } | { acquired: false }> {
    const valid = this.leaderRecord(record);
    const ok = this.enter("attemptToAcquireLeader");
    const result = ok ? this.server.acquire(this.node, valid) : undefined;
    const answer = this.answer("attemptToAcquireLeader", ok);
    if (answer) await answer;
    return result!;
  }

  async renewLeader(): Promise<boolean> {
    const ok = this.enter("renewLeader");
    const held = ok && this.server.holds(this.node);
    const answer = this.answer("renewLeader", ok);
    if (answer) await answer;
    return held;
  }

  async updateLeader(record: LeaderRecord): Promise<boolean> {
    const valid = this.leaderRecord(record);
    const ok = this.enter("updateLeader");
    const updated = ok && this.server.update(this.node, valid);
    const answer = this.answer("updateLeader", ok);
    if (answer) await answer;
    return updated;
  }

  async releaseLeader(): Promise<void> {
    const ok = this.enter("releaseLeader");
    if (ok) this.server.release(this.node);
    const answer = this.answer("releaseLeader", ok);
    if (answer) await answer;
  }

  async writeSwitchover(record: SwitchoverRecord, expectedVersion: number): Promise<boolean> {
    const valid = validate(SwitchoverRecord, record, "switchover record");
    const ok = this.enter("writeSwitchover");
    const written = ok && this.server.casSwitchover(valid, expectedVersion);
    const answer = this.answer("writeSwitchover", ok);
    if (answer) await answer;
    return written;
  }

  /** Marks the cluster bootstrapped; who did it (`node`) is not kept by the memory store. */
  async markInitialized(_node: string): Promise<void> {
    const ok = this.enter("markInitialized");
    if (ok) this.server.markInitialized();
    const answer = this.answer("markInitialized", ok);
    if (answer) await answer;
  }

  async removeMember(node: string): Promise<void> {
    const ok = this.enter("removeMember");
    if (ok) this.server.remove(node);
    const answer = this.answer("removeMember", ok);
    if (answer) await answer;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.server.wakeAll();
  }

  private leaderRecord(record: LeaderRecord): LeaderRecord {
    const valid = validate(LeaderRecord, record, "leader record");
    sameNode(valid, this.node, "leader record");
    return valid;
  }

  /** Starts a call: throws once closed; false when this node is cut off (the call must change nothing). */
  private enter(operation: string): boolean {
    if (this.closed) throw new StoreUnavailable(operation, { cause: new Error(`store handle of ${this.node} is closed`) });
    return this.server.admit(this.node);
  }

  /**
   * Finishes a call: after the latency (a promise to await) or at once (undefined), throws
   * StoreUnavailable if the call was refused or this node is cut off by then.
   */
  private answer(operation: string, ok: boolean): Promise<void> | undefined {
    const server = this.server;
    if (server.latencyMs > 0) {
      return server.clock.sleep(server.latencyMs).then(() => this.verdict(operation, ok));
    }
    this.verdict(operation, ok);
    return undefined;
  }

  private verdict(operation: string, ok: boolean): void {
    if (!ok || this.server.isCut(this.node)) throw new StoreUnavailable(operation);
  }
}
