import { execFileSync } from "node:child_process";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConsulAgent } from "../../src/lab/consul-agent.js";
import { resolveAddress } from "../../src/discovery/address.js";
import { ConsulClient, type ServiceInstance } from "../../src/discovery/consul/client.js";
import { waitFor } from "../../src/lab/wait.js";
import { CLI, runCli, startCli, type CliRun } from "../support/cli.js";

/**
 * Real ContainerPilot configs (test/fixtures/containerpilot/, unchanged) run by statepilot against
 * a real Consul agent. Nothing in the files is edited. Every command they name exists while they
 * run, as a stub:
 * - commands found on PATH (python, mysqld, nginx, node, generate-config, health-check) are stub
 *   scripts in a temporary directory put first on PATH;
 * - commands named by absolute path (/usr/local/bin/sensor, /usr/local/bin/consul-manage,
 *   /bin/reload-nginx.sh, /bin/consul) are stubs too: each statepilot runs in its own mount
 *   namespace (unshare --mount, needs root) where /usr/local/bin and /usr/bin are read-only
 *   overlays of the host's directory under a temporary one holding the stubs. The host's files are
 *   not touched, and the namespace ends with its last process.
 * A stub logs its argv and succeeds; a server stub answers HTTP on the port the config's health
 * check uses (nginx's /nginx-health with a stub_status page, as the image's nginx.conf serves it).
 * The image's /usr/local/bin/containerpilot is statepilot's CLI, which takes ContainerPilot's
 * `-putmetric` flags: the sensor, written after autopilotpattern/nginx's bin/sensor, scrapes the
 * status page and records two metrics with it, and /metrics is scraped over HTTP for them. The
 * Consul address comes from CONSUL_HTTP_ADDR, which takes the place of the file's `consul` (see
 * docs/migration.md).
 */
const FIXTURES = fileURLToPath(new URL("../fixtures/containerpilot/", import.meta.url));
const dir = mkdtempSync(join(tmpdir(), "statepilot-cp-"));
const stubs = join(dir, "bin");
/** Laid over /usr/local/bin and /usr/bin (= /bin) in each statepilot's mount namespace. */
const usrLocalBin = join(dir, "usr-local-bin");
const usrBin = join(dir, "usr-bin");
const agent = new ConsulAgent();
let consul: ConsulClient;
const runs: CliRun[] = [];

/** nginx's stub_status page: 3 connections accepted and not handled, (300 active - 44 waiting) / 1024 workers = 0.25. */
const NGINX_STATUS = "Active connections: 300 \nserver accepts handled requests\n 1200 1197 4000 \nReading: 0 Writing: 256 Waiting: 44 \n";
const WORKER_CONNECTIONS = 1024;

function stub(where: string, name: string, body: string): void {
  const path = join(where, name);
  writeFileSync(path, `#!/bin/sh\necho "${name} $*" >> "$STUB_LOG"\n${body}\n`);
  chmodSync(path, 0o755);
}

/**
 * Runs argv in a new mount namespace whose /usr/local/bin and /usr/bin show the stub directories
 * over the host's (read-only overlays; the host sees nothing of it).
 */
const NAMESPACE = [
  "unshare", "--mount", "--propagation", "private", "--",
  "sh", "-c", 'set -e; mount -t overlay overlay -o "lowerdir=$1:/usr/local/bin" /usr/local/bin; mount -t overlay overlay -o "lowerdir=$2:/usr/bin" /usr/bin; shift 2; exec "$@"',
  "sh", usrLocalBin, usrBin,
];

beforeAll(async () => {
  for (const d of [stubs, usrLocalBin, usrBin]) mkdirSync(d);
  const server = join(stubs, "http-server.cjs");
  writeFileSync(server, `const status = ${JSON.stringify(NGINX_STATUS)};\nrequire('http').createServer((q, s) => s.end(q.url === '/nginx-health' ? status : 'ok')).listen(Number(process.argv[2]));\n`);
  stub(stubs, "python", "exit 0");
  stub(stubs, "mysqld", "exec sleep 1000");
  stub(stubs, "generate-config", "exit 0");
  stub(stubs, "health-check", "exit 0");
  stub(stubs, "nginx", `exec "${process.execPath}" "${server}" 80`);
  stub(stubs, "node", `exec "${process.execPath}" "${server}" 3001`);
  // The image's ContainerPilot binary: statepilot's CLI under that name.
  stub(usrLocalBin, "containerpilot", `exec "${process.execPath}" "${CLI}" "$@"`);
  // After autopilotpattern/nginx bin/sensor: scrape stub_status, record with containerpilot -putmetric.
  stub(
    usrLocalBin,
    "sensor",
    [
      "set -e",
      "scraped=$(curl -s --fail localhost/nginx-health)",
      `accepts=$(echo "$scraped" | awk 'FNR == 3 {print $1}')`,
      `handled=$(echo "$scraped" | awk 'FNR == 3 {print $2}')`,
      '/usr/local/bin/containerpilot -putmetric "nginx_connections_unhandled_total=$((accepts - handled))"',
      `active=$(echo "$scraped" | awk '/Active connections/{print $3}')`,
      `waiting=$(echo "$scraped" | awk '/Reading/{print $6}')`,
      `load=$(awk -v a="$active" -v w="$waiting" -v n=${WORKER_CONNECTIONS} 'BEGIN { printf "%.4f", (a - w) / n }')`,
      '/usr/local/bin/containerpilot -putmetric "nginx_connections_load=$load"',
    ].join("\n"),
  );
  stub(usrLocalBin, "consul-manage", "exit 0");
  stub(usrBin, "consul", '[ "$1" = agent ] && exec sleep 1000\nexit 0');
  stub(usrBin, "reload-nginx.sh", "exit 0");
  try {
    execFileSync(NAMESPACE[0]!, [...NAMESPACE.slice(1), "test", "-x", "/usr/local/bin/sensor", "-a", "-x", "/bin/reload-nginx.sh", "-a", "-x", "/usr/bin/curl"], { stdio: ["ignore", "ignore", "pipe"] });
  } catch (err) {
    throw new Error(`these tests run each config in a mount namespace (unshare --mount, overlayfs; needs root) where the commands it names exist: ${String((err as { stderr?: Buffer }).stderr ?? err).trim()}`, { cause: err });
  }
  expect(existsSync("/usr/local/bin/sensor"), "the host's /usr/local/bin is left alone").toBe(false);
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

/**
 * Runs a fixture unchanged in its mount namespace: stubs first on PATH, the agent's address, no
 * CONSUL_AGENT / ACME_DOMAIN; `calls` reads what its stubs were called with, one line each.
 */
function runFixture(name: string, extra: string[] = []): { run: CliRun; socket: string; calls: () => string } {
  const socket = join(dir, `${name}.sock`);
  const stubLog = join(dir, `${name}.stub.log`);
  const run = startCli(
    ["run", "--config", join(FIXTURES, name), "--node", "n1", "--socket", socket, ...extra],
    {
      PATH: `${stubs}:${process.env.PATH ?? ""}`,
      STUB_LOG: stubLog,
      CONSUL_HTTP_ADDR: agent.address,
      CONSUL_AGENT: "",
      CONSUL_DEV: "",
      ACME_DOMAIN: "",
      SERVICE_NAME: "",
      // What the image set; -putmetric finds the socket in STATEPILOT_SOCKET, which run gives its jobs.
      STATEPILOT_SOCKET: "",
      CONTAINERPILOT: join(FIXTURES, name),
    },
    NAMESPACE,
  );
  runs.push(run);
  return { run, socket, calls: () => (existsSync(stubLog) ? readFileSync(stubLog, "utf8") : "") };
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

async function portFree(port: number, host: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once("error", () => resolve(false));
    s.listen(port, host, () => s.close(() => resolve(true)));
  });
}

describe("ContainerPilot configs run as they are", () => {
  it("autopilotpattern/mysql: preStart then mysqld, registered and passing, the watch fires onChange, the periodic job runs", async () => {
    const { run, calls: stubCalls } = runFixture("mysql.json5");
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

  it("autopilotpattern/nginx: two services on eth0; the sensor job's containerpilot -putmetric values are on /metrics under the containerpilot service", async () => {
    // ContainerPilot (and statepilot running its file) listens on the telemetry interface's address only.
    const ip = resolveAddress(["eth0", "inet"]);
    expect(await portFree(9090, ip), `the fixture's telemetry port ${ip}:9090 must be free`).toBe(true);
    const { run, socket, calls: stubCalls } = runFixture("nginx.json5");
    try {
      const nginx = await passing("nginx", run);
      expect(nginx.port).toBe(80);
      await passing("nginx-public", run);
      await passing("containerpilot", run);
      // Nothing but the sensor job (every 5 s) records these: its values, scraped from /metrics over HTTP.
      const url = `http://${ip.includes(":") ? `[${ip}]` : ip}:9090/metrics`;
      const metrics = await waitFor(async () => {
        const body = await (await fetch(url)).text();
        return /^nginx_connections_unhandled_total 3$/m.test(body) && /^nginx_connections_load 0\.25$/m.test(body) ? body : undefined;
      }, { timeoutMs: 30_000, intervalMs: 250, what: `the sensor's nginx_connections_unhandled_total 3 and nginx_connections_load 0.25 on ${url}`, detail: () => `${run.output()}\n${stubCalls()}` });
      expect(metrics).toMatch(/^# HELP nginx_connections_unhandled_total Number of accepted connnections that were not handled$/m);
      expect(metrics).toMatch(/^# TYPE nginx_connections_load gauge$/m);
      const calls = stubCalls();
      expect(calls).toContain("containerpilot -putmetric nginx_connections_unhandled_total=3\n");
      expect(calls).toContain("containerpilot -putmetric nginx_connections_load=0.2500\n");
      // The sensor job succeeded (the first runs may fail until nginx answers).
      await waitFor(async () => (await jobs(socket)).find((j) => j.name === "sensor" && j.lastExit?.code === 0), { timeoutMs: 15_000, what: "the sensor job exited 0", detail: run.output });
      // -putmetric prints nothing on success, as ContainerPilot's did: the sensor's log carries no noise.
      expect(run.output()).not.toMatch(/"job":"sensor","stream":"stdout"/);
    } finally {
      await stop(run);
    }
  });

  it("autopilotpattern/hello-world hello: the app registers and its curl health check passes", async () => {
    const { run, calls: stubCalls } = runFixture("hello-world-hello.json5");
    try {
      expect((await passing("hello", run)).port).toBe(3001);
      expect(stubCalls()).toContain("node /opt/hello/index.js");
    } finally {
      await stop(run);
    }
  });

  it("autopilotpattern/hello-world nginx: preStart, then nginx registered and passing; a watch fires its onChange job, the other's does not run", async () => {
    const { run, socket, calls: stubCalls } = runFixture("hello-world-nginx.json5");
    try {
      expect((await passing("nginx", run)).port).toBe(80);
      expect(stubCalls().indexOf("reload-nginx.sh preStart\n")).toBeGreaterThanOrEqual(0);
      expect(stubCalls().indexOf("reload-nginx.sh preStart\n")).toBeLessThan(stubCalls().indexOf("nginx \n"));
      const before = stubCalls().split("reload-nginx.sh onChange").length;
      await consul.registerService({ id: "world-1", name: "world", port: 1, checks: [{ checkId: "service:world-1", ttl: "30s", status: "passing" }] });
      const job = await waitFor(async () => (await jobs(socket)).find((j) => j.name === "onchange-world" && j.lastExit), { timeoutMs: 30_000, what: "onchange-world ran", detail: run.output });
      expect(job.lastExit?.code).toBe(0);
      expect(stubCalls().split("reload-nginx.sh onChange").length).toBe(before + 1);
      expect((await jobs(socket)).find((j) => j.name === "onchange-goodbye")?.lastExit).toBeUndefined();
    } finally {
      await stop(run);
      await consul.deregisterService("world-1");
    }
  });

  it("ContainerPilot v2 services/backends, the Velocity 2016 example's shape (the app after --): preStart, registered, health passing, backends fire onChange", async () => {
    const { run, socket, calls: stubCalls } = runFixture("v2-hello-world-nginx.json5", ["--", "nginx"]);
    try {
      expect((await passing("nginx", run)).port).toBe(80);
      expect(stubCalls()).toContain("reload-nginx.sh preStart\n");
      await consul.registerService({ id: "hello-1", name: "hello", port: 1, checks: [{ checkId: "service:hello-1", ttl: "30s", status: "passing" }] });
      const job = await waitFor(async () => (await jobs(socket)).find((j) => j.name === "onChange-hello" && j.lastExit), { timeoutMs: 30_000, what: "onChange-hello ran", detail: run.output });
      expect(job.lastExit?.code).toBe(0);
    } finally {
      await stop(run);
      await consul.deregisterService("hello-1");
    }
  });

  it("autopilotpattern/consul: preStart, then the server registered on 8500 with its health passing; preStop (consul leave) on stopping", async () => {
    const { run, calls: stubCalls } = runFixture("consul.json5");
    try {
      expect((await passing("consul", run)).port).toBe(8500);
      const calls = stubCalls();
      expect(calls).toContain("consul-manage preStart\n");
      expect(calls).toContain("consul agent -server -bootstrap-expect 3 -config-dir=/etc/consul -ui-dir /ui\n");
      expect(calls.indexOf("consul-manage preStart\n")).toBeLessThan(calls.indexOf("consul agent"));
      expect(calls).toContain("consul-manage health\n");
      expect(calls).not.toContain("consul leave");
    } finally {
      await stop(run);
    }
    expect(stubCalls()).toContain("consul leave\n");
    await waitFor(async () => !(await consul.healthService("consul")).value.some((s) => s.id === "consul-n1"), { timeoutMs: 15_000, what: "consul-n1 deregistered at stop" });
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
