import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Etcd3 } from "etcd3";
import type { ServiceSpec } from "../../src/discovery/coordination.js";
import { createEtcdClient } from "../../src/discovery/etcd/connection.js";
import { EtcdServiceRegistry } from "../../src/discovery/etcd/registry.js";
import { EtcdServer } from "../../src/lab/etcd-server.js";
import { waitFor } from "../../src/lab/wait.js";
import { startCli, writeConfig, type CliRun } from "../support/cli.js";

/**
 * Jobs' service registrations in etcd (store `registrations: etcd`), against a real etcd: the key
 * confd-style readers see, health and maintenance in it, a watch that wakes on a change, and an
 * instance whose checks stop being reported disappearing with its lease.
 */
describe("EtcdServiceRegistry on a real etcd", () => {
  const server = new EtcdServer();
  let client: Etcd3;
  let registry: EtcdServiceRegistry;
  let reader: EtcdServiceRegistry;

  const spec = (node: string, ttl = "2s"): ServiceSpec => ({
    id: `web-${node}`,
    name: "web",
    address: "10.0.0.7",
    port: 8080,
    tags: ["blue"],
    meta: { "statepilot-node": node },
    enableTagOverride: false,
    checkId: `service:web-${node}`,
    ttl,
    initialStatus: "critical",
  });

  beforeAll(async () => {
    await server.start();
    client = createEtcdClient({ endpoints: [server.endpoint], timeoutMs: 5_000 });
    registry = new EtcdServiceRegistry(createEtcdClient({ endpoints: [server.endpoint], timeoutMs: 5_000 }), { endpoints: server.endpoint, ownsClient: true, timeoutMs: 5_000 });
    reader = new EtcdServiceRegistry(createEtcdClient({ endpoints: [server.endpoint], timeoutMs: 5_000 }), { endpoints: server.endpoint, ownsClient: true, timeoutMs: 5_000 });
  }, 60_000);

  const dir = mkdtempSync(join(tmpdir(), "statepilot-etcd-reg-"));
  const runs: CliRun[] = [];
  afterAll(async () => {
    try {
      for (const r of runs) r.child.kill("SIGKILL");
      await Promise.all(runs.map((r) => r.exit));
      registry?.close();
      reader?.close();
      client?.close();
    } finally {
      await server.destroy();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);

  it("publishes the instance under statepilot/services/<service>/<node>, with its health, for confd-style readers", async () => {
    await registry.registerService(spec("n1", "10s"));
    const raw = JSON.parse((await client.get("statepilot/services/web/n1").string()) ?? "{}") as Record<string, unknown>;
    expect(raw).toMatchObject({ node: "n1", id: "web-n1", address: "10.0.0.7", port: 8080, tags: ["blue"], status: "critical" });
    let seen = await reader.watchService("web", { index: 0, wait: "1s" });
    expect(seen.instances.map((i) => [i.node, i.healthy])).toEqual([["n1", false]]);
    await registry.reportCheck("service:web-n1", "passing", "ok");
    seen = await reader.watchService("web", { index: 0, wait: "1s" });
    expect(seen.instances[0]).toMatchObject({ node: "n1", healthy: true, checks: [{ status: "passing", output: "ok" }] });
    // Tags filter, as Consul's do.
    expect((await reader.watchService("web", { index: 0, wait: "1s", tag: "green" })).instances).toEqual([]);
  });

  it("a blocking watch returns at the next change, and maintenance makes the instance unhealthy", async () => {
    const before = await reader.watchService("web", { index: 0, wait: "1s" });
    const t0 = Date.now();
    const pending = reader.watchService("web", { index: before.index, wait: "30s" });
    await registry.setMaintenance("web-n1", true, "upgrading");
    const after = await pending;
    expect(Date.now() - t0).toBeLessThan(30_000);
    expect(after.index).toBeGreaterThan(before.index);
    expect(after.instances[0]).toMatchObject({ healthy: false, checks: [{ status: "critical", output: "upgrading" }] });
    await registry.setMaintenance("web-n1", false, "");
    expect((await reader.watchService("web", { index: 0, wait: "1s" })).instances[0]?.healthy).toBe(true);
  });

  it("an instance whose checks stop being reported goes with its lease; a report then asks for a new registration", async () => {
    await registry.registerService(spec("n2", "2s"));
    await registry.reportCheck("service:web-n2", "passing", "ok");
    await waitFor(async () => (await client.get("statepilot/services/web/n2").string()) === null, { timeoutMs: 15_000, intervalMs: 250, what: "the lapsed instance's key to go" });
    await expect(registry.reportCheck("service:web-n2", "passing", "ok")).rejects.toThrow(/register the service again/);
    await registry.registerService(spec("n2", "2s"));
    expect(await client.get("statepilot/services/web/n2").string()).not.toBeNull();
  });

  it("deregistering removes the key at once; an unknown check is an error that says to register again", async () => {
    await registry.deregisterService("web-n1");
    await registry.deregisterService("web-n2");
    expect((await client.getAll().prefix("statepilot/services/web/").keys()).length).toBe(0);
    await expect(registry.reportCheck("service:web-n1", "passing", "ok")).rejects.toThrow(/register the service again/);
  });

  it("statepilot with registrations: etcd registers a job there (no Consul configured), follows its health, and removes it at shutdown", async () => {
    const healthy = join(dir, "healthy");
    const config = writeConfig(join(dir, "etcd-jobs.json"), {
      node: "n7",
      store: { type: "etcd", endpoints: [server.endpoint], registrations: "etcd" },
      control: { socket: join(dir, "sp.sock") },
      jobs: [
        {
          name: "api",
          exec: ["sleep", "1000"],
          health: { exec: ["test", "-f", healthy], interval: "500ms", ttl: "5s", timeout: "2s" },
          service: { name: "api", port: 9000, interfaces: ["static:127.0.0.9"] },
        },
      ],
    });
    const run = startCli(["run", "--config", config]);
    runs.push(run);
    const key = "statepilot/services/api/n7";
    const value = async () => JSON.parse((await client.get(key).string()) ?? "null") as { status: string; address: string; port: number } | null;
    const first = await waitFor(async () => (await value()) ?? undefined, { timeoutMs: 30_000, what: "the job's instance in etcd", detail: () => run.output().slice(-2_000) });
    expect(first).toMatchObject({ address: "127.0.0.9", port: 9000, status: "critical" });
    writeFileSync(healthy, "");
    await waitFor(async () => (await value())?.status === "passing", { timeoutMs: 30_000, what: "the instance to turn passing", detail: () => run.output().slice(-2_000) });
    run.child.kill("SIGTERM");
    expect((await run.exit).code).toBe(0);
    expect(await client.get(key).string()).toBeNull();
  });
});
