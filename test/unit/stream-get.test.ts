import { createHash, randomBytes } from "node:crypto";
import { createServer, type Server } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { streamGet } from "../../src/snapshot/stream-get.js";

const KiB = 1024;

/** An HTTP server on loopback that answers any request with `body`, written in `piece`-sized writes a turn of the event loop apart. */
async function serve(body: Buffer, piece: number): Promise<{ server: Server; url: URL; sent: Promise<void> }> {
  let sentResolve: () => void = () => undefined;
  const sent = new Promise<void>((r) => (sentResolve = r));
  const server = createServer((sock) => {
    sock.setNoDelay(true);
    sock.once("data", () => {
      sock.write(`HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n`);
      let at = 0;
      const next = () => {
        if (at >= body.length) {
          sock.end();
          sentResolve();
          return;
        }
        sock.write(body.subarray(at, at + piece), () => setImmediate(next));
        at += piece;
      };
      next();
    });
    sock.on("error", () => undefined);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const address = server.address();
  if (!address || typeof address === "string") throw new Error("the test server has no port");
  return { server, url: new URL(`http://127.0.0.1:${address.port}/o`), sent };
}

describe("streamGet", () => {
  let server: Server | undefined;
  afterEach(async () => {
    await new Promise((r) => server?.close(r) ?? r(undefined));
    server = undefined;
  });

  it("joins the reads that pile up while the reader is busy: one chunk and one hash update per slot, not per read", async () => {
    // 600 KiB in 16 KiB writes (about 38 reads) into 4 slots of 256 KiB: it fits without wrapping.
    const body = randomBytes(600 * KiB);
    const s = await serve(body, 16 * KiB);
    server = s.server;
    const updates: Buffer[] = [];
    let hashed = 0;
    let allHashed: () => void = () => undefined;
    const everythingHashed = new Promise<void>((r) => (allHashed = r));
    const hash = {
      update: async (chunk: Uint8Array) => {
        updates.push(Buffer.from(chunk));
        hashed += chunk.length;
        if (hashed === body.length) allHashed();
      },
    };
    const it = streamGet({ sign: async () => s.url, key: "o", size: body.length, slots: 4, slotSize: 256 * KiB, attempts: 1, idleTimeoutMs: 30_000, hash });
    const chunks: Buffer[] = [];
    const first = await it.next();
    if (first.done) throw new Error("no first chunk");
    chunks.push(Buffer.from(first.value));
    // Holding the first chunk, wait until every byte has arrived (the hash has seen the last one).
    await s.sent;
    await everythingHashed;
    for (let r = await it.next(); !r.done; r = await it.next()) chunks.push(Buffer.from(r.value));
    expect(Buffer.concat(chunks).equals(body)).toBe(true);
    expect(Buffer.concat(updates).equals(body)).toBe(true);
    // The first chunk, then at most the rest of each of the four slots.
    expect(chunks.length).toBeLessThanOrEqual(5);
    expect(updates.length).toBeLessThanOrEqual(4);
    expect(createHash("sha256").update(Buffer.concat(chunks)).digest("hex")).toBe(createHash("sha256").update(body).digest("hex"));
  });
});
