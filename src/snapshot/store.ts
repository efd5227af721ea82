import type { Readable } from "node:stream";
import type { StoreConfig } from "../config/schema.js";
import type { ByteSource } from "./byte-source.js";

export interface StoredObject {
  key: string;
  size: number;
  modified: Date;
}

export interface ReadObjectOptions {
  signal?: AbortSignal | undefined;
  /** A broken connection is being resumed from `offset`. */
  onRetry?: ((err: Error, attempt: number, offset: number) => void) | undefined;
  /**
   * Fed every byte read, in order, beside the reader (a hash on another thread): the store reuses
   * a buffer only once both are done with it.
   */
  hash?: { update(chunk: Uint8Array): Promise<void> } | undefined;
}

/** Where snapshots live. Keys are relative ("<cluster>/<id>/manifest.json"). */
export interface SnapshotStore {
  readonly description: string;
  /**
   * Copies `body` to `key`, reading it only as fast as the store takes it, into buffers the store
   * owns (memory is about partSize × 3). Nothing is visible under `key` unless every byte arrived:
   * a source that rejects fails the upload.
   */
  upload(key: string, body: ByteSource, opts: { partSize: number; signal?: AbortSignal }): Promise<void>;
  download(key: string): Promise<Readable>;
  /**
   * The object's first `size` bytes in order, read ahead into a few buffers the store reuses:
   * each yielded buffer is valid only until the next is asked for. Fails if the object is shorter.
   */
  readObject(key: string, size: number, opts?: ReadObjectOptions): AsyncIterable<Buffer>;
  putText(key: string, text: string): Promise<void>;
  getText(key: string): Promise<string | undefined>;
  list(prefix: string): Promise<StoredObject[]>;
  delete(key: string): Promise<void>;
  /** Removes partial uploads under a prefix (an upload whose abort could not reach the store); returns how many. */
  abortIncomplete(prefix: string): Promise<number>;
  close(): void;
}

export async function createStore(cfg: StoreConfig): Promise<SnapshotStore> {
  if (cfg.type === "local") {
    const { LocalStore } = await import("./local-store.js");
    return new LocalStore(cfg.path);
  }
  const { S3Store } = await import("./s3-store.js");
  return new S3Store(cfg);
}
