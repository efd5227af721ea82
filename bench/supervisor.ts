/**
 * Supervisor benchmark: a real statepilot process running one job with a 1 s health check and a
 * Consul registration for BENCH_SECONDS (default 60), against a bare Node process as the baseline;
 * then the latency from a service change in Consul to the watch's `changed` event.
 * Last line: supervisor: idle_rss_mb=N cpu_pct=N watch_p50_ms=N watch_p99_ms=N
 */
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import pino from "pino";
import { ConsulAgent } from "../src/lab/consul-agent.js";
import { ConsulClient } from "../src/discovery/consul/client.js";
import { ConsulCoordinator } from "../src/discovery/consul/coordinator.js";
import { ServiceWatch } from "../src/discovery/watch.js";
import { EventBus } from "../src/events/bus.js";
import { waitFor } from "../src/lab/wait.js";
import { procStat } from "../src/lab/procs.js";
import { runMain } from "./run-main.js";

const seconds = Number(process.env.BENCH_SECONDS ?? 60);
const changes = Number(process.env.BENCH_WATCH_CHANGES ?? 200);
const CLI = fileURLToPath(new URL("../src/cli/main.js", import.meta.url));
const CLK_TCK = 100;

function cpuTicks(pid: number): number {
  return procStat(pid)?.cpuTicks ?? 0;
}
function rssMb(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return Number(m?.[1] ?? 0) / 1024;
}
function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}

async function idle(pid: number): Promise<{ rss: number; cpu: number }> {
  const t0 = cpuTicks(pid);
  const s0 = performance.now();
  let rss = 0;
  const end = Date.now() + seconds * 1000;
  while (Date.now() < end) {
    await new Promise((r) => setTimeout(r, 1000));
    rss = Math.max(rss, rssMb(pid));
  }
  const cpu = ((cpuTicks(pid) - t0) / CLK_TCK / ((performance.now() - s0) / 1000)) * 100;
  return { rss, cpu };
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "statepilot-bench-"));
  const agent = await new ConsulAgent().start();
  const client = new ConsulClient({ address: agent.address });
  try {
    const cfg = join(dir, "bench.json5");
    writeFileSync(cfg, JSON.stringify({
      node: "bench",
      consul: { address: agent.address },
      control: { socket: join(dir, "ctl.sock") },
      jobs: [{ name: "app", main: true, exec: ["sleep", "100000"], health: { exec: ["true"], interval: "1s", ttl: "5s" }, service: { name: "bench", port: 1, interfaces: ["static:127.0.0.1"] } }],
    }));
    const sp = spawn(process.execPath, [CLI, "--config", cfg], { stdio: ["ignore", "ignore", "inherit"] });
    const spExit = new Promise((r) => sp.once("exit", r));
    const base = spawn(process.execPath, ["-e", "setInterval(() => {}, 1000)"], { stdio: "ignore" });
    await waitFor(async () => (await client.healthService("bench", { passing: true })).value.length > 0, { timeoutMs: 20_000, what: "statepilot to register" });
    console.log(`measuring idle cost for ${seconds}s (statepilot with a 1s health check, and a bare node process)...`);
    const [s, b] = await Promise.all([idle(sp.pid!), idle(base.pid!)]);
    sp.kill("SIGTERM");
    base.kill("SIGKILL");
    console.log(`statepilot: rss_mb=${s.rss.toFixed(1)} cpu_pct=${s.cpu.toFixed(2)}`);
    console.log(`bare node:  rss_mb=${b.rss.toFixed(1)} cpu_pct=${b.cpu.toFixed(2)}  (rss ratio ${(s.rss / b.rss).toFixed(2)})`);

    // Watch latency: from the registration call returning to the `changed` event.
    const bus = new EventBus();
    const watch = new ServiceWatch({ name: "bench-other", wait: 30_000 }, new ConsulCoordinator(client), bus, pino({ level: "silent" }));
    let pending: ((t: number) => void) | undefined;
    watch.onChange = () => pending?.(performance.now());
    watch.start();
    await new Promise((r) => setTimeout(r, 300));
    const lat: number[] = [];
    for (let i = 0; i < changes; i++) {
      const seen = new Promise<number>((r) => (pending = r));
      const t0 = performance.now();
      if (i % 2 === 0) await client.registerService({ id: "bench-other-1", name: "bench-other", port: 1, checks: [{ checkId: "service:bench-other-1", ttl: "60s", status: "passing" }] });
      else await client.deregisterService("bench-other-1");
      lat.push((await seen) - t0);
    }
    watch.stop();
    lat.sort((x, y) => x - y);
    const p50 = percentile(lat, 50);
    const p99 = percentile(lat, 99);
    console.log(`watch: ${changes} changes, p50=${p50.toFixed(2)}ms p99=${p99.toFixed(2)}ms max=${lat[lat.length - 1]!.toFixed(2)}ms`);
    await spExit;
    console.log(`supervisor: idle_rss_mb=${s.rss.toFixed(1)} cpu_pct=${s.cpu.toFixed(2)} watch_p50_ms=${p50.toFixed(2)} watch_p99_ms=${p99.toFixed(2)}`);
  } finally {
    client.close();
    await agent.destroy();
    rmSync(dir, { recursive: true, force: true });
  }
}

runMain(main);
