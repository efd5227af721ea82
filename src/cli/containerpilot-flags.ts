import { UsageError } from "./args.js";

/**
 * ContainerPilot's subcommand flags, so that the scripts of a ContainerPilot image run unchanged
 * with statepilot installed under ContainerPilot's name (`/usr/local/bin/containerpilot`):
 *
 *     containerpilot -putmetric 'nginx_connections_load=0.25' -putmetric 'other=1'
 *     containerpilot -putenv 'KEY=value'    containerpilot -reload    containerpilot -ping
 *     containerpilot -maintenance enable|disable    containerpilot -config FILE ...
 *
 * They become the native commands (`putmetric`, `putenv`, `reload`, `ping`, `maintenance on|off`)
 * and talk to the same control socket. Go's flag syntax is accepted: `-name value`, `-name=value`,
 * and the same with `--` for the names that are not also native options. The socket is found as
 * the native commands find it: `--socket`, then `$STATEPILOT_SOCKET` (which `statepilot run` gives
 * the jobs it starts), then the config's `control.socket`, the config being `-config`, then
 * `$STATEPILOT_CONFIG`, then `$CONTAINERPILOT` (ContainerPilot's variable; `file://` is stripped).
 */

/** ContainerPilot flags that take a value, and those that do not. */
const VALUED = new Set(["putmetric", "putenv", "maintenance", "config", "out"]);
const BOOLEAN = new Set(["reload", "ping", "version", "template"]);
/** Native long options with the same name: `--config` and `--version` stay native. */
const NATIVE = new Set(["config", "version"]);

interface Flag {
  name: string;
  value: string | undefined;
  given: string;
}

/** The flag an argument names, if it is one of ContainerPilot's in a form ContainerPilot accepted. */
function asFlag(arg: string): { name: string; inline: string | undefined } | undefined {
  const m = /^(--?)([a-z]+)(?:=(.*))?$/s.exec(arg);
  if (!m) return undefined;
  const [, dashes, name = "", inline] = m;
  if (!VALUED.has(name) && !BOOLEAN.has(name)) return undefined;
  if (dashes === "--" && NATIVE.has(name)) return undefined;
  return { name, inline };
}

/** Is this argv ContainerPilot's form (its first argument one of ContainerPilot's single-dash flags)? */
export function isContainerPilotArgv(argv: readonly string[]): boolean {
  const first = argv[0];
  return first !== undefined && asFlag(first) !== undefined;
}

/**
 * The native argv for a ContainerPilot invocation, or undefined when `argv` is not one (it does
 * not start with a ContainerPilot flag). Throws a UsageError (exit 2) naming the flag and value on
 * anything ContainerPilot would refuse or statepilot does not do this way.
 */
export function containerPilotArgv(argv: readonly string[], env: NodeJS.ProcessEnv): string[] | undefined {
  if (!isContainerPilotArgv(argv)) return undefined;
  const flags: Flag[] = [];
  const native: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const flag = asFlag(arg);
    if (!flag) {
      // The native options the commands take (--socket, -o/--output, --json) pass through.
      if (arg === "--socket" || arg === "-o" || arg === "--output") {
        const value = argv[++i];
        if (value === undefined) throw new UsageError(`option ${arg} needs a value`);
        native.push(arg, value);
        continue;
      }
      if (/^--(socket|output)=/.test(arg) || arg === "--json") {
        native.push(arg);
        continue;
      }
      throw new UsageError(
        `${JSON.stringify(arg)} is not a ContainerPilot flag statepilot takes here; expected -putmetric NAME=VALUE, -putenv KEY=VALUE, -reload, -ping, -maintenance enable|disable or -config FILE (statepilot run --config FILE runs a ContainerPilot config)`,
      );
    }
    if (BOOLEAN.has(flag.name)) {
      if (flag.inline !== undefined && !/^(true|false|1|0|t|f|TRUE|FALSE|True|False)$/.test(flag.inline)) {
        throw new UsageError(`-${flag.name} takes no value (got ${JSON.stringify(arg)})`);
      }
      if (flag.inline === undefined || /^(true|1|t|TRUE|True)$/.test(flag.inline)) flags.push({ name: flag.name, value: undefined, given: arg });
      continue;
    }
    const value = flag.inline ?? argv[++i];
    if (value === undefined) throw new UsageError(`-${flag.name} needs a value (${arg} is the last argument)`);
    flags.push({ name: flag.name, value, given: arg });
  }

  const of = (name: string) => flags.filter((f) => f.name === name);
  const actions = [...new Set(flags.map((f) => f.name).filter((n) => n !== "config" && n !== "out"))];
  if (actions.includes("template") || of("out").length) {
    throw new UsageError("-template/-out (render a ContainerPilot config) is not supported; statepilot convert FILE prints the native equivalent, statepilot config render --config FILE the resolved config");
  }
  if (actions.includes("version")) return ["--version"];
  if (actions.length === 0) {
    throw new UsageError("-config alone would run the supervisor; use statepilot run --config FILE (it runs a ContainerPilot config as it is)");
  }
  if (actions.length > 1) {
    throw new UsageError(`give one of -putmetric, -putenv, -reload, -ping, -maintenance at a time (got ${actions.map((a) => `-${a}`).join(", ")})`);
  }
  const configs = of("config");
  if (configs.length > 1) throw new UsageError(`-config given ${configs.length} times (${configs.map((c) => JSON.stringify(c.value)).join(", ")}); give it once`);
  const config = configs[0]?.value ?? (env.STATEPILOT_CONFIG ? undefined : env.CONTAINERPILOT || undefined);
  const configArgs = config === undefined ? [] : ["--config", configFile(config, configs[0] ? "-config" : "CONTAINERPILOT")];

  const action = actions[0]!;
  switch (action) {
    case "putmetric":
    case "putenv": {
      const pairs = of(action).map((f) => f.value!);
      for (const p of pairs) {
        // ContainerPilot's own check; the native command then checks the name and the number.
        if (action === "putmetric" && !p.includes("=")) throw new UsageError(`-putmetric: ${JSON.stringify(p)} is not in the format 'key=val'`);
      }
      return [action, ...pairs, ...configArgs, ...native];
    }
    case "maintenance": {
      const values = of("maintenance");
      const value = values[values.length - 1]!.value!;
      if (value !== "enable" && value !== "disable") throw new UsageError(`-maintenance: expected enable or disable, got ${JSON.stringify(value)}`);
      return ["maintenance", value === "enable" ? "on" : "off", ...configArgs, ...native];
    }
    default:
      return [action, ...configArgs, ...native];
  }
}

/** ContainerPilot took a path or a `file://` URL (v2 also inline JSON, which is not supported). */
function configFile(value: string, source: string): string {
  if (value.startsWith("file://")) return value.slice("file://".length);
  if (value.trimStart().startsWith("{")) throw new UsageError(`${source}: an inline JSON config is not supported; give the path of the file`);
  if (value === "") throw new UsageError(`${source}: empty; give the path of the config file`);
  return value;
}
