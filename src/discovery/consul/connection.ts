import type { Config } from "../../config/schema.js";
import type { ConsulConnection } from "./client.js";

/** Config values win over the standard CONSUL_* variables; the address defaults to the local agent. */
export function resolveConsulConnection(settings: Config["consul"], env: NodeJS.ProcessEnv): ConsulConnection {
  let address = settings.address ?? env.CONSUL_HTTP_ADDR ?? "http://127.0.0.1:8500";
  if (!/^https?:\/\//.test(address)) {
    const tls = env.CONSUL_HTTP_SSL === "true" || env.CONSUL_HTTP_SSL === "1";
    address = `${tls ? "https" : "http"}://${address}`;
  }
  return {
    address,
    token: settings.token ?? env.CONSUL_HTTP_TOKEN,
    datacenter: settings.datacenter,
    caFile: settings.caFile ?? env.CONSUL_CACERT,
    certFile: settings.certFile ?? env.CONSUL_CLIENT_CERT,
    keyFile: settings.keyFile ?? env.CONSUL_CLIENT_KEY,
    timeoutMs: settings.timeout,
  };
}
