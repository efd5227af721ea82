import { mkdtempSync, readFileSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import mysql from "mysql2/promise";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Lab } from "../../src/lab/cluster.js";
import { CommitWriter } from "../../src/lab/commit-writer.js";
import { MinioServer } from "../../src/lab/minio-server.js";
import { waitFor } from "../../src/lab/wait.js";
import { S3Store } from "../../src/snapshot/s3-store.js";
import { type ArchiveView, archiveCaughtUp, holderView, tearDownArchiveLab, writeRate } from "../support/archive-outage.js";

/**
 * Issue 19: the store is down for longer than the archive's spool can hold (`spoolLimit`: 1 MiB
 * here, the smallest allowed). The holder spools up to the limit, then stops streaming and says so
 * in /status (the alert), the spool stays bounded, the primary's writes go on at their rate; once
 * the store is back the backlog goes up, a new stream starts from the archive's head by GTID, and
 * the archive reaches the primary with no gap.
 */
const LIMIT = 1024 * 1024;
const minio = new MinioServer("pitr-spool");
let work = "";
let lab: Lab;
let s3: S3Store;

const holder = () => holderView(lab);

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), "statepilot-pitr-spool-"));
  await minio.start();
  const s3cfg = { type: "s3" as const, bucket: "pitr-spool", prefix: "it", region: "us-east-1", endpoint: minio.endpoint, forcePathStyle: true, accessKeyId: minio.accessKeyId, secretAccessKey: minio.secretAccessKey };
  s3 = new S3Store(s3cfg);
  lab = await Lab.up({
    dir: join(work, "lab"),
    nodes: 2,
    subnet: "127.0.97",
    lossless: true,
    owned: true,
    timeoutMs: 240_000,
    mysql: { snapshots: { store: s3cfg, checkEvery: "1s", archive: { enabled: true, segmentEvery: "500ms", segmentBytes: 65_536, spoolLimit: LIMIT } } },
  });
}, 300_000);

afterAll(() => tearDownArchiveLab({ lab, s3, minio, work }), 120_000);

describe("the store stays down past the archive's spool limit", () => {
  it("the spool stays bounded and says so, the primary goes on, and the archive resumes from its head with no gap", { timeout: 300_000 }, async () => {
    // Each node's config holds the store's secret key: readable by its owner only.
    for (const n of lab.file.nodes) {
      expect(readFileSync(n.config, "utf8")).toContain(minio.secretAccessKey);
      expect((statSync(n.config).mode & 0o777).toString(8), n.config).toBe("600");
    }
    await waitFor(async () => ((await holder())?.lagSeconds ?? 99) < 5 || undefined, { timeoutMs: 60_000, what: "the archiver to stream" });
    const writer = new CommitWriter(lab.file, { table: "spool", pauseMs: 1 });
    await writer.prepare();
    writer.start();
    try {
      const before = await writeRate(writer, 5_000);
      await minio.kill();
      const n0 = writer.acked.length;
      const t0 = Date.now();
      let peak = 0;
      let last: ArchiveView | undefined;
      try {
        // The holder stops its stream at the limit and says why.
        const full = await waitFor(
          async () => {
            last = await holder();
            peak = Math.max(peak, last?.spoolBytes ?? 0);
            return last && /spool reached its limit/.test(last.state) ? last : undefined;
          },
          { timeoutMs: 150_000, intervalMs: 200, what: "the holder to stop streaming at the spool limit", detail: () => JSON.stringify(last) },
        );
        // Writes go on past it: as many again as it took to fill the spool, watched all along.
        const more = writer.acked.length - n0;
        await waitFor(
          async () => {
            last = await holder();
            peak = Math.max(peak, last?.spoolBytes ?? 0);
            return writer.acked.length >= n0 + 2 * more || undefined;
          },
          { timeoutMs: 150_000, intervalMs: 200, what: "writes past the full spool" },
        );
        const during = ((writer.acked.length - n0) * 1000) / (Date.now() - t0);
        console.log(`writes/s before ${before.toFixed(0)}, during the outage ${during.toFixed(0)}; spool peak ${peak} bytes (limit ${LIMIT}); holder at the limit: ${JSON.stringify(full)}`);
        expect(during).toBeGreaterThan(before * 0.5);
        // Bounded: the limit plus what arrives between two checks of it.
        expect(peak).toBeGreaterThan(LIMIT / 2);
        expect(peak).toBeLessThan(LIMIT + 512 * 1024);
      } finally {
        await minio.start();
      }
      await writer.stop();
      const primary = (await lab.primary())!;
      const c = await mysql.createConnection({ host: lab.node(primary.name).mysql.host, port: 3306, user: lab.file.credentials.user, password: lab.file.credentials.password });
      const [rows] = await c.query<mysql.RowDataPacket[]>("SELECT @@GLOBAL.gtid_binlog_pos AS pos");
      c.destroy();
      const check = await archiveCaughtUp(s3, String(rows[0]?.pos), 120_000);
      expect(check.gaps).toEqual([]);
      const after = await waitFor(async () => {
        const v = await holder();
        return v && v.spoolBytes < LIMIT / 2 && !/limit/.test(v.state) ? v : undefined;
      }, { timeoutMs: 60_000, what: "the holder streaming again with its spool emptied" });
      console.log(`after the store came back: ${JSON.stringify(after)}`);
    } finally {
      await writer.stop();
    }
  });
});
