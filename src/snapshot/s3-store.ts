import { AbortMultipartUploadCommand, ListMultipartUploadsCommand, DeleteObjectCommand, GetObjectCommand, ListObjectsV2Command, NoSuchKey, PutObjectCommand, S3Client, type S3ClientConfig } from "@aws-sdk/client-s3";
import type { Readable } from "node:stream";
import { getSignedUrl } from "@aws-sdk/s3-request-presigner";
import type { StoreConfig } from "../config/schema.js";
import type { ByteSource } from "./byte-source.js";
import { uploadMultipart } from "./multipart.js";
import { streamGet } from "./stream-get.js";
import type { ReadObjectOptions, SnapshotStore, StoredObject } from "./store.js";

/**
 * Parts on the wire at once. Two keep the link busy while the next part fills (measured against
 * MinIO on two cores: more parts, or larger ones, cost the server more CPU than they gained).
 */
const PARTS_IN_FLIGHT = 2;
/**
 * A restore reads the object as one GET into a ring of 32 slots of 1 MiB (streamGet): each socket
 * read takes what the kernel holds, up to a slot. Measured against MinIO at 10 GB on two cores,
 * the earlier ranged GETs through the SDK (8 MiB, three in flight) cost this process twice the CPU
 * and the store a third more, and the restore was that much slower than `mc cat`. 32 MiB rather
 * than 8: a slot waits for the hashing thread too, and on two busy cores that thread is sometimes
 * not scheduled for a while (one profiling run: 32.9 s with 8 slots, 27.6 s with 32, `mc` 33.3 s).
 */
const RING_SLOTS = 32;
const RING_SLOT_SIZE = 1024 * 1024;
/** Connections a restore's read may use in all, each resuming where the last one broke off. */
const READ_ATTEMPTS = 4;
const READ_IDLE_TIMEOUT_MS = 120_000;
/** A signed URL is used at once; this only bounds its life if it leaked. */
const SIGNED_URL_SECONDS = 900;

type S3Config = Extract<StoreConfig, { type: "s3" }>;

/** S3 (or MinIO): snapshots as multipart uploads that are aborted, not left behind, on failure. */
export class S3Store implements SnapshotStore {
  private readonly client: S3Client;

  constructor(private readonly cfg: S3Config) {
    // Parts are sent once each; flexible checksums (CRC32 per part) only when the service requires
    // them, which saves a pass over every part. Our own sha256 covers the whole object.
    const conf: S3ClientConfig = { region: cfg.region, forcePathStyle: cfg.forcePathStyle, maxAttempts: 3, requestChecksumCalculation: "WHEN_REQUIRED", responseChecksumValidation: "WHEN_REQUIRED" };
    if (cfg.endpoint) conf.endpoint = cfg.endpoint;
    if (cfg.accessKeyId && cfg.secretAccessKey) conf.credentials = { accessKeyId: cfg.accessKeyId, secretAccessKey: cfg.secretAccessKey };
    this.client = new S3Client(conf);
    // A part's body is not hashed again for the request's signature: the snapshot's own sha256
    // (in its manifest, checked by every restore) covers every byte end to end, and a second pass
    // over each part cost as much CPU as the first, on the node and again on the server verifying
    // it. The AWS CLI and SDKs send S3 payloads unsigned over TLS in the same way.
    this.client.middlewareStack.add(
      (next, context) => async (args) => {
        const req = args.request as { headers?: Record<string, string> } | undefined;
        if (context.commandName === "UploadPartCommand" && req?.headers) req.headers["x-amz-content-sha256"] = "UNSIGNED-PAYLOAD";
        return next(args);
      },
      { step: "build", name: "statepilotUnsignedParts" },
    );
  }

  get description(): string {
    return `s3://${this.cfg.bucket}/${this.cfg.prefix}${this.cfg.endpoint ? ` at ${this.cfg.endpoint}` : ""}`;
  }

  private key(k: string): string {
    return this.cfg.prefix ? `${this.cfg.prefix.replace(/\/+$/, "")}/${k}` : k;
  }

  private encryption(): { ServerSideEncryption?: "AES256" | "aws:kms"; SSEKMSKeyId?: string } {
    return {
      ...(this.cfg.serverSideEncryption ? { ServerSideEncryption: this.cfg.serverSideEncryption } : {}),
      ...(this.cfg.kmsKeyId ? { SSEKMSKeyId: this.cfg.kmsKeyId } : {}),
    };
  }

  async upload(key: string, body: ByteSource, opts: { partSize: number; signal?: AbortSignal }): Promise<void> {
    await uploadMultipart({ client: this.client, bucket: this.cfg.bucket, key: this.key(key), source: body, partSize: opts.partSize, concurrency: PARTS_IN_FLIGHT, extra: this.encryption(), signal: opts.signal });
  }

  readObject(key: string, size: number, opts: ReadObjectOptions = {}): AsyncIterable<Buffer> {
    const full = this.key(key);
    return streamGet({
      ...opts,
      sign: async () => new URL(await getSignedUrl(this.client, new GetObjectCommand({ Bucket: this.cfg.bucket, Key: full }), { expiresIn: SIGNED_URL_SECONDS })),
      key: full,
      size,
      slots: RING_SLOTS,
      slotSize: RING_SLOT_SIZE,
      attempts: READ_ATTEMPTS,
      idleTimeoutMs: READ_IDLE_TIMEOUT_MS,
    });
  }

  async download(key: string): Promise<Readable> {
    const res = await this.client.send(new GetObjectCommand({ Bucket: this.cfg.bucket, Key: this.key(key) }));
    return res.Body as Readable;
  }

  async putText(key: string, text: string): Promise<void> {
    await this.client.send(new PutObjectCommand({ Bucket: this.cfg.bucket, Key: this.key(key), Body: text, ContentType: "application/json", ...this.encryption() }));
  }

  async getText(key: string): Promise<string | undefined> {
    try {
      const res = await this.client.send(new GetObjectCommand({ Bucket: this.cfg.bucket, Key: this.key(key) }));
      return await res.Body!.transformToString();
    } catch (err) {
      if (err instanceof NoSuchKey || (err as { name?: string }).name === "NoSuchKey") return undefined;
      throw err;
    }
  }

  async list(prefix: string): Promise<StoredObject[]> {
    const out: StoredObject[] = [];
    let token: string | undefined;
    const base = this.key("");
    do {
      const res = await this.client.send(new ListObjectsV2Command({ Bucket: this.cfg.bucket, Prefix: this.key(prefix), ContinuationToken: token }));
      for (const o of res.Contents ?? []) out.push({ key: (o.Key ?? "").slice(base.length), size: o.Size ?? 0, modified: o.LastModified ?? new Date(0) });
      token = res.IsTruncated ? res.NextContinuationToken : undefined;
    } while (token);
    return out;
  }

  async delete(key: string): Promise<void> {
    await this.client.send(new DeleteObjectCommand({ Bucket: this.cfg.bucket, Key: this.key(key) }));
  }

  async abortIncomplete(prefix: string): Promise<number> {
    let n = 0;
    let keyMarker: string | undefined;
    let uploadIdMarker: string | undefined;
    do {
      const res = await this.client.send(new ListMultipartUploadsCommand({ Bucket: this.cfg.bucket, Prefix: this.key(prefix), KeyMarker: keyMarker, UploadIdMarker: uploadIdMarker }));
      for (const u of res.Uploads ?? []) {
        await this.client.send(new AbortMultipartUploadCommand({ Bucket: this.cfg.bucket, Key: u.Key!, UploadId: u.UploadId! }));
        n++;
      }
      keyMarker = res.IsTruncated ? res.NextKeyMarker : undefined;
      uploadIdMarker = res.IsTruncated ? res.NextUploadIdMarker : undefined;
    } while (keyMarker);
    return n;
  }

  close(): void {
    this.client.destroy();
  }
}
