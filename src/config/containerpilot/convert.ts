import type { ConfigProblem } from "../load.js";
import { formatPath } from "../interpolate.js";
import { nearestKey } from "../suggest.js";
import { cpDuration } from "./duration.js";
import { ELEMENT, Notes, Symbols, type Path, type Tree } from "./notes.js";
import { fromV2, isV2 } from "./v2.js";

/**
 * ContainerPilot v3 (and v2) config → statepilot's native config tree, to be validated by the
 * native schema as usual. Every translated key gets a note (a comment in `statepilot convert`);
 * a key with no equivalent is a problem naming the key and what to do, never dropped.
 */
export interface ConvertOptions {
  env: NodeJS.ProcessEnv;
  /** How the `consul` address is written: now resolved against CONSUL_HTTP_ADDR, or as `${CONSUL_HTTP_ADDR:-…}`. */
  consulOverride: (address: string) => string;
  /** For `statepilot convert`: a string holding `${VAR}` placeholders, evaluated with env (where a value must be computed). */
  resolve?: (text: string) => string;
  /** `run`: the address telemetry listens on, as ContainerPilot did (the interface's); undefined for `statepilot convert`. */
  telemetryBind?: (interfaces: string[]) => string | undefined;
}

export interface Conversion {
  config: Tree;
  notes: Notes;
  problems: ConfigProblem[];
  version: 2 | 3;
}

const isObject = (v: unknown): v is Tree => v !== null && typeof v === "object" && !Array.isArray(v);

const show = (v: unknown) => {
  const t = JSON.stringify(v) ?? String(v);
  return t.length > 120 ? `${t.slice(0, 117)}...` : t;
};

export const EVENTS = ["startup", "exitSuccess", "exitFailed", "healthy", "unhealthy", "changed", "stopping", "stopped", "enterMaintenance", "exitMaintenance", "shutdown"];

class Ctx {
  readonly notes = new Notes();
  readonly problems: ConfigProblem[] = [];
  constructor(readonly opts: ConvertOptions) {}

  problem(path: Path, message: string, value?: unknown): void {
    this.problems.push({ path: formatPath(path), message, ...(value !== undefined && (value === null || typeof value !== "object") ? { value: show(value) } : {}) });
  }

  /** Reports the keys of o that are not in known (ContainerPilot rejects them too). */
  onlyKeys(o: Tree, known: readonly string[], path: Path, what: string): void {
    for (const k of Object.keys(o)) {
      if (known.includes(k)) continue;
      const near = k === "poll" && known.includes("interval") ? "interval" : nearestKey(k, known);
      const v2 = k === "poll" ? " (poll is ContainerPilot v2's name)" : "";
      this.problem([...path, k], `unknown ContainerPilot key in ${what}${near ? `; did you mean \`${near}\`?${v2}` : ` (ContainerPilot accepts ${known.join(", ")})`}`);
    }
  }

  object(v: unknown, path: Path): Tree | undefined {
    if (isObject(v)) return v;
    this.problem(path, "expected an object", v);
    return undefined;
  }

  /** A value that must be computed now: placeholders of `statepilot convert` are evaluated with the environment. */
  now(v: unknown, target: object, key: string): unknown {
    if (typeof v !== "string" || !this.opts.resolve || !Symbols.has(v)) return v;
    this.notes.add(target, key, `was ${show(v)}, evaluated with the environment of \`statepilot convert\``);
    return this.opts.resolve(v);
  }

  duration(v: unknown, path: Path, target?: object): string | undefined {
    if (target) v = this.now(v, target, String(path[path.length - 1]));
    else if (typeof v === "string" && this.opts.resolve && Symbols.has(v)) v = this.opts.resolve(v);
    const d = cpDuration(v);
    if (d === undefined) this.problem(path, 'expected a ContainerPilot duration: seconds (5, "5") or a Go duration ("500ms", "1h30m")', v);
    return d;
  }
}

function strings(v: unknown): unknown {
  return Array.isArray(v) ? v.map((x) => (typeof x === "number" || typeof x === "boolean" ? String(x) : x)) : typeof v === "string" ? [v] : v;
}

/** ContainerPilot splits a string exec on single spaces, quotes included; statepilot splits like a shell. */
function exec(v: unknown, target: Tree, key: string, ctx: Ctx): unknown {
  if (typeof v === "string" && (/["'\\]/.test(v) || /\s\s|[\t\n]/.test(v))) {
    ctx.notes.add(target, key, "a string exec split on single spaces, as ContainerPilot did (quotes are not special there; statepilot splits a string like a shell)");
    return v.split(" ");
  }
  return Array.isArray(v) ? v.map((x) => (typeof x === "number" ? String(x) : x)) : v;
}

function consul(v: unknown, ctx: Ctx): Tree | undefined {
  const out: Tree = {};
  if (typeof v === "string") {
    out.address = ctx.opts.consulOverride(v);
    ctx.notes.add(out, "address", `was consul: ${show(v)}; CONSUL_HTTP_ADDR, when set, takes its place (so a config written for the \`consul\` host runs anywhere)`);
    return out;
  }
  const c = ctx.object(v, ["consul"]);
  if (!c) return undefined;
  ctx.onlyKeys(c, ["address", "scheme", "token", "tls"], ["consul"], "consul");
  if (c.address !== undefined) {
    const scheme = typeof c.scheme === "string" && c.scheme && typeof c.address === "string" && !c.address.includes("://") ? `${c.scheme}://` : "";
    out.address = ctx.opts.consulOverride(`${scheme}${String(c.address)}`);
    ctx.notes.add(out, "address", `was consul.address${scheme ? " with consul.scheme" : ""}; CONSUL_HTTP_ADDR, when set, takes its place`);
  }
  if (c.token !== undefined) out.token = c.token;
  if (c.tls !== undefined) {
    const tls = ctx.object(c.tls, ["consul", "tls"]);
    if (tls) {
      ctx.onlyKeys(tls, ["cafile", "capath", "clientcert", "clientkey", "servername", "verify"], ["consul", "tls"], "consul.tls");
      const map: Record<string, string> = { cafile: "caFile", clientcert: "certFile", clientkey: "keyFile" };
      for (const [from, to] of Object.entries(map)) {
        if (tls[from] === undefined) continue;
        out[to] = tls[from];
        ctx.notes.add(out, to, `was consul.tls.${from}`);
      }
      if (tls.capath !== undefined) ctx.problem(["consul", "tls", "capath"], "no equivalent: give one CA bundle file as consul.tls.cafile (or CONSUL_CACERT)");
      if (tls.servername !== undefined) ctx.problem(["consul", "tls", "servername"], "no equivalent key: set CONSUL_TLS_SERVER_NAME in the environment instead, and remove it");
      if (tls.verify === false) ctx.problem(["consul", "tls", "verify"], "statepilot always verifies the agent's certificate; for tests only, set CONSUL_HTTP_SSL_VERIFY=false in the environment and remove it");
      else if (tls.verify !== undefined) ctx.notes.add(out, ELEMENT, "consul.tls.verify: statepilot always verifies certificates");
    }
  }
  return out;
}

function logging(v: unknown, ctx: Ctx): Tree | undefined {
  const l = ctx.object(v, ["logging"]);
  if (!l) return undefined;
  ctx.onlyKeys(l, ["level", "format", "output"], ["logging"], "logging");
  const out: Tree = {};
  if (l.level !== undefined) {
    const level = String(ctx.now(l.level, out, "level")).toLowerCase();
    const mapped = level === "panic" ? "fatal" : level === "warning" ? "warn" : level;
    out.level = mapped;
    ctx.notes.add(out, "level", `was ${show(l.level)}`);
  }
  if (l.format !== undefined) {
    const f = String(ctx.now(l.format, out, "format")).toLowerCase();
    if (f === "json") out.format = "json";
    else if (f === "default" || f === "text") out.format = "pretty";
    else ctx.problem(["logging", "format"], 'expected "default", "text" or "json"', l.format);
    if (out.format) ctx.notes.add(out, "format", `was ${show(l.format)}: statepilot logs JSON, or one readable line per event ("pretty")`);
  }
  if (l.output !== undefined && l.output !== "stdout") {
    ctx.problem(["logging", "output"], "statepilot logs to stdout only; remove it and redirect the container's output instead", l.output);
  } else if (l.output === "stdout") {
    ctx.notes.add(out, ELEMENT, 'logging.output "stdout": statepilot always logs to stdout');
  }
  return out;
}

function when(v: unknown, path: Path, ctx: Ctx, jobNames: Set<string>): Tree | undefined {
  const w = ctx.object(v, path);
  if (!w) return undefined;
  ctx.onlyKeys(w, ["source", "once", "each", "interval", "timeout"], path, "when");
  const out: Tree = {};
  let signal: string | undefined;
  if (w.source !== undefined) {
    if (w.source === "global") {
      out.source = "statepilot";
      ctx.notes.add(out, "source", 'was "global": statepilot\'s own events come from source "statepilot"');
    } else if (w.source === "SIGHUP" || w.source === "SIGUSR2") {
      out.source = "statepilot";
      signal = w.source;
      ctx.notes.add(out, "source", `was source ${show(w.source)}: signals are events ${show(w.source)} from source "statepilot"`);
    } else out.source = w.source;
    if (typeof w.source === "string" && !signal && w.source !== "global" && !w.source.startsWith("watch.") && !jobNames.has(w.source)) {
      ctx.problem([...path, "source"], `no job named ${show(w.source)}; expected a job name, watch.<name>, "global", "SIGHUP" or "SIGUSR2"`);
    }
  }
  for (const k of ["once", "each"] as const) {
    if (w[k] === undefined) continue;
    if (signal) out[k] = signal;
    else if (typeof w[k] === "string" && EVENTS.includes(w[k])) out[k] = w[k];
    else ctx.problem([...path, k], `no equivalent event in statepilot (it has ${EVENTS.join(", ")})`, w[k]);
  }
  if (w.interval !== undefined) out.interval = ctx.duration(w.interval, [...path, "interval"]);
  if (w.timeout !== undefined) {
    out.timeout = ctx.duration(w.timeout, [...path, "timeout"]);
    ctx.notes.add(out, "timeout", "if the event has not come within this long, the job gives up waiting: it never runs and publishes stopped");
  }
  return out;
}

function restarts(v: unknown, path: Path, ctx: Ctx): "never" | "unlimited" | number | undefined {
  if (v === "never" || v === "unlimited") return v;
  const n = typeof v === "number" ? v : typeof v === "string" && /^\d+(\.\d+)?$/.test(v) ? Number(v) : NaN;
  if (Number.isFinite(n) && n >= 0) return Math.trunc(n);
  ctx.problem(path, 'expected "never", "unlimited" or a number', v);
  return undefined;
}

function health(v: unknown, path: Path, ctx: Ctx): Tree | undefined {
  const h = ctx.object(v, path);
  if (!h) return undefined;
  ctx.onlyKeys(h, ["exec", "interval", "ttl", "timeout", "logging"], path, "health");
  const out: Tree = {};
  if (h.exec === undefined) ctx.problem([...path, "exec"], "statepilot needs a check command: add health.exec (a command that exits 0 when healthy)");
  else out.exec = exec(h.exec, out, "exec", ctx);
  if (h.interval === undefined) ctx.problem([...path, "interval"], "required (seconds between checks)");
  else out.interval = ctx.duration(h.interval, [...path, "interval"]);
  if (h.ttl === undefined) ctx.problem([...path, "ttl"], "required (seconds: Consul's TTL)");
  else out.ttl = ctx.duration(h.ttl, [...path, "ttl"]);
  if (h.timeout !== undefined) out.timeout = ctx.duration(h.timeout, [...path, "timeout"]);
  else if (out.interval !== undefined) {
    out.timeout = out.interval;
    ctx.notes.add(out, "timeout", "ContainerPilot's default: the interval");
  }
  if (h.logging !== undefined) ctx.problem([...path, "logging"], "no equivalent: statepilot logs a failing check's output and sends it to Consul; remove it");
  if (out.interval !== undefined) ctx.notes.add(out, "interval", "seconds in ContainerPilot; durations are strings here");
  return out;
}

const JOB_KEYS = ["name", "exec", "port", "interfaces", "tags", "initial_status", "consul", "health", "when", "timeout", "restarts", "stopTimeout", "logging"];

function job(j: Tree, i: number, ctx: Ctx, jobNames: Set<string>, origin: string | undefined): Tree {
  const path: Path = ["jobs", i];
  ctx.onlyKeys(j, JOB_KEYS, path, "a job");
  const out: Tree = { name: j.name };
  if (origin) ctx.notes.add(out, ELEMENT, origin);
  if (j.exec !== undefined) out.exec = exec(j.exec, out, "exec", ctx);
  const advertised = j.port !== undefined;
  if (advertised) {
    const port = typeof j.port === "string" && /^\d+$/.test(j.port) ? Number(j.port) : j.port;
    const service: Tree = { name: j.name, port };
    const moved = ["port"];
    if (j.interfaces !== undefined) {
      service.interfaces = strings(j.interfaces);
      moved.push("interfaces");
    }
    if (j.tags !== undefined) {
      service.tags = strings(j.tags);
      moved.push("tags");
    }
    if (j.initial_status !== undefined) {
      service.initialStatus = j.initial_status;
      moved.push("initial_status");
    }
    if (j.consul !== undefined) {
      const c = ctx.object(j.consul, [...path, "consul"]);
      if (c) {
        ctx.onlyKeys(c, ["enableTagOverride", "deregisterCriticalServiceAfter"], [...path, "consul"], "a job's consul block");
        if (c.enableTagOverride !== undefined) service.enableTagOverride = c.enableTagOverride;
        if (c.deregisterCriticalServiceAfter !== undefined) service.deregisterCriticalServiceAfter = ctx.duration(c.deregisterCriticalServiceAfter, [...path, "consul", "deregisterCriticalServiceAfter"]);
        moved.push("consul.*");
      }
    }
    out.service = service;
    ctx.notes.add(
      out,
      "service",
      `was ${moved.join(", ")} of the job: registered in Consul under the job's name${j.initial_status === undefined ? "; ContainerPilot registered only after the first passing check, statepilot registers at once as critical (initialStatus)" : ""}`,
    );
  } else {
    for (const k of ["interfaces", "tags", "initial_status", "consul"]) {
      if (j[k] !== undefined) ctx.problem([...path, k], "applies only to a job with a port (ContainerPilot ignored it); remove it, or add port to register the job in Consul");
    }
  }
  if (j.health !== undefined) out.health = health(j.health, [...path, "health"], ctx);
  else if (advertised) ctx.problem([...path, "health"], "a job with a port needs a health check, in ContainerPilot too");
  if (j.when !== undefined) out.when = when(j.when, [...path, "when"], ctx, jobNames);
  const w = isObject(out.when) ? out.when : undefined;
  if (j.timeout !== undefined) out.timeout = ctx.duration(j.timeout, [...path, "timeout"]);
  else if (w?.interval !== undefined) {
    out.timeout = w.interval;
    ctx.notes.add(out, "timeout", "ContainerPilot's default for a periodic job: its interval");
  }
  if (j.restarts !== undefined) {
    const r = restarts(j.restarts, [...path, "restarts"], ctx);
    if (w?.interval !== undefined) {
      if (r === "never") {
        delete out.when;
        ctx.notes.add(out, ELEMENT, 'periodic with restarts "never": runs once, at start-up, as in ContainerPilot');
      } else if (r === "unlimited") ctx.notes.add(out, ELEMENT, 'restarts "unlimited" of a periodic job: it runs on every tick');
      else ctx.problem([...path, "restarts"], "no equivalent: a periodic job runs on every tick here, not a number of times; remove restarts (or use \"never\" to run it once)");
    } else if (r !== undefined) out.restarts = r;
    if (r !== undefined && w?.interval === undefined) ctx.notes.add(out, "restarts", "restarts now wait with exponential backoff (ContainerPilot restarted at once)");
  }
  if (j.stopTimeout !== undefined) {
    out.stopTimeout = ctx.duration(j.stopTimeout, [...path, "stopTimeout"]);
    ctx.notes.add(out, "stopTimeout", "SIGKILL this long after the stop signal (ContainerPilot waited this long for the jobs of this job's stopping event)");
  }
  if (j.logging !== undefined) {
    const l = ctx.object(j.logging, [...path, "logging"]);
    if (l) {
      ctx.onlyKeys(l, ["raw"], [...path, "logging"], "a job's logging");
      if (l.raw !== undefined) {
        out.output = l.raw === true ? "raw" : "wrapped";
        ctx.notes.add(out, "output", `was logging.raw: ${show(l.raw)}`);
      }
    }
  }
  return out;
}

/**
 * A job that only runs a command when another job is stopping (or stopped) becomes that job's
 * hook: statepilot stops dependent jobs first, so as a job it would never run at shutdown.
 */
function hooksFromStopJobs(jobs: Tree[], ctx: Ctx): Tree[] {
  const sources = new Set(jobs.map((j) => (isObject(j.when) ? j.when.source : undefined)));
  const byName = new Map(jobs.map((j) => [j.name, j]));
  return jobs.filter((j) => {
    const w = isObject(j.when) ? j.when : undefined;
    const kind = w?.once ?? w?.each;
    if (!w || (kind !== "stopping" && kind !== "stopped") || w.timeout !== undefined) return true;
    const target = byName.get(w.source);
    if (!target || target === j || sources.has(j.name) || j.exec === undefined) return true;
    if (Object.keys(j).some((k) => !["name", "exec", "when", "timeout"].includes(k))) return true;
    if (!isObject(target.hooks)) target.hooks = {};
    const hooks = target.hooks as Tree;
    if (hooks[kind] !== undefined) return true;
    const hook: Tree = { exec: j.exec };
    if (j.timeout !== undefined) hook.timeout = j.timeout;
    hooks[kind] = hook;
    ctx.notes.add(
      hooks,
      kind,
      `was job ${show(j.name)} (when ${show(w.source)} ${kind}): a hook runs ${kind === "stopping" ? "before the job is signalled" : "after it exited"}, at shutdown too${j.timeout === undefined ? "; killed after 10s" : ""}`,
    );
    return false;
  });
}

function telemetry(v: unknown, ctx: Ctx): Tree | undefined {
  const t = ctx.object(v, ["telemetry"]);
  if (!t) return undefined;
  ctx.onlyKeys(t, ["port", "interfaces", "tags", "metrics", "sensors"], ["telemetry"], "telemetry");
  const out: Tree = {};
  if (t.port !== undefined) out.port = t.port;
  if (t.interfaces !== undefined) out.interfaces = strings(t.interfaces);
  if (t.tags !== undefined) out.tags = strings(t.tags);
  out.serviceName = "containerpilot";
  ctx.notes.add(out, "serviceName", 'ContainerPilot registered its telemetry as service "containerpilot"; kept, so Prometheus finds it as before');
  const bind = ctx.opts.telemetryBind?.(Array.isArray(out.interfaces) ? (out.interfaces as string[]) : typeof out.interfaces === "string" ? [out.interfaces] : ["eth0", "inet"]);
  if (bind !== undefined) out.bind = bind;
  else ctx.notes.add(out, ELEMENT, "ContainerPilot listened on the address of `interfaces` only; `statepilot run` of the ContainerPilot file does too. Here the endpoint listens on `bind` (default 0.0.0.0): set it to that address to keep it so");
  const metrics: Tree[] = [];
  const sensors: Tree[] = [];
  const metricOf = (m: Tree, path: Path, extra: string[]): Tree => {
    ctx.onlyKeys(m, ["namespace", "subsystem", "name", "help", "type", ...extra], path, path[1] === "sensors" ? "a sensor" : "a metric");
    const name = [m.namespace, m.subsystem, m.name].filter((x) => typeof x === "string" && x !== "").join("_");
    const metric: Tree = { name, help: m.help, type: m.type };
    if (m.namespace !== undefined || m.subsystem !== undefined) ctx.notes.add(metric, "name", "namespace_subsystem_name, as ContainerPilot named it in Prometheus and in putmetric");
    return metric;
  };
  if (t.metrics !== undefined) {
    if (!Array.isArray(t.metrics)) ctx.problem(["telemetry", "metrics"], "expected an array", t.metrics);
    else t.metrics.forEach((m, i) => {
      const o = ctx.object(m, ["telemetry", "metrics", i]);
      if (o) metrics.push(metricOf(o, ["telemetry", "metrics", i], []));
    });
  }
  if (t.sensors !== undefined) {
    if (!Array.isArray(t.sensors)) ctx.problem(["telemetry", "sensors"], "expected an array", t.sensors);
    else t.sensors.forEach((s, i) => {
      const path: Path = ["telemetry", "sensors", i];
      const o = ctx.object(s, path);
      if (!o) return;
      const metric = metricOf(o, path, ["poll", "check", "timeout"]);
      metrics.push(metric);
      ctx.notes.add(metric, ELEMENT, `declared by telemetry.sensors[${i}]`);
      const sensor: Tree = { metric: metric.name, exec: exec(o.check, {}, "exec", ctx) };
      if (o.check === undefined) ctx.problem([...path, "check"], "required: the command whose stdout is the value");
      if (o.poll !== undefined) sensor.interval = ctx.duration(o.poll, [...path, "poll"]);
      if (o.timeout !== undefined) sensor.timeout = ctx.duration(o.timeout, [...path, "timeout"]);
      ctx.notes.add(sensor, ELEMENT, `was telemetry.sensors[${i}]: check → exec, poll → interval`);
      sensors.push(sensor);
    });
  }
  if (metrics.length) out.metrics = metrics;
  if (sensors.length) out.sensors = sensors;
  return out;
}

function watch(v: unknown, i: number, ctx: Ctx, origin: string | undefined): Tree | undefined {
  const path: Path = ["watches", i];
  const w = ctx.object(v, path);
  if (!w) return undefined;
  ctx.onlyKeys(w, ["name", "interval", "tag", "dc"], path, "a watch");
  const out: Tree = { name: w.name };
  if (origin) ctx.notes.add(out, ELEMENT, origin);
  if (w.tag !== undefined) out.tag = w.tag;
  if (w.dc !== undefined) {
    out.datacenter = w.dc;
    ctx.notes.add(out, "datacenter", "was dc");
  }
  if (w.interval === undefined) ctx.problem([...path, "interval"], "required in ContainerPilot (seconds between polls)");
  else {
    const d = ctx.duration(w.interval, [...path, "interval"]);
    if (d !== undefined) {
      out.wait = d;
      ctx.notes.add(out, "wait", `was interval ${show(w.interval)}: a blocking query sees a change at once and is renewed at least this often (ContainerPilot polled every interval)`);
    }
  }
  return out;
}

/** Keys only statepilot has: such a file is native, and a ContainerPilot key in it is told its new place. */
function hasNativeKeys(tree: Tree): boolean {
  if (["node", "extends", "mysql", "reloadOnSighup", "templates"].some((k) => k in tree)) return true;
  const items = (v: unknown) => (Array.isArray(v) ? v.filter(isObject) : []);
  const jobKeys = ["service", "main", "hooks", "shell", "env", "cwd", "backoff", "stopSignal", "forwardSignals", "output", "maintenance"];
  if (items(tree.jobs).some((j) => jobKeys.some((k) => k in j))) return true;
  if (items(tree.watches).some((w) => ["wait", "service", "datacenter"].some((k) => k in w))) return true;
  return isObject(tree.telemetry) && ["bind", "register", "serviceName", "auth"].some((k) => k in (tree.telemetry as Tree));
}

/** Does this parsed tree use ContainerPilot's format rather than statepilot's? */
export function isContainerPilot(tree: Tree): boolean {
  if (hasNativeKeys(tree)) return false;
  if (isV2(tree)) return true;
  if (typeof tree.consul === "string" || typeof tree.stopTimeout === "number") return true;
  if (isObject(tree.consul) && ("scheme" in tree.consul || "tls" in tree.consul)) return true;
  if (isObject(tree.logging) && ("output" in tree.logging || (typeof tree.logging.level === "string" && tree.logging.level === tree.logging.level.toUpperCase()))) return true;
  const items = (v: unknown) => (Array.isArray(v) ? v.filter(isObject) : []);
  for (const j of items(tree.jobs)) {
    if (["port", "interfaces", "tags", "initial_status", "consul", "logging"].some((k) => k in j)) return true;
    if (isObject(j.health) && (typeof j.health.interval === "number" || typeof j.health.ttl === "number")) return true;
  }
  if (items(tree.watches).some((w) => "interval" in w || "dc" in w)) return true;
  if (isObject(tree.telemetry) && items(tree.telemetry.metrics).some((m) => "namespace" in m || "subsystem" in m)) return true;
  if (isObject(tree.telemetry) && items(tree.telemetry.sensors).some((s) => "check" in s || "poll" in s)) return true;
  return false;
}

/** Converts a parsed (already rendered) ContainerPilot config. */
export function convertContainerPilot(input: Tree, opts: ConvertOptions): Conversion {
  const ctx = new Ctx(opts);
  const v2 = isV2(input);
  const { tree, origins } = v2 ? fromV2(input, ctx) : { tree: input, origins: new WeakMap<object, string>() };
  ctx.onlyKeys(tree, ["consul", "logging", "stopTimeout", "jobs", "watches", "telemetry", "control"], [], "the top level");
  const out: Tree = {};
  if (tree.consul !== undefined) out.consul = consul(tree.consul, ctx);
  const log = tree.logging !== undefined ? logging(tree.logging, ctx) : {};
  if (log) {
    log.childOutput = "wrapped";
    ctx.notes.add(log, "childOutput", "ContainerPilot wrapped each output line of a job in a log line unless the job had logging.raw");
    out.logging = log;
  }
  if (tree.stopTimeout !== undefined) {
    out.stopTimeout = ctx.duration(tree.stopTimeout, ["stopTimeout"]);
    ctx.notes.add(out, "stopTimeout", "seconds in ContainerPilot: there, a wait after every job stopped; here, the deadline for the whole shutdown");
  }
  if (tree.control !== undefined) {
    const c = ctx.object(tree.control, ["control"]);
    if (c) {
      ctx.onlyKeys(c, ["socket"], ["control"], "control");
      out.control = { ...c };
    }
  }
  let rawJobs: unknown[] = [];
  if (Array.isArray(tree.jobs)) rawJobs = tree.jobs;
  else if (tree.jobs !== undefined) ctx.problem(["jobs"], "expected an array", tree.jobs);
  const jobNames = new Set(rawJobs.filter(isObject).map((j) => j.name).filter((n): n is string => typeof n === "string"));
  const jobs = rawJobs.flatMap((j, i) => {
    const o = ctx.object(j, ["jobs", i]);
    return o ? [job(o, i, ctx, jobNames, origins.get(o))] : [];
  });
  if (jobs.length) out.jobs = hooksFromStopJobs(jobs, ctx);
  if (tree.watches !== undefined) {
    if (!Array.isArray(tree.watches)) ctx.problem(["watches"], "expected an array", tree.watches);
    else out.watches = tree.watches.flatMap((w, i) => {
      const o = watch(w, i, ctx, isObject(w) ? origins.get(w) : undefined);
      return o ? [o] : [];
    });
  }
  if (tree.telemetry !== undefined) out.telemetry = telemetry(tree.telemetry, ctx);
  return { config: out, notes: ctx.notes, problems: ctx.problems, version: v2 ? 2 : 3 };
}
