import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Lab } from "../../src/lab/cluster.js";
import { waitFor } from "../../src/lab/wait.js";
import { ReadOnlySampler, Writer } from "../../src/lab/workload.js";

/**
 * Issue 16's store outage with failsafe mode on: the same 3-node lossless MariaDB lab on a real
 * etcd as store-outage.test.ts, with `mysql.failsafe` enabled (a cluster secret in a 0600 file).
 * etcd is stopped for 60 s under a writer: every member answers the primary directly (POST
 * /failsafe on its HTTP port), so the primary stays writable and the writes go on throughout;
 * when etcd returns, the primary takes its leadership back without a failover, and nothing
 * acknowledged is missing anywhere.
 */
const OUTAGE_MS = 60_000;

let lab: Lab;
let sampler: ReadOnlySampler;
const workDir = mkdtempSync(join(tmpdir(), "statepilot-store-failsafe-"));

beforeAll(async () => {
  process.on("exit", () => lab?.killAllNow());
  const tokenFile = join(workDir, "failsafe.token");
  writeFileSync(tokenFile, `${randomBytes(24).toString("base64url")}\n`, { mode: 0o600 });
  chmodSync(tokenFile, 0o600);
  lab = await Lab.up({ dir: join(workDir, "lab"), nodes: 3, subnet: "127.0.25", store: "etcd", lossless: true, mysql: { failsafe: { enabled: true, tokenFile } } });
  await Writer.prepare(lab.file);
  sampler = new ReadOnlySampler(lab.file, 100);
  sampler.start();
});

afterAll(async () => {
  await sampler?.stop();
  const keep = process.env.STATEPILOT_KEEP_LABS === "1";
  try {
    await lab?.down({ keep });
  } finally {
    if (!keep) rmSync(workDir, { recursive: true, force: true });
  }
});

describe("a 60 s outage of the etcd cluster store, failsafe on", () => {
  it("keeps the primary writable throughout while every member confirms it, takes the leadership back, and loses nothing", { timeout: 300_000 }, async () => {
    const writer = new Writer(lab.file);
    writer.start();
    await waitFor(async () => writer.acked.length > 50, { timeoutMs: 10_000, what: "writes before the outage" });
    const old = (await lab.primary())!;
    expect(old.readOnly).toBe(false);

    await lab.stopEtcd();
    const stoppedAt = Date.now();
    const ackedAtStop = writer.acked.length;
    // The primary says why it still writes: the members accept it.
    await waitFor(
      async () => {
        const v = (await lab.views()).find((x) => x.name === old.name);
        return v && /failsafe: .* accept this primary/.test(v.reason) ? v : undefined;
      },
      { timeoutMs: 20_000, intervalMs: 100, what: `${old.name} to report the members' failsafe confirmation` },
    );
    let checks = 0;
    while (Date.now() - stoppedAt < OUTAGE_MS) {
      const vs = await lab.views();
      expect(vs.filter((v) => v.readOnly === false).map((v) => v.name), "the writable nodes while the store is down").toEqual([old.name]);
      checks++;
      await sleep(500);
    }
    const duringOutage = writer.acked.length - ackedAtStop;
    const gaps = writer.outages.filter((o) => o.failedAt >= stoppedAt - 1_000).map((o) => (o.recoveredAt ?? Date.now()) - o.failedAt);
    console.log(`etcd down ${Math.round((Date.now() - stoppedAt) / 1000)} s: ${duringOutage} writes acknowledged by ${old.name}, ${checks} checks, write gaps ${JSON.stringify(gaps)} ms`);
    expect(duringOutage).toBeGreaterThan(1_000);
    // Throughout: no stretch without writes longer than a loop or two.
    expect(gaps.filter((g) => g > 2_000)).toEqual([]);

    await lab.startEtcd();
    const restartedAt = Date.now();
    // Back in the store, it leads again under a new term, and was never fenced.
    let seen = "";
    await waitFor(
      async () => {
        const vs = await lab.views();
        seen = vs.map((x) => `${x.name}: ${x.role} ro=${x.readOnly} primary=${x.primary} (${x.reason})`).join("; ");
        const v = vs.find((x) => x.name === old.name);
        return v?.role === "primary" && v.primary === old.name && v.reason === "primary, lock held" ? v : undefined;
      },
      { timeoutMs: 60_000, intervalMs: 100, what: `${old.name} to lead in the store again`, detail: () => seen },
    );
    console.log(`etcd back: ${old.name} leads in the store again after ${Date.now() - restartedAt} ms`);
    const before = writer.acked.length;
    await waitFor(async () => (writer.acked.length > before + 20 ? true : undefined), { timeoutMs: 30_000, what: "writes after etcd returned", detail: () => writer.lastError });
    await writer.stop();
    expect(writer.outages.filter((o) => o.failedAt >= stoppedAt - 1_000 && ((o.recoveredAt ?? Date.now()) - o.failedAt) > 2_000)).toEqual([]);
    const vs = await lab.waitConverged(120_000);
    expect(vs.find((v) => v.role === "primary")?.name).toBe(old.name);
    for (const v of vs) expect(await writer.missingOn(lab.node(v.name).mysql.host, 3306), `acknowledged writes missing on ${v.name}`).toEqual([]);
  });

  it("never had two writable nodes at once (during the outage above)", async () => {
    await sampler.stop();
    console.log(`read_only sampler: ${sampler.rounds} rounds, ${sampler.violations.length} with two writable nodes`);
    expect(sampler.rounds).toBeGreaterThan(100);
    expect(sampler.violations).toEqual([]);
  });
});
