import { describe, expect, it } from "vitest";
import { decide, decideRebuild, decideWipe, type Observation, type RebuildObservation, type WipeObservation } from "../../src/mysql/ha/decide.js";
import type { LocalState } from "../../src/mysql/ha/database.js";
import type { ClusterState, Leader, Member } from "../../src/cluster/store.js";
import type { HaSettings } from "../../src/mysql/ha/settings.js";

const settings: HaSettings = {
  cluster: "t", interval: 1000, fenceAfter: 3000, takeover: 7000, lockDelay: 2000, fenceBy: "kill", lossless: true, maximumLagMs: 10_000,
  healthyLagMs: 30_000, peerWaitMs: 6000, promoteTimeout: 60_000, switchoverTimeout: 30_000, nofailover: false, memberExpiry: 3_600_000, divergenceEvery: 10, failsafe: false,
};
const local = (extra: Partial<LocalState> = {}): LocalState => ({
  readOnly: true, executed: "0-1-10", binlogPos: "0-1-10", state: "0-1-10", slavePos: "0-1-10", serverId: 2, semiSyncPrimary: false,
  replication: { configured: true, sourceHost: "10.0.0.1", sourcePort: 3306, ioRunning: "Yes", sqlRunning: true, lagSeconds: 0, ioError: "", sqlError: "", sqlErrno: 0, received: "0-1-10" },
  ...extra,
});
const leader = (node = "a"): Leader => ({ node, term: 3, record: { node, serverId: 1, host: "10.0.0.1", port: 3306, flavor: "mariadb", version: "10.11", gtid: "0-1-5", promotedAt: "" } });
const cluster = (extra: Partial<ClusterState> = {}): ClusterState => ({ version: 10, leaderVersion: 5, leader: leader(), lastLeader: leader().record, members: [], switchover: undefined, initialized: true, pause: undefined, invalid: [], ...extra });
const obs = (extra: Partial<Observation> = {}): Observation => ({
  now: 100_000, node: "b", serverId: 2, flavor: "mariadb", settings, role: "replica", wasPrimary: false, mysqldRunning: true, mysqldPid: 42,
  local: local(), localError: "", cluster: cluster(), storeError: "", leaseConfirmed: false, maintenance: false, free: undefined,
  replicationStartedOnPid: 42, receiverStoppedByUs: false, primaryState: undefined, blocked: "", restored: undefined, handover: undefined, targetState: undefined, loops: 1, ...extra,
});
const req = (extra: Partial<RebuildObservation> = {}): RebuildObservation => ({ now: 100_000, node: "b", role: "replica", cluster: cluster(), storeError: "", expiresAt: 200_000, ...extra });

describe("decideRebuild: whether a node carries out an operator's rebuild", () => {
  it("accepts on a replica (diverged or not) while a primary leads", () => {
    expect(decideRebuild(req())).toMatchObject({ accept: true, reason: expect.stringMatching(/replica of a/) });
    expect(decideRebuild(req({ role: "diverged" })).accept).toBe(true);
  });

  it("refuses on the primary, naming the node and what to do", () => {
    const d = decideRebuild(req({ cluster: cluster({ leader: leader("b") }) }));
    expect(d).toMatchObject({ accept: false });
    expect(d.reason).toMatch(/b is the primary; switch over first/);
    expect(decideRebuild(req({ role: "primary" })).accept).toBe(false);
  });

  it("refuses without a primary, on an unreadable store, on an expired request, on a switchover's target", () => {
    expect(decideRebuild(req({ cluster: cluster({ leader: undefined }) })).reason).toMatch(/no primary/);
    expect(decideRebuild(req({ cluster: undefined, storeError: "timeout" })).reason).toMatch(/cannot be read \(timeout\)/);
    expect(decideRebuild(req({ now: 200_000 })).reason).toMatch(/expired/);
    expect(decideRebuild(req({ expiresAt: Number.NaN })).accept).toBe(true);
    const sw = cluster({ switchover: { version: 3, record: { id: "s1", to: "b", state: "handover", requestedAt: "" } } });
    expect(decideRebuild(req({ cluster: sw })).reason).toMatch(/target of a switchover under way/);
  });
});

describe("decide while rebuilding", () => {
  it("stops receiving first (it acknowledges nothing more), reports down and critical with the stage", () => {
    const first = decide(obs({ rebuilding: "fencing itself out" }));
    expect(first.action.kind).toBe("stop-receiver");
    expect(first.role).toBe("down");
    expect(first.reason).toMatch(/^rebuilding/);
  });

  it("then leaves the server alone, reports down and critical with the stage", () => {
    const stopped = local({ replication: { ...local().replication, ioRunning: "No" } });
    for (const o of [obs({ rebuilding: "stopping mysqld", local: stopped }), obs({ rebuilding: "seeding", local: undefined, mysqldRunning: false, localError: "mysqld is not running" })]) {
      const d = decide(o);
      expect(d.action.kind).toBe("none");
      expect(d.role).toBe("down");
      expect(d.health).toEqual({ status: "critical", output: expect.stringMatching(/^rebuilding: /) });
    }
  });

  it("never runs for primary while rebuilding, even with the leadership free", () => {
    const d = decide(obs({ rebuilding: "seeding", cluster: cluster({ leader: undefined }), free: { version: 1, since: 0 } }));
    expect(d.action.kind).not.toBe("acquire");
    expect(d.role).toBe("down");
  });

  it("the safety rules come first: a writable node is fenced, a leader keeps its rules", () => {
    expect(decide(obs({ rebuilding: "x", local: local({ readOnly: false }) })).action).toMatchObject({ kind: "fence", how: "read-only" });
    const mine = decide(obs({ rebuilding: "x", cluster: cluster({ leader: leader("b") }), leaseConfirmed: true, role: "primary", local: local({ readOnly: false, semiSyncPrimary: true }) }));
    expect(mine.role).toBe("primary");
  });
});

describe("decideWipe: a rebuilt node's data goes only once another replica holds what it received", () => {
  const member = (node: string, version: number, extra: Partial<Member["record"]> = {}, alive = true): Member => ({
    node,
    alive,
    version,
    record: { node, serverId: 1, host: "h", port: 3306, role: "replica", up: true, executed: "0-1-10", received: "0-1-10", lagSeconds: 0, sqlError: "", nofailover: false, blocked: "", maintenance: false, source: "a", at: "", ...extra },
  });
  const wipe = (extra: Partial<WipeObservation> = {}): WipeObservation => ({
    node: "b",
    flavor: "mariadb",
    cluster: cluster({ members: [member("a", 12, { role: "primary", executed: "0-1-20" }), member("b", 11), member("c", 12, { received: "0-1-20", executed: "0-1-19" })] }),
    storeError: "",
    stoppedAtVersion: 11,
    need: undefined,
    ownReceived: "",
    ...extra,
  });

  it("takes the primary's position from its first record written after the stop, then needs a live replica holding it", () => {
    expect(decideWipe(wipe())).toMatchObject({ wipe: true, need: "0-1-20", reason: expect.stringMatching(/c has received everything b could have/) });
    // The primary's record is older than the stop: its position may not cover what b received.
    expect(decideWipe(wipe({ stoppedAtVersion: 12 }))).toMatchObject({ wipe: false, need: undefined, reason: expect.stringMatching(/waiting for a's position/) });
  });

  it("waits while no other live replica has it: b may hold the only copy of acknowledged writes", () => {
    const behind = cluster({ members: [member("a", 12, { role: "primary", executed: "0-1-20" }), member("c", 12, { received: "0-1-18", executed: "0-1-18" })] });
    expect(decideWipe(wipe({ cluster: behind }))).toMatchObject({ wipe: false, need: "0-1-20", reason: expect.stringMatching(/only copy of acknowledged writes/) });
    const dead = cluster({ members: [member("a", 12, { role: "primary", executed: "0-1-20" }), member("c", 12, { received: "0-1-20" }, false)] });
    expect(decideWipe(wipe({ cluster: dead })).wipe).toBe(false);
    const diverged = cluster({ members: [member("a", 12, { role: "primary", executed: "0-1-20" }), member("c", 12, { role: "diverged", received: "0-1-20" })] });
    expect(decideWipe(wipe({ cluster: diverged })).wipe).toBe(false);
    // The primary alone does not count: it may be the next to fail.
    expect(decideWipe(wipe({ cluster: cluster({ members: [member("a", 12, { role: "primary", executed: "0-1-20" })] }) })).wipe).toBe(false);
  });

  it("also needs what this node itself received (a record may be older than its version)", () => {
    expect(decideWipe(wipe({ ownReceived: "0-1-20" })).wipe).toBe(true);
    expect(decideWipe(wipe({ ownReceived: "0-1-21" })).wipe).toBe(false);
  });

  it("keeps the position once known, and waits without a primary or a readable store", () => {
    expect(decideWipe(wipe({ need: "0-1-25" })).wipe).toBe(false);
    expect(decideWipe(wipe({ cluster: cluster({ leader: undefined }) })).reason).toMatch(/no primary/);
    expect(decideWipe(wipe({ cluster: undefined, storeError: "timeout" })).reason).toMatch(/cannot be read \(timeout\)/);
  });
});
