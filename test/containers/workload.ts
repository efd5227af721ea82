/**
 * The client side of the container test: a writer that keeps inserting rows into whichever node
 * accepts them and remembers every acknowledged id, and a sampler that reads @@global.read_only on
 * every node ten times a second (two writable nodes in one round is split brain). The same idea
 * as src/lab/workload.ts, against the containers' addresses on the project's network, which can
 * change while the test runs (a container restarted or reconnected).
 */
import { setTimeout as sleep } from "node:timers/promises";
import mysql from "mysql2/promise";

export interface Endpoint {
  /** The container's name. */
  name: string;
  host: string;
}

export interface Credentials {
  user: string;
  password: string;
  database: string;
}

export interface Outage {
  failedAt: number;
  recoveredAt: number | undefined;
  node: string | undefined;
}

async function connect(e: Endpoint, c: Credentials, connectTimeout: number): Promise<mysql.Connection> {
  const conn = await mysql.createConnection({ host: e.host, port: 3306, user: c.user, password: c.password, database: c.database, connectTimeout });
  conn.on("error", () => undefined);
  return conn;
}

/** A pool of one connection per endpoint, re-made when the endpoint's address changes. */
class Conns {
  private map = new Map<string, { host: string; conn: mysql.Connection }>();
  constructor(
    private readonly creds: Credentials,
    private readonly connectTimeout: number,
  ) {}
  async get(e: Endpoint): Promise<mysql.Connection> {
    const have = this.map.get(e.name);
    if (have && have.host === e.host) return have.conn;
    have?.conn.destroy();
    this.map.delete(e.name);
    const conn = await connect(e, this.creds, this.connectTimeout);
    this.map.set(e.name, { host: e.host, conn });
    return conn;
  }
  drop(name: string): void {
    this.map.get(name)?.conn.destroy();
    this.map.delete(name);
  }
  close(): void {
    for (const { conn } of this.map.values()) conn.destroy();
    this.map.clear();
  }
}

export class Writer {
  readonly acked: number[] = [];
  /** When each acknowledged write was acknowledged (parallel to acked). */
  readonly ackedAt: number[] = [];
  readonly outages: Outage[] = [];
  private nextId = Date.now() * 1000;
  private running = false;
  private done: Promise<void> | undefined;
  private conns: Conns;
  /** A node whose write failed is tried after the others for a while (a frozen one costs a timeout). */
  private penalty = new Map<string, number>();
  current: string | undefined;
  lastError = "";
  attempts = 0;

  constructor(
    private readonly endpoints: () => Endpoint[],
    private readonly creds: Credentials,
    readonly table = "writes",
  ) {
    this.conns = new Conns(creds, 1_000);
  }

  async prepare(primary: Endpoint): Promise<void> {
    const c = await connect(primary, this.creds, 5_000);
    try {
      await c.query(`CREATE TABLE IF NOT EXISTS \`${this.table}\` (id BIGINT PRIMARY KEY, at TIMESTAMP(6) DEFAULT CURRENT_TIMESTAMP(6), node VARCHAR(64))`);
    } finally {
      c.destroy();
    }
  }

  private async tryInsert(e: Endpoint, id: number): Promise<boolean> {
    try {
      const c = await this.conns.get(e);
      await c.query({ sql: `INSERT INTO \`${this.table}\` (id, node) VALUES (?, ?)`, values: [id, e.name], timeout: 2_000 });
      return true;
    } catch (err) {
      this.lastError = `${e.name}: ${(err as Error).message}`;
      this.conns.drop(e.name);
      this.penalty.set(e.name, Date.now() + 1_500);
      return false;
    }
  }

  start(): void {
    this.running = true;
    this.done = (async () => {
      while (this.running) {
        const id = this.nextId++;
        const now = Date.now();
        const rank = (e: Endpoint) => ((this.penalty.get(e.name) ?? 0) > now ? 2 : e.name === this.current ? 0 : 1);
        const order = [...this.endpoints()].sort((a, b) => rank(a) - rank(b));
        let ok = false;
        for (const e of order) {
          if (!this.running) break;
          this.attempts++;
          if (await this.tryInsert(e, id)) {
            ok = true;
            const o = this.outages[this.outages.length - 1];
            if (o && o.recoveredAt === undefined) {
              o.recoveredAt = Date.now();
              o.node = e.name;
            }
            this.current = e.name;
            this.acked.push(id);
            this.ackedAt.push(Date.now());
            break;
          }
          if (e.name === this.current) {
            const o = this.outages[this.outages.length - 1];
            if (!o || o.recoveredAt !== undefined) this.outages.push({ failedAt: Date.now(), recoveredAt: undefined, node: undefined });
          }
        }
        await sleep(ok ? 5 : 20);
      }
    })();
  }

  /** The first outage that began at or after `since` and ended on a node other than `node`. */
  async waitForWriteElsewhere(node: string, since: number, timeoutMs: number): Promise<Outage> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const o = this.outages.find((x) => x.failedAt >= since && x.recoveredAt !== undefined && x.node !== node);
      if (o) return o;
      // The writer may have moved on without an outage (it found the new primary at once).
      if (this.current !== undefined && this.current !== node && this.outages.every((x) => x.failedAt < since)) {
        const t = Date.now();
        return { failedAt: t, recoveredAt: t, node: this.current };
      }
      await sleep(10);
    }
    throw new Error(`no write accepted off ${node} within ${timeoutMs} ms (last error: ${this.lastError})`);
  }

  /** When the last write acknowledged at or before `t` was acknowledged. */
  lastAckBefore(t: number): number | undefined {
    for (let i = this.ackedAt.length - 1; i >= 0; i--) {
      const at = this.ackedAt[i] as number;
      if (at <= t) return at;
    }
    return undefined;
  }

  /**
   * Write-unavailable time in [from, to] as a client sees it: the gaps between consecutive
   * acknowledgements longer than `minGapMs` (a healthy writer acknowledges every few ms), added up,
   * with the longest one.
   */
  gaps(from: number, to: number, minGapMs = 250): { totalMs: number; longestMs: number; count: number } {
    let prev = this.lastAckBefore(from) ?? from;
    let totalMs = 0;
    let longestMs = 0;
    let count = 0;
    const add = (gap: number) => {
      if (gap <= minGapMs) return;
      totalMs += gap;
      count++;
      longestMs = Math.max(longestMs, gap);
    };
    for (const at of this.ackedAt) {
      if (at <= from) continue;
      if (at > to) {
        add(at - prev);
        return { totalMs, longestMs, count };
      }
      add(at - prev);
      prev = at;
    }
    add(to - prev);
    return { totalMs, longestMs, count };
  }

  /** Writes acknowledged so far that `e` does not have. */
  async missingOn(e: Endpoint): Promise<number[]> {
    const acked = [...this.acked];
    const c = await connect(e, this.creds, 5_000);
    try {
      const [rows] = await c.query<mysql.RowDataPacket[]>({ sql: `SELECT id FROM \`${this.table}\``, timeout: 20_000 });
      const have = new Set(rows.map((r) => Number(r.id)));
      return acked.filter((id) => !have.has(id));
    } finally {
      c.destroy();
    }
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.done;
    this.conns.close();
  }
}

export class ReadOnlySampler {
  rounds = 0;
  readonly violations: Array<{ at: number; writable: string[] }> = [];
  /** The last round's answers: true read-only, false writable, undefined no answer. */
  last = new Map<string, boolean | undefined>();
  private running = false;
  private done: Promise<void> | undefined;
  private conns: Conns;

  constructor(
    private readonly endpoints: () => Endpoint[],
    creds: Credentials,
    private readonly periodMs = 100,
  ) {
    this.conns = new Conns(creds, 300);
  }

  private async readOnly(e: Endpoint): Promise<boolean | undefined> {
    try {
      const c = await this.conns.get(e);
      const [rows] = await c.query<mysql.RowDataPacket[]>({ sql: "SELECT @@global.read_only AS ro", timeout: 500 });
      return Number(rows[0]?.ro) === 1;
    } catch {
      this.conns.drop(e.name);
      return undefined;
    }
  }

  start(): void {
    this.running = true;
    this.done = (async () => {
      while (this.running) {
        const t = Date.now();
        const eps = this.endpoints();
        const ro = await Promise.all(eps.map((e) => this.readOnly(e)));
        const writable = eps.filter((_, i) => ro[i] === false).map((e) => e.name);
        if (writable.length > 1) {
          this.violations.push({ at: t, writable });
          console.log(`containers: SPLIT BRAIN sample: writable ${writable.join(", ")}`);
        }
        this.last = new Map(eps.map((e, i) => [e.name, ro[i]]));
        this.rounds++;
        await sleep(Math.max(0, this.periodMs - (Date.now() - t)));
      }
    })();
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.done;
    this.conns.close();
  }
}
