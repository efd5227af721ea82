import { describe, expect, it } from "vitest";
import { BINLOG_MAGIC, EventType, formatPos, parsePos, posMin, transactionsOf } from "../../src/archive/binlog.js";
import { type ArchiveEpoch, checkArchive, type EpochRecord, parseSegmentKey, prunableEpochs, segmentKey, type SegmentInfo } from "../../src/archive/layout.js";
import { MemoryStoreServer } from "../../src/cluster/memory-store.js";
import type { MemberRecord } from "../../src/cluster/records.js";
import { SimClock } from "../../sim/clock.js";

/** One binlog event: 19-byte header, body, and a 4-byte (fake) CRC32. */
function event(type: number, body: Buffer, opts: { ts?: number; server?: number } = {}): Buffer {
  const size = 19 + body.length + 4;
  const h = Buffer.alloc(19);
  h.writeUInt32LE(opts.ts ?? 1_700_000_000, 0);
  h.writeUInt8(type, 4);
  h.writeUInt32LE(opts.server ?? 1, 5);
  h.writeUInt32LE(size, 9);
  return Buffer.concat([h, body, Buffer.alloc(4)]);
}

/** A format description event whose checksum algorithm is CRC32. */
const fde = () => {
  const body = Buffer.alloc(80);
  body.writeUInt8(1, body.length - 1); // checksum algorithm, right before the event's own CRC
  return event(EventType.FORMAT_DESCRIPTION, body);
};
const gtid = (seq: number, opts: { domain?: number; standalone?: boolean; ts?: number; server?: number } = {}) => {
  const body = Buffer.alloc(13 + 6);
  body.writeBigUInt64LE(BigInt(seq), 0);
  body.writeUInt32LE(opts.domain ?? 0, 8);
  body.writeUInt8(opts.standalone ? 1 : 0, 12);
  return event(EventType.GTID, body, opts);
};
const query = (text: string) => event(EventType.QUERY, Buffer.concat([Buffer.alloc(13), Buffer.from("app\0"), Buffer.from(text)]));
const rows = () => event(23, Buffer.alloc(40));
const xid = () => event(EventType.XID, Buffer.alloc(8));

describe("binlog: transactions at their boundaries", () => {
  it("ends a transaction at its XID, a standalone GTID after its query, a non-transactional one at COMMIT; a trailing partial one is left out", () => {
    const parts = [BINLOG_MAGIC, fde(), gtid(1, { ts: 100 }), rows(), xid(), gtid(2, { standalone: true, ts: 101 }), query("CREATE TABLE t (id INT)"), gtid(3, { ts: 102 }), query("BEGIN"), rows(), query("COMMIT"), gtid(4, { ts: 103 }), rows()];
    const file = Buffer.concat(parts);
    const { cutter, transactions } = transactionsOf(file);
    expect(cutter.checksumLen).toBe(4);
    expect(cutter.headerEnd).toBe(4 + parts[1]!.length);
    expect(transactions.map((t) => [Number(t.gtid.seq), t.timestamp])).toEqual([
      [1, 100],
      [2, 101],
      [3, 102],
    ]);
    // Each transaction is the bytes from its GTID event to its end.
    const t1 = transactions[0]!;
    expect(t1.start).toBe(4 + parts[1]!.length);
    expect(t1.end - t1.start).toBe(parts[2]!.length + parts[3]!.length + parts[4]!.length);
    expect(transactions[2]!.end).toBe(file.length - parts[11]!.length - parts[12]!.length);
  });

  it("positions: parse, format, earlier per domain", () => {
    expect(formatPos(parsePos("1-2-7, 0-1-42"))).toBe("0-1-42,1-2-7");
    expect(formatPos(posMin(parsePos("0-1-42,1-2-7"), parsePos("0-2-40")))).toBe("0-2-40,1-2-7");
    expect(() => parsePos("0-1")).toThrow(/domain-server-seq/);
  });
});

const seg = (epoch: string, no: number, first: string, last: string, t0 = 100, t1 = 101): SegmentInfo => {
  const s = { no, t0, t1, first: parsePos(first), last: parsePos(last) };
  const key = segmentKey("c", epoch, s);
  return { ...s, key, epoch, size: 10 };
};
const epoch = (id: string, start: string, segments: SegmentInfo[], node = "n"): ArchiveEpoch => ({
  id,
  record: { epoch: id, node, source: { node, host: "h", port: 3306, term: 1 }, start, startedAt: "" } satisfies EpochRecord,
  segments,
});

describe("archive layout: names are the index; epochs supersede what lies beyond their start", () => {
  it("a segment's key says its number, times and GTID ranges", () => {
    const s = seg("20260101T000000.000Z-n1", 12, "0-1-5,1-3-9", "0-2-8,1-3-9", 1700000000, 1700000001);
    expect(s.key).toBe("c/binlog/20260101T000000.000Z-n1/0000000012_1700000000-1700000001_0-1-5~0-2-8,1-3-9~1-3-9.binlog");
    const back = parseSegmentKey(s.key, 10)!;
    expect(back.no).toBe(12);
    expect(back.epoch).toBe("20260101T000000.000Z-n1");
    expect(formatPos(back.first)).toBe("0-1-5,1-3-9");
    expect(formatPos(back.last)).toBe("0-2-8,1-3-9");
    expect(parseSegmentKey("c/binlog/e/epoch.json")).toBeUndefined();
  });

  it("contiguous segments across epochs: no gap, the head is the last GTID", () => {
    const c = checkArchive([epoch("e1", "", [seg("e1", 1, "0-1-1", "0-1-10"), seg("e1", 2, "0-1-11", "0-1-20")]), epoch("e2", "0-1-20", [seg("e2", 1, "0-2-21", "0-2-30")])]);
    expect(c.gaps).toEqual([]);
    expect(formatPos(c.head)).toBe("0-2-30");
    expect(c.chain.map((x) => x.segment.no)).toEqual([1, 2, 1]);
  });

  it("an old primary's tail beyond the next epoch's start is superseded, not a duplicate", () => {
    // e1 archived 0-1-21..25 from the old primary; the new one was promoted at 0-1-20 and numbers on from 21.
    const c = checkArchive([epoch("e1", "", [seg("e1", 1, "0-1-1", "0-1-20"), seg("e1", 2, "0-1-21", "0-1-25")]), epoch("e2", "0-1-20", [seg("e2", 1, "0-2-21", "0-2-30")])]);
    expect(c.gaps).toEqual([]);
    expect(c.chain.map((x) => `${x.segment.epoch}/${x.segment.no}`)).toEqual(["e1/1", "e2/1"]);
    expect(formatPos(c.chain[0]!.limit!)).toBe("0-1-20");
    expect(formatPos(c.head)).toBe("0-2-30");
  });

  it("a hole between segments, or an epoch that starts past the head, is a gap", () => {
    const inside = checkArchive([epoch("e1", "", [seg("e1", 1, "0-1-1", "0-1-10"), seg("e1", 2, "0-1-13", "0-1-20")])]);
    expect(inside.gaps).toHaveLength(1);
    expect(inside.gaps[0]).toMatchObject({ domain: 0, afterSeq: 10n, nextSeq: 13n });
    const between = checkArchive([epoch("e1", "", [seg("e1", 1, "0-1-1", "0-1-10")]), epoch("e2", "0-1-15", [seg("e2", 1, "0-1-16", "0-1-20")])]);
    expect(between.gaps).toHaveLength(1);
    expect(between.gaps[0]).toMatchObject({ afterSeq: 10n, nextSeq: 16n });
  });
});

describe("archive retention follows the snapshots", () => {
  it("prunes whole epochs whose successor starts at or before the oldest kept snapshot, never the live one", () => {
    const epochs = [epoch("e1", "", [seg("e1", 1, "0-1-1", "0-1-10"), seg("e1", 2, "0-1-11", "0-1-25")]), epoch("e2", "0-1-20", [seg("e2", 1, "0-2-21", "0-2-30")]), epoch("e3", "0-2-30", [seg("e3", 1, "0-2-31", "0-2-40")])];
    expect(prunableEpochs(epochs, parsePos("0-1-15")).map((e) => e.id)).toEqual([]);
    expect(prunableEpochs(epochs, parsePos("0-1-20")).map((e) => e.id)).toEqual(["e1"]);
    expect(prunableEpochs(epochs, parsePos("0-2-35")).map((e) => e.id)).toEqual(["e1", "e2"]);
    expect(prunableEpochs(epochs, parsePos("0-2-99")).map((e) => e.id)).toEqual(["e1", "e2"]);
    expect(prunableEpochs(epochs, new Map())).toEqual([]);
    // What remains checks without a gap.
    expect(checkArchive(epochs.slice(1)).gaps).toEqual([]);
  });
});

describe("the archiver's lock in the cluster store (memory)", () => {
  const member = (node: string): MemberRecord => ({ node, serverId: 1, host: "h", port: 3306, role: "replica", up: true, executed: "", received: "", lagSeconds: 0, sqlError: "", nofailover: false, blocked: "", maintenance: false, source: "", at: "" });
  it("one holder at a time; renewed by its holder; free when the holder stops being alive or releases it", async () => {
    const clock = new SimClock();
    const server = new MemoryStoreServer({ clock, timing: { leaseMs: 3000, lockDelayMs: 1000 } });
    const a = server.connect("a");
    const b = server.connect("b");
    await a.touchMember(member("a"), { status: "passing", output: "" });
    await b.touchMember(member("b"), { status: "passing", output: "" });
    expect(await a.acquireArchiver({ node: "a", since: "t" })).toBe(true);
    expect(await b.acquireArchiver({ node: "b", since: "t" })).toBe(false);
    expect(await a.acquireArchiver({ node: "a", since: "t" })).toBe(true);
    expect((await b.archiver())?.node).toBe("a");
    await clock.runUntil(2000);
    await b.touchMember(member("b"), { status: "passing", output: "" });
    await clock.runUntil(3500); // a's liveness lapsed, b's did not
    expect(await b.acquireArchiver({ node: "b", since: "t2" })).toBe(true);
    await b.releaseArchiver();
    expect(await a.archiver()).toBeUndefined();
  });
});
