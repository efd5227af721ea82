import { mkdtempSync, rmSync, statSync } from "node:fs";
import { createHash } from "node:crypto";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { bufferSource } from "../../src/snapshot/byte-source.js";
import { LocalStore } from "../../src/snapshot/local-store.js";
import { ParallelHash } from "../../src/snapshot/parallel-hash.js";

describe("local snapshot store", () => {
  let dir = "";
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it("keeps snapshots (which hold password hashes) readable by their owner only, whatever the umask", async () => {
    dir = mkdtempSync(join(tmpdir(), "statepilot-store-"));
    const old = process.umask(0o022);
    try {
      const store = new LocalStore(join(dir, "root"));
      await store.upload("c1/s1/backup.xbstream", bufferSource(Buffer.from("data")), { partSize: 5 << 20 });
      await store.putText("c1/s1/manifest.json", "{}");
      expect(statSync(join(dir, "root", "c1", "s1", "backup.xbstream")).mode & 0o777).toBe(0o600);
      expect(statSync(join(dir, "root", "c1", "s1", "manifest.json")).mode & 0o777).toBe(0o600);
      expect(statSync(join(dir, "root", "c1", "s1")).mode & 0o777).toBe(0o700);
      expect(statSync(join(dir, "root", "c1")).mode & 0o777).toBe(0o700);
    } finally {
      process.umask(old);
    }
  });

  it("readObject yields the object's bytes in order and fails by name when it is shorter than asked", async () => {
    dir = mkdtempSync(join(tmpdir(), "statepilot-store-"));
    const store = new LocalStore(join(dir, "root"));
    const data = Buffer.alloc(9 * 1024 * 1024 + 5, 3);
    data[data.length - 1] = 9;
    await store.upload("c1/s2/backup.xbstream", bufferSource(data), { partSize: 5 << 20 });
    const parts: Buffer[] = [];
    const beside = new ParallelHash();
    try {
      for await (const chunk of store.readObject("c1/s2/backup.xbstream", data.length, { hash: beside })) parts.push(Buffer.from(chunk));
      expect(await beside.digest()).toBe(createHash("sha256").update(data).digest("hex"));
    } finally {
      await beside.close();
    }
    expect(Buffer.concat(parts).equals(data)).toBe(true);
    const short = async () => {
      for await (const _ of store.readObject("c1/s2/backup.xbstream", data.length + 1)) {
        // to the end
      }
    };
    await expect(short()).rejects.toThrow(`ends after ${data.length} bytes, shorter than the ${data.length + 1} bytes its manifest records`);
  });
});
