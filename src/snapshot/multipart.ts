import { AbortMultipartUploadCommand, CompleteMultipartUploadCommand, CreateMultipartUploadCommand, PutObjectCommand, UploadPartCommand, type CompletedPart, type S3Client } from "@aws-sdk/client-s3";
import { readFull, type ByteSource } from "./byte-source.js";

export interface MultipartOptions {
  client: S3Client;
  bucket: string;
  key: string;
  source: ByteSource;
  partSize: number;
  /** Parts in flight at once; memory is partSize × (concurrency + 1), allocated once. */
  concurrency: number;
  /** Server-side encryption headers for the object. */
  extra?: { ServerSideEncryption?: "AES256" | "aws:kms"; SSEKMSKeyId?: string };
  signal?: AbortSignal | undefined;
}

/**
 * Uploads a source of unknown length: a PUT when it fits in one part, else a multipart upload
 * whose part buffers are allocated once and reused (no per-chunk garbage), `concurrency` parts on
 * the wire while the next one fills. Nothing is visible under the key unless every byte arrived:
 * on any failure (the source's, a part's, the signal) the multipart upload is aborted.
 */
export async function uploadMultipart(o: MultipartOptions): Promise<void> {
  const { client, bucket, key } = o;
  // Buffers whose part is stored, free for the next; at most concurrency + 1 are ever allocated.
  const pool: Buffer[] = [];
  const first = Buffer.allocUnsafe(o.partSize);
  const firstLen = await readFull(o.source, first);
  o.signal?.throwIfAborted();
  if (firstLen < o.partSize) {
    await client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: first.subarray(0, firstLen), ContentLength: firstLen, ...o.extra }), { abortSignal: o.signal });
    return;
  }
  const { UploadId } = await client.send(new CreateMultipartUploadCommand({ Bucket: bucket, Key: key, ...o.extra }), { abortSignal: o.signal });
  if (!UploadId) throw new Error(`the store started no multipart upload for ${key} (no UploadId in its answer)`);
  const parts: CompletedPart[] = [];
  const inflight = new Set<Promise<void>>();
  let failure: unknown;
  const send = (buf: Buffer, len: number, partNumber: number) => {
    const sent: Promise<void> = client
      .send(new UploadPartCommand({ Bucket: bucket, Key: key, UploadId, PartNumber: partNumber, Body: buf.subarray(0, len), ContentLength: len }), { abortSignal: o.signal })
      .then(
        (res) => {
          parts.push({ PartNumber: partNumber, ETag: res.ETag });
          pool.push(buf);
        },
        (err: unknown) => {
          failure ??= err;
        },
      )
      .finally(() => inflight.delete(sent));
    inflight.add(sent);
  };
  try {
    send(first, firstLen, 1);
    for (let partNumber = 2; ; partNumber++) {
      if (partNumber > 10_000) throw new Error(`${key}: more than 10,000 parts of ${o.partSize} bytes; set a larger part size (mysql.snapshots.partSize)`);
      while (!failure && inflight.size >= o.concurrency) await Promise.race(inflight);
      if (failure) throw failure;
      const buf = pool.pop() ?? Buffer.allocUnsafe(o.partSize);
      const len = await readFull(o.source, buf);
      o.signal?.throwIfAborted();
      if (len === 0) {
        pool.push(buf);
        break;
      }
      send(buf, len, partNumber);
      if (len < o.partSize) break;
    }
    await Promise.all(inflight);
    if (failure) throw failure;
    parts.sort((a, b) => (a.PartNumber ?? 0) - (b.PartNumber ?? 0));
    await client.send(new CompleteMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId, MultipartUpload: { Parts: parts } }), { abortSignal: o.signal });
  } catch (err) {
    await Promise.allSettled(inflight);
    // Without the signal: an aborted snapshot must still remove its parts.
    await client.send(new AbortMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId })).catch(() => undefined);
    throw err;
  }
}
