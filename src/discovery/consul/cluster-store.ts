import type { MysqlConfig } from "../../config/schema.js";
import { formatDuration } from "../../config/duration.js";
import { ArchiverRecord, LeaderRecord, MemberRecord, PauseRecord, SwitchoverRecord } from "../../cluster/records.js";
import {
  StoreUnavailable,
  type ClusterState,
  type ClusterStore,
  type Health,
  type InvalidRecord,
  type Leader,
  type Member,
  type StoreTiming,
} from "../../cluster/store.js";
import type { ServiceHealth } from "../service-health.js";
import { ConsulHttpError, type ConsulClient, type KvEntry } from "./client.js";
import { clusterKeys, decodeRecord, encodeMember, type ClusterKeys } from "./cluster-keys.js";

export interface ConsulClusterStoreOptions {
  client: ConsulClient;
  cluster: string;
  /** This node's name: its member key, and the `statepilot-node` meta of its service instance. */
  node: string;
  /** The Consul service every node registers (its health decides Member.alive). */
  serviceName: string;
  /** This node's TTL check (`service:<service>-<node>`): the leader session follows it. */
  checkId: string;
  /**
   * Refreshes (or fails) this node's TTL check; true once Consul has it. Production passes
   * ServiceHealth.report, which also registers the service again after an agent restart.
   */
  reportHealth: (health: Health) => Promise<boolean>;
  timing: { checkTtlMs: number; sessionTtlMs: number; lockDelayMs: number };
}

const unavailable = (operation: string, err: unknown): StoreUnavailable => (err instanceof StoreUnavailable ? err : new StoreUnavailable(operation, { cause: err }));

/** Consul refuses a session on a check that is critical: the node is not alive, so it cannot lead. */
const isCheckCritical = (err: unknown): boolean => err instanceof ConsulHttpError && /critical state/i.test(err.body || err.message);
/** A lock operation with a session that was invalidated (check failed, TTL ran out, destroyed). */
const isInvalidSession = (err: unknown): boolean => err instanceof ConsulHttpError && /invalid session|session .*not found/i.test(err.body || err.message);

/**
 * The ClusterStore on Consul. The leadership is the key `statepilot/<cluster>/primary`, acquired by
 * a session that follows this node's TTL check (behavior release, lock-delay): when the check turns
 * critical or expires, Consul invalidates the session, frees the key and holds it for lock-delay.
 * Members are `members/<node>` records with the service's health as liveness; the term is the key's
 * LockIndex, versions are Consul's modify indexes, and watch() is a blocking query on the prefix.
 */
export class ConsulClusterStore implements ClusterStore {
  readonly kind = "consul" as const;
  readonly timing: StoreTiming;
  readonly node: string;
  private readonly client: ConsulClient;
  private readonly keys: ClusterKeys;
  private readonly closed = new AbortController();
  private session: string | undefined;
  private creatingSession: Promise<string | undefined> | undefined;
  /**
   * The highest version load() returned: Consul's prefix index can go back (a reaped tombstone, an
   * empty prefix answering 404), while Raft indexes of later writes are always above it.
   */
  private highestVersion = 0;
  /** The initialised key was in the last listing (see load). */
  private sawInitialized = false;
  /** Moves every member write to a new value (and so a new ModifyIndex), also across restarts. */
  private seq = 0;

  constructor(private readonly opts: ConsulClusterStoreOptions) {
    this.client = opts.client;
    this.node = opts.node;
    this.keys = clusterKeys(opts.cluster);
    this.timing = {
      leaseMs: Math.min(opts.timing.checkTtlMs, opts.timing.sessionTtlMs),
      lockDelayMs: opts.timing.lockDelayMs,
    };
  }

  /** The session this node would lead with, if it has one (for diagnostics and locks that follow the same liveness). */
  get sessionId(): string | undefined {
    return this.session;
  }

  // ---- reading --------------------------------------------------------------------------------

  async load(): Promise<ClusterState> {
    let entries: KvEntry[];
    let index: number;
    let alive: Map<string, boolean>;
    try {
      // One recursive read of the cluster's prefix: leader, members, switchover and initialized as
      // of one Raft index, which is also the index watch() blocks on.
      const [kv, health] = await Promise.all([this.client.kvList(this.keys.prefix), this.client.healthService(this.opts.serviceName)]);
      entries = kv.value;
      index = kv.index;
      alive = new Map();
      for (const instance of health.value) {
        const node = instance.meta["statepilot-node"];
        // Another cluster may register the same service name (and node names) on this Consul.
        if (!node || instance.meta.cluster !== this.opts.cluster) continue;
        const ok = instance.checks.every((c) => c.status !== "critical");
        alive.set(node, (alive.get(node) ?? false) || ok);
      }
    } catch (err) {
      throw unavailable("load", err);
    }

    // The initialised key is never deleted: seen before and missing now, the agent lost its data (a
    // dev agent restarted, a datacenter rebuilt) and its Raft indexes started again from 1. Versions
    // then start again too, or every new record would look older than what the HA loop saw before.
    const hasInitialized = entries.some((e) => e.key === this.keys.initialized);
    if (this.sawInitialized && !hasInitialized) this.highestVersion = 0;
    this.sawInitialized = hasInitialized;
    let version = Math.max(index, this.highestVersion);
    let leaderVersion = 0;
    let leader: Leader | undefined;
    let lastLeader: LeaderRecord | undefined;
    let switchover: ClusterState["switchover"];
    let initialized = false;
    let pause: PauseRecord | undefined;
    const members: Member[] = [];
    const invalid: InvalidRecord[] = [];
    for (const e of entries) {
      version = Math.max(version, e.modifyIndex);
      if (e.key === this.keys.leader) {
        leaderVersion = e.modifyIndex;
        // A free key released with no value (as older versions did on a failed promotion) is no record.
        if (!e.session && !e.value) continue;
        const d = decodeRecord(LeaderRecord, "leader", e.value);
        if (!d.ok) {
          invalid.push(d.invalid);
          continue;
        }
        lastLeader = d.record;
        if (e.session) leader = { node: d.record.node, term: e.lockIndex, record: d.record };
      } else if (e.key === this.keys.switchover) {
        const d = decodeRecord(SwitchoverRecord, "switchover", e.value);
        if (d.ok) switchover = { record: d.record, version: e.modifyIndex };
        else invalid.push(d.invalid);
      } else if (e.key === this.keys.initialized) {
        initialized = true;
      } else if (e.key === this.keys.pause) {
        const d = decodeRecord(PauseRecord, "pause", e.value);
        if (d.ok) pause = d.record;
        else invalid.push(d.invalid);
      } else if (e.key.startsWith(this.keys.members)) {
        const node = e.key.slice(this.keys.members.length);
        if (!node || node.includes("/")) continue;
        const what = `member ${node}`;
        const d = decodeRecord(MemberRecord, what, e.value);
        if (!d.ok) invalid.push(d.invalid);
        else if (d.record.node !== node) invalid.push({ what, error: `node: expected ${JSON.stringify(node)} (the key's name), got ${JSON.stringify(d.record.node)}` });
        else members.push({ node, record: d.record, alive: alive.get(node) ?? false, version: e.modifyIndex });
      }
    }
    members.sort((a, b) => (a.node < b.node ? -1 : a.node > b.node ? 1 : 0));
    this.highestVersion = version;
    // No leader key yet: a blocking read of the missing key returns once it is created.
    return { version, leaderVersion: leaderVersion || version, leader, lastLeader, members, switchover, initialized, pause, invalid };
  }

  async watch(leaderVersion: number, timeoutMs: number, signal?: AbortSignal): Promise<void> {
    const abort = signal ? AbortSignal.any([signal, this.closed.signal]) : this.closed.signal;
    const deadline = Date.now() + timeoutMs;
    while (!abort.aborted) {
      const left = deadline - Date.now();
      if (left <= 0) return;
      let r: Awaited<ReturnType<ConsulClient["kvGet"]>>;
      try {
        // A blocking read of the leader key alone: members' publications do not wake it.
        r = await this.client.kvGet(this.keys.leader, { index: leaderVersion, wait: formatDuration(Math.max(1, Math.ceil(left))), signal: abort });
      } catch (err) {
        if (abort.aborted) return;
        throw unavailable("watch", err);
      }
      if (!r.value) {
        // No leader key: every member's publication moves the KV index past leaderVersion, so
        // blocking on the missing key would answer at once each time; look again after a pause.
        await sleep(Math.min(left, 250), abort);
        return;
      }
      const now = Math.max(r.index, r.value.modifyIndex);
      // Moved on (or went back: a restored or rebuilt Consul): the caller loads again.
      if (now !== leaderVersion) return;
      // Same index: the wait ran out, or Consul woke the query for nothing; block again.
    }
  }

  // ---- this node ------------------------------------------------------------------------------

  async touchMember(record: MemberRecord, health: Health): Promise<void> {
    let reported: boolean;
    try {
      reported = await this.opts.reportHealth(health);
    } catch (err) {
      throw unavailable("touchMember", err);
    }
    if (!reported) throw new StoreUnavailable("touchMember");
    this.seq = Math.max(this.seq + 1, Date.now());
    try {
      await this.client.kvPut(`${this.keys.members}${this.node}`, encodeMember(record, this.seq));
    } catch (err) {
      throw unavailable("touchMember", err);
    }
  }

  // ---- leadership -----------------------------------------------------------------------------

  async attemptToAcquireLeader(record: LeaderRecord): Promise<{ acquired: true; term: number } | { acquired: false }> {
    const value = JSON.stringify(record);
    // A second round only when the session we had turned out to be invalidated.
    for (let round = 0; round < 2; round++) {
      const session = await this.ensureSession("attemptToAcquireLeader");
      if (!session) return { acquired: false };
      let acquired: boolean;
      try {
        // False while another session holds the key or lock-delay runs.
        acquired = await this.client.kvAcquire(this.keys.leader, value, session);
      } catch (err) {
        if (isInvalidSession(err)) {
          this.forgetSession(session);
          continue;
        }
        throw unavailable("attemptToAcquireLeader", err);
      }
      if (!acquired) return { acquired: false };
      const entry = await this.readLeader("attemptToAcquireLeader");
      return entry?.session === session ? { acquired: true, term: entry.lockIndex } : { acquired: false };
    }
    return { acquired: false };
  }

  async renewLeader(): Promise<boolean> {
    const session = this.session;
    if (!session) return false;
    let renewed: Awaited<ReturnType<ConsulClient["renewSession"]>>;
    try {
      renewed = await this.client.renewSession(session);
    } catch (err) {
      throw unavailable("renewLeader", err);
    }
    if (renewed === "gone") {
      this.forgetSession(session);
      return false;
    }
    const entry = await this.readLeader("renewLeader");
    return entry?.session === session;
  }

  async updateLeader(record: LeaderRecord): Promise<boolean> {
    const session = this.session;
    if (!session) return false;
    const entry = await this.readLeader("updateLeader");
    if (!entry || entry.session !== session) return false;
    try {
      // Acquiring again by the holder rewrites the value and keeps the LockIndex. (A plain or CAS
      // write keeps the session but resets LockIndex to 0, and with it the term.) The read above
      // makes sure this is no new acquisition: our session can only lose the key by being
      // invalidated, and then the acquire fails.
      return await this.client.kvAcquire(this.keys.leader, JSON.stringify(record), session);
    } catch (err) {
      if (isInvalidSession(err)) {
        this.forgetSession(session);
        return false;
      }
      throw unavailable("updateLeader", err);
    }
  }

  async releaseLeader(): Promise<void> {
    const session = this.session;
    if (!session) return;
    const entry = await this.readLeader("releaseLeader");
    if (entry?.session === session) {
      try {
        // An explicit release has no lock-delay (destroying a session that holds the key would).
        // The release writes the value it is given: keep the record, it is the last leader's.
        await this.client.kvRelease(this.keys.leader, entry.value ?? "", session);
      } catch (err) {
        if (!isInvalidSession(err)) throw unavailable("releaseLeader", err);
      }
    }
    try {
      await this.client.destroySession(session);
    } catch (err) {
      throw unavailable("releaseLeader", err);
    }
    this.forgetSession(session);
  }

  private async readLeader(operation: string): Promise<KvEntry | undefined> {
    try {
      return (await this.client.kvGet(this.keys.leader)).value;
    } catch (err) {
      throw unavailable(operation, err);
    }
  }

  /** This node's session, created when there is none; undefined while its check is critical. */
  private async ensureSession(operation: string): Promise<string | undefined> {
    if (this.session) return this.session;
    // Without a check the session would follow nothing but its TTL: no leadership then (a CLI handle).
    if (!this.opts.checkId) return undefined;
    this.creatingSession ??= (async () => {
      try {
        const id = await this.client.createSession({
          name: `statepilot ${this.opts.cluster} ${this.node}`,
          serviceChecks: [this.opts.checkId],
          nodeChecks: [],
          ttl: formatDuration(this.opts.timing.sessionTtlMs),
          lockDelay: formatDuration(this.opts.timing.lockDelayMs),
          behavior: "release",
        });
        this.session = id;
        return id;
      } catch (err) {
        if (isCheckCritical(err)) return undefined;
        throw unavailable(operation, err);
      } finally {
        this.creatingSession = undefined;
      }
    })();
    return this.creatingSession;
  }

  private forgetSession(session: string): void {
    if (this.session === session) this.session = undefined;
  }

  // ---- cluster records ------------------------------------------------------------------------

  async writeSwitchover(record: SwitchoverRecord, expectedVersion: number): Promise<boolean> {
    try {
      return await this.client.kvPut(this.keys.switchover, JSON.stringify(record), { cas: expectedVersion });
    } catch (err) {
      throw unavailable("writeSwitchover", err);
    }
  }

  async setPause(record: PauseRecord): Promise<void> {
    try {
      await this.client.kvPut(this.keys.pause, JSON.stringify(PauseRecord.parse(record)));
    } catch (err) {
      throw unavailable("setPause", err);
    }
  }

  // ---- the archiver's lock ---------------------------------------------------------------------

  /** The archiver's lock has a session of its own (no lock-delay), following the same TTL check. */
  private archiverSession: string | undefined;

  async acquireArchiver(record: ArchiverRecord): Promise<boolean> {
    const value = JSON.stringify(ArchiverRecord.parse(record));
    try {
      let session = this.archiverSession;
      if (session && (await this.client.renewSession(session)) === "gone") session = this.archiverSession = undefined;
      if (!session) {
        try {
          session = await this.client.createSession({ name: `statepilot archiver ${this.opts.cluster} ${this.node}`, serviceChecks: [this.opts.checkId], nodeChecks: [], ttl: formatDuration(this.opts.timing.sessionTtlMs), lockDelay: "0s", behavior: "release" });
        } catch (err) {
          if (isCheckCritical(err)) return false;
          throw err;
        }
        this.archiverSession = session;
      }
      try {
        return await this.client.kvAcquire(this.keys.archiver, value, session);
      } catch (err) {
        if (!isInvalidSession(err)) throw err;
        this.archiverSession = undefined;
        return false;
      }
    } catch (err) {
      throw unavailable("acquireArchiver", err);
    }
  }

  async releaseArchiver(): Promise<void> {
    const session = this.archiverSession;
    if (!session) return;
    this.archiverSession = undefined;
    try {
      await this.client.kvRelease(this.keys.archiver, "", session).catch((err: unknown) => {
        if (!isInvalidSession(err)) throw err;
      });
      await this.client.destroySession(session);
    } catch (err) {
      throw unavailable("releaseArchiver", err);
    }
  }

  async archiver(): Promise<ArchiverRecord | undefined> {
    let entry: KvEntry | undefined;
    try {
      entry = (await this.client.kvGet(this.keys.archiver)).value;
    } catch (err) {
      throw unavailable("archiver", err);
    }
    if (!entry?.session || !entry.value) return undefined;
    const d = decodeRecord(ArchiverRecord, "archiver", entry.value);
    return d.ok ? d.record : undefined;
  }

  async markInitialized(node: string): Promise<void> {
    try {
      // Only if absent: the first primary's mark stays, and marking again changes nothing.
      await this.client.kvPut(this.keys.initialized, JSON.stringify({ node, at: new Date().toISOString() }), { cas: 0 });
    } catch (err) {
      throw unavailable("markInitialized", err);
    }
  }

  async removeMember(node: string): Promise<void> {
    try {
      await this.client.kvDelete(`${this.keys.members}${node}`);
    } catch (err) {
      throw unavailable("removeMember", err);
    }
  }

  /** Ends pending watches. The client belongs to the caller; a held leadership is released with releaseLeader() first. */
  close(): void {
    this.closed.abort();
  }
}

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    if (signal.aborted) return resolve();
    const done = () => {
      clearTimeout(t);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const t = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });

/**
 * The store for a MySQL cluster node: timings from the config, liveness through the node's service
 * health (its TTL check, registered again after an agent restart).
 */
export function consulClusterStore(deps: {
  client: ConsulClient;
  node: string;
  cfg: Pick<MysqlConfig, "cluster" | "serviceName" | "checkTtl" | "sessionTtl" | "lockDelay">;
  health: Pick<ServiceHealth, "checkId" | "report">;
}): ConsulClusterStore {
  const { client, node, cfg, health } = deps;
  if (!health.checkId) throw new Error(`the ${cfg.serviceName} service of ${node} has no check: the cluster store needs one for liveness`);
  return new ConsulClusterStore({
    client,
    cluster: cfg.cluster,
    node,
    serviceName: cfg.serviceName,
    checkId: health.checkId,
    reportHealth: (h) => health.report({ status: h.status, output: h.output, durationMs: 0 }),
    timing: { checkTtlMs: cfg.checkTtl, sessionTtlMs: cfg.sessionTtl, lockDelayMs: cfg.lockDelay },
  });
}
