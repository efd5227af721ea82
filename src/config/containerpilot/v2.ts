import type { Path, Tree } from "./notes.js";

/**
 * ContainerPilot v2 (`services`, `backends`, `coprocesses`, `tasks`, `preStart`, telemetry
 * `sensors`) → the v3 shape, which convert.ts then translates. The app itself was given after the
 * config on v2's command line; with statepilot it goes after `--` (`statepilot run --config F -- app`).
 */
interface V2Ctx {
  problem(path: Path, message: string, value?: unknown): void;
}

const V2_KEYS = ["services", "backends", "coprocesses", "tasks", "preStart", "preStop", "postStop", "etcd", "onStart"];

export const isV2 = (tree: Tree): boolean => V2_KEYS.some((k) => k in tree);

const isObject = (v: unknown): v is Tree => v !== null && typeof v === "object" && !Array.isArray(v);

function list(tree: Tree, key: string, ctx: V2Ctx): Tree[] {
  const v = tree[key];
  if (v === undefined) return [];
  if (!Array.isArray(v)) {
    ctx.problem([key], "expected an array", v);
    return [];
  }
  return v.filter((x, i) => {
    if (!isObject(x)) ctx.problem([key, i], "expected an object", x);
    return isObject(x);
  }) as Tree[];
}

function only(o: Tree, known: string[], path: Path, ctx: V2Ctx): void {
  for (const k of Object.keys(o)) if (!known.includes(k)) ctx.problem([...path, k], `unknown ContainerPilot v2 key (accepted: ${known.join(", ")})`);
}

export function fromV2(v2: Tree, ctx: V2Ctx): { tree: Tree; origins: WeakMap<object, string> } {
  const origins = new WeakMap<object, string>();
  const jobs: Tree[] = [];
  const watches: Tree[] = [];
  const tree: Tree = {};
  only(v2, ["consul", "logging", "stopTimeout", "control", "telemetry", ...V2_KEYS], [], ctx);
  for (const k of ["consul", "logging", "stopTimeout", "control"]) if (v2[k] !== undefined) tree[k] = v2[k];
  if (v2.etcd !== undefined) ctx.problem(["etcd"], "statepilot discovers through Consul only: replace etcd with consul");
  if (v2.onStart !== undefined) ctx.problem(["onStart"], "ContainerPilot v1's onStart: rename it preStart (a job run at start-up)");
  if (typeof v2.stopTimeout === "number" && v2.stopTimeout < 0) ctx.problem(["stopTimeout"], "-1 (kill at once) has no equivalent: give a duration such as 1 (second)");
  if (v2.preStart !== undefined) {
    const j: Tree = { name: "preStart", exec: v2.preStart };
    origins.set(j, "was preStart (v2): a job run at start-up. v2 started the app after it; with the app after --, give the app as a job with when { source: \"preStart\", once: \"exitSuccess\" } to keep that order");
    jobs.push(j);
  }
  for (const k of ["preStop", "postStop"]) {
    if (v2[k] !== undefined) ctx.problem([k], `no equivalent for an app given after --: make the app a job (exec, main: true) and use its hooks.${k === "preStop" ? "stopping" : "stopped"}`);
  }
  list(v2, "services", ctx).forEach((s, i) => {
    only(s, ["name", "port", "health", "poll", "ttl", "timeout", "interfaces", "tags", "enableTagOverride", "deregisterCriticalServiceAfter", "initial_status", "consul"], ["services", i], ctx);
    const j: Tree = { name: s.name, port: s.port };
    for (const k of ["interfaces", "tags", "initial_status"]) if (s[k] !== undefined) j[k] = s[k];
    const consul: Tree = isObject(s.consul) ? { ...s.consul } : {};
    for (const k of ["enableTagOverride", "deregisterCriticalServiceAfter"]) if (s[k] !== undefined) consul[k] = s[k];
    if (Object.keys(consul).length) j.consul = consul;
    const health: Tree = { exec: s.health, interval: s.poll, ttl: s.ttl };
    if (s.timeout !== undefined) health.timeout = s.timeout;
    j.health = health;
    origins.set(j, `was services[${i}] (v2): health → health.exec, poll → health.interval, ttl → health.ttl; the service's process is the app given after --`);
    jobs.push(j);
  });
  list(v2, "coprocesses", ctx).forEach((c, i) => {
    only(c, ["name", "command", "restarts"], ["coprocesses", i], ctx);
    const j: Tree = { name: c.name ?? `coprocess-${i}`, exec: c.command };
    if (c.restarts !== undefined) j.restarts = c.restarts;
    origins.set(j, `was coprocesses[${i}] (v2): command → exec`);
    jobs.push(j);
  });
  list(v2, "tasks", ctx).forEach((t, i) => {
    only(t, ["name", "command", "frequency", "timeout"], ["tasks", i], ctx);
    const j: Tree = { name: t.name ?? `task-${i}`, exec: t.command, when: { interval: t.frequency } };
    if (t.timeout !== undefined) j.timeout = t.timeout;
    origins.set(j, `was tasks[${i}] (v2): command → exec, frequency → when.interval`);
    jobs.push(j);
  });
  list(v2, "backends", ctx).forEach((b, i) => {
    only(b, ["name", "poll", "onChange", "tag", "timeout", "dc"], ["backends", i], ctx);
    const w: Tree = { name: b.name, interval: b.poll };
    if (b.tag !== undefined) w.tag = b.tag;
    if (b.dc !== undefined) w.dc = b.dc;
    origins.set(w, `was backends[${i}] (v2): poll → interval, then as a v3 watch`);
    watches.push(w);
    if (b.onChange !== undefined) {
      const j: Tree = { name: `onChange-${String(b.name)}`, exec: b.onChange, when: { source: `watch.${String(b.name)}`, each: "changed" } };
      if (b.timeout !== undefined) j.timeout = b.timeout;
      origins.set(j, `was backends[${i}].onChange (v2): a job run on each change of the watch`);
      jobs.push(j);
    }
  });
  if (jobs.length) tree.jobs = jobs;
  if (watches.length) tree.watches = watches;
  if (v2.telemetry !== undefined) tree.telemetry = v2.telemetry;
  return { tree, origins };
}
