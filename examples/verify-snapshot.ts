/**
 * Runbook: take a snapshot of the cluster now, restore it into a scratch directory, and report what
 * it holds (its GTID position, size, and how long each step took). A snapshot nobody restored is a
 * hope; this makes it a fact. Run it on a schedule; alert when it throws.
 */
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Cluster } from "../src/index.js";

export interface SnapshotCheck {
  id: string;
  node: string;
  gtid: string;
  sizeBytes: number;
  takeMs: number;
  restoreMs: number;
  /** Entries of the restored datadir (the system schema `mysql` among them). */
  files: number;
}

export async function verifySnapshot(cluster: Cluster, opts: { scratch?: string; timeoutMs?: number } = {}): Promise<SnapshotCheck> {
  const t0 = performance.now();
  const m = await cluster.createSnapshot({ timeoutMs: opts.timeoutMs ?? 600_000 });
  const takeMs = performance.now() - t0;
  const listed = await cluster.listSnapshots();
  if (!listed.some((s) => s.id === m.id)) throw new Error(`snapshot ${m.id} was reported taken but is not in the store's list`);
  const dir = opts.scratch ?? mkdtempSync(join(tmpdir(), "statepilot-verify-"));
  try {
    const r = await cluster.restoreSnapshot({ id: m.id, datadir: join(dir, "data") });
    const files = readdirSync(join(dir, "data"));
    if (!files.includes("mysql")) throw new Error(`the restored datadir has no mysql/ system schema (${files.join(", ")})`);
    if (r.gtid !== m.gtid) throw new Error(`restored GTID ${r.gtid} differs from the manifest's ${m.gtid}`);
    return { id: m.id, node: m.node, gtid: m.gtid, sizeBytes: m.size, takeMs: Math.round(takeMs), restoreMs: Math.round(r.durationMs), files: files.length };
  } finally {
    if (!opts.scratch) rmSync(dir, { recursive: true, force: true });
  }
}
