import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { RowDataPacket } from "mysql2/promise";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MariaDbServer } from "../../src/lab/mariadb-server.js";
import { waitFor } from "../../src/lab/wait.js";
import { FenceSwitch, type FenceSwitchEvent } from "../../src/mysql/fence-switch.js";

/**
 * The primary's dead man's switch against a real MariaDB: it turns the server read-only at its
 * time, re-arming cancels it without ever touching read_only, and a server frozen past its time
 * (SIGSTOP, as docker pause does) is read-only for the first client served after SIGCONT, with
 * nothing sent by statepilot in between.
 */
describe("the server's fence switch (real MariaDB)", () => {
  const dir = mkdtempSync(join(tmpdir(), "statepilot-fence-switch-"));
  const server = new MariaDbServer({ dir: join(dir, "n1"), host: "127.0.11.1", port: 3306, serverId: 111 });
  const events: FenceSwitchEvent[] = [];
  let sw: FenceSwitch | undefined;
  let stopped = false;

  beforeAll(async () => {
    await server.start();
    sw = new FenceSwitch({ connect: () => server.rootConnection(), flavor: () => "mariadb", onEvent: (e) => events.push(e) });
  }, 180_000);
  afterAll(async () => {
    try {
      if (stopped && server.pid) process.kill(server.pid, "SIGCONT");
      sw?.close();
      await server.destroy();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);

  /** Runs `fn` on a new root connection, closed afterwards. */
  async function onRoot<T>(fn: (c: Awaited<ReturnType<MariaDbServer["rootConnection"]>>) => Promise<T>): Promise<T> {
    const c = await server.rootConnection();
    try {
      return await fn(c);
    } finally {
      c.destroy();
    }
  }

  const readOnly = () => onRoot(async (c) => Number((await c.query<RowDataPacket[]>("SELECT @@global.read_only AS ro"))[0][0]?.ro));
  const setReadOnly = (on: boolean) => onRoot(async (c) => void (await c.query(`SET GLOBAL read_only = ${on ? 1 : 0}`)));
  const switchStatements = () =>
    onRoot(async (c) => Number((await c.query<RowDataPacket[]>("SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST WHERE INFO LIKE 'SET GLOBAL read_only = IF(SLEEP%'"))[0][0]?.n));

  it("turns the server read-only when its time comes", async () => {
    await setReadOnly(false);
    await sw!.arm(300);
    expect(await switchStatements()).toBe(1);
    await waitFor(async () => (events.some((e) => e.kind === "fired") ? true : undefined), { timeoutMs: 30_000, what: "the switch to fire" });
    expect(await readOnly()).toBe(1);
  });

  it("re-arming cancels the armed statement, which never changes read_only", async () => {
    events.length = 0;
    await setReadOnly(false);
    for (let i = 0; i < 20; i++) await sw!.arm(60_000);
    expect(await switchStatements()).toBe(1);
    expect(await readOnly()).toBe(0);
    // A cancelled statement assigns NULL, which the server refuses: read_only set meanwhile stays.
    await setReadOnly(true);
    await sw!.arm(60_000);
    await setReadOnly(false);
    await sw!.disarm();
    expect(await switchStatements()).toBe(0);
    expect(await readOnly()).toBe(0);
    expect(events).toEqual([]);
  });

  it("turning writable carries its deadline: run past it, the statement leaves the server read-only", async () => {
    const { Dialect, parseServerVersion } = await import("../../src/mysql/dialect.js");
    const c = await server.rootConnection();
    try {
      const [rows] = await c.query<RowDataPacket[]>("SELECT VERSION() AS v");
      const d = new Dialect(parseServerVersion(String(rows[0]?.v)));
      await setReadOnly(true);
      for (const sql of d.setReadOnly(false, Date.now() - 1)) await c.query(sql);
      expect(await readOnly()).toBe(1);
      for (const sql of d.setReadOnly(false, Date.now() + 60_000)) await c.query(sql);
      expect(await readOnly()).toBe(0);
    } finally {
      c.destroy();
    }
  });

  it("a server frozen past the switch's time is read-only for the first client after it runs again", async () => {
    await setReadOnly(false);
    await sw!.arm(400);
    const armedAt = Date.now();
    const pid = server.pid!;
    process.kill(pid, "SIGSTOP");
    stopped = true;
    try {
      // The server cannot run while stopped: wait on the clock for the switch's time to pass.
      await waitFor(async () => (Date.now() - armedAt > 1_500 ? true : undefined), { timeoutMs: 10_000, intervalMs: 100, what: "the switch's time to pass" });
    } finally {
      process.kill(pid, "SIGCONT");
      stopped = false;
    }
    expect(await readOnly()).toBe(1);
  });
});
