import type { Clock } from "../src/cluster/clock.js";
import type { SimClock } from "./clock.js";

/**
 * A process that can be paused (SIGSTOP) in the simulation: its timers do not fire and the
 * answers to its calls are not delivered until it is thawed, so a paused statepilot does nothing
 * at all, exactly like a stopped process, while the rest of the world moves on.
 */
export class Gate {
  private paused = false;
  private waiting: Array<() => void> = [];

  constructor(private readonly clock: SimClock) {}

  get isPaused(): boolean {
    return this.paused;
  }

  pause(): void {
    this.paused = true;
  }

  /** Resumes: everything held back runs, in the order it arrived. */
  thaw(): void {
    this.paused = false;
    const w = this.waiting;
    this.waiting = [];
    for (const fn of w) fn();
  }

  /** Resolves now when running, or at the thaw. */
  pass(): Promise<void> | undefined {
    if (!this.paused) return undefined;
    return new Promise<void>((resolve) => this.waiting.push(resolve));
  }

  /** The clock this process sees: its timers wait for the thaw. */
  clockFor(): Clock {
    const c = this.clock;
    return {
      now: () => c.now(),
      sleep: async (ms, signal) => {
        await c.sleep(ms, signal);
        await this.pass();
      },
      after: (ms, fn) =>
        c.after(ms, () => {
          if (this.paused) this.waiting.push(fn);
          else fn();
        }),
    };
  }

  /** Wraps every method of `target` so its results reach the caller only while running. */
  wrap<T extends object>(target: T): T {
    const gate = this;
    const cache = new Map<PropertyKey, unknown>();
    const hold = <V>(value: V): V | Promise<V> => {
      const p = gate.pass();
      return p ? p.then(() => value) : value;
    };
    return new Proxy(target, {
      get(obj, prop, receiver) {
        const v = Reflect.get(obj, prop, receiver) as unknown;
        if (typeof v !== "function") return v;
        let wrapped = cache.get(prop);
        if (!wrapped) {
          wrapped = (...args: unknown[]) => {
            const r = (v as (...a: unknown[]) => unknown).apply(obj, args);
            if (!(r instanceof Promise)) return r;
            return r.then(hold, (err: unknown) => {
              const p = gate.pass();
              if (!p) throw err;
              return p.then(() => Promise.reject(err));
            });
          };
          cache.set(prop, wrapped);
        }
        return wrapped;
      },
    });
  }
}
