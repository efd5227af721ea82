import type { ClusterState, Health, Leader } from "../../cluster/store.js";
import type { MemberRecord, Role, SwitchoverRecord } from "../../cluster/records.js";
import type { ClusterMemory } from "./deps.js";
import { decideRace, received } from "../election.js";
import { gtidSubset, mariaStateContained, ownTailBeyond, type Flavor } from "../gtid.js";
import type { LocalState, RemoteState } from "./database.js";
import type { HaSettings } from "./settings.js";

/**
 * The HA core's rules as pure functions: what one loop saw in, one action and its reason out. The
 * reason is what /status and the log show. Nothing here talks to a store or a server, reads the
 * clock or keeps state: the loop observes, calls `decide`, then carries the action out.
 */

export interface Observation {
  now: number;
  node: string;
  serverId: number;
  flavor: Flavor;
  settings: HaSettings;
  role: Role;
  /** This process has been primary (a later divergence is then a former primary's tail). */
  wasPrimary: boolean;
  mysqldRunning: boolean;
  mysqldPid: number | undefined;
  local: LocalState | undefined;
  localError: string;
  cluster: ClusterState | undefined;
  storeError: string;
  /** The store confirmed this node's leadership in this loop (touch, then renew). */
  leaseConfirmed: boolean;
  /** Store unreachable, failsafe mode: every member accepted this primary (what they said), so its leadership counts as confirmed. */
  failsafe?: string | undefined;
  /** Failsafe mode: this primary's leadership was last confirmed by the members, not the store, and that confirmation still holds. */
  failsafeHolds?: boolean;
  /** Failsafe mode: why this node may not run for primary now (a promise, or a list it is not on). */
  failsafeHold?: string | undefined;
  maintenance: boolean;
  /**
   * What this node last saw in an initialised store (the last leader, every member's record). When
   * the store comes back empty (it lost its data), the election still waits for those members.
   */
  memory?: ClusterMemory;
  /** Since when (and from which store version) this node has seen the leadership free. */
  free: { version: number; since: number } | undefined;
  /** The server process on which statepilot last started replication (a restart stops it). */
  replicationStartedOnPid: number | undefined;
  /** statepilot itself stopped the receiver (the leadership changed), so it may start it again. */
  receiverStoppedByUs: boolean;
  /** The primary's GTID state, when the loop looked (see `needsDivergenceCheck`). */
  primaryState: RemoteState | undefined;
  /** The previous verdict of the divergence check ("" when contained). */
  blocked: string;
  /** A node restored from a snapshot, until it replicated once: its position and binlog state. */
  restored: { gtid: string; state: string } | undefined;
  /** A switchover this primary is carrying out (fenced, waiting for the target). */
  handover: SwitchoverRecord | undefined;
  /** The switchover target's GTID state, when a handover is under way. */
  targetState: RemoteState | undefined;
  loops: number;
  /** An operator's rebuild this node is carrying out: its stage (the server is stopped or about to be). */
  rebuilding?: string | undefined;
}

export type Action =
  | { kind: "none" }
  /** Hard fence: SIGKILL mysqld (it restarts read-only, and crash recovery drops an unacknowledged tail). */
  | { kind: "kill-server" }
  /** Read-only, client connections killed, semi-sync off (kills the server if it does not obey). */
  | { kind: "fence"; how: "kill" | "read-only"; label: string }
  | { kind: "release" }
  /** Holds a confirmed leadership but the server is not (fully) writable: semi-sync first, then read_only off. */
  | { kind: "become-writable" }
  /** Fence (read-only, writers killed) and release the leadership: another node must lead. */
  | { kind: "step-down" }
  /** Lead; `expire`: members gone longer than memberExpiry whose records are removed. */
  | { kind: "lead"; expire: string[] }
  | { kind: "start-switchover"; record: SwitchoverRecord; version: number; to: string }
  | { kind: "finish-switchover" }
  | { kind: "abort-switchover"; error: string }
  | { kind: "refuse-switchover"; record: SwitchoverRecord; version: number; error: string }
  | { kind: "acquire"; handover: SwitchoverRecord | undefined }
  /** Failsafe: a primary still confirmed by its members takes the free leadership back (no promotion: it is writable already). */
  | { kind: "take-back" }
  /** `seedState`: a restored node first starts its binlog with this state (MariaDB gtid_binlog_state). */
  | { kind: "replicate"; leader: Leader; slavePos: "binlog" | string | undefined; seedState: string | undefined }
  | { kind: "start-replica" }
  /**
   * Stop receiving from a source that no longer leads (then look again before publishing): a
   * deposed primary whose supervisor is paused keeps accepting commits, and a replica that still
   * receives from it would acknowledge them. A record published after this is also a promise that
   * this node no longer acknowledges the old primary's writes.
   */
  | { kind: "stop-receiver" };

export interface Decision {
  action: Action;
  role: Role;
  health: Health;
  /** Why: shown in /status and logged when it changes. */
  reason: string;
  /** Set when the divergence check ran: the new verdict. */
  blocked?: string;
  /** Sleep this long before the next loop (ms); undefined: the configured interval. */
  nextIn?: number;
}

const pass = (output: string): Health => ({ status: "passing", output });
const warn = (output: string): Health => ({ status: "warning", output });
const crit = (output: string): Health => ({ status: "critical", output });

/** Whether the loop should read the primary's GTID state before deciding (a remote call). */
export function needsDivergenceCheck(o: Pick<Observation, "role" | "local" | "loops" | "settings" | "blocked" | "receiverStoppedByUs">, leader: Leader): boolean {
  const rep = o.local?.replication;
  const pointsThere = rep?.configured === true && rep.sourceHost === leader.record.host && rep.sourcePort === leader.record.port;
  return !pointsThere || o.receiverStoppedByUs || rep?.ioRunning === "No" || o.loops % o.settings.divergenceEvery === 0 || o.blocked !== "" || ["diverged", "fenced", "starting", "primary"].includes(o.role);
}

/**
 * Why this node's data is not contained in the primary's, or "". MariaDB compares binlog states
 * per (domain, server), so a tail written by another server at the same seq is caught. A primary
 * restored from a snapshot starts its binlog with the snapshot's binlog state, so the comparison
 * stays exact across a restore.
 */
export function divergence(flavor: Flavor, local: LocalState, primary: RemoteState, former: boolean, serverId: number): string {
  if (flavor === "mysql") {
    if (gtidSubset("mysql", local.executed, primary.executed)) return "";
    // MySQL has no init-rpl-role: crash recovery commits a binlog tail no replica acknowledged
    // (AFTER_SYNC: no client saw it). A former primary with such a tail must be rebuilt, never
    // replicate on top of it.
    return `${former ? "diverged former primary (a crashed MySQL primary keeps its unacknowledged binlog tail): " : ""}errant GTIDs: ${local.executed} is not contained in the primary's ${primary.executed}; it stays read-only until rebuilt`;
  }
  const c = mariaStateContained(local.state, primary.state);
  if (c.contained) return "";
  const own = c.missing.some((g) => g.split("-")[1] === String(serverId));
  const list = c.missing.length ? c.missing.join(", ") : local.binlogPos;
  return `${former && own ? "diverged former primary: " : ""}errant GTIDs: this node has transactions the primary does not have (${list}); it stays read-only until rebuilt from a snapshot`;
}

/** The one decision of a loop. Order matters: safety (fencing) before anything else. */
export function decide(o: Observation): Decision {
  const s = o.settings;
  const c = o.cluster;
  const leader = c?.leader;
  const mine = leader?.node === o.node;
  const writable = o.local !== undefined && !o.local.readOnly;

  // 1. The store cannot be read: nothing can be decided; a primary keeps serving until the
  //    watchdog fences it at fenceAfter; any other writable server goes read-only now.
  if (!c) {
    if (o.role === "primary" && o.failsafe) return { action: { kind: "none" }, role: o.role, health: warn(`store unreachable; ${o.failsafe}`), reason: `store unreachable (${o.storeError}); ${o.failsafe}` };
    if (o.role !== "primary" && writable) return { action: { kind: "fence", how: "read-only", label: "store_unreachable" }, role: o.role, health: crit(o.storeError), reason: `writable without a confirmed leadership; store unreachable: ${o.storeError}` };
    return { action: { kind: "none" }, role: o.role, health: crit(`store unreachable: ${o.storeError}`), reason: `store unreachable: ${o.storeError}` };
  }

  // 2. This node is being rebuilt (fenced out of the replica set, its server stopped and its
  //    datadir replaced): it does nothing to the server and reports why, unless it leads or is
  //    writable, which the safety rules below handle first.
  if (o.rebuilding !== undefined && !mine && o.role !== "primary" && !writable) {
    // The receiver stops first: from then on this node acknowledges nothing, and what it received
    // is fixed (decideWipe waits until another replica holds it before the data goes).
    const r = o.local?.replication;
    const receiving = r?.configured === true && r.ioRunning !== "No";
    return { action: receiving ? { kind: "stop-receiver" } : { kind: "none" }, role: "down", health: crit(`rebuilding: ${o.rebuilding}`), reason: `rebuilding on the operator's request: ${o.rebuilding}` };
  }

  // 2b. The server is down or does not answer.
  if (!o.local) {
    if ((o.role === "primary" || mine) && o.mysqldRunning) {
      return { action: { kind: "kill-server" }, role: "fenced", health: crit(o.localError), reason: `primary's server does not answer (${o.localError}): killing it before giving up the leadership` };
    }
    if (mine) return { action: { kind: "release" }, role: "down", health: crit(o.localError), reason: `primary's server is down (${o.localError}): leadership released` };
    const role: Role = o.role === "starting" && o.mysqldRunning ? "starting" : "down";
    return { action: { kind: "none" }, role, health: crit(o.localError), reason: o.localError };
  }
  const local = o.local;

  // 3. This node leads.
  if (mine) {
    if (!o.leaseConfirmed) {
      // Failsafe: back from an outage, the store still names this node but its lease ended there
      // (etcd: revoked by its own touch). Still confirmed by the members, it takes the leadership
      // back rather than fence; its watchdog fences it if that does not happen in time.
      if (o.failsafeHolds && writable && o.role === "primary") {
        return { action: { kind: "take-back" }, role: "primary", health: warn("failsafe: taking the leadership back"), reason: "the store is back but this node's lease ended there: this failsafe primary takes its leadership back", nextIn: 50 };
      }
      // The store says this node leads but the renewal failed: the lease is being lost.
      if (writable || o.role === "primary") return { action: { kind: "fence", how: s.fenceBy, label: "lease_not_confirmed" }, role: "fenced", health: crit("leadership not confirmed"), reason: "the store lists this node as leader but the renewal failed: fenced" };
      return { action: { kind: "none" }, role: o.role, health: warn("leadership not confirmed"), reason: "leadership not confirmed; waiting" };
    }
    if (o.handover) return decideHandover(o, local, c);
    // Only a server that restarted (crash recovery, and so read-only) can have lost its own tail.
    // A writable one cannot, and its position was read before the members' records: a busy
    // primary would otherwise take what a replica received since for a lost tail and step down.
    const lostTo = writable ? undefined : ownTailHeldElsewhere(o, local, c);
    if (lostTo) {
      const why = `${lostTo.node} holds this node's own transactions beyond its binlog (${lostTo.lost.join(", ")}), lost here in crash recovery: stepping down (writing again would reuse those GTIDs)`;
      return { action: { kind: "step-down" }, role: "fenced", health: crit(why), reason: why };
    }
    if (!writable || o.role !== "primary" || (s.lossless && !local.semiSyncPrimary)) {
      return { action: { kind: "become-writable" }, role: "primary", health: pass("primary, lock held"), reason: !writable ? "leadership confirmed: turning writable" : "leadership confirmed: semi-sync on" };
    }
    const sw = c.switchover;
    if (sw && sw.record.state === "requested") {
      // A scheduled switchover waits for its time (the loop looks again at least every interval).
      const at = sw.record.at === undefined ? Number.NaN : Date.parse(sw.record.at);
      if (!(Number.isFinite(at) && at > o.now)) return decideSwitchoverRequest(o, sw.record, sw.version, c);
      return { action: { kind: "lead", expire: expiredMembers(o, c) }, role: "primary", health: pass("primary, lock held"), reason: `primary, lock held; switchover scheduled at ${sw.record.at}`, nextIn: Math.max(20, Math.min(o.settings.interval, at - o.now)) };
    }
    return { action: { kind: "lead", expire: expiredMembers(o, c) }, role: "primary", health: pass("primary, lock held"), reason: "primary, lock held" };
  }

  // 4. This node does not lead but is (or was) writable: fence first, whatever else holds.
  //    Except a failsafe primary back in touch with a store where nobody leads: every member it
  //    relied on promised not to run, so it takes its leadership back while still confirmed (its
  //    watchdog fences it at fenceAfter if that fails).
  //    Not in a store that came back without its data: members cut off from it have no record
  //    there, and an election after a take-back would not know them (one may hold the only copy
  //    of an acknowledged write: sim seed 34950); the election from the members' memory decides.
  if (o.role === "primary" && !leader && o.failsafeHolds && writable && !c.initialized) {
    return { action: { kind: "fence", how: s.fenceBy, label: "lock_lost" }, role: "fenced", health: crit("the store lost its data"), reason: "failsafe: the store came back without its data: no take-back (an election from the members' memory decides the next primary): fenced" };
  }
  if (o.role === "primary" && !leader && o.failsafeHolds && writable) {
    return { action: { kind: "take-back" }, role: "primary", health: warn("failsafe: taking the leadership back"), reason: "the store is back and nobody leads: this failsafe primary takes its leadership back", nextIn: 50 };
  }
  if (o.role === "primary") {
    return { action: { kind: "fence", how: s.fenceBy, label: leader ? "lock_held_elsewhere" : "lock_lost" }, role: "fenced", health: crit("lost the leadership"), reason: leader ? `leadership held by ${leader.node}: fenced` : "leadership lost: fenced" };
  }
  if (writable) {
    return { action: { kind: "fence", how: "read-only", label: leader ? "lock_held_elsewhere" : "lock_lost" }, role: o.role, health: crit("writable without the leadership"), reason: "writable without the leadership: made read-only" };
  }

  if (leader) return decideReplica(o, local, leader);
  return decideFree(o, local, c);
}

/** Everything the local server's GTID variables name: its position and its binlog state, as one list. */
function heldLocally(local: LocalState): string {
  return [local.executed, local.state].filter((x) => x !== "").join(",");
}

/** A member whose record holds this node's own transactions beyond its binlog (see ownTailBeyond). */
function ownTailHeldElsewhere(o: Observation, local: LocalState, c: ClusterState): { node: string; lost: string[] } | undefined {
  const mine = heldLocally(local);
  for (const m of c.members) {
    if (m.record.node === o.node) continue;
    const theirs = [m.record.executed, m.record.received].filter((x) => x !== "").join(",");
    const lost = ownTailBeyond(o.flavor, theirs, mine, o.serverId);
    if (lost.length > 0) return { node: m.record.node, lost };
  }
  return undefined;
}

function decideReplica(o: Observation, local: LocalState, leader: Leader): Decision {
  const rep = local.replication;
  const pointsThere = rep.configured && rep.sourceHost === leader.record.host && rep.sourcePort === leader.record.port;
  const name = leader.node;
  // The leader lost its own tail, which this node holds (crash recovery truncated what waited for
  // an ack): not this node's divergence. It stops receiving from the leader (whose next writes would
  // reuse those GTIDs) and stays eligible, so that it, not the leader, ends up leading.
  if (o.primaryState) {
    const lost = ownTailBeyond(o.flavor, heldLocally(local), o.primaryState.executed, leader.record.serverId);
    if (lost.length > 0) {
      const why = `${name} lost its own transactions ${lost.join(", ")} (crash recovery), which this node holds: not replicating from it; waiting for it to step down`;
      const receiving = pointsThere && rep.ioRunning !== "No";
      return { action: receiving ? { kind: "stop-receiver" } : { kind: "none" }, role: "replica", health: crit(why), reason: why, blocked: "" };
    }
  }
  let blocked = o.blocked;
  if (o.primaryState) blocked = divergence(o.flavor, local, o.primaryState, o.wasPrimary, o.serverId);
  const out = (d: Omit<Decision, "blocked">): Decision => ({ ...d, blocked });
  if (blocked) return out({ action: { kind: "none" }, role: "diverged", health: crit(blocked), reason: blocked });
  if (!pointsThere) {
    // Stop acknowledging a source that does not lead, before anything else.
    if (rep.configured && rep.ioRunning !== "No") return out({ action: { kind: "stop-receiver" }, role: o.role === "starting" ? "replica" : o.role, health: warn(`leaving the old source for ${name}`), reason: `${name} leads: stopped receiving from the old source` });
    // Never follow a primary whose state was not checked against ours in this loop.
    if (!o.primaryState) return out({ action: { kind: "none" }, role: o.role === "starting" ? "replica" : o.role, health: warn(`cannot read ${name}'s GTID state yet`), reason: `waiting to read ${name}'s GTID state before replicating from it` });
    const slavePos = o.restored?.gtid ?? (o.flavor === "mariadb" && !gtidSubset("mariadb", local.binlogPos, local.slavePos) ? "binlog" : undefined);
    return out({ action: { kind: "replicate", leader, slavePos, seedState: o.restored ? o.restored.state || o.restored.gtid : undefined }, role: "replica", health: warn(`replication to ${name} starting`), reason: `replicating from ${name}` });
  }
  if (rep.sqlErrno) return out({ action: { kind: "none" }, role: "replica", health: crit(`SQL thread stopped: ${rep.sqlError}`), reason: `replication SQL thread stopped: ${rep.sqlError}` });
  const stopped = rep.ioRunning === "No" || !rep.sqlRunning;
  if (stopped && o.receiverStoppedByUs) {
    // statepilot stopped it when the leadership changed; the leader was checked in this loop.
    if (!o.primaryState) return out({ action: { kind: "none" }, role: "replica", health: warn(`cannot read ${name}'s GTID state yet`), reason: `waiting to read ${name}'s GTID state before resuming replication` });
    return out({ action: { kind: "start-replica" }, role: "replica", health: warn(`replication from ${name} resuming`), reason: `replication from ${name} resumed (stopped while the leadership changed)` });
  }
  if (stopped && o.replicationStartedOnPid !== o.mysqldPid) {
    // The server was (re)started with skip-slave-start since statepilot started replication.
    return out({ action: { kind: "start-replica" }, role: "replica", health: warn("replication resumed after a server restart"), reason: `replication from ${name} resumed after a server restart` });
  }
  if (rep.ioRunning === "No" && /\b1236\b/.test(rep.ioError)) {
    // The GTID it asked for is one of the leader's own: the leader may have lost it in crash
    // recovery (then this node is ahead, not diverged). Only its position tells; until it could be
    // read in this loop, nothing is concluded (a verdict here would outlive this leader).
    const asked = /GTID (\d+-\d+-\d+)/.exec(rep.ioError)?.[1];
    if (!o.primaryState && asked !== undefined && Number(asked.split("-")[1]) === leader.record.serverId) {
      const why = `cannot replicate from ${name}: its binlog lacks ${asked}, one of its own transactions, which this node holds; reading its position before deciding`;
      return out({ action: { kind: "none" }, role: "replica", health: crit(why), reason: why });
    }
    // The primary's binlog does not hold this node's position (purged, restored later, or a
    // history it never had): it cannot catch up from there and must not be promoted.
    const why = `cannot replicate from ${name}: its binlog does not hold this node's position (${rep.ioError}); rebuild this node from a snapshot`;
    return { action: { kind: "none" }, role: "diverged", health: crit(why), reason: why, blocked: why };
  }
  if (rep.ioRunning === "No" && rep.ioError) return out({ action: { kind: "none" }, role: "replica", health: crit(`replication receiver stopped: ${rep.ioError}`), reason: `replication receiver stopped: ${rep.ioError}` });
  if (stopped) {
    // Stopped without an error on this server process: someone ran STOP SLAVE (or its IO/SQL half).
    return out({ action: { kind: "none" }, role: "replica", health: warn("replication stopped by hand"), reason: "replication was stopped by hand; statepilot leaves it stopped (START SLAVE to resume)" });
  }
  if (rep.ioRunning === "Connecting") return out({ action: { kind: "none" }, role: "replica", health: warn(`connecting to ${name}`), reason: `replication receiver connecting to ${name}${rep.ioError ? `: ${rep.ioError}` : ""}` });
  const lag = rep.lagSeconds ?? 0;
  if (lag * 1000 > o.settings.healthyLagMs) return out({ action: { kind: "none" }, role: "replica", health: warn(`lagging ${lag}s`), reason: `lagging ${lag}s behind ${name}` });
  return out({ action: { kind: "none" }, role: "replica", health: pass(`replicating from ${name}`), reason: `replicating from ${name}, ${lag}s behind` });
}

function decideFree(o: Observation, local: LocalState, c: ClusterState): Decision {
  const role: Role = o.role === "starting" || o.role === "fenced" ? "replica" : o.role;
  const rep = local.replication;
  const health = rep.sqlErrno ? crit(`SQL thread stopped: ${rep.sqlError}`) : pass("no primary; election under way");
  const wait = (reason: string, nextIn: number): Decision => ({ action: { kind: "none" }, role, health, reason, nextIn });
  if (o.maintenance) return wait("no primary; in maintenance: not running for primary", 250);
  const sw = c.switchover?.record;
  // A released handover binds the election only while its target is alive and within its time.
  const targetAlive = sw?.to !== undefined && (sw.to === o.node || c.members.some((m) => m.node === sw.to && m.alive));
  const handover = sw?.state === "released" && targetAlive && sw.fencedAt !== undefined && o.now - sw.fencedAt < o.settings.switchoverTimeout * 2 ? sw : undefined;
  // Nobody leads: stop receiving from the old primary first, so this node acknowledges nothing
  // more of it, and compare positions only after that (a switchover target keeps receiving from
  // the fenced old primary, which writes nothing more, until it has its last position).
  if (rep.configured && rep.ioRunning !== "No" && handover?.to !== o.node) {
    return { action: { kind: "stop-receiver" }, role, health, reason: "no primary: stopped receiving from the old one before the election", nextIn: 20 };
  }
  if (handover?.to === o.node && !gtidSubset(o.flavor, handover.position ?? "", local.executed)) {
    // The target takes the lock only once it applied the old primary's last position; the loop
    // keeps running (and touching) meanwhile.
    if (rep.configured && (rep.ioRunning === "No" || !rep.sqlRunning) && o.replicationStartedOnPid !== o.mysqldPid) {
      return { action: { kind: "start-replica" }, role, health, reason: "switchover target: replication resumed after a server restart", nextIn: 20 };
    }
    return wait(`switchover target: applying ${handover.from ?? "the old primary"}'s position ${handover.position ?? ""}`, 20);
  }
  // Paused by the operator: no automatic failover. The last leader may take its own role back
  // (it has everything; no data moves), and a released switchover still completes.
  if (c.pause?.paused && !handover && c.lastLeader?.node !== o.node) {
    return wait(`no primary; cluster paused${c.pause.reason ? ` (${c.pause.reason})` : ""}: no automatic failover until \`statepilot mysql resume\``, 250);
  }
  if (o.failsafeHold) return wait(`no primary; not running: ${o.failsafeHold}`, 100);
  const self = memberRecordFor({ ...o, now: Number.NaN });
  // A store that lost its data (not initialised, yet this node saw it initialised) forgot the last
  // leader and the members: what this node remembers stands in, as members not heard from since.
  const forgotten = !c.initialized && o.memory !== undefined;
  // The store's lock-delay went with its data: a primary that has not noticed yet may still be
  // writable until its watchdog fences it (fenceAfter after its last confirmation, which came before
  // the store lost its data). So nobody runs before the takeover time has passed since.
  const freeFor = o.free ? o.now - o.free.since : 0;
  if (forgotten && o.memory?.lastLeader && freeFor < o.settings.takeover) {
    return wait(`no primary; the cluster store came back empty: waiting ${o.settings.takeover - freeFor} ms more (the takeover time), so that ${o.memory.lastLeader.node}, the last primary, has fenced itself`, Math.min(o.settings.interval, o.settings.takeover - freeFor));
  }
  // A node that never saw this cluster's store initialised (a new or restored node) cannot tell a
  // new cluster from a store that lost its data: while a live member remembers the cluster, the
  // history (and a failsafe primary that may still be writing, which this node would not know to
  // ask) is theirs, and one of them runs.
  const keeper = !c.initialized && o.memory === undefined ? c.members.find((m) => m.node !== o.node && m.alive && m.record.remembers) : undefined;
  if (keeper) return wait(`no primary; not running: the cluster store lost its data and this node never saw it initialised; ${keeper.node} remembers the cluster, and one of the members that do runs`, 250);
  // The members that remember may not have published yet (the store just came back): a node with
  // data but no memory gives them peerWait (a lease and an interval) before it takes the store's
  // emptiness for a new cluster. An empty server in a new cluster does not wait.
  if (!c.initialized && o.memory === undefined && local.executed !== "" && freeFor < o.settings.peerWaitMs) {
    return wait(`no primary; the cluster store is empty and this node holds data but never saw the store initialised: waiting ${Math.round(o.settings.peerWaitMs - freeFor)} ms for members that remember the cluster to publish`, Math.min(250, o.settings.peerWaitMs - freeFor));
  }
  const members = forgotten ? [...c.members, ...(o.memory?.members ?? []).filter((r) => r.node !== o.node && !c.members.some((m) => m.node === r.node)).map((record) => ({ node: record.node, record, version: 0, alive: false }))] : c.members;
  const race = decideRace({
    flavor: o.flavor,
    self,
    members,
    freeVersion: o.free?.version ?? c.version,
    freeForMs: freeFor,
    peerWaitMs: o.settings.peerWaitMs,
    maximumLagSeconds: o.settings.maximumLagMs / 1000,
    lastLeader: c.lastLeader ?? (forgotten ? o.memory?.lastLeader : undefined),
    clusterInitialized: c.initialized || forgotten,
    switchoverTarget: handover?.to,
    lossless: o.settings.lossless,
  });
  // Waiting for peers to publish: they do within a loop or two of seeing the leadership free, so a
  // young election looks again soon (every ms here is writes unavailable); an old one, gently.
  if (!race.race) return wait(`no primary; not running: ${race.reason}`, race.wait ? (freeFor < o.settings.peerWaitMs ? 20 : 100) : 250);
  // A leadership lost without a release is refused by the store until lock-delay has passed since
  // it was freed (which is before this node saw it free): look again as lock-delay ends, and
  // shortly after, rather than a whole interval later. The store alone decides; this only paces.
  const again = freeFor < o.settings.lockDelay ? o.settings.lockDelay - freeFor + 20 : freeFor < o.settings.lockDelay + o.settings.interval ? 50 : undefined;
  return { action: { kind: "acquire", handover }, role, health, reason: `no primary; running for it: ${race.reason}`, ...(again !== undefined ? { nextIn: Math.min(again, o.settings.interval) } : {}) };
}

/** The primary received a switchover request: pick the target, or refuse with the reason. */
function decideSwitchoverRequest(o: Observation, record: SwitchoverRecord, version: number, c: ClusterState): Decision {
  const lead = (action: Action, reason: string): Decision => ({ action, role: "primary", health: pass("primary, lock held"), reason });
  // Only a replica that replicates from this primary now can apply its last position.
  const peers = c.members.filter((m) => m.node !== o.node && m.alive && m.record.role === "replica" && m.record.source === o.node && m.record.up && !m.record.blocked && !m.record.nofailover && !m.record.sqlError && !m.record.maintenance);
  const flavor = o.flavor;
  const target = record.to
    ? peers.find((m) => m.node === record.to)
    : [...peers].sort((a, b) => (gtidSubset(flavor, received(flavor, a.record), received(flavor, b.record)) ? 1 : -1) || a.node.localeCompare(b.node))[0];
  if (!target) {
    // A named target that may be promoted but is still (re)connecting to this primary, e.g. the
    // primary of a switchover that just ended: wait for it, within the switchover's time.
    const named = record.to ? c.members.find((m) => m.node === record.to) : undefined;
    const requested = Date.parse(record.at ?? record.requestedAt);
    const young = Number.isFinite(requested) && o.now - requested < o.settings.switchoverTimeout;
    if (named && young && named.alive && named.record.up && !named.record.blocked && !named.record.nofailover && !named.record.maintenance && named.record.role !== "diverged") {
      return { ...lead({ kind: "none" }, `switchover to ${named.node}: waiting for it to replicate from this primary`), nextIn: 100 };
    }
    const error = record.to ? `${record.to} is not a healthy replica of this primary that may be promoted` : "no healthy replica to hand over to";
    return lead({ kind: "refuse-switchover", record, version, error }, `switchover refused: ${error}`);
  }
  return lead({ kind: "start-switchover", record, version, to: target.node }, `switchover to ${target.node}: fencing and handing over`);
}

/** A handover under way: release once the target has everything, or give up at the deadline. */
function decideHandover(o: Observation, local: LocalState, c: ClusterState): Decision {
  const h = o.handover!;
  const fenced = (action: Action, reason: string, nextIn?: number): Decision => ({ action, role: "primary", health: pass(`handing over to ${h.to}`), reason, ...(nextIn ? { nextIn } : {}) });
  if (!local.readOnly) return fenced({ kind: "fence", how: "read-only", label: "switchover" }, "switchover: the server became writable again; fencing");
  // MariaDB positions compare sequence numbers per domain only: a target with an errant
  // transaction of the same or a higher number would look complete. Its binlog state must also
  // hold every (domain, server) of this primary's.
  const targetHasState = o.flavor !== "mariadb" || (o.targetState !== undefined && mariaStateContained(local.state, o.targetState.state).contained);
  if (o.targetState && h.position !== undefined && gtidSubset(o.flavor, h.position, o.targetState.executed) && targetHasState) {
    return fenced({ kind: "finish-switchover" }, `switchover: ${h.to} has every transaction; releasing the leadership`);
  }
  // A target that can no longer catch up (gone, diverged, blocked, its applier stopped on an
  // error) ends the handover now rather than at the deadline: writes stay blocked meanwhile.
  const unfit = handoverTargetUnfit(c, h.to);
  if (unfit) return fenced({ kind: "abort-switchover", error: `${h.to} ${unfit}` }, `switchover aborted: ${h.to} ${unfit}`);
  if (h.fencedAt !== undefined && o.now - h.fencedAt > o.settings.switchoverTimeout) {
    return fenced({ kind: "abort-switchover", error: `${h.to} did not catch up within ${Math.round(o.settings.switchoverTimeout / 1000)}s` }, `switchover aborted: ${h.to} did not catch up`);
  }
  return fenced({ kind: "none" }, `switchover: waiting for ${h.to} to apply ${h.position ?? ""}`, 20);
}

/** Why the switchover target cannot take over any more, or undefined while it still can. */
function handoverTargetUnfit(c: ClusterState, to: string | undefined): string | undefined {
  const m = c.members.find((x) => x.node === to);
  if (!m?.alive) return "is gone";
  const r = m.record;
  if (r.blocked) return `cannot take over: ${r.blocked}`;
  if (r.role === "diverged" || r.role === "down") return `is ${r.role}`;
  if (r.sqlError) return `stopped applying: ${r.sqlError}`;
  return undefined;
}

/** Members that are not alive and wrote their last record longer ago than memberExpiry. */
export function expiredMembers(o: Pick<Observation, "node" | "now" | "settings">, c: ClusterState): string[] {
  const out: string[] = [];
  for (const m of c.members) {
    if (m.node === o.node || m.alive) continue;
    const at = Date.parse(m.record.at);
    if (Number.isFinite(at) && o.now - at > o.settings.memberExpiry) out.push(m.node);
  }
  return out;
}

/** The record this node publishes, from what the loop observed. */
export function memberRecordFor(o: Pick<Observation, "node" | "serverId" | "role" | "local" | "settings" | "blocked" | "maintenance" | "now">, advertise: { host: string; port: number } = { host: "", port: 0 }, lagSeconds: number | null = null): MemberRecord {
  const rep = o.local?.replication;
  return {
    node: o.node,
    serverId: o.serverId,
    host: advertise.host,
    port: advertise.port,
    role: o.role,
    up: o.local !== undefined,
    executed: o.local?.executed ?? "",
    received: rep?.received ?? "",
    lagSeconds: o.local ? (o.role === "primary" ? 0 : lagSeconds ?? rep?.lagSeconds ?? null) : null,
    sqlError: rep && !rep.sqlRunning && rep.sqlErrno ? rep.sqlError : "",
    nofailover: o.settings.nofailover,
    blocked: o.blocked,
    maintenance: o.maintenance,
    source: "",
    at: Number.isNaN(o.now) ? "" : new Date(o.now).toISOString(),
  };
}

/** What a node asked to rebuild itself sees when it decides whether to. */
export interface RebuildObservation {
  now: number;
  node: string;
  role: Role;
  cluster: ClusterState | undefined;
  storeError: string;
  /** When the operator's client stops waiting (ms since the epoch; NaN: no expiry). */
  expiresAt: number;
}

/**
 * Whether this node carries out an operator's rebuild request (its datadir is thrown away and
 * seeded afresh). Refused on the primary (its data is the cluster's; switch over first), while
 * there is no primary to catch up from, on the target of a switchover under way, when the store
 * cannot be read, and once the client stopped waiting.
 */
export function decideRebuild(o: RebuildObservation): { accept: boolean; reason: string } {
  const refuse = (why: string) => ({ accept: false, reason: `rebuild of ${o.node} refused: ${why}` });
  if (Number.isFinite(o.expiresAt) && o.now >= o.expiresAt) return refuse("the request expired (its client stopped waiting)");
  const c = o.cluster;
  if (!c) return refuse(`the cluster store cannot be read (${o.storeError})`);
  if (c.leader?.node === o.node || o.role === "primary") return refuse(`${o.node} is the primary; switch over first (statepilot mysql switchover), then rebuild it`);
  if (!c.leader) return refuse("the cluster has no primary right now: a rebuilt node would have nothing to catch up from");
  const sw = c.switchover?.record;
  if (sw?.to === o.node && (sw.state === "requested" || sw.state === "handover" || sw.state === "released")) return refuse(`${o.node} is the target of a switchover under way (${sw.id})`);
  return { accept: true, reason: `rebuilding ${o.node}: fenced out, its datadir replaced, then a replica of ${c.leader.node}` };
}

/** What a node being rebuilt sees before it throws its data away (its receiver already stopped). */
export interface WipeObservation {
  node: string;
  flavor: Flavor;
  cluster: ClusterState | undefined;
  storeError: string;
  /** The store's version when this node's receiver had stopped: records written later are fresh. */
  stoppedAtVersion: number;
  /** The primary's executed GTIDs in its first record written after that (once known). */
  need: string | undefined;
  /** What this node's receiver had received when it stopped (its own look; "" when unknown). */
  ownReceived: string;
}

/**
 * Whether a node being rebuilt may throw its data away now. In lossless mode a commit is
 * acknowledged once one replica has it: this node may hold the only copy of some acknowledged
 * writes besides the primary. Its receiver stopped (the rebuilding rule), so what it received is
 * at most what the primary had executed then: the data goes only once another live replica has
 * received that much (`need`, taken from the primary's first record written after the stop).
 */
export function decideWipe(o: WipeObservation): { wipe: boolean; reason: string; need: string | undefined } {
  const wait = (why: string, need = o.need) => ({ wipe: false, reason: `before wiping ${o.node}: ${why}`, need });
  const c = o.cluster;
  if (!c) return wait(`the cluster store cannot be read (${o.storeError})`);
  const leader = c.leader?.node;
  if (!leader) return wait("no primary: waiting for one");
  let need = o.need;
  if (need === undefined) {
    const lead = c.members.find((m) => m.node === leader);
    if (!lead || lead.version <= o.stoppedAtVersion) return wait(`waiting for ${leader}'s position as of this node's stop`);
    need = lead.record.executed;
  }
  const holder = c.members.find(
    (m) =>
      m.node !== o.node &&
      m.node !== leader &&
      m.alive &&
      m.record.role === "replica" &&
      (gtidSubset(o.flavor, need, m.record.received) || gtidSubset(o.flavor, need, m.record.executed)) &&
      // A record is built from a look taken before it is written: this node's own look counts too.
      (o.ownReceived === "" || gtidSubset(o.flavor, o.ownReceived, m.record.received) || gtidSubset(o.flavor, o.ownReceived, m.record.executed)),
  );
  if (!holder) return wait(`no other live replica has received ${need || "(empty)"} yet: this node may hold the only copy of acknowledged writes`, need);
  return { wipe: true, reason: `${holder.node} has received everything ${o.node} could have (${need || "(empty)"})`, need };
}
