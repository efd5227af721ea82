import { randomUUID } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import type { ClusterStore, Leader } from "../cluster/store.js";
import type { MemberRecord, PauseRecord, SwitchoverRecord } from "../cluster/records.js";

export class SwitchoverError extends Error {
  override name = "SwitchoverError";
}

export interface MemberView extends MemberRecord {
  /** The store's liveness of the node (its TTL check / lease). */
  alive: boolean;
  /** Seconds since the node wrote its record (from the record's own time), null when unknown. */
  ageSeconds: number | null;
}

export interface ClusterView {
  primary: (Leader["record"] & { term: number }) | undefined;
  members: MemberView[];
  switchover: SwitchoverRecord | undefined;
  /** Automatic failover paused by an operator (absent or `paused: false`: it runs). */
  pause: PauseRecord | undefined;
  invalid: Array<{ what: string; error: string }>;
}

/** The cluster as the store has it: the leader, every member with its liveness and age, any switchover. */
export async function clusterView(store: ClusterStore, now = Date.now()): Promise<ClusterView> {
  const st = await store.load();
  return {
    primary: st.leader ? { ...st.leader.record, term: st.leader.term } : undefined,
    members: st.members.map((m) => {
      const at = Date.parse(m.record.at);
      return { ...m.record, alive: m.alive, ageSeconds: Number.isFinite(at) ? Math.max(0, Math.round((now - at) / 1000)) : null };
    }),
    switchover: st.switchover?.record,
    pause: st.pause,
    invalid: [...st.invalid],
  };
}

/** When a switchover request starts counting: its scheduled time, else when it was asked. */
export function startOf(r: Pick<SwitchoverRecord, "requestedAt" | "at">): number {
  return Date.parse(r.at ?? r.requestedAt);
}

/**
 * Asks the primary to hand over: it fences itself, waits for the target to have every transaction
 * and releases the leadership; the target takes it and turns writable. Resolves only when the
 * record says done AND the store's leader is the target: the answer is the cluster's truth.
 */
export async function switchover(store: ClusterStore, cluster: string, opts: { to?: string | undefined; timeoutMs: number; at?: Date | undefined }): Promise<SwitchoverRecord & { observedMs: number }> {
  const st = await store.load();
  if (!st.leader) throw new SwitchoverError(`cluster ${cluster} has no primary right now; nothing to switch over`);
  if (opts.to !== undefined) {
    if (opts.to === st.leader.node) throw new SwitchoverError(`--to: ${opts.to} is already the primary`);
    const m = st.members.find((x) => x.node === opts.to);
    if (!m) throw new SwitchoverError(`--to: no node ${JSON.stringify(opts.to)} in cluster ${cluster} (members: ${st.members.map((x) => x.node).join(", ")})`);
    if (!m.alive) throw new SwitchoverError(`--to: ${opts.to} is not alive in the store; pick a healthy replica`);
  }
  const current = st.switchover?.record;
  if (current && (current.state === "requested" || current.state === "handover" || current.state === "released") && Date.now() - startOf(current) < opts.timeoutMs * 2) {
    throw new SwitchoverError(`a switchover (${current.id}, ${current.state}) is already in progress`);
  }
  if (opts.at && !(opts.at.getTime() > Date.now())) throw new SwitchoverError(`--at: ${opts.at.toISOString()} is not in the future`);
  const record: SwitchoverRecord = { id: randomUUID(), ...(opts.to !== undefined ? { to: opts.to } : {}), state: "requested", requestedAt: new Date().toISOString(), ...(opts.at ? { at: opts.at.toISOString() } : {}) };
  const started = performance.now();
  if (!(await store.writeSwitchover(record, st.switchover?.version ?? 0))) throw new SwitchoverError("another switchover request was written at the same time; try again");
  // A scheduled switchover is recorded; the primary carries it out at its time.
  if (opts.at) return { ...record, observedMs: Math.round(performance.now() - started) };
  const deadline = Date.now() + opts.timeoutMs + 10_000;
  while (Date.now() < deadline) {
    const now = await store.load();
    const r = now.switchover?.record;
    if (r && r.id !== record.id) throw new SwitchoverError("the request was replaced by another one");
    if (r?.state === "failed") throw new SwitchoverError(`switchover failed: ${r.error ?? "no reason given"}`);
    if (r?.state === "done" && now.leader?.node === r.to) return { ...r, observedMs: Math.round(performance.now() - started) };
    await sleep(50);
  }
  const last = (await store.load()).switchover?.record;
  throw new SwitchoverError(`no confirmed outcome within ${Math.round(opts.timeoutMs / 1000) + 10}s (last state: ${last?.id === record.id ? last.state : "replaced"}); check \`statepilot mysql status\``);
}
