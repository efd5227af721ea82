import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { controlRequest } from "../../src/control/client.js";
import { Lab, type LabNode } from "../../src/lab/cluster.js";
import { waitFor } from "../../src/lab/wait.js";
import { runCli } from "../support/cli.js";

/**
 * `statepilot reload` and SIGHUP on a real MySQL node (one lab node: real Consul, statepilot
 * supervising a real mariadbd): job changes apply with mysqld untouched; a change to the mysql
 * section and an invalid file are refused with the field named, and nothing changes.
 */
let lab: Lab;
let node: LabNode;
let socket: string;
let written: Record<string, unknown>;
const dir = mkdtempSync(join(tmpdir(), "statepilot-mreload-"));

interface Status {
  jobs: Array<{ name: string; state: string; pid?: number }>;
  mysql?: { role: string };
}

async function status(): Promise<Status> {
  const r = await controlRequest(socket, "GET", "/v1/status");
  if (r.status !== 200) throw new Error(`status: HTTP ${r.status}`);
  return r.body as Status;
}

const jobPids = async () => Object.fromEntries((await status()).jobs.map((j) => [j.name, j.pid ?? null]));

function writeNodeConfig(change: (c: Record<string, unknown>) => Record<string, unknown>): void {
  writeFileSync(node.config, `${JSON.stringify(change(structuredClone(written)), null, 2)}\n`);
}

async function running(name: string): Promise<boolean> {
  return (await status()).jobs.some((j) => j.name === name && j.state === "running" && j.pid !== undefined);
}

const log = () => (existsSync(join(node.dir, "statepilot.log")) ? readFileSync(join(node.dir, "statepilot.log"), "utf8") : "");

beforeAll(async () => {
  process.on("exit", () => lab?.killAllNow());
  lab = await Lab.up({ dir: join(dir, "lab"), nodes: 1, subnet: "127.0.38" });
  node = lab.file.nodes[0]!;
  socket = join(node.dir, "statepilot.sock");
  written = JSON.parse(readFileSync(node.config, "utf8")) as Record<string, unknown>;
  await waitFor(async () => (await status()).mysql?.role === "primary", { timeoutMs: 60_000, what: "the node to be primary", detail: () => lab.logTail(node) });
}, 240_000);

afterAll(async () => {
  try {
    await lab?.down();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}, 120_000);

describe("reload on a MySQL node", () => {
  let mysqldPid: number | null;

  it("statepilot reload adds a job; mysqld keeps running, untouched", async () => {
    mysqldPid = (await jobPids()).mysqld ?? null;
    expect(mysqldPid).toBeGreaterThan(0);
    writeNodeConfig((c) => ({ ...c, reloadOnSighup: true, jobs: [{ name: "sidecar", exec: ["sleep", "1000"] }] }));
    const r = await runCli(["reload", "-o", "json", "--socket", socket]);
    expect(r.code, r.output).toBe(0);
    expect(JSON.parse(r.output)).toEqual({ restarted: [], added: ["sidecar"], removed: [], unchanged: ["mysqld"] });
    await waitFor(() => running("sidecar"), { timeoutMs: 30_000, what: "the sidecar job", detail: () => lab.logTail(node) });
    expect((await jobPids()).mysqld).toBe(mysqldPid);
    expect((await status()).mysql?.role).toBe("primary");
  });

  it("SIGHUP (reloadOnSighup) reloads the same way, and is not forwarded to mysqld", async () => {
    const pid = node.pids.statepilot!;
    expect(readFileSync(`/proc/${pid}/cmdline`, "utf8")).toContain("main.js");
    writeNodeConfig((c) => ({ ...c, reloadOnSighup: true, jobs: [{ name: "sidecar", exec: ["sleep", "1000"] }, { name: "sidecar2", exec: ["sleep", "1000"] }] }));
    process.kill(pid, "SIGHUP");
    await waitFor(() => running("sidecar2"), { timeoutMs: 30_000, what: "the SIGHUP reload to start sidecar2", detail: () => lab.logTail(node) });
    expect((await jobPids()).mysqld).toBe(mysqldPid);
    expect(log()).not.toContain("reload on SIGHUP rejected");
  });

  it("a change to the mysql section is refused (409, exit 2), naming the field; nothing changes", async () => {
    const before = await jobPids();
    writeNodeConfig((c) => ({ ...c, reloadOnSighup: true, jobs: [], mysql: { ...(c.mysql as Record<string, unknown>), port: 3307 } }));
    const http = await controlRequest(socket, "POST", "/v1/reload");
    expect(http.status).toBe(409);
    const r = await runCli(["reload", "--socket", socket]);
    expect(r.code).toBe(2);
    expect(r.output).toContain("mysql.port: 3306 -> 3307");
    expect(r.output).toContain("restart statepilot");
    expect(await jobPids()).toEqual(before);
  });

  it("an invalid file is refused (400, exit 2) naming the path and value, never a raw ZodError; nothing changes", async () => {
    const before = await jobPids();
    writeNodeConfig((c) => ({ ...c, reloadOnSighup: true, jobs: [{ name: "sidecar", exec: ["sleep", "1000"], restarts: "often" }] }));
    const http = await controlRequest(socket, "POST", "/v1/reload");
    expect(http.status).toBe(400);
    expect((http.body as { problems: Array<{ path: string; value?: string }> }).problems).toContainEqual(expect.objectContaining({ path: "jobs[0].restarts", value: '"often"' }));
    const r = await runCli(["reload", "--socket", socket]);
    expect(r.code).toBe(2);
    expect(r.output).toContain('jobs[0].restarts: expected "never", "unlimited" or a whole number (got "often")');
    expect(r.output).not.toMatch(/ZodError|"code":/);

    // A main job of one's own next to a mysql section: the user's mistake, reported as such.
    writeNodeConfig((c) => ({ ...c, reloadOnSighup: true, jobs: [{ name: "app", main: true, exec: ["sleep", "1000"] }] }));
    const main = await runCli(["reload", "--socket", socket]);
    expect(main.code).toBe(2);
    expect(main.output).toContain("jobs[0].main: with a mysql section, mysqld is the main job; drop main here (got true)");

    // The same file on SIGHUP: logged, the running config stays.
    process.kill(node.pids.statepilot!, "SIGHUP");
    await waitFor(async () => log().includes("reload on SIGHUP rejected"), { timeoutMs: 30_000, what: "the rejected SIGHUP reload in the log" });
    expect(log()).toContain("jobs[0].main");
    expect(await jobPids()).toEqual(before);
  });

  it("the running config was kept: the last valid file reloads as 'no change'", async () => {
    writeNodeConfig((c) => ({ ...c, reloadOnSighup: true, jobs: [{ name: "sidecar", exec: ["sleep", "1000"] }, { name: "sidecar2", exec: ["sleep", "1000"] }] }));
    const r = await runCli(["reload", "-o", "json", "--socket", socket]);
    expect(r.code, r.output).toBe(0);
    expect(JSON.parse(r.output)).toEqual({ restarted: [], added: [], removed: [], unchanged: ["sidecar", "sidecar2", "mysqld"] });
    expect((await jobPids()).mysqld).toBe(mysqldPid);
    expect((await status()).mysql?.role).toBe("primary");
  });
});
