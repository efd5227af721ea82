import mysql from "mysql2/promise";
import { Dialect, parseServerVersion } from "./dialect.js";
import { FenceSwitch, type FenceSwitchEvent } from "./fence-switch.js";
import { gtidUnion } from "./gtid.js";

import type { LocalState, RemoteState } from "./ha/database.js";

export type { LocalState };

type Row = Record<string, unknown>;

const QUERY_TIMEOUT_MS = 5_000;

/** The node's own mysqld, managed as root over its unix socket with one connection. */
export class LocalServer {
  private conn: mysql.Connection | undefined;
  private connecting: Promise<mysql.Connection> | undefined;
  dialect: Dialect | undefined;
  private readonly fenceSwitch: FenceSwitch;

  constructor(
    private readonly socket: string,
    private readonly password: () => string,
    onFenceSwitch?: (e: FenceSwitchEvent) => void,
  ) {
    this.fenceSwitch = new FenceSwitch({ connect: () => this.openRoot(), flavor: () => this.dialect?.flavor ?? "mariadb", onEvent: onFenceSwitch });
  }

  /** A new root connection over the socket (the managed one below, and the fence switch's own). */
  private openRoot(): Promise<mysql.Connection> {
    return mysql.createConnection({ socketPath: this.socket, user: "root", password: this.password(), connectTimeout: 2_000, multipleStatements: false });
  }

  /** Arms the server's own dead man's switch: read-only in `afterMs` unless armed again (see FenceSwitch). */
  async armFence(afterMs: number): Promise<void> {
    await this.ready();
    await this.fenceSwitch.arm(afterMs);
  }

  private async connection(): Promise<mysql.Connection> {
    if (this.conn) return this.conn;
    this.connecting ??= (async () => {
      try {
        const c = await this.openRoot();
        c.on("error", () => this.drop(c));
        if (!this.dialect) {
          const [rows] = await c.query<mysql.RowDataPacket[]>("SELECT VERSION() AS v");
          this.dialect = new Dialect(parseServerVersion(String(rows[0]?.v)));
        }
        this.conn = c;
        return c;
      } finally {
        this.connecting = undefined;
      }
    })();
    return this.connecting;
  }

  private drop(c: mysql.Connection | undefined): void {
    if (c && this.conn === c) this.conn = undefined;
    c?.destroy();
  }

  /** Runs a statement; a connection error drops the connection so the next call reconnects. */
  async query(sql: string, values: unknown[] = [], timeoutMs = QUERY_TIMEOUT_MS): Promise<Row[]> {
    const c = await this.connection();
    try {
      const [rows] = await c.query({ sql, values, timeout: timeoutMs });
      return Array.isArray(rows) ? (rows as Row[]) : [];
    } catch (err) {
      const code = (err as { code?: string }).code ?? "";
      const fatal = (err as { fatal?: boolean }).fatal === true;
      if (fatal || code === "PROTOCOL_SEQUENCE_TIMEOUT" || code.startsWith("ECONN") || code === "PROTOCOL_CONNECTION_LOST") this.drop(c);
      throw err;
    }
  }

  async ready(): Promise<Dialect> {
    await this.connection();
    return this.dialect!;
  }

  async observe(): Promise<LocalState> {
    const d = await this.ready();
    const [pos] = await this.query(d.positions());
    const [rs] = await this.query(d.showReplicaStatus());
    let semi = false;
    try {
      const [s] = await this.query(d.semiSyncStatus());
      semi = Number(s?.enabled) === 1 || s?.enabled === "ON";
    } catch (err) {
      // MySQL without the semisync plugin loaded knows no such variable: not lossless. Anything
      // else is a real failure of the look, not "semi-sync off".
      if ((err as { code?: string }).code !== "ER_UNKNOWN_SYSTEM_VARIABLE") throw err;
    }
    const binlogPos = String(pos?.executed ?? "").replace(/\s+/g, "");
    const slavePos = String(pos?.slavePos ?? "").replace(/\s+/g, "");
    return {
      readOnly: Number(pos?.readOnly) === 1,
      executed: d.flavor === "mariadb" ? gtidUnion("mariadb", binlogPos, slavePos) : binlogPos,
      binlogPos,
      state: String(pos?.state ?? "").replace(/\s+/g, ""),
      slavePos: String(pos?.slavePos ?? "").replace(/\s+/g, ""),
      serverId: Number(pos?.serverId),
      replication: d.parseReplicaStatus(rs),
      semiSyncPrimary: semi,
    };
  }

  async setReadOnly(on: boolean, writableForMs?: number, timeoutMs = 3_000): Promise<void> {
    const d = await this.ready();
    const until = writableForMs === undefined ? undefined : Date.now() + writableForMs;
    for (const sql of d.setReadOnly(on, until)) await this.query(sql, [], timeoutMs);
  }

  /** Kills client connections that could still write; returns how many. */
  async killWriters(): Promise<number> {
    const d = await this.ready();
    const rows = await this.query(d.writerConnections(), [], 2_000);
    let n = 0;
    for (const r of rows) {
      try {
        await this.query(`KILL CONNECTION ${Number(r.id)}`, [], 2_000);
        n++;
      } catch {
        // Already gone.
      }
    }
    return n;
  }

  async semiSyncPrimary(on: boolean): Promise<void> {
    const d = await this.ready();
    try {
      await this.query(d.semiSyncPrimary(on));
    } catch (err) {
      if (on) throw err;
    }
  }

  /** Points replication at a new source (GTID auto-positioning) and starts it. */
  /**
   * `slavePos`: "binlog" aligns gtid_slave_pos with the binlog (a node that wrote as primary has
   * those GTIDs in its binlog only, and would otherwise ask for them again); a position string sets
   * it (a node restored from a snapshot starts from the backup's GTID). MariaDB only.
   */
  async replicateFrom(source: { host: string; port: number; user: string; password: string }, slavePos: "binlog" | string | undefined): Promise<void> {
    const d = await this.ready();
    await this.query(d.stopReplica(), [], 10_000);
    if (slavePos && d.flavor === "mariadb") {
      if (slavePos === "binlog") await this.query("SET GLOBAL gtid_slave_pos = @@GLOBAL.gtid_binlog_pos");
      else {
        await this.query("SET GLOBAL gtid_slave_pos = ?", [slavePos]);
      }
    }
    await this.query(d.changeSource(), [source.host, source.port, source.user, source.password]);
    await this.query(d.startReplica(), [], 10_000);
  }

  /**
   * A node restored from a snapshot starts its binlog with the snapshot's binlog state (the first
   * binlog's Gtid_list): once promoted it serves replicas standing at that position, and their
   * binlog states compare exactly against it. Only while the binlog is empty; MariaDB only.
   */
  async seedBinlogState(state: string): Promise<void> {
    const d = await this.ready();
    if (d.flavor !== "mariadb" || !state) return;
    const [b] = await this.query("SELECT @@GLOBAL.gtid_binlog_pos AS pos");
    if (String(b?.pos ?? "") !== "") return;
    await this.query("RESET MASTER");
    await this.query("SET GLOBAL gtid_binlog_state = ?", [state]);
  }

  async startReplica(): Promise<void> {
    const d = await this.ready();
    await this.query(d.startReplica(), [], 10_000);
  }

  async stopReceiver(): Promise<void> {
    const d = await this.ready();
    await this.query(d.stopReceiver(), [], 10_000);
  }

  /** Waits until `gtids` are applied; false on timeout. */
  async waitApplied(gtids: string, timeoutMs: number): Promise<boolean> {
    if (!gtids) return true;
    const d = await this.ready();
    const [r] = await this.query(d.waitForApplied(), [gtids, Math.max(1, Math.ceil(timeoutMs / 1000))], timeoutMs + 5_000);
    return Number(r?.r) === 0;
  }

  async resetReplication(): Promise<void> {
    const d = await this.ready();
    await this.query(d.stopReplica(), [], 10_000);
    await this.query(d.resetReplicaAll());
  }

  close(): void {
    this.fenceSwitch.close();
    this.drop(this.conn);
  }
}

type Target = { host: string; port: number; user: string; password: string };

function connectRemote(target: Target): Promise<mysql.Connection> {
  return mysql.createConnection({ host: target.host, port: target.port, user: target.user, password: target.password, connectTimeout: 2_000 });
}

async function queryState(c: mysql.Connection, dialect: Dialect): Promise<RemoteState> {
  const [rows] = await c.query<mysql.RowDataPacket[]>({ sql: dialect.positions(), timeout: QUERY_TIMEOUT_MS });
  const r = rows[0];
  const clean = (v: unknown) => String(v ?? "").replace(/\s+/g, "");
  // MariaDB: what the peer has applied is its binlog plus its slave position (a restored node's
  // history before its restore point is only in the latter).
  const executed = dialect.flavor === "mariadb" ? gtidUnion("mariadb", clean(r?.executed), clean(r?.slavePos)) : clean(r?.executed);
  return { executed, state: clean(r?.state), readOnly: Number(r?.readOnly) === 1 };
}

/** Another node's GTID state over a short-lived connection (as the replication user). */
export async function remoteState(target: Target, dialect: Dialect): Promise<RemoteState> {
  const c = await connectRemote(target);
  let ok = false;
  try {
    const state = await queryState(c, dialect);
    ok = true;
    return state;
  } finally {
    // A polite COM_QUIT: a destroyed socket makes the peer log "Aborted connection" for every look.
    if (ok) await c.end().catch(() => c.destroy());
    else c.destroy();
  }
}
