import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { MAX_DURATION_MS, parseDuration } from "../../src/config/duration.js";
import { ConfigError, encodeConfig, loadConfigFile, MAX_CONFIG_BYTES, MAX_CONFIG_DEPTH, parseConfigText, validateConfig } from "../../src/config/load.js";
import { renderConfigReference } from "../../src/config/reference.js";
import { maskSecrets, maskValue } from "../../src/config/secrets.js";
import { parseConsulAddress, parseInterfaceSpec, resolveAddress } from "../../src/discovery/address.js";

function rejection(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error("accepted");
}
const parse = (text: string) => parseConfigText(text, {}, "test");

describe("duration bounds", () => {
  it("the global maximum stays below Node's timer limit (2^31-1 ms)", () => {
    expect(MAX_DURATION_MS).toBeLessThanOrEqual(2 ** 31 - 1);
    expect(parse(`{ jobs: [ { name: "a", exec: "x", timeout: "596h" } ] }`).jobs[0]?.timeout).toBe(MAX_DURATION_MS);
    const err = rejection(() => parse(`{ jobs: [ { name: "a", exec: "x", timeout: "597h" } ] }`));
    expect(err.message).toContain('jobs[0].timeout: must be at most 596h (24.8 days; Node timers overflow beyond it) (got "597h")');
  });

  it("every duration field is bounded, and says so in the generated reference", () => {
    const doc = renderConfigReference();
    const rows = doc.split("\n").filter((l) => /\| `"\d[\d.]*(ms|s|m|h)"` \|/.test(l));
    expect(rows.length).toBeGreaterThan(25);
    for (const row of rows) expect(row, row).toMatch(/\| duration \d[\d.]*(ms|s|m|h)\.\.\d+(ms|s|m|h) \|/);
    for (const [, max] of doc.matchAll(/duration [^.|]+\.\.(\d+(?:ms|s|m|h))/g)) expect(parseDuration(max!)).toBeLessThanOrEqual(MAX_DURATION_MS);
    for (const row of ["| `interval` | duration 100ms..596h |  | Run periodically. |", "| `wait` | duration 1s..10m |", "| `sessionTtl` | duration 10s..24h |", "| `lockDelay` | duration 0s..1m |"]) expect(doc).toContain(row);
  });

  it.each([
    ["{ jobs: [ { name: 'a', exec: 'x', when: { interval: '99ms' } } ] }", "jobs[0].when.interval", "at least 100ms"],
    ["{ jobs: [ { name: 'a', exec: 'x', backoff: { initial: '0s' } } ] }", "jobs[0].backoff.initial", "at least 50ms"],
    ["{ telemetry: { interval: '10ms', ttl: '1s' } }", "telemetry.interval", "at least 1s"],
    ["{ consul: { timeout: '0ms' } }", "consul.timeout", "at least 100ms"],
    ["{ mysql: { memberExpiry: '10s' } }", "mysql.memberExpiry", "at least 1m"],
    ["{ mysql: { snapshots: { checkEvery: '0s' } } }", "mysql.snapshots.checkEvery", "at least 1s"],
    ["{ watches: [ { name: 'db', wait: '0s' } ] }", "watches[0].wait", "at least 1s (Consul caps blocking queries at 10m)"],
  ])("%s", (text, path, message) => {
    const hit = rejection(() => parse(text)).problems.find((p) => p.path === path);
    expect(hit?.message).toContain(message);
  });

  it("bounds survive render: what config render prints parses back to the same config", () => {
    const c = parse(`{ jobs: [ { name: "a", exec: "x", timeout: "596h", when: { interval: "100ms" } } ] }`);
    expect(validateConfig(encodeConfig(c), "render")).toEqual(c);
  });
});

describe("interfaces: one parser for the schema and the runtime", () => {
  const ifaces = { eth0: [{ address: "10.1.2.3", family: "IPv4", internal: false, netmask: "255.255.0.0", mac: "", cidr: "10.1.2.3/16" }] } as unknown as NodeJS.Dict<import("node:os").NetworkInterfaceInfo[]>;
  const specs = ["eth0", "eth0:inet6", "eth0:inet", "inet", "inet6", "10.0.0.0/8", "fd00::/8", "0.0.0.0/0", "static:192.0.2.1", "static:fd00::1", "static:not-an-ip", "static:", "10.0.0.0/33", "fd00::/129", "10.0.0.0/8/1", "nonsense/8", "10.0.0.0/x", "10.0.0.5", "eth0:ipx", "a:b:c", "", "has space", "averyveryverylongname"];

  it.each(specs)("%j: accepted by the schema exactly when the runtime can read it", (spec) => {
    let parses = true;
    try {
      parseInterfaceSpec(spec);
    } catch {
      parses = false;
    }
    const result = (() => {
      try {
        parse(JSON.stringify({ telemetry: { interfaces: [spec] } }));
        return "ok";
      } catch (err) {
        return (err as ConfigError).problems.map((p) => `${p.path} ${p.value}`).join();
      }
    })();
    expect(result).toBe(parses ? "ok" : `telemetry.interfaces[0] ${JSON.stringify(spec)}`);
    if (parses) {
      // Whatever the schema accepts, the runtime resolves or reports as "no address matches", never as unreadable.
      try {
        resolveAddress([spec], ifaces);
      } catch (err) {
        expect((err as Error).message).toMatch(/no address matches/);
      }
    } else {
      expect(() => resolveAddress([spec], ifaces)).toThrow(new RegExp(`interfaces: ${JSON.stringify(spec).replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}`));
    }
  });
});

describe("Consul addresses", () => {
  it.each([
    ["consul:8500", false, "http://consul:8500"],
    ["consul:8501", true, "https://consul:8501"],
    ["http://127.0.0.1:8500", true, "http://127.0.0.1:8500"],
    ["https://[fd00::1]:8501/", false, "https://[fd00::1]:8501"],
    ["consul", false, "http://consul"],
  ])("%s (tls %s) is %s", (text, tls, url) => {
    expect(parseConsulAddress(text, tls)).toBe(url);
  });

  it.each(["http://consul:99999", "unix:///run/consul.sock", "ftp://consul", "http://", ":8500", "consul:8500/v1", "http://a b:1", "http://u:p@consul:8500", "consul:8500?x=1"])("%s is refused with a reason", (text) => {
    expect(() => parseConsulAddress(text)).toThrow(/expected http\(s\):\/\/host:port|scheme|credentials/);
  });
});

describe("config size and depth caps", () => {
  const dir = mkdtempSync(join(tmpdir(), "statepilot-caps-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it(`${MAX_CONFIG_DEPTH} levels are fine, one more is refused before parsing (no stack overflow at 100,000)`, () => {
    const nest = (n: number) => `{ x: ${"[".repeat(n - 1)}${"]".repeat(n - 1)} }`;
    expect(() => parse(nest(MAX_CONFIG_DEPTH))).toThrow(/unknown key/);
    expect(rejection(() => parse(nest(MAX_CONFIG_DEPTH + 1))).problems[0]).toEqual({ path: `line 1, column ${5 + MAX_CONFIG_DEPTH}`, message: "objects and arrays nest more than 32 levels deep" });
    expect(rejection(() => parse(nest(100_000))).problems[0]?.message).toContain("more than 32 levels");
    // Brackets inside strings and comments do not count.
    expect(parse(`{ node: "n", /* ${"{".repeat(40)} */ jobs: [ { name: "a", exec: "echo '${"[".repeat(40)}'" } ] // ${"[".repeat(40)}\n }`).jobs).toHaveLength(1);
  });

  it("an already-parsed tree is held to the same depth", () => {
    let tree: Record<string, unknown> = {};
    for (let i = 0; i < 40; i++) tree = { a: tree };
    expect(rejection(() => validateConfig(tree)).problems[0]?.path).toBe(`${"a.".repeat(MAX_CONFIG_DEPTH).slice(0, -1)}`);
  });

  it("a file over 1 MiB is refused without being parsed; 1 MiB is fine", () => {
    const big = join(dir, "big.json5");
    writeFileSync(big, `{ node: "n" }${" ".repeat(MAX_CONFIG_BYTES)}`);
    const err = rejection(() => loadConfigFile(big, {}));
    expect(err.problems[0]).toEqual({ path: "(file)", message: `${MAX_CONFIG_BYTES + 13} bytes; a config file may be at most 1 MiB (1048576 bytes)`, value: JSON.stringify(big) });
    const ok = join(dir, "ok.json5");
    writeFileSync(ok, `{ node: "n" }${" ".repeat(MAX_CONFIG_BYTES - 13)}`);
    expect(loadConfigFile(ok, {}).node).toBe("n");
  });

  it("errors keep their cause, and a long list of problems is cut short", () => {
    expect(rejection(() => parse("{ jobs: [ }")).cause).toBeInstanceOf(SyntaxError);
    const many = rejection(() => parse(JSON.stringify({ jobs: Array.from({ length: 500 }, () => ({ bogus: 1 })) })));
    expect(many.problems.length).toBeGreaterThan(500);
    expect(many.message.split("\n").length).toBeLessThan(60);
    expect(many.message).toMatch(/\.\.\. and \d+ more$/);
  });
});

describe("secrets are masked in errors and in config render", () => {
  it("numbers under secret keys are masked like strings", () => {
    expect(maskValue("rootPassword", 12345678)).toBe("********");
    expect(maskValue("MYSQL_PWD", "pw")).toBe("********");
    expect(maskValue("port", 3306)).toBe(3306);
    expect(maskValue("enabled", true)).toBe(true);
    const err = rejection(() => parse("{ mysql: { credentials: { rootPassword: 12345678, password: 87654321 } } }"));
    expect(err.message).not.toMatch(/12345678|87654321/);
  });

  it("render masks MYSQL_PWD, DSN passwords and password arguments", () => {
    const c = parse(`{ jobs: [ { name: "app", exec: ["app", "--password", "argv-pw-1", "--db-password=inline-pw-2", "--dsn=mysql://app:dsn-pw-3@db:3306/shop"], env: { MYSQL_PWD: "env-pw-4", DATABASE_URL: "postgres://u:dsn-pw-5@pg/db", PLAIN: "http://example.com/a:b@c" } } ] }`);
    const text = JSON.stringify(maskSecrets(encodeConfig(c)));
    for (const s of ["argv-pw-1", "inline-pw-2", "dsn-pw-3", "env-pw-4", "dsn-pw-5"]) expect(text).not.toContain(s);
    expect(text).toContain("mysql://app:********@db:3306/shop");
    expect(text).toContain('"--db-password=********"');
    expect(text).toContain('"app"');
    expect(text).toContain("http://example.com/a:b@c");
  });
});
