import { watch, type FSWatcher } from "node:fs";
import { readFile } from "node:fs/promises";
import { basename, dirname, resolve } from "node:path";
import type { Liquid } from "liquidjs";
import type { TemplateConfig } from "../config/templates-schema.js";
import { formatDuration } from "../config/duration.js";
import type { ClusterStore } from "../cluster/store.js";
import type { ClusterStoreConnection } from "../config/schema.js";
import { clusterClient } from "../discovery/cluster-store-factory.js";
import type { Coordinator } from "../discovery/coordination.js";
import type { EventBus } from "../events/bus.js";
import type { Logger } from "../log.js";
import { toArgv } from "../process/argv.js";
import { RunningProcess } from "../process/runner.js";
import { KeyDependency, MysqlDependency, ServiceDependency, TreeDependency, type Dependency } from "./dependencies.js";
import { createEngine, scope, type DataSource } from "./engine.js";
import { writeAtomically } from "./write.js";

/** Quiet time after an edit of the source before it is rendered. */
const SOURCE_SETTLE_MS = 50;

export type RenderOutcome = "written" | "unchanged" | "error";

/** Telemetry hooks; the templates part knows nothing of how they are exported. */
export interface TemplateObserver {
  templateRendered?(template: string, outcome: RenderOutcome, durationMs: number): void;
  templateCommandRan?(template: string, ok: boolean): void;
}

export interface TemplatesOptions {
  /** The coordination store, created on first use (a template reading only env needs none). */
  coordinator: () => Coordinator;
  /** The cluster store the config names (Consul when absent): templates read it, never as a member. */
  store?: ClusterStoreConnection | undefined;
  /** Replaces the read-only cluster store handle (tests). */
  clusterStore?: (cluster: string, serviceName: string) => ClusterStore;
  /** The cluster `mysql` means when a template names none. */
  defaultCluster: { cluster: string; serviceName: string };
  bus: EventBus;
  logger: Logger;
  env: () => NodeJS.ProcessEnv;
  observer?: TemplateObserver;
}

export interface TemplateStatus {
  name: string;
  source: string;
  destination: string;
  /** The destination holds a render of the current template and data. */
  ok: boolean;
  renders: number;
  writes: number;
  errors: number;
  lastRenderAt: string | undefined;
  lastWriteAt: string | undefined;
  lastError: { message: string; at: string } | undefined;
  lastCommand: { ok: boolean; code: number; at: string; durationMs: number; output?: string } | undefined;
  dependencies: string[];
}

/** Dependencies shared by every template that reads the same data; one watch each. */
class DependencyPool {
  private readonly deps = new Map<string, { dep: Dependency<unknown>; users: Set<TemplateRunner> }>();

  constructor(private readonly opts: TemplatesOptions) {}

  acquire<T>(id: string, user: TemplateRunner, create: () => Dependency<T>): Dependency<T> {
    let e = this.deps.get(id);
    if (!e) {
      const dep = create() as Dependency<unknown>;
      const users = new Set<TemplateRunner>();
      dep.onChange = () => {
        for (const u of users) u.changed(id);
      };
      e = { dep, users };
      this.deps.set(id, e);
    }
    e.users.add(user);
    return e.dep as Dependency<T>;
  }

  release(id: string, user: TemplateRunner): void {
    const e = this.deps.get(id);
    if (!e) return;
    e.users.delete(user);
    if (e.users.size === 0) {
      e.dep.stop();
      this.deps.delete(id);
      this.opts.logger.debug({ dependency: id }, "template dependency no longer used; watch stopped");
    }
  }

  errors(id: string): string | undefined {
    return this.deps.get(id)?.dep.lastError;
  }

  stop(): void {
    for (const e of this.deps.values()) e.dep.stop();
    this.deps.clear();
  }
}

/**
 * One template: renders when its data or its source file changes (debounced by `wait`), writes the
 * destination atomically when the text changed, then runs the command. A failed render keeps the
 * last good file and is reported (status, metric, log); the next change or edit tries again.
 */
export class TemplateRunner {
  private readonly log: Logger;
  private readonly liquid: Liquid;
  private readonly source: string;
  private readonly destination: string;
  private used = new Set<string>();
  private session: Set<string> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private firstChangeAt: number | undefined;
  private rendering: Promise<void> | undefined;
  private again = false;
  private stopped = false;
  private fileWatch: FSWatcher | undefined;
  private lastSourceText: string | undefined;
  private st: Omit<TemplateStatus, "dependencies" | "name" | "source" | "destination"> = {
    ok: false, renders: 0, writes: 0, errors: 0, lastRenderAt: undefined, lastWriteAt: undefined, lastError: undefined, lastCommand: undefined,
  };

  constructor(
    readonly config: TemplateConfig,
    private readonly pool: DependencyPool,
    private readonly opts: TemplatesOptions,
  ) {
    this.log = opts.logger.child({ template: config.name });
    this.source = resolve(config.source);
    this.destination = resolve(config.destination);
    this.liquid = createEngine(dirname(this.source), () => this.data());
  }

  start(): void {
    try {
      // The directory, not the file: editors replace files by renaming over them.
      this.fileWatch = watch(dirname(this.source), (_event, file) => {
        if (file === null || file.toString() === basename(this.source)) this.changed("source");
      });
      this.fileWatch.on("error", (err) => this.log.warn({ err: err.message }, "cannot watch the template source; it is still read at every render"));
    } catch (err) {
      this.log.warn({ err: (err as Error).message, source: this.source }, "cannot watch the template source's directory; it is still read at every render");
    }
    this.schedule(true);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    clearTimeout(this.sourceSettle);
    this.fileWatch?.close();
    for (const id of this.used) this.pool.release(id, this);
    this.used.clear();
    await this.rendering?.catch(() => undefined);
  }

  /** A dependency or the source changed: render, after the debounce. */
  changed(what: string): void {
    if (this.stopped) return;
    this.log.debug({ changed: what }, "template input changed");
    if (what === "source" && !this.config.wait) {
      // An editor saves in several steps (truncate, write, rename): render once they are done.
      clearTimeout(this.sourceSettle);
      this.sourceSettle = setTimeout(() => this.schedule(true), SOURCE_SETTLE_MS);
      return;
    }
    this.schedule(false);
  }

  private sourceSettle: NodeJS.Timeout | undefined;

  private schedule(now: boolean): void {
    const w = this.config.wait;
    if (now || !w || (w.min === 0 && (w.max ?? 0) === 0)) {
      clearTimeout(this.timer);
      this.timer = undefined;
      this.firstChangeAt = undefined;
      this.kick();
      return;
    }
    const t = Date.now();
    this.firstChangeAt ??= t;
    const max = w.max ?? 4 * w.min;
    const due = Math.min(t + w.min, this.firstChangeAt + max);
    clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.firstChangeAt = undefined;
      this.kick();
    }, Math.max(0, due - t));
  }

  /** Renders now, or once more right after the render under way. */
  private kick(): void {
    if (this.stopped) return;
    if (this.rendering) {
      this.again = true;
      return;
    }
    this.rendering = (async () => {
      do {
        this.again = false;
        await this.renderOnce();
      } while (this.again && !this.stopped);
    })().finally(() => (this.rendering = undefined));
  }

  /** Each lookup of a render registers (and starts) the dependency it reads. */
  private data(): DataSource {
    const use = <T>(id: string, create: () => Dependency<T>): Promise<T> => {
      this.session?.add(id);
      const dep = this.pool.acquire(id, this, create);
      this.used.add(id);
      return dep.get();
    };
    const log = this.opts.logger;
    return {
      service: (name) => {
        const dot = name.indexOf(".");
        const [tag, svc] = dot > 0 ? [name.slice(0, dot), name.slice(dot + 1)] : [undefined, name];
        return use(`service(${name})`, () => new ServiceDependency(this.opts.coordinator(), svc, tag, log));
      },
      key: (path) => use(`key(${path})`, () => new KeyDependency(this.opts.coordinator(), path, log)),
      tree: (prefix) => use(`tree(${prefix})`, () => new TreeDependency(this.opts.coordinator(), prefix, log)),
      mysql: () => {
        const c = this.config.mysql ?? this.opts.defaultCluster;
        const store = () => this.opts.clusterStore?.(c.cluster, c.serviceName) ?? clusterClient(this.opts.coordinator(), c, this.opts.store, this.opts.env());
        return use(`mysql(${c.cluster})`, () => new MysqlDependency(store(), c.cluster, log));
      },
      env: (name) => {
        this.session?.add(`env(${name})`);
        return this.opts.env()[name] ?? "";
      },
    };
  }

  private async renderOnce(): Promise<void> {
    const started = performance.now();
    this.session = new Set();
    let text: string;
    try {
      const src = await readFile(this.source, "utf8");
      if (src !== this.lastSourceText && this.lastSourceText !== undefined) this.log.info("template source changed");
      this.lastSourceText = src;
      text = await this.liquid.parseAndRender(src, scope(this.data()));
      this.lastTouched = this.session;
    } catch (err) {
      if (this.stopped) return;
      this.failed(err, started);
      return;
    } finally {
      this.session = undefined;
    }
    if (this.stopped) return;
    // Only a complete render says what is no longer needed; a failed one keeps every watch.
    this.prune();
    let written = false;
    try {
      const r = await writeAtomically(this.destination, text, this.config.mode);
      written = r.written;
      if (r.warning) this.log.warn(r.warning);
    } catch (err) {
      this.failed(new Error(`writing ${this.destination}: ${(err as Error).message}`), started);
      return;
    }
    const at = new Date().toISOString();
    const ms = performance.now() - started;
    this.st.renders++;
    this.st.ok = true;
    this.st.lastRenderAt = at;
    if (this.st.lastError) this.log.info({ previousError: this.st.lastError.message }, "template renders again");
    this.st.lastError = undefined;
    this.opts.observer?.templateRendered?.(this.config.name, written ? "written" : "unchanged", ms);
    if (!written) {
      this.log.debug({ durationMs: Math.round(ms) }, "template rendered; destination unchanged");
      return;
    }
    this.st.writes++;
    this.st.lastWriteAt = at;
    this.log.info({ destination: this.destination, durationMs: Math.round(ms) }, "template rendered and written");
    this.opts.bus.publish({ code: "changed", source: `template.${this.config.name}`, data: { destination: this.destination } });
    if (this.config.command) await this.runCommand(this.config.command);
  }

  /** Stops watching what the last complete render no longer read. */
  private prune(): void {
    const touched = this.lastTouched;
    for (const id of [...this.used]) {
      if (touched.has(id)) continue;
      this.used.delete(id);
      this.pool.release(id, this);
    }
  }

  private lastTouched = new Set<string>();

  private failed(err: unknown, started: number): void {
    const message = err instanceof Error ? err.message : String(err);
    this.st.errors++;
    this.st.ok = false;
    this.st.lastError = { message, at: new Date().toISOString() };
    this.opts.observer?.templateRendered?.(this.config.name, "error", performance.now() - started);
    this.log.error({ err: message, destination: this.destination }, "template render failed; the last good file stays");
  }

  private async runCommand(command: string | string[]): Promise<void> {
    const at = new Date().toISOString();
    let ok = false;
    let code = -1;
    let durationMs = 0;
    let output = "";
    try {
      const p = new RunningProcess({
        name: `template.${this.config.name}`,
        argv: toArgv(command, this.config.shell),
        env: this.opts.env(),
        output: "capture",
        logger: this.log,
        timeoutMs: this.config.commandTimeout,
      });
      const st = await p.done;
      code = st.code;
      durationMs = Math.round(st.durationMs);
      output = st.spawnError ?? st.output;
      ok = st.code === 0 && !st.timedOut && !st.spawnError;
      if (st.timedOut) output = `timed out after ${formatDuration(this.config.commandTimeout)}; ${output}`;
    } catch (err) {
      output = (err as Error).message;
    }
    this.st.lastCommand = { ok, code, at, durationMs, ...(ok ? {} : { output: output.trim().slice(-1000) }) };
    this.opts.observer?.templateCommandRan?.(this.config.name, ok);
    if (ok) this.log.info({ durationMs }, "template command ran");
    else this.log.error({ code, output: output.trim().slice(-1000) }, "template command failed");
  }

  status(): TemplateStatus {
    return {
      name: this.config.name,
      source: this.source,
      destination: this.destination,
      ...this.st,
      dependencies: [...this.used].sort().map((id) => {
        const e = this.pool.errors(id);
        return e ? `${id}: ${e}` : id;
      }),
    };
  }
}

/** The templates part: one runner per configured template, sharing their dependency watches. */
export class Templates {
  private readonly pool: DependencyPool;
  private readonly runners: TemplateRunner[];

  constructor(
    readonly configs: TemplateConfig[],
    opts: TemplatesOptions,
  ) {
    this.pool = new DependencyPool(opts);
    this.runners = configs.map((c) => new TemplateRunner(c, this.pool, opts));
  }

  start(): void {
    for (const r of this.runners) r.start();
  }

  async stop(): Promise<void> {
    await Promise.all(this.runners.map((r) => r.stop()));
    this.pool.stop();
  }

  status(): TemplateStatus[] {
    return this.runners.map((r) => r.status());
  }
}
