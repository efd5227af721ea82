import { createHash } from "node:crypto";
import type { Dialect } from "./dialect.js";
import type { MysqlCredentials } from "./credentials.js";

/** Runs one statement with client-side placeholders (one statement per call: never multi-statement). */
export type Query = (sql: string, values?: unknown[]) => Promise<Array<Record<string, unknown>>>;

/** The local-only account mariabackup uses over the socket; it exists on no other host. */
export const BACKUP_USER = "statepilot_backup";

/**
 * MySQL only: the account a node being rebuilt clones a peer through (`CLONE INSTANCE FROM`), on
 * every node, with BACKUP_ADMIN alone (what a clone donor needs; the recipient runs the clone as
 * root over its socket). Its password is derived as the backup account's is.
 */
export const CLONE_USER = "statepilot_clone";

export function clonePassword(creds: Pick<MysqlCredentials, "replPassword">): string {
  return createHash("sha256").update(`statepilot-clone\0${creds.replPassword}`).digest("base64url");
}

/** Accounts a server keeps whatever the configuration says (system accounts, locked or socket-only). */
const SYSTEM_USERS = new Set(["mariadb.sys", "mysql.sys", "mysql.session", "mysql.infoschema", "mysql"]);

/**
 * The backup account's password: derived from the replication password, which every node of the
 * cluster knows, so a node restored from another's snapshot (whose account tables it carries)
 * computes the same one. Never stored, never leaves the node.
 */
export function backupPassword(creds: Pick<MysqlCredentials, "replPassword">): string {
  return createHash("sha256").update(`statepilot-backup\0${creds.replPassword}`).digest("base64url");
}

/**
 * A database name as GRANT reads it: `_` and `%` are wildcards there, so each is escaped with a
 * backslash (as are backslashes), then the whole is quoted as an identifier. `my_app` grants on
 * my_app only, never on myXapp; `%` on the database named "%", never on every database.
 */
export function grantDatabase(name: string): string {
  return quoteIdent(name.replace(/[\\_%]/g, (c) => `\\${c}`));
}

export function quoteIdent(name: string): string {
  if (name.includes("\0")) throw new Error("identifier contains a NUL byte");
  return `\`${name.replace(/`/g, "``")}\``;
}

/** The privileges each managed account must have, by flavor: what `SHOW GRANTS` should list. */
export function accountGrants(dialect: Pick<Dialect, "flavor">): { repl: string; backup: string } {
  return dialect.flavor === "mariadb"
    ? { repl: "REPLICATION SLAVE", backup: "RELOAD, PROCESS, LOCK TABLES, BINLOG MONITOR" }
    : { repl: "REPLICATION SLAVE", backup: "RELOAD, PROCESS, LOCK TABLES, REPLICATION CLIENT, BACKUP_ADMIN" };
}

export interface AccountOptions {
  /** Hosts root may connect from; the default ["localhost"] is the unix socket only. */
  rootHosts: string[];
  /** Logs what changed (never a password). */
  onChange?: (what: string) => void;
}

/**
 * Makes the node's accounts what the configuration says, on every start, outside the binlog
 * (`sql_log_bin = 0`: no password ever reaches a binlog or a replica's relay log):
 * - root only on the configured hosts (the socket by default), with its password; no anonymous users;
 * - the replication user with REPLICATION SLAVE only (it is reachable from every host);
 * - a local-only backup user with what mariabackup needs;
 * - the application user with ALL on its database, the name's wildcards escaped.
 * Literals go through the driver's placeholders on a session whose sql_mode has no
 * NO_BACKSLASH_ESCAPES, so the driver's escaping is the server's.
 */
export async function secureAccounts(query: Query, dialect: Dialect, creds: MysqlCredentials, opts: AccountOptions): Promise<void> {
  const note = opts.onChange ?? (() => undefined);
  const [mode] = await query("SELECT @@SESSION.sql_mode AS m");
  const modes = String(mode?.m ?? "").split(",").filter((m) => m !== "" && m !== "NO_BACKSLASH_ESCAPES");
  await query("SET SESSION sql_mode = ?", [modes.join(",")]);
  await query("SET SESSION sql_log_bin = 0");
  // MySQL's super_read_only stops even root; read_only stays on, so clients still cannot write.
  const superReadOnly = dialect.flavor === "mysql" && Number((await query("SELECT @@GLOBAL.super_read_only AS s"))[0]?.s) === 1;
  if (superReadOnly) await query("SET GLOBAL super_read_only = OFF");
  try {
    const rootHosts = new Set(opts.rootHosts);
    for (const row of await query("SELECT User AS user, Host AS host FROM mysql.user")) {
      const user = String(row.user);
      const host = String(row.host);
      if (SYSTEM_USERS.has(user)) continue;
      const stray = user === "" || (user === "root" && !rootHosts.has(host)) || (user === BACKUP_USER && host !== "localhost");
      if (stray) {
        await query("DROP USER ?@?", [user, host]);
        note(`dropped ${user === "" ? "anonymous user" : user}@${host}`);
      }
    }
    for (const host of rootHosts) await ensureUser(query, "root", host, creds.rootPassword);
    const grants = accountGrants(dialect);
    await ensureUser(query, creds.replUser, "%", creds.replPassword);
    await query("REVOKE ALL PRIVILEGES, GRANT OPTION FROM ?@'%'", [creds.replUser]);
    await query(`GRANT ${grants.repl} ON *.* TO ?@'%'`, [creds.replUser]);
    await ensureUser(query, BACKUP_USER, "localhost", backupPassword(creds));
    await query(`REVOKE ALL PRIVILEGES, GRANT OPTION FROM ?@'localhost'`, [BACKUP_USER]);
    await query(`GRANT ${grants.backup} ON *.* TO ?@'localhost'`, [BACKUP_USER]);
    if (dialect.flavor === "mysql") {
      await ensureUser(query, CLONE_USER, "%", clonePassword(creds));
      await query("REVOKE ALL PRIVILEGES, GRANT OPTION FROM ?@'%'", [CLONE_USER]);
      await query("GRANT BACKUP_ADMIN ON *.* TO ?@'%'", [CLONE_USER]);
    }
    if (creds.user && creds.password) {
      await ensureUser(query, creds.user, "%", creds.password);
      if (creds.database) {
        // An earlier version granted on the unescaped name (a pattern when it holds _ or %).
        if (/[_%\\]/.test(creds.database)) await revokeIfGranted(query, quoteIdent(creds.database), creds.user);
        await query(`GRANT ALL ON ${grantDatabase(creds.database)}.* TO ?@'%'`, [creds.user]);
      }
    }
  } finally {
    if (superReadOnly) await query("SET GLOBAL super_read_only = ON");
    await query("SET SESSION sql_log_bin = 1");
  }
}

async function ensureUser(query: Query, user: string, host: string, password: string): Promise<void> {
  await query("CREATE USER IF NOT EXISTS ?@? IDENTIFIED BY ?", [user, host, password]);
  await query("ALTER USER ?@? IDENTIFIED BY ?", [user, host, password]);
}

async function revokeIfGranted(query: Query, database: string, user: string): Promise<void> {
  try {
    await query(`REVOKE ALL PRIVILEGES ON ${database}.* FROM ?@'%'`, [user]);
  } catch (err) {
    // ER_NONEXISTING_GRANT: there was no such grant.
    if ((err as { errno?: number }).errno !== 1141) throw err;
  }
}
