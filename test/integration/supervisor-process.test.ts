import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { runCli, startCli, writeConfig } from "../support/cli.js";
import { waitFor } from "../../src/lab/wait.js";
import { findBinary } from "../../src/binaries.js";
import { procStat } from "../../src/lab/procs.js";

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
          // Says when its trap is in place: SIGTERM is sent then, not some time after the start.
          exec: ["sh", "-c", `trap 'echo term > ${marker}; exit 0' TERM; : > ${marker}.ready; while :; do sleep 0.05; done`],
          hooks: { stopping: { exec: ["sh", "-c", `echo stopping > ${marker}.stopping`] }, stopped: { exec: ["sh", "-c", `echo stopped > ${marker}.stopped`] } },
        },
      ],
    });
    const run = startCli(["--config", cfg]);
    await waitFor(async () => existsSync(`${marker}.ready`), { timeoutMs: 60_000, what: "the job to install its TERM trap", detail: run.output });
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

  it("a main job ended by the stop signal statepilot forwarded is a requested stop: exit 0, no failure logged", async () => {
    const ready = join(dir, "plain.ready");
    const cfg = writeConfig(join(dir, "plain.json5"), {
      control: { socket: sock() },
      jobs: [{ name: "plain", main: true, exec: ["sh", "-c", `: > ${ready}; exec sleep 600`] }],
    });
    const run = startCli(["--config", cfg]);
    await waitFor(async () => existsSync(ready), { timeoutMs: 60_000, what: "the job to start", detail: run.output });
    run.child.kill("SIGTERM");
    const { code } = await run.exit;
    expect(code).toBe(0);
    expect(run.output()).toContain("stopped (by its stop signal, as asked)");
    expect(run.output()).not.toContain("exited with failure");
  });

  it("SIGKILLs a job that ignores its stop signal after stopTimeout", async () => {
    const cfg = writeConfig(join(dir, "stubborn.json5"), {
      control: { socket: sock() },
      jobs: [{ name: "stubborn", main: true, exec: ["sh", "-c", `trap '' TERM; : > ${join(dir, "stubborn.ready")}; while :; do sleep 0.05; done`], stopTimeout: "300ms" }],
    });
    const run = startCli(["--config", cfg]);
    // SIGTERM once the job ignores it (before its trap, SIGTERM would simply end it).
    await waitFor(async () => existsSync(join(dir, "stubborn.ready")), { timeoutMs: 60_000, what: "the job to ignore SIGTERM", detail: run.output });
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
    const pidFile = join(dir, "orphan.pid");
    const done = join(dir, "orphan.done");
    // The grandchild is orphaned at once (its shell exits) and exits itself shortly after; the main
    // job keeps running until told to stop, so tini is there to reap it.
    const script = `sh -c 'sleep 0.3 & echo $! > ${pidFile}'; while [ ! -e ${done} ]; do sleep 0.05; done; exit 4`;
    const run = startCli(["--", "sh", "-c", script], { STATEPILOT_SOCKET: sock() }, [tini, "-s", "-w", "--"]);
    const tiniPid = run.child.pid!;
    try {
      const orphan = await waitFor(async () => (existsSync(pidFile) ? Number(readFileSync(pidFile, "utf8").trim()) || undefined : undefined), { timeoutMs: 60_000, what: "the grandchild to start", detail: run.output });
      // Reaped: gone from the process table, not left as tini's zombie.
      await waitFor(async () => !procStat(orphan), {
        timeoutMs: 60_000,
        what: `the orphaned grandchild ${orphan} to be reaped`,
        detail: () => {
          const st = procStat(orphan);
          return st ? `it is still there: state ${st.state}, parent ${st.ppid}${st.ppid === tiniPid ? " (tini)" : ""}` : "";
        },
      });
    } finally {
      writeFileSync(done, "");
    }
    const { code } = await run.exit;
    expect(code).toBe(4);
  });
});
