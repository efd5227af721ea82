import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { Readable } from "node:stream";
import { describe, expect, it } from "vitest";
import { bufferSource, Fifo, readableSource, readFull, tapSource } from "../../src/snapshot/byte-source.js";

describe("byte sources", () => {
  it("readFull fills the buffer across short reads and returns less only at the end", async () => {
    const chunks = [Buffer.from("ab"), Buffer.from("cde"), Buffer.from("f"), Buffer.from("ghij")];
    const src = readableSource(Readable.from(chunks));
    const a = Buffer.alloc(4);
    const b = Buffer.alloc(4);
    const c = Buffer.alloc(4);
    expect(await readFull(src, a)).toBe(4);
    expect(await readFull(src, b)).toBe(4);
    expect(await readFull(src, c)).toBe(2);
    expect(Buffer.concat([a, b, c.subarray(0, 2)]).toString()).toBe("abcdefghij");
    expect(await readFull(src, c)).toBe(0);
  });

  it("a stream's failure rejects the read that meets it", async () => {
    const failing = new Readable({
      read() {
        this.destroy(new Error("disk gone"));
      },
    });
    await expect(readFull(readableSource(failing), Buffer.alloc(8))).rejects.toThrow("disk gone");
  });

  it("tapSource sees every byte once, in order", async () => {
    const data = Buffer.from("x".repeat(1000) + "y".repeat(777));
    const hash = createHash("sha256");
    let seen = 0;
    const src = tapSource(bufferSource(data), (b) => {
      hash.update(b);
      seen += b.length;
    });
    const buf = Buffer.alloc(300);
    while ((await readFull(src, buf)) > 0);
    expect(seen).toBe(data.length);
    expect(hash.digest("hex")).toBe(createHash("sha256").update(data).digest("hex"));
  });

  it("a named pipe carries a child's output and ends when the child exits, then leaves nothing behind", async () => {
    const fifo = new Fifo();
    const path = fifo.path;
    const child = spawn("sh", ["-c", "head -c 300000 /dev/zero | tr '\\0' 'z'; printf end"], { stdio: ["ignore", fifo.childEnd, "inherit"] });
    fifo.handedOver();
    const exited = new Promise<number | null>((r) => child.once("close", r));
    const out: Buffer[] = [];
    const src = fifo.source();
    const buf = Buffer.alloc(65_536);
    for (let n = await src.read(buf); n > 0; n = await src.read(buf)) out.push(Buffer.from(buf.subarray(0, n)));
    expect(await exited).toBe(0);
    const text = Buffer.concat(out).toString();
    expect(text.length).toBe(300_003);
    expect(text.endsWith("zzend")).toBe(true);
    fifo.close();
    expect(existsSync(path)).toBe(false);
    fifo.close();
  });
});
