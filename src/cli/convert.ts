import { readFileSync, statSync } from "node:fs";
import JSON5 from "json5";
import { ConfigError, loadConfigFile, MAX_CONFIG_BYTES, validateConfig } from "../config/load.js";
import { interpolateTree } from "../config/interpolate.js";
import { convertText, looksLikeContainerPilot } from "../config/containerpilot/index.js";

/**
 * `statepilot convert FILE`: prints the native equivalent of a ContainerPilot config (JSON5, a
 * comment per translated key). Exit 2, naming every problem, when a key has no equivalent.
 */
export function convertCommand(path: string, env: NodeJS.ProcessEnv, write: (text: string) => void): number {
  let text: string;
  try {
    if (statSync(path).size > MAX_CONFIG_BYTES) throw new ConfigError(path, [{ path: "(file)", message: `a config file may be at most 1 MiB (${MAX_CONFIG_BYTES} bytes)` }]);
    text = readFileSync(path, "utf8");
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    throw new ConfigError(path, [{ path: "(file)", message: `cannot read the config file: ${(err as NodeJS.ErrnoException).code ?? "error"}`, value: JSON.stringify(path) }], { cause: err });
  }
  let raw: unknown;
  try {
    raw = JSON5.parse(text);
  } catch {
    raw = undefined;
  }
  if (!looksLikeContainerPilot(text, raw)) {
    throw new ConfigError(path, [{ path: "(file)", message: "not in ContainerPilot's format (no `{{ }}` template, string `consul`, job `port`, watch `interval`, v2 `services`...): it is a statepilot config already; `statepilot config check` validates it" }]);
  }
  // What `run` would do with this file, in this environment: every problem, with its path.
  loadConfigFile(path, env);
  const out = convertText(text, env, path);
  if ("failure" in out) throw new ConfigError(`${path}, ContainerPilot format`, [{ path: out.failure.where, message: out.failure.message }]);
  if (!("text" in out)) throw new ConfigError(`${path}, ContainerPilot format`, out.conversion.problems);
  // The printed file must load as it is.
  validateConfig(interpolateTree(JSON5.parse(out.text), env), `${path}, as converted`);
  write(out.text);
  return 0;
}
