import { readFileSync } from "node:fs";

/** The package version, read from package.json next to the compiled tree (dist/src/cli -> ../../..). */
export function packageVersion(): string {
  for (const rel of ["../../../package.json", "../../package.json"]) {
    try {
      const pkg = JSON.parse(readFileSync(new URL(rel, import.meta.url), "utf8")) as { name?: string; version?: string };
      if (pkg.name === "statepilot" && pkg.version) return pkg.version;
    } catch {
      /* try the next */
    }
  }
  return "unknown";
}
