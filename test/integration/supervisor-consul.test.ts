import { mkdtempSync, readFileSync, rmSync, writeFileSync, unlinkSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConsulAgent } from "../../src/lab/consul-agent.js";
import { ConsulClient, type ServiceInstance } from "../../src/discovery/consul/client.js";
import { waitFor } from "../../src/lab/wait.js";
import { runCli, startCli, writeConfig, type CliRun } from "../support/cli.js";

const dir = mkdtempSync(join(tmpdir(), "statepilot-supc-"));
const agent = new ConsulAgent();
let consul: ConsulClient;
const runs: CliRun[] = [];

beforeAll(async () => {
  await agent.start();
  consul = new ConsulClient({ address: agent.address });
}, 120_000);
afterAll(async () => {
  try {
    for (const r of runs) r.child.kill("SIGKILL");
    await Promise.all(runs.map((r) => r.exit));
    consul?.close();
  } finally {
    try {
      await agent.destroy();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
}, 60_000);

async function instance(service: string, id: string): Promise<ServiceInstance | undefined> {
  return (await consul.healthService(service)).value.find((s) => s.id === id);
}

function check(inst: ServiceInstance | undefined) {
  return inst?.checks.find((c) => c.checkId === `service:${inst.id}`);
}

describe("supervisor against a real Consul agent", () => {
  const healthyFile = join(dir, "healthy");
  const socket = join(dir, "web.sock");
  const envFile = join(dir, "env-seen");
  const configPath = join(dir, "web.json5");
  const config = (extraJobs: unknown[] = []) => ({
    node: "n1",
    consul: { address: agent.address },
    control: { socket },
    jobs: [
      {
        name: "web",
        exec: ["sleep", "1000"],
        health: { exec: ["test", "-f", healthyFile], interval: "1s", ttl: "10s", timeout: "2s" },
        service: { name: "web", port: 8080, interfaces: ["static:127.0.0.1"], tags: ["t1"] },
      },
      { name: "on-change", when: { source: "watch.other", each: "changed" }, exec: ["sh", "-c", `echo "$$MARK" >> ${envFile}`] },
      ...extraJobs,
    ],
    watches: [{ name: "other", wait: "10s" }],
  });
  let run: CliRun;

  it("registers, passes, fails at once with the output, and runs watch-triggered jobs", async () => {
    writeConfig(configPath, config());
    writeFileSync(healthyFile, "");
    run = startCli(["--config", configPath]);
    runs.push(run);
    const passing = await waitFor(async () => {
      const i = await instance("web", "web-n1");
      return check(i)?.status === "passing" ? i : undefined;
    }, { timeoutMs: 60_000, what: "web-n1 passing in Consul", detail: run.output });
    expect(passing.address).toBe("127.0.0.1");
    expect(passing.port).toBe(8080);
    expect(passing.tags).toContain("t1");

    unlinkSync(healthyFile);
    const removedAt = performance.now();
    const critical = await waitFor(async () => {
      const c = check(await instance("web", "web-n1"));
      return c?.status === "critical" ? c : undefined;
    }, { timeoutMs: 30_000, intervalMs: 20, what: "web-n1 critical" });
    const ms = performance.now() - removedAt;
    console.log(`supervisor: failing check critical in Consul after ${ms.toFixed(0)} ms (interval 1s, ttl 10s)`);
    // Reported by the check itself (about one interval plus its own run), not by the 10 s TTL
    // running out; the margin is for a machine whose cores are all busy.
    expect(ms).toBeLessThan(6_000);
    expect(critical.output).toBeDefined();
    writeFileSync(healthyFile, "");

    // putenv reaches jobs started later; a watch change triggers the job.
    expect((await runCli(["putenv", "MARK=first", "--socket", socket])).code).toBe(0);
    await consul.registerService({ id: "other-1", name: "other", port: 1, checks: [{ checkId: "service:other-1", ttl: "30s", status: "passing" }] });
    await waitFor(async () => existsSync(envFile) && readFileSync(envFile, "utf8").includes("first"), { timeoutMs: 30_000, what: "the watch-triggered job", detail: run.output });
  });

  it("is registered again after a Consul agent restart", async () => {
    await waitFor(async () => check(await instance("web", "web-n1"))?.status === "passing", { timeoutMs: 30_000, what: "passing again" });
    await agent.restart();
    const readyAt = performance.now();
    const back = await waitFor(async () => {
      const i = await instance("web", "web-n1");
      return check(i)?.status === "passing" ? i : undefined;
    }, { timeoutMs: 60_000, intervalMs: 50, what: "re-registration after the agent restart", detail: run.output });
    const ms = performance.now() - readyAt;
    console.log(`supervisor: registered again ${ms.toFixed(0)} ms after the Consul agent came back (interval 1s)`);
    // Within a few check intervals (the margin is for a busy machine); without re-registration
    // the service would not come back at all.
    expect(ms).toBeLessThan(8_000);
    expect(back.port).toBe(8080);
  });

  it("control plane: status, maintenance, reload", async () => {
    const status = await runCli(["status", "--json", "--socket", socket]);
    expect(status.code).toBe(0);
    const body = JSON.parse(status.output) as { jobs: Array<{ name: string; state: string; health?: { serviceId: string } }> };
    expect(body.jobs.find((j) => j.name === "web")?.state).toBe("running");

    expect((await runCli(["maintenance", "on", "--reason", "upgrade", "--socket", socket])).code).toBe(0);
    await waitFor(async () => (await instance("web", "web-n1"))?.checks.some((c) => c.checkId.startsWith("_service_maintenance")), { timeoutMs: 30_000, what: "maintenance check" });
    expect((await runCli(["maintenance", "off", "--socket", socket])).code).toBe(0);
    await waitFor(async () => !(await instance("web", "web-n1"))?.checks.some((c) => c.checkId.startsWith("_service_maintenance")), { timeoutMs: 30_000, what: "maintenance off" });

    // An invalid config is rejected with its errors; the running config stays.
    const pidBefore = body.jobs.find((j) => j.name === "web");
    writeConfig(configPath, { ...config(), jobs: [{ name: "web", exec: "x", restarts: "often" }] });
    const bad = await runCli(["reload", "--socket", socket]);
    expect(bad.code).toBe(2);
    expect(bad.output).toContain("jobs[0].restarts");
    // A valid change restarts only the job that changed.
    writeConfig(configPath, config([{ name: "extra", exec: ["sleep", "1000"] }]));
    const ok = await runCli(["reload", "-o", "json", "--socket", socket]);
    expect(ok.code).toBe(0);
    expect(JSON.parse(ok.output)).toMatchObject({ added: ["extra"], restarted: [], removed: [] });
    const after = JSON.parse((await runCli(["status", "--json", "--socket", socket])).output) as typeof body & { jobs: Array<{ pid: number; name: string }> };
    expect(after.jobs.find((j) => j.name === "web")).toMatchObject({ state: "running" });
    expect((after.jobs.find((j) => j.name === "web") as { pid?: number }).pid).toBe((pidBefore as { pid?: number } | undefined)?.pid);
    expect(after.jobs.find((j) => j.name === "extra")?.state).toBe("running");
  });

  it("deregisters on SIGTERM", async () => {
    run.child.kill("SIGTERM");
    const { code } = await run.exit;
    expect(code).toBe(0);
    expect(await instance("web", "web-n1")).toBeUndefined();
  });
});
