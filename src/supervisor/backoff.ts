export interface BackoffPolicy {
  enabled: boolean;
  initial: number;
  max: number;
  multiplier: number;
  resetAfter: number;
}

/** Restart delays that grow while a job keeps failing fast and reset after a long enough run. */
export class RestartBackoff {
  private attempt = 0;

  constructor(private readonly policy: BackoffPolicy) {}

  /** Delay before the next start, given how long the last run lasted. */
  next(lastRunMs: number): number {
    if (!this.policy.enabled) return 0;
    if (lastRunMs >= this.policy.resetAfter) this.attempt = 0;
    const delay = Math.min(this.policy.max, this.policy.initial * this.policy.multiplier ** this.attempt);
    this.attempt++;
    return Math.round(delay);
  }

  reset(): void {
    this.attempt = 0;
  }
}
