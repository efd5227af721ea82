import { describe, expect, it } from "vitest";
import { Dialect, parseServerVersion, replicationArgs } from "../../src/mysql/dialect.js";

describe("SQL by flavor and version", () => {
  it("detects the flavor from the server version", () => {
    expect(parseServerVersion("10.11.19-MariaDB-0+deb12u1-log")).toEqual({ flavor: "mariadb", version: "10.11.19", major: 10, minor: 11 });
    expect(parseServerVersion("mysqld  Ver 8.4.3 for Linux on x86_64 (MySQL Community Server - GPL)").flavor).toBe("mysql");
    expect(() => parseServerVersion("garbage")).toThrow(/cannot read a server version/);
  });

  it("MariaDB: CHANGE MASTER with MASTER_USE_GTID=slave_pos", () => {
    const d = new Dialect(parseServerVersion("10.11.19-MariaDB"));
    expect(d.changeSource()).toMatch(/^CHANGE MASTER TO .*MASTER_USE_GTID = slave_pos/);
    expect(d.startReplica()).toBe("START SLAVE");
    expect(d.setReadOnly(true)).toEqual(["SET GLOBAL read_only = ON"]);
    expect(d.waitForApplied()).toContain("MASTER_GTID_WAIT");
  });

  it("MySQL 8.4: no CHANGE MASTER or SLAVE statements; super_read_only fences", () => {
    const d = new Dialect(parseServerVersion("8.4.3"));
    const all = [d.changeSource(), d.startReplica(), d.stopReplica(), d.stopReceiver(), d.resetReplicaAll(), d.showReplicaStatus()].join("\n");
    expect(all).not.toMatch(/MASTER|SLAVE/);
    expect(d.changeSource()).toMatch(/^CHANGE REPLICATION SOURCE TO .*SOURCE_AUTO_POSITION = 1/);
    expect(d.setReadOnly(true)).toEqual(["SET GLOBAL super_read_only = ON"]);
    expect(d.waitForApplied()).toContain("WAIT_FOR_EXECUTED_GTID_SET");
    const st = d.parseReplicaStatus({ Replica_IO_Running: "Yes", Replica_SQL_Running: "Yes", Seconds_Behind_Source: 3, Source_Host: "h", Source_Port: 3306, Retrieved_Gtid_Set: "u:1-5", Last_SQL_Errno: 0 });
    expect(st).toMatchObject({ configured: true, ioRunning: "Yes", sqlRunning: true, lagSeconds: 3, received: "u:1-5" });
  });

  it("MySQL 8.0 before 8.0.23 keeps the old syntax", () => {
    expect(new Dialect(parseServerVersion("8.0.21")).changeSource()).toMatch(/^CHANGE MASTER TO .*MASTER_AUTO_POSITION = 1/);
  });

  it("every server starts read-only; lossless adds semi-sync AFTER_SYNC and replica-role crash recovery", () => {
    const m = replicationArgs("mariadb", { serverId: 7, reportHost: "h", lossless: true, ackTimeoutMs: 1000 });
    expect(m).toEqual(expect.arrayContaining(["--server-id=7", "--read-only=1", "--gtid-strict-mode=1", "--skip-slave-start", "--rpl-semi-sync-master-wait-point=AFTER_SYNC", "--init-rpl-role=SLAVE"]));
    const y = replicationArgs("mysql", { serverId: 7, reportHost: "h", lossless: false, ackTimeoutMs: 1000 });
    expect(y).toEqual(expect.arrayContaining(["--gtid-mode=ON", "--super-read-only=ON", "--skip-replica-start"]));
    expect(y.join(" ")).not.toContain("semi");
  });
});
