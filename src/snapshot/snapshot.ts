import { execFile, execFileSync, spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { pipeline, Transform, Writable, type Readable } from "node:stream";
import { finished } from "node:stream/promises";
import { promisify } from "node:util";
import { Fifo, readableSource, tapSource, type ByteSource } from "./byte-source.js";
import { createGunzip, createGzip } from "node:zlib";
import { findBinary } from "../binaries.js";
import type { Logger } from "../log.js";
import { mariaStateAt, type Flavor } from "../mysql/gtid.js";
import type { SnapshotStore } from "./store.js";
import { ParallelHash } from "./parallel-hash.js";
import { XbstreamExtractor } from "./xbstream.js";
import { writeBehind } from "./write-behind.js";

const execFileAsync = promisify(execFile);

/** Stored next to each snapshot as manifest.json. */
export interface Manifest {
  id: string;
  cluster: string;
  createdAt: string;
  node: string;
  flavor: Flavor;
  version: string;
  /** GTID position of the backup: a restored node replicates from here. */
  gtid: string;
  /** Key of the xbstream object in the store. */
  key: string;
  compression: "none" | "gzip";
  /** Bytes stored (after compression) and streamed by the backup tool (before). */
  size: number;
  rawSize: number;
  sha256: string;
  durationMs: number;
  binlogFile: string;
  /**
   * MariaDB: the binlog state (last GTID per domain and server) as of `gtid`. A restored node
   * starts its binlog with it, so replicas' histories compare exactly against it once it leads.
   */
  binlogState?: string;
}

export class SnapshotError extends Error {
  override name = "SnapshotError";
  constructor(
    readonly stage: "backup" | "upload" | "manifest" | "download" | "extract" | "checksum" | "prepare" | "prune",
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export function snapshotId(now = new Date()): string {
  return `${now.toISOString().replace(/[-:]/g, "").replace(/\.\d+Z$/, "Z")}-${randomBytes(3).toString("hex")}`;
}

export const manifestKey = (cluster: string, id: string) => `${cluster}/${id}/manifest.json`;

/** Bytes under a directory: the backup stream is about this large before compression. */
export function directorySize(dir: string): number {
  let total = 0;
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) total += statSync(p).size;
    }
  };
  if (existsSync(dir)) walk(dir);
  return total;
}

/**
 * S3 allows 10,000 parts of at least 5 MiB: parts are 32 MiB, or larger when the datadir (with
 * margin) would not fit in 9,000 of them (past about 192 GB). Memory is three parts. The store
 * pays per part: on MinIO a 1 GB backup went at 109 MiB/s in 5 MiB parts and 193 MiB/s in 16 MiB
 * ones (`bench:snapshot --part-mb N`). Reading back from a cold cache pays per part too: the same
 * 10 GB object, same reader, restored in 23.0 to 25.2 s from 32 MiB parts and 26.2 to 29.7 s from
 * 16 MiB ones (MinIO keeps a file per part; likely the readahead does not run on into the next).
 * 32 MiB cost the backing-up node 16 MB more at its peak (161 MB at 10 GB).
 */
export function choosePartSize(expectedBytes: number, configured?: number): number {
  if (configured) return configured;
  const MiB = 1024 * 1024;
  return Math.max(32 * MiB, Math.ceil((expectedBytes * 1.5) / 9000 / MiB) * MiB);
}

function tools(flavor: Flavor): { backup: string } {
  return { backup: findBinary(flavor === "mariadb" ? "mariabackup" : "xtrabackup") };
}

/** Where the restore's stream is written, and how to learn that it was all extracted. */
interface Extraction {
  /** Named in errors. */
  name: string;
  target: Writable;
  /** Settles once the extraction has finished (after `target` ends) or failed. */
  done: Promise<void>;
  /** Stops it at once (after a failed download); the caller empties the datadir. */
  stop(): Promise<void>;
}

/**
 * MariaDB's streams are extracted in this process (see xbstream.ts); MySQL's go through
 * XtraBackup's `xbstream -x`, whose format has chunk types (sparse files) ours does not read.
 */
function startExtraction(flavor: Flavor, datadir: string, logger: Logger): Extraction {
  if (flavor === "mariadb") {
    const behind = writeBehind(logger);
    const x = new XbstreamExtractor({ dir: datadir, ...(behind ? { writeBehind: behind } : {}) });
    const target = new Writable({
      write(chunk: Buffer, _enc, cb) {
        x.write(chunk).then(() => cb(), cb);
      },
      final(cb) {
        x.end().then(() => cb(), cb);
      },
    });
    const done = finished(target).catch(async (err: unknown) => {
      await x.abort();
      throw err;
    });
    // Settled by whoever awaits it; until then a failure must not count as unhandled.
    done.catch(() => undefined);
    return {
      name: "extracting the xbstream",
      target,
      done,
      stop: async () => {
        target.destroy();
        await done.catch(() => undefined);
      },
    };
  }
  const tool = findBinary("xbstream");
  const child = spawn(tool, ["-x", "-C", datadir], { stdio: ["pipe", "ignore", "pipe"] });
  const stderr = tail(child.stderr);
  const exited = new Promise<number | null>((resolve) => child.once("close", (code) => resolve(code)));
  const done = exited.then((code) => {
    if (code !== 0) throw new Error(`exit ${code}:\n${lastLines(stderr())}`);
  });
  done.catch(() => undefined);
  return {
    name: tool,
    target: child.stdin,
    done,
    stop: async () => {
      child.kill("SIGKILL");
      await exited;
    },
  };
}

/** `source` through gzip (level 1: the backup is mostly pages), counting the bytes that go in. */
function compressed(source: Readable, counted: (n: number) => void): Readable {
  const counter = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      counted(chunk.length);
      cb(null, chunk);
    },
  });
  const gzip = createGzip({ level: 1 });
  // Its failure reaches the reader through the gzip stream; nothing else listens.
  pipeline(source, counter, gzip, () => undefined);
  return gzip;
}

/** The last `max` bytes of a stream's text, for error messages. */
function tail(stream: Readable, max = 16_384): () => string {
  let buf = "";
  stream.on("data", (b: Buffer) => {
    buf = (buf + b.toString()).slice(-max);
  });
  return () => buf;
}

function lastLines(text: string, n = 12): string {
  return text.trimEnd().split("\n").slice(-n).join("\n");
}

export interface TakeOptions {
  store: SnapshotStore;
  cluster: string;
  node: string;
  flavor: Flavor;
  version: string;
  socket: string;
  datadir: string;
  user: string;
  password: string;
  compression: "none" | "gzip";
  partSize?: number | undefined;
  logger: Logger;
  signal?: AbortSignal;
  /** Reads the source server's gtid_binlog_state right after the backup (MariaDB). */
  binlogState?: () => Promise<string>;
}

/**
 * mariabackup (xtrabackup for MySQL) streamed as xbstream straight into the store: no temporary
 * file, memory bounded by the upload's parts, a sha256 taken on the way. A failure on either side
 * of the pipe fails the whole snapshot and removes what was uploaded; the manifest is written
 * only when both sides succeeded.
 */
export async function takeSnapshot(o: TakeOptions): Promise<Manifest> {
  const started = performance.now();
  const id = snapshotId();
  const key = `${o.cluster}/${id}/backup.xbstream${o.compression === "gzip" ? ".gz" : ""}`;
  const { backup } = tools(o.flavor);
  // Scratch space, if the tool needs any, stays in the datadir (not /tmp); a directory there
  // would be taken for a database, so the datadir itself is used.
  const args = ["--backup", "--stream=xbstream", `--user=${o.user}`, `--socket=${o.socket}`, `--datadir=${o.datadir}`, `--target-dir=${o.datadir}`, `--tmpdir=${o.datadir}`];
  const env = { ...process.env, MYSQL_PWD: o.password, TMPDIR: o.datadir };
  // Uncompressed, the backup writes into a named pipe read straight into the upload's part
  // buffers; gzip needs a stream, so the child's stdout pipe feeds zlib.
  const fifo = o.compression === "none" ? new Fifo() : undefined;
  let child: ReturnType<typeof spawn>;
  try {
    child = spawn(backup, args, { env, stdio: ["ignore", fifo ? fifo.childEnd : "pipe", "pipe"] });
    fifo?.handedOver();
  } catch (err) {
    fifo?.close();
    throw new SnapshotError("backup", `cannot start ${backup}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
  const stderr = tail(child.stderr!, 1 << 16);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once("close", (code, signal) => resolve({ code, signal })));
  let spawnError: Error | undefined;
  child.once("error", (err) => {
    spawnError = err;
    child.stdout?.destroy(err);
  });
  const hash = createHash("sha256");
  let rawSize = 0;
  let storedSize = 0;
  let backupError: SnapshotError | undefined;
  /** The end of the backup's output is the end only if the tool succeeded; otherwise its failure. */
  const checkedEnd: ByteSource = (() => {
    const raw = fifo ? tapSource(fifo.source(), (b) => (rawSize += b.length)) : readableSource(compressed(child.stdout!, (n) => (rawSize += n)));
    return {
      read: async (into) => {
        const n = await raw.read(into);
        if (n > 0) return n;
        const st = await exited;
        o.signal?.throwIfAborted();
        if (spawnError || st.code !== 0) {
          backupError = new SnapshotError("backup", `${backup} failed (${spawnError ? spawnError.message : `exit ${st.code ?? st.signal}`}):\n${lastLines(stderr())}`);
          throw backupError;
        }
        return 0;
      },
    };
  })();
  const body = tapSource(checkedEnd, (b) => {
    hash.update(b);
    storedSize += b.length;
  });
  const partSize = choosePartSize(directorySize(o.datadir), o.partSize);
  // A read waits on the tool's output: stopping the tool is what ends a read when cancelled.
  const stopTool = () => child.kill("SIGKILL");
  o.signal?.addEventListener("abort", stopTool, { once: true });
  try {
    await o.store.upload(key, body, { partSize, ...(o.signal ? { signal: o.signal } : {}) }).catch((err: unknown) => {
      throw backupError ?? new SnapshotError("upload", `upload to ${o.store.description} failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    });
    // The store has every byte and the tool's exit was seen at the end of its output.
  } catch (err) {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    await exited;
    await o.store.delete(key).catch(() => undefined);
    throw err;
  } finally {
    o.signal?.removeEventListener("abort", stopTool);
    fifo?.close();
  }
  const gtid = /GTID of the last change '([^']*)'/.exec(stderr())?.[1] ?? "";
  const binlogFile = /filename '([^']*)'/.exec(stderr())?.[1] ?? "";
  const binlogState = o.flavor === "mariadb" && o.binlogState && gtid ? mariaStateAt(await o.binlogState(), gtid) : undefined;
  const manifest: Manifest = {
    id,
    cluster: o.cluster,
    createdAt: new Date().toISOString(),
    node: o.node,
    flavor: o.flavor,
    version: o.version,
    gtid,
    key,
    compression: o.compression,
    size: storedSize,
    rawSize,
    sha256: hash.digest("hex"),
    durationMs: Math.round(performance.now() - started),
    binlogFile,
    ...(binlogState ? { binlogState } : {}),
  };
  try {
    await o.store.putText(manifestKey(o.cluster, id), `${JSON.stringify(manifest, null, 2)}\n`);
  } catch (err) {
    await o.store.delete(key).catch(() => undefined);
    throw new SnapshotError("manifest", `writing the manifest failed: ${err instanceof Error ? err.message : String(err)}`);
  }
  return manifest;
}

/** Every snapshot with a readable manifest, newest first. */
export async function listSnapshots(store: SnapshotStore, cluster: string): Promise<Manifest[]> {
  const objects = await store.list(`${cluster}/`);
  const manifests: Manifest[] = [];
  for (const o of objects.filter((x) => x.key.endsWith("/manifest.json"))) {
    const text = await store.getText(o.key);
    if (!text) continue;
    try {
      manifests.push(JSON.parse(text) as Manifest);
    } catch {
      // an unreadable manifest is not a snapshot
    }
  }
  return manifests.sort((a, b) => b.createdAt.localeCompare(a.createdAt));
}

/** Keeps the newest `keepLast`, and any newer than `keepDays`; deletes the rest. Returns what was deleted. */
export async function pruneSnapshots(store: SnapshotStore, cluster: string, keepLast: number, keepDays: number | undefined, now = Date.now()): Promise<string[]> {
  const all = await listSnapshots(store, cluster);
  const deleted: string[] = [];
  for (const [i, m] of all.entries()) {
    if (i < keepLast) continue;
    if (keepDays !== undefined && now - Date.parse(m.createdAt) < keepDays * 86_400_000) continue;
    await store.delete(m.key);
    await store.delete(manifestKey(cluster, m.id));
    deleted.push(m.id);
  }
  return deleted;
}

export interface RestoreResult {
  gtid: string;
  bytes: number;
  durationMs: number;
  /** Where the time went: download and extraction (one stream), prepare, giving the files to `runAs`, and flushing them to disk. */
  stagesMs: { download: number; prepare: number; ownership: number; sync: number };
}

/**
 * A file the caller may leave in the datadir while a restore fills it (a restore does not count it
 * as a leftover): a start that finds it knows the datadir is half-restored and empties it.
 */
export const RESTORE_MARKER = ".statepilot-restoring";

/** Removes everything in a datadir but a mount point's lost+found: a failed or interrupted fill is undone. */
export function emptyDatadir(datadir: string): void {
  for (const e of readdirSync(datadir)) if (e !== "lost+found") rmSync(join(datadir, e), { recursive: true, force: true });
}

/**
 * Streams a snapshot into an empty datadir: download → sha256 (beside it) → (gunzip) → the
 * xbstream extracted (see startExtraction), then mariabackup --prepare, the owner, and a sync.
 * A checksum mismatch or a bad stream empties the datadir again and fails with the reason.
 */
export async function restoreSnapshot(o: {
  store: SnapshotStore;
  manifest: Manifest;
  datadir: string;
  logger: Logger;
  runAs?: string | undefined;
  /** Called as bytes arrive (of `manifest.size`), then with the stage that follows the download. */
  onProgress?: (p: { stage: "download" | "prepare"; bytes: number; total: number }) => void;
}): Promise<RestoreResult> {
  const started = performance.now();
  const m = o.manifest;
  mkdirSync(o.datadir, { recursive: true });
  const leftovers = readdirSync(o.datadir).filter((e) => e !== "lost+found" && e !== RESTORE_MARKER);
  if (leftovers.length) throw new SnapshotError("extract", `restore needs an empty datadir; ${o.datadir} holds ${leftovers.slice(0, 5).join(", ")}`);
  const { backup } = tools(m.flavor);
  const wipe = () => emptyDatadir(o.datadir);
  // On its own thread: the thread feeding the extractor must not stop for it (see parallel-hash.ts).
  const hash = new ParallelHash();
  let bytes = 0;
  const extraction = startExtraction(m.flavor, o.datadir, o.logger);
  // What the extractor reads: straight from the download, or through gunzip.
  const gunzip = m.compression === "gzip" ? createGunzip() : undefined;
  const sink: NodeJS.WritableStream = gunzip ?? extraction.target;
  let sinkError: Error | undefined;
  if (gunzip) pipeline(gunzip, extraction.target, (err) => (sinkError ??= err ?? undefined));
  sink.on("error", (err: Error) => (sinkError ??= err));
  extraction.target.on("error", (err: Error) => (sinkError ??= err));
  try {
    // Every byte is hashed even after the extractor gave up, so a corrupt snapshot is reported
    // as a checksum mismatch rather than as whatever the extractor tripped on. The store reuses
    // each buffer once the next is asked for: a write is awaited until the sink has taken it.
    const onRetry = (err: Error, attempt: number, offset: number) => o.logger.warn({ id: m.id, attempt, offset, reason: err.message }, "snapshot download broke off; resuming from the next byte");
    // The store feeds the hash itself, beside this loop, so that waiting on one never holds up the other.
    for await (const chunk of o.store.readObject(m.key, m.size, { onRetry, hash })) {
      bytes += chunk.length;
      o.onProgress?.({ stage: "download", bytes, total: m.size });
      if (sinkError) continue;
      await new Promise<void>((resolve) =>
        sink.write(chunk, (err) => {
          if (err) sinkError ??= err;
          resolve();
        }),
      );
    }
  } catch (err) {
    await extraction.stop();
    await hash.close();
    wipe();
    throw new SnapshotError("download", `reading ${m.key} from ${o.store.description} failed after ${bytes} bytes: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
  if (!sinkError) sink.end();
  else extraction.target.destroy();
  const extractError = await extraction.done.then(
    () => undefined,
    (err: unknown) => err,
  );
  const digest = await hash.digest().finally(() => hash.close());
  if (digest !== m.sha256) {
    wipe();
    throw new SnapshotError("checksum", `snapshot ${m.id} is corrupt: sha256 ${digest} of the ${bytes} bytes read does not match the manifest's ${m.sha256} (${m.size} bytes); the datadir was emptied again`);
  }
  if (extractError || sinkError) {
    wipe();
    const reason = extractError instanceof Error ? extractError.message : sinkError?.message;
    throw new SnapshotError("extract", `${extraction.name} failed: ${reason}`, { cause: extractError ?? sinkError });
  }
  o.onProgress?.({ stage: "prepare", bytes, total: m.size });
  const downloaded = performance.now();
  const prep = spawn(backup, ["--prepare", `--target-dir=${o.datadir}`], { stdio: ["ignore", "ignore", "pipe"] });
  const prepErr = tail(prep.stderr);
  const prepCode = await new Promise<number | null>((resolve) => prep.once("close", resolve));
  if (prepCode !== 0) {
    wipe();
    throw new SnapshotError("prepare", `${backup} --prepare failed (exit ${prepCode}):\n${lastLines(prepErr())}`);
  }
  let gtid = m.gtid;
  for (const f of ["xtrabackup_binlog_info", "mariadb_backup_binlog_info"]) {
    const p = join(o.datadir, f);
    if (existsSync(p)) {
      const fields = readFileSync(p, "utf8").trim().split(/\s+/);
      if (fields[2]) gtid = fields.slice(2).join("").replace(/\s+/g, "");
    }
  }
  // The source node's identity is not ours.
  rmSync(join(o.datadir, "statepilot-node.json"), { force: true });
  const prepared = performance.now();
  if (process.getuid?.() === 0 && o.runAs && o.runAs !== "root") execFileSync("chown", ["-R", `${o.runAs}:${o.runAs}`, o.datadir]);
  const owned = performance.now();
  // A restore that says it is done has its files on disk: one syncfs for the datadir's filesystem
  // (0.01 s after 10 GB here: the write-behind has had the pages written back by then).
  await execFileAsync("sync", ["-f", o.datadir]).catch((err: unknown) => {
    throw new SnapshotError("extract", `flushing the restored datadir ${o.datadir} to disk (sync -f) failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  });
  const done = performance.now();
  return {
    gtid,
    bytes,
    durationMs: Math.round(done - started),
    stagesMs: { download: Math.round(downloaded - started), prepare: Math.round(prepared - downloaded), ownership: Math.round(owned - prepared), sync: Math.round(done - owned) },
  };
}
