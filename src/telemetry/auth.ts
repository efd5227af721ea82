import { createHash, timingSafeEqual } from "node:crypto";
import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import type { IncomingHttpHeaders, ServerResponse } from "node:http";
import { ConfigError } from "../config/load.js";
import type { TelemetryConfig } from "../config/schema.js";

export type TelemetryAuthConfig = NonNullable<TelemetryConfig["auth"]>;

/** A token file larger than this is refused unread (a token is a line, not a file's worth). */
export const MAX_TOKEN_BYTES = 4096;
/** What an Authorization header can carry: visible ASCII, no whitespace inside. */
const TOKEN_CHARS = /^[\x21-\x7e]+$/;

function readToken(path: string): { token: string } | { problem: string } {
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch (err) {
    return { problem: `cannot read ${JSON.stringify(path)}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}` };
  }
  try {
    const st = fstatSync(fd);
    if (st.isDirectory()) return { problem: `${JSON.stringify(path)} is a directory, not a file holding the token` };
    if (st.size > MAX_TOKEN_BYTES) return { problem: `${JSON.stringify(path)} has ${st.size} bytes; a token file may hold at most ${MAX_TOKEN_BYTES}` };
    const buf = Buffer.alloc(MAX_TOKEN_BYTES + 1);
    let total = 0;
    for (let n = -1; n !== 0 && total < buf.length; total += n) n = readSync(fd, buf, total, buf.length - total, null);
    if (total > MAX_TOKEN_BYTES) return { problem: `${JSON.stringify(path)} holds more than ${MAX_TOKEN_BYTES} bytes; expected a token` };
    return { token: buf.toString("utf8", 0, total) };
  } catch (err) {
    return { problem: `cannot read ${JSON.stringify(path)}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}` };
  } finally {
    closeSync(fd);
  }
}

/**
 * The telemetry token, from telemetry.auth.tokenFile or the variable telemetry.auth.tokenEnv names.
 * A missing, unreadable or empty file, an unset or empty variable, or a value no Authorization
 * header can carry is a ConfigError naming the field (and the file or variable, never the token).
 * Run by `config check` and at start-up.
 */
/** Where a token comes from: a file, or an environment variable (extra keys, like telemetry's `metrics`, are ignored). */
export interface TokenSource {
  tokenFile?: string | undefined;
  tokenEnv?: string | undefined;
  [other: string]: unknown;
}

export function resolveTelemetryToken(auth: TokenSource, env: NodeJS.ProcessEnv, source: string, prefix = "telemetry.auth"): string {
  const fail = (path: string, message: string): never => {
    throw new ConfigError(source, [{ path, message }]);
  };
  let raw: string;
  let field: string;
  if (auth.tokenFile !== undefined) {
    field = `${prefix}.tokenFile`;
    const r = readToken(auth.tokenFile);
    if ("problem" in r) return fail(field, r.problem);
    raw = r.token;
  } else {
    field = `${prefix}.tokenEnv`;
    const name = auth.tokenEnv ?? "";
    const value = env[name];
    if (value === undefined) return fail(field, `$${name} is not set`);
    raw = value;
  }
  const token = raw.trim();
  if (token === "") return fail(field, auth.tokenFile !== undefined ? `${JSON.stringify(auth.tokenFile)} is empty` : `$${auth.tokenEnv} is empty`);
  if (!TOKEN_CHARS.test(token)) return fail(field, "the token holds whitespace, control or non-ASCII characters, which an Authorization header cannot carry");
  return token;
}

const digest = (s: string) => createHash("sha256").update(s, "utf8").digest();

/** Checks `Authorization: Bearer <token>` in constant time (both sides hashed to equal length). */
export class BearerCheck {
  private readonly expected: Buffer;

  constructor(token: string) {
    this.expected = digest(token);
  }

  /** "missing" (no bearer credentials), "invalid" (wrong token) or "ok". */
  verify(headers: IncomingHttpHeaders): "ok" | "missing" | "invalid" {
    const m = /^Bearer +(\S+) *$/i.exec(headers.authorization ?? "");
    // Compared even when absent, so the answer takes as long either way.
    const same = timingSafeEqual(digest(m?.[1] ?? ""), this.expected);
    if (!m) return "missing";
    return same ? "ok" : "invalid";
  }
}

/** 401 with the RFC 6750 challenge: `error="invalid_token"` when a token was sent but is wrong. */
export function sendUnauthorized(res: ServerResponse, outcome: "missing" | "invalid"): void {
  const challenge = outcome === "invalid" ? 'Bearer realm="statepilot", error="invalid_token"' : 'Bearer realm="statepilot"';
  const error = outcome === "invalid" ? "invalid bearer token" : "this endpoint needs Authorization: Bearer <telemetry token>";
  res.writeHead(401, { "www-authenticate": challenge, "content-type": "application/json" }).end(JSON.stringify({ error }));
}
