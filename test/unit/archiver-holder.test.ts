import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { BinlogArchiver } from "../../src/archive/archiver.js";
import { systemClock } from "../../src/cluster/clock.js";
import { MemoryStoreServer } from "../../src/cluster/memory-store.js";
import type { MemberRecord } from "../../src/cluster/records.js";
import { Archive } from "../../src/config/schema.js";
import { waitFor } from "../../src/lab/wait.js";
import { createLogger } from "../../src/log.js";
import { LocalStore } from "../../src/snapshot/local-store.js";

const member = (node: string): MemberRecord => ({
  node, serverId: 1, host: "127.0.0.1", port: 3306, role: "replica", up: true, executed: "", received: "",
  lagSeconds: 0, sqlError: "", nofailover: false, blocked: "", maintenance: false, source: "", at: "",
});

const cleanup: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f();
});

describe("BinlogArchiver: the holder of the archiver's lock", () => {
  it("keeps the lock through a passing fault (critical for one or two checks) and lets it go after three in a row", async () => {
    const dir = mkdtempSync(join(tmpdir(), "statepilot-archiver-"));
    cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
    // No leader in the store: the holder takes the lock but starts no stream (no mariadb-binlog runs).
    process.env.STATEPILOT_MARIADB_BINLOG_BIN = "/bin/true";
    cleanup.push(() => void delete process.env.STATEPILOT_MARIADB_BINLOG_BIN);
    const server = new MemoryStoreServer({ clock: systemClock, timing: { leaseMs: 60_000, lockDelayMs: 0 } });
    const store = server.connect("a");
    await store.touchMember(member("a"), { status: "passing", output: "" });
    let health = "passing";
    let checks = 0;
    const archiver = new BinlogArchiver({
      cfg: Archive.parse({ enabled: true, checkEvery: "200ms" }),
      cluster: "c", node: "a", serverId: 1, datadir: join(dir, "data"), store: new LocalStore(join(dir, "store")), clusterStore: store,
      repl: { user: "repl", password: "secret" },
      ha: () => {
        checks++;
        return { role: "replica", health };
      },
      logger: createLogger({ level: "silent", format: "json" }), metrics: undefined,
    });
    archiver.start();
    cleanup.push(() => archiver.stop());
    await waitFor(async () => archiver.status().holder || undefined, { timeoutMs: 10_000, what: "the archiver's lock" });

    health = "critical";
    const seen = await waitFor(async () => (archiver.status().state.includes("check 2 of 3") ? archiver.status() : undefined), { timeoutMs: 10_000, what: "the second check that finds the node critical" });
    expect(seen.holder).toBe(true);
    expect((await store.archiver())?.node).toBe("a");

    // One passing check resets the count: two more critical checks do not make it let go.
    health = "passing";
    const c0 = checks;
    await waitFor(async () => (checks > c0 + 1 ? true : undefined), { timeoutMs: 10_000, what: "a passing check" });
    expect(archiver.status().state).not.toContain("keeps the lock");
    health = "critical";
    await waitFor(async () => (archiver.status().state.includes("check 2 of 3") ? true : undefined), { timeoutMs: 10_000, what: "two critical checks again" });
    expect(archiver.status().holder).toBe(true);

    // The third check in a row lets it go.
    await waitFor(async () => (!archiver.status().holder ? true : undefined), { timeoutMs: 10_000, what: "the lock given up" });
    expect(await store.archiver()).toBeUndefined();
    expect(archiver.status().state).toBe("idle");
  });
});
