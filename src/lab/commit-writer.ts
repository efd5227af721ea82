import { setTimeout as sleep } from "node:timers/promises";
import mysql from "mysql2/promise";
import type { LabFile } from "./cluster.js";

/** One acknowledged row: its id, and its commit time as the server stamped it (UTC, microseconds). */
export interface CommitRecord {
  id: number;
  /** `YYYY-MM-DD HH:MM:SS.ffffff`, UTC: the server's CURRENT_TIMESTAMP(6) of the insert, returned with the acknowledgement. */
  at: string;
  node: string;
}

/** Seconds since the epoch (whole) of a record's server time. */
export const recordSecond = (r: Pick<CommitRecord, "at">): number => Math.floor(Date.parse(`${r.at.replace(" ", "T")}Z`) / 1000);

type Endpoint = { name: string; host: string; port: number };

/**
 * A writer for point-in-time tests and benchmarks: `workers` connections insert rows with ids it
 * chooses into whichever node accepts them (the primary), each insert returning the server's commit
 * time (`INSERT ... RETURNING at`). Every acknowledged row is recorded with that time; an insert
 * whose outcome is unknown (the connection failed) is recorded as uncertain, to be resolved against
 * the surviving cluster.
 */
export class CommitWriter {
  readonly acked: CommitRecord[] = [];
  readonly uncertain: number[] = [];
  /** When a write first failed, and when (and where) one was next accepted. */
  readonly outages: Array<{ failedAt: number; recoveredAt: number | undefined; node: string | undefined }> = [];
  lastError = "";
  private nextId = Date.now() * 1000;
  private running = false;
  private done: Array<Promise<void>> = [];
  current: string | undefined;

  constructor(
    private readonly lab: LabFile,
    private readonly opts: { table?: string; workers?: number; pauseMs?: number; pad?: number } = {},
  ) {}

  private get table(): string {
    return this.opts.table ?? "commits";
  }

  private endpoints(): Endpoint[] {
    return this.lab.nodes.map((n) => ({ name: n.name, host: n.mysql.host, port: n.mysql.port }));
  }

  private async connect(e: Endpoint): Promise<mysql.Connection> {
    const c = await mysql.createConnection({ host: e.host, port: e.port, user: this.lab.credentials.user, password: this.lab.credentials.password, database: this.lab.credentials.database, connectTimeout: 1_000, dateStrings: true });
    c.on("error", () => undefined);
    await c.query("SET SESSION time_zone = '+00:00'");
    return c;
  }

  /** Creates the table on the primary (the first node that accepts it). */
  async prepare(): Promise<void> {
    for (const e of this.endpoints()) {
      try {
        const c = await this.connect(e);
        try {
          await c.query(`CREATE TABLE IF NOT EXISTS \`${this.table}\` (id BIGINT PRIMARY KEY, at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6), node VARCHAR(32) NOT NULL, pad VARCHAR(255) NOT NULL DEFAULT '')`);
          return;
        } finally {
          c.destroy();
        }
      } catch {
        // a read-only replica, or down
      }
    }
    throw new Error(`no node accepted CREATE TABLE ${this.table}`);
  }

  start(): void {
    this.running = true;
    const workers = this.opts.workers ?? 1;
    for (let w = 0; w < workers; w++) this.done.push(this.work());
  }

  private async work(): Promise<void> {
    let conn: { c: mysql.Connection; e: Endpoint } | undefined;
    const pad = "x".repeat(this.opts.pad ?? 0);
    while (this.running) {
      const eps = this.endpoints();
      const order = [...eps].sort((a, b) => (a.name === this.current ? -1 : b.name === this.current ? 1 : 0));
      let ok = false;
      for (const e of order) {
        if (!this.running) break;
        const id = this.nextId++;
        try {
          if (!conn || conn.e.name !== e.name) {
            conn?.c.destroy();
            conn = undefined;
            conn = { c: await this.connect(e), e };
          }
          let rows: mysql.RowDataPacket[];
          try {
            [rows] = await conn.c.query<mysql.RowDataPacket[]>({ sql: `INSERT INTO \`${this.table}\` (id, node, pad) VALUES (?, ?, ?) RETURNING at`, values: [id, e.name, pad], timeout: 2_000 });
          } catch (err) {
            // Sent, outcome unknown unless the server said no (read-only: errno 1290).
            if ((err as { errno?: number }).errno !== 1290) this.uncertain.push(id);
            throw err;
          }
          this.acked.push({ id, at: String(rows[0]?.at), node: e.name });
          const o = this.outages.at(-1);
          if (o && o.recoveredAt === undefined) {
            o.recoveredAt = Date.now();
            o.node = e.name;
          }
          this.current = e.name;
          ok = true;
          break;
        } catch (err) {
          this.lastError = `${e.name}: ${(err as Error).message}`;
          conn?.c.destroy();
          conn = undefined;
          if (e.name === this.current) {
            const o = this.outages.at(-1);
            if (!o || o.recoveredAt !== undefined) this.outages.push({ failedAt: Date.now(), recoveredAt: undefined, node: undefined });
          }
        }
      }
      if (!ok) await sleep(20);
      else if (this.opts.pauseMs) await sleep(this.opts.pauseMs);
    }
    conn?.c.destroy();
  }

  /** Resolves once a write was accepted by a node other than `node`. */
  /** Resolves once a write was accepted by a node other than `node`, after `since` (ms since the epoch: an earlier outage is not this one). */
  async waitForWriteElsewhere(node: string, timeoutMs: number, since = 0): Promise<{ failedAt: number; recoveredAt: number }> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const o = this.outages.at(-1);
      if (o?.recoveredAt !== undefined && o.node !== node && o.recoveredAt >= since) return { failedAt: o.failedAt, recoveredAt: o.recoveredAt };
      await sleep(10);
    }
    throw new Error(`no write accepted off ${node} within ${timeoutMs} ms (last error: ${this.lastError})`);
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.done);
    this.done = [];
  }

  /**
   * The writer's record, completed: every acknowledged row, plus each uncertain insert that the
   * given (surviving) node holds, with the commit time it holds for it.
   */
  async record(host: string, port: number): Promise<CommitRecord[]> {
    const out = [...this.acked];
    if (!this.uncertain.length) return out;
    const c = await this.connect({ name: "check", host, port });
    try {
      const [rows] = await c.query<mysql.RowDataPacket[]>(`SELECT id, at, node FROM \`${this.table}\` WHERE id IN (?)`, [this.uncertain]);
      for (const r of rows) out.push({ id: Number(r.id), at: String(r.at), node: String(r.node) });
    } finally {
      c.destroy();
    }
    return out;
  }
}
