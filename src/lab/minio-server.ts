import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, realpathSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { CreateBucketCommand, S3Client } from "@aws-sdk/client-s3";
import { findBinary } from "../binaries.js";
import { ManagedProcess } from "./process.js";
import { freePorts } from "./ports.js";
import { waitFor } from "./wait.js";

/** A real MinIO server on loopback with one bucket, and credentials made up per run. */
export class MinioServer {
  private proc: ManagedProcess | undefined;
  readonly dir: string;
  readonly host = "127.0.0.1";
  port = 0;
  private consolePort = 0;
  readonly accessKeyId = `lab${randomBytes(6).toString("hex")}`;
  readonly secretAccessKey = randomBytes(18).toString("base64url");

  constructor(readonly bucket = "statepilot", dir?: string) {
    this.dir = dir ?? mkdtempSync(join(tmpdir(), "statepilot-minio-"));
  }

  /** The pinned module version (from the installer's cache name) and what the binary says of itself. */
  static version(): string {
    const bin = findBinary("minio");
    const module = /minio-(v?[\w.-]+)$/.exec(realpathSync(bin))?.[1];
    const own = execFileSync(bin, ["--version"], { encoding: "utf8" }).split("\n")[0] ?? "";
    return module ? `github.com/minio/minio@v${module.replace(/^v/, "")} (${own})` : own;
  }

  get endpoint(): string {
    return `http://${this.host}:${this.port}`;
  }

  get pid(): number | undefined {
    return this.proc?.running ? this.proc.pid : undefined;
  }

  client(): S3Client {
    return new S3Client({
      endpoint: this.endpoint,
      region: "us-east-1",
      forcePathStyle: true,
      credentials: { accessKeyId: this.accessKeyId, secretAccessKey: this.secretAccessKey },
    });
  }

  async start(timeoutMs = 90_000): Promise<this> {
    if (this.proc?.running) return this;
    if (!this.port) [this.port, this.consolePort] = (await freePorts(2, this.host)) as [number, number];
    mkdirSync(join(this.dir, "data"), { recursive: true });
    this.proc = await ManagedProcess.start(
      "minio",
      findBinary("minio"),
      ["server", join(this.dir, "data"), "--address", `${this.host}:${this.port}`, "--console-address", `${this.host}:${this.consolePort}`, "--quiet"],
      {
        logFile: join(this.dir, "minio.log"),
        env: {
          ...process.env,
          MINIO_ROOT_USER: this.accessKeyId,
          MINIO_ROOT_PASSWORD: this.secretAccessKey,
          MINIO_BROWSER: "off",
          MINIO_UPDATE: "off",
          MINIO_CI_CD: "1",
        },
      },
    );
    const proc = this.proc;
    await waitFor(async () => (await fetch(`${this.endpoint}/minio/health/ready`, { signal: AbortSignal.timeout(5_000) })).ok, {
      timeoutMs,
      what: `minio on ${this.endpoint}`,
      detail: () => proc.logTail(),
      abortIf: () => (proc.running ? undefined : `minio exited (${JSON.stringify(proc.exitStatus)})`),
    });
    const s3 = this.client();
    try {
      await s3.send(new CreateBucketCommand({ Bucket: this.bucket }));
    } catch (err) {
      if (!(err instanceof Error && /BucketAlreadyOwnedByYou|BucketAlreadyExists/.test(err.name))) throw err;
    } finally {
      s3.destroy();
    }
    return this;
  }

  async stop(): Promise<void> {
    await this.proc?.stop("SIGTERM", 10_000);
  }

  /** SIGKILL: the store is gone at once (a graceful stop may serve for seconds more on a busy machine). */
  async kill(): Promise<void> {
    await this.proc?.stop("SIGKILL", 10_000);
  }

  async destroy(): Promise<void> {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
