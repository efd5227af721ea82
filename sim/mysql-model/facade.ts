import type { Database, Endpoint, LocalState, RemoteState, ServerProcess } from "../../src/mysql/ha/database.js";
import type { ReplicationStatus } from "../../src/mysql/dialect.js";
import { gtidUnion, parseMariaGtidList, type Flavor } from "../../src/mysql/gtid.js";
import { ModelError, type Env, type Server, type Txn } from "./server.js";

/**
 * The HA core's view of one node, over the model. A call to a running server answers on a
 * microtask; to a down one it rejects at once; to a frozen one it hangs until thaw or the query
 * timeout. Peers are read over the "network": a cut-off or stopped peer costs a 2 s connect timeout.
 */

const CONNECT_TIMEOUT_MS = 2_000;
const REMOTE_POLL_MS = 100;

const refused = (host: string, port: number) => new ModelError(`connect ECONNREFUSED ${host}:${port}`, "ECONNREFUSED");
const queryTimeout = () => new ModelError("Query inactivity timeout", "PROTOCOL_SEQUENCE_TIMEOUT");
const connectTimeout = () => new ModelError("connect ETIMEDOUT", "ETIMEDOUT");

export interface Lookup {
  /** A GTID of domain 0 in `text` as a transaction of the model (a known one when it exists). */
  txnOf(text: string): Txn | undefined;
}

/** SHOW SLAVE STATUS as the production parser returns it. */
export function replicationStatus(env: Env, s: Server): ReplicationStatus {
  if (!s.source) {
    return { configured: false, sourceHost: undefined, sourcePort: undefined, ioRunning: "No", sqlRunning: false, lagSeconds: null, ioError: "", sqlError: "", sqlErrno: 0, received: "" };
  }
  const ioRunning = !s.ioOn ? "No" : s.conn ? "Yes" : "Connecting";
  let lagSeconds: number | null = null;
  // Seconds_Behind_Master is NULL unless both threads run and the IO thread is connected.
  if (ioRunning === "Yes" && s.sqlOn) {
    const head = s.relay[s.applied];
    lagSeconds = head ? Math.max(0, Math.floor((env.clock.now() - head.at) / 1000)) : 0;
  }
  return {
    configured: true,
    sourceHost: s.source.host,
    sourcePort: s.source.port,
    ioRunning,
    sqlRunning: s.sqlOn,
    lagSeconds,
    ioError: s.ioError,
    sqlError: s.sqlError,
    sqlErrno: s.sqlErrno,
    received: (s.ioPos ?? s.slavePos)?.str ?? "",
  };
}

export function localState(env: Env, s: Server): LocalState {
  const binlogPos = s.binlogLast?.str ?? "";
  const slavePos = s.slavePos?.str ?? "";
  return {
    readOnly: s.readOnly,
    executed: gtidUnion("mariadb", binlogPos, slavePos),
    binlogPos,
    state: s.binlogState(),
    slavePos,
    serverId: s.serverId,
    replication: replicationStatus(env, s),
    semiSyncPrimary: s.semiSync,
  };
}

/** What production's remoteState reads: gtid_binlog_pos ∪ gtid_slave_pos, @@gtid_binlog_state, @@read_only. */
export function remoteView(s: Server): RemoteState {
  return { executed: gtidUnion("mariadb", s.binlogLast?.str ?? "", s.slavePos?.str ?? ""), state: s.binlogState(), readOnly: s.readOnly };
}

export class SimDatabase implements Database {
  constructor(
    private readonly env: Env,
    private readonly s: Server,
    private readonly lookup: Lookup,
  ) {}

  /** Waits while the server is frozen (up to the query timeout); throws if it is down. */
  private async enter(deadline = this.env.clock.now() + this.env.queryTimeoutMs): Promise<void> {
    const s = this.s;
    for (;;) {
      if (!s.running) throw refused(s.host, s.port);
      if (!s.frozen) return;
      await s.untilThawed(deadline, queryTimeout);
    }
  }

  async ready(): Promise<{ flavor: Flavor; version: string }> {
    await this.enter();
    return { flavor: "mariadb", version: "10.11.0" };
  }

  async observe(): Promise<LocalState> {
    await this.enter();
    return localState(this.env, this.s);
  }

  async setReadOnly(on: boolean, writableForMs?: number, timeoutMs?: number): Promise<void> {
    const sent = this.env.clock.now();
    const deadline = sent + (timeoutMs ?? this.env.queryTimeoutMs);
    await this.enter(deadline);
    const s = this.s;
    // The server evaluates the condition when it runs the statement (after a freeze, if any), on
    // its host's clock, the one statepilot measured writableForMs on.
    if (!on && writableForMs !== undefined && (this.env.clock.now() - sent) * s.clockRate >= writableForMs) {
      s.readOnly = true;
      return;
    }
    if (!on) {
      s.readOnly = false;
      return;
    }
    // The global read lock waits for commits in progress, which include those waiting for a
    // semi-sync ack. The statement stays pending on the server even after the client times out.
    if (s.requestReadOnly()) return;
    await s.untilDrained(deadline, queryTimeout);
  }

  async armFence(afterMs: number): Promise<void> {
    await this.enter();
    this.s.armFence(afterMs);
  }

  async killWriters(): Promise<number> {
    await this.enter();
    return this.s.killWriters();
  }

  async semiSyncPrimary(on: boolean): Promise<void> {
    try {
      await this.enter();
      this.s.setSemiSync(on);
    } catch (err) {
      if (on) throw err;
    }
  }

  async replicateFrom(source: Endpoint, slavePos: "binlog" | string | undefined): Promise<void> {
    await this.enter();
    const s = this.s;
    // STOP SLAVE; SET GLOBAL gtid_slave_pos; CHANGE MASTER (purges the relay log); START SLAVE.
    stopThreads(s);
    if (slavePos === "binlog") s.setSlavePos(s.binlogLast);
    else if (slavePos !== undefined) s.setSlavePos(slavePos === "" ? undefined : this.lookup.txnOf(slavePos));
    s.source = { host: source.host, port: source.port };
    s.purgeRelay();
    startThreads(this.env, s);
  }

  async seedBinlogState(state: string): Promise<void> {
    await this.enter();
    const s = this.s;
    if (s.binlog.length > 0 || s.binlogBase || !state) return;
    const list: Txn[] = [];
    for (const g of state.split(",").filter(Boolean)) {
      const t = this.lookup.txnOf(g);
      if (t) list.push(t);
    }
    s.seedBinlogState(list);
  }

  async startReplica(): Promise<void> {
    await this.enter();
    const s = this.s;
    if (!s.source) throw new ModelError("The server is not configured as slave; fix in config file or with CHANGE MASTER TO", "ER_BAD_SLAVE", 1200);
    startThreads(this.env, s);
  }

  async stopReceiver(): Promise<void> {
    await this.enter();
    this.s.ioOn = false;
    this.s.conn = undefined;
  }

  async waitApplied(gtids: string, timeoutMs: number): Promise<boolean> {
    if (!gtids) return true;
    const clientDeadline = this.env.clock.now() + timeoutMs + this.env.queryTimeoutMs;
    await this.enter();
    // A position: per domain the highest seq must be reached (gtidSubset); the model has domain 0 only.
    let need = 0;
    for (const g of parseMariaGtidList(gtids)) need = Math.max(need, g.domain === 0 ? Number(g.seq) : Number.POSITIVE_INFINITY);
    if (this.s.executedSeq() >= need) return true;
    return this.s.waitSeq(need, timeoutMs, clientDeadline);
  }

  async resetReplication(): Promise<void> {
    await this.enter();
    const s = this.s;
    stopThreads(s);
    s.source = undefined;
    s.purgeRelay();
    s.ioErrno = 0;
    s.ioError = "";
    s.sqlErrno = 0;
    s.sqlError = "";
  }

  async remoteState(peer: Endpoint): Promise<RemoteState> {
    const clock = this.env.clock;
    const deadline = clock.now() + CONNECT_TIMEOUT_MS;
    for (;;) {
      const p = this.env.resolve(peer);
      if (!p?.running) throw refused(peer.host, peer.port);
      if (this.env.isCut(this.s, p)) {
        await clock.sleep(Math.max(0, deadline - clock.now()));
        throw connectTimeout();
      }
      if (!p.frozen) return remoteView(p);
      // The kernel accepts the connection; the handshake never comes while it is stopped.
      await p.untilThawed(deadline, connectTimeout);
    }
  }

  async waitForRemote(peer: Endpoint, done: (s: RemoteState) => boolean, deadline: number): Promise<boolean> {
    const clock = this.env.clock;
    while (clock.now() < deadline) {
      try {
        if (done(await this.remoteState(peer))) return true;
      } catch {
        // Unreachable for now: poll again.
      }
      await clock.sleep(REMOTE_POLL_MS);
    }
    return false;
  }

  close(): void {
    // One connection in production, reopened on the next call; nothing to release here.
  }
}

function stopThreads(s: Server): void {
  s.ioOn = false;
  s.conn = undefined;
  s.sqlOn = false;
  s.applyStart = undefined;
}

/** START SLAVE: starts what is stopped; with GTID, both threads stopped means the relay log is refetched. */
function startThreads(env: Env, s: Server): void {
  if (!s.ioOn && !s.sqlOn) s.purgeRelay();
  if (!s.ioOn) {
    s.ioOn = true;
    s.conn = undefined;
    s.ioErrno = 0;
    s.ioError = "";
  }
  if (!s.sqlOn) {
    s.sqlOn = true;
    s.sqlErrno = 0;
    s.sqlError = "";
    s.applyStart = undefined;
  }
  env.wake();
}

export class SimProcess implements ServerProcess {
  constructor(
    private readonly s: Server,
    private readonly crash: () => void,
  ) {}

  running(): boolean {
    return this.s.running;
  }

  pid(): number | undefined {
    return this.s.pid;
  }

  kill(): void {
    this.crash();
  }
}
