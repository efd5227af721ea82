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

/** The fault-handling library etcd3 is built on (loaded with it). */
function cockatiel(): typeof import("cockatiel") {
  return createRequire(import.meta.url)("cockatiel") as typeof import("cockatiel");
}

/**
 * How long a member that failed three calls in a row is left alone before it is tried again.
 * etcd3's default is 5 s: longer than a lease (2 s by default) and than `fenceAfter`, so an etcd
 * restart or leader change shorter than the lease still cost the primary its leadership, and a
 * returning etcd was not used for up to 5 s.
 */
export const ETCD_HOST_RETRY_MS = 500;

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

/**
 * The cause of a failed etcd call in an operator's words: gRPC's text without its status code and
 * connection boilerplate, led by what the usual configuration mistakes look like from here
 * (nothing listening, a wrong password, a certificate not trusted either way, TLS against a plain
 * server or the reverse). The original text stays at the end.
 */
export function explainEtcdError(err: unknown): string {
  const raw = err instanceof Error ? err.message : String(err);
  const text = raw
    .replace(/^\d+ [A-Z_]+: /, "")
    .replace(/^No connection established\. Last error: (Error: )?/, "")
    .replace(/\.? ?Resolution note: ?$/, "")
    .replace(/ \(\d{4}-\d\d-\d\dT[\d:.]+Z\)$/, "")
    .trim();
  const hints: Array<[RegExp, string]> = [
    [/ECONNREFUSED/, "nothing accepts connections there (is etcd running, and is this its client URL?)"],
    [/ETIMEDOUT|EHOSTUNREACH|ENETUNREACH|Deadline exceeded|deadline/i, "no answer in time (etcd down, or the network in between)"],
    [/Name resolution failed|ENOTFOUND|EAI_AGAIN/, "the host name does not resolve"],
    [/authentication failed|invalid user ID or password/, "authentication refused: wrong store.username or password (store.passwordFile or $STATEPILOT_ETCD_PASSWORD)"],
    [/user name is empty|invalid auth token|permission denied/, "authentication required or not allowed: set store.username and its password"],
    [/unable to verify|self[- ]signed|certificate has expired|does not match|UNABLE_TO_GET_ISSUER|unable to get (local )?issuer/i, "TLS: the server's certificate is not trusted with store.tls.caFile (or does not name this host)"],
    [/alert bad certificate|alert certificate required|alert unknown ca|alert handshake failure|certificate required/i, "TLS: the server refused this client (no client certificate, or one its CA did not sign: store.tls.certFile/keyFile)"],
    [/wrong version number|packet length too long|unknown protocol|record layer failure/i, "TLS against a server that speaks plain HTTP/2: use an http:// endpoint without store.tls"],
    [/Received HTTP status code|Protocol error|Connection dropped|ECONNRESET|Stream refused|^Failed to connect$/, "the server there does not answer etcd's gRPC as configured (a plain endpoint for a TLS-only etcd, or not an etcd client URL)"],
  ];
  const hint = hints.find(([re]) => re.test(text))?.[1];
  return hint ? `${hint}: ${text}` : text;
}

/** Describes the endpoints for error messages (never the credentials). */
export function describeEndpoints(s: Pick<EtcdConnectionSettings, "endpoints">): string {
  return s.endpoints.join(", ");
}

/**
 * An etcd3 client for these settings. Every unary call carries a deadline (the client's default is
 * none: a call to an unreachable endpoint would wait for ever); streams (watch, keep-alive) do not,
 * the store bounds them itself. The client's retries stay on (a call retried after it was applied is
 * one the store's operations are written to survive), its per-member circuit breaker too, but a
 * member it stopped calling is tried again after ETCD_HOST_RETRY_MS instead of 5 s.
 */
export function createEtcdClient(s: EtcdConnectionSettings): Etcd3 {
  const secure = s.endpoints.some((e) => e.startsWith("https://"));
  if (secure && !s.tls) throw new Error(`store: https endpoints (${describeEndpoints(s)}) need store.tls.caFile`);
  const { circuitBreaker, ConsecutiveBreaker, handleWhen } = cockatiel();
  const { isRecoverableError } = etcd3();
  const options: IOptions = {
    hosts: s.endpoints.map((e) => e.replace(/^https?:\/\//, "")),
    dialTimeout: s.timeoutMs,
    defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + s.timeoutMs }),
    faultHandling: { host: () => circuitBreaker(handleWhen(isRecoverableError), { halfOpenAfter: ETCD_HOST_RETRY_MS, breaker: new ConsecutiveBreaker(3) }) },
  };
  if (s.tls) {
    options.credentials = { rootCertificate: s.tls.ca, ...(s.tls.key ? { privateKey: s.tls.key } : {}), ...(s.tls.cert ? { certChain: s.tls.cert } : {}) };
  }
  if (s.username !== undefined && s.password !== undefined) {
    options.auth = { username: s.username, password: s.password, callOptions: () => ({ deadline: Date.now() + s.timeoutMs }) };
  }
  return new (etcd3().Etcd3)(options);
}
