/**
 * Compose-style environment interpolation on the string values of a parsed config tree:
 * `${VAR}`, `${VAR:-default}` (unset or empty), `${VAR-default}` (unset), `${VAR:?message}`
 * and `${VAR?message}` (error), and `$$` for a literal `$`. A bare `$VAR` is not interpolated
 * (it used to become "" when unset, silently breaking `sh -c` commands). Interpolating after
 * parsing means a value can never break the JSON5 syntax around it.
 */
export class InterpolationError extends Error {
  constructor(
    readonly path: string,
    message: string,
  ) {
    super(`${path}: ${message}`);
    this.name = "InterpolationError";
  }
}

const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** The index of the `}` closing the `${` at `open`, counting nested `${...}` (a default may hold one). */
function closingBrace(text: string, open: number): number {
  let depth = 0;
  for (let i = open; i < text.length; i++) {
    if (text[i] === "$" && text[i + 1] === "$") i++;
    else if (text[i] === "$" && text[i + 1] === "{") {
      depth++;
      i++;
    } else if (text[i] === "}" && --depth === 0) return i;
  }
  return -1;
}

/**
 * A bare `$VAR` is left as written: it is for the shell of a job (`shell: true`, `sh -c`), as in
 * ContainerPilot; only the braced forms read the environment at load.
 */
export function interpolateString(text: string, env: NodeJS.ProcessEnv, path: string): string {
  let out = "";
  for (let i = 0; i < text.length; i++) {
    const next = text.indexOf("$", i);
    if (next < 0) return out + text.slice(i);
    out += text.slice(i, next);
    i = next;
    if (text[i + 1] !== "$" && text[i + 1] !== "{") {
      out += "$";
      continue;
    }
    if (text[i + 1] === "$") {
      out += "$";
      i++;
      continue;
    }
    const end = closingBrace(text, i);
    if (end < 0) throw new InterpolationError(path, `invalid interpolation "${text.slice(i)}" (no closing brace)`);
    out += expand(text.slice(i, end + 1), text.slice(i + 2, end), env, path);
    i = end;
  }
  return out;
}

function expand(whole: string, expr: string, env: NodeJS.ProcessEnv, path: string): string {
  const m = /^([^:?-]*)(?:(:?-)(.*)|(:?\?)(.*))?$/s.exec(expr);
  const name = m?.[1] ?? "";
  if (!m || !NAME.test(name)) throw new InterpolationError(path, `invalid interpolation "${whole}"`);
  const value = env[name];
  const [defaultOp, defaultValue, errorOp, errorMessage] = [m[2], m[3], m[4], m[5]];
  if (defaultOp) {
    const useDefault = defaultOp === ":-" ? !value : value === undefined;
    return useDefault ? interpolateString(defaultValue ?? "", env, path) : (value ?? "");
  }
  if (errorOp) {
    const missing = errorOp === ":?" ? !value : value === undefined;
    if (missing) {
      throw new InterpolationError(path, `required variable ${name} is ${value === undefined ? "not set" : "empty"}${errorMessage ? `: ${errorMessage}` : ""}`);
    }
    return value ?? "";
  }
  return value ?? "";
}

export function formatPath(path: ReadonlyArray<PropertyKey>): string {
  let out = "";
  for (const p of path) {
    if (typeof p === "number") out += `[${p}]`;
    else if (typeof p === "string" && /^[A-Za-z_$][\w$]*$/.test(p)) out += out ? `.${p}` : p;
    else out += `[${JSON.stringify(String(p))}]`;
  }
  return out || "(root)";
}

/** Returns a copy of the tree with every string value interpolated; object keys are left alone. */
export function interpolateTree(value: unknown, env: NodeJS.ProcessEnv, path: Array<string | number> = []): unknown {
  if (typeof value === "string") return interpolateString(value, env, formatPath(path));
  if (Array.isArray(value)) return value.map((v, i) => interpolateTree(v, env, [...path, i]));
  if (value && typeof value === "object") {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = interpolateTree(v, env, [...path, k]);
    return out;
  }
  return value;
}
