import { execFile } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import mysql from "mysql2/promise";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { findBinary } from "../../src/binaries.js";
import { Lab } from "../../src/lab/cluster.js";
import { MariaDbServer } from "../../src/lab/mariadb-server.js";
import { backupPassword, BACKUP_USER, secureAccounts } from "../../src/mysql/accounts.js";
import { Dialect, parseServerVersion } from "../../src/mysql/dialect.js";

const execFileP = promisify(execFile);

/**
 * Accounts, grants and secrets on real MariaDB: a 3-node lab whose servers run with
 * NO_BACKSLASH_ESCAPES and hostile credentials, and bare servers (made by mariadb-install-db, so
 * with its password-less root accounts) brought in line by secureAccounts, in both escaping modes.
 */
const HOSTILE_PASSWORD = "'; CREATE DATABASE pwned; -- \\' \" ` \\n\nend";
const LAB_CREDS = { user: "app_user", password: HOSTILE_PASSWORD, database: "my_app" };

let dir: string;
let lab: Lab;

beforeAll(async () => {
  process.on("exit", () => lab?.killAllNow());
  dir = mkdtempSync(join(tmpdir(), "statepilot-security-"));
  lab = await Lab.up({
    dir: join(dir, "lab"),
    nodes: 3,
    subnet: "127.0.33",
    credentials: LAB_CREDS,
    mysql: { args: ["--sql-mode=NO_BACKSLASH_ESCAPES,STRICT_TRANS_TABLES"] },
  });
  await lab.waitConverged(120_000);
}, 240_000);

afterAll(async () => {
  await lab?.down();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function denied(opts: mysql.ConnectionOptions): Promise<string> {
  let c: mysql.Connection | undefined;
  try {
    c = await mysql.createConnection({ connectTimeout: 5_000, ...opts });
    return "connected";
  } catch (err) {
    return String((err as { code?: string }).code);
  } finally {
    c?.destroy();
  }
}

async function asRoot<T>(socket: string, password: string, fn: (c: mysql.Connection) => Promise<T>): Promise<T> {
  const c = await mysql.createConnection({ socketPath: socket, user: "root", password });
  try {
    return await fn(c);
  } finally {
    c.destroy();
  }
}

/** Every account on the server with its grants, passwords masked. */
async function grantsOf(c: mysql.Connection): Promise<Record<string, string[]>> {
  const [users] = await c.query<mysql.RowDataPacket[]>("SELECT User AS u, Host AS h FROM mysql.user ORDER BY User, Host");
  const out: Record<string, string[]> = {};
  for (const { u, h } of users) {
    const [rows] = await c.query<mysql.RowDataPacket[]>("SHOW GRANTS FOR ?@?", [u, h]);
    out[`${String(u)}@${String(h)}`] = rows.map((r) => String(Object.values(r)[0]).replace(/PASSWORD '[^']*'/g, "PASSWORD '…'"));
  }
  return out;
}

describe("accounts on a lab running NO_BACKSLASH_ESCAPES with hostile credentials", () => {
  it("root is refused over TCP on every node, with or without its password", async () => {
    for (const n of lab.file.nodes) {
      expect(await denied({ host: n.mysql.host, port: n.mysql.port, user: "root" })).toBe("ER_ACCESS_DENIED_ERROR");
      expect(await denied({ host: n.mysql.host, port: n.mysql.port, user: "root", password: lab.file.credentials.rootPassword })).toBe("ER_ACCESS_DENIED_ERROR");
      expect(await denied({ host: n.mysql.host, port: n.mysql.port, user: "" })).toBe("ER_ACCESS_DENIED_ERROR");
    }
  });

  it("every account has exactly the expected grants, on every node", async () => {
    const c = lab.file.credentials;
    for (const n of lab.file.nodes) {
      const grants = await asRoot(join(n.dir, "mysqld.sock"), c.rootPassword, grantsOf);
      expect(Object.keys(grants).sort()).toEqual([`${BACKUP_USER}@localhost`, "app_user@%", "mariadb.sys@localhost", "repl@%", "root@localhost"].sort());
      expect(grants["repl@%"]).toEqual(["GRANT REPLICATION SLAVE ON *.* TO `repl`@`%` IDENTIFIED BY PASSWORD '…'"]);
      expect(grants[`${BACKUP_USER}@localhost`]).toEqual([`GRANT RELOAD, PROCESS, LOCK TABLES, BINLOG MONITOR ON *.* TO \`${BACKUP_USER}\`@\`localhost\` IDENTIFIED BY PASSWORD '…'`]);
      expect(grants["app_user@%"]).toEqual(["GRANT USAGE ON *.* TO `app_user`@`%` IDENTIFIED BY PASSWORD '…'", "GRANT ALL PRIVILEGES ON `my\\_app`.* TO `app_user`@`%`"]);
      expect(grants["root@localhost"]?.[0]).toMatch(/^GRANT ALL PRIVILEGES ON \*\.\* TO `root`@`localhost` IDENTIFIED BY PASSWORD '…' WITH GRANT OPTION$/);
    }
  });

  it("the replication user cannot block writes, empty the binlog or read it", async () => {
    const p = await lab.primary();
    const primary = lab.node(p!.name);
    const c = await mysql.createConnection({ host: primary.mysql.host, port: primary.mysql.port, user: "repl", password: lab.file.credentials.replPassword });
    try {
      for (const sql of ["FLUSH TABLES WITH READ LOCK", "RESET MASTER", "SHOW BINLOG EVENTS", "SHOW MASTER STATUS", "SELECT * FROM mysql.global_priv"]) {
        await expect(c.query(sql), sql).rejects.toMatchObject({ code: expect.stringMatching(/ACCESS_DENIED|SPECIFIC_ACCESS_DENIED|TABLEACCESS_DENIED/) });
      }
    } finally {
      c.destroy();
    }
  });

  it("the application user logs in with the literal hostile password, owns my_app and nothing that merely matches it", async () => {
    const p = lab.node((await lab.primary())!.name);
    const c = await mysql.createConnection({ host: p.mysql.host, port: p.mysql.port, user: "app_user", password: HOSTILE_PASSWORD });
    try {
      await c.query("CREATE TABLE my_app.t (id INT PRIMARY KEY)");
      await expect(c.query("CREATE DATABASE myXapp")).rejects.toMatchObject({ code: "ER_DBACCESS_DENIED_ERROR" });
      await expect(c.query("SELECT * FROM mysql.global_priv")).rejects.toMatchObject({ code: "ER_TABLEACCESS_DENIED_ERROR" });
    } finally {
      c.destroy();
    }
    const dbs = await asRoot(join(p.dir, "mysqld.sock"), lab.file.credentials.rootPassword, async (r) => (await r.query<mysql.RowDataPacket[]>("SHOW DATABASES"))[0].map((x) => String(x.Database)));
    expect(dbs).not.toContain("pwned");
  });

  it("no password reaches any node's binlog or relay log", async () => {
    const c = lab.file.credentials;
    const secrets = [c.rootPassword, c.replPassword, "CREATE DATABASE pwned", backupPassword(c)];
    let files = 0;
    for (const n of lab.file.nodes) {
      const data = join(n.dir, "data");
      const logs = readdirSync(data).filter((f) => /^(mysql-bin|relay-bin)\.\d+$/.test(f));
      for (const f of logs) {
        const { stdout } = await execFileP(findBinary("mariadb-binlog"), ["--verbose", join(data, f)], { maxBuffer: 256 * 1024 * 1024 });
        files++;
        for (const s of secrets) expect(stdout.includes(s), `${n.name}/${f} holds a secret`).toBe(false);
        expect(stdout).not.toMatch(/CREATE USER|ALTER USER|IDENTIFIED BY/i);
      }
    }
    expect(files).toBeGreaterThanOrEqual(3);
  });
});

describe("secureAccounts on bare servers from mariadb-install-db", () => {
  const hostile = [
    "plain",
    "quote ' inside",
    "backslash \\ and quote \\'",
    "'; CREATE DATABASE pwned; -- ",
    'double " and `backtick`',
    "newline\nand\ttab",
    "x".repeat(1000),
    "ünïcödé ✓",
  ];
  for (const [i, mode] of [["", ""], ["NO_BACKSLASH_ESCAPES", "--sql-mode=NO_BACKSLASH_ESCAPES"]].entries()) {
    it(`sql_mode ${mode[0] || "default"}: password-less TCP root gone; each hostile password stored literally`, async () => {
      const server = new MariaDbServer({ dir: join(dir, `bare-${i}`), host: `127.0.34.${i + 1}`, serverId: 90 + i, ...(mode[1] ? { extraArgs: [mode[1]] } : {}) });
      try {
        await server.start();
        // What install-db leaves: root over TCP without a password.
        expect(await denied({ host: server.host, port: server.port, user: "root" })).toBe("connected");
        let rootPassword = "";
        for (const [k, password] of hostile.entries()) {
          const creds = { rootPassword: `root-${k}`, database: k % 2 ? "%" : "my_app", user: "app", password, replUser: "repl", replPassword: `repl-${k}` };
          const c = await mysql.createConnection({ socketPath: server.socket, user: "root", password: rootPassword });
          try {
            const [[v]] = await c.query<mysql.RowDataPacket[]>("SELECT VERSION() AS v");
            await secureAccounts(async (sql, values = []) => (await c.query<mysql.RowDataPacket[]>(sql, values))[0], new Dialect(parseServerVersion(String(v!.v))), creds, { rootHosts: ["localhost"] });
          } finally {
            c.destroy();
          }
          rootPassword = creds.rootPassword;
          expect(await denied({ host: server.host, port: server.port, user: "root" })).toBe("ER_ACCESS_DENIED_ERROR");
          expect(await denied({ host: server.host, port: server.port, user: "app", password }), JSON.stringify(password.slice(0, 40))).toBe("connected");
        }
        const dbs = await asRoot(server.socket, rootPassword, async (r) => (await r.query<mysql.RowDataPacket[]>("SHOW DATABASES"))[0].map((x) => String(x.Database)));
        expect(dbs).not.toContain("pwned");
        const grants = await asRoot(server.socket, rootPassword, grantsOf);
        // The "%" database of the odd rounds is granted as the literal name, and revoked when the name changed back.
        expect(grants["app@%"]).toContain("GRANT ALL PRIVILEGES ON `my\\_app`.* TO `app`@`%`");
        expect(grants["app@%"]?.some((g) => g.includes("ON `%`"))).toBe(false);
      } finally {
        await server.stop();
      }
    });
  }
});
