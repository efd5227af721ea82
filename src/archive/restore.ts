import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { findBinary } from "../binaries.js";
import type { Logger } from "../log.js";
import { emptyDatadir, listSnapshots, type Manifest, restoreSnapshot } from "../snapshot/snapshot.js";
import type { SnapshotStore } from "../snapshot/store.js";
import { BINLOG_MAGIC, type GtidPos, parsePos, posIncludes, transactionsOf } from "./binlog.js";
import { checkArchive, describePos, readArchive } from "./layout.js";
import { describePoint, type RestorePoint } from "./point.js";

export interface PointRestoreResult {
  snapshot: Manifest;
  /** gtid_binlog_pos of the restored datadir. */
  gtid: string;
  transactions: number;
  segments: number;
  /** Archived binlog bytes read, and applied (the selected transactions). */
  bytesRead: number;
  bytesApplied: number;
  /** Time of the last transaction applied (ISO 8601), if any. */
  lastTransactionAt: string | undefined;
  snapshotMs: number;
  binlogMs: number;
  durationMs: number;
}

/** A snapshot every transaction of which lies before the point. */
function snapshotFits(m: Manifest, p: RestorePoint): boolean {
  if ("time" in p) return Date.parse(m.createdAt) <= p.time.getTime();
  const pos = parsePos(m.gtid);
  for (const g of pos.values()) if (!posIncludes(p.gtid, g)) return false;
  return true;
}

/**
 * Restores the cluster as it was at a point into an empty datadir: the newest snapshot taken
 * before the point, then the archived binlog transactions after it, in archive order, up to the
 * point (`mariadb-binlog` turns them into SQL, piped into a private mariadbd on the datadir with
 * no network). The binlog records whole seconds: a time point keeps the transactions that started
 * before it (the prefix of the history up to the first one that started at or after it), and a
 * fractional second is rounded down. The restored server's binlog state is the snapshot's plus
 * the applied GTIDs, so a cluster started from it numbers on from there.
 */
export async function restoreToPoint(o: {
  store: SnapshotStore;
  cluster: string;
  datadir: string;
  point: RestorePoint;
  logger: Logger;
  runAs?: string | undefined;
  /** mariadbd to apply with; default the one on PATH. */
  mysqld?: string;
  /** A progress line (snapshot bytes, then binlog segments, transactions, bytes, rate, ETA). */
  progress?: (line: string) => void;
}): Promise<PointRestoreResult> {
  const started = performance.now();
  const say = o.progress ?? (() => undefined);
  const point = o.point;
  const limitTime = "time" in point ? point.time : undefined;
  const limitSec = limitTime ? Math.floor(limitTime.getTime() / 1000) : undefined;
  const [snapshots, epochs] = await Promise.all([listSnapshots(o.store, o.cluster), readArchive(o.store, o.cluster)]);
  const snapshot = snapshots.find((m) => snapshotFits(m, point));
  if (!snapshot) throw new Error(`no snapshot of cluster ${o.cluster} in ${o.store.description} was taken before ${describePoint(point)} (${snapshots.length} snapshots; the oldest: ${snapshots.at(-1)?.createdAt ?? "none"})`);
  if (snapshot.flavor !== "mariadb") throw new Error("point-in-time restore needs a MariaDB snapshot");
  const check = checkArchive(epochs);
  const snapPos = parsePos(snapshot.gtid);
  for (const [d, g] of check.start) {
    const s = snapPos.get(d);
    if (!s || s.seq < g.seq) throw new Error(`the archive starts at ${describePos(check.start)}, after snapshot ${snapshot.id} (${snapshot.gtid}): transactions in between were never archived`);
  }
  if (check.gaps.length) {
    const g = check.gaps[0]!;
    o.logger.warn({ gaps: check.gaps.length }, "the archive has gaps");
    say(`warning: the archive has ${check.gaps.length} gap(s), the first in domain ${g.domain} after seq ${g.afterSeq} (${g.where}); the restore stops at a gap`);
  }
  if (limitTime && limitSec !== undefined && limitTime.getTime() % 1000 !== 0) say(`note: the binlog records whole seconds; ${limitTime.toISOString()} is taken as ${new Date(limitSec * 1000).toISOString()}`);
  if (limitSec !== undefined && check.headTime !== undefined && check.headTime < limitSec - 1) say(`note: the archive's newest transaction started at ${new Date(check.headTime * 1000).toISOString()}: nothing archived is later than that`);

  say(`snapshot ${snapshot.id} (taken ${snapshot.createdAt}, gtid ${snapshot.gtid}, ${(snapshot.size / 1048576).toFixed(1)} MiB)`);
  let lastShown = 0;
  const s0 = performance.now();
  await restoreSnapshot({
    store: o.store,
    manifest: snapshot,
    datadir: o.datadir,
    logger: o.logger,
    runAs: o.runAs,
    onProgress: (p) => {
      const now = performance.now();
      if (now - lastShown < 1000 && p.bytes < p.total) return;
      lastShown = now;
      say(`snapshot: ${p.stage} ${(p.bytes / 1048576).toFixed(1)} of ${(p.total / 1048576).toFixed(1)} MiB`);
    },
  });
  const snapshotMs = performance.now() - s0;

  // Segments that can hold a transaction after the snapshot and before the point.
  const todo = check.chain.filter(({ segment }) => [...segment.last.values()].some((l) => !posIncludes(snapPos, l)));
  const totalBytes = todo.reduce((a, c) => a + c.segment.size, 0);
  const b0 = performance.now();
  const server = await PrivateServer.start(o.datadir, o.mysqld, o.runAs);
  let applied = 0;
  let bytesRead = 0;
  let bytesApplied = 0;
  let segments = 0;
  let lastTs: number | undefined;
  let finalPos = "";
  try {
    const state = (snapshot.binlogState ?? snapshot.gtid).replace(/'/g, "");
    const prelude = ["SET SESSION sql_log_bin = 0;", "FLUSH PRIVILEGES;", "RESET MASTER;", `SET GLOBAL gtid_binlog_state = '${state}';`, "SET SESSION sql_log_bin = 1;", ""].join("\n");
    const apply = server.client();
    const binlog = spawn(findBinary("mariadb-binlog"), ["--no-defaults", "-"], { stdio: ["pipe", "pipe", "pipe"] });
    let binlogErr = "";
    binlog.stderr.on("data", (b: Buffer) => (binlogErr = (binlogErr + b.toString()).slice(-4096)));
    apply.stdin.write(prelude);
    // The session that loaded the grant tables is the only one without a password: it also reports the position.
    binlog.stdout.pipe(apply.stdin, { end: false });
    binlog.stdout.once("end", () => apply.stdin.end("SELECT @@GLOBAL.gtid_binlog_pos;\n"));
    const applyDone = exitOf(apply.child);
    const binlogDone = exitOf(binlog);
    const write = async (b: Buffer) => {
      if (!binlog.stdin.write(b)) await new Promise<void>((r) => binlog.stdin.once("drain", () => r()));
    };
    await write(BINLOG_MAGIC);
    const seen: GtidPos = new Map(snapPos);
    let stop = false;
    for (const { segment, limit } of todo) {
      if (stop) break;
      const body = await readAll(await o.store.download(segment.key));
      bytesRead += body.length;
      segments++;
      const { cutter, transactions } = transactionsOf(body);
      const picked: Buffer[] = [];
      for (const t of transactions) {
        const g = t.gtid;
        if (posIncludes(snapPos, g)) continue; // in the snapshot already
        if (limit?.has(g.domain) && g.seq > limit.get(g.domain)!.seq) continue; // superseded
        const prev = seen.get(g.domain);
        if (prev && g.seq <= prev.seq) continue;
        if (prev && g.seq !== prev.seq + 1n) {
          say(`stopping at a gap in domain ${g.domain}: after ${prev.seq} comes ${g.seq}`);
          stop = true;
          break;
        }
        if (limitSec !== undefined && t.timestamp >= limitSec) {
          stop = true;
          break;
        }
        if ("gtid" in point) {
          const target = point.gtid.get(g.domain);
          if (!target || g.seq > target.seq) {
            if ([...point.gtid.values()].every((x) => (seen.get(x.domain)?.seq ?? 0n) >= x.seq)) stop = true;
            continue;
          }
        }
        seen.set(g.domain, g);
        picked.push(body.subarray(t.start, t.end));
        applied++;
        bytesApplied += t.end - t.start;
        lastTs = t.timestamp;
      }
      if (picked.length) {
        await write(body.subarray(4, cutter.headerEnd));
        for (const p of picked) await write(p);
      }
      const now = performance.now();
      if (now - lastShown >= 1000) {
        lastShown = now;
        const secs = (now - b0) / 1000;
        const rate = bytesRead / Math.max(0.001, secs);
        const eta = rate > 0 && totalBytes > bytesRead ? ` ETA ${Math.ceil((totalBytes - bytesRead) / rate)} s` : "";
        say(`binlog: ${segments}/${todo.length} segments, ${applied} transactions, ${(bytesRead / 1048576).toFixed(1)} of ${(totalBytes / 1048576).toFixed(1)} MiB, ${(rate / 1048576).toFixed(1)} MiB/s${eta}`);
      }
    }
    binlog.stdin.end();
    const [bcode, acode] = await Promise.all([binlogDone, applyDone]);
    if (bcode !== 0) throw new Error(`mariadb-binlog failed (exit ${bcode}): ${binlogErr.trim()}`);
    if (acode !== 0) throw new Error(`applying the binlog failed (exit ${acode}): ${apply.stderr().trim()}`);
    finalPos = apply.stdout().trim().split("\n").at(-1)?.trim() ?? "";
  } catch (err) {
    await server.stop();
    // Half a history is no restore: the datadir is emptied again, as a failed snapshot restore does.
    emptyDatadir(o.datadir);
    throw err;
  } finally {
    await server.stop();
  }
  if (process.getuid?.() === 0 && o.runAs && o.runAs !== "root") execFileSync("chown", ["-R", `${o.runAs}:${o.runAs}`, o.datadir]);
  const binlogMs = performance.now() - b0;
  say(`binlog: ${segments} segments read, ${applied} transactions applied (${(bytesApplied / 1048576).toFixed(1)} MiB) in ${(binlogMs / 1000).toFixed(1)} s; restored to ${finalPos || "(the snapshot)"}${lastTs !== undefined ? `, last transaction at ${new Date(lastTs * 1000).toISOString()}` : ""}`);
  return {
    snapshot,
    gtid: finalPos,
    transactions: applied,
    segments,
    bytesRead,
    bytesApplied,
    lastTransactionAt: lastTs === undefined ? undefined : new Date(lastTs * 1000).toISOString(),
    snapshotMs: Math.round(snapshotMs),
    binlogMs: Math.round(binlogMs),
    durationMs: Math.round(performance.now() - started),
  };
}

async function readAll(r: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of r as AsyncIterable<Buffer>) chunks.push(c);
  return Buffer.concat(chunks);
}

function exitOf(child: ChildProcess): Promise<number | null> {
  return new Promise((resolve) => {
    if (child.exitCode !== null) resolve(child.exitCode);
    else child.once("close", (code) => resolve(code));
  });
}

/**
 * mariadbd on the restored datadir for the time of the apply: no network (a unix socket in a
 * private temporary directory), grant tables skipped at start (no password needed) and loaded again
 * by the apply's first statement, so account statements in the binlog apply as they did.
 */
class PrivateServer {
  private constructor(
    private readonly child: ChildProcess,
    private readonly dir: string,
    private readonly socket: string,
    private readonly log: () => string,
  ) {}

  static async start(datadir: string, binary: string | undefined, runAs: string | undefined): Promise<PrivateServer> {
    const dir = mkdtempSync(join(tmpdir(), "statepilot-pitr-"));
    const socket = join(dir, "mysqld.sock");
    const args = [
      "--no-defaults",
      `--datadir=${datadir}`,
      `--socket=${socket}`,
      `--pid-file=${join(dir, "mysqld.pid")}`,
      "--skip-networking",
      "--skip-grant-tables",
      "--log-bin=mysql-bin",
      "--server-id=1",
      "--gtid-strict-mode=1",
      "--binlog-format=ROW",
      "--innodb-buffer-pool-size=256M",
      // Nothing to be durable for: a restore that fails (or a crash) empties the datadir, and the
      // server is shut down cleanly at the end. Commits without flushes apply many times faster.
      "--innodb-flush-log-at-trx-commit=0",
      "--sync-binlog=0",
      "--innodb-doublewrite=0",
      "--skip-slave-start",
      ...(process.getuid?.() === 0 ? [`--user=${runAs ?? "root"}`] : []),
    ];
    if (process.getuid?.() === 0 && runAs && runAs !== "root") execFileSync("chown", ["-R", `${runAs}:${runAs}`, datadir, dir]);
    const child = spawn(binary ?? findBinary("mariadbd"), args, { stdio: ["ignore", "ignore", "pipe"] });
    let log = "";
    child.stderr?.on("data", (b: Buffer) => (log = (log + b.toString()).slice(-8192)));
    const server = new PrivateServer(child, dir, socket, () => log);
    const deadline = Date.now() + 120_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`mariadbd on the restored datadir exited (${child.exitCode}):\n${log.trim().split("\n").slice(-10).join("\n")}`);
      try {
        await server.query("SELECT 1");
        return server;
      } catch {
        if (Date.now() > deadline) {
          await server.stop();
          throw new Error(`mariadbd on the restored datadir did not accept connections within 120 s:\n${log.trim().split("\n").slice(-10).join("\n")}`);
        }
        await sleep(200);
      }
    }
  }

  client(): { child: ChildProcess; stdin: NodeJS.WritableStream; stderr: () => string; stdout: () => string } {
    const child = spawn(findBinary("mariadb"), ["--no-defaults", `--socket=${this.socket}`, "--user=root", "--batch", "--skip-column-names", "--binary-mode"], { stdio: ["pipe", "pipe", "pipe"] });
    let err = "";
    let out = "";
    child.stderr?.on("data", (b: Buffer) => (err = (err + b.toString()).slice(-4096)));
    child.stdout?.on("data", (b: Buffer) => (out = (out + b.toString()).slice(-4096)));
    return { child, stdin: child.stdin!, stderr: () => err, stdout: () => out };
  }

  async query(sql: string): Promise<string> {
    return execFileSync(findBinary("mariadb"), ["--no-defaults", `--socket=${this.socket}`, "--user=root", "--batch", "--skip-column-names", "-e", sql], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }).trim();
  }

  async stop(): Promise<void> {
    if (this.child.exitCode === null) {
      this.child.kill("SIGTERM");
      const deadline = Date.now() + 60_000;
      while (this.child.exitCode === null && this.child.signalCode === null && Date.now() < deadline) await sleep(100);
      if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill("SIGKILL");
    }
    rmSync(this.dir, { recursive: true, force: true });
    void this.log;
  }
}
