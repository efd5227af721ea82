/**
 * GTID positions of both flavors, compared as sets rather than strings.
 *
 * MariaDB: a position is one GTID per replication domain, `domain-server-seq`. With
 * gtid_strict_mode sequence numbers grow monotonically within a domain, so "A has everything B has"
 * is: for every domain of B, A's seq is at least B's. `gtid_binlog_state` adds one entry per
 * (domain, server) pair, which is what tells a diverged tail apart (same seq, other server).
 *
 * MySQL: a GTID set is `uuid:1-5:7-9,...`; containment is interval containment per source UUID.
 */

export type Flavor = "mariadb" | "mysql";

export interface MariaGtid {
  domain: number;
  server: number;
  seq: bigint;
}

export class GtidParseError extends Error {
  override name = "GtidParseError";
}

/** Parsed lists by text: the same positions are read every loop (bounded; entries are frozen). */
const mariaCache = new Map<string, readonly MariaGtid[]>();

export function parseMariaGtidList(text: string | null | undefined): MariaGtid[] {
  const s = (text ?? "").trim();
  if (!s) return [];
  const hit = mariaCache.get(s);
  if (hit) return hit as MariaGtid[];
  const list = Object.freeze(
    s.split(",").map((part) => {
      const m = /^\s*(\d+)-(\d+)-(\d+)\s*$/.exec(part);
      if (!m) throw new GtidParseError(`not a MariaDB GTID: "${part}" in "${s}"`);
      return Object.freeze({ domain: Number(m[1]), server: Number(m[2]), seq: BigInt(m[3]!) });
    }),
  );
  if (mariaCache.size >= 4096) mariaCache.clear();
  mariaCache.set(s, list);
  return list as MariaGtid[];
}

/** Highest seq per domain (a position; a binlog state reduces to its position this way). */
function maxPerDomain(list: MariaGtid[]): Map<number, bigint> {
  const m = new Map<number, bigint>();
  for (const g of list) {
    const cur = m.get(g.domain);
    if (cur === undefined || g.seq > cur) m.set(g.domain, g.seq);
  }
  return m;
}

/** Per domain, the highest seq and the servers that wrote a transaction at it (two: conflicting tails). */
function topPerDomain(list: MariaGtid[]): Map<number, { seq: bigint; servers: Set<number> }> {
  const m = new Map<number, { seq: bigint; servers: Set<number> }>();
  for (const g of list) {
    const cur = m.get(g.domain);
    if (cur === undefined || g.seq > cur.seq) m.set(g.domain, { seq: g.seq, servers: new Set([g.server]) });
    else if (g.seq === cur.seq) cur.servers.add(g.server);
  }
  return m;
}

interface Interval {
  start: bigint;
  end: bigint;
}

/** MySQL GTID set: source UUID (lower case, with tag if any) → sorted, merged intervals. */
export type MysqlGtidSet = Map<string, Interval[]>;

export function parseMysqlGtidSet(text: string | null | undefined): MysqlGtidSet {
  const set: MysqlGtidSet = new Map();
  const s = (text ?? "").replace(/\s+/g, "");
  if (!s) return set;
  for (const part of s.split(",")) {
    const [uuid, ...rest] = part.split(":");
    if (!uuid || !/^[0-9a-fA-F-]{36}$/.test(uuid) || rest.length === 0) throw new GtidParseError(`not a MySQL GTID set member: "${part}"`);
    let key = uuid.toLowerCase();
    for (const r of rest) {
      // A tag (8.3+) starts a sub-sequence of the same UUID: uuid:tag:1-5.
      if (/^[a-z_][a-z0-9_]*$/i.test(r)) {
        key = `${uuid.toLowerCase()}:${r.toLowerCase()}`;
        continue;
      }
      const m = /^(\d+)(?:-(\d+))?$/.exec(r);
      if (!m) throw new GtidParseError(`not a GTID interval: "${r}" in "${part}"`);
      const start = BigInt(m[1]!);
      const end = BigInt(m[2] ?? m[1]!);
      if (end < start) throw new GtidParseError(`interval ends before it starts: "${r}"`);
      set.set(key, [...(set.get(key) ?? []), { start, end }]);
    }
  }
  for (const [k, list] of set) set.set(k, mergeIntervals(list));
  return set;
}

function mergeIntervals(list: Interval[]): Interval[] {
  const sorted = [...list].sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : 0));
  const out: Interval[] = [];
  for (const iv of sorted) {
    const last = out[out.length - 1];
    if (last && iv.start <= last.end + 1n) {
      if (iv.end > last.end) last.end = iv.end;
    } else out.push({ ...iv });
  }
  return out;
}

function mysqlSubset(a: MysqlGtidSet, b: MysqlGtidSet): boolean {
  for (const [uuid, intervals] of a) {
    const other = b.get(uuid) ?? [];
    for (const iv of intervals) {
      if (!other.some((o) => o.start <= iv.start && o.end >= iv.end)) return false;
    }
  }
  return true;
}

function mysqlCount(s: MysqlGtidSet): bigint {
  let n = 0n;
  for (const list of s.values()) for (const iv of list) n += iv.end - iv.start + 1n;
  return n;
}

export function formatMysqlGtidSet(s: MysqlGtidSet): string {
  return [...s.entries()]
    .map(([uuid, list]) => `${uuid}:${list.map((iv) => (iv.start === iv.end ? `${iv.start}` : `${iv.start}-${iv.end}`)).join(":")}`)
    .join(",");
}

/**
 * `a` ⊆ `b`: everything in `a` is also in `b`. For MariaDB both arguments may be positions or
 * binlog states; with states, each (domain, server) entry of `a` must be matched by the same
 * pair in `b` at a seq at least as high, which catches a tail written by another server.
 */
export function gtidSubset(flavor: Flavor, a: string, b: string): boolean {
  if (flavor === "mysql") return mysqlSubset(parseMysqlGtidSet(a), parseMysqlGtidSet(b));
  const pb = topPerDomain(parseMariaGtidList(b));
  for (const [d, top] of topPerDomain(parseMariaGtidList(a))) {
    const other = pb.get(d);
    if (other === undefined || other.seq < top.seq) return false;
    // The same sequence number written by another server is another transaction (gtid_strict_mode
    // allows one per seq in a history): 0-1-36 is not in 0-2-36.
    // Server 0 (no server writes with server_id 0) stands for "some transaction at this seq":
    // see withoutOwnWrites.
    if (other.seq === top.seq) for (const server of top.servers) if (server !== 0 && !other.servers.has(server)) return false;
  }
  return true;
}

/** Like gtidSubset for MariaDB binlog states, also checking each (domain, server) pair. */
export function mariaStateContained(a: string, b: string): { contained: boolean; missing: string[] } {
  const lb = parseMariaGtidList(b);
  const missing: string[] = [];
  for (const g of parseMariaGtidList(a)) {
    const same = lb.find((x) => x.domain === g.domain && x.server === g.server);
    if (!same || same.seq < g.seq) missing.push(`${g.domain}-${g.server}-${g.seq}`);
  }
  return { contained: missing.length === 0 && gtidSubset("mariadb", a, b), missing };
}

/** Whether `a` lacks something `b` has: a is behind b in at least one domain / source. */
export function gtidBehind(flavor: Flavor, a: string, b: string): boolean {
  return !gtidSubset(flavor, b, a);
}

/** A rough transaction count, for logs and metrics (MariaDB: sum of per-domain seqs). */
export function gtidCount(flavor: Flavor, s: string): bigint {
  if (flavor === "mysql") return mysqlCount(parseMysqlGtidSet(s));
  let n = 0n;
  for (const seq of maxPerDomain(parseMariaGtidList(s)).values()) n += seq;
  return n;
}

/**
 * Union for comparing what nodes hold: like gtidUnion, but a MariaDB domain whose highest seq was
 * written by two servers keeps both (`0-1-36,0-2-36`), so neither conflicting tail is hidden.
 * For comparisons only (gtidSubset/gtidBehind): it is no position to replicate or wait for.
 */
export function gtidUnionForCompare(flavor: Flavor, a: string, b: string): string {
  if (flavor === "mysql") return gtidUnion(flavor, a, b);
  const out: string[] = [];
  for (const [d, top] of topPerDomain([...parseMariaGtidList(a), ...parseMariaGtidList(b)])) {
    for (const server of [...top.servers].sort((x, y) => x - y)) out.push(`${d}-${server}-${top.seq}`);
  }
  return out.sort().join(",");
}

/**
 * A MariaDB replica's position without its own writes: a transaction a replica wrote with its own
 * server_id is an errant local write, never a primary's acknowledged one. `d-S-N` becomes
 * `d-0-(N-1)` (strict mode: it had the history up to N-1 before it), which gtidSubset reads as
 * "some transaction at N-1". For comparisons only.
 */
export function withoutOwnWrites(pos: string, serverId: number): string {
  const out: string[] = [];
  for (const g of parseMariaGtidList(pos)) {
    if (g.server !== serverId) out.push(`${g.domain}-${g.server}-${g.seq}`);
    else if (g.seq > 1n) out.push(`${g.domain}-0-${g.seq - 1n}`);
  }
  return out.join(",");
}

/**
 * MariaDB: the transactions of server `serverId` that `holder` has at a sequence number `base` never
 * reached in their domain. A lossless primary killed while commits waited for an ack truncates them
 * from its binlog in crash recovery (init-rpl-role=SLAVE), yet a replica may have received them:
 * that primary has lost its own tail and must not write again, or it would reuse those GTIDs for
 * other transactions. MySQL keeps its tail in crash recovery: always none.
 */
export function ownTailBeyond(flavor: Flavor, holder: string, base: string, serverId: number): string[] {
  if (flavor === "mysql") return [];
  const top = maxPerDomain(parseMariaGtidList(base));
  const out = new Set<string>();
  for (const g of parseMariaGtidList(holder)) {
    if (g.server === serverId && g.seq > (top.get(g.domain) ?? 0n)) out.add(`${g.domain}-${g.server}-${g.seq}`);
  }
  return [...out].sort();
}

/** Union of positions: per domain the highest (MariaDB), or the set union (MySQL). */
export function gtidUnion(flavor: Flavor, a: string, b: string): string {
  if (flavor === "mysql") {
    const sa = parseMysqlGtidSet(a);
    for (const [k, list] of parseMysqlGtidSet(b)) sa.set(k, mergeIntervals([...(sa.get(k) ?? []), ...list]));
    return formatMysqlGtidSet(sa);
  }
  const all = [...parseMariaGtidList(a), ...parseMariaGtidList(b)];
  const best = new Map<number, MariaGtid>();
  for (const g of all) {
    const cur = best.get(g.domain);
    if (!cur || g.seq > cur.seq) best.set(g.domain, g);
  }
  return [...best.values()].sort((x, y) => x.domain - y.domain).map((g) => `${g.domain}-${g.server}-${g.seq}`).join(",");
}

/**
 * A MariaDB binlog state as of position `pos`, from a state read a little later: entries at or
 * below the position's seq in their domain stay; the server that wrote the position's transaction
 * is cut back to it; entries of other servers written after the position are dropped (they can
 * only appear if the primary changed during the backup, and dropping errs on the side of flagging
 * a replica as diverged, never of hiding a divergence).
 */
export function mariaStateAt(state: string, pos: string): string {
  const at = new Map<number, MariaGtid>();
  for (const g of parseMariaGtidList(pos)) at.set(g.domain, g);
  const out: MariaGtid[] = [];
  for (const g of parseMariaGtidList(state)) {
    const p = at.get(g.domain);
    if (!p || g.seq <= p.seq) out.push(g);
    else if (g.server === p.server) out.push(p);
  }
  for (const p of at.values()) if (!out.some((g) => g.domain === p.domain && g.server === p.server)) out.push(p);
  return out.sort((a, b) => a.domain - b.domain || a.server - b.server).map((g) => `${g.domain}-${g.server}-${g.seq}`).join(",");
}
