/**
 * Chaos: R rounds (default 30) on a 3-node lab in lossless mode, with Consul and every node in its
 * own network namespace and the snapshot store on a small tmpfs. Each round picks a fault at
 * random (seeded; the seed is printed), applies it under a continuous writer that records every
 * acknowledged insert and a sampler reading @@read_only on every node every 100 ms, heals it, waits
 * for the cluster to converge (one primary, every other node a replica with the same GTIDs) and
 * checks that every acknowledged row is on the primary.
 *   npm run bench:chaos -- --rounds 30 --seed 42 [--store consul|etcd]
 * The nodes' cluster store is a real 3-server cluster in the store's namespace: Consul servers with
 * a client agent in each node's namespace (the default), or with --store etcd a 3-member etcd beside
 * a Consul dev agent (which keeps the service registrations). The cluster-store faults stop or
 * pause whichever store the nodes use; store-leader-kill and store-quorum-loss join the mix, and on
 * Consul store-agent-restart (a node's own agent) takes the place of the dev agent's restart.
 * Last line: chaos: rounds=N seed=N store=S acked=N lost=N split_brain_samples=N unconverged=N
 * Needs root (network namespaces, tmpfs).
 * Interrupted (Ctrl-C, SIGTERM, `timeout`, or its npm parent killed), it stops the lab and removes
 * its namespaces, veths and tmpfs before exiting; a run killed with SIGKILL leaves nothing running
 * either (parent-death signal), and the next run removes the namespaces it left.
 */
import { cpSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Lab } from "../src/lab/cluster.js";
import { seededRandom } from "../src/lab/random.js";
import { applyFault, type FaultKind } from "../src/lab/faults.js";
import { waitFor } from "../src/lab/wait.js";
import { ReadOnlySampler, Writer } from "../src/lab/workload.js";

const argv = process.argv.slice(2);
function intArg(name: string, fallback: number): number {
  const i = argv.indexOf(`--${name}`);
  if (i < 0) return fallback;
  const v = Number(argv[i + 1]);
  if (!Number.isInteger(v) || v < 0) throw new Error(`--${name}: expected a whole number, got ${JSON.stringify(argv[i + 1])}`);
  return v;
}
const ROUNDS = intArg("rounds", 30);
function storeArg(): "consul" | "etcd" {
  const i = argv.indexOf("--store");
  if (i < 0) return "consul";
  const v = argv[i + 1];
  if (v !== "consul" && v !== "etcd") throw new Error(`--store: expected consul or etcd, got ${JSON.stringify(v)}`);
  return v;
}
const STORE = storeArg();
const SEED = intArg("seed", Date.now() % 1_000_000);


/** A fault, the node it hits (by role at the time), and how long it lasts. */
interface Plan {
  kind: FaultKind;
  target: "primary" | "replica" | "none";
  forMs: [number, number];
}

const PLANS: Plan[] = [
  { kind: "kill-mysqld", target: "primary", forMs: [0, 0] },
  { kind: "kill-mysqld", target: "replica", forMs: [0, 0] },
  { kind: "kill-statepilot", target: "primary", forMs: [1_000, 5_000] },
  { kind: "kill-node", target: "primary", forMs: [1_000, 8_000] },
  { kind: "kill-node", target: "replica", forMs: [1_000, 8_000] },
  { kind: "hang", target: "primary", forMs: [4_000, 12_000] },
  { kind: "partition-consul", target: "primary", forMs: [4_000, 12_000] },
  { kind: "partition-consul", target: "replica", forMs: [4_000, 12_000] },
  { kind: "partition-peers", target: "primary", forMs: [3_000, 8_000] },
  { kind: "consul-restart", target: "none", forMs: [0, 2_000] },
  // The nodes' cluster store (Consul, or etcd with --store etcd): its process stopped or paused
  // (partition-consul above cuts a node off from it: the lab's etcd shares Consul's namespace).
  { kind: "cluster-store-stop", target: "none", forMs: [2_000, 12_000] },
  { kind: "cluster-store-pause", target: "none", forMs: [2_000, 12_000] },
  { kind: "store-down", target: "none", forMs: [5_000, 12_000] },
  { kind: "disk-full", target: "none", forMs: [5_000, 12_000] },
];
/** The lab runs the cluster store as a real 3-server cluster, and its own faults join the mix. */
const STORE_PLANS: Plan[] = [
  { kind: "store-leader-kill", target: "none", forMs: [2_000, 10_000] },
  { kind: "store-quorum-loss", target: "none", forMs: [2_000, 12_000] },
  { kind: "store-slow", target: "none", forMs: [4_000, 12_000] },
];
/**
 * On Consul: three servers and one client agent per node. A node's own agent restarted (data
 * kept) joins the mix; the dev agent's restart, which forgets everything, has no place there.
 */
const CONSUL_PLANS: Plan[] = [
  { kind: "store-agent-restart", target: "primary", forMs: [1_000, 6_000] },
  { kind: "store-agent-restart", target: "replica", forMs: [1_000, 6_000] },
];
const plansFor = (store: "consul" | "etcd"): Plan[] =>
  store === "etcd" ? [...PLANS, ...STORE_PLANS] : [...PLANS.filter((p) => p.kind !== "consul-restart"), ...STORE_PLANS, ...CONSUL_PLANS];

interface RoundResult {
  label: string;
  acked: number;
  lost: number;
  splitBrain: number;
  unavailableMs: number;
  convergeMs: number | undefined;
}

const median = (xs: number[]) => (xs.length ? [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]! : NaN);


async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error("bench:chaos needs root (network namespaces and a tmpfs store)");
  console.log(`chaos: seed ${SEED}, ${ROUNDS} rounds, cluster store ${STORE} (rerun with --seed ${SEED} --store ${STORE})`);
  const r = seededRandom(SEED);
  const dir = mkdtempSync(join(tmpdir(), "statepilot-chaos-"));
  const lab = await Lab.up({
    dir,
    nodes: 3,
    subnet: "127.0.60",
    netns: true,
    lossless: true,
    store: STORE,
    storeServers: 3,
    storeTmpfsMb: 256,
    // The lab lives and dies with this process, whatever ends it.
    owned: true,
    mysql: { snapshots: { store: { type: "local", path: join(dir, "snapshots") }, interval: "15s", checkEvery: "1s", keepLast: 2 } },
    log: (l) => console.log(l),
  });
  const results: RoundResult[] = [];
  let unconverged = 0;
  const sampler = new ReadOnlySampler(lab.file, 100);
  try {
    await Writer.prepare(lab.file, "chaos");
    sampler.start();
    for (let round = 1; round <= ROUNDS; round++) {
      const plans = plansFor(STORE);
      const plan = plans[Math.floor(r() * plans.length)]!;
      const forMs = Math.round(plan.forMs[0] + r() * (plan.forMs[1] - plan.forMs[0]));
      const vs = await lab.views();
      const primary = vs.find((v) => v.role === "primary");
      const replicas = vs.filter((v) => v.role === "replica");
      const node = plan.target === "primary" ? primary?.name : plan.target === "replica" ? replicas[Math.floor(r() * replicas.length)]?.name : undefined;
      const label = `${plan.kind}${plan.target === "none" ? "" : ` (${plan.target})`}`;
      const splitBefore = sampler.violations.length;
      const writer = new Writer(lab.file, "chaos", 3);
      writer.start();
      await waitFor(async () => writer.acked.length > 10 || undefined, { timeoutMs: 30_000, what: "writes before the fault" });
      let description = "";
      try {
        description = (await applyFault(lab, plan.kind, { node, forMs })).description;
      } catch (err) {
        description = `fault failed: ${err instanceof Error ? err.message : String(err)}`;
      }
      const healedAt = Date.now();
      // Writes must flow again after healing; then the writer stops so the replicas can catch up.
      const ackedAtHeal = writer.acked.length;
      await waitFor(async () => writer.acked.length > ackedAtHeal + 5 || undefined, { timeoutMs: 90_000, what: "writes after healing" }).catch(() => undefined);
      await writer.stop();
      let convergeMs: number | undefined;
      try {
        await lab.waitConverged(120_000);
        convergeMs = Date.now() - healedAt;
      } catch {
        unconverged++;
        // Bring killed or exited nodes back so the next round starts from a whole cluster.
        for (const n of lab.file.nodes) if (!(await lab.view(n)).reachable) await lab.start(n.name).catch(() => undefined);
        await lab.waitConverged(120_000).catch(() => undefined);
      }
      const p = (await lab.primary())!;
      const lost = p ? (await writer.missingOn(lab.node(p.name).mysql.host, 3306)).length : writer.acked.length;
      const unavailableMs = Math.max(0, ...writer.outages.map((o) => (o.recoveredAt ?? Date.now()) - o.failedAt));
      const res: RoundResult = { label, acked: writer.acked.length, lost, splitBrain: sampler.violations.length - splitBefore, unavailableMs, convergeMs };
      results.push(res);
      console.log(
        `round ${String(round).padStart(2)}: ${label.padEnd(28)} ${node ?? "-"}  ${description}; acked ${res.acked}, lost ${lost}, split-brain samples ${res.splitBrain}, longest write gap ${unavailableMs} ms, converged ${convergeMs === undefined ? "NO" : `${convergeMs} ms after healing`}`,
      );
      if (convergeMs === undefined) console.log((await lab.views()).map((v) => `  ${v.name} ${v.role} ${v.health} ${v.executed} ${v.reason}`).join("\n"));
      if (lost > 0 || res.splitBrain > 0 || convergeMs === undefined) {
        // The lab goes at the end: keep what explains this round (each node's log, no data).
        const keep = join(tmpdir(), `statepilot-chaos-logs-${SEED}-${STORE}-round-${round}`);
        cpSync(join(dir, "nodes"), keep, { recursive: true, filter: (src) => !/\/data(\/|$)|\.sock$/.test(src) });
        console.log(`  node logs kept in ${keep}`);
      }
    }
  } finally {
    await sampler.stop();
    await lab.down();
  }
  const kinds = [...new Set(results.map((x) => x.label))].sort();
  console.log("");
  console.log(`${"fault".padEnd(30)} ${"rounds".padStart(6)} ${"acked".padStart(7)} ${"lost".padStart(5)} ${"2-writable".padStart(10)} ${"max gap ms".padStart(10)} ${"converge p50/max ms".padStart(20)}`);
  for (const k of kinds) {
    const rs = results.filter((x) => x.label === k);
    const conv = rs.map((x) => x.convergeMs).filter((x): x is number => x !== undefined);
    console.log(
      `${k.padEnd(30)} ${String(rs.length).padStart(6)} ${String(rs.reduce((a, x) => a + x.acked, 0)).padStart(7)} ${String(rs.reduce((a, x) => a + x.lost, 0)).padStart(5)} ${String(rs.reduce((a, x) => a + x.splitBrain, 0)).padStart(10)} ${String(Math.max(...rs.map((x) => x.unavailableMs))).padStart(10)} ${`${median(conv)}/${conv.length ? Math.max(...conv) : NaN}`.padStart(20)}`,
    );
  }
  const acked = results.reduce((a, x) => a + x.acked, 0);
  const lost = results.reduce((a, x) => a + x.lost, 0);
  const split = results.reduce((a, x) => a + x.splitBrain, 0);
  console.log(`read_only samples: ${sampler.rounds}`);
  console.log(`chaos: rounds=${results.length} seed=${SEED} store=${STORE} acked=${acked} lost=${lost} split_brain_samples=${split} unconverged=${unconverged}`);
  if (lost || split || unconverged) process.exitCode = 1;
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.stack : String(err));
  process.exit(1);
});
