import type { Observation } from "./decide.js";

/**
 * What must hold on this node after every loop, checked in the product (not only in tests). A
 * violation is logged at error level, counted, and repaired by the decision of the same loop
 * (fencing first): `decide` never leaves one of these standing.
 */
export type Invariant = "writable_without_lease" | "writable_without_semisync" | "replicates_from_non_leader";

export interface Violation {
  invariant: Invariant;
  detail: string;
}

export function checkInvariants(o: Observation, leaseConfirmedAt: number | undefined): Violation[] {
  const out: Violation[] = [];
  const local = o.local;
  if (!local) return out;
  const leader = o.cluster?.leader;
  const writable = !local.readOnly;
  if (writable) {
    const age = leaseConfirmedAt === undefined ? Infinity : o.now - leaseConfirmedAt;
    // In failsafe mode, with the store unreachable, every member's acceptance is the confirmation.
    const leads = leader?.node === o.node || (o.cluster === undefined && o.failsafe !== undefined);
    if (!leads || age >= o.settings.fenceAfter) {
      out.push({ invariant: "writable_without_lease", detail: `read_only is off but ${leader?.node === o.node ? `the lease was last confirmed ${Math.round(age)} ms ago` : leader ? `${leader.node} leads` : "nobody leads"}` });
    }
    if (o.settings.lossless && !local.semiSyncPrimary) out.push({ invariant: "writable_without_semisync", detail: "read_only is off in lossless mode with semi-sync off" });
  }
  const rep = local.replication;
  // Receiving is what counts (a receiver acknowledges what it gets, in semi-sync): an applier still
  // working through a relay log received from the old primary, with its receiver stopped, is how
  // every failover looks for a moment, not a violation.
  if (leader && leader.node !== o.node && rep.configured && rep.ioRunning !== "No") {
    if (rep.sourceHost !== leader.record.host || rep.sourcePort !== leader.record.port) {
      out.push({ invariant: "replicates_from_non_leader", detail: `replicating from ${rep.sourceHost}:${rep.sourcePort} while ${leader.node} (${leader.record.host}:${leader.record.port}) leads` });
    }
  }
  return out;
}
