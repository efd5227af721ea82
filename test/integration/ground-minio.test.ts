import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GetObjectCommand, PutObjectCommand } from "@aws-sdk/client-s3";
import { MinioServer } from "../../src/lab/minio-server.js";

describe("real MinIO through @aws-sdk/client-s3", () => {
  const minio = new MinioServer("ground");

  beforeAll(async () => {
    console.log(`minio: ${MinioServer.version()}`);
    await minio.start();
  }, 120_000);
  afterAll(async () => {
    await minio.destroy();
  }, 60_000);

  it("puts and gets an object with a path-style endpoint", async () => {
    const s3 = minio.client();
    try {
      const body = `hello ${Date.now()}`;
      await s3.send(new PutObjectCommand({ Bucket: "ground", Key: "dir/hello.txt", Body: body }));
      const got = await s3.send(new GetObjectCommand({ Bucket: "ground", Key: "dir/hello.txt" }));
      expect(await got.Body?.transformToString()).toBe(body);
    } finally {
      s3.destroy();
    }
  });
});
