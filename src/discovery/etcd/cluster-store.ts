import type { Etcd3, IKeyValue, IRangeResponse, ITxnResponse } from "etcd3";
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
import { explainEtcdError } from "./connection.js";
import { decodeRecord, encodeLastLeader, etcdKeys, lastLeaderMeta, serviceKey, type EtcdKeys } from "./keys.js";
import { keepAliveOnce } from "./lease.js";

export interface EtcdClusterStoreOptions {
  client: Etcd3;
  /** For error messages: which etcd was asked (never credentials). */
  endpoints: string;
  cluster: string;
  node: string;
  /**
   * `leaseMs`: TTL of this node's lease (rounded up to whole seconds, as etcd counts them);
   * `lockDelayMs`: how long a candidate must see a lost (not released) leadership free before it
   * may take it.
   */
  timing: StoreTiming;
  /** False for a handle that is no member (a command): it never touches a liveness and never leads. */
  member?: boolean;
  /** Close the client with the store (the factory's stores own theirs). */
  ownsClient?: boolean;
  /**
   * Also told every health a touch publishes, best effort and without waiting (its failures are
   * ignored): the node's Consul service health, when the node registers in Consul as well.
   */
  mirrorHealth?: (health: Health) => Promise<unknown>;
  /** Monotonic milliseconds (lock-delay is measured with it); default performance.now. */
  now?: () => number;
  /**
   * Also publish this node as an instance of this service (and of `<service>-primary` while it
   * is a passing primary) under `statepilot/services/`, on its lease (see keys.ts).
   */
  service?: string | undefined;
}

/** The smallest lease TTL etcd grants with its default election timeout (1 s: 3/2 × 10 ticks of 100 ms, rounded up). */
export const ETCD_MIN_TTL_S = 2;

/** etcd counts lease TTLs in whole seconds: the lease a node gets for `leaseMs`. */
export function leaseTtlSeconds(leaseMs: number): number {
  return Math.max(ETCD_MIN_TTL_S, Math.ceil(leaseMs / 1000));
}

const RELEASED_FIELDS = ["released"] as const;

const isLeaseNotFound = (err: unknown): boolean => err instanceof Error && /lease not found|requested lease not found/i.test(err.message);

/**
 * The ClusterStore on etcd v3.
 *
 * - **Liveness**: every member node holds one lease (TTL `leaseMs`), refreshed by a single
 *   keep-alive in each `touchMember(passing|warning)` (never in the background: the node is alive
 *   exactly as long as its HA loop keeps touching, as with Consul's TTL check). The key
 *   `alive/<node>` lives on that lease; `touchMember(critical)` revokes it. A lease no keep-alive
 *   confirmed for its TTL has ended for this node even if etcd still has it (etcd renews every
 *   lease when it elects a leader, e.g. after a restart): the node acts on it no more, and its next
 *   touch revokes it and grants a new one, so its leadership does not outlive a store outage longer
 *   than the lease.
 * - **Leadership**: the key `primary`, created in a transaction only while it does not exist and
 *   this node's `alive/<node>` key is on this node's lease, and attached to that lease: when the
 *   lease expires or is revoked, etcd deletes it. Its `create_revision` is the term, its
 *   `mod_revision` the leader version; `last-primary` keeps the latest holder's record.
 * - **Lock-delay** (etcd has none): a leadership that ended without a release (lease expired or
 *   revoked) may only be taken by a candidate that has itself seen it free for `lockDelayMs` of its
 *   own monotonic clock, counted from a read that returned after the key was gone. The key can only
 *   be gone once the holder's lease ran out (no earlier than `leaseMs` after the holder's last
 *   touch was issued), so nobody leads before last touch + leaseMs + lockDelayMs, which is what the
 *   HA core's `fenceAfter` is shorter than. A release (`releaseLeader`) marks `last-primary` as
 *   released in the same transaction that deletes the key: no lock-delay then.
 * - **Versions** are etcd revisions; `watch()` is an etcd watch of the `primary` key from the
 *   revision after `leaderVersion`, so only leadership changes wake it.
 */
export class EtcdClusterStore implements ClusterStore {
  readonly kind = "etcd" as const;
  readonly timing: StoreTiming;
  readonly node: string;
  private readonly client: Etcd3;
  private readonly keys: EtcdKeys;
  private readonly closed = new AbortController();
  private readonly now: () => number;
  private readonly ttlSeconds: number;
  /** This node's lease (decimal ID), while it has one that was alive when last seen. */
  private lease: string | undefined;
  /**
   * Until when (this handle's monotonic clock) `lease` is known to live: the issue time of the
   * grant or keep-alive that last confirmed it, plus the TTL. Past it the lease has lapsed for this
   * node, whatever etcd says (see heldLease).
   */
  private leaseUntil = 0;
  /** When this handle first saw the leadership free after a loss, by the `mod_revision` of `last-primary` then. */
  private freeSince: { lastMod: number; at: number } | undefined;
  /** The cause of the last failed call, for errors the client's circuit breaker raises instead of calling. */
  private lastFailure: string | undefined;
  /** The touch in progress (touches are serialised). */
  private touching: Promise<unknown> = Promise.resolve();

  constructor(private readonly opts: EtcdClusterStoreOptions) {
    this.client = opts.client;
    this.node = opts.node;
    this.keys = etcdKeys(opts.cluster);
    this.now = opts.now ?? (() => performance.now());
    this.ttlSeconds = leaseTtlSeconds(opts.timing.leaseMs);
    this.timing = Object.freeze({ leaseMs: this.ttlSeconds * 1000, lockDelayMs: opts.timing.lockDelayMs });
  }

  /** This node's lease ID, if it has one (diagnostics and tests). */
  get leaseId(): string | undefined {
    return this.lease;
  }

  /**
   * True while this node has a lease that no grant or keep-alive confirmed for its TTL: by the
   * liveness contract it has ended, and the next touch revokes it and grants a new one.
   */
  get leaseLapsed(): boolean {
    return this.lease !== undefined && this.now() >= this.leaseUntil;
  }

  /**
   * The lease this node may act on: its lease while a grant or keep-alive issued less than a TTL ago
   * confirmed it. A lease not confirmed for longer has ended by the liveness contract (the node is
   * alive only as long as its touches reach etcd), even if etcd still has it: etcd renews every
   * lease when it elects a leader, so after an outage longer than the TTL (etcd stopped, its only
   * member restarted, a lost quorum) the lease, and the leadership on it, would come back to a node
   * that could not confirm it for all that time, and that has fenced itself meanwhile.
   */
  private heldLease(): string | undefined {
    return this.leaseLapsed ? undefined : this.lease;
  }

  private unavailable(operation: string, err: unknown): StoreUnavailable {
    if (err instanceof StoreUnavailable) return err;
    let why = explainEtcdError(err);
    // After repeated failures the client's circuit breaker refuses calls without trying: its text
    // says nothing about etcd, so the last real cause is repeated.
    if (/circuit breaker is open/i.test(why)) why = `${this.lastFailure ?? "etcd did not answer"} (the client pauses its calls after repeated failures, then tries again)`;
    else this.lastFailure = why;
    return new StoreUnavailable(operation, { cause: new Error(`etcd at ${this.opts.endpoints}: ${why}`, { cause: err }) });
  }

  /** Runs one etcd call for `operation`: every failure becomes StoreUnavailable. */
  private async call<T>(operation: string, fn: () => Promise<T>): Promise<T> {
    if (this.closed.signal.aborted) throw new StoreUnavailable(operation, { cause: new Error(`etcd store handle of ${this.node} is closed`) });
    try {
      return await fn();
    } catch (err) {
      throw this.unavailable(operation, err);
    }
  }

  // ---- reading --------------------------------------------------------------------------------

  async load(): Promise<ClusterState> {
    // One range over the prefix: everything as of one revision.
    const res = await this.call("load", () => this.client.getAll().prefix(this.keys.prefix).exec());
    const seenAt = this.now();
    const version = Number(res.header.revision);
    let leaderVersion = 0;
    let leader: Leader | undefined;
    let heldRecord: LeaderRecord | undefined;
    let held = false;
    let last: { record: LeaderRecord | undefined; mod: number; released: boolean } | undefined;
    let switchover: ClusterState["switchover"];
    let initialized = false;
    let pause: PauseRecord | undefined;
    const records: Array<{ node: string; record: MemberRecord; version: number }> = [];
    const alive = new Set<string>();
    const invalid: InvalidRecord[] = [];
    for (const kv of res.kvs) {
      const key = kv.key.toString("utf8");
      const value = kv.value.toString("utf8");
      if (key === this.keys.leader) {
        held = true;
        leaderVersion = Number(kv.mod_revision);
        const d = decodeRecord(LeaderRecord, "leader", value);
        if (!d.ok) {
          invalid.push(d.invalid);
          continue;
        }
        heldRecord = d.record;
        leader = { node: d.record.node, term: Number(kv.create_revision), record: d.record };
      } else if (key === this.keys.lastLeader) {
        const d = decodeRecord(LeaderRecord, "last leader", value, RELEASED_FIELDS);
        last = { record: d.ok ? d.record : undefined, mod: Number(kv.mod_revision), released: lastLeaderMeta(value).released };
        if (!d.ok) invalid.push(d.invalid);
      } else if (key === this.keys.switchover) {
        const d = decodeRecord(SwitchoverRecord, "switchover", value);
        if (d.ok) switchover = { record: d.record, version: Number(kv.mod_revision) };
        else invalid.push(d.invalid);
      } else if (key === this.keys.initialized) {
        initialized = true;
      } else if (key === this.keys.pause) {
        const d = decodeRecord(PauseRecord, "pause", value);
        if (d.ok) pause = d.record;
        else invalid.push(d.invalid);
      } else if (key.startsWith(this.keys.alive)) {
        alive.add(key.slice(this.keys.alive.length));
      } else if (key.startsWith(this.keys.members)) {
        const node = key.slice(this.keys.members.length);
        if (!node || node.includes("/")) continue;
        const what = `member ${node}`;
        const d = decodeRecord(MemberRecord, what, value);
        if (!d.ok) invalid.push(d.invalid);
        else if (d.record.node !== node) invalid.push({ what, error: `node: expected ${JSON.stringify(node)} (the key's name), got ${JSON.stringify(d.record.node)}` });
        else records.push({ node, record: d.record, version: Number(kv.mod_revision) });
      }
    }
    const members: Member[] = records.map((r) => ({ ...r, alive: alive.has(r.node) }));
    members.sort((a, b) => (a.node < b.node ? -1 : a.node > b.node ? 1 : 0));
    if (!held && last && !last.released) this.noteFree(last.mod, seenAt);
    // A held key's record is the latest holder's; a malformed held key hides the previous record
    // too (as on Consul, where both are the same key's value).
    const lastLeader = held ? heldRecord : last?.record;
    // No leader key: the revision of this read (a watch from there sees the next acquisition).
    return { version, leaderVersion: leaderVersion || version, leader, lastLeader, members, switchover, initialized, pause, invalid };
  }

  async watch(leaderVersion: number, timeoutMs: number, signal?: AbortSignal): Promise<void> {
    const abort = signal ? AbortSignal.any([signal, this.closed.signal]) : this.closed.signal;
    if (abort.aborted || timeoutMs <= 0) return;
    // A plain read first: it fails fast when etcd is unreachable (a watch stream would retry
    // quietly for ever), and answers at once when the leadership already moved.
    let now: IRangeResponse;
    try {
      now = await this.client.get(this.keys.leader).exec();
    } catch (err) {
      if (abort.aborted) return;
      throw this.unavailable("watch", err);
    }
    if (abort.aborted) return;
    const kv = now.kvs[0];
    if (kv && Number(kv.mod_revision) !== leaderVersion) return;
    // Went back (a rebuilt etcd): the caller loads again.
    if (Number(now.header.revision) < leaderVersion) return;

    const watcher = this.client
      .watch()
      .key(this.keys.leader)
      .startRevision(String(leaderVersion + 1))
      .watcher();
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(finish, timeoutMs);
        function finish(): void {
          clearTimeout(timer);
          abort.removeEventListener("abort", finish);
          resolve();
        }
        abort.addEventListener("abort", finish, { once: true });
        if (abort.aborted) return finish();
        // Any event on the key (taken, rewritten, released, expired) is a move; a cancelled watch
        // (its start revision was compacted away) too: the caller loads again.
        watcher.on("put", finish);
        watcher.on("delete", finish);
        watcher.on("error", finish);
        watcher.on("disconnected", (err: Error) => {
          clearTimeout(timer);
          abort.removeEventListener("abort", finish);
          reject(this.unavailable("watch", err));
        });
      });
    } finally {
      watcher.cancel().catch(() => undefined);
    }
  }

  // ---- this node ------------------------------------------------------------------------------

  async touchMember(record: MemberRecord, health: Health): Promise<void> {
    // One touch at a time per handle: two would race to grant this node two leases.
    const turn = this.touching.then(() => this.touchOnce(record, health));
    this.touching = turn.catch(() => undefined);
    return turn;
  }

  private async touchOnce(record: MemberRecord, health: Health): Promise<void> {
    if (this.opts.member === false) throw new StoreUnavailable("touchMember", { cause: new Error("a command-line handle has no liveness to report") });
    // Not awaited: a slow or absent Consul must not hold up the touch that keeps the lease alive.
    if (this.opts.mirrorHealth) void this.opts.mirrorHealth(health).catch(() => undefined);
    const member = this.client.put(`${this.keys.members}${this.node}`).value(JSON.stringify(record));
    const aliveKey = `${this.keys.alive}${this.node}`;
    if (health.status === "critical") {
      const lease = this.lease;
      if (lease) {
        // Revoking deletes the alive key and, if held, the leadership (with lock-delay for the others).
        await this.call("touchMember", async () => {
          try {
            await this.client.leaseClient.leaseRevoke({ ID: lease });
          } catch (err) {
            if (!isLeaseNotFound(err)) throw err;
          }
        });
        this.lease = undefined;
      }
      // No lease, or revoked: make sure no alive key is left (deleting a missing key is no error).
      await this.call("touchMember", () => this.client.if(aliveKey, "Version", ">", -1).then(this.client.delete().key(aliveKey), member, ...this.serviceOps(record, health, undefined)).commit());
      return;
    }
    const lease = await this.ensureLease("touchMember");
    const status = JSON.stringify({ status: health.status, output: health.output });
    try {
      await this.client
        .if(aliveKey, "Version", ">", -1)
        .then(member, this.client.put(aliveKey).value(status).lease(lease), ...this.serviceOps(record, health, lease))
        .commit();
    } catch (err) {
      // The lease ran out between the keep-alive and the write: the next touch grants a new one.
      if (isLeaseNotFound(err) && this.lease === lease) this.lease = undefined;
      throw this.unavailable("touchMember", err);
    }
  }

  /** The writes that publish (or withdraw) this node's service instances, for the touch's transaction. */
  private serviceOps(record: MemberRecord, health: Health, lease: string | undefined) {
    const service = this.opts.service;
    if (!service) return [];
    const instance = serviceKey(service, this.node);
    const primary = serviceKey(`${service}-primary`, this.node);
    if (!lease) return [this.client.delete().key(instance), this.client.delete().key(primary)];
    const value = JSON.stringify({ node: this.node, cluster: this.opts.cluster, address: record.host, port: record.port, role: record.role, tags: [record.role], status: health.status, output: health.output });
    const asPrimary = record.role === "primary" && health.status === "passing";
    return [this.client.put(instance).value(value).lease(lease), asPrimary ? this.client.put(primary).value(value).lease(lease) : this.client.delete().key(primary)];
  }

  /** This node's lease, kept alive once now (issued before any write, so liveness counts from here), or a new one. */
  private async ensureLease(operation: string): Promise<string> {
    const lease = this.lease;
    if (lease && this.leaseLapsed) {
      // Not confirmed for a TTL: it has ended (heldLease). Ended here as etcd would have ended it,
      // had it kept counting: the leadership on it goes with it (not released: lock-delay), and a
      // new lease starts this node's liveness again. Until the revoke is answered, no new lease:
      // the old one must not outlive it, and this node acts on neither.
      await this.call(operation, async () => {
        try {
          await this.client.leaseClient.leaseRevoke({ ID: lease });
        } catch (err) {
          if (!isLeaseNotFound(err)) throw err;
        }
      });
      if (this.lease === lease) this.lease = undefined;
    } else if (lease) {
      const issued = this.now();
      const ttl = await this.call(operation, () => this.keepAliveOnce(lease));
      if (ttl > 0) {
        if (this.lease === lease) this.leaseUntil = Math.max(this.leaseUntil, issued + this.ttlSeconds * 1000);
        return lease;
      }
      if (this.lease === lease) this.lease = undefined;
    }
    const issued = this.now();
    const granted = await this.call(operation, () => this.client.leaseClient.leaseGrant({ TTL: this.ttlSeconds, ID: 0 }));
    if (granted.error) throw new StoreUnavailable(operation, { cause: new Error(`etcd at ${this.opts.endpoints}: lease grant: ${granted.error}`) });
    this.lease = granted.ID;
    this.leaseUntil = issued + this.ttlSeconds * 1000;
    return granted.ID;
  }

  /** One keep-alive of `lease` on a stream of its own: the lease's remaining TTL (0: gone). */
  private keepAliveOnce(lease: string): Promise<number> {
    return keepAliveOnce(this.client, lease, this.keepAliveTimeoutMs());
  }

  private keepAliveTimeoutMs(): number {
    // Longer is pointless: the lease would be gone by then anyway.
    return this.ttlSeconds * 1000;
  }

  // ---- leadership -----------------------------------------------------------------------------

  async attemptToAcquireLeader(record: LeaderRecord): Promise<{ acquired: true; term: number } | { acquired: false }> {
    const lease = this.heldLease();
    if (this.opts.member === false || !lease) return { acquired: false };
    const leaderKey = this.keys.leader;
    const lastKey = this.keys.lastLeader;
    const value = JSON.stringify(record);
    const last = encodeLastLeader(record, { released: false });
    const read = await this.call("attemptToAcquireLeader", () =>
      this.client
        .if(leaderKey, "Version", ">", -1)
        .then(this.client.get(leaderKey), this.client.get(lastKey))
        .commit(),
    );
    const seenAt = this.now();
    const [heldKv] = rangeOf(read, 0);
    if (heldKv) {
      if (heldKv.lease !== lease) return { acquired: false };
      // Ours already: rewrite the record, keep the term.
      return (await this.updateLeader(record)) ? { acquired: true, term: Number(heldKv.create_revision) } : { acquired: false };
    }
    const [lastKv] = rangeOf(read, 1);
    const lastMod = lastKv ? Number(lastKv.mod_revision) : 0;
    if (lastKv && !lastLeaderMeta(lastKv.value.toString("utf8")).released && this.opts.timing.lockDelayMs > 0) {
      this.noteFree(lastMod, seenAt);
      if (!this.freeSince || seenAt - this.freeSince.at < this.opts.timing.lockDelayMs) return { acquired: false };
    }
    const txn = await this.call("attemptToAcquireLeader", () =>
      this.client
        .if(leaderKey, "Create", "==", 0)
        .and(lastKey, "Mod", "==", lastMod)
        .and(`${this.keys.alive}${this.node}`, "Lease", "==", lease)
        .then(this.client.put(leaderKey).value(value).lease(lease), this.client.put(lastKey).value(last))
        .else(this.client.get(leaderKey))
        .commit(),
    );
    // Both puts of the transaction carry its revision: the new key's create_revision, the term.
    if (txn.succeeded) return { acquired: true, term: Number(txn.header.revision) };
    // A retried transaction may have been applied the first time: then the key is ours.
    const [now] = rangeOf(txn, 0);
    return now && now.lease === lease ? { acquired: true, term: Number(now.create_revision) } : { acquired: false };
  }

  async renewLeader(): Promise<boolean> {
    const lease = this.heldLease();
    if (!lease) return false;
    // The lease is kept alive by touchMember (liveness); the key lives exactly as long as it does.
    const res = await this.call("renewLeader", () => this.client.get(this.keys.leader).exec());
    return res.kvs[0]?.lease === lease;
  }

  async updateLeader(record: LeaderRecord): Promise<boolean> {
    const lease = this.heldLease();
    if (!lease) return false;
    const txn = await this.call("updateLeader", () =>
      this.client
        .if(this.keys.leader, "Lease", "==", lease)
        .then(this.client.put(this.keys.leader).value(JSON.stringify(record)).lease(lease), this.client.put(this.keys.lastLeader).value(encodeLastLeader(record, { released: false })))
        .commit(),
    );
    return txn.succeeded;
  }

  async releaseLeader(): Promise<void> {
    const lease = this.lease;
    if (!lease) return;
    for (let round = 0; round < 3; round++) {
      const res = await this.call("releaseLeader", () => this.client.get(this.keys.leader).exec());
      const kv = res.kvs[0];
      if (!kv || kv.lease !== lease) return;
      const text = kv.value.toString("utf8");
      let record: object = {};
      try {
        const parsed = JSON.parse(text) as unknown;
        if (parsed !== null && typeof parsed === "object" && !Array.isArray(parsed)) record = parsed;
      } catch {
        // A malformed record is kept as nothing: lastLeader is then undefined, as it was.
      }
      // Deleted and marked released in one step: nobody waits out lock-delay after a release.
      const txn = await this.call("releaseLeader", () =>
        this.client
          .if(this.keys.leader, "Mod", "==", kv.mod_revision)
          .and(this.keys.leader, "Lease", "==", lease)
          .then(this.client.delete().key(this.keys.leader), this.client.put(this.keys.lastLeader).value(encodeLastLeader(record, { released: true })))
          .commit(),
      );
      if (txn.succeeded) return;
    }
    throw new StoreUnavailable("releaseLeader", { cause: new Error("the leader key kept changing under the release") });
  }

  // ---- the archiver's lock: a key on this node's lease (no lock-delay) ---------------------------

  async acquireArchiver(record: ArchiverRecord): Promise<boolean> {
    const lease = this.heldLease();
    if (this.opts.member === false || !lease) return false;
    const key = this.keys.archiver;
    const value = JSON.stringify(ArchiverRecord.parse(record));
    const txn = await this.call("acquireArchiver", () =>
      this.client
        .if(key, "Create", "==", 0)
        .and(`${this.keys.alive}${this.node}`, "Lease", "==", lease)
        .then(this.client.put(key).value(value).lease(lease))
        .else(this.client.get(key))
        .commit(),
    );
    if (txn.succeeded) return true;
    const [held] = rangeOf(txn, 0);
    if (held?.lease !== lease) return false;
    const again = await this.call("acquireArchiver", () => this.client.if(key, "Lease", "==", lease).then(this.client.put(key).value(value).lease(lease)).commit());
    return again.succeeded;
  }

  async releaseArchiver(): Promise<void> {
    const lease = this.lease;
    if (!lease) return;
    await this.call("releaseArchiver", () => this.client.if(this.keys.archiver, "Lease", "==", lease).then(this.client.delete().key(this.keys.archiver)).commit());
  }

  async archiver(): Promise<ArchiverRecord | undefined> {
    const res = await this.call("archiver", () => this.client.get(this.keys.archiver).exec());
    const kv = res.kvs[0];
    if (!kv) return undefined;
    const d = decodeRecord(ArchiverRecord, "archiver", kv.value.toString("utf8"));
    return d.ok ? d.record : undefined;
  }

  /** Starts (or keeps) this handle's observation of a leadership lost without release, identified by `last-primary`'s revision. */
  private noteFree(lastMod: number, at: number): void {
    if (this.freeSince?.lastMod !== lastMod) this.freeSince = { lastMod, at };
  }

  // ---- cluster records ------------------------------------------------------------------------

  async writeSwitchover(record: SwitchoverRecord, expectedVersion: number): Promise<boolean> {
    const txn = await this.call("writeSwitchover", () =>
      this.client.if(this.keys.switchover, "Mod", "==", expectedVersion).then(this.client.put(this.keys.switchover).value(JSON.stringify(record))).commit(),
    );
    return txn.succeeded;
  }

  async setPause(record: PauseRecord): Promise<void> {
    const value = JSON.stringify(PauseRecord.parse(record));
    await this.call("setPause", () => this.client.put(this.keys.pause).value(value).exec());
  }

  async markInitialized(node: string): Promise<void> {
    // Only if absent: the first primary's mark stays, and marking again changes nothing.
    const value = JSON.stringify({ node, at: new Date().toISOString() });
    await this.call("markInitialized", () => this.client.if(this.keys.initialized, "Create", "==", 0).then(this.client.put(this.keys.initialized).value(value)).commit());
  }

  async removeMember(node: string): Promise<void> {
    await this.call("removeMember", () => this.client.delete().key(`${this.keys.members}${node}`).exec());
  }

  /**
   * Ends pending watches and later calls. The lease is not revoked: the node's liveness lapses on
   * its own (a held leadership is released with releaseLeader() first). Closes the client if owned.
   */
  close(): void {
    if (this.closed.signal.aborted) return;
    this.closed.abort();
    if (this.opts.ownsClient) this.client.close();
  }
}

/** The key-values of the `i`-th range operation of a transaction's answer. */
function rangeOf(txn: ITxnResponse, i: number): IKeyValue[] {
  return txn.responses[i]?.response_range?.kvs ?? [];
}
