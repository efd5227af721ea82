import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { describePoint, type RestorePoint } from "../archive/point.js";
import { Snapshots, type StoreConfig } from "../config/schema.js";

/** What a new lab needs from the lab it is restored from: its cluster, accounts and snapshot store. */
export interface SourceLab {
  dir: string;
  cluster: string;
  credentials: { user: string; password: string; database: string; rootPassword: string; replUser: string; replPassword: string };
  store: StoreConfig;
}

/** Reads another lab's lab.json and its first node's config (running or not: only its store is used). */
export function sourceLab(dir: string): SourceLab {
  const abs = resolve(dir);
  let file: { cluster: string; credentials: SourceLab["credentials"]; nodes: Array<{ config: string }> };
  try {
    file = JSON.parse(readFileSync(join(abs, "lab.json"), "utf8"));
  } catch (err) {
    throw new Error(`--from ${dir}: no readable lab.json there (${err instanceof Error ? err.message : String(err)})`);
  }
  const node = file.nodes[0];
  if (!node) throw new Error(`--from ${dir}: the lab has no node`);
  const config = JSON.parse(readFileSync(node.config, "utf8")) as { mysql?: { snapshots?: unknown } };
  const snapshots = Snapshots.parse(config.mysql?.snapshots ?? {});
  return { dir: abs, cluster: file.cluster, credentials: file.credentials, store: snapshots.store };
}

/**
 * The mysql settings of a lab started as the source lab's cluster was at `point`: every node
 * starts with `mysql.snapshots.restoreFrom` (the source's cluster, the point and the source's
 * store), so each restores itself on its first start, as a compose service would
 * (src/mysql/start-from-archive.ts); one then becomes the new cluster's primary.
 */
export function restoringConfig(mysql: Record<string, unknown>, ownStorePath: string, src: SourceLab, point: RestorePoint, log: (line: string) => void): Record<string, unknown> {
  log(`each node restores ${src.dir}'s cluster as of ${describePoint(point)} from its store on its first start`);
  const snapshots = (mysql.snapshots ?? {}) as Record<string, unknown>;
  return { ...mysql, snapshots: { store: { type: "local", path: ownStorePath }, ...snapshots, restoreFrom: { cluster: src.cluster, to: describePoint(point), store: src.store } } };
}
