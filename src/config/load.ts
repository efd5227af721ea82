import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import { dirname, resolve } from "node:path";
import JSON5 from "json5";
import { z } from "zod";
import { Config, type ConfigInput } from "./schema.js";
import { formatPath, interpolateTree, InterpolationError } from "./interpolate.js";
import { maskValue } from "./secrets.js";
import { keysAt, unknownKeyMessage } from "./suggest.js";
import { consulFromEnv, convertContainerPilot, looksLikeContainerPilot, renderAndParse, telemetryBindNow } from "./containerpilot/index.js";

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

/** The message lists this many problems at most (a 40,000-entry array of bad jobs stays readable). */
const MAX_LISTED_PROBLEMS = 50;

/** Invalid configuration: every problem names its path. The CLI exits 2 on it. */
export class ConfigError extends Error {
  readonly exitCode = 2;
  constructor(
    readonly source: string,
    readonly problems: ConfigProblem[],
    options?: ErrorOptions,
  ) {
    const listed = problems.slice(0, MAX_LISTED_PROBLEMS).map((p) => `  ${formatProblem(p)}`);
    if (problems.length > MAX_LISTED_PROBLEMS) listed.push(`  ... and ${problems.length - MAX_LISTED_PROBLEMS} more`);
    super(`invalid configuration (${source}):\n${listed.join("\n")}`, options);
    this.name = "ConfigError";
  }
}

/** Checked before a config is parsed: bigger files are refused, not read (a 50 MB array exhausted the heap). */
export const MAX_CONFIG_BYTES = 1024 * 1024;
/** Objects and arrays nested deeper than this are refused before parsing (5,000 levels overflowed the stack). */
export const MAX_CONFIG_DEPTH = 32;

const tooLarge = (bytes: number | undefined) => `${bytes ?? `more than ${MAX_CONFIG_BYTES}`} bytes; a config file may be at most 1 MiB (${MAX_CONFIG_BYTES} bytes)`;
const tooDeep = `objects and arrays nest more than ${MAX_CONFIG_DEPTH} levels deep`;

/** Where JSON5 text first opens an object or array deeper than MAX_CONFIG_DEPTH (strings and comments skipped). */
function nestingTooDeep(text: string): string | undefined {
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '"' || c === "'") {
      for (i++; i < text.length && text[i] !== c; i++) if (text[i] === "\\") i++;
    } else if (c === "/" && text[i + 1] === "/") {
      while (i < text.length && text[i] !== "\n") i++;
    } else if (c === "/" && text[i + 1] === "*") {
      const end = text.indexOf("*/", i + 2);
      i = end < 0 ? text.length : end + 1;
    } else if (c === "{" || c === "[") {
      if (++depth > MAX_CONFIG_DEPTH) {
        const before = text.slice(0, i);
        return `line ${before.split("\n").length}, column ${i - before.lastIndexOf("\n")}`;
      }
    } else if (c === "}" || c === "]") {
      depth--;
    }
  }
  return undefined;
}

/** The path of the first object or array of a parsed tree deeper than MAX_CONFIG_DEPTH. */
function deepestPath(v: unknown, path: PropertyKey[] = []): PropertyKey[] | undefined {
  if (v === null || typeof v !== "object") return undefined;
  if (path.length >= MAX_CONFIG_DEPTH) return path;
  for (const [k, x] of Object.entries(v)) {
    const hit = deepestPath(x, [...path, Array.isArray(v) ? Number(k) : k]);
    if (hit) return hit;
  }
  return undefined;
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
      const valid = keysAt(Config, issue.path);
      return issue.keys.map((k) => ({ path: formatPath([...issue.path, k]), message: unknownKeyMessage(k, issue.path, valid) }));
    }
    const { found, value } = valueAt(input, issue.path);
    const message = issue.code === "invalid_type" && !found ? "required" : issue.message;
    const problem: ConfigProblem = { path: formatPath(issue.path), message };
    if (found && (value === null || typeof value !== "object")) problem.value = describeValue(issue.path, value);
    return [problem];
  });
}

/** Trees converted from ContainerPilot's format: their problems say so. */
const convertedTrees = new WeakSet<object>();

/** Validates an already-parsed config tree (after interpolation). */
export function validateConfig(tree: unknown, source = "config"): Config {
  const deep = deepestPath(tree);
  if (deep) throw new ConfigError(source, [{ path: formatPath(deep), message: tooDeep }]);
  const result = Config.safeParse(tree);
  if (!result.success) {
    const converted = tree !== null && typeof tree === "object" && convertedTrees.has(tree);
    throw new ConfigError(converted ? `${source}, converted from ContainerPilot's format; paths are those of \`statepilot convert\`'s output` : source, problemsFromZod(result.error, tree));
  }
  return result.data;
}

/** Parses JSON5 text, interpolates the environment, validates. */
export function parseConfigText(text: string, env: NodeJS.ProcessEnv, source = "config"): Config {
  return validateConfig(parseConfigTree(text, env, source), source);
}

/** JSON5 text → interpolated tree, not yet validated. */
function parseConfigTree(text: string, env: NodeJS.ProcessEnv, source: string): Record<string, unknown> {
  const bytes = Buffer.byteLength(text, "utf8");
  if (bytes > MAX_CONFIG_BYTES) throw new ConfigError(source, [{ path: "(file)", message: tooLarge(bytes) }]);
  const deep = nestingTooDeep(text);
  if (deep) throw new ConfigError(source, [{ path: deep, message: tooDeep }]);
  let raw: unknown;
  let parseError: unknown;
  try {
    raw = JSON5.parse(text);
  } catch (err) {
    parseError = err;
  }
  if (looksLikeContainerPilot(text, raw)) return containerPilotTree(text, env, source, parseError === undefined && !text.includes("{{") ? { tree: raw } : undefined);
  if (parseError !== undefined) {
    const e = parseError as Error & { lineNumber?: number; columnNumber?: number };
    const where = e.lineNumber ? `line ${e.lineNumber}, column ${e.columnNumber}` : "(root)";
    throw new ConfigError(source, [{ path: where, message: `not valid JSON5: ${e.message.replace(/^JSON5: /, "")}` }], { cause: parseError });
  }
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) {
    throw new ConfigError(source, [{ path: "(root)", message: "expected an object", value: describeValue([], raw) }]);
  }
  let tree: unknown;
  try {
    tree = interpolateTree(raw, env);
  } catch (err) {
    if (err instanceof InterpolationError) throw new ConfigError(source, [{ path: err.path, message: err.message.slice(err.path.length + 2) }], { cause: err });
    throw err;
  }
  return tree as Record<string, unknown>;
}

/**
 * A ContainerPilot config, run as it is: Go template rendered with the environment (no `${VAR}`
 * interpolation: ContainerPilot had none), converted to the native tree, validated as usual.
 */
function containerPilotTree(text: string, env: NodeJS.ProcessEnv, source: string, untemplated?: { tree: unknown }): Record<string, unknown> {
  const label = `${source}, ContainerPilot format`;
  // A text with no template action renders to itself: its parse is reused.
  const parsed = untemplated ?? renderAndParse(text, env);
  if ("failure" in parsed) throw new ConfigError(label, [{ path: parsed.failure.where, message: parsed.failure.message }], { cause: parsed.failure.cause });
  const raw = parsed.tree;
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) {
    throw new ConfigError(label, [{ path: "(root)", message: "expected an object", value: describeValue([], raw) }]);
  }
  const deep = deepestPath(raw);
  if (deep) throw new ConfigError(label, [{ path: formatPath(deep), message: tooDeep }]);
  const conversion = convertContainerPilot(raw as Record<string, unknown>, { env, consulOverride: consulFromEnv(env), telemetryBind: telemetryBindNow });
  if (conversion.problems.length) throw new ConfigError(label, conversion.problems);
  convertedTrees.add(conversion.config);
  return conversion.config;
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

/** Reads at most MAX_CONFIG_BYTES (+1, to tell); undefined when the file is bigger. Stops early on a large regular file. */
function readCapped(path: string): { text: string } | { bytes: number | undefined } {
  const fd = openSync(path, "r");
  try {
    const size = fstatSync(fd).size;
    if (size > MAX_CONFIG_BYTES) return { bytes: size };
    const buf = Buffer.alloc(MAX_CONFIG_BYTES + 1);
    let total = 0;
    for (let n = -1; n !== 0 && total < buf.length; total += n) n = readSync(fd, buf, total, buf.length - total, null);
    return total > MAX_CONFIG_BYTES ? { bytes: undefined } : { text: buf.toString("utf8", 0, total) };
  } finally {
    closeSync(fd);
  }
}

function readTree(path: string, env: NodeJS.ProcessEnv, chain: string[]): Record<string, unknown> {
  const where = chain.length ? `extends (in ${chain[chain.length - 1]})` : "(file)";
  let read: ReturnType<typeof readCapped>;
  try {
    read = readCapped(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? "error";
    throw new ConfigError(chain[0] ?? path, [{ path: where, message: `cannot read the config file: ${code}`, value: JSON.stringify(path) }], { cause: err });
  }
  if (!("text" in read)) throw new ConfigError(chain[0] ?? path, [{ path: where, message: tooLarge(read.bytes), value: JSON.stringify(path) }]);
  const text = read.text;
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
