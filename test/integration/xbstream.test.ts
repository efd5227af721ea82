import { execFileSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { closeSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, readSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { findBinary } from "../../src/binaries.js";
import { adviseDontNeed, writeBehind } from "../../src/snapshot/write-behind.js";
import { XbstreamExtractor, type XbstreamExtractorOptions } from "../../src/snapshot/xbstream.js";
import { pino } from "pino";

const sha256 = (b: Buffer) => createHash("sha256").update(b).digest("hex");
const work = mkdtempSync(join(tmpdir(), "statepilot-xbstream-it-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** Each path under `dir` with its content's sha256 (vitest compares large buffers byte by byte, slowly). */
function tree(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) {
        out.set(relative(dir, p), "dir");
        walk(p);
      } else out.set(relative(dir, p), sha256(readFileSync(p)));
    }
  };
  walk(dir);
  return out;
}

describe("the in-process xbstream extractor against MariaDB's mbstream", () => {
  it("reads what mbstream -c writes into the same files as mbstream -x", { timeout: 120_000 }, async () => {
    const src = join(work, "src");
    mkdirSync(join(src, "db1", "deeper"), { recursive: true });
    const files: Record<string, number> = { ibdata1: 12 * 1048576 + 5, "db1/t.ibd": 3 * 1048576 + 7, "db1/deeper/x.frm": 1, "db1/empty.MYD": 0, "backup-my.cnf": 300 };
    for (const [f, n] of Object.entries(files)) writeFileSync(join(src, f), randomBytes(n));
    const stream = join(work, "stream.xb");
    execFileSync("sh", ["-c", `"$0" -c ${Object.keys(files).join(" ")} > "$1"`, findBinary("mbstream"), stream], { cwd: src });

    const theirs = join(work, "theirs");
    mkdirSync(theirs);
    execFileSync(findBinary("mbstream"), ["-x", "-C", theirs], { input: readFileSync(stream) });

    for (const variant of ["plain", "write-behind"] as const) {
      const ours = join(work, variant);
      mkdirSync(ours);
      const started: number[] = [];
      const behind = variant === "write-behind" ? writeBehind(pino({ level: "silent" }), 1048576) : undefined;
      const opts: XbstreamExtractorOptions = { dir: ours };
      if (behind) {
        opts.writeBehind = {
          everyBytes: behind.everyBytes,
          start: (fd) => {
            started.push(fd);
            return behind.start(fd);
          },
        };
      }
      const x = await extractFile(opts, stream);
      expect(statSync(stream).size).toBeGreaterThan(15 * 1048576);
      const expected = tree(theirs);
      expect([...expected.keys()].sort()).toEqual(["backup-my.cnf", "db1", "db1/deeper", "db1/deeper/x.frm", "db1/empty.MYD", "db1/t.ibd", "ibdata1"]);
      expect(tree(ours)).toEqual(expected);
      expect(tree(ours).get("ibdata1")).toBe(sha256(readFileSync(join(src, "ibdata1"))));
      expect(x.fileCount).toBe(Object.keys(files).length);
      // 15 MiB in files of 12 and 3 MiB, one call at a time: some calls, at most one per MiB.
      if (variant === "write-behind") expect(started.length).toBeGreaterThanOrEqual(2);
    }
  });

  it("the write-behind's dd drops a file's clean pages from the cache (posix_fadvise DONTNEED on the fd it is handed)", async () => {
    const f = join(work, "cached");
    writeFileSync(f, randomBytes(8 * 1048576));
    execFileSync("sync", ["-f", f]);
    const resident = () => Number(execFileSync("fincore", ["--bytes", "--noheadings", "--output", "RES", f], { encoding: "utf8" }).trim());
    expect(resident()).toBe(8 * 1048576);
    const fd = openSync(f, "r+");
    try {
      await adviseDontNeed(findBinary("dd"), fd);
    } finally {
      closeSync(fd);
    }
    expect(resident()).toBe(0);
    expect(statSync(f).size).toBe(8 * 1048576);
  });
});

async function extractFile(opts: XbstreamExtractorOptions, stream: string): Promise<XbstreamExtractor> {
  const x = new XbstreamExtractor(opts);
    const fd = openSync(stream, "r");
    const ring = Buffer.alloc(1048576);
    try {
      for (let n = readSync(fd, ring); n > 0; n = readSync(fd, ring)) await x.write(ring.subarray(0, n));
    } finally {
      closeSync(fd);
    }
    await x.end();
  return x;
}
