import { setTimeout as sleep } from "node:timers/promises";
import mysql from "mysql2/promise";
import type { LabFile } from "./cluster.js";

type Endpoint = { name: string; host: string; port: number };


function endpoints(lab: LabFile): Endpoint[] {
  return lab.nodes.map((n) => ({ name: n.name, host: n.mysql.host, port: n.mysql.port }));
}

async function connect(lab: LabFile, e: Endpoint): Promise<mysql.Connection> {
  const c = await mysql.createConnection({ host: e.host, port: e.port, user: lab.credentials.user, password: lab.credentials.password, database: lab.credentials.database, connectTimeout: 1_000 });
  c.on("error", () => undefined);
  return c;
}

export interface Outage {
  /** When the first write failed. */
  failedAt: number;
  /** When a write was next accepted, and where. */
  recoveredAt: number | undefined;
  node: string | undefined;
}

/**
 * A client that keeps inserting rows with ids it chooses, into whichever node accepts them, and
 * remembers every id the server acknowledged: after a failover, each of those must still exist.
 */
export class Writer {
  readonly acked: number[] = [];
  readonly outages: Outage[] = [];
  /** Ids never repeat across writers on the same table (microseconds since the epoch). */
  private nextId = Date.now() * 1000;
  private running = false;
  private done: Promise<void> | undefined;
  private conns = new Map<string, mysql.Connection>();
  current: string | undefined;
  lastError = "";

  constructor(
    private readonly lab: LabFile,
    private readonly table = "writes",
    private readonly pauseMs = 5,
  ) {}

  static async prepare(lab: LabFile, table = "writes"): Promise<void> {
    for (const e of endpoints(lab)) {
      try {
        const c = await connect(lab, e);
        try {
          await c.query(`CREATE TABLE IF NOT EXISTS \`${table}\` (id BIGINT PRIMARY KEY, at TIMESTAMP(6) DEFAULT CURRENT_TIMESTAMP(6), node VARCHAR(32))`);
          return;
        } finally {
          c.destroy();
        }
      } catch {
        // read-only replica or down: try the next node
      }
    }
    throw new Error(`no node accepted CREATE TABLE ${table}`);
  }

  private async conn(e: Endpoint): Promise<mysql.Connection> {
    let c = this.conns.get(e.name);
    if (!c) {
      c = await connect(this.lab, e);
      this.conns.set(e.name, c);
    }
    return c;
  }

  private async tryInsert(e: Endpoint, id: number): Promise<boolean> {
    try {
      const c = await this.conn(e);
      await c.query({ sql: `INSERT INTO \`${this.table}\` (id, node) VALUES (?, ?)`, values: [id, e.name], timeout: 2_000 });
      return true;
    } catch (err) {
      this.lastError = `${e.name}: ${(err as Error).message}`;
      // A read-only server refused the write (1290, or 1792 inside a read-only transaction): the
      // connection is fine and is kept, as a client's pool would; anything else starts over.
      const errno = (err as { errno?: number }).errno;
      if (errno === 1290 || errno === 1792) return false;
      const c = this.conns.get(e.name);
      this.conns.delete(e.name);
      c?.destroy();
      return false;
    }
  }

  start(): void {
    this.running = true;
    this.done = (async () => {
      const eps = endpoints(this.lab);
      while (this.running) {
        const id = this.nextId++;
        const order = [...eps].sort((a, b) => (a.name === this.current ? -1 : b.name === this.current ? 1 : 0));
        let ok = false;
        for (const e of order) {
          if (await this.tryInsert(e, id)) {
            ok = true;
            const outage = this.outages[this.outages.length - 1];
            if (outage && outage.recoveredAt === undefined) {
              outage.recoveredAt = Date.now();
              outage.node = e.name;
            }
            this.current = e.name;
            this.acked.push(id);
            break;
          }
          if (e.name === this.current) {
            const outage = this.outages[this.outages.length - 1];
            if (!outage || outage.recoveredAt !== undefined) this.outages.push({ failedAt: Date.now(), recoveredAt: undefined, node: undefined });
          }
        }
        // Between failed rounds, 5 ms: the writer's own polling is part of every outage it measures.
        await sleep(ok ? this.pauseMs : 5);
      }
    })();
  }

  /** Resolves once a write was accepted by a node other than `node` (after `since`, ms since the epoch). */
  async waitForWriteElsewhere(node: string, timeoutMs: number, since = 0): Promise<Outage> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const o = this.outages[this.outages.length - 1];
      // An outage that began before `since` (e.g. while the lab was electing) is not this one.
      if (o?.recoveredAt !== undefined && o.node !== node && o.recoveredAt >= since) return o;
      await sleep(10);
    }
    throw new Error(`no write accepted off ${node} within ${timeoutMs} ms (last error: ${this.lastError})`);
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.done;
    for (const c of this.conns.values()) c.destroy();
    this.conns.clear();
  }

  /** Acknowledged ids missing on the given node. */
  async missingOn(host: string, port: number): Promise<number[]> {
    const c = await mysql.createConnection({ host, port, user: this.lab.credentials.user, password: this.lab.credentials.password, database: this.lab.credentials.database });
    try {
      const [rows] = await c.query<mysql.RowDataPacket[]>(`SELECT id FROM \`${this.table}\``);
      const have = new Set(rows.map((r) => Number(r.id)));
      return this.acked.filter((id) => !have.has(id));
    } finally {
      c.destroy();
    }
  }
}

/** Reads @@read_only on every node every `periodMs`; a round with two writable nodes is split brain. */
export class ReadOnlySampler {
  rounds = 0;
  readonly violations: Array<{ at: number; writable: string[] }> = [];
  private running = false;
  private done: Promise<void> | undefined;
  private conns = new Map<string, mysql.Connection>();

  constructor(
    private readonly lab: LabFile,
    private readonly periodMs = 100,
  ) {}

  private async readOnly(e: Endpoint): Promise<boolean | undefined> {
    try {
      let c = this.conns.get(e.name);
      if (!c) {
        // Reading a global variable needs no privilege: the replication user will do.
        c = await mysql.createConnection({ host: e.host, port: e.port, user: this.lab.credentials.replUser, password: this.lab.credentials.replPassword, connectTimeout: 300 });
        c.on("error", () => undefined);
        this.conns.set(e.name, c);
      }
      const [rows] = await c.query<mysql.RowDataPacket[]>({ sql: "SELECT @@GLOBAL.read_only AS ro", timeout: 500 });
      return Number(rows[0]?.ro) === 1;
    } catch {
      this.conns.get(e.name)?.destroy();
      this.conns.delete(e.name);
      return undefined;
    }
  }

  start(): void {
    this.running = true;
    this.done = (async () => {
      while (this.running) {
        const t = Date.now();
        const eps = endpoints(this.lab);
        const ro = await Promise.all(eps.map((e) => this.readOnly(e)));
        const writable = eps.filter((_, i) => ro[i] === false).map((e) => e.name);
        if (writable.length > 1) this.violations.push({ at: t, writable });
        this.rounds++;
        await sleep(Math.max(0, this.periodMs - (Date.now() - t)));
      }
    })();
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.done;
    for (const c of this.conns.values()) c.destroy();
    this.conns.clear();
  }
}
