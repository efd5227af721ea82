import { randomBytes } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { setTimeout as sleep } from "node:timers/promises";
import mysql from "mysql2/promise";
import { ConsulAgent } from "./consul-agent.js";
import { EtcdServer, raftLeaderIndex } from "./etcd-server.js";
import { freePorts } from "./ports.js";
import { onInterrupt } from "./interrupt.js";
import { ManagedProcess } from "./process.js";
import { waitFor } from "./wait.js";
import { type ConsulClusterHost, type ConsulMemberEntry, consulAddress, consulLeader, startConsulClient, startConsulServers } from "./consul-cluster.js";
import { addNamespace, consulIp, createNetwork, ensureNamespace, nodeIp, nodeNs, reclaimNetwork, removeNetwork, type LabNetwork } from "./netns.js";
import { describeProcess, gone, killSync, LAB_DIR_ENV, LAB_NET_ENV, LAB_OWNER_ENV, listenersOn, procCmdline, procEnv, processesWithEnv, processToken, procStat, tokenAlive } from "./procs.js";
import { execFileSync } from "node:child_process";
import { findBinary } from "../binaries.js";
import type { Flavor } from "../mysql/gtid.js";
import type { RestorePoint } from "../archive/point.js";
import { restoringConfig, sourceLab } from "./restore-lab.js";

export interface LabNode {
  name: string;
  mysql: { host: string; port: number };
  http: string;
  pids: { statepilot: number | null; mysqld: number | null };
  config: string;
  dir: string;
  /** mysqld's unix socket. */
  socket?: string;
  /** The node's network namespace (a lab started with --netns). */
  ns?: string;
}

/** DIR/lab.json: everything a test, a benchmark or an operator needs to reach the lab. */
export interface LabFile {
  consul: string;
  consulPid: number;
  /** Consul's host and ports, so that a later process can restart it where clients expect it. */
  consulAgent?: { host: string; ports: number[] };
  /**
   * A lab on a real Consul cluster (`--store consul --store-servers 3`): its three servers, and
   * each node's client agent (that node's statepilot talks to it). `consul` then names the first
   * server's HTTP API (any agent serves the catalog and KV).
   */
  consulCluster?: { servers: ConsulMemberEntry[]; clients: Record<string, ConsulMemberEntry> };
  /**
   * The lab's etcd (a lab started with store etcd): every node's cluster store (leader key,
   * members, records); Consul keeps the service registrations. Host and ports, so that a later
   * process can stop and start it where the nodes expect it (its data directory is DIR/etcd).
   */
  etcd?: { endpoint: string; pid: number; host: string; ports: number[]; members?: EtcdMemberEntry[] };
  cluster: string;
  credentials: { user: string; password: string; database: string; rootPassword: string; replUser: string; replPassword: string };
  lossless: boolean;
  /** The server every node runs (absent in older lab files: mariadb). */
  flavor?: Flavor;
  subnet: string;
  /** Merged into every node's mysql section, including nodes added later. */
  mysql: Record<string, unknown>;
  /** Nodes and Consul in network namespaces on a lab bridge (for partitions). */
  network?: LabNetwork;
  /** The local snapshot store is a tmpfs of this many MiB (for store faults). */
  storeTmpfsMb?: number;
  /** "starting" while Lab.up runs, "up" once it returned. */
  state?: "starting" | "up";
  /** The process that ran Lab.up ("pid:starttime"). */
  startedBy?: string;
  /** The process the lab belongs to (a test, a benchmark): the lab dies with it. Absent: it outlives its creator (the CLI). */
  owner?: string;
  nodes: LabNode[];
}

/** One member of the lab's multi-member etcd (`--store-servers 3`): where it listens, its process. */
export interface EtcdMemberEntry {
  name: string;
  endpoint: string;
  /** 0 while stopped. */
  pid: number;
  /** client, peer */
  ports: number[];
}

export interface LabUpOptions {
  dir: string;
  nodes: number;
  /** First three octets of the nodes' loopback addresses: node i is <subnet>.<i>. */
  subnet?: string;
  lossless?: boolean;
  /** mariadb (Debian's mariadbd, the default) or mysql (MySQL from Debian sid: scripts/install.sh mysql). */
  flavor?: Flavor;
  /**
   * The nodes' cluster store: consul (the lab's Consul agent, the default) or etcd (a real
   * single-member etcd started beside Consul, which still holds the service registrations).
   */
  store?: "consul" | "etcd";
  /**
   * 3: the store runs as a real 3-server cluster (leader election, quorum loss): a 3-member etcd,
   * or three Consul servers with one client agent per node (not with netns). Default 1.
   */
  storeServers?: 1 | 3;
  /** Remove what an earlier lab left in DIR. */
  fresh?: boolean;
  /** Merged into each node's mysql section (tests tune timings or maximumLagOnFailover). */
  mysql?: Record<string, unknown>;
  /** Put Consul and every node in its own network namespace (root only). */
  netns?: boolean;
  /** Mount the shared local snapshot store as a tmpfs of this size (root only). */
  storeTmpfsMb?: number;
  /**
   * The lab belongs to this process: its processes die with it, however it ends (exit, signal,
   * SIGKILL, its parent gone). Default: inside a Vitest worker, yes; otherwise (the CLI) the lab
   * outlives the process that started it, and is stopped only if that process is interrupted
   * during Lab.up.
   */
  owned?: boolean;
  /** Replace the generated credentials (security tests use hostile values). */
  credentials?: Partial<LabFile["credentials"]>;
  /** Start every node from another lab's cluster as it was at a point (that lab's store: snapshot + binlog archive); its accounts are kept. */
  restoreTo?: { point: RestorePoint; from: string };
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

export function repoRoot(): string {
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

/**
 * The MySQL server lab nodes of flavor mysql run: $STATEPILOT_MYSQLD_SID_BIN, else the wrapper
 * `scripts/install.sh mysql` leaves in the cache (MySQL from Debian sid run through its own loader).
 */
export function labMysqlBinary(): string {
  try {
    return findBinary("mysqld-sid");
  } catch {
    throw new Error("--flavor mysql: no MySQL server installed (mysqld-sid not found in the cache); run: bash scripts/install.sh mysql");
  }
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

/** Whether the lab in `dir` is still wanted; if not, whatever it left running is a leftover. */
export function labIsLive(dir: string): boolean {
  let f: LabFile;
  try {
    f = JSON.parse(readFileSync(Lab.path(dir), "utf8")) as LabFile;
  } catch {
    return false; // no lab.json: nothing can operate that lab any more
  }
  if (f.owner) return tokenAlive(f.owner);
  if (f.state === "starting") return tokenAlive(f.startedBy);
  return true;
}

/** Processes of the lab in `dir`, found by their marker (see procs.ts), whatever lab.json remembers. */
export function labProcesses(dir: string): number[] {
  return processesWithEnv(LAB_DIR_ENV, resolve(dir));
}

/** A PID from lab.json that still names a process of this lab (PIDs get reused). */
function ours(pid: number | null | undefined, dir: string): pid is number {
  if (!pid || gone(pid)) return false;
  const env = procEnv(pid);
  if (env?.get(LAB_DIR_ENV) !== undefined) return env.get(LAB_DIR_ENV) === dir;
  // A lab.json written before processes were marked.
  return procCmdline(pid).includes(dir) || procStat(pid)?.comm === "consul" || procStat(pid)?.comm === "etcd";
}

/** Unmounts whatever is mounted at or below `dir` (the lab's tmpfs store), lazily: nothing can keep it busy. */
function unmountUnder(dir: string): void {
  let mounts: string[] = [];
  try {
    mounts = readFileSync("/proc/mounts", "utf8")
      .split("\n")
      .map((l) => l.split(" ")[1] ?? "")
      .map((m) => m.replace(/\\040/g, " "))
      .filter((m) => m === dir || m.startsWith(`${dir}/`));
  } catch {
    return;
  }
  for (const m of mounts.sort().reverse()) {
    try {
      execFileSync("umount", ["-l", m], { stdio: "ignore" });
    } catch {
      // not mounted any more
    }
  }
}

/** SIGKILLs every process of the lab in `dir`, removes its network and unmounts its store; synchronous. */
function killLabNow(dir: string, file: LabFile | undefined): void {
  const pids = new Set(labProcesses(dir));
  if (file) for (const p of [file.consulPid, file.etcd?.pid, ...file.nodes.flatMap((n) => [n.pids.statepilot, n.pids.mysqld])]) if (ours(p, dir)) pids.add(p);
  killSync(pids);
  if (file?.network) removeNetwork(file.network.k);
  unmountUnder(dir);
}

let myToken: string | undefined;
const thisProcess = () => (myToken ??= processToken());

/**
 * A local cluster of real processes: one Consul dev agent and N statepilot nodes, each running
 * mariadbd on <subnet>.<i>:3306 from an empty datadir. Started by the CLI, the processes outlive
 * it; lab.json remembers them, so any later command (status, kill, start, down) can find them by
 * PID, and every process carries the lab's marker (STATEPILOT_LAB_DIR) so that down, and the next
 * up after a run that was killed, find all of them, mysqld and its tools included. Started by a
 * test or a benchmark (owned), the lab dies with that process however it ends.
 */
export class Lab {
  /** Unregisters the cleanup that stops this lab if this process is interrupted (Lab.up registers it). */
  private releaseInterrupt: (() => void) | undefined;

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
    const owned = opts.owned ?? process.env.VITEST !== undefined;
    Lab.reclaimDir(dir, opts.fresh ?? false, log);
    if (opts.fresh) rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    const consulDir = join(dir, "consul");
    mkdirSync(consulDir, { recursive: true });
    const k = Number(subnet.split(".")[2]);
    if (opts.flavor === "mysql") labMysqlBinary(); // fails early, with the install hint
    const restoreFrom = opts.restoreTo ? sourceLab(opts.restoreTo.from) : undefined;
    // From here on, an interrupted up (Ctrl-C, SIGTERM, a timeout) stops what it started.
    let file: LabFile | undefined;
    const release = onInterrupt({ what: `the lab in ${dir}`, onExit: owned, onOrphaned: owned, run: () => killLabNow(dir, file) });
    let lab: Lab | undefined;
    try {
      const network = opts.netns ? createNetwork(k, dir, labIsLive) : undefined;
      file = {
        consul: "",
        consulPid: 0,
        cluster: "lab",
        credentials: { user: "app", password: "", database: "app", rootPassword: "", replUser: "repl", replPassword: "" },
        lossless: opts.lossless ?? false,
        flavor: opts.flavor ?? "mariadb",
        subnet,
        mysql: restoreFrom && opts.restoreTo ? restoringConfig(opts.mysql ?? {}, join(dir, "snapshots"), restoreFrom, opts.restoreTo.point, log) : (opts.mysql ?? {}),
        ...(network ? { network } : {}),
        ...(opts.storeTmpfsMb ? { storeTmpfsMb: opts.storeTmpfsMb } : {}),
        state: "starting",
        startedBy: thisProcess(),
        ...(owned ? { owner: thisProcess() } : {}),
        nodes: [],
      };
      if (opts.storeTmpfsMb) {
        mkdirSync(join(dir, "snapshots"), { recursive: true });
        execFileSync("mount", ["-t", "tmpfs", "-o", `size=${opts.storeTmpfsMb}m`, "statepilot-lab-store", join(dir, "snapshots")]);
      }
      lab = new Lab(dir, file);
      lab.releaseInterrupt = release;
      lab.save();
      const secret = () => randomBytes(12).toString("base64url");
      if (opts.store !== "etcd" && opts.storeServers === 3) {
        log(`starting Consul (${ConsulAgent.version()}: three servers, -bootstrap-expect=3${network ? ` in namespace ${network.consulNs}; each node's client agent in the node's namespace` : ""}) ...`);
        const servers = await startConsulServers(lab.consulHost(), 3, undefined, network ? consulIp(k) : undefined, undefined, network?.consulNs);
        file.consulCluster = { servers, clients: {} };
        file.consul = consulAddress(servers[0]!);
        file.consulPid = servers[0]!.pid;
        lab.save();
      } else {
        log(`starting Consul (dev agent${network ? ` in namespace ${network.consulNs}` : ""}) ...`);
        const consul = await new ConsulAgent({
          dir: consulDir,
          persistent: !owned,
          env: lab.markers(),
          ...(network ? { host: consulIp(k), netns: network.consulNs, ports: [8500, 8301, 8302, 8300] } : {}),
        }).start();
        file.consul = consul.address;
        file.consulPid = consul.pid!;
        file.consulAgent = { host: consul.host, ports: consul.portList };
        lab.save();
      }
      if (opts.store === "etcd") {
        const members = opts.storeServers ?? 1;
        log(`starting etcd (${EtcdServer.version()}, ${members === 1 ? "one member" : `${members} members`}${network ? ` in namespace ${network.consulNs}` : ""}) for the cluster store ...`);
        if (members > 1) await lab.startEtcdMembers(members, network ? consulIp(k) : undefined);
        else await lab.startEtcd(network ? { host: consulIp(k), ports: [2379, 2380] } : undefined);
      }
      file.credentials = { user: "app", password: secret(), database: "app", rootPassword: secret(), replUser: "repl", replPassword: secret(), ...restoreFrom?.credentials, ...opts.credentials };
      lab.save();
      for (let i = 1; i <= opts.nodes; i++) await lab.startNodeAgent(i);
      for (let i = 1; i <= opts.nodes; i++) lab.defineNode(i);
      lab.save();
      log(`starting ${opts.nodes} statepilot nodes, each with its own ${file.flavor === "mysql" ? "MySQL mysqld" : "mariadbd"} (${file.nodes.map((n) => `${n.mysql.host}:3306`).join(", ")}) ...`);
      for (const n of file.nodes) await lab.spawnNode(n);
      lab.save();
      await lab.waitReady(opts.timeoutMs ?? 180_000);
      file.state = "up";
      lab.save();
    } catch (err) {
      // The error carries the nodes' log tails; STATEPILOT_KEEP_LABS=1 keeps the whole directory.
      if (lab) await lab.down({ keep: process.env.STATEPILOT_KEEP_LABS === "1", timeoutMs: 10_000 }).catch(() => undefined);
      else {
        killLabNow(dir, file);
        release();
      }
      throw err;
    }
    return lab;
  }

  /**
   * Before a lab starts in `dir`: a running lab there is an error; what a killed or interrupted one
   * left (processes, its network, its tmpfs) is stopped and removed.
   */
  private static reclaimDir(dir: string, fresh: boolean, log: (line: string) => void): void {
    let old: LabFile | undefined;
    try {
      old = existsSync(Lab.path(dir)) ? (JSON.parse(readFileSync(Lab.path(dir), "utf8")) as LabFile) : undefined;
    } catch {
      old = undefined; // unreadable: treated as a leftover
    }
    const running = new Set(labProcesses(dir));
    if (old) for (const p of [old.consulPid, old.etcd?.pid, ...old.nodes.flatMap((n) => [n.pids.statepilot, n.pids.mysqld])]) if (ours(p, dir)) running.add(p);
    if (running.size && labIsLive(dir)) {
      throw new Error(`a lab is already running in ${dir}; stop it first: statepilot lab down --dir ${dir}`);
    }
    if (running.size) {
      log(`stopping what an interrupted lab left in ${dir}: ${[...running].map(describeProcess).join(", ")}`);
      const left = killSync(running);
      if (left.length) throw new Error(`cannot stop what an earlier lab left in ${dir}: ${left.map(describeProcess).join(", ")}`);
    }
    if (old?.network) reclaimNetwork(old.network.k, dir, labIsLive);
    unmountUnder(dir);
    if (old && !fresh) throw new Error(`${dir} holds a stopped lab; pass --fresh to replace it`);
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
      consul: { address: this.file.consulCluster?.clients[name] ? consulAddress(this.file.consulCluster.clients[name]) : this.file.consul },
      ...(this.file.etcd ? { store: { type: "etcd", endpoints: this.file.etcd.members?.map((m) => m.endpoint) ?? [this.file.etcd.endpoint] } } : {}),
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
        ...(this.file.flavor === "mysql"
          ? {
              binary: labMysqlBinary(),
              // MySQL 8.0.30 replaced innodb_log_file_size with innodb_redo_log_capacity (9.x removed the old one).
              args: ["--innodb-buffer-pool-size=64M", "--innodb-redo-log-capacity=32M", "--performance-schema=OFF", "--max-connections=200"],
            }
          : { args: ["--innodb-buffer-pool-size=64M", "--innodb-log-file-size=32M", "--performance-schema=OFF", "--max-connections=200"] }),
        lossless: { enabled: this.file.lossless },
        // One directory shared by every node: the local store works across the lab.
        snapshots: { store: { type: "local", path: join(this.dir, "snapshots") } },
        ...this.file.mysql,
      },
    };
    const configPath = join(ndir, "statepilot.json");
    // It may hold the store's keys (an S3 store, the store a restore reads from): the owner's only.
    writeFileSync(configPath, `${JSON.stringify(config, null, 2)}\n`, { mode: 0o600 });
    chmodSync(configPath, 0o600);
    const socket = typeof config.mysql.socket === "string" ? config.mysql.socket : join(ndir, "mysqld.sock");
    const node: LabNode = { name, mysql: { host, port: 3306 }, http: `http://${host}:${HTTP_PORT}`, pids: { statepilot: null, mysqld: null }, config: configPath, dir: ndir, socket, ...(net ? { ns: nodeNs(net.k, i) } : {}) };
    // A node's Consul client agent may already run in its namespace (a Consul cluster lab): kept.
    if (net) (this.file.consulCluster?.clients[name] ? ensureNamespace : addNamespace)(net, node.ns!, host);
    this.file.nodes = [...this.file.nodes.filter((n) => n.name !== name), node];
    return node;
  }

  /** A new node (the next address) joins the running cluster; resolves once it replicates. */
  async add(timeoutMs = 180_000): Promise<LabNode> {
    const i = Math.max(0, ...this.file.nodes.map((n) => Number(n.name.split("-")[1]))) + 1;
    if (i > 9) throw new Error("the lab holds at most 9 nodes");
    await this.startNodeAgent(i);
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
    await waitFor(async () => (await this.nodeAnswers(n, "replica")) === "", { timeoutMs: 60_000, what: `${n.name}'s mysqld to accept connections`, detail: () => this.logTail(n, 15) });
    await this.views();
    this.save();
    return n;
  }

  /** What consul-cluster.ts needs to start this lab's agents. */
  consulHost(): ConsulClusterHost {
    return { dir: this.dir, persistent: !this.tiedHere, env: this.markers() };
  }

  /** On a Consul cluster lab: node i's client agent, started (or restarted, data kept) on the node's address. */
  async startNodeAgent(i: number): Promise<void> {
    const c = this.file.consulCluster;
    if (!c) return;
    const name = `mysql-${i}`;
    const known = c.clients[name];
    if (known?.pid && ours(known.pid, this.dir)) return;
    const net = this.file.network;
    // With --netns the agent lives in the node's namespace, made here if the node is not defined yet.
    if (net) ensureNamespace(net, nodeNs(net.k, i), nodeIp(net.k, i));
    c.clients[name] = await startConsulClient(this.consulHost(), name, net ? nodeIp(net.k, i) : `${this.file.subnet}.${i}`, c.servers, known, net ? nodeNs(net.k, i) : undefined);
    this.save();
  }

  /** On a Consul cluster lab: stops node `name`'s client agent (SIGTERM, SIGKILL after 10 s); its data is kept. */
  async stopNodeAgent(name: string): Promise<void> {
    const m = this.file.consulCluster?.clients[name];
    if (!m) throw new Error(`no Consul client agent for ${JSON.stringify(name)} (a lab started with --store consul --store-servers 3 has one per node)`);
    await this.stopMember(m);
  }

  /** On a Consul cluster lab: starts the servers not running (`only`: just these), data kept. */
  async startConsulServers(only?: readonly string[]): Promise<void> {
    const c = this.file.consulCluster;
    if (!c) throw new Error("this lab has no Consul servers (start it with --store consul --store-servers 3)");
    c.servers = await startConsulServers(this.consulHost(), c.servers.length, c.servers, undefined, only);
    this.file.consulPid = c.servers[0]!.pid;
    this.save();
  }

  /** On a Consul cluster lab: stops one server (SIGTERM, SIGKILL after 10 s); its data is kept. */
  async stopConsulServer(name: string): Promise<void> {
    const m = this.file.consulCluster?.servers.find((x) => x.name === name);
    if (!m) throw new Error(`no Consul server ${JSON.stringify(name)} in this lab (servers: ${this.file.consulCluster?.servers.map((x) => x.name).join(", ") ?? "none: start the lab with --store consul --store-servers 3"})`);
    await this.stopMember(m);
  }

  /** The Consul server that is the Raft leader now (undefined without quorum, or without Consul servers). */
  async consulLeader(): Promise<string | undefined> {
    return consulLeader(this.file.consulCluster?.servers ?? []);
  }

  /** Stops Consul and starts it again on the same address (a dev agent forgets all its state). */
  async restartConsul(): Promise<void> {
    if (this.file.consulCluster) throw new Error("consul-restart restarts a lab's dev agent; on a Consul cluster use store-leader-kill, store-quorum-loss or store-agent-restart");
    await this.stopConsul();
    await this.startConsul();
  }

  /** Starts the lab's Consul dev agent where lab.json says it was (empty: a dev agent keeps nothing). */
  private async startConsul(): Promise<void> {
    const a = this.file.consulAgent;
    if (!a) throw new Error("this lab.json has no consulAgent entry; recreate the lab");
    const consul = await new ConsulAgent({ dir: join(this.dir, "consul"), persistent: !this.tiedHere, env: this.markers(), host: a.host, ports: a.ports, ...(this.file.network ? { netns: this.file.network.consulNs } : {}) }).start();
    this.file.consulPid = consul.pid!;
    this.save();
  }

  /**
   * Starts the lab's etcd: the first time on free ports (or `at`), later where lab.json says it
   * was, with its data kept in DIR/etcd (leases, the leader key and records survive, as on a real
   * member that restarts).
   */
  async startEtcd(at?: { host: string; ports: number[] }): Promise<void> {
    if (this.file.etcd?.members) {
      await this.startEtcdMembers(this.file.etcd.members.length);
      return;
    }
    const where = this.file.etcd ?? at;
    if (this.etcdPids().length) throw new Error(`the lab's etcd is already running (pid ${this.etcdPids().join(", ")})`);
    const etcdDir = join(this.dir, "etcd");
    mkdirSync(etcdDir, { recursive: true });
    const server = await new EtcdServer({
      dir: etcdDir,
      name: "lab-etcd",
      persistent: !this.tiedHere,
      env: this.markers(),
      ...(where ? { host: where.host, ports: where.ports } : {}),
      ...(this.file.network ? { netns: this.file.network.consulNs } : {}),
    }).start();
    this.file.etcd = { endpoint: server.endpoint, pid: server.pid!, host: server.host, ports: [server.clientPort, Number(new URL(server.peerUrl).port)] };
    this.save();
  }

  /**
   * Starts the lab's multi-member etcd (every member not running; all of them together the first
   * time, since none is healthy alone), each with its data in DIR/etcd/<member>, where lab.json
   * says it listens. `only`: just these members (a stopped member rejoining the others).
   */
  async startEtcdMembers(size: number, host = "127.0.0.1", only?: readonly string[]): Promise<void> {
    const known = this.file.etcd?.members;
    const h = this.file.etcd?.host ?? host;
    // In the lab's store namespace (--netns) every port is free, and the host cannot probe the
    // namespace's address: fixed ports there (client 2379, 2381, ...; peer 2380, 2382, ...).
    const ports = known ? known.flatMap((m) => m.ports) : this.file.network ? Array.from({ length: 2 * size }, (_, i) => 2379 + i) : await freePorts(2 * size, h);
    const names = known ? known.map((m) => m.name) : Array.from({ length: size }, (_, i) => `lab-etcd-${i + 1}`);
    const initialCluster = names.map((n, i) => `${n}=http://${h}:${ports[2 * i + 1]}`).join(",");
    const members: EtcdMemberEntry[] = known ? known.map((m) => ({ ...m })) : names.map((name, i) => ({ name, endpoint: `http://${h}:${ports[2 * i]}`, pid: 0, ports: [ports[2 * i]!, ports[2 * i + 1]!] }));
    const starting = members.filter((m) => (only ? only.includes(m.name) : !(m.pid && alive(m.pid))));
    const servers = starting.map((m) => {
      const dir = join(this.dir, "etcd", m.name);
      mkdirSync(dir, { recursive: true });
      return new EtcdServer({ dir, name: m.name, host: h, ports: m.ports, initialCluster, persistent: !this.tiedHere, env: this.markers(), ...(this.file.network ? { netns: this.file.network.consulNs } : {}) });
    });
    await Promise.all(servers.map((s) => s.start()));
    for (const [i, server] of servers.entries()) starting[i]!.pid = server.pid!;
    const first = members[0]!;
    this.file.etcd = { endpoint: first.endpoint, pid: first.pid, host: h, ports: first.ports, members };
    this.save();
  }

  /** Stops one member of the lab's multi-member etcd (SIGTERM, SIGKILL after 10 s); its data is kept. */
  async stopEtcdMember(name: string): Promise<void> {
    const m = this.file.etcd?.members?.find((x) => x.name === name);
    if (!m) throw new Error(`no etcd member ${JSON.stringify(name)} in this lab (members: ${this.file.etcd?.members?.map((x) => x.name).join(", ") ?? "none: start the lab with --store etcd --store-servers 3"})`);
    await this.stopMember(m);
  }

  /** Stops one of this lab's store processes (SIGTERM, SIGKILL after 10 s) and records it stopped; its data is kept. */
  private async stopMember(m: { pid: number }): Promise<void> {
    if (m.pid && ours(m.pid, this.dir)) await Lab.terminate([m.pid], 10_000);
    m.pid = 0;
    this.save();
  }

  /** The member that is etcd's Raft leader now (undefined without quorum). */
  async etcdLeader(): Promise<string | undefined> {
    const members = this.file.etcd?.members ?? [];
    const i = await raftLeaderIndex(members.map((m) => (m.pid && alive(m.pid) ? m.endpoint : undefined)));
    return i === undefined ? undefined : members[i]!.name;
  }

  /** The processes of the nodes' cluster store: the lab's etcd when the lab runs on etcd, else its Consul agent. */
  clusterStorePids(): number[] {
    return this.file.etcd ? this.etcdPids() : this.consulPids();
  }

  /**
   * Stops the nodes' cluster store (etcd, its data kept; or the Consul dev agent, which forgets
   * everything) until startClusterStore().
   */
  async stopClusterStore(): Promise<void> {
    if (this.file.etcd) await this.stopEtcd();
    else await this.stopConsul();
  }

  /** Starts the nodes' cluster store again where the nodes expect it. */
  async startClusterStore(): Promise<void> {
    if (this.file.etcd) await this.startEtcd();
    else if (this.file.consulCluster) {
      await this.startConsulServers();
      for (const name of Object.keys(this.file.consulCluster.clients)) await this.startNodeAgent(Number(name.split("-")[1]));
    } else await this.startConsul();
  }

  /** Stops the lab's etcd (SIGTERM, SIGKILL after 10 s): every node loses its cluster store until startEtcd(). */
  async stopEtcd(): Promise<void> {
    if (!this.file.etcd) throw new Error("this lab has no etcd (it was started with store consul)");
    await Lab.terminate(this.etcdPids(), 10_000);
  }

  node(name: string): LabNode {
    const n = this.file.nodes.find((x) => x.name === name || x.mysql.host === name);
    if (!n) throw new Error(`no node ${JSON.stringify(name)} in this lab (nodes: ${this.file.nodes.map((x) => x.name).join(", ")})`);
    return n;
  }

  /** Marks every process of this lab (and what they start): found later by it, whatever lab.json says. */
  markers(): Record<string, string> {
    return {
      [LAB_DIR_ENV]: this.dir,
      ...(this.file.network ? { [LAB_NET_ENV]: String(this.file.network.k) } : {}),
      ...(this.file.owner ? { [LAB_OWNER_ENV]: this.file.owner } : {}),
    };
  }

  /** Processes started now die with this process: the lab is owned by it. */
  private get tiedHere(): boolean {
    return !!this.file.owner && this.file.owner === thisProcess();
  }

  private env(): NodeJS.ProcessEnv {
    const c = this.file.credentials;
    return {
      ...process.env,
      ...this.markers(),
      MYSQL_ROOT_PASSWORD: c.rootPassword,
      MYSQL_DATABASE: c.database,
      MYSQL_USER: c.user,
      MYSQL_PASSWORD: c.password,
      MYSQL_REPL_USER: c.replUser,
      MYSQL_REPL_PASSWORD: c.replPassword,
    };
  }

  async spawnNode(n: LabNode): Promise<void> {
    if (ours(n.pids.statepilot, this.dir)) throw new Error(`${n.name} is already running (statepilot pid ${n.pids.statepilot})`);
    cliPath(); // fails early, with a hint, when the build is missing
    if (!n.ns) await this.ensureAddressFree(n);
    const argv = ["/bin/sh", imageFiles().entrypoint, "run", "--config", n.config];
    const [cmd, ...args] = n.ns ? ["ip", "netns", "exec", n.ns, ...argv] : argv;
    const p = await ManagedProcess.start(`statepilot@${n.name}`, cmd!, args, {
      env: { ...this.env(), NODE: process.execPath, STATEPILOT_HOME: repoRoot() },
      cwd: n.dir,
      logFile: join(n.dir, "statepilot.log"),
      persistent: !this.tiedHere,
    });
    n.pids = { statepilot: p.pid, mysqld: null };
  }

  /**
   * The node's addresses must be free before it starts: otherwise whatever holds them (a server an
   * earlier run left) answers in its place, and the lab reports that process's state as its own.
   * This lab's own processes that are still exiting are waited for; a leftover of a lab that is no
   * longer wanted is stopped; anything else is an error that names it.
   */
  private async ensureAddressFree(n: LabNode, timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const busy: string[] = [];
      const stale: number[] = [];
      let waiting = false;
      for (const port of [n.mysql.port, HTTP_PORT]) {
        const l = listenersOn(n.mysql.host, port);
        if (!l.inUse) continue;
        if (!l.pids.length) busy.push(`${n.mysql.host}:${port} (by a process this user cannot inspect)`);
        for (const pid of l.pids) {
          const owner = procEnv(pid)?.get(LAB_DIR_ENV);
          if (owner === this.dir) waiting = true;
          else if (owner && !labIsLive(owner)) stale.push(pid);
          else busy.push(`${n.mysql.host}:${port} by ${describeProcess(pid)}${owner ? ` of the lab in ${owner}` : ""}`);
        }
      }
      if (busy.length) throw new Error(`${n.name}: its addresses are in use: ${busy.join("; ")}. Stop that process, or give this lab another --subnet`);
      if (stale.length) {
        const left = killSync(stale);
        if (left.length) throw new Error(`${n.name}: cannot stop ${left.map(describeProcess).join(", ")}, left by an earlier lab`);
        continue;
      }
      if (!waiting) return;
      if (Date.now() > deadline) throw new Error(`${n.name}: ${n.mysql.host} is still in use by this lab's earlier processes after ${timeoutMs} ms`);
      await sleep(100);
    }
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

  /**
   * Rebuilds a node as an operator rebuilds a diverged one: statepilot and mysqld stopped, the
   * datadir removed, the node started again. It initialises an empty datadir (or restores the
   * latest snapshot, if the store has one) and replicates what it lacks by GTID; resolves once it
   * is a passing replica at the primary's position.
   */
  async rebuild(name: string, timeoutMs = 120_000): Promise<NodeView> {
    const n = this.node(name);
    const v = await this.view(n);
    const pids = [n.pids.statepilot, v.pids.mysqld, n.pids.mysqld].filter((p): p is number => ours(p, this.dir));
    await Lab.terminate(pids, 20_000);
    n.pids = { statepilot: null, mysqld: null };
    const config = JSON.parse(readFileSync(n.config, "utf8")) as { mysql?: { datadir?: unknown } };
    rmSync(typeof config.mysql?.datadir === "string" ? config.mysql.datadir : join(n.dir, "data"), { recursive: true, force: true });
    this.save();
    await this.start(name);
    return waitFor(
      async () => {
        const vs = await this.views();
        const p = vs.find((x) => x.role === "primary");
        const me = vs.find((x) => x.name === name);
        return p && me?.role === "replica" && me.health === "passing" && me.executed === p.executed ? me : undefined;
      },
      { timeoutMs, intervalMs: 250, what: `${name} to replicate again after its rebuild`, detail: () => this.logTail(n, 15) },
    );
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
      const res = await fetch(`${n.http}/status`, { signal: AbortSignal.timeout(3_000) });
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

  /**
   * What Lab.up promises, checked rather than assumed: one writable primary and passing replicas
   * (waitHealthy), every HTTP answer coming from this lab's own statepilot (its mysqld is that
   * statepilot's child), and every mysqld accepting root on its unix socket and the application
   * user over TCP, read-only exactly where it should be.
   */
  async waitReady(timeoutMs: number): Promise<NodeView[]> {
    const deadline = Date.now() + timeoutMs;
    await this.waitHealthy(timeoutMs);
    let problems: string[] = [];
    let impostor: string | undefined;
    return waitFor(
      async () => {
        const vs = await this.views();
        problems = [];
        for (const v of vs) {
          const n = this.node(v.name);
          impostor ??= this.impostor(n, v);
          const p = await this.nodeAnswers(n, v.role === "primary" ? "primary" : "replica");
          if (p) problems.push(`${n.name}: ${p}`);
        }
        const primaries = vs.filter((v) => v.role === "primary" && v.readOnly === false);
        if (primaries.length !== 1) problems.push(`${primaries.length} writable primaries`);
        return problems.length ? undefined : vs;
      },
      {
        timeoutMs: Math.max(1_000, deadline - Date.now()),
        intervalMs: 200,
        what: "every node's mysqld to accept connections (socket and TCP)",
        abortIf: () => {
          if (impostor) return impostor;
          const dead = this.file.nodes.filter((n) => !alive(n.pids.statepilot));
          return dead.length ? `statepilot is not running on ${dead.map((n) => n.name).join(", ")}` : undefined;
        },
        detail: () => `${problems.join("; ")}\n${this.file.nodes.map((n) => `--- ${n.name}\n${this.logTail(n, 8)}`).join("\n")}`,
      },
    );
  }

  /** Why the node's HTTP answer is not from this lab's statepilot, or undefined. */
  private impostor(n: LabNode, v: NodeView): string | undefined {
    const mysqld = v.pids.mysqld;
    if (!v.reachable || !mysqld || !n.pids.statepilot) return undefined;
    const st = procStat(mysqld);
    if (!st || st.ppid === n.pids.statepilot) return undefined;
    return `${n.http} is answered by a process that is not this lab's ${n.name}: the mysqld it reports, ${describeProcess(mysqld)}, is not a child of statepilot pid ${n.pids.statepilot}`;
  }

  /** "" when the node's mysqld accepts root over its socket and the application user over TCP with the expected read_only. */
  async nodeAnswers(n: LabNode, role: "primary" | "replica"): Promise<string> {
    const c = this.file.credentials;
    const socket = n.socket ?? join(n.dir, "mysqld.sock");
    let conn: mysql.Connection | undefined;
    try {
      conn = await mysql.createConnection({ socketPath: socket, user: "root", password: c.rootPassword, connectTimeout: 5_000 });
      await conn.query("SELECT 1");
    } catch (err) {
      return `root on ${socket}: ${err instanceof Error ? err.message : String(err)}`;
    } finally {
      conn?.destroy();
    }
    conn = undefined;
    try {
      conn = await mysql.createConnection({ host: n.mysql.host, port: n.mysql.port, user: c.user, password: c.password, database: c.database, connectTimeout: 5_000 });
      const [rows] = await conn.query<mysql.RowDataPacket[]>("SELECT @@GLOBAL.read_only AS ro");
      const ro = Number(rows[0]?.ro);
      if (role === "primary" && ro !== 0) return `read_only=${ro} on the primary`;
      if (role === "replica" && ro !== 1) return `read_only=${ro} on a replica`;
      return "";
    } catch (err) {
      return `${c.user} on ${n.mysql.host}:${n.mysql.port}: ${err instanceof Error ? err.message : String(err)}`;
    } finally {
      conn?.destroy();
    }
  }

  /** One writable primary and every other node a passing replica at the primary's GTID position. */
  async waitConverged(timeoutMs: number): Promise<NodeView[]> {
    let last: NodeView[] = [];
    return waitFor(
      async () => {
        const vs = await this.views();
        last = vs;
        const primaries = vs.filter((v) => v.role === "primary" && v.readOnly === false);
        if (primaries.length !== 1) return undefined;
        const p = primaries[0]!;
        return vs.every((v) => v === p || (v.role === "replica" && v.health === "passing" && v.executed === p.executed)) ? vs : undefined;
      },
      {
        timeoutMs,
        intervalMs: 200,
        what: "the cluster to converge (one primary, every replica caught up)",
        detail: () =>
          `${last.map((v) => `  ${v.name}: role=${v.role} health=${v.health} read_only=${v.readOnly} primary=${v.primary ?? "-"} lag=${v.lagSeconds} executed=${v.executed} reason=${v.reason}`).join("\n")}\n${this.file.nodes.map((n) => `--- ${n.name}\n${this.logTail(n, 6)}`).join("\n")}`,
      },
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

  /** SIGTERM, then SIGKILL after the timeout; resolves once all are gone. */
  private static async terminate(pids: number[], timeoutMs: number): Promise<void> {
    for (const p of pids) {
      try {
        process.kill(p, "SIGTERM");
      } catch {
        // gone
      }
    }
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline && pids.some((p) => !gone(p))) await sleep(50);
    killSync(pids.filter((p) => !gone(p)));
  }

  /** This lab's Consul agents: the one lab.json names, and any other marked as this lab's. */
  private consulPids(): number[] {
    const pids = new Set(labProcesses(this.dir).filter((p) => procStat(p)?.comm === "consul"));
    if (ours(this.file.consulPid, this.dir)) pids.add(this.file.consulPid);
    return [...pids];
  }

  /** This lab's etcd servers: the one lab.json names, and any other marked as this lab's. */
  private etcdPids(): number[] {
    const pids = new Set(labProcesses(this.dir).filter((p) => procStat(p)?.comm === "etcd"));
    if (ours(this.file.etcd?.pid, this.dir)) pids.add(this.file.etcd!.pid);
    return [...pids];
  }

  private async stopConsul(): Promise<void> {
    await Lab.terminate(this.consulPids(), 10_000);
  }

  /**
   * SIGKILL of every process of the lab (found by its marker, not only by the PIDs lab.json
   * remembers), its network and tmpfs removed; synchronous, for exit and signal handlers.
   */
  killAllNow(): void {
    killLabNow(this.dir, this.file);
    for (const n of this.file.nodes) n.pids = { statepilot: null, mysqld: null };
    if (existsSync(this.dir)) this.save();
  }

  /**
   * Stops every process of the lab: nodes first (SIGTERM to statepilot, which stops its mysqld;
   * SIGKILL after the timeout), then Consul; then whatever still carries the lab's marker is
   * killed, and the network and tmpfs are removed, even if a step before failed.
   */
  async down(opts: { keep?: boolean; timeoutMs?: number } = {}): Promise<void> {
    try {
      // The stores go last: a node stopping releases its leadership in them.
      const consul = new Set([...this.consulPids(), ...this.etcdPids()]);
      const nodes = [...new Set([...labProcesses(this.dir), ...this.file.nodes.flatMap((n) => [n.pids.statepilot, n.pids.mysqld]).filter((p) => ours(p, this.dir))])].filter((p) => !consul.has(p));
      for (const n of this.file.nodes) {
        if (!ours(n.pids.statepilot, this.dir)) continue;
        try {
          process.kill(n.pids.statepilot, "SIGTERM");
        } catch {
          // gone
        }
      }
      const deadline = Date.now() + (opts.timeoutMs ?? 60_000);
      while (Date.now() < deadline && nodes.some((p) => !gone(p))) await sleep(100);
      killSync(nodes.filter((p) => !gone(p)));
      await Lab.terminate(this.etcdPids(), 10_000);
      await this.stopConsul();
    } finally {
      killLabNow(this.dir, this.file);
      this.releaseInterrupt?.();
      this.releaseInterrupt = undefined;
      if (opts.keep) {
        for (const n of this.file.nodes) n.pids = { statepilot: null, mysqld: null };
        if (existsSync(this.dir)) this.save();
      } else rmSync(this.dir, { recursive: true, force: true });
    }
  }
}
