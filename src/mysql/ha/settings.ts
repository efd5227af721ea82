import type { MysqlConfig } from "../../config/schema.js";
import type { StoreTiming } from "../../cluster/store.js";

/** The numbers the HA core decides by, in milliseconds, derived once from the config. */
export interface HaSettings {
  cluster: string;
  interval: number;
  /** A primary that could not confirm its leadership for this long fences itself. */
  fenceAfter: number;
  /** Earliest moment after a confirmation at which another node could lead (the store's lease + lock-delay). */
  takeover: number;
  /** The store's lock-delay: a leadership lost without a release cannot be taken for this long after it was freed. */
  lockDelay: number;
  fenceBy: "kill" | "read-only";
  lossless: boolean;
  maximumLagMs: number;
  healthyLagMs: number;
  /** How long a candidate waits for a silent live peer to publish after the leadership was freed. */
  peerWaitMs: number;
  promoteTimeout: number;
  switchoverTimeout: number;
  nofailover: boolean;
  /** The primary removes the records of members gone (not alive) longer than this. */
  memberExpiry: number;
  /** Failsafe mode: a primary that cannot reach the store keeps writing while every member it knew accepts it directly. */
  failsafe: boolean;
  /** Check the primary for divergence every this many loops even when nothing changed. */
  divergenceEvery: number;
}

export function haSettings(cfg: MysqlConfig, timing: StoreTiming): HaSettings {
  return {
    cluster: cfg.cluster,
    interval: cfg.interval,
    fenceAfter: cfg.fenceAfter,
    takeover: timing.leaseMs + timing.lockDelayMs,
    lockDelay: timing.lockDelayMs,
    fenceBy: cfg.fenceBy === "auto" ? (cfg.lossless.enabled ? "kill" : "read-only") : cfg.fenceBy,
    lossless: cfg.lossless.enabled,
    maximumLagMs: cfg.maximumLagOnFailover,
    healthyLagMs: cfg.healthyLag,
    peerWaitMs: timing.leaseMs + cfg.interval,
    promoteTimeout: cfg.promoteTimeout,
    switchoverTimeout: cfg.switchoverTimeout,
    nofailover: cfg.nofailover,
    memberExpiry: cfg.memberExpiry,
    failsafe: cfg.failsafe.enabled,
    divergenceEvery: 10,
  };
}
