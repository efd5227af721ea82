import { describe, expect, it } from "vitest";
import { splitCommand, toArgv } from "../../src/process/argv.js";

describe("splitCommand", () => {
  it.each([
    ["mysqld --port 3306", ["mysqld", "--port", "3306"]],
    ["  a   b  ", ["a", "b"]],
    [`sh -c 'echo "x y"; exit 7'`, ["sh", "-c", 'echo "x y"; exit 7']],
    [`a "b c" d`, ["a", "b c", "d"]],
    [`a "x \\"q\\" \\$HOME"`, ["a", 'x "q" $HOME']],
    [`a b\\ c`, ["a", "b c"]],
    [`a ''`, ["a", ""]],
    [`--init-file='/a b'/c`, ["--init-file=/a b/c"]],
    [`echo $HOME | cat`, ["echo", "$HOME", "|", "cat"]],
  ])("%s", (line, argv) => {
    expect(splitCommand(line)).toEqual(argv);
  });

  it("rejects an unterminated quote", () => {
    expect(() => splitCommand(`a 'b`)).toThrow(/unterminated single quote/);
  });

  it("uses /bin/sh -c only when asked", () => {
    expect(toArgv("a | b", true)).toEqual(["/bin/sh", "-c", "a | b"]);
    expect(toArgv(["a", "b c"], false)).toEqual(["a", "b c"]);
  });
});
