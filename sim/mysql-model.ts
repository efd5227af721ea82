import type { SimClock } from "./clock.js";
import type { ServerProcess } from "../src/mysql/ha/database.js";
import { parseMariaGtidList } from "../src/mysql/gtid.js";
import { SimDatabase, SimProcess, replicationStatus, type Lookup } from "./mysql-model/facade.js";
import { ioStep, needsStep, sqlStep } from "./mysql-model/replication.js";
import { Server, type Env, type Txn, type WriteResult } from "./mysql-model/server.js";

export { ModelError, type Txn, type WriteResult } from "./mysql-model/server.js";

/**
 * A model of MariaDB 10.11 servers (one GTID domain, gtid_strict_mode, log_slave_updates,
 * AFTER_SYNC semi-sync when lossless) on the simulation's virtual clock, with the faults the
 * simulation injects: SIGKILL (and restart by the supervisor), SIGSTOP/SIGCONT, slow appliers,
 * network cuts between servers, and errant writes. Deterministic: no randomness, no real time.
 */

export interface WorldOptions {
  clock: SimClock;
  /** Semi-sync AFTER_SYNC with --init-rpl-role=SLAVE (crash recovery truncates unacknowledged commits). */
  lossless: boolean;
  /** How long after a crash the supervisor has mysqld running again. */
  restartDelayMs: number;
  /** How often the replication threads run (default 50 ms). */
  replicationStepMs?: number;
  /** Client query timeout against a server that does not answer (default 5000 ms). */
  queryTimeoutMs?: number;
}

export interface Acked {
  gtid: string;
  node: string;
  at: number;
}

export class SimWorld {
  private readonly clock: SimClock;
  private readonly servers = new Map<string, Server>();
  private readonly byEndpoint = new Map<string, Server>();
  private readonly cuts = new Set<string>();
  /** The latest transaction created under each GTID string (a truncated GTID can be written again). */
  private readonly txns = new Map<string, Txn>();
  private readonly ackedList: Acked[] = [];
  private readonly restartDelayMs: number;
  private readonly stepMs: number;
  private pids = 1000;
  private stopTicker: (() => void) | undefined;
  private readonly env: Env;
  private readonly lookup: Lookup;
  private readonly databases = new Map<string, SimDatabase>();
  private readonly processes = new Map<string, SimProcess>();

  constructor(o: WorldOptions) {
    this.clock = o.clock;
    this.restartDelayMs = o.restartDelayMs;
    this.stepMs = o.replicationStepMs ?? 50;
    this.env = {
      clock: o.clock,
      lossless: o.lossless,
      queryTimeoutMs: o.queryTimeoutMs ?? 5_000,
      wake: () => this.wake(),
      resolve: (ep) => this.byEndpoint.get(`${ep.host}:${ep.port}`),
      isCut: (a, b) => this.cuts.has(pairKey(a.node, b.node)),
      newTxn: (server, seq, prev) => {
        const t: Txn = { server, seq, str: `0-${server}-${seq}`, at: this.clock.now(), prev };
        this.txns.set(t.str, t);
        return t;
      },
      recordAck: (t, node) => this.ackedList.push({ gtid: t.str, node, at: this.clock.now() }),
      nextPid: () => this.pids++,
    };
    this.lookup = { txnOf: (text) => this.txnOf(text) };
  }

  addServer(node: string, o: { serverId: number; host: string; port: number; restoredFrom?: string; clockRate?: number }): void {
    if (this.servers.has(node)) throw new Error(`server ${node} exists already`);
    const key = `${o.host}:${o.port}`;
    if (this.byEndpoint.has(key)) throw new Error(`endpoint ${key} is taken`);
    const s = new Server(this.env, node, o.serverId, o.host, o.port, o.clockRate);
    if (o.restoredFrom) {
      // mariabackup restore: the data as of that GTID, no binlog, gtid_slave_pos = the backup's position.
      const t = this.txnOf(o.restoredFrom);
      for (let h = t; h; h = h.prev) s.executed.add(h.str);
      s.setSlavePos(t);
    }
    this.servers.set(node, s);
    this.byEndpoint.set(key, s);
    s.start();
  }

  /** The facade bound to this node (the model's own class: it also offers test helpers such as waitForRemote). */
  database(node: string): SimDatabase {
    let d = this.databases.get(node);
    if (!d) {
      d = new SimDatabase(this.env, this.server(node), this.lookup);
      this.databases.set(node, d);
    }
    return d;
  }

  process(node: string): ServerProcess {
    let p = this.processes.get(node);
    if (!p) {
      p = new SimProcess(this.server(node), () => this.crash(node));
      this.processes.set(node, p);
    }
    return p;
  }

  onExit(node: string, cb: () => void): void {
    this.server(node).exitCallbacks.push(cb);
  }

  // ---- faults -----------------------------------------------------------------------------------

  /** SIGKILL; the supervisor starts it again (read-only, replication stopped, semi-sync off) after restartDelayMs. */
  crash(node: string): void {
    const s = this.server(node);
    if (!s.kill()) return;
    this.clock.schedule(this.restartDelayMs, () => {
      if (!s.running) s.start();
    });
    for (const cb of s.exitCallbacks) cb();
  }

  /**
   * A rebuild: the server stops (no restart) and its datadir is replaced by an empty one, which
   * catches up by GTID once started again (startServer).
   */
  wipe(node: string, newServerId: number): void {
    const s = this.server(node);
    // As the product does: a rebuilt node takes a new server_id, or its replication would skip
    // the transactions its old self wrote (replicate-same-server-id is off).
    s.serverId = newServerId;
    if (s.kill()) for (const cb of s.exitCallbacks) cb();
    s.binlog = [];
    s.lastByServer.clear();
    s.slavePos = undefined;
    s.binlogBase = undefined;
    s.executed.clear();
    s.uncommitted.clear();
    s.source = undefined;
    s.purgeRelay();
    this.wake();
  }

  startServer(node: string): void {
    const s = this.server(node);
    if (!s.running) s.start();
  }

  freeze(node: string): void {
    this.server(node).freeze();
  }

  thaw(node: string): void {
    this.server(node).thaw();
  }

  setApplyDelay(node: string, ms: number): void {
    this.server(node).applyDelayMs = Math.max(0, ms);
    this.wake();
  }

  cutPeers(a: string, b: string, cut: boolean): void {
    this.server(a);
    this.server(b);
    if (cut) this.cuts.add(pairKey(a, b));
    else this.cuts.delete(pairKey(a, b));
    this.wake();
  }

  /** Whether the network between two nodes is cut (peer-partition): their HTTP ports too. */
  peersCut(a: string, b: string): boolean {
    return this.cuts.has(pairKey(a, b));
  }

  /** A transaction written on this server by an operator, whatever read_only says; committed at once. */
  errantWrite(node: string): string {
    const s = this.server(node);
    if (!s.running || s.frozen) throw new Error(`errantWrite: ${node} is ${s.running ? "frozen" : "down"}`);
    return s.writeLocal().txn.str;
  }

  // ---- workload ---------------------------------------------------------------------------------

  /** One INSERT as a client of this server. */
  async clientWrite(node: string): Promise<WriteResult> {
    const s = this.server(node);
    const deadline = this.clock.now() + this.env.queryTimeoutMs;
    for (;;) {
      if (!s.running) return "failed";
      if (!s.frozen) break;
      try {
        await s.untilThawed(deadline, () => new Error("query timeout"));
      } catch {
        return "failed";
      }
    }
    // SET GLOBAL read_only = ON holds the global read lock while it waits: the write waits, then fails.
    if (s.pendingReadOnly > 0) {
      return new Promise<WriteResult>((settle) => {
        const held = (r: WriteResult) => {
          this.clock.cancel(timer);
          settle(r);
        };
        const timer = this.clock.schedule(deadline - this.clock.now(), () => {
          s.blockedWrites.delete(held);
          settle("failed");
        });
        s.blockedWrites.add(held);
      });
    }
    if (s.readOnly) return "failed";
    const { txn, index } = s.writeLocal();
    if (!this.env.lossless || !s.semiSync) {
      this.env.recordAck(txn, node);
      return "acked";
    }
    // AFTER_SYNC: in the binlog (replicas may read it), committed only once a replica acknowledged it.
    return s.addCommitWaiter(txn, index);
  }

  get acked(): ReadonlyArray<Acked> {
    return this.ackedList;
  }

  executedSet(node: string): ReadonlySet<string> {
    return this.server(node).executed;
  }

  isWritable(node: string): boolean {
    const s = this.server(node);
    return s.running && !s.frozen && !s.readOnly;
  }

  /** @@gtid_binlog_state of that server. */
  binlogState(node: string): string {
    return this.server(node).binlogState();
  }

  /** rpl_semi_sync_master_enabled on that server. */
  semiSyncOn(node: string): boolean {
    return this.server(node).semiSync;
  }

  /**
   * Whether a client write sent to this node now could be acknowledged without anyone changing
   * the configuration: it is writable, and either commits do not wait (not lossless, or semi-sync
   * off) or a replica that could ack receives from it (running, not frozen, not cut off, IO thread on).
   */
  canAcknowledge(node: string): boolean {
    const s = this.server(node);
    if (!this.isWritable(node)) return false;
    if (!this.env.lossless || !s.semiSync) return true;
    for (const r of this.servers.values()) {
      if (r === s || !r.running || r.frozen || !r.ioOn || !r.source) continue;
      if (this.env.resolve(r.source) === s && !this.env.isCut(r, s)) return true;
    }
    return false;
  }

  describe(node: string): string {
    const s = this.server(node);
    const state = !s.running ? "down" : s.frozen ? "frozen" : "up";
    const r = replicationStatus(this.env, s);
    const repl = r.configured
      ? `repl=${r.sourceHost}:${r.sourcePort} io=${r.ioRunning} sql=${r.sqlRunning ? "Yes" : "No"} relay=${s.relay.length - s.applied} received=${r.received || "-"}` +
        (s.ioError ? ` ioError="${s.ioError}"` : "") +
        (s.sqlErrno ? ` sqlError=${s.sqlErrno} "${s.sqlError}"` : "")
      : "repl=none";
    return (
      `${node} id=${s.serverId} pid=${s.pid ?? "-"} ${state} ${s.readOnly ? "ro" : "rw"}${s.semiSync ? " semisync" : ""}` +
      `${s.commitWaiters.size ? ` waiting=${s.commitWaiters.size}` : ""}${s.pendingReadOnly ? " ro-pending" : ""}` +
      ` binlog=${s.binlogLast?.str ?? "-"}(${s.binlog.length}) state=${s.binlogState() || "-"} slave_pos=${s.slavePos?.str ?? "-"} ${repl}` +
      `${s.applyDelayMs ? ` applyDelay=${s.applyDelayMs}ms` : ""}`
    );
  }

  // ---- internals --------------------------------------------------------------------------------

  private server(node: string): Server {
    const s = this.servers.get(node);
    if (!s) throw new Error(`no server ${node}`);
    return s;
  }

  /** The domain-0 GTID of a position string, as the transaction that has it (or a stand-in). */
  private txnOf(text: string): Txn | undefined {
    const g = parseMariaGtidList(text).find((x) => x.domain === 0);
    if (!g) return undefined;
    const str = `0-${g.server}-${g.seq}`;
    return this.txns.get(str) ?? { server: g.server, seq: Number(g.seq), str, at: 0, prev: undefined };
  }

  private wake(): void {
    this.stopTicker ??= this.clock.every(this.stepMs, () => this.step());
  }

  private step(): void {
    for (const s of this.servers.values()) {
      if (!s.running || s.frozen) continue;
      if (s.ioOn) ioStep(this.env, s);
      if (s.sqlOn) sqlStep(this.env, s);
    }
    for (const s of this.servers.values()) if (needsStep(this.env, s)) return;
    this.stopTicker?.();
    this.stopTicker = undefined;
  }
}

const pairKey = (a: string, b: string) => (a < b ? `${a}|${b}` : `${b}|${a}`);

