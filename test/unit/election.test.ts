import { describe, expect, it } from "vitest";
import { decideRace, type MemberRecord, type RaceInput } from "../../src/mysql/election.js";
import type { Member } from "../../src/cluster/store.js";

const member = (node: string, extra: Partial<MemberRecord> = {}): MemberRecord => ({
  node, serverId: 100 + node.charCodeAt(0), host: "10.0.0.1", port: 3306, role: "replica", up: true,
  executed: "0-1-100", received: "0-1-100", lagSeconds: 0, sqlError: "", nofailover: false, blocked: "", maintenance: false, source: "", at: "", ...extra,
});
const peer = (r: MemberRecord, extra: Partial<Member> = {}): Member => ({ node: r.node, record: r, version: 50, alive: true, ...extra });
const input = (self: MemberRecord, members: Member[], extra: Partial<RaceInput> = {}): RaceInput => ({
  flavor: "mariadb", self, members, freeVersion: 40, freeForMs: 100, peerWaitMs: 6000, maximumLagSeconds: 10,
  lastLeader: undefined, clusterInitialized: true, switchoverTarget: undefined, lossless: false, ...extra,
});

describe("decideRace", () => {
  it("never races while any member holds this node's own transactions beyond its binlog (lost in crash recovery)", () => {
    // a's server_id is 100 + 'a'; its 0-197-201 was truncated by crash recovery; b received it.
    const a = member("a", { executed: "0-197-200", received: "0-197-200" });
    for (const b of [peer(member("b", { executed: "0-197-201", received: "0-197-201" })), peer(member("b", { executed: "0-197-201", received: "0-197-201", blocked: "errant GTIDs" }), { alive: false })]) {
      expect(decideRace(input(a, [b]))).toMatchObject({ race: false, wait: true, reason: expect.stringContaining("holds this node's own transactions beyond this node's binlog (0-197-201)") });
    }
    // Once it received them back it may race again.
    expect(decideRace(input(member("a", { executed: "0-197-200", received: "0-197-201" }), [peer(member("b", { executed: "0-197-201", received: "0-197-201" }))])).race).toBe(true);
  });

  it("races when healthy and not behind any live candidate", () => {
    expect(decideRace(input(member("a"), [peer(member("b"))])).race).toBe(true);
  });

  it("counts the relay log: a node that received more wins even if it applied less", () => {
    const a = member("a", { executed: "0-1-90", received: "0-1-101" });
    const b = member("b", { executed: "0-1-100", received: "0-1-100" });
    expect(decideRace(input(a, [peer(b)])).race).toBe(true);
    expect(decideRace(input(b, [peer(a)]))).toMatchObject({ race: false, reason: expect.stringContaining("a has received more") });
  });

  it("waits for peers that have not published since the lock was freed, then stops waiting", () => {
    const stale = peer(member("b"), { version: 30 });
    expect(decideRace(input(member("a"), [stale]))).toMatchObject({ race: false, wait: true });
    expect(decideRace(input(member("a"), [stale], { freeForMs: 7000 })).race).toBe(true);
  });

  it("ignores dead, blocked and nofailover peers when comparing", () => {
    const ahead = { executed: "0-1-200", received: "0-1-200" };
    for (const p of [peer(member("b", ahead), { alive: false }), peer(member("b", { ...ahead, nofailover: true })), peer(member("b", { ...ahead, blocked: "errant" })), peer(member("b", { ...ahead, up: false }))]) {
      expect(decideRace(input(member("a"), [p])).race).toBe(true);
    }
  });

  it("lossless: a fresh record of an unhealthy node that received more, or another tail, keeps a candidate out (simulation seed 41087)", () => {
    // b's SQL thread stopped on a conflict (so its health is critical, not alive), yet its relay log
    // holds 0-1-36, which the old primary acknowledged; a holds 0-2-36, an errant write of the same seq.
    const a = member("a", { executed: "0-2-36", received: "0-2-36" });
    const b = peer(member("b", { serverId: 2, executed: "0-2-36", received: "0-1-42", sqlError: "out-of-order sequence number", source: "n1" }), { alive: false });
    expect(decideRace(input(a, [b], { lossless: true }))).toMatchObject({ race: false, wait: true, reason: expect.stringContaining("waiting for b (not reachable or unhealthy): it received more") });
    // Asynchronous mode does not wait for it (nothing was acknowledged by a replica).
    expect(decideRace(input(a, [b], { lossless: false })).race).toBe(true);
    // An errant write of the same sequence number is not "as advanced": a live b that received 0-1-36 wins.
    const b2 = peer(member("b", { executed: "0-1-36", received: "0-1-36" }));
    expect(decideRace(input(a, [b2]))).toMatchObject({ race: false, reason: expect.stringContaining("b has received more or other transactions") });
  });

  it("a replica's own errant write never blocks the election (simulation seed 18188)", () => {
    // c (server_id 3) wrote 0-3-18 locally, then could not apply the primary's 0-1-18 it received.
    const a = member("a", { executed: "0-1-18", received: "0-1-18" });
    const c = peer(member("c", { serverId: 3, executed: "0-3-18", received: "0-1-18", sqlError: "out-of-order sequence number" }), { alive: false });
    expect(decideRace(input(a, [c], { lossless: true })).race).toBe(true);
    // But what it had from the primary before its own write still counts.
    const behind = member("a", { executed: "0-1-16", received: "0-1-16" });
    const c2 = peer(member("c", { serverId: 3, executed: "0-3-18", received: "" }));
    expect(decideRace(input(behind, [c2], { lossless: true })).race).toBe(false);
  });

  it("keeps out a node that is down, nofailover, blocked, broken or lagging", () => {
    expect(decideRace(input(member("a", { up: false }), [])).race).toBe(false);
    expect(decideRace(input(member("a", { nofailover: true }), [])).race).toBe(false);
    expect(decideRace(input(member("a", { blocked: "errant GTIDs" }), [])).race).toBe(false);
    expect(decideRace(input(member("a", { sqlError: "dup key" }), [])).race).toBe(false);
    expect(decideRace(input(member("a", { lagSeconds: 11 }), []))).toMatchObject({ race: false, reason: expect.stringContaining("maximumLagOnFailover") });
  });

  it("never lets an empty server win an initialised cluster, nor one missing the last primary's start position", () => {
    expect(decideRace(input(member("a", { executed: "", received: "" }), [])).race).toBe(false);
    expect(decideRace(input(member("a", { executed: "", received: "" }), [], { clusterInitialized: false })).race).toBe(true);
    const last = { node: "p", serverId: 9, host: "h", port: 1, flavor: "mariadb" as const, version: "10.11", gtid: "0-9-150", promotedAt: "" };
    expect(decideRace(input(member("a"), [], { lastLeader: last })).race).toBe(false);
  });

  it("during a switchover only the target races", () => {
    expect(decideRace(input(member("a"), [], { switchoverTarget: "a" })).race).toBe(true);
    expect(decideRace(input(member("b"), [], { switchoverTarget: "a" }))).toMatchObject({ race: false, wait: true });
  });

  it("lossless: waits for every replica of the last primary, reachable or not, and no timeout ends that wait", () => {
    const last = { node: "p", serverId: 9, host: "h", port: 1, flavor: "mariadb" as const, version: "10.11", gtid: "0-1-50", promotedAt: "" };
    const silent = peer(member("b", { source: "p" }), { version: 30, alive: false });
    const d = decideRace(input(member("a", { source: "p" }), [silent], { lossless: true, lastLeader: last, freeForMs: 3_600_000 }));
    expect(d).toMatchObject({ race: false, wait: true, reason: expect.stringContaining("b (not reachable)") });
    // Not lossless: a dead peer does not hold the election up.
    expect(decideRace(input(member("a", { source: "p" }), [silent], { lossless: false, lastLeader: last })).race).toBe(true);
    // Once it published after the lock was freed, its position decides.
    const fresh = peer(member("b", { source: "p", executed: "0-1-100", received: "0-1-100" }), { version: 60, alive: false });
    expect(decideRace(input(member("a", { source: "p" }), [fresh], { lossless: true, lastLeader: last })).race).toBe(true);
  });

  it("lossless: a peer that may not be promoted but received more still blocks", () => {
    const ahead = peer(member("b", { nofailover: true, executed: "0-1-120", received: "0-1-120" }));
    expect(decideRace(input(member("a"), [ahead], { lossless: true })).race).toBe(false);
    expect(decideRace(input(member("a"), [ahead], { lossless: false })).race).toBe(true);
  });
});
