import { existsSync, fstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { XbstreamError, XbstreamExtractor } from "../../src/snapshot/xbstream.js";

/** One xbstream chunk as mariabackup writes it (the CRC is left 0: the extractor does not read it). */
function chunk(path: string, type: "P" | "E" | string, payload?: Buffer, offset = 0, flags = 0): Buffer {
  const p = Buffer.from(path);
  const head = Buffer.alloc(14);
  head.write("XBSTCK01", 0, "latin1");
  head[8] = flags;
  head[9] = type.charCodeAt(0);
  head.writeUInt32LE(p.length, 10);
  if (type === "E") return Buffer.concat([head, p]);
  const fields = Buffer.alloc(20);
  fields.writeBigUInt64LE(BigInt(payload?.length ?? 0), 0);
  fields.writeBigUInt64LE(BigInt(offset), 8);
  return Buffer.concat([head, p, fields, payload ?? Buffer.alloc(0)]);
}

const bytes = (n: number, seed: number) => Buffer.from(Array.from({ length: n }, (_, i) => (i * 31 + seed) & 0xff));

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
function scratch(): { root: string; dir: string } {
  const root = mkdtempSync(join(tmpdir(), "statepilot-xbstream-"));
  dirs.push(root);
  return { root, dir: join(root, "datadir") };
}

/** Feeds `stream` in pieces of `piece` bytes, from one reused buffer (as the store's ring does). */
async function extract(dir: string, stream: Buffer, piece: number): Promise<XbstreamExtractor> {
  mkdirSync(dir, { recursive: true });
  const x = new XbstreamExtractor({ dir });
  const ring = Buffer.alloc(piece);
  for (let i = 0; i < stream.length; i += piece) {
    const n = stream.copy(ring, 0, i, Math.min(stream.length, i + piece));
    await x.write(ring.subarray(0, n));
    ring.fill(0xee); // a buffer reused too early would show in the files
  }
  await x.end();
  return x;
}

async function failure(dir: string, stream: Buffer): Promise<XbstreamError> {
  try {
    await extract(dir, stream, 5);
  } catch (err) {
    expect(err).toBeInstanceOf(XbstreamError);
    return err as XbstreamError;
  }
  throw new Error("the extraction was expected to fail");
}

const a1 = bytes(1000, 1);
const a2 = bytes(777, 2);
const b = bytes(5000, 3);
const good = Buffer.concat([chunk("ibdata1", "P", a1, 0), chunk("db/t.ibd", "P", b, 0), chunk("ibdata1", "P", a2, 1000), chunk("ibdata1", "E"), chunk("db/t.ibd", "E"), chunk("db/empty.frm", "E"), chunk("xtrabackup_info", "P", Buffer.from("gtid"), 0), chunk("xtrabackup_info", "E")]);

describe("XbstreamExtractor", () => {
  it.each([1, 3, 14, 64, 4096, good.length])("extracts every file byte for byte, fed %i bytes at a time", async (piece) => {
    const { dir } = scratch();
    const x = await extract(dir, good, piece);
    expect(readFileSync(join(dir, "ibdata1"))).toEqual(Buffer.concat([a1, a2]));
    expect(readFileSync(join(dir, "db/t.ibd"))).toEqual(b);
    expect(readFileSync(join(dir, "db/empty.frm")).length).toBe(0);
    expect(readFileSync(join(dir, "xtrabackup_info"), "utf8")).toBe("gtid");
    expect(statSync(join(dir, "ibdata1")).mode & 0o777).toBe(0o640);
    expect(statSync(join(dir, "db")).mode & 0o777).toBe(0o700);
    expect([x.fileCount, x.bytesWritten]).toEqual([4, 1000 + 777 + 5000 + 4]);
  });

  it.each(["../escaped", "/tmp/escaped", "db/../../escaped", "db//t", "./t", "."])("refuses the path %j and writes nothing outside the directory", async (path) => {
    const { root, dir } = scratch();
    const err = await failure(dir, Buffer.concat([chunk(path, "P", bytes(10, 4)), chunk(path, "E")]));
    expect(err.message).toContain(JSON.stringify(path));
    expect(err.message).toContain("not a plain relative path");
    expect(readdirSync(root)).toEqual(["datadir"]);
    expect(existsSync("/tmp/escaped")).toBe(false);
  });

  it("names what is wrong: magic, type, order, a file seen twice, a path that is not UTF-8", async () => {
    const bad = (s: Buffer) => failure(scratch().dir, s);
    const magic = Buffer.from(chunk("f", "E"));
    magic.write("XBSTCK02", 0, "latin1");
    expect((await bad(magic)).message).toMatch(/at byte 0: expected the chunk magic XBSTCK01, found "XBSTCK02"/);
    expect((await bad(Buffer.concat([chunk("f", "E"), chunk("sparse.ibd", "S", bytes(8, 5))]))).message).toMatch(/at byte 15: unknown chunk type 0x53 \(not flagged ignorable\) for sparse.ibd/);
    expect((await bad(Buffer.concat([chunk("f", "P", bytes(10, 6), 0), chunk("f", "P", bytes(10, 6), 20)]))).message).toMatch(/a chunk of f starts at file offset 20, but the file has 10 bytes: chunks out of order/);
    expect((await bad(Buffer.concat([chunk("f", "E"), chunk("f", "P", bytes(3, 7))]))).message).toMatch(/f appears again after its end/);
    const latin = chunk("x", "E");
    latin[14] = 0xff;
    expect((await bad(latin)).message).toMatch(/is not valid UTF-8/);
  });

  it("skips an unknown chunk flagged ignorable", async () => {
    const { dir } = scratch();
    await extract(dir, Buffer.concat([chunk("f", "P", bytes(10, 8)), chunk("f", "X", bytes(100, 9), 0, 1), chunk("f", "E")]), 7);
    expect(readFileSync(join(dir, "f"))).toEqual(bytes(10, 8));
  });

  it("a stream cut short fails at its end: inside a chunk, or before a file's end", async () => {
    const lastEnd = chunk("xtrabackup_info", "E").length;
    expect((await failure(scratch().dir, good.subarray(0, good.length - lastEnd - 1))).message).toMatch(/the stream ends inside a chunk \(1 payload bytes of xtrabackup_info missing\)/);
    expect((await failure(scratch().dir, good.subarray(0, good.length - 3))).message).toMatch(/the stream ends inside a chunk \(its path is incomplete\)/);
    const noEnd = Buffer.concat([chunk("a", "P", bytes(3, 1)), chunk("b", "P", bytes(3, 1))]);
    expect((await failure(scratch().dir, noEnd)).message).toMatch(/the stream ends before the end of a, b/);
    const midHeader = chunk("a", "E").subarray(0, 9);
    expect((await failure(scratch().dir, midHeader)).message).toMatch(/its header is incomplete/);
  });

  it("after a failure every later write and the end fail the same way, and abort closes the open files", async () => {
    const { dir } = scratch();
    mkdirSync(dir);
    const x = new XbstreamExtractor({ dir });
    await x.write(chunk("open", "P", bytes(10, 1)));
    const bad = chunk("../x", "E");
    const first = await x.write(bad).catch((e: unknown) => e);
    expect(await x.write(chunk("y", "E")).catch((e: unknown) => e)).toBe(first);
    expect(await x.end().catch((e: unknown) => e)).toBe(first);
    await x.abort();
    expect(readFileSync(join(dir, "open"))).toEqual(bytes(10, 1));
  });

  describe("write-behind", () => {
    /** An extractor whose write-behind calls wait until released, recording the inode each fd was open on. */
    function controlled(everyBytes: number, startAfterBytes?: number) {
      const { dir } = scratch();
      mkdirSync(dir);
      const calls: Array<{ ino: number; release: (err?: Error) => void }> = [];
      const start = (fd: number) =>
        new Promise<void>((resolve, reject) => {
          calls.push({ ino: fstatSync(fd).ino, release: (err) => (err ? reject(err) : resolve()) });
        });
      return { dir, calls, x: new XbstreamExtractor({ dir, writeBehind: { everyBytes, start, ...(startAfterBytes === undefined ? {} : { startAfterBytes }) } }) };
    }
    const settled = async (p: Promise<unknown>) => Promise.race([p.then(() => true, () => true), new Promise((r) => setImmediate(() => r(false)))]);

    it("is asked for a file's fd once it has that many bytes unflushed, one call at a time, and the writes never wait for it", async () => {
      const { dir, x, ...wb } = controlled(100);
      await x.write(chunk("f", "P", bytes(99, 1), 0));
      expect(wb.calls).toHaveLength(0);
      await x.write(chunk("f", "P", bytes(1, 1), 99));
      expect(wb.calls.map((c) => c.ino)).toEqual([statSync(join(dir, "f")).ino]);
      // While that call runs, 300 more bytes start none, and the writes go on.
      await x.write(chunk("f", "P", bytes(300, 2), 100));
      expect(wb.calls).toHaveLength(1);
      wb.calls[0]!.release();
      await new Promise((r) => setImmediate(r));
      await x.write(chunk("g", "P", bytes(100, 3), 0));
      expect(wb.calls.map((c) => c.ino)).toEqual([statSync(join(dir, "f")).ino, statSync(join(dir, "g")).ino]);
      // The end waits for the call in flight before it closes the files.
      await x.write(Buffer.concat([chunk("f", "E"), chunk("g", "E")]));
      const end = x.end();
      expect(await settled(end)).toBe(false);
      wb.calls[1]!.release();
      await end;
      expect(readFileSync(join(dir, "f"))).toEqual(Buffer.concat([bytes(99, 1), bytes(1, 1), bytes(300, 2)]));
    });

    it("starts only once the extraction has written startAfterBytes in all, then covers the file's bytes since its start", async () => {
      const { dir, x, ...wb } = controlled(100, 450);
      await x.write(chunk("f", "P", bytes(200, 1), 0));
      await x.write(chunk("g", "P", bytes(200, 2), 0));
      expect(wb.calls).toHaveLength(0);
      await x.write(chunk("g", "P", bytes(49, 2), 200));
      expect(wb.calls).toHaveLength(0);
      await x.write(chunk("g", "P", bytes(1, 2), 249));
      expect(wb.calls.map((c) => c.ino)).toEqual([statSync(join(dir, "g")).ino]);
      wb.calls[0]!.release();
      await x.write(Buffer.concat([chunk("f", "E"), chunk("g", "E")]));
      await x.end();
    });

    it("a failed call fails the next write, naming its cause", async () => {
      const { x, ...wb } = controlled(10);
      await x.write(chunk("f", "P", bytes(10, 1), 0));
      wb.calls[0]!.release(new Error("dd: no space left"));
      await new Promise((r) => setImmediate(r));
      const err = await x.write(chunk("f", "E")).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(XbstreamError);
      expect((err as Error).message).toMatch(/writing the files extracted into .* back to disk failed: dd: no space left/);
      expect(await x.end().catch((e: unknown) => e)).toBe(err);
    });

    it("a call that fails after the last write fails the end", async () => {
      const { x, ...wb } = controlled(10);
      await x.write(Buffer.concat([chunk("f", "P", bytes(10, 1), 0), chunk("f", "E")]));
      const end = x.end();
      wb.calls[0]!.release(new Error("EIO"));
      expect(((await end.catch((e: unknown) => e)) as Error).message).toMatch(/back to disk failed: EIO/);
    });
  });
});
