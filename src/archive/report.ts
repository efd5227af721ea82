import type { ClusterStore } from "../cluster/store.js";
import { listSnapshots } from "../snapshot/snapshot.js";
import type { SnapshotStore } from "../snapshot/store.js";
import { formatPos, parsePos } from "./binlog.js";
import { checkArchive, readArchive } from "./layout.js";

export interface ArchiveReport {
  cluster: string;
  store: string;
  archiver: { node: string; since: string } | undefined;
  epochs: number;
  segments: number;
  bytes: number;
  /** Where the archive starts and ends (GTID position; time of the first and last transaction). */
  start: string;
  head: string;
  firstTransactionAt: string | undefined;
  lastTransactionAt: string | undefined;
  /** The primary's executed GTIDs and how many transactions of it the archive lacks, per domain. */
  primary: { node: string; executed: string; behind: Record<string, string> } | undefined;
  gaps: Array<{ domain: number; afterSeq: string; nextSeq: string; where: string }>;
  broken: string[];
  /** Snapshots from which the archive reaches its head (a restore can start from them). */
  restorableFrom: Array<{ id: string; createdAt: string; gtid: string }>;
}

/** The archive as the store holds it, checked against GTID history (its own continuity and the primary's position). */
export async function archiveReport(store: SnapshotStore, cluster: string, clusterStore?: ClusterStore): Promise<ArchiveReport> {
  const [epochs, snapshots] = await Promise.all([readArchive(store, cluster), listSnapshots(store, cluster)]);
  const check = checkArchive(epochs);
  let archiver: ArchiveReport["archiver"];
  let primary: ArchiveReport["primary"];
  if (clusterStore) {
    const [holder, state] = await Promise.all([clusterStore.archiver(), clusterStore.load()]);
    archiver = holder ? { node: holder.node, since: holder.since } : undefined;
    const leader = state.leader;
    const me = leader ? state.members.find((m) => m.node === leader.node) : undefined;
    if (leader && me) {
      const executed = parsePos(me.record.executed);
      const behind: Record<string, string> = {};
      for (const [d, g] of executed) {
        const have = check.head.get(d)?.seq ?? 0n;
        if (g.seq > have) behind[String(d)] = String(g.seq - have);
      }
      primary = { node: leader.node, executed: me.record.executed, behind };
    }
  }
  const restorableFrom = snapshots
    .filter((m) => {
      const pos = parsePos(m.gtid);
      for (const [d, g] of check.start) if ((pos.get(d)?.seq ?? -1n) < g.seq) return false;
      return check.segments > 0;
    })
    .map((m) => ({ id: m.id, createdAt: m.createdAt, gtid: m.gtid }));
  return {
    cluster,
    store: store.description,
    archiver,
    epochs: epochs.length,
    segments: check.segments,
    bytes: check.bytes,
    start: formatPos(check.start),
    head: formatPos(check.head),
    firstTransactionAt: check.firstTime === undefined ? undefined : new Date(check.firstTime * 1000).toISOString(),
    lastTransactionAt: check.headTime === undefined ? undefined : new Date(check.headTime * 1000).toISOString(),
    primary,
    gaps: check.gaps.map((g) => ({ domain: g.domain, afterSeq: String(g.afterSeq), nextSeq: String(g.nextSeq), where: g.where })),
    broken: check.broken,
    restorableFrom,
  };
}

export function formatArchiveReport(r: ArchiveReport): string {
  const lines = [
    `binlog archive of cluster ${r.cluster} in ${r.store}`,
    `  archiver:  ${r.archiver ? `${r.archiver.node} (since ${r.archiver.since})` : "nobody holds the lock"}`,
    `  holds:     ${r.segments} segments in ${r.epochs} epochs, ${(r.bytes / 1048576).toFixed(1)} MiB`,
    `  from:      ${r.start || "(the beginning of the binlog)"}${r.firstTransactionAt ? `, first transaction ${r.firstTransactionAt}` : ""}`,
    `  to:        ${r.head || "(nothing yet)"}${r.lastTransactionAt ? `, last transaction ${r.lastTransactionAt}` : ""}`,
  ];
  if (r.primary) {
    const behind = Object.entries(r.primary.behind);
    lines.push(`  primary:   ${r.primary.node} at ${r.primary.executed}${behind.length ? `; not archived yet: ${behind.map(([d, n]) => `${n} transactions in domain ${d}`).join(", ")}` : "; all archived"}`);
  }
  lines.push(r.gaps.length ? `  GAPS:      ${r.gaps.length}` : "  gaps:      none");
  for (const g of r.gaps) lines.push(`    domain ${g.domain}: after seq ${g.afterSeq} the next archived is ${g.nextSeq} (${g.where})`);
  if (r.broken.length) lines.push(`  unreadable epochs: ${r.broken.join(", ")}`);
  lines.push(`  restorable from ${r.restorableFrom.length} snapshot(s)${r.restorableFrom[0] ? `, the newest ${r.restorableFrom[0].id} (${r.restorableFrom[0].createdAt})` : ""}`);
  return lines.join("\n");
}
