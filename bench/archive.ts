/**
 * Binlog archive benchmark: a real 2-node lab (a primary and the replica that archives) with MinIO
 * as the store, under a writer of at least 1,000 transactions/s (--workers connections, default 32,
 * for --seconds, default 20). Measures:
 *   lag:     for a sample of acknowledged transactions (every 10th, its GTID read back with
 *            @@last_gtid), the time from its acknowledgement to the first listing of the store that
 *            shows the segment holding it (the store is listed every 50 ms): the recovery point a
 *            lost cluster would have had at that moment;
 *   restore: `restoreToPoint` to the primary's last GTID into a fresh datadir (the snapshot taken
 *            before the writes, then every archived transaction): MiB/s of archived binlog applied.
 * Last line: archive: lag_p50_ms=N lag_p99_ms=N restore_mb_s=N
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import mysql from "mysql2/promise";
import pino from "pino";
import { parsePos } from "../src/archive/binlog.js";
import { parseSegmentKey } from "../src/archive/layout.js";
import { restoreToPoint } from "../src/archive/restore.js";
import { cliPath, Lab } from "../src/lab/cluster.js";
import { MinioServer } from "../src/lab/minio-server.js";
import { S3Store } from "../src/snapshot/s3-store.js";
import { runMain } from "./run-main.js";

const argv = process.argv.slice(2);
const opt = (name: string, fallback: number) => {
  const i = argv.indexOf(`--${name}`);
  const v = i >= 0 ? Number(argv[i + 1]) : fallback;
  if (!(Number.isFinite(v) && v > 0)) throw new Error(`--${name}: expected a positive number, got ${argv[i + 1]}`);
  return v;
};
const SECONDS = opt("seconds", 20);
const WORKERS = opt("workers", 32);

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] ?? Number.NaN;
};

async function main(): Promise<void> {
  const work = mkdtempSync(join(tmpdir(), "statepilot-bench-archive-"));
  const minio = await new MinioServer("bench", join(work, "minio")).start();
  const store = { type: "s3" as const, bucket: "bench", prefix: "bench", region: "us-east-1", endpoint: minio.endpoint, forcePathStyle: true, accessKeyId: minio.accessKeyId, secretAccessKey: minio.secretAccessKey };
  const s3 = new S3Store(store);
  let lab: Lab | undefined;
  try {
    lab = await Lab.up({ dir: join(work, "lab"), nodes: 2, subnet: "127.0.95", owned: true, mysql: {
        // The lab's own arguments, with InnoDB flushing its log once a second (not at each commit):
        // the figure is the archive's, not the fsync rate of this machine's disk.
        args: ["--innodb-buffer-pool-size=64M", "--innodb-log-file-size=32M", "--performance-schema=OFF", "--max-connections=200", "--innodb-flush-log-at-trx-commit=2"],
        snapshots: { store, checkEvery: "1s", archive: { enabled: true } },
      }, log: (l) => console.log(l) });
    const primary = (await lab.primary())!;
    const pn = lab.node(primary.name);
    const creds = lab.file.credentials;
    const connect = () => mysql.createConnection({ host: pn.mysql.host, port: 3306, user: creds.user, password: creds.password, database: creds.database });
    const setup = await connect();
    await setup.query("CREATE TABLE bench (id BIGINT PRIMARY KEY, pad VARCHAR(255) NOT NULL)");
    setup.destroy();
    execFileSync(process.execPath, [cliPath(), "snapshot", "create", "--timeout", "120s", "--config", pn.config], { stdio: "inherit" });

    // The store, listed every 50 ms: when each segment was first seen.
    const seen = new Map<string, number>();
    let listing = true;
    const lister = (async () => {
      while (listing) {
        for (const o of await s3.list("lab/binlog/").catch(() => [])) if (!seen.has(o.key)) seen.set(o.key, Date.now());
        await sleep(50);
      }
    })();

    const samples: Array<{ seq: bigint; domain: number; ackedAt: number }> = [];
    let txs = 0;
    let running = true;
    let nextId = 1;
    const pad = "p".repeat(200);
    const started = Date.now();
    const workers = Array.from({ length: WORKERS }, async () => {
      const c = await connect();
      let n = 0;
      while (running) {
        await c.query("INSERT INTO bench (id, pad) VALUES (?, ?)", [nextId++, pad]);
        const ackedAt = Date.now();
        txs++;
        if (++n % 10 === 0) {
          const [rows] = await c.query<mysql.RowDataPacket[]>("SELECT @@last_gtid AS g");
          const g = [...parsePos(String(rows[0]?.g)).values()][0];
          if (g) samples.push({ seq: g.seq, domain: g.domain, ackedAt });
        }
      }
      c.destroy();
    });
    await sleep(SECONDS * 1000);
    running = false;
    await Promise.all(workers);
    const elapsed = (Date.now() - started) / 1000;
    const c = await connect();
    const [pos] = await c.query<mysql.RowDataPacket[]>("SELECT @@GLOBAL.gtid_binlog_pos AS p");
    c.destroy();
    const last = parsePos(String(pos[0]?.p));

    // Every sample's segment must show up; then lag = first seen - acknowledged.
    const lags: number[] = [];
    const deadline = Date.now() + 60_000;
    for (;;) {
      const segs = [...seen.entries()].map(([k, t]) => ({ s: parseSegmentKey(k), t })).filter((x) => x.s);
      lags.length = 0;
      let missing = 0;
      for (const smp of samples) {
        let at = Number.POSITIVE_INFINITY;
        for (const { s, t } of segs) {
          const f = s!.first.get(smp.domain);
          const l = s!.last.get(smp.domain);
          if (f && l && f.seq <= smp.seq && smp.seq <= l.seq) at = Math.min(at, t);
        }
        if (at === Number.POSITIVE_INFINITY) missing++;
        else lags.push(at - smp.ackedAt);
      }
      if (!missing) break;
      if (Date.now() > deadline) throw new Error(`${missing} sampled transactions never reached the store`);
      await sleep(200);
    }
    listing = false;
    await lister;
    const rate = txs / elapsed;
    console.log(`writer: ${txs} transactions in ${elapsed.toFixed(1)} s (${rate.toFixed(0)}/s, ${WORKERS} connections); ${seen.size} archive objects; ${samples.length} sampled`);
    if (rate < 1000) console.log(`warning: the writer reached ${rate.toFixed(0)} tx/s, below the 1,000/s the figure is meant for`);

    const datadir = join(work, "restored");
    const r = await restoreToPoint({ store: s3, cluster: "lab", datadir, point: { gtid: last }, logger: pino({ level: "silent" }), progress: (l) => console.log(`  ${l}`) });
    const mbs = r.bytesApplied / 1048576 / (r.binlogMs / 1000);
    console.log(`restore: snapshot ${(r.snapshotMs / 1000).toFixed(1)} s, then ${r.transactions} transactions (${(r.bytesApplied / 1048576).toFixed(1)} MiB of binlog) in ${(r.binlogMs / 1000).toFixed(1)} s; restored to ${r.gtid} (primary at ${String(pos[0]?.p)})`);
    if (r.gtid !== String(pos[0]?.p)) throw new Error(`the restore reached ${r.gtid}, not the primary's ${String(pos[0]?.p)}`);
    console.log(`archive: lag_p50_ms=${Math.round(pct(lags, 50))} lag_p99_ms=${Math.round(pct(lags, 99))} restore_mb_s=${mbs.toFixed(1)}`);
  } finally {
    s3.close();
    await lab?.down();
    await minio.destroy();
    rmSync(work, { recursive: true, force: true });
  }
}

runMain(main);
