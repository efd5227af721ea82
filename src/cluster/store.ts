import type { ArchiverRecord, LeaderRecord, MemberRecord, PauseRecord, SwitchoverRecord } from "./records.js";

/**
 * The cluster store, after Patroni's AbstractDCS: what the HA core needs from Consul (or etcd, or
 * memory), in the words of the problem. Keys, encodings, sessions, check ids and indexes stay in
 * the implementation's folder; the HA core sees leaders, terms, members and versions.
 *
 * ## Timing contract (every implementation keeps it; the simulation checks the HA core against it)
 *
 * - A node is *alive* while its last `touchMember(…, passing)` is younger than `leaseMs` (measured
 *   from when the call was issued). A `touchMember(…, critical)` ends its liveness at once.
 * - Leadership is tied to the holder's liveness: when the holder stops being alive, it loses the
 *   leadership, and nobody can acquire it for a further `lockDelayMs`.
 * - So: if this node issued `touchMember(…, passing)` at time t and a `renewLeader()` issued after
 *   it returned true, no other node can hold the leadership before `t + leaseMs + lockDelayMs`
 *   (`takeoverMs` from t). The HA core fences itself well before that (`fenceAfter`).
 * - `releaseLeader()` frees the leadership at once, without lock-delay (the holder knows it let go).
 * - `version` grows with every change of the state `load()` returns. `leaderVersion` changes
 *   whenever the leadership does (taken, released, invalidated, its record rewritten);
 *   `watch(leaderVersion)` returns once it moved (or on timeout), so a freed leadership is seen
 *   without waiting a full loop, while members' own publications do not wake anyone.
 * - Every method either completes or throws `StoreUnavailable`; a write that threw may or may not
 *   have been applied (as with any network store), so callers re-read before they rely on it.
 */
export interface StoreTiming {
  /** Liveness TTL of a member, and so of the leadership it holds. */
  leaseMs: number;
  /** After a holder's leadership is invalidated (not released), nobody acquires for this long. */
  lockDelayMs: number;
}

export interface Leader {
  node: string;
  /** Grows with every new holder (Consul: LockIndex; memory: a counter). */
  term: number;
  record: LeaderRecord;
}

export interface Member {
  node: string;
  record: MemberRecord;
  /** The node's liveness (Consul: its TTL check is not critical). */
  alive: boolean;
  /** Store version at which the record was last written: newer than a version seen earlier = fresh. */
  version: number;
}

export interface InvalidRecord {
  /** What the record is (e.g. `member mysql-2`, `leader`, `switchover`). */
  what: string;
  /** Which field is wrong and why. */
  error: string;
}

/** One consistent look at the cluster, immutable. */
export interface ClusterState {
  readonly version: number;
  /** Changes whenever the leadership does: what `watch` waits on. */
  readonly leaderVersion: number;
  /** The current holder of the leadership, if any. */
  readonly leader: Leader | undefined;
  /** The latest holder's record, held or not: every later leader must contain its `gtid`. */
  readonly lastLeader: LeaderRecord | undefined;
  readonly members: readonly Member[];
  readonly switchover: { record: SwitchoverRecord; version: number } | undefined;
  /** The cluster's first primary has bootstrapped it (never goes back to false). */
  readonly initialized: boolean;
  /** The operator's pause: while `paused`, only the last leader may take a free leadership back. */
  readonly pause: PauseRecord | undefined;
  /** Records that could not be read: they do not vote, and are reported. */
  readonly invalid: readonly InvalidRecord[];
}

export type Health = { status: "passing" | "warning" | "critical"; output: string };

export interface ClusterStore {
  readonly kind: "consul" | "etcd" | "memory";
  readonly timing: StoreTiming;
  /** This node's name in the store. */
  readonly node: string;

  load(): Promise<ClusterState>;
  /** Resolves when the leadership changed since `leaderVersion` (from `load()`), after `timeoutMs`, or when `signal` aborts. */
  watch(leaderVersion: number, timeoutMs: number, signal?: AbortSignal): Promise<void>;

  /** Publishes this node's record and refreshes (passing, warning) or ends (critical) its liveness. */
  touchMember(record: MemberRecord, health: Health): Promise<void>;
  /** Takes the free leadership for this node (alive only); false when someone holds it or lock-delay runs. */
  attemptToAcquireLeader(record: LeaderRecord): Promise<{ acquired: true; term: number } | { acquired: false }>;
  /** Whether this node still holds the leadership, renewing what the store needs renewed. */
  renewLeader(): Promise<boolean>;
  /** Rewrites the leader record, only while this node holds the leadership. */
  updateLeader(record: LeaderRecord): Promise<boolean>;
  /** Gives the leadership up at once (no lock-delay); a no-op when not held. */
  releaseLeader(): Promise<void>;

  /**
   * The binlog archiver's lock: one node at a time streams the cluster's binlogs to the snapshot
   * store. Tied to the holder's liveness as the leadership is (lost when it stops being alive),
   * without lock-delay. Called again by the holder, it renews and rewrites the record. True when
   * this node holds it.
   */
  acquireArchiver(record: ArchiverRecord): Promise<boolean>;
  /** Gives the archiver's lock up at once; a no-op when not held. */
  releaseArchiver(): Promise<void>;
  /** Who holds the archiver's lock, if anyone. */
  archiver(): Promise<ArchiverRecord | undefined>;

  /** Compare-and-set of the switchover record: `expectedVersion` 0 means "only if there is none". */
  writeSwitchover(record: SwitchoverRecord, expectedVersion: number): Promise<boolean>;
  /** Pauses (or resumes) automatic failover for the whole cluster. */
  setPause(record: PauseRecord): Promise<void>;
  /** Marks the cluster bootstrapped (idempotent). */
  markInitialized(node: string): Promise<void>;
  /** Forgets a member's record (a node that is gone for good). */
  removeMember(node: string): Promise<void>;

  close(): void;
}

/** The store cannot be reached or did not answer in time; the operation may or may not have happened. */
export class StoreUnavailable extends Error {
  override name = "StoreUnavailable";
  constructor(
    readonly operation: string,
    options?: { cause?: unknown },
  ) {
    super(`cluster store unavailable during ${operation}${options?.cause instanceof Error ? `: ${options.cause.message}` : ""}`, options);
  }
}

/** Earliest time another node could lead, for leadership confirmed as of `confirmedAt`. */
export function takeoverAt(timing: StoreTiming, confirmedAt: number): number {
  return confirmedAt + timing.leaseMs + timing.lockDelayMs;
}
