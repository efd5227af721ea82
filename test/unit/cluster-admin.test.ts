import { describe, expect, it } from "vitest";
import { MemoryStoreServer } from "../../src/cluster/memory-store.js";
import { systemClock } from "../../src/cluster/clock.js";
import type { LeaderRecord, MemberRecord } from "../../src/cluster/records.js";
import { ClusterAdminError, removeNode, setClusterPause } from "../../src/mysql/cluster-admin.js";
import { clusterView } from "../../src/mysql/switchover.js";

const member = (node: string): MemberRecord => ({ node, serverId: 1, host: "h", port: 3306, role: "replica", up: true, executed: "", received: "", lagSeconds: 0, sqlError: "", nofailover: false, blocked: "", maintenance: false, source: "", at: new Date().toISOString() });
const leader = (node: string): LeaderRecord => ({ node, serverId: 1, host: "h", port: 3306, flavor: "mariadb", version: "10.11", gtid: "", promotedAt: "" });

async function threeNodes() {
  const server = new MemoryStoreServer({ clock: systemClock, timing: { leaseMs: 60_000, lockDelayMs: 0 } });
  const handles = Object.fromEntries(["a", "b", "c"].map((n) => [n, server.connect(n)]));
  for (const [n, h] of Object.entries(handles)) await h.touchMember(member(n), { status: "passing", output: "" });
  expect((await handles.a!.attemptToAcquireLeader(leader("a"))).acquired).toBe(true);
  // c stopped for good: its liveness ended.
  await handles.c!.touchMember(member("c"), { status: "critical", output: "stopped" });
  return { handles, client: server.connect("client") };
}

describe("cluster administration", () => {
  it("pause and resume are recorded with who and why, and shown in the cluster view", async () => {
    const { client } = await threeNodes();
    expect(await setClusterPause(client, { paused: true, reason: "disk swap" })).toEqual({ changed: true });
    expect((await clusterView(client)).pause).toMatchObject({ paused: true, reason: "disk swap" });
    expect(await setClusterPause(client, { paused: true })).toEqual({ changed: false });
    expect(await setClusterPause(client, { paused: false })).toEqual({ changed: true });
    expect((await clusterView(client)).pause?.paused).toBe(false);
  });

  it("removes only a node that is neither the primary nor alive", async () => {
    const { client } = await threeNodes();
    await expect(removeNode(client, "t", "a")).rejects.toThrow(/is the primary: switch over first/);
    await expect(removeNode(client, "t", "b")).rejects.toThrow(/is alive: stop/);
    await expect(removeNode(client, "t", "zz")).rejects.toThrow(ClusterAdminError);
    await removeNode(client, "t", "c");
    expect((await client.load()).members.map((m) => m.node).sort()).toEqual(["a", "b"]);
  });
});
