import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { Logger } from "../log.js";
import type { Metrics } from "./metrics.js";
import { sendUnauthorized, type BearerCheck } from "./auth.js";

export type StatusSource = () => unknown;

/** An extra GET route (the load-balancer checks): status code and JSON body. */
export type RouteHandler = (query: URLSearchParams) => { status: number; body: unknown };

/**
 * An extra POST route with its own bearer check (e.g. /failsafe with the cluster secret): the JSON
 * body (at most 16 KiB) in, a status code and a JSON body out. A thrown error is a 400 with its message.
 */
export interface PostRoute {
  check: BearerCheck;
  handle(body: unknown): { status: number; body: unknown };
}

const MAX_POST_BYTES = 16 * 1024;

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
  private readonly posts = new Map<string, PostRoute>();

  constructor(
    private readonly metrics: Metrics,
    private readonly status: StatusSource,
    private readonly logger: Logger,
    private readonly access?: TelemetryAccess,
  ) {}

  addRoute(path: string, handler: RouteHandler): void {
    this.routes.set(path, handler);
  }

  addPostRoute(path: string, route: PostRoute): void {
    this.posts.set(path, route);
  }

  private post(req: IncomingMessage, res: ServerResponse, route: PostRoute): void {
    const json = (status: number, body: unknown) => res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(body));
    const auth = route.check.verify(req.headers);
    if (auth !== "ok") {
      req.resume();
      sendUnauthorized(res, auth);
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (c: Buffer) => {
      size += c.length;
      if (size > MAX_POST_BYTES) {
        json(413, { error: `body larger than ${MAX_POST_BYTES} bytes` });
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on("end", () => {
      if (res.writableEnded) return;
      let body: unknown;
      try {
        body = JSON.parse(Buffer.concat(chunks).toString("utf8"));
      } catch (err) {
        json(400, { error: `body: expected JSON (${err instanceof Error ? err.message : String(err)})` });
        return;
      }
      try {
        const r = route.handle(body);
        json(r.status, r.body);
      } catch (err) {
        json(400, { error: err instanceof Error ? err.message : String(err) });
      }
    });
  }

  async start(bind: string, port: number): Promise<void> {
    const server = createServer((req, res) => {
      const url = new URL(req.url ?? "/", "http://localhost");
      const path = url.pathname;
      const postRoute = this.posts.get(path);
      if (postRoute && req.method === "POST") {
        this.post(req, res, postRoute);
        return;
      }
      if (req.method !== "GET" && req.method !== "HEAD") {
        res.writeHead(405, { allow: postRoute ? "POST" : "GET, HEAD" }).end();
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
