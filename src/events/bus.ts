import type { EventCodeName } from "../config/schema.js";

export interface BusEvent {
  code: EventCodeName;
  /** A job name, `watch.<name>`, or "statepilot". */
  source: string;
  /** Optional payload, e.g. the instance list of a watch. */
  data?: unknown;
}

export type Handler = (event: BusEvent) => void | Promise<void>;

export interface Subscription {
  readonly name: string;
  unsubscribe(): void;
  /** Events waiting for this subscriber. */
  readonly pending: number;
  readonly dropped: number;
}

/**
 * A publish/subscribe bus on which every subscriber has its own queue: publish never waits, and a
 * slow or stuck subscriber only delays itself. A queue over its limit drops its oldest event and
 * counts the drop, so one stuck handler cannot grow memory without bound.
 */
export class EventBus {
  private readonly subs = new Set<QueueSubscriber>();
  onPublish: ((event: BusEvent) => void) | undefined;
  onHandlerError: ((subscriber: string, event: BusEvent, error: unknown) => void) | undefined;

  constructor(private readonly queueLimit = 1000) {}

  subscribe(name: string, handler: Handler, filter?: (e: BusEvent) => boolean): Subscription {
    const sub = new QueueSubscriber(name, handler, filter, this.queueLimit, (e, err) => this.onHandlerError?.(name, e, err));
    this.subs.add(sub);
    return {
      name,
      unsubscribe: () => {
        sub.closed = true;
        this.subs.delete(sub);
      },
      get pending() {
        return sub.queue.length;
      },
      get dropped() {
        return sub.dropped;
      },
    };
  }

  publish(event: BusEvent): void {
    this.onPublish?.(event);
    for (const s of this.subs) s.offer(event);
  }

  /** Resolves once every subscriber has handled what was queued before this call. */
  async drain(): Promise<void> {
    await Promise.all([...this.subs].map((s) => s.idle()));
  }
}

class QueueSubscriber {
  readonly queue: BusEvent[] = [];
  dropped = 0;
  closed = false;
  private running = false;
  private idleWaiters: Array<() => void> = [];

  constructor(
    readonly name: string,
    private readonly handler: Handler,
    private readonly filter: ((e: BusEvent) => boolean) | undefined,
    private readonly limit: number,
    private readonly onError: (e: BusEvent, err: unknown) => void,
  ) {}

  offer(e: BusEvent): void {
    if (this.closed || (this.filter && !this.filter(e))) return;
    if (this.queue.length >= this.limit) {
      this.queue.shift();
      this.dropped++;
    }
    this.queue.push(e);
    if (!this.running) {
      this.running = true;
      // Handlers run on a later tick, never inside publish().
      queueMicrotask(() => void this.pump());
    }
  }

  private async pump(): Promise<void> {
    while (this.queue.length && !this.closed) {
      const e = this.queue.shift()!;
      try {
        await this.handler(e);
      } catch (err) {
        this.onError(e, err);
      }
    }
    this.running = false;
    for (const w of this.idleWaiters.splice(0)) w();
  }

  idle(): Promise<void> {
    if (!this.running) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }
}
