import { randomUUID } from "node:crypto";
import { existsSync, renameSync, rmSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import type { ClusterState, ClusterStore } from "../cluster/store.js";
import { parseRecord, readRecord, type Coordinator } from "../discovery/coordination.js";
import type { Logger } from "../log.js";
import { ClusterAdminError } from "./cluster-admin.js";
import { gtidSubset } from "./gtid.js";
import type { MysqlHa } from "./ha/loop.js";

/**
 * `statepilot mysql rebuild NODE`: an operator's request, written to the store under the node's
 * name, carried out by that node's own statepilot (which keeps running): it fences itself out of
 * the replica set, stops its server, moves its datadir aside, seeds a fresh one as a new node does
 * (the newest snapshot, else an empty datadir that catches up by GTID), starts the server and
 * becomes a replica again. The old datadir is removed only once the node is a passing replica; on
 * failure it is put back. Requests expire as snapshot requests do: one nobody started by its
 * client's deadline is never started.
 */
export interface RebuildRequest {
  id: string;
  node: string;
  requestedAt: string;
  /** The client stops waiting then: a request not started by this time is not started any more. */
  expiresAt: string;
  state: "requested" | "running" | "done" | "failed";
  /** What the node is doing now (running), or did last. */
  stage?: string;
  /** How the new datadir was seeded. */
  seed?: string;
  /** Where the old datadir waits while the rebuild runs. */
  aside?: string;
  /** The node's executed GTIDs when it reported done. */
  executed?: string;
  startedAt?: string;
  finishedAt?: string;
  error?: string;
}

export function rebuildKey(cluster: string, node: string): string {
  return `statepilot/${cluster}/rebuild/${node}`;
}

/** The rebuild ran and failed (or its outcome is not the one asked for): the message says what happened. */
export class RebuildError extends Error {
  override name = "RebuildError";
}

export interface RebuildResult {
  node: string;
  id: string;
  /** How the datadir was seeded. */
  seed: string;
  primary: string;
  /** The node's executed GTIDs, containing the primary's position as of the end of the rebuild. */
  executed: string;
  /** The primary's executed GTIDs the node was required to have. */
  primaryExecuted: string;
  durationMs: number;
}

const ACTIVE = new Set(["requested", "running"]);
const expired = (r: Pick<RebuildRequest, "expiresAt">, now: number) => {
  const at = Date.parse(r.expiresAt);
  return Number.isFinite(at) && now >= at;
};

/** Why a member may not be rebuilt, seen from the client (the node decides again itself). */
function refuseEarly(st: ClusterState, cluster: string, node: string, now: number): string | undefined {
  const m = st.members.find((x) => x.node === node);
  if (!m) return `no node ${JSON.stringify(node)} in cluster ${cluster} (members: ${st.members.map((x) => x.node).join(", ") || "none"})`;
  if (st.leader?.node === node) return `${node} is the primary: switch over first (statepilot mysql switchover), then rebuild it`;
  if (!st.leader) return `cluster ${cluster} has no primary right now: a rebuilt node would have nothing to catch up from`;
  const at = Date.parse(m.record.at);
  if (Number.isFinite(at) && now - at > 60_000) return `${node} has not published its state for ${Math.round((now - at) / 1000)} s: its own statepilot carries the rebuild out, so it must be running`;
  return undefined;
}

/**
 * Asks NODE to rebuild itself and waits until it is a passing replica of the primary holding the
 * primary's position (as of when the node reported done), or for the reason it is not.
 */
export async function requestRebuild(
  store: ClusterStore,
  coordinator: Coordinator,
  cluster: string,
  node: string,
  opts: { timeoutMs: number; onState?: (what: string) => void },
): Promise<RebuildResult> {
  const started = performance.now();
  const st = await store.load();
  const refused = refuseEarly(st, cluster, node, Date.now());
  if (refused) throw new ClusterAdminError(refused);
  const key = rebuildKey(cluster, node);
  const { value: current, modifyIndex } = await readRecord<RebuildRequest>(coordinator, key);
  if (current && ACTIVE.has(current.state) && !expired(current, Date.now())) throw new ClusterAdminError(`a rebuild of ${node} (${current.id}) is already ${current.state}${current.stage ? `: ${current.stage}` : ""}`);
  const req: RebuildRequest = { id: randomUUID(), node, requestedAt: new Date().toISOString(), expiresAt: new Date(Date.now() + opts.timeoutMs).toISOString(), state: "requested" };
  if (!(await coordinator.writeCas(key, JSON.stringify(req), modifyIndex))) throw new ClusterAdminError(`another rebuild request for ${node} was written at the same time; try again`);
  // The node reports its last state by the deadline (it puts its old datadir back first on a
  // failure); a little longer is allowed for that report.
  const deadline = Date.now() + opts.timeoutMs + 15_000;
  let last: RebuildRequest = req;
  let shown = "";
  const show = (what: string) => {
    if (what !== shown) opts.onState?.(what);
    shown = what;
  };
  while (Date.now() < deadline) {
    const { value: r } = await readRecord<RebuildRequest>(coordinator, key);
    if (!r || r.id !== req.id) throw new RebuildError(`the rebuild request of ${node} was replaced by another one`);
    last = r;
    if (r.state === "failed") throw new RebuildError(r.error ?? `rebuild of ${node} failed`);
    if (r.state === "done") break;
    show(r.state === "requested" ? `waiting for ${node}'s statepilot to take the request` : `${node}: ${r.stage ?? "running"}`);
    if (r.state === "requested" && expired(r, Date.now())) break;
    await sleep(250);
  }
  if (last.state !== "done") {
    // Nobody waits any more: a request still pending is withdrawn so that it does not run later.
    const { value: now, modifyIndex: idx } = await readRecord<RebuildRequest>(coordinator, key);
    if (now?.id === req.id && now.state === "requested") {
      await coordinator.writeCas(key, JSON.stringify({ ...now, state: "failed", error: "the client stopped waiting (timeout)" }), idx);
      throw new RebuildError(`${node}'s statepilot did not take the rebuild request within ${Math.round(opts.timeoutMs / 1000)} s (withdrawn): is it running?`);
    }
    throw new RebuildError(`no outcome of the rebuild of ${node} within ${Math.round(opts.timeoutMs / 1000)} s (last state: ${now?.state ?? "gone"}${now?.stage ? `, ${now.stage}` : ""})`);
  }
  // The node says it is a passing replica; the cluster's view must say so too, at the primary's position.
  show(`${node}: verifying it is a passing replica at the primary's position`);
  let target: { primary: string; executed: string } | undefined;
  let why = "";
  while (Date.now() < deadline) {
    const s = await store.load();
    const leader = s.leader;
    const me = s.members.find((m) => m.node === node);
    const primaryMember = leader ? s.members.find((m) => m.node === leader.node) : undefined;
    if (!leader || !primaryMember) why = "the cluster has no primary";
    else if (!me) why = `${node} has no member record`;
    else if (me.record.role === "diverged" || me.record.blocked) throw new RebuildError(`${node} was rebuilt (${last.seed ?? "?"}) but ends diverged: ${me.record.blocked || "role diverged"}`);
    else {
      if (target?.primary !== leader.node) target = { primary: leader.node, executed: primaryMember.record.executed };
      const r = me.record;
      if (r.role !== "replica" || !r.up) why = `${node} is ${r.role}${r.up ? "" : " (mysqld down)"}`;
      else if (r.source !== leader.node) why = `${node} does not replicate from ${leader.node} yet`;
      else if (r.sqlError) throw new RebuildError(`${node} was rebuilt but its applier stopped: ${r.sqlError}`);
      else if (!gtidSubset(leader.record.flavor, target.executed, r.executed)) why = `${node} is catching up to ${target.executed}`;
      else return { node, id: req.id, seed: last.seed ?? "", primary: leader.node, executed: r.executed, primaryExecuted: target.executed, durationMs: Math.round(performance.now() - started) };
    }
    show(`${node}: ${why}`);
    await sleep(250);
  }
  throw new RebuildError(`${node} reported its rebuild done, but the cluster does not show it as a replica at the primary's position within the time: ${why}`);
}

/** A datadir copied from a peer before the server stopped, or why there is none. */
export type PreSeed = { dir: string; seed: string } | { dir: undefined; note: string };

export interface RebuildWorkerDeps {
  cluster: string;
  node: string;
  coordinator: Coordinator;
  store: ClusterStore;
  ha: MysqlHa;
  datadir: string;
  /** Stops mysqld for good (no restart, statepilot keeps running). */
  stopServer: () => Promise<void>;
  /** Starts mysqld again with this server_id. */
  startServer: (serverId: number) => void;
  /**
   * While the server still runs (fenced out): a copy taken from a peer into `dir` (MySQL: CLONE
   * INSTANCE ... DATA DIRECTORY), or why none was taken; absent: no such way.
   */
  preSeed?: (cluster: ClusterState, dir: string, stage: (what: string) => void) => Promise<PreSeed>;
  /** Seeds the absent datadir (from the pre-seed's directory, else as a new node's start-up does) and records the node state; says how. */
  seed: (stage: (what: string) => void, pre: PreSeed | undefined) => Promise<{ seed: string; serverId: number; fromPeer?: boolean }>;
  /** Once the new server runs, before the HA loop takes it over (a clone's copied replication metadata reset). */
  afterStart?: (seeded: { fromPeer?: boolean }, deadline: number) => Promise<void>;
  /** After the old datadir was put back: its node state read again; returns its server_id. */
  reloadState: () => number;
  /** The flavor the cluster's positions are compared in. */
  flavor: () => "mariadb" | "mysql";
  logger: Logger;
}

/** The node's side: watches its request key and carries requests out, one at a time. */
export class RebuildWorker {
  private stopped = false;
  private readonly abort = new AbortController();
  private watching: Promise<void> | undefined;
  private running: Promise<void> | undefined;
  private readonly key: string;
  private readonly log: Logger;
  private handled = new Set<string>();

  constructor(private readonly d: RebuildWorkerDeps) {
    this.key = rebuildKey(d.cluster, d.node);
    this.log = d.logger.child({ component: "rebuild" });
  }

  start(): void {
    this.watching = this.watch();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.abort.abort();
    await this.watching;
    await this.running;
  }

  get busy(): boolean {
    return this.running !== undefined;
  }

  /** A blocking read on this node's key: a request is acted on when it is written. */
  private async watch(): Promise<void> {
    let index = 0;
    while (!this.stopped) {
      try {
        const r = await this.d.coordinator.read(this.key, { index, wait: "30s", signal: this.abort.signal });
        if (this.stopped) return;
        const first = index === 0;
        if (r.index !== index || first) {
          index = r.index;
          const req = parseRecord<RebuildRequest>(r.entry?.value);
          if (req && r.entry) await this.consider(req, r.entry.modifyIndex, first);
        }
      } catch (err) {
        if (this.stopped) return;
        this.log.debug({ err: err instanceof Error ? err.message : String(err) }, "rebuild request watch failed; retrying");
        index = 0;
        await sleep(1_000).catch(() => undefined);
      }
    }
  }

  private async consider(req: RebuildRequest, modifyIndex: number, first: boolean): Promise<void> {
    if (req.node !== this.d.node || this.handled.has(req.id) || this.running) return;
    if (first && req.state === "running") {
      // This node was rebuilding when its statepilot stopped: that rebuild is over.
      this.handled.add(req.id);
      const left = req.aside && existsSync(req.aside) ? `; the old datadir is kept at ${req.aside}` : "";
      await this.d.coordinator.writeCas(this.key, JSON.stringify({ ...req, state: "failed", finishedAt: new Date().toISOString(), error: `statepilot on ${this.d.node} restarted during the rebuild (at: ${req.stage ?? "?"})${left}` }), modifyIndex);
      return;
    }
    if (req.state !== "requested") return;
    this.handled.add(req.id);
    this.running = this.carryOut(req, modifyIndex).finally(() => (this.running = undefined));
    await this.running;
  }

  private async carryOut(req: RebuildRequest, modifyIndex: number): Promise<void> {
    const d = this.d;
    let cluster: ClusterState | undefined;
    let storeError = "";
    try {
      cluster = await d.store.load();
    } catch (err) {
      storeError = err instanceof Error ? err.message : String(err);
    }
    const verdict = d.ha.rebuildVerdict(cluster, storeError, Date.parse(req.expiresAt));
    if (!verdict.accept) {
      this.log.warn({ id: req.id }, verdict.reason);
      await d.coordinator.writeCas(this.key, JSON.stringify({ ...req, state: "failed", finishedAt: new Date().toISOString(), error: verdict.reason }), modifyIndex);
      return;
    }
    this.log.warn({ id: req.id }, verdict.reason);
    const aside = `${d.datadir.replace(/\/+$/, "")}.before-rebuild-${req.id.slice(0, 8)}`;
    let rec: RebuildRequest = { ...req, state: "running", stage: "fencing itself out of the replica set", aside, startedAt: new Date().toISOString() };
    if (!(await d.coordinator.writeCas(this.key, JSON.stringify(rec), modifyIndex))) {
      this.log.warn({ id: req.id }, "the rebuild request changed before it started (withdrawn or replaced); not started");
      return;
    }
    const report = async (patch: Partial<RebuildRequest>) => {
      rec = { ...rec, ...patch };
      await d.coordinator.write(this.key, JSON.stringify(rec)).catch((err: unknown) => this.log.warn({ err: err instanceof Error ? err.message : String(err) }, "could not report the rebuild's progress"));
    };
    const stage = (what: string) => {
      this.log.info({ id: req.id }, `rebuild: ${what}`);
      d.ha.setRebuilding(what);
      void report({ stage: what });
    };
    const deadline = Date.parse(req.expiresAt);
    let serverStopped = false;
    let moved = false;
    const cloneDir = `${d.datadir.replace(/\/+$/, "")}.clone-${req.id.slice(0, 8)}`;
    let pre: PreSeed | undefined;
    try {
      // 1. Out of the replica set: the loop's decision turns the node down and critical (out of
      //    Consul's healthy lists and the LB checks); it never acquires while rebuilding.
      stage("fencing itself out of the replica set");
      await this.until(() => d.ha.fencedOutForRebuild(), Math.min(15_000, deadline - Date.now()));
      if (!d.ha.fencedOutForRebuild()) throw new Error(`the node did not leave the replica set: ${d.ha.statusView().reason}`);
      // 2. Nothing acknowledged may live only here: its receiver stopped, another live replica
      //    must have received what the primary had then (decideWipe) before the data goes.
      stage("waiting for another replica to hold what this node received");
      const stoppedAtVersion = (await d.ha.d.store.load()).version;
      let need: string | undefined;
      let wipeWhy = "";
      const safe = await this.until(
        async () => {
          let st: ClusterState | undefined;
          let err = "";
          try {
            st = await d.ha.d.store.load();
          } catch (e) {
            err = e instanceof Error ? e.message : String(e);
          }
          const v = d.ha.wipeVerdict(st, err, stoppedAtVersion, need);
          need = v.need;
          wipeWhy = v.reason;
          return v.wipe;
        },
        Math.min(30_000, deadline - Date.now()),
      );
      if (!safe) throw new Error(`${wipeWhy}; nothing was changed`);
      if (d.preSeed && cluster) {
        pre = await d.preSeed(cluster, cloneDir, (what) => stage(what));
        if (pre.dir === undefined) this.log.warn({ id: req.id }, `rebuild: ${pre.note}`);
      }
      stage("stopping mysqld");
      await d.stopServer();
      serverStopped = true;
      stage(`moving the datadir aside to ${aside}`);
      rmSync(aside, { recursive: true, force: true });
      renameSync(d.datadir, aside);
      moved = true;
      const seeded = await d.seed((what) => stage(what), pre);
      await report({ seed: seeded.seed });
      d.ha.datadirReplaced(true);
      d.ha.d.serverId = seeded.serverId;
      stage("starting mysqld");
      d.startServer(seeded.serverId);
      serverStopped = false;
      if (d.afterStart) await d.afterStart(seeded, deadline);
      d.ha.setRebuilding(undefined);
      await report({ stage: `catching up (${seeded.seed})` });
      // 2. A passing replica of the primary, at least at the primary's position as published.
      let why = "";
      const ok = await this.until(async () => {
        const s = d.ha.statusView();
        if (s.role === "diverged" || s.blocked) throw new Error(`the rebuilt node is diverged: ${s.blocked || s.reason}`);
        if (s.role !== "replica" || s.health !== "passing" || !s.primary) {
          why = s.reason;
          return false;
        }
        const st = await d.store.load();
        const p = st.members.find((m) => m.node === st.leader?.node);
        if (!p || !gtidSubset(d.flavor(), p.record.executed, s.executed)) {
          why = `catching up to ${p?.record.executed ?? "?"}`;
          return false;
        }
        return true;
      }, deadline - Date.now());
      if (!ok) throw new Error(`not a passing replica at the primary's position by the deadline (${why})`);
      rmSync(aside, { recursive: true, force: true });
      rmSync(cloneDir, { recursive: true, force: true });
      const executed = d.ha.statusView().executed;
      await report({ state: "done", stage: "a passing replica again; the old datadir removed", executed, finishedAt: new Date().toISOString() });
      this.log.warn({ id: req.id, seed: rec.seed, executed }, "rebuild done: a replica again; the old datadir removed");
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      this.log.error({ id: req.id, err: message }, "rebuild failed; putting the old datadir back");
      let restored = "";
      try {
        if (moved) {
          d.ha.setRebuilding("rebuild failed: putting the old datadir back");
          if (!serverStopped) await d.stopServer();
          serverStopped = true;
          rmSync(d.datadir, { recursive: true, force: true });
          renameSync(aside, d.datadir);
          const serverId = d.reloadState();
          d.ha.datadirReplaced(false);
          d.ha.d.serverId = serverId;
          restored = "; the old datadir was put back";
        }
      } catch (e) {
        restored = `; putting the old datadir back failed too (${e instanceof Error ? e.message : String(e)}); it is kept at ${aside}`;
      } finally {
        rmSync(cloneDir, { recursive: true, force: true });
        d.ha.setRebuilding(undefined);
        if (serverStopped) d.startServer(d.ha.d.serverId);
      }
      await report({ state: "failed", error: `rebuild of ${d.node} failed: ${message}${restored}`, finishedAt: new Date().toISOString() });
    }
  }

  /** Polls `cond` (every 250 ms) until it holds, for at most `ms`; false when it never did. */
  private async until(cond: () => boolean | Promise<boolean>, ms: number): Promise<boolean> {
    const end = Date.now() + Math.max(0, ms);
    for (;;) {
      if (await cond()) return true;
      if (Date.now() >= end || this.stopped) return false;
      await sleep(250);
    }
  }
}
