import type { ClusterState } from "../../cluster/store.js";
import type { MemberRecord, Role } from "../../cluster/records.js";
import type { Clock } from "../../cluster/clock.js";
import type { Logger } from "../../log.js";
import { answerFailsafe, failsafeAskTimeout, failsafeHoldsElection, failsafeList, failsafeMembers, type FailsafeAnswer, type FailsafePeers, type FailsafePromise, type FailsafeRequest, type RememberedCluster } from "./failsafe.js";
import type { HaSettings } from "./settings.js";

const errText = (err: unknown): string => (err instanceof Error ? err.message : String(err));

/**
 * One node's failsafe bookkeeping (rules in failsafe.ts): as a primary, the list it published and
 * the asking; as a member, the promise it made and the terms it no longer confirms.
 */
export class FailsafeKeeper {
  /** The promise this node made to a primary, if any. */
  promise: FailsafePromise | undefined;
  /** Highest leadership term seen in the store. */
  private maxTermSeen = 0;
  /** The term of the last leadership the store showed this node holding. */
  private ownTerm: number | undefined;
  /** Requests of a term below this are refused: this node ran for primary after it. */
  private minTerm = 0;
  /** The failsafe list the store last accepted in this node's record (candidates read that one). */
  private published: string[] = [];
  /** The members that accepted this primary's last request (each bound by its promise). */
  private accepted: string[] = [];
  /** When this keeper (this statepilot process) started: promises made before it are forgotten. */
  private readonly startedAt: number;
  /** What the last asking found: shown in /status and logged when it changes. */
  lastOutcome = "";

  constructor(
    private readonly o: { node: string; cluster: string; settings: HaSettings; clock: Clock; log: Logger; peers: FailsafePeers | undefined },
  ) {
    this.startedAt = o.clock.now();
  }

  /** The primary this node's running promise binds it to, for its member record (undefined: none). */
  promisedTo(): string | undefined {
    return this.promise && this.promise.until > this.o.clock.now() ? this.promise.leader : undefined;
  }

  get enabled(): boolean {
    return this.o.settings.failsafe && this.o.peers !== undefined;
  }

  /** Every view read from the store: the terms seen. */
  noteView(view: ClusterState): void {
    if (view.leader && view.leader.term > this.maxTermSeen) this.maxTermSeen = view.leader.term;
    if (view.leader) this.ownTerm = view.leader.node === this.o.node ? view.leader.term : undefined;
  }

  /**
   * The term a request asks the members to accept: this node's, while the store names it, or
   * while the store is back from an outage with nobody leading and this node its last leader
   * (its lease ended there, e.g. etcd's on the first touch after the outage): until it takes the
   * leadership back (lock-delay and a new lease), it rests on the members' promises as it did
   * while the store was away, rather than fence at fenceAfter with every member bound not to run.
   */
  private requestTerm(view: ClusterState): number | undefined {
    if (view.leader) return view.leader.node === this.o.node ? view.leader.term : undefined;
    return view.lastLeader?.node === this.o.node ? this.ownTerm : undefined;
  }

  /** The list a primary's member record carries (undefined: failsafe off); `viaFailsafe`: its writes rest on the members' confirmation now. */
  listFor(view: ClusterState | undefined, viaFailsafe: boolean): string[] | undefined {
    if (!this.enabled) return undefined;
    return failsafeList(view, this.o.node, viaFailsafe ? { published: this.published, accepted: this.accepted } : undefined);
  }

  /** The store accepted this node's record carrying `list`. */
  publishedList(list: string[] | undefined): void {
    this.published = list ?? [];
  }

  /**
   * A primary that cannot read the store asks every member it knew alive, and every member its
   * published list names; all must accept. True: the leadership counts as confirmed when the
   * requests were sent.
   */
  async confirm(view: ClusterState | undefined): Promise<boolean> {
    const peers = this.o.peers;
    const term = view ? this.requestTerm(view) : undefined;
    if (!peers || !view || term === undefined) return false;
    const known = new Map<string, MemberRecord>(failsafeMembers(view, this.o.node).map((r) => [r.node, r]));
    for (const name of this.published) {
      if (known.has(name)) continue;
      const rec = view.members.find((m) => m.node === name)?.record;
      if (!rec) return this.outcome(false, `failsafe: ${name}, in the published list, has no record to reach it by`);
      known.set(name, rec);
    }
    if (known.size === 0) return this.outcome(false, "failsafe: no other member to confirm this primary");
    const request: FailsafeRequest = { cluster: this.o.settings.cluster, leader: this.o.node, term };
    const timeoutMs = failsafeAskTimeout(this.o.settings);
    const answers = await Promise.all(
      [...known.values()].map((rec) => peers.ask(rec, request, timeoutMs).catch((err: unknown): FailsafeAnswer => ({ accept: false, reason: `${rec.node} did not answer: ${errText(err)}` }))),
    );
    const refused = answers.filter((a) => !a.accept);
    if (refused.length > 0) return this.outcome(false, `failsafe: not confirmed: ${refused.map((a) => a.reason).join("; ")}`);
    this.accepted = [...known.keys()];
    return this.outcome(true, `failsafe: ${[...known.keys()].join(", ")} accept this primary`);
  }

  private outcome(ok: boolean, text: string): boolean {
    if (text !== this.lastOutcome) (ok ? this.o.log.info.bind(this.o.log) : this.o.log.warn.bind(this.o.log))(text);
    this.lastOutcome = text;
    return ok;
  }

  /** A primary's request reaches this node. */
  answer(request: FailsafeRequest, me: { role: Role; writable: boolean; view: ClusterState | undefined }): FailsafeAnswer {
    const now = this.o.clock.now();
    const minTerm = Math.max(this.minTerm, this.maxTermSeen);
    const r = answerFailsafe({ now, node: this.o.node, settings: this.o.settings, role: me.role, writable: me.writable, view: me.view, minTerm, promise: this.promise, request });
    if (r.promise) this.promise = r.promise;
    return r.answer;
  }

  /** Why this node may not run for primary (undefined: it may). */
  holdsElection(view: ClusterState, freeForMs: number, memory?: RememberedCluster): string | undefined {
    const now = this.o.clock.now();
    return failsafeHoldsElection({ now, node: this.o.node, settings: this.o.settings, promise: this.promise, view, freeForMs, runningMs: now - this.startedAt, memory });
  }

  /**
   * Called synchronously just before this node asks the store for the leadership: false if a
   * promise made since the decision forbids it; otherwise from now on it confirms no primary of a
   * term it may replace.
   */
  mayRun(): boolean {
    if (this.promise && this.promise.until > this.o.clock.now()) return false;
    this.minTerm = Math.max(this.minTerm, this.maxTermSeen + 1);
    return true;
  }
}
