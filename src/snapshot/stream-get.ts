import { connect as netConnect, type Socket } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { type ConnectionOptions, connect as tlsConnect } from "node:tls";
import type { ReadObjectOptions } from "./store.js";

/**
 * One object read as a single HTTP GET straight into a ring of buffers we own, for a restore.
 *
 * Why not the SDK's GetObject: its body is a Readable that hands out a new 64 KiB buffer per
 * socket read, each one a JavaScript event, a copy and garbage. On two cores a 10 GB restore is
 * CPU-bound (the store, this process and the extractor share them), and that cost per chunk made
 * the restore a third slower than `mc cat | mbstream`. Here the socket reads into our ring
 * (net's `onread`), a read takes whatever the kernel holds (up to a slot), and nothing is copied
 * or allocated per read. The request is signed by the SDK (a presigned URL), so credentials,
 * endpoints and path style stay the SDK's business; only the transfer is ours.
 *
 * A connection that breaks is resumed where it stopped (a Range request from the next byte), up
 * to `attempts` times in all, so a long restore does not start over for one reset.
 */
export interface StreamGetOptions extends ReadObjectOptions {
  /** A signed GET URL for the object, asked again for every attempt (signatures expire). */
  sign: () => Promise<URL>;
  /** Named in errors. */
  key: string;
  /** Bytes to read from the start of the object (the manifest's size). */
  size: number;
  /** The ring: `slots` buffers of `slotSize` bytes, reused. Memory is their product. */
  slots: number;
  slotSize: number;
  /** Connections tried in all, each resuming where the last stopped. */
  attempts: number;
  /** An attempt that receives nothing for this long fails (and is retried). */
  idleTimeoutMs: number;
  // signal, onRetry and hash: as for SnapshotStore.readObject. A hash's `update` may finish later
  // (on another thread, reading the ring's shared memory); the slot waits for it before reuse.
}

/** A failure worth another connection (a reset, a timeout, a 5xx), or not (a 4xx, a short object). */
export class StreamGetError extends Error {
  constructor(
    message: string,
    readonly retriable: boolean,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = "StreamGetError";
  }
}

/** Reads below this size are not worth a callback: the rest of a slot smaller than it is skipped. */
const MIN_READ = 64 * 1024;
const HEADER_LIMIT = 64 * 1024;
const ERROR_BODY_LIMIT = 16 * 1024;

/** Bytes `start` to `end` of a slot. */
interface Chunk {
  slot: number;
  start: number;
  end: number;
}

/**
 * The object's first `size` bytes in order. Each yielded buffer stays valid only until the next is
 * asked for; meanwhile the socket keeps filling the other slots.
 */
export async function* streamGet(o: StreamGetOptions): AsyncGenerator<Buffer> {
  if (o.slots < 2 || o.slotSize < MIN_READ * 2) throw new Error(`streamGet needs at least 2 slots of ${MIN_READ * 2} bytes`);
  if (o.size === 0) return;
  // Shared memory, so that the hashing thread reads the chunks where they landed (parallel-hash.ts).
  const ring = Array.from({ length: o.slots }, () => Buffer.from(new SharedArrayBuffer(o.slotSize)));
  const outstanding = new Array<number>(o.slots).fill(0);
  const queue: Chunk[] = [];
  let received = 0;
  let failure: Error | undefined;
  let finished = false;
  let wake: (() => void) | undefined;
  const notify = () => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  // Where the next read lands: slot `slot` from byte `fill`. Only ever moves forward, round the ring.
  let slot = 0;
  let fill = 0;
  let paused = false;
  let socket: Socket | undefined;

  let slotFreed: (() => void) | undefined;
  // Ours and the caller's: the reader giving up stops the transfer too (no retry, no socket left).
  const stop = new AbortController();
  const signal = o.signal ? AbortSignal.any([o.signal, stop.signal]) : stop.signal;
  // A slot is reused once the reader let go of its chunks and the hash (if any) has seen them.
  const release = (at: number) => {
    outstanding[at] = outstanding[at]! - 1;
    if (paused && outstanding[slot] === 0) {
      paused = false;
      socket?.resume();
      const w = slotFreed;
      slotFreed = undefined;
      w?.();
    }
  };

  // Body bytes in the current slot not yet given to the hash.
  let unhashed: Chunk | undefined;
  const hashUnhashed = () => {
    const c = unhashed;
    unhashed = undefined;
    if (!c || !o.hash) return;
    outstanding[c.slot] = outstanding[c.slot]! + 1;
    o.hash.update(ring[c.slot]!.subarray(c.start, c.end)).then(
      () => release(c.slot),
      (err: unknown) => {
        failure ??= err instanceof Error ? err : new Error(String(err));
        stop.abort(failure);
        notify();
      },
    );
  };

  /** One connection: GET from byte `received` to the end; resolves once every byte asked for arrived. */
  const attempt = (u: URL): Promise<void> =>
    new Promise<void>((resolve, reject) => {
      const start = received;
      let header: Buffer | undefined = Buffer.alloc(0);
      let expected = -1;
      let status = 0;
      let errorBody: Buffer[] | undefined;
      let settled = false;
      const done = (err?: Error): false => {
        if (!settled) {
          settled = true;
          signal.removeEventListener("abort", onAbort);
          sock.destroy();
          if (err) reject(err);
          else resolve();
        }
        return false;
      };
      const onAbort = () => done(signal.reason instanceof Error ? signal.reason : new Error("the download was stopped"));
      // Body bytes, in place in the ring, queued for the reader. Consecutive reads into one slot
      // join the chunk the reader has not taken yet, and the range the hash has not been given
      // yet: one write and one message per run of bytes, not per read.
      const take = (body: Buffer) => {
        const room = expected - (received - start);
        const length = Math.min(body.length, room);
        if (length) {
          const from = body.byteOffset - ring[slot]!.byteOffset;
          const last = queue[queue.length - 1];
          if (continues(last, slot, from)) last.end = from + length;
          else {
            queue.push({ slot, start: from, end: from + length });
            outstanding[slot] = outstanding[slot]! + 1;
          }
          if (unhashed && !continues(unhashed, slot, from)) hashUnhashed();
          if (unhashed) unhashed.end = from + length;
          else unhashed = { slot, start: from, end: from + length };
          received += length;
          notify();
        }
        if (received - start === expected) {
          hashUnhashed();
          finished = true;
          done();
          notify();
        }
      };
      // Where the next read lands; a full slot moves the ring on, and a slot the reader still holds stops reading.
      const advance = (nread: number): boolean => {
        fill += nread;
        if (o.slotSize - fill >= MIN_READ) return true;
        hashUnhashed();
        slot = (slot + 1) % o.slots;
        fill = 0;
        if (outstanding[slot]! > 0) paused = true;
        return !paused;
      };
      const onRead = (nread: number, buf: Buffer): boolean => {
        if (settled) return false;
        const data = buf.subarray(0, nread);
        if (header) {
          header = Buffer.concat([header, data]);
          const end = header.indexOf("\r\n\r\n");
          if (end < 0) {
            if (header.length > HEADER_LIMIT) return done(new StreamGetError(`${o.key}: the store's response headers exceed ${HEADER_LIMIT} bytes`, false));
            return advance(nread);
          }
          const head = parseHead(header.subarray(0, end).toString("latin1"));
          // The terminator ends in this read, so whatever follows it is here too, in the ring.
          const after = data.subarray(data.length - (header.length - end - 4));
          header = undefined;
          status = head.status;
          if (status !== 200 && status !== 206) {
            errorBody = [Buffer.from(after)];
            return advance(nread);
          }
          if (head.chunked || head.length === undefined) return done(new StreamGetError(`${o.key}: the store answered without a Content-Length; a snapshot read needs one`, false));
          if (status === 200 && start > 0) return done(new StreamGetError(`${o.key}: the store ignored the range from byte ${start}`, true));
          if (head.length < o.size - start) return done(new StreamGetError(`${o.key}: the object is shorter than the ${o.size} bytes its manifest records (the store has ${start + head.length})`, false));
          expected = o.size - start;
          take(after);
        } else if (errorBody) {
          if (errorBody.reduce((n, b) => n + b.length, 0) < ERROR_BODY_LIMIT) errorBody.push(Buffer.from(data));
        } else {
          take(data);
        }
        return settled ? false : advance(nread);
      };
      const port = Number(u.port) || (u.protocol === "https:" ? 443 : 80);
      const onread = { buffer: () => ring[slot]!.subarray(fill), callback: onRead };
      // TLS sockets take `onread` too (they are net sockets underneath); Node's types only list it for net.
      const tlsOptions: ConnectionOptions & { onread: typeof onread } = { host: u.hostname, port, servername: u.hostname, onread };
      const sock: Socket = u.protocol === "https:" ? tlsConnect(tlsOptions) : netConnect({ host: u.hostname, port, onread });
      socket = sock;
      sock.setNoDelay(true);
      sock.setTimeout(o.idleTimeoutMs, () => done(new StreamGetError(`${o.key}: nothing arrived from the store for ${o.idleTimeoutMs} ms at byte ${received}`, true)));
      sock.once("error", (err) => done(new StreamGetError(`${o.key}: the connection to ${u.host} failed at byte ${received}: ${err.message}`, true, { cause: err })));
      sock.once("close", () => {
        if (errorBody) done(statusError(o.key, o.size, status, Buffer.concat(errorBody).toString("utf8")));
        else done(new StreamGetError(`${o.key}: the store closed the connection at byte ${received} of ${o.size}`, true));
      });
      if (signal.aborted) return onAbort();
      signal.addEventListener("abort", onAbort, { once: true });
      sock.write(`GET ${u.pathname}${u.search} HTTP/1.1\r\nHost: ${u.host}\r\nRange: bytes=${start}-${o.size - 1}\r\nUser-Agent: statepilot\r\nConnection: close\r\n\r\n`);
    });

  const transfer = async () => {
    for (let tries = 1; !finished; tries++) {
      // A broken connection may have left the ring waiting on the reader: the next starts when it has room.
      if (paused) await new Promise<void>((r) => (slotFreed = r));
      try {
        const u = await o.sign().catch((err: unknown) => {
          throw new StreamGetError(`${o.key}: signing the request failed: ${err instanceof Error ? err.message : String(err)}`, false, { cause: err });
        });
        await attempt(u);
      } catch (err) {
        const e = err instanceof Error ? err : new Error(String(err));
        if (signal.aborted || !(e instanceof StreamGetError) || !e.retriable || tries >= o.attempts) throw e;
        o.onRetry?.(e, tries, received);
        await sleep(250 * 2 ** tries, undefined, { signal });
      }
    }
  };
  transfer().catch((err: unknown) => {
    failure = err instanceof Error ? err : new Error(String(err));
    notify();
  });

  let prev: Chunk | undefined;
  try {
    for (;;) {
      if (prev) release(prev.slot);
      prev = undefined;
      // Cancelled: at once, not after what is already queued.
      if (failure && o.signal?.aborted) throw failure;
      while (!queue.length && !failure && !finished) await new Promise<void>((r) => (wake = r));
      const next = queue.shift();
      if (next) {
        prev = next;
        yield ring[next.slot]!.subarray(next.start, next.end);
      } else if (failure) throw failure;
      else return;
    }
  } finally {
    // Stopped early (an error, or the reader gave up): the transfer and its connection go with it.
    if (!finished) {
      stop.abort(new Error("the reader stopped"));
      slotFreed?.();
      socket?.destroy();
    }
  }
}

/** Whether bytes landing in `slot` at `from` extend `c`. */
function continues(c: Chunk | undefined, slot: number, from: number): c is Chunk {
  return c !== undefined && c.slot === slot && c.end === from;
}

function parseHead(text: string): { status: number; length: number | undefined; chunked: boolean } {
  const lines = text.split("\r\n");
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? "")?.[1] ?? 0);
  let length: number | undefined;
  let chunked = false;
  for (const l of lines.slice(1)) {
    const i = l.indexOf(":");
    const name = l.slice(0, i).trim().toLowerCase();
    const value = l.slice(i + 1).trim();
    if (name === "content-length") length = Number(value);
    if (name === "transfer-encoding" && /chunked/i.test(value)) chunked = true;
  }
  return { status, length, chunked };
}

function statusError(key: string, size: number, status: number, body: string): StreamGetError {
  const code = /<Code>([^<]*)<\/Code>/.exec(body)?.[1];
  const message = /<Message>([^<]*)<\/Message>/.exec(body)?.[1];
  const what = status === 416 ? `the object is shorter than the ${size} bytes its manifest records` : `${code ?? "no error code"}${message ? `: ${message}` : ""}`;
  return new StreamGetError(`${key}: the store answered ${status || "something that is not HTTP"} (${what})`, status >= 500 || status === 429);
}
