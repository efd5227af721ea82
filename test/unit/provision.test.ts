import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { Mysql } from "../../src/config/schema.js";
import { createLogger } from "../../src/log.js";
import { discardInterruptedRestore, inspectDatadir, markRestoring, mysqldArgv, restoreFinished } from "../../src/mysql/provision.js";

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

describe("a restore interrupted in the middle", () => {
  const root = mkdtempSync(join(tmpdir(), "statepilot-provision-"));
  afterAll(() => rmSync(root, { recursive: true, force: true }));
  const logger = createLogger({ level: "silent", format: "json" });

  it("is found on the next start and emptied, so that the node restores again instead of starting at the wrong point", () => {
    const datadir = join(root, "killed");
    markRestoring(datadir);
    // What a restore killed while applying binlogs leaves: a datadir that looks initialised.
    mkdirSync(join(datadir, "mysql"));
    writeFileSync(join(datadir, "ibdata1"), "x");
    mkdirSync(join(datadir, "lost+found"));
    expect(inspectDatadir(datadir)).toBe("interrupted");
    expect(discardInterruptedRestore(datadir, logger)).toBe(true);
    expect(readdirSync(datadir)).toEqual(["lost+found"]);
    expect(inspectDatadir(datadir)).toBe("empty");
  });

  it("a finished restore leaves an initialised datadir that is kept", () => {
    const datadir = join(root, "finished");
    markRestoring(datadir);
    mkdirSync(join(datadir, "mysql"));
    restoreFinished(datadir);
    expect(existsSync(join(datadir, ".statepilot-restoring"))).toBe(false);
    expect(discardInterruptedRestore(datadir, logger)).toBe(false);
    expect(inspectDatadir(datadir)).toBe("initialized");
  });
});
