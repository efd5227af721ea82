import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConsulAgent } from "../../src/lab/consul-agent.js";
import { ConsulCoordinator } from "../../src/discovery/consul/coordinator.js";
import { Lab } from "../../src/lab/cluster.js";
import { applyFault } from "../../src/lab/faults.js";
import { waitFor } from "../../src/lab/wait.js";
import { ReadOnlySampler, Writer } from "../../src/lab/workload.js";
import type { MemberRecord } from "../../src/mysql/election.js";
import { encodeMember as memberPayload } from "../../src/discovery/consul/cluster-keys.js";

/**
 * Faults that need network namespaces (root): the lab puts Consul and each node in its own
 * namespace on a bridge, and cuts a node off with blackhole routes. Also regressions found by
 * bench:chaos.
 */
describe("regressions found by chaos runs", () => {
  const consul = new ConsulAgent();
  beforeAll(async () => {
    await consul.start();
  }, 120_000);
  afterAll(async () => {
    await consul.destroy();
  }, 60_000);

  it("every publication of an unchanged member record moves its ModifyIndex (freshness during elections)", async () => {
    const c = new ConsulCoordinator({ address: consul.address });
    try {
      const key = "statepilot/t/members/n1";
      const record: MemberRecord = { node: "n1", serverId: 1, host: "h", port: 3306, role: "replica", up: true, executed: "0-1-5", received: "0-1-5", lagSeconds: 0, sqlError: "", nofailover: false, blocked: "", maintenance: false, source: "", at: "" };
      // Consul keeps the index when the very same value is written again: that is the trap.
      await c.write("statepilot/t/plain", "same");
      const p1 = (await c.read("statepilot/t/plain")).entry!.modifyIndex;
      await c.write("statepilot/t/plain", "same");
      expect((await c.read("statepilot/t/plain")).entry!.modifyIndex).toBe(p1);
      await c.write(key, memberPayload(record, 1));
      const i1 = (await c.read(key)).entry!.modifyIndex;
      await c.write(key, memberPayload(record, 2));
      expect((await c.read(key)).entry!.modifyIndex).toBeGreaterThan(i1);
    } finally {
      c.close();
    }
  });
});

describe("network partitions and hangs on a namespaced lab (lossless)", () => {
  let lab: Lab | undefined;
  let sampler: ReadOnlySampler | undefined;
  const the = () => {
    if (!lab) throw new Error("the lab did not come up");
    return lab;
  };

  beforeAll(async () => {
    if (process.getuid?.() !== 0) throw new Error("these tests need root: network namespaces and veth pairs");
    // Owned by this test process: its namespaces and servers go with it however it ends, and a
    // run killed before (same network index 61) is cleaned up by Lab.up rather than failing it.
    lab = await Lab.up({ dir: mkdtempSync(join(tmpdir(), "statepilot-partition-")), nodes: 3, subnet: "127.0.61", netns: true, lossless: true, owned: true, timeoutMs: 240_000 });
    await Writer.prepare(lab.file, "part");
    sampler = new ReadOnlySampler(lab.file, 100);
    sampler.start();
  }, 300_000);
  afterAll(async () => {
    try {
      await sampler?.stop();
    } finally {
      await lab?.down({ timeoutMs: 60_000 });
    }
  }, 180_000);

  const converged = () => the().waitConverged(180_000);

  it("a primary cut off from Consul fences itself, a replica takes over, and the old primary rejoins after healing", { timeout: 420_000 }, async () => {
    const lab = the();
    const old = (await lab.primary())!;
    const writer = new Writer(lab.file, "part", 3);
    writer.start();
    try {
      await waitFor(async () => writer.acked.length > 20 || undefined, { timeoutMs: 60_000, what: "writes" });
      await applyFault(lab, "partition-consul", { node: old.name, forMs: 12_000 });
      await writer.waitForWriteElsewhere(old.name, 120_000);
    } finally {
      await writer.stop();
    }
    await converged();
    const now = (await lab.primary())!;
    expect(now.name).not.toBe(old.name);
    expect(await writer.missingOn(lab.node(now.name).mysql.host, 3306)).toEqual([]);
    expect((await lab.views()).find((v) => v.name === old.name)?.role).toBe("replica");
  });

  it("a primary cut off from its peers keeps the lock (Consul sees it), and replication resumes after healing", { timeout: 300_000 }, async () => {
    const lab = the();
    const p = (await lab.primary())!;
    await applyFault(lab, "partition-peers", { node: p.name, forMs: 6_000 });
    await converged();
    expect((await lab.primary())!.name).toBe(p.name);
  });

  it("a primary stopped (SIGSTOP) past the takeover time kills its own mysqld on SIGCONT and rejoins", { timeout: 300_000 }, async () => {
    const lab = the();
    const old = (await lab.primary())!;
    await applyFault(lab, "hang", { node: old.name, forMs: 12_000 });
    await converged();
    expect((await lab.primary())!.name).not.toBe(old.name);
    const log = lab.logTail(lab.node(old.name), 400);
    expect(log).toMatch(/lease older than the takeover time: killing mysqld/);
  });

  it("never had two writable nodes", async () => {
    if (!sampler) throw new Error("the lab did not come up");
    await sampler.stop();
    expect(sampler.rounds).toBeGreaterThan(100);
    expect(sampler.violations).toEqual([]);
  });
});
