import { formatDuration } from "../duration.js";

const GO_UNITS: Record<string, number> = { ns: 1e-6, us: 1e-3, "µs": 1e-3, ms: 1, s: 1_000, m: 60_000, h: 3_600_000 };

/**
 * A ContainerPilot duration as statepilot writes it: a number or a numeric string is seconds
 * (ContainerPilot's rule), anything else a Go duration ("1h30m", "500ms"). Undefined when it is
 * neither, or shorter than a millisecond.
 */
export function cpDuration(v: unknown): string | undefined {
  if (typeof v === "number") return Number.isFinite(v) && v > 0 ? formatDuration(Math.round(v * 1_000)) : v === 0 ? "0s" : undefined;
  if (typeof v !== "string") return undefined;
  const t = v.trim();
  if (/^\d+(\.\d+)?$/.test(t)) return cpDuration(Number(t));
  if (!/^((\d+(\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h))+$/.test(t)) return undefined;
  let ms = 0;
  for (const m of t.matchAll(/(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)/g)) ms += Number(m[1]) * GO_UNITS[m[2]!]!;
  if (ms !== 0 && ms < 1) return undefined;
  return formatDuration(Math.round(ms));
}
