import type { Member } from "../cluster/store.js";
import type { LeaderRecord, MemberRecord } from "../cluster/records.js";
import { gtidBehind, gtidSubset, gtidUnion, gtidUnionForCompare, ownTailBeyond, withoutOwnWrites, type Flavor } from "./gtid.js";

export type { LeaderRecord, MemberRecord } from "../cluster/records.js";

export interface RaceInput {
  flavor: Flavor;
  self: MemberRecord;
  members: readonly Member[];
  /** Store version at which this node first saw the leadership free. */
  freeVersion: number;
  /** How long this node has seen the leadership free. */
  freeForMs: number;
  /** Give up waiting for a silent peer after this long (its liveness has ended by then). */
  peerWaitMs: number;
  maximumLagSeconds: number;
  /** The last leader's record, if any: a candidate must hold what it had when promoted. */
  lastLeader: LeaderRecord | undefined;
  /** The cluster has been bootstrapped (so an empty node must never win). */
  clusterInitialized: boolean;
  /** A switchover hands the leadership to this node only (undefined: none in progress). */
  switchoverTarget: string | undefined;
  /**
   * Lossless (semi-synchronous) mode: any replica of the last primary may hold the only copy of an
   * acknowledged write, so a candidate hears from every one of them first, reachable or not.
   */
  lossless: boolean;
}

export type RaceDecision = { race: true; reason: string } | { race: false; reason: string; wait: boolean };

export function received(flavor: Flavor, r: Pick<MemberRecord, "executed" | "received">): string {
  return gtidUnion(flavor, r.executed, r.received);
}

/** What a member holds, for comparing candidates: conflicting MariaDB tails both kept (see gtidUnionForCompare). */
export function holds(flavor: Flavor, r: Pick<MemberRecord, "executed" | "received">): string {
  return gtidUnionForCompare(flavor, r.executed, r.received);
}

/**
 * What a peer holds that a candidate must have too. A MariaDB replica's own-server transactions are
 * errant local writes (they never block an election: the divergence check deals with them); the
 * last primary's are its writes.
 */
function peerHolds(flavor: Flavor, r: MemberRecord, lastNode: string | undefined): string {
  if (flavor === "mysql" || r.node === lastNode) return holds(flavor, r);
  return gtidUnionForCompare(flavor, withoutOwnWrites(r.executed, r.serverId), withoutOwnWrites(r.received, r.serverId));
}

/** A member that may be promoted at all (before comparing positions). */
export function promotable(m: MemberRecord): boolean {
  return m.up && !m.nofailover && !m.blocked && !m.sqlError && !m.maintenance;
}

/**
 * Whether this node should try to take a free leadership. Safety first: an unhealthy, blocked or
 * lagging node stays out, and so does one whose received GTIDs are behind any live candidate that
 * has published since the leadership was freed. Ties race; the store's acquire picks one.
 */
export function decideRace(input: RaceInput): RaceDecision {
  const { self, flavor } = input;
  if (input.switchoverTarget !== undefined) {
    return input.switchoverTarget === self.node ? { race: true, reason: "switchover target" } : { race: false, reason: `switchover to ${input.switchoverTarget} in progress`, wait: true };
  }
  if (!self.up) return { race: false, reason: "mysqld is down", wait: false };
  if (self.maintenance) return { race: false, reason: "in maintenance", wait: false };
  if (self.nofailover) return { race: false, reason: "nofailover is set", wait: false };
  if (self.blocked) return { race: false, reason: self.blocked, wait: false };
  if (self.sqlError) return { race: false, reason: `SQL thread error: ${self.sqlError}`, wait: false };
  if (self.lagSeconds !== null && self.lagSeconds > input.maximumLagSeconds) {
    return { race: false, reason: `lag ${self.lagSeconds}s exceeds maximumLagOnFailover ${input.maximumLagSeconds}s`, wait: false };
  }
  const mine = holds(flavor, self);
  if (input.clusterInitialized && mine === "") return { race: false, reason: "empty server in an initialised cluster", wait: false };
  if (input.lastLeader?.gtid && !gtidSubset(flavor, input.lastLeader.gtid, mine)) {
    return { race: false, reason: `missing GTIDs the last primary had at promotion (${input.lastLeader.gtid})`, wait: false };
  }
  // Any member, live or not, blocked or not, that holds this node's own transactions beyond its
  // binlog: this node lost them in crash recovery, and writing again would give other transactions
  // the same GTIDs. It may lead only once it has received them back (from the node that leads).
  for (const m of input.members) {
    if (m.record.node === self.node) continue;
    const lost = ownTailBeyond(flavor, holds(flavor, m.record), mine, self.serverId);
    if (lost.length > 0) {
      return { race: false, reason: `waiting for ${m.record.node} to lead: it holds this node's own transactions beyond this node's binlog (${lost.join(", ")}), lost here in crash recovery`, wait: true };
    }
  }
  const lastNode = input.lastLeader?.node;
  // The last primary itself, heard from since the leadership was freed with its server up: it holds
  // every write it acknowledged, so comparing with it covers its replicas whose servers are down.
  // News from after the leadership was freed: written after it, and decided on a view that showed
  // no leader (a peer whose loop stalled may write late what it decided while the old primary led,
  // still receiving from it).
  const isFresh = (m: Member) => m.version > input.freeVersion && (m.record.viewLeader === undefined || m.record.viewLeader === "");
  const lastHeard = input.members.some((m) => m.record.node === lastNode && isFresh(m) && m.record.up && m.alive);
  for (const m of input.members) {
    const r = m.record;
    if (r.node === self.node) continue;
    const fresh = isFresh(m);
    // A replica of the last primary may have acknowledged a write nobody else received: in lossless
    // mode its position must be known, however long that takes (no timeout: safety first).
    const mayHoldAcked = input.lossless && r.node !== lastNode && lastNode !== undefined && r.source === lastNode;
    if (mayHoldAcked && r.up && !fresh) {
      return { race: false, reason: `waiting for ${r.node}${m.alive ? "" : " (not reachable)"}: it replicated from ${lastNode} and may hold acknowledged writes; bring it back or remove it from the cluster`, wait: true };
    }
    // Its server is down: what it acknowledged is on its disk (or, applied or not, on the last
    // primary), not in any record; wait for it or for the last primary.
    if (mayHoldAcked && !r.up && !lastHeard) {
      return { race: false, reason: `waiting for ${r.node} (its server is down) or for ${lastNode}: ${r.node} replicated from ${lastNode} and may hold acknowledged writes; bring one of them back or remove ${r.node} from the cluster`, wait: true };
    }
    // Lossless: a record published since the leadership was freed by a node that cannot serve
    // (critical: an SQL thread error, say) still tells what it received; if that is more, or
    // another tail, an acknowledged write may sit only there, so this node must not take over.
    if (input.lossless && fresh && r.up && !m.alive && gtidBehind(flavor, mine, peerHolds(flavor, r, lastNode))) {
      return { race: false, reason: `waiting for ${r.node} (not reachable or unhealthy): it received more or other transactions (${peerHolds(flavor, r, lastNode)} vs ${mine}); bring it back or remove it from the cluster`, wait: true };
    }
    if (!m.alive || !r.up) continue;
    if (!fresh && promotable(r) && input.freeForMs < input.peerWaitMs) {
      return { race: false, reason: `waiting for ${r.node} to publish its position`, wait: true };
    }
    if (!fresh) continue;
    // In lossless mode a node that cannot be promoted but received more still blocks: taking over
    // without its transactions could lose an acknowledged write. A diverged node too: its own
    // errant writes do not count (peerHolds), but its receiver kept acknowledging the primary's.
    if (input.lossless && r.blocked && gtidBehind(flavor, mine, peerHolds(flavor, r, lastNode))) {
      return { race: false, reason: `waiting for a node that holds what ${r.node} received: ${r.node} is diverged (${r.blocked}), yet it received more or other transactions (${peerHolds(flavor, r, lastNode)} vs ${mine}) that may include acknowledged writes`, wait: true };
    }
    if ((promotable(r) || input.lossless) && gtidBehind(flavor, mine, peerHolds(flavor, r, lastNode))) {
      return { race: false, reason: `${r.node} has received more or other transactions (${peerHolds(flavor, r, lastNode)} vs ${mine})`, wait: false };
    }
  }
  return { race: true, reason: "healthy and most advanced" };
}
