import { z } from "zod";

const UNITS = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 } as const;

/**
 * The longest duration any config field accepts: 596h (24.8 days), just under 2^31-1 ms. Node's
 * timers overflow past that and fire after 1 ms, which turned a "1000h" timeout into an instant kill.
 */
export const MAX_DURATION_MS = 596 * 3_600_000;
const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/;

/** Parses "250ms", "5s", "1.5m", "2h" into milliseconds; undefined if the text is not a duration. */
export function parseDuration(text: string): number | undefined {
  const m = DURATION.exec(text.trim());
  if (!m) return undefined;
  return Math.round(Number(m[1]) * UNITS[m[2] as keyof typeof UNITS]);
}

/** Formats milliseconds as a Consul duration string ("1500ms" -> "1.5s"). */
export function formatDuration(ms: number): string {
  if (ms % 3_600_000 === 0 && ms > 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0 && ms > 0) return `${ms / 60_000}m`;
  if (ms % 1_000 === 0) return `${ms / 1_000}s`;
  return `${ms}ms`;
}

const DURATION_TEXT = 'expected a duration such as "500ms", "5s", "1m"';

/**
 * A duration field between `min` and `max` milliseconds (never above MAX_DURATION_MS: Node timers
 * overflow past 2^31-1 ms). The bounds are part of the generated reference; `note` says why.
 */
export function duration(min = 0, max = MAX_DURATION_MS, note = "") {
  const bounds = { min: formatDuration(min), max: formatDuration(Math.min(max, MAX_DURATION_MS)) };
  const maxNote = note || (max >= MAX_DURATION_MS ? " (24.8 days; Node timers overflow beyond it)" : "");
  return z
    .codec(
      z.string({ error: DURATION_TEXT }).superRefine((s, ctx) => {
        const ms = parseDuration(s);
        if (ms === undefined) ctx.addIssue({ code: "custom", message: DURATION_TEXT });
        else if (ms < min) ctx.addIssue({ code: "custom", message: `must be at least ${bounds.min}${note}` });
        else if (ms > max || ms > MAX_DURATION_MS) ctx.addIssue({ code: "custom", message: `must be at most ${bounds.max}${maxNote}` });
      }),
      z.number(),
      { decode: (s) => parseDuration(s) ?? 0, encode: (ms) => formatDuration(ms) },
    )
    .meta({ duration: bounds });
}
