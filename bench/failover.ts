/**
 * Failover benchmark on a real 3-node lab (Consul + statepilot + mariadbd, or MySQL with --flavor mysql; lossless mode unless
 * --async; the cluster store in Consul, or in a real etcd beside it with --store etcd): TRIALS (default 10) kills of the primary's mysqld and TRIALS kills of the whole primary
 * node, each timed from the kill to the first write accepted by the new primary, with a writer
 * running throughout; then SWITCHOVERS (default 5) switchovers, timed by the writer's outage.
 * Baseline from the same run: how long the killed mysqld itself takes to answer again (what a
 * client would wait without failover).
 * Last line: failover: kill_mysqld_p50_ms=N kill_mysqld_max_ms=N kill_node_p50_ms=N kill_node_max_ms=N switchover_unavailable_ms=N
 */
import { mkdtempSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import mysql from "mysql2/promise";
import { Lab } from "../src/lab/cluster.js";
import { procStat } from "../src/lab/procs.js";
import { waitFor } from "../src/lab/wait.js";
import { ReadOnlySampler, Writer } from "../src/lab/workload.js";
import { switchover } from "../src/mysql/switchover.js";
import { ConsulCoordinator } from "../src/discovery/consul/coordinator.js";
import { clusterClient } from "../src/discovery/cluster-store-factory.js";
import { Mysql } from "../src/config/schema.js";
import { leaseTtlSeconds } from "../src/discovery/etcd/cluster-store.js";
import { runMain } from "./run-main.js";

const argv = process.argv.slice(2);
const opt = (name: string, fallback: number) => {
  const i = argv.indexOf(`--${name}`);
  const v = i >= 0 ? Number(argv[i + 1]) : fallback;
  if (!Number.isInteger(v) || v < 1) throw new Error(`--${name}: expected a positive whole number, got ${argv[i + 1]}`);
  return v;
};
const TRIALS = opt("trials", 10);
const SWITCHOVERS = opt("switchovers", 5);
const lossless = !argv.includes("--async");
const flavorArg = argv.includes("--flavor") ? argv[argv.indexOf("--flavor") + 1] : "mariadb";
if (flavorArg !== "mariadb" && flavorArg !== "mysql") throw new Error(`--flavor: expected mariadb or mysql, got ${flavorArg}`);
const flavor: "mariadb" | "mysql" = flavorArg;
const storeArg = argv.includes("--store") ? argv[argv.indexOf("--store") + 1] : "consul";
if (storeArg !== "consul" && storeArg !== "etcd") throw new Error(`--store: expected consul or etcd, got ${storeArg}`);
const store: "consul" | "etcd" = storeArg;
/** The timings every lab node runs with: the config's defaults. */
const defaults = Mysql.parse({});
let rebuilds = 0;

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
const max = (xs: number[]) => Math.max(...xs);

async function answers(host: string, lab: Lab): Promise<boolean> {
  try {
    const c = await mysql.createConnection({ host, port: 3306, user: lab.file.credentials.replUser, password: lab.file.credentials.replPassword, connectTimeout: 200 });
    c.destroy();
    return true;
  } catch {
    return false;
  }
}

async function settle(lab: Lab): Promise<string> {
  // MySQL keeps a crashed lossless primary's unacknowledged tail: that node is held as diverged
  // until rebuilt (counted and reported; the operator's rebuild is not part of the failover time).
  const held = await waitFor(async () => {
    const vs = await lab.views();
    const p = vs.find((v) => v.role === "primary" && v.readOnly === false);
    const diverged = vs.filter((v) => v.role === "diverged" && /diverged former primary/.test(v.reason));
    if (diverged.length) return diverged;
    return p && vs.every((v) => v === p || (v.role === "replica" && v.health === "passing" && v.executed === p.executed)) ? [] : undefined;
  }, { timeoutMs: 120_000, intervalMs: 200, what: "the cluster to converge (or a former primary to be held as diverged)" });
  for (const v of held) {
    console.log(`${v.name}: ${v.reason.slice(0, 160)}; rebuilding it`);
    await lab.rebuild(v.name);
    rebuilds++;
  }
  const vs = await lab.waitConverged(120_000);
  return vs.find((v) => v.role === "primary")!.name;
}

const cpuTicks = (pid: number | null | undefined): number => (pid ? (procStat(pid)?.cpuTicks ?? 0) : 0);

/** Mean CPU (% of one core, clock ticks of 10 ms) over `seconds` of an idle lab: per statepilot, per mysqld, and the store's servers. */
async function idleCpu(lab: Lab, seconds: number): Promise<{ seconds: number; statepilot: number; mysqld: number; store: number }> {
  const read = () => {
    const f = lab.file;
    return {
      statepilot: f.nodes.reduce((a, n) => a + cpuTicks(n.pids.statepilot), 0),
      mysqld: f.nodes.reduce((a, n) => a + cpuTicks(n.pids.mysqld), 0),
      store: cpuTicks(f.consulPid) + (f.etcd?.members ? f.etcd.members.reduce((a, m) => a + cpuTicks(m.pid), 0) : cpuTicks(f.etcd?.pid)),
    };
  };
  const a = read();
  const t0 = Date.now();
  await sleep(seconds * 1000);
  const b = read();
  const wall = (Date.now() - t0) / 1000;
  const pct = (ticks: number, n: number) => ticks / wall / n;
  const nodes = lab.file.nodes.length;
  return { seconds, statepilot: pct(b.statepilot - a.statepilot, nodes), mysqld: pct(b.mysqld - a.mysqld, nodes), store: pct(b.store - a.store, 1) };
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "statepilot-bench-failover-"));
  const lab = await Lab.up({ dir, nodes: 3, subnet: store === "etcd" ? "127.0.35" : "127.0.31", flavor, store, lossless, log: (l) => console.log(l) });
  const sampler = new ReadOnlySampler(lab.file, 100);
  try {
    // What the autopilot costs an idle node, against what its mysqld costs (the baseline the node runs anyway).
    const idle = await idleCpu(lab, Number(process.env.BENCH_IDLE_SECONDS ?? 20));
    console.log(`idle ${idle.seconds} s: statepilot ${idle.statepilot.toFixed(1)} % of a core per node, its mysqld ${idle.mysqld.toFixed(1)} %, the store (${store}) ${idle.store.toFixed(1)} %; statepilot/mysqld = ${(idle.statepilot / Math.max(idle.mysqld, 0.1)).toFixed(2)}x`);
    await Writer.prepare(lab.file, "bench");
    sampler.start();
    const killMysqld: number[] = [];
    const restartBaseline: number[] = [];
    const killNode: number[] = [];
    let lost = 0;
    for (const kind of ["mysqld", "node"] as const) {
      for (let t = 1; t <= TRIALS; t++) {
        const primary = await settle(lab);
        const writer = new Writer(lab.file, "bench", 2);
        writer.start();
        await waitFor(async () => writer.acked.length > 20, { timeoutMs: 10_000, what: "writes before the fault" });
        const killedAt = Date.now();
        await lab.kill(primary, kind === "mysqld" ? { only: "mysqld" } : {});
        const outage = await writer.waitForWriteElsewhere(primary, 60_000);
        const ms = outage.recoveredAt! - killedAt;
        let baseline = NaN;
        if (kind === "mysqld") {
          await waitFor(async () => (await answers(lab.node(primary).mysql.host, lab)) || undefined, { timeoutMs: 60_000, what: "the killed mysqld to answer again", intervalMs: 10 });
          baseline = Date.now() - killedAt;
          restartBaseline.push(baseline);
          killMysqld.push(ms);
        } else {
          killNode.push(ms);
          await lab.start(primary);
        }
        await writer.stop();
        const p = (await lab.primary())!;
        const missing = await writer.missingOn(lab.node(p.name).mysql.host, 3306);
        lost += missing.length;
        console.log(`kill ${kind} #${t}: ${primary} -> ${outage.node}: first write after ${ms} ms${kind === "mysqld" ? ` (the killed mysqld answered again after ${baseline} ms)` : ""}; acknowledged writes missing: ${missing.length}`);
      }
    }
    const coordinator = new ConsulCoordinator({ address: lab.file.consul });
    const switchovers: number[] = [];
    try {
      for (let t = 1; t <= SWITCHOVERS; t++) {
        const primary = await settle(lab);
        const writer = new Writer(lab.file, "bench", 1);
        writer.start();
        await waitFor(async () => writer.acked.length > 20, { timeoutMs: 10_000, what: "writes before the switchover" });
        const storeConfig = lab.file.etcd ? { type: "etcd" as const, endpoints: [lab.file.etcd.endpoint], timeout: 5_000 } : undefined;
        const r = await switchover(clusterClient(coordinator, { cluster: lab.file.cluster, serviceName: "mysql" }, storeConfig), lab.file.cluster, { timeoutMs: 30_000 });
        const outage = await writer.waitForWriteElsewhere(primary, 30_000);
        await writer.stop();
        const measured = outage.recoveredAt! - outage.failedAt;
        const missing = await writer.missingOn(lab.node(r.to!).mysql.host, 3306);
        lost += missing.length;
        switchovers.push(measured);
        console.log(`switchover #${t}: ${r.from} -> ${r.to}: writer saw ${measured} ms without writes (statepilot reports ${r.unavailableMs} ms fenced-to-writable); missing: ${missing.length}`);
      }
    } finally {
      coordinator.close();
    }
    await sampler.stop();
    // The default lease (on etcd, checkTtl in whole seconds, at least 2 s) + lockDelay.
    const leaseMs = store === "etcd" ? leaseTtlSeconds(defaults.checkTtl) * 1000 : defaults.checkTtl;
    const ttlPlusDelay = leaseMs + defaults.lockDelay;
    console.log(`baseline: the killed mysqld answered again (crash recovery plus statepilot's restart backoff) after p50 ${median(restartBaseline)} ms; failover p50 is ${(median(killMysqld) / median(restartBaseline)).toFixed(2)}x that`);
    console.log(`kill node p50 ${median(killNode)} ms = ${(median(killNode) / ttlPlusDelay).toFixed(2)}x lease + lockDelay (${leaseMs} + ${defaults.lockDelay} ms; the lease runs from the last refresh, up to one interval (${defaults.interval} ms) before the kill)`);
    console.log(`store ${store}${lab.file.etcd ? ` (etcd at ${lab.file.etcd.endpoint})` : ""}; flavor ${flavor}; former primaries rebuilt after keeping an unacknowledged tail: ${rebuilds}`);
    console.log(`mode ${lossless ? "lossless" : "async"}; acknowledged writes lost: ${lost}; read_only samples: ${sampler.rounds}, rounds with two writable nodes: ${sampler.violations.length}`);
    console.log(
      `failover: idle_cpu_pct_per_node=${idle.statepilot.toFixed(1)} kill_mysqld_p50_ms=${median(killMysqld)} kill_mysqld_max_ms=${max(killMysqld)} kill_node_p50_ms=${median(killNode)} kill_node_max_ms=${max(killNode)} switchover_unavailable_ms=${median(switchovers)}`,
    );
  } catch (err) {
    // What each node says explains a failover that did not happen; the lab goes right after.
    const views = await lab.views().catch(() => []);
    for (const v of views) console.log(`  ${v.name} ${v.role} ${v.health} ${v.executed} ${v.reason}`);
    throw err;
  } finally {
    await sampler.stop();
    await lab.down();
  }
}

runMain(main);
