import { afterAll, describe, expect, it } from "vitest";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConfigError, encodeConfig, loadConfigFile, parseConfigText } from "../../src/config/load.js";
import { maskSecrets } from "../../src/config/secrets.js";
import { resolveCredentials } from "../../src/mysql/credentials.js";

const env = { HOME: "/root", PORT: "3306", EMPTY: "", SECRET_TOKEN: "tok-123456" };

function problemsOf(text: string): ConfigError {
  try {
    parseConfigText(text, env, "test");
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error(`config was accepted: ${text}`);
}

const job = (extra: string) => `{ jobs: [ { name: "a", exec: "true" }, { name: "b", exec: "true" }, { name: "c", exec: "true", ${extra} } ] }`;

// [config text, path the error must name, text the message must contain]
const BROKEN: Array<[string, string, string]> = [
  ["{ jobs: [ { name: 'x', exec: 'true', bogus: 1 } ] }", "jobs[0].bogus", "unknown key"],
  ["{ unknownTop: true }", "unknownTop", "unknown key"],
  [job("health: { exec: 'true', interval: '5 seconds' }, service: { name: 's', port: 1 }"), "jobs[2].health.interval", "duration"],
  [job("health: { exec: 'true', interval: '5s', ttl: '2s' }, service: { name: 's', port: 1 }"), "jobs[2].health.ttl", "longer than interval"],
  [job("restarts: 'sometimes'"), "jobs[2].restarts", "never"],
  [job("restarts: -1"), "jobs[2].restarts", ">=0"],
  [job("stopSignal: 'SIGFOO'"), "jobs[2].stopSignal", "SIGTERM"],
  [job("stopTimeout: 10"), "jobs[2].stopTimeout", "duration"],
  [job("when: { source: 'a' }"), "jobs[2].when", "exactly one of once, each or interval"],
  [job("when: { source: 'nope', once: 'healthy' }"), "jobs[2].when.source", "unknown source"],
  [job("when: { source: 'a', once: 'exploded' }"), "jobs[2].when.once", "startup"],
  [job("when: { interval: '5s', source: 'a' }"), "jobs[2].when.source", "does not apply"],
  [job("exec: 42"), "jobs[2].exec", "expected a command"],
  [job("exec: []"), "jobs[2].exec", ">=1"],
  [job("service: { name: 's', port: 1 }"), "jobs[2].health", "needs a health check"],
  [job("health: { exec: 'true' }, service: { name: 's', port: 70000 }"), "jobs[2].service.port", "65535"],
  [job("health: { exec: 'true' }, service: { name: 's', port: 1, deregisterCriticalServiceAfter: '30s' }"), "jobs[2].service.deregisterCriticalServiceAfter", "1m"],
  [job("health: { exec: 'true' }, service: { name: 's', port: 1, initialStatus: 'green' }"), "jobs[2].service.initialStatus", "passing"],
  [job("name: 'a'"), "jobs[2].name", "duplicate job name"],
  [job("name: 'bad name'"), "jobs[2].name", "letters, digits"],
  [job("main: true, when: { once: 'startup' }"), "jobs[2].when", "main job starts at start-up"],
  [job("backoff: { multiplier: 0.5 }"), "jobs[2].backoff.multiplier", ">=1"],
  [job("env: { A: 1 }"), "jobs[2].env.A", "expected string"],
  [job("output: 'loud'"), "jobs[2].output", "raw"],
  [job("health: { exec: 'true', timeout: '20s', ttl: '15s' }, service: { name: 's', port: 1 }"), "jobs[2].health.timeout", "must not exceed ttl"],
  ["{ logging: { level: 'verbose' } }", "logging.level", "info"],
  ["{ consul: { timeout: 'soon' } }", "consul.timeout", "duration"],
  ["{ watches: [ { name: 'db' }, { name: 'db' } ] }", "watches[1].name", "duplicate watch"],
  ["{ jobs: [ { name: 'a', exec: 'x', main: true }, { name: 'b', exec: 'y', main: true } ] }", "jobs[1].main", "only one job can be main"],
  ["{ jobs: [ { exec: 'true' } ] }", "jobs[0].name", "required"],
  ["{ jobs: { name: 'a' } }", "jobs", "expected array"],
  ["{ node: '${MISSING:?set MISSING to the node name}' }", "node", "required variable MISSING is not set: set MISSING to the node name"],
  ["{ node: '${EMPTY:?must not be empty}' }", "node", "required variable EMPTY is empty: must not be empty"],
  ["{ node: '${not valid}' }", "node", "invalid interpolation"],
  ["{ jobs: [ }", "line 1, column 11", "not valid JSON5"],
  ["[1, 2]", "(root)", "expected an object"],
  ["{ mysql: { fenceAfter: '10s' } }", "mysql.fenceAfter", "shorter than min(checkTtl, sessionTtl) + lockDelay = 2500ms"],
  ["{ mysql: { checkTtl: '20s', lockDelay: '0s', fenceAfter: '12s' } }", "mysql.fenceAfter", "= 10s"],
  ["{ mysql: { interval: '2s', checkTtl: '5s', lockDelay: '2s', fenceAfter: '3s' } }", "mysql.fenceAfter", "at least 2 × interval"],
  ["{ mysql: { sessionTtl: '5s' } }", "mysql.sessionTtl", "10s to 24h"],
  ["{ mysql: { lockDelay: '2m', fenceAfter: '3s' } }", "mysql.lockDelay", "60s"],
  ["{ mysql: { port: 0 } }", "mysql.port", ">=1"],
  ["{ mysql: { lossless: { enabled: 'yes' } } }", "mysql.lossless.enabled", "boolean"],
  ["{ mysql: { cluster: 'my cluster' } }", "mysql.cluster", "letters, digits"],
  ["{ mysql: {}, jobs: [ { name: 'x', exec: 'true', main: true } ] }", "jobs[0].main", "mysqld is the main job"],
];

describe("mysql credentials", () => {
  const cfg = () => parseConfigText("{ mysql: {} }", {}).mysql!;

  it("fall back to the official images' variables", () => {
    const c = resolveCredentials(cfg(), { MARIADB_ROOT_PASSWORD: "r00t", MYSQL_REPL_PASSWORD: "rep", MYSQL_USER: "app", MARIADB_PASSWORD: "pw", MYSQL_DATABASE: "db" }, "env");
    expect(c).toEqual({ rootPassword: "r00t", database: "db", user: "app", password: "pw", replUser: "repl", replPassword: "rep" });
  });

  it("name every missing field and never the values", () => {
    let err: unknown;
    try {
      resolveCredentials(cfg(), { MYSQL_USER: "app", MYSQL_REPL_PASSWORD: "s3cr3t-value" }, "env");
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    const e = err as ConfigError;
    expect(e.problems.map((p) => p.path).sort()).toEqual(["mysql.credentials.password", "mysql.credentials.rootPassword"]);
    expect(e.message).toContain("MYSQL_ROOT_PASSWORD");
    expect(e.message).not.toContain("s3cr3t-value");
  });
});

describe("config validation", () => {
  it.each(BROKEN)("rejects %s at the path it names", (text, path, message) => {
    const err = problemsOf(text);
    expect(err.exitCode).toBe(2);
    const hit = err.problems.find((p) => p.path === path);
    expect(hit, `${err.message}`).toBeDefined();
    expect(`${hit!.message}`).toContain(message);
  });

  it("has at least 20 broken cases", () => {
    expect(BROKEN.length).toBeGreaterThanOrEqual(20);
  });

  it("names the offending value, and masks secrets", () => {
    const err = problemsOf("{ consul: { token: 42 }, jobs: [ { name: 'x', exec: 'true', timeout: 'soon' } ] }");
    expect(err.problems.find((p) => p.path === "jobs[0].timeout")?.value).toBe('"soon"');
    const secret = problemsOf("{ consul: { token: 'abcdef', timeout: 'x' }, bogus: 1 }");
    expect(secret.message).not.toContain("abcdef");
  });

  it("interpolates the environment in the compose style", () => {
    const c = parseConfigText(
      `{ node: "n-\${PORT}", jobs: [ { name: "db", exec: "mysqld --port=\${PORT} --x=\${UNSET:-dflt} --y=\${EMPTY-kept} --z=$$HOME" } ] }`,
      env,
    );
    expect(c.node).toBe("n-3306");
    expect(c.jobs[0]?.exec).toBe("mysqld --port=3306 --x=dflt --y= --z=$HOME");
  });

  it("fills defaults and renders back to the written form", () => {
    const c = parseConfigText(`{ consul: { token: "\${SECRET_TOKEN}" }, jobs: [ { name: "db", exec: ["x"], health: { exec: "true" }, service: { name: "db", port: 3306 } } ] }`, env);
    expect(c.jobs[0]?.health?.interval).toBe(5000);
    expect(c.jobs[0]?.restarts).toBe("never");
    const rendered = maskSecrets(encodeConfig(c));
    expect(rendered.jobs?.[0]?.health?.interval).toBe("5s");
    expect(rendered.consul?.token).toBe("********");
    expect(JSON.stringify(rendered)).not.toContain("tok-123456");
  });
});

describe("config extends", () => {
  const dir = mkdtempSync(join(tmpdir(), "statepilot-extends-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const write = (name: string, text: string) => {
    writeFileSync(join(dir, name), text);
    return join(dir, name);
  };

  it("merges objects over the base, replaces arrays and objects of another type", () => {
    write("base.json5", `{ logging: { level: "warn", format: "json" }, mysql: { args: ["--a"], snapshots: { store: { type: "local", path: "/x" }, keepLast: 3 } } }`);
    const top = write("top.json5", `{ extends: "base.json5", logging: { level: "debug" }, mysql: { args: ["--b"], snapshots: { store: { type: "s3", bucket: "bkt" } } } }`);
    const c = loadConfigFile(top, {});
    expect(c.logging).toMatchObject({ level: "debug", format: "json" });
    expect(c.mysql?.args).toEqual(["--b"]);
    expect(c.mysql?.snapshots.store).toMatchObject({ type: "s3", bucket: "bkt" });
    expect(c.mysql?.snapshots.keepLast).toBe(3);
  });

  it("names a missing base and a cycle", () => {
    const missing = write("missing.json5", `{ extends: "nope.json5" }`);
    expect(() => loadConfigFile(missing, {})).toThrow(/extends \(in .*missing.json5\): cannot read the config file: ENOENT/);
    write("a.json5", `{ extends: "b.json5" }`);
    write("b.json5", `{ extends: "a.json5" }`);
    expect(() => loadConfigFile(join(dir, "a.json5"), {})).toThrow(/extends itself/);
  });
});
