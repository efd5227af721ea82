/**
 * `npm run test:containers`: the images and the compose stack, built and run for real.
 *
 * 1. A container engine: the running one, or Debian's docker.io installed and dockerd started here
 *    (and stopped at the end, host settings restored: engine.ts).
 * 2. Images with no registry: the Debian base (pulled, or debootstrap + docker import:
 *    base-image.sh), Consul/MinIO/mc/Prometheus from the binaries scripts/install.sh builds, and
 *    statepilot/mariadb from images/mariadb/Dockerfile. The compose v2 CLI and mc are built from
 *    the Go module proxy once (go-tool.sh) and cached in ~/.cache/statepilot/bin.
 * 3. compose/docker-compose.yml + compose/docker-compose.local.yml + test/containers/compose.test.yml,
 *    `up --scale mysql=3`, then faults with a writer and a read-only sampler running the whole time:
 *    kill, stop, pause/unpause and network disconnect of the primary, a Consul restart, a rolling
 *    restart of every mysql container, --scale mysql=4 restoring the newest snapshot from MinIO, and
 *    a copy of the cluster as it was at a second T started next to it from the snapshots and binlog
 *    archive in MinIO (restore-copy.ts).
 *
 * Every container, network and volume is the compose project's (label statepilot.test=containers,
 * project STATEPILOT_CONTAINERS_PROJECT, default statepilot-ct); leftovers of a killed run are
 * removed at start, and everything is removed at the end, on SIGINT/SIGTERM too. Traffic goes only
 * to the containers on the project's own network. The closing line is
 * `containers: scenarios=N passed=N lost=0 split_brain_samples=0`; any failure exits 1.
 */
import { randomBytes } from "node:crypto";
import { existsSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { waitFor } from "../../src/lab/wait.js";
import { ensureEngine, type Engine } from "./engine.js";
import { docker, killActive, type RunOptions, run } from "./run.js";
import { restoreCopy } from "./restore-copy.js";
import { type Credentials, type Endpoint, ReadOnlySampler, Writer } from "./workload.js";

function findRoot(): string {
  let d = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const p = join(d, "package.json");
    if (existsSync(p) && (JSON.parse(readFileSync(p, "utf8")) as { name?: string }).name === "statepilot" && existsSync(join(d, "compose"))) return d;
    const up = dirname(d);
    if (up === d) throw new Error("cannot find the statepilot repository root");
    d = up;
  }
}

const ROOT = findRoot();
const PROJECT = process.env.STATEPILOT_CONTAINERS_PROJECT ?? "statepilot-ct";
const NETWORK = `${PROJECT}_default`;
const CACHE = process.env.STATEPILOT_CACHE ?? join(homedir(), ".cache", "statepilot");
const BIN = join(CACHE, "bin");
const BASE_IMAGE = process.env.STATEPILOT_DEBIAN_IMAGE ?? "debian:bookworm-slim";
const TAG = "containers-test";
const COMPOSE_VERSION = "v2.40.3";
const MC_VERSION = "v0.0.0-20250313080218-cf909e1063a9";
const LABEL = "statepilot.test=containers";
const FIRST_PRIMARY_BUDGET_MS = 60_000;

const t00 = Date.now();
const secs = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
const log = (m: string) => console.log(`containers: [${secs(Date.now() - t00).padStart(7)}] ${m}`);

// ---------------------------------------------------------------- tools and images

async function ensureBinary(name: string, install: () => Promise<unknown>): Promise<string> {
  const p = join(BIN, name);
  if (!existsSync(p)) await install();
  if (!existsSync(p)) throw new Error(`${p} is missing after its install`);
  return p;
}

const goTool = (name: string, module: string, version: string, pkg: string) => () =>
  run("bash", [join(ROOT, "test/containers/go-tool.sh"), name, module, version, pkg], { inherit: true, timeoutMs: 1_800_000 });
const installPart = (part: string) => () => run("bash", [join(ROOT, "scripts/install.sh"), part], { inherit: true, timeoutMs: 1_800_000 });

/** The version part of a cached binary's name (consul -> consul-1.22.0 -> 1.22.0). */
function binVersion(name: string): string {
  const target = readlinkSync(join(BIN, name));
  return basename(target).slice(name.length + 1) || "latest";
}

async function imageExists(ref: string): Promise<boolean> {
  return (await docker(["image", "inspect", ref], { allowFail: true })).code === 0;
}

/** statepilot-local/NAME:VERSION from the cached binaries (built once per version). */
async function localImage(name: "consul" | "minio" | "mc" | "prometheus"): Promise<string> {
  const version = name === "minio" ? `${binVersion("minio")}-mc${binVersion("mc").slice(-12)}` : binVersion(name);
  const ref = `statepilot-local/${name}:${version}`;
  if (await imageExists(ref)) return ref;
  const ctx = mkdtempSync(join(tmpdir(), `statepilot-${name}-ctx-`));
  try {
    await run("mkdir", ["-p", join(ctx, "bin")]);
    for (const b of name === "minio" ? ["minio", "mc"] : [name]) await run("cp", ["-L", join(BIN, b), join(ctx, "bin", b)]);
    const t = Date.now();
    await docker(["build", "-q", "--build-arg", `DEBIAN_IMAGE=${BASE_IMAGE}`, "-f", join(ROOT, `test/containers/images/${name}.Dockerfile`), "-t", ref, ctx], { timeoutMs: 600_000 });
    log(`built ${ref} in ${secs(Date.now() - t)}`);
  } finally {
    rmSync(ctx, { recursive: true, force: true });
  }
  return ref;
}

/** PEM text of the host's extra CA certificates (a TLS-intercepting proxy's), for the build stage only. */
function extraCaCerts(): string {
  const from = process.env.STATEPILOT_EXTRA_CA_CERTS ?? "/usr/local/share/ca-certificates";
  if (!existsSync(from)) return "";
  if (statSync(from).isFile()) return readFileSync(from, "utf8");
  // ca-certificates' convention: *.crt files, possibly in subdirectories.
  const files = readdirSync(from, { recursive: true, encoding: "utf8" })
    .map((f) => join(from, f))
    .filter((f) => f.endsWith(".crt") && statSync(f).isFile())
    .sort();
  return files.map((f) => readFileSync(f, "utf8").trim()).join("\n");
}

// ---------------------------------------------------------------- the stack

interface Stack {
  composeBin: string;
  envFile: string;
  creds: Credentials;
}
let stack: Stack | undefined;
let envDir: string | undefined;

function composeArgs(s: Pick<Stack, "envFile">, args: string[]): string[] {
  return [
    "--project-name", PROJECT,
    "--project-directory", join(ROOT, "compose"),
    "--env-file", s.envFile,
    "-f", join(ROOT, "compose/docker-compose.yml"),
    "-f", join(ROOT, "compose/docker-compose.local.yml"),
    "-f", join(ROOT, "test/containers/compose.test.yml"),
    ...args,
  ];
}

async function compose(args: string[], opts: RunOptions = {}) {
  if (!stack) throw new Error("no stack");
  console.log(`+ docker compose ${args.join(" ")}`);
  return run(stack.composeBin, composeArgs(stack, args), { cwd: ROOT, timeoutMs: 300_000, ...opts });
}

interface Node {
  name: string;
  hostname: string;
  ip: string;
  running: boolean;
  paused: boolean;
  health: string;
}

async function containersOf(service?: string): Promise<string[]> {
  const f = ["ps", "-aq", "--filter", `label=com.docker.compose.project=${PROJECT}`];
  if (service) f.push("--filter", `label=com.docker.compose.service=${service}`);
  return (await docker(f)).stdout.split("\n").filter(Boolean);
}

async function inspectNodes(ids: string[]): Promise<Node[]> {
  if (ids.length === 0) return [];
  const fmt = `{{.Name}}|{{.Config.Hostname}}|{{with index .NetworkSettings.Networks "${NETWORK}"}}{{.IPAddress}}{{end}}|{{.State.Running}}|{{.State.Paused}}|{{if .State.Health}}{{.State.Health.Status}}{{end}}`;
  const r = await docker(["inspect", "-f", fmt, ...ids], { allowFail: true });
  return r.stdout
    .split("\n")
    .filter(Boolean)
    .map((l) => {
      const [name = "", hostname = "", ip = "", running = "", paused = "", health = ""] = l.split("|");
      return { name: name.replace(/^\//, ""), hostname, ip, running: running === "true", paused: paused === "true", health };
    })
    .sort((a, b) => a.name.localeCompare(b.name, undefined, { numeric: true }));
}

const mysqlNodes = async () => inspectNodes(await containersOf("mysql"));
async function serviceIp(service: string): Promise<string> {
  const [n] = await inspectNodes(await containersOf(service));
  if (!n?.ip) throw new Error(`${service} has no address on ${NETWORK}`);
  return n.ip;
}

/** The endpoints the writer and sampler use, refreshed every second from the engine. */
let endpoints: Endpoint[] = [];
let refreshing = false;
async function refreshLoop(): Promise<void> {
  refreshing = true;
  while (refreshing) {
    try {
      endpoints = (await mysqlNodes()).filter((n) => n.running && n.ip).map((n) => ({ name: n.name, host: n.ip }));
    } catch {
      // engine busy: keep the last list
    }
    await sleep(1_000);
  }
}

async function httpJson<T>(url: string, timeoutMs = 3_000): Promise<T> {
  const r = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
  return (await r.json()) as T;
}

interface Member {
  node: string;
  host: string;
  role: string;
  up: boolean;
  source: string;
  sqlError: string;
  blocked: string;
  executed: string;
}
interface ClusterStatus {
  primary?: { node: string; host: string; term: number };
  members: Member[];
}

/** `statepilot mysql status --json`, run inside a running mysql container. */
async function clusterStatus(prefer?: string): Promise<ClusterStatus> {
  const nodes = (await mysqlNodes()).filter((n) => n.running && !n.paused);
  nodes.sort((a, b) => (a.name === prefer ? -1 : b.name === prefer ? 1 : 0));
  let last = "no running mysql container";
  for (const n of nodes) {
    const r = await docker(["exec", n.name, "statepilot", "mysql", "status", "--json"], { allowFail: true, timeoutMs: 20_000 });
    if (r.code === 0) return JSON.parse(r.stdout) as ClusterStatus;
    last = `${n.name}: ${r.stderr.trim().split("\n").pop()}`;
  }
  throw new Error(`statepilot mysql status: ${last}`);
}

async function consulService(name: string): Promise<string[]> {
  const ip = await serviceIp("consul");
  const entries = await httpJson<Array<{ Service: { Address: string } }>>(`http://${ip}:8500/v1/health/service/${name}?passing=1`);
  return entries.map((e) => e.Service.Address);
}
const consulPrimary = () => consulService("mysql-primary");

let sampler: ReadOnlySampler | undefined;
let writer: Writer | undefined;

/**
 * waitFor whose probe says why it is not done yet: `notYet(why)` returns undefined and keeps the
 * reason for the timeout's message.
 */
function waitExplained<T>(probe: (notYet: (why: string) => undefined) => Promise<T | undefined>, opts: { timeoutMs: number; intervalMs: number; what: string }): Promise<T> {
  let why = "";
  const notYet = (w: string): undefined => {
    why = w;
    return undefined;
  };
  return waitFor(() => probe(notYet), { ...opts, detail: () => why });
}

/**
 * The cluster is steady: `count` mysql containers running, exactly one writable (read_only=0) and
 * the others read-only replicas of it with replication running, and Consul's mysql-primary is
 * that node. Returns the primary's container.
 */
async function steady(count: number, timeoutMs = 120_000): Promise<Node> {
  return waitExplained(
    async (notYet) => {
      const nodes = (await mysqlNodes()).filter((n) => n.running && !n.paused && n.ip);
      if (nodes.length !== count) return notYet(`${nodes.length}/${count} mysql containers running`);
      const ro = sampler?.last ?? new Map();
      const writable = nodes.filter((n) => ro.get(n.name) === false);
      const readOnly = nodes.filter((n) => ro.get(n.name) === true);
      if (writable.length !== 1 || readOnly.length !== count - 1) return notYet(`read_only: ${nodes.map((n) => `${n.name}=${ro.get(n.name)}`).join(" ")}`);
      const primary = writable[0] as Node;
      const st = await clusterStatus(primary.name);
      if (st.primary?.node !== primary.hostname) return notYet(`status names ${st.primary?.node} primary, ${primary.name} (${primary.hostname}) is writable`);
      for (const n of readOnly) {
        const m = st.members.find((x) => x.node === n.hostname);
        if (m?.role !== "replica" || !m || !m.up || m.source !== primary.hostname || m.sqlError) return notYet(`${n.name}: ${JSON.stringify(m ?? "not a member")}`);
      }
      const cp = await consulPrimary();
      if (cp.length !== 1 || cp[0] !== primary.ip) return notYet(`Consul mysql-primary: ${cp.join(",") || "none"} (primary ${primary.ip})`);
      return primary;
    },
    { timeoutMs, intervalMs: 250, what: `a steady cluster of ${count}` },
  );
}

const endpointOf = (n: Node): Endpoint => ({ name: n.name, host: n.ip });

async function lostOn(n: Node): Promise<number> {
  if (!writer) return 0;
  // The primary has every acknowledged write at once; a replica may still be catching up.
  return waitFor(async () => ((await writer?.missingOn(endpointOf(n)))?.length === 0 ? 0 : undefined), { timeoutMs: 30_000, intervalMs: 500, what: `every acknowledged write on ${n.name}` }).catch(
    async () => (await writer?.missingOn(endpointOf(n)))?.length ?? 0,
  );
}

/**
 * The old node's fate after it comes back: a replica of the current primary, or reported diverged.
 * The current primary, not the first one after the fault: a second failover may follow the first
 * (a primary that cannot confirm its lease in time fences itself), and that is no failure.
 */
async function rejoined(old: Node, primary: Node, timeoutMs = 180_000): Promise<"replica" | "diverged"> {
  return waitExplained(
    async (notYet) => {
      const n = (await mysqlNodes()).find((x) => x.name === old.name);
      if (!n?.running || !n.ip) return notYet(`${old.name} not running`);
      const st = await clusterStatus(primary.name);
      const m = st.members.find((x) => x.node === old.hostname);
      if (m?.blocked) return "diverged" as const;
      const current = st.primary?.node;
      if (!current || current === old.hostname) return notYet(`primary is ${current ?? "none"}`);
      if (m && m.role === "replica" && m.up && m.source === current && !m.sqlError && sampler?.last.get(n.name) === true) return "replica" as const;
      return notYet(JSON.stringify(m ?? "not a member"));
    },
    { timeoutMs, intervalMs: 500, what: `${old.name} back as a replica or reported diverged` },
  );
}

// ---------------------------------------------------------------- scenarios

interface Result {
  name: string;
  ok: boolean;
  figure: string;
  error?: string;
  lost: number;
  splitBrain: number;
}
const results: Result[] = [];
const figures: Record<string, string> = {};

async function scenario(name: string, fn: () => Promise<{ figure: string; lost: number }>): Promise<void> {
  const before = sampler?.violations.length ?? 0;
  log(`--- ${name}`);
  try {
    const { figure, lost } = await fn();
    const splitBrain = (sampler?.violations.length ?? 0) - before;
    const ok = lost === 0 && splitBrain === 0;
    results.push({ name, ok, figure, lost, splitBrain });
    log(`${ok ? "PASS" : "FAIL"} ${name}: ${figure}; lost=${lost} split_brain_samples=${splitBrain}`);
  } catch (err) {
    const splitBrain = (sampler?.violations.length ?? 0) - before;
    const error = err instanceof Error ? err.message : String(err);
    results.push({ name, ok: false, figure: "", error, lost: 0, splitBrain });
    log(`FAIL ${name}: ${error}`);
  }
}

/**
 * A fault on the primary: applied, then a write accepted on another node is awaited (time to new
 * primary from the fault, write-unavailable from the first failed write), Consul must name the new
 * primary, then the fault is healed and the old node must come back as a replica or be reported
 * diverged (then it is rebuilt: removed with its volume and replaced, restoring a snapshot).
 */
async function failover(
  name: string,
  fault: (old: Node) => Promise<unknown>,
  heal: (old: Node) => Promise<unknown>,
): Promise<{ figure: string; lost: number }> {
  if (!writer) throw new Error("no writer");
  const old = await steady(3);
  const t0 = Date.now();
  const faulting = fault(old);
  faulting.catch(() => undefined);
  const outage = await writer.waitForWriteElsewhere(old.name, t0, 120_000);
  const recovered = outage.recoveredAt ?? Date.now();
  const nodes = await mysqlNodes();
  const primary = nodes.find((n) => n.name === outage.node);
  if (!primary) throw new Error(`the new primary ${outage.node} is not a mysql container`);
  await waitFor(async () => (await consulPrimary()).join(",") === primary.ip, { timeoutMs: 60_000, intervalMs: 250, what: `Consul mysql-primary = ${primary.name}` });
  await faulting;
  const lost = await lostOn(primary);
  await heal(old);
  const fate = await rejoined(old, primary);
  if (fate === "diverged") {
    log(`${old.name} reported diverged: rebuilding it (a fresh container restores the newest snapshot)`);
    await docker(["rm", "-f", "-v", old.name]);
    await compose(["up", "-d", "--no-deps", "--no-recreate", "--scale", "mysql=3", "mysql"]);
  }
  await steady(3, 240_000);
  const lastAck = writer.lastAckBefore(t0) ?? t0;
  const figure = `new primary ${primary.name} ${recovered - t0} ms after the fault, write-unavailable ${recovered - lastAck} ms (last write acknowledged before the fault to first after), old node ${fate}`;
  figures[name] = figure;
  return { figure, lost };
}

async function scenarioUp(): Promise<{ figure: string; lost: number }> {
  const t0 = Date.now();
  await compose(["up", "-d", "--scale", "mysql=3", "consul", "minio", "minio-bucket", "mysql", "prometheus"]);
  const upMs = Date.now() - t0;
  const firstWritable = await waitFor(async () => ([...(sampler?.last.values() ?? [])].some((v) => v === false) ? Date.now() : undefined), {
    timeoutMs: FIRST_PRIMARY_BUDGET_MS,
    intervalMs: 50,
    what: "a writable node",
  });
  const primary = await steady(3, Math.max(1_000, t0 + FIRST_PRIMARY_BUDGET_MS - Date.now()));
  const steadyMs = Date.now() - t0;
  const cp = await consulPrimary();
  if (cp[0] !== primary.ip) throw new Error(`Consul mysql-primary ${cp} is not ${primary.ip}`);
  // Prometheus finds every node through Consul SD (statepilot registers service "statepilot").
  const prom = await serviceIp("prometheus");
  const ips = (await mysqlNodes()).map((n) => n.ip);
  let why = "";
  await waitFor(
    async () => {
      const t = await httpJson<{ data: { activeTargets: Array<{ scrapeUrl: string; health: string; labels: Record<string, string> }> } }>(`http://${prom}:9090/api/v1/targets?state=active`);
      const up = t.data.activeTargets.filter((x) => x.labels.job === "statepilot" && x.health === "up").map((x) => new URL(x.scrapeUrl).hostname);
      why = `targets up: ${up.join(", ") || "none"}`;
      return ips.every((ip) => up.includes(ip)) || undefined;
    },
    { timeoutMs: 60_000, intervalMs: 1_000, what: "Prometheus scraping every mysql node through Consul SD", detail: () => why },
  );
  await writer?.prepare(endpointOf(primary));
  writer?.start();
  const figure = `compose up ${upMs} ms, first primary ${firstWritable - t0} ms, one primary + two replicas ${steadyMs} ms, mysql-primary in Consul, Prometheus ${why}`;
  figures.up = figure;
  return { figure, lost: 0 };
}

async function scenarioConsulRestart(): Promise<{ figure: string; lost: number }> {
  const before = await steady(3);
  const t0 = Date.now();
  const [consul] = await containersOf("consul");
  await docker(["restart", "-t", "10", consul ?? "consul"]);
  const after = await steady(3, 180_000);
  const t1 = Date.now();
  await sleep(0);
  const lost = await lostOn(after);
  const g = writer?.gaps(t0, t1);
  const figure = `Consul back and cluster steady after ${t1 - t0} ms, primary ${after.name === before.name ? `kept (${after.name})` : `moved from ${before.name} to ${after.name}`}, write-unavailable ${g?.totalMs ?? 0} ms (longest gap ${g?.longestMs ?? 0} ms)`;
  figures.consul = figure;
  return { figure, lost };
}

async function scenarioRolling(): Promise<{ figure: string; lost: number }> {
  const primary = await steady(3);
  const order = [...(await mysqlNodes()).filter((n) => n.name !== primary.name), primary];
  const t0 = Date.now();
  const each: string[] = [];
  for (const n of order) {
    const t = Date.now();
    await docker(["restart", "-t", "100", n.name], { timeoutMs: 200_000 });
    await steady(3, 180_000);
    each.push(`${n.name}${n.name === primary.name ? " (primary)" : ""} ${Date.now() - t} ms`);
  }
  const t1 = Date.now();
  const now = await steady(3);
  const lost = await lostOn(now);
  const g = writer?.gaps(t0, t1);
  const figure = `${order.length} containers restarted in turn (replicas first) in ${t1 - t0} ms [${each.join(", ")}], write-unavailable ${g?.totalMs ?? 0} ms in total (${g?.count ?? 0} gaps over 250 ms, longest ${g?.longestMs ?? 0} ms)`;
  figures.rolling = figure;
  return { figure, lost };
}

async function scenarioScaleOut(): Promise<{ figure: string; lost: number }> {
  const primary = await steady(3);
  const t0 = Date.now();
  const snap = await docker(["exec", primary.name, "statepilot", "snapshot", "create", "--timeout", "10m"], { timeoutMs: 700_000 });
  const snapMs = Date.now() - t0;
  log(`snapshot taken in ${snapMs} ms: ${snap.stdout.trim().split("\n").pop()}`);
  const before = new Set((await mysqlNodes()).map((n) => n.name));
  const t1 = Date.now();
  await compose(["up", "-d", "--no-deps", "--no-recreate", "--scale", "mysql=4", "mysql"]);
  const added = (await mysqlNodes()).find((n) => !before.has(n.name));
  if (!added) throw new Error("no new mysql container after --scale mysql=4");
  await steady(4, 300_000);
  const t2 = Date.now();
  const logs = await docker(["logs", added.name], { allowFail: true });
  const done = (logs.stdout + logs.stderr).split("\n").find((l) => l.includes('"restore done"'));
  if (!done) throw new Error(`${added.name} joined without restoring a snapshot (no "restore done" in its log)`);
  const restore = JSON.parse(done) as { durationMs?: number; bytes?: number; id?: string };
  const n = (await mysqlNodes()).find((x) => x.name === added.name) ?? added;
  const lost = await lostOn(n);
  const figure = `snapshot to MinIO ${snapMs} ms; ${added.name} restored it (${restore.bytes ?? "?"} bytes in ${restore.durationMs ?? "?"} ms) and was a caught-up replica ${t2 - t1} ms after scale-up`;
  figures.scale = figure;
  return { figure, lost };
}

async function scenarioRestoreCopy(): Promise<{ figure: string; lost: number }> {
  if (!writer || !stack) throw new Error("no writer");
  const primary = await steady(4);
  const { figure, lost } = await restoreCopy({
    primary,
    creds: stack.creds,
    writer,
    table: writer.table,
    compose,
    exec: (c, args) => docker(["exec", c, ...args], { allowFail: true, timeoutMs: 120_000 }),
    containers: async (service) => inspectNodes(await containersOf(service)),
    consulService,
    remove: (names) => docker(["rm", "-f", "-v", ...names], { allowFail: true, timeoutMs: 120_000 }),
    logs: async (c) => {
      const r = await docker(["logs", c], { allowFail: true });
      return r.stdout + r.stderr;
    },
    log,
  });
  await steady(4);
  figures.restore = figure;
  return { figure, lost };
}

// ---------------------------------------------------------------- cleanup

async function removeProject(): Promise<void> {
  const ids = [...new Set([...(await containersOf()), ...(await docker(["ps", "-aq", "--filter", `label=${LABEL}`])).stdout.split("\n").filter(Boolean)])];
  for (const n of await inspectNodes(ids)) if (n.paused) await docker(["unpause", n.name], { allowFail: true });
  // rm -v takes each container's anonymous volumes (the mysql datadirs) with it.
  if (ids.length) await docker(["rm", "-f", "-v", ...ids], { allowFail: true, timeoutMs: 120_000 });
  for (const kind of ["network", "volume"] as const) {
    for (const filter of [`label=${LABEL}`, `label=com.docker.compose.project=${PROJECT}`]) {
      const ls = await docker([kind, "ls", "-q", "--filter", filter], { allowFail: true });
      const names = ls.stdout.split("\n").filter(Boolean);
      if (names.length) await docker([kind, "rm", ...names], { allowFail: true });
    }
  }
}

let engine: Engine | undefined;
let cleaning: Promise<void> | undefined;
function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    refreshing = false;
    await writer?.stop().catch(() => undefined);
    await sampler?.stop().catch(() => undefined);
    try {
      if (engine) {
        await removeProject();
        const left = await containersOf();
        log(left.length ? `left behind: ${left.join(" ")}` : "removed every container, network and volume of the project");
      }
    } catch (err) {
      log(`cleanup: ${(err as Error).message}`);
    }
    if (envDir) rmSync(envDir, { recursive: true, force: true });
    await engine?.stop().catch((err: Error) => log(`stopping the engine: ${err.message}`));
  })();
  return cleaning;
}

for (const [sig, code] of [
  ["SIGINT", 130],
  ["SIGTERM", 143],
  ["SIGHUP", 129],
] as const) {
  process.on(sig, () => {
    if (cleaning) return;
    log(`${sig}: stopping and removing what this test created`);
    killActive();
    void cleanup().finally(() => process.exit(code));
  });
}

// ---------------------------------------------------------------- main

async function main(): Promise<number> {
  engine = await ensureEngine(join(CACHE, "containers-engine.json"));
  log(`engine: ${engine.describe}`);
  await removeProject();

  const composeBin = await ensureBinary("docker-compose", goTool("docker-compose", "github.com/docker/compose/v2", COMPOSE_VERSION, "./cmd"));
  await ensureBinary("mc", goTool("mc", "github.com/minio/mc", MC_VERSION, "."));
  for (const part of ["consul", "minio", "prometheus"]) await ensureBinary(part, installPart(part));
  log(`compose: ${basename(readlinkSync(composeBin))} (compose v2 CLI built from the Go module proxy)`);

  let t = Date.now();
  await run("bash", [join(ROOT, "test/containers/base-image.sh"), BASE_IMAGE, "bookworm"], { inherit: true, timeoutMs: 900_000 });
  const local = { consul: await localImage("consul"), minio: await localImage("minio"), mc: await localImage("mc"), prometheus: await localImage("prometheus") };
  log(`base and local images ready in ${secs(Date.now() - t)}`);

  t = Date.now();
  const image = `statepilot/mariadb:${TAG}`;
  const buildLog = join(CACHE, "containers-build.log");
  const ca = extraCaCerts();
  console.log(`+ docker build -f images/mariadb/Dockerfile -t ${image}${ca ? ' --build-arg EXTRA_CA_CERTS="$(cat /usr/local/share/ca-certificates/*.crt)"' : ""} .`);
  const b = await docker(["build", "-f", join(ROOT, "images/mariadb/Dockerfile"), "-t", image, "--build-arg", `DEBIAN_IMAGE=${BASE_IMAGE}`, ...(ca ? ["--build-arg", `EXTRA_CA_CERTS=${ca}`] : []), ROOT], {
    timeoutMs: 1_800_000,
    allowFail: true,
  });
  writeFileSync(buildLog, b.stdout + b.stderr);
  if (b.code !== 0) throw new Error(`docker build of ${image} failed (log: ${buildLog}):\n${(b.stdout + b.stderr).trim().split("\n").slice(-20).join("\n")}`);
  const buildMs = Date.now() - t;
  const size = Number((await docker(["image", "inspect", "-f", "{{.Size}}", image])).stdout.trim());
  figures.image = `${image}: ${(size / 1e6).toFixed(0)} MB, built in ${secs(buildMs)} (layers cached across runs)`;
  log(figures.image);

  // The daemon's own open-files limit caps what a container may ask for.
  const hard = Number((await docker(["run", "--rm", "--network", "none", BASE_IMAGE, "sh", "-c", "ulimit -Hn"])).stdout.trim()) || 65536;
  envDir = mkdtempSync(join(tmpdir(), "statepilot-containers-"));
  const pw = () => randomBytes(12).toString("hex");
  const creds: Credentials = { user: "app", password: pw(), database: "app" };
  const env = {
    MYSQL_ROOT_PASSWORD: pw(),
    MYSQL_DATABASE: creds.database,
    MYSQL_USER: creds.user,
    MYSQL_PASSWORD: creds.password,
    MYSQL_REPL_USER: "repl",
    MYSQL_REPL_PASSWORD: pw(),
    STATEPILOT_CLUSTER: "compose",
    STATEPILOT_TAG: TAG,
    S3_BUCKET: "statepilot",
    S3_ACCESS_KEY_ID: "statepilot",
    S3_SECRET_ACCESS_KEY: pw(),
    SNAPSHOT_INTERVAL: "6h",
    GRAFANA_ADMIN_PASSWORD: pw(),
    MYSQL_NOFILE: String(Math.min(65536, hard)),
    LOCAL_CONSUL_IMAGE: local.consul,
    LOCAL_MINIO_IMAGE: local.minio,
    LOCAL_MC_IMAGE: local.mc,
    LOCAL_PROMETHEUS_IMAGE: local.prometheus,
  };
  const envFile = join(envDir, "compose.env");
  writeFileSync(envFile, `${Object.entries(env).map(([k, v]) => `${k}=${v}`).join("\n")}\n`, { mode: 0o600 });
  stack = { composeBin, envFile, creds };

  void refreshLoop();
  sampler = new ReadOnlySampler(() => endpoints, creds);
  sampler.start();
  writer = new Writer(() => endpoints, creds);

  await scenario("up --scale mysql=3", scenarioUp);
  if (!results[0]?.ok) return 1;
  await scenario("docker kill of the primary", () => failover("kill", (o) => docker(["kill", o.name]), (o) => docker(["start", o.name])));
  await scenario("docker stop of the primary (graceful handover)", () =>
    failover("stop", (o) => docker(["stop", "-t", "100", o.name], { timeoutMs: 150_000 }), (o) => docker(["start", o.name])),
  );
  await scenario("docker pause of the primary past the takeover, then unpause", () => failover("pause", (o) => docker(["pause", o.name]), (o) => docker(["unpause", o.name])));
  await scenario("docker network disconnect of the primary, then connect", () =>
    failover("disconnect", (o) => docker(["network", "disconnect", NETWORK, o.name]), (o) => docker(["network", "connect", NETWORK, o.name])),
  );
  await scenario("restart of the Consul container (data volume kept)", scenarioConsulRestart);
  await scenario("rolling restart of every mysql container", scenarioRolling);
  await scenario("--scale mysql=4 restores the newest snapshot from MinIO", scenarioScaleOut);
  await scenario("a copy of the cluster as it was at T starts next to it (profile restore)", scenarioRestoreCopy);

  // Every write acknowledged during the whole run is on the final primary.
  await writer.stop();
  let lostTotal = 0;
  try {
    const p = await steady(4, 60_000).catch(() => steady(3, 60_000));
    lostTotal = (await writer.missingOn(endpointOf(p))).length;
    log(`${writer.acked.length} writes acknowledged in all, ${lostTotal} missing on the final primary ${p.name}; sampler rounds ${sampler.rounds}`);
  } catch (err) {
    log(`final check: ${(err as Error).message}`);
    lostTotal = -1;
  }
  return report(lostTotal);
}

function report(lostTotal: number): number {
  console.log("\ncontainers: figures");
  for (const [k, v] of Object.entries(figures)) console.log(`  ${k.padEnd(10)} ${v}`);
  for (const r of results) if (!r.ok) console.log(`  FAILED: ${r.name}: ${r.error ?? `lost=${r.lost} split_brain_samples=${r.splitBrain}`}`);
  const passed = results.filter((r) => r.ok).length;
  const lost = Math.max(0, lostTotal) + results.reduce((s, r) => s + r.lost, 0);
  const split = sampler?.violations.length ?? 0;
  console.log(`containers: scenarios=${results.length} passed=${passed} lost=${lost} split_brain_samples=${split}`);
  return passed === results.length && results.length === 9 && lostTotal === 0 && lost === 0 && split === 0 ? 0 : 1;
}

let code = 1;
try {
  code = await main();
} catch (err) {
  log(`error: ${err instanceof Error ? err.message : String(err)}`);
  if (results.length) report(-1);
  else console.log("containers: scenarios=0 passed=0 lost=0 split_brain_samples=0");
  code = 1;
} finally {
  await cleanup();
}
log(`done in ${secs(Date.now() - t00)}`);
process.exit(code);
