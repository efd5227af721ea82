import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { Logger } from "../log.js";
import type { Metrics } from "./metrics.js";

export type StatusSource = () => unknown;

/** The HTTP endpoint Prometheus scrapes: /metrics (text format) and /status (JSON). */
export class TelemetryServer {
  private server: Server | undefined;
  port = 0;

  constructor(
    private readonly metrics: Metrics,
    private readonly status: StatusSource,
    private readonly logger: Logger,
  ) {}

  async start(bind: string, port: number): Promise<void> {
    const server = createServer((req, res) => {
      const path = (req.url ?? "/").split("?")[0];
      if (req.method !== "GET" && req.method !== "HEAD") {
        res.writeHead(405, { allow: "GET, HEAD" }).end();
        return;
      }
      if (path === "/metrics") {
        this.metrics.text().then(
          (text) => res.writeHead(200, { "content-type": this.metrics.registry.contentType }).end(text),
          (err: unknown) => {
            this.logger.error({ err }, "metrics collection failed");
            res.writeHead(500).end();
          },
        );
      } else if (path === "/status") {
        res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify(this.status()));
      } else {
        res.writeHead(404, { "content-type": "text/plain" }).end("not found: try /metrics or /status\n");
      }
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, bind, () => resolve());
    });
    this.server = server;
    this.port = (server.address() as AddressInfo).port;
    this.logger.info({ bind, port: this.port }, "telemetry listening");
  }

  async stop(): Promise<void> {
    const s = this.server;
    if (!s) return;
    s.closeAllConnections?.();
    await new Promise<void>((r) => s.close(() => r()));
  }
}
