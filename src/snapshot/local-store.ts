import { createReadStream, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import type { Readable } from "node:stream";
import { open } from "node:fs/promises";
import { readFull, type ByteSource } from "./byte-source.js";
import type { ReadObjectOptions, SnapshotStore, StoredObject } from "./store.js";

/**
 * A snapshot holds every table, the account tables (password hashes) included: only the owner
 * reads it. Directories this store creates are 0700, files 0600 (whatever the umask).
 */
const PRIVATE_DIR = 0o700;
const PRIVATE_FILE = 0o600;

/** Snapshots as files under a directory; a partial upload is a `.partial` file, renamed when complete. */
export class LocalStore implements SnapshotStore {
  constructor(readonly root: string) {}

  get description(): string {
    return `local:${this.root}`;
  }

  private path(key: string): string {
    if (key.split("/").includes("..")) throw new Error(`invalid key ${JSON.stringify(key)}`);
    return join(this.root, key);
  }

  async upload(key: string, body: ByteSource, opts: { partSize: number; signal?: AbortSignal }): Promise<void> {
    const target = this.path(key);
    mkdirSync(dirname(target), { recursive: true, mode: PRIVATE_DIR });
    const partial = `${target}.partial`;
    const file = await open(partial, "w", PRIVATE_FILE);
    try {
      // One buffer, filled and written in turn: the disk is local, nothing to overlap.
      const buf = Buffer.allocUnsafe(Math.min(opts.partSize, 8 << 20));
      for (;;) {
        const n = await readFull(body, buf);
        opts.signal?.throwIfAborted();
        if (n === 0) break;
        await file.write(buf, 0, n);
        if (n < buf.length) break;
      }
      await file.close();
      renameSync(partial, target);
    } catch (err) {
      await file.close().catch(() => undefined);
      rmSync(partial, { force: true });
      throw err;
    }
  }

  async download(key: string): Promise<Readable> {
    const p = this.path(key);
    if (!existsSync(p)) throw new Error(`${this.description}: no object ${key}`);
    return createReadStream(p, { highWaterMark: 1 << 20 });
  }

  async *readObject(key: string, size: number, opts: ReadObjectOptions = {}): AsyncIterable<Buffer> {
    const file = await open(this.path(key), "r").catch((err: unknown) => {
      throw new Error(`${this.description}: cannot read ${key}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    });
    try {
      // Shared memory: a restore hashes each chunk on another thread without copying it.
      const buf = Buffer.from(new SharedArrayBuffer(Math.min(Math.max(size, 1), 8 << 20)));
      for (let at = 0; at < size; ) {
        opts.signal?.throwIfAborted();
        const { bytesRead } = await file.read(buf, 0, Math.min(buf.length, size - at), at);
        if (bytesRead === 0) throw new Error(`${this.description}: ${key} ends after ${at} bytes, shorter than the ${size} bytes its manifest records`);
        at += bytesRead;
        const chunk = buf.subarray(0, bytesRead);
        const hashed = opts.hash?.update(chunk);
        yield chunk;
        await hashed;
      }
    } finally {
      await file.close();
    }
  }

  async putText(key: string, text: string): Promise<void> {
    const p = this.path(key);
    mkdirSync(dirname(p), { recursive: true, mode: PRIVATE_DIR });
    writeFileSync(`${p}.partial`, text, { mode: PRIVATE_FILE });
    renameSync(`${p}.partial`, p);
  }

  async getText(key: string): Promise<string | undefined> {
    try {
      return readFileSync(this.path(key), "utf8");
    } catch {
      return undefined;
    }
  }

  async list(prefix: string): Promise<StoredObject[]> {
    const out: StoredObject[] = [];
    const walk = (dir: string) => {
      if (!existsSync(dir)) return;
      for (const e of readdirSync(dir, { withFileTypes: true })) {
        const p = join(dir, e.name);
        if (e.isDirectory()) walk(p);
        else if (!e.name.endsWith(".partial")) {
          const key = relative(this.root, p);
          if (key.startsWith(prefix)) {
            const st = statSync(p);
            out.push({ key, size: st.size, modified: st.mtime });
          }
        }
      }
    };
    walk(this.root);
    return out;
  }

  async delete(key: string): Promise<void> {
    rmSync(this.path(key), { force: true });
    // Remove the snapshot's directory once empty.
    try {
      const d = dirname(this.path(key));
      if (readdirSync(d).length === 0) rmSync(d, { recursive: true });
    } catch {
      // already gone
    }
  }

  async abortIncomplete(prefix: string): Promise<number> {
    let n = 0;
    const walk = (dir: string) => {
      if (!existsSync(dir)) return;
      for (const e of readdirSync(dir, { withFileTypes: true })) {
        const p = join(dir, e.name);
        if (e.isDirectory()) walk(p);
        else if (e.name.endsWith(".partial") && relative(this.root, p).startsWith(prefix)) {
          rmSync(p, { force: true });
          n++;
        }
      }
    };
    walk(this.root);
    return n;
  }

  close(): void {}
}
