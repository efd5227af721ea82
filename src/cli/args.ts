/** Command-line parsing with errors that name the argument; exit code 2 on bad usage. */
export class UsageError extends Error {
  readonly exitCode = 2;
  override name = "UsageError";
}

export interface ParsedArgs {
  command: string[];
  options: Map<string, string | true>;
  /** Everything after `--`. */
  trailing: string[] | undefined;
}

export interface OptionSpec {
  /** Options taking a value, e.g. "config". */
  values: readonly string[];
  /** Flags, e.g. "json". */
  flags: readonly string[];
}

export function parseArgs(argv: readonly string[], spec: OptionSpec): ParsedArgs {
  const command: string[] = [];
  const options = new Map<string, string | true>();
  let trailing: string[] | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--") {
      trailing = argv.slice(i + 1);
      if (!trailing.length) throw new UsageError("-- must be followed by a command to run");
      break;
    }
    if (a === "-h") {
      options.set("help", true);
      continue;
    }
    if (a === "-o") {
      const value = argv[++i];
      if (value === undefined || value.startsWith("-")) throw new UsageError("option -o needs a value (table, json or yaml)");
      options.set("output", value);
      continue;
    }
    if (a.startsWith("--")) {
      const eq = a.indexOf("=");
      const name = a.slice(2, eq < 0 ? undefined : eq);
      if (spec.flags.includes(name)) {
        if (eq >= 0) throw new UsageError(`option --${name} takes no value (got ${JSON.stringify(a)})`);
        options.set(name, true);
      } else if (spec.values.includes(name)) {
        const value = eq >= 0 ? a.slice(eq + 1) : argv[++i];
        if (value === undefined || value === "" || (eq < 0 && value.startsWith("--"))) throw new UsageError(`option --${name} needs a value`);
        options.set(name, value);
      } else {
        throw new UsageError(`unknown option ${JSON.stringify(a)} (see statepilot --help)`);
      }
      continue;
    }
    if (a.startsWith("-") && a !== "-") throw new UsageError(`unknown option ${JSON.stringify(a)} (see statepilot --help)`);
    command.push(a);
  }
  return { command, options, trailing };
}

export function optionString(args: ParsedArgs, name: string): string | undefined {
  const v = args.options.get(name);
  return typeof v === "string" ? v : undefined;
}
