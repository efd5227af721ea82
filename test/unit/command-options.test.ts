import { describe, expect, it } from "vitest";
import { parseArgs, UsageError } from "../../src/cli/args.js";
import { checkCommandOptions } from "../../src/cli/command-options.js";

const SPEC = { values: ["config", "to", "timeout", "reason", "socket", "node", "dir", "nodes"], flags: ["json", "yes", "help"] } as const;
const check = (argv: string[]) => () => checkCommandOptions(parseArgs(argv, SPEC));

describe("options and words per command", () => {
  it("refuses an option that does not belong to the command, naming what it takes", () => {
    expect(check(["config", "check", "--to", "mysql-2"])).toThrow(/--to does not apply to statepilot config check \(it takes --config, --node\)/);
    expect(check(["mysql", "status", "--to", "x"])).toThrow(UsageError);
    expect(check(["status", "--reason", "x"])).toThrow(/does not apply to statepilot status/);
  });
  it("refuses extra words and a trailing command where none is taken", () => {
    expect(check(["mysql", "status", "extra"])).toThrow(/unexpected argument "extra"/);
    expect(check(["ping", "extra"])).toThrow(/unexpected argument/);
    expect(check(["status", "--", "sh"])).toThrow(/takes no command after --/);
  });
  it("accepts what each command takes; the lab takes anything; help goes with all", () => {
    for (const argv of [["mysql", "switchover", "--to", "b", "--timeout", "30s", "--config", "c"], ["mysql", "remove", "n4", "--yes"], ["run", "--config", "c", "--", "sh"], ["--config", "c"], ["lab", "up", "--dir", "d", "--nodes", "3"], ["status", "--help"]]) {
      expect(check(argv), argv.join(" ")).not.toThrow();
    }
  });
});
