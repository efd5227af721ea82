import type { EventBus } from "../events/bus.js";
import type { WatchConfig } from "../config/schema.js";
import { formatDuration } from "../config/duration.js";
import type { Logger } from "../log.js";
import type { ServiceInstance, ServiceRegistry } from "./coordination.js";

export interface WatchStatus {
  name: string;
  service: string;
  instances: number;
  healthy: number;
  index: number;
  errors: number;
}

/**
 * Follows a service's health through blocking queries and publishes `changed` (with the instance
 * list) and `healthy`/`unhealthy` (any passing instance or none) from source `watch.<name>`.
 */
export class ServiceWatch {
  private index = 0;
  private controller: AbortController | undefined;
  private running = false;
  private lastKey: string | undefined;
  private lastHealthy: boolean | undefined;
  private errors = 0;
  private instances: ServiceInstance[] = [];
  private readonly log: Logger;
  readonly source: string;
  onChange: ((instances: ServiceInstance[]) => void) | undefined;
  onError: ((err: unknown) => void) | undefined;

  constructor(
    readonly config: WatchConfig,
    private readonly coordinator: ServiceRegistry,
    private readonly bus: EventBus,
    logger: Logger,
  ) {
    this.source = `watch.${config.name}`;
    this.log = logger.child({ watch: config.name });
  }

  get serviceName(): string {
    return this.config.service ?? this.config.name;
  }

  status(): WatchStatus {
    return {
      name: this.config.name,
      service: this.serviceName,
      instances: this.instances.length,
      healthy: this.instances.filter((i) => i.healthy).length,
      index: this.index,
      errors: this.errors,
    };
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    void this.loop();
  }

  stop(): void {
    this.running = false;
    this.controller?.abort();
  }

  private async loop(): Promise<void> {
    let failures = 0;
    while (this.running) {
      this.controller = new AbortController();
      try {
        const r = await this.coordinator.watchService(this.serviceName, {
          index: this.index,
          wait: formatDuration(this.config.wait),
          signal: this.controller.signal,
          ...(this.config.tag ? { tag: this.config.tag } : {}),
          ...(this.config.datacenter ? { datacenter: this.config.datacenter } : {}),
        });
        failures = 0;
        // An index that goes backwards (e.g. after a Consul restart) restarts the blocking sequence.
        this.index = r.index < this.index ? 0 : r.index;
        this.apply(r.instances);
      } catch (err) {
        if (!this.running) return;
        failures++;
        this.errors++;
        this.onError?.(err);
        const delay = Math.min(30_000, 100 * 2 ** Math.min(failures, 9)) * (0.75 + Math.random() * 0.5);
        this.log.warn({ err: String(err), retryInMs: Math.round(delay) }, "watch request failed");
        this.index = 0;
        await new Promise((r) => setTimeout(r, delay));
      }
    }
  }

  private apply(instances: ServiceInstance[]): void {
    const sorted = [...instances].sort((a, b) => a.id.localeCompare(b.id));
    const key = JSON.stringify(sorted.map((i) => [i.id, i.address, i.port, i.tags, i.healthy]));
    const healthy = sorted.some((i) => i.healthy);
    this.instances = sorted;
    if (key !== this.lastKey) {
      const first = this.lastKey === undefined;
      this.lastKey = key;
      this.onChange?.(sorted);
      // No instance at the first answer is no change (ContainerPilot's rule): a job on `changed` of a service that is not there yet does not run at start-up.
      if (!(first && sorted.length === 0)) this.bus.publish({ code: "changed", source: this.source, data: sorted });
    }
    if (healthy !== this.lastHealthy) {
      this.lastHealthy = healthy;
      this.bus.publish({ code: healthy ? "healthy" : "unhealthy", source: this.source });
    }
  }
}
