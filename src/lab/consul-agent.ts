import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { execFileSync } from "node:child_process";
import { findBinary } from "../binaries.js";
import { ManagedProcess } from "./process.js";
import { freePorts } from "./ports.js";
import { waitFor } from "./wait.js";

export interface ConsulAgentOptions {
  /** Directory for the log; a temporary one when omitted. */
  dir?: string;
  host?: string;
  nodeName?: string;
  /** Keep running after this process exits (the lab CLI). */
  persistent?: boolean;
  /** Run inside a network namespace: the command is prefixed with `ip netns exec <ns>`. */
  netns?: string;
  /** http, serf LAN, serf WAN, server RPC (a fresh namespace has every port free). */
  ports?: number[];
  /** Added to the agent's environment (the lab marks its processes this way). */
  env?: NodeJS.ProcessEnv;
  /**
   * Not a dev agent: a server of a cluster of `bootstrapExpect` servers, or (bootstrapExpect
   * undefined) a client agent; either joins the serf LAN addresses in `join` ("host:port") and
   * keeps its data in DIR/data across restarts, as a real agent does.
   */
  cluster?: { bootstrapExpect?: number; join: string[] };
}

/** A real `consul agent` on loopback (`-dev`, or a server or client of a real cluster), on free ports, with DNS and gRPC off. */
export class ConsulAgent {
  private proc: ManagedProcess | undefined;
  readonly host: string;
  readonly dir: string;
  private readonly ownsDir: boolean;
  /** http, serf LAN, serf WAN, server RPC: picked once, so a restart comes back where clients expect it. */
  private ports: number[] = [];

  constructor(private readonly opts: ConsulAgentOptions = {}) {
    this.host = opts.host ?? "127.0.0.1";
    this.ownsDir = !opts.dir;
    this.dir = opts.dir ?? mkdtempSync(join(tmpdir(), "statepilot-consul-"));
  }

  static version(): string {
    const out = execFileSync(findBinary("consul"), ["version"], { encoding: "utf8" });
    return out.split("\n")[0] ?? out;
  }

  /** http, serf LAN, serf WAN, server RPC, once started. */
  get portList(): number[] {
    return [...this.ports];
  }

  get httpPort(): number {
    return this.ports[0] ?? 0;
  }

  get address(): string {
    return `http://${this.host}:${this.httpPort}`;
  }

  get pid(): number | undefined {
    return this.proc?.running ? this.proc.pid : undefined;
  }

  get nodeName(): string {
    return this.opts.nodeName ?? "statepilot-dev";
  }

  async start(timeoutMs = 90_000): Promise<this> {
    if (this.proc?.running) return this;
    if (!this.ports.length) this.ports = this.opts.ports ?? (await freePorts(4, this.host));
    const [, serfLan, serfWan, server] = this.ports;
    const c = this.opts.cluster;
    const mode = c
      ? [
          ...(c.bootstrapExpect ? ["-server", `-bootstrap-expect=${c.bootstrapExpect}`] : []),
          `-data-dir=${join(this.dir, "data")}`,
          ...c.join.map((j) => `-retry-join=${j}`),
          "-retry-interval=1s",
          // As a dev agent: check updates reach the servers at once, Raft at its fastest timings.
          "-hcl=check_update_interval = \"0s\"",
          "-hcl=performance { raft_multiplier = 1 }",
          "-hcl=leave_on_terminate = false",
        ]
      : ["-dev"];
    const args = [
      "agent", ...mode,
      `-node=${this.nodeName}`,
      `-bind=${this.host}`, `-client=${this.host}`,
      `-http-port=${this.httpPort}`, "-dns-port=-1", "-grpc-port=-1", "-grpc-tls-port=-1",
      `-serf-lan-port=${serfLan}`, `-serf-wan-port=${serfWan}`, `-server-port=${server}`,
      "-log-level=warn",
    ];
    const [cmd, ...prefix] = this.opts.netns ? ["ip", "netns", "exec", this.opts.netns, findBinary("consul")] : [findBinary("consul")];
    this.proc = await ManagedProcess.start("consul", cmd!, [...prefix, ...args], {
      logFile: join(this.dir, "consul.log"),
      env: { ...process.env, ...this.opts.env },
      persistent: this.opts.persistent ?? false,
    });
    const proc = this.proc;
    await waitFor(
      async () => {
        const res = await fetch(`${this.address}/v1/status/leader`, { signal: AbortSignal.timeout(5_000) });
        const leader = (await res.json()) as string;
        if (!leader) return false;
        // The agent's own node must be in the catalog before sessions can be created on it.
        const node = await fetch(`${this.address}/v1/catalog/node/${this.nodeName}`, { signal: AbortSignal.timeout(5_000) });
        return node.ok && ((await node.json()) as unknown) !== null;
      },
      {
        timeoutMs,
        what: `consul ${c ? (c.bootstrapExpect ? "server" : "client agent") : "dev agent"} ${this.nodeName} on ${this.address} to see a leader`,
        detail: () => proc.logTail(),
        abortIf: () => (proc.running ? undefined : `consul exited (${JSON.stringify(proc.exitStatus)})`),
      },
    );
    return this;
  }

  /** Stop and start again on the same ports: a dev agent forgets everything; a cluster agent keeps its data directory. */
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
