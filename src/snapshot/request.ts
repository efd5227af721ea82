import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { readRecord, type Coordinator } from "../discovery/coordination.js";
import { snapshotKeys, type SnapshotRequest } from "./scheduler.js";
import type { Manifest } from "./snapshot.js";


/** Asks the cluster for a snapshot now and waits for its manifest (or the reason it failed). */
export async function requestSnapshot(coordinator: Coordinator, cluster: string, timeoutMs: number, onState?: (r: SnapshotRequest) => void): Promise<Manifest> {
  const keys = snapshotKeys(cluster);
  const { value: current, modifyIndex } = await readRecord<SnapshotRequest>(coordinator, keys.request);
  if (current && (current.state === "requested" || current.state === "running") && Date.now() - Date.parse(current.requestedAt) < timeoutMs) {
    throw new Error(`a snapshot (${current.id}) is already ${current.state}${current.node ? ` on ${current.node}` : ""}`);
  }
  const req: SnapshotRequest = { id: randomUUID(), requestedAt: new Date().toISOString(), expiresAt: new Date(Date.now() + timeoutMs).toISOString(), state: "requested" };
  if (!(await coordinator.writeCas(keys.request, JSON.stringify(req), modifyIndex))) throw new Error("another snapshot request was written at the same time; try again");
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const { value: r } = await readRecord<SnapshotRequest>(coordinator, keys.request);
    if (!r || r.id !== req.id) throw new Error("the request was replaced by another one");
    onState?.(r);
    if (r.state === "failed") throw new Error(`snapshot failed on ${r.node}: ${r.error}`);
    if (r.state === "done") {
      const { value: m } = await readRecord<Manifest>(coordinator, keys.latest);
      if (m && m.id === r.snapshotId) return m;
      throw new Error(`snapshot ${r.snapshotId} was taken but is no longer the latest`);
    }
    await sleep(250);
  }
  // Nobody waits any more: a request still pending is withdrawn so that it does not run later.
  const { value: last, modifyIndex: lastIndex } = await readRecord<SnapshotRequest>(coordinator, keys.request);
  if (last?.id === req.id && last.state === "requested") {
    await coordinator.writeCas(keys.request, JSON.stringify({ ...last, state: "failed", error: "the client stopped waiting (timeout)" }), lastIndex);
  }
  throw new Error(`no snapshot within ${Math.round(timeoutMs / 1000)} s: is any node healthy, and is mysql.snapshots.store reachable?`);
}
