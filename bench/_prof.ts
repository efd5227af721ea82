import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Lab } from "../src/lab/cluster.js";
import { waitFor } from "../src/lab/wait.js";
import { Writer } from "../src/lab/workload.js";

const trials = Number(process.argv[2] ?? 3);
const mode = process.argv[3] ?? "mysqld";
const dir = mkdtempSync(join(tmpdir(), "statepilot-prof-"));
const lab = await Lab.up({ dir, nodes: 3, subnet: "127.0.39", lossless: true, log: () => undefined });
try {
  await Writer.prepare(lab.file, "bench");
  for (let t = 0; t < trials; t++) {
    const vs = await lab.waitConverged(120_000);
    const primary = vs.find((v) => v.role === "primary")!.name;
    const writer = new Writer(lab.file, "bench", 2);
    writer.start();
    await waitFor(async () => writer.acked.length > 20, { timeoutMs: 10_000, what: "writes" });
    const killedAt = Date.now();
    if (mode === "switchover") {
      const { switchover } = await import("../src/mysql/switchover.js");
      const { ConsulCoordinator } = await import("../src/discovery/consul/coordinator.js");
      const { clusterClient } = await import("../src/discovery/cluster-store-factory.js");
      const co = new ConsulCoordinator({ address: lab.file.consul });
      await switchover(clusterClient(co, { cluster: lab.file.cluster, serviceName: "mysql" }, undefined), lab.file.cluster, { timeoutMs: 30_000 });
      co.close();
    } else await lab.kill(primary, { only: "mysqld" });
    const outage = await writer.waitForWriteElsewhere(primary, 60_000);
    await writer.stop();
    console.log(`trial ${t}: ${primary} -> ${outage.node} ${outage.recoveredAt! - killedAt} ms (outage from +${outage.failedAt - killedAt} for ${outage.recoveredAt! - outage.failedAt} ms); killedAt=${new Date(killedAt).toISOString()} failedAt=${new Date(outage.failedAt).toISOString()} recoveredAt=${new Date(outage.recoveredAt!).toISOString()}`);
    const lines: Array<[number, string]> = [];
    for (const n of lab.file.nodes) {
      for (const l of readFileSync(join(n.dir, "statepilot.log"), "utf8").split("\n")) {
        try {
          const j = JSON.parse(l) as { time: number; msg: string; [k: string]: unknown };
          if (j.job === "mysqld" && !/semi-sync|connected to master|Semi-sync/.test(j.msg)) continue;
          if (j.time >= killedAt - 50 && j.time <= outage.recoveredAt! + 100) lines.push([j.time, `${j.time - killedAt} ${n.name} ${j.msg} ${JSON.stringify({ ...j, time: undefined, msg: undefined, pid: undefined, hostname: undefined, level: undefined })}`.slice(0, 300)]);
        } catch {}
      }
    }
    for (const [, l] of lines.sort((a, b) => a[0] - b[0])) console.log(l);
  }
} finally {
  await lab.down();
}
