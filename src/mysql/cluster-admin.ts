import { hostname, userInfo } from "node:os";
import type { ClusterStore } from "../cluster/store.js";

/** An operator's cluster-level request the store refused; the message says why and what to do. */
export class ClusterAdminError extends Error {
  override name = "ClusterAdminError";
}

function operator(): string {
  try {
    return `${userInfo().username}@${hostname()}`;
  } catch {
    return hostname();
  }
}

/**
 * Pauses (or resumes) automatic failover for the whole cluster. While paused, a free leadership is
 * taken back only by the node that held it last; switchovers still work. Fencing never pauses: a
 * primary that cannot renew its lease still goes read-only.
 */
export async function setClusterPause(store: ClusterStore, opts: { paused: boolean; reason?: string | undefined }): Promise<{ changed: boolean }> {
  const st = await store.load();
  const was = st.pause?.paused === true;
  await store.setPause({ paused: opts.paused, by: operator(), reason: opts.reason ?? "", at: new Date().toISOString() });
  return { changed: was !== opts.paused };
}

/**
 * Forgets a node that is gone for good: its member record (and so its vote in elections and its
 * line in `mysql status`). Refused while the node leads or is alive: stop it first.
 */
export async function removeNode(store: ClusterStore, cluster: string, node: string): Promise<void> {
  const st = await store.load();
  const m = st.members.find((x) => x.node === node);
  if (!m) throw new ClusterAdminError(`no node ${JSON.stringify(node)} in cluster ${cluster} (members: ${st.members.map((x) => x.node).join(", ") || "none"})`);
  if (st.leader?.node === node) throw new ClusterAdminError(`${node} is the primary: switch over first (statepilot mysql switchover), then stop it`);
  if (m.alive) throw new ClusterAdminError(`${node} is alive: stop its container (or statepilot) first; a running node would publish itself again`);
  await store.removeMember(node);
}
