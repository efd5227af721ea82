import { execFile, execFileSync, spawn } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { promisify } from "node:util";
import { gunzipSync } from "node:zlib";
import mysql from "mysql2/promise";
import type { MysqlConfig } from "../config/schema.js";
import type { Coordinator } from "../discovery/coordination.js";
import { findBinary } from "../binaries.js";
import type { Logger } from "../log.js";
import type { MysqlCredentials } from "./credentials.js";
import type { ClusterMemory } from "./ha/deps.js";
import { parseServerVersion, replicationArgs, type Dialect, type ServerVersion } from "./dialect.js";
import type { LocalServer } from "./local.js";
import { quoteIdent, secureAccounts, type AccountOptions } from "./accounts.js";
import { emptyDatadir, RESTORE_MARKER } from "../snapshot/snapshot.js";

const execFileP = promisify(execFile);

/** What statepilot keeps about this node in the datadir. */
export interface NodeState {
  cluster: string;
  serverId: number;
  /** root password set and the replication user created (locally, outside the binlog). */
  bootstrapped: boolean;
  /** Restored from this snapshot; replication starts from its GTID (cleared once configured). */
  restoredFrom?: { id: string; gtid: string; pending: boolean; binlogState?: string };
  createdAt: string;
  /** The HA loop's memory of the cluster (used only if the cluster store loses its data). */
  clusterMemory?: ClusterMemory;
}

const STATE_FILE = "statepilot-node.json";
const INIT_MARKER = ".statepilot-initializing";
/** Files a fresh volume may hold that do not make a datadir "used". */
const IGNORABLE = new Set(["lost+found", "mysqld.sock", "mysqld.sock.lock", "mysqld.pid"]);

export function socketPath(cfg: MysqlConfig): string {
  return cfg.socket ?? join(cfg.datadir, "mysqld.sock");
}

export function mysqldBinary(cfg: MysqlConfig): string {
  if (cfg.binary) return cfg.binary;
  for (const name of ["mariadbd", "mysqld"]) {
    try {
      return findBinary(name);
    } catch {
      // try the next
    }
  }
  throw new Error("mysql.binary: neither mariadbd nor mysqld was found on PATH or in sbin; set mysql.binary");
}

export async function binaryVersion(binary: string): Promise<ServerVersion> {
  const { stdout } = await execFileP(binary, ["--version"]);
  return parseServerVersion(stdout);
}

export function readNodeState(datadir: string): NodeState | undefined {
  try {
    return JSON.parse(readFileSync(join(datadir, STATE_FILE), "utf8")) as NodeState;
  } catch {
    return undefined;
  }
}

export function writeNodeState(datadir: string, state: NodeState): void {
  writeFileSync(join(datadir, STATE_FILE), `${JSON.stringify(state, null, 2)}\n`, { mode: 0o600 });
}

export type DatadirKind = "empty" | "initialized" | "interrupted" | "foreign";

/**
 * A restore into `datadir` starts: marked, so that a start after a crash or kill in the middle
 * (a half-extracted snapshot, or a point-in-time restore short of its point, which would start
 * as a database at the wrong point) empties the datadir and restores again.
 */
export function markRestoring(datadir: string): void {
  mkdirSync(datadir, { recursive: true });
  writeFileSync(join(datadir, RESTORE_MARKER), "");
}

export function restoreFinished(datadir: string): void {
  rmSync(join(datadir, RESTORE_MARKER), { force: true });
}

/** Empties a datadir that a restore left unfinished; true if it did. */
export function discardInterruptedRestore(datadir: string, logger: Logger): boolean {
  if (!existsSync(join(datadir, RESTORE_MARKER))) return false;
  logger.warn({ datadir }, "an earlier restore into the datadir was interrupted; emptying it to restore again");
  emptyDatadir(datadir);
  return true;
}

/** Who owns the datadir's files: `mysql.runAs` (default mysql) when statepilot runs as root; otherwise statepilot's own user. */
export function datadirOwner(cfg: Pick<MysqlConfig, "runAs">): string | undefined {
  return process.getuid?.() === 0 ? (cfg.runAs ?? "mysql") : undefined;
}

export function inspectDatadir(datadir: string): DatadirKind {
  if (!existsSync(datadir)) return "empty";
  const entries = readdirSync(datadir).filter((e) => !IGNORABLE.has(e));
  if (entries.includes(RESTORE_MARKER)) return "interrupted";
  if (entries.includes(INIT_MARKER)) return "interrupted";
  if (entries.length === 0) return "empty";
  return existsSync(join(datadir, "mysql")) ? "initialized" : "foreign";
}

function runAsArgs(cfg: MysqlConfig): string[] {
  if (process.getuid?.() !== 0) return [];
  return [`--user=${cfg.runAs ?? "mysql"}`];
}

function defaultsArgs(cfg: MysqlConfig): string[] {
  if (cfg.defaultsFile === "none") return ["--no-defaults"];
  return cfg.defaultsFile ? [`--defaults-file=${cfg.defaultsFile}`] : [];
}

/** Creates the system tables in an empty datadir; an existing datadir is never touched. */
export async function initializeDatadir(cfg: MysqlConfig, version: ServerVersion, binary: string, logger: Logger): Promise<boolean> {
  const kind = inspectDatadir(cfg.datadir);
  if (kind === "initialized") return false;
  if (kind === "foreign") {
    throw new Error(`mysql.datadir: ${cfg.datadir} holds files but no system tables (no mysql/ directory); statepilot will not initialise over them`);
  }
  if (kind === "interrupted") {
    logger.warn({ datadir: cfg.datadir }, "an earlier initialisation was interrupted; starting it again");
    emptyDatadir(cfg.datadir);
  }
  mkdirSync(cfg.datadir, { recursive: true });
  writeFileSync(join(cfg.datadir, INIT_MARKER), "");
  // The bootstrap server's temporary tables go to tmpdir, named without anything unique to this
  // datadir: two installs sharing /tmp can delete each other's files and fail. Each gets its own.
  // mysqld --initialize refuses a datadir with files in it, hidden ones (like the marker) aside.
  const scratch = join(cfg.datadir, version.flavor === "mysql" ? ".statepilot-install-tmp" : "#statepilot-install-tmp");
  mkdirSync(scratch, { recursive: true });
  const runAs = datadirOwner(cfg);
  if (runAs && runAs !== "root") execFileSync("chown", [`${runAs}:`, cfg.datadir, scratch]);
  const started = performance.now();
  const argv =
    version.flavor === "mariadb"
      ? [findInstallDb(binary), ...defaultsArgs(cfg), `--datadir=${cfg.datadir}`, "--auth-root-authentication-method=normal", "--skip-test-db", ...runAsArgs(cfg), `--tmpdir=${scratch}`]
      : [binary, ...defaultsArgs(cfg), "--initialize-insecure", `--datadir=${cfg.datadir}`, ...runAsArgs(cfg), `--tmpdir=${scratch}`];
  logger.info({ datadir: cfg.datadir, command: argv[0] }, "initialising an empty datadir");
  const out = await runCollecting(argv);
  if (out.code !== 0) {
    const lines = out.output.trim().split("\n");
    // The cause is near the top; install-db's boilerplate advice fills the end.
    const shown = lines.length > 30 ? [...lines.slice(0, 20), "...", ...lines.slice(-5)] : lines;
    throw new Error(`initialising ${cfg.datadir} failed (exit ${out.code}):\n${shown.join("\n")}`);
  }
  if (version.flavor === "mariadb") await closeInstallAccounts(cfg, binary, scratch);
  rmSync(scratch, { recursive: true, force: true });
  rmSync(join(cfg.datadir, INIT_MARKER));
  logger.info({ datadir: cfg.datadir, durationMs: Math.round(performance.now() - started) }, "datadir initialised");
  return true;
}

/** Runs argv (feeding `stdin` when given) and collects its output, stdout and stderr together. */
function runCollecting(argv: string[], stdin?: string): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { stdio: [stdin === undefined ? "ignore" : "pipe", "pipe", "pipe"] });
    let output = "";
    child.stdout?.on("data", (b: Buffer) => (output += b.toString()));
    child.stderr?.on("data", (b: Buffer) => (output += b.toString()));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, output }));
    if (stdin !== undefined) child.stdin?.end(stdin);
  });
}

/**
 * mariadb-install-db leaves root@127.0.0.1, root@::1 and root@<hostname> without a password (and
 * may leave anonymous users): removed here, in bootstrap mode (no network, no binlog), before the
 * server ever listens. root@localhost gets its password at the first start, over the socket.
 */
async function closeInstallAccounts(cfg: MysqlConfig, binary: string, scratch: string): Promise<void> {
  const sql = [
    "DELETE FROM mysql.global_priv WHERE User = '' OR (User = 'root' AND Host <> 'localhost');",
    "DELETE FROM mysql.proxies_priv WHERE User = '' OR (User = 'root' AND Host <> 'localhost');",
    "",
  ].join("\n");
  const argv = [binary, ...defaultsArgs(cfg), "--bootstrap", `--datadir=${cfg.datadir}`, ...runAsArgs(cfg), `--tmpdir=${scratch}`, "--log-warnings=0"];
  const out = await runCollecting(argv, sql);
  if (out.code !== 0) throw new Error(`securing the accounts of ${cfg.datadir} failed (exit ${out.code}): ${out.output.trim().split("\n").slice(-10).join("\n")}`);
}

function findInstallDb(binary: string): string {
  const sibling = join(dirname(binary), "..", "bin", "mariadb-install-db");
  if (existsSync(sibling)) return sibling;
  return findBinary("mariadb-install-db");
}

/**
 * A server_id unique in the cluster: allocated in Consul (CAS on one JSON map, node → its latest
 * id), then kept in the datadir. Replaces ids derived from a few hex digits of a hostname, which
 * collide. Called for a datadir new to the cluster (no node state), which always gets an id never
 * used before, even on a node that had one: a rebuilt node that took its old id back would skip
 * the transactions it wrote under that id (a replica ignores events with its own server_id), and
 * silently lack them.
 */
export async function allocateServerId(coordinator: Coordinator, cluster: string, node: string): Promise<number> {
  const key = `statepilot/${cluster}/server-ids`;
  for (let attempt = 0; attempt < 50; attempt++) {
    const { entry } = await coordinator.read(key);
    const map = entry?.value ? (JSON.parse(entry.value) as Record<string, number>) : {};
    const id = Math.max(0, ...Object.values(map)) + 1;
    map[node] = id;
    if (await coordinator.writeCas(key, JSON.stringify(map), entry?.modifyIndex ?? 0)) return id;
  }
  throw new Error(`could not allocate a server_id in Consul (${key}): too much contention`);
}

export function mysqldArgv(cfg: MysqlConfig, opts: { binary: string; flavor: ServerVersion["flavor"]; serverId: number; reportHost: string }): string[] {
  const server = [
    opts.binary,
    ...defaultsArgs(cfg),
    ...runAsArgs(cfg),
    `--datadir=${cfg.datadir}`,
    `--socket=${socketPath(cfg)}`,
    `--pid-file=${join(cfg.datadir, "mysqld.pid")}`,
    `--bind-address=${cfg.bind ?? opts.reportHost}`,
    `--port=${cfg.port}`,
    "--skip-name-resolve",
    ...replicationArgs(opts.flavor, { serverId: opts.serverId, reportHost: opts.reportHost, lossless: cfg.lossless.enabled, ackTimeoutMs: cfg.lossless.ackTimeout }),
    ...flavorArgs(cfg, opts.flavor),
    ...cfg.args,
  ];
  // The parent-death signal survives exec: if statepilot dies, so does mysqld, and no writable
  // primary is ever left running without the process that would fence it.
  return cfg.stopWithSupervisor ? [findBinary("setpriv"), "--pdeathsig", "KILL", "--", ...server] : server;
}

/**
 * MySQL only (mysql.args come later and win):
 * - `--mysqlx=OFF`: the X Protocol plugin would listen on every address at 33060 (and a fixed
 *   socket in /tmp), a port statepilot neither advertises nor fences; two servers on one host
 *   would also collide on it.
 * - with `defaultsFile: none`, `--secure-file-priv=NULL`: the compiled-in directory
 *   (/var/lib/mysql-files) is made by the packages' install scripts and mysqld refuses to start
 *   when it is missing; NULL turns file import/export off. With option files, their value stands.
 */
export function flavorArgs(cfg: Pick<MysqlConfig, "defaultsFile">, flavor: ServerVersion["flavor"]): string[] {
  if (flavor !== "mysql") return [];
  return ["--mysqlx=OFF", ...(cfg.defaultsFile === "none" ? ["--secure-file-priv=NULL"] : [])];
}

/** On every start, outside the binlog: the node's accounts as the configuration says (accounts.ts). */
export async function bootstrapLocal(local: LocalServer, dialect: Dialect, creds: MysqlCredentials, opts: AccountOptions): Promise<void> {
  await secureAccounts((sql, values) => local.query(sql, values ?? []), dialect, creds, opts);
}

/**
 * On the cluster's first primary only, in the binlog so replicas get it: the application database,
 * then the init scripts. The application user is not created here: every node creates it locally
 * (secureAccounts), so its password never reaches a binlog.
 */
export async function bootstrapCluster(
  opts: { socket: string; creds: MysqlCredentials; initDir: string; logger: Logger },
): Promise<{ scripts: string[] }> {
  const { creds } = opts;
  const c = await mysql.createConnection({ socketPath: opts.socket, user: "root", password: creds.rootPassword, multipleStatements: true });
  const scripts: string[] = [];
  // MySQL's super_read_only (on until the primary turns writable) stops root too; read_only stays
  // on while the database and the init scripts are made, so clients still cannot write.
  const [sro] = (await c.query("SELECT @@GLOBAL.super_read_only AS s").then(([rows]) => rows as Array<Record<string, unknown>>, () => [{ s: 0 }]));
  const superReadOnly = Number(sro?.s) === 1;
  if (superReadOnly) await c.query("SET GLOBAL super_read_only = OFF");
  try {
    if (creds.database) await c.query(`CREATE DATABASE IF NOT EXISTS ${quoteIdent(creds.database)}`);
    if (existsSync(opts.initDir)) {
      if (creds.database) await c.query(`USE ${quoteIdent(creds.database)}`);
      for (const f of readdirSync(opts.initDir).sort()) {
        const path = join(opts.initDir, f);
        if (f.endsWith(".sql")) await c.query(readFileSync(path, "utf8"));
        else if (f.endsWith(".sql.gz")) await c.query(gunzipSync(readFileSync(path)).toString("utf8"));
        else if (f.endsWith(".sh")) {
          await execFileP("/bin/sh", [path], {
            env: { ...process.env, MYSQL_PWD: creds.rootPassword, MYSQL_UNIX_PORT: opts.socket },
          });
        } else continue;
        scripts.push(f);
        opts.logger.info({ script: f }, "init script done");
      }
    }
  } finally {
    if (superReadOnly) await c.query("SET GLOBAL super_read_only = ON").catch(() => undefined);
    await c.end();
  }
  return { scripts };
}
