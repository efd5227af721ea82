import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { execFileSync } from "node:child_process";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { runCli, startCli, writeConfig } from "../support/cli.js";
import { waitFor } from "../../src/lab/wait.js";
import { findBinary } from "../../src/binaries.js";

const dir = mkdtempSync(join(tmpdir(), "statepilot-sup-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
const sock = () => join(dir, `ctl-${++n}.sock`);

describe("the supervisor as a process", () => {
  it("returns the main job's exit code", async () => {
    const r = await runCli(["--", "sh", "-c", "exit 7"], { STATEPILOT_SOCKET: sock() });
    expect(r.code).toBe(7);
  });

  it("exits 2 naming the field on a broken config", async () => {
    const cfg = writeConfig(join(dir, "broken.json5"), "{ jobs: [ { name: 'x', exec: 'true', restarts: 'often' } ] }");
    const r = await runCli(["config", "check", "--config", cfg]);
    expect(r.code).toBe(2);
    expect(r.output).toContain("jobs[0].restarts");
    expect(r.output).toContain('"often"');
    const bad = await runCli(["--bogus"]);
    expect(bad.code).toBe(2);
    expect(bad.output).toContain('unknown option "--bogus"');
  });

  it("forwards SIGTERM to the main job and runs its stop hooks", async () => {
    const marker = join(dir, "term");
    const cfg = writeConfig(join(dir, "term.json5"), {
      control: { socket: sock() },
      jobs: [
        {
          name: "app",
          main: true,
          exec: ["sh", "-c", `trap 'echo term > ${marker}; exit 0' TERM; while :; do sleep 0.05; done`],
          hooks: { stopping: { exec: ["sh", "-c", `echo stopping > ${marker}.stopping`] }, stopped: { exec: ["sh", "-c", `echo stopped > ${marker}.stopped`] } },
        },
      ],
    });
    const run = startCli(["--config", cfg]);
    await waitFor(async () => run.output().includes('"msg":"started"'), { timeoutMs: 10_000, what: "the job to start", detail: run.output });
    await new Promise((r) => setTimeout(r, 200));
    const sent = performance.now();
    run.child.kill("SIGTERM");
    const { code } = await run.exit;
    const ms = performance.now() - sent;
    console.log(`supervisor: SIGTERM to exit ${ms.toFixed(0)} ms`);
    expect(code).toBe(0);
    expect(readFileSync(marker, "utf8").trim()).toBe("term");
    expect(existsSync(`${marker}.stopping`)).toBe(true);
    expect(existsSync(`${marker}.stopped`)).toBe(true);
  });

  it("SIGKILLs a job that ignores its stop signal after stopTimeout", async () => {
    const cfg = writeConfig(join(dir, "stubborn.json5"), {
      control: { socket: sock() },
      jobs: [{ name: "stubborn", main: true, exec: ["sh", "-c", "trap '' TERM; while :; do sleep 0.05; done"], stopTimeout: "300ms" }],
    });
    const run = startCli(["--config", cfg]);
    await waitFor(async () => run.output().includes('"msg":"started"'), { timeoutMs: 10_000, what: "the job to start" });
    run.child.kill("SIGTERM");
    const { code } = await run.exit;
    expect(code).toBe(137);
    expect(run.output()).toContain("sending SIGKILL");
  });

  it("restarts with backoff up to the limit", async () => {
    const cfg = writeConfig(join(dir, "restarts.json5"), {
      control: { socket: sock() },
      jobs: [{ name: "flaky", main: true, exec: "sh -c 'exit 3'", restarts: 2, backoff: { initial: "50ms", max: "200ms" } }],
    });
    const r = await runCli(["--config", cfg]);
    expect(r.code).toBe(3);
    expect(r.output.match(/"msg":"started"/g)?.length).toBe(3);
    expect(r.output).toMatch(/"delayMs":50.*"delayMs":100/s);
  });

  it("under tini, an orphaned grandchild leaves no zombie", async () => {
    const tini = findBinary("tini");
    const run = startCli(["--", "sh", "-c", "sh -c 'sleep 0.3 &' ; sleep 1.5; exit 4"], { STATEPILOT_SOCKET: sock() }, [tini, "-s", "-w", "--"]);
    await new Promise((r) => setTimeout(r, 900));
    const tiniPid = run.child.pid!;
    const ps = execFileSync("ps", ["-eo", "pid,ppid,stat,comm"], { encoding: "utf8" });
    const zombies = ps.split("\n").filter((l) => {
      const [, ppid, stat] = l.trim().split(/\s+/);
      return Number(ppid) === tiniPid && stat?.startsWith("Z");
    });
    expect(zombies).toEqual([]);
    const { code } = await run.exit;
    expect(code).toBe(4);
  });
});
