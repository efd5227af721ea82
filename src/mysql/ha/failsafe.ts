import type { ClusterState } from "../../cluster/store.js";
import type { MemberRecord, Role } from "../../cluster/records.js";
import type { HaSettings } from "./settings.js";

/**
 * Failsafe mode (opt-in, after Patroni's `failsafe_mode`): a primary that cannot reach the cluster
 * store keeps writing only while every member it knew alive answers it directly that it sees no
 * other primary and accepts this one. The rules are pure; the loop asks, the members answer.
 *
 * Why it is safe. A member that accepts at time `a` (its clock) promises two things until
 * `a + takeover`: it does not run for primary, and it accepts no other leader. The primary counts
 * the answers as a confirmation made when it sent the requests (before `a`), valid for
 * `fenceAfter` (< takeover, with room for ±5 % clock drift), exactly as a store renewal. So while
 * the primary may write, every member it relies on is bound not to take over; one member that
 * does not answer, refuses, or sees another leader is enough for the primary to fence at
 * `fenceAfter` as it does without failsafe. A member that starts to run for primary first refuses
 * every later request of the term it replaces, atomically with its decision.
 *
 * A member the primary did not know (it joined the store while the primary could not see it) was
 * never asked, so it is bound by nothing: while the last primary's published list names others,
 * it does not run for primary (`failsafeHoldsElection`), for up to `memberExpiry`.
 */

export interface FailsafeRequest {
  cluster: string;
  /** The primary asking. */
  leader: string;
  /** Its leadership's term (the store's, as last seen). */
  term: number;
}

export interface FailsafeAnswer {
  accept: boolean;
  /** Why not, or what was promised: shown in the primary's log and /status. */
  reason: string;
}

/** How a primary reaches the other members without the store (production: their HTTP port, with the cluster secret). */
export interface FailsafePeers {
  ask(to: MemberRecord, request: FailsafeRequest, timeoutMs: number): Promise<FailsafeAnswer>;
}

/** What a member promised when it accepted a primary: no election, no other leader, until `until` (its clock). */
export interface FailsafePromise {
  leader: string;
  term: number;
  until: number;
}

/** The members a primary must hear from: those alive in its last view of the store, itself excepted. */
export function failsafeMembers(view: ClusterState | undefined, node: string): MemberRecord[] {
  return (view?.members ?? []).filter((m) => m.node !== node && m.alive).map((m) => m.record);
}

/**
 * The list a primary publishes in its record: the members it would ask. While its writes rest on
 * a failsafe confirmation (not on the store's lease), it may not name a member that has not
 * promised it anything: a member newly named is no longer held back by the list, and unbound by
 * a promise it could run while this primary still writes (sim seed 84907: a member whose server
 * had restarted was named on the take-back and won the election). It names then only those
 * already named and those that accepted its last request; the rest join once the store confirms it.
 */
export function failsafeList(view: ClusterState | undefined, node: string, viaFailsafe: { published: readonly string[]; accepted: readonly string[] } | undefined): string[] {
  const all = failsafeMembers(view, node).map((m) => m.node);
  if (!viaFailsafe) return all;
  const bound = new Set([...viaFailsafe.published, ...viaFailsafe.accepted]);
  return [...new Set([...viaFailsafe.published, ...all.filter((n) => bound.has(n))])].sort();
}

/** How long a primary waits for the answers: they are worth nothing once its confirmation would have lapsed. */
export function failsafeAskTimeout(s: HaSettings): number {
  return Math.max(100, Math.floor(s.fenceAfter / 2));
}

export interface FailsafeAnswerInput {
  now: number;
  node: string;
  settings: HaSettings;
  role: Role;
  /** The local server is writable. */
  writable: boolean;
  /** This member's latest view of the store (the last one it could read). */
  view: ClusterState | undefined;
  /** The member refuses every request of a term below this (it ran for primary after that term). */
  minTerm: number;
  /** Its current promise, if any. */
  promise: FailsafePromise | undefined;
  request: FailsafeRequest;
}

/** A member's answer to a primary's failsafe request, and the promise it makes by accepting. */
export function answerFailsafe(i: FailsafeAnswerInput): { answer: FailsafeAnswer; promise?: FailsafePromise } {
  const refuse = (reason: string) => ({ answer: { accept: false, reason: `${i.node} refuses: ${reason}` } });
  const r = i.request;
  if (!i.settings.failsafe) return refuse("failsafe mode is off on this node");
  if (r.cluster !== i.settings.cluster) return refuse(`cluster "${r.cluster}" is not this node's cluster "${i.settings.cluster}"`);
  if (r.leader === i.node) return refuse("a node does not confirm itself");
  if (i.role === "primary" || i.writable) return refuse("this node is primary or writable");
  if (r.term < i.minTerm) return refuse(`this node ran for primary after term ${r.term}`);
  const seen = i.view?.leader;
  if (seen && (seen.node !== r.leader || seen.term !== r.term)) return refuse(`the store names ${seen.node} (term ${seen.term}) as leader`);
  const p = i.promise;
  if (p && p.until > i.now && (p.leader !== r.leader || p.term !== r.term)) return refuse(`it accepted ${p.leader} (term ${p.term}) until ${Math.round(p.until - i.now)} ms from now`);
  const until = i.now + i.settings.takeover;
  return { answer: { accept: true, reason: `${i.node} accepts ${r.leader} (term ${r.term}) and will not run for primary for ${i.settings.takeover} ms` }, promise: { leader: r.leader, term: r.term, until } };
}

/**
 * Why this node may not run for primary now because of failsafe mode (undefined: it may): it
 * promised the last primary to wait, or the last primary relied on a list of members that does
 * not include it (it was never asked, so nothing binds the others to tell it the truth).
 */
/** What a node remembers of its cluster, as the failsafe rules read it. */
export type RememberedCluster = { lastLeader?: { node: string } | undefined; members: readonly MemberRecord[] };

export function failsafeHoldsElection(i: {
  now: number;
  node: string;
  settings: HaSettings;
  promise: FailsafePromise | undefined;
  view: ClusterState;
  freeForMs: number;
  /** How long this node's statepilot has been running (a restart forgets the promises it made). */
  runningMs: number;
  /** What this node remembers of the cluster (its last leader and members), if anything. */
  memory?: RememberedCluster | undefined;
}): string | undefined {
  const p = i.promise;
  if (p && p.until > i.now) return `failsafe: promised ${p.leader} (term ${p.term}) not to run for primary for ${Math.round(p.until - i.now)} ms more`;
  if (!i.settings.failsafe) return undefined;
  // A promise lives in the process that made it: one started less than the longest promise ago
  // may have made one before it restarted.
  if (i.runningMs < i.settings.takeover) return `failsafe: statepilot started ${Math.round(i.runningMs)} ms ago and may have promised a primary before: not running for primary for ${Math.round(i.settings.takeover - i.runningMs)} ms more`;
  // A member bound by a promise to another node: that primary may still be writing on its word.
  const bound = i.view.members.find((m) => m.node !== i.node && m.alive && m.record.promised !== undefined && m.record.promised !== i.node);
  if (bound) return `failsafe: ${bound.node} promised ${bound.record.promised} not to elect another primary (${bound.record.promised} may still be writing on its members' word)`;
  // A store that came back without its data forgot the last primary's list: this node's memory
  // of the cluster stands in for it. But the list may have changed since this node last saw it
  // (sim seed 95113: a node whose loop stalled on a frozen server remembered a list naming it),
  // so every member it remembers (the last primary aside, which cannot take the leadership back
  // in an empty store) must have published since, and none of them be bound (above).
  const forgotten = !i.view.initialized && i.memory !== undefined;
  if (forgotten) {
    const lastNode = i.memory?.lastLeader?.node;
    // Any record in the empty store was published since it lost its data (alive or not: a member
    // critical for an SQL error still tells whether it is bound).
    const silent = (i.memory?.members ?? []).find((r) => r.node !== i.node && r.node !== lastNode && !i.view.members.some((m) => m.node === r.node));
    if (silent) return `failsafe: the cluster store lost its data; waiting for ${silent.node}, a member this node remembers, to publish (it may have promised a failsafe primary not to elect); bring it back`;
  }
  const last = forgotten ? i.memory?.lastLeader?.node : i.view.lastLeader?.node;
  const records = forgotten ? (i.memory?.members ?? []) : i.view.members.map((m) => m.record);
  const list = last ? records.find((r) => r.node === last)?.failsafe : undefined;
  if (last && last !== i.node && list && list.length > 0 && !list.includes(i.node) && i.freeForMs < i.settings.memberExpiry) {
    return `failsafe: ${last}, the last primary, relied on ${list.join(", ")} and not on this node; one of them runs for primary (this node waits ${Math.round(i.settings.memberExpiry - i.freeForMs)} ms more at most)`;
  }
  return undefined;
}
