import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConsulAgent } from "../../src/lab/consul-agent.js";
import { PrometheusServer } from "../../src/lab/prometheus-server.js";
import { findBinary } from "../../src/binaries.js";
import { freePort } from "../../src/lab/ports.js";
import { waitFor } from "../../src/lab/wait.js";
import { runCli, startCli, writeConfig, type CliRun } from "../support/cli.js";

describe("telemetry discovered and scraped by a real Prometheus through Consul", () => {
  const dir = mkdtempSync(join(tmpdir(), "statepilot-tel-"));
  const agent = new ConsulAgent();
  let prom: PrometheusServer;
  let run: CliRun;
  let port: number;
  const socket = join(dir, "ctl.sock");

  beforeAll(async () => {
    await agent.start();
    port = await freePort();
    const cfg = writeConfig(join(dir, "tel.json5"), {
      node: "tel1",
      consul: { address: agent.address },
      control: { socket },
      telemetry: {
        port,
        bind: "127.0.0.1",
        interfaces: ["static:127.0.0.1"],
        interval: "1s",
        ttl: "5s",
        metrics: [
          { name: "app_queue_depth", help: "Jobs waiting.", type: "gauge", labels: ["queue"] },
          { name: "app_garbage", help: "Fed by a broken sensor.", type: "gauge" },
          { name: "app_latency_seconds", help: "Latency.", type: "histogram", buckets: [0.1, 1] },
        ],
        sensors: [{ metric: "app_garbage", exec: ["echo", "not-a-number"], interval: "200ms" }],
      },
      jobs: [{ name: "app", main: true, exec: ["sleep", "1000"] }],
    });
    run = startCli(["--config", cfg]);
    await waitFor(async () => (await runCli(["ping", "--socket", socket])).code === 0, { timeoutMs: 60_000, what: "statepilot's control socket", detail: () => run.output() });
    const [host, cport] = agent.address.replace("http://", "").split(":");
    prom = new PrometheusServer(
      [
        "global:",
        "  scrape_interval: 1s",
        "scrape_configs:",
        "  - job_name: statepilot",
        "    consul_sd_configs:",
        `      - server: "${host}:${cport}"`,
        "        services: [statepilot]",
        "        refresh_interval: 1s",
        "",
      ].join("\n"),
      join(dir, "prom"),
    );
    await prom.start();
  }, 180_000);

  afterAll(async () => {
    try {
      if (run) {
        run.child.kill("SIGTERM");
        const stopped = await Promise.race([run.exit.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 30_000))]);
        if (!stopped) {
          run.child.kill("SIGKILL");
          await run.exit;
        }
      }
    } finally {
      try {
        await prom?.destroy();
      } finally {
        try {
          await agent.destroy();
        } finally {
          rmSync(dir, { recursive: true, force: true });
        }
      }
    }
  }, 90_000);

  it("returns a built-in metric and a putmetric value through the Prometheus API", async () => {
    const put = await runCli(["putmetric", "app_queue_depth=42", "--labels", "queue=jobs", "--socket", socket]);
    expect(put.code, put.output).toBe(0);
    const bad = await runCli(["putmetric", "app_queue_depth=1", "--labels", "nope=x", "--socket", socket]);
    expect(bad.code).toBe(2);
    expect(bad.output).toContain("labels:");
    const unknown = await runCli(["putmetric", "no_such_metric=1", "--socket", socket]);
    expect(unknown.output).toContain('no metric "no_such_metric"');

    const user = await waitFor(async () => {
      const r = await prom.query('app_queue_depth{queue="jobs"}');
      return r.length ? r : undefined;
    }, { timeoutMs: 120_000, intervalMs: 250, what: "prometheus to discover statepilot via Consul and scrape the user metric", detail: () => run.output() });
    expect(user[0]?.value[1]).toBe("42");
    expect(user[0]?.metric.job).toBe("statepilot");
    const builtin = await prom.query('statepilot_job_starts_total{job_name="app"}');
    expect(Number(builtin[0]?.value[1])).toBeGreaterThanOrEqual(1);
    const targets = await prom.activeTargets();
    expect(targets.some((t) => t.scrapeUrl === `http://127.0.0.1:${port}/metrics` && t.health === "up"), JSON.stringify(targets)).toBe(true);
  });

  it("passes promtool check metrics", async () => {
    await runCli(["putmetric", "app_latency_seconds=0.3", "--socket", socket]);
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    expect(text).toContain("app_latency_seconds_bucket");
    const r = spawnSync(findBinary("promtool"), ["check", "metrics"], { input: text, encoding: "utf8" });
    expect(`${r.stdout}${r.stderr}`.trim()).toBe("");
    expect(r.status).toBe(0);
  });

  it("counts a garbage sensor and logs each distinct error once", async () => {
    await waitFor(async () => {
      const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      const m = /statepilot_sensor_errors_total\{metric="app_garbage"\} (\d+)/.exec(text);
      return m && Number(m[1]) >= 3;
    }, { timeoutMs: 60_000, what: "three sensor errors" });
    const logged = run.output().split("\n").filter((l) => l.includes("sensor failed") && l.includes("app_garbage"));
    expect(logged).toHaveLength(1);
    expect(logged[0]).toContain("not a number");
    const status = (await (await fetch(`http://127.0.0.1:${port}/status`)).json()) as { node: string; jobs: unknown[] };
    expect(status.node).toBe("tel1");
  });
});
