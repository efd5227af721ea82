import { setTimeout as sleep } from "node:timers/promises";

export interface WaitOptions {
  timeoutMs: number;
  intervalMs?: number;
  /** What is awaited, for the error message. */
  what: string;
  /** Extra detail for the error message, evaluated only on timeout (e.g. a log tail). */
  detail?: () => string;
  /** Give up early, e.g. when the process being waited for has exited. */
  abortIf?: () => string | undefined;
}

/** Polls `probe` until it returns a value other than undefined/false, or throws a timeout error. */
export async function waitFor<T>(probe: () => Promise<T | undefined | false>, opts: WaitOptions): Promise<T> {
  const deadline = Date.now() + opts.timeoutMs;
  let lastError = "";
  for (;;) {
    const abort = opts.abortIf?.();
    if (abort) throw new Error(`${opts.what}: ${abort}${opts.detail ? `\n${opts.detail()}` : ""}`);
    try {
      const v = await probe();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      lastError = err instanceof Error ? err.message : String(err);
    }
    if (Date.now() >= deadline) {
      const detail = opts.detail ? `\n${opts.detail()}` : "";
      throw new Error(
        `timed out after ${opts.timeoutMs} ms waiting for ${opts.what}${lastError ? ` (last error: ${lastError})` : ""}${detail}`,
      );
    }
    await sleep(opts.intervalMs ?? 50);
  }
}
