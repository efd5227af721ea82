import type { Etcd3 } from "etcd3";

/**
 * One keep-alive of `lease` on a stream of its own: the lease's remaining TTL in seconds (0: the
 * lease is gone). Rejects after `timeoutMs` without an answer.
 */
export async function keepAliveOnce(client: Etcd3, lease: string, timeoutMs: number): Promise<number> {
  const stream = await client.leaseClient.leaseKeepAlive();
  try {
    return await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("lease keep-alive timed out")), timeoutMs);
      stream.on("data", (res) => {
        clearTimeout(timer);
        resolve(Number(res.TTL));
      });
      stream.on("error", (err) => {
        clearTimeout(timer);
        reject(err);
      });
      stream.on("end", () => {
        clearTimeout(timer);
        reject(new Error("lease keep-alive stream ended without an answer"));
      });
      stream.write({ ID: lease });
    });
  } finally {
    stream.cancel();
  }
}
