import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { Logger } from "../log.js";
import type { Metrics } from "./metrics.js";
import { sendUnauthorized, type BearerCheck } from "./auth.js";

export type StatusSource = () => unknown;

/** An extra GET route (the load-balancer checks): status code and JSON body. */
export type RouteHandler = (query: URLSearchParams) => { status: number; body: unknown };

/** Who may read what: /status needs the token; /metrics only when `metrics` is set. */
export interface TelemetryAccess {
  check: BearerCheck;
  metrics: boolean;
}

/**
 * The HTTP endpoint Prometheus scrapes: /metrics (text format) and /status (JSON). With `access`,
 * /status (and /metrics if so configured) answer 401 without the bearer token, and the extra
 * routes (load-balancer checks) answer with their status code but keep the node's view for
 * callers with the token.
 */
export class TelemetryServer {
  private server: Server | undefined;
  port = 0;
  private readonly routes = new Map<string, RouteHandler>();

  constructor(
    private readonly metrics: Metrics,
    private readonly status: StatusSource,
    private readonly logger: Logger,
    private readonly access?: TelemetryAccess,
  ) {}

  addRoute(path: string, handler: RouteHandler): void {
    this.routes.set(path, handler);
  }

  async start(bind: string, port: number): Promise<void> {
    const server = createServer((req, res) => {
      const url = new URL(req.url ?? "/", "http://localhost");
      const path = url.pathname;
      if (req.method !== "GET" && req.method !== "HEAD") {
        res.writeHead(405, { allow: "GET, HEAD" }).end();
        return;
      }
      const auth = this.access ? this.access.check.verify(req.headers) : "ok";
      if (auth !== "ok" && (path === "/status" || (path === "/metrics" && this.access?.metrics))) {
        sendUnauthorized(res, auth);
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
      } else if (this.routes.has(path)) {
        try {
          const r = this.routes.get(path)!(url.searchParams);
          const body = auth === "ok" ? r.body : { ok: r.status >= 200 && r.status < 300 };
          res.writeHead(r.status, { "content-type": "application/json" }).end(JSON.stringify(body));
        } catch (err) {
          res.writeHead(400, { "content-type": "application/json" }).end(JSON.stringify({ error: err instanceof Error ? err.message : String(err) }));
        }
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
