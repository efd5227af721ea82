import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import mysql from "mysql2/promise";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { alive, Lab } from "../../src/lab/cluster.js";
import { waitFor } from "../../src/lab/wait.js";
import type { ClusterView } from "../../src/mysql/switchover.js";
import { CLI, runCli } from "../support/cli.js";

/**
 * The operator's runbook through the built CLI binary, on a real 3-node lab (real Consul, real
 * MariaDB): status, maintenance with the LB checks following, switchovers (candidates, named,
 * scheduled), pause/resume, snapshot create/list/restore with progress, rebuild of a diverged
 * replica (and its refusals), remove of a stopped node; every exit code checked and every `-o json`
 * parsed. Also: `--help` lists every command, and usage errors exit 2 naming the valid choices.
 * Every wait is on state, never on elapsed time.
 */
let dir: string;
let lab: Lab;
let config: string;

beforeAll(async () => {
  process.on("exit", () => lab?.killAllNow());
  dir = mkdtempSync(join(tmpdir(), "statepilot-runbook-cli-"));
  lab = await Lab.up({ dir: join(dir, "lab"), nodes: 3, subnet: "127.0.57" });
  await lab.waitConverged(120_000);
  config = lab.node("mysql-1").config;
}, 240_000);

afterAll(async () => {
  await lab?.down();
  if (dir) rmSync(dir, { recursive: true, force: true });
}, 120_000);

/** Runs the CLI with the node's config; expects `code`, returns the output. */
async function cli(args: string[], code = 0): Promise<string> {
  const r = await runCli([...args, "--config", config]);
  expect(r.code, `statepilot ${args.join(" ")}:\n${r.output}`).toBe(code);
  return r.output;
}

/** The CLI's `-o json` output, parsed (stdout and stderr are merged by runCli: the JSON is the block from the first line that opens it). */
function json<T>(output: string): T {
  const start = output.search(/^[[{]/m);
  expect(start, `no JSON in:\n${output}`).toBeGreaterThanOrEqual(0);
  const text = output.slice(start).trim();
  try {
    return JSON.parse(text) as T;
  } catch {
    // Something followed the JSON (a line on stderr): cut at the last closing line.
    const end = Math.max(text.lastIndexOf("\n}"), text.lastIndexOf("\n]"));
    return JSON.parse(text.slice(0, end + 2)) as T;
  }
}

const status = async (): Promise<ClusterView> => json<ClusterView>(await cli(["mysql", "status", "-o", "json"]));
const httpCode = async (url: string) => (await fetch(url, { signal: AbortSignal.timeout(5_000) })).status;
const sock = (node: string) => join(lab.node(node).dir, "statepilot.sock");

/**
 * The CLI on a terminal (script(1) gives it a pty): progress lines are drawn on stderr with
 * carriage returns; returns the whole screen output and the text after the last progress line.
 */
function onTty(args: string[]): { screen: string; last: string } {
  const command = [process.execPath, CLI, ...args, "--config", config].map((a) => `'${a}'`).join(" ");
  const screen = execFileSync("script", ["-qec", command, "/dev/null"], { encoding: "utf8", timeout: 240_000 });
  return { screen, last: screen.split("\x1b[2K").at(-1) ?? "" };
}

/** The cluster's view once `cond` holds for it (polled through the CLI). */
function viewWhen(cond: (v: ClusterView) => boolean, what: string, timeoutMs = 60_000): Promise<ClusterView> {
  return waitFor(async () => {
    const v = await status();
    return cond(v) ? v : undefined;
  }, { timeoutMs, intervalMs: 250, what });
}

/** Every member a running replica of the primary at its position (or the primary). */
const converged = (v: ClusterView): boolean =>
  !!v.primary &&
  v.members.every((m) => m.node === v.primary!.node ? m.role === "primary" : m.role === "replica" && m.up && m.source === v.primary!.node && !m.blocked && m.executed === v.members.find((p) => p.node === v.primary!.node)?.executed);

const replicaOf = (v: ClusterView) => v.members.filter((m) => m.node !== v.primary?.node).map((m) => m.node).sort();

describe("help and usage errors", () => {
  it("statepilot --help lists every command", async () => {
    const r = await runCli(["--help"]);
    expect(r.code).toBe(0);
    for (const c of ["[run]", "help", "config check", "config render", "convert", "status", "ping", "health", "reload", "maintenance on|off", "putenv", "putmetric", "mysql status", "mysql switchover", "mysql pause", "mysql resume", "mysql remove", "mysql rebuild", "snapshot list", "snapshot create", "snapshot restore", "lab up", "lab status", "lab kill", "lab start", "lab add", "lab down", "lab demo", "lab fault"]) {
      expect(r.output, `--help lists ${c}`).toContain(`statepilot ${c}`);
    }
  });

  it("usage errors exit 2 and name the valid choices", async () => {
    const cases: Array<[string[], RegExp]> = [
      [["mysql", "bogus", "--config", config], /expected status, switchover, pause, resume, remove or rebuild/],
      [["snapshot", "bogus", "--config", config], /expected list, create or restore/],
      [["maintenance", "sideways"], /expected on or off/],
      [["mysql", "status", "-o", "xml", "--config", config], /expected table, json, yaml/],
      [["mysql", "status", "--to", "mysql-2", "--config", config], /--to does not apply to statepilot mysql status \(it takes --json, --config, --output\)/],
      [["mysql", "rebuild", "mysql-2", "--config", config], /add --yes to confirm/],
      [["mysql", "rebuild", "--yes", "--config", config], /name the node to rebuild/],
      [["lab", "fault", "bogus", "--dir", dir], /expected one of kill-mysqld, kill-statepilot/],
      [["bogus"], /unknown command "bogus"/],
    ];
    const runs = await Promise.all(cases.map(([argv]) => runCli(argv)));
    for (const [i, [argv, message]] of cases.entries()) {
      const r = runs[i]!;
      expect(r.code, `statepilot ${argv.join(" ")}: ${r.output}`).toBe(2);
      expect(r.output).toMatch(message);
    }
  });
});

describe("the runbook", () => {
  it("mysql status -o json: one primary, two replicas at its position", async () => {
    const v = await viewWhen(converged, "a converged cluster");
    expect(v.primary?.node).toMatch(/^mysql-\d$/);
    expect(v.members).toHaveLength(3);
    expect(v.members.every((m) => m.alive)).toBe(true);
    const table = await cli(["mysql", "status"]);
    expect(table).toMatch(/^member\s+host\s+role\s+state/m);
  });

  it("maintenance on/off: the replica leaves the LB's replica check and comes back", async () => {
    const v = await status();
    const replica = replicaOf(v)[0]!;
    const http = lab.node(replica).http;
    await waitFor(async () => (await httpCode(`${http}/replica`)) === 200, { timeoutMs: 30_000, what: "the replica check to pass" });
    const on = await runCli(["maintenance", "on", "--reason", "runbook", "--socket", sock(replica), "-o", "json"]);
    expect(on.code, on.output).toBe(0);
    expect(json<{ maintenance?: boolean; enabled?: boolean }>(on.output)).toBeTypeOf("object");
    await waitFor(async () => (await httpCode(`${http}/replica`)) === 503, { timeoutMs: 15_000, what: "/replica to answer 503 in maintenance" });
    expect(await httpCode(`${http}/read-only`)).toBe(503);
    await viewWhen((x) => x.members.find((m) => m.node === replica)?.maintenance === true, `${replica} shown in maintenance`);
    const off = await runCli(["maintenance", "off", "--socket", sock(replica), "-o", "json"]);
    expect(off.code, off.output).toBe(0);
    json<object>(off.output);
    await waitFor(async () => (await httpCode(`${http}/replica`)) === 200, { timeoutMs: 30_000, what: "/replica back to 200" });
    await viewWhen((x) => x.members.find((m) => m.node === replica)?.maintenance === false, `${replica} out of maintenance`);
  });

  it("switchover: candidates listed without --to, then to a named node, then scheduled with --at +Ns", async () => {
    const v0 = await viewWhen(converged, "a converged cluster");
    const listed = await cli(["mysql", "switchover"]);
    expect(listed).toMatch(/candidates \(best first; the primary picks the first\): mysql-\d \(lag/);
    expect(listed).toMatch(/switchover mysql-\d -> mysql-\d done/);
    const v1 = await viewWhen(converged, "a converged cluster after the switchover");
    expect(v1.primary?.node).not.toBe(v0.primary?.node);

    const to = replicaOf(v1)[0]!;
    const named = json<{ state: string; from: string; to: string; topology: ClusterView }>(await cli(["mysql", "switchover", "--to", to, "-o", "json"]));
    expect(named).toMatchObject({ state: "done", from: v1.primary!.node, to });
    expect(named.topology.primary?.node).toBe(to);

    const v2 = await viewWhen(converged, "a converged cluster after the named switchover");
    const later = replicaOf(v2)[0]!;
    const scheduled = json<{ state: string; to: string; at: string }>(await cli(["mysql", "switchover", "--to", later, "--at", "+3s", "-o", "json"]));
    expect(scheduled).toMatchObject({ state: "requested", to: later });
    expect(Date.parse(scheduled.at)).toBeGreaterThan(Date.now() - 5_000);
    const v3 = await viewWhen((x) => x.primary?.node === later && x.switchover?.state === "done" && converged(x), `the scheduled switchover to ${later}`);
    expect(v3.switchover?.to).toBe(later);
  });

  it("pause/resume: shown in status, changed reported", async () => {
    expect(json<{ paused: boolean; changed: boolean }>(await cli(["mysql", "pause", "--reason", "runbook", "-o", "json"]))).toMatchObject({ paused: true, changed: true });
    expect((await status()).pause).toMatchObject({ paused: true, reason: "runbook" });
    expect(await cli(["mysql", "status"])).toMatch(/PAUSED since/);
    expect(json<{ changed: boolean }>(await cli(["mysql", "pause", "-o", "json"])).changed).toBe(false);
    expect(json<{ paused: boolean; changed: boolean }>(await cli(["mysql", "resume", "-o", "json"]))).toMatchObject({ paused: false, changed: true });
    expect((await status()).pause?.paused ?? false).toBe(false);
  });

  it("snapshot create, list and restore (-o json; progress lines on a terminal)", async () => {
    // On a terminal, create draws what it waits for (then prints the manifest).
    const created = onTty(["snapshot", "create", "--timeout", "2m", "-o", "json"]);
    expect(created.screen).toMatch(/snapshot: (waiting for a node to take it|being taken on mysql-\d) \(\d+ s\)/);
    const m = JSON.parse(created.last) as { id: string; gtid: string; node: string; size: number };
    expect(m.gtid).toMatch(/^\d+-\d+-\d+/);
    expect(m.size).toBeGreaterThan(0);
    const list = json<Array<{ id: string }>>(await cli(["snapshot", "list", "-o", "json"]));
    expect(list[0]?.id).toBe(m.id);
    const into = join(dir, "restored");
    const r = json<{ id: string; datadir: string; gtid: string; stagesMs: { download: number; prepare: number } }>(await cli(["snapshot", "restore", "--id", m.id, "--datadir", into, "-o", "json"]));
    expect(r).toMatchObject({ id: m.id, datadir: into, gtid: m.gtid });
    // Where the time went, for scripts and benchmarks.
    expect(r.stagesMs.download).toBeGreaterThan(0);
    expect(r.stagesMs.prepare).toBeGreaterThan(0);
    expect(existsSync(join(into, "mysql"))).toBe(true);
    // On a terminal (script(1) gives the CLI a pty) the restore draws its progress line.
    const tty = join(dir, "restored-tty");
    const out = execFileSync("script", ["-qec", `${process.execPath} ${CLI} snapshot restore --id ${m.id} --datadir ${tty} --config ${config}`, "/dev/null"], { encoding: "utf8", timeout: 120_000 });
    expect(out).toMatch(new RegExp(`restore ${m.id}.*MiB`));
    expect(out).toMatch(/restored .* into /);
    expect(readdirSync(tty).length).toBeGreaterThan(3);
  });

  it("rebuild: refused on the primary and on an unknown node; a diverged replica comes back as a replica at the primary's position", async () => {
    const v = await viewWhen(converged, "a converged cluster");
    const primary = v.primary!.node;
    const refused = await runCli(["mysql", "rebuild", primary, "--yes", "-o", "json", "--config", config]);
    expect(refused.code, refused.output).toBe(2);
    expect(refused.output).toMatch(new RegExp(`${primary} is the primary: switch over first`));
    const unknown = await runCli(["mysql", "rebuild", "mysql-9", "--yes", "--config", config]);
    expect(unknown.code).toBe(2);
    expect(unknown.output).toMatch(/no node "mysql-9" in cluster lab \(members: mysql-1, mysql-2, mysql-3\)/);

    // An errant write on a replica (binlogged under its own server_id): it is held as diverged.
    const victim = replicaOf(v)[0]!;
    const c = await mysql.createConnection({ socketPath: join(lab.node(victim).dir, "mysqld.sock"), user: "root", password: lab.file.credentials.rootPassword });
    await c.query("CREATE DATABASE errant_runbook");
    c.destroy();
    const diverged = await viewWhen((x) => !!x.members.find((m) => m.node === victim)?.blocked, `${victim} to be reported diverged`);
    expect(diverged.members.find((m) => m.node === victim)?.blocked).toMatch(/errant GTIDs/);

    // On a terminal the command shows the stage the node is at; the result is the JSON after it.
    const run = onTty(["mysql", "rebuild", victim, "--yes", "--timeout", "3m", "-o", "json"]);
    expect(run.screen).toMatch(new RegExp(`rebuild ${victim}: ${victim}: (fencing itself out|stopping mysqld|moving the datadir aside|looking for a snapshot|restoring snapshot|catching up)`));
    const r = JSON.parse(run.last) as { state: string; node: string; seed: string; primary: string; executed: string; primaryExecuted: string };
    expect(r).toMatchObject({ state: "done", node: victim, primary });
    expect(r.seed).toMatch(/^snapshot /);
    const after = await viewWhen(converged, "a converged cluster after the rebuild");
    const me = after.members.find((m) => m.node === victim)!;
    expect(me).toMatchObject({ role: "replica", blocked: "", source: primary });
    const again = await mysql.createConnection({ socketPath: join(lab.node(victim).dir, "mysqld.sock"), user: "root", password: lab.file.credentials.rootPassword });
    const [rows] = await again.query<mysql.RowDataPacket[]>("SHOW DATABASES LIKE 'errant_runbook'");
    again.destroy();
    expect(rows).toHaveLength(0);
    expect(readdirSync(lab.node(victim).dir).filter((f) => f.includes("before-rebuild"))).toEqual([]);
    expect(await httpCode(`${lab.node(victim).http}/replica`)).toBe(200);
  });

  it("remove: refused while the node is alive, done once it is stopped", async () => {
    const v = await viewWhen(converged, "a converged cluster");
    const gone = replicaOf(v).at(-1)!;
    const refused = await runCli(["mysql", "remove", gone, "--yes", "--config", config]);
    expect(refused.code).toBe(2);
    expect(refused.output).toMatch(new RegExp(`${gone} is alive`));
    const pid = lab.node(gone).pids.statepilot;
    await lab.kill(gone, { signal: "SIGTERM" });
    await waitFor(async () => !alive(pid), { timeoutMs: 60_000, what: `${gone}'s statepilot to stop` });
    await viewWhen((x) => x.members.find((m) => m.node === gone)?.alive === false, `${gone} not alive in the store`);
    expect(json<{ removed: string }>(await cli(["mysql", "remove", gone, "--yes", "-o", "json"]))).toMatchObject({ removed: gone });
    const after = await status();
    expect(after.members.map((m) => m.node)).not.toContain(gone);
    expect(after.members).toHaveLength(2);
  });
});
