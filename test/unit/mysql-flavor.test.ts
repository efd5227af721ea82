import { describe, expect, it } from "vitest";
import { flavorArgs } from "../../src/mysql/provision.js";
import { divergence } from "../../src/mysql/ha/decide.js";
import type { LocalState } from "../../src/mysql/ha/database.js";

const U = "3e11fa47-71ca-11e1-9e33-c80aa9429562";

describe("MySQL-only server flags and checks", () => {
  it("MySQL gets --mysqlx=OFF, and --secure-file-priv=NULL only when no option file is read; MariaDB gets neither", () => {
    expect(flavorArgs({ defaultsFile: "none" }, "mysql")).toEqual(["--mysqlx=OFF", "--secure-file-priv=NULL"]);
    expect(flavorArgs({ defaultsFile: undefined }, "mysql")).toEqual(["--mysqlx=OFF"]);
    expect(flavorArgs({ defaultsFile: "none" }, "mariadb")).toEqual([]);
  });

  it("a former MySQL primary with a tail the new primary lacks is a diverged former primary", () => {
    const local = { executed: `${U}:1-60` } as LocalState;
    const primary = { executed: `${U}:1-59`, state: `${U}:1-59`, readOnly: false };
    expect(divergence("mysql", local, primary, true, 3)).toMatch(/^diverged former primary .*errant GTIDs/);
    expect(divergence("mysql", local, primary, false, 3)).toMatch(/^errant GTIDs/);
    expect(divergence("mysql", { executed: `${U}:1-59` } as LocalState, primary, true, 3)).toBe("");
  });
});
