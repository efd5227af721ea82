/**
 * The container test's restore scenario: with the writer going on, a copy of the compose cluster as
 * it was at a whole second T is started next to it (`RESTORE_TO=T docker compose --profile restore
 * up --scale mysql-restored=2 mysql-restored`): a new cluster whose nodes restore the newest
 * snapshot before T from MinIO plus the archived binlogs up to T. The copy must hold exactly the
 * writer's rows that started before T on the running cluster (the same ids, and the same checksum
 * of id, time and node), every write acknowledged before T among them, across every failover the
 * run made before; one primary and one replica of it, under its own name in Consul; the running
 * cluster's primary untouched.
 */
import mysql from "mysql2/promise";
import { parsePos, posIncludes } from "../../src/archive/binlog.js";
import { waitFor } from "../../src/lab/wait.js";
import type { RunOptions } from "./run.js";
import type { Credentials, Writer } from "./workload.js";

export interface CopyNode {
  name: string;
  hostname: string;
  ip: string;
  running: boolean;
}

export interface CopyDeps {
  /** The running cluster's primary. */
  primary: CopyNode;
  creds: Credentials;
  writer: Writer;
  /** The writer's table. */
  table: string;
  compose: (args: string[], opts?: RunOptions) => Promise<unknown>;
  /** `docker exec CONTAINER ...args`: stdout and the exit code. */
  exec: (container: string, args: string[]) => Promise<{ code: number; stdout: string; stderr: string }>;
  containers: (service: string) => Promise<CopyNode[]>;
  /** Addresses of the passing instances of a Consul service. */
  consulService: (name: string) => Promise<string[]>;
  remove: (names: string[]) => Promise<unknown>;
  logs: (container: string) => Promise<string>;
  log: (m: string) => void;
}

const SERVICE = "mysql-restored";

/** The archive's head holds every domain's last transaction of `want`. */
const reaches = (head: string, want: string) => {
  const h = parsePos(head);
  return [...parsePos(want).values()].every((g) => posIncludes(h, g));
};

async function query<T extends mysql.RowDataPacket>(host: string, c: Credentials, sql: string, values: unknown[] = []): Promise<T[]> {
  const conn = await mysql.createConnection({ host, port: 3306, user: c.user, password: c.password, database: c.database, connectTimeout: 5_000 });
  try {
    const [rows] = await conn.query<T[]>({ sql, values, timeout: 30_000 });
    return rows;
  } finally {
    conn.destroy();
  }
}

/** The rows that started before `tSec` (every row without it): their ids and one checksum over id, time and node. */
async function before(host: string, d: CopyDeps, tSec?: number): Promise<{ ids: Set<number>; count: number; sum: string }> {
  const where = `FROM \`${d.table}\`${tSec === undefined ? "" : " WHERE at < FROM_UNIXTIME(?)"}`;
  const args = tSec === undefined ? [] : [tSec];
  const ids = await query(host, d.creds, `SELECT id ${where}`, args);
  const [agg] = await query(host, d.creds, `SELECT COUNT(*) AS n, BIT_XOR(CRC32(CONCAT_WS('|', id, DATE_FORMAT(at, '%Y-%m-%d %H:%i:%s.%f'), node))) AS sum ${where}`, args);
  return { ids: new Set(ids.map((r) => Number(r.id))), count: Number(agg?.n), sum: String(agg?.sum) };
}

async function archiveStatus(d: CopyDeps, on: string): Promise<{ head: string; restorableFrom: unknown[]; gaps: unknown[] }> {
  const r = await d.exec(on, ["statepilot", "archive", "status", "--json"]);
  if (!r.stdout.trim().startsWith("{")) throw new Error(`statepilot archive status on ${on} (exit ${r.code}): ${(r.stderr || r.stdout).trim().split("\n").pop()}`);
  return JSON.parse(r.stdout) as { head: string; restorableFrom: unknown[]; gaps: unknown[] };
}

export async function restoreCopy(d: CopyDeps): Promise<{ figure: string; lost: number }> {
  const p = d.primary;
  const st0 = await archiveStatus(d, p.name);
  if (st0.restorableFrom.length === 0) {
    d.log("no snapshot the archive reaches the present from: taking one");
    const s = await d.exec(p.name, ["statepilot", "snapshot", "create", "--timeout", "10m"]);
    if (s.code !== 0) throw new Error(`statepilot snapshot create: ${s.stderr.trim().split("\n").pop()}`);
  }
  // T: a whole second a little ahead; then rows on both sides of it, and every statement that
  // started before it finished (the writer's statements time out after 2 s).
  const tSec = Math.ceil(Date.now() / 1000) + 1;
  await waitFor(async () => ((await query(p.ip, d.creds, `SELECT COUNT(*) AS n FROM \`${d.table}\` WHERE at >= FROM_UNIXTIME(?)`, [tSec + 3]))[0]?.n ? true : undefined), {
    timeoutMs: 60_000,
    intervalMs: 250,
    what: "the writer's rows 3 s after T",
  });
  const [pos] = await query(p.ip, d.creds, "SELECT @@GLOBAL.gtid_binlog_pos AS pos");
  const target = String(pos?.pos);
  let head = "";
  await waitFor(
    async () => {
      const st = await archiveStatus(d, p.name);
      head = st.head;
      if (st.gaps.length) throw new Error(`the archive reports gaps: ${JSON.stringify(st.gaps)}`);
      return reaches(st.head, target) || undefined;
    },
    { timeoutMs: 60_000, intervalMs: 500, what: `the archive to reach ${target}`, detail: () => `head ${head}` },
  );
  const want = await before(p.ip, d, tSec);
  const ackedBefore = d.writer.acked.filter((_, i) => (d.writer.ackedAt[i] ?? Infinity) < tSec * 1000);
  const to = new Date(tSec * 1000).toISOString();
  d.log(`T = ${to}: ${want.count} rows started before it on ${p.name} (${ackedBefore.length} acknowledged before it); archive head ${head}`);

  const t0 = Date.now();
  await d.compose(["--profile", "restore", "up", "-d", "--no-deps", "--scale", `${SERVICE}=2`, SERVICE], { env: { ...process.env, RESTORE_TO: to } });
  const copies = await d.containers(SERVICE);
  if (copies.length !== 2) throw new Error(`${copies.length} ${SERVICE} containers after --scale ${SERVICE}=2`);
  try {
    let why = "";
    const notYet = (w: string): undefined => {
      why = w;
      return undefined;
    };
    const primary = await waitFor(
      async () => {
        const nodes = (await d.containers(SERVICE)).filter((n) => n.running && n.ip);
        if (nodes.length !== 2) return notYet(`${nodes.length}/2 running`);
        const r = await d.exec(nodes[0]!.name, ["statepilot", "mysql", "status", "--json"]);
        if (r.code !== 0) return notYet(`mysql status: ${r.stderr.trim().split("\n").pop()}`);
        const st = JSON.parse(r.stdout) as { primary?: { node: string }; members: Array<{ node: string; role: string; up: boolean; source: string; sqlError: string }> };
        const prim = nodes.find((n) => n.hostname === st.primary?.node);
        if (!prim) return notYet(`primary ${st.primary?.node ?? "none"}`);
        const other = nodes.find((n) => n !== prim)!;
        const m = st.members.find((x) => x.node === other.hostname);
        if (m?.role !== "replica" || !m.up || m.source !== prim.hostname || m.sqlError) return notYet(`${other.name}: ${JSON.stringify(m ?? "not a member")}`);
        const inConsul = await d.consulService(`${SERVICE}-primary`);
        if (inConsul.join(",") !== prim.ip) return notYet(`Consul ${SERVICE}-primary: ${inConsul.join(",") || "none"}`);
        return prim;
      },
      { timeoutMs: 420_000, intervalMs: 1_000, what: `the restored copy: one primary and one replica of it`, detail: () => why },
    );
    const readyMs = Date.now() - t0;
    const got = await before(primary.ip, d);
    const missing = [...want.ids].filter((id) => !got.ids.has(id));
    const extra = [...got.ids].filter((id) => !want.ids.has(id));
    const lostAcked = ackedBefore.filter((id) => !got.ids.has(id));
    if (missing.length || extra.length || lostAcked.length || got.sum !== want.sum) {
      throw new Error(`the copy at ${to} is not the cluster at ${to}: ${missing.length} rows missing (e.g. ${missing.slice(0, 5)}), ${extra.length} extra (e.g. ${extra.slice(0, 5)}), ${lostAcked.length} acknowledged before T missing, checksum ${got.sum} vs ${want.sum}`);
    }
    const replica = copies.find((n) => n.name !== primary.name)!;
    const replicaIp = (await d.containers(SERVICE)).find((n) => n.name === replica.name)?.ip ?? "";
    await waitFor(async () => ((await before(replicaIp, d)).sum === want.sum ? true : undefined), { timeoutMs: 60_000, intervalMs: 500, what: `${replica.name} to hold the copy's rows` });
    const original = await d.consulService("mysql-primary");
    if (original.join(",") !== p.ip) throw new Error(`Consul mysql-primary is ${original.join(",") || "none"}, not the running cluster's ${p.ip}`);
    const line = (await d.logs(primary.name)).split("\n").find((l) => l.includes('"restore to the point done"'));
    if (!line) throw new Error(`${primary.name} holds the copy without having restored it (no "restore to the point done" in its log)`);
    const r = JSON.parse(line) as { transactions?: number; durationMs?: number; snapshot?: string };
    return {
      figure: `copy as of ${to} (${want.count} rows, ${ackedBefore.length} acknowledged before T, checksum equal): ${primary.name} restored snapshot ${r.snapshot} + ${r.transactions} archived transactions in ${r.durationMs} ms; primary and a replica ${readyMs} ms after compose up; mysql-primary still ${p.name}`,
      lost: lostAcked.length,
    };
  } finally {
    await d.remove(copies.map((c) => c.name));
  }
}
