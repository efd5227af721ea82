/**
 * Snapshot benchmark: a real 1-node lab (statepilot + mariadbd) with about --gb GB (default 1) of
 * data and MinIO as the store. Measures, in the same run:
 *   backup:  statepilot's snapshot to MinIO  vs  raw `mariabackup --backup --stream=xbstream > /dev/null`
 *   restore: a new node restoring from MinIO (download, sha256, mbstream -x, prepare)
 *            vs  raw `mbstream -x` from a local file plus `mariabackup --prepare`
 *   peak RSS of the statepilot processes (VmHWM) that took and restored the snapshot.
 * And against what a user would do instead, into the same MinIO (mc from the Go module proxy):
 *   backup:  `mariabackup --backup --stream=xbstream | mc pipe`
 *   restore: `mc cat | mbstream -x` + `mariabackup --prepare`
 * Last line: snapshot: backup_ratio=N restore_ratio=N peak_rss_mb=N backup_vs_mc=N restore_vs_mc=N
 * (the *_vs_mc ratios are statepilot's rate over the pipeline's: >= 1 is as fast or faster).
 * --repeat N (default 3): the two restores alternate N times, each from a cold cache; the ratio is of
 * the medians (one run's disk varies by a sixth from the next).
 * --part-mb N sets the multipart part size (mysql.snapshots.partSize) instead of the default.
 * --cross also restores statepilot's own object with `mc cat | mbstream -x` + prepare in each round
 * (not in the ratios): it tells the object's layout (our parts against mc's) from our reader.
 */
import { execFileSync, spawn } from "node:child_process";
import { closeSync, copyFileSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import mysql from "mysql2/promise";
import { imageFiles, Lab, repoRoot } from "../src/lab/cluster.js";
import { findBinary } from "../src/binaries.js";
import { MinioServer } from "../src/lab/minio-server.js";
import { ConsulCoordinator } from "../src/discovery/consul/coordinator.js";
import { requestSnapshot } from "../src/snapshot/request.js";
import type { RestoreResult } from "../src/snapshot/snapshot.js";
import { runMain } from "./run-main.js";

const argv = process.argv.slice(2);
const gbArg = argv.indexOf("--gb");
const GB = gbArg >= 0 ? Number(argv[gbArg + 1]) : 1;
const repeatArg = argv.indexOf("--repeat");
const repeat = repeatArg >= 0 ? Number(argv[repeatArg + 1]) : 3;
if (!(Number.isInteger(repeat) && repeat >= 1 && repeat <= 9)) throw new Error(`--repeat: expected a whole number of restores of each kind from 1 to 9, got ${argv[repeatArg + 1]}`);
// --part-mb N: the multipart part size (default: chosen from the datadir's size, see choosePartSize).
const partArg = argv.indexOf("--part-mb");
const partMb = partArg >= 0 ? Number(argv[partArg + 1]) : undefined;
if (partMb !== undefined && !(Number.isInteger(partMb) && partMb >= 5 && partMb <= 512)) throw new Error(`--part-mb: expected a whole number of MiB from 5 to 512, got ${argv[partArg + 1]}`);
const cross = argv.includes("--cross");
if (!(GB > 0 && GB <= 20)) throw new Error(`--gb: expected a number of gigabytes between 0 and 20, got ${argv[gbArg + 1]}`);

async function run(cmd: string, args: string[], io: { stdin?: string; stdout?: string; env?: NodeJS.ProcessEnv } = {}): Promise<number> {
  const started = performance.now();
  const inFd = io.stdin ? openSync(io.stdin, "r") : "ignore";
  const outFd = io.stdout ? openSync(io.stdout, "w") : "ignore";
  try {
    const child = spawn(cmd, args, { stdio: [inFd, outFd, "pipe"], env: io.env ?? process.env });
    let err = "";
    child.stderr!.on("data", (b: Buffer) => (err = (err + b.toString()).slice(-4000)));
    const code = await new Promise<number | null>((r) => child.once("close", r));
    if (code !== 0) throw new Error(`${cmd} ${args.join(" ")} failed (${code}):\n${err}`);
  } finally {
    if (typeof inFd === "number") closeSync(inFd);
    if (typeof outFd === "number") closeSync(outFd);
  }
  return performance.now() - started;
}

/** The largest resident size of one process of the last `pipe`, in MB. */
let pipePeakMb = 0;

/**
 * The largest resident size of any of these processes, in MB, sampled every 100 ms until stop()
 * (a process's own peak, VmHWM, is gone once it exits).
 */
function peakRss(pids: Array<number | undefined>): { stop(): number } {
  let peak = 0;
  const timer = setInterval(() => {
    for (const pid of pids) {
      try {
        peak = Math.max(peak, Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? 0) / 1024);
      } catch {
        // exited between samples
      }
    }
  }, 100);
  return {
    stop: () => {
      clearInterval(timer);
      return peak;
    },
  };
}

/** `a | b`: two processes, a's stdout into b's stdin; resolves with the elapsed ms once both succeeded. */
async function pipe(a: { cmd: string; args: string[]; env?: NodeJS.ProcessEnv }, b: { cmd: string; args: string[]; env?: NodeJS.ProcessEnv }): Promise<number> {
  const started = performance.now();
  const left = spawn(a.cmd, a.args, { stdio: ["ignore", "pipe", "pipe"], env: a.env ?? process.env });
  const right = spawn(b.cmd, b.args, { stdio: [left.stdout!, "ignore", "pipe"], env: b.env ?? process.env });
  // The right side has the pipe now; this process's end would keep the left one from closing.
  left.stdout!.destroy();
  const errs = ["", ""];
  const sampler = peakRss([left.pid, right.pid]);
  left.stderr!.on("data", (d: Buffer) => (errs[0] = (errs[0] + d.toString()).slice(-4000)));
  right.stderr!.on("data", (d: Buffer) => (errs[1] = (errs[1] + d.toString()).slice(-4000)));
  const [ca, cb] = await Promise.all([new Promise<number | null>((r) => left.once("exit", r)), new Promise<number | null>((r) => right.once("exit", r))]);
  pipePeakMb = sampler.stop();
  if (ca !== 0 || cb !== 0) throw new Error(`${a.cmd} | ${b.cmd} failed (${ca}, ${cb}):\n${errs.join("\n")}`);
  return performance.now() - started;
}

/**
 * Every timed phase starts from a cold page cache, so that no side reads what another phase left
 * in memory (at 10 GB the phases' 50 GB of I/O evict each other, in an order that favours the
 * last writer). Needs root; otherwise says so, and the ratios carry that caveat.
 */
function coldCache(): void {
  try {
    execFileSync("sync");
    writeFileSync("/proc/sys/vm/drop_caches", "3\n");
  } catch (err) {
    if (!warnedCache) console.log(`page cache not dropped between phases (${err instanceof Error ? err.message : String(err)}): the ratios also measure what each side found cached`);
    warnedCache = true;
  }
}
let warnedCache = false;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** `statepilot snapshot restore` of the newest snapshot into `dir`, run as the images run it: its duration and peak memory. */
async function cliRestore(config: string, dir: string): Promise<{ ms: number; peakMb: number; stages: string }> {
  const child = spawn("/bin/sh", [imageFiles().entrypoint, "snapshot", "restore", "--config", config, "--datadir", dir, "--json"], { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, NODE: process.execPath, STATEPILOT_HOME: repoRoot() } });
  let out = "";
  let err = "";
  child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (err = (err + d.toString()).slice(-4000)));
  const sampler = peakRss([child.pid]);
  const code = await new Promise<number | null>((r) => child.once("close", r));
  const peakMb = sampler.stop();
  if (code !== 0) throw new Error(`statepilot snapshot restore failed (${code}):\n${err}`);
  const r = JSON.parse(out) as { durationMs: number; stagesMs: RestoreResult["stagesMs"] };
  return { ms: Number(r.durationMs), peakMb, stages: stagesText(r.stagesMs) };
}

function stagesText(st: RestoreResult["stagesMs"]): string {
  return `download+extract ${(st.download / 1000).toFixed(2)} s, prepare ${(st.prepare / 1000).toFixed(2)} s, ownership ${(st.ownership / 1000).toFixed(2)} s, sync ${(st.sync / 1000).toFixed(2)} s`;
}

function hwmMb(pid: number | null): number {
  if (!pid) return Number.NaN;
  return Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1]) / 1024;
}

async function main(): Promise<void> {
  // Found first: the comparison with mc comes after the whole backup.
  const mc = (() => {
    try {
      return findBinary("mc");
    } catch (err) {
      throw new Error("bench:snapshot compares with the MinIO client (mc pipe / mc cat): build it with `scripts/install.sh mc`", { cause: err });
    }
  })();
  const work = mkdtempSync(join(tmpdir(), "statepilot-bench-snapshot-"));
  const minio = await new MinioServer("bench", join(work, "minio")).start();
  const store = { type: "s3", bucket: "bench", prefix: "bench", region: "us-east-1", endpoint: minio.endpoint, forcePathStyle: true, accessKeyId: minio.accessKeyId, secretAccessKey: minio.secretAccessKey };
  const lab = await Lab.up({ dir: join(work, "lab"), nodes: 1, subnet: "127.0.32", owned: true, mysql: { snapshots: { store, checkEvery: "1s", ...(partMb ? { partSize: partMb * 1024 * 1024 } : {}) } }, log: (l) => console.log(l) });
  try {
    const n = lab.file.nodes[0]!;
    const socket = join(n.dir, "mysqld.sock");
    const datadir = join(n.dir, "data");
    const c = await mysql.createConnection({ socketPath: socket, user: "root", password: lab.file.credentials.rootPassword });
    await c.query("CREATE TABLE app.blobs (id INT PRIMARY KEY, payload LONGBLOB) ENGINE=InnoDB");
    const rows = Math.round(GB * 16_000);
    for (let i = 0; i < rows; i += 1000) await c.query(`INSERT INTO app.blobs SELECT seq, REPEAT(SHA2(seq, 256), 1000) FROM app.seq_${i + 1}_to_${Math.min(rows, i + 1000)}`);
    c.destroy();
    console.log(`loaded ${rows} rows of 64 KB`);

    const env = { ...process.env, MYSQL_PWD: lab.file.credentials.rootPassword };
    const backupArgs = ["--backup", "--stream=xbstream", "--user=root", `--socket=${socket}`, `--datadir=${datadir}`, `--target-dir=${datadir}`];
    coldCache();
    const rawBackupMs = await run(findBinary("mariabackup"), backupArgs, { stdout: "/dev/null", env });

    // Where the snapshotting node's memory stands before it snapshots (its own baseline: runtime,
    // SDK, HA loop), so that the peak below says what the snapshot itself adds.
    const rssBefore = (() => {
      const st = readFileSync(`/proc/${n.pids.statepilot}/status`, "utf8");
      return { rss: Number(/VmRSS:\s+(\d+) kB/.exec(st)?.[1]) / 1024, hwm: Number(/VmHWM:\s+(\d+) kB/.exec(st)?.[1]) / 1024 };
    })();
    coldCache();
    const coordinator = new ConsulCoordinator({ address: lab.file.consul });
    const m = await requestSnapshot(coordinator, lab.file.cluster, 600_000);
    coordinator.close();
    const rawRate = m.rawSize / rawBackupMs;
    const ourRate = m.rawSize / m.durationMs;
    console.log(`backup: raw mariabackup > /dev/null ${(rawBackupMs / 1000).toFixed(2)} s (${(rawRate / 1048.576).toFixed(0)} MiB/s); statepilot to MinIO ${(m.durationMs / 1000).toFixed(2)} s (${(ourRate / 1048.576).toFixed(0)} MiB/s) for ${(m.rawSize / 1048576).toFixed(0)} MiB`);
    const takerHwm = hwmMb(n.pids.statepilot);

    // What a user would do instead: the same stream piped into mc, into the same MinIO.
    const mcEnv = { ...process.env, MC_CONFIG_DIR: join(work, "mc"), MC_HOST_bench: `http://${minio.accessKeyId}:${minio.secretAccessKey}@${minio.endpoint.replace(/^http:\/\//, "")}` };
    coldCache();
    const mcBackupMs = await pipe({ cmd: findBinary("mariabackup"), args: backupArgs, env }, { cmd: mc, args: ["pipe", "bench/bench/mc/backup.xbstream"], env: mcEnv });
    const mcRate = m.rawSize / mcBackupMs;
    console.log(`backup: mariabackup | mc pipe ${(mcBackupMs / 1000).toFixed(2)} s (${(mcRate / 1048.576).toFixed(0)} MiB/s), largest process ${pipePeakMb.toFixed(0)} MB resident`);
    // Raw restore: the same stream from a local file, extracted, then prepared.
    const file = join(work, "raw.xbstream");
    await run(findBinary("mariabackup"), backupArgs, { stdout: file, env });
    const rawDir = join(work, "raw-extract");
    mkdirSync(rawDir);
    coldCache();
    const extractMs = await run(findBinary("mbstream"), ["-x", "-C", rawDir], { stdin: file });
    const prepareMs = await run(findBinary("mariabackup"), ["--prepare", `--target-dir=${rawDir}`]);
    rmSync(rawDir, { recursive: true, force: true });
    rmSync(file, { force: true });
    const rawRestoreMs = extractMs + prepareMs;

    // The restores, alternating: what a user would do instead (`mc cat | mbstream -x`, then
    // prepare) and statepilot's own (`statepilot snapshot restore`, run as the images run it),
    // each from a cold cache into a new directory, --repeat times. The disk under MinIO varies by
    // a sixth from one identical run to the next, so the ratio is of the medians.
    const mcSamples: number[] = [];
    const crossSamples: number[] = [];
    const spSamples: Array<{ ms: number; peakMb: number; stages: string }> = [];
    // Which goes first alternates too: each restore also inherits the disk's state from the one
    // before it (the other's 10 GB just deleted, on a filesystem mounted with discard).
    for (let i = 0; i < repeat; i++) {
      let mcText = "";
      const mcCat = async (object: string): Promise<{ extractMs: number; prepareMs: number }> => {
        const mcDir = join(work, "mc-extract");
        mkdirSync(mcDir);
        coldCache();
        const extractMs = await pipe({ cmd: mc, args: ["cat", object], env: mcEnv }, { cmd: findBinary("mbstream"), args: ["-x", "-C", mcDir] });
        const prepareMs = await run(findBinary("mariabackup"), ["--prepare", `--target-dir=${mcDir}`]);
        rmSync(mcDir, { recursive: true, force: true });
        return { extractMs, prepareMs };
      };
      const mcRestore = async () => {
        const r = await mcCat("bench/bench/mc/backup.xbstream");
        mcSamples.push(r.extractMs + r.prepareMs);
        mcText = `mc cat | mbstream -x ${(r.extractMs / 1000).toFixed(2)} s + prepare ${(r.prepareMs / 1000).toFixed(2)} s`;
        if (cross) {
          const o = await mcCat(`bench/bench/bench/${m.key}`);
          crossSamples.push(o.extractMs + o.prepareMs);
          mcText += `; the same of statepilot's object ${(o.extractMs / 1000).toFixed(2)} s + ${(o.prepareMs / 1000).toFixed(2)} s`;
        }
      };
      const spRestore = async () => {
        const spDir = join(work, "sp-restore");
        coldCache();
        spSamples.push(await cliRestore(n.config, spDir));
        rmSync(spDir, { recursive: true, force: true });
      };
      if (i % 2 === 0) {
        await mcRestore();
        await spRestore();
      } else {
        await spRestore();
        await mcRestore();
      }
      const sp = spSamples[i]!;
      console.log(`restore ${i + 1}/${repeat} (${i % 2 === 0 ? "mc first" : "statepilot first"}): ${mcText}; statepilot snapshot restore ${(sp.ms / 1000).toFixed(2)} s (${sp.stages}; ${sp.peakMb.toFixed(0)} MB resident at most)`);
    }
    const mcRestoreMs = median(mcSamples);
    const restoreMs = median(spSamples.map((x) => x.ms));
    if (cross) console.log(`restore: mc cat | mbstream -x + prepare, median of ${repeat}: of mc's object ${(mcRestoreMs / 1000).toFixed(2)} s, of statepilot's ${(median(crossSamples) / 1000).toFixed(2)} s`);

    // And end to end: a new node joins the lab, finds its datadir empty and restores before mysqld starts.
    coldCache();
    const added = await lab.add(600_000);
    const log = readFileSync(join(added.dir, "statepilot.log"), "utf8").split("\n").find((l) => l.includes('"msg":"restore done"'));
    if (!log) throw new Error(`${added.name} did not restore from the snapshot`);
    const done = JSON.parse(log) as { durationMs: number; stagesMs?: RestoreResult["stagesMs"] };
    const restorerHwm = hwmMb(added.pids.statepilot);
    const stages = done.stagesMs ? ` (${stagesText(done.stagesMs)})` : "";
    console.log(`restore: raw mbstream -x ${(extractMs / 1000).toFixed(2)} s + prepare ${(prepareMs / 1000).toFixed(2)} s; medians of ${repeat}: mc ${(mcRestoreMs / 1000).toFixed(2)} s, statepilot ${(restoreMs / 1000).toFixed(2)} s; a joining node restored in ${(done.durationMs / 1000).toFixed(2)} s${stages}`);
    console.log(`peak RSS: snapshotting node ${takerHwm.toFixed(1)} MB (before the snapshot: ${rssBefore.rss.toFixed(1)} MB resident, peak so far ${rssBefore.hwm.toFixed(1)} MB), restoring node ${restorerHwm.toFixed(1)} MB`);
    const peak = Math.max(takerHwm, restorerHwm, ...spSamples.map((x) => x.peakMb));
    console.log(`snapshot: backup_ratio=${(ourRate / rawRate).toFixed(2)} restore_ratio=${(rawRestoreMs / restoreMs).toFixed(2)} peak_rss_mb=${peak.toFixed(1)} backup_vs_mc=${(ourRate / mcRate).toFixed(2)} restore_vs_mc=${(mcRestoreMs / restoreMs).toFixed(2)}`);
  } catch (err) {
    keepLogs(lab.file.nodes.map((x) => x.dir));
    throw err;
  } finally {
    await lab.down();
    await minio.destroy();
    rmSync(work, { recursive: true, force: true });
  }
}

/** A failed run keeps its nodes' logs (statepilot's, which carries mysqld's output) outside the work directory that is removed, and says where. */
function keepLogs(dirs: string[]): void {
  const kept = mkdtempSync(join(tmpdir(), "statepilot-bench-snapshot-logs-"));
  for (const d of dirs) {
    for (const f of readdirSync(d).filter((x) => /\.(log|err)$/.test(x))) copyFileSync(join(d, f), join(kept, `${basename(d)}-${f}`));
  }
  console.log(`the run failed; its nodes' logs are kept in ${kept}`);
}

runMain(main);
