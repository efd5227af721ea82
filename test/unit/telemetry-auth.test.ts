import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ConfigError, validateConfig } from "../../src/config/load.js";
import { createLogger } from "../../src/log.js";
import { BearerCheck, MAX_TOKEN_BYTES, resolveTelemetryToken } from "../../src/telemetry/auth.js";
import { Metrics } from "../../src/telemetry/metrics.js";
import { TelemetryServer } from "../../src/telemetry/server.js";

const dir = mkdtempSync(join(tmpdir(), "statepilot-tauth-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const TOKEN = "s3cr3t-Token_value.42";

function problem(fn: () => unknown): { path: string; message: string; text: string } {
  try {
    fn();
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    return { path: err.problems[0]!.path, message: err.problems[0]!.message, text: err.message };
  }
  throw new Error("expected a ConfigError");
}

describe("telemetry.auth in the schema", () => {
  it("takes a token file or a variable name, never both, never neither, and no token itself", () => {
    expect(validateConfig({ telemetry: { auth: { tokenFile: "/run/secrets/t" } } }).telemetry?.auth).toEqual({ tokenFile: "/run/secrets/t", metrics: false });
    expect(validateConfig({ telemetry: { auth: { tokenEnv: "TEL_TOKEN", metrics: true } } }).telemetry?.auth).toEqual({ tokenEnv: "TEL_TOKEN", metrics: true });
    expect(problem(() => validateConfig({ telemetry: { auth: {} } })).path).toBe("telemetry.auth");
    expect(problem(() => validateConfig({ telemetry: { auth: { tokenFile: "/a", tokenEnv: "B" } } })).message).toContain("exactly one of tokenFile or tokenEnv");
    expect(problem(() => validateConfig({ telemetry: { auth: { token: "plain" } } })).path).toBe("telemetry.auth.token");
    expect(problem(() => validateConfig({ telemetry: { auth: { tokenEnv: "not a name" } } })).path).toBe("telemetry.auth.tokenEnv");
  });

  it("telemetry.bind is an IP address or localhost", () => {
    for (const ok of ["127.0.0.1", "0.0.0.0", "::", "::1", "10.1.2.3", "localhost"]) expect(validateConfig({ telemetry: { bind: ok } }).telemetry?.bind).toBe(ok);
    const p = problem(() => validateConfig({ telemetry: { bind: "127.0.0.l" } }));
    expect(p.path).toBe("telemetry.bind");
    expect(p.text).toContain('(got "127.0.0.l")');
  });
});

describe("resolveTelemetryToken", () => {
  it("reads a token file, ignoring surrounding whitespace", () => {
    const f = join(dir, "token");
    writeFileSync(f, `${TOKEN}\n`);
    expect(resolveTelemetryToken({ tokenFile: f, metrics: false }, {}, "test")).toBe(TOKEN);
  });

  it("refuses a missing, empty, oversized or unreadable file, a directory and an unset or empty variable, naming the field", () => {
    const empty = join(dir, "empty");
    writeFileSync(empty, " \n");
    const big = join(dir, "big");
    writeFileSync(big, "x".repeat(MAX_TOKEN_BYTES + 1));
    const spaced = join(dir, "spaced");
    writeFileSync(spaced, "two words");
    const sub = join(dir, "sub");
    mkdirSync(sub);
    const cases: Array<[Parameters<typeof resolveTelemetryToken>[0], NodeJS.ProcessEnv, string, RegExp]> = [
      [{ tokenFile: join(dir, "nope"), metrics: false }, {}, "telemetry.auth.tokenFile", /cannot read ".*nope": ENOENT/],
      [{ tokenFile: empty, metrics: false }, {}, "telemetry.auth.tokenFile", /is empty/],
      [{ tokenFile: big, metrics: false }, {}, "telemetry.auth.tokenFile", /at most 4096/],
      [{ tokenFile: spaced, metrics: false }, {}, "telemetry.auth.tokenFile", /cannot carry/],
      [{ tokenFile: sub, metrics: false }, {}, "telemetry.auth.tokenFile", /is a directory/],
      [{ tokenEnv: "TEL_TOKEN", metrics: false }, {}, "telemetry.auth.tokenEnv", /\$TEL_TOKEN is not set/],
      [{ tokenEnv: "TEL_TOKEN", metrics: false }, { TEL_TOKEN: "  " }, "telemetry.auth.tokenEnv", /\$TEL_TOKEN is empty/],
    ];
    if (process.getuid?.() !== 0) {
      const locked = join(dir, "locked");
      writeFileSync(locked, TOKEN);
      chmodSync(locked, 0o000);
      cases.push([{ tokenFile: locked, metrics: false }, {}, "telemetry.auth.tokenFile", /EACCES/]);
    }
    for (const [auth, env, path, message] of cases) {
      const p = problem(() => resolveTelemetryToken(auth, env, "test"));
      expect(p.path).toBe(path);
      expect(p.message).toMatch(message);
    }
    expect(resolveTelemetryToken({ tokenEnv: "TEL_TOKEN", metrics: false }, { TEL_TOKEN: TOKEN }, "test")).toBe(TOKEN);
  });
});

describe("BearerCheck", () => {
  it("tells missing from wrong credentials", () => {
    const c = new BearerCheck(TOKEN);
    expect(c.verify({ authorization: `Bearer ${TOKEN}` })).toBe("ok");
    expect(c.verify({ authorization: `bearer ${TOKEN}` })).toBe("ok");
    expect(c.verify({})).toBe("missing");
    expect(c.verify({ authorization: `Basic ${Buffer.from(`u:${TOKEN}`).toString("base64")}` })).toBe("missing");
    expect(c.verify({ authorization: "Bearer" })).toBe("missing");
    expect(c.verify({ authorization: `Bearer ${TOKEN}x` })).toBe("invalid");
    expect(c.verify({ authorization: `Bearer ${TOKEN.slice(0, -1)}` })).toBe("invalid");
  });
});

describe("TelemetryServer with a token", () => {
  it("load-balancer checks keep their status code without the token, but not the node's view", async () => {
    const server = new TelemetryServer(new Metrics([]), () => ({ node: "n1" }), createLogger({ level: "silent", format: "json" }), { check: new BearerCheck(TOKEN), metrics: false });
    server.addRoute("/primary", () => ({ status: 200, body: { role: "primary", executed: "0-1-42" } }));
    server.addRoute("/replica", () => ({ status: 503, body: { role: "primary", executed: "0-1-42" } }));
    await server.start("127.0.0.1", 0);
    try {
      const url = `http://127.0.0.1:${server.port}`;
      const anon = await fetch(`${url}/primary`);
      expect(anon.status).toBe(200);
      expect(await anon.json()).toEqual({ ok: true });
      const down = await fetch(`${url}/replica`);
      expect(down.status).toBe(503);
      expect(await down.json()).toEqual({ ok: false });
      const authed = await fetch(`${url}/primary`, { headers: { authorization: `Bearer ${TOKEN}` } });
      expect(await authed.json()).toEqual({ role: "primary", executed: "0-1-42" });
      const status = await fetch(`${url}/status`);
      expect(status.status).toBe(401);
      expect(status.headers.get("www-authenticate")).toBe('Bearer realm="statepilot"');
      expect((await fetch(`${url}/metrics`)).status).toBe(200);
    } finally {
      await server.stop();
    }
  });
});
