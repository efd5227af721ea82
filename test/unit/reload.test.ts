import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { ConfigError, encodeConfig, validateConfig } from "../../src/config/load.js";
import { Job as JobSchema } from "../../src/config/schema.js";
import { controlRequest } from "../../src/control/client.js";
import { ControlServer } from "../../src/control/server.js";
import { createLogger } from "../../src/log.js";
import { planReload, ReloadRefused } from "../../src/supervisor/reload-plan.js";
import { Supervisor } from "../../src/supervisor/supervisor.js";

const dir = mkdtempSync(join(tmpdir(), "statepilot-reload-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const logger = createLogger({ level: "silent", format: "json" });
/** What MysqlAutopilot.prepare adds: mysqld as the main job (here a sleep, for the supervisor test). */
const mysqld = JobSchema.parse({ name: "mysqld", exec: ["sleep", "1000"], main: true, restarts: "unlimited" });
const mysqlNode = (extra: Record<string, unknown> = {}) =>
  validateConfig({ node: "n1", logging: { level: "fatal" }, mysql: { datadir: "/var/lib/mysql" }, jobs: [{ name: "helper", exec: ["sleep", "1000"] }], ...extra });

async function waitFor(what: string, check: () => boolean, ms = 5_000): Promise<void> {
  for (const end = Date.now() + ms; !check(); await sleep(20)) if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
}

function refusal(fn: () => unknown): ReloadRefused {
  try {
    fn();
  } catch (err) {
    if (err instanceof ReloadRefused) return err;
    throw err;
  }
  throw new Error("expected a ReloadRefused");
}

describe("reload planning on a MySQL node", () => {
  it("the cause of the reload bug: the derived main mysqld job next to a mysql section is no valid config", () => {
    const current = mysqlNode();
    // What the supervisor used to hold and re-encode (encoding validates): a raw ZodError.
    expect(() => encodeConfig({ ...current, jobs: [...current.jobs, mysqld] })).toThrow(z.ZodError);
    // The user's config alone (what it holds now) encodes fine.
    expect(() => encodeConfig(current)).not.toThrow();
  });

  it("adds, restarts and removes the user's jobs; mysqld stays as it is", () => {
    const current = mysqlNode();
    const next = mysqlNode({ jobs: [{ name: "helper", exec: ["sleep", "999"] }, { name: "extra", exec: ["true"] }], logging: { level: "debug" }, reloadOnSighup: true, stopTimeout: "10s" });
    expect(planReload(current, next, [mysqld])).toEqual({ restarted: ["helper"], added: ["extra"], removed: [], unchanged: ["mysqld"] });
    expect(planReload(current, mysqlNode({ jobs: [] }), [mysqld])).toEqual({ restarted: [], added: [], removed: ["helper"], unchanged: ["mysqld"] });
  });

  it("refuses a change to the mysql section, naming the field and both values", () => {
    const err = refusal(() => planReload(mysqlNode(), mysqlNode({ mysql: { datadir: "/var/lib/mysql", port: 3307 } }), [mysqld]));
    expect(err.message).toContain("mysql.port: 3306 -> 3307");
    expect(err.message).toContain("restart statepilot");
    const added = refusal(() => planReload(validateConfig({ jobs: [] }), validateConfig({ mysql: { credentials: { rootPassword: "hunter2-root" } } }), []));
    expect(added.message).toContain("mysql: (unset) -> ");
    expect(added.message).not.toContain("hunter2");
    const args = refusal(() => planReload(mysqlNode(), mysqlNode({ mysql: { datadir: "/var/lib/mysql", args: ["--password=hunter2"] } }), [mysqld]));
    expect(args.message).toContain("mysql.args: [] -> ");
    expect(args.message).not.toContain("hunter2");
  });

  it("refuses telemetry, consul, control, node and logging.format changes; secrets stay masked", () => {
    const base = validateConfig({ node: "n1", telemetry: { port: 9090 }, consul: { token: "old-secret-token" } });
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ telemetry: { port: 9191 } }, "telemetry.port: 9090 -> 9191"],
      [{ telemetry: { port: 9090, bind: "127.0.0.1" } }, 'telemetry.bind: "0.0.0.0" -> "127.0.0.1"'],
      [{ telemetry: { port: 9090, auth: { tokenEnv: "T" } } }, "telemetry.auth: (unset) -> "],
      [{ node: "n2" }, 'node: "n1" -> "n2"'],
      [{ control: { socket: "/tmp/other.sock" } }, "control.socket:"],
      [{ logging: { format: "pretty" } }, 'logging.format: "auto" -> "pretty"'],
    ];
    for (const [change, expected] of cases) {
      const next = validateConfig({ node: "n1", telemetry: { port: 9090 }, consul: { token: "old-secret-token" }, ...change });
      expect(refusal(() => planReload(base, next, [])).message).toContain(expected);
    }
    const token = refusal(() => planReload(base, validateConfig({ node: "n1", telemetry: { port: 9090 }, consul: { token: "new-secret-token" } }), []));
    expect(token.message).toContain('consul.token: "********" -> "********"');
    expect(token.message).not.toContain("secret-token");
  });

  it("refuses a user job that takes the name of the mysqld job", () => {
    const err = refusal(() => planReload(mysqlNode(), mysqlNode({ jobs: [{ name: "helper", exec: ["true"] }, { name: "mysqld", exec: ["true"] }] }), [mysqld]));
    expect(err.message).toContain('jobs[1].name: "mysqld"');
  });
});

describe("Supervisor.reload with an internal mysqld job", () => {
  it("applies job changes without touching mysqld, and refuses a mysql change leaving everything as it was", async () => {
    const sup = new Supervisor({ config: mysqlNode(), logger });
    sup.addInternalJob(mysqld);
    sup.start();
    try {
      await waitFor("mysqld and helper to run", () => sup.jobRunning("mysqld") && sup.jobRunning("helper"));
      const mysqldPid = sup.jobPid("mysqld");
      const r = await sup.reload(mysqlNode({ jobs: [{ name: "helper", exec: ["sleep", "1000"] }, { name: "extra", exec: ["sleep", "1000"] }] }));
      expect(r).toEqual({ restarted: [], added: ["extra"], removed: [], unchanged: ["helper", "mysqld"] });
      await waitFor("extra to run", () => sup.jobRunning("extra"));
      expect(sup.jobPid("mysqld")).toBe(mysqldPid);

      // Twice in a row works too (the running config stays encodable).
      await sup.reload(mysqlNode({ jobs: [{ name: "helper", exec: ["sleep", "1000"] }, { name: "extra", exec: ["sleep", "1000"] }] }));

      const before = sup.status().jobs.map((j) => [j.name, j.pid]);
      await expect(sup.reload(mysqlNode({ mysql: { datadir: "/elsewhere" } }))).rejects.toThrow(/mysql\.datadir: "\/var\/lib\/mysql" -> "\/elsewhere"/);
      expect(sup.status().jobs.map((j) => [j.name, j.pid])).toEqual(before);
      // Nothing was half-applied: the next valid reload is planned against the running config.
      const again = await sup.reload(mysqlNode({ jobs: [{ name: "helper", exec: ["sleep", "1000"] }, { name: "extra", exec: ["sleep", "1000"] }] }));
      expect(again.added).toEqual([]);
    } finally {
      await sup.shutdown("test over");
    }
  });

  it("a user job named like an internal job is a config error at start-up", () => {
    const sup = new Supervisor({ config: validateConfig({ mysql: {}, jobs: [{ name: "mysqld", exec: ["true"] }] }), logger });
    expect(() => sup.addInternalJob(mysqld)).toThrow(ConfigError);
    expect(() => sup.addInternalJob(mysqld)).toThrow(/jobs\[0\]\.name/);
  });
});

describe("control plane answers to a reload", () => {
  it("a ConfigError is a 400 with its problems; an internal ZodError is one line per field, never the raw dump", async () => {
    const socket = join(dir, "ctl.sock");
    let fail: () => never = () => {
      throw new ConfigError("/etc/statepilot.json5", [{ path: "jobs[0].restarts", message: 'expected "never", "unlimited" or a whole number', value: '"often"' }]);
    };
    const server = new ControlServer(socket, { status: () => ({}), reload: async () => fail(), maintenance: async () => undefined, putEnv: () => undefined }, logger);
    await server.start();
    try {
      const bad = await controlRequest(socket, "POST", "/v1/reload");
      expect(bad.status).toBe(400);
      expect((bad.body as { error: string }).error).toContain('jobs[0].restarts: expected "never", "unlimited" or a whole number (got "often")');
      fail = () => {
        throw z.object({ port: z.number() }).parse({ port: "x" });
      };
      const internal = await controlRequest(socket, "POST", "/v1/reload");
      expect(internal.status).toBe(500);
      const text = (internal.body as { error: string }).error;
      expect(text).toMatch(/^internal error: port: Invalid input: expected number/);
      expect(text).not.toContain('"code"');
    } finally {
      await server.stop();
    }
  });
});
