import { EventEmitter } from "node:events";
import { Agent as HttpAgent } from "node:http";
import { Agent as HttpsAgent } from "node:https";
import Consul from "consul";
import { parseDuration } from "../../config/duration.js";
import { consulAgentOptions } from "./connection.js";
import type { CheckStatus, ServiceInstance } from "../coordination.js";

export type { CheckStatus, HealthCheckInfo, ServiceInstance } from "../coordination.js";

/** How to reach a Consul agent; mirrors the standard CONSUL_* variables. */
export interface ConsulConnection {
  /** http(s)://host:port */
  address: string;
  token?: string | undefined;
  datacenter?: string | undefined;
  caFile?: string | undefined;
  certFile?: string | undefined;
  keyFile?: string | undefined;
  /** For errors: the config key or variable each file came from (e.g. `CONSUL_CACERT`). Then CONSUL_TLS_SERVER_NAME and CONSUL_HTTP_SSL_VERIFY=false. */
  origins?: Partial<Record<"caFile" | "certFile" | "keyFile", string>> | undefined;
  tlsServerName?: string | undefined;
  tlsSkipVerify?: boolean | undefined;
  /** Per-request timeout for non-blocking calls. */
  timeoutMs?: number | undefined;
}

export interface TtlCheck {
  checkId: string;
  name?: string;
  ttl: string;
  status?: CheckStatus;
  notes?: string;
  deregisterCriticalServiceAfter?: string;
}

export interface ServiceRegistration {
  id: string;
  name: string;
  address?: string;
  port?: number;
  tags?: string[];
  meta?: Record<string, string>;
  enableTagOverride?: boolean;
  checks: TtlCheck[];
}

export interface SessionOptions {
  name: string;
  node?: string;
  /** Check IDs of service checks the session follows (e.g. `service:mysql-node1`). */
  serviceChecks?: string[];
  /** Node checks; default none, so only the service checks decide (not serfHealth). */
  nodeChecks?: string[];
  /** e.g. "15s"; the server clamps to [session_ttl_min, 24h]. */
  ttl?: string;
  /** e.g. "5s"; "0s" disables lock-delay. */
  lockDelay: string;
  behavior?: "release" | "delete";
}

export interface KvEntry {
  key: string;
  value: string | null;
  session?: string | undefined;
  lockIndex: number;
  modifyIndex: number;
  createIndex: number;
  flags: number;
}

export interface BlockingOptions {
  index?: number;
  /** e.g. "30s" */
  wait?: string;
  signal?: AbortSignal;
}

export interface Indexed<T> {
  value: T;
  index: number;
}

/** Called after every request, for latency and error metrics. */
export type RequestObserver = (endpoint: string, durationMs: number, outcome: "ok" | "error") => void;

/** An HTTP error from Consul, with the status and the body text that papi folds away. */
export class ConsulHttpError extends Error {
  constructor(
    readonly endpoint: string,
    readonly statusCode: number,
    readonly body: string,
    /** The response's X-Consul-Index (a 404 of a blocking read carries the index to block on next), when it had one. */
    readonly index?: number,
  ) {
    super(`consul ${endpoint}: HTTP ${statusCode}${body ? `: ${body.slice(0, 300)}` : ""}`);
    this.name = "ConsulHttpError";
  }
}

/** The index a 404 of a blocking read says to block on next: its X-Consul-Index, at least 1 (0 would never block). */
function blockOn(err: ConsulHttpError, asked: number | undefined): number {
  return Math.max(1, err.index ?? asked ?? 1);
}

/** The parts of papi's transport (the `consul` package's base class) that we call for endpoints the package lacks. */
interface PapiRequest {
  name: string;
  path: string;
  params?: Record<string, string>;
  query?: Record<string, string | number | boolean>;
  headers?: Record<string, string>;
  body?: unknown;
  type?: "json";
  timeout?: number;
  ctx?: EventEmitter;
}
interface PapiResponse {
  statusCode: number;
  headers: Record<string, string | string[] | undefined>;
  body?: unknown;
}
interface PapiTransport {
  _get(req: PapiRequest): Promise<PapiResponse>;
  _put(req: PapiRequest): Promise<PapiResponse>;
  _delete(req: PapiRequest): Promise<PapiResponse>;
}
interface PapiError {
  isResponse?: boolean;
  isTimeout?: boolean;
  isAbort?: boolean;
  response?: PapiResponse;
  message: string;
}

function decodeBase64(v: unknown): string | null {
  return typeof v === "string" ? Buffer.from(v, "base64").toString("utf8") : null;
}

/** KV writes and deletes answer a bare `true` or `false`, decoded or not depending on the content type. */
function consulTrue(body: unknown): boolean {
  return body === true || (typeof body === "string" && body.trim() === "true") || (body instanceof Buffer && body.toString().trim() === "true");
}

function toKvEntry(raw: Record<string, unknown>): KvEntry {
  return {
    key: String(raw.Key),
    value: decodeBase64(raw.Value),
    session: typeof raw.Session === "string" && raw.Session ? raw.Session : undefined,
    lockIndex: Number(raw.LockIndex ?? 0),
    modifyIndex: Number(raw.ModifyIndex ?? 0),
    createIndex: Number(raw.CreateIndex ?? 0),
    flags: Number(raw.Flags ?? 0),
  };
}

/**
 * Our typed face of Consul. Requests go through the `consul` package's transport (keep-alive agent,
 * TLS, error decoding) with our token and datacenter; we add what the package drops: session
 * ServiceChecks/NodeChecks and a numeric lock-delay, check updates with output in the body,
 * replace-existing-checks and EnableTagOverride on registration, and X-Consul-Index plus
 * Session on reads.
 */
export class ConsulClient {
  private readonly consul: Consul;
  private readonly transport: PapiTransport;
  private readonly token: string | undefined;
  private readonly timeoutMs: number;
  observer: RequestObserver | undefined;

  constructor(readonly connection: ConsulConnection) {
    const url = new URL(connection.address);
    const secure = url.protocol === "https:";
    const agent = secure ? new HttpsAgent(consulAgentOptions(connection)) : new HttpAgent({ keepAlive: true });
    this.token = connection.token;
    this.timeoutMs = connection.timeoutMs ?? 5_000;
    this.consul = new Consul({
      host: url.hostname,
      port: Number(url.port || (secure ? 443 : 80)),
      secure,
      agent,
    });
    this.transport = this.consul as unknown as PapiTransport;
  }

  close(): void {
    this.consul.destroy();
  }

  private async request(method: "GET" | "PUT" | "DELETE", endpoint: string, req: Omit<PapiRequest, "name">, signal?: AbortSignal): Promise<PapiResponse> {
    const started = performance.now();
    const ctx = new EventEmitter();
    const onAbort = () => ctx.emit("cancel");
    signal?.addEventListener("abort", onAbort, { once: true });
    const headers = { ...(req.headers ?? {}), ...(this.token ? { "x-consul-token": this.token } : {}) };
    const query = { ...(req.query ?? {}) };
    // Agent endpoints are local to the agent; everything else can target the configured datacenter.
    if (this.connection.datacenter && query.dc === undefined && !req.path.startsWith("/agent/")) query.dc = this.connection.datacenter;
    try {
      const full: PapiRequest = { ...req, name: endpoint, headers, query, ctx, timeout: req.timeout ?? this.timeoutMs };
      const res = method === "GET" ? await this.transport._get(full) : method === "PUT" ? await this.transport._put(full) : await this.transport._delete(full);
      this.observer?.(endpoint, performance.now() - started, "ok");
      return res;
    } catch (err) {
      this.observer?.(endpoint, performance.now() - started, "error");
      const e = err as PapiError;
      if (e.isResponse && e.response) {
        const body = e.response.body;
        const index = e.response.headers ? ConsulClient.index(e.response) : undefined;
        throw new ConsulHttpError(endpoint, e.response.statusCode, typeof body === "string" ? body : body instanceof Buffer ? body.toString("utf8") : JSON.stringify(body ?? ""), index);
      }
      throw err;
    } finally {
      signal?.removeEventListener("abort", onAbort);
    }
  }

  private static index(res: PapiResponse): number {
    const raw = res.headers["x-consul-index"];
    const n = Number(Array.isArray(raw) ? raw[0] : raw);
    return Number.isFinite(n) && n >= 1 ? n : 1;
  }

  private blockingTimeout(wait: string | undefined): number {
    // The server adds up to wait/16 of jitter.
    if (!wait) return this.timeoutMs;
    const ms = parseDuration(wait);
    if (ms === undefined) throw new Error(`invalid blocking wait ${JSON.stringify(wait)}`);
    return ms * 1.0625 + 5_000;
  }

  // --- services and checks ------------------------------------------------------------------

  async registerService(reg: ServiceRegistration): Promise<void> {
    const body = {
      ID: reg.id,
      Name: reg.name,
      ...(reg.address ? { Address: reg.address } : {}),
      ...(reg.port !== undefined ? { Port: reg.port } : {}),
      Tags: reg.tags ?? [],
      Meta: reg.meta ?? {},
      EnableTagOverride: reg.enableTagOverride ?? false,
      Checks: reg.checks.map((c) => ({
        CheckID: c.checkId,
        Name: c.name ?? c.checkId,
        TTL: c.ttl,
        Status: c.status ?? "critical",
        ...(c.notes ? { Notes: c.notes } : {}),
        ...(c.deregisterCriticalServiceAfter ? { DeregisterCriticalServiceAfter: c.deregisterCriticalServiceAfter } : {}),
      })),
    };
    await this.request("PUT", "agent.service.register", {
      path: "/agent/service/register",
      query: { "replace-existing-checks": "true" },
      type: "json",
      body,
    });
  }

  async deregisterService(id: string): Promise<void> {
    await this.request("PUT", "agent.service.deregister", { path: "/agent/service/deregister/{id}", params: { id } });
  }

  /** Sets a TTL check's status with its output (capped at 4 KB by the agent). Throws ConsulHttpError if the agent does not know the check. */
  async updateTtlCheck(checkId: string, status: CheckStatus, output: string): Promise<void> {
    await this.request("PUT", "agent.check.update", {
      path: "/agent/check/update/{id}",
      params: { id: checkId },
      type: "json",
      body: { Status: status, Output: output.slice(0, 4096) },
    });
  }

  async setServiceMaintenance(id: string, enable: boolean, reason = ""): Promise<void> {
    await this.request("PUT", "agent.service.maintenance", {
      path: "/agent/service/maintenance/{id}",
      params: { id },
      query: { enable: String(enable), ...(reason ? { reason } : {}) },
    });
  }

  async healthService(name: string, opts: BlockingOptions & { passing?: boolean; tag?: string; datacenter?: string } = {}): Promise<Indexed<ServiceInstance[]>> {
    const query: Record<string, string | number> = {};
    if (opts.passing) query.passing = "1";
    if (opts.tag) query.tag = opts.tag;
    if (opts.datacenter) query.dc = opts.datacenter;
    if (opts.index !== undefined) query.index = opts.index;
    if (opts.wait) query.wait = opts.wait;
    const res = await this.request(
      "GET",
      "health.service",
      { path: "/health/service/{name}", params: { name }, query, timeout: this.blockingTimeout(opts.wait) },
      opts.signal,
    );
    const rows = (res.body ?? []) as Array<{
      Node: { Node: string; Address: string };
      Service: { ID: string; Service: string; Address: string; Port: number; Tags: string[] | null; Meta: Record<string, string> | null };
      Checks: Array<{ CheckID: string; Name: string; Status: CheckStatus; Output: string; ServiceID: string }>;
    }>;
    const value = rows.map((r) => {
      const checks = r.Checks.map((c) => ({ checkId: c.CheckID, name: c.Name, status: c.Status, output: c.Output, serviceId: c.ServiceID }));
      return {
        node: r.Node.Node,
        id: r.Service.ID,
        name: r.Service.Service,
        address: r.Service.Address || r.Node.Address,
        port: r.Service.Port,
        tags: r.Service.Tags ?? [],
        meta: r.Service.Meta ?? {},
        checks,
        healthy: checks.every((c) => c.status === "passing"),
      };
    });
    return { value, index: ConsulClient.index(res) };
  }

  // --- sessions ----------------------------------------------------------------------------

  async createSession(opts: SessionOptions): Promise<string> {
    const body: Record<string, unknown> = {
      Name: opts.name,
      LockDelay: opts.lockDelay,
      Behavior: opts.behavior ?? "release",
      NodeChecks: opts.nodeChecks ?? [],
      ServiceChecks: (opts.serviceChecks ?? []).map((id) => ({ ID: id })),
    };
    if (opts.node) body.Node = opts.node;
    if (opts.ttl) body.TTL = opts.ttl;
    const res = await this.request("PUT", "session.create", { path: "/session/create", type: "json", body });
    const id = (res.body as { ID?: string } | undefined)?.ID;
    if (!id) throw new Error("consul session.create: no session ID in the response");
    return id;
  }

  /** Renews a session; returns the TTL the server granted, or "gone" when the session was invalidated (404). */
  async renewSession(id: string): Promise<{ ttl: string | undefined } | "gone"> {
    try {
      const res = await this.request("PUT", "session.renew", { path: "/session/renew/{id}", params: { id } });
      const arr = res.body as Array<{ TTL?: string }> | undefined;
      return { ttl: arr?.[0]?.TTL || undefined };
    } catch (err) {
      if (err instanceof ConsulHttpError && err.statusCode === 404) return "gone";
      throw err;
    }
  }

  async destroySession(id: string): Promise<void> {
    await this.request("PUT", "session.destroy", { path: "/session/destroy/{id}", params: { id } });
  }

  async sessionExists(id: string): Promise<boolean> {
    const res = await this.request("GET", "session.info", { path: "/session/info/{id}", params: { id } });
    return Array.isArray(res.body) && res.body.length > 0;
  }

  // --- KV --------------------------------------------------------------------------------------

  /** Reads a key; `value` is undefined when the key does not exist (the index is still returned). */
  async kvGet(key: string, opts: BlockingOptions = {}): Promise<Indexed<KvEntry | undefined>> {
    const query: Record<string, string | number> = {};
    if (opts.index !== undefined) query.index = opts.index;
    if (opts.wait) query.wait = opts.wait;
    try {
      const res = await this.request("GET", "kv.get", { path: "/kv/{key}", params: { key }, query, timeout: this.blockingTimeout(opts.wait) }, opts.signal);
      const arr = res.body as Array<Record<string, unknown>> | undefined;
      return { value: arr?.[0] ? toKvEntry(arr[0]) : undefined, index: ConsulClient.index(res) };
    } catch (err) {
      // A missing key still has an index (the KV table's) to block on next: a caller that looped
      // on index 0 instead got an instant answer every time, and span (40 % of a core per node, idle).
      if (err instanceof ConsulHttpError && err.statusCode === 404) return { value: undefined, index: blockOn(err, opts.index) };
      throw err;
    }
  }

  /** Every key under a prefix (recurse); an empty list when there is none. */
  async kvList(prefix: string, opts: BlockingOptions = {}): Promise<Indexed<KvEntry[]>> {
    const query: Record<string, string | number> = { recurse: "true" };
    if (opts.index !== undefined) query.index = opts.index;
    if (opts.wait) query.wait = opts.wait;
    try {
      const res = await this.request("GET", "kv.list", { path: "/kv/{key}", params: { key: prefix }, query, timeout: this.blockingTimeout(opts.wait) }, opts.signal);
      const arr = (res.body as Array<Record<string, unknown>> | undefined) ?? [];
      return { value: arr.map(toKvEntry), index: ConsulClient.index(res) };
    } catch (err) {
      if (err instanceof ConsulHttpError && err.statusCode === 404) return { value: [], index: blockOn(err, opts.index) };
      throw err;
    }
  }

  async kvDelete(key: string, opts: { cas?: number } = {}): Promise<boolean> {
    const res = await this.request("DELETE", "kv.delete", { path: "/kv/{key}", params: { key }, query: opts.cas !== undefined ? { cas: opts.cas } : {} });
    return consulTrue(res.body);
  }

  private async kvWrite(endpoint: string, key: string, value: string, query: Record<string, string | number>): Promise<boolean> {
    const res = await this.request("PUT", endpoint, {
      path: "/kv/{key}",
      params: { key },
      query,
      headers: { "content-type": "application/octet-stream" },
      body: Buffer.from(value, "utf8"),
    });
    return consulTrue(res.body);
  }

  async kvPut(key: string, value: string, opts: { cas?: number } = {}): Promise<boolean> {
    return this.kvWrite("kv.put", key, value, opts.cas !== undefined ? { cas: opts.cas } : {});
  }

  /** `false` while another session holds the key or the key is under lock-delay; throws if the session is invalid. */
  async kvAcquire(key: string, value: string, sessionId: string): Promise<boolean> {
    return this.kvWrite("kv.acquire", key, value, { acquire: sessionId });
  }

  /** Release is a write: the value given replaces the stored one. */
  async kvRelease(key: string, value: string, sessionId: string): Promise<boolean> {
    return this.kvWrite("kv.release", key, value, { release: sessionId });
  }
}
