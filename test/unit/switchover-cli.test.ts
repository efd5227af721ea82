import { describe, expect, it } from "vitest";
import { MemoryStoreServer } from "../../src/cluster/memory-store.js";
import { systemClock } from "../../src/cluster/clock.js";
import type { LeaderRecord, MemberRecord } from "../../src/cluster/records.js";
import { switchover, SwitchoverError } from "../../src/mysql/switchover.js";

const member = (node: string): MemberRecord => ({ node, serverId: 1, host: "h", port: 3306, role: "replica", up: true, executed: "", received: "", lagSeconds: 0, sqlError: "", nofailover: false, blocked: "", maintenance: false, source: "", at: new Date().toISOString() });
const leader = (node: string): LeaderRecord => ({ node, serverId: 1, host: "h", port: 3306, flavor: "mariadb", version: "10.11", gtid: "", promotedAt: "" });

/** Two live members, a leading; and a client handle as the CLI uses. */
async function twoNodes() {
  const server = new MemoryStoreServer({ clock: systemClock, timing: { leaseMs: 60_000, lockDelayMs: 0 } });
  const a = server.connect("a");
  const b = server.connect("b");
  await a.touchMember(member("a"), { status: "passing", output: "" });
  await b.touchMember(member("b"), { status: "passing", output: "" });
  expect((await a.attemptToAcquireLeader(leader("a"))).acquired).toBe(true);
  return { a, b, client: server.connect("client") };
}

describe("switchover: the answer is the cluster's truth", () => {
  it("a record marked done while the old primary still leads is not reported as done", async () => {
    const { client } = await twoNodes();
    const pending = switchover(client, "t", { to: "b", timeoutMs: 200 });
    // Someone writes "done" but the leadership never moves (the old primary stayed).
    for (let i = 0; i < 50; i++) {
      const st = await client.load();
      if (st.switchover?.record.state === "requested") {
        await client.writeSwitchover({ ...st.switchover.record, state: "done", from: "a" }, st.switchover.version);
        break;
      }
      await new Promise((r) => setTimeout(r, 10));
    }
    await expect(pending).rejects.toThrow(SwitchoverError);
    await expect(pending).rejects.toThrow(/no confirmed outcome/);
  }, 20_000);

  it("reports done once the record says so and the target leads", async () => {
    const { a, b, client } = await twoNodes();
    const pending = switchover(client, "t", { to: "b", timeoutMs: 5_000 });
    for (let i = 0; i < 100; i++) {
      const st = await client.load();
      if (st.switchover?.record.state === "requested") {
        await a.releaseLeader();
        await b.attemptToAcquireLeader(leader("b"));
        await client.writeSwitchover({ ...st.switchover.record, state: "done", from: "a", unavailableMs: 5 }, st.switchover.version);
        break;
      }
      await new Promise((r) => setTimeout(r, 10));
    }
    await expect(pending).resolves.toMatchObject({ state: "done", to: "b" });
  }, 20_000);
});

describe("scheduled switchover", () => {
  it("is recorded with its time and returns at once; a time in the past is refused", async () => {
    const { client } = await twoNodes();
    const at = new Date(Date.now() + 60_000);
    const r = await switchover(client, "t", { to: "b", timeoutMs: 5_000, at });
    expect(r).toMatchObject({ state: "requested", to: "b", at: at.toISOString() });
    expect((await client.load()).switchover?.record.at).toBe(at.toISOString());
    // In progress until its time (plus the timeout): a second request is refused.
    await expect(switchover(client, "t", { to: "b", timeoutMs: 5_000 })).rejects.toThrow(/already in progress/);
    const { client: other } = await twoNodes();
    await expect(switchover(other, "t", { to: "b", timeoutMs: 5_000, at: new Date(Date.now() - 1_000) })).rejects.toThrow(/not in the future/);
  });
});
