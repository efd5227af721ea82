import { describePoint, parseRestorePoint } from "../archive/point.js";
import { type PointRestoreResult, restoreToPoint } from "../archive/restore.js";
import type { MysqlConfig } from "../config/schema.js";
import type { Logger } from "../log.js";
import { createStore, type SnapshotStore } from "../snapshot/store.js";
import { datadirOwner } from "./provision.js";

type RestoreFrom = NonNullable<MysqlConfig["snapshots"]["restoreFrom"]>;

/**
 * `mysql.snapshots.restoreFrom`: an empty datadir of a cluster that has no snapshot of its own
 * yet is filled with another cluster as it was at a point (its newest snapshot before the point,
 * then its archived binlogs up to it), the way `lab up --restore-to` fills a new lab's nodes.
 * Every node that starts so holds the same data and GTID state, so any of them can become the
 * new cluster's primary and the others replicate from it by GTID.
 */
export async function startFromArchive(o: { cfg: MysqlConfig; from: RestoreFrom; ownStore: SnapshotStore; mysqld: string; logger: Logger }): Promise<PointRestoreResult> {
  const point = parseRestorePoint(o.from.to);
  const store = o.from.store ? await createStore(o.from.store) : o.ownStore;
  try {
    o.logger.info({ from: o.from.cluster, point: describePoint(point), store: store.description }, "empty datadir and no snapshot of this cluster: restoring the other cluster as of the point");
    const r = await restoreToPoint({
      store,
      cluster: o.from.cluster,
      datadir: o.cfg.datadir,
      point,
      logger: o.logger,
      runAs: datadirOwner(o.cfg),
      mysqld: o.mysqld,
      progress: (line) => o.logger.info({ progress: line }, "restoring to the point"),
    });
    o.logger.info({ from: o.from.cluster, snapshot: r.snapshot.id, gtid: r.gtid, transactions: r.transactions, lastTransactionAt: r.lastTransactionAt, durationMs: r.durationMs }, "restore to the point done");
    return r;
  } finally {
    if (store !== o.ownStore) store.close();
  }
}
