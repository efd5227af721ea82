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
