import { describe, expect, it } from "vitest";
import { RestartBackoff } from "../../src/supervisor/backoff.js";

describe("RestartBackoff", () => {
  const policy = { enabled: true, initial: 1000, max: 5000, multiplier: 2, resetAfter: 60_000 };

  it("grows exponentially up to max while runs are short", () => {
    const b = new RestartBackoff(policy);
    expect([100, 100, 100, 100, 100].map((r) => b.next(r))).toEqual([1000, 2000, 4000, 5000, 5000]);
  });

  it("resets after a long run", () => {
    const b = new RestartBackoff(policy);
    b.next(10);
    b.next(10);
    expect(b.next(60_000)).toBe(1000);
  });

  it("is zero when disabled", () => {
    expect(new RestartBackoff({ ...policy, enabled: false }).next(0)).toBe(0);
  });
});
