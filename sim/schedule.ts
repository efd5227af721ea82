import { seededRandom } from "../src/lab/random.js";

/**
 * A schedule: the faults one simulated run injects, all drawn from one seed, so a failing seed
 * prints the same schedule and replays the same run.
 */

export type Fault =
  | { kind: "crash-mysqld"; node: number }
  | { kind: "crash-node"; node: number; downMs: number }
  | { kind: "pause"; node: number; what: "statepilot" | "mysqld" | "both"; forMs: number; thawMysqldFirst: boolean }
  | { kind: "store-partition"; node: number; forMs: number }
  /** `wipe`: the store comes back empty (a Consul dev agent restarted, a store rebuilt from nothing). */
  | { kind: "store-outage"; forMs: number; wipe?: boolean }
  | { kind: "store-latency"; ms: number; forMs: number }
  | { kind: "peer-partition"; a: number; b: number; forMs: number }
  | { kind: "slow-disk"; node: number; applyMs: number; forMs: number }
  | { kind: "switchover"; to: number | undefined; count: number }
  | { kind: "errant-write"; node: number }
  /** A new node restored from a snapshot of a replica joins; optionally a switchover to it later. */
  | { kind: "add-restored"; switchoverAfterMs: number | undefined }
  /** The operator pauses automatic failover for the whole cluster, then resumes it. */
  | { kind: "cluster-pause"; forMs: number }
  /** The operator rebuilds a node (`mysql rebuild`): refused on the primary; a replica is wiped and catches up. */
  | { kind: "rebuild"; node: number };

/** `node: -1` means "whoever is primary when the fault fires". */
export interface ScheduledFault {
  at: number;
  fault: Fault;
}

export interface Schedule {
  seed: number;
  nodes: number;
  lossless: boolean;
  /** How a primary that lost its lease fences itself (lossless clusters may choose either). */
  fenceBy: "kill" | "read-only";
  /** Virtual ms of faults and workload; then a quiet period to converge. */
  durationMs: number;
  quietMs: number;
  faults: ScheduledFault[];
  /**
   * Each node's clock rate against real time (index 0 is n1; a node added later takes the next):
   * 0.95..1.05, so timers and durations on a node run up to 5 % fast or slow, statepilot and its
   * mysqld alike (one host, one clock). The store keeps real time.
   */
  clockRates: number[];
  /** Failsafe mode on every node (a primary that cannot reach the store asks the members directly). */
  failsafe: boolean;
}

/** Clock rates drawn from their own stream, so a seed keeps the faults it had before rates existed. */
export function drawClockRates(seed: number, count: number, maxDrift = 0.05): number[] {
  const rnd = seededRandom((seed * 7_919 + 104_729) >>> 0);
  return Array.from({ length: count }, () => Math.round((1 - maxDrift + rnd() * 2 * maxDrift) * 10_000) / 10_000);
}

export function makeSchedule(seed: number, opts: { lossless?: boolean } = {}): Schedule {
  const rnd = seededRandom(seed);
  const int = (lo: number, hi: number) => lo + Math.floor(rnd() * (hi - lo + 1));
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
  const nodes = 3;
  const lossless = opts.lossless ?? rnd() < 0.75;
  const node = () => (rnd() < 0.5 ? -1 : int(1, nodes));
  const faults: ScheduledFault[] = [];
  const count = int(1, 4);
  let at = int(3_000, 6_000);
  for (let i = 0; i < count; i++) {
    const kinds = ["crash-mysqld", "crash-node", "pause", "store-partition", "store-outage", "store-latency", "peer-partition", "slow-disk", "switchover", "errant-write", "add-restored", "cluster-pause", "rebuild"] as const;
    const kind = pick(kinds);
    let f: Fault;
    switch (kind) {
      case "crash-mysqld":
        f = { kind, node: node() };
        break;
      case "crash-node":
        f = { kind, node: node(), downMs: int(500, 15_000) };
        break;
      case "pause": {
        // A supervisor paused alone while its mysqld runs on is fenced by the server's own switch
        // (and, lossless, by semi-sync); a node paused whole may wake with mysqld first.
        const what = pick(["statepilot", "mysqld", "both"] as const);
        const forMs = pick([int(100, 900), int(1_000, 4_000), int(4_000, 15_000)]);
        // Async runs draw no extra number, so the seeds of earlier schedules keep their faults.
        f = { kind, node: node(), what, forMs, thawMysqldFirst: lossless ? rnd() < 0.5 : forMs % 2 === 0 };
        break;
      }
      case "store-partition":
        f = { kind, node: node(), forMs: int(500, 12_000) };
        break;
      case "store-outage": {
        const forMs = int(500, 10_000);
        // No extra number drawn: earlier schedules keep their faults; one outage in four wipes.
        f = { kind, forMs, wipe: forMs % 4 === 0 };
        break;
      }
      case "store-latency":
        f = { kind, ms: int(5, 400), forMs: int(1_000, 10_000) };
        break;
      case "peer-partition": {
        const a = int(1, nodes);
        const b = (a % nodes) + 1;
        f = { kind, a, b, forMs: int(500, 12_000) };
        break;
      }
      case "slow-disk":
        f = { kind, node: node(), applyMs: int(5, 200), forMs: int(1_000, 10_000) };
        break;
      case "switchover":
        f = { kind, to: rnd() < 0.5 ? undefined : int(1, nodes), count: rnd() < 0.3 ? 2 : 1 };
        break;
      case "errant-write":
        f = { kind, node: int(1, nodes) };
        break;
      case "add-restored":
        f = { kind, switchoverAfterMs: rnd() < 0.7 ? int(1_000, 6_000) : undefined };
        break;
      case "cluster-pause":
        f = { kind, forMs: int(1_000, 15_000) };
        break;
      case "rebuild":
        f = { kind, node: node() };
        break;
    }
    faults.push({ at, fault: f });
    at += int(0, 7_000);
  }
  const fenceBy = lossless && rnd() < 0.5 ? "kill" : "read-only";
  return { seed, nodes, lossless, fenceBy, durationMs: Math.max(at, 10_000) + 2_000, quietMs: 30_000, faults, clockRates: drawClockRates(seed, nodes + 1), failsafe: seededRandom((seed * 131 + 7) >>> 0)() < 0.5 };
}

export function describeFault(f: Fault): string {
  const n = (x: number) => (x === -1 ? "primary" : `n${x}`);
  switch (f.kind) {
    case "crash-mysqld":
      return `kill -9 mysqld on ${n(f.node)}`;
    case "crash-node":
      return `crash ${n(f.node)} (statepilot and mysqld), back after ${f.downMs} ms`;
    case "pause":
      return `SIGSTOP ${f.what} on ${n(f.node)} for ${f.forMs} ms${f.what === "both" ? (f.thawMysqldFirst ? ", mysqld thawed first" : ", statepilot thawed first") : ""}`;
    case "store-partition":
      return `cut ${n(f.node)} off the store for ${f.forMs} ms`;
    case "store-outage":
      return `store down for ${f.forMs} ms${f.wipe ? ", back empty" : ""}`;
    case "store-latency":
      return `store answers after ${f.ms} ms for ${f.forMs} ms`;
    case "peer-partition":
      return `cut ${n(f.a)} <-> ${n(f.b)} for ${f.forMs} ms`;
    case "slow-disk":
      return `slow disk on ${n(f.node)}: ${f.applyMs} ms per applied transaction for ${f.forMs} ms`;
    case "switchover":
      return `${f.count} switchover request(s) to ${f.to === undefined ? "any" : `n${f.to}`}`;
    case "errant-write":
      return `errant transaction written on n${f.node}`;
    case "cluster-pause":
      return `cluster paused (no automatic failover) for ${f.forMs} ms`;
    case "rebuild":
      return `operator rebuilds ${n(f.node)}`;
    case "add-restored":
      return `a node restored from a replica's snapshot joins${f.switchoverAfterMs === undefined ? "" : `; switchover to it ${f.switchoverAfterMs} ms later`}`;
  }
}

export function describeSchedule(s: Schedule): string {
  const rates = s.clockRates.map((r, i) => `n${i + 1} ${r.toFixed(4)}`).join(", ");
  const lines = [`seed ${s.seed}: ${s.nodes} nodes, ${s.lossless ? "lossless" : "async"}, fence by ${s.fenceBy}${s.failsafe ? ", failsafe on" : ""}, ${s.durationMs} ms of faults then ${s.quietMs} ms quiet; clock rates ${rates}`];
  for (const f of s.faults) lines.push(`  at ${String(f.at).padStart(6)} ms: ${describeFault(f.fault)}`);
  return lines.join("\n");
}
