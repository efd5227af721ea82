import { describe, expect, it } from "vitest";
import { accountGrants, backupPassword, grantDatabase, quoteIdent, secureAccounts, type Query } from "../../src/mysql/accounts.js";
import { Dialect, parseServerVersion } from "../../src/mysql/dialect.js";

const creds = { rootPassword: "r00t", database: "my_app", user: "app", password: "p'w", replUser: "repl", replPassword: "rp" };

describe("account statements", () => {
  it("escapes GRANT wildcards in database names and quotes identifiers", () => {
    expect(grantDatabase("my_app")).toBe("`my\\_app`");
    expect(grantDatabase("%")).toBe("`\\%`");
    expect(grantDatabase("a`b\\c")).toBe("`a``b\\\\c`");
    expect(() => quoteIdent("a\0b")).toThrow(/NUL/);
  });

  it("derives one backup password per replication password, never the password itself", () => {
    expect(backupPassword({ replPassword: "x" })).toBe(backupPassword({ replPassword: "x" }));
    expect(backupPassword({ replPassword: "x" })).not.toBe(backupPassword({ replPassword: "y" }));
    expect(backupPassword({ replPassword: "a-long-replication-secret" })).not.toContain("a-long-replication-secret");
  });

  it("runs outside the binlog, strips NO_BACKSLASH_ESCAPES first, passes every secret as a placeholder, and drops root on other hosts", async () => {
    const seen: Array<{ sql: string; values: unknown[] }> = [];
    const query: Query = async (sql, values = []) => {
      seen.push({ sql, values });
      if (sql.startsWith("SELECT @@SESSION.sql_mode")) return [{ m: "STRICT_TRANS_TABLES,NO_BACKSLASH_ESCAPES" }];
      if (sql.startsWith("SELECT User")) return [{ user: "root", host: "localhost" }, { user: "root", host: "127.0.0.1" }, { user: "", host: "localhost" }, { user: "mariadb.sys", host: "localhost" }, { user: "app", host: "%" }];
      return [];
    };
    await secureAccounts(query, new Dialect(parseServerVersion("10.11.6-MariaDB")), creds, { rootHosts: ["localhost"] });
    expect(seen[1]).toEqual({ sql: "SET SESSION sql_mode = ?", values: ["STRICT_TRANS_TABLES"] });
    expect(seen[2]!.sql).toBe("SET SESSION sql_log_bin = 0");
    expect(seen.at(-1)!.sql).toBe("SET SESSION sql_log_bin = 1");
    const drops = seen.filter((q) => q.sql.startsWith("DROP USER")).map((q) => q.values);
    expect(drops).toEqual([["root", "127.0.0.1"], ["", "localhost"]]);
    for (const q of seen) for (const secret of [creds.rootPassword, creds.password, creds.replPassword]) expect(q.sql).not.toContain(secret);
    expect(seen.some((q) => q.sql === "GRANT ALL ON `my\\_app`.* TO ?@'%'")).toBe(true);
    expect(seen.some((q) => q.sql === `GRANT ${accountGrants({ flavor: "mariadb" }).repl} ON *.* TO ?@'%'`)).toBe(true);
  });
});
