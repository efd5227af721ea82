import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import mysql from "mysql2/promise";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parsePos } from "../../src/archive/binlog.js";
import { checkArchive, readArchive } from "../../src/archive/layout.js";
import { Lab } from "../../src/lab/cluster.js";
import { type CommitRecord, CommitWriter, recordSecond } from "../../src/lab/commit-writer.js";
import { MinioServer } from "../../src/lab/minio-server.js";
import { waitFor } from "../../src/lab/wait.js";
import { S3Store } from "../../src/snapshot/s3-store.js";
import { archiveCaughtUp, outageUntilLag, writeRate } from "../support/archive-outage.js";
import { runCli } from "../support/cli.js";

/**
 * Point-in-time recovery, end to end (issue 19): a 3-node lossless lab whose binlogs are archived
 * continuously into MinIO, under a writer that records every acknowledged row with its commit time;
 * a failover in the middle; then three new labs restored (`lab up --restore-to T --from LABDIR`) to
 * a point before, across and after the failover. Each must hold exactly the rows committed before
 * its point, with a CHECKSUM TABLE equal to a reference table built from the writer's record.
 */

const work = mkdtempSync(join(tmpdir(), "statepilot-pitr-"));
const minio = new MinioServer("pitr");
const labs: Lab[] = [];
let source: Lab;
let s3: S3Store;

const s3cfg = () => ({ type: "s3" as const, bucket: "pitr", prefix: "it", region: "us-east-1", endpoint: minio.endpoint, forcePathStyle: true, accessKeyId: minio.accessKeyId, secretAccessKey: minio.secretAccessKey });

async function down(lab: Lab): Promise<void> {
  await lab.down({ keep: process.env.STATEPILOT_KEEP_LABS === "1", timeoutMs: 60_000 });
  labs.splice(labs.indexOf(lab), 1);
}

beforeAll(async () => {
  await minio.start();
  s3 = new S3Store({ ...s3cfg(), prefix: "it" });
  source = await Lab.up({
    dir: join(work, "source"),
    nodes: 3,
    subnet: "127.0.93",
    lossless: true,
    owned: true,
    timeoutMs: 240_000,
    mysql: { maximumLagOnFailover: "1h", snapshots: { store: s3cfg(), checkEvery: "1s", archive: { enabled: true, segmentEvery: "500ms" } } },
  });
  labs.push(source);
}, 300_000);

afterAll(async () => {
  try {
    await Promise.all([...labs].map((lab) => lab.down({ keep: process.env.STATEPILOT_KEEP_LABS === "1", timeoutMs: 60_000 })));
  } finally {
    s3?.close();
    await minio.destroy();
    if (process.env.STATEPILOT_KEEP_LABS !== "1") rmSync(work, { recursive: true, force: true });
  }
}, 300_000);

async function query(host: string, lab: Lab, sql: string, values: unknown[] = []): Promise<mysql.RowDataPacket[]> {
  const c = await mysql.createConnection({ host, port: 3306, user: lab.file.credentials.user, password: lab.file.credentials.password, database: lab.file.credentials.database, dateStrings: true });
  try {
    await c.query("SET SESSION time_zone = '+00:00'");
    const [rows] = await c.query<mysql.RowDataPacket[]>(sql, values);
    return rows;
  } finally {
    c.destroy();
  }
}

/** Waits for a whole second to pass the given time (ms) and returns that second's boundary. */
async function secondAfter(ms: number): Promise<number> {
  const boundary = Math.ceil((ms + 1) / 1000) * 1000;
  await waitFor(async () => Date.now() > boundary + 1_100 || undefined, { timeoutMs: 5_000, intervalMs: 50, what: "the next second" });
  return boundary;
}

describe("point-in-time recovery across a failover", () => {
  it("restores exactly the rows committed before T, for T before, across and after the failover", async () => {
    const writer = new CommitWriter(source.file, { table: "commits", pauseMs: 2 });
    await writer.prepare();
    writer.start();
    const first = (await source.primary())!;
    const primaryNode = source.node(first.name);

    // A snapshot under the writer: the restores start from it.
    await waitFor(async () => (writer.acked.length > 200 ? true : undefined), { timeoutMs: 30_000, what: "200 acknowledged rows" });
    const snap = await runCli(["snapshot", "create", "--timeout", "120s", "--config", primaryNode.config]);
    expect(snap.code, snap.output).toBe(0);

    // T1: a whole second, after the snapshot, before the failover.
    const t1 = await secondAfter(Date.now());
    await waitFor(async () => (writer.acked.some((r) => recordSecond(r) * 1000 >= t1 + 1000) ? true : undefined), { timeoutMs: 10_000, what: "rows after T1" });

    // The failover: the primary's node is killed (statepilot and mariadbd).
    const killedAt = Date.now();
    await source.kill(first.name);
    const outage = await writer.waitForWriteElsewhere(first.name, 60_000, killedAt);
    expect(outage.recoveredAt).toBeGreaterThan(killedAt);
    // T2: spans the failover: rows of the old primary and a second of the new one's.
    const t2 = await secondAfter(outage.recoveredAt + 1000);
    // T3: well after it.
    const t3 = await secondAfter(t2 + 2000);
    await waitFor(async () => (writer.acked.some((r) => recordSecond(r) * 1000 >= t3 + 1000) ? true : undefined), { timeoutMs: 10_000, what: "rows after T3" });
    await writer.stop();

    // The writer's record, with uncertain inserts resolved against the surviving primary.
    const primary = (await source.primary())!;
    expect(primary.name).not.toBe(first.name);
    const ph = source.node(primary.name).mysql.host;
    const record = await writer.record(ph, 3306);
    const onPrimary = await query(ph, source, "SELECT id FROM commits");
    expect(onPrimary.length).toBe(record.length);
    const pos = String((await query(ph, source, "SELECT @@GLOBAL.gtid_binlog_pos AS pos"))[0]?.pos);

    // The archive catches up with the primary, with no gap, and follows it across the failover.
    const target = parsePos(pos);
    const check = await waitFor(
      async () => {
        const c = checkArchive(await readArchive(s3, "lab"));
        for (const [d, g] of target) if ((c.head.get(d)?.seq ?? 0n) < g.seq) return undefined;
        return c;
      },
      { timeoutMs: 30_000, intervalMs: 200, what: `the archive to reach ${pos}` },
    );
    expect(check.gaps).toEqual([]);
    const epochs = await readArchive(s3, "lab");
    expect(epochs.map((e) => e.record?.source.node)).toContain(primary.name);
    const status = await runCli(["archive", "status", "--config", source.node(primary.name).config]);
    expect(status.code, status.output).toBe(0);
    expect(status.output).toContain("gaps:      none");
    expect(status.output).toContain("all archived");

    for (const [label, t] of [
      ["before", t1],
      ["across", t2],
      ["after", t3],
    ] as const) {
      const expected = record.filter((r) => recordSecond(r) * 1000 < t);
      expect(expected.length, `${label}: rows before T`).toBeGreaterThan(0);
      expect(expected.length, `${label}: rows after T exist`).toBeLessThan(record.length);
      const nodes = new Set(expected.map((r) => r.node));
      // Before: only the first primary's rows; across and after: both primaries'.
      expect(nodes.has(primary.name), `${label}: rows of the new primary before T`).toBe(label !== "before");
      expect(nodes.has(first.name), `${label}: rows of the first primary before T`).toBe(true);
      const restored = await Lab.up({
        dir: join(work, `restored-${label}`),
        nodes: 1,
        subnet: "127.0.94",
        owned: true,
        timeoutMs: 240_000,
        restoreTo: { point: { time: new Date(t) }, from: source.dir },
      });
      labs.push(restored);
      const host = restored.file.nodes[0]!.mysql.host;
      const rows = await query(host, restored, "SELECT id FROM commits");
      const got = new Set(rows.map((r) => Number(r.id)));
      const want = new Set(expected.map((r) => r.id));
      const missing = [...want].filter((id) => !got.has(id));
      const extra = [...got].filter((id) => !want.has(id));
      expect({ label, missing: missing.length, extra: extra.length }).toEqual({ label, missing: 0, extra: 0 });
      // The reference: the writer's record of those rows, as a table, checksummed the same way.
      await query(host, restored, "CREATE TABLE reference LIKE commits");
      for (let i = 0; i < expected.length; i += 500) {
        const chunk = expected.slice(i, i + 500);
        await query(host, restored, `INSERT INTO reference (id, at, node) VALUES ${chunk.map(() => "(?, ?, ?)").join(", ")}`, chunk.flatMap((r: CommitRecord) => [r.id, r.at, r.node]));
      }
      const sums = await query(host, restored, "CHECKSUM TABLE commits, reference");
      expect(sums[0]!.Checksum, label).toBe(sums[1]!.Checksum);
      console.log(`restore ${label} ${new Date(t).toISOString()}: ${got.size} rows of ${record.length} (${[...nodes].join(", ")}), checksum ${sums[0]!.Checksum}`);
      await down(restored);
    }
  }, 600_000);

  it("a store outage (MinIO killed for 60 s of archive lag) neither blocks nor slows the primary, shows as lag, and leaves no gap once the store is back", async () => {
    const writer = new CommitWriter(source.file, { table: "outage", pauseMs: 2 });
    await writer.prepare();
    writer.start();
    const before = await writeRate(writer, 5_000);
    // The outage (MinIO SIGKILLed) lasts until the holder reports 60 s of lag: segments pile up in
    // its spool, the recovery point ages, and the primary's writes go on meanwhile. MinIO comes
    // back whatever happened, so the tests after this one have it.
    const { holder, writesPerSecond: during, seconds } = await outageUntilLag(source, writer, { lagSeconds: 60, timeoutMs: 150_000, fail: () => minio.kill(), heal: async () => void (await minio.start()) });
    await writer.stop();
    console.log(`writes/s before the outage ${before.toFixed(0)}, during its ${seconds.toFixed(0)} s ${during.toFixed(0)}; holder during it: ${JSON.stringify(holder)}`);
    expect(during).toBeGreaterThan(before * 0.5);
    expect(holder.lastError).toMatch(/upload/);

    const primary = (await source.primary())!;
    const ph = source.node(primary.name).mysql.host;
    const pos = parsePos(String((await query(ph, source, "SELECT @@GLOBAL.gtid_binlog_pos AS pos"))[0]?.pos));
    const check = await archiveCaughtUp(s3, pos, 60_000);
    expect(check.gaps).toEqual([]);
    // And what was written during the outage restores (to the primary's position, by GTID).
    const restored = await Lab.up({ dir: join(work, "restored-outage"), nodes: 1, subnet: "127.0.94", owned: true, timeoutMs: 240_000, restoreTo: { point: { gtid: pos }, from: source.dir } });
    labs.push(restored);
    const rows = await query(restored.file.nodes[0]!.mysql.host, restored, "SELECT COUNT(*) AS n FROM outage");
    const record = await writer.record(ph, 3306);
    expect(Number(rows[0]!.n)).toBe(record.length);
    await down(restored);
  }, 300_000);

  it("the archiver's holder crashes: another node takes the lock and continues from the archive's head, with no gap and no duplicate", async () => {
    // The node killed by the failover comes back first (a replica again), so that lossless writes
    // keep an acknowledging replica whichever node dies now.
    for (const n of source.file.nodes) if (!(await source.view(n)).reachable) await source.start(n.name);
    await source.waitHealthy(120_000);
    const writer = new CommitWriter(source.file, { table: "crash", pauseMs: 2 });
    await writer.prepare();
    writer.start();
    type View = { archive?: { holder: boolean; epoch?: string } };
    const holderNow = async () => {
      for (const n of source.file.nodes) {
        const v = (await fetch(`${n.http}/status`, { signal: AbortSignal.timeout(2_000) }).then((r) => r.json() as Promise<View>).catch(() => undefined))?.archive;
        if (v?.holder) return { name: n.name, epoch: v.epoch };
      }
      return undefined;
    };
    const holder = await waitFor(holderNow, { timeoutMs: 30_000, what: "the archiver's holder" });
    await waitFor(async () => (writer.acked.length > 100 ? true : undefined), { timeoutMs: 30_000, what: "100 rows" });
    await source.kill(holder.name);
    const next = await waitFor(async () => {
      const h = await holderNow();
      return h && h.name !== holder.name ? h : undefined;
    }, { timeoutMs: 60_000, intervalMs: 250, what: `another node to take the archiver's lock from ${holder.name}` });
    await waitFor(async () => (writer.acked.length > 300 ? true : undefined), { timeoutMs: 60_000, what: "300 rows" });
    await writer.stop();
    console.log(`archiver ${holder.name} killed; ${next.name} took over (epoch ${next.epoch})`);

    const primary = (await source.primary())!;
    const ph = source.node(primary.name).mysql.host;
    const posText = String((await query(ph, source, "SELECT @@GLOBAL.gtid_binlog_pos AS pos"))[0]?.pos);
    const pos = parsePos(posText);
    const check = await waitFor(
      async () => {
        const c = checkArchive(await readArchive(s3, "lab"));
        for (const [d, g] of pos) if ((c.head.get(d)?.seq ?? 0n) < g.seq) return undefined;
        return c;
      },
      { timeoutMs: 60_000, intervalMs: 250, what: `the archive to reach ${posText}` },
    );
    expect(check.gaps).toEqual([]);
    const epochs = await readArchive(s3, "lab");
    expect(epochs.at(-1)?.record?.node).toBe(next.name);
    const restored = await Lab.up({ dir: join(work, "restored-crash"), nodes: 1, subnet: "127.0.94", owned: true, timeoutMs: 240_000, restoreTo: { point: { gtid: pos }, from: source.dir } });
    labs.push(restored);
    const rh = restored.file.nodes[0]!.mysql.host;
    const record = await writer.record(ph, 3306);
    expect(Number((await query(rh, restored, "SELECT COUNT(*) AS n FROM crash"))[0]!.n)).toBe(record.length);
    await down(restored);
  }, 300_000);
});
