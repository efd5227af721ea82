import { randomUUID } from "node:crypto";
import type { Coordinator } from "../discovery/coordination.js";
import { snapshotKeys, type SnapshotRequest } from "./scheduler.js";
import type { Manifest } from "./snapshot.js";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Asks the cluster for a snapshot now and waits for its manifest (or the reason it failed). */
export async function requestSnapshot(coordinator: Coordinator, cluster: string, timeoutMs: number): Promise<Manifest> {
  const keys = snapshotKeys(cluster);
  const { entry } = await coordinator.read(keys.request);
  const current = entry?.value ? (JSON.parse(entry.value) as SnapshotRequest) : undefined;
  if (current && (current.state === "requested" || current.state === "running") && Date.now() - Date.parse(current.requestedAt) < timeoutMs) {
    throw new Error(`a snapshot (${current.id}) is already ${current.state}${current.node ? ` on ${current.node}` : ""}`);
  }
  const req: SnapshotRequest = { id: randomUUID(), requestedAt: new Date().toISOString(), state: "requested" };
  if (!(await coordinator.writeCas(keys.request, JSON.stringify(req), entry?.modifyIndex ?? 0))) throw new Error("another snapshot request was written at the same time; try again");
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const { entry: e } = await coordinator.read(keys.request);
    const r = e?.value ? (JSON.parse(e.value) as SnapshotRequest) : undefined;
    if (!r || r.id !== req.id) throw new Error("the request was replaced by another one");
    if (r.state === "failed") throw new Error(`snapshot failed on ${r.node}: ${r.error}`);
    if (r.state === "done") {
      const { entry: latest } = await coordinator.read(keys.latest);
      const m = latest?.value ? (JSON.parse(latest.value) as Manifest) : undefined;
      if (m && m.id === r.snapshotId) return m;
      throw new Error(`snapshot ${r.snapshotId} was taken but is no longer the latest`);
    }
    await sleep(250);
  }
  throw new Error(`no snapshot within ${Math.round(timeoutMs / 1000)} s: is any node healthy, and is mysql.snapshots.store reachable?`);
}
