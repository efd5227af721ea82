import { expect, it } from "vitest";
import type { LeaderRecord, MemberRecord, SwitchoverRecord } from "../../src/cluster/records.js";
import { StoreUnavailable, type ClusterState, type ClusterStore, type Health, type StoreTiming } from "../../src/cluster/store.js";
import { waitFor } from "../../src/lab/wait.js";

/**
 * The ClusterStore contract against a real store, shared by consul-store.test.ts and
 * etcd-store.test.ts: the same sequence of tests (each builds on the state the previous ones left),
 * with the few places where the stores differ by design named in the harness.
 */

export const CLUSTER = "store-test";
export const PREFIX = `statepilot/${CLUSTER}/`;
export const passing: Health = { status: "passing", output: "ok" };
export const critical: Health = { status: "critical", output: "test: forced failure" };

export function member(node: string, extra: Partial<MemberRecord> = {}): MemberRecord {
  return {
    node,
    serverId: node === "n1" ? 1 : 2,
    host: "127.0.0.1",
    port: 3306,
    role: "replica",
    up: true,
    executed: "0-1-10",
    received: "0-1-10",
    lagSeconds: 0,
    sqlError: "",
    nofailover: false,
    blocked: "",
    maintenance: false,
    source: "",
    at: new Date().toISOString(),
    ...extra,
  };
}

export function leaderRecord(node: string, gtid = "0-1-10"): LeaderRecord {
  return { node, serverId: node === "n1" ? 1 : 2, host: "127.0.0.1", port: 3306, flavor: "mariadb", version: "11.4.0", gtid, promotedAt: new Date().toISOString() };
}

export const until = <T>(what: string, probe: () => Promise<T | undefined | false>, timeoutMs = 10_000) => waitFor(probe, { timeoutMs, intervalMs: 20, what });
export const aliveIn = (s: ClusterState, node: string) => s.members.find((m) => m.node === node)?.alive;

export interface StoreHarness {
  kind: ClusterStore["kind"];
  /** What `store.timing` must be. */
  timing: StoreTiming;
  /** The handles of nodes n1 and n2 (created before the tests run). */
  store(node: string): ClusterStore;
  /** Keeps a node alive in the background, as the HA loop's touches would; stopPulse waits for it to stop. */
  pulse(node: string): void;
  stopPulse(node: string): Promise<void>;
  /** The store's own token of a node's leadership (Consul: its session; etcd: its lease), if any. */
  handle(node: string): string | undefined;
  /** Consul destroys the session on release; on etcd the lease is the node's liveness and stays. */
  releaseDropsHandle: boolean;
  /** Consul's LockIndex counts holders one by one; etcd's terms (create revisions) only grow. */
  consecutiveTerms: boolean;
  /** Raw access to the store's keys (full key names). */
  put(key: string, value: string): Promise<void>;
  get(key: string): Promise<string | undefined>;
  delete(key: string): Promise<void>;
  /** A plain write of the held leader key (bypassing the store), checking what the store keeps of the holder. */
  overwriteLeader(value: string, holder: string): Promise<void>;
  /** A handle on a store nobody listens at: every call must throw StoreUnavailable. */
  unreachable(): Promise<{ store: ClusterStore; endpoint: string; close(): void }>;
  /** Operations, beyond the shared ones, that must throw StoreUnavailable on the unreachable handle. */
  moreDownOps?: (down: ClusterStore) => Array<() => Promise<unknown>>;
  /** The cause of StoreUnavailable names the endpoint. */
  namesEndpoint?: boolean;
  /** Store-specific tests, registered at their place in the sequence. */
  extra?: {
    afterEmpty?: () => void;
    afterLockDelay?: () => void;
    afterWatch?: () => void;
    beforeFailures?: () => void;
    /** Checks at the start of the failure test (e.g. a member handle whose liveness cannot be reported). */
    failures?: () => Promise<void>;
  };
}

export function storeContract(h: StoreHarness): void {
  const store = (node: string) => h.store(node);

  it("exposes the timing contract and starts empty", async () => {
    expect(store("n1").timing).toEqual(h.timing);
    expect(store("n1").kind).toBe(h.kind);
    const s = await store("n1").load();
    expect(s.leader).toBeUndefined();
    expect(s.lastLeader).toBeUndefined();
    expect(s.members).toEqual([]);
    expect(s.switchover).toBeUndefined();
    expect(s.initialized).toBe(false);
    expect(s.invalid).toEqual([]);
  });

  h.extra?.afterEmpty?.();

  it("keeps the operator's pause, and reports a malformed one as invalid", async () => {
    await store("n1").setPause({ paused: true, by: "ops", reason: "disk swap", at: "2026-12-03T00:00:00Z" });
    expect((await store("n2").load()).pause).toEqual({ paused: true, by: "ops", reason: "disk swap", at: "2026-12-03T00:00:00Z" });
    await store("n1").setPause({ paused: false, by: "ops", reason: "", at: "2026-12-03T00:01:00Z" });
    expect((await store("n2").load()).pause?.paused).toBe(false);
    await h.put(`${PREFIX}pause`, '{"paused":"yes"}');
    const bad = await store("n2").load();
    expect(bad.pause).toBeUndefined();
    expect(bad.invalid.map((i) => i.what)).toContain("pause");
    await h.delete(`${PREFIX}pause`);
  });

  it("touches, acquires and renews the leadership", async () => {
    const n1 = store("n1");
    await n1.touchMember(member("n1"), passing);
    // Consul: the check reaches the catalog asynchronously, the member is alive once it did.
    const seen = await until("n1 alive", async () => {
      const s = await n1.load();
      return aliveIn(s, "n1") ? s : undefined;
    });
    const m = seen.members.find((x) => x.node === "n1")!;
    expect(m.record).toEqual(member("n1", { at: m.record.at }));
    expect(m.version).toBeGreaterThan(0);
    expect(seen.version).toBeGreaterThanOrEqual(m.version);

    // Every touch moves the member's version, even with the same record.
    const same = m.record;
    await n1.touchMember(same, passing);
    const again = (await n1.load()).members.find((x) => x.node === "n1")!;
    expect(again.version).toBeGreaterThan(m.version);
    expect(again.record).toEqual(same);
    h.pulse("n1");

    const rec = leaderRecord("n1");
    const got = await n1.attemptToAcquireLeader(rec);
    expect(got.acquired).toBe(true);
    const term = got.acquired ? got.term : 0;
    expect(term).toBeGreaterThanOrEqual(1);
    expect(h.handle("n1")).toBeDefined();
    expect(await n1.renewLeader()).toBe(true);

    const s = await n1.load();
    expect(s.leader).toEqual({ node: "n1", term, record: rec });
    expect(s.lastLeader).toEqual(rec);
    // Acquiring again while holding keeps the term.
    expect(await n1.attemptToAcquireLeader(rec)).toEqual({ acquired: true, term });
  });

  it("keeps a second node out while the leadership is held", async () => {
    const n2 = store("n2");
    await n2.touchMember(member("n2"), passing);
    h.pulse("n2");
    await until("n2 alive", async () => aliveIn(await n2.load(), "n2"));
    expect(await n2.attemptToAcquireLeader(leaderRecord("n2"))).toEqual({ acquired: false });
    expect(await n2.renewLeader()).toBe(false);
    expect(await n2.updateLeader(leaderRecord("n2"))).toBe(false);
    expect((await n2.load()).leader?.node).toBe("n1");

    // The holder may rewrite its record; the term does not move.
    const before = (await n2.load()).leader!;
    const updated = leaderRecord("n1", "0-1-11");
    expect(await store("n1").updateLeader(updated)).toBe(true);
    const after = (await n2.load()).leader!;
    expect(after.record).toEqual(updated);
    expect(after.term).toBe(before.term);
  });

  it("frees the leadership at once on release, and the term grows with every holder", async () => {
    const n1 = store("n1");
    const n2 = store("n2");
    const held = (await n1.load()).leader!;
    await n1.releaseLeader();
    if (h.releaseDropsHandle) expect(h.handle("n1")).toBeUndefined();
    else expect(h.handle("n1")).toBeDefined();
    const freed = await n1.load();
    expect(freed.leader).toBeUndefined();
    // The release keeps the last holder's record.
    expect(freed.lastLeader).toEqual(held.record);
    await n1.releaseLeader(); // a no-op when not held

    // No lock-delay after a release: the first attempt wins.
    const got = await n2.attemptToAcquireLeader(leaderRecord("n2"));
    expect(got.acquired).toBe(true);
    const t2 = got.acquired ? got.term : 0;
    if (h.consecutiveTerms) expect(t2).toBe(held.term + 1);
    else expect(t2).toBeGreaterThan(held.term);
    expect((await n2.load()).leader?.node).toBe("n2");

    await n2.releaseLeader();
    const back = await n1.attemptToAcquireLeader(leaderRecord("n1"));
    expect(back.acquired).toBe(true);
    const t3 = back.acquired ? back.term : 0;
    if (h.consecutiveTerms) expect(t3).toBe(held.term + 2);
    else expect(t3).toBeGreaterThan(t2);
  });

  it("ends the leadership when the holder's check goes critical, and holds it for lock-delay", async () => {
    const n1 = store("n1");
    const n2 = store("n2");
    const before = (await n2.load()).leader!;
    expect(before.node).toBe("n1");

    await h.stopPulse("n1");
    const failedAt = performance.now();
    await n1.touchMember(member("n1"), critical);
    const freedAt = await until("the leadership to end after the holder's check failed", async () => {
      const s = await n2.load();
      return s.leader === undefined ? performance.now() : undefined;
    });
    console.log(`${h.kind} store: leadership ended ${(freedAt - failedAt).toFixed(0)} ms after touchMember(critical)`);
    expect((await n2.load()).lastLeader?.node).toBe("n1");
    // Lock-delay: the key is free, but nobody may take it yet.
    expect(await n2.attemptToAcquireLeader(leaderRecord("n2"))).toEqual({ acquired: false });
    // The holder learns it lost the leadership; its session (lease) is gone. A critical node cannot run.
    expect(await n1.renewLeader()).toBe(false);
    expect(h.handle("n1")).toBeUndefined();
    expect(await n1.updateLeader(leaderRecord("n1"))).toBe(false);
    expect(await n1.attemptToAcquireLeader(leaderRecord("n1"))).toEqual({ acquired: false });

    const got = await until("n2 to acquire after lock-delay", async () => {
      const r = await n2.attemptToAcquireLeader(leaderRecord("n2"));
      return r.acquired ? { term: r.term, afterMs: performance.now() - freedAt } : undefined;
    });
    console.log(`${h.kind} store: leadership taken ${got.afterMs.toFixed(0)} ms after it was seen free (lock-delay ${h.timing.lockDelayMs} ms)`);
    expect(got.term).toBeGreaterThan(before.term);
    // The first successful attempt comes once lock-delay has run (measured from when the key was seen free, so a little less).
    expect(got.afterMs).toBeGreaterThan(h.timing.lockDelayMs / 2);
    const s = await n2.load();
    expect(s.leader).toMatchObject({ node: "n2", term: got.term });
    expect(aliveIn(s, "n1")).toBe(false);
  });

  h.extra?.afterLockDelay?.();

  it(`follows the ${h.kind === "consul" ? "TTL check" : "lease"} for liveness`, async () => {
    const n1 = store("n1");
    await n1.touchMember(member("n1"), passing);
    await until("n1 alive again", async () => aliveIn(await n1.load(), "n1"));
    // No more reports: the TTL runs out and the node is not alive any more.
    const t0 = performance.now();
    await until("n1 to die after its TTL", async () => (await n1.load()).members.find((m) => m.node === "n1")?.alive === false);
    expect(performance.now() - t0).toBeGreaterThan(h.timing.leaseMs / 2);
    // A warning still counts as alive.
    await n1.touchMember(member("n1"), { status: "warning", output: "lagging" });
    await until("n1 alive on warning", async () => aliveIn(await n1.load(), "n1"));
    h.pulse("n1");
  });

  it("wakes a watch when the leadership changes, not on members' writes, and returns on timeout or abort", async () => {
    const n1 = store("n1");
    const n2 = store("n2");
    // n2 leads (whatever earlier tests left): alive, then acquire once any lock-delay has passed.
    h.pulse("n2");
    await n2.touchMember(member("n2"), passing);
    await until("n2 to lead", async () => (await n1.load()).leader?.node === "n2" || (await n2.attemptToAcquireLeader(leaderRecord("n2"))).acquired);
    const before = await n1.load();
    expect(before.leader?.node, JSON.stringify({ leader: before.leader, last: before.lastLeader, invalid: before.invalid, lv: before.leaderVersion })).toBe("n2");
    const lv = before.leaderVersion;

    // Nothing changes: the watch waits out its timeout.
    const t0 = performance.now();
    await n1.watch(lv, 400);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(350);

    const ac = new AbortController();
    const aborted = n1.watch(lv, 30_000, ac.signal);
    ac.abort();
    const t1 = performance.now();
    await aborted;
    expect(performance.now() - t1).toBeLessThan(5_000);

    // A member's publication does not wake it (the HA loop would otherwise spin on its own writes).
    let early = false;
    const quiet = n1.watch(lv, 1_500).then(() => (early = performance.now() - t2 < 1_400));
    const t2 = performance.now();
    await n1.touchMember(member("n1"), passing);
    await quiet;
    expect(early).toBe(false);

    // The leader rewrites its record (a new value: Consul keeps the index of an identical write): the watch returns.
    expect(await n2.renewLeader()).toBe(true);
    let woke = false;
    const watching = n1.watch(lv, 30_000).then(() => (woke = true));
    expect(await n2.updateLeader({ ...before.leader!.record, gtid: "0-1-11" })).toBe(true);
    await watching;
    expect(woke).toBe(true);
    const after = await n1.load();
    expect(after.leaderVersion).toBeGreaterThan(lv);
    expect(after.leader?.node).toBe("n2");
  });

  h.extra?.afterWatch?.();

  it("lists unreadable records as invalid, naming the field", async () => {
    const n1 = store("n1");
    await h.put(`${PREFIX}members/mysql-2`, JSON.stringify({ ...member("mysql-2"), port: "x", seq: 3 }));
    await h.put(`${PREFIX}members/mysql-3`, "{not json");
    await h.put(`${PREFIX}members/mysql-4`, JSON.stringify(member("someone-else")));
    const s = await n1.load();
    expect(s.members.map((m) => m.node)).toEqual(["n1", "n2"]);
    const byWhat = new Map(s.invalid.map((i) => [i.what, i.error]));
    expect(byWhat.get("member mysql-2")).toBe('port: expected number, got "x"');
    expect(byWhat.get("member mysql-3")).toMatch(/^not JSON/);
    expect(byWhat.get("member mysql-4")).toMatch(/^node: expected "mysql-4"/);

    for (const node of ["mysql-2", "mysql-3", "mysql-4"]) await n1.removeMember(node);
    expect((await n1.load()).invalid).toEqual([]);

    // A held leader key whose value does not parse: reported, and not taken for a leader.
    const n2 = store("n2");
    const held = (await n2.load()).leader!;
    expect(held.node).toBe("n2");
    await h.overwriteLeader(JSON.stringify({ ...held.record, port: -1 }), "n2");
    const bad = await n1.load();
    expect(bad.leader).toBeUndefined();
    expect(bad.lastLeader).toBeUndefined();
    expect(bad.invalid).toEqual([{ what: "leader", error: "port: expected number to be >=0, got -1" }]);
    expect(await n2.updateLeader(held.record)).toBe(true);
    expect((await n1.load()).leader?.record).toEqual(held.record);
  });

  it("compare-and-sets the switchover record", async () => {
    const n1 = store("n1");
    const req: SwitchoverRecord = { id: "sw-1", state: "requested", requestedAt: new Date().toISOString() };
    expect(await n1.writeSwitchover(req, 0)).toBe(true);
    // 0 means "only if there is none".
    expect(await n1.writeSwitchover({ ...req, id: "sw-2" }, 0)).toBe(false);
    const s = await n1.load();
    expect(s.switchover?.record).toEqual(req);
    const v = s.switchover!.version;
    const handover: SwitchoverRecord = { ...req, state: "handover", from: "n2", to: "n1", position: "0-2-12", fencedAt: Date.now() };
    expect(await n1.writeSwitchover(handover, v)).toBe(true);
    // The version it was read at is stale now.
    expect(await n1.writeSwitchover({ ...req, state: "failed", error: "late" }, v)).toBe(false);
    const after = await n1.load();
    expect(after.switchover?.record).toEqual(handover);
    expect(after.switchover!.version).toBeGreaterThan(v);
  });

  it("marks the cluster initialized once, and forgets removed members", async () => {
    const n1 = store("n1");
    await store("n2").markInitialized("n2");
    await n1.markInitialized("n1");
    expect((await n1.load()).initialized).toBe(true);
    expect(JSON.parse((await h.get(`${PREFIX}initialized`))!)).toMatchObject({ node: "n2" });

    await h.put(`${PREFIX}members/gone`, JSON.stringify(member("gone")));
    expect((await n1.load()).members.map((m) => m.node)).toContain("gone");
    await n1.removeMember("gone");
    expect((await n1.load()).members.map((m) => m.node)).not.toContain("gone");
  });

  it("keeps the archiver's lock for one node at a time, renewed by its holder, released at once, lost with the holder's liveness", async () => {
    const n1 = store("n1");
    const n2 = store("n2");
    h.pulse("n1");
    h.pulse("n2");
    await n1.touchMember(member("n1"), passing);
    await n2.touchMember(member("n2"), passing);
    await until("n1 to hold the archiver's lock", async () => n1.acquireArchiver({ node: "n1", since: "a" }));
    expect(await n2.acquireArchiver({ node: "n2", since: "b" })).toBe(false);
    expect(await n1.acquireArchiver({ node: "n1", since: "a2" })).toBe(true);
    expect(await n2.archiver()).toEqual({ node: "n1", since: "a2" });
    await n1.releaseArchiver();
    expect(await n2.archiver()).toBeUndefined();
    expect(await n2.acquireArchiver({ node: "n2", since: "b" })).toBe(true);
    expect(await n1.acquireArchiver({ node: "n1", since: "c" })).toBe(false);
    await n2.releaseArchiver();
    // The holder stops being alive (n1: n2 keeps the leadership the next tests rely on): the lock
    // is free, with no lock-delay, for the other node.
    expect(await n1.acquireArchiver({ node: "n1", since: "c" })).toBe(true);
    await h.stopPulse("n1");
    await n1.touchMember(member("n1"), critical);
    await until("the archiver's lock to be freed with n1's liveness", async () => (await n2.archiver()) === undefined, h.timing.leaseMs * 4 + 10_000);
    expect(await n2.acquireArchiver({ node: "n2", since: "d" })).toBe(true);
    await n2.releaseArchiver();
    h.pulse("n1");
    await until("n1 alive again", async () => aliveIn(await n2.load(), "n1"));
  });

  h.extra?.beforeFailures?.();

  it("turns every failure into StoreUnavailable", async () => {
    await h.extra?.failures?.();
    const { store: down, endpoint, close } = await h.unreachable();
    try {
      for (const op of [
        () => down.load(),
        () => down.watch(5, 1_000),
        () => down.writeSwitchover({ id: "x", state: "requested", requestedAt: "" }, 0),
        () => down.markInitialized("n1"),
        () => down.removeMember("n1"),
        () => down.touchMember(member("n1"), passing),
        ...(h.moreDownOps?.(down) ?? []),
      ]) {
        const err = await op().then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(err).toBeInstanceOf(StoreUnavailable);
        expect((err as StoreUnavailable).cause).toBeDefined();
        if (h.namesEndpoint) expect((err as StoreUnavailable).message).toContain(endpoint);
      }
    } finally {
      down.close();
      close();
    }
  });
}
