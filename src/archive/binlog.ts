/**
 * Just enough of MariaDB's binlog format (v4) to cut a raw binlog stream at transaction boundaries
 * and to say which GTIDs, and which times, each piece holds. Events are never decoded beyond their
 * 19-byte header, the GTID event's body and the end of a query event.
 *
 * Header: timestamp u32, type u8, server_id u32, event_size u32, log_pos u32, flags u16 (LE).
 */

export const BINLOG_MAGIC = Buffer.from([0xfe, 0x62, 0x69, 0x6e]);
export const HEADER_LEN = 19;

export const EventType = {
  QUERY: 2,
  ROTATE: 4,
  FORMAT_DESCRIPTION: 15,
  XID: 16,
  ANNOTATE_ROWS: 160,
  BINLOG_CHECKPOINT: 161,
  GTID: 162,
  GTID_LIST: 163,
  XA_PREPARE: 38,
} as const;

export interface EventHeader {
  timestamp: number;
  type: number;
  serverId: number;
  size: number;
  logPos: number;
}

export function parseHeader(b: Buffer, at = 0): EventHeader {
  return { timestamp: b.readUInt32LE(at), type: b.readUInt8(at + 4), serverId: b.readUInt32LE(at + 5), size: b.readUInt32LE(at + 9), logPos: b.readUInt32LE(at + 13) };
}

/** A MariaDB GTID: domain-server-seq. */
export interface Gtid {
  domain: number;
  server: number;
  seq: bigint;
}

export const formatGtid = (g: Gtid): string => `${g.domain}-${g.server}-${g.seq}`;

export function parseGtid(text: string): Gtid {
  const m = /^(\d+)-(\d+)-(\d+)$/.exec(text.trim());
  if (!m) throw new Error(`expected a GTID domain-server-seq such as 0-1-42, got ${JSON.stringify(text)}`);
  return { domain: Number(m[1]), server: Number(m[2]), seq: BigInt(m[3]!) };
}

/** A MariaDB GTID position ("0-1-42,1-2-7"): the last GTID per domain. */
export type GtidPos = Map<number, Gtid>;

export function parsePos(text: string | undefined): GtidPos {
  const pos: GtidPos = new Map();
  for (const part of (text ?? "").split(",").map((s) => s.trim()).filter(Boolean)) {
    const g = parseGtid(part);
    pos.set(g.domain, g);
  }
  return pos;
}

export function formatPos(pos: GtidPos): string {
  return [...pos.values()].sort((a, b) => a.domain - b.domain).map(formatGtid).join(",");
}

/** Whether `g` is at or before `pos` in its domain (a domain `pos` does not name: not contained). */
export function posIncludes(pos: GtidPos, g: Gtid): boolean {
  const p = pos.get(g.domain);
  return p !== undefined && g.seq <= p.seq;
}

/** The earlier of two positions, domain by domain (a domain only one names is kept from it). */
export function posMin(a: GtidPos, b: GtidPos): GtidPos {
  const out: GtidPos = new Map(a);
  for (const [d, g] of b) {
    const x = out.get(d);
    if (!x || g.seq < x.seq) out.set(d, g);
  }
  return out;
}

/** The later of two positions, domain by domain. */
export function posMax(a: GtidPos, b: GtidPos): GtidPos {
  const out: GtidPos = new Map(a);
  for (const [d, g] of b) {
    const x = out.get(d);
    if (!x || g.seq > x.seq) out.set(d, g);
  }
  return out;
}

/** One complete transaction (event group) in a binlog file: [start, end) and what it is. */
export interface Transaction {
  gtid: Gtid;
  /** Seconds since the epoch, from the GTID event's header (the server's statement start). */
  timestamp: number;
  start: number;
  end: number;
}

/**
 * Follows a binlog file event by event (fed header bytes as the file grows) and reports complete
 * transactions. A transaction starts at a GTID event and ends after its XID event, after the query
 * of a standalone GTID (DDL), or after a COMMIT/ROLLBACK query (non-transactional engines).
 */
export class TransactionCutter {
  /** Offset of the first event after the format description: the file header is [0, headerEnd). */
  headerEnd = 0;
  /** Checksum bytes at the end of every event (4 with CRC32). */
  checksumLen = 0;
  private open: { gtid: Gtid; timestamp: number; start: number; standalone: boolean } | undefined;

  /**
   * Handles the event at `offset`; `read(at, len)` reads bytes of this event (at most its size).
   * Returns the transaction it completes, if it does.
   */
  event(offset: number, h: EventHeader, read: (at: number, len: number) => Buffer): Transaction | undefined {
    const end = offset + h.size;
    switch (h.type) {
      case EventType.FORMAT_DESCRIPTION: {
        this.headerEnd = end;
        // The FDE ends with the checksum algorithm (1 byte) and its own checksum (4 bytes).
        const alg = read(end - 5, 1)[0];
        this.checksumLen = alg === 1 ? 4 : 0;
        return undefined;
      }
      case EventType.GTID: {
        const body = read(offset + HEADER_LEN, 13);
        const seq = body.readBigUInt64LE(0);
        const domain = body.readUInt32LE(8);
        const flags = body.readUInt8(12);
        this.open = { gtid: { domain, server: h.serverId, seq }, timestamp: h.timestamp, start: offset, standalone: (flags & 1) === 1 };
        return undefined;
      }
      case EventType.XID:
      case EventType.XA_PREPARE:
        return this.close(end);
      case EventType.QUERY: {
        if (!this.open) return undefined;
        if (this.open.standalone) return this.close(end);
        const tailLen = Math.min(h.size - HEADER_LEN, 8 + this.checksumLen);
        const tail = read(end - tailLen, tailLen).subarray(0, tailLen - this.checksumLen).toString("latin1").toUpperCase();
        return tail.endsWith("COMMIT") || tail.endsWith("ROLLBACK") ? this.close(end) : undefined;
      }
      default:
        return undefined;
    }
  }

  private close(end: number): Transaction | undefined {
    const o = this.open;
    if (!o) return undefined;
    this.open = undefined;
    return { gtid: o.gtid, timestamp: o.timestamp, start: o.start, end };
  }

  /** Where the transaction being read began, if one is open (nothing before it is pending). */
  get openSince(): number | undefined {
    return this.open?.start;
  }
}

/** Every complete transaction of a whole binlog file in memory (restore reads segments this way). */
export function transactionsOf(file: Buffer): { cutter: TransactionCutter; transactions: Transaction[] } {
  if (file.length < 4 || !file.subarray(0, 4).equals(BINLOG_MAGIC)) throw new Error("not a binlog file (no magic number)");
  const cutter = new TransactionCutter();
  const transactions: Transaction[] = [];
  let at = 4;
  while (at + HEADER_LEN <= file.length) {
    const h = parseHeader(file, at);
    if (h.size < HEADER_LEN || at + h.size > file.length) break;
    const t = cutter.event(at, h, (p, len) => file.subarray(p, p + len));
    if (t) transactions.push(t);
    at += h.size;
  }
  return { cutter, transactions };
}
