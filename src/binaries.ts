import { accessSync, constants } from "node:fs";
import { homedir } from "node:os";
import { delimiter, join } from "node:path";

export function cacheDir(): string {
  return process.env.STATEPILOT_CACHE ?? join(homedir(), ".cache", "statepilot");
}

function executable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * Finds a binary: an explicit env override (e.g. STATEPILOT_CONSUL_BIN), the installer's cache,
 * then PATH (plus sbin, where Debian puts mariadbd).
 */
export function findBinary(name: string): string {
  const override = process.env[`STATEPILOT_${name.toUpperCase().replace(/-/g, "_")}_BIN`];
  if (override) {
    if (!executable(override)) throw new Error(`${name}: ${override} (from the environment) is not executable`);
    return override;
  }
  const dirs = [join(cacheDir(), "bin"), ...(process.env.PATH ?? "").split(delimiter), "/usr/sbin", "/usr/local/sbin", "/sbin"];
  for (const d of dirs) {
    if (d && executable(join(d, name))) return join(d, name);
  }
  throw new Error(`${name} not found in ${join(cacheDir(), "bin")} or on PATH; run: npm run setup`);
}
