import { stringify } from "yaml";
import { UsageError, optionString, type ParsedArgs } from "./args.js";

export const OUTPUTS = ["table", "json", "yaml"] as const;
export type Output = (typeof OUTPUTS)[number];

/** `-o table|json|yaml` (`--json` is `-o json`); table, the human form, by default. */
export function outputFormat(args: ParsedArgs): Output {
  const o = optionString(args, "output");
  if (o === undefined) return args.options.has("json") ? "json" : "table";
  if (!(OUTPUTS as readonly string[]).includes(o)) throw new UsageError(`-o/--output: expected ${OUTPUTS.join(", ")}, got ${JSON.stringify(o)}`);
  if (args.options.has("json") && o !== "json") throw new UsageError(`--json and -o ${o} disagree: give one`);
  return o as Output;
}

/** Prints `data` as JSON or YAML, or calls `table` for the human form. */
export function emit(format: Output, data: unknown, table: () => string): void {
  const text = format === "json" ? JSON.stringify(data, null, 2) : format === "yaml" ? stringify(data).trimEnd() : table();
  process.stdout.write(`${text}\n`);
}
