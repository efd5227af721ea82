import { archiveReport, formatArchiveReport } from "../archive/report.js";
import { describePoint, parseRestorePoint as parsePoint, type RestorePoint } from "../archive/point.js";
import { restoreToPoint } from "../archive/restore.js";
import type { Config, MysqlConfig } from "../config/schema.js";
import { clusterClient } from "../discovery/cluster-store-factory.js";
import { resolveConsulConnection } from "../discovery/consul/connection.js";
import { ConsulCoordinator } from "../discovery/consul/coordinator.js";
import type { SnapshotStore } from "../snapshot/store.js";
import { createStore } from "../snapshot/store.js";
import { optionString, UsageError, type ParsedArgs } from "./args.js";
import { emit, outputFormat } from "./output.js";
import { resolveConfig } from "./run.js";

const out = (s: string) => process.stdout.write(`${s}\n`);

/** A restore point as typed: a MariaDB GTID position (0-1-42[,1-2-7]) or a time (ISO 8601, or anything Date.parse reads). */
export function parseRestorePoint(text: string, option: string): RestorePoint {
  try {
    return parsePoint(text);
  } catch (err) {
    throw new UsageError(`--${option}: ${err instanceof Error ? err.message : String(err)}`);
  }
}

/** --to-time T | --to-gtid G from the command line, if either is given. */
export function restorePointOption(args: ParsedArgs): RestorePoint | undefined {
  const time = optionString(args, "to-time");
  const gtid = optionString(args, "to-gtid");
  if (time !== undefined && gtid !== undefined) throw new UsageError("--to-time and --to-gtid exclude each other");
  if (time !== undefined) {
    const p = parseRestorePoint(time, "to-time");
    if (!("time" in p)) throw new UsageError(`--to-time: expected a time, got ${JSON.stringify(time)} (a GTID goes with --to-gtid)`);
    return p;
  }
  if (gtid !== undefined) {
    const p = parseRestorePoint(gtid, "to-gtid");
    if (!("gtid" in p)) throw new UsageError(`--to-gtid: expected a GTID position such as 0-1-42, got ${JSON.stringify(gtid)}`);
    return p;
  }
  return undefined;
}

/** statepilot snapshot restore --to-time T | --to-gtid G --datadir DIR --config FILE */
export async function restoreToPointCommand(args: ParsedArgs, config: Config & { mysql: MysqlConfig }, store: SnapshotStore, datadir: string, point: RestorePoint): Promise<number> {
  const { createLogger } = await import("../log.js");
  const m = config.mysql;
  out(`restoring cluster ${m.cluster} as of ${describePoint(point)} from ${store.description} into ${datadir}`);
  const r = await restoreToPoint({ store, cluster: m.cluster, datadir, point, logger: createLogger(config.logging, process.stderr), runAs: m.runAs, ...(m.binary ? { mysqld: m.binary } : {}), progress: (line) => out(`  ${line}`) });
  if (outputFormat(args) !== "table") {
    emit(outputFormat(args), { datadir, point: describePoint(point), snapshot: r.snapshot.id, gtid: r.gtid, transactions: r.transactions, segments: r.segments, bytesApplied: r.bytesApplied, lastTransactionAt: r.lastTransactionAt, durationMs: r.durationMs }, () => "");
    return 0;
  }
  out(`restored ${datadir} to ${r.gtid} in ${(r.durationMs / 1000).toFixed(1)} s (snapshot ${r.snapshot.id}, then ${r.transactions} archived transactions); start a node on it: with no other node holding data, it becomes the primary`);
  return 0;
}

/** statepilot archive status --config FILE */
export async function archiveCommand(args: ParsedArgs, configPath: string | undefined): Promise<number> {
  const sub = args.command[1];
  if (sub !== "status") throw new UsageError(`archive: expected status, got ${JSON.stringify(sub)}`);
  if (!configPath) throw new UsageError("--config FILE is required (a node's config: it names the store, Consul and the cluster)");
  const config = resolveConfig({ configPath, node: undefined, mainCommand: undefined });
  if (!config.mysql) throw new UsageError(`${configPath} has no mysql section`);
  const m = config.mysql;
  const store = await createStore(m.snapshots.store);
  const coordinator = new ConsulCoordinator(resolveConsulConnection(config.consul, process.env));
  const clusterStore = clusterClient(coordinator, m, config.store, process.env);
  try {
    const report = await archiveReport(store, m.cluster, clusterStore);
    if (outputFormat(args) !== "table") emit(outputFormat(args), report, () => "");
    else out(formatArchiveReport(report));
    // A gap is a finding, as a failed check is: exit 1.
    return report.gaps.length ? 1 : 0;
  } finally {
    clusterStore.close();
    coordinator.close();
    store.close();
  }
}
