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

const PROBE_TIMED_OUT = Symbol("probe timed out");

/** The probe's result, or PROBE_TIMED_OUT once `ms` passed (a probe that hangs must not outlive the deadline). */
async function bounded<T>(p: Promise<T>, ms: number): Promise<T | typeof PROBE_TIMED_OUT> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<typeof PROBE_TIMED_OUT>((resolve) => (timer = setTimeout(() => resolve(PROBE_TIMED_OUT), Math.max(0, ms))));
  try {
    return await Promise.race([p, expired]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Polls `probe` until it returns a value other than undefined/false, or throws a timeout error.
 * A probe still running at the deadline (or after 1 s, if less is left) counts as failed: a hanging
 * probe cannot stretch the wait.
 */
export async function waitFor<T>(probe: () => Promise<T | undefined | false>, opts: WaitOptions): Promise<T> {
  const deadline = Date.now() + opts.timeoutMs;
  let lastError = "";
  for (;;) {
    const abort = opts.abortIf?.();
    if (abort) throw new Error(`${opts.what}: ${abort}${opts.detail ? `\n${opts.detail()}` : ""}`);
    try {
      const pending = probe();
      // A late rejection of an abandoned probe is not an unhandled error.
      pending.catch(() => undefined);
      const v = await bounded(pending, Math.max(1_000, deadline - Date.now()));
      if (v === PROBE_TIMED_OUT) lastError = "the last probe did not finish before the deadline";
      else if (v !== undefined && v !== false) return v;
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
