import { readFileSync } from "node:fs";
import type { AgentOptions } from "node:https";
import { isIP } from "node:net";
import { checkServerIdentity, type PeerCertificate } from "node:tls";
import { ConfigError } from "../../config/load.js";
import type { Config } from "../../config/schema.js";
import { parseConsulAddress } from "../address.js";
import type { ConsulConnection } from "./client.js";

/** The source named by errors about the CONSUL_* variables. */
const ENV = "environment";

/** A variable's value; empty counts as unset, as in Consul's own tools. */
function envValue(env: NodeJS.ProcessEnv, name: string): string | undefined {
  const v = env[name];
  return v === undefined || v === "" ? undefined : v;
}

/** Go's strconv.ParseBool, which Consul reads its boolean variables with; anything else is an error naming the variable. */
export function parseEnvBool(env: NodeJS.ProcessEnv, name: string): boolean | undefined {
  const v = envValue(env, name);
  if (v === undefined) return undefined;
  if (["1", "t", "T", "TRUE", "true", "True"].includes(v)) return true;
  if (["0", "f", "F", "FALSE", "false", "False"].includes(v)) return false;
  throw new ConfigError(ENV, [{ path: name, message: "expected true or false", value: JSON.stringify(v) }]);
}

/** A file named by a setting; an error naming the setting (config key or variable) and the path when it cannot be read. */
function readNamedFile(file: string, origin: string, what: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? "error";
    throw new ConfigError(origin.startsWith("consul.") ? "config" : ENV, [{ path: origin, message: `cannot read the ${what} file: ${code}`, value: JSON.stringify(file) }], { cause: err });
  }
}

/**
 * Config values win over the standard CONSUL_* variables; the address defaults to the local agent.
 * The token comes from consul.token, else the file CONSUL_HTTP_TOKEN_FILE names (read once, here;
 * Consul's api package lets a non-empty token file win over CONSUL_HTTP_TOKEN), else
 * CONSUL_HTTP_TOKEN. A bad variable or an unreadable token file is a ConfigError naming it.
 */
export function resolveConsulConnection(settings: Config["consul"], env: NodeJS.ProcessEnv): ConsulConnection {
  const tls = parseEnvBool(env, "CONSUL_HTTP_SSL") ?? false;
  const envAddress = envValue(env, "CONSUL_HTTP_ADDR");
  let address: string;
  try {
    address = parseConsulAddress(settings.address ?? envAddress ?? "127.0.0.1:8500", tls);
  } catch (err) {
    const [source, path] = settings.address !== undefined ? ["config", "consul.address"] : [ENV, "CONSUL_HTTP_ADDR"];
    throw new ConfigError(source, [{ path, message: (err as Error).message, value: JSON.stringify(settings.address ?? envAddress) }], { cause: err });
  }
  const tokenFile = envValue(env, "CONSUL_HTTP_TOKEN_FILE");
  const fromFile = settings.token === undefined && tokenFile ? readNamedFile(tokenFile, "CONSUL_HTTP_TOKEN_FILE", "token").toString("utf8").trim() : "";
  let tlsServerName = envValue(env, "CONSUL_TLS_SERVER_NAME");
  // As Consul does: a port is dropped ("consul.example:8501" names the host), brackets too.
  if (tlsServerName && tlsServerName.lastIndexOf(":") > tlsServerName.lastIndexOf("]") && !isIP(tlsServerName)) tlsServerName = tlsServerName.slice(0, tlsServerName.lastIndexOf(":"));
  tlsServerName = tlsServerName?.replace(/^\[(.*)\]$/, "$1");
  const origin = (key: "caFile" | "certFile" | "keyFile", name: string) => (settings[key] !== undefined ? `consul.${key}` : name);
  return {
    address,
    token: settings.token ?? (fromFile || envValue(env, "CONSUL_HTTP_TOKEN")),
    datacenter: settings.datacenter,
    caFile: settings.caFile ?? envValue(env, "CONSUL_CACERT"),
    certFile: settings.certFile ?? envValue(env, "CONSUL_CLIENT_CERT"),
    keyFile: settings.keyFile ?? envValue(env, "CONSUL_CLIENT_KEY"),
    origins: { caFile: origin("caFile", "CONSUL_CACERT"), certFile: origin("certFile", "CONSUL_CLIENT_CERT"), keyFile: origin("keyFile", "CONSUL_CLIENT_KEY") },
    tlsServerName: tlsServerName || undefined,
    tlsSkipVerify: parseEnvBool(env, "CONSUL_HTTP_SSL_VERIFY") === false,
    timeoutMs: settings.timeout,
  };
}

/**
 * The HTTPS agent options of a connection: CA, client certificate and key read from their files (an
 * unreadable one is a ConfigError naming its setting and path), the certificate name to check (and
 * send as SNI), and no verification at all when CONSUL_HTTP_SSL_VERIFY=false.
 */
export function consulAgentOptions(c: ConsulConnection): AgentOptions {
  const origins = c.origins ?? {};
  if (Boolean(c.certFile) !== Boolean(c.keyFile)) {
    throw new ConfigError(ENV, [{ path: c.certFile ? (origins.keyFile ?? "keyFile") : (origins.certFile ?? "certFile"), message: "a client certificate and its key go together" }]);
  }
  const read = (key: "caFile" | "certFile" | "keyFile", what: string) => {
    const file = c[key];
    return file ? readNamedFile(file, origins[key] ?? key, what) : undefined;
  };
  const name = c.tlsServerName;
  return {
    keepAlive: true,
    ca: read("caFile", "CA certificate"),
    cert: read("certFile", "client certificate"),
    key: read("keyFile", "client key"),
    // SNI takes host names only; the certificate check takes either.
    ...(name && !isIP(name) ? { servername: name } : {}),
    ...(name ? { checkServerIdentity: (_host: string, cert: PeerCertificate) => checkServerIdentity(name, cert) } : {}),
    ...(c.tlsSkipVerify ? { rejectUnauthorized: false } : {}),
  };
}

/** Whether a config talks to Consul at all (else its CONSUL_* settings do not matter). */
export function configUsesConsul(config: Config): boolean {
  return config.mysql !== undefined || config.watches.length > 0 || config.jobs.some((j) => j.service) || config.telemetry?.register === true;
}
