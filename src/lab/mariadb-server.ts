import { execFile } from "node:child_process";
import { connect } from "node:net";
import { cpSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import mysql from "mysql2/promise";
import { cacheDir, findBinary } from "../binaries.js";
import { ManagedProcess } from "./process.js";
import { waitFor } from "./wait.js";

const execFileP = promisify(execFile);

export interface MariaDbServerOptions {
  /** Parent directory; the instance keeps datadir, socket and log under `${dir}/`. */
  dir: string;
  host: string;
  port?: number;
  serverId: number;
  extraArgs?: string[];
}

/** Runs as root only with --user=root: mariadbd refuses otherwise. */
function userArgs(): string[] {
  return process.getuid?.() === 0 ? ["--user=root"] : [];
}

/**
 * A system-table-only datadir made once by mariadb-install-db and copied for each instance;
 * install-db takes seconds, a copy takes milliseconds.
 */
let templateOnce: Promise<string> | undefined;
export function mariadbTemplateDatadir(): Promise<string> {
  templateOnce ??= makeTemplateDatadir().catch((err: unknown) => {
    templateOnce = undefined;
    throw err;
  });
  return templateOnce;
}

async function makeTemplateDatadir(): Promise<string> {
  const { stdout } = await execFileP(findBinary("mariadbd"), ["--version"]);
  const version = /Ver (\S+)/.exec(stdout)?.[1] ?? "unknown";
  const template = join(cacheDir(), `mariadb-datadir-${version}`);
  // The template only ever appears complete: it is made under another name and renamed.
  if (existsSync(template)) return template;
  const tmp = `${template}.tmp-${process.pid}-${Date.now()}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  await execFileP(findBinary("mariadb-install-db"), [
    "--no-defaults",
    `--datadir=${tmp}`,
    "--auth-root-authentication-method=normal",
    "--skip-test-db",
    ...userArgs(),
  ]);
  try {
    renameSync(tmp, template);
  } catch {
    // Another process made it first.
    rmSync(tmp, { recursive: true, force: true });
  }
  return template;
}

/** A MySQL server at host:port sends its handshake as soon as a client connects. */
export function greets(host: string, port: number, timeoutMs = 5_000): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = connect({ host, port });
    const done = (ok: boolean) => {
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(timeoutMs, () => done(false));
    sock.once("data", () => done(true));
    sock.once("error", () => done(false));
    sock.once("close", () => done(false));
  });
}

/** One real mariadbd with its own datadir, listening on host:port and a unix socket. */
export class MariaDbServer {
  private proc: ManagedProcess | undefined;
  readonly host: string;
  readonly port: number;
  readonly datadir: string;
  readonly socket: string;

  constructor(private readonly opts: MariaDbServerOptions) {
    this.host = opts.host;
    this.port = opts.port ?? 3306;
    this.datadir = join(opts.dir, "data");
    this.socket = join(opts.dir, "mysqld.sock");
  }

  get pid(): number | undefined {
    return this.proc?.running ? this.proc.pid : undefined;
  }

  serverArgs(): string[] {
    return [
      "--no-defaults",
      ...userArgs(),
      `--datadir=${this.datadir}`,
      `--socket=${this.socket}`,
      `--pid-file=${join(this.opts.dir, "mysqld.pid")}`,
      `--log-error=${join(this.opts.dir, "mysqld.err")}`,
      `--bind-address=${this.host}`,
      `--port=${this.port}`,
      `--server-id=${this.opts.serverId}`,
      "--log-bin=mysql-bin",
      "--log-slave-updates",
      "--gtid-strict-mode=1",
      "--binlog-format=ROW",
      "--skip-name-resolve",
      "--innodb-buffer-pool-size=32M",
      "--innodb-log-file-size=16M",
      "--performance-schema=OFF",
      "--read-only=1",
      ...(this.opts.extraArgs ?? []),
    ];
  }

  async start(timeoutMs = 90_000): Promise<this> {
    if (this.proc?.running) return this;
    if (!existsSync(this.datadir)) {
      mkdirSync(this.opts.dir, { recursive: true });
      cpSync(await mariadbTemplateDatadir(), this.datadir, { recursive: true });
    }
    this.proc = await ManagedProcess.start(`mariadbd@${this.host}`, findBinary("mariadbd"), this.serverArgs(), {
      logFile: join(this.opts.dir, "mysqld.out"),
    });
    const proc = this.proc;
    // Ready means both promises hold: root answers on the socket, and the server greets on host:port.
    await waitFor(
      async () => {
        const c = await this.rootConnection();
        await c.end();
        return await greets(this.host, this.port);
      },
      {
        timeoutMs,
        what: `mariadbd on ${this.host}:${this.port}`,
        detail: () => `${proc.logTail()}\n${this.logTail()}`,
        abortIf: () => (proc.running ? undefined : `mariadbd exited (${JSON.stringify(proc.exitStatus)})`),
      },
    );
    return this;
  }

  /** root over the unix socket (password-less in a fresh lab datadir). */
  rootConnection(): Promise<mysql.Connection> {
    return mysql.createConnection({ socketPath: this.socket, user: "root", multipleStatements: true });
  }

  /** The end of the server's error log. */
  logTail(lines = 15): string {
    try {
      return readFileSync(join(this.opts.dir, "mysqld.err"), "utf8").trimEnd().split("\n").slice(-lines).join("\n");
    } catch {
      return "(no error log)";
    }
  }

  async stop(timeoutMs = 20_000): Promise<void> {
    await this.proc?.stop("SIGTERM", timeoutMs);
  }

  async kill(): Promise<void> {
    await this.proc?.stop("SIGKILL");
  }

  async destroy(): Promise<void> {
    await this.stop();
    rmSync(this.opts.dir, { recursive: true, force: true });
  }
}
