import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { StoreUnavailable } from "../../src/cluster/store.js";
import { ConsulClient } from "../../src/discovery/consul/client.js";
import { ConsulClusterStore } from "../../src/discovery/consul/cluster-store.js";
import { ConsulAgent } from "../../src/lab/consul-agent.js";
import { freePort } from "../../src/lab/ports.js";
import { CLUSTER, PREFIX, leaderRecord, member, passing, storeContract, until } from "./store-contract.js";

const SERVICE = "mysql";
const TIMING = { checkTtlMs: 2_000, sessionTtlMs: 10_000, lockDelayMs: 1_000 };

describe("ClusterStore on a real Consul", () => {
  const agent = new ConsulAgent();
  let client: ConsulClient;
  const stores = new Map<string, ConsulClusterStore>();
  /** Keeps a node's TTL check passing, as the HA loop's health reports would (without writing its member key). */
  const pulses = new Map<string, NodeJS.Timeout>();
  const checkId = (node: string) => `service:${SERVICE}-${node}`;

  const store = (node: string): ConsulClusterStore => stores.get(node)!;
  const pulse = (node: string) => {
    stopPulse(node);
    pulses.set(node, setInterval(() => void client.updateTtlCheck(checkId(node), "passing", "pulse").catch(() => undefined), 300));
  };
  const stopPulse = (node: string) => {
    clearInterval(pulses.get(node));
    pulses.delete(node);
  };

  beforeAll(async () => {
    await agent.start();
    client = new ConsulClient({ address: agent.address });
    for (const node of ["n1", "n2"]) {
      await client.registerService({
        id: `${SERVICE}-${node}`,
        name: SERVICE,
        port: 3306,
        meta: { "statepilot-node": node, cluster: CLUSTER },
        checks: [{ checkId: checkId(node), ttl: `${TIMING.checkTtlMs / 1000}s`, status: "critical" }],
      });
      stores.set(
        node,
        new ConsulClusterStore({
          client,
          cluster: CLUSTER,
          node,
          serviceName: SERVICE,
          checkId: checkId(node),
          reportHealth: async (h) => {
            try {
              await client.updateTtlCheck(checkId(node), h.status, h.output);
              return true;
            } catch {
              return false;
            }
          },
          timing: TIMING,
        }),
      );
    }
  });

  afterAll(async () => {
    for (const node of [...pulses.keys()]) stopPulse(node);
    for (const s of stores.values()) s.close();
    client?.close();
    await agent.destroy();
  });

  storeContract({
    kind: "consul",
    timing: { leaseMs: 2_000, lockDelayMs: 1_000 },
    store,
    pulse,
    stopPulse: async (node) => stopPulse(node),
    handle: (node) => store(node).sessionId,
    releaseDropsHandle: true,
    consecutiveTerms: true,
    put: async (key, value) => {
      await client.kvPut(key, value);
    },
    get: async (key) => (await client.kvGet(key)).value?.value ?? undefined,
    delete: async (key) => {
      await client.kvDelete(key);
    },
    overwriteLeader: async (value, holder) => {
      await client.kvPut(`${PREFIX}primary`, value);
      const raw = (await client.kvGet(`${PREFIX}primary`)).value!;
      // Consul: a plain write keeps the holder's session but resets LockIndex to 0 (why updateLeader acquires again).
      expect(raw.session).toBe(store(holder).sessionId);
      expect(raw.lockIndex).toBe(0);
    },
    unreachable: async () => {
      const endpoint = `http://127.0.0.1:${await freePort()}`;
      const dead = new ConsulClient({ address: endpoint, timeoutMs: 2_000 });
      const down = new ConsulClusterStore({ client: dead, cluster: CLUSTER, node: "n1", serviceName: SERVICE, checkId: checkId("n1"), reportHealth: async () => true, timing: TIMING });
      return { store: down, endpoint, close: () => dead.close() };
    },
    moreDownOps: (down) => [() => down.attemptToAcquireLeader(leaderRecord("n1"))],
    extra: {
      afterEmpty: () =>
        it("another cluster's instance of the same service and node name never makes a member alive", async () => {
          await client.registerService({
            id: `${SERVICE}-other-n2`,
            name: SERVICE,
            port: 3307,
            meta: { "statepilot-node": "n2", cluster: "another-cluster" },
            checks: [{ checkId: "other-n2", ttl: "60s", status: "passing" }],
          });
          try {
            await until("the other cluster's instance passing", async () => (await client.healthService(SERVICE)).value.some((i) => i.meta.cluster === "another-cluster" && i.healthy));
            // n2's own check is critical: only the other cluster's instance passes.
            await store("n2").touchMember(member("n2"), { status: "critical", output: "not started" });
            const s = await store("n2").load();
            expect(s.members.find((m) => m.node === "n2")).toMatchObject({ alive: false });
          } finally {
            await client.deregisterService(`${SERVICE}-other-n2`);
            await store("n2").removeMember("n2");
          }
        }),
      failures: async () => {
        const refused = new ConsulClusterStore({
          client,
          cluster: CLUSTER,
          node: "n3",
          serviceName: SERVICE,
          checkId: checkId("n3"),
          reportHealth: async () => false,
          timing: TIMING,
        });
        await expect(refused.touchMember(member("n3"), passing)).rejects.toBeInstanceOf(StoreUnavailable);
        // No such check: the session cannot be created.
        await expect(refused.attemptToAcquireLeader(leaderRecord("n3"))).rejects.toBeInstanceOf(StoreUnavailable);
      },
    },
  });
});
