import type { Clock } from "../src/cluster/clock.js";

interface Timer {
  at: number;
  seq: number;
  fn: () => void;
  cancelled: boolean;
}

/** A binary min-heap on (at, seq): timers due at the same time fire in the order they were set. */
class TimerHeap {
  private readonly items: Timer[] = [];
  get size(): number {
    return this.items.length;
  }
  peek(): Timer | undefined {
    return this.items[0];
  }
  push(t: Timer): void {
    const a = this.items;
    a.push(t);
    let i = a.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!before(a[i]!, a[p]!)) break;
      [a[i], a[p]] = [a[p]!, a[i]!];
      i = p;
    }
  }
  pop(): Timer | undefined {
    const a = this.items;
    const top = a[0];
    const last = a.pop();
    if (a.length > 0 && last) {
      a[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < a.length && before(a[l]!, a[m]!)) m = l;
        if (r < a.length && before(a[r]!, a[m]!)) m = r;
        if (m === i) break;
        [a[i], a[m]] = [a[m]!, a[i]!];
        i = m;
      }
    }
    return top;
  }
}

const before = (x: Timer, y: Timer) => x.at < y.at || (x.at === y.at && x.seq < y.seq);

const STILL_LIMIT = 1_000_000;

/** Lets every promise continuation queued so far (and those they queue) run. */
export const flushMicrotasks = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/**
 * Virtual time for the simulation: timers fire in time order, and between two timers every
 * promise continuation runs, so async code behaves as it would, only without waiting. Nothing
 * here reads the real clock: a run is a function of its seed.
 */
export class SimClock implements Clock {
  private t = 0;
  private seq = 0;
  private readonly heap = new TimerHeap();

  now(): number {
    return this.t;
  }

  /** Runs `fn` after `ms` of virtual time; returns a handle for `cancel`. */
  schedule(ms: number, fn: () => void): Timer {
    // As Node's setTimeout: a positive delay under 1 ms waits 1 ms (a drifting clock's leftover of
    // 1e-12 ms would otherwise not move virtual time at all, and a loop waiting for it would spin).
    const delay = ms > 0 ? Math.max(1, ms) : 0;
    const timer: Timer = { at: this.t + delay, seq: this.seq++, fn, cancelled: false };
    this.heap.push(timer);
    return timer;
  }

  cancel(timer: Timer): void {
    timer.cancelled = true;
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise<void>((resolve) => {
      if (signal?.aborted) return resolve();
      const onAbort = () => {
        this.cancel(timer);
        resolve();
      };
      const timer = this.schedule(ms, () => {
        signal?.removeEventListener("abort", onAbort);
        resolve();
      });
      signal?.addEventListener("abort", onAbort, { once: true });
    });
  }

  after(ms: number, fn: () => void): () => void {
    const t = this.schedule(ms, fn);
    return () => this.cancel(t);
  }

  every(ms: number, fn: () => void): () => void {
    let current: Timer;
    const arm = () => {
      current = this.schedule(ms, () => {
        arm();
        fn();
      });
    };
    arm();
    return () => this.cancel(current);
  }

  /**
   * Fires timers in order until virtual time passes `until` or none is left, letting promise
   * continuations run after each; `afterEach` runs after every timer (invariant checks).
   * Returns the number of timers fired.
   */
  async runUntil(until: number, afterEach?: () => void): Promise<number> {
    let fired = 0;
    let still = 0;
    await flushMicrotasks();
    for (;;) {
      const next = this.heap.peek();
      if (!next || next.at > until) break;
      this.heap.pop();
      if (next.cancelled) continue;
      // Code that sleeps zero (or rounds a wait down to nothing) in a loop would spin here forever.
      still = next.at === this.t ? still + 1 : 0;
      if (still > STILL_LIMIT) throw new Error(`virtual time stood still at ${this.t} ms for ${STILL_LIMIT} timers: something waits zero in a loop`);
      this.t = next.at;
      next.fn();
      fired++;
      await flushMicrotasks();
      afterEach?.();
    }
    if (this.t < until) this.t = until;
    return fired;
  }
}

/**
 * A host's clock that runs `rate` times as fast as real (simulated) time: it reads `now * rate`,
 * and a wait of `ms` on it lasts `ms / rate` of real time. Rates near 1 model the drift of a
 * host's oscillator (the simulation uses 0.95..1.05), which NTP slews but never removes at once.
 */
export function driftingClock(base: Clock, rate: number): Clock {
  if (rate === 1) return base;
  return {
    now: () => base.now() * rate,
    sleep: (ms, signal) => base.sleep(ms / rate, signal),
    after: (ms, fn) => base.after(ms / rate, fn),
  };
}
