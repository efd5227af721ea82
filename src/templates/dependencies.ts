import type { Coordinator, ServiceInstance } from "../discovery/coordination.js";
import type { ClusterStore } from "../cluster/store.js";
import { clusterView, type ClusterView } from "../mysql/switchover.js";
import type { Logger } from "../log.js";

/**
 * The data a template reads, each piece followed by its own blocking query (as consul-template's
 * dependencies): a service's healthy instances, a KV key, a KV prefix, a MySQL cluster's view. A
 * dependency exists because a render asked for it, and is dropped when a render no longer does.
 */

/** A healthy instance of a service, as templates see it. */
export interface TemplateInstance {
  id: string;
  name: string;
  node: string;
  address: string;
  port: number;
  tags: string[];
  meta: Record<string, string>;
}

export interface TemplateKvEntry {
  /** The key below the prefix asked for. */
  key: string;
  /** The full key. */
  path: string;
  value: string;
}

/** A MySQL node as templates see it. */
export interface TemplateMysqlNode {
  node: string;
  address: string;
  host: string;
  port: number;
  role: string;
  alive: boolean;
  up: boolean;
  /** Seconds behind the primary; null when unknown (not replicating). */
  lagSeconds: number | null;
  serverId: number;
}

export interface TemplateMysqlView {
  cluster: string;
  /** The current primary (the store's leader), nil while there is none. */
  primary: (TemplateMysqlNode & { term: number; promotedAt: string }) | null;
  /** Alive, answering replicas without a replication error: candidates for reads (filter by lag with `max_lag`). */
  replicas: TemplateMysqlNode[];
  /** Every member, whatever its state. */
  members: TemplateMysqlNode[];
  paused: boolean;
}

export abstract class Dependency<T> {
  private value: T | undefined;
  private hasValue = false;
  private waiters: Array<{ resolve: (v: T) => void; reject: (e: Error) => void }> = [];
  protected running = false;
  protected controller: AbortController | undefined;
  protected failures = 0;
  errors = 0;
  lastError: string | undefined;
  /** Called when the value changed after the first one. */
  onChange: (() => void) | undefined;

  constructor(
    readonly id: string,
    protected readonly log: Logger,
  ) {}

  /** The current value; the first call starts the watch and waits for its first answer. */
  get(): Promise<T> {
    if (!this.running) this.start();
    if (this.hasValue) return Promise.resolve(this.value as T);
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    void this.loop();
  }

  stop(): void {
    this.running = false;
    this.controller?.abort();
    for (const w of this.waiters.splice(0)) w.reject(new Error(`${this.id}: stopped`));
  }

  protected abstract fetch(signal: AbortSignal): Promise<T>;

  private async loop(): Promise<void> {
    while (this.running) {
      this.controller = new AbortController();
      try {
        const v = await this.fetch(this.controller.signal);
        if (!this.running) return;
        this.failures = 0;
        this.lastError = undefined;
        this.set(v);
      } catch (err) {
        if (!this.running) return;
        this.failures++;
        this.errors++;
        this.lastError = err instanceof Error ? err.message : String(err);
        this.resetIndex();
        const delay = Math.min(10_000, 100 * 2 ** Math.min(this.failures, 7)) * (0.75 + Math.random() * 0.5);
        this.log.warn({ dependency: this.id, err: this.lastError, retryInMs: Math.round(delay) }, "template dependency request failed");
        await new Promise((r) => setTimeout(r, delay));
      }
    }
  }

  protected resetIndex(): void {}

  private set(v: T): void {
    const changed = !this.hasValue || JSON.stringify(v) !== JSON.stringify(this.value);
    const first = !this.hasValue;
    this.value = v;
    this.hasValue = true;
    for (const w of this.waiters.splice(0)) w.resolve(v);
    if (changed && !first) this.onChange?.();
  }
}

/** Blocking query wait: Consul answers at least this often even when nothing changes. */
const WAIT = "60s";

export class ServiceDependency extends Dependency<TemplateInstance[]> {
  private index = 0;

  constructor(
    private readonly coordinator: Coordinator,
    private readonly service: string,
    private readonly tag: string | undefined,
    log: Logger,
  ) {
    super(`service(${tag ? `${tag}.` : ""}${service})`, log);
  }

  protected override resetIndex(): void {
    this.index = 0;
  }

  protected async fetch(signal: AbortSignal): Promise<TemplateInstance[]> {
    const r = await this.coordinator.watchService(this.service, { index: this.index, wait: WAIT, signal, ...(this.tag ? { tag: this.tag } : {}) });
    this.index = r.index < this.index ? 0 : r.index;
    return healthyInstances(r.instances);
  }
}

export function healthyInstances(list: ServiceInstance[]): TemplateInstance[] {
  return list
    .filter((i) => i.healthy)
    .map((i) => ({ id: i.id, name: i.name, node: i.node, address: i.address, port: i.port, tags: [...i.tags], meta: { ...i.meta } }))
    .sort((a, b) => a.node.localeCompare(b.node) || a.id.localeCompare(b.id));
}

export class KeyDependency extends Dependency<string | null> {
  private index = 0;

  constructor(
    private readonly coordinator: Coordinator,
    private readonly key: string,
    log: Logger,
  ) {
    super(`key(${key})`, log);
  }

  protected override resetIndex(): void {
    this.index = 0;
  }

  protected async fetch(signal: AbortSignal): Promise<string | null> {
    const r = await this.coordinator.read(this.key, { index: this.index, wait: WAIT, signal });
    this.index = r.index < this.index ? 0 : r.index;
    return r.entry?.value ?? null;
  }
}

export class TreeDependency extends Dependency<TemplateKvEntry[]> {
  private index = 0;

  constructor(
    private readonly coordinator: Coordinator,
    private readonly prefix: string,
    log: Logger,
  ) {
    super(`tree(${prefix})`, log);
  }

  protected override resetIndex(): void {
    this.index = 0;
  }

  protected async fetch(signal: AbortSignal): Promise<TemplateKvEntry[]> {
    const r = await this.coordinator.list(this.prefix, { index: this.index, wait: WAIT, signal });
    this.index = r.index < this.index ? 0 : r.index;
    const base = this.prefix.endsWith("/") || this.prefix === "" ? this.prefix : `${this.prefix}/`;
    return r.entries
      .filter((e) => !e.key.endsWith("/"))
      .map((e) => ({ key: e.key.startsWith(base) ? e.key.slice(base.length) : e.key, path: e.key, value: e.value ?? "" }))
      .sort((a, b) => a.path.localeCompare(b.path));
  }
}

/**
 * The MySQL cluster's view. A leadership change wakes the watch at once; members' own records
 * (lag, liveness) are read again every `pollMs` (members publish theirs about once a second).
 */
export class MysqlDependency extends Dependency<TemplateMysqlView> {
  private first = true;
  private leaderVersion = -1;

  constructor(
    private readonly store: ClusterStore,
    private readonly cluster: string,
    log: Logger,
    private readonly pollMs = 1_000,
  ) {
    super(`mysql(${cluster})`, log);
  }

  override stop(): void {
    super.stop();
    this.store.close();
  }

  /** After a failed request, read the state again at once. */
  protected override resetIndex(): void {
    this.first = true;
  }

  protected async fetch(signal: AbortSignal): Promise<TemplateMysqlView> {
    if (!this.first) await this.store.watch(this.leaderVersion, this.pollMs, signal);
    this.first = false;
    const st = await this.store.load();
    this.leaderVersion = st.leaderVersion;
    return mysqlView(this.cluster, await clusterView(this.store));
  }
}

export function mysqlView(cluster: string, v: ClusterView): TemplateMysqlView {
  const node = (m: ClusterView["members"][number]): TemplateMysqlNode => ({
    node: m.node,
    address: m.host,
    host: m.host,
    port: m.port,
    role: m.role,
    alive: m.alive,
    up: m.up,
    lagSeconds: m.lagSeconds,
    serverId: m.serverId,
  });
  const members = [...v.members].sort((a, b) => a.node.localeCompare(b.node));
  const p = v.primary;
  return {
    cluster,
    primary: p ? { node: p.node, address: p.host, host: p.host, port: p.port, role: "primary", alive: true, up: true, lagSeconds: 0, serverId: p.serverId, term: p.term, promotedAt: p.promotedAt } : null,
    replicas: members.filter((m) => m.node !== p?.node && m.role === "replica" && m.alive && m.up && !m.sqlError && (!p || !m.source || m.source === p.node)).map(node),
    members: members.map(node),
    paused: v.pause?.paused === true,
  };
}
