import { createHash, randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { ParallelHash } from "../../src/snapshot/parallel-hash.js";

describe("ParallelHash (sha256 on a worker thread)", () => {
  it("gives the digest of every chunk in order, from shared memory (reused after each update) or not", async () => {
    const data = randomBytes(3 * 1024 * 1024 + 11);
    const shared = Buffer.from(new SharedArrayBuffer(256 * 1024));
    const h = new ParallelHash();
    try {
      for (let at = 0; at < data.length; at += shared.length) {
        const n = data.copy(shared, 0, at, at + shared.length);
        // Odd chunks as ordinary buffers, even ones in the reused shared buffer.
        if ((at / shared.length) % 2) await h.update(Buffer.from(shared.subarray(0, n)));
        else await h.update(shared.subarray(0, n));
      }
      await h.update(Buffer.alloc(0));
      expect(await h.digest()).toBe(createHash("sha256").update(data).digest("hex"));
    } finally {
      await h.close();
    }
    const empty = new ParallelHash();
    try {
      expect(await empty.digest()).toBe(createHash("sha256").digest("hex"));
    } finally {
      await empty.close();
    }
  });

  it("fails every later update once its thread is gone, saying so", async () => {
    const h = new ParallelHash();
    await h.close();
    await expect(h.update(Buffer.from("x"))).rejects.toThrow(/hashing thread|terminated|exited/);
  });
});
