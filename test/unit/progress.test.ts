import { Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import { Progress } from "../../src/cli/progress.js";

function stream(isTTY: boolean) {
  let text = "";
  const s = new Writable({
    write: (c: Buffer, _e, cb) => {
      text += c.toString();
      cb();
    },
  }) as unknown as NodeJS.WriteStream;
  (s as { isTTY?: boolean }).isTTY = isTTY;
  return { s, text: () => text };
}

describe("progress line", () => {
  it("shows bytes, percentage and rate on a terminal, and clears itself", () => {
    const t = stream(true);
    const p = new Progress("restore", t.s);
    p.update(5 * 1048576, 10 * 1048576, "download");
    expect(t.text()).toMatch(/restore \(download\): {2}5\.0 MiB of 10\.0 MiB \(50%\) {2}[\d.]+ MiB\/s/);
    p.done();
    expect(t.text().endsWith("\r\x1b[2K")).toBe(true);
  });
  it("prints nothing when not a terminal", () => {
    const t = stream(false);
    const p = new Progress("restore", t.s);
    p.update(1, 2);
    p.tick("waiting");
    p.done();
    expect(t.text()).toBe("");
  });
});
