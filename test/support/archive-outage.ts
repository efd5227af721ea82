import { type GtidPos, parsePos } from "../../src/archive/binlog.js";
import { type checkArchive as CheckArchive, checkArchive, readArchive } from "../../src/archive/layout.js";
import { rmSync } from "node:fs";
import type { Lab } from "../../src/lab/cluster.js";
import type { MinioServer } from "../../src/lab/minio-server.js";
import type { CommitWriter } from "../../src/lab/commit-writer.js";
import { waitFor } from "../../src/lab/wait.js";
import type { SnapshotStore } from "../../src/snapshot/store.js";

/** What /status says of the archive on a node. */
export interface ArchiveView {
  holder: boolean;
  state: string;
  spoolBytes: number;
  lagSeconds: number | null;
  pendingSegments: number;
  lastError: string;
}

/** The archive as the node holding the archiver's lock shows it (undefined: no holder answers). */
export async function holderView(lab: Lab): Promise<ArchiveView | undefined> {
  const views = await Promise.all(lab.file.nodes.map((n) => fetch(`${n.http}/status`, { signal: AbortSignal.timeout(2_000) }).then((r) => r.json() as Promise<{ archive?: ArchiveView }>).catch(() => undefined)));
  return views.find((v) => v?.archive?.holder)?.archive;
}

/** The writer's acknowledged writes per second over a window of `ms`. */
export async function writeRate(writer: CommitWriter, ms: number): Promise<number> {
  const n0 = writer.acked.length;
  const t0 = Date.now();
  await waitFor(async () => Date.now() - t0 >= ms || undefined, { timeoutMs: ms + 5_000, intervalMs: 100, what: "a measurement window" });
  return ((writer.acked.length - n0) * 1000) / (Date.now() - t0);
}

/**
 * Keeps the archive's store failing (`fail`, then `heal` whatever happens) until the holder reports
 * `lagSeconds` of lag with segments pending (state, not a timer), and measures the writer meanwhile.
 */
export async function outageUntilLag(lab: Lab, writer: CommitWriter, o: { lagSeconds: number; timeoutMs: number; fail: () => Promise<void>; heal: () => Promise<void> }): Promise<{ holder: ArchiveView; writesPerSecond: number; seconds: number }> {
  await o.fail();
  const n0 = writer.acked.length;
  const t0 = Date.now();
  let last: ArchiveView | undefined;
  try {
    const holder = await waitFor(
      async () => {
        last = await holderView(lab);
        return last && (last.lagSeconds ?? 0) >= o.lagSeconds && last.pendingSegments > 1 ? last : undefined;
      },
      { timeoutMs: o.timeoutMs, intervalMs: 500, what: `the archiver's holder to report ${o.lagSeconds} s of lag with segments pending`, detail: () => `last seen: ${JSON.stringify(last)}` },
    );
    return { holder, writesPerSecond: ((writer.acked.length - n0) * 1000) / (Date.now() - t0), seconds: (Date.now() - t0) / 1000 };
  } finally {
    await o.heal();
  }
}

/** Waits until the archive holds `pos` (the primary's GTID position) and returns its check. */
export async function archiveCaughtUp(store: SnapshotStore, pos: GtidPos | string, timeoutMs: number): Promise<ReturnType<typeof CheckArchive>> {
  const want = typeof pos === "string" ? parsePos(pos) : pos;
  return waitFor(
    async () => {
      const c = checkArchive(await readArchive(store, "lab"));
      for (const [d, g] of want) if ((c.head.get(d)?.seq ?? 0n) < g.seq) return undefined;
      return c;
    },
    { timeoutMs, intervalMs: 250, what: "the archive to catch up with the primary's position" },
  );
}

/** The end of an outage test file: its lab down, its store client closed, its MinIO and work directory removed (kept with STATEPILOT_KEEP_LABS=1). */
export async function tearDownArchiveLab(o: { lab: Lab | undefined; s3: SnapshotStore | undefined; minio: MinioServer; work: string }): Promise<void> {
  const keep = process.env.STATEPILOT_KEEP_LABS === "1";
  try {
    await o.lab?.down({ keep, timeoutMs: 60_000 });
  } finally {
    o.s3?.close();
    await o.minio.destroy();
    if (o.work && !keep) rmSync(o.work, { recursive: true, force: true });
  }
}
