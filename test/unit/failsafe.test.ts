import { describe, expect, it } from "vitest";
import pino from "pino";
import { answerFailsafe, failsafeHoldsElection, failsafeList, failsafeMembers, type FailsafeAnswerInput, type FailsafeRequest } from "../../src/mysql/ha/failsafe.js";
import { FailsafeKeeper } from "../../src/mysql/ha/failsafe-keeper.js";
import { systemClock } from "../../src/cluster/clock.js";
import { decide, type Observation } from "../../src/mysql/ha/decide.js";
import type { ClusterState, Leader, Member } from "../../src/cluster/store.js";
import type { MemberRecord } from "../../src/cluster/records.js";
import type { HaSettings } from "../../src/mysql/ha/settings.js";

const settings: HaSettings = {
  cluster: "t", interval: 500, fenceAfter: 1500, takeover: 2500, lockDelay: 500, fenceBy: "kill", lossless: true, maximumLagMs: 10_000,
  healthyLagMs: 30_000, peerWaitMs: 2500, promoteTimeout: 60_000, switchoverTimeout: 30_000, nofailover: false, memberExpiry: 3_600_000, divergenceEvery: 10, failsafe: true,
};
const rec = (node: string, extra: Partial<MemberRecord> = {}): MemberRecord => ({
  node, serverId: 1, host: `10.0.0.${node.length}`, port: 3306, role: "replica", up: true, executed: "", received: "", lagSeconds: 0, sqlError: "", nofailover: false, blocked: "", maintenance: false, source: "", at: "", ...extra,
});
const member = (node: string, alive = true, extra: Partial<MemberRecord> = {}): Member => ({ node, record: rec(node, extra), alive, version: 1 });
const leader = (node: string, term = 4): Leader => ({ node, term, record: { node, serverId: 1, host: "h", port: 3306, flavor: "mariadb", version: "10.11", gtid: "", promotedAt: "" } });
const view = (extra: Partial<ClusterState> = {}): ClusterState => ({ version: 9, leaderVersion: 3, leader: leader("a"), lastLeader: leader("a").record, members: [member("a"), member("b"), member("c")], switchover: undefined, initialized: true, pause: undefined, invalid: [], ...extra });
const input = (extra: Partial<FailsafeAnswerInput> = {}): FailsafeAnswerInput => ({
  now: 10_000, node: "b", settings, role: "replica", writable: false, view: view(), minTerm: 4, promise: undefined, request: { cluster: "t", leader: "a", term: 4 }, ...extra,
});

describe("failsafe: a member's answer", () => {
  it("accepts the leader it knows and promises not to run for the takeover time", () => {
    const r = answerFailsafe(input());
    expect(r.answer.accept).toBe(true);
    expect(r.promise).toEqual({ leader: "a", term: 4, until: 12_500 });
  });

  it("accepts when its own view shows nobody leading (the store lost the leader's lease)", () => {
    expect(answerFailsafe(input({ view: view({ leader: undefined }) })).answer.accept).toBe(true);
  });

  for (const [what, extra, why] of [
    ["failsafe is off here", { settings: { ...settings, failsafe: false } }, /failsafe mode is off/],
    ["another cluster", { request: { cluster: "other", leader: "a", term: 4 } }, /cluster "other"/],
    ["it is primary itself", { role: "primary" }, /primary or writable/],
    ["it is writable", { writable: true }, /primary or writable/],
    ["the store names another leader", { view: view({ leader: leader("c", 5) }) }, /names c \(term 5\)/],
    ["the same leader with another term", { view: view({ leader: leader("a", 6) }) }, /names a \(term 6\)/],
    ["it ran for primary after that term", { minTerm: 5, view: view({ leader: undefined }) }, /ran for primary after term 4/],
    ["it promised another leader", { promise: { leader: "c", term: 5, until: 11_000 }, view: view({ leader: undefined }) }, /accepted c/],
  ] as const) {
    it(`refuses when ${what}`, () => {
      const r = answerFailsafe(input(extra as Partial<FailsafeAnswerInput>));
      expect(r.answer.accept).toBe(false);
      expect(r.answer.reason).toMatch(why);
      expect(r.promise).toBeUndefined();
    });
  }

  it("accepts again once another leader's promise has run out", () => {
    expect(answerFailsafe(input({ promise: { leader: "c", term: 3, until: 9_999 }, view: view({ leader: undefined }) })).answer.accept).toBe(true);
  });
});

describe("failsafe: who a primary asks, and who may run", () => {
  it("asks the members alive in its last view, not itself and not the dead", () => {
    const v = view({ members: [member("a"), member("b"), member("c", false)] });
    expect(failsafeMembers(v, "a").map((r) => r.node)).toEqual(["b"]);
  });

  it("a promise holds the election until it runs out", () => {
    const promise = { leader: "a", term: 4, until: 12_000 };
    const free = view({ leader: undefined });
    expect(failsafeHoldsElection({ now: 11_000, node: "b", settings, promise, view: free, freeForMs: 100, runningMs: 60_000 })).toMatch(/promised a \(term 4\)/);
    expect(failsafeHoldsElection({ now: 12_000, node: "b", settings, promise, view: free, freeForMs: 100, runningMs: 60_000 })).toBeUndefined();
  });

  it("a member the last primary did not list waits (up to memberExpiry); a listed one does not", () => {
    const free = view({ leader: undefined, members: [member("a", false, { role: "primary", failsafe: ["b", "c"] }), member("b"), member("c"), member("d")] });
    expect(failsafeHoldsElection({ now: 1, node: "d", settings, promise: undefined, view: free, freeForMs: 100, runningMs: 60_000 })).toMatch(/relied on b, c and not on this node/);
    expect(failsafeHoldsElection({ now: 1, node: "b", settings, promise: undefined, view: free, freeForMs: 100, runningMs: 60_000 })).toBeUndefined();
    expect(failsafeHoldsElection({ now: 1, node: "d", settings, promise: undefined, view: free, freeForMs: settings.memberExpiry, runningMs: 60_000 })).toBeUndefined();
    expect(failsafeHoldsElection({ now: 1, node: "d", settings: { ...settings, failsafe: false }, promise: undefined, view: free, freeForMs: 100, runningMs: 60_000 })).toBeUndefined();
  });
});

describe("failsafe in decide", () => {
  const local = { readOnly: false, executed: "0-1-10", binlogPos: "0-1-10", state: "0-1-10", slavePos: "", serverId: 1, semiSyncPrimary: true, replication: { configured: false, sourceHost: undefined, sourcePort: undefined, ioRunning: "No" as const, sqlRunning: false, lagSeconds: null, ioError: "", sqlError: "", sqlErrno: 0, received: "" } };
  const obs = (extra: Partial<Observation>): Observation => ({
    now: 100_000, node: "a", serverId: 1, flavor: "mariadb", settings, role: "primary", wasPrimary: true, mysqldRunning: true, mysqldPid: 42, local, localError: "", cluster: undefined, storeError: "down",
    leaseConfirmed: false, maintenance: false, free: undefined, replicationStartedOnPid: undefined, receiverStoppedByUs: false, primaryState: undefined, blocked: "", restored: undefined, handover: undefined, targetState: undefined, loops: 1, ...extra,
  });

  it("a primary the members confirmed keeps serving while the store is unreachable, and says why", () => {
    const d = decide(obs({ failsafe: "failsafe: b, c accept this primary" }));
    expect(d.action.kind).toBe("none");
    expect(d.role).toBe("primary");
    expect(d.reason).toMatch(/store unreachable \(down\); failsafe: b, c accept/);
  });

  it("back in a store where nobody leads, it takes the leadership back only while the members' confirmation holds", () => {
    const free = view({ leader: undefined });
    expect(decide(obs({ cluster: free, storeError: "", failsafeHolds: true })).action.kind).toBe("take-back");
    expect(decide(obs({ cluster: free, storeError: "", failsafeHolds: false })).action.kind).toBe("fence");
    expect(decide(obs({ cluster: view({ leader: leader("c", 5) }), storeError: "", failsafeHolds: true })).action.kind).toBe("fence");
  });

  it("a store that came back without its data gets no take-back: fenced, the members' memory decides (sim seed 34950)", () => {
    const wiped = view({ leader: undefined, lastLeader: undefined, members: [member("b")], initialized: false });
    const d = decide(obs({ cluster: wiped, storeError: "", failsafeHolds: true }));
    expect(d.action.kind).toBe("fence");
    expect(d.reason).toMatch(/came back without its data: no take-back/);
  });

  it("while its writes rest on the members, a primary names in its list only members already named or bound by a promise (sim seed 84907)", () => {
    const v = view({ members: [member("a"), member("b"), member("c"), member("d")] });
    expect(failsafeList(v, "a", undefined)).toEqual(["b", "c", "d"]);
    // c's server restarted during the outage (not alive when the list was made): c promised nothing.
    expect(failsafeList(v, "a", { published: ["b"], accepted: ["b"] })).toEqual(["b"]);
    // d accepted the last request (it was alive in the last view the primary asked from): it is bound.
    expect(failsafeList(v, "a", { published: ["b"], accepted: ["b", "d"] })).toEqual(["b", "d"]);
    // A member named before stays named even if not alive now (its silence must fence the primary).
    expect(failsafeList(view({ members: [member("a"), member("b", false)] }), "a", { published: ["b"], accepted: [] })).toEqual(["b"]);
  });

  it("a replica held by a promise does not run", () => {
    const free = view({ leader: undefined });
    const d = decide(obs({ node: "b", role: "replica", local: { ...local, readOnly: true }, cluster: free, storeError: "", failsafeHold: "failsafe: promised a (term 4) not to run for primary for 900 ms more", free: { version: 9, since: 0 } }));
    expect(d.action.kind).toBe("none");
    expect(d.reason).toMatch(/promised a/);
  });
});

describe("failsafe: what a primary asks for", () => {
  const asked: FailsafeRequest[] = [];
  const keeper = () => {
    asked.length = 0;
    const peers = {
      ask: async (_to: MemberRecord, r: FailsafeRequest) => {
        asked.push(r);
        return { accept: true, reason: "ok" };
      },
    };
    return new FailsafeKeeper({ node: "a", cluster: "t", settings, clock: systemClock, log: pino({ level: "silent" }), peers });
  };

  it("asks for its own term while the store names it", async () => {
    const k = keeper();
    k.noteView(view());
    expect(await k.confirm(view())).toBe(true);
    expect(asked.map((r) => r.term)).toEqual([4, 4]);
  });

  it("back in a store where nobody leads and it led last (its lease ended there), it keeps asking for its term until it takes the leadership back", async () => {
    const k = keeper();
    k.noteView(view());
    const free = view({ leader: undefined });
    k.noteView(free);
    expect(await k.confirm(free)).toBe(true);
    expect(asked.map((r) => r.term)).toEqual([4, 4]);
  });

  it("asks nothing when another node leads or led last, or it never led", async () => {
    const k = keeper();
    k.noteView(view());
    expect(await k.confirm(view({ leader: leader("b", 5) }))).toBe(false);
    expect(await k.confirm(view({ leader: undefined, lastLeader: leader("b", 5).record }))).toBe(false);
    const k2 = keeper();
    k2.noteView(view({ leader: undefined }));
    expect(await k2.confirm(view({ leader: undefined }))).toBe(false);
    // Another node led since: the old term is forgotten even if the store shows this node as last again.
    k.noteView(view({ leader: leader("b", 5) }));
    expect(await k.confirm(view({ leader: undefined }))).toBe(false);
    expect(asked).toEqual([]);
  });
});
