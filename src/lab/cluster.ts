import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { ConsulAgent } from "./consul-agent.js";
import { ManagedProcess } from "./process.js";
import { waitFor } from "./wait.js";
import { addNamespace, consulIp, createNetwork, destroyNetwork, nodeIp, nodeNs, type LabNetwork } from "./netns.js";
import { execFileSync } from "node:child_process";

export interface LabNode {
  name: string;
  mysql: { host: string; port: number };
  http: string;
  pids: { statepilot: number | null; mysqld: number | null };
  config: string;
  dir: string;
  /** The node's network namespace (a lab started with --netns). */
  ns?: string;
}

/** DIR/lab.json: everything a test, a benchmark or an operator needs to reach the lab. */
export interface LabFile {
  consul: string;
  consulPid: number;
  /** Consul's host and ports, so that a later process can restart it where clients expect it. */
  consulAgent?: { host: string; ports: number[] };
  cluster: string;
  credentials: { user: string; password: string; database: string; rootPassword: string; replUser: string; replPassword: string };
  lossless: boolean;
  subnet: string;
  /** Merged into every node's mysql section, including nodes added later. */
  mysql: Record<string, unknown>;
  /** Nodes and Consul in network namespaces on a lab bridge (for partitions). */
  network?: LabNetwork;
  /** The local snapshot store is a tmpfs of this many MiB (for store faults). */
  storeTmpfsMb?: number;
  nodes: LabNode[];
}

export interface LabUpOptions {
  dir: string;
  nodes: number;
  /** First three octets of the nodes' loopback addresses: node i is <subnet>.<i>. */
  subnet?: string;
  lossless?: boolean;
  /** Remove what an earlier lab left in DIR. */
  fresh?: boolean;
  /** Merged into each node's mysql section (tests tune timings or maximumLagOnFailover). */
  mysql?: Record<string, unknown>;
  /** Put Consul and every node in its own network namespace (root only). */
  netns?: boolean;
  /** Mount the shared local snapshot store as a tmpfs of this size (root only). */
  storeTmpfsMb?: number;
  timeoutMs?: number;
  log?: (line: string) => void;
}

/** The node's view from GET /status (the parts the lab reads). */
export interface NodeView {
  name: string;
  reachable: boolean;
  role: string;
  health: string;
  reason: string;
  readOnly: boolean | undefined;
  lagSeconds: number | null;
  primary: string | undefined;
  pids: { statepilot: number | null; mysqld: number | null };
  executed: string;
}

const HTTP_PORT = 9090;

function repoRoot(): string {
  let d = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(d, "package.json"))) {
    const up = dirname(d);
    if (up === d) throw new Error("cannot find the statepilot package root");
    d = up;
  }
  return d;
}

/** The compiled CLI each lab node runs. */
export function cliPath(): string {
  const p = join(repoRoot(), "dist", "src", "cli", "main.js");
  if (!existsSync(p)) throw new Error(`${p} is missing: run npm run build`);
  return p;
}

/** The images' entrypoint command and default config: lab nodes run exactly these. */
export function imageFiles(): { entrypoint: string; config: string } {
  return { entrypoint: join(repoRoot(), "images", "shared", "statepilot"), config: join(repoRoot(), "images", "shared", "statepilot.json5") };
}

export function alive(pid: number | null | undefined): boolean {
  if (!pid) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * A local cluster of real processes: one Consul dev agent and N statepilot nodes, each running
 * mariadbd on <subnet>.<i>:3306 from an empty datadir. Processes outlive the CLI; lab.json
 * remembers them, so any later command (status, kill, start, down) can find them by PID.
 */
export class Lab {
  private constructor(
    readonly dir: string,
    public file: LabFile,
  ) {}

  static path(dir: string): string {
    return join(resolve(dir), "lab.json");
  }

  static open(dir: string): Lab {
    const p = Lab.path(dir);
    if (!existsSync(p)) throw new Error(`no lab in ${resolve(dir)} (no lab.json); start one with: statepilot lab up --dir ${dir}`);
    return new Lab(resolve(dir), JSON.parse(readFileSync(p, "utf8")) as LabFile);
  }

  save(): void {
    writeFileSync(Lab.path(this.dir), `${JSON.stringify(this.file, null, 2)}\n`, { mode: 0o600 });
  }

  static async up(opts: LabUpOptions): Promise<Lab> {
    const dir = resolve(opts.dir);
    const log = opts.log ?? (() => undefined);
    if (!Number.isInteger(opts.nodes) || opts.nodes < 1 || opts.nodes > 9) throw new Error(`--nodes: expected 1 to 9, got ${opts.nodes}`);
    const subnet = opts.subnet ?? "127.0.10";
    if (!/^127\.\d{1,3}\.\d{1,3}$/.test(subnet)) throw new Error(`--subnet: expected three octets inside 127.0.0.0/8 such as 127.0.10, got ${JSON.stringify(subnet)}`);
    if (existsSync(Lab.path(dir))) {
      const old = Lab.open(dir);
      if (alive(old.file.consulPid) || old.file.nodes.some((n) => alive(n.pids.statepilot))) {
        throw new Error(`a lab is already running in ${dir}; stop it first: statepilot lab down --dir ${opts.dir}`);
      }
      if (!opts.fresh) throw new Error(`${dir} holds a stopped lab; pass --fresh to replace it`);
    }
    if (opts.fresh) rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    const consulDir = join(dir, "consul");
    mkdirSync(consulDir, { recursive: true });
    const k = Number(subnet.split(".")[2]);
    const network = opts.netns ? createNetwork(k) : undefined;
    if (opts.storeTmpfsMb) {
      mkdirSync(join(dir, "snapshots"), { recursive: true });
      execFileSync("mount", ["-t", "tmpfs", "-o", `size=${opts.storeTmpfsMb}m`, "statepilot-lab-store", join(dir, "snapshots")]);
    }
    log(`starting Consul (dev agent${network ? ` in namespace ${network.consulNs}` : ""}) ...`);
    const consul = await new ConsulAgent({
      dir: consulDir,
      persistent: true,
      ...(network ? { host: consulIp(k), netns: network.consulNs, ports: [8500, 8301, 8302, 8300] } : {}),
    }).start();
    const secret = () => randomBytes(12).toString("base64url");
    const file: LabFile = {
      consul: consul.address,
      consulPid: consul.pid!,
      consulAgent: { host: consul.host, ports: consul.portList },
      cluster: "lab",
      credentials: { user: "app", password: secret(), database: "app", rootPassword: secret(), replUser: "repl", replPassword: secret() },
      lossless: opts.lossless ?? false,
      subnet,
      mysql: opts.mysql ?? {},
      ...(network ? { network } : {}),
      ...(opts.storeTmpfsMb ? { storeTmpfsMb: opts.storeTmpfsMb } : {}),
      nodes: [],
    };
    const lab = new Lab(dir, file);
    lab.save();
    try {
      for (let i = 1; i <= opts.nodes; i++) lab.defineNode(i);
      lab.save();
      log(`starting ${opts.nodes} statepilot nodes, each with its own mariadbd (${file.nodes.map((n) => `${n.mysql.host}:3306`).join(", ")}) ...`);
      for (const n of file.nodes) await lab.spawnNode(n);
      lab.save();
      await lab.waitHealthy(opts.timeoutMs ?? 90_000);
      lab.save();
    } catch (err) {
      await lab.down().catch(() => undefined);
      throw err;
    }
    return lab;
  }

  /** Writes node i's config and directory; the node is not started. */
  defineNode(i: number): LabNode {
    const name = `mysql-${i}`;
    const net = this.file.network;
    const host = net ? nodeIp(net.k, i) : `${this.file.subnet}.${i}`;
    const ndir = join(this.dir, "nodes", name);
    mkdirSync(ndir, { recursive: true });
    // The image's default config, with this node's addresses and the lab's choices laid over it.
    const config = {
      extends: imageFiles().config,
      node: name,
      consul: { address: this.file.consul },
      control: { socket: join(ndir, "statepilot.sock") },
      telemetry: { port: HTTP_PORT, bind: host, interfaces: `static:${host}`, interval: "2s", ttl: "10s" },
      mysql: {
        cluster: this.file.cluster,
        datadir: join(ndir, "data"),
        socket: join(ndir, "mysqld.sock"),
        bind: host,
        interfaces: `static:${host}`,
        defaultsFile: "none",
        ...(process.getuid?.() === 0 ? { runAs: "root" } : {}),
        initDir: join(ndir, "initdb.d"),
        args: ["--innodb-buffer-pool-size=64M", "--innodb-log-file-size=32M", "--performance-schema=OFF", "--max-connections=200"],
        lossless: { enabled: this.file.lossless },
        // One directory shared by every node: the local store works across the lab.
        snapshots: { store: { type: "local", path: join(this.dir, "snapshots") } },
        ...this.file.mysql,
      },
    };
    const configPath = join(ndir, "statepilot.json");
    writeFileSync(configPath, `${JSON.stringify(config, null, 2)}\n`);
    const node: LabNode = { name, mysql: { host, port: 3306 }, http: `http://${host}:${HTTP_PORT}`, pids: { statepilot: null, mysqld: null }, config: configPath, dir: ndir, ...(net ? { ns: nodeNs(net.k, i) } : {}) };
    if (net) addNamespace(net, node.ns!, host);
    this.file.nodes = [...this.file.nodes.filter((n) => n.name !== name), node];
    return node;
  }

  /** A new node (the next address) joins the running cluster; resolves once it replicates. */
  async add(timeoutMs = 180_000): Promise<LabNode> {
    const i = Math.max(0, ...this.file.nodes.map((n) => Number(n.name.split("-")[1]))) + 1;
    if (i > 9) throw new Error("the lab holds at most 9 nodes");
    const n = this.defineNode(i);
    this.save();
    await this.spawnNode(n);
    this.save();
    await waitFor(
      async () => {
        const v = await this.view(n);
        return v.role === "replica" && v.health === "passing" ? v : undefined;
      },
      { timeoutMs, intervalMs: 250, what: `${n.name} to join as a replicating replica`, detail: () => this.logTail(n, 15), abortIf: () => (alive(n.pids.statepilot) ? undefined : `${n.name}'s statepilot exited`) },
    );
    await this.views();
    this.save();
    return n;
  }

  /** Stops Consul and starts it again on the same address (a dev agent forgets all its state). */
  async restartConsul(): Promise<void> {
    const a = this.file.consulAgent;
    if (!a) throw new Error("this lab.json has no consulAgent entry; recreate the lab");
    await this.stopConsul();
    const consul = await new ConsulAgent({ dir: join(this.dir, "consul"), persistent: true, host: a.host, ports: a.ports, ...(this.file.network ? { netns: this.file.network.consulNs } : {}) }).start();
    this.file.consulPid = consul.pid!;
    this.save();
  }

  node(name: string): LabNode {
    const n = this.file.nodes.find((x) => x.name === name || x.mysql.host === name);
    if (!n) throw new Error(`no node ${JSON.stringify(name)} in this lab (nodes: ${this.file.nodes.map((x) => x.name).join(", ")})`);
    return n;
  }

  private env(): NodeJS.ProcessEnv {
    const c = this.file.credentials;
    return {
      ...process.env,
      MYSQL_ROOT_PASSWORD: c.rootPassword,
      MYSQL_DATABASE: c.database,
      MYSQL_USER: c.user,
      MYSQL_PASSWORD: c.password,
      MYSQL_REPL_USER: c.replUser,
      MYSQL_REPL_PASSWORD: c.replPassword,
    };
  }

  async spawnNode(n: LabNode): Promise<void> {
    if (alive(n.pids.statepilot)) throw new Error(`${n.name} is already running (statepilot pid ${n.pids.statepilot})`);
    cliPath(); // fails early, with a hint, when the build is missing
    const argv = ["/bin/sh", imageFiles().entrypoint, "run", "--config", n.config];
    const [cmd, ...args] = n.ns ? ["ip", "netns", "exec", n.ns, ...argv] : argv;
    const p = await ManagedProcess.start(`statepilot@${n.name}`, cmd!, args, {
      env: { ...this.env(), NODE: process.execPath, STATEPILOT_HOME: repoRoot() },
      cwd: n.dir,
      logFile: join(n.dir, "statepilot.log"),
      persistent: true,
    });
    n.pids = { statepilot: p.pid, mysqld: null };
  }

  /** Starts a stopped node again and waits until it answers on HTTP. */
  async start(name: string, timeoutMs = 60_000): Promise<LabNode> {
    const n = this.node(name);
    await this.spawnNode(n);
    this.save();
    await waitFor(async () => (await this.view(n)).reachable, { timeoutMs, what: `${n.name} to answer on ${n.http}`, detail: () => this.logTail(n) });
    const v = await this.view(n);
    n.pids.mysqld = v.pids.mysqld;
    this.save();
    return n;
  }

  logTail(n: LabNode, lines = 20): string {
    try {
      return readFileSync(join(n.dir, "statepilot.log"), "utf8").trimEnd().split("\n").slice(-lines).join("\n");
    } catch {
      return "(no log)";
    }
  }

  async view(n: LabNode): Promise<NodeView> {
    const down: NodeView = { name: n.name, reachable: false, role: alive(n.pids.statepilot) ? "unreachable" : "stopped", health: "critical", reason: "", readOnly: undefined, lagSeconds: null, primary: undefined, pids: { statepilot: alive(n.pids.statepilot) ? n.pids.statepilot : null, mysqld: null }, executed: "" };
    try {
      const res = await fetch(`${n.http}/status`, { signal: AbortSignal.timeout(1_000) });
      const s = (await res.json()) as { jobs?: Array<{ name: string; pid?: number }>; mysql?: { role: string; health: string; reason: string; readOnly?: boolean; lagSeconds: number | null; primary?: { node: string }; executed: string } };
      const m = s.mysql;
      return {
        name: n.name,
        reachable: true,
        role: m?.role ?? "unknown",
        health: m?.health ?? "unknown",
        reason: m?.reason ?? "",
        readOnly: m?.readOnly,
        lagSeconds: m?.lagSeconds ?? null,
        primary: m?.primary?.node,
        pids: { statepilot: n.pids.statepilot, mysqld: s.jobs?.find((j) => j.name === "mysqld")?.pid ?? null },
        executed: m?.executed ?? "",
      };
    } catch {
      return down;
    }
  }

  async views(): Promise<NodeView[]> {
    const vs = await Promise.all(this.file.nodes.map((n) => this.view(n)));
    for (const v of vs) {
      const n = this.node(v.name);
      if (v.reachable) n.pids = v.pids;
      else if (!alive(n.pids.statepilot)) n.pids = { statepilot: null, mysqld: alive(n.pids.mysqld) ? n.pids.mysqld : null };
    }
    return vs;
  }

  /** One primary, every other running node a replicating replica. */
  async waitHealthy(timeoutMs: number): Promise<NodeView[]> {
    return waitFor(
      async () => {
        const vs = await this.views();
        const primaries = vs.filter((v) => v.role === "primary" && v.readOnly === false);
        const ok = primaries.length === 1 && vs.every((v) => v.role === "primary" || (v.role === "replica" && v.health === "passing"));
        return ok ? vs : undefined;
      },
      {
        timeoutMs,
        intervalMs: 200,
        what: "one primary and replicating replicas",
        // Every node of the lab must be running: a node whose statepilot exited fails the wait.
        abortIf: () => {
          const dead = this.file.nodes.filter((n) => !alive(n.pids.statepilot));
          return dead.length ? `statepilot is not running on ${dead.map((n) => n.name).join(", ")}:\n${dead.map((n) => `--- ${n.name}\n${this.logTail(n, 25)}`).join("\n")}` : undefined;
        },
        detail: () => this.file.nodes.map((n) => `--- ${n.name}\n${this.logTail(n, 8)}`).join("\n"),
      },
    );
  }

  /** One writable primary and every other node a passing replica at the primary's GTID position. */
  async waitConverged(timeoutMs: number): Promise<NodeView[]> {
    return waitFor(
      async () => {
        const vs = await this.views();
        const primaries = vs.filter((v) => v.role === "primary" && v.readOnly === false);
        if (primaries.length !== 1) return undefined;
        const p = primaries[0]!;
        return vs.every((v) => v === p || (v.role === "replica" && v.health === "passing" && v.executed === p.executed)) ? vs : undefined;
      },
      { timeoutMs, intervalMs: 200, what: "the cluster to converge (one primary, every replica caught up)" },
    );
  }

  async primary(): Promise<NodeView | undefined> {
    return (await this.views()).find((v) => v.role === "primary");
  }

  /** Signals a node: statepilot and mysqld (default), or only one of them. */
  async kill(name: string, opts: { signal?: NodeJS.Signals; only?: "mysqld" | "statepilot" } = {}): Promise<{ statepilot: number | null; mysqld: number | null }> {
    const n = this.node(name);
    const v = await this.view(n);
    const pids = { statepilot: alive(n.pids.statepilot) ? n.pids.statepilot : null, mysqld: v.pids.mysqld ?? (alive(n.pids.mysqld) ? n.pids.mysqld : null) };
    const sig = opts.signal ?? "SIGKILL";
    const hit = { statepilot: null as number | null, mysqld: null as number | null };
    const send = (pid: number | null, key: "statepilot" | "mysqld") => {
      if (!pid) return;
      try {
        process.kill(pid, sig);
        hit[key] = pid;
      } catch {
        // already gone
      }
    };
    if (opts.only !== "mysqld") send(pids.statepilot, "statepilot");
    if (opts.only !== "statepilot") send(pids.mysqld, "mysqld");
    if (sig === "SIGKILL" && opts.only !== "mysqld") n.pids = { statepilot: null, mysqld: opts.only === "statepilot" ? pids.mysqld : null };
    this.save();
    return hit;
  }

  private async stopConsul(): Promise<void> {
    const pid = this.file.consulPid;
    if (!alive(pid)) return;
    process.kill(pid, "SIGTERM");
    const until = Date.now() + 10_000;
    while (Date.now() < until && alive(pid)) await new Promise((r) => setTimeout(r, 50));
    if (alive(pid)) process.kill(pid, "SIGKILL");
  }

  /** SIGKILL of every process of the lab, synchronously: for a test process's exit hook. */
  killAllNow(): void {
    for (const p of [this.file.consulPid, ...this.file.nodes.flatMap((n) => [n.pids.statepilot, n.pids.mysqld])]) if (alive(p)) process.kill(p!, "SIGKILL");
  }

  /** Stops every process the lab started, by PID: nodes first (SIGTERM, then SIGKILL), then Consul. */
  async down(opts: { keep?: boolean; timeoutMs?: number } = {}): Promise<void> {
    await this.views().catch(() => undefined);
    const procs = this.file.nodes.flatMap((n) => [n.pids.statepilot, n.pids.mysqld]).filter((p): p is number => alive(p));
    for (const n of this.file.nodes) if (alive(n.pids.statepilot)) process.kill(n.pids.statepilot!, "SIGTERM");
    const deadline = Date.now() + (opts.timeoutMs ?? 60_000);
    while (Date.now() < deadline && procs.some(alive)) await new Promise((r) => setTimeout(r, 100));
    for (const p of procs) if (alive(p)) process.kill(p, "SIGKILL");
    await this.stopConsul();
    if (this.file.network) destroyNetwork(this.file.network, this.file.nodes.length);
    if (this.file.storeTmpfsMb) {
      try {
        execFileSync("umount", [join(this.dir, "snapshots")]);
      } catch {
        // not mounted
      }
    }
    if (opts.keep) {
      for (const n of this.file.nodes) n.pids = { statepilot: null, mysqld: null };
      this.save();
    } else rmSync(this.dir, { recursive: true, force: true });
  }
}
