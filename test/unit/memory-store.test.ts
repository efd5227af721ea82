import { describe, expect, it } from "vitest";
import { MemoryStoreServer } from "../../src/cluster/memory-store.js";
import type { LeaderRecord, MemberRecord, SwitchoverRecord } from "../../src/cluster/records.js";
import { StoreUnavailable, type Health } from "../../src/cluster/store.js";
import { flushMicrotasks, SimClock } from "../../sim/clock.js";

const timing = { leaseMs: 3000, lockDelayMs: 1000 };
const passing: Health = { status: "passing", output: "" };
const critical: Health = { status: "critical", output: "mysqld down" };

const member = (node: string, extra: Partial<MemberRecord> = {}): MemberRecord => ({
  node, serverId: 1, host: "10.0.0.1", port: 3306, role: "replica", up: true, executed: "0-1-100", received: "0-1-100",
  lagSeconds: 0, sqlError: "", nofailover: false, blocked: "", maintenance: false, source: "", at: "", ...extra,
});
const leader = (node: string, gtid = "0-1-100"): LeaderRecord => ({
  node, serverId: 1, host: "10.0.0.1", port: 3306, flavor: "mariadb", version: "11.4", gtid, promotedAt: "",
});
const switchover = (state: SwitchoverRecord["state"], extra: Partial<SwitchoverRecord> = {}): SwitchoverRecord => ({
  id: "sw-1", state, requestedAt: "2024-01-01T00:00:00Z", ...extra,
});

function cluster() {
  const clock = new SimClock();
  const server = new MemoryStoreServer({ clock, timing });
  return { clock, server, a: server.connect("a"), b: server.connect("b"), c: server.connect("c") };
}

describe("MemoryClusterStore: leadership", () => {
  it("acquires, renews, updates and releases; release frees it at once with a higher term for the next holder", async () => {
    const { server, a, b } = cluster();
    expect(a.kind).toBe("memory");
    expect(a.node).toBe("a");
    await a.touchMember(member("a"), passing);
    await b.touchMember(member("b"), passing);

    expect(await a.attemptToAcquireLeader(leader("a"))).toEqual({ acquired: true, term: 1 });
    expect(await b.attemptToAcquireLeader(leader("b"))).toEqual({ acquired: false });
    expect(await a.renewLeader()).toBe(true);
    expect(await b.renewLeader()).toBe(false);
    expect(await b.updateLeader(leader("b"))).toBe(false);
    expect(await a.updateLeader(leader("a", "0-1-150"))).toBe(true);

    let state = await b.load();
    expect(state.leader).toEqual({ node: "a", term: 1, record: leader("a", "0-1-150") });

    await b.releaseLeader(); // not the holder: a no-op
    expect((await b.load()).leader?.node).toBe("a");
    await a.releaseLeader();
    state = await b.load();
    expect(state.leader).toBeUndefined();
    expect(state.lastLeader).toEqual(leader("a", "0-1-150"));
    expect(await a.renewLeader()).toBe(false);

    // No lock-delay after a release: b takes it at the same instant, with a new term.
    expect(await b.attemptToAcquireLeader(leader("b"))).toEqual({ acquired: true, term: 2 });
    expect(server.lockDelayEndsAt).toBe(-Infinity);
    expect((await a.load()).lastLeader?.node).toBe("b");
  });

  it("refuses a node that is not alive, and lets the holder re-acquire with the same term", async () => {
    const { a, b } = cluster();
    expect(await a.attemptToAcquireLeader(leader("a"))).toEqual({ acquired: false }); // never touched
    await b.touchMember(member("b"), critical);
    expect(await b.attemptToAcquireLeader(leader("b"))).toEqual({ acquired: false }); // critical
    await a.touchMember(member("a"), { status: "warning", output: "lagging" });
    expect(await a.attemptToAcquireLeader(leader("a"))).toEqual({ acquired: true, term: 1 });
    expect(await a.attemptToAcquireLeader(leader("a", "0-1-200"))).toEqual({ acquired: true, term: 1 });
    expect((await a.load()).leader?.record.gtid).toBe("0-1-200");
  });

  it("ends the holder's leadership when its liveness expires, then blocks acquisition for lock-delay from the expiry", async () => {
    const { clock, server, a, b } = cluster();
    await a.touchMember(member("a"), passing); // alive until 3000
    expect(await a.attemptToAcquireLeader(leader("a"))).toEqual({ acquired: true, term: 1 });
    await clock.runUntil(2500);
    await b.touchMember(member("b"), passing); // alive until 5500

    await clock.runUntil(2999);
    expect(await a.renewLeader()).toBe(true);
    expect((await b.load()).members.map((m) => [m.node, m.alive])).toEqual([["a", true], ["b", true]]);

    // Nobody looks until 3500: the leadership still ended at 3000, so lock-delay runs until 4000.
    await clock.runUntil(3500);
    const state = await b.load();
    expect(state.leader).toBeUndefined();
    expect(state.lastLeader).toEqual(leader("a"));
    expect(state.members.map((m) => [m.node, m.alive])).toEqual([["a", false], ["b", true]]);
    expect(await a.renewLeader()).toBe(false);
    expect(server.lockDelayEndsAt).toBe(4000);
    expect(await b.attemptToAcquireLeader(leader("b"))).toEqual({ acquired: false });

    await clock.runUntil(3999);
    expect(await b.attemptToAcquireLeader(leader("b"))).toEqual({ acquired: false });
    await clock.runUntil(4000);
    expect(await b.attemptToAcquireLeader(leader("b"))).toEqual({ acquired: true, term: 2 });
  });

  it("ends liveness and leadership at once on a critical touch, with lock-delay for everyone (the old holder too)", async () => {
    const { clock, a, b } = cluster();
    await a.touchMember(member("a"), passing);
    await b.touchMember(member("b"), passing);
    await a.attemptToAcquireLeader(leader("a"));
    await clock.runUntil(1000);
    await a.touchMember(member("a", { up: false }), critical);

    const state = await b.load();
    expect(state.leader).toBeUndefined();
    expect(state.members.find((m) => m.node === "a")).toMatchObject({ alive: false, record: { up: false } });
    await a.touchMember(member("a"), passing);
    await clock.runUntil(1999);
    expect(await a.attemptToAcquireLeader(leader("a"))).toEqual({ acquired: false });
    expect(await b.attemptToAcquireLeader(leader("b"))).toEqual({ acquired: false });
    await clock.runUntil(2000);
    expect(await b.attemptToAcquireLeader(leader("b"))).toEqual({ acquired: true, term: 2 });
  });

  it("keeps a member alive while it touches within leaseMs, and invalidates a removed holder with lock-delay", async () => {
    const { clock, a, b } = cluster();
    for (let t = 0; t <= 6000; t += 2000) {
      await clock.runUntil(t);
      await a.touchMember(member("a"), passing);
      await b.touchMember(member("b"), passing);
    }
    await a.attemptToAcquireLeader(leader("a"));
    await clock.runUntil(8999);
    expect(await a.renewLeader()).toBe(true);
    await b.touchMember(member("b"), passing);
    await b.removeMember("a");
    const state = await b.load();
    expect(state.members.map((m) => m.node)).toEqual(["b"]);
    expect(state.leader).toBeUndefined();
    expect(await b.attemptToAcquireLeader(leader("b"))).toEqual({ acquired: false });
    await clock.runUntil(9999);
    expect(await b.attemptToAcquireLeader(leader("b"))).toEqual({ acquired: true, term: 2 });
  });
});

describe("MemoryClusterStore: state", () => {
  it("compares-and-sets the switchover: 0 only when absent, a stale version refused", async () => {
    const { a, b } = cluster();
    expect(await a.writeSwitchover(switchover("requested"), 1)).toBe(false);
    expect(await a.writeSwitchover(switchover("requested", { to: "b" }), 0)).toBe(true);
    const v1 = (await a.load()).switchover!.version;
    expect(v1).toBeGreaterThan(0);
    expect(await b.writeSwitchover(switchover("requested"), 0)).toBe(false);
    expect(await b.writeSwitchover(switchover("handover", { to: "b", from: "a" }), v1)).toBe(true);
    const sw = (await a.load()).switchover!;
    expect(sw.version).toBeGreaterThan(v1);
    expect(sw.record).toEqual({ id: "sw-1", state: "handover", to: "b", from: "a", requestedAt: "2024-01-01T00:00:00Z" });
    expect(await a.writeSwitchover(switchover("failed"), v1)).toBe(false);
    expect((await a.load()).switchover!.record.state).toBe("handover");
  });

  it("returns frozen snapshots, shared until the version changes; versions grow on every change only", async () => {
    const { a, b } = cluster();
    const empty = await a.load();
    expect(empty).toMatchObject({ version: 0, leader: undefined, lastLeader: undefined, members: [], initialized: false, invalid: [] });
    await a.touchMember(member("a"), passing);
    const s1 = await a.load();
    expect(s1.version).toBe(1);
    expect(await b.load()).toBe(s1);
    expect(Object.isFrozen(s1) && Object.isFrozen(s1.members) && Object.isFrozen(s1.members[0]) && Object.isFrozen(s1.members[0]!.record)).toBe(true);
    expect(() => (s1.members as unknown as unknown[]).push(member("x"))).toThrow(TypeError);
    expect(s1.members[0]).toMatchObject({ node: "a", alive: true, version: 1 });

    await a.renewLeader(); // changes nothing
    expect((await a.load()).version).toBe(1);
    await a.markInitialized("a");
    await b.markInitialized("b"); // idempotent: no second change
    const s2 = await a.load();
    expect(s2).toMatchObject({ version: 2, initialized: true });
    expect(s2.members[0]).toBe(s1.members[0]); // an unchanged member is shared
    await b.removeMember("nobody");
    expect((await a.load()).version).toBe(2);
  });

  it("stores a copy with defaults applied, so the caller's object can change afterwards", async () => {
    const { a } = cluster();
    const { maintenance: _m, source: _s, at: _a, ...bare } = member("a");
    const record = bare as MemberRecord;
    await a.touchMember(record, passing);
    record.port = 1;
    const stored = (await a.load()).members[0]!.record;
    expect(stored).toMatchObject({ port: 3306, maintenance: false, source: "", at: "" });
  });

  it("rejects invalid records with an Error naming the field, and stores nothing", async () => {
    const { a } = cluster();
    await expect(a.touchMember(member("a", { port: 70000 }), passing)).rejects.toThrow(/invalid member record from a: port/);
    await expect(a.touchMember({ ...member("a"), role: "boss" } as unknown as MemberRecord, passing)).rejects.toThrow(/role/);
    await expect(a.touchMember(member("b"), passing)).rejects.toThrow(/node: is "b" but the handle is for "a"/);
    const error = await a.touchMember(member("a", { serverId: -1 }), passing).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(Error);
    expect(error).not.toBeInstanceOf(StoreUnavailable);
    expect((await a.load()).members).toEqual([]);

    await a.touchMember(member("a"), passing);
    await expect(a.attemptToAcquireLeader({ ...leader("a"), flavor: "postgres" } as unknown as LeaderRecord)).rejects.toThrow(/invalid leader record: flavor/);
    await expect(a.writeSwitchover(switchover("requested", { id: "" }), 0)).rejects.toThrow(/invalid switchover record: id/);
    const state = await a.load();
    expect(state.leader).toBeUndefined();
    expect(state.switchover).toBeUndefined();
  });
});

describe("MemoryClusterStore: watch", () => {
  it("returns at once when the leadership already moved, wakes on a leadership change only, and times out otherwise", async () => {
    const { clock, a, b } = cluster();
    await a.touchMember(member("a"), passing);
    await a.attemptToAcquireLeader(leader("a"));
    await a.watch(0, 10_000);
    expect(clock.now()).toBe(0);

    const lv = (await b.load()).leaderVersion;
    let woke: number | undefined;
    void b.watch(lv, 10_000).then(() => (woke = clock.now()));
    await clock.runUntil(700);
    // Members' publications and other records do not wake a watch on the leadership.
    await b.touchMember(member("b"), passing);
    await a.markInitialized("a");
    await flushMicrotasks();
    expect(woke).toBeUndefined();
    await a.releaseLeader();
    await flushMicrotasks();
    expect(woke).toBe(700);

    const lv2 = (await b.load()).leaderVersion;
    expect(lv2).toBeGreaterThan(lv);
    let timedOut: number | undefined;
    void b.watch(lv2, 1500).then(() => (timedOut = clock.now()));
    await clock.runUntil(2199);
    expect(timedOut).toBeUndefined();
    await clock.runUntil(2200);
    expect(timedOut).toBe(2200);
  });

  it("wakes at the moment a member's liveness ends, and on abort", async () => {
    const { clock, a, b } = cluster();
    await a.touchMember(member("a"), passing); // alive until 3000
    await a.attemptToAcquireLeader(leader("a"));
    const v = (await b.load()).version;
    let woke: number | undefined;
    void b.watch((await b.load()).leaderVersion, 60_000).then(() => (woke = clock.now()));
    await clock.runUntil(10_000);
    expect(woke).toBe(3000);
    const state = await b.load();
    expect(state.version).toBeGreaterThan(v);
    expect(state.leader).toBeUndefined();

    const abort = new AbortController();
    let aborted: number | undefined;
    void b.watch(state.leaderVersion, 60_000, abort.signal).then(() => (aborted = clock.now()));
    await clock.runUntil(11_000);
    abort.abort();
    await flushMicrotasks();
    expect(aborted).toBe(11_000);
  });

  it("moves leaderVersion on every leadership change and on nothing else; a non-holder's expiry wakes no one", async () => {
    const { clock, a, b } = cluster();
    const lv = async () => (await a.load()).leaderVersion;
    await a.touchMember(member("a"), passing);
    await b.touchMember(member("b"), passing); // b alive until 3000
    expect(await lv()).toBe(0);
    await a.attemptToAcquireLeader(leader("a"));
    const taken = await lv();
    expect(taken).toBe((await a.load()).version);
    await a.writeSwitchover(switchover("requested"), 0);
    await a.markInitialized("a");
    expect(await lv()).toBe(taken);
    await a.updateLeader(leader("a", "0-1-300"));
    const rewritten = await lv();
    expect(rewritten).toBeGreaterThan(taken);

    let woke: number | undefined;
    void a.watch(rewritten, 5_000).then(() => (woke = clock.now()));
    await clock.runUntil(2_000);
    await a.touchMember(member("a"), passing); // a (holder) alive until 5000
    await clock.runUntil(4_000); // b expired at 3000: not a leadership change
    expect((await a.load()).members.find((m) => m.node === "b")?.alive).toBe(false);
    expect(woke).toBeUndefined();
    await clock.runUntil(5_000); // the holder expires: that is one
    expect(woke).toBe(5_000);
    const invalidated = await lv();
    expect(invalidated).toBeGreaterThan(rewritten);
    expect((await a.load()).leader).toBeUndefined();
  });

  it("ends pending watches on close, and refuses calls afterwards", async () => {
    const { clock, a } = cluster();
    let done = false;
    void a.watch(0, 60_000).then(() => (done = true));
    await clock.runUntil(100);
    a.close();
    await flushMicrotasks();
    expect(done).toBe(true);
    await expect(a.load()).rejects.toBeInstanceOf(StoreUnavailable);
  });
});

describe("MemoryStoreServer: fault injection", () => {
  it("a partitioned node's calls throw StoreUnavailable and change nothing; others are unaffected", async () => {
    const { server, a, b } = cluster();
    await a.touchMember(member("a"), passing);
    server.partition("a", true);
    const before = server.calls;
    const error = await a.attemptToAcquireLeader(leader("a")).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(StoreUnavailable);
    expect((error as StoreUnavailable).operation).toBe("attemptToAcquireLeader");
    await expect(a.touchMember(member("a", { role: "primary" }), passing)).rejects.toThrow("cluster store unavailable during touchMember");
    await expect(a.load()).rejects.toBeInstanceOf(StoreUnavailable);
    expect(server.calls).toBe(before + 3);

    const state = await b.load();
    expect(state.leader).toBeUndefined();
    expect(state.members[0]!.record.role).toBe("replica");
    server.partition("a", false);
    expect(await a.attemptToAcquireLeader(leader("a"))).toEqual({ acquired: true, term: 1 });
  });

  it("an outage fails every call without applying writes", async () => {
    const { server, a, b } = cluster();
    await a.touchMember(member("a"), passing);
    server.outage(true);
    await expect(a.attemptToAcquireLeader(leader("a"))).rejects.toBeInstanceOf(StoreUnavailable);
    await expect(b.writeSwitchover(switchover("requested"), 0)).rejects.toBeInstanceOf(StoreUnavailable);
    await expect(b.markInitialized("b")).rejects.toBeInstanceOf(StoreUnavailable);
    await expect(b.watch(0, 1000)).rejects.toBeInstanceOf(StoreUnavailable);
    server.outage(false);
    expect(await b.load()).toMatchObject({ version: 1, leader: undefined, switchover: undefined, initialized: false });
  });

  it("answers after the latency, measures liveness from the issue time, and loses the answer of a write cut off in flight", async () => {
    const { clock, server, a, b } = cluster();
    server.setLatency(100);
    let answered: number | undefined;
    void a.touchMember(member("a"), passing).then(() => (answered = clock.now()));
    await clock.runUntil(99);
    expect(answered).toBeUndefined();
    await clock.runUntil(100);
    expect(answered).toBe(100);

    const acquire = a.attemptToAcquireLeader(leader("a")).catch((e: unknown) => e);
    await clock.runUntil(150);
    server.partition("a", true);
    await clock.runUntil(200);
    expect(await acquire).toBeInstanceOf(StoreUnavailable); // answer lost, but the write happened
    server.setLatency(0);
    expect((await b.load()).leader?.node).toBe("a");

    await clock.runUntil(2999);
    expect((await b.load()).leader?.node).toBe("a");
    await clock.runUntil(3000); // touched at 0, not at 100
    expect((await b.load()).leader).toBeUndefined();
  });

  it("checks its options", () => {
    const clock = new SimClock();
    expect(() => new MemoryStoreServer({ clock, timing: { leaseMs: 0, lockDelayMs: 0 } })).toThrow(/leaseMs/);
    expect(() => new MemoryStoreServer({ clock, timing: { leaseMs: 1, lockDelayMs: -1 } })).toThrow(/lockDelayMs/);
    expect(() => new MemoryStoreServer({ clock, timing }).setLatency(Number.NaN)).toThrow(/latency/);
  });
});
