import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import JSON5 from "json5";
import { z } from "zod";
import { Config, type ConfigInput } from "./schema.js";
import { formatPath, interpolateTree, InterpolationError } from "./interpolate.js";
import { maskValue } from "./secrets.js";

export interface ConfigProblem {
  /** e.g. `jobs[2].health.interval` */
  path: string;
  message: string;
  /** The offending value, masked when the key names a secret; absent when there was none. */
  value?: string;
}

/** One line per problem: `path: message (got value)`. */
export function formatProblem(p: ConfigProblem): string {
  return `${p.path}: ${p.message}${p.value !== undefined ? ` (got ${p.value})` : ""}`;
}

/** Invalid configuration: every problem names its path. The CLI exits 2 on it. */
export class ConfigError extends Error {
  readonly exitCode = 2;
  constructor(
    readonly source: string,
    readonly problems: ConfigProblem[],
  ) {
    super(`invalid configuration (${source}):\n${problems.map((p) => `  ${formatProblem(p)}`).join("\n")}`);
    this.name = "ConfigError";
  }
}

function valueAt(tree: unknown, path: ReadonlyArray<PropertyKey>): { found: boolean; value?: unknown } {
  let cur: unknown = tree;
  for (const p of path) {
    if (cur === null || typeof cur !== "object") return { found: false };
    const rec = cur as Record<PropertyKey, unknown>;
    if (!(p in rec)) return { found: false };
    cur = rec[p];
  }
  return { found: true, value: cur };
}

function describeValue(path: ReadonlyArray<PropertyKey>, value: unknown): string {
  const key = [...path].reverse().find((p) => typeof p === "string");
  const masked = maskValue(typeof key === "string" ? key : "", value);
  const text = JSON.stringify(masked) ?? String(masked);
  return text.length > 120 ? `${text.slice(0, 117)}...` : text;
}

export function problemsFromZod(error: z.ZodError, input: unknown): ConfigProblem[] {
  return error.issues.flatMap((issue): ConfigProblem[] => {
    if (issue.code === "unrecognized_keys") {
      return issue.keys.map((k) => ({ path: formatPath([...issue.path, k]), message: "unknown key" }));
    }
    const { found, value } = valueAt(input, issue.path);
    const message = issue.code === "invalid_type" && !found ? "required" : issue.message;
    const problem: ConfigProblem = { path: formatPath(issue.path), message };
    if (found && (value === null || typeof value !== "object")) problem.value = describeValue(issue.path, value);
    return [problem];
  });
}

/** Validates an already-parsed config tree (after interpolation). */
export function validateConfig(tree: unknown, source = "config"): Config {
  const result = Config.safeParse(tree);
  if (!result.success) throw new ConfigError(source, problemsFromZod(result.error, tree));
  return result.data;
}

/** Parses JSON5 text, interpolates the environment, validates. */
export function parseConfigText(text: string, env: NodeJS.ProcessEnv, source = "config"): Config {
  return validateConfig(parseConfigTree(text, env, source), source);
}

/** JSON5 text → interpolated tree, not yet validated. */
function parseConfigTree(text: string, env: NodeJS.ProcessEnv, source: string): Record<string, unknown> {
  let raw: unknown;
  try {
    raw = JSON5.parse(text);
  } catch (err) {
    const e = err as Error & { lineNumber?: number; columnNumber?: number };
    const where = e.lineNumber ? `line ${e.lineNumber}, column ${e.columnNumber}` : "(root)";
    throw new ConfigError(source, [{ path: where, message: `not valid JSON5: ${e.message.replace(/^JSON5: /, "")}` }]);
  }
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) {
    throw new ConfigError(source, [{ path: "(root)", message: "expected an object", value: describeValue([], raw) }]);
  }
  let tree: unknown;
  try {
    tree = interpolateTree(raw, env);
  } catch (err) {
    if (err instanceof InterpolationError) throw new ConfigError(source, [{ path: err.path, message: err.message.slice(err.path.length + 2) }]);
    throw err;
  }
  return tree as Record<string, unknown>;
}

const isPlainObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === "object" && !Array.isArray(v);

/**
 * Objects merge key by key; arrays and scalars of the overlay replace the base's, and so does an
 * object of another `type` (a local store replaced by an S3 store keeps none of its keys).
 */
export function mergeConfigTrees(base: Record<string, unknown>, overlay: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(overlay)) {
    const b = out[k];
    const sameKind = isPlainObject(b) && isPlainObject(v) && !("type" in b && "type" in v && b.type !== v.type);
    out[k] = sameKind ? mergeConfigTrees(b as Record<string, unknown>, v as Record<string, unknown>) : v;
  }
  return out;
}

function readTree(path: string, env: NodeJS.ProcessEnv, chain: string[]): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? "error";
    const where = chain.length ? `extends (in ${chain[chain.length - 1]})` : "(file)";
    throw new ConfigError(chain[0] ?? path, [{ path: where, message: `cannot read the config file: ${code}`, value: JSON.stringify(path) }]);
  }
  const tree = parseConfigTree(text, env, path);
  const parent = tree.extends;
  if (parent === undefined) return tree;
  if (typeof parent !== "string" || parent === "") throw new ConfigError(path, [{ path: "extends", message: "expected the path of a config file", value: describeValue(["extends"], parent) }]);
  const basePath = resolve(dirname(path), parent);
  if (chain.includes(basePath) || basePath === resolve(path)) throw new ConfigError(path, [{ path: "extends", message: `extends itself (${[...chain, resolve(path), basePath].join(" -> ")})` }]);
  if (chain.length >= 5) throw new ConfigError(path, [{ path: "extends", message: "more than 5 levels of extends" }]);
  const { extends: _drop, ...own } = tree;
  void _drop;
  return mergeConfigTrees(readTree(basePath, env, [...chain, resolve(path)]), own);
}

/** Reads a config file, following `extends` (the base is merged under this file), and validates. */
export function loadConfigFile(path: string, env: NodeJS.ProcessEnv = process.env): Config {
  return validateConfig(readTree(path, env, []), path);
}

/** The config as written, with defaults filled in: what `config render` prints (mask it first). */
export function encodeConfig(config: Config): ConfigInput {
  return z.encode(Config, config);
}
