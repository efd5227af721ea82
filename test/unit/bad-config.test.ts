import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { preflight, resolveConfig } from "../../src/cli/run.js";
import { ConfigError } from "../../src/config/load.js";
import { CLI, startCli } from "../support/cli.js";

/**
 * Bad configs, environments and command lines, each checked twice: in-process (`config check`:
 * resolveConfig and preflight) and through the built CLI running `run`. Every one must end in an
 * error naming the field path (or variable) and the offending value, exit 2, start nothing (no
 * job, no control socket), and never show a secret.
 */
const root = mkdtempSync(join(tmpdir(), "statepilot-bad-config-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

/** In the environment of every case: must never be echoed. */
const CONSUL_TOKEN = "consul-token-never-shown-7f3a";
const BASE_ENV: NodeJS.ProcessEnv = { CONSUL_HTTP_TOKEN: CONSUL_TOKEN, MYSQL_REPL_PASSWORD: "repl-password-never-shown-2b" };
/** What the test runner's own environment could add to the CLI's: unset for every case. */
const NEUTRAL_ENV: NodeJS.ProcessEnv = Object.fromEntries(
  ["STATEPILOT_CONFIG", "STATEPILOT_SOCKET", "CONSUL_HTTP_ADDR", "CONSUL_HTTP_SSL", "CONSUL_HTTP_SSL_VERIFY", "CONSUL_HTTP_TOKEN_FILE", "CONSUL_CACERT", "CONSUL_CLIENT_CERT", "CONSUL_CLIENT_KEY", "CONSUL_TLS_SERVER_NAME", "MYSQL_ROOT_PASSWORD", "MARIADB_ROOT_PASSWORD", "MYSQL_USER", "MARIADB_USER"].map((k) => [k, ""]),
);

interface Case {
  name: string;
  /** Laid over a base config with one marker job (jobs[0]), or the whole file text. */
  config?: Record<string, unknown> | ((dir: string) => string);
  env?: (dir: string) => NodeJS.ProcessEnv;
  /** CLI arguments after the command (`run`) and before `--config`; cliOnly cases are not checked in-process. */
  args?: string[];
  trailing?: string[];
  cliOnly?: boolean;
  /** The path (or variable, or location) the error must name. */
  path: string;
  /** The offending value as printed, `(got ...)`; or, for problems without one, text the message must contain. */
  got?: string;
  says?: string;
  /** Must not appear in any output. */
  secrets?: string[];
}

const job = (extra: Record<string, unknown>) => ({ jobs: [{ name: "extra", exec: "true", ...extra }] });
const service = (svc: Record<string, unknown>, health: Record<string, unknown> = {}) => job({ health: { exec: "true", ...health }, service: { name: "web", port: 8080, ...svc } });
const telemetry = (sensor: Record<string, unknown>) => ({ telemetry: { register: false, port: 0, metrics: [{ name: "q_depth", help: "h", type: "gauge" }], sensors: [{ metric: "q_depth", exec: "echo 1", ...sensor }] } });
const watch = { watches: [{ name: "db" }] };
const nested = (n: number) => `{ node: "n", deep: ${"{ a: ".repeat(n)}1${" }".repeat(n)} }`;

const CASES: Case[] = [
  // Durations: bounded everywhere.
  { name: "a 1000h job timeout (Node's timer overflows)", config: job({ timeout: "1000h" }), path: "jobs[1].timeout", got: '"1000h"', says: "at most 596h" },
  { name: "a 0ms sensor interval (forks without pause)", config: telemetry({ interval: "0ms" }), path: "telemetry.sensors[0].interval", got: '"0ms"', says: "at least 100ms" },
  { name: "a 0ms job interval", config: job({ when: { interval: "0ms" } }), path: "jobs[1].when.interval", got: '"0ms"' },
  { name: "a 700h health ttl", config: service({}, { ttl: "700h" }), path: "jobs[1].health.ttl", got: '"700h"' },
  { name: "a 1h watch wait (Consul caps at 10m)", config: { watches: [{ name: "db", wait: "1h" }] }, path: "watches[0].wait", got: '"1h"', says: "10m" },
  { name: "a 48h session TTL", config: { mysql: { sessionTtl: "48h" } }, path: "mysql.sessionTtl", got: '"48h"', says: "10s to 24h" },
  { name: "failsafe mode without a cluster secret", config: { telemetry: { register: false }, mysql: { failsafe: { enabled: true } } }, path: "mysql.failsafe", says: "exactly one of tokenFile or tokenEnv" },
  { name: "failsafe mode without telemetry (no HTTP port)", config: { mysql: { failsafe: { enabled: true, tokenEnv: "SP_FAILSAFE" } } }, path: "mysql.failsafe.enabled", says: "needs a telemetry section" },
  { name: "a negative duration", config: job({ stopTimeout: "-5s" }), path: "jobs[1].stopTimeout", got: '"-5s"' },
  { name: "a duration in words", config: job({ timeout: "5 seconds" }), path: "jobs[1].timeout", got: '"5 seconds"' },
  { name: "a duration as a number", config: job({ stopTimeout: 10 }), path: "jobs[1].stopTimeout", got: "10" },
  { name: "a ttl shorter than the interval", config: service({}, { interval: "5s", ttl: "2s" }), path: "jobs[1].health.ttl", got: '"2s"' },
  // Values config check passed and run crashed on.
  { name: "a static interface that is no IP", config: service({ interfaces: "static:not-an-ip" }), path: "jobs[1].service.interfaces", got: '"static:not-an-ip"' },
  { name: "a CIDR with a 40-bit prefix", config: { telemetry: { interfaces: ["eth0", "10.0.0.0/40"] } }, path: "telemetry.interfaces[1]", got: '"10.0.0.0/40"' },
  { name: "a bare IP as an interface", config: { mysql: { interfaces: "10.0.0.5" } }, path: "mysql.interfaces", got: '"10.0.0.5"', says: "static:10.0.0.5" },
  { name: "an interface with an unknown family", config: service({ interfaces: ["eth0:ipx"] }), path: "jobs[1].service.interfaces[0]", got: '"eth0:ipx"' },
  { name: "a consul.address that is no URL", config: { consul: { address: "http://consul:99999" }, ...watch }, path: "consul.address", got: '"http://consul:99999"' },
  { name: "a consul.address with another scheme", config: { consul: { address: "unix:///run/consul.sock" } }, path: "consul.address", got: '"unix:///run/consul.sock"' },
  { name: "a consul.address carrying a password", config: { consul: { address: "http://admin:addr-password-5e@consul:8500" } }, path: "consul.address", got: '"http://admin:********@consul:8500"', secrets: ["addr-password-5e"] },
  { name: "a missing CONSUL_CACERT file", config: watch, env: (d) => ({ CONSUL_HTTP_ADDR: "https://127.0.0.1:8501", CONSUL_CACERT: join(d, "no-ca.pem") }), path: "CONSUL_CACERT", says: "cannot read the CA certificate file: ENOENT" },
  { name: "an unreadable CONSUL_HTTP_TOKEN_FILE", config: watch, env: (d) => ({ CONSUL_HTTP_TOKEN_FILE: join(d, "no-token") }), path: "CONSUL_HTTP_TOKEN_FILE", says: "cannot read the token file: ENOENT" },
  { name: "a bad CONSUL_HTTP_ADDR", config: watch, env: () => ({ CONSUL_HTTP_ADDR: "consul:8500/v1" }), path: "CONSUL_HTTP_ADDR", got: '"consul:8500/v1"' },
  { name: "CONSUL_HTTP_SSL_VERIFY=maybe", config: watch, env: () => ({ CONSUL_HTTP_SSL_VERIFY: "maybe" }), path: "CONSUL_HTTP_SSL_VERIFY", got: '"maybe"' },
  // Size and depth caps, and files that are not configs.
  { name: "5,000 nested objects", config: () => nested(5_000), path: "line 1, column", says: "more than 32 levels" },
  { name: "33 nested arrays", config: () => `{ node: "n", x: ${"[".repeat(33)}${"]".repeat(33)} }`, path: "line 1, column", says: "more than 32 levels" },
  { name: "a 2 MiB file", config: () => `{ jobs: [${'"x",'.repeat(512 * 1024)}] }`, path: "(file)", says: "at most 1 MiB" },
  { name: "text that is not JSON5", config: () => "{ jobs: [ }", path: "line 1, column 11", says: "not valid JSON5" },
  { name: "an array at the top", config: () => "[1, 2]", path: "(root)", says: "expected an object" },
  { name: "a missing base file", config: { extends: "no-such-base.json5" }, path: "extends (in", says: "ENOENT" },
  { name: "a required variable that is not set", config: { node: "${NODE_NAME:?set NODE_NAME}" }, path: "node", says: "required variable NODE_NAME is not set" },
  // Secrets: never echoed, also when given as numbers.
  { name: "a numeric root password", config: { mysql: { credentials: { rootPassword: 987654321, replPassword: "r" } } }, path: "mysql.credentials.rootPassword", got: '"********"', secrets: ["987654321"] },
  { name: "a numeric Consul token", config: { consul: { token: 123456789 } }, path: "consul.token", got: '"********"', secrets: ["123456789"] },
  { name: "a numeric MYSQL_PWD in a job's env", config: job({ env: { MYSQL_PWD: 424242 } }), path: "jobs[1].env.MYSQL_PWD", got: '"********"', secrets: ["424242"] },
  { name: "a numeric S3 secret key", config: { mysql: { credentials: { rootPassword: "x", replPassword: "r" }, snapshots: { store: { type: "s3", bucket: "bkt", accessKeyId: "AK", secretAccessKey: 31415926 } } } }, path: "mysql.snapshots.store.secretAccessKey", got: '"********"', secrets: ["31415926"] },
  { name: "a restore point that is neither a time nor a GTID", config: { mysql: { credentials: { rootPassword: "x", replPassword: "r" }, snapshots: { restoreFrom: { cluster: "old", to: "yesterday-ish" } } } }, path: "mysql.snapshots.restoreFrom.to", got: '"yesterday-ish"' },
  { name: "a restoreFrom without its cluster", config: { mysql: { credentials: { rootPassword: "x", replPassword: "r" }, snapshots: { restoreFrom: { to: "0-1-42" } } } }, path: "mysql.snapshots.restoreFrom.cluster", says: "required" },
  { name: "a mysql section without MYSQL_ROOT_PASSWORD", config: { mysql: {} }, path: "mysql.credentials.rootPassword", says: "MYSQL_ROOT_PASSWORD" },
  // Wrong types, unknown keys, out-of-range numbers, bad enums.
  { name: "an unknown key in a job", config: job({ bogus: 1 }), path: "jobs[1].bogus", says: "unknown key" },
  { name: "an unknown top-level key", config: { colour: "blue" }, path: "colour", says: "unknown key" },
  { name: "a negative port", config: service({ port: -1 }), path: "jobs[1].service.port", got: "-1" },
  { name: "port 70000", config: service({ port: 70000 }), path: "jobs[1].service.port", got: "70000" },
  { name: "a fractional telemetry port", config: { telemetry: { port: 80.5 } }, path: "telemetry.port", got: "80.5" },
  { name: "mysql.port 0", config: { mysql: { port: 0 } }, path: "mysql.port", got: "0" },
  { name: "a bad log level", config: { logging: { level: "verbose" } }, path: "logging.level", got: '"verbose"' },
  { name: "a bad stop signal", config: job({ stopSignal: "SIGFOO" }), path: "jobs[1].stopSignal", got: '"SIGFOO"' },
  { name: "restarts as a word", config: job({ restarts: "sometimes" }), path: "jobs[1].restarts", got: '"sometimes"' },
  { name: "an empty command", config: job({ exec: "" }), path: "jobs[1].exec", got: '""' },
  { name: "an empty argv", config: job({ exec: [] }), path: "jobs[1].exec", says: "expected" },
  { name: "a job name with a space", config: job({ name: "my job" }), path: "jobs[1].name", got: '"my job"' },
  { name: "a duplicate job name", config: job({ name: "marker" }), path: "jobs[1].name", got: '"marker"', says: "duplicate job name" },
  { name: "an unknown event source", config: job({ when: { source: "nope", once: "healthy" } }), path: "jobs[1].when.source", got: '"nope"' },
  { name: "a backoff multiplier of 0.5", config: job({ backoff: { multiplier: 0.5 } }), path: "jobs[1].backoff.multiplier", got: "0.5" },
  { name: "a boolean as a string", config: { reloadOnSighup: "yes" }, path: "reloadOnSighup", got: '"yes"' },
  // Command lines.
  { name: "--node with a space", args: ["--node", "bad name"], cliOnly: true, path: "node", got: '"bad name"' },
  { name: "an unknown option", args: ["--bogus"], cliOnly: true, path: "unknown option", says: '"--bogus"' },
  { name: "a -- command while the config has a main job", config: job({ main: true }), trailing: ["sleep", "1"], path: "jobs[1].main", says: "already has a main job" },
];

interface Prepared {
  dir: string;
  file: string;
  socket: string;
  marker: string;
  env: NodeJS.ProcessEnv;
}

function prepare(c: Case, i: number): Prepared {
  const dir = join(root, String(i));
  mkdirSync(dir, { recursive: true });
  const socket = join(dir, "ctl.sock");
  const marker = join(dir, "started");
  const file = join(dir, "statepilot.json5");
  if (typeof c.config === "function") {
    writeFileSync(file, c.config(dir));
  } else {
    const { jobs = [], ...rest } = (c.config ?? {}) as { jobs?: unknown[] };
    const base = { control: { socket }, jobs: [{ name: "marker", exec: ["sh", "-c", `: > ${marker}; exec sleep 30`] }, ...jobs] };
    writeFileSync(file, JSON.stringify({ ...base, ...rest }, null, 2));
  }
  return { dir, file, socket, marker, env: { ...BASE_ENV, ...c.env?.(dir) } };
}

/** One problem line starts with the path and shows the value (or the message); no secret anywhere. */
function expectNamed(c: Case, text: string): void {
  const lines = text.split("\n").map((l) => l.replace(/^statepilot: /, "").trim());
  const hit = lines.find((l) => l.startsWith(c.path) && (c.got === undefined || l.includes(`(got ${c.got})`)) && (c.says === undefined || l.includes(c.says)));
  expect(hit, `no line names ${c.path} ${c.got ?? ""} ${c.says ?? ""} in:\n${text}`).toBeDefined();
  for (const s of [CONSUL_TOKEN, BASE_ENV.MYSQL_REPL_PASSWORD!, ...(c.secrets ?? [])]) expect(text).not.toContain(s);
}

describe("bad configs, environments and command lines", () => {
  it("has at least 30 cases, each naming a path and a value or a message", () => {
    expect(CASES.length).toBeGreaterThanOrEqual(30);
    for (const c of CASES) expect(c.got ?? c.says, c.name).toBeDefined();
  });

  describe.concurrent("config check (in-process): an error naming the path and value, no secret", () => {
    CASES.forEach((c, i) => {
      if (c.cliOnly) return;
      it(c.name, () => {
        const p = prepare(c, i);
        let err: unknown;
        try {
          const config = resolveConfig({ configPath: p.file, node: undefined, mainCommand: c.trailing }, p.env);
          preflight(config, p.env, p.file);
        } catch (e) {
          err = e;
        }
        expect(err, "the config was accepted").toBeInstanceOf(ConfigError);
        const e = err as ConfigError;
        expect(e.exitCode).toBe(2);
        expectNamed(c, e.message);
        expect(JSON.stringify(e.problems)).not.toContain(CONSUL_TOKEN);
        expect(existsSync(p.marker)).toBe(false);
      });
    });
  });

  describe.skipIf(!existsSync(CLI))("statepilot run (the built CLI): exit 2, the same error, nothing started", () => {
    CASES.forEach((c, i) => {
      it.concurrent(c.name, { timeout: 30_000 }, async () => {
        const p = prepare(c, i + 1000);
        const argv = ["run", ...(c.args ?? []), "--config", p.file, "--socket", p.socket, ...(c.trailing ? ["--", ...c.trailing] : [])];
        const cli = startCli(argv, { ...NEUTRAL_ENV, ...p.env });
        const timer = setTimeout(() => cli.child.kill("SIGTERM"), 15_000);
        const { code } = await cli.exit;
        clearTimeout(timer);
        const out = cli.output();
        expect(code, out).toBe(2);
        expectNamed(c, out);
        expect(out).toMatch(/^statepilot: /m);
        expect(existsSync(p.marker), "a job was started").toBe(false);
        expect(existsSync(p.socket), "the control socket was left").toBe(false);
      });
    });
  });

  describe.skipIf(!existsSync(CLI))("statepilot config check (the built CLI)", () => {
    for (const name of ["a 1000h job timeout (Node's timer overflows)", "a static interface that is no IP", "a mysql section without MYSQL_ROOT_PASSWORD", "a numeric root password", "a missing CONSUL_CACERT file", "5,000 nested objects"]) {
      it.concurrent(name, { timeout: 30_000 }, async () => {
        const i = CASES.findIndex((c) => c.name === name);
        const c = CASES[i]!;
        const p = prepare(c, i + 2000);
        const cli = startCli(["config", "check", "--config", p.file], { ...NEUTRAL_ENV, ...p.env });
        const { code } = await cli.exit;
        expect(code, cli.output()).toBe(2);
        expectNamed(c, cli.output());
        expect(cli.output()).not.toContain("valid (");
      });
    }
  });
});
