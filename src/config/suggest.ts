import type { z } from "zod";

/**
 * Help for an unknown key: the nearest valid key (edit distance), or, for a ContainerPilot key
 * used in a statepilot config, where it went.
 */

export function editDistance(a: string, b: string): number {
  const prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let diag = prev[0]!;
    prev[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const up = prev[j]!;
      prev[j] = Math.min(up + 1, prev[j - 1]! + 1, diag + (a[i - 1] === b[j - 1] ? 0 : 1));
      diag = up;
    }
  }
  return prev[b.length]!;
}

/** The candidate closest to key, if close enough to be a typo (case differences are free). */
export function nearestKey(key: string, candidates: readonly string[]): string | undefined {
  if (key.length > 64) return undefined;
  const limit = Math.max(1, Math.floor(key.length / 3));
  let best: { c: string; d: number } | undefined;
  for (const c of candidates) {
    const d = c.toLowerCase() === key.toLowerCase() ? 0 : editDistance(key.toLowerCase(), c.toLowerCase());
    if (d <= limit && (!best || d < best.d)) best = { c, d };
  }
  return best?.c;
}

type Where = "top" | "job" | "health" | "when" | "watch" | "telemetry" | "metric" | "sensor" | "logging" | "consul" | "service" | "other";

function whereOf(path: ReadonlyArray<PropertyKey>): Where {
  const names = path.filter((p): p is string => typeof p === "string");
  const last = names[names.length - 1];
  if (path.length === 0) return "top";
  if (names.length === 1 && last === "jobs" && typeof path[path.length - 1] === "number") return "job";
  if (names.length === 1 && last === "watches") return "watch";
  if (names.length === 1 && (last === "telemetry" || last === "logging" || last === "consul")) return last;
  if (last === "health" || last === "when" || last === "service") return last;
  if (names.length === 2 && names[0] === "telemetry" && last === "metrics") return "metric";
  if (names.length === 2 && names[0] === "telemetry" && last === "sensors") return "sensor";
  return "other";
}

const HINTS: Partial<Record<Where, Record<string, string>>> = {
  top: {
    services: "ContainerPilot v2's services are jobs with `service` and `health` here (`statepilot convert FILE` translates the file)",
    backends: "ContainerPilot v2's backends are `watches` here, and onChange a job with `when: { source: \"watch.<name>\", each: \"changed\" }`",
    coprocesses: "ContainerPilot v2's coprocesses are `jobs` here (with `restarts`)",
    tasks: "ContainerPilot v2's tasks are `jobs` with `when: { interval }` here",
    preStart: "ContainerPilot v2's preStart is a job here; the app waits for it with `when: { source: \"preStart\", once: \"exitSuccess\" }`",
    preStop: "ContainerPilot v2's preStop is `hooks.stopping` of the app's job here",
    postStop: "ContainerPilot v2's postStop is `hooks.stopped` of the app's job here",
    etcd: "statepilot discovers through Consul only",
  },
  job: {
    port: "ContainerPilot's job port is `service.port` here (with `service.name`)",
    interfaces: "ContainerPilot's job interfaces are `service.interfaces` here",
    tags: "ContainerPilot's job tags are `service.tags` here",
    initial_status: "ContainerPilot's initial_status is `service.initialStatus` here",
    consul: "ContainerPilot's job consul block is `service.enableTagOverride` / `service.deregisterCriticalServiceAfter` here",
    logging: 'ContainerPilot\'s job logging.raw is `output: "raw" | "wrapped"` here',
    command: "ContainerPilot v2's command is `exec` here",
    frequency: "ContainerPilot v2's task frequency is `when: { interval }` here",
  },
  health: {
    poll: "ContainerPilot's poll is `interval` here",
    logging: "statepilot logs a failing check's output and sends it to Consul; remove it",
  },
  watch: {
    interval: "watches use Consul blocking queries here, so a change is seen at once; `wait` is how long one query waits (ContainerPilot's poll interval has no other equivalent)",
    poll: "ContainerPilot's poll: watches use Consul blocking queries here; `wait` is how long one query waits",
    dc: "ContainerPilot's dc is `datacenter` here",
    onChange: 'ContainerPilot v2\'s onChange is a job here with `when: { source: "watch.<name>", each: "changed" }`',
  },
  metric: {
    namespace: "ContainerPilot's namespace is part of `name` here (namespace_subsystem_name)",
    subsystem: "ContainerPilot's subsystem is part of `name` here (namespace_subsystem_name)",
  },
  sensor: {
    poll: "ContainerPilot's poll is `interval` here",
    check: "ContainerPilot's check is `exec` here",
    name: "declare the metric in telemetry.metrics; `metric` names it here",
    help: "declare the metric in telemetry.metrics; `metric` names it here",
    type: "declare the metric in telemetry.metrics; `metric` names it here",
  },
  logging: {
    output: "statepilot always logs to stdout; remove it",
    raw: 'ContainerPilot\'s logging.raw is `output: "raw" | "wrapped"` of each job here',
  },
  consul: {
    scheme: "ContainerPilot's scheme is part of `address` here (https://host:port)",
    tls: "ContainerPilot's tls block is `caFile`, `certFile`, `keyFile` here (CONSUL_TLS_SERVER_NAME, CONSUL_HTTP_SSL_VERIFY for the rest)",
  },
};

/** Where a ContainerPilot key went, for an unknown key at this path of a statepilot config. */
export function containerPilotHint(parent: ReadonlyArray<PropertyKey>, key: string): string | undefined {
  const hint = HINTS[whereOf(parent)]?.[key];
  if (hint) return hint;
  if (key === "poll") return "ContainerPilot's poll is `interval` here";
  return undefined;
}

interface Def {
  type: string;
  shape?: Record<string, z.ZodType>;
  element?: z.ZodType;
  innerType?: z.ZodType;
  in?: z.ZodType;
  options?: z.ZodType[];
  valueType?: z.ZodType;
}

const defOf = (s: z.ZodType): Def => (s as unknown as { _zod: { def: Def } })._zod.def;

function unwrap(s: z.ZodType): z.ZodType {
  for (let i = 0; i < 20; i++) {
    const d = defOf(s);
    if (d.innerType) s = d.innerType;
    else if (d.type === "pipe" && d.in) s = d.in;
    else return s;
  }
  return s;
}

/** Every schema an object at this path could be (a union contributes each of its options). */
function schemasAt(schema: z.ZodType, path: ReadonlyArray<PropertyKey>): z.ZodType[] {
  let cur = [unwrap(schema)];
  for (const p of path) {
    const next: z.ZodType[] = [];
    const visit = (s: z.ZodType) => {
      const d = defOf(s);
      if (d.type === "union" && d.options) for (const o of d.options) visit(unwrap(o));
      else if (d.type === "object" && typeof p === "string" && d.shape?.[p]) next.push(unwrap(d.shape[p]));
      else if (d.type === "array" && typeof p === "number" && d.element) next.push(unwrap(d.element));
      else if (d.type === "record" && d.valueType) next.push(unwrap(d.valueType));
    };
    cur.forEach(visit);
    cur = next;
  }
  return cur;
}

const keyCache = new WeakMap<z.ZodType, Map<string, string[]>>();

/** The keys an object at this path of the schema accepts. */
export function keysAt(schema: z.ZodType, path: ReadonlyArray<PropertyKey>): string[] {
  let cache = keyCache.get(schema);
  if (!cache) {
    cache = new Map();
    keyCache.set(schema, cache);
  }
  const id = path.map((p) => (typeof p === "number" ? "#" : String(p))).join("\u0000");
  const hit = cache.get(id);
  if (hit) return hit;
  const found = collectKeys(schema, path);
  cache.set(id, found);
  return found;
}

function collectKeys(schema: z.ZodType, path: ReadonlyArray<PropertyKey>): string[] {
  const keys = new Set<string>();
  const collect = (s: z.ZodType) => {
    const d = defOf(s);
    if (d.type === "union" && d.options) for (const o of d.options) collect(unwrap(o));
    else if (d.type === "object" && d.shape) for (const k of Object.keys(d.shape)) keys.add(k);
  };
  schemasAt(schema, path).forEach(collect);
  return [...keys];
}

/** The message for an unknown key: the ContainerPilot hint, else the nearest valid key. */
export function unknownKeyMessage(key: string, parent: ReadonlyArray<PropertyKey>, valid: readonly string[]): string {
  const hint = containerPilotHint(parent, key);
  if (hint) return `unknown key \`${key}\`: ${hint}`;
  const near = nearestKey(key, valid);
  if (near) return `unknown key \`${key}\`: did you mean \`${near}\`?`;
  return valid.length ? `unknown key \`${key}\` (valid here: ${valid.join(", ")})` : `unknown key \`${key}\``;
}
