import { execFileSync } from "node:child_process";
import { closeSync, mkdtempSync, openSync, read, rmSync, constants as fsc } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Readable } from "node:stream";

/**
 * Bytes read into the caller's buffer. A snapshot is gigabytes: read this way, the upload fills
 * a few part buffers it owns and reuses, where a Readable hands out a new 64 KiB buffer per read.
 * That garbage, not the copying, was the cost: every 64 MB of it started a full V8 collection of
 * the process's heap (on two cores, the streamed upload spent more CPU collecting than hashing).
 */
export interface ByteSource {
  /** Reads up to `into.length` bytes into `into`; resolves with the count, 0 at the end. Rejects on failure. */
  read(into: Buffer): Promise<number>;
}

/** Fills `into` as far as the source allows: fewer bytes only at the end. */
export async function readFull(source: ByteSource, into: Buffer): Promise<number> {
  let n = 0;
  while (n < into.length) {
    const got = await source.read(into.subarray(n));
    if (got === 0) break;
    n += got;
  }
  return n;
}

/** A whole buffer (a binlog segment, a test's bytes). */
export function bufferSource(data: Buffer): ByteSource {
  let at = 0;
  return {
    read: async (into) => {
      const n = data.copy(into, 0, at);
      at += n;
      return n;
    },
  };
}

/** A Readable (gzip's output, a download), copied chunk by chunk into the caller's buffers. */
export function readableSource(stream: Readable): ByteSource {
  const it = (stream as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
  let pending: Buffer | undefined;
  let ended = false;
  return {
    read: async (into) => {
      while (!pending?.length) {
        if (ended) return 0;
        const next = await it.next();
        if (next.done) {
          ended = true;
          return 0;
        }
        pending = Buffer.isBuffer(next.value) ? next.value : Buffer.from(next.value as Uint8Array);
      }
      const n = pending.copy(into);
      pending = pending.subarray(n);
      return n;
    },
  };
}

/** Calls `seen` with every byte range read (hashing, counting), in order. */
export function tapSource(source: ByteSource, seen: (chunk: Buffer) => void): ByteSource {
  return {
    read: async (into) => {
      const n = await source.read(into);
      if (n > 0) seen(into.subarray(0, n));
      return n;
    },
  };
}

/**
 * A named pipe for a child's output, read with fs.read into our buffers. Opened read-write first
 * (which never blocks on Linux), so the read end opens at once; the write end goes to the child
 * and ours is closed, so the reader sees the end when the child (and anything it forked) exits.
 * Lives in a private directory under the temporary directory and takes no space there.
 */
export class Fifo {
  private readonly dir: string;
  readonly path: string;
  private readFd: number | undefined;
  private writeFd: number | undefined;

  constructor(parent = tmpdir()) {
    this.dir = mkdtempSync(join(parent, "statepilot-fifo-"));
    this.path = join(this.dir, "stream");
    try {
      execFileSync("mkfifo", ["-m", "0600", this.path], { stdio: ["ignore", "ignore", "pipe"] });
      this.writeFd = openSync(this.path, fsc.O_RDWR);
      this.readFd = openSync(this.path, fsc.O_RDONLY);
    } catch (err) {
      this.close();
      throw new Error(`cannot make a named pipe in ${this.dir} (needs mkfifo from coreutils and a writable temporary directory): ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
  }

  /** The descriptor to give the child as its stdout. */
  get childEnd(): number {
    if (this.writeFd === undefined) throw new Error("the named pipe's write end was already handed over");
    return this.writeFd;
  }

  /** Call once the child has started: from then on only the child holds the write end. */
  handedOver(): void {
    if (this.writeFd !== undefined) closeSync(this.writeFd);
    this.writeFd = undefined;
  }

  source(): ByteSource {
    return {
      read: (into) =>
        new Promise<number>((resolve, reject) => {
          if (this.readFd === undefined) return reject(new Error("the named pipe is closed"));
          read(this.readFd, into, 0, into.length, null, (err, n) => (err ? reject(err) : resolve(n)));
        }),
    };
  }

  /** Closes both ends and removes the pipe; safe to call more than once. */
  close(): void {
    for (const fd of [this.readFd, this.writeFd]) if (fd !== undefined) closeSync(fd);
    this.readFd = this.writeFd = undefined;
    rmSync(this.dir, { recursive: true, force: true });
  }
}
