import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { parseRecord, readRecord, type Coordinator } from "../discovery/coordination.js";
import type { MemberRecord, PrimaryRecord } from "./election.js";
import type { SwitchoverRecord } from "./ha.js";


export class SwitchoverError extends Error {
  override name = "SwitchoverError";
}

export interface ClusterView {
  primary: (PrimaryRecord & { session: string }) | undefined;
  members: MemberRecord[];
  switchover: SwitchoverRecord | undefined;
}

/** The cluster as Consul has it: the lock holder, every member's last record, any switchover. */
export async function clusterView(coordinator: Coordinator, cluster: string): Promise<ClusterView> {
  const base = `statepilot/${cluster}`;
  const [{ entry }, { entries }, sw] = await Promise.all([coordinator.read(`${base}/primary`), coordinator.list(`${base}/members/`), readRecord<SwitchoverRecord>(coordinator, `${base}/switchover`)]);
  const p = entry?.session ? parseRecord<PrimaryRecord>(entry.value) : undefined;
  return {
    primary: p && entry?.session ? { ...p, session: entry.session } : undefined,
    members: entries.map((e) => parseRecord<MemberRecord>(e.value)).filter((m): m is MemberRecord => m !== undefined),
    switchover: sw.value,
  };
}

/**
 * Asks the primary to hand over: it fences itself, waits for the target to have every transaction,
 * releases the lock and destroys its session; the target takes the lock and turns writable.
 * Resolves with the finished record (state done) or throws with the reason.
 */
export async function switchover(coordinator: Coordinator, cluster: string, opts: { to?: string | undefined; timeoutMs: number }): Promise<SwitchoverRecord & { observedMs: number }> {
  const key = `statepilot/${cluster}/switchover`;
  const view = await clusterView(coordinator, cluster);
  if (!view.primary) throw new SwitchoverError(`cluster ${cluster} has no primary right now; nothing to switch over`);
  if (opts.to !== undefined) {
    if (opts.to === view.primary.node) throw new SwitchoverError(`--to: ${opts.to} is already the primary`);
    const m = view.members.find((x) => x.node === opts.to);
    if (!m) throw new SwitchoverError(`--to: no node ${JSON.stringify(opts.to)} in cluster ${cluster} (members: ${view.members.map((x) => x.node).join(", ")})`);
  }
  const { modifyIndex } = await readRecord<SwitchoverRecord>(coordinator, key);
  const current = view.switchover;
  if (current && (current.state === "requested" || current.state === "handover") && Date.now() - Date.parse(current.requestedAt) < opts.timeoutMs * 2) {
    throw new SwitchoverError(`a switchover (${current.id}, ${current.state}) is already in progress`);
  }
  const record: SwitchoverRecord = { id: randomUUID(), to: opts.to, state: "requested", requestedAt: new Date().toISOString() };
  const started = performance.now();
  if (!(await coordinator.writeCas(key, JSON.stringify(record), modifyIndex))) throw new SwitchoverError("another switchover request was written at the same time; try again");
  const deadline = Date.now() + opts.timeoutMs + 5_000;
  while (Date.now() < deadline) {
    const { value: r } = await readRecord<SwitchoverRecord>(coordinator, key);
    if (r?.id === record.id && r.state === "done") return { ...r, observedMs: Math.round(performance.now() - started) };
    if (r?.id === record.id && r.state === "failed") throw new SwitchoverError(`switchover failed: ${r.error ?? "no reason given"}`);
    if (r && r.id !== record.id) throw new SwitchoverError("the request was replaced by another one");
    await sleep(50);
  }
  throw new SwitchoverError(`no answer within ${Math.round(opts.timeoutMs / 1000) + 5}s; is the primary's statepilot running?`);
}
