import { describe, expect, it } from "vitest";
import { Mysql } from "../../src/config/schema.js";
import { mysqldArgv } from "../../src/mysql/provision.js";

describe("mysqld arguments", () => {
  const base = { cluster: "c", datadir: "/var/lib/mysql", stopWithSupervisor: false };
  it("listens on the advertised address by default, never on every interface", () => {
    const cfg = Mysql.parse(base);
    const argv = mysqldArgv(cfg, { binary: "/usr/sbin/mariadbd", flavor: "mariadb", serverId: 1, reportHost: "10.1.2.3" });
    expect(argv).toContain("--bind-address=10.1.2.3");
    expect(argv.some((a) => a === "--bind-address=0.0.0.0")).toBe(false);
  });
  it("an explicit bind wins", () => {
    const cfg = Mysql.parse({ ...base, bind: "0.0.0.0" });
    expect(mysqldArgv(cfg, { binary: "/usr/sbin/mariadbd", flavor: "mariadb", serverId: 1, reportHost: "10.1.2.3" })).toContain("--bind-address=0.0.0.0");
  });
});
