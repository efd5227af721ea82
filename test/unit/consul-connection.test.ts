import { execFileSync } from "node:child_process";
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:https";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { PeerCertificate } from "node:tls";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConfigError, parseConfigText } from "../../src/config/load.js";
import { ConsulClient } from "../../src/discovery/consul/client.js";
import { consulAgentOptions, parseEnvBool, resolveConsulConnection } from "../../src/discovery/consul/connection.js";

const dir = mkdtempSync(join(tmpdir(), "statepilot-consul-conn-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const file = (name: string, text: string) => {
  writeFileSync(join(dir, name), text);
  return join(dir, name);
};
const settings = (text = "{}") => parseConfigText(`{ consul: ${text} }`, {}).consul;
const resolve = (env: NodeJS.ProcessEnv, text?: string) => resolveConsulConnection(settings(text), env);

function configError(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error("no ConfigError");
}

describe("Consul connection options", () => {
  it("the address: config, then CONSUL_HTTP_ADDR (empty is unset), then the local agent; CONSUL_HTTP_SSL picks https", () => {
    expect(resolve({}).address).toBe("http://127.0.0.1:8500");
    expect(resolve({ CONSUL_HTTP_ADDR: "" }).address).toBe("http://127.0.0.1:8500");
    expect(resolve({ CONSUL_HTTP_ADDR: "consul:8500" }).address).toBe("http://consul:8500");
    expect(resolve({ CONSUL_HTTP_ADDR: "consul:8501", CONSUL_HTTP_SSL: "true" }).address).toBe("https://consul:8501");
    expect(resolve({ CONSUL_HTTP_ADDR: "HTTPS://Consul:8501" }).address).toBe("https://consul:8501");
    expect(resolve({ CONSUL_HTTP_ADDR: "other:1" }, '{ address: "mine:8500" }').address).toBe("http://mine:8500");
  });

  it("a bad CONSUL_HTTP_ADDR or CONSUL_HTTP_SSL names the variable and the value", () => {
    const addr = configError(() => resolve({ CONSUL_HTTP_ADDR: "ftp://consul:21" }));
    expect(addr.problems[0]).toMatchObject({ path: "CONSUL_HTTP_ADDR", value: '"ftp://consul:21"' });
    expect(addr.exitCode).toBe(2);
    const ssl = configError(() => resolve({ CONSUL_HTTP_SSL: "yes" }));
    expect(ssl.problems[0]).toMatchObject({ path: "CONSUL_HTTP_SSL", value: '"yes"' });
  });

  it("parses booleans as Consul does (Go's strconv.ParseBool)", () => {
    for (const t of ["1", "t", "T", "true", "TRUE", "True"]) expect(parseEnvBool({ X: t }, "X")).toBe(true);
    for (const f of ["0", "f", "F", "false", "FALSE", "False"]) expect(parseEnvBool({ X: f }, "X")).toBe(false);
    expect(parseEnvBool({ X: "" }, "X")).toBeUndefined();
    expect(() => parseEnvBool({ X: "nope" }, "X")).toThrow(/X: expected true or false \(got "nope"\)/);
  });

  it("the token: consul.token, else the CONSUL_HTTP_TOKEN_FILE content (trimmed; wins over CONSUL_HTTP_TOKEN, as in Consul), else CONSUL_HTTP_TOKEN", () => {
    const tokenFile = file("token", "  file-token-123\n");
    expect(resolve({ CONSUL_HTTP_TOKEN: "env-token" }).token).toBe("env-token");
    expect(resolve({ CONSUL_HTTP_TOKEN_FILE: tokenFile }).token).toBe("file-token-123");
    expect(resolve({ CONSUL_HTTP_TOKEN_FILE: tokenFile, CONSUL_HTTP_TOKEN: "env-token" }).token).toBe("file-token-123");
    expect(resolve({ CONSUL_HTTP_TOKEN_FILE: tokenFile, CONSUL_HTTP_TOKEN: "env-token" }, '{ token: "cfg-token" }').token).toBe("cfg-token");
    expect(resolve({ CONSUL_HTTP_TOKEN_FILE: file("empty", "\n"), CONSUL_HTTP_TOKEN: "env-token" }).token).toBe("env-token");
    expect(resolve({}).token).toBeUndefined();
  });

  it("an unreadable CONSUL_HTTP_TOKEN_FILE names the variable and the path, keeps the cause, never shows a token", () => {
    const missing = join(dir, "no-such-token");
    const err = configError(() => resolve({ CONSUL_HTTP_TOKEN_FILE: missing, CONSUL_HTTP_TOKEN: "env-secret-tok" }));
    expect(err.problems[0]).toMatchObject({ path: "CONSUL_HTTP_TOKEN_FILE", value: JSON.stringify(missing) });
    expect(err.message).toContain("ENOENT");
    expect(err.message).not.toContain("env-secret-tok");
    expect((err.cause as NodeJS.ErrnoException).code).toBe("ENOENT");
    if (process.getuid?.() !== 0) {
      const locked = file("locked", "secret-file-tok");
      chmodSync(locked, 0o000);
      const denied = configError(() => resolve({ CONSUL_HTTP_TOKEN_FILE: locked }));
      expect(denied.message).toContain("EACCES");
      expect(denied.message).not.toContain("secret-file-tok");
    }
  });

  it("CONSUL_TLS_SERVER_NAME: a host name is sent as SNI and checked against the certificate; a port is dropped as Consul does", () => {
    const c = resolve({ CONSUL_TLS_SERVER_NAME: "consul.example:8501" });
    expect(c.tlsServerName).toBe("consul.example");
    const opts = consulAgentOptions(c);
    expect(opts.servername).toBe("consul.example");
    const cert = (name: string) => ({ subject: { CN: name }, subjectaltname: `DNS:${name}` }) as unknown as PeerCertificate;
    expect(opts.checkServerIdentity!("127.0.0.1", cert("consul.example"))).toBeUndefined();
    expect(opts.checkServerIdentity!("consul.example", cert("evil.example"))).toBeInstanceOf(Error);
    // SNI carries no IP addresses: an IP is only checked.
    const ip = consulAgentOptions(resolve({ CONSUL_TLS_SERVER_NAME: "[fd00::1]:8501" }));
    expect(ip.servername).toBeUndefined();
    expect(ip.checkServerIdentity).toBeTypeOf("function");
    expect(consulAgentOptions(resolve({})).checkServerIdentity).toBeUndefined();
  });

  it("CONSUL_HTTP_SSL_VERIFY=false turns verification off; true, unset or a bad value does not", () => {
    expect(consulAgentOptions(resolve({ CONSUL_HTTP_SSL_VERIFY: "false" })).rejectUnauthorized).toBe(false);
    expect(resolve({ CONSUL_HTTP_SSL_VERIFY: "0" }).tlsSkipVerify).toBe(true);
    expect(consulAgentOptions(resolve({ CONSUL_HTTP_SSL_VERIFY: "true" })).rejectUnauthorized).toBeUndefined();
    expect(resolve({}).tlsSkipVerify).toBe(false);
    expect(configError(() => resolve({ CONSUL_HTTP_SSL_VERIFY: "off" })).problems[0]).toMatchObject({ path: "CONSUL_HTTP_SSL_VERIFY", value: '"off"' });
  });

  it("a missing CA, certificate or key file names its variable (or config key) and the path, also from the client", () => {
    const missing = join(dir, "missing-ca.pem");
    const fromEnv = configError(() => consulAgentOptions(resolve({ CONSUL_CACERT: missing })));
    expect(fromEnv.problems[0]).toMatchObject({ path: "CONSUL_CACERT", message: "cannot read the CA certificate file: ENOENT", value: JSON.stringify(missing) });
    const fromConfig = configError(() => consulAgentOptions(resolve({}, `{ caFile: ${JSON.stringify(missing)} }`)));
    expect(fromConfig.problems[0]?.path).toBe("consul.caFile");
    const client = configError(() => new ConsulClient(resolve({ CONSUL_HTTP_ADDR: "https://127.0.0.1:8501", CONSUL_CACERT: missing })));
    expect(client.message).toContain(`CONSUL_CACERT: cannot read the CA certificate file: ENOENT (got ${JSON.stringify(missing)})`);
    const lonely = configError(() => consulAgentOptions(resolve({ CONSUL_CLIENT_CERT: file("cert.pem", "x") })));
    expect(lonely.problems[0]).toMatchObject({ path: "CONSUL_CLIENT_KEY", message: "a client certificate and its key go together" });
  });
});

let openssl = true;
try {
  execFileSync("openssl", ["version"], { stdio: "ignore" });
} catch {
  openssl = false;
}

describe.skipIf(!openssl)("Consul over TLS with a certificate for another name than the address", () => {
  let server: Server;
  let address = "";
  let seenSni: string | false | null = false;
  let caFile = "";
  beforeAll(async () => {
    const key = join(dir, "server.key");
    caFile = join(dir, "server.pem");
    execFileSync("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", caFile, "-days", "2", "-subj", "/CN=consul.test", "-addext", "subjectAltName=DNS:consul.test"], { stdio: "ignore" });
    server = createServer({ key: readFileSync(key), cert: readFileSync(caFile) }, (req, res) => {
      seenSni = (req.socket as import("node:tls").TLSSocket).servername;
      res.writeHead(200, { "content-type": "application/json", "x-consul-index": "7" }).end("[]");
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
    address = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(() => new Promise<void>((r) => server.close(() => r())));

  const list = async (env: NodeJS.ProcessEnv) => {
    const client = new ConsulClient(resolve({ CONSUL_HTTP_ADDR: address, ...env }));
    try {
      return await client.kvList("x");
    } finally {
      client.close();
    }
  };

  it("is refused without CONSUL_TLS_SERVER_NAME (the certificate does not name 127.0.0.1)", async () => {
    await expect(list({ CONSUL_CACERT: caFile })).rejects.toThrow(/consul\.test|altnames|IP: 127\.0\.0\.1/);
  });

  it("is accepted with CONSUL_TLS_SERVER_NAME, which is also the SNI", async () => {
    await expect(list({ CONSUL_CACERT: caFile, CONSUL_TLS_SERVER_NAME: "consul.test" })).resolves.toMatchObject({ index: 7 });
    expect(seenSni).toBe("consul.test");
  });

  it("is refused with another server name, and accepted with no CA at all only when CONSUL_HTTP_SSL_VERIFY=false", async () => {
    await expect(list({ CONSUL_CACERT: caFile, CONSUL_TLS_SERVER_NAME: "other.test" })).rejects.toThrow();
    await expect(list({})).rejects.toThrow();
    await expect(list({ CONSUL_HTTP_SSL_VERIFY: "false" })).resolves.toMatchObject({ index: 7 });
  });
});
