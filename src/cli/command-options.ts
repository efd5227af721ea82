import { UsageError, type ParsedArgs } from "./args.js";

/**
 * Which options each command takes and how many words it has: an option or a word that does not
 * belong to the command is a usage error (exit 2) naming what the command does take, never
 * silently ignored. `help` and `version` go with anything. The lab (a test rig) takes any option.
 */
const CONTROL = ["socket", "config", "output", "json"];
const TABLE: Record<string, { options: readonly string[]; words?: number | readonly number[]; trailing?: boolean }> = {
  run: { options: ["config", "node", "socket"], words: 1, trailing: true },
  "": { options: ["config", "node", "socket"], words: 0, trailing: true },
  "config check": { options: ["config", "node"], words: 2, trailing: true },
  "config render": { options: ["config", "node", "output", "json"], words: 2, trailing: true },
  convert: { options: [], words: 2 },
  status: { options: CONTROL, words: 1 },
  ping: { options: CONTROL, words: 1 },
  health: { options: CONTROL, words: 1 },
  reload: { options: CONTROL, words: 1 },
  "maintenance on": { options: ["reason", ...CONTROL], words: 2 },
  "maintenance off": { options: CONTROL, words: 2 },
  putenv: { options: CONTROL },
  putmetric: { options: ["labels", "op", ...CONTROL] },
  "mysql status": { options: ["json", "config", "output"], words: 2 },
  "mysql switchover": { options: ["to", "at", "timeout", "config", "output", "json"], words: 2 },
  "mysql pause": { options: ["reason", "config", "output", "json"], words: 2 },
  "mysql resume": { options: ["config", "output", "json"], words: 2 },
  "mysql remove": { options: ["yes", "config", "output", "json"], words: 3 },
  "mysql rebuild": { options: ["yes", "timeout", "config", "output", "json"], words: 3 },
  "snapshot list": { options: ["json", "config", "output"], words: 2 },
  "snapshot create": { options: ["timeout", "config", "output", "json"], words: 2 },
  "snapshot restore": { options: ["id", "datadir", "to-time", "to-gtid", "config", "output", "json"], words: 2 },
  "archive status": { options: ["json", "config", "output"], words: 2 },
};

const ALWAYS = new Set(["help", "version"]);

/** Throws a UsageError when an option, an extra word or a trailing command does not belong to the command. */
export function checkCommandOptions(args: ParsedArgs): void {
  const [cmd = "", sub] = args.command;
  if (cmd === "lab") return;
  const key = TABLE[`${cmd} ${sub ?? ""}`] ? `${cmd} ${sub}` : cmd;
  const rule = TABLE[key];
  // Unknown commands and subcommands are reported by the command itself, with the valid choices.
  if (!rule) return;
  const shown = key === "" ? "statepilot" : `statepilot ${key}`;
  const takes = rule.options.length ? `it takes ${rule.options.map((o) => `--${o}`).join(", ")}` : "it takes no option";
  for (const name of args.options.keys()) {
    if (ALWAYS.has(name) || rule.options.includes(name)) continue;
    throw new UsageError(`option --${name} does not apply to ${shown} (${takes})`);
  }
  if (args.trailing && !rule.trailing) throw new UsageError(`${shown} takes no command after --`);
  const words = rule.words === undefined ? undefined : typeof rule.words === "number" ? [rule.words] : rule.words;
  if (words && !words.includes(args.command.length)) {
    const extra = args.command.slice(Math.max(...words));
    if (extra.length) throw new UsageError(`unexpected argument ${JSON.stringify(extra[0])} for ${shown}`);
  }
}
