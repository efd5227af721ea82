import type { SnapshotStore } from "../snapshot/store.js";
import { formatGtid, formatPos, type Gtid, type GtidPos, parseGtid, parsePos, posIncludes } from "./binlog.js";

/**
 * How the binlog archive lies in the snapshot store, and how it is read back.
 *
 * `<cluster>/binlog/<epoch>/epoch.json`: one epoch per archiver stream (a holder of the archiver's
 * lock streaming from one primary), with the GTID position it continued from (`start`).
 * `<cluster>/binlog/<epoch>/<no>_<t0>-<t1>_<gtids>.binlog`: its segments, in order, each a
 * self-contained binlog file (magic, format description, whole transactions); the name is the
 * index: first and last transaction time (seconds) and, per domain, the first and last GTID.
 *
 * Epochs are ordered by name (start time, then node). An epoch's transactions count only up to
 * the next epoch's start: what an earlier stream archived beyond it (an old primary's tail that
 * no replica had, or a segment a lost lock's holder still uploaded) is superseded, never applied.
 * So a failover or a crashed archiver leaves neither a hole nor an ambiguous duplicate.
 */

export interface EpochRecord {
  epoch: string;
  node: string;
  source: { node: string; host: string; port: number; term: number };
  /** GTID position this stream continued from ("" for the beginning of the source's binlog). */
  start: string;
  startedAt: string;
}

export interface SegmentInfo {
  key: string;
  epoch: string;
  no: number;
  /** First and last transaction time, seconds since the epoch (the binlog's resolution). */
  t0: number;
  t1: number;
  /** Per domain: first and last GTID. */
  first: GtidPos;
  last: GtidPos;
  size: number;
}

export const archivePrefix = (cluster: string) => `${cluster}/binlog/`;
export const epochKey = (cluster: string, epoch: string) => `${archivePrefix(cluster)}${epoch}/epoch.json`;

export function epochId(node: string, now = new Date()): string {
  return `${now.toISOString().replace(/[-:]/g, "").replace("Z", "")}Z-${node}`;
}

export function segmentKey(cluster: string, epoch: string, s: Omit<SegmentInfo, "key" | "epoch" | "size">): string {
  const gtids = [...s.first.keys()]
    .sort((a, b) => a - b)
    .map((d) => `${formatGtid(s.first.get(d)!)}~${formatGtid(s.last.get(d)!)}`)
    .join(",");
  return `${archivePrefix(cluster)}${epoch}/${String(s.no).padStart(10, "0")}_${s.t0}-${s.t1}_${gtids}.binlog`;
}

const SEGMENT = /\/(\d{10})_(\d+)-(\d+)_([^/]+)\.binlog$/;

export function parseSegmentKey(key: string, size = 0): SegmentInfo | undefined {
  const m = SEGMENT.exec(key);
  if (!m) return undefined;
  const epoch = key.slice(0, m.index).split("/").pop() ?? "";
  const first: GtidPos = new Map();
  const last: GtidPos = new Map();
  for (const part of m[4]!.split(",")) {
    const [a, b] = part.split("~");
    if (!a || !b) return undefined;
    const f = parseGtid(a);
    first.set(f.domain, f);
    last.set(f.domain, parseGtid(b));
  }
  return { key, epoch, no: Number(m[1]), t0: Number(m[2]), t1: Number(m[3]), first, last, size };
}

export interface ArchiveEpoch {
  id: string;
  record: EpochRecord | undefined;
  segments: SegmentInfo[];
}

/** Epochs and their segments as the store lists them, in order. */
export async function readArchive(store: SnapshotStore, cluster: string): Promise<ArchiveEpoch[]> {
  const objects = await store.list(archivePrefix(cluster));
  const epochs = new Map<string, ArchiveEpoch>();
  const epochOf = (id: string) => {
    const found = epochs.get(id);
    if (found) return found;
    const e: ArchiveEpoch = { id, record: undefined, segments: [] };
    epochs.set(id, e);
    return e;
  };
  const records: Array<Promise<void>> = [];
  for (const o of objects) {
    const rel = o.key.slice(archivePrefix(cluster).length);
    const [id, name] = rel.split("/");
    if (!id || !name) continue;
    if (name === "epoch.json") {
      const e = epochOf(id);
      records.push(
        store.getText(o.key).then((text) => {
          if (!text) return;
          try {
            e.record = JSON.parse(text) as EpochRecord;
          } catch {
            // unreadable: the epoch has no start, and is reported
          }
        }),
      );
    } else {
      const s = parseSegmentKey(o.key, o.size);
      if (s) epochOf(id).segments.push(s);
    }
  }
  await Promise.all(records);
  const out = [...epochs.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  for (const e of out) e.segments.sort((a, b) => a.no - b.no);
  return out;
}

export interface Gap {
  domain: number;
  /** The last GTID archived before the hole (seq), and the first after it. */
  afterSeq: bigint;
  nextSeq: bigint;
  where: string;
}

export interface ArchiveCheck {
  /** Segments in apply order, each with the position its epoch is valid up to (the next epoch's start). */
  chain: Array<{ segment: SegmentInfo; limit: GtidPos | undefined }>;
  /** Where the first epoch started ("" = the beginning of the source's binlog). */
  start: GtidPos;
  /** The last position the archive holds, after supersession. */
  head: GtidPos;
  firstTime: number | undefined;
  headTime: number | undefined;
  gaps: Gap[];
  /** Epochs whose record is missing or unreadable. */
  broken: string[];
  segments: number;
  bytes: number;
}

/**
 * Walks the epochs in order and checks the archive against GTID history: within a domain, every
 * sequence number from the first epoch's start to the head is present once (MariaDB numbers a
 * domain's transactions one by one, across failovers too); an epoch that starts beyond what was
 * archived before it, or a segment that does not follow its predecessor, is a gap.
 */
export function checkArchive(epochs: ArchiveEpoch[]): ArchiveCheck {
  const chain: ArchiveCheck["chain"] = [];
  const gaps: Gap[] = [];
  const broken: string[] = [];
  let pos: GtidPos = new Map();
  let start: GtidPos = new Map();
  let firstTime: number | undefined;
  let headTime: number | undefined;
  let bytes = 0;
  let segments = 0;
  const valid = epochs.filter((e) => {
    if (!e.record) broken.push(e.id);
    return !!e.record;
  });
  valid.forEach((e, i) => {
    const s = parsePos(e.record!.start);
    if (i === 0) {
      start = s;
      pos = new Map(s);
    } else {
      for (const [d, g] of s) {
        const have = pos.get(d);
        if (!have ? g.seq > 0n : g.seq > have.seq) gaps.push({ domain: d, afterSeq: have?.seq ?? 0n, nextSeq: g.seq + 1n, where: `epoch ${e.id} starts after ${formatGtid(g)}` });
      }
      // Whatever earlier epochs hold beyond this start is superseded.
      const next = new Map(pos);
      for (const [d, g] of s) next.set(d, g);
      pos = next;
    }
    const limit = valid[i + 1] ? parsePos(valid[i + 1]!.record!.start) : undefined;
    for (const seg of e.segments) {
      let used = false;
      for (const [d, f] of seg.first) {
        if (limit?.has(d) && f.seq > limit.get(d)!.seq) continue;
        used = true;
        const have = pos.get(d);
        const expected = (have?.seq ?? 0n) + 1n;
        if (f.seq > expected && (have || !(i === 0 && start.size === 0))) gaps.push({ domain: d, afterSeq: have?.seq ?? 0n, nextSeq: f.seq, where: `before ${seg.key}` });
        const l = seg.last.get(d)!;
        const capped = limit?.has(d) && l.seq > limit.get(d)!.seq ? limit.get(d)! : l;
        if (!have || capped.seq > have.seq) pos.set(d, capped);
      }
      if (!used) continue;
      chain.push({ segment: seg, limit });
      segments++;
      bytes += seg.size;
      firstTime ??= seg.t0;
      headTime = Math.max(headTime ?? 0, seg.t1);
    }
  });
  return { chain, start, head: pos, firstTime, headTime, gaps, broken, segments, bytes };
}

export function describePos(p: GtidPos): string {
  return p.size ? formatPos(p) : "(the beginning)";
}

/** Whether a snapshot at `pos` is covered by an archive starting at `start`. */
export function archiveCovers(start: GtidPos, pos: GtidPos): boolean {
  if (start.size === 0) return true;
  for (const [d, g] of start) if (!posIncludes(pos, g as Gtid) && (pos.get(d)?.seq ?? 0n) < g.seq) return false;
  return true;
}

/**
 * Epochs no restore can need any more: an epoch holds nothing valid beyond the next epoch's start,
 * so once that start is at or before `oldest` (the position of the oldest snapshot kept) every
 * restore begins after all of it. Whole epochs go (segments and record), so the archive's first
 * epoch always starts where its first segment continues, and the check finds no false gap; the
 * archiver starts a new epoch every `epochEvery` so that a long-lived stream is pruned too. The last
 * epoch is never pruned.
 */
export function prunableEpochs(epochs: ArchiveEpoch[], oldest: GtidPos): ArchiveEpoch[] {
  if (!oldest.size) return [];
  const withRecords = epochs.filter((e) => e.record);
  const out: ArchiveEpoch[] = [];
  for (let i = 0; i < withRecords.length - 1; i++) {
    const next = parsePos(withRecords[i + 1]!.record!.start);
    if (!next.size) break;
    let covered = true;
    for (const [d, g] of next) if ((oldest.get(d)?.seq ?? -1n) < g.seq) covered = false;
    if (!covered) break;
    out.push(withRecords[i]!);
  }
  return out;
}

/** Deletes the epochs no kept snapshot needs to reach the present (see prunableEpochs); returns how many segments went. */
export async function pruneArchive(store: SnapshotStore, cluster: string, oldestSnapshotGtid: string): Promise<number> {
  const doomed = prunableEpochs(await readArchive(store, cluster), parsePos(oldestSnapshotGtid));
  let n = 0;
  for (const e of doomed) {
    for (const s of e.segments) {
      await store.delete(s.key);
      n++;
    }
    // The record last: an interrupted prune leaves an epoch that is still whole where it begins.
    await store.delete(epochKey(cluster, e.id));
  }
  return n;
}
