#!/usr/bin/env node
import { ConfigError, encodeConfig } from "../config/load.js";
import { maskSecrets } from "../config/secrets.js";
import { controlRequest } from "../control/client.js";
import { parseArgs, optionString, UsageError, type ParsedArgs } from "./args.js";
import { checkCommandOptions } from "./command-options.js";
import { containerPilotArgv, isContainerPilotArgv } from "./containerpilot-flags.js";
import { convertCommand } from "./convert.js";
import { emit, outputFormat } from "./output.js";
import { preflight, resolveConfig, runSupervisor } from "./run.js";
import { packageVersion } from "./version.js";
import { resolveTelemetryToken } from "../telemetry/auth.js";

// The AWS SDK prints a multi-line notice about Node 20 to stderr, which would break the JSON log;
// the same fact is in docs/operations.md. An operator who wants it can set the variable to "false".
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true";

const HELP = `statepilot ${packageVersion()}: an in-container supervisor with Consul discovery

Usage:
  statepilot [run] [--config FILE] [--node NAME] [--socket PATH] [-- COMMAND [ARGS...]]
      Run the supervisor (the container's CMD). The command after -- becomes the main
      job: statepilot exits when it is done, with its exit code.
  statepilot help                              this text
  statepilot config check  [--config FILE]     validate the config, credentials and CONSUL_* settings (exit 2 on errors)
  statepilot config render [--config FILE]     print the resolved config, secrets masked
  statepilot convert FILE                      print the statepilot equivalent of a ContainerPilot config (run takes it as it is)
  statepilot status [--json]                   jobs, health and watches of a running statepilot
  statepilot ping                              is the control plane up?
  statepilot health                            exit 0 when the main job runs (and mysqld answers): for HEALTHCHECK
  statepilot reload                            re-read the config; only changed jobs restart (exit 2, nothing
                                               changed: invalid, or a setting that needs a restart)
  statepilot maintenance on|off [--reason TEXT]
  statepilot putenv KEY=VALUE... | KEY...      set (or, without =, unset) variables for jobs started later
  statepilot putmetric NAME=VALUE... [--labels k=v,k2=v2] [--op set|inc|observe]
                                               update metrics declared in telemetry.metrics
  statepilot -putmetric NAME=VALUE [-putmetric ...] | -putenv K=V | -reload | -ping | -maintenance enable|disable
             [-config FILE]                    ContainerPilot's flags, for its scripts (statepilot installed as
                                               containerpilot); the socket: $STATEPILOT_SOCKET (given to every job),
                                               else -config's, $STATEPILOT_CONFIG's or $CONTAINERPILOT's control.socket

MySQL cluster (any node's --config names Consul and the cluster):
  statepilot mysql status [--json] --config FILE       the lock holder and every member's position
  statepilot mysql switchover [--to NODE] [--at TIME|+10m] [--timeout 30s] --config FILE
                                               hand the primary role over with no transaction lost
  statepilot mysql pause [--reason TEXT] --config FILE   no automatic failover, cluster-wide (fencing stays on)
  statepilot mysql resume --config FILE                  automatic failover on again
  statepilot mysql remove NODE --yes --config FILE       forget a stopped node's record
  statepilot mysql rebuild NODE --yes [--timeout 10m] --config FILE
                                               re-seed a replica's datadir (newest snapshot, else empty and
                                               caught up by GTID); waits until it is a replica at the
                                               primary's position (refused on the primary)

Snapshots (mysql.snapshots: a local directory by default, or S3):
  statepilot snapshot list [--json] --config FILE
  statepilot snapshot create [--timeout 1h] --config FILE   one node takes it (a healthy replica if any)
  statepilot snapshot restore [--id ID] --datadir DIR --config FILE   into an empty directory
  statepilot snapshot restore --to-time T | --to-gtid G --datadir DIR --config FILE
                                               the cluster as it was at T (ISO 8601, whole seconds) or GTID G:
                                               the newest snapshot before it, then the archived binlogs

Binlog archive (mysql.snapshots.archive: MariaDB binlogs streamed into the snapshot store):
  statepilot archive status [--json] --config FILE   holder, range, what the primary has that it lacks,
                                               gaps (exit 1 when there is one)

Local lab (real Consul + N statepilot/mariadbd or mysqld nodes on 127.0.10.<i>:3306):
  statepilot lab up --dir DIR [--nodes 3] [--lossless] [--fresh] [--subnet 127.0.10]
                [--flavor mariadb|mysql]   (mysql: MySQL from Debian sid, scripts/install.sh mysql)
                [--store consul|etcd]   (etcd: a real etcd beside Consul holds the cluster store)
                [--store-servers 1|3]   (a real 3-member etcd, or three Consul servers with a client agent per node; faults store-leader-kill, store-quorum-loss, store-agent-restart)
                [--netns] [--store-tmpfs-mb 256]   (root: namespaces for partitions, a tmpfs store)
                [--restore-to T|GTID --from LABDIR]   (a new lab as LABDIR's cluster was at T, from its store)
  statepilot lab status --dir DIR [--json]
  statepilot lab kill NODE --dir DIR [--signal SIGKILL] [--only mysqld|statepilot]
  statepilot lab start NODE --dir DIR
  statepilot lab add --dir DIR                  one more node; it restores the latest snapshot
  statepilot lab down --dir DIR [--keep]
  statepilot lab demo --dir DIR                 up, writes, primary killed, failover timed
  statepilot lab fault KIND [NODE] [--for 10s] --dir DIR
      KIND: kill-mysqld, kill-statepilot, kill-node, hang (SIGSTOP/SIGCONT), partition-consul,
      partition-peers (--netns labs), consul-restart, cluster-store-stop, cluster-store-pause,
      store-leader-kill, store-quorum-loss, store-slow (the leader frozen 150 ms of every 400 ms; --store-servers 3 labs, else the one store process), store-agent-restart (--store consul --store-servers 3), store-down, disk-full (--store-tmpfs-mb labs)

Options:
  --config FILE   JSON5 config file (default: $STATEPILOT_CONFIG)
  --node NAME     this node's name (default: config node, then the hostname)
  --socket PATH   control socket (default: $STATEPILOT_SOCKET, then config control.socket)
  -o, --output table|json|yaml   output format of every command that prints (--json = -o json)
  -h, --help      this text
  --version       the version

Exit codes: the main job's code when it ran; 1 on a runtime error; 2 on bad arguments or config.`;

const SPEC = {
  values: ["config", "node", "socket", "output", "at", "reason", "labels", "op", "dir", "nodes", "signal", "only", "subnet", "flavor", "to", "timeout", "datadir", "id", "store-tmpfs-mb", "store", "store-servers", "for", "from", "to-time", "to-gtid", "restore-to"],
  flags: ["help", "version", "json", "lossless", "fresh", "keep", "netns", "yes"],
} as const;

function configPath(args: ParsedArgs): string | undefined {
  return optionString(args, "config") ?? process.env.STATEPILOT_CONFIG ?? undefined;
}

function socketPath(args: ParsedArgs): string {
  const explicit = optionString(args, "socket") ?? process.env.STATEPILOT_SOCKET;
  if (explicit) return explicit;
  const path = configPath(args);
  return path ? resolveConfig({ configPath: path, node: undefined, mainCommand: undefined }).control.socket : "/var/run/statepilot.sock";
}

function expectArgs(args: ParsedArgs, count: number, usage: string): void {
  if (args.command.length !== count) {
    const extra = args.command.slice(count);
    throw new UsageError(extra.length ? `unexpected argument ${JSON.stringify(extra[0])}; usage: ${usage}` : `missing argument; usage: ${usage}`);
  }
}

/** ContainerPilot's flags print nothing on success, as ContainerPilot did (a sensor's log stays clean). */
let quietOnSuccess = false;

/** Exit 2 on the statuses that mean "the input was refused" (bad config, a change needing a restart). */
async function callControl(args: ParsedArgs, method: "GET" | "POST", path: string, body?: unknown, human?: (body: unknown) => string, refused: number[] = [400]): Promise<number> {
  const format = outputFormat(args);
  const res = await controlRequest(socketPath(args), method, path, body);
  const ok = res.status >= 200 && res.status < 300;
  const error = !ok && res.body && typeof res.body === "object" ? (res.body as { error?: unknown }).error : undefined;
  if (typeof error === "string") process.stderr.write(`statepilot: ${error}\n`);
  else if (!ok) process.stderr.write(`${typeof res.body === "string" ? res.body : JSON.stringify(res.body, null, 2)}\n`);
  else if (!quietOnSuccess || format !== "table") emit(format, res.body, () => (human ? human(res.body) : typeof res.body === "string" ? res.body : JSON.stringify(res.body)));
  return ok ? 0 : refused.includes(res.status) ? 2 : 1;
}

function statusText(body: unknown): string {
  const s = body as { node: string; version: string; maintenance: boolean; jobs: Array<{ name: string; state: string; pid?: number; restarts: number; health?: { status?: string; serviceId?: string } }>; watches: Array<{ name: string; instances: number; healthy: number }> };
  const lines = [`node ${s.node}  statepilot ${s.version}${s.maintenance ? "  MAINTENANCE" : ""}`];
  for (const j of s.jobs) lines.push(`job   ${j.name.padEnd(20)} ${j.state.padEnd(9)} pid=${j.pid ?? "-"} restarts=${j.restarts}${j.health ? ` health=${j.health.status ?? "unknown"} service=${j.health.serviceId ?? "-"}` : ""}`);
  for (const w of s.watches) lines.push(`watch ${w.name.padEnd(20)} instances=${w.instances} healthy=${w.healthy}`);
  const m = (body as { mysql?: { role?: string; health?: string; reason?: string; primary?: { node?: string }; lagSeconds?: number | null; readOnly?: boolean } }).mysql;
  if (m) lines.push(`mysql ${String(m.role ?? "?").padEnd(20)} ${String(m.health ?? "?").padEnd(9)} primary=${m.primary?.node ?? "-"} lag=${m.lagSeconds ?? "-"} read_only=${m.readOnly ?? "-"}  ${m.reason ?? ""}`);
  return lines.join("\n");
}

async function main(argv: string[]): Promise<number> {
  // ContainerPilot's `containerpilot -putmetric k=v` (and -putenv, -reload, -ping, -maintenance):
  // the native command with the same effect, so a ContainerPilot image's scripts run unchanged.
  quietOnSuccess = isContainerPilotArgv(argv);
  const args = parseArgs(containerPilotArgv(argv, process.env) ?? argv, SPEC);
  if (args.options.has("help") || (args.command.length === 1 && args.command[0] === "help")) {
    process.stdout.write(`${HELP}\n`);
    return 0;
  }
  if (args.options.has("version")) {
    process.stdout.write(`${packageVersion()}\n`);
    return 0;
  }
  checkCommandOptions(args);
  const [cmd, sub] = args.command;
  switch (cmd) {
    case undefined:
    case "run":
      expectArgs(args, cmd ? 1 : 0, "statepilot [--config FILE] [-- COMMAND...]");
      if (!configPath(args) && !args.trailing) {
        throw new UsageError("nothing to run: give --config FILE (or STATEPILOT_CONFIG), or a command after --; see statepilot --help");
      }
      return runSupervisor({
        configPath: configPath(args),
        node: optionString(args, "node"),
        socket: optionString(args, "socket"),
        mainCommand: args.trailing,
        version: packageVersion(),
      });
    case "config": {
      expectArgs(args, 2, "statepilot config check|render [--config FILE]");
      if (sub !== "check" && sub !== "render") throw new UsageError(`unknown config command ${JSON.stringify(sub)}; expected check or render`);
      const path = configPath(args);
      const config = resolveConfig({ configPath: path, node: optionString(args, "node"), mainCommand: args.trailing });
      if (sub === "check") {
        // What run would refuse before starting: missing MySQL credentials, unusable CONSUL_* settings.
        preflight(config, process.env, path ?? "defaults");
        // The telemetry token file or variable, as start-up reads it (never printed).
        if (config.telemetry?.auth) resolveTelemetryToken(config.telemetry.auth, process.env, path ?? "defaults");
        if (config.mysql?.failsafe.enabled) resolveTelemetryToken(config.mysql.failsafe, process.env, path ?? "defaults", "mysql.failsafe");
        process.stdout.write(`${path ?? "defaults"}: valid (${config.jobs.length} jobs, ${config.watches.length} watches)\n`);
      } else {
        const format = outputFormat(args);
        const masked = maskSecrets(encodeConfig(config));
        emit(format === "table" ? "json" : format, masked, () => "");
      }
      return 0;
    }
    case "convert": {
      expectArgs(args, 2, "statepilot convert FILE");
      return convertCommand(sub!, process.env, (text) => process.stdout.write(text));
    }
    case "status": {
      expectArgs(args, 1, "statepilot status [--json]");
      const res = await controlRequest(socketPath(args), "GET", "/v1/status");
      if (res.status !== 200) throw new Error(`status: HTTP ${res.status}: ${JSON.stringify(res.body)}`);
      emit(outputFormat(args), res.body, () => statusText(res.body));
      return 0;
    }
    case "ping":
      expectArgs(args, 1, "statepilot ping");
      return callControl(args, "GET", "/v1/ping", undefined, () => "statepilot is up");
    case "health":
      expectArgs(args, 1, "statepilot health");
      return callControl(args, "GET", "/v1/health", undefined, () => "healthy");
    case "reload":
      expectArgs(args, 1, "statepilot reload");
      return callControl(args, "POST", "/v1/reload", undefined, (b) => {
        const r = b as { restarted?: string[]; added?: string[]; removed?: string[]; unchanged?: string[] };
        const list = (xs: string[] | undefined) => (xs?.length ? xs.join(", ") : "none");
        return `reloaded: restarted ${list(r.restarted)}; added ${list(r.added)}; removed ${list(r.removed)}; unchanged ${list(r.unchanged)}`;
      }, [400, 409]);
    case "maintenance": {
      expectArgs(args, 2, "statepilot maintenance on|off [--reason TEXT]");
      if (sub !== "on" && sub !== "off") throw new UsageError(`maintenance: expected on or off, got ${JSON.stringify(sub)}`);
      const reason = optionString(args, "reason");
      return callControl(args, "POST", "/v1/maintenance", { enabled: sub === "on", ...(reason ? { reason } : {}) }, () =>
        sub === "on" ? "maintenance on: out of the load balancers' replica checks and Consul's healthy lists; never runs for primary" : "maintenance off",
      );
    }
    case "putenv": {
      const pairs = args.command.slice(1);
      if (!pairs.length) throw new UsageError("putenv: expected KEY=VALUE or KEY arguments");
      const body: Record<string, string | null> = {};
      for (const p of pairs) {
        const eq = p.indexOf("=");
        const key = eq < 0 ? p : p.slice(0, eq);
        if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(key)) throw new UsageError(`putenv: ${JSON.stringify(key)} is not a variable name`);
        body[key] = eq < 0 ? null : p.slice(eq + 1);
      }
      return callControl(args, "POST", "/v1/env", body);
    }
    case "putmetric": {
      const pairs = args.command.slice(1);
      if (!pairs.length) throw new UsageError("putmetric: expected NAME=VALUE arguments");
      const labels: Record<string, string> = {};
      for (const kv of (optionString(args, "labels") ?? "").split(",").filter(Boolean)) {
        const eq = kv.indexOf("=");
        if (eq < 1) throw new UsageError(`--labels: expected k=v[,k=v...], got ${JSON.stringify(kv)}`);
        labels[kv.slice(0, eq)] = kv.slice(eq + 1);
      }
      const op = optionString(args, "op");
      if (op !== undefined && !["set", "inc", "observe"].includes(op)) throw new UsageError(`--op: expected set, inc or observe, got ${JSON.stringify(op)}`);
      const updates = pairs.map((p) => {
        const eq = p.lastIndexOf("=");
        const value = eq < 0 ? NaN : Number(p.slice(eq + 1));
        if (eq < 1 || p.slice(eq + 1).trim() === "" || !Number.isFinite(value)) throw new UsageError(`putmetric: expected NAME=NUMBER, got ${JSON.stringify(p)}`);
        return { name: p.slice(0, eq), value, labels, ...(op ? { op } : {}) };
      });
      return callControl(args, "POST", "/v1/metric", updates.length === 1 ? updates[0] : updates);
    }
    // Cluster and lab commands load their code only when used: `statepilot run` stays lean.
    case "lab":
      return (await import("./cluster-commands.js")).labCommand(args);
    case "mysql":
      return (await import("./cluster-commands.js")).mysqlCommand(args, configPath(args));
    case "snapshot":
      return (await import("./cluster-commands.js")).snapshotCommand(args, configPath(args));
    case "archive":
      return (await import("./archive-command.js")).archiveCommand(args, configPath(args));
    default:
      throw new UsageError(`unknown command ${JSON.stringify(cmd)} (see statepilot --help)`);
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err: unknown) => {
    if (err instanceof ConfigError || err instanceof UsageError) {
      process.stderr.write(`statepilot: ${err.message}\n`);
      process.exit(2);
    }
    process.stderr.write(`statepilot: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
