import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { Config } from "../../src/config/schema.js";
import { clusterClient, createClusterStore } from "../../src/discovery/cluster-store-factory.js";
import { ConsulClient } from "../../src/discovery/consul/client.js";
import { ConsulCoordinator } from "../../src/discovery/consul/coordinator.js";
import { leaseTtlSeconds } from "../../src/discovery/etcd/cluster-store.js";
import { ETCD_PASSWORD_ENV, resolveEtcdConnection } from "../../src/discovery/etcd/connection.js";

const problems = (tree: unknown): string[] => {
  const r = Config.safeParse(tree);
  return r.success ? [] : r.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`);
};

describe("the store section of the config", () => {
  const dir = mkdtempSync(join(tmpdir(), "statepilot-etcd-config-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("defaults to Consul, so existing configs are unchanged", () => {
    expect(Config.parse({}).store).toEqual({ type: "consul" });
  });

  it("takes etcd endpoints, auth and TLS", () => {
    const c = Config.parse({ store: { type: "etcd", endpoints: ["https://10.0.0.1:2379", "https://etcd-2:2379"], username: "statepilot", passwordFile: "/run/secrets/etcd", tls: { caFile: "/ca.pem", certFile: "/c.pem", keyFile: "/k.pem" } } });
    expect(c.store).toMatchObject({ type: "etcd", endpoints: ["https://10.0.0.1:2379", "https://etcd-2:2379"], timeout: 5_000 });
    expect(Config.parse({ store: { type: "etcd", endpoints: ["127.0.0.1:2379"], timeout: "2s" } }).store).toEqual({ type: "etcd", endpoints: ["127.0.0.1:2379"], timeout: 2_000, registrations: "consul" });
  });

  it("registers jobs' services in Consul unless registrations says etcd", () => {
    expect(Config.parse({ store: { type: "etcd", endpoints: ["etcd:2379"], registrations: "etcd" } }).store).toMatchObject({ registrations: "etcd" });
    expect(problems({ store: { type: "etcd", endpoints: ["etcd:2379"], registrations: "zookeeper" } })[0]).toMatch(/^store\.registrations: .*"consul".*"etcd"/);
    // Consul has nothing to choose: registrations belong to the etcd store.
    expect(problems({ store: { type: "consul", registrations: "etcd" } })[0]).toMatch(/^store: .*registrations/);
  });

  it("names what is wrong", () => {
    expect(problems({ store: { type: "zookeeper" } })).toEqual(['store.type: expected a store with type "consul" or "etcd"']);
    expect(problems({ store: { type: "etcd", endpoints: [] } })[0]).toMatch(/^store\.endpoints:/);
    expect(problems({ store: { type: "etcd", endpoints: ["etcd:2379/x"] } })).toEqual(["store.endpoints.0: expected host:port, http://host:port or https://host:port"]);
    expect(problems({ store: { type: "etcd", endpoints: ["https://etcd:2379"] } })).toEqual(["store.tls: https:// endpoints need tls.caFile"]);
    expect(problems({ store: { type: "etcd", endpoints: ["etcd:2379"], tls: { caFile: "/ca.pem" } } })).toEqual(["store.tls: tls is set but the endpoints are not https://"]);
    expect(problems({ store: { type: "etcd", endpoints: ["https://etcd:2379"], tls: { caFile: "/ca.pem", certFile: "/c.pem" } } })).toEqual(["store.tls: certFile and keyFile go together"]);
    expect(problems({ store: { type: "etcd", endpoints: ["etcd:2379"], passwordFile: "/p" } })).toEqual(["store.passwordFile: a password needs a username"]);
    expect(problems({ store: { type: "etcd", endpoints: ["etcd:2379"], password: "secret" } })[0]).toMatch(/^store: .*password/);
  });

  it("reads the password from its file or the environment, and the TLS files, naming what cannot be read", () => {
    const pw = join(dir, "pw");
    writeFileSync(pw, "s3cret\n");
    expect(resolveEtcdConnection({ endpoints: ["etcd:2379"], username: "u", passwordFile: pw, timeout: 1_000 }, {})).toMatchObject({ username: "u", password: "s3cret", timeoutMs: 1_000 });
    expect(resolveEtcdConnection({ endpoints: ["etcd:2379"], username: "u", timeout: 1_000 }, { [ETCD_PASSWORD_ENV]: "from-env" }).password).toBe("from-env");
    expect(() => resolveEtcdConnection({ endpoints: ["etcd:2379"], username: "u", timeout: 1_000 }, {})).toThrow(/username u has no password/);
    expect(() => resolveEtcdConnection({ endpoints: ["https://etcd:2379"], tls: { caFile: join(dir, "missing.pem") }, timeout: 1_000 }, {})).toThrow(/store\.tls\.caFile: cannot read .*missing\.pem/);
  });

  it("rounds the lease up to whole seconds, never under etcd's floor", () => {
    expect(leaseTtlSeconds(5_000)).toBe(5);
    expect(leaseTtlSeconds(4_100)).toBe(5);
    expect(leaseTtlSeconds(1_000)).toBe(2);
  });

  it("makes the factory build an etcd store (nothing is contacted until a call)", () => {
    const coordinator = new ConsulCoordinator(new ConsulClient({ address: "http://127.0.0.1:1" }));
    const cfg = { cluster: "c1", serviceName: "mysql", checkTtl: 5_000, sessionTtl: 10_000, lockDelay: 2_000 };
    const health = { checkId: "service:mysql-n1", report: async () => true };
    const store = createClusterStore({ coordinator, node: "n1", cfg, health, store: { type: "etcd", endpoints: ["127.0.0.1:2379"], timeout: 1_000 }, env: {} });
    try {
      expect(store.kind).toBe("etcd");
      expect(store.timing).toEqual({ leaseMs: 5_000, lockDelayMs: 2_000 });
    } finally {
      store.close();
    }
    const cli = clusterClient(coordinator, cfg, { type: "etcd", endpoints: ["127.0.0.1:2379"], timeout: 1_000 }, {});
    expect(cli.kind).toBe("etcd");
    cli.close();
    coordinator.close();
  });
});
