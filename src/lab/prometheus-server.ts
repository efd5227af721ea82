import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { findBinary } from "../binaries.js";
import { ManagedProcess } from "./process.js";
import { freePort } from "./ports.js";
import { waitFor } from "./wait.js";

export interface PromQueryResult {
  metric: Record<string, string>;
  value: [number, string];
}

/** A real Prometheus server on loopback with a config written by the caller (YAML text). */
export class PrometheusServer {
  private proc: ManagedProcess | undefined;
  readonly dir: string;
  port = 0;

  constructor(private readonly configYaml: string, dir?: string) {
    this.dir = dir ?? mkdtempSync(join(tmpdir(), "statepilot-prometheus-"));
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async start(timeoutMs = 90_000): Promise<this> {
    if (this.proc?.running) return this;
    this.port ||= await freePort();
    mkdirSync(this.dir, { recursive: true });
    const configFile = join(this.dir, "prometheus.yml");
    writeFileSync(configFile, this.configYaml);
    this.proc = await ManagedProcess.start(
      "prometheus",
      findBinary("prometheus"),
      [
        `--config.file=${configFile}`,
        `--storage.tsdb.path=${join(this.dir, "data")}`,
        `--web.listen-address=127.0.0.1:${this.port}`,
        "--log.level=warn",
      ],
      { logFile: join(this.dir, "prometheus.log") },
    );
    const proc = this.proc;
    await waitFor(async () => (await fetch(`${this.url}/-/ready`, { signal: AbortSignal.timeout(5_000) })).ok, {
      timeoutMs,
      what: `prometheus on ${this.url}`,
      detail: () => proc.logTail(),
      abortIf: () => (proc.running ? undefined : `prometheus exited (${JSON.stringify(proc.exitStatus)})`),
    });
    return this;
  }

  /** An instant query through the HTTP API. */
  async query(promql: string): Promise<PromQueryResult[]> {
    const res = await fetch(`${this.url}/api/v1/query?query=${encodeURIComponent(promql)}`);
    const body = (await res.json()) as { status: string; error?: string; data?: { result: PromQueryResult[] } };
    if (body.status !== "success") throw new Error(`prometheus query ${promql}: ${body.error ?? res.status}`);
    return body.data?.result ?? [];
  }

  /** Targets as Prometheus sees them (after service discovery). */
  async activeTargets(): Promise<Array<{ scrapeUrl: string; health: string; labels: Record<string, string>; lastError: string }>> {
    const res = await fetch(`${this.url}/api/v1/targets?state=active`);
    const body = (await res.json()) as { data: { activeTargets: Array<{ scrapeUrl: string; health: string; labels: Record<string, string>; lastError: string }> } };
    return body.data.activeTargets;
  }

  async stop(): Promise<void> {
    await this.proc?.stop("SIGTERM", 10_000);
  }

  async destroy(): Promise<void> {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
