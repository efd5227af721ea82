import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, existsSync, fstatSync, mkdirSync, openSync, readdirSync, readSync, rmSync, statSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { Counter, Gauge, type Registry } from "prom-client";
import { findBinary } from "../binaries.js";
import type { Leader, ClusterStore } from "../cluster/store.js";
import type { ArchiveConfig } from "../config/schema.js";
import type { Logger } from "../log.js";
import { listSnapshots } from "../snapshot/snapshot.js";
import { bufferSource } from "../snapshot/byte-source.js";
import type { SnapshotStore } from "../snapshot/store.js";
import { formatGtid, formatPos, type GtidPos, HEADER_LEN, parseHeader, parsePos, posMin, type Transaction, TransactionCutter } from "./binlog.js";
import { checkArchive, type EpochRecord, epochId, epochKey, pruneArchive, readArchive, segmentKey } from "./layout.js";

export class ArchiveMetrics {
  readonly lag: Gauge;
  readonly gaps: Gauge;
  readonly holder: Gauge;
  readonly spool: Gauge;
  readonly segments: Counter;
  readonly bytes: Counter;
  readonly failures: Counter;
  lagSeconds: () => number = () => Number.NaN;

  constructor(registry: Registry) {
    const registers = [registry];
    const self = this;
    this.lag = new Gauge({
      name: "statepilot_archive_lag_seconds",
      help: "Age of the oldest committed transaction not yet in the store (the archive's recovery point), on the node holding the archiver's lock; NaN elsewhere.",
      registers,
      collect() {
        this.set(self.lagSeconds());
      },
    });
    this.gaps = new Gauge({ name: "statepilot_archive_gaps", help: "Holes in the archive's GTID history found by the archiver (0 when the archive is continuous).", registers });
    this.holder = new Gauge({ name: "statepilot_archive_holder", help: "1 on the node that holds the archiver's lock and streams the binlogs.", registers });
    this.spool = new Gauge({ name: "statepilot_archive_spool_bytes", help: "Binlog bytes received and not yet uploaded, on disk.", registers });
    this.segments = new Counter({ name: "statepilot_archive_segments_total", help: "Binlog segments uploaded by this node.", registers });
    this.bytes = new Counter({ name: "statepilot_archive_bytes_total", help: "Binlog bytes uploaded by this node.", registers });
    this.failures = new Counter({ name: "statepilot_archive_failures_total", help: "Failed segment uploads and streams, by stage.", labelNames: ["stage"], registers });
  }
}

export interface ArchiverDeps {
  cfg: ArchiveConfig;
  cluster: string;
  node: string;
  serverId: number;
  datadir: string;
  store: SnapshotStore;
  clusterStore: ClusterStore;
  /** The replication account: REPLICATION SLAVE is all a binlog dump needs. */
  repl: { user: string; password: string };
  ha: () => { role: string; health: string };
  logger: Logger;
  metrics: ArchiveMetrics | undefined;
}

interface Pending {
  no: number;
  file: string;
  headerEnd: number;
  start: number;
  end: number;
  first: GtidPos;
  last: GtidPos;
  t0: number;
  t1: number;
  receivedAt: number;
}

interface Stream {
  record: EpochRecord;
  dir: string;
  child: ChildProcess | undefined;
  exited: Promise<void>;
  stderr: string;
  tail: { name: string; fd: number; offset: number; cutter: TransactionCutter } | undefined;
  open: Pending | undefined;
  queue: Pending[];
  no: number;
  /** Last GTID per domain seen in this stream (continuity check). */
  seen: GtidPos;
  ended: string | undefined;
}

export interface ArchiveStatus {
  enabled: boolean;
  holder: boolean;
  state: string;
  epoch?: string;
  source?: string;
  /** Last GTID position uploaded by this holder, and its time. */
  head?: string;
  headTime?: string;
  lagSeconds: number | null;
  pendingSegments: number;
  spoolBytes: number;
  gaps: number;
  lastError: string;
}

/** Checks in a row that must find the holder ineligible (critical, or neither replica nor primary) before it lets the lock go. */
const INELIGIBLE_CHECKS = 3;
/** The longest a pump() call may read before it yields the event loop (ms). */
const PUMP_BUDGET_MS = 20;
const BINLOG_FILE = /^[^.].*\.\d{6,}$/;
/** The binlog dump connection needs a server_id no replica uses (a duplicate would cut that replica off). */
const DUMP_SERVER_ID_BASE = 4_000_000_000;

/**
 * The cluster's binlog archiver. Every node runs one; only the holder of the archiver's lock in the
 * cluster store streams (a healthy replica preferred: a primary takes a free lock only after a
 * grace period). The holder runs `mariadb-binlog --read-from-remote-server --raw --stop-never`
 * against the current primary with the replication account (a 0600 defaults file, never argv),
 * continuing from the archive's head by GTID; it follows the raw files as they grow, cuts them at
 * transaction boundaries and uploads a segment at least every `segmentEvery`. The primary never
 * waits for it (a dump client is asynchronous); when the store is unreachable the stream spools to
 * disk up to `spoolLimit`, then stops and resumes from the archive's head once the backlog is out.
 */
export class BinlogArchiver {
  private readonly log: Logger;
  private timer: NodeJS.Timeout | undefined;
  private tailTimer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private uploading: Promise<void> | undefined;
  private stream: Stream | undefined;
  private held = false;
  private stopped = false;
  private freeSince: number | undefined;
  private ineligible = 0;
  /** Why a holder that was found ineligible still holds (shown in /status), or "". */
  private heldThrough = "";
  private lastCurrentAt = Date.now();
  private uploadedHead: { pos: string; time: number } | undefined;
  private gaps = 0;
  private lastError = "";
  private state = "idle";
  private retryAt = 0;
  private uploadFailures = 0;
  private readonly spoolDir: string;
  private readonly binary: string;

  constructor(private readonly d: ArchiverDeps) {
    this.log = d.logger.child({ component: "archive" });
    this.spoolDir = d.cfg.spoolDir ?? join(dirname(d.datadir), "statepilot-binlog-spool");
    this.binary = findBinary("mariadb-binlog");
    if (d.metrics) d.metrics.lagSeconds = () => this.lagSeconds();
  }

  start(): void {
    if (!this.d.cfg.enabled) return;
    // What a crashed run left is either in the store or will be streamed again from its head.
    rmSync(this.spoolDir, { recursive: true, force: true });
    mkdirSync(this.spoolDir, { recursive: true, mode: 0o700 });
    this.timer = setInterval(() => this.check(), this.d.cfg.checkEvery);
    this.tailTimer = setInterval(() => this.pump(), Math.max(50, Math.min(250, this.d.cfg.segmentEvery / 4)));
    this.check();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    clearInterval(this.tailTimer);
    if (this.pumpAgain) clearImmediate(this.pumpAgain);
    await this.running;
    if (this.stream) await this.endStream("statepilot is stopping", { drainMs: 5_000 });
    if (this.held) await this.d.clusterStore.releaseArchiver().catch(() => undefined);
    this.held = false;
    // The replication password does not outlive the stream on disk.
    rmSync(join(this.spoolDir, "client.cnf"), { force: true });
  }

  lagSeconds(): number {
    if (!this.held) return Number.NaN;
    const s = this.stream;
    const pending = s?.queue[0]?.receivedAt ?? s?.open?.receivedAt;
    if (s?.child && !s.ended) return pending === undefined ? 0 : (Date.now() - pending) / 1000;
    return (Date.now() - (pending ?? this.lastCurrentAt)) / 1000;
  }

  status(): ArchiveStatus {
    const s = this.stream;
    const lag = this.lagSeconds();
    return {
      enabled: this.d.cfg.enabled,
      holder: this.held,
      state: this.state + (this.held ? this.heldThrough : ""),
      ...(s ? { epoch: s.record.epoch, source: `${s.record.source.node} (${s.record.source.host}:${s.record.source.port})` } : {}),
      ...(this.uploadedHead ? { head: this.uploadedHead.pos, headTime: new Date(this.uploadedHead.time * 1000).toISOString() } : {}),
      lagSeconds: Number.isNaN(lag) ? null : Math.round(lag * 1000) / 1000,
      pendingSegments: (s?.queue.length ?? 0) + (s?.open ? 1 : 0),
      spoolBytes: this.spoolBytes(),
      gaps: this.gaps,
      lastError: this.lastError,
    };
  }

  private check(): void {
    if (this.stopped) return;
    this.running ??= this.tick()
      .catch((err: unknown) => {
        this.lastError = err instanceof Error ? err.message : String(err);
        this.log.warn({ err: this.lastError }, "archiver check failed");
      })
      .finally(() => (this.running = undefined));
  }

  private async tick(): Promise<void> {
    const ha = this.d.ha();
    // A warning (lag, a receiver reconnecting, a busy host) does not stop the stream: only a node
    // that is no replica or primary any more, or critical, gives the archive up.
    // The stream reads from the primary, not from this node's server, so a holder keeps the lock
    // through a passing fault (a query that timed out on a busy host makes a node critical for one
    // loop): it gives up after INELIGIBLE_CHECKS checks in a row that found it ineligible.
    const eligible = ha.health !== "critical" && (ha.role === "replica" || ha.role === "primary");
    this.ineligible = eligible ? 0 : this.ineligible + 1;
    if (!eligible && (!this.held || this.ineligible >= INELIGIBLE_CHECKS)) {
      if (this.held) await this.giveUp(`this node is ${ha.role} (${ha.health}) for ${this.ineligible} checks in a row`);
      this.state = "idle";
      return;
    }
    this.heldThrough = eligible ? "" : `; keeps the lock through check ${this.ineligible} of ${INELIGIBLE_CHECKS} that found this node ${ha.role} (${ha.health})`;
    const cluster = await this.d.clusterStore.load();
    if (!this.held && ha.role === "primary") {
      // A healthy replica is preferred: the primary takes a free lock only after a grace period.
      const holder = await this.d.clusterStore.archiver();
      const replicas = cluster.members.some((m) => m.alive && m.node !== this.d.node && m.record.role === "replica" && m.record.up);
      if (holder) {
        this.freeSince = undefined;
        this.state = `idle (${holder.node} archives)`;
        return;
      }
      this.freeSince ??= Date.now();
      if (replicas && Date.now() - this.freeSince < 5 * this.d.cfg.checkEvery + 3_000) return;
    }
    const held = await this.d.clusterStore.acquireArchiver({ node: this.d.node, since: new Date().toISOString() });
    if (!held) {
      if (this.held) await this.giveUp("the archiver's lock was lost");
      const holder = await this.d.clusterStore.archiver().catch(() => undefined);
      this.state = holder ? `idle (${holder.node} archives)` : "idle";
      return;
    }
    if (!this.held) {
      this.held = true;
      this.lastCurrentAt = Date.now();
      this.log.info("took the archiver's lock");
    }
    this.d.metrics?.holder.set(1);
    const leader = cluster.leader;
    const s = this.stream;
    if (s && !s.ended && leader && (s.record.source.node !== leader.node || s.record.source.term !== leader.term)) {
      s.ended = `the primary is now ${leader.node}`;
      this.kill(s);
    }
    if (s && !s.ended && Date.now() - Date.parse(s.record.startedAt) >= this.d.cfg.epochEvery) {
      s.ended = "a new epoch (epochEvery)";
      this.kill(s);
    }
    if (s?.ended) {
      await this.endStream(s.ended, { drainMs: 2_000 });
      if (this.stream) return; // the backlog is not out yet (store unreachable): the spool keeps it
    }
    if (!this.stream && leader && Date.now() >= this.retryAt) await this.startStream(leader);
    if (Date.now() >= this.pruneAt) {
      this.pruneAt = Date.now() + 300_000;
      await this.prune();
    }
  }

  private pruneAt = 0;

  /** Retention follows the snapshots': epochs wholly before the oldest kept snapshot go, never one it needs. */
  private async prune(): Promise<void> {
    try {
      const oldest = (await listSnapshots(this.d.store, this.d.cluster)).at(-1);
      if (!oldest?.gtid) return;
      const n = await pruneArchive(this.d.store, this.d.cluster, oldest.gtid);
      if (n) this.log.info({ segments: n, oldestSnapshot: oldest.id }, "pruned archived binlog segments older than the oldest snapshot");
    } catch (err) {
      this.log.warn({ err: err instanceof Error ? err.message : String(err) }, "pruning the binlog archive failed");
    }
  }

  /** Stops streaming and lets the lock go (what was not uploaded is streamed again by the next holder). */
  private async giveUp(why: string): Promise<void> {
    this.log.info({ why }, "archiver stops");
    if (this.stream) {
      this.kill(this.stream);
      await this.stream.exited;
      this.discard(this.stream);
    }
    this.stream = undefined;
    await this.d.clusterStore.releaseArchiver().catch(() => undefined);
    this.held = false;
    this.d.metrics?.holder.set(0);
  }

  private async startStream(leader: Leader): Promise<void> {
    const epochs = await readArchive(this.d.store, this.d.cluster);
    const check = checkArchive(epochs);
    this.gaps = check.gaps.length;
    this.d.metrics?.gaps.set(this.gaps);
    for (const g of check.gaps) this.log.error({ domain: g.domain, after: String(g.afterSeq), next: String(g.nextSeq), where: g.where }, "binlog archive has a gap");
    let start: GtidPos = check.head;
    const last = [...epochs].reverse().find((e) => e.record)?.record;
    if (last && (last.source.node !== leader.node || last.source.term !== leader.term)) {
      // A new primary: what the archive holds beyond its promotion position came from the old
      // primary and may never have reached any replica; continue from the common point.
      start = posMin(start, parsePos(leader.record.gtid));
    }
    if (!last) {
      // An empty archive starts at the newest snapshot (older binlogs may be purged), or at the beginning.
      const snap = (await listSnapshots(this.d.store, this.d.cluster))[0];
      start = snap ? parsePos(snap.gtid) : new Map();
    }
    const epoch = epochId(this.d.node);
    const record: EpochRecord = { epoch, node: this.d.node, source: { node: leader.node, host: leader.record.host, port: leader.record.port, term: leader.term }, start: formatPos(start), startedAt: new Date().toISOString() };
    await this.d.store.putText(epochKey(this.d.cluster, epoch), `${JSON.stringify(record, null, 2)}\n`);
    const dir = join(this.spoolDir, epoch);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const cnf = join(this.spoolDir, "client.cnf");
    const esc = (v: string) => v.replace(/\\/g, "\\\\").replace(/"/g, '\\"');
    writeFileSync(cnf, `[client]\nuser="${esc(this.d.repl.user)}"\npassword="${esc(this.d.repl.password)}"\nhost="${esc(leader.record.host)}"\nport=${leader.record.port}\n`, { mode: 0o600 });
    const args = [
      `--defaults-file=${cnf}`,
      "--read-from-remote-server",
      "--raw",
      "--stop-never",
      `--stop-never-slave-server-id=${DUMP_SERVER_ID_BASE + (this.d.serverId % 100_000_000)}`,
      `--result-file=${dir}/`,
      ...(start.size ? [`--start-position=${formatPos(start)}`] : []),
      "mysql-bin.000001",
    ];
    const child = spawn(findBinary("setpriv"), ["--pdeathsig", "KILL", "--", this.binary, ...args], { stdio: ["ignore", "ignore", "pipe"] });
    const s: Stream = { record, dir, child, exited: Promise.resolve(), stderr: "", tail: undefined, open: undefined, queue: [], no: 0, seen: new Map(start), ended: undefined };
    s.exited = new Promise<void>((resolve) => {
      child.once("close", (code, signal) => {
        s.child = undefined;
        s.ended ??= `mariadb-binlog exited (${code ?? signal}): ${s.stderr.trim().split("\n").slice(-2).join(" ")}`;
        if (/1236|purged|not found in binlog|could not find/i.test(s.stderr)) {
          this.gaps = Math.max(this.gaps, 1);
          this.d.metrics?.gaps.set(this.gaps);
          this.log.error({ err: s.stderr.trim() }, "the primary no longer has the binlogs the archive needs to continue: gap in the archive");
        }
        resolve();
      });
    });
    child.stderr?.on("data", (b: Buffer) => {
      s.stderr = (s.stderr + b.toString()).slice(-4096);
    });
    child.once("error", (err) => {
      s.ended = `cannot run ${this.binary}: ${err.message}`;
    });
    this.stream = s;
    this.state = `streaming from ${leader.node}`;
    this.log.info({ epoch, source: leader.node, start: record.start || "(the beginning)", spool: dir }, "archiving binlogs");
  }

  private kill(s: Stream): void {
    s.child?.kill("SIGTERM");
  }

  /** Ends the current stream: what arrived is cut and uploaded (within `drainMs`); its spool is removed once out. */
  private async endStream(why: string, opts: { drainMs: number }): Promise<void> {
    const s = this.stream;
    if (!s) return;
    s.ended ??= why;
    this.kill(s);
    await s.exited;
    this.pump();
    if (s.open) this.close(s);
    const deadline = Date.now() + opts.drainMs;
    while (s.queue.length && Date.now() < deadline) {
      await this.upload();
      if (s.queue.length) await new Promise((r) => setTimeout(r, 200));
    }
    if (s.queue.length) {
      if (!this.state.startsWith("draining")) this.log.warn({ why, pending: s.queue.length }, "archive stream ended; its segments wait for the store");
      this.state = `draining (${s.queue.length} segments wait for the store; the stream ended: ${why})`;
      return;
    }
    this.log.info({ epoch: s.record.epoch, why }, "archive stream ended");
    if (!why.startsWith("a new epoch")) {
      this.d.metrics?.failures.inc({ stage: "stream" });
      this.lastError = why;
    }
    this.discard(s);
    this.stream = undefined;
    // Reconnecting at once to a primary that refuses would spin.
    this.retryAt = Date.now() + (s.ended?.startsWith("mariadb-binlog exited") ? 2_000 : 0);
  }

  private discard(s: Stream): void {
    if (s.tail) closeSync(s.tail.fd);
    s.tail = undefined;
    rmSync(s.dir, { recursive: true, force: true });
  }

  /**
   * Reads what mariadb-binlog wrote since last time; cuts a segment when one is due. It reads with
   * synchronous calls on the event loop it shares with the HA loop, so it works at most
   * PUMP_BUDGET_MS per call and then yields (a stream catching up on a backlog of megabytes would
   * otherwise hold the loop past fenceAfter and fence a primary that holds the archiver's lock).
   */
  private pump(): void {
    const s = this.stream;
    if (!s) return;
    const started = performance.now();
    let more = false;
    try {
      outer: for (;;) {
        if (!s.tail) {
          const first = this.files(s)[0];
          if (!first) return;
          s.tail = { name: first, fd: openSync(join(s.dir, first), "r"), offset: 4, cutter: new TransactionCutter() };
        }
        const t = s.tail;
        const size = fstatSync(t.fd).size;
        const head = Buffer.alloc(HEADER_LEN);
        while (t.offset + HEADER_LEN <= size) {
          readSync(t.fd, head, 0, HEADER_LEN, t.offset);
          const h = parseHeader(head);
          if (h.size < HEADER_LEN || t.offset + h.size > size) break;
          const trx = t.cutter.event(t.offset, h, (at, len) => {
            const b = Buffer.alloc(len);
            readSync(t.fd, b, 0, len, at);
            return b;
          });
          if (trx) this.add(s, trx);
          t.offset += h.size;
          if (performance.now() - started > PUMP_BUDGET_MS) {
            more = true;
            break outer;
          }
        }
        const later = this.files(s).filter((f) => f > t.name);
        if (later.length && t.offset >= fstatSync(t.fd).size) {
          // The file is complete (mariadb-binlog moved on): its last segment is cut here.
          if (s.open) this.close(s);
          closeSync(t.fd);
          s.tail = { name: later[0]!, fd: openSync(join(s.dir, later[0]!), "r"), offset: 4, cutter: new TransactionCutter() };
          continue;
        }
        break;
      }
      const o = s.open;
      if (o && (Date.now() - o.receivedAt >= this.d.cfg.segmentEvery || o.end - o.start >= this.d.cfg.segmentBytes)) this.close(s);
      if (!s.open && !s.queue.length && s.child && !s.ended) this.lastCurrentAt = Date.now();
      const spool = this.spoolBytes();
      this.d.metrics?.spool.set(spool);
      if (spool > this.d.cfg.spoolLimit && s.child && !s.ended) {
        s.ended = `the spool reached its limit (${spool} bytes) while the store is unreachable: streaming stops until the backlog is uploaded`;
        this.log.error({ spoolBytes: spool, limit: this.d.cfg.spoolLimit }, "archive spool full; the stream stops (the primary is not affected)");
        this.kill(s);
      }
    } catch (err) {
      this.lastError = err instanceof Error ? err.message : String(err);
      this.log.warn({ err: this.lastError }, "reading the binlog stream failed");
    }
    if (s.queue.length) void this.upload();
    if (more && !this.pumpAgain) {
      this.pumpAgain = setImmediate(() => {
        this.pumpAgain = undefined;
        this.pump();
      });
    }
  }

  private pumpAgain: NodeJS.Immediate | undefined;

  private files(s: Stream): string[] {
    try {
      return readdirSync(s.dir)
        .filter((f) => BINLOG_FILE.test(f))
        .sort();
    } catch {
      return [];
    }
  }

  private add(s: Stream, t: Transaction): void {
    const g = t.gtid;
    const prev = s.seen.get(g.domain);
    if (prev && g.seq !== prev.seq + 1n && g.seq > prev.seq) {
      this.gaps++;
      this.d.metrics?.gaps.set(this.gaps);
      this.log.error({ after: formatGtid(prev), next: formatGtid(g) }, "binlog stream skipped transactions: gap in the archive");
    }
    if (!prev || g.seq > prev.seq) s.seen.set(g.domain, g);
    const tail = s.tail!;
    const o = s.open;
    if (!o) {
      s.open = { no: 0, file: tail.name, headerEnd: tail.cutter.headerEnd, start: t.start, end: t.end, first: new Map([[g.domain, g]]), last: new Map([[g.domain, g]]), t0: t.timestamp, t1: t.timestamp, receivedAt: Date.now() };
      return;
    }
    o.end = t.end;
    if (!o.first.has(g.domain)) o.first.set(g.domain, g);
    o.last.set(g.domain, g);
    o.t0 = Math.min(o.t0, t.timestamp);
    o.t1 = Math.max(o.t1, t.timestamp);
  }

  private close(s: Stream): void {
    const o = s.open;
    if (!o) return;
    o.no = ++s.no;
    s.queue.push(o);
    s.open = undefined;
  }

  /** Uploads queued segments in order, one at a time; a failure keeps them (on disk) for a retry with backoff. */
  private upload(): Promise<void> {
    this.uploading ??= (async () => {
      const s = this.stream;
      while (s?.queue.length && this.stream === s && Date.now() >= this.uploadRetryAt) {
        const seg = s.queue[0]!;
        const started = Date.now();
        let key = "";
        try {
          const fd = openSync(join(s.dir, seg.file), "r");
          let body: Buffer;
          try {
            body = Buffer.alloc(seg.headerEnd + (seg.end - seg.start));
            readSync(fd, body, 0, seg.headerEnd, 0);
            readSync(fd, body, seg.headerEnd, seg.end - seg.start, seg.start);
          } finally {
            closeSync(fd);
          }
          key = segmentKey(this.d.cluster, s.record.epoch, seg);
          await this.d.store.upload(key, bufferSource(body), { partSize: Math.max(5 * 1024 * 1024, body.length + 1) });
          s.queue.shift();
          this.uploadFailures = 0;
          this.uploadedHead = { pos: formatPos(seg.last), time: seg.t1 };
          this.d.metrics?.segments.inc();
          this.d.metrics?.bytes.inc(body.length);
          this.log.debug({ key, bytes: body.length, ms: Date.now() - started }, "segment uploaded");
          this.removeDone(s);
        } catch (err) {
          this.uploadFailures++;
          this.uploadRetryAt = Date.now() + Math.min(10_000, 250 * 2 ** Math.min(6, this.uploadFailures));
          this.lastError = `upload of ${key || `segment ${seg.no}`} to ${this.d.store.description} failed: ${err instanceof Error ? err.message : String(err)}`;
          this.d.metrics?.failures.inc({ stage: "upload" });
          if (this.uploadFailures === 1 || this.uploadFailures % 20 === 0) this.log.warn({ err: this.lastError, pending: s.queue.length }, "segment upload failed; spooling to disk and retrying");
          break;
        }
      }
    })().finally(() => (this.uploading = undefined));
    return this.uploading;
  }

  private uploadRetryAt = 0;

  /** Deletes raw files whose every segment is uploaded and that mariadb-binlog no longer writes. */
  private removeDone(s: Stream): void {
    const needed = s.queue[0]?.file ?? s.open?.file ?? s.tail?.name;
    if (!needed) return;
    for (const f of this.files(s)) if (f < needed) rmSync(join(s.dir, f), { force: true });
  }

  /** Bytes received and not yet uploaded (the raw files from the oldest pending segment on). */
  private spoolBytes(): number {
    const s = this.stream;
    if (!s || !existsSync(s.dir)) return 0;
    const pending = s.queue[0] ?? s.open;
    const from = pending ? { file: pending.file, offset: pending.start } : s.tail ? { file: s.tail.name, offset: s.tail.offset } : undefined;
    let total = 0;
    for (const f of this.files(s)) {
      if (from && f < from.file) continue;
      try {
        total += statSync(join(s.dir, f)).size - (from && f === from.file ? from.offset : 0);
      } catch {
        // removed meanwhile
      }
    }
    return Math.max(0, total);
  }
}
