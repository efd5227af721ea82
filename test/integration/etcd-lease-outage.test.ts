import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EtcdClusterStore } from "../../src/discovery/etcd/cluster-store.js";
import { createEtcdClient } from "../../src/discovery/etcd/connection.js";
import { EtcdServer } from "../../src/lab/etcd-server.js";
import { CLUSTER, leaderRecord, member, passing, until } from "./store-contract.js";

// An etcd outage longer than a lease, on a real etcd whose data is kept. etcd renews every lease
// when it elects a leader (each restart of a single member does), so without the store's own
// accounting the leader's lease, not confirmed during the whole outage, comes back with the
// leadership on it: in the lab (test/integration/store-outage.test.ts) the fenced primary, whose
// mysqld was killed and whose crash recovery had truncated a transaction the replicas held, took
// its leadership back after 60 s without etcd and turned writable; the replicas diverged and no
// write was accepted again. The store ends a lease no keep-alive confirmed for its TTL itself.

const TIMING = { leaseMs: 2_000, lockDelayMs: 1_000 };

describe("etcd store: a lease across an etcd outage", () => {
  const server = new EtcdServer();
  /** n1's clock: performance.now(), unless frozen (an outage that takes no time for n1). */
  let frozen: number | undefined;
  let n1: EtcdClusterStore;
  let n2: EtcdClusterStore;

  /** Touches until etcd answers (each node touches as its HA loop would, every 100 ms). */
  const touchUntilAnswered = (s: EtcdClusterStore, node: string) =>
    until(
      `${node}'s touch to reach etcd again`,
      async () => {
        await s.touchMember(member(node), passing);
        return performance.now();
      },
      30_000,
    );

  beforeAll(async () => {
    await server.start();
    const make = (node: string, now?: () => number) =>
      new EtcdClusterStore({ client: createEtcdClient({ endpoints: [server.endpoint], timeoutMs: 2_000 }), endpoints: server.endpoint, cluster: CLUSTER, node, timing: TIMING, ownsClient: true, ...(now ? { now } : {}) });
    n1 = make("n1", () => frozen ?? performance.now());
    n2 = make("n2");
    await n1.touchMember(member("n1"), passing);
    await n2.touchMember(member("n2"), passing);
    expect(await n1.attemptToAcquireLeader(leaderRecord("n1"))).toMatchObject({ acquired: true });
  });

  afterAll(async () => {
    n1?.close();
    n2?.close();
    await server.destroy();
  });

  it("keeps the lease and the leadership when etcd is back within the lease (as n1 counts it)", async () => {
    const lease = n1.leaseId;
    await n1.touchMember(member("n1"), passing);
    frozen = performance.now();
    try {
      await server.restart();
      await touchUntilAnswered(n1, "n1");
      expect(n1.leaseLapsed).toBe(false);
      expect(n1.leaseId).toBe(lease);
      expect(await n1.renewLeader()).toBe(true);
      expect((await n2.load()).leader?.node).toBe("n1");
    } finally {
      frozen = undefined;
    }
    await n1.touchMember(member("n1"), passing);
  });

  it("ends the lease not confirmed for its TTL: the leadership goes (with lock-delay) within a touch of etcd's return", async () => {
    const lease = n1.leaseId;
    const before = await n2.load();
    expect(before.leader?.node).toBe("n1");
    await server.stop();
    // etcd is down: n1's touches fail until its lease has lapsed by its own clock.
    await until(
      "n1's lease to lapse without etcd",
      async () => {
        await n1.touchMember(member("n1"), passing).catch(() => undefined);
        return n1.leaseLapsed;
      },
      30_000,
    );
    // A lapsed lease is acted on no more, even before etcd answers again.
    expect(await n1.renewLeader()).toBe(false);
    expect(await n1.attemptToAcquireLeader(leaderRecord("n1"))).toEqual({ acquired: false });

    await server.start();
    const healthy = performance.now();
    const answered = await touchUntilAnswered(n1, "n1");
    console.log(`etcd back after an outage longer than the lease: n1's touch answered ${(answered - healthy).toFixed(0)} ms after etcd was healthy`);
    // Within a few seconds of etcd answering, not after the client's backoff.
    expect(answered - healthy).toBeLessThan(5_000);
    // The old lease was revoked (with the leader key on it) and a new one granted.
    expect(n1.leaseLapsed).toBe(false);
    expect(n1.leaseId).toBeDefined();
    expect(n1.leaseId).not.toBe(lease);
    expect(await n1.renewLeader()).toBe(false);
    const seenFree = performance.now();
    const after = await n2.load();
    expect(after.leader).toBeUndefined();
    expect(after.members.find((m) => m.node === "n1")?.alive).toBe(true);

    // Lost, not released: n2 waits out lock-delay from when it saw the leadership free, then leads.
    await touchUntilAnswered(n2, "n2");
    expect(await n2.attemptToAcquireLeader(leaderRecord("n2"))).toEqual({ acquired: false });
    const got = await until("n2 to lead after lock-delay", async () => {
      await n2.touchMember(member("n2"), passing);
      return (await n2.attemptToAcquireLeader(leaderRecord("n2"))).acquired ? performance.now() : undefined;
    });
    expect(got - seenFree).toBeGreaterThanOrEqual(TIMING.lockDelayMs);
    expect((await n1.load()).leader?.node).toBe("n2");
  });
});
