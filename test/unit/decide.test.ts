import { describe, expect, it } from "vitest";
import { decide, divergence, type Observation } from "../../src/mysql/ha/decide.js";
import { checkInvariants } from "../../src/mysql/ha/invariants.js";
import type { LocalState } from "../../src/mysql/ha/database.js";
import type { ClusterState, Leader } from "../../src/cluster/store.js";
import type { MemberRecord } from "../../src/cluster/records.js";
import type { HaSettings } from "../../src/mysql/ha/settings.js";

const settings: HaSettings = {
  cluster: "t", interval: 1000, fenceAfter: 3000, takeover: 7000, lockDelay: 2000, fenceBy: "kill", lossless: true, maximumLagMs: 10_000,
  healthyLagMs: 30_000, peerWaitMs: 6000, promoteTimeout: 60_000, switchoverTimeout: 30_000, nofailover: false, memberExpiry: 3_600_000, divergenceEvery: 10, failsafe: false,
};
const local = (extra: Partial<LocalState> = {}, rep: Partial<LocalState["replication"]> = {}): LocalState => ({
  readOnly: true, executed: "0-1-10", binlogPos: "0-1-10", state: "0-1-10", slavePos: "0-1-10", serverId: 2, semiSyncPrimary: false,
  replication: { configured: true, sourceHost: "10.0.0.1", sourcePort: 3306, ioRunning: "Yes", sqlRunning: true, lagSeconds: 0, ioError: "", sqlError: "", sqlErrno: 0, received: "0-1-10", ...rep },
  ...extra,
});
const leader = (node = "a", extra: Partial<Leader["record"]> = {}): Leader => ({
  node, term: 3, record: { node, serverId: 1, host: "10.0.0.1", port: 3306, flavor: "mariadb", version: "10.11", gtid: "0-1-5", promotedAt: "", ...extra },
});
const cluster = (extra: Partial<ClusterState> = {}): ClusterState => ({ version: 10, leaderVersion: 5, leader: leader(), lastLeader: leader().record, members: [], switchover: undefined, initialized: true, pause: undefined, invalid: [], ...extra });
const obs = (extra: Partial<Observation> = {}): Observation => ({
  now: 100_000, node: "b", serverId: 2, flavor: "mariadb", settings, role: "replica", wasPrimary: false, mysqldRunning: true, mysqldPid: 42,
  local: local(), localError: "", cluster: cluster(), storeError: "", leaseConfirmed: false, maintenance: false, free: undefined,
  replicationStartedOnPid: 42, receiverStoppedByUs: false, primaryState: undefined, blocked: "", restored: undefined, handover: undefined, targetState: undefined, loops: 1, ...extra,
});

describe("decide: replicas", () => {
  it("leaves replication an operator stopped, even half-stopped (STOP SLAVE seen between its IO and SQL halves)", () => {
    const half = decide(obs({ local: local({}, { ioRunning: "No", sqlRunning: true }) }));
    expect(half.action.kind).toBe("none");
    expect(half.reason).toMatch(/stopped by hand/);
    const full = decide(obs({ local: local({}, { ioRunning: "No", sqlRunning: false }) }));
    expect(full.action.kind).toBe("none");
  });

  it("resumes replication after the server restarted (skip-slave-start), and only then", () => {
    const d = decide(obs({ mysqldPid: 43, local: local({}, { ioRunning: "No", sqlRunning: false }) }));
    expect(d.action.kind).toBe("start-replica");
  });

  it("never follows a primary whose GTID state it could not check in this loop", () => {
    const d = decide(obs({ local: local({}, { configured: false, sourceHost: undefined, sourcePort: undefined }) }));
    expect(d.action.kind).toBe("none");
    const ok = decide(obs({ local: local({}, { configured: false, sourceHost: undefined, sourcePort: undefined }), primaryState: { executed: "0-1-20", state: "0-1-20", readOnly: false } }));
    expect(ok.action.kind).toBe("replicate");
  });

  it("a writable node that does not lead is fenced before anything else", () => {
    const d = decide(obs({ local: local({ readOnly: false }) }));
    expect(d.action).toMatchObject({ kind: "fence", how: "read-only" });
    const p = decide(obs({ role: "primary", local: local({ readOnly: false }) }));
    expect(p.action).toMatchObject({ kind: "fence", how: "kill" });
  });
});

describe("decide: the leader", () => {
  it("turns writable only on a confirmed lease, and in lossless mode turns semi-sync on first", () => {
    const mine = cluster({ leader: leader("b") });
    expect(decide(obs({ cluster: mine, leaseConfirmed: false, role: "primary", local: local({ readOnly: false, semiSyncPrimary: true }) })).action).toMatchObject({ kind: "fence" });
    expect(decide(obs({ cluster: mine, leaseConfirmed: true, role: "primary", local: local({ readOnly: false, semiSyncPrimary: false }) })).action.kind).toBe("become-writable");
    expect(decide(obs({ cluster: mine, leaseConfirmed: true, role: "primary", local: local({ readOnly: false, semiSyncPrimary: true }) })).action.kind).toBe("lead");
  });

  it("a hung server of the leader is killed before the leadership is given up", () => {
    const d = decide(obs({ cluster: cluster({ leader: leader("b") }), role: "primary", local: undefined, localError: "timeout" }));
    expect(d.action.kind).toBe("kill-server");
    const down = decide(obs({ cluster: cluster({ leader: leader("b") }), role: "primary", local: undefined, localError: "refused", mysqldRunning: false }));
    expect(down.action.kind).toBe("release");
  });

  it("a handover releases once the target has the fenced position, and aborts at the deadline", () => {
    const mine = cluster({ leader: leader("b"), members: [member("c", { source: "b" })] });
    const handover = { id: "x", to: "c", state: "handover" as const, requestedAt: "", position: "0-2-50", fencedAt: 99_000 };
    const base = { cluster: mine, leaseConfirmed: true, role: "primary" as const, handover, local: local({ executed: "0-2-50", binlogPos: "0-2-50", state: "0-1-10,0-2-50" }) };
    expect(decide(obs({ ...base, targetState: { executed: "0-2-49", state: "0-1-10,0-2-49", readOnly: true } })).action.kind).toBe("none");
    expect(decide(obs({ ...base, targetState: { executed: "0-2-50", state: "0-1-10,0-2-50", readOnly: true } })).action.kind).toBe("finish-switchover");
    // MariaDB positions compare numbers only: an errant 0-3-50 on the target looks like 0-2-50
    // (found by the simulation, seed 83762); its binlog state shows what it lacks.
    expect(decide(obs({ ...base, targetState: { executed: "0-3-50", state: "0-1-10,0-2-49,0-3-50", readOnly: true } })).action.kind).toBe("none");
    expect(decide(obs({ ...base, now: 99_000 + 30_001 })).action.kind).toBe("abort-switchover");
  });

  it("a handover ends at once when its target can no longer catch up (found by the simulation, seed 2593)", () => {
    const handover = { id: "x", to: "c", state: "handover" as const, requestedAt: "", position: "0-2-50", fencedAt: 99_000 };
    const base = { leaseConfirmed: true, role: "primary" as const, handover };
    for (const [target, why] of [
      [member("c", { role: "diverged", blocked: "errant GTIDs" }), /cannot take over: errant GTIDs/],
      [member("c", { sqlError: "duplicate key" }), /stopped applying/],
      [{ ...member("c"), alive: false }, /is gone/],
    ] as const) {
      const d = decide(obs({ ...base, cluster: cluster({ leader: leader("b"), members: [target] }) }));
      expect(d.action.kind).toBe("abort-switchover");
      expect(d.reason).toMatch(why);
    }
  });

  it("hands over only to a replica that replicates from this primary now (seed 71063)", () => {
    const request = { id: "x", to: "c", state: "requested" as const, requestedAt: "2026-12-03T10:00:00Z" };
    const base = { leaseConfirmed: true, role: "primary" as const, local: local({ readOnly: false, semiSyncPrimary: true }) };
    const withSource = (source: string) => cluster({ leader: leader("b"), members: [member("c", { source })], switchover: { record: request, version: 7 } });
    expect(decide(obs({ ...base, cluster: withSource("b") })).action.kind).toBe("start-switchover");
    // Still pointing elsewhere (it just stopped being primary): waited for, then refused.
    const waiting = decide(obs({ ...base, now: Date.parse("2026-12-03T10:00:10Z"), cluster: withSource("a") }));
    expect(waiting.action.kind).toBe("none");
    expect(waiting.reason).toMatch(/waiting for it to replicate from this primary/);
    const refused = decide(obs({ ...base, now: Date.parse("2026-12-03T10:00:31Z"), cluster: withSource("a") }));
    expect(refused.action).toMatchObject({ kind: "refuse-switchover" });
  });

  it("only a released handover binds the election; a primary that died while fenced leaves an ordinary failover", () => {
    const sw = (state: "handover" | "released") => ({ record: { id: "x", to: "c", state, requestedAt: "", from: "a", position: "0-1-10", fencedAt: 99_000 }, version: 7 });
    const free = (state: "handover" | "released") => cluster({ leader: undefined, members: [member("b"), member("c")], switchover: sw(state) });
    const stopped = local({}, { ioRunning: "No", sqlRunning: false });
    const released = decide(obs({ cluster: free("released"), local: stopped, free: { version: 10, since: 0 } }));
    expect(released.reason).toMatch(/switchover to c in progress/);
    const died = decide(obs({ cluster: free("handover"), local: stopped, free: { version: 10, since: 0 } }));
    expect(died.reason).not.toMatch(/switchover to c/);
  });
});

describe("divergence", () => {
  const mine = (state: string, binlogPos: string) => local({ state, binlogPos, executed: binlogPos });
  it("a replica with history from two earlier primaries is contained in a primary restored from a snapshot that carries its binlog state", () => {
    const replica = mine("0-1-50,0-2-150,0-4-160", "0-4-160");
    // The restored primary (server 4) started its binlog with the snapshot's state 0-1-50,0-2-150.
    const restored = { executed: "0-4-160", state: "0-1-50,0-2-150,0-4-160", readOnly: false };
    expect(divergence("mariadb", replica, restored, false, 3)).toBe("");
    // Without that state the same look calls the healthy replica diverged (the old defect).
    expect(divergence("mariadb", replica, { ...restored, state: "0-4-160" }, false, 3)).toMatch(/errant GTIDs/);
  });

  it("still catches an errant transaction below the restore position, and a former primary's tail", () => {
    const restored = { executed: "0-4-160", state: "0-1-150,0-4-160", readOnly: false };
    expect(divergence("mariadb", mine("0-1-30,0-3-31", "0-3-31"), restored, false, 3)).toMatch(/0-3-31/);
    expect(divergence("mariadb", mine("0-1-151", "0-1-151"), restored, true, 1)).toMatch(/diverged former primary: errant GTIDs.*0-1-151/);
  });

  it("the snapshot's binlog state is cut back to the backup's position", async () => {
    const { mariaStateAt } = await import("../../src/mysql/gtid.js");
    expect(mariaStateAt("0-1-50,0-2-160", "0-2-150")).toBe("0-1-50,0-2-150");
    expect(mariaStateAt("0-1-50,0-2-150,0-3-170", "0-2-150")).toBe("0-1-50,0-2-150");
  });
});

function member(node: string, extra: Partial<MemberRecord> = {}): ClusterState["members"][number] {
  const record: MemberRecord = { node, serverId: 3, host: "10.0.0.3", port: 3306, role: "replica", up: true, executed: "0-1-10", received: "0-1-10", lagSeconds: 0, sqlError: "", nofailover: false, blocked: "", maintenance: false, source: "a", at: "", ...extra };
  return { node, record, alive: true, version: 1 };
}

describe("a lossless primary's own tail, lost in crash recovery, held by a replica (store-outage.test.ts)", () => {
  // a (server 1) was killed while 0-1-201 waited for an ack; crash recovery truncated it from a's
  // binlog; b and c had received it. Writing again, a would give another transaction GTID 0-1-201.
  const ahead = { executed: "0-1-201", received: "0-1-201" };
  it("the leader steps down (fenced and released) when a member holds its transactions beyond its binlog", () => {
    const mine = cluster({ leader: leader("a"), members: [member("b", { serverId: 2, ...ahead })] });
    // Restarted by its fence, crash recovery done: read-only, about to turn writable again.
    const d = decide(obs({ node: "a", serverId: 1, cluster: mine, leaseConfirmed: true, role: "primary", local: local({ readOnly: true, semiSyncPrimary: false, executed: "0-1-200", binlogPos: "0-1-200", state: "0-1-200", serverId: 1 }) }));
    expect(d.action.kind).toBe("step-down");
    expect(d.reason).toMatch(/b holds this node's own transactions beyond its binlog \(0-1-201\)/);
    // Writable, it cannot have lost a tail (a restart leaves it read-only): a record ahead of its
    // position is a replica that received more since the primary read its own position (a busy
    // primary: the pitr test saw one step down for nothing).
    const busy = decide(obs({ node: "a", serverId: 1, cluster: mine, leaseConfirmed: true, role: "primary", local: local({ readOnly: false, semiSyncPrimary: true, executed: "0-1-200", binlogPos: "0-1-200", state: "0-1-200", serverId: 1 }) }));
    expect(busy.action.kind).toBe("lead");
    // Holding no more than the leader is the normal case: it leads on.
    const fine = cluster({ leader: leader("a"), members: [member("b", { serverId: 2, executed: "0-1-200", received: "0-1-200" })] });
    expect(decide(obs({ node: "a", serverId: 1, cluster: fine, leaseConfirmed: true, role: "primary", local: local({ readOnly: false, semiSyncPrimary: true, executed: "0-1-200", binlogPos: "0-1-200", state: "0-1-200", serverId: 1 }) })).action.kind).toBe("lead");
  });

  it("a replica holding the leader's lost tail stops receiving from it and is not marked diverged", () => {
    const base = { local: local({ executed: "0-1-201", binlogPos: "0-1-201", state: "0-1-201", slavePos: "0-1-201" }, { received: "0-1-201" }), primaryState: { executed: "0-1-200", state: "0-1-200", readOnly: false } };
    const d = decide(obs(base));
    expect(d.action.kind).toBe("stop-receiver");
    expect(d.role).toBe("replica");
    expect(d.blocked).toBe("");
    expect(d.reason).toMatch(/a lost its own transactions 0-1-201/);
    // Its receiver already stopped on 1236: still not diverged, nothing restarts it.
    const stopped = decide(obs({ ...base, blocked: "cannot replicate from a: 1236", local: local({ executed: "0-1-201", binlogPos: "0-1-201", state: "0-1-201" }, { ioRunning: "No", ioError: "Got fatal error 1236 from master" }) }));
    expect(stopped).toMatchObject({ action: { kind: "none" }, role: "replica", blocked: "" });
    // The leader's position could not be read in this loop: a 1236 for one of the leader's own
    // GTIDs concludes nothing yet (no blocked verdict that would outlive this leader).
    const unread = decide(obs({ local: local({ executed: "0-1-201", binlogPos: "0-1-201", state: "0-1-201" }, { ioRunning: "No", ioError: "Got fatal error 1236 from master when reading data from binary log: 'Error: connecting slave requested to start from GTID 0-1-201, which is not in the master's binlog'" }) }));
    expect(unread).toMatchObject({ action: { kind: "none" }, role: "replica", blocked: "" });
    // Another server's transaction beyond the leader is this node's divergence, as before.
    const errant = decide(obs({ ...base, local: local({ executed: "0-2-201", binlogPos: "0-2-201", state: "0-1-200,0-2-201" }) }));
    expect(errant.role).toBe("diverged");
  });
});

describe("a cluster store that came back empty (it lost its data)", () => {
  const empty = cluster({ leader: undefined, lastLeader: undefined, members: [], initialized: false });
  const memory = { lastLeader: leader("a").record, members: [member("a", { role: "primary", source: "" }).record, member("c", { source: "a", executed: "0-1-20", received: "0-1-20" }).record] };
  it("waits the takeover time since, so the last primary has fenced itself", () => {
    const d = decide(obs({ cluster: empty, memory, free: { version: 1, since: 99_000 }, local: local({}, { configured: false }) }));
    expect(d.action.kind).toBe("none");
    expect(d.reason).toMatch(/came back empty: waiting 6000 ms more .* a, the last primary, has fenced itself/);
  });
  it("then waits for every remembered replica of the last primary (lossless), as if the store still listed it", () => {
    const d = decide(obs({ cluster: empty, memory, free: { version: 1, since: 90_000 }, local: local({}, { configured: false }) }));
    expect(d.action.kind).toBe("none");
    expect(d.reason).toMatch(/waiting for c \(not reachable\): it replicated from a/);
  });
  it("a node that never saw the cluster initialised trusts the empty store (a new cluster)", () => {
    const d = decide(obs({ cluster: empty, free: { version: 1, since: 90_000 }, local: local({}, { configured: false }) }));
    expect(d.action.kind).toBe("acquire");
  });
  it("but not while a live member remembers the cluster: the store lost its data, and the history (and a failsafe primary that may still write) is theirs (sim seed 58944)", () => {
    const others = cluster({ leader: undefined, lastLeader: undefined, initialized: false, members: [member("c", { remembers: true, executed: "0-1-20", received: "0-1-20" })] });
    const d = decide(obs({ cluster: others, free: { version: 1, since: 90_000 }, local: local({}, { configured: false }) }));
    expect(d.action.kind).toBe("none");
    expect(d.reason).toMatch(/lost its data and this node never saw it initialised; c remembers the cluster/);
    // Members that remember nothing (a new cluster restored from a snapshot on every node): it runs.
    const fresh = cluster({ leader: undefined, lastLeader: undefined, initialized: false, members: [member("c", { executed: "0-1-5", received: "0-1-5" })] });
    expect(decide(obs({ cluster: fresh, free: { version: 1, since: 90_000 }, local: local({}, { configured: false }) })).action.kind).toBe("acquire");
  });
});

describe("member expiry", () => {
  it("the primary removes records of members gone longer than memberExpiry, never live ones", () => {
    const rec = (node: string, at: string) => ({ node, serverId: 1, host: "h", port: 1, role: "replica" as const, up: true, executed: "", received: "", lagSeconds: 0, sqlError: "", nofailover: false, blocked: "", maintenance: false, source: "", at });
    const now = Date.parse("2026-12-02T12:00:00Z");
    const members = [
      { node: "old", record: rec("old", "2026-12-02T10:00:00Z"), alive: false, version: 1 },
      { node: "recent", record: rec("recent", "2026-12-02T11:30:00Z"), alive: false, version: 1 },
      { node: "alive-old", record: rec("alive-old", "2026-12-02T09:00:00Z"), alive: true, version: 1 },
    ];
    const d = decide(obs({ now, node: "b", cluster: cluster({ leader: leader("b"), members }), leaseConfirmed: true, role: "primary", local: local({ readOnly: false, semiSyncPrimary: true }) }));
    expect(d.action).toEqual({ kind: "lead", expire: ["old"] });
  });
});

describe("pause", () => {
  const paused = { paused: true, by: "ops", reason: "disk swap", at: "" };
  const stopped = local({}, { ioRunning: "No", sqlRunning: false });
  it("no automatic failover while paused: only the last leader takes its role back", () => {
    const free = cluster({ leader: undefined, members: [member("b"), member("c")], pause: paused });
    const other = decide(obs({ node: "b", cluster: free, local: stopped, free: { version: 10, since: 0 } }));
    expect(other.action.kind).toBe("none");
    expect(other.reason).toMatch(/cluster paused \(disk swap\): no automatic failover/);
    const last = decide(obs({ node: "a", cluster: free, local: stopped, free: { version: 10, since: 0 } }));
    expect(last.reason).not.toMatch(/paused/);
    const resumed = decide(obs({ node: "b", cluster: cluster({ leader: undefined, members: [member("b"), member("c")], pause: { ...paused, paused: false } }), local: stopped, free: { version: 10, since: 0 } }));
    expect(resumed.reason).not.toMatch(/paused/);
  });
});

describe("scheduled switchover", () => {
  it("the primary leads on until the scheduled time, then hands over", () => {
    const at = "2026-12-03T10:00:00.000Z";
    const request = { id: "x", to: "c", state: "requested" as const, requestedAt: "2026-12-03T09:00:00Z", at };
    const c = cluster({ leader: leader("b"), members: [member("c", { source: "b" })], switchover: { record: request, version: 7 } });
    const base = { leaseConfirmed: true, role: "primary" as const, local: local({ readOnly: false, semiSyncPrimary: true }), cluster: c };
    const before = decide(obs({ ...base, now: Date.parse(at) - 400 }));
    expect(before.action.kind).toBe("lead");
    expect(before.reason).toMatch(/switchover scheduled at/);
    expect(before.nextIn).toBe(400);
    expect(decide(obs({ ...base, now: Date.parse(at) })).action.kind).toBe("start-switchover");
  });
});

describe("invariants checked every loop", () => {
  const kinds = (o: Observation, confirmedAt?: number) => checkInvariants(o, confirmedAt).map((v) => v.invariant);
  it("a receiver still pointed at a node that does not lead is a violation; an applier finishing its relay log is not", () => {
    const elsewhere = cluster({ leader: leader("c", { host: "10.0.0.3" }) });
    expect(kinds(obs({ cluster: elsewhere }))).toEqual(["replicates_from_non_leader"]);
    expect(kinds(obs({ cluster: elsewhere, local: local({}, { ioRunning: "Connecting" }) }))).toEqual(["replicates_from_non_leader"]);
    expect(kinds(obs({ cluster: elsewhere, local: local({}, { ioRunning: "No", sqlRunning: true }) }))).toEqual([]);
    expect(kinds(obs())).toEqual([]);
  });
  it("writable needs the leadership, a lease confirmed within fenceAfter and, in lossless mode, semi-sync", () => {
    const mine = cluster({ leader: leader("b") });
    const writable = local({ readOnly: false, semiSyncPrimary: true }, { configured: false });
    expect(kinds(obs({ cluster: mine, local: writable }), 100_000 - 100)).toEqual([]);
    expect(kinds(obs({ cluster: mine, local: writable }), 100_000 - 3_000)).toEqual(["writable_without_lease"]);
    expect(kinds(obs({ local: writable }), 100_000 - 100)).toEqual(["writable_without_lease"]);
    expect(kinds(obs({ cluster: mine, local: { ...writable, semiSyncPrimary: false } }), 100_000 - 100)).toEqual(["writable_without_semisync"]);
  });
});
