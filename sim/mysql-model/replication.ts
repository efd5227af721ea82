import type { Env, Server, Txn } from "./server.js";

/**
 * The replication threads of one replica, run every replication step: the IO thread connects with
 * GTID auto-positioning (MASTER_USE_GTID = slave_pos), copies what the source's binlog has after
 * its position into the relay log and acks it (semi-sync); the SQL thread applies the relay log
 * into the binlog (log_slave_updates) and gtid_slave_pos, under gtid_strict_mode.
 */

const fatal1236 = (msg: string) => `Got fatal error 1236 from master when reading data from binary log: '${msg}'`;

const connectError = (s: Server, why: "refused" | "timeout") =>
  `error connecting to master 'repl@${s.source?.host}:${s.source?.port}' - retry-time: 1  maximum-retries: 100000  message: ` +
  `Can't connect to MySQL server on '${s.source?.host}' (${why === "refused" ? '111 "Connection refused"' : '110 "Connection timed out"'})`;

function ioFail(s: Server, errno: number, message: string): void {
  s.ioOn = false;
  s.conn = undefined;
  s.ioErrno = errno;
  s.ioError = message;
}

/**
 * Where the source starts sending, after MariaDB's check_slave_start_position: the requested GTID
 * must be in the source's binlog state (and then in its binlog), or be the source's own
 * gtid_slave_pos (a promoted replica), or the source must have nothing in the domain yet.
 */
export function startPosition(src: Server, want: Txn | undefined): { next: number; recheck?: Txn } | { error: string } {
  // An empty slave position needs each domain from its very first transaction: MariaDB's
  // contains_all_slave_gtid() refuses every binlog file whose Gtid_list names a domain the slave
  // lacks, so a source whose binlog starts after history began (restored, or purged) refuses it.
  if (!want) {
    return src.binlogBase
      ? { error: fatal1236("Could not find GTID state requested by slave in any binlog files. Probably the slave state is too old and required binlog files have been purged.") }
      : { next: 0 };
  }
  // The Gtid_list at the start of the binlog (a restored, seeded server): everything after it.
  if (src.binlogBase && src.binlogBase.str === want.str) return { next: 0 };
  const inState = src.lastByServer.get(want.server);
  if (inState && inState.seq >= want.seq) {
    const i = src.indexOf(want.server, want.seq);
    if (i >= 0) return { next: i + 1 };
    const own = src.slavePos && src.slavePos.server === want.server && src.slavePos.seq === want.seq;
    if (own) return { next: src.firstAfter(want.seq) };
    return { error: fatal1236(`The binlog on the master is missing the GTID ${want.str} requested by the slave (even though a subsequent sequence number does exist), and GTID strict mode is enabled`) };
  }
  const ownSlavePos = src.slavePos && src.slavePos.server === want.server && src.slavePos.seq === want.seq;
  if (ownSlavePos) return { next: src.firstAfter(want.seq) };
  if (src.binlog.length === 0) return { next: 0, recheck: want };
  return { error: fatal1236(`Error: connecting slave requested to start from GTID ${want.str}, which is not in the master's binlog`) };
}

/** One step of the IO thread (the server is running and not frozen, its IO thread is on). */
export function ioStep(env: Env, s: Server): void {
  const src = s.source ? env.resolve(s.source) : undefined;
  if (!src?.running || env.isCut(s, src)) {
    s.conn = undefined;
    s.ioErrno = 2003;
    s.ioError = connectError(s, src?.running ? "timeout" : "refused");
    return;
  }
  if (s.conn && (s.conn.src !== src || s.conn.pid !== src.pid)) s.conn = undefined;
  // A stopped (SIGSTOP) source: an open connection just stays silent; a new one never completes the handshake.
  if (src.frozen) return;
  if (!s.conn) {
    const start = startPosition(src, s.ioPos ?? s.slavePos);
    if ("error" in start) {
      ioFail(s, 1236, start.error);
      return;
    }
    s.conn = { src, pid: src.pid!, next: start.next, recheck: start.recheck };
    s.ioErrno = 0;
    s.ioError = "";
  }
  const c = s.conn;
  const from = c.next;
  while (c.next < src.binlog.length) {
    const t = src.binlog[c.next]!;
    if (c.recheck) {
      const want = c.recheck;
      if (t.server !== want.server || t.seq !== want.seq) {
        ioFail(s, 1236, fatal1236(`Error: connecting slave requested to start from GTID ${want.str}, which is not in the master's binlog`));
        return;
      }
      c.recheck = undefined;
      c.next++;
      continue;
    }
    c.next++;
    // Events of its own server id are not applied again (replicate_same_server_id = 0), but the
    // position moves past them: they stay in the relay log as no-ops.
    s.relay.push(t);
    s.ioPos = t;
  }
  if (c.next > from && env.lossless) src.ackUpTo(c.next - 1);
}

/** One step of the SQL thread (running, not frozen, SQL thread on). */
export function sqlStep(env: Env, s: Server): void {
  const now = env.clock.now();
  while (s.applied < s.relay.length) {
    const t = s.relay[s.applied]!;
    let nextStart: number | undefined;
    if (s.applyDelayMs > 0) {
      s.applyStart ??= now;
      if (now < s.applyStart + s.applyDelayMs) return;
      nextStart = s.applyStart + s.applyDelayMs;
    }
    if (t.server !== s.serverId) {
      const last = s.binlogLast;
      if (last && last.seq >= t.seq) {
        s.sqlOn = false;
        s.sqlErrno = 1950;
        s.sqlError = `An attempt was made to binlog GTID ${t.str} which would create an out-of-order sequence number with existing GTID ${last.str}, and gtid strict mode is enabled`;
        s.applyStart = undefined;
        return;
      }
      s.appendBinlog(t);
    }
    s.setSlavePos(t);
    s.applied++;
    s.applyStart = nextStart;
  }
  // All applied: keep the relay log small (received stays in ioPos).
  s.relay = [];
  s.applied = 0;
  s.applyStart = undefined;
}

/** Whether another replication step could change anything for this server. */
export function needsStep(env: Env, s: Server): boolean {
  if (!s.running || s.frozen) return false;
  if (s.sqlOn && s.applied < s.relay.length) return true;
  if (!s.ioOn) return false;
  const src = s.source ? env.resolve(s.source) : undefined;
  const c = s.conn;
  if (!c || !src) return true; // connecting: retry
  if (c.src !== src || c.pid !== src.pid || !src.running || env.isCut(s, src)) return true;
  return !src.frozen && c.next < src.binlog.length;
}
