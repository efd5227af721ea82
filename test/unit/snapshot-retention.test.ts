import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { bufferSource } from "../../src/snapshot/byte-source.js";
import { LocalStore } from "../../src/snapshot/local-store.js";
import { choosePartSize, listSnapshots, manifestKey, pruneSnapshots, type Manifest } from "../../src/snapshot/snapshot.js";

const dir = mkdtempSync(join(tmpdir(), "statepilot-retention-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function seed(store: LocalStore, ages: number[], now: number): Promise<string[]> {
  const ids: string[] = [];
  for (const [i, days] of ages.entries()) {
    const id = `snap-${i}`;
    const m: Manifest = { id, cluster: "c", createdAt: new Date(now - days * 86_400_000).toISOString(), node: "n", flavor: "mariadb", version: "10.11", gtid: `0-1-${i}`, key: `c/${id}/backup.xbstream`, compression: "none", size: 3, rawSize: 3, sha256: "x", durationMs: 1, binlogFile: "" };
    await store.upload(m.key, bufferSource(Buffer.from("abc")), { partSize: 5 << 20 });
    await store.putText(manifestKey("c", id), JSON.stringify(m));
    ids.push(id);
  }
  return ids;
}

describe("snapshot retention", () => {
  const now = Date.parse("2026-11-22T00:00:00Z");

  it("keeps the newest keepLast and, with keepDays, everything newer than that", async () => {
    const store = new LocalStore(join(dir, "a"));
    await seed(store, [0.5, 1.5, 2.5, 3.5, 9, 20], now);
    const deleted = await pruneSnapshots(store, "c", 2, 3, now);
    expect(deleted.sort()).toEqual(["snap-3", "snap-4", "snap-5"]);
    expect((await listSnapshots(store, "c")).map((m) => m.id)).toEqual(["snap-0", "snap-1", "snap-2"]);
    expect(await store.list("c/snap-5/")).toEqual([]);
  });

  it("without keepDays keeps exactly keepLast", async () => {
    const store = new LocalStore(join(dir, "b"));
    await seed(store, [1, 2, 3, 4], now);
    expect((await pruneSnapshots(store, "c", 3, undefined, now)).sort()).toEqual(["snap-3"]);
  });

  it("sizes parts so that a large datadir stays under S3's 10,000 parts", () => {
    const MiB = 1024 * 1024;
    expect(choosePartSize(100 * MiB)).toBe(32 * MiB);
    expect(choosePartSize(180 * 1024 * MiB)).toBe(32 * MiB);
    expect(choosePartSize(200 * 1024 * MiB)).toBeGreaterThan(32 * MiB);
    const tb = 2 * 1024 * 1024 * MiB;
    const part = choosePartSize(tb);
    expect((tb * 1.5) / part).toBeLessThanOrEqual(9000);
    expect(choosePartSize(tb, 64 * MiB)).toBe(64 * MiB);
  });
});

describe("snapshot eligibility", () => {
  it("counts only this cluster's healthy replicas (two clusters may share a service name)", async () => {
    const { hasHealthyReplica } = await import("../../src/snapshot/scheduler.js");
    const other = { healthy: true, tags: ["replica"], meta: { cluster: "b" } };
    expect(hasHealthyReplica([other], "a")).toBe(false);
    expect(hasHealthyReplica([other, { healthy: true, tags: ["replica"], meta: { cluster: "a" } }], "a")).toBe(true);
    expect(hasHealthyReplica([{ healthy: false, tags: ["replica"], meta: { cluster: "a" } }], "a")).toBe(false);
  });
});

describe("snapshot requests", () => {
  it("a request whose client stopped waiting is not taken later", async () => {
    const { requestExpired } = await import("../../src/snapshot/scheduler.js");
    const now = Date.parse("2026-12-03T10:00:00Z");
    expect(requestExpired({ expiresAt: "2026-12-03T09:59:59Z" }, now)).toBe(true);
    expect(requestExpired({ expiresAt: "2026-12-03T10:00:01Z" }, now)).toBe(false);
    // Requests written by an older client carry no deadline: still honoured.
    expect(requestExpired({}, now)).toBe(false);
  });
});
