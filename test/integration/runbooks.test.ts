import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { rollingRestart } from "../../examples/rolling-restart.js";
import { verifySnapshot } from "../../examples/verify-snapshot.js";
import { alive, Lab } from "../../src/lab/cluster.js";
import { waitFor } from "../../src/lab/wait.js";
import { ReadOnlySampler, Writer } from "../../src/lab/workload.js";
import { ApiUsageError, connect, type Cluster, type ClusterView } from "../../src/index.js";
import { runCli } from "../support/cli.js";

/**
 * The programmable API and the two example runbooks, against a real 3-node lab (lossless) with a
 * writer and a read-only sampler running throughout.
 */
let dir: string;
let lab: Lab;
let cluster: Cluster;

beforeAll(async () => {
  process.on("exit", () => lab?.killAllNow());
  dir = mkdtempSync(join(tmpdir(), "statepilot-runbooks-"));
  lab = await Lab.up({ dir: join(dir, "lab"), nodes: 3, subnet: "127.0.36", lossless: true });
  await lab.waitConverged(120_000);
  await Writer.prepare(lab.file);
  cluster = connect({ configFile: lab.node("mysql-1").config });
}, 240_000);

afterAll(async () => {
  cluster?.close();
  await lab?.down();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** A graceful stop (SIGTERM: a primary hands over at once), then a start, as `docker restart` does. */
async function restart(node: string): Promise<void> {
  const n = lab.node(node);
  const pid = n.pids.statepilot;
  await lab.kill(node, { signal: "SIGTERM" });
  await waitFor(async () => !alive(pid), { timeoutMs: 60_000, what: `${node}'s statepilot to stop` });
  await lab.start(node);
}

describe("the API", () => {
  it("refuses a connect without a config, and reads the cluster view", async () => {
    expect(() => connect({})).toThrow(ApiUsageError);
    const v = await cluster.view();
    expect(v.primary?.node).toMatch(/^mysql-\d$/);
    expect(v.members).toHaveLength(3);
  });

  it("watch yields the current view, then each change (a pause shows up)", async () => {
    const ac = new AbortController();
    const seen: ClusterView[] = [];
    const watching = (async () => {
      for await (const v of cluster.watch({ signal: ac.signal, pollMs: 200 })) {
        seen.push(v);
        if (v.pause?.paused) ac.abort();
      }
    })();
    await waitFor(async () => seen.length > 0, { timeoutMs: 10_000, what: "the first view" });
    expect(await cluster.pause({ reason: "api test" })).toEqual({ changed: true });
    await watching;
    expect(seen.at(-1)?.pause).toMatchObject({ paused: true, reason: "api test" });
    expect(await cluster.resume()).toEqual({ changed: true });
  });
});

describe("maintenance", () => {
  const code = async (url: string) => (await fetch(url)).status;
  it("a replica in maintenance leaves the replica checks; the primary keeps its writes; no 404 from Consul", async () => {
    const v = await cluster.view();
    const primary = lab.node(v.primary!.node);
    const replica = lab.node(v.members.find((m) => m.node !== primary.name)!.node);
    const sock = (n: typeof primary) => join(n.dir, "statepilot.sock");
    await waitFor(async () => (await code(`${replica.http}/replica`)) === 200, { timeoutMs: 30_000, what: "the replica check to pass" });
    expect((await runCli(["maintenance", "on", "--reason", "test", "--socket", sock(replica)])).code).toBe(0);
    expect(await code(`${replica.http}/replica`)).toBe(503);
    expect(await code(`${replica.http}/read-only`)).toBe(503);
    expect((await runCli(["maintenance", "on", "--socket", sock(primary)])).code).toBe(0);
    expect(await code(`${primary.http}/primary`)).toBe(200);
    const services = await fetch(`${lab.file.consul}/v1/health/service/mysql-primary?passing=1`).then((r) => r.json() as Promise<unknown[]>);
    expect(services).toHaveLength(1);
    for (const n of [primary, replica]) expect((await runCli(["maintenance", "off", "--socket", sock(n)])).code).toBe(0);
    await waitFor(async () => (await code(`${replica.http}/replica`)) === 200, { timeoutMs: 30_000, what: "the replica back in the pool" });
    expect(lab.logTail(replica, 400)).not.toMatch(/Unknown service ID/);
    expect(lab.logTail(primary, 400)).toMatch(/maintenance on the primary: it keeps its role/);
  });
});

describe("example runbooks", () => {
  it("rolling restart: replicas first, then a switchover and the old primary; nothing lost, never two writers", async () => {
    const writer = new Writer(lab.file);
    const sampler = new ReadOnlySampler(lab.file, 100);
    writer.start();
    sampler.start();
    try {
      const before = (await cluster.view()).primary!.node;
      const lines: string[] = [];
      const report = await rollingRestart(cluster, restart, { log: (l) => lines.push(l) });
      console.log(`rolling restart: ${lines.join("; ")}; switchover unavailable ${report.switchover.unavailableMs} ms`);
      expect(report.order.at(-1)).toBe(before);
      expect(report.order.slice(0, 2).sort()).toEqual(["mysql-1", "mysql-2", "mysql-3"].filter((n) => n !== before));
      expect(report.finalPrimary).not.toBe(before);
      const after = writer.acked.length;
      await waitFor(async () => writer.acked.length > after + 10, { timeoutMs: 30_000, what: "writes after the rolling restart" });
    } finally {
      await writer.stop();
      await sampler.stop();
    }
    const primary = lab.node((await cluster.view()).primary!.node);
    expect(await writer.missingOn(primary.mysql.host, 3306)).toEqual([]);
    expect(sampler.violations).toEqual([]);
  });

  it("verify snapshot: taken by the cluster, listed, restored into a scratch directory", async () => {
    const r = await verifySnapshot(cluster, { timeoutMs: 120_000 });
    console.log(`snapshot ${r.id} by ${r.node}: ${r.sizeBytes} bytes, taken in ${r.takeMs} ms, restored in ${r.restoreMs} ms`);
    expect(r.gtid).toMatch(/^\d+-\d+-\d+/);
    expect(r.files).toBeGreaterThan(3);
  });
});
