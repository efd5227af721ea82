import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { freePort } from "../../src/lab/ports.js";
import { PrometheusServer } from "../../src/lab/prometheus-server.js";
import { waitFor } from "../../src/lab/wait.js";
import { runCli, startCli, writeConfig, type CliRun } from "../support/cli.js";

/**
 * The telemetry endpoint's bearer token and bind address, on real statepilot processes: /status
 * needs the token, /metrics only when telemetry.auth.metrics is set, and a real Prometheus scrapes
 * a protected /metrics with `authorization: credentials_file`.
 */
const dir = mkdtempSync(join(tmpdir(), "statepilot-tauth-"));
const TOKEN = "tel-0123456789abcdef-TOKEN";
const tokenFile = join(dir, "telemetry.token");
const runs: CliRun[] = [];
let prom: PrometheusServer | undefined;

async function stop(run: CliRun): Promise<void> {
  if (run.child.exitCode !== null || run.child.signalCode !== null) return;
  run.child.kill("SIGTERM");
  const stopped = await Promise.race([run.exit.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 30_000))]);
  if (!stopped) {
    run.child.kill("SIGKILL");
    await run.exit;
  }
}

/** A statepilot with one job and the given telemetry section; resolves once /metrics answers. */
async function startNode(name: string, telemetry: Record<string, unknown>, env: NodeJS.ProcessEnv = {}): Promise<{ run: CliRun; url: string }> {
  const port = await freePort();
  const cfg = writeConfig(join(dir, `${name}.json5`), {
    node: name,
    control: { socket: join(dir, `${name}.sock`) },
    telemetry: { port, bind: "127.0.0.1", register: false, ...telemetry },
    jobs: [{ name: "app", main: true, exec: ["sleep", "1000"] }],
  });
  const run = startCli(["--config", cfg], env);
  runs.push(run);
  const url = `http://127.0.0.1:${port}`;
  await waitFor(async () => (await fetch(`${url}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } })).ok, {
    timeoutMs: 60_000,
    what: `${name}'s telemetry endpoint`,
    detail: () => run.output(),
    abortIf: () => (run.child.exitCode !== null ? `statepilot exited with ${run.child.exitCode}` : undefined),
  });
  return { run, url };
}

/** Whether anything accepts TCP connections on host:port. */
function accepts(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host, port });
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}

beforeAll(() => {
  writeFileSync(tokenFile, `${TOKEN}\n`, { mode: 0o600 });
});

afterAll(async () => {
  try {
    await Promise.all(runs.map(stop));
    await prom?.destroy();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}, 90_000);

describe("telemetry bearer token and bind address", () => {
  let node: { run: CliRun; url: string };

  beforeAll(async () => {
    node = await startNode("tok1", { auth: { tokenFile } });
  }, 90_000);

  it("/status: no token 401 with a Bearer challenge, a wrong token 401, the right token 200", async () => {
    const none = await fetch(`${node.url}/status`);
    expect(none.status).toBe(401);
    expect(none.headers.get("www-authenticate")).toMatch(/^Bearer realm="statepilot"$/);
    expect(await none.text()).not.toContain("tok1");

    const wrong = await fetch(`${node.url}/status`, { headers: { authorization: `Bearer ${TOKEN}-not` } });
    expect(wrong.status).toBe(401);
    expect(wrong.headers.get("www-authenticate")).toBe('Bearer realm="statepilot", error="invalid_token"');
    const basic = await fetch(`${node.url}/status`, { headers: { authorization: `Basic ${Buffer.from(`x:${TOKEN}`).toString("base64")}` } });
    expect(basic.status).toBe(401);

    const right = await fetch(`${node.url}/status`, { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(right.status).toBe(200);
    const body = (await right.json()) as { node: string; jobs: Array<{ name: string; pid?: number }> };
    expect(body.node).toBe("tok1");
    expect(body.jobs.find((j) => j.name === "app")?.pid).toBeGreaterThan(0);
  });

  it("/metrics stays open unless telemetry.auth.metrics is set", async () => {
    const open = await fetch(`${node.url}/metrics`);
    expect(open.status).toBe(200);
    expect(await open.text()).toContain("statepilot_job_starts_total");
  });

  it("honours the bind address: nothing listens on another loopback address", async () => {
    const port = Number(new URL(node.url).port);
    expect(await accepts("127.0.0.1", port)).toBe(true);
    expect(await accepts("127.0.0.2", port)).toBe(false);
  });

  it("never logs the token", () => {
    expect(node.run.output()).not.toContain(TOKEN);
  });

  it("with metrics: true and the token in a variable, /metrics needs it too, and Prometheus scrapes it with credentials_file", async () => {
    const guarded = await startNode("tok2", { auth: { tokenEnv: "TEL_TOKEN", metrics: true } }, { TEL_TOKEN: TOKEN });
    expect((await fetch(`${guarded.url}/metrics`)).status).toBe(401);
    expect((await fetch(`${guarded.url}/metrics`, { headers: { authorization: "Bearer nope" } })).status).toBe(401);
    expect((await fetch(`${guarded.url}/status`)).status).toBe(401);
    const target = new URL(guarded.url).host;
    prom = new PrometheusServer(
      [
        "global:",
        "  scrape_interval: 1s",
        "scrape_configs:",
        "  - job_name: with-token",
        "    authorization:",
        `      credentials_file: ${tokenFile}`,
        "    static_configs:",
        `      - targets: ["${target}"]`,
        "  - job_name: without-token",
        "    static_configs:",
        `      - targets: ["${target}"]`,
        "",
      ].join("\n"),
      join(dir, "prom"),
    );
    await prom.start();
    const targets = await waitFor(async () => {
      const t = await prom!.activeTargets();
      return t.length === 2 && t.every((x) => x.health !== "unknown") ? t : undefined;
    }, { timeoutMs: 60_000, intervalMs: 250, what: "Prometheus to scrape both targets once" });
    const byJob = Object.fromEntries(targets.map((t) => [t.labels.job, t]));
    expect(byJob["with-token"]?.health, JSON.stringify(targets)).toBe("up");
    expect(byJob["without-token"]?.health).toBe("down");
    expect(byJob["without-token"]?.lastError).toContain("401");
    expect(guarded.run.output()).not.toContain(TOKEN);
  });

  it("config check and run refuse a missing or empty token file, naming the field", async () => {
    const missing = writeConfig(join(dir, "missing.json5"), { telemetry: { auth: { tokenFile: join(dir, "no-such-token") } }, jobs: [{ name: "app", main: true, exec: ["true"] }] });
    const check = await runCli(["config", "check", "--config", missing]);
    expect(check.code).toBe(2);
    expect(check.output).toMatch(/telemetry\.auth\.tokenFile: cannot read ".*no-such-token": ENOENT/);
    const run = await runCli(["--config", missing]);
    expect(run.code).toBe(2);
    expect(run.output).toContain("telemetry.auth.tokenFile");

    const emptyFile = join(dir, "empty.token");
    writeFileSync(emptyFile, "\n");
    const empty = writeConfig(join(dir, "empty.json5"), { telemetry: { auth: { tokenFile: emptyFile } } });
    const checkEmpty = await runCli(["config", "check", "--config", empty]);
    expect(checkEmpty.code).toBe(2);
    expect(checkEmpty.output).toContain("telemetry.auth.tokenFile");
    expect(checkEmpty.output).toContain("is empty");

    const unset = writeConfig(join(dir, "unset.json5"), { telemetry: { auth: { tokenEnv: "STATEPILOT_TEST_NO_SUCH_TOKEN" } } });
    const checkUnset = await runCli(["config", "check", "--config", unset]);
    expect(checkUnset.code).toBe(2);
    expect(checkUnset.output).toContain("telemetry.auth.tokenEnv: $STATEPILOT_TEST_NO_SUCH_TOKEN is not set");

    const good = writeConfig(join(dir, "good.json5"), { telemetry: { auth: { tokenFile } } });
    const ok = await runCli(["config", "check", "--config", good]);
    expect(ok.code, ok.output).toBe(0);
    expect(ok.output).not.toContain(TOKEN);
  });
});
