import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { StoreUnavailable } from "../../src/cluster/store.js";
import { EtcdClusterStore } from "../../src/discovery/etcd/cluster-store.js";
import { createEtcdClient } from "../../src/discovery/etcd/connection.js";
import { EtcdCluster } from "../../src/lab/etcd-server.js";
import { CLUSTER, aliveIn, leaderRecord, member, passing, until } from "./store-contract.js";

// The etcd store on a real 3-member etcd cluster: the store survives the loss of its etcd leader,
// reports a quorum loss as StoreUnavailable, and the leadership it held survives the quorum's return.

const TIMING = { leaseMs: 3_000, lockDelayMs: 1_000 };

describe("the etcd store on a 3-member etcd cluster", () => {
  const etcd = new EtcdCluster({ size: 3 });
  const stores = new Map<string, EtcdClusterStore>();
  const store = (node: string) => stores.get(node)!;
  let ticker: NodeJS.Timeout | undefined;
  /**
   * The stores' clock: performance.now(), unless frozen. A lease no keep-alive confirmed for its
   * TTL by this clock has lapsed (etcd-lease-outage.test.ts); the quorum loss below is meant to be
   * shorter than the lease, so it freezes the clock rather than depend on how fast members restart.
   */
  let frozen: number | undefined;

  beforeAll(async () => {
    await etcd.start();
    for (const node of ["n1", "n2"]) {
      const client = createEtcdClient({ endpoints: etcd.endpoints, timeoutMs: 2_000 });
      stores.set(node, new EtcdClusterStore({ client, ownsClient: true, endpoints: etcd.endpoints.join(", "), cluster: CLUSTER, node, timing: TIMING, now: () => frozen ?? performance.now() }));
    }
  });

  afterAll(async () => {
    clearInterval(ticker);
    for (const s of stores.values()) s.close();
    await etcd.destroy();
  });

  it("elects an etcd leader, and a node takes the leadership through any member", async () => {
    expect(etcd.endpoints).toHaveLength(3);
    expect(await etcd.leader()).toBeDefined();
    await store("n1").touchMember(member("n1"), passing);
    await store("n2").touchMember(member("n2"), passing);
    expect((await store("n1").attemptToAcquireLeader(leaderRecord("n1"))).acquired).toBe(true);
    // Both nodes keep touching, as their HA loops would: one touch at a time each (failures are the etcd outage under test).
    const busy = new Set<string>();
    ticker = setInterval(() => {
      for (const n of ["n1", "n2"]) {
        if (busy.has(n)) continue;
        busy.add(n);
        void store(n)
          .touchMember(member(n), passing)
          .catch(() => undefined)
          .finally(() => busy.delete(n));
      }
    }, 500);
  });

  it("keeps working when the etcd leader dies", async () => {
    const leader = (await etcd.leader())!;
    const killedAt = performance.now();
    await leader.stop();
    const back = await until(
      "the store to answer again through the remaining members",
      async () => {
        try {
          await store("n1").touchMember(member("n1"), passing);
          return (await store("n1").renewLeader()) ? performance.now() : undefined;
        } catch {
          return undefined;
        }
      },
      20_000,
    );
    console.log(`etcd cluster: etcd leader killed; the node's touch and renewal succeeded again after ${(back - killedAt).toFixed(0)} ms`);
    const s = await store("n2").load();
    expect(s.leader?.node).toBe("n1");
    expect(aliveIn(s, "n1")).toBe(true);
    expect(await etcd.leader()).toBeDefined();
  });

  it("reports a quorum loss as StoreUnavailable, and the leadership survives the quorum's return", async () => {
    const up = etcd.members.filter((m) => m.running);
    expect(up).toHaveLength(2);
    const before = (await store("n2").load()).leader!;
    // A touch confirmed just before the loss (a call may still pick the member stopped above).
    await until("a touch of n1 before the quorum loss", async () => (await store("n1").touchMember(member("n1"), passing).then(() => true, () => false)));
    frozen = performance.now();
    await up[0]!.stop();
    // One member of three: no leader, no quorum read, no lease renewal.
    const err = await until(
      "a call to fail without quorum",
      async () =>
        store("n1")
          .load()
          .then(
            () => undefined,
            (e: unknown) => e,
          ),
      20_000,
    );
    expect(err).toBeInstanceOf(StoreUnavailable);
    console.log(`etcd cluster, quorum lost: ${(err as Error).message}`);

    const lostAt = performance.now();
    await etcd.start();
    let last = "";
    const after = await until(
      "the store back with the quorum",
      async () => {
        try {
          await store("n1").touchMember(member("n1"), passing);
          if (await store("n1").renewLeader()) return await store("n2").load();
          last = "n1 does not hold the leadership";
        } catch (err) {
          last = String(err);
        }
        return undefined;
      },
      30_000,
    )
      .catch((err: unknown) => {
        throw new Error(`${String(err)}; last: ${last}`);
      })
      .finally(() => {
        frozen = undefined;
      });
    console.log(`etcd cluster: quorum back; the store answered ${(performance.now() - lostAt).toFixed(0)} ms after the members were restarted`);
    // etcd extends every lease when a new leader is elected: the holder keeps its leadership.
    expect(after.leader).toEqual(before);
    expect(await store("n2").attemptToAcquireLeader(leaderRecord("n2"))).toEqual({ acquired: false });
  });
});
