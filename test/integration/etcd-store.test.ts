import { execFileSync } from "node:child_process";
import { createServer as createHttpServer } from "node:http";
import type { AddressInfo } from "node:net";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Etcd3 } from "etcd3";
import { StoreUnavailable } from "../../src/cluster/store.js";
import { EtcdClusterStore } from "../../src/discovery/etcd/cluster-store.js";
import { createEtcdClient, resolveEtcdConnection } from "../../src/discovery/etcd/connection.js";
import { EtcdServer } from "../../src/lab/etcd-server.js";
import { freePort } from "../../src/lab/ports.js";
import { CLUSTER, PREFIX, aliveIn, critical, leaderRecord, member, passing, storeContract, until } from "./store-contract.js";

// The contract of consul-store.test.ts on a real etcd (Debian's etcd-server) started here, plus
// what only etcd has: leadership lost by lease expiry, and an etcd restart with its data kept.

const TIMING = { leaseMs: 2_000, lockDelayMs: 1_000 };

describe("ClusterStore on a real etcd", () => {
  const server = new EtcdServer();
  let client: Etcd3;
  const stores = new Map<string, EtcdClusterStore>();
  /**
   * The stores' clock: performance.now(), unless frozen. A lease no keep-alive confirmed for its
   * TTL by this clock has lapsed (etcd-lease-outage.test.ts): a restart that should not cost the
   * lease freezes it, so a slow restart on a busy machine does not.
   */
  let frozen: number | undefined;
  /** Keeps a node alive, as the HA loop's touches would: one touch every 300 ms, awaited when stopped. */
  const pulses = new Map<string, { stop: () => Promise<void> }>();

  const store = (node: string): EtcdClusterStore => stores.get(node)!;
  const stopPulse = async (node: string) => {
    const p = pulses.get(node);
    pulses.delete(node);
    await p?.stop();
  };
  const pulse = (node: string) => {
    const previous = pulses.get(node);
    let running = true;
    const loop = (async () => {
      await previous?.stop();
      while (running) {
        await store(node)
          .touchMember(member(node), passing)
          .catch(() => undefined);
        if (running) await new Promise((r) => setTimeout(r, 300));
      }
    })();
    pulses.set(node, {
      stop: async () => {
        running = false;
        await loop;
      },
    });
  };

  beforeAll(async () => {
    await server.start();
    client = createEtcdClient({ endpoints: [server.endpoint], timeoutMs: 5_000 });
    for (const node of ["n1", "n2"]) {
      const own = createEtcdClient({ endpoints: [server.endpoint], timeoutMs: 5_000 });
      stores.set(node, new EtcdClusterStore({ client: own, endpoints: server.endpoint, cluster: CLUSTER, node, timing: TIMING, ownsClient: true, now: () => frozen ?? performance.now() }));
    }
  });

  afterAll(async () => {
    for (const node of [...pulses.keys()]) await stopPulse(node);
    for (const s of stores.values()) s.close();
    client?.close();
    await server.destroy();
  });

  it("runs Debian's etcd server", () => {
    expect(EtcdServer.version()).toMatch(/^etcd Version: 3\./);
  });

  it("publishes the node as a service instance under statepilot/services/ on its lease, and as <service>-primary while a passing primary (confd-style discovery)", async () => {
    const own = createEtcdClient({ endpoints: [server.endpoint], timeoutMs: 5_000 });
    // Its own cluster: the member record it writes must not show in the contract's cluster.
    const svc = new EtcdClusterStore({ client: own, endpoints: server.endpoint, cluster: "svc", node: "n9", timing: TIMING, ownsClient: true, service: "shop-db" });
    const read = async (key: string) => {
      const kv = (await client.get(key).exec()).kvs[0];
      return kv ? { value: JSON.parse(kv.value.toString("utf8")) as Record<string, unknown>, lease: kv.lease } : undefined;
    };
    try {
      await svc.touchMember(member("n9", { host: "10.1.2.3", port: 3307 }), passing);
      const replica = await read("statepilot/services/shop-db/n9");
      expect(replica?.value).toMatchObject({ node: "n9", cluster: "svc", address: "10.1.2.3", port: 3307, role: "replica", tags: ["replica"], status: "passing" });
      expect(replica?.lease).toBe(svc.leaseId);
      expect(await read("statepilot/services/shop-db-primary/n9")).toBeUndefined();
      // confd lists the prefix: exactly this node.
      const listed = await client.getAll().prefix("statepilot/services/shop-db/").keys();
      expect(listed).toEqual(["statepilot/services/shop-db/n9"]);

      await svc.touchMember(member("n9", { host: "10.1.2.3", port: 3307, role: "primary" }), passing);
      expect((await read("statepilot/services/shop-db-primary/n9"))?.value).toMatchObject({ role: "primary", address: "10.1.2.3" });
      // A primary that is not passing is no primary for the load balancers.
      await svc.touchMember(member("n9", { host: "10.1.2.3", port: 3307, role: "primary" }), { status: "warning", output: "lagging" });
      expect(await read("statepilot/services/shop-db-primary/n9")).toBeUndefined();
      // Critical: both withdrawn at once.
      await svc.touchMember(member("n9", { host: "10.1.2.3", port: 3307 }), critical);
      expect(await read("statepilot/services/shop-db/n9")).toBeUndefined();
      // A node that stops touching disappears when its lease ends.
      await svc.touchMember(member("n9", { host: "10.1.2.3", port: 3307 }), passing);
      expect(await read("statepilot/services/shop-db/n9")).toBeDefined();
    } finally {
      svc.close();
    }
    await until("the instance key to go with the lease", async () => (await read("statepilot/services/shop-db/n9")) === undefined, 15_000);
  });

  storeContract({
    kind: "etcd",
    timing: TIMING,
    store,
    pulse,
    stopPulse,
    handle: (node) => store(node).leaseId,
    releaseDropsHandle: false,
    consecutiveTerms: false,
    put: async (key, value) => {
      await client.put(key).value(value);
    },
    get: async (key) => (await client.get(key).string()) ?? undefined,
    delete: async (key) => {
      await client.delete().key(key);
    },
    overwriteLeader: async (value, holder) => {
      await client.put(`${PREFIX}primary`).value(value).ignoreLease();
      // The plain write kept the key on the holder's lease (and its create_revision, the term).
      expect((await client.get(`${PREFIX}primary`).exec()).kvs[0]?.lease).toBe(store(holder).leaseId);
    },
    unreachable: async () => {
      const endpoint = `http://127.0.0.1:${await freePort()}`;
      const dead = createEtcdClient({ endpoints: [endpoint], timeoutMs: 1_000 });
      const down = new EtcdClusterStore({ client: dead, endpoints: endpoint, cluster: CLUSTER, node: "n1", timing: TIMING, ownsClient: true });
      return { store: down, endpoint, close: () => undefined };
    },
    // Without a lease (never touched) acquiring answers false without asking etcd: not in the list.
    moreDownOps: (down) => [() => down.setPause({ paused: false, by: "t", reason: "", at: "" })],
    namesEndpoint: true,
    extra: {
      afterLockDelay: () =>
        it("ends the leadership when the holder's lease runs out, with lock-delay after it", async () => {
          const n1 = store("n1");
          const n2 = store("n2");
          expect((await n1.load()).leader?.node).toBe("n2");
          pulse("n1");
          // n2 leads; it stops touching: its lease runs out, etcd deletes the leader key.
          await stopPulse("n2");
          const lastTouch = performance.now();
          await n2.touchMember(member("n2"), passing);
          const gone = await until(
            "n2's lease to run out",
            async () => {
              const s = await n1.load();
              return s.leader === undefined ? performance.now() : undefined;
            },
            15_000,
          );
          // Never before the TTL since the last touch was issued (etcd's expiry sweep may add a little).
          expect(gone - lastTouch).toBeGreaterThanOrEqual(TIMING.leaseMs);
          expect(aliveIn(await n1.load(), "n2")).toBe(false);
          expect(await n1.attemptToAcquireLeader(leaderRecord("n1"))).toEqual({ acquired: false });
          const got = await until("n1 to acquire after lock-delay", async () => {
            const r = await n1.attemptToAcquireLeader(leaderRecord("n1"));
            return r.acquired ? performance.now() : undefined;
          });
          console.log(`etcd store: leader lease ran out ${(gone - lastTouch).toFixed(0)} ms after its last touch (TTL ${TIMING.leaseMs} ms); taken over ${(got - lastTouch).toFixed(0)} ms after it`);
          // The timing contract: nobody leads before last touch + leaseMs + lockDelayMs.
          expect(got - lastTouch).toBeGreaterThanOrEqual(TIMING.leaseMs + TIMING.lockDelayMs);
          expect(await n2.renewLeader()).toBe(false);
          // Back as the contract's sequence expects it: n2 leads, n1 is not touching.
          await n1.releaseLeader();
          await stopPulse("n1");
          pulse("n2");
          await until("n2 to lead again", async () => (await n2.attemptToAcquireLeader(leaderRecord("n2"))).acquired);
        }),
      afterWatch: () =>
        it("wakes a watch on a release, and a watch from a free leadership on the next acquisition", async () => {
          const n1 = store("n1");
          const n2 = store("n2");
          const held = await n1.load();
          expect(held.leader?.node).toBe("n2");
          const t0 = performance.now();
          const released = n1.watch(held.leaderVersion, 30_000).then(() => performance.now());
          await n2.releaseLeader();
          expect((await released) - t0).toBeLessThan(5_000);
          const free = await n1.load();
          expect(free.leader).toBeUndefined();
          const t1 = performance.now();
          const taken = n1.watch(free.leaderVersion, 30_000).then(() => performance.now());
          expect((await n2.attemptToAcquireLeader(leaderRecord("n2"))).acquired).toBe(true);
          expect((await taken) - t1).toBeLessThan(5_000);
        }),
      beforeFailures: () =>
        it("keeps the leadership and the lease across an etcd restart (data kept)", async () => {
          const n2 = store("n2");
          const before = (await n2.load()).leader!;
          expect(before.node).toBe("n2");
          // A restart within the lease (as n2 counts it: its clock is frozen meanwhile).
          await n2.touchMember(member("n2"), passing);
          frozen = performance.now();
          let after: Awaited<ReturnType<EtcdClusterStore["load"]>>;
          try {
            await server.restart();
            // etcd renews every lease when it elects a leader: n2 keeps leading once it touches again.
            after = await until(
              "etcd back, n2 still leading",
              async () => {
                try {
                  await n2.touchMember(member("n2"), passing);
                  return (await n2.renewLeader()) ? await n2.load() : undefined;
                } catch {
                  return undefined;
                }
              },
              30_000,
            );
          } finally {
            frozen = undefined;
          }
          expect(after.leader).toEqual(before);
        }),
      failures: async () => {
        // A command's handle (no member): it never touches a liveness and never leads, but reads.
        const cli = new EtcdClusterStore({ client, endpoints: server.endpoint, cluster: CLUSTER, node: "statepilot-cli", timing: TIMING, member: false });
        await expect(cli.touchMember(member("statepilot-cli"), passing)).rejects.toBeInstanceOf(StoreUnavailable);
        expect(await cli.attemptToAcquireLeader(leaderRecord("n3"))).toEqual({ acquired: false });
        expect((await cli.load()).leader?.node).toBe("n2");
      },
    },
  });

  // Last: etcd answers only authenticated calls from here on.
  it("authenticates with a user and password, and names the endpoint and the cause when they are wrong", async () => {
    for (const node of [...pulses.keys()]) await stopPulse(node);
    await client.role("root").create();
    await (await client.user("root").create("root-secret")).addRole("root");
    await client.auth.authEnable();

    const good = new EtcdClusterStore({
      client: createEtcdClient({ endpoints: [server.endpoint], username: "root", password: "root-secret", timeoutMs: 5_000 }),
      endpoints: server.endpoint,
      cluster: CLUSTER,
      node: "n3",
      timing: TIMING,
      ownsClient: true,
    });
    try {
      await good.touchMember(member("n3"), passing);
      expect(aliveIn(await good.load(), "n3")).toBe(true);
      await good.touchMember(member("n3"), passing); // a keep-alive on an authenticated stream
      await good.watch((await good.load()).leaderVersion, 200);
    } finally {
      good.close();
    }

    const wrong = new EtcdClusterStore({
      client: createEtcdClient({ endpoints: [server.endpoint], username: "root", password: "not-it", timeoutMs: 5_000 }),
      endpoints: server.endpoint,
      cluster: CLUSTER,
      node: "n3",
      timing: TIMING,
      ownsClient: true,
    });
    try {
      const err = await wrong.load().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(StoreUnavailable);
      expect((err as Error).message).toContain(server.endpoint);
      expect((err as Error).message).toMatch(/authentication refused: wrong store.username or password/);
      console.log(`etcd store, wrong password: ${(err as Error).message}`);
    } finally {
      wrong.close();
    }
  });
});

/** A throwaway CA and certificates for 127.0.0.1 (server) and a client, made with openssl. */
function makeCerts(dir: string, name: string): { ca: string; cert: string; key: string; clientCert: string; clientKey: string } {
  const f = (x: string) => join(dir, `${name}-${x}`);
  const ssl = (...args: string[]) => execFileSync("openssl", args, { stdio: "pipe" });
  ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f("ca.key"), "-out", f("ca.pem"), "-days", "1", "-subj", `/CN=statepilot test CA ${name}`);
  for (const [who, ext] of [
    ["server", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth"],
    ["client", "extendedKeyUsage=clientAuth"],
  ] as const) {
    writeFileSync(f(`${who}.ext`), `${ext}\n`);
    ssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f(`${who}.key`), "-out", f(`${who}.csr`), "-subj", `/CN=${who === "server" ? "127.0.0.1" : "statepilot"}`);
    ssl("x509", "-req", "-in", f(`${who}.csr`), "-CA", f("ca.pem"), "-CAkey", f("ca.key"), "-CAcreateserial", "-out", f(`${who}.pem`), "-days", "1", "-extfile", f(`${who}.ext`));
  }
  return { ca: f("ca.pem"), cert: f("server.pem"), key: f("server.key"), clientCert: f("client.pem"), clientKey: f("client.key") };
}

describe("ClusterStore on etcd over TLS with client certificates", () => {
  const dir = mkdtempSync(join(tmpdir(), "statepilot-etcd-tls-"));
  const good = makeCerts(dir, "good");
  const other = makeCerts(dir, "other");
  const server = new EtcdServer({
    tls: { certFile: good.cert, keyFile: good.key, caFile: good.ca, clientCertAuth: true, probe: { cert: good.clientCert, key: good.clientKey } },
  });
  const connect = (tls: { caFile: string; certFile?: string; keyFile?: string }) => {
    const conn = resolveEtcdConnection({ endpoints: [server.endpoint], tls, timeout: 2_000 }, {});
    return new EtcdClusterStore({ client: createEtcdClient(conn), ownsClient: true, endpoints: server.endpoint, cluster: CLUSTER, node: "n1", timing: TIMING });
  };
  const failure = async (s: EtcdClusterStore) => {
    try {
      return await s.load().then(
        () => undefined,
        (e: unknown) => e,
      );
    } finally {
      s.close();
    }
  };

  beforeAll(async () => {
    await server.start();
  });

  afterAll(async () => {
    await server.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  it("works with the right CA and a client certificate", async () => {
    expect(server.endpoint).toMatch(/^https:\/\//);
    const s = connect({ caFile: good.ca, certFile: good.clientCert, keyFile: good.clientKey });
    try {
      await s.touchMember(member("n1"), passing);
      expect(aliveIn(await s.load(), "n1")).toBe(true);
    } finally {
      s.close();
    }
  });

  it("names the endpoint and the cause when the server's certificate is not trusted, or no client certificate is shown", async () => {
    const untrusted = await failure(connect({ caFile: other.ca, certFile: other.clientCert, keyFile: other.clientKey }));
    expect(untrusted).toBeInstanceOf(StoreUnavailable);
    expect((untrusted as Error).message).toContain(server.endpoint);
    console.log(`etcd store, untrusted server certificate: ${(untrusted as Error).message}`);
    expect((untrusted as Error).message).toMatch(/TLS: the server's certificate is not trusted with store.tls.caFile/);
    const anonymous = await failure(connect({ caFile: good.ca }));
    expect(anonymous).toBeInstanceOf(StoreUnavailable);
    expect((anonymous as Error).message).toContain(server.endpoint);
    expect((anonymous as Error).message).toMatch(/TLS: the server refused this client/);
    console.log(`etcd store, no client certificate: ${(anonymous as Error).message}`);
  });

  it("names the endpoint and the cause for a plain endpoint to this TLS server, TLS to a plain server, and nothing listening", async () => {
    const plainUrl = server.endpoint.replace("https://", "http://");
    const plainToTls = await failure(new EtcdClusterStore({ client: createEtcdClient({ endpoints: [plainUrl], timeoutMs: 2_000 }), ownsClient: true, endpoints: plainUrl, cluster: CLUSTER, node: "n1", timing: TIMING }));
    expect(plainToTls).toBeInstanceOf(StoreUnavailable);
    expect((plainToTls as Error).message).toContain(plainUrl);
    expect((plainToTls as Error).message).toMatch(/does not answer etcd's gRPC as configured|TLS/);
    console.log(`etcd store, plain endpoint of a TLS server: ${(plainToTls as Error).message}`);

    // A plain HTTP/1 server stands in for a plain etcd: the TLS handshake fails the same way.
    const plain = createHttpServer((_req, res) => res.end("not etcd"));
    await new Promise<void>((r) => plain.listen(0, "127.0.0.1", r));
    const tlsUrl = `https://127.0.0.1:${(plain.address() as AddressInfo).port}`;
    try {
      const tlsToPlain = await failure(new EtcdClusterStore({ client: createEtcdClient(resolveEtcdConnection({ endpoints: [tlsUrl], tls: { caFile: good.ca, certFile: good.clientCert, keyFile: good.clientKey }, timeout: 2_000 }, {})), ownsClient: true, endpoints: tlsUrl, cluster: CLUSTER, node: "n1", timing: TIMING }));
      expect(tlsToPlain).toBeInstanceOf(StoreUnavailable);
      expect((tlsToPlain as Error).message).toContain(tlsUrl);
      expect((tlsToPlain as Error).message).toMatch(/TLS against a server that speaks plain HTTP/);
      console.log(`etcd store, TLS to a plain server: ${(tlsToPlain as Error).message}`);
    } finally {
      plain.close();
    }

    const closed = `127.0.0.1:${await freePort("127.0.0.1")}`;
    const nobody = await failure(new EtcdClusterStore({ client: createEtcdClient({ endpoints: [closed], timeoutMs: 2_000 }), ownsClient: true, endpoints: closed, cluster: CLUSTER, node: "n1", timing: TIMING }));
    expect(nobody).toBeInstanceOf(StoreUnavailable);
    expect((nobody as Error).message).toContain(closed);
    expect((nobody as Error).message).toMatch(/nothing accepts connections there.*ECONNREFUSED/);
    console.log(`etcd store, nothing listening: ${(nobody as Error).message}`);
  });
});
