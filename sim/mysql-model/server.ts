import type { SimClock } from "../clock.js";
import type { Endpoint } from "../../src/mysql/ha/database.js";

/**
 * One MariaDB server of the model: its binlog, GTID positions, replication threads and the client
 * requests waiting on it. GTIDs live in domain 0 only and are kept as `Txn` objects (server id and
 * sequence number); the `domain-server-seq` string is built once, when the transaction is created.
 */

export interface Txn {
  readonly server: number;
  readonly seq: number;
  /** `0-server-seq` */
  readonly str: string;
  /** Virtual time it was written on its originating server (what replication lag is measured from). */
  readonly at: number;
  /** What the writing server had executed just before (walks the history a snapshot contains). */
  readonly prev: Txn | undefined;
}

export type WriteResult = "acked" | "failed";

type Timer = ReturnType<SimClock["schedule"]>;

/** An error as mysql2 raises it: a message and a code. */
export class ModelError extends Error {
  override name = "ModelError";
  constructor(
    message: string,
    readonly code: string,
    readonly errno?: number,
  ) {
    super(message);
  }
}

/** What a server needs from the world around it. */
export interface Env {
  readonly clock: SimClock;
  readonly lossless: boolean;
  readonly queryTimeoutMs: number;
  /** Something changed that replication may have to act on: make sure the replication ticker runs. */
  wake(): void;
  resolve(ep: Endpoint): Server | undefined;
  isCut(a: Server, b: Server): boolean;
  newTxn(server: number, seq: number, prev: Txn | undefined): Txn;
  recordAck(t: Txn, node: string): void;
  nextPid(): number;
}

/** A promise parked on the server (a hung query, a pending statement), with its timeout. */
interface Parked {
  resolve(): void;
  reject(err: Error): void;
}

interface CommitWaiter {
  txn: Txn;
  /** Its index in the binlog: an ack for any later index covers it. */
  index: number;
  settle(r: WriteResult): void;
}

interface AppliedWaiter {
  seq: number;
  settle(ok: boolean): void;
  fail(err: Error): void;
}

export interface Connection {
  src: Server;
  /** The source's pid when connected: a restarted source drops the connection. */
  pid: number;
  /** Next index of the source's binlog to send. */
  next: number;
  /** The source had nothing in domain 0 at connect (START_ON_EMPTY_DOMAIN): check the first GTID that comes. */
  recheck: Txn | undefined;
}

export const lostConnection = () => new ModelError("Connection lost: The server closed the connection.", "PROTOCOL_CONNECTION_LOST");

export class Server {
  running = false;
  frozen = false;
  pid: number | undefined;
  readOnly = true;
  semiSync = false;
  /** Ordered; sequence numbers strictly increase (gtid_strict_mode), so it can be searched by seq. */
  binlog: Txn[] = [];
  /** gtid_binlog_state: the last binlog GTID per originating server. */
  lastByServer = new Map<number, Txn>();
  slavePos: Txn | undefined;
  readonly executed = new Set<string>();
  /** Written to the binlog but not committed in the engine (waiting for a semi-sync ack). */
  readonly uncommitted = new Set<Txn>();
  readonly commitWaiters = new Set<CommitWaiter>();
  /** Writes held by a pending SET GLOBAL read_only = ON (global read lock): they fail once it lands. */
  readonly blockedWrites = new Set<(r: WriteResult) => void>();
  /** SET GLOBAL read_only = ON statements waiting for commits in progress (server side, even after the client gave up). */
  pendingReadOnly = 0;
  /** The armed dead man's switch (a SET GLOBAL read_only sleeping in the server), see FenceSwitch. */
  private fenceTimer: ReturnType<Env["clock"]["schedule"]> | undefined;
  /** Its time came while the server was frozen: it lands as the server runs again. */
  private fenceOnThaw = false;
  readonly drainWaiters = new Set<Parked>();
  readonly thawWaiters = new Set<Parked>();
  readonly appliedWaiters = new Set<AppliedWaiter>();
  readonly exitCallbacks: Array<() => void> = [];

  // replication
  source: Endpoint | undefined;
  ioOn = false;
  conn: Connection | undefined;
  ioErrno = 0;
  ioError = "";
  sqlOn = false;
  sqlErrno = 0;
  sqlError = "";
  /** Received transactions; `relay[applied..]` are not applied yet. */
  relay: Txn[] = [];
  applied = 0;
  /** When the SQL thread started on the head relay transaction (only with an apply delay). */
  applyStart: number | undefined;
  /** Gtid_IO_Pos: the last GTID received since the relay log was last purged. */
  ioPos: Txn | undefined;
  applyDelayMs = 0;

  constructor(
    readonly env: Env,
    readonly node: string,
    /** server_id: a rebuilt node gets a new one (see SimWorld.wipe). */
    public serverId: number,
    readonly host: string,
    readonly port: number,
    /** The host clock's rate against real time: the switch's SLEEP and NOW() run on it. */
    readonly clockRate = 1,
  ) {}

  // ---- positions ------------------------------------------------------------------------------

  /**
   * The Gtid_list the first binlog file starts with: set by `SET GLOBAL gtid_binlog_state` on an
   * empty binlog (a node restored from a snapshot). A replica at exactly that position can connect.
   */
  binlogBase: Txn | undefined;

  get binlogLast(): Txn | undefined {
    return this.binlog[this.binlog.length - 1] ?? this.binlogBase;
  }

  /** RESET MASTER; SET GLOBAL gtid_binlog_state = list (only on an empty binlog, as MariaDB requires). */
  seedBinlogState(list: Txn[]): void {
    if (this.binlog.length > 0) throw new ModelError("Binlog must be empty to set gtid_binlog_state", "ER_BINLOG_MUST_BE_EMPTY", 1956);
    this.lastByServer.clear();
    let top: Txn | undefined;
    for (const t of list) {
      this.lastByServer.set(t.server, t);
      if (!top || t.seq > top.seq) top = t;
    }
    this.binlogBase = top;
  }

  /** Highest seq this server has executed in domain 0 (binlog or gtid_slave_pos). */
  executedSeq(): number {
    return Math.max(this.binlogLast?.seq ?? 0, this.slavePos?.seq ?? 0);
  }

  /** The highest-seq GTID it has executed: what a new transaction follows in history. */
  tip(): Txn | undefined {
    const b = this.binlogLast;
    const s = this.slavePos;
    if (!b) return s;
    if (!s) return b;
    return s.seq > b.seq ? s : b;
  }

  binlogState(): string {
    return [...this.lastByServer.values()]
      .sort((a, b) => a.server - b.server)
      .map((t) => t.str)
      .join(",");
  }

  /** Index of exactly this GTID in the binlog, or -1 (binary search: seqs strictly increase). */
  indexOf(server: number, seq: number): number {
    let lo = 0;
    let hi = this.binlog.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const t = this.binlog[mid]!;
      if (t.seq === seq) return t.server === server ? mid : -1;
      if (t.seq < seq) lo = mid + 1;
      else hi = mid - 1;
    }
    return -1;
  }

  /** Index of the first binlog transaction with a seq above `seq`. */
  firstAfter(seq: number): number {
    let lo = 0;
    let hi = this.binlog.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.binlog[mid]!.seq <= seq) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  appendBinlog(t: Txn): number {
    this.binlog.push(t);
    this.lastByServer.set(t.server, t);
    this.executed.add(t.str);
    this.checkApplied();
    this.env.wake();
    return this.binlog.length - 1;
  }

  /** gtid_slave_pos; `executed` (what was really applied) is the caller's business. */
  setSlavePos(t: Txn | undefined): void {
    this.slavePos = t;
    this.checkApplied();
  }

  /** A new local transaction (client or operator): seq = highest known in domain 0 + 1. */
  writeLocal(): { txn: Txn; index: number } {
    const txn = this.env.newTxn(this.serverId, this.executedSeq() + 1, this.tip());
    return { txn, index: this.appendBinlog(txn) };
  }

  /** Crash recovery with --init-rpl-role=SLAVE: the binlog tail from the first transaction never committed goes. */
  truncateUncommitted(): Txn[] {
    let from = this.binlog.length;
    for (const t of this.uncommitted) {
      const i = this.indexOf(t.server, t.seq);
      if (i >= 0 && i < from) from = i;
    }
    this.uncommitted.clear();
    if (from >= this.binlog.length) return [];
    const gone = this.binlog.splice(from);
    for (const t of gone) this.executed.delete(t.str);
    this.lastByServer.clear();
    for (const t of this.binlog) this.lastByServer.set(t.server, t);
    return gone;
  }

  // ---- waiting ----------------------------------------------------------------------------------

  private park(set: Set<Parked>, deadline: number, onTimeout: () => Error): Promise<void> {
    const clock = this.env.clock;
    return new Promise<void>((resolve, reject) => {
      let timer: Timer | undefined;
      const p: Parked = {
        resolve: () => {
          if (timer) clock.cancel(timer);
          resolve();
        },
        reject: (err) => {
          if (timer) clock.cancel(timer);
          reject(err);
        },
      };
      set.add(p);
      timer = clock.schedule(deadline - clock.now(), () => {
        set.delete(p);
        reject(onTimeout());
      });
    });
  }

  /** Resolves once thawed; rejects at `deadline` or when the process dies. */
  untilThawed(deadline: number, onTimeout: () => Error): Promise<void> {
    return this.park(this.thawWaiters, deadline, onTimeout);
  }

  /** Client side of a SET GLOBAL read_only = ON that waits for commits in progress. */
  untilDrained(deadline: number, onTimeout: () => Error): Promise<void> {
    return this.park(this.drainWaiters, deadline, onTimeout);
  }

  /** Resolves true once domain 0 reaches `seq`, false at the timeout; rejects if the process dies. */
  waitSeq(seq: number, timeoutMs: number, clientDeadline: number): Promise<boolean> {
    const clock = this.env.clock;
    return new Promise<boolean>((resolve, reject) => {
      const w: AppliedWaiter = {
        seq,
        settle: (ok) => {
          clock.cancel(timer);
          this.appliedWaiters.delete(w);
          resolve(ok);
        },
        fail: (err) => {
          clock.cancel(timer);
          this.appliedWaiters.delete(w);
          reject(err);
        },
      };
      this.appliedWaiters.add(w);
      const timer = clock.schedule(timeoutMs, () => {
        this.appliedWaiters.delete(w);
        // A frozen server answers MASTER_GTID_WAIT's timeout only once it runs again.
        if (!this.frozen) return resolve(false);
        this.untilThawed(clientDeadline, () => new ModelError("Query inactivity timeout", "PROTOCOL_SEQUENCE_TIMEOUT")).then(
          () => resolve(this.executedSeq() >= seq),
          reject,
        );
      });
    });
  }

  private checkApplied(): void {
    if (this.appliedWaiters.size === 0) return;
    const have = this.executedSeq();
    for (const w of [...this.appliedWaiters]) if (have >= w.seq) w.settle(true);
  }

  // ---- semi-sync and commits ----------------------------------------------------------------------

  private commit(w: CommitWaiter, result: WriteResult): void {
    this.commitWaiters.delete(w);
    this.uncommitted.delete(w.txn);
    if (result === "acked") this.env.recordAck(w.txn, this.node);
    w.settle(result);
  }

  /** A replica received the binlog up to `index`: the commits waiting on it complete. */
  ackUpTo(index: number): void {
    if (this.commitWaiters.size === 0) return;
    for (const w of [...this.commitWaiters]) if (w.index <= index) this.commit(w, "acked");
    this.drained();
  }

  setSemiSync(on: boolean): void {
    this.semiSync = on;
    if (on || this.commitWaiters.size === 0) return;
    // MariaDB: turning semi-sync off lets every waiting commit complete (and the client succeed).
    for (const w of [...this.commitWaiters]) this.commit(w, "acked");
    this.drained();
  }

  /** KILL CONNECTION for every client that could still write; a commit waiting for an ack completes locally. */
  killWriters(): number {
    // The switch's connection is a client connection too (production kills it with the others).
    this.disarmFence();
    const n = this.commitWaiters.size + this.blockedWrites.size;
    for (const w of [...this.commitWaiters]) this.commit(w, "failed");
    for (const b of [...this.blockedWrites]) {
      this.blockedWrites.delete(b);
      b("failed");
    }
    this.drained();
    return n;
  }

  addCommitWaiter(txn: Txn, index: number): Promise<WriteResult> {
    this.uncommitted.add(txn);
    return new Promise<WriteResult>((settle) => this.commitWaiters.add({ txn, index, settle }));
  }

  /** No commit in progress: a pending SET GLOBAL read_only = ON lands, and the writes it held fail. */
  private drained(): void {
    if (this.commitWaiters.size > 0 || this.pendingReadOnly === 0) return;
    this.pendingReadOnly = 0;
    this.readOnly = true;
    for (const p of [...this.drainWaiters]) p.resolve();
    this.drainWaiters.clear();
    for (const b of [...this.blockedWrites]) b("failed");
    this.blockedWrites.clear();
  }

  // ---- process ------------------------------------------------------------------------------------

  start(): void {
    this.disarmFence();
    this.running = true;
    this.frozen = false;
    this.pid = this.env.nextPid();
    // --read-only=1, semi-sync master off, --skip-slave-start; errors are in memory only.
    this.readOnly = true;
    this.semiSync = false;
    this.ioOn = false;
    this.sqlOn = false;
    this.ioErrno = 0;
    this.ioError = "";
    this.sqlErrno = 0;
    this.sqlError = "";
    if (this.env.lossless) this.truncateUncommitted();
    // Without --init-rpl-role=SLAVE, recovery commits what the binlog has (nothing waits then anyway).
    else this.uncommitted.clear();
    this.env.wake();
  }

  /** SIGKILL: everything in flight on it ends. Returns false if it was not running. */
  kill(): boolean {
    if (!this.running) return false;
    this.disarmFence();
    this.running = false;
    this.frozen = false;
    this.pid = undefined;
    this.ioOn = false;
    this.sqlOn = false;
    this.conn = undefined;
    this.purgeRelay();
    const lost = lostConnection();
    // Commits waiting for an ack stay uncommitted: their clients see an error.
    for (const w of [...this.commitWaiters]) w.settle("failed");
    this.commitWaiters.clear();
    for (const b of [...this.blockedWrites]) b("failed");
    this.blockedWrites.clear();
    this.pendingReadOnly = 0;
    for (const set of [this.drainWaiters, this.thawWaiters]) {
      for (const p of [...set]) p.reject(lost);
      set.clear();
    }
    for (const w of [...this.appliedWaiters]) w.fail(lost);
    this.env.wake();
    return true;
  }

  freeze(): void {
    if (this.running) this.frozen = true;
  }

  /** Arms (or re-arms) the dead man's switch: read-only in `afterMs` (the statement runs in the server). */
  armFence(afterMs: number): void {
    this.disarmFence();
    this.fenceTimer = this.env.clock.schedule(afterMs / this.clockRate, () => {
      this.fenceTimer = undefined;
      if (!this.running) return;
      if (this.frozen) this.fenceOnThaw = true;
      else this.fenceLands();
    });
  }

  /** The switch's statement ends without landing: killed, or its connection or process is gone. */
  disarmFence(): void {
    if (this.fenceTimer) this.env.clock.cancel(this.fenceTimer);
    this.fenceTimer = undefined;
    this.fenceOnThaw = false;
  }

  /**
   * SET GLOBAL read_only = 1 runs in the server: it lands at once (true), or waits behind commits
   * in progress (false: pending until they end, even if its client gives up).
   */
  requestReadOnly(): boolean {
    if (this.readOnly || this.commitWaiters.size === 0) {
      this.readOnly = true;
      return true;
    }
    this.pendingReadOnly++;
    return false;
  }

  /** The switch's statement runs (see requestReadOnly). */
  private fenceLands(): void {
    this.fenceOnThaw = false;
    this.requestReadOnly();
  }

  thaw(): void {
    if (!this.frozen) return;
    this.frozen = false;
    // The switch's thread was woken by its expired timer: it runs before a client can be served.
    if (this.fenceOnThaw) this.fenceLands();
    for (const p of [...this.thawWaiters]) p.resolve();
    this.thawWaiters.clear();
    this.env.wake();
  }

  purgeRelay(): void {
    this.relay = [];
    this.applied = 0;
    this.applyStart = undefined;
    this.ioPos = undefined;
  }
}
