import JSON5 from "json5";
import { resolveAddress } from "../../discovery/address.js";
import { convertContainerPilot, isContainerPilot, type Conversion } from "./convert.js";
import { toJson5 } from "./emit.js";
import { Symbols, type Tree } from "./notes.js";
import { hasTemplate, renderTemplate, TemplateError } from "./template.js";

/**
 * ContainerPilot configs, run as they are: Go-template rendering with the environment, then a
 * conversion to statepilot's native tree (convert.ts), which the native schema validates.
 */
export { convertContainerPilot, isContainerPilot, type Conversion } from "./convert.js";
export { hasTemplate, renderTemplate, TemplateError } from "./template.js";

/** Go template actions that read the environment: `{{ .VAR }}`, `{{ env "X" }}`, `{{ if ... }}`, `{{ range ... }}`. */
const GO_ACTION = /\{\{-?\s*(\.[A-Za-z_]|env\s|if\s|range\s|with\s|default\s)/;

/** Is this config text in ContainerPilot's format? `raw` is the text parsed as it is, when it parses. */
export function looksLikeContainerPilot(text: string, raw: unknown): boolean {
  if (text.includes("{{") && GO_ACTION.test(withoutComments(text))) return true;
  return raw !== null && typeof raw === "object" && !Array.isArray(raw) && isContainerPilot(raw as Tree);
}

/** JSON5 text without its comments (strings kept): a `{{ }}` in a comment does not make a template. */
function withoutComments(text: string): string {
  let out = "";
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === '"' || c === "'") {
      let j = i + 1;
      for (; j < text.length && text[j] !== c && text[j] !== "\n"; j++) if (text[j] === "\\") j++;
      out += text.slice(i, j + 1);
      i = j;
    } else if (c === "/" && text[i + 1] === "/") {
      while (i < text.length && text[i] !== "\n") i++;
      out += "\n";
    } else if (c === "/" && text[i + 1] === "*") {
      const end = text.indexOf("*/", i + 2);
      i = end < 0 ? text.length : end + 1;
    } else out += c;
  }
  return out;
}

export interface ParseFailure {
  kind: "template" | "json5";
  where: string;
  message: string;
  cause: unknown;
}

/** Renders the template and parses the JSON5 it gives; a failure says where. */
export function renderAndParse(text: string, env: NodeJS.ProcessEnv, hooks?: Parameters<typeof renderTemplate>[2]): { tree: unknown } | { failure: ParseFailure } {
  let rendered: string;
  try {
    rendered = renderTemplate(text, env, hooks);
  } catch (err) {
    if (!(err instanceof TemplateError)) throw err;
    return { failure: { kind: "template", where: `line ${err.line}`, message: `ContainerPilot template: ${err.message.replace(/^line \d+: /, "")}`, cause: err } };
  }
  try {
    return { tree: JSON5.parse(rendered) };
  } catch (err) {
    const e = err as Error & { lineNumber?: number; columnNumber?: number };
    const where = e.lineNumber ? `line ${e.lineNumber}, column ${e.columnNumber} (after template rendering)` : "(root)";
    return { failure: { kind: "json5", where, message: `not valid JSON5: ${e.message.replace(/^JSON5: /, "")}`, cause: err } };
  }
}

/** The address ContainerPilot's telemetry listened on: the first of its interfaces; undefined when none resolves (then 0.0.0.0). */
export function telemetryBindNow(interfaces: string[]): string | undefined {
  try {
    return resolveAddress(interfaces);
  } catch {
    return undefined;
  }
}

/** How `run` resolves a `consul` string: CONSUL_HTTP_ADDR, when set, takes its place. */
export const consulFromEnv = (env: NodeJS.ProcessEnv) => (address: string) => env.CONSUL_HTTP_ADDR || address;

export interface Converted {
  /** JSON5 text with a comment per translated key. */
  text: string;
  conversion: Conversion;
  /** The template was evaluated with this environment (its `if`/`range`), not kept as `${VAR}`. */
  evaluated: string[];
}

const isObject = (v: unknown): v is Tree => v !== null && typeof v === "object" && !Array.isArray(v);

/**
 * `statepilot convert`: the native equivalent of a ContainerPilot config. `{{ .VAR }}` and
 * `{{ .VAR | default "x" }}` become `${VAR}` and `${VAR:-x}`; other template actions (`if`,
 * `range`, functions) are evaluated with `env`, and the header says which. When the variables
 * sit where a string cannot (a port), the whole file is rendered with `env`.
 */
export function convertText(text: string, env: NodeJS.ProcessEnv, source: string): Converted | { failure: ParseFailure } | { conversion: Conversion } {
  const symbols = new Symbols();
  const evaluated = new Set<string>();
  const hooks = {
    symbol: (name: string, fallback: string | undefined) => (fallback !== undefined && /[}\uE000\uE001]/.test(fallback) ? undefined : symbols.variable(name, fallback)),
    evaluated: (src: string, line: number) => evaluated.add(`{{ ${src} }} (line ${line})`),
  };
  const consulOverride = (address: string) => symbols.variable("CONSUL_HTTP_ADDR", address);
  const attempt = (symbolic: boolean) => {
    evaluated.clear();
    const parsed = renderAndParse(text, env, symbolic ? hooks : undefined);
    if ("failure" in parsed) return parsed;
    if (!isObject(parsed.tree)) return { failure: { kind: "json5" as const, where: "(root)", message: "expected an object", cause: undefined } };
    const conversion = convertContainerPilot(parsed.tree, { env, consulOverride, resolve: (t) => symbols.resolve(t, env) });
    return { conversion };
  };
  let result = attempt(true);
  let symbolic = true;
  if ("failure" in result || result.conversion.problems.length) {
    result = attempt(false);
    symbolic = false;
  }
  if ("failure" in result || result.conversion.problems.length) return result;
  const conversion = result.conversion;
  const header = [
    `statepilot configuration converted from ContainerPilot v${conversion.version} (${source}) by \`statepilot convert\`.`,
    "Each comment says what a key was in ContainerPilot and what changed. `${VAR}` / `${VAR:-default}` read the environment at load.",
  ];
  if (!symbolic && hasTemplate(text)) header.push("The template was rendered with the environment of `statepilot convert` (its variables sit where a string cannot); re-run convert with the container's environment.");
  else if (evaluated.size) {
    header.push("Evaluated with the environment of `statepilot convert` (no equivalent in statepilot's `${VAR}`): re-run convert with the container's environment, or edit:");
    for (const e of evaluated) header.push(`  ${e}`);
  }
  const out = toJson5(conversion.config, conversion.notes, header, (s) => symbols.finish(s), (s) => symbols.display(s));
  return { text: out, conversion, evaluated: [...evaluated] };
}
