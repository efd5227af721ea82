import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import type { Etcd3, IOptions } from "etcd3";

/**
 * etcd3 (and gRPC with its protobuf definitions under it) is loaded when the first etcd client is
 * made, not at start-up: the CLI and nodes on Consul do not pay for it.
 */
function etcd3(): typeof import("etcd3") {
  return createRequire(import.meta.url)("etcd3") as typeof import("etcd3");
}

/** How statepilot reaches etcd (the `store` section of the config with `type: etcd`, resolved). */
export interface EtcdConnectionSettings {
  /** `host:port`, `http://host:port` or `https://host:port`. */
  endpoints: readonly string[];
  username?: string | undefined;
  password?: string | undefined;
  tls?: { ca: Buffer; cert?: Buffer | undefined; key?: Buffer | undefined } | undefined;
  /** Deadline of every unary call (reads, writes, lease grants and revokes). */
  timeoutMs: number;
}

/** The written form (file names, as in the config), before files and the environment are read. */
export interface EtcdConnectionConfig {
  endpoints: readonly string[];
  username?: string | undefined;
  passwordFile?: string | undefined;
  tls?: { caFile: string; certFile?: string | undefined; keyFile?: string | undefined } | undefined;
  timeout: number;
}

/** The variable the etcd password comes from when no passwordFile is configured. */
export const ETCD_PASSWORD_ENV = "STATEPILOT_ETCD_PASSWORD";

function readNamed(path: string, what: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new Error(`store.${what}: cannot read ${path}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
}

/** Reads the files and the environment the config names; an unreadable one is an error naming the setting. */
export function resolveEtcdConnection(cfg: EtcdConnectionConfig, env: NodeJS.ProcessEnv = process.env): EtcdConnectionSettings {
  const password = cfg.passwordFile ? readNamed(cfg.passwordFile, "passwordFile").toString("utf8").replace(/\r?\n$/, "") : env[ETCD_PASSWORD_ENV];
  if (password !== undefined && !cfg.username) throw new Error(`store: a password is set (${cfg.passwordFile ? "passwordFile" : `$${ETCD_PASSWORD_ENV}`}) but no username`);
  if (cfg.username && password === undefined) throw new Error(`store: username ${cfg.username} has no password: set store.passwordFile or $${ETCD_PASSWORD_ENV}`);
  const tls = cfg.tls
    ? {
        ca: readNamed(cfg.tls.caFile, "tls.caFile"),
        cert: cfg.tls.certFile ? readNamed(cfg.tls.certFile, "tls.certFile") : undefined,
        key: cfg.tls.keyFile ? readNamed(cfg.tls.keyFile, "tls.keyFile") : undefined,
      }
    : undefined;
  return { endpoints: cfg.endpoints, username: cfg.username, password, tls, timeoutMs: cfg.timeout };
}

/** Describes the endpoints for error messages (never the credentials). */
export function describeEndpoints(s: Pick<EtcdConnectionSettings, "endpoints">): string {
  return s.endpoints.join(", ");
}

/**
 * An etcd3 client for these settings. Every unary call carries a deadline (the client's default is
 * none: a call to an unreachable endpoint would wait for ever); streams (watch, keep-alive) do not,
 * the store bounds them itself. The client's retries stay on (a call retried after it was applied is
 * one the store's operations are written to survive), its circuit breaker too.
 */
export function createEtcdClient(s: EtcdConnectionSettings): Etcd3 {
  const secure = s.endpoints.some((e) => e.startsWith("https://"));
  if (secure && !s.tls) throw new Error(`store: https endpoints (${describeEndpoints(s)}) need store.tls.caFile`);
  const options: IOptions = {
    hosts: s.endpoints.map((e) => e.replace(/^https?:\/\//, "")),
    dialTimeout: s.timeoutMs,
    defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + s.timeoutMs }),
  };
  if (s.tls) {
    options.credentials = { rootCertificate: s.tls.ca, ...(s.tls.key ? { privateKey: s.tls.key } : {}), ...(s.tls.cert ? { certChain: s.tls.cert } : {}) };
  }
  if (s.username !== undefined && s.password !== undefined) {
    options.auth = { username: s.username, password: s.password, callOptions: () => ({ deadline: Date.now() + s.timeoutMs }) };
  }
  return new (etcd3().Etcd3)(options);
}
