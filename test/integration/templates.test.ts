import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import mysql from "mysql2/promise";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createServer, type Server } from "node:http";
import { connect, type Cluster } from "../../src/index.js";
import { ConsulClient } from "../../src/discovery/consul/client.js";
import { cliPath, Lab, type LabFile } from "../../src/lab/cluster.js";
import { ManagedProcess } from "../../src/lab/process.js";
import { freePorts } from "../../src/lab/ports.js";
import { waitFor } from "../../src/lab/wait.js";
import { Writer } from "../../src/lab/workload.js";
import type { TemplateStatus } from "../../src/templates/templates.js";

/**
 * Templates with real software: a 3-node lab, and a separate statepilot (the real CLI) that renders
 * haproxy.cfg from the MySQL cluster (writes → primary, reads → replicas under a lag bound) and
 * reloads HAProxy (master-worker, SIGUSR2) on every change. HAProxy has no health check: the
 * rendered file is all it knows.
 */
const EXAMPLE = fileURLToPath(new URL("../../examples/templates/haproxy.cfg.liquid", import.meta.url));
const NGINX_EXAMPLE = fileURLToPath(new URL("../../examples/templates/nginx-upstreams.conf.liquid", import.meta.url));

let dir: string;
let lab: Lab;
let cluster: Cluster;
let proxy: ManagedProcess | undefined;
let ports: { write: number; read: number; telemetry: number; nginx: number };
let upstreams: string;
let source: string;
let destination: string;

const statusOf = async (name = "haproxy"): Promise<TemplateStatus> => {
  const r = await fetch(`http://127.0.0.1:${ports.telemetry}/status`);
  const body = (await r.json()) as { templates: TemplateStatus[] };
  return body.templates.find((t) => t.name === name)!;
};
const metricsText = async () => (await fetch(`http://127.0.0.1:${ports.telemetry}/metrics`)).text();
const rendered = () => (existsSync(destination) ? readFileSync(destination, "utf8") : "");
/** The server line of the write section, e.g. "mysql-1 127.0.44.1:3306". */
const writeTarget = (cfg: string) => /listen mysql-write\n[^\n]*\n\s*server (\S+ \S+)/.exec(cfg)?.[1];

/** @@server_id and @@read_only of the server HAProxy sends a new connection on `port` to. */
async function through(port: number): Promise<{ serverId: number; readOnly: boolean } | undefined> {
  const c = lab.file.credentials;
  const conn = await mysql.createConnection({ host: "127.0.0.1", port, user: c.user, password: c.password, database: c.database, connectTimeout: 1_000 });
  conn.on("error", () => undefined);
  try {
    const [rows] = await conn.query<mysql.RowDataPacket[]>("SELECT @@server_id AS id, @@read_only AS ro");
    return { serverId: Number(rows[0]!.id), readOnly: Number(rows[0]!.ro) === 1 };
  } finally {
    conn.destroy();
  }
}

beforeAll(async () => {
  process.on("exit", () => lab?.killAllNow());
  cliPath(); // the proxy runs the compiled CLI: fail early when the build is missing
  dir = mkdtempSync(join(tmpdir(), "statepilot-templates-"));
  lab = await Lab.up({ dir: join(dir, "lab"), nodes: 3, subnet: "127.0.44", lossless: true });
  await lab.waitConverged(120_000);
  await Writer.prepare(lab.file);
  cluster = connect({ configFile: lab.node("mysql-1").config });

  const [write, read, telemetry, nginx] = await freePorts(4);
  ports = { write: write!, read: read!, telemetry: telemetry!, nginx: nginx! };
  source = join(dir, "haproxy.cfg.liquid");
  copyFileSync(EXAMPLE, source);
  copyFileSync(NGINX_EXAMPLE, join(dir, "nginx-upstreams.conf.liquid"));
  destination = join(dir, "haproxy", "haproxy.cfg");
  const pidFile = join(dir, "haproxy.pid");
  // nginx: a fixed main config that includes the rendered upstreams.
  const ngx = join(dir, "nginx");
  mkdirSync(join(ngx, "tmp"), { recursive: true });
  upstreams = join(ngx, "upstreams.conf");
  const nginxPid = join(ngx, "nginx.pid");
  const nginxConf = join(ngx, "nginx.conf");
  writeFileSync(nginxConf, [
    ...(process.getuid?.() === 0 ? ["user root root;"] : []),
    "worker_processes 1;",
    `pid ${nginxPid};`,
    "error_log stderr warn;",
    "events { worker_connections 64; }",
    "http {",
    "  access_log off;",
    ...["client_body", "proxy", "fastcgi", "uwsgi", "scgi"].map((t) => `  ${t}_temp_path ${join(ngx, "tmp", t)};`),
    `  include ${upstreams};`,
    "}",
    "",
  ].join("\n"));
  const config = {
    node: "proxy",
    consul: { address: lab.file.consul },
    control: { socket: join(dir, "proxy.sock") },
    logging: { format: "json" },
    telemetry: { port: ports.telemetry, bind: "127.0.0.1", interfaces: "static:127.0.0.1", register: false },
    templates: [
      {
        name: "haproxy",
        source,
        destination,
        mode: "0640",
        mysql: { cluster: lab.file.cluster },
        // The first render happens before HAProxy runs: nothing to reload yet.
        // It also notes when it reloaded (ms since the epoch), for the latency measurement.
        command: ["sh", "-c", `[ -s ${pidFile} ] || exit 0; kill -USR2 "$(cat ${pidFile})" && date +%s%3N >> ${reloadLog()}`],
      },
      {
        name: "nginx",
        source: join(dir, "nginx-upstreams.conf.liquid"),
        destination: upstreams,
        command: ["sh", "-c", `[ -s ${nginxPid} ] || exit 0; kill -HUP "$(cat ${nginxPid})"`],
      },
    ],
    jobs: [
      {
        name: "nginx",
        exec: ["sh", "-c", `until [ -s ${upstreams} ]; do sleep 0.05; done; exec nginx -e stderr -p ${ngx} -c ${nginxConf} -g "daemon off;"`],
        restarts: "unlimited",
        stopTimeout: "5s",
      },
      {
        name: "haproxy",
        exec: ["sh", "-c", `until [ -s ${destination} ]; do sleep 0.05; done; exec haproxy -W -db -f ${destination} -p ${pidFile}`],
        restarts: "unlimited",
        stopTimeout: "5s",
      },
    ],
  };
  const configPath = join(dir, "proxy.json");
  writeFileSync(configPath, JSON.stringify(config, null, 2));
  proxy = await ManagedProcess.start("statepilot@proxy", process.execPath, [cliPath(), "run", "--config", configPath], {
    env: { ...process.env, NGINX_BIND: "127.0.0.1", NGINX_PORT: String(ports.nginx), PROXY_BIND: "127.0.0.1", WRITE_PORT: String(ports.write), READ_PORT: String(ports.read), MAX_LAG: "5" },
    cwd: dir,
    logFile: join(dir, "proxy.log"),
    persistent: false,
  });
}, 240_000);

afterAll(async () => {
  try {
    await proxy?.stop("SIGTERM", 10_000);
    cluster?.close();
    await lab?.down();
  } finally {
    if (dir && process.env.STATEPILOT_KEEP_LABS !== "1") rmSync(dir, { recursive: true, force: true });
  }
}, 120_000);

const proxyLog = () => proxy?.logTail(30) ?? "";
const reloadLog = () => join(dir, "reloads.log");
/** When the template's command sent HAProxy SIGUSR2 (ms since the epoch). */
const reloadTimes = () => (existsSync(reloadLog()) ? readFileSync(reloadLog(), "utf8").split("\n").filter(Boolean).map(Number) : []);
/** HAProxy's master logs each SIGUSR2 reload (its output goes to statepilot's). */
const reloads = () => (readFileSync(join(dir, "proxy.log"), "utf8").match(/Reloading HAProxy/g) ?? []).length;

describe("HAProxy rendered from the MySQL cluster", () => {
  it("writes reach the primary and reads a replica, through the rendered config", async () => {
    const v = await cluster.view();
    const primary = v.members.find((m) => m.node === v.primary!.node)!;
    await waitFor(async () => writeTarget(rendered()) === `${primary.node} ${primary.host}:${primary.port}`, { timeoutMs: 30_000, what: "haproxy.cfg naming the primary", detail: proxyLog });
    const cfg = rendered();
    for (const m of v.members.filter((x) => x.node !== primary.node)) expect(cfg).toContain(`server ${m.node} ${m.host}:${m.port}`);
    expect(readFileSync(destination).length).toBeGreaterThan(0);
    const w = await waitFor(() => through(ports.write), { timeoutMs: 30_000, what: "HAProxy's write port to answer", detail: proxyLog });
    expect(w).toEqual({ serverId: primary.serverId, readOnly: false });
    const r = await waitFor(() => through(ports.read), { timeoutMs: 10_000, what: "HAProxy's read port to answer" });
    expect(r.readOnly).toBe(true);
    expect(r.serverId).not.toBe(primary.serverId);
    const st = await statusOf();
    expect(st).toMatchObject({ name: "haproxy", ok: true });
    expect(st.lastError).toBeUndefined();
    expect(st.dependencies).toEqual([`mysql(${lab.file.cluster})`]);
  });

  it("kill -9 of the primary node: re-rendered and reloaded within 1 s of the new primary, no acknowledged write lost", async () => {
    // The writer knows one endpoint only: HAProxy's write port.
    const viaProxy: LabFile = { ...lab.file, nodes: [{ name: "haproxy", mysql: { host: "127.0.0.1", port: ports.write }, http: "", pids: { statepilot: null, mysqld: null }, config: "", dir }] };
    const writer = new Writer(viaProxy, "writes", 5);
    const old = (await cluster.view()).primary!;
    const ac = new AbortController();
    const primaries: Array<{ at: number; node: string | undefined }> = [];
    const watching = (async () => {
      for await (const v of cluster.watch({ signal: ac.signal, pollMs: 100 })) primaries.push({ at: Date.now(), node: v.primary?.node });
    })().catch(() => undefined);
    let fileChange: { at: number; target: string } | undefined;
    const polling = (async () => {
      while (!ac.signal.aborted && !fileChange) {
        const t = writeTarget(rendered());
        if (t && !t.startsWith(`${old.node} `)) fileChange = { at: Date.now(), target: t };
        await new Promise((r) => setTimeout(r, 5));
      }
    })();
    writer.start();
    try {
      await waitFor(async () => writer.acked.length > 50, { timeoutMs: 20_000, what: "writes through HAProxy before the fault", detail: () => writer.lastError });
      const reloadsBefore = reloads();
      const killedAt = Date.now();
      await lab.kill(old.node);
      const promoted = await waitFor(async () => primaries.find((p) => p.node !== undefined && p.node !== old.node), { timeoutMs: 60_000, what: "a new primary in the cluster view" });
      await waitFor(async () => fileChange, { timeoutMs: 10_000, what: "haproxy.cfg naming the new primary", detail: proxyLog });
      const nextView = await cluster.view();
      const next = nextView.members.find((m) => m.node === promoted.node)!;
      /** The new primary's own record of its promotion (same host clock). */
      const recordedAt = Date.parse(nextView.primary?.promotedAt ?? "");
      expect(fileChange!.target).toBe(`${next.node} ${next.host}:${next.port}`);
      // The reload that followed the write naming the new primary (the previous one, for the
      // leaderless render when the old primary's session expired, came seconds earlier).
      const reloadedAt = await waitFor(async () => reloadTimes().find((t) => t >= fileChange!.at - 100), { timeoutMs: 10_000, what: "the reload command after the re-render", detail: proxyLog });
      expect((await statusOf()).lastCommand?.ok).toBe(true);
      await waitFor(async () => reloads() > reloadsBefore, { timeoutMs: 10_000, what: "HAProxy to log its reload", detail: proxyLog });
      const served = await waitFor(async () => ((await through(ports.write).catch(() => undefined))?.serverId === next.serverId ? Date.now() : undefined), { timeoutMs: 10_000, what: "HAProxy sending writes to the new primary" });
      const after = writer.acked.length;
      await waitFor(async () => writer.acked.length > after + 20, { timeoutMs: 20_000, what: "writes through HAProxy on the new primary", detail: () => writer.lastError });
      // Both from the same host clock: the test's 5 ms poll of the file, the command's own note.
      const renderMs = fileChange!.at - promoted.at;
      const reloadMs = reloadedAt - promoted.at;
      const longest = Math.max(...writer.outages.map((o) => (o.recoveredAt ?? Date.now()) - o.failedAt));
      console.log(
        `templates failover: ${old.node} killed; ${next.node} primary in the view ${promoted.at - killedAt} ms after the kill; ` +
          `haproxy.cfg re-rendered ${renderMs} ms (${fileChange!.at - recordedAt} ms after the leader record's promotedAt) and HAProxy reloaded (SIGUSR2 sent) ${reloadMs} ms after that; ` +
          `a new connection through HAProxy reached ${next.node} ${served - promoted.at} ms after it; ` +
          `writer's longest outage ${longest} ms (${writer.outages.length} outage(s), ${writer.acked.length} writes acknowledged)`,
      );
      expect(renderMs).toBeLessThan(1_000);
      expect(reloadMs).toBeLessThan(1_000);
    } finally {
      ac.abort();
      await writer.stop();
      await watching;
      await polling;
    }
    const p = (await cluster.view()).primary!;
    expect(await writer.missingOn(p.host, p.port)).toEqual([]);
    // The killed node comes back as a replica, and the read section follows.
    await lab.start(old.node);
    await waitFor(async () => rendered().includes(`server ${old.node} `), { timeoutMs: 120_000, what: `${old.node} back in the read section`, detail: proxyLog });
  });
});

describe("template errors", () => {
  const errorsOf = async () => Number(/statepilot_template_render_errors_total\{template="haproxy"\} (\d+)/.exec(await metricsText())?.[1] ?? 0);

  it("bad syntax or a missing key keeps the last good file and shows in /status and metrics; fixing the template recovers without a restart", async () => {
    const good = readFileSync(source, "utf8");
    const lastGood = rendered();
    const before = await errorsOf();

    writeFileSync(source, `${good}\n{% if mysql.primary %}unclosed\n`);
    const broken = await waitFor(async () => {
      const st = await statusOf();
      return st.ok === false && st.lastError ? st : undefined;
    }, { timeoutMs: 10_000, what: "the syntax error in /status" });
    expect(broken.lastError!.message).toMatch(/not closed|unclosed|tag/i);
    await waitFor(async () => (await errorsOf()) > before, { timeoutMs: 5_000, what: "the error metric" });
    expect(rendered()).toBe(lastGood);

    writeFileSync(source, `${good}# {{ key["statepilot-test/absent"] }}\n`);
    const missing = await waitFor(async () => {
      const st = await statusOf();
      return st.lastError?.message.includes("statepilot-test/absent") ? st : undefined;
    }, { timeoutMs: 10_000, what: "the missing key in /status" });
    expect(missing.ok).toBe(false);
    expect(missing.lastError!.message).toMatch(/does not exist/);
    expect(rendered()).toBe(lastGood);

    writeFileSync(source, `${good}# fixed\n`);
    const fixed = await waitFor(async () => {
      const st = await statusOf();
      return st.ok && !st.lastError ? st : undefined;
    }, { timeoutMs: 10_000, what: "the template to render again" });
    expect(rendered()).toBe(`${lastGood}# fixed\n`);
    expect(fixed.lastCommand?.ok).toBe(true);
    expect(await metricsText()).toMatch(/statepilot_template_last_render_timestamp_seconds\{template="haproxy"\} \d/);
    // The key the broken template asked for is no longer watched.
    expect(fixed.dependencies).toEqual([`mysql(${lab.file.cluster})`]);
    await waitFor(async () => (await through(ports.write).catch(() => undefined))?.readOnly === false, { timeoutMs: 10_000, what: "HAProxy to serve writes after the reload" });
  });
});

describe("nginx upstreams rendered from a service's healthy instances", () => {
  it("an instance turning critical leaves the upstreams and nginx stops sending it requests", async () => {
    const consul = new ConsulClient({ address: lab.file.consul });
    const servers: Server[] = [];
    try {
      const backends: Array<{ name: string; port: number }> = [];
      for (const name of ["a", "b"]) {
        const srv = createServer((_req, res) => res.end(name));
        await new Promise<void>((r) => srv.listen(0, "127.0.0.1", () => r()));
        servers.push(srv);
        const addr = srv.address();
        backends.push({ name, port: typeof addr === "object" && addr ? addr.port : 0 });
      }
      for (const b of backends) {
        await consul.registerService({ id: `web-${b.name}`, name: "web", address: "127.0.0.1", port: b.port, tags: [b.name], checks: [{ checkId: `web-${b.name}-ttl`, ttl: "10m", status: "passing" }] });
      }
      const get = async () => (await fetch(`http://127.0.0.1:${ports.nginx}/`)).text();
      await waitFor(async () => backends.every((b) => readFileSync(upstreams, "utf8").includes(`127.0.0.1:${b.port};`)), { timeoutMs: 15_000, what: "both instances in the upstreams", detail: proxyLog });
      const seen = new Set<string>();
      await waitFor(async () => {
        seen.add(await get());
        return seen.size === 2;
      }, { timeoutMs: 15_000, what: "nginx answering from both instances", detail: proxyLog });

      const changedAt = Date.now();
      await consul.updateTtlCheck("web-b-ttl", "critical", "test: b is down");
      await waitFor(async () => !readFileSync(upstreams, "utf8").includes(`127.0.0.1:${backends[1]!.port};`), { timeoutMs: 10_000, what: "b out of the upstreams" });
      const renderedMs = Date.now() - changedAt;
      const st = await waitFor(async () => {
        const t = await statusOf("nginx");
        return t.lastCommand && Date.parse(t.lastCommand.at) >= changedAt ? t : undefined;
      }, { timeoutMs: 10_000, what: "nginx's reload" });
      expect(st.lastCommand!.ok).toBe(true);
      expect(st.dependencies).toEqual(["service(web)"]);
      // Old workers finish what they serve; new connections go to the new workers only.
      await waitFor(async () => {
        const answers = await Promise.all(Array.from({ length: 10 }, () => get()));
        return answers.every((a) => a === "a");
      }, { timeoutMs: 10_000, what: "every request answered by a" });
      console.log(`templates nginx: b critical → upstreams re-rendered within ${renderedMs} ms (test's view), nginx reloaded`);
    } finally {
      for (const id of ["web-a", "web-b"]) await consul.deregisterService(id).catch(() => undefined);
      consul.close();
      for (const srv of servers) srv.close();
    }
  });
});
