import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { chmodSync, existsSync, unlinkSync } from "node:fs";
import { connect } from "node:net";
import { z } from "zod";
import type { Logger } from "../log.js";
import { ConfigError, formatProblem, problemsFromZod } from "../config/load.js";
import { formatPath } from "../config/interpolate.js";

const MAX_BODY = 64 * 1024;

export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly details?: unknown,
  ) {
    super(message);
  }
}

export type Route = (body: unknown) => Promise<unknown> | unknown;

/** What the control plane can ask of the running statepilot. */
export interface ControlApi {
  status(): unknown;
  reload(): Promise<unknown>;
  maintenance(enable: boolean, reason: string | undefined): Promise<void>;
  putEnv(values: Record<string, string | null>): void;
  putMetric?(body: unknown): void;
  /** For container health checks: why the node is unhealthy, or undefined when it is healthy. */
  unhealthy?(): string | undefined;
}

export const MaintenanceBody = z.strictObject({ enabled: z.boolean(), reason: z.string().max(500).optional() });
export const EnvBody = z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, { error: "expected an environment variable name" }), z.string().nullable());

/** Validates a request body; a 400 naming every bad field otherwise. */
export function parseBody<T>(schema: z.ZodType<T>, body: unknown): T {
  const r = schema.safeParse(body);
  if (!r.success) {
    const problems = problemsFromZod(r.error, body);
    throw new HttpError(400, problems.map(formatProblem).join("; "), { problems });
  }
  return r.data;
}

async function readBody(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY) throw new HttpError(413, `request body over ${MAX_BODY} bytes`);
    chunks.push(chunk as Buffer);
  }
  if (!size) return undefined;
  const text = Buffer.concat(chunks).toString("utf8");
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new HttpError(400, `body is not valid JSON: ${(err as Error).message}`);
  }
}

function socketInUse(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path);
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}

/** HTTP over a unix socket (mode 0600): only the container's own user can drive statepilot. */
export class ControlServer {
  private server: Server | undefined;
  readonly routes = new Map<string, Route>();
  onRequest: ((route: string, status: number) => void) | undefined;

  constructor(
    readonly socketPath: string,
    private readonly api: ControlApi,
    private readonly logger: Logger,
  ) {
    this.routes.set("GET /v1/ping", () => ({ ok: true }));
    this.routes.set("GET /v1/status", () => this.api.status());
    this.routes.set("GET /v1/health", () => {
      const why = this.api.unhealthy?.();
      if (why) throw new HttpError(503, why);
      return { healthy: true };
    });
    this.routes.set("POST /v1/reload", () => this.api.reload());
    this.routes.set("POST /v1/maintenance", async (body) => {
      const b = parseBody(MaintenanceBody, body);
      await this.api.maintenance(b.enabled, b.reason);
      return { maintenance: b.enabled };
    });
    this.routes.set("POST /v1/env", (body) => {
      this.api.putEnv(parseBody(EnvBody, body));
      return { ok: true };
    });
    if (this.api.putMetric) {
      const put = this.api.putMetric.bind(this.api);
      this.routes.set("POST /v1/metric", (body) => {
        put(body);
        return { ok: true };
      });
    }
  }

  async start(): Promise<void> {
    if (existsSync(this.socketPath)) {
      if (await socketInUse(this.socketPath)) throw new Error(`control socket ${this.socketPath} is in use by another process`);
      unlinkSync(this.socketPath);
    }
    const server = createServer((req, res) => void this.handle(req, res));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(this.socketPath, () => resolve());
    });
    chmodSync(this.socketPath, 0o600);
    this.logger.debug({ socket: this.socketPath }, "control plane listening");
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? "/").split("?")[0];
    const key = `${req.method} ${path}`;
    const route = this.routes.get(key);
    let status = 200;
    let payload: unknown;
    try {
      if (!route) {
        const allowed = [...this.routes.keys()].filter((k) => k.endsWith(` ${path}`)).map((k) => k.split(" ")[0]);
        throw allowed.length ? new HttpError(405, `${req.method} not allowed on ${path}; use ${allowed.join(", ")}`) : new HttpError(404, `no route ${path}`);
      }
      payload = await route(await readBody(req));
    } catch (err) {
      if (err instanceof HttpError) {
        status = err.status;
        payload = { error: err.message, ...(err.details ? { details: err.details } : {}) };
      } else if (err instanceof ConfigError) {
        status = 400;
        payload = { error: err.message, problems: err.problems };
      } else if (err instanceof z.ZodError) {
        // A bug, not the caller's input: still one line per field, never the raw issue dump.
        status = 500;
        const error = `internal error: ${err.issues.map((i) => `${formatPath(i.path)}: ${i.message}`).join("; ")}`;
        payload = { error };
        this.logger.error({ err: error, route: key }, "control request failed");
      } else {
        status = 500;
        payload = { error: err instanceof Error ? err.message : String(err) };
        this.logger.error({ err, route: key }, "control request failed");
      }
    }
    this.onRequest?.(route ? key : "unknown", status);
    res.writeHead(status, { "content-type": "application/json" });
    res.end(JSON.stringify(payload));
  }

  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    await new Promise<void>((r) => server.close(() => r()));
    server.closeAllConnections?.();
    try {
      unlinkSync(this.socketPath);
    } catch {
      /* already gone */
    }
  }
}
