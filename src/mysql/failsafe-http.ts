import { z } from "zod";
import type { MemberRecord } from "../cluster/records.js";
import type { PostRoute } from "../telemetry/server.js";
import { BearerCheck } from "../telemetry/auth.js";
import type { FailsafeAnswer, FailsafePeers, FailsafeRequest } from "./ha/failsafe.js";

/**
 * Failsafe requests over the nodes' HTTP ports: a primary that cannot reach the cluster store
 * POSTs /failsafe to every member it relies on, with the cluster secret as a bearer token.
 */

const Request = z.strictObject({
  cluster: z.string().min(1),
  leader: z.string().min(1),
  term: z.number().int().nonnegative(),
});

const Answer = z.strictObject({ accept: z.boolean(), reason: z.string() });

const issues = (e: z.ZodError) => e.issues.map((i) => `${i.path.join(".") || "body"}: ${i.message}`).join("; ");

/** The member's side: POST /failsafe, answered by the HA loop (see MysqlHa.answerFailsafe). */
export function failsafeRoute(secret: string, answer: (r: FailsafeRequest) => FailsafeAnswer): PostRoute {
  return {
    check: new BearerCheck(secret),
    handle(body) {
      const r = Request.safeParse(body);
      if (!r.success) throw new Error(`failsafe request: ${issues(r.error)}`);
      return { status: 200, body: answer(r.data) };
    },
  };
}

/** The primary's side. */
export class HttpFailsafePeers implements FailsafePeers {
  constructor(private readonly secret: string) {}

  async ask(to: MemberRecord, request: FailsafeRequest, timeoutMs: number): Promise<FailsafeAnswer> {
    if (to.httpPort === undefined) throw new Error(`${to.node} publishes no HTTP port (its telemetry is off)`);
    const host = to.host.includes(":") ? `[${to.host}]` : to.host;
    const url = `http://${host}:${to.httpPort}/failsafe`;
    let res: Response;
    try {
      res = await fetch(url, {
        method: "POST",
        headers: { "content-type": "application/json", authorization: `Bearer ${this.secret}` },
        body: JSON.stringify(request),
        signal: AbortSignal.timeout(timeoutMs),
      });
    } catch (err) {
      const cause = err instanceof Error ? ((err.cause as Error | undefined)?.message ?? err.message) : String(err);
      throw new Error(`POST ${url}: ${cause}`, { cause: err });
    }
    const text = await res.text();
    if (res.status === 401) throw new Error(`POST ${url}: 401: the cluster secret (mysql.failsafe) differs on ${to.node}`);
    if (res.status !== 200) throw new Error(`POST ${url}: ${res.status} ${text.slice(0, 200)}`);
    let body: unknown;
    try {
      body = JSON.parse(text);
    } catch {
      throw new Error(`POST ${url}: not JSON: ${text.slice(0, 200)}`);
    }
    const a = Answer.safeParse(body);
    if (!a.success) throw new Error(`POST ${url}: unexpected answer: ${issues(a.error)}`);
    return a.data;
  }
}
