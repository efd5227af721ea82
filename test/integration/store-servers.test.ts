import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Lab } from "../../src/lab/cluster.js";
import { applyFault } from "../../src/lab/faults.js";
import { waitFor } from "../../src/lab/wait.js";
import { ReadOnlySampler, Writer } from "../../src/lab/workload.js";

/**
 * Issue 16: the lab on a real 3-server store (`lab up --store etcd|consul --store-servers 3`: a
 * 3-member etcd, or three Consul servers with one client agent per node), 3 lossless MariaDB nodes
 * under a writer. The store's leader is killed (the other two elect a new one), then two of three
 * servers are stopped (no quorum) and started again; the leader is made slow (store-slow); on
 * Consul the primary's own agent restarts too. Every time the cluster ends with one writable primary, no acknowledged write is missing,
 * and no two nodes are writable at once. The same tests on both stores.
 */
const STORES = [
  { store: "etcd" as const, subnet: "127.0.26", servers: (l: Lab) => l.file.etcd?.members?.map((m) => m.name) ?? [], leader: (l: Lab) => l.etcdLeader() },
  { store: "consul" as const, subnet: "127.0.27", servers: (l: Lab) => l.file.consulCluster?.servers.map((m) => m.name) ?? [], leader: (l: Lab) => l.consulLeader() },
];

describe.each(STORES)("the lab on a 3-server $store", ({ store, subnet, servers, leader }) => {
  let lab: Lab;
  let sampler: ReadOnlySampler;
  let writer: Writer;
  let workDir = "";

  beforeAll(async () => {
    workDir = mkdtempSync(join(tmpdir(), `statepilot-store-servers-${store}-`));
    process.on("exit", () => lab?.killAllNow());
    lab = await Lab.up({ dir: join(workDir, "lab"), nodes: 3, subnet, store, storeServers: 3, lossless: true });
    await Writer.prepare(lab.file);
    sampler = new ReadOnlySampler(lab.file, 100);
    sampler.start();
    writer = new Writer(lab.file);
    writer.start();
  }, 300_000);

  afterAll(async () => {
    await writer?.stop();
    await sampler?.stop();
    const keep = process.env.STATEPILOT_KEEP_LABS === "1";
    try {
      await lab?.down({ keep });
    } finally {
      if (!keep && workDir) rmSync(workDir, { recursive: true, force: true });
    }
  });

  /** One writable primary and replicating replicas (the writer keeps writing: "caught up" would never hold). */
  const settled = async (what: string) => {
    let seen = "";
    return waitFor(
      async () => {
        const vs = await lab.views();
        seen = vs.map((v) => `${v.name}=${v.role} ro=${v.readOnly} (${v.reason})`).join("; ");
        const writable = vs.filter((v) => v.readOnly === false);
        return writable.length === 1 && writable[0]!.role === "primary" && vs.filter((v) => v.role === "replica").length === vs.length - 1 ? vs : undefined;
      },
      { timeoutMs: 120_000, intervalMs: 250, what: `one primary and replicating replicas after ${what}`, detail: () => seen },
    );
  };

  const writesResume = async (what: string) => {
    const n = writer.acked.length;
    await waitFor(async () => (writer.acked.length > n + 20 ? true : undefined), { timeoutMs: 60_000, what: `writes after ${what}`, detail: () => writer.lastError });
  };

  it("runs three store servers with one leader", async () => {
    expect(servers(lab)).toHaveLength(3);
    expect(await leader(lab)).toBeDefined();
    await waitFor(async () => (writer.acked.length > 50 ? true : undefined), { timeoutMs: 30_000, what: "writes before the faults" });
  });

  it("rides out the death of the store's leader", { timeout: 180_000 }, async () => {
    const r = await applyFault(lab, "store-leader-kill", { forMs: 5_000 });
    console.log(r.description);
    await writesResume("the store leader's death");
    await settled("the store leader's death");
    expect(await leader(lab)).toBeDefined();
    const gaps = writer.outages.map((o) => (o.recoveredAt ?? Date.now()) - o.failedAt);
    console.log(`${store}: after the store leader's death: write gaps ${JSON.stringify(gaps)} ms`);
  });

  it("rides out a slow store leader (frozen 150 ms of every 400 ms for 6 s)", { timeout: 180_000 }, async () => {
    const before = writer.acked.length;
    const r = await applyFault(lab, "store-slow", { forMs: 6_000 });
    console.log(r.description);
    expect(r.description).toMatch(/\(the leader\).*\(([5-9]|[1-9][0-9]) stalls\)/);
    const during = writer.acked.length - before;
    await writesResume("the slow store leader");
    await settled("the slow store leader");
    const gaps = writer.outages.map((o) => (o.recoveredAt ?? Date.now()) - o.failedAt);
    console.log(`${store}: ${during} writes acknowledged while the store leader was slow; write gaps so far ${JSON.stringify(gaps)} ms`);
  });

  it.runIf(store === "consul")("rides out a restart of the primary's own Consul agent (data kept)", { timeout: 180_000 }, async () => {
    const primary = (await lab.primary())!.name;
    const r = await applyFault(lab, "store-agent-restart", { node: primary, forMs: 3_000 });
    console.log(r.description);
    await writesResume("the agent's restart");
    await settled("the agent's restart");
    const gaps = writer.outages.map((o) => (o.recoveredAt ?? Date.now()) - o.failedAt);
    console.log(`${store}: after ${primary}'s agent restart: write gaps ${JSON.stringify(gaps)} ms`);
  });

  it("fences on a quorum loss (failsafe off), and recovers when the servers return", { timeout: 240_000 }, async () => {
    const r = await applyFault(lab, "store-quorum-loss", { forMs: 10_000 });
    console.log(r.description);
    await writesResume("the quorum's return");
    await settled("the quorum's return");
    await writer.stop();
    const vs = await lab.waitConverged(120_000);
    expect(vs.filter((v) => v.readOnly === false)).toHaveLength(1);
    for (const v of vs) expect(await writer.missingOn(lab.node(v.name).mysql.host, 3306), `acknowledged writes missing on ${v.name}`).toEqual([]);
  });

  it("never had two writable nodes at once", async () => {
    await sampler.stop();
    console.log(`${store}: read_only sampler: ${sampler.rounds} rounds, ${sampler.violations.length} with two writable nodes`);
    expect(sampler.rounds).toBeGreaterThan(100);
    expect(sampler.violations).toEqual([]);
  });
});
