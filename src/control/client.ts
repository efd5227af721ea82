import { request } from "node:http";

export interface ControlResponse {
  status: number;
  body: unknown;
}

/** Calls the control plane of a running statepilot over its unix socket. */
export function controlRequest(socketPath: string, method: "GET" | "POST", path: string, body?: unknown, timeoutMs = 30_000): Promise<ControlResponse> {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const req = request(
      { socketPath, method, path, timeout: timeoutMs, headers: data ? { "content-type": "application/json", "content-length": data.length } : {} },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          let parsed: unknown = text;
          try {
            parsed = JSON.parse(text);
          } catch {
            /* plain text */
          }
          resolve({ status: res.statusCode ?? 0, body: parsed });
        });
      },
    );
    req.on("timeout", () => req.destroy(new Error(`no answer from ${socketPath} within ${timeoutMs} ms`)));
    req.on("error", (err: NodeJS.ErrnoException) => {
      const hint = err.code === "ENOENT" || err.code === "ECONNREFUSED" ? ` (is statepilot running with control.socket ${socketPath}?)` : "";
      reject(new Error(`cannot reach the control socket ${socketPath}: ${err.code ?? err.message}${hint}`));
    });
    req.end(data);
  });
}
