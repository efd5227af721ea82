import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { type RestorePoint, restoreToPoint } from "../archive/restore.js";
import { Snapshots, type StoreConfig } from "../config/schema.js";
import { createLogger } from "../log.js";
import { createStore } from "../snapshot/store.js";

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
 * Restores every node's datadir of a lab being started to the source lab's cluster as it was at
 * `point` (each node the same: the newest snapshot before it plus the archived binlogs up to it).
 * The nodes then start on their datadirs; one becomes the primary of the new cluster.
 */
export async function restoreLabNodes(nodes: Array<{ name: string; config: string }>, src: SourceLab, point: RestorePoint, log: (line: string) => void): Promise<void> {
  const store = await createStore(src.store);
  try {
    for (const n of nodes) {
      const config = JSON.parse(readFileSync(n.config, "utf8")) as { mysql: { datadir: string } };
      log(`${n.name}: restoring ${src.dir}'s cluster as of ${"time" in point ? point.time.toISOString() : [...point.gtid.values()].map((g) => `${g.domain}-${g.server}-${g.seq}`).join(",")} from ${store.description}`);
      await restoreToPoint({ store, cluster: src.cluster, datadir: config.mysql.datadir, point, logger: createLogger({ level: "warn", format: "json" }, process.stderr), progress: (line) => log(`${n.name}: ${line}`) });
    }
  } finally {
    store.close();
  }
}
