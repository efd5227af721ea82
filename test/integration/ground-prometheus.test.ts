import { createServer, type Server } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PrometheusServer } from "../../src/lab/prometheus-server.js";
import { freePort } from "../../src/lab/ports.js";
import { waitFor } from "../../src/lab/wait.js";

describe("real Prometheus", () => {
  let target: Server;
  let prom: PrometheusServer;

  beforeAll(async () => {
    const port = await freePort();
    target = createServer((_req, res) => {
      res.setHeader("content-type", "text/plain; version=0.0.4");
      res.end("# HELP ground_answer A fixed sample.\n# TYPE ground_answer gauge\nground_answer 42\n");
    });
    await new Promise<void>((r) => target.listen(port, "127.0.0.1", r));
    prom = new PrometheusServer(
      `global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: ground\n    static_configs:\n      - targets: ["127.0.0.1:${port}"]\n`,
    );
    await prom.start();
  }, 120_000);
  afterAll(async () => {
    try {
      await prom?.destroy();
    } finally {
      await new Promise((r) => (target ? target.close(r) : r(undefined)));
    }
  }, 60_000);

  it("scrapes a static target and returns the sample over its HTTP API", async () => {
    const result = await waitFor(async () => {
      const r = await prom.query('ground_answer{job="ground"}');
      return r.length ? r : undefined;
    }, { timeoutMs: 90_000, intervalMs: 250, what: "prometheus to scrape ground_answer" });
    expect(result[0]?.value[1]).toBe("42");
  });
});
