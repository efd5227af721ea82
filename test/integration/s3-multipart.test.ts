import { createHash, randomBytes } from "node:crypto";
import { type AddressInfo, connect, createServer } from "node:net";
import { ListMultipartUploadsCommand } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MinioServer } from "../../src/lab/minio-server.js";
import { bufferSource, type ByteSource } from "../../src/snapshot/byte-source.js";
import { ParallelHash } from "../../src/snapshot/parallel-hash.js";
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

  it("readObject reads exactly the object's bytes through its ring (fast and slow readers), and says when the object is shorter than asked", async () => {
    const data = randomBytes(40 * MiB + 17);
    await store.upload("ranged", bufferSource(data), { partSize: 16 * MiB });
    // A slow reader holds each chunk across a turn of the event loop: the ring fills and the
    // socket waits for it; whatever the pace, the bytes come out the same.
    // The slow pass also hands the store a hash on another thread, fed beside the reader.
    for (const slow of [false, true]) {
      const hash = createHash("sha256");
      const beside = new ParallelHash();
      let n = 0;
      try {
        for await (const chunk of store.readObject("ranged", data.length, slow ? { hash: beside } : {})) {
          hash.update(chunk);
          n += chunk.length;
          if (slow) await new Promise((r) => setImmediate(r));
        }
        expect({ slow, n }).toEqual({ slow, n: data.length });
        expect(hash.digest("hex")).toBe(sha(data));
        if (slow) expect(await beside.digest()).toBe(sha(data));
      } finally {
        await beside.close();
      }
    }
    await expect(
      (async () => {
        for await (const _ of store.readObject("missing", 10)) {
          // never reached
        }
      })(),
    ).rejects.toThrow(/t\/missing: the store answered 404 \(NoSuchKey/);
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

  it("readObject resumes a cut connection from the next byte (a Range request), and stops when its signal aborts", async () => {
    const data = randomBytes(24 * MiB + 5);
    await store.upload("resumed", bufferSource(data), { partSize: 16 * MiB });
    // A proxy in front of MinIO that cuts the first connection once 3 MiB went through it.
    const target = new URL(minio.endpoint);
    const ranges: string[] = [];
    let connections = 0;
    const proxy = createServer((client) => {
      const first = connections++ === 0;
      const upstream = connect(Number(target.port), target.hostname);
      let sent = 0;
      client.once("data", (d: Buffer) => ranges.push(/\r\nRange: (bytes=\d+-\d+)\r\n/.exec(d.toString("latin1"))?.[1] ?? "none"));
      client.pipe(upstream);
      upstream.on("data", (d: Buffer) => {
        sent += d.length;
        client.write(d);
        if (first && sent > 3 * MiB) {
          client.destroy();
          upstream.destroy();
        }
      });
      upstream.on("end", () => client.end());
      upstream.on("error", () => client.destroy());
      client.on("error", () => upstream.destroy());
    });
    await new Promise<void>((r) => proxy.listen(0, "127.0.0.1", r));
    const viaProxy = new S3Store({ type: "s3", bucket: "multipart", prefix: "t", region: "us-east-1", endpoint: `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`, forcePathStyle: true, accessKeyId: minio.accessKeyId, secretAccessKey: minio.secretAccessKey });
    try {
      const retries: number[] = [];
      const hash = createHash("sha256");
      let n = 0;
      for await (const chunk of viaProxy.readObject("resumed", data.length, { onRetry: (_e, _a, offset) => retries.push(offset) })) {
        hash.update(chunk);
        n += chunk.length;
      }
      expect(n).toBe(data.length);
      expect(hash.digest("hex")).toBe(sha(data));
      expect(retries.length).toBe(1);
      expect(ranges).toEqual([`bytes=0-${data.length - 1}`, `bytes=${retries[0]}-${data.length - 1}`]);
      expect(retries[0]).toBeGreaterThan(2 * MiB);

      const ac = new AbortController();
      const read = async () => {
        for await (const _ of viaProxy.readObject("resumed", data.length, { signal: ac.signal })) ac.abort(new Error("restore cancelled"));
      };
      await expect(read()).rejects.toThrow("restore cancelled");
    } finally {
      viaProxy.close();
      await new Promise((r) => proxy.close(r));
    }
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
