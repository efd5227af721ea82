/** Keys whose values are secrets: never logged, never printed unmasked. */
export const SECRET_KEY = /pass(word)?|secret|token|(^|_|-)key$|private|credential|auth/i;
const MASK = "********";

export function isSecretKey(key: string): boolean {
  return SECRET_KEY.test(key);
}

export function maskValue(key: string, value: unknown): unknown {
  return isSecretKey(key) && typeof value === "string" && value !== "" ? MASK : value;
}

/** A deep copy with every secret-named key's string value masked; env maps are masked by key too. */
export function maskSecrets<T>(value: T): T {
  const walk = (v: unknown, key: string): unknown => {
    if (Array.isArray(v)) return v.map((x) => walk(x, key));
    if (v && typeof v === "object") {
      const out: Record<string, unknown> = {};
      for (const [k, x] of Object.entries(v)) out[k] = walk(x, k);
      return out;
    }
    return maskValue(key, v);
  };
  return walk(value, "") as T;
}

/** Secret values to scrub from free text (error messages, command lines shown in logs). */
export function secretValues(tree: unknown): string[] {
  const found: string[] = [];
  const walk = (v: unknown, key: string): void => {
    if (Array.isArray(v)) v.forEach((x) => walk(x, key));
    else if (v && typeof v === "object") for (const [k, x] of Object.entries(v)) walk(x, k);
    else if (typeof v === "string" && v.length >= 4 && isSecretKey(key)) found.push(v);
  };
  walk(tree, "");
  return found;
}

export function scrub(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const s of secrets) out = out.split(s).join(MASK);
  return out;
}
