import { createHash, randomBytes } from "node:crypto";
import { ListMultipartUploadsCommand } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MinioServer } from "../../src/lab/minio-server.js";
import { bufferSource, type ByteSource } from "../../src/snapshot/byte-source.js";
import { S3Store } from "../../src/snapshot/s3-store.js";

const MiB = 1024 * 1024;

describe("S3Store.upload against a real MinIO (pooled multipart, unsigned parts)", () => {
  const minio = new MinioServer("multipart");
  let store: S3Store;

  beforeAll(async () => {
    await minio.start();
    store = new S3Store({ type: "s3", bucket: "multipart", prefix: "t", region: "us-east-1", endpoint: minio.endpoint, forcePathStyle: true, accessKeyId: minio.accessKeyId, secretAccessKey: minio.secretAccessKey });
  }, 120_000);
  afterAll(async () => {
    store?.close();
    await minio.destroy();
  }, 60_000);

  const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");
  async function fetched(key: string): Promise<Buffer> {
    const chunks: Buffer[] = [];
    for await (const c of (await store.download(key)) as AsyncIterable<Buffer>) chunks.push(c);
    return Buffer.concat(chunks);
  }
  async function openUploads(): Promise<number> {
    const s3 = minio.client();
    try {
      return ((await s3.send(new ListMultipartUploadsCommand({ Bucket: "multipart" }))).Uploads ?? []).length;
    } finally {
      s3.destroy();
    }
  }

  it("stores exactly the source's bytes: one PUT when it fits a part, parts otherwise (also on a part boundary)", async () => {
    for (const size of [0, 1000, 5 * MiB, 12 * MiB + 17]) {
      const data = randomBytes(size);
      await store.upload(`o-${size}`, bufferSource(data), { partSize: 5 * MiB });
      const back = await fetched(`o-${size}`);
      expect(back.length).toBe(size);
      expect({ size, sha: sha(back) }).toEqual({ size, sha: sha(data) });
    }
    expect(await openUploads()).toBe(0);
  });

  it("readObject reads exactly the object's bytes across ranges read ahead, and says when the object is shorter than asked", async () => {
    const data = randomBytes(40 * MiB + 17);
    await store.upload("ranged", bufferSource(data), { partSize: 16 * MiB });
    const hash = createHash("sha256");
    let n = 0;
    for await (const chunk of store.readObject("ranged", data.length)) {
      hash.update(chunk);
      n += chunk.length;
    }
    expect(n).toBe(data.length);
    expect(hash.digest("hex")).toBe(sha(data));
    let empty = 0;
    for await (const chunk of store.readObject("o-0", 0)) empty += chunk.length;
    expect(empty).toBe(0);
    const short = async () => {
      for await (const _ of store.readObject("ranged", data.length + 1000)) {
        // read to the end
      }
    };
    await expect(short()).rejects.toThrow(`shorter than the ${data.length + 1000} bytes its manifest records`);
  });

  it("a source that fails after some parts leaves no object and no open multipart upload", async () => {
    const data = randomBytes(11 * MiB);
    const inner = bufferSource(data);
    let served = 0;
    const failing: ByteSource = {
      read: async (into) => {
        if (served > 10 * MiB) throw new Error("mariabackup failed (exit 1)");
        const n = await inner.read(into.subarray(0, Math.min(into.length, 256 * 1024)));
        served += n;
        return n;
      },
    };
    await expect(store.upload("failed", failing, { partSize: 5 * MiB })).rejects.toThrow("mariabackup failed (exit 1)");
    expect((await store.list("failed")).length).toBe(0);
    expect(await openUploads()).toBe(0);
  });

  it("an aborted upload stops and removes its parts", async () => {
    const ac = new AbortController();
    let reads = 0;
    const endless: ByteSource = {
      read: async (into) => {
        if (++reads === 40) ac.abort(new Error("snapshot cancelled"));
        into.fill(7, 0, Math.min(into.length, 256 * 1024));
        return Math.min(into.length, 256 * 1024);
      },
    };
    await expect(store.upload("aborted", endless, { partSize: 5 * MiB, signal: ac.signal })).rejects.toThrow("snapshot cancelled");
    expect((await store.list("aborted")).length).toBe(0);
    expect(await openUploads()).toBe(0);
  });
});
