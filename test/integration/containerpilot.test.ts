import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConsulAgent } from "../../src/lab/consul-agent.js";
import { resolveAddress } from "../../src/discovery/address.js";
import { ConsulClient, type ServiceInstance } from "../../src/discovery/consul/client.js";
import { waitFor } from "../../src/lab/wait.js";
import { runCli, startCli, type CliRun } from "../support/cli.js";

/**
 * Real ContainerPilot configs (test/fixtures/containerpilot/, unchanged) run by statepilot against
 * a real Consul agent. Nothing in the files is edited. The commands they name that do not exist
 * here are replaced by stub scripts in a temporary directory put first on PATH (python, mysqld,
 * nginx, node, generate-config, health-check): a stub logs its argv and succeeds, a server stub
 * answers HTTP on the port the config's health check uses. Commands given by absolute path
 * (/bin/reload-nginx.sh, /usr/local/bin/sensor) cannot be stubbed that way and fail as they
 * would here; the tests check the events around them instead. The Consul address comes from
 * CONSUL_HTTP_ADDR, which takes the place of the file's `consul` (see docs/migration.md).
 */
const FIXTURES = fileURLToPath(new URL("../fixtures/containerpilot/", import.meta.url));
const dir = mkdtempSync(join(tmpdir(), "statepilot-cp-"));
const stubs = join(dir, "bin");
const stubLog = join(dir, "stub.log");
const agent = new ConsulAgent();
let consul: ConsulClient;
const runs: CliRun[] = [];

function stub(name: string, body: string): void {
  const path = join(stubs, name);
  writeFileSync(path, `#!/bin/sh\necho "${name} $*" >> "$STUB_LOG"\n${body}\n`);
  chmodSync(path, 0o755);
}

beforeAll(async () => {
  rmSync(stubs, { recursive: true, force: true });
  (await import("node:fs")).mkdirSync(stubs);
  const server = join(stubs, "http-server.cjs");
  writeFileSync(server, "require('http').createServer((q, s) => s.end('ok')).listen(Number(process.argv[2]));\n");
  stub("python", "exit 0");
  stub("mysqld", "exec sleep 1000");
  stub("generate-config", "exit 0");
  stub("health-check", "exit 0");
  stub("nginx", `exec "${process.execPath}" "${server}" 80`);
  stub("node", `exec "${process.execPath}" "${server}" 3001`);
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

/** Runs a fixture unchanged: stubs first on PATH, the agent's address, no CONSUL_AGENT / ACME_DOMAIN. */
function runFixture(name: string, extra: string[] = []): { run: CliRun; socket: string } {
  const socket = join(dir, `${name}.sock`);
  const run = startCli(["run", "--config", join(FIXTURES, name), "--node", "n1", "--socket", socket, ...extra], {
    PATH: `${stubs}:${process.env.PATH ?? ""}`,
    STUB_LOG: stubLog,
    CONSUL_HTTP_ADDR: agent.address,
    CONSUL_AGENT: "",
    ACME_DOMAIN: "",
    SERVICE_NAME: "",
  });
  runs.push(run);
  return { run, socket };
}

async function stop(run: CliRun): Promise<void> {
  run.child.kill("SIGTERM");
  await run.exit;
}

async function passing(service: string, run: CliRun): Promise<ServiceInstance> {
  return waitFor(async () => {
    const i = (await consul.healthService(service)).value.find((s) => s.id === `${service}-n1`);
    return i?.checks.find((c) => c.checkId === `service:${i.id}`)?.status === "passing" ? i : undefined;
  }, { timeoutMs: 30_000, intervalMs: 100, what: `${service}-n1 passing in Consul`, detail: run.output });
}

interface JobView {
  name: string;
  state: string;
  lastExit?: { code: number };
}

async function jobs(socket: string): Promise<JobView[]> {
  const r = await runCli(["status", "--json", "--socket", socket]);
  return r.code === 0 ? (JSON.parse(r.output) as { jobs: JobView[] }).jobs : [];
}

const stubCalls = () => (existsSync(stubLog) ? readFileSync(stubLog, "utf8") : "");

async function portFree(port: number, host: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once("error", () => resolve(false));
    s.listen(port, host, () => s.close(() => resolve(true)));
  });
}

describe("ContainerPilot configs run as they are", () => {
  it("autopilotpattern/mysql: preStart then mysqld, registered and passing, the watch fires onChange, the periodic job runs", async () => {
    const { run } = runFixture("mysql.json5");
    try {
      const mysql = await passing("mysql", run);
      expect(mysql.port).toBe(3306);
      const calls = stubCalls();
      expect(calls).toContain("python /usr/local/bin/manage.py\n");
      expect(calls).toContain("mysqld --console --log-bin=mysql-bin");
      expect(calls).toContain("python /usr/local/bin/manage.py health");
      expect(calls).toContain("python /usr/local/bin/manage.py snapshot_task");
      expect(calls.indexOf("python /usr/local/bin/manage.py\n")).toBeLessThan(calls.indexOf("mysqld"));
      await consul.registerService({ id: "mysql-primary-x", name: "mysql-primary", port: 3306, checks: [{ checkId: "service:mysql-primary-x", ttl: "30s", status: "passing" }] });
      await waitFor(async () => stubCalls().includes("python /usr/local/bin/manage.py on_change"), { timeoutMs: 30_000, what: "onChange on watch.mysql-primary", detail: run.output });
    } finally {
      await stop(run);
    }
    await waitFor(async () => !(await consul.healthService("mysql")).value.some((s) => s.id === "mysql-n1"), { timeoutMs: 15_000, what: "mysql-n1 deregistered at stop" });
  });

  it("autopilotpattern/nginx: two services on eth0, telemetry metrics on /metrics under the containerpilot service", async () => {
    // ContainerPilot (and statepilot running its file) listens on the telemetry interface's address only.
    const ip = resolveAddress(["eth0", "inet"]);
    expect(await portFree(9090, ip), `the fixture's telemetry port ${ip}:9090 must be free`).toBe(true);
    const { run, socket } = runFixture("nginx.json5");
    try {
      const nginx = await passing("nginx", run);
      expect(nginx.port).toBe(80);
      await passing("nginx-public", run);
      await passing("containerpilot", run);
      expect((await runCli(["putmetric", "nginx_connections_load=0.25", "--socket", socket])).code).toBe(0);
      const metrics = await waitFor(async () => {
        const body = await (await fetch(`http://${ip.includes(":") ? `[${ip}]` : ip}:9090/metrics`)).text();
        return /^nginx_connections_load 0\.25$/m.test(body) ? body : undefined;
      }, { timeoutMs: 15_000, what: "nginx_connections_load on /metrics", detail: run.output });
      expect(metrics).toMatch(/^# HELP nginx_connections_unhandled_total /m);
      // The sensor job names /usr/local/bin/sensor, which does not exist here: it runs and fails every 5 s.
      const sensor = await waitFor(async () => (await jobs(socket)).find((j) => j.name === "sensor" && j.lastExit), { timeoutMs: 15_000, what: "the sensor job ran" });
      expect(sensor.lastExit?.code).not.toBe(0);
    } finally {
      await stop(run);
    }
  });

  it("autopilotpattern/hello-world hello: the app registers and its curl health check passes", async () => {
    const { run } = runFixture("hello-world-hello.json5");
    try {
      expect((await passing("hello", run)).port).toBe(3001);
      expect(stubCalls()).toContain("node /opt/hello/index.js");
    } finally {
      await stop(run);
    }
  });

  it("autopilotpattern/hello-world nginx: watches fire their onChange jobs", async () => {
    const { run, socket } = runFixture("hello-world-nginx.json5");
    try {
      await waitFor(async () => (await jobs(socket)).length > 0, { timeoutMs: 15_000, what: "statepilot up", detail: run.output });
      await consul.registerService({ id: "world-1", name: "world", port: 1, checks: [{ checkId: "service:world-1", ttl: "30s", status: "passing" }] });
      // /bin/reload-nginx.sh does not exist here: the job runs (and fails) on the change.
      const job = await waitFor(async () => (await jobs(socket)).find((j) => j.name === "onchange-world" && j.lastExit), { timeoutMs: 30_000, what: "onchange-world ran", detail: run.output });
      expect(job.lastExit?.code).not.toBe(0);
      expect((await jobs(socket)).find((j) => j.name === "onchange-goodbye")?.lastExit).toBeUndefined();
    } finally {
      await stop(run);
    }
  });

  it("ContainerPilot v2 services/backends (the app after --): registered, health passing, backends fire onChange", async () => {
    const { run, socket } = runFixture("v2-hello-world-nginx.json5", ["--", "nginx"]);
    try {
      expect((await passing("nginx", run)).port).toBe(80);
      await consul.registerService({ id: "hello-1", name: "hello", port: 1, checks: [{ checkId: "service:hello-1", ttl: "30s", status: "passing" }] });
      await waitFor(async () => (await jobs(socket)).find((j) => j.name === "onChange-hello" && j.lastExit), { timeoutMs: 30_000, what: "onChange-hello ran", detail: run.output });
    } finally {
      await stop(run);
    }
  });

  it("statepilot convert prints a config that loads; a key with no equivalent exits 2 naming it", async () => {
    const ok = await runCli(["convert", join(FIXTURES, "mysql.json5")]);
    expect(ok.code).toBe(0);
    expect(ok.output).toMatch(/^\/\/ statepilot configuration converted from ContainerPilot v3/);
    const converted = join(dir, "converted.json5");
    writeFileSync(converted, ok.output);
    expect((await runCli(["config", "check", "--config", converted], { MYSQL_ROOT_PASSWORD: "" })).code).toBe(0);
    const bad = join(dir, "bad.json5");
    writeFileSync(bad, '{ consul: "c:8500", jobs: [ { name: "a", exec: "true", when: { source: "a2", once: "timerExpired" } } ] }');
    const err = await runCli(["convert", bad]);
    expect(err.code).toBe(2);
    expect(err.output).toContain("jobs[0].when.once");
    expect(err.output).toContain("jobs[0].when.source");
  });
});
