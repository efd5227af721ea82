import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, afterEach, describe, expect, it, vi } from "vitest";
import { runSupervisor } from "../../src/cli/run.js";
import { ConfigError } from "../../src/config/load.js";
import { Supervisor } from "../../src/supervisor/supervisor.js";

const dir = mkdtempSync(join(tmpdir(), "statepilot-startup-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
afterEach(() => vi.restoreAllMocks());

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

async function waitFor(what: string, check: () => boolean, ms = 5_000): Promise<void> {
  for (const end = Date.now() + ms; !check(); await sleep(20)) if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
}

describe("a start-up failure in run stops what was already started", () => {
  it("jobs already spawned are stopped, the control socket is removed, and the error keeps its cause", async () => {
    const socket = join(dir, "ctl.sock");
    const pidFile = join(dir, "job.pid");
    const config = join(dir, "statepilot.json5");
    writeFileSync(config, JSON.stringify({ logging: { level: "fatal" }, control: { socket }, jobs: [{ name: "worker", exec: ["sh", "-c", `echo $$ > ${pidFile}; exec sleep 30`] }] }));
    const listeners = () => ["unhandledRejection", "uncaughtException", "SIGTERM", "SIGHUP"].map((e) => process.listenerCount(e));
    const before = listeners();
    const boom = new Error("boom after the jobs started");
    const start = Supervisor.prototype.start;
    let jobPid = 0;
    let socketWhileStarting = false;
    vi.spyOn(Supervisor.prototype, "start").mockImplementation(function (this: Supervisor) {
      start.call(this);
      socketWhileStarting = existsSync(socket);
      // Jobs start on the bus's "startup" event, delivered asynchronously: start this one now, so
      // that the failure below always finds a spawned job to stop, however busy the machine is.
      (Reflect.get(this, "jobs") as Map<string, { start(): void }>).get("worker")?.start();
      jobPid = this.jobPid("worker") ?? 0;
      throw boom;
    });
    const run = runSupervisor({ configPath: config, node: "n1", socket: undefined, mainCommand: undefined, version: "test" }, { PATH: process.env.PATH });
    const failure = run.then(
      () => undefined,
      (err: unknown) => err,
    );
    const err = (await failure) as Error;
    expect(jobPid, "the job was spawned").toBeGreaterThan(0);
    expect(err).toBeInstanceOf(Error);
    expect(err).not.toBeInstanceOf(ConfigError);
    expect(err.message).toBe("start-up failed: boom after the jobs started");
    expect(err.cause).toBe(boom);
    expect(socketWhileStarting).toBe(true);
    expect(existsSync(socket), "the control socket was left").toBe(false);
    await waitFor("the job to be gone", () => !alive(jobPid), 30_000);
    expect(listeners(), "process handlers left installed").toEqual(before);
  });

  it("a ConfigError found before anything starts is thrown as is (exit 2), with nothing started", async () => {
    const socket = join(dir, "ctl2.sock");
    const config = join(dir, "mysql.json5");
    writeFileSync(config, JSON.stringify({ control: { socket }, mysql: {} }));
    const spy = vi.spyOn(Supervisor.prototype, "start");
    const err = await runSupervisor({ configPath: config, node: "n1", socket: undefined, mainCommand: undefined, version: "test" }, { MYSQL_REPL_PASSWORD: "r" }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).exitCode).toBe(2);
    expect((err as ConfigError).message).toContain("mysql.credentials.rootPassword: required: set it or MYSQL_ROOT_PASSWORD");
    expect(spy).not.toHaveBeenCalled();
    expect(existsSync(socket)).toBe(false);
  });
});
