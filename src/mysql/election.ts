import { gtidBehind, gtidSubset, gtidUnion, type Flavor } from "./gtid.js";
import type { Role } from "./metrics.js";

/** What every node publishes each loop under statepilot/<cluster>/members/<node>. */
export interface MemberRecord {
  node: string;
  serverId: number;
  host: string;
  port: number;
  role: Role;
  /** mysqld answers. */
  up: boolean;
  /** Applied (MariaDB gtid_binlog_pos / MySQL gtid_executed). */
  executed: string;
  /** Applied plus what sits in the relay log: what the node could serve once it has drained it. */
  received: string;
  lagSeconds: number | null;
  /** The SQL thread stopped on an error: this node cannot apply what it received. */
  sqlError: string;
  nofailover: boolean;
  /** Why the node must not be promoted (diverged or errant GTIDs), empty when it may. */
  blocked: string;
  /**
   * Grows with every publication. Consul does not bump a key's ModifyIndex when the same value is
   * written again, and freshness is judged by that index: without this, an unchanged record would
   * look stale forever.
   */
  seq?: number;
}

/** The value of the lock key: who is primary, where, and from which position it started. */
export interface PrimaryRecord {
  node: string;
  serverId: number;
  host: string;
  port: number;
  flavor: Flavor;
  version: string;
  /** Executed GTIDs when the node was promoted; every later candidate must have them. */
  gtid: string;
  /** Consul's LockIndex when acquired: grows with every new holder. */
  term: number;
  promotedAt: string;
}

export interface Peer {
  record: MemberRecord;
  /** Consul ModifyIndex of the record: newer than the moment the lock was seen free = fresh. */
  modifyIndex: number;
  /** The peer's Consul check is not critical. */
  alive: boolean;
}

export interface RaceInput {
  flavor: Flavor;
  self: MemberRecord;
  peers: Peer[];
  /** Consul index at which this node first saw the lock free. */
  freeIndex: number;
  /** How long this node has seen the lock free. */
  freeForMs: number;
  /** Give up waiting for a silent peer after this long (its check will be critical by then). */
  peerWaitMs: number;
  maximumLagSeconds: number;
  /** The last primary's record, if any: a candidate must hold what it had when promoted. */
  lastPrimary: PrimaryRecord | undefined;
  /** The cluster has been bootstrapped (so an empty node must never win). */
  clusterInitialized: boolean;
  /** A switchover hands the lock to this node only (undefined: none in progress). */
  switchoverTarget: string | undefined;
}

export type RaceDecision = { race: true; reason: string } | { race: false; reason: string; wait: boolean };

export function received(flavor: Flavor, r: Pick<MemberRecord, "executed" | "received">): string {
  return gtidUnion(flavor, r.executed, r.received);
}

/**
 * Whether this node should try to take a free lock. Safety first: an unhealthy, blocked or lagging
 * node stays out, and so does one whose received GTIDs are behind any live candidate that has
 * published since the lock was freed. Ties race; Consul's acquire picks one.
 */
export function decideRace(input: RaceInput): RaceDecision {
  const { self, flavor } = input;
  if (input.switchoverTarget !== undefined) {
    return input.switchoverTarget === self.node ? { race: true, reason: "switchover target" } : { race: false, reason: `switchover to ${input.switchoverTarget} in progress`, wait: true };
  }
  if (!self.up) return { race: false, reason: "mysqld is down", wait: false };
  if (self.nofailover) return { race: false, reason: "nofailover is set", wait: false };
  if (self.blocked) return { race: false, reason: self.blocked, wait: false };
  if (self.sqlError) return { race: false, reason: `SQL thread error: ${self.sqlError}`, wait: false };
  if (self.lagSeconds !== null && self.lagSeconds > input.maximumLagSeconds) {
    return { race: false, reason: `lag ${self.lagSeconds}s exceeds maximumLagOnFailover ${input.maximumLagSeconds}s`, wait: false };
  }
  const mine = received(flavor, self);
  if (input.clusterInitialized && mine === "") return { race: false, reason: "empty server in an initialised cluster", wait: false };
  if (input.lastPrimary?.gtid && !gtidSubset(flavor, input.lastPrimary.gtid, mine)) {
    return { race: false, reason: `missing GTIDs the last primary had at promotion (${input.lastPrimary.gtid})`, wait: false };
  }
  for (const p of input.peers) {
    const r = p.record;
    if (r.node === self.node || !p.alive || !r.up) continue;
    const candidate = !r.nofailover && !r.blocked && !r.sqlError;
    if (!candidate) continue;
    if (p.modifyIndex <= input.freeIndex && input.freeForMs < input.peerWaitMs) {
      return { race: false, reason: `waiting for ${r.node} to publish its position`, wait: true };
    }
    if (gtidBehind(flavor, mine, received(flavor, r))) return { race: false, reason: `${r.node} has received more (${received(flavor, r)} vs ${mine})`, wait: false };
  }
  return { race: true, reason: "healthy and most advanced" };
}
