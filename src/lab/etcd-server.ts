import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { get as httpsGet } from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execFileSync } from "node:child_process";
import { findBinary } from "../binaries.js";
import { ManagedProcess } from "./process.js";
import { freePorts } from "./ports.js";
import { waitFor } from "./wait.js";

export interface EtcdServerOptions {
  /** Directory for the data and the log; a temporary one (removed by destroy()) when omitted. */
  dir?: string;
  host?: string;
  name?: string;
  /** Keep running after this process exits (the lab CLI). */
  persistent?: boolean;
  /** Run inside a network namespace: the command is prefixed with `ip netns exec <ns>`. */
  netns?: string;
  /** client, peer (a fresh namespace has every port free). */
  ports?: number[];
  /** Added to the server's environment (the lab marks its processes this way). */
  env?: NodeJS.ProcessEnv;
  /**
   * A member of a multi-member cluster: `name=peerURL,...` of every member (default: this member
   * alone). Members of a new cluster must start together (see EtcdCluster): none is healthy alone.
   */
  initialCluster?: string;
  /** Serve clients over TLS (https:// endpoint); with `clientCertAuth`, clients must show a certificate signed by `caFile`. */
  tls?: { certFile: string; keyFile: string; caFile: string; clientCertAuth?: boolean; probe: { cert: string; key: string } };
}

/**
 * A real single-member etcd on loopback, on free ports, with its data in its own directory (kept
 * across restart(), as a real member's is; removed by destroy() when the directory is its own).
 */
export class EtcdServer {
  private proc: ManagedProcess | undefined;
  readonly host: string;
  readonly dir: string;
  private readonly ownsDir: boolean;
  /** client, peer: picked once, so a restart comes back where clients expect it. */
  private ports: number[] = [];

  constructor(private readonly opts: EtcdServerOptions = {}) {
    this.host = opts.host ?? "127.0.0.1";
    this.ownsDir = !opts.dir;
    this.dir = opts.dir ?? mkdtempSync(join(tmpdir(), "statepilot-etcd-"));
  }

  /** `etcd --version`'s first line, e.g. "etcd Version: 3.4.23". */
  static version(): string {
    const out = execFileSync(findBinary("etcd"), ["--version"], { encoding: "utf8" });
    return out.split("\n")[0] ?? out;
  }

  /** The peer URL (what other members' `--initial-cluster` lists). */
  get peerUrl(): string {
    return `http://${this.host}:${this.ports[1] ?? 0}`;
  }

  get running(): boolean {
    return this.proc?.running ?? false;
  }

  get clientPort(): number {
    return this.ports[0] ?? 0;
  }

  /** The client URL (what `store.endpoints` lists). */
  get endpoint(): string {
    return `${this.opts.tls ? "https" : "http"}://${this.host}:${this.clientPort}`;
  }

  get pid(): number | undefined {
    return this.proc?.running ? this.proc.pid : undefined;
  }

  get name(): string {
    return this.opts.name ?? "statepilot-etcd";
  }

  async start(timeoutMs = 60_000): Promise<this> {
    if (this.proc?.running) return this;
    if (!this.ports.length) this.ports = this.opts.ports ?? (await freePorts(2, this.host));
    const [client, peer] = this.ports;
    const clientUrl = `${this.opts.tls ? "https" : "http"}://${this.host}:${client}`;
    const peerUrl = `http://${this.host}:${peer}`;
    const args = [
      `--name=${this.name}`,
      `--data-dir=${join(this.dir, "data")}`,
      `--listen-client-urls=${clientUrl}`, `--advertise-client-urls=${clientUrl}`,
      `--listen-peer-urls=${peerUrl}`, `--initial-advertise-peer-urls=${peerUrl}`,
      `--initial-cluster=${this.opts.initialCluster ?? `${this.name}=${peerUrl}`}`, "--initial-cluster-state=new", "--initial-cluster-token=statepilot-lab",
      "--logger=zap", "--log-level=warn",
    ];
    const tls = this.opts.tls;
    if (tls) args.push(`--cert-file=${tls.certFile}`, `--key-file=${tls.keyFile}`, `--trusted-ca-file=${tls.caFile}`, ...(tls.clientCertAuth ? ["--client-cert-auth"] : []));
    const [cmd, ...prefix] = this.opts.netns ? ["ip", "netns", "exec", this.opts.netns, findBinary("etcd")] : [findBinary("etcd")];
    this.proc = await ManagedProcess.start("etcd", cmd!, [...prefix, ...args], {
      logFile: join(this.dir, "etcd.log"),
      env: { ...process.env, ...this.opts.env },
      persistent: this.opts.persistent ?? false,
    });
    const proc = this.proc;
    await waitFor(
      async () => {
        // /health is true once the member has a leader and serves a quorum read.
        const body = tls ? await httpsJson(`${this.endpoint}/health`, tls) : ((await (await fetch(`${this.endpoint}/health`, { signal: AbortSignal.timeout(5_000) })).json()) as unknown);
        return (body as { health?: unknown } | null)?.health === "true";
      },
      {
        timeoutMs,
        what: `etcd on ${this.endpoint} to become healthy`,
        detail: () => proc.logTail(),
        abortIf: () => (proc.running ? undefined : `etcd exited (${JSON.stringify(proc.exitStatus)})`),
      },
    );
    return this;
  }

  /** Stop and start again on the same ports, with the same data (leases survive, as on a real member). */
  async restart(): Promise<void> {
    await this.stop();
    await this.start();
  }

  async stop(): Promise<void> {
    await this.proc?.stop("SIGTERM", 5_000);
  }

  async destroy(): Promise<void> {
    await this.stop();
    if (this.ownsDir) rmSync(this.dir, { recursive: true, force: true });
  }
}

export interface EtcdClusterOptions extends Pick<EtcdServerOptions, "host" | "persistent" | "env"> {
  /** Members (default 3). */
  size?: number;
  /** Parent directory of the members' directories; a temporary one (removed by destroy()) when omitted. */
  dir?: string;
}

/**
 * A real multi-member etcd cluster on loopback (default 3 members, as a production store): every
 * member on free ports with its own data directory, started together, healthy once it has a leader.
 */
export class EtcdCluster {
  readonly members: EtcdServer[] = [];
  readonly dir: string;
  private readonly ownsDir: boolean;

  constructor(private readonly opts: EtcdClusterOptions = {}) {
    this.ownsDir = !opts.dir;
    this.dir = opts.dir ?? mkdtempSync(join(tmpdir(), "statepilot-etcd-cluster-"));
  }

  /** Every member's client URL (what `store.endpoints` lists). */
  get endpoints(): string[] {
    return this.members.map((m) => m.endpoint);
  }

  async start(timeoutMs = 60_000): Promise<this> {
    if (!this.members.length) {
      const size = this.opts.size ?? 3;
      const host = this.opts.host ?? "127.0.0.1";
      const ports = await freePorts(2 * size, host);
      const names = Array.from({ length: size }, (_, i) => `etcd-${i + 1}`);
      const initialCluster = names.map((n, i) => `${n}=http://${host}:${ports[2 * i + 1]}`).join(",");
      names.forEach((name, i) => {
        const dir = join(this.dir, name);
        mkdirSync(dir, { recursive: true });
        this.members.push(new EtcdServer({ ...this.opts, dir, name, host, ports: [ports[2 * i]!, ports[2 * i + 1]!], initialCluster }));
      });
    }
    await Promise.all(this.members.filter((m) => !m.running).map((m) => m.start(timeoutMs)));
    return this;
  }

  /** The member that is the Raft leader now, asked of the running members (undefined without quorum). */
  async leader(): Promise<EtcdServer | undefined> {
    const i = await raftLeaderIndex(this.members.map((m) => (m.running ? m.endpoint : undefined)));
    return i === undefined ? undefined : this.members[i];
  }

  async destroy(): Promise<void> {
    await Promise.all(this.members.map((m) => m.destroy()));
    if (this.ownsDir) rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Which of these client URLs (undefined: not running) is the Raft leader's, asked of each in turn (undefined without quorum). */
export async function raftLeaderIndex(endpoints: ReadonlyArray<string | undefined>): Promise<number | undefined> {
  for (const [i, endpoint] of endpoints.entries()) {
    if (!endpoint) continue;
    try {
      const res = await fetch(`${endpoint}/v3/maintenance/status`, { method: "POST", body: "{}", signal: AbortSignal.timeout(2_000) });
      const st = (await res.json()) as { header?: { member_id?: string }; leader?: string };
      if (st.leader && st.leader !== "0" && st.header?.member_id === st.leader) return i;
    } catch {
      // Not answering: ask the next one.
    }
  }
  return undefined;
}

/** GET over https with the test CA (and a client certificate): the parsed JSON body. */
function httpsJson(url: string, tls: { caFile: string; probe: { cert: string; key: string } }): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const req = httpsGet(url, { ca: readFileSync(tls.caFile), cert: readFileSync(tls.probe.cert), key: readFileSync(tls.probe.key), timeout: 5_000 }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => (text += chunk));
      res.on("end", () => {
        try {
          resolve(JSON.parse(text) as unknown);
        } catch (err) {
          reject(err);
        }
      });
      res.on("error", reject);
    });
    req.on("timeout", () => req.destroy(new Error(`${url}: no answer in 5 s`)));
    req.on("error", reject);
  });
}
