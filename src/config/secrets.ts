/** Keys whose values are secrets: never logged, never printed unmasked. */
export const SECRET_KEY = /pass(word)?|pwd|secret|token|(^|_|-)key$|private|credential|auth/i;
const MASK = "********";

export function isSecretKey(key: string): boolean {
  return SECRET_KEY.test(key);
}

/** The password of a URL (`mysql://app:PASSWORD@db/shop`, a DSN in an env value or an argument). */
const URL_PASSWORD = /\b([a-z][a-z0-9+.-]*:\/\/[^\s:/?#@]*:)([^\s/?#@]+)@/gi;
/** `--password=x`, `MYSQL_PWD=x`, `--token=x` inside a command line or a value. */
const ASSIGNED_SECRET = /((?:^|[\s'"])-{0,2}[A-Za-z0-9_.-]*(?:pass|pwd|secret|token)[A-Za-z0-9_.-]*=)([^\s'"]+)/gi;

const SECRET_OPTION = /^-{1,2}[A-Za-z0-9_.-]*(?:pass|pwd|secret|token)[A-Za-z0-9_.-]*$/i;

/** Text with the secrets it carries masked: URL passwords and secret-named assignments. */
export function maskSecretsInText(text: string): string {
  return text.replace(URL_PASSWORD, `$1${MASK}@`).replace(ASSIGNED_SECRET, `$1${MASK}`);
}

/**
 * A value fit to print: under a secret-named key anything but an empty string, null or a boolean is
 * masked (a password given as a number too); any other string has its embedded secrets masked.
 */
export function maskValue(key: string, value: unknown): unknown {
  if (isSecretKey(key) && (typeof value === "string" || typeof value === "number" || typeof value === "bigint") && value !== "") return MASK;
  return typeof value === "string" ? maskSecretsInText(value) : value;
}

/** A deep copy fit to print: maskValue on every value (env maps are masked by key too). */
export function maskSecrets<T>(value: T): T {
  const walk = (v: unknown, key: string): unknown => {
    // ["mysql", "--password", "x"]: the argument after a secret-named option is its value.
    if (Array.isArray(v)) return v.map((x, i) => (i > 0 && typeof v[i - 1] === "string" && SECRET_OPTION.test(v[i - 1]) ? walk(x, "password") : walk(x, key)));
    if (v && typeof v === "object") {
      const out: Record<string, unknown> = {};
      for (const [k, x] of Object.entries(v)) out[k] = walk(x, k);
      return out;
    }
    return maskValue(key, v);
  };
  return walk(value, "") as T;
}
