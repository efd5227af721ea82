import { parseDuration } from "../config/duration.js";
import { maskSecrets } from "../config/secrets.js";
import { ConsulCoordinator } from "../discovery/consul/coordinator.js";
import { resolveConsulConnection } from "../discovery/consul/connection.js";
import { Lab } from "../lab/cluster.js";
import { runDemo } from "../lab/demo.js";
import { applyFault, FAULTS, type FaultKind } from "../lab/faults.js";
import type { ClusterView } from "../mysql/switchover.js";
import { ClusterAdminError } from "../mysql/cluster-admin.js";
import { RebuildError } from "../mysql/rebuild.js";
import { Cluster } from "../api/cluster.js";
import { createStore } from "../snapshot/store.js";
import { listSnapshots, restoreSnapshot } from "../snapshot/snapshot.js";
import { requestSnapshot } from "../snapshot/request.js";
import { optionString, UsageError, type ParsedArgs } from "./args.js";
import { emit, outputFormat } from "./output.js";
import { Progress } from "./progress.js";
import { resolveConfig } from "./run.js";
import type { Config, MysqlConfig } from "../config/schema.js";

const out = (s: string) => process.stdout.write(`${s}\n`);

function labDir(args: ParsedArgs): string {
  const dir = optionString(args, "dir");
  if (!dir) throw new UsageError("--dir DIR is required (the lab's directory)");
  return dir;
}

function intOption(args: ParsedArgs, name: string, fallback: number): number {
  const raw = optionString(args, name);
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n)) throw new UsageError(`--${name}: expected a whole number, got ${JSON.stringify(raw)}`);
  return n;
}

/** A node's config, which cluster-level commands need for Consul, the cluster and the store. */
function nodeConfig(configPath: string | undefined, why: string): Config & { mysql: MysqlConfig } {
  if (!configPath) throw new UsageError(`--config FILE is required (${why})`);
  const config = resolveConfig({ configPath, node: undefined, mainCommand: undefined });
  if (!config.mysql) throw new UsageError(`${configPath} has no mysql section`);
  return config as Config & { mysql: MysqlConfig };
}

const SIGNALS = ["SIGKILL", "SIGTERM", "SIGINT", "SIGSTOP", "SIGCONT", "SIGHUP", "SIGQUIT"];

/** statepilot lab up|status|kill|start|down */
export async function labCommand(args: ParsedArgs): Promise<number> {
  const sub = args.command[1];
  const dir = labDir(args);
  switch (sub) {
    case "up": {
      const nodes = intOption(args, "nodes", 3);
      if (nodes < 1 || nodes > 9) throw new UsageError(`--nodes: expected 1 to 9, got ${nodes}`);
      const started = performance.now();
      const tmpfs = optionString(args, "store-tmpfs-mb");
      const storeTmpfsMb = tmpfs === undefined ? undefined : Number(tmpfs);
      if (storeTmpfsMb !== undefined && !(Number.isInteger(storeTmpfsMb) && storeTmpfsMb >= 16)) throw new UsageError(`--store-tmpfs-mb: expected a whole number of MiB >= 16, got ${JSON.stringify(tmpfs)}`);
      const flavor = optionString(args, "flavor") ?? "mariadb";
      if (flavor !== "mariadb" && flavor !== "mysql") throw new UsageError(`--flavor: expected mariadb or mysql, got ${JSON.stringify(flavor)}`);
      const restoreTo = optionString(args, "restore-to");
      const from = optionString(args, "from");
      if ((restoreTo === undefined) !== (from === undefined)) throw new UsageError("--restore-to T and --from LABDIR go together");
      const restore = restoreTo !== undefined && from !== undefined ? { point: (await import("./archive-command.js")).parseRestorePoint(restoreTo, "restore-to"), from } : undefined;
      const store = optionString(args, "store") ?? "consul";
      if (store !== "consul" && store !== "etcd") throw new UsageError(`--store: expected consul or etcd, got ${JSON.stringify(store)}`);
      const serversArg = optionString(args, "store-servers") ?? "1";
      if (serversArg !== "1" && serversArg !== "3") throw new UsageError(`--store-servers: expected 1 or 3, got ${JSON.stringify(serversArg)}`);
      if (serversArg === "3" && store === "consul" && args.options.has("netns")) throw new UsageError("--store consul --store-servers 3 does not run with --netns yet");
      const storeServers = serversArg === "3" ? 3 : 1;
      const lab = await Lab.up({ dir, nodes, flavor, store, storeServers, subnet: optionString(args, "subnet"), lossless: args.options.has("lossless"), fresh: args.options.has("fresh"), netns: args.options.has("netns"), ...(storeTmpfsMb ? { storeTmpfsMb } : {}), ...(restore ? { restoreTo: restore } : {}), log: out });
      const vs = await lab.views();
      out(`lab up in ${((performance.now() - started) / 1000).toFixed(1)} s: ${vs.map((v) => `${v.name}=${v.role}`).join(" ")}`);
      out(`lab file: ${Lab.path(dir)}; Consul UI/API: ${lab.file.consul}${lab.file.etcd ? `; cluster store: etcd ${lab.file.etcd.endpoint}` : ""}`);
      return 0;
    }
    case "status": {
      const lab = Lab.open(dir);
      const vs = await lab.views();
      lab.save();
      if (args.options.has("json")) {
        // lab.json itself holds the lab's passwords (mode 0600); the printed view masks them.
        out(JSON.stringify(maskSecrets({ ...lab.file, views: vs }), null, 2));
        return 0;
      }
      out(`consul ${lab.file.consul}${lab.file.etcd ? `  etcd ${lab.file.etcd.endpoint}` : ""}  ${lab.file.flavor ?? "mariadb"}${lab.file.lossless ? "  (lossless)" : ""}`);
      for (const v of vs) {
        const n = lab.node(v.name);
        out(`${v.name.padEnd(9)} ${`${n.mysql.host}:${n.mysql.port}`.padEnd(17)} ${v.role.padEnd(11)} ${v.health.padEnd(8)} ro=${v.readOnly === undefined ? "-" : v.readOnly ? "1" : "0"} lag=${v.lagSeconds ?? "-"} pids=${v.pids.statepilot ?? "-"}/${v.pids.mysqld ?? "-"}  ${v.reason}`);
      }
      return 0;
    }
    case "kill": {
      const name = args.command[2];
      if (!name) throw new UsageError("usage: statepilot lab kill NODE [--signal S] [--only mysqld|statepilot] --dir DIR");
      const only = optionString(args, "only");
      if (only !== undefined && only !== "mysqld" && only !== "statepilot") throw new UsageError(`--only: expected mysqld or statepilot, got ${JSON.stringify(only)}`);
      let signal = (optionString(args, "signal") ?? "SIGKILL").toUpperCase();
      if (!signal.startsWith("SIG")) signal = `SIG${signal}`;
      if (!SIGNALS.includes(signal)) throw new UsageError(`--signal: expected one of ${SIGNALS.join(", ")}, got ${JSON.stringify(optionString(args, "signal"))}`);
      const lab = Lab.open(dir);
      const hit = await lab.kill(name, { signal: signal as NodeJS.Signals, ...(only ? { only } : {}) });
      out(`${signal} sent to ${name}: statepilot=${hit.statepilot ?? "-"} mysqld=${hit.mysqld ?? "-"}`);
      return 0;
    }
    case "start": {
      const name = args.command[2];
      if (!name) throw new UsageError("usage: statepilot lab start NODE --dir DIR");
      const lab = Lab.open(dir);
      const n = await lab.start(name);
      out(`${n.name} started: statepilot pid ${n.pids.statepilot}`);
      return 0;
    }
    case "add": {
      const lab = Lab.open(dir);
      const started = performance.now();
      const n = await lab.add();
      out(`${n.name} joined as a replica on ${n.mysql.host}:${n.mysql.port} in ${((performance.now() - started) / 1000).toFixed(1)} s (lab.json updated)`);
      return 0;
    }
    case "demo":
      await runDemo(dir, out, { subnet: optionString(args, "subnet") });
      return 0;
    case "fault": {
      const kind = args.command[2];
      if (!kind || !(FAULTS as readonly string[]).includes(kind)) throw new UsageError(`lab fault: expected one of ${FAULTS.join(", ")}, got ${JSON.stringify(kind)}`);
      const rawFor = optionString(args, "for") ?? "10s";
      const forMs = parseDuration(rawFor);
      if (forMs === undefined) throw new UsageError(`--for: expected a duration such as "10s", got ${JSON.stringify(rawFor)}`);
      const lab = Lab.open(dir);
      const r = await applyFault(lab, kind as FaultKind, { node: args.command[3], forMs, log: out });
      out(`${r.kind}${r.node ? ` on ${r.node}` : ""}: ${r.description}; healed`);
      return 0;
    }
    case "down": {
      const lab = Lab.open(dir);
      await lab.down({ keep: args.options.has("keep") });
      out(`lab in ${dir} stopped${args.options.has("keep") ? " (data kept)" : " and removed"}`);
      return 0;
    }
    default:
      throw new UsageError(`lab: expected up, status, kill, start, add, fault, down or demo, got ${JSON.stringify(sub)}`);
  }
}

/** statepilot mysql status|switchover --config FILE: cluster-level commands, through Consul. */
export async function mysqlCommand(args: ParsedArgs, configPath: string | undefined): Promise<number> {
  const sub = args.command[1];
  const config = nodeConfig(configPath, "any node's config: it names Consul and the cluster");
  const cluster = Cluster.fromConfig(config);
  try {
    switch (sub) {
      case "status": {
        const v = await cluster.view();
        const format = outputFormat(args);
        if (format !== "table") {
          emit(format, v, () => "");
          return 0;
        }
        out(`cluster ${config.mysql.cluster}: primary ${v.primary ? `${v.primary.node} (${v.primary.host}:${v.primary.port}, term ${v.primary.term})` : "NONE"}`);
        if (v.pause?.paused) out(`PAUSED since ${v.pause.at} by ${v.pause.by || "?"}${v.pause.reason ? ` (${v.pause.reason})` : ""}: no automatic failover (statepilot mysql resume)`);
        const rows = v.members.sort((a, b) => a.node.localeCompare(b.node)).map((m) => [
          m.node,
          `${m.host}:${m.port}`,
          m.alive ? m.role : `${m.role}?`,
          m.alive ? (m.up ? "running" : "mysqld down") : "unreachable",
          m.lagSeconds === null ? "-" : String(m.lagSeconds),
          m.ageSeconds === null ? "-" : `${m.ageSeconds}s`,
          m.executed || "-",
          m.blocked ? `BLOCKED: ${m.blocked}` : m.maintenance ? "maintenance" : "",
        ]);
        out(table(["member", "host", "role", "state", "lag", "age", "gtid", "note"], rows));
        if (v.members.some((m) => !m.alive)) out("(role? = last role the node published; it is not alive in the store, so the role may be stale)");
        for (const bad of v.invalid) out(`unreadable record ${bad.what}: ${bad.error}`);
        if (v.switchover) out(`last switchover: ${v.switchover.from ?? "?"} -> ${v.switchover.to ?? "?"} ${v.switchover.state}${v.switchover.at && v.switchover.state === "requested" ? ` (scheduled at ${v.switchover.at})` : ""}${v.switchover.error ? `: ${v.switchover.error}` : ""}`);
        return 0;
      }
      case "switchover": {
        const rawTimeout = optionString(args, "timeout");
        const timeoutMs = rawTimeout === undefined ? config.mysql.switchoverTimeout : parseDuration(rawTimeout);
        if (timeoutMs === undefined) throw new UsageError(`--timeout: expected a duration such as "30s", got ${JSON.stringify(rawTimeout)}`);
        const to = optionString(args, "to");
        const at = parseAt(optionString(args, "at"));
        const table = outputFormat(args) === "table";
        if (table && to === undefined) {
          const candidates = switchoverCandidates(await cluster.view());
          out(candidates.length ? `candidates (best first; the primary picks the first): ${candidates.join(", ")}` : "no healthy replica of the primary to hand over to");
        }
        const r = await cluster.switchover({ ...(to !== undefined ? { to } : {}), timeoutMs, ...(at ? { at } : {}) });
        const after = at ? undefined : await cluster.view();
        if (!table) {
          emit(outputFormat(args), { ...r, ...(after ? { topology: after } : {}) }, () => "");
          return 0;
        }
        if (at) {
          out(`switchover${to ? ` to ${to}` : ""} scheduled at ${r.at}; the primary carries it out then (statepilot mysql status shows it)`);
          return 0;
        }
        out(`switchover ${r.from} -> ${r.to} done: writes unavailable ${r.unavailableMs ?? "?"} ms (between the old primary fencing and the new one turning writable); ${r.observedMs} ms end to end`);
        if (after) out(`now: primary ${after.primary?.node ?? "NONE"}; ${after.members.filter((m) => m.node !== after.primary?.node).map((m) => `${m.node} ${m.alive ? m.role : "unreachable"}${m.source ? ` of ${m.source}` : ""}`).join(", ")}`);
        return 0;
      }
      case "pause":
      case "resume": {
        const paused = sub === "pause";
        const reason = optionString(args, "reason");
        const r = paused ? await cluster.pause(reason !== undefined ? { reason } : {}) : await cluster.resume();
        if (outputFormat(args) !== "table") {
          emit(outputFormat(args), { cluster: config.mysql.cluster, paused, ...r }, () => "");
          return 0;
        }
        out(paused ? `cluster ${config.mysql.cluster} paused: no automatic failover until \`statepilot mysql resume\`${r.changed ? "" : " (it already was)"}` : `cluster ${config.mysql.cluster} resumed: automatic failover on${r.changed ? "" : " (it was not paused)"}`);
        return 0;
      }
      case "remove": {
        const node = args.command[2];
        if (!node) throw new UsageError("mysql remove: name the node to forget: statepilot mysql remove NODE --yes --config FILE");
        if (!args.options.has("yes")) throw new UsageError(`mysql remove ${node}: this forgets the node's record in cluster ${config.mysql.cluster}; add --yes to confirm`);
        try {
          await cluster.remove(node);
        } catch (err) {
          if (err instanceof ClusterAdminError) throw new UsageError(`mysql remove: ${err.message}`, { cause: err });
          throw err;
        }
        emit(outputFormat(args), { cluster: config.mysql.cluster, removed: node }, () => `${node} removed from cluster ${config.mysql.cluster}`);
        return 0;
      }
      case "rebuild": {
        const node = args.command[2];
        if (!node) throw new UsageError("mysql rebuild: name the node to rebuild: statepilot mysql rebuild NODE --yes --config FILE");
        if (!args.options.has("yes")) throw new UsageError(`mysql rebuild ${node}: this replaces ${node}'s datadir (its transactions the primary lacks are lost); add --yes to confirm`);
        const rawTimeout = optionString(args, "timeout");
        const timeoutMs = rawTimeout === undefined ? 600_000 : parseDuration(rawTimeout);
        if (timeoutMs === undefined) throw new UsageError(`--timeout: expected a duration such as "10m", got ${JSON.stringify(rawTimeout)}`);
        const format = outputFormat(args);
        const progress = new Progress(`rebuild ${node}`);
        let r: Awaited<ReturnType<Cluster["rebuild"]>>;
        try {
          r = await cluster.rebuild(node, { timeoutMs, onProgress: (what) => progress.tick(what) });
        } catch (err) {
          progress.done();
          if (err instanceof ClusterAdminError) throw new UsageError(`mysql rebuild: ${err.message}`, { cause: err });
          if (err instanceof RebuildError && format !== "table") {
            emit(format, { cluster: config.mysql.cluster, node, state: "failed", error: err.message }, () => "");
            process.stderr.write(`statepilot: ${err.message}\n`);
            return 1;
          }
          throw err;
        }
        progress.done();
        emit(format, { cluster: config.mysql.cluster, state: "done", ...r }, () => `${node} rebuilt from ${r.seed} in ${(r.durationMs / 1000).toFixed(1)} s: a replica of ${r.primary} at its position (${r.primaryExecuted || "empty"}); the old datadir was removed`);
        return 0;
      }
      default:
        throw new UsageError(`mysql: expected status, switchover, pause, resume, remove or rebuild, got ${JSON.stringify(sub)}`);
    }
  } finally {
    cluster.close();
  }
}

/** `--at`: an ISO 8601 time, or a delay from now such as "+10m". */
function parseAt(raw: string | undefined): Date | undefined {
  if (raw === undefined) return undefined;
  const ms = raw.startsWith("+") ? parseDuration(raw.slice(1)) : undefined;
  const at = ms !== undefined ? new Date(Date.now() + ms) : new Date(raw);
  if (!Number.isFinite(at.getTime()) || !/\d/.test(raw)) throw new UsageError(`--at: expected a time such as 2026-12-24T03:00:00Z or a delay such as +10m, got ${JSON.stringify(raw)}`);
  return at;
}

/** Healthy replicas of the primary, best position first (the order the primary picks in). */
function switchoverCandidates(v: ClusterView): string[] {
  const p = v.primary?.node;
  return v.members
    .filter((m) => m.node !== p && m.alive && m.up && m.role === "replica" && m.source === p && !m.blocked && !m.nofailover && !m.maintenance && !m.sqlError)
    .sort((a, b) => (a.lagSeconds ?? Infinity) - (b.lagSeconds ?? Infinity) || a.node.localeCompare(b.node))
    .map((m) => `${m.node} (lag ${m.lagSeconds ?? "?"} s)`);
}

/** statepilot snapshot list|create|restore --config FILE */
export async function snapshotCommand(args: ParsedArgs, configPath: string | undefined): Promise<number> {
  const sub = args.command[1];
  const config = nodeConfig(configPath, "a node's config: it names the store, Consul and the cluster");
  const m = config.mysql;
  const store = await createStore(m.snapshots.store);
  try {
    switch (sub) {
      case "list": {
        const all = await listSnapshots(store, m.cluster);
        if (outputFormat(args) !== "table") {
          emit(outputFormat(args), all, () => "");
          return 0;
        }
        out(`${all.length} snapshots of cluster ${m.cluster} in ${store.description}`);
        for (const s of all) out(`  ${s.id}  ${s.createdAt}  ${s.node.padEnd(10)} ${(s.size / 1048576).toFixed(1).padStart(9)} MiB  gtid=${s.gtid}  ${s.compression}  ${(s.durationMs / 1000).toFixed(1)} s`);
        return 0;
      }
      case "create": {
        const rawTimeout = optionString(args, "timeout");
        const timeoutMs = rawTimeout === undefined ? 3_600_000 : parseDuration(rawTimeout);
        if (timeoutMs === undefined) throw new UsageError(`--timeout: expected a duration such as "30m", got ${JSON.stringify(rawTimeout)}`);
        const coordinator = new ConsulCoordinator(resolveConsulConnection(config.consul, process.env));
        try {
          const progress = new Progress("snapshot");
          const r = await requestSnapshot(coordinator, m.cluster, timeoutMs, (st) => progress.tick(st.state === "running" ? `being taken on ${st.node ?? "?"}` : "waiting for a node to take it")).finally(() => progress.done());
          if (outputFormat(args) !== "table") {
            emit(outputFormat(args), r, () => "");
            return 0;
          }
          out(`snapshot ${r.id} taken by ${r.node}: ${(r.size / 1048576).toFixed(1)} MiB in ${(r.durationMs / 1000).toFixed(1)} s, gtid ${r.gtid}, sha256 ${r.sha256}`);
          return 0;
        } finally {
          coordinator.close();
        }
      }
      case "restore": {
        const datadir = optionString(args, "datadir");
        if (!datadir) throw new UsageError("--datadir DIR is required (an empty directory)");
        const point = (await import("./archive-command.js")).restorePointOption(args);
        if (point) {
          if (optionString(args, "id") !== undefined) throw new UsageError("--id and --to-time/--to-gtid exclude each other (the newest snapshot before the point is used)");
          return (await import("./archive-command.js")).restoreToPointCommand(args, config, store, datadir, point);
        }
        const id = optionString(args, "id");
        const all = await listSnapshots(store, m.cluster);
        const manifest = id ? all.find((s) => s.id === id) : all[0];
        if (!manifest) throw new UsageError(id ? `--id: no snapshot ${JSON.stringify(id)} in ${store.description} (see statepilot snapshot list)` : `no snapshot of cluster ${m.cluster} in ${store.description}`);
        const { createLogger } = await import("../log.js");
        const progress = new Progress(`restore ${manifest.id}`);
        const r = await restoreSnapshot({ store, manifest, datadir, logger: createLogger(config.logging, process.stderr), runAs: m.runAs, onProgress: (p) => progress.update(p.bytes, p.total, p.stage) }).finally(() => progress.done());
        if (outputFormat(args) !== "table") {
          emit(outputFormat(args), { id: manifest.id, datadir, gtid: r.gtid, durationMs: r.durationMs, stagesMs: r.stagesMs }, () => "");
          return 0;
        }
        out(`restored ${manifest.id} into ${datadir} in ${(r.durationMs / 1000).toFixed(1)} s; replicate from GTID ${r.gtid} (MariaDB: SET GLOBAL gtid_slave_pos = '${r.gtid}')`);
        return 0;
      }
      default:
        throw new UsageError(`snapshot: expected list, create or restore, got ${JSON.stringify(sub)}`);
    }
  } finally {
    store.close();
  }
}

/** A plain text table: columns padded to their widest cell. */
function table(head: string[], rows: string[][]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join("  ").trimEnd();
  return [line(head), ...rows.map(line)].join("\n");
}
