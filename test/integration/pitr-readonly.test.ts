import { randomBytes } from "node:crypto";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execa } from "execa";
import mysql from "mysql2/promise";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { findBinary } from "../../src/binaries.js";
import { Lab } from "../../src/lab/cluster.js";
import { CommitWriter } from "../../src/lab/commit-writer.js";
import { MinioServer } from "../../src/lab/minio-server.js";
import { waitFor } from "../../src/lab/wait.js";
import { S3Store } from "../../src/snapshot/s3-store.js";
import { archiveCaughtUp, holderView, outageUntilLag, tearDownArchiveLab, writeRate } from "../support/archive-outage.js";

/**
 * Issue 19: the binlog archive's bucket turns read-only (a real MinIO user whose policy is switched
 * from readwrite to readonly with `mc admin policy`, as an operator or a broken IAM change would):
 * the primary is neither blocked nor slowed, the holder shows the failing uploads as lag, and once
 * the policy is back the archive catches up with no gap.
 */
const minio = new MinioServer("pitr-ro");
let work = "";
let lab: Lab;
let s3: S3Store;
const user = "archiver";
const secret = randomBytes(18).toString("base64url");
let mcEnv: NodeJS.ProcessEnv;
const mc = (args: string[], input?: string) => execa(findBinary("mc"), args, { env: mcEnv, ...(input !== undefined ? { input } : {}) });

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), "statepilot-pitr-ro-"));
  await minio.start();
  // mc's alias "ro" is the root account, given in the environment (never in argv).
  mcEnv = { ...process.env, MC_CONFIG_DIR: join(work, "mc"), MC_HOST_ro: `http://${minio.accessKeyId}:${minio.secretAccessKey}@${minio.endpoint.replace(/^http:\/\//, "")}` };
  // The new user's key and secret go in on stdin: a secret never in argv, even a test's.
  await mc(["admin", "user", "add", "ro"], `${user}\n${secret}\n`);
  await mc(["admin", "policy", "attach", "ro", "readwrite", "--user", user]);
  const s3cfg = { type: "s3" as const, bucket: "pitr-ro", prefix: "it", region: "us-east-1", endpoint: minio.endpoint, forcePathStyle: true, accessKeyId: user, secretAccessKey: secret };
  s3 = new S3Store(s3cfg);
  lab = await Lab.up({
    dir: join(work, "lab"),
    nodes: 2,
    subnet: "127.0.96",
    lossless: true,
    owned: true,
    timeoutMs: 240_000,
    mysql: { snapshots: { store: s3cfg, checkEvery: "1s", archive: { enabled: true, segmentEvery: "500ms" } } },
  });
}, 300_000);

afterAll(() => tearDownArchiveLab({ lab, s3, minio, work }), 120_000);

describe("the binlog archive's bucket turns read-only", () => {
  it("neither blocks nor slows the primary, shows as lag, and leaves no gap once writable again", { timeout: 300_000 }, async () => {
    await waitFor(async () => ((await holderView(lab))?.lagSeconds ?? 99) < 5 || undefined, { timeoutMs: 60_000, what: "the archiver to stream" });
    const writer = new CommitWriter(lab.file, { table: "ro", pauseMs: 2 });
    await writer.prepare();
    writer.start();
    const before = await writeRate(writer, 5_000);
    // The bucket stays read-only until the holder reports 20 s of lag with segments waiting.
    const { holder, writesPerSecond: during, seconds } = await outageUntilLag(lab, writer, {
      lagSeconds: 20,
      timeoutMs: 120_000,
      fail: async () => {
        await mc(["admin", "policy", "detach", "ro", "readwrite", "--user", user]);
        await mc(["admin", "policy", "attach", "ro", "readonly", "--user", user]);
      },
      heal: async () => {
        await mc(["admin", "policy", "detach", "ro", "readonly", "--user", user]).catch(() => undefined);
        await mc(["admin", "policy", "attach", "ro", "readwrite", "--user", user]);
      },
    });
    await writer.stop();
    console.log(`writes/s before ${before.toFixed(0)}, during the ${seconds.toFixed(0)} s the bucket was read-only ${during.toFixed(0)}; holder then: ${JSON.stringify(holder)}`);
    expect(during).toBeGreaterThan(before * 0.5);
    expect(holder.lastError).toMatch(/upload/i);

    const primary = (await lab.primary())!;
    const c = await mysql.createConnection({ host: lab.node(primary.name).mysql.host, port: 3306, user: lab.file.credentials.user, password: lab.file.credentials.password });
    const [rows] = await c.query<mysql.RowDataPacket[]>("SELECT @@GLOBAL.gtid_binlog_pos AS pos");
    c.destroy();
    const check = await archiveCaughtUp(s3, String(rows[0]?.pos), 90_000);
    expect(check.gaps).toEqual([]);
  });
});
