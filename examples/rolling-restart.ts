/**
 * Runbook: a rolling restart of every node of a MySQL cluster (as an image upgrade does), replicas
 * first, one at a time, each back as a healthy replica before the next; then a switchover away from
 * the primary and a restart of the old primary. Writes stop only for the switchover.
 *
 * `restart(node)` is how this environment restarts one node: `docker restart`, a Kubernetes pod
 * delete, or the lab's stop/start (see test/integration/runbooks.test.ts).
 */
import type { Cluster, ClusterView } from "../src/index.js";

export interface RollingRestartReport {
  order: string[];
  switchover: { from: string; to: string; unavailableMs: number | undefined };
  finalPrimary: string;
}

export async function rollingRestart(cluster: Cluster, restart: (node: string) => Promise<void>, opts: { timeoutMs?: number; log?: (line: string) => void } = {}): Promise<RollingRestartReport> {
  const timeoutMs = opts.timeoutMs ?? 120_000;
  const log = opts.log ?? (() => undefined);
  const start = await cluster.view();
  const primary = start.primary?.node;
  if (!primary) throw new Error("the cluster has no primary: fix that before a rolling restart");
  const replicas = start.members.filter((m) => m.node !== primary).map((m) => m.node).sort();
  const order: string[] = [];
  for (const node of replicas) {
    log(`restarting replica ${node}`);
    await restart(node);
    await until(cluster, timeoutMs, `${node} back as a replica`, (v) => healthyReplica(v, node));
    order.push(node);
  }
  log(`switching over away from ${primary}`);
  const sw = await cluster.switchover({ timeoutMs: 60_000 });
  log(`restarting the old primary ${primary}`);
  await restart(primary);
  const end = await until(cluster, timeoutMs, `${primary} back as a replica`, (v) => healthyReplica(v, primary));
  order.push(primary);
  return { order, switchover: { from: sw.from ?? primary, to: sw.to ?? "?", unavailableMs: sw.unavailableMs }, finalPrimary: end.primary!.node };
}

function healthyReplica(v: ClusterView, node: string): boolean {
  const m = v.members.find((x) => x.node === node);
  return !!v.primary && v.primary.node !== node && !!m && m.alive && m.up && m.role === "replica" && m.source === v.primary.node && m.sqlError === "" && m.blocked === "";
}

async function until(cluster: Cluster, timeoutMs: number, what: string, ok: (v: ClusterView) => boolean): Promise<ClusterView> {
  const signal = AbortSignal.timeout(timeoutMs);
  try {
    for await (const v of cluster.watch({ signal, pollMs: 250 })) if (ok(v)) return v;
  } catch (err) {
    if (!signal.aborted) throw err;
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}
