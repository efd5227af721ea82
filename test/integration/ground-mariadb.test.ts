import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { RowDataPacket } from "mysql2/promise";
import { MariaDbServer } from "../../src/lab/mariadb-server.js";
import { waitFor } from "../../src/lab/wait.js";

describe("real MariaDB GTID replication", () => {
  const dir = mkdtempSync(join(tmpdir(), "statepilot-mariadb-"));
  const primary = new MariaDbServer({ dir: join(dir, "n1"), host: "127.0.10.1", port: 3306, serverId: 101 });
  const replica = new MariaDbServer({ dir: join(dir, "n2"), host: "127.0.10.2", port: 3306, serverId: 102 });

  beforeAll(async () => {
    await Promise.all([primary.start(), replica.start()]);
  }, 180_000);
  afterAll(async () => {
    try {
      await Promise.allSettled([primary.destroy(), replica.destroy()]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);

  it("replicates a row with MASTER_USE_GTID=slave_pos", async () => {
    const p = await primary.rootConnection();
    const r = await replica.rootConnection();
    try {
      await p.query(`
        CREATE USER 'repl'@'%' IDENTIFIED BY 'repl-secret';
        GRANT REPLICATION SLAVE ON *.* TO 'repl'@'%';
        SET GLOBAL read_only = OFF;
        CREATE DATABASE ground;
        CREATE TABLE ground.t (id INT PRIMARY KEY, v VARCHAR(20));
        INSERT INTO ground.t VALUES (1, 'replicated');`);
      await r.query(`
        CHANGE MASTER TO MASTER_HOST='127.0.10.1', MASTER_PORT=3306, MASTER_USER='repl',
          MASTER_PASSWORD='repl-secret', MASTER_USE_GTID=slave_pos;
        START SLAVE;`);
      const [rows] = await waitFor(
        async () => {
          const res = await r.query<RowDataPacket[]>("SELECT v FROM ground.t WHERE id = 1");
          return res[0].length ? res : undefined;
        },
        {
          timeoutMs: 60_000,
          what: "the row to reach the replica",
          detail: () => replica.logTail(),
        },
      );
      expect(rows[0]?.v).toBe("replicated");
      const [[status]] = await r.query<RowDataPacket[]>("SHOW SLAVE STATUS");
      expect(status?.Using_Gtid).toBe("Slave_Pos");
      expect(status?.Slave_IO_Running).toBe("Yes");
      expect(status?.Slave_SQL_Running).toBe("Yes");
      const [[pg]] = await p.query<RowDataPacket[]>("SELECT @@gtid_binlog_pos AS pos");
      const [[rg]] = await r.query<RowDataPacket[]>("SELECT @@gtid_slave_pos AS pos");
      expect(rg?.pos).toBe(pg?.pos);
    } finally {
      await p.end();
      await r.end();
    }
  });
});
