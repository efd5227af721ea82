import { existsSync } from "node:fs";
import { alive, Lab, type NodeView } from "./cluster.js";
import { waitFor } from "./wait.js";
import { Writer } from "./workload.js";


function table(vs: NodeView[], lab: Lab): string {
  return vs
    .map((v) => {
      const n = lab.node(v.name);
      return `  ${v.name.padEnd(8)} ${`${n.mysql.host}:3306`.padEnd(16)} ${v.role.padEnd(8)} read_only=${v.readOnly === undefined ? "-" : v.readOnly ? 1 : 0}  ${v.reason}`;
    })
    .join("\n");
}

/**
 * The README's main command: a 3-node lab in lossless mode, a writer, the primary's mysqld
 * killed, and the failover measured from the client's side. The lab keeps running afterwards.
 */
export async function runDemo(dir: string, out: (s: string) => void, opts: { subnet?: string | undefined } = {}): Promise<void> {
  if (existsSync(Lab.path(dir))) {
    const old = Lab.open(dir);
    if (alive(old.file.consulPid) || old.file.nodes.some((n) => alive(n.pids.statepilot))) {
      out(`stopping the lab already running in ${dir} ...`);
      await old.down();
    }
  }
  const started = performance.now();
  const lab = await Lab.up({ dir, nodes: 3, lossless: true, fresh: true, subnet: opts.subnet, log: (l) => out(l) });
  out(`\n1. three nodes from empty datadirs, primary elected through a Consul lock in ${((performance.now() - started) / 1000).toFixed(1)} s:`);
  out(table(await lab.views(), lab));

  await Writer.prepare(lab.file, "demo");
  const writer = new Writer(lab.file, "demo", 10);
  writer.start();
  await waitFor(async () => writer.acked.length >= 100 || undefined, { timeoutMs: 60_000, what: "the client's first writes" });
  const primary = (await lab.primary())!;
  out(`\n2. a client writes continuously: ${writer.acked.length} inserts acknowledged by ${primary.name} so far`);

  const killedAt = Date.now();
  await lab.kill(primary.name, { only: "mysqld" });
  out(`\n3. kill -9 of ${primary.name}'s mariadbd (pid ${primary.pids.mysqld}) ...`);
  const outage = await writer.waitForWriteElsewhere(primary.name, 60_000);
  out(`   ${outage.node} accepted the next write ${outage.recoveredAt! - killedAt} ms after the kill`);
  const ackedAtRecovery = writer.acked.length;
  await waitFor(async () => writer.acked.length >= ackedAtRecovery + 100 || undefined, { timeoutMs: 60_000, what: "writes to continue on the new primary" });
  await writer.stop();

  const vs = await waitFor(
    async () => {
      const now = await lab.views();
      return now.find((v) => v.name === primary.name)?.role === "replica" ? now : undefined;
    },
    { timeoutMs: 60_000, what: `${primary.name} to rejoin as a replica`, intervalMs: 200 },
  );
  const next = vs.find((v) => v.role === "primary")!;
  const missing = await writer.missingOn(lab.node(next.name).mysql.host, 3306);
  out(`\n4. statepilot restarted the killed server read-only; it rejoined as a replica of ${next.name}:`);
  out(table(vs, lab));
  out(`\n5. ${writer.acked.length} writes acknowledged in all; missing on the new primary: ${missing.length} (lossless semi-sync)`);
  out(`\nThe lab keeps running. Try:`);
  out(`  node dist/src/cli/main.js lab status --dir ${dir}`);
  out(`  node dist/src/cli/main.js mysql switchover --config ${lab.node(next.name).config}`);
  out(`  node dist/src/cli/main.js lab kill ${next.name} --dir ${dir}      # the whole node this time`);
  out(`  curl ${lab.node(next.name).http}/primary ; curl ${lab.node(next.name).http}/metrics`);
  out(`Stop it with: node dist/src/cli/main.js lab down --dir ${dir}`);
  if (missing.length) throw new Error(`${missing.length} acknowledged writes are missing`);
}
