import { hostname } from "node:os";
import type { Config, JobConfig, WatchConfig } from "../config/schema.js";
import { formatDuration } from "../config/duration.js";
import { ConfigError } from "../config/load.js";
import { EventBus } from "../events/bus.js";
import type { Logger } from "../log.js";
import type { Coordinator, ServiceRegistry } from "../discovery/coordination.js";
import { EtcdServiceRegistry } from "../discovery/etcd/registry.js";
import { createEtcdClient, describeEndpoints, resolveEtcdConnection } from "../discovery/etcd/connection.js";
import { ConsulCoordinator } from "../discovery/consul/coordinator.js";
import { ServiceHealth, type HealthResult } from "../discovery/service-health.js";
import { ServiceWatch, type WatchStatus } from "../discovery/watch.js";
import { resolveConsulConnection } from "../discovery/consul/connection.js";
import type { RequestObserver } from "../discovery/consul/client.js";
import { Job, type JobStatus } from "./job.js";
import type { ExitStatus } from "../process/runner.js";
import type { TemplateConfig } from "../config/templates-schema.js";
import type { Templates, TemplateObserver } from "../templates/templates.js";
import { planReload, ReloadRefused, type ReloadPlan } from "./reload-plan.js";

export { ReloadRefused } from "./reload-plan.js";

export interface SupervisorStatus {
  node: string;
  version: string;
  uptimeSeconds: number;
  maintenance: boolean;
  shuttingDown: boolean;
  jobs: Array<JobStatus & { health?: { status: string | undefined; serviceId: string | undefined; registered: boolean } }>;
  watches: WatchStatus[];
  [part: string]: unknown;
}

/** Hooks for telemetry; the supervisor knows nothing of how they are exported. */
export interface SupervisorObserver extends TemplateObserver {
  jobStarted?(job: string): void;
  jobExited?(job: string, status: ExitStatus, restarting: boolean): void;
  healthChecked?(job: string, result: HealthResult): void;
  consulError?(op: string): void;
  watchChanged?(watch: string, instances: number, healthy: number): void;
}

export interface SupervisorOptions {
  config: Config;
  logger: Logger;
  version?: string;
  /** Replaces the Consul coordinator (an etcd one, later). */
  coordinator?: Coordinator;
  observer?: SupervisorObserver;
  /** Every Consul request, for latency and error metrics. */
  onConsulRequest?: RequestObserver;
}

/**
 * The supervisor: owns jobs, health checks, service registrations and watches, which talk to each
 * other only through the event bus. Resolves `exited` with the process exit code.
 */
export class Supervisor {
  readonly bus = new EventBus();
  readonly node: string;
  /** The validated config as the user wrote it; internal jobs are kept apart (see addInternalJob). */
  private config: Config;
  private readonly logger: Logger;
  private coordinator: Coordinator | undefined;
  private readonly jobs = new Map<string, Job>();
  private readonly health = new Map<string, ServiceHealth>();
  private readonly watches = new Map<string, ServiceWatch>();
  private templates: Templates | undefined;
  /** The templates part is loaded only when configured: a plain supervisor does not pay for the engine. */
  private templatesLoading: Promise<void> | undefined;
  /** Registrations owned by other parts (the telemetry endpoint), deregistered at shutdown. */
  private readonly extraHealth: ServiceHealth[] = [];
  private readonly runtimeEnv = new Map<string, string | undefined>();
  /** Jobs another part defines (mysqld for the MySQL autopilot): kept across reloads, never in `config`. */
  private readonly internalJobs: JobConfig[] = [];
  /** Reloads run one at a time (a SIGHUP and `statepilot reload` may arrive together). */
  private reloading: Promise<unknown> = Promise.resolve();
  private maintenance = false;
  private shuttingDown: Promise<number> | undefined;
  private mainExitCode: number | undefined;
  private resolveExited!: (code: number) => void;
  readonly exited: Promise<number>;
  private readonly startedAt = Date.now();
  readonly observer: SupervisorObserver;
  /** Set by the runtime that knows where the config comes from; SIGHUP calls it when reloadOnSighup is on. */
  onReloadRequest: (() => void) | undefined;

  constructor(private readonly opts: SupervisorOptions) {
    this.config = opts.config;
    this.logger = opts.logger;
    this.observer = opts.observer ?? {};
    this.node = opts.config.node ?? hostname().split(".")[0] ?? "node";
    this.coordinator = opts.coordinator;
    this.exited = new Promise((r) => (this.resolveExited = r));
    this.bus.onHandlerError = (sub, e, err) => this.logger.error({ subscriber: sub, event: e.code, source: e.source, err }, "event handler failed");
  }

  get version(): string {
    return this.opts.version ?? "";
  }

  private needsCoordinator(config: Config): boolean {
    return config.watches.length > 0 || this.allJobs(config).some((j) => j.service) || config.telemetry?.register === true;
  }

  /** The jobs to run: the config's and the internal ones. */
  private allJobs(config: Config): JobConfig[] {
    return [...config.jobs, ...this.internalJobs];
  }

  /** The coordination store, created on first use so a config without Consul needs no Consul. */
  coordination(): Coordinator {
    if (!this.coordinator) {
      const c = new ConsulCoordinator(resolveConsulConnection(this.config.consul, process.env));
      c.client.observer = this.opts.onConsulRequest;
      this.coordinator = c;
    }
    return this.coordinator;
  }

  private etcdRegistry: EtcdServiceRegistry | undefined;

  /** Whether services are registered in etcd (the etcd store's `registrations: etcd`), not Consul. */
  registersInEtcd(): boolean {
    const store = this.config.store;
    return store?.type === "etcd" && store.registrations === "etcd";
  }

  /** Where jobs (and the telemetry endpoint) register their services and watches read them. */
  registry(): ServiceRegistry {
    const store = this.config.store;
    if (store?.type !== "etcd" || store.registrations !== "etcd") return this.coordination();
    if (!this.etcdRegistry) {
      const conn = resolveEtcdConnection(store, process.env);
      this.etcdRegistry = new EtcdServiceRegistry(createEtcdClient(conn), { endpoints: describeEndpoints(conn), ownsClient: true, timeoutMs: conn.timeoutMs });
    }
    return this.etcdRegistry;
  }

  env(): NodeJS.ProcessEnv {
    const env: NodeJS.ProcessEnv = { ...process.env };
    for (const [k, v] of this.runtimeEnv) {
      if (v === undefined) delete env[k];
      else env[k] = v;
    }
    return env;
  }

  /** `putenv`: affects jobs started from now on. */
  putEnv(values: Record<string, string | null>): void {
    for (const [k, v] of Object.entries(values)) this.runtimeEnv.set(k, v ?? undefined);
    this.logger.info({ keys: Object.keys(values) }, "environment updated");
  }

  private createJob(cfg: JobConfig): void {
    const job = new Job(cfg, {
      bus: this.bus,
      logger: this.logger,
      env: () => this.env(),
      defaultOutput: this.config.logging.childOutput,
      onStart: (j) => this.observer.jobStarted?.(j.name),
      onExit: (j, status, final) => this.onJobExit(j, status, final),
    });
    this.jobs.set(cfg.name, job);
    if (cfg.health) {
      const h = new ServiceHealth({
        jobName: cfg.name,
        node: this.node,
        health: cfg.health,
        service: cfg.service,
        coordinator: cfg.service ? this.registry() : undefined,
        bus: this.bus,
        logger: this.logger,
        env: () => this.env(),
        processUp: () => (cfg.exec && !cfg.when ? job.isRunning : undefined),
        onCheck: (r) => this.observer.healthChecked?.(cfg.name, r),
        onConsulError: (op) => this.observer.consulError?.(op),
      });
      if (this.maintenance) void h.setMaintenance(true, "statepilot maintenance");
      this.health.set(cfg.name, h);
    }
  }

  private createWatch(cfg: WatchConfig): void {
    const w = new ServiceWatch(cfg, this.registry(), this.bus, this.logger);
    w.onChange = (list) => this.observer.watchChanged?.(cfg.name, list.length, list.filter((i) => i.healthy).length);
    w.onError = () => this.observer.consulError?.("watch");
    this.watches.set(cfg.name, w);
  }

  /** The templates part (rendered files); its state is the `templates` section of status(). */
  private startTemplates(configs: TemplateConfig[]): void {
    if (!configs.length) return;
    this.statusParts.set("templates", () => this.templates?.status() ?? []);
    this.templatesLoading = import("../templates/templates.js")
      .then(({ Templates }) => {
        if (this.shuttingDown) return;
        this.createTemplates(Templates, configs);
      })
      .catch((err: unknown) => this.logger.error({ err: err instanceof Error ? err.message : String(err) }, "templates could not start"));
  }

  private createTemplates(TemplatesPart: typeof Templates, configs: TemplateConfig[]): void {
    const templates = new TemplatesPart(configs, {
      coordinator: () => this.coordination(),
      store: this.config.store,
      defaultCluster: { cluster: this.config.mysql?.cluster ?? "default", serviceName: this.config.mysql?.serviceName ?? "mysql" },
      bus: this.bus,
      logger: this.logger,
      env: () => this.env(),
      observer: this.observer,
    });
    this.templates = templates;
    templates.start();
  }

  private onJobExit(job: Job, status: ExitStatus, final: boolean): void {
    this.observer.jobExited?.(job.name, status, !final);
    const h = this.health.get(job.name);
    if (h && !this.shuttingDown) {
      void h.processExited(`${job.name} exited with code ${status.code}${status.signal ? ` (${status.signal})` : ""}`);
    }
    if (job.config.main && final && !this.shuttingDown) {
      this.mainExitCode = status.code;
      this.logger.info({ code: status.code }, "main job is done; shutting down");
      void this.shutdown("main job exited");
    }
  }

  /** A job defined in code (mysqld, from the mysql section); call before start(). Kept out of `config`: reload compares valid configs. */
  addInternalJob(cfg: JobConfig): void {
    const clash = this.config.jobs.findIndex((j) => j.name === cfg.name);
    if (clash >= 0) throw new ConfigError("config", [{ path: `jobs[${clash}].name`, message: `"${cfg.name}" is the job the mysql section runs; choose another name`, value: JSON.stringify(cfg.name) }]);
    this.internalJobs.push(cfg);
  }

  private readonly statusParts = new Map<string, () => unknown>();

  /** Adds a section to status() (the MySQL autopilot's view). */
  addStatus(name: string, part: () => unknown): void {
    this.statusParts.set(name, part);
  }

  jobPid(name: string): number | undefined {
    return this.jobs.get(name)?.pid;
  }

  jobRunning(name: string): boolean {
    return this.jobs.get(name)?.isRunning ?? false;
  }

  /** SIGKILLs a job's process group; its restart policy applies as usual. */
  killJob(name: string): void {
    this.jobs.get(name)?.kill();
  }

  /**
   * Stops a job until resumeJob (its stop signal, then SIGKILL after stopTimeout), without a
   * restart and without ending statepilot, even for the main job: a node rebuilding its datadir.
   */
  async pauseJob(name: string): Promise<void> {
    const job = this.jobs.get(name);
    if (!job) throw new Error(`no job ${JSON.stringify(name)}`);
    await job.stop("maintenance");
  }

  /** Starts a job paused by pauseJob again; `exec` replaces its command first (a new server_id). */
  resumeJob(name: string, exec?: string[]): void {
    const job = this.jobs.get(name);
    if (!job) return;
    if (exec) job.config.exec = exec;
    job.resume();
  }

  start(): void {
    if (process.pid === 1) {
      this.logger.warn("statepilot is PID 1 without an init: orphaned processes cannot be reaped from Node; run it under tini (ENTRYPOINT [\"tini\", \"--\"])");
    }
    if (this.needsCoordinator(this.config)) this.coordination();
    for (const cfg of this.allJobs(this.config)) this.createJob(cfg);
    for (const cfg of this.config.watches) this.createWatch(cfg);
    this.logger.info({ node: this.node, jobs: this.jobs.size, watches: this.config.watches.length }, "statepilot starting");
    for (const w of this.watches.values()) w.start();
    this.startTemplates(this.config.templates);
    for (const job of this.jobs.values()) job.activate();
    for (const h of this.health.values()) h.start();
    this.bus.publish({ code: "startup", source: "statepilot" });
    if (this.jobs.size === 0 && this.watches.size === 0) this.logger.warn("no jobs and no watches configured; waiting for a signal");
  }

  /** A signal statepilot received: SIGTERM/SIGINT stop everything; others become events and are forwarded. */
  handleSignal(sig: NodeJS.Signals): void {
    if (sig === "SIGTERM" || sig === "SIGINT" || sig === "SIGQUIT") {
      if (this.shuttingDown) {
        this.logger.warn({ signal: sig }, "second stop signal: killing all jobs now");
        for (const j of this.jobs.values()) j.kill();
        return;
      }
      void this.shutdown(sig);
      return;
    }
    if (sig === "SIGHUP" || sig === "SIGUSR2") this.bus.publish({ code: sig, source: "statepilot" });
    if (sig === "SIGHUP" && this.config.reloadOnSighup) {
      this.onReloadRequest?.();
      return;
    }
    for (const job of this.jobs.values()) {
      const forward = job.config.forwardSignals ?? (job.config.main ? ["SIGHUP", "SIGUSR1", "SIGUSR2"] : []);
      if ((forward as string[]).includes(sig)) job.signal(sig);
    }
  }

  /** Jobs in start-dependency levels: a job waiting on another job's event comes after it. */
  private stopOrder(): Job[][] {
    const depth = new Map<string, number>();
    const level = (name: string, seen: Set<string>): number => {
      if (depth.has(name)) return depth.get(name)!;
      const src = this.jobs.get(name)?.config.when?.source;
      const d = src && this.jobs.has(src) && !seen.has(src) ? level(src, new Set([...seen, name])) + 1 : 0;
      depth.set(name, d);
      return d;
    };
    for (const n of this.jobs.keys()) level(n, new Set([n]));
    const levels: Job[][] = [];
    for (const [n, d] of depth) {
      levels[d] ??= [];
      levels[d].push(this.jobs.get(n)!);
    }
    return levels.filter(Boolean).reverse();
  }

  /** Stops everything in reverse dependency order, deregisters, and resolves with the exit code. */
  shutdown(reason: string): Promise<number> {
    this.shuttingDown ??= this.doShutdown(reason);
    return this.shuttingDown;
  }

  private async doShutdown(reason: string): Promise<number> {
    const started = performance.now();
    this.logger.info({ reason }, "shutting down");
    this.bus.publish({ code: "shutdown", source: "statepilot" });
    for (const hook of this.stoppingHooks) {
      try {
        await hook();
      } catch (err) {
        this.logger.error({ err: err instanceof Error ? err.message : String(err) }, "stopping hook failed");
      }
    }
    const deadline = setTimeout(() => {
      this.logger.error({ stopTimeout: formatDuration(this.config.stopTimeout) }, "shutdown deadline reached; killing what is left");
      for (const j of this.jobs.values()) j.kill();
    }, this.config.stopTimeout);
    for (const w of this.watches.values()) w.stop();
    await this.templatesLoading;
    await this.templates?.stop();
    for (const level of this.stopOrder()) {
      await Promise.all(level.map(async (job) => {
        const st = await job.stop("shutdown");
        // A main job that ended on the stop signal statepilot sent it stopped as asked: exit 0.
        if (job.config.main && st && this.mainExitCode === undefined) this.mainExitCode = st.signal === job.config.stopSignal ? 0 : st.code;
      }));
    }
    await Promise.all([...this.health.values(), ...this.extraHealth].map((h) => h.stop(true)));
    for (const hook of this.shutdownHooks) await hook();
    clearTimeout(deadline);
    await this.bus.drain();
    this.coordinator?.close();
    this.etcdRegistry?.close();
    const code = this.mainExitCode ?? 0;
    this.logger.info({ code, durationMs: Math.round(performance.now() - started) }, "statepilot stopped");
    this.resolveExited(code);
    return code;
  }

  private readonly shutdownHooks: Array<() => Promise<void> | void> = [];
  private readonly stoppingHooks: Array<() => Promise<void> | void> = [];

  /** Runs first at shutdown, before any job is stopped (a primary hands over its lock here). */
  onStopping(hook: () => Promise<void> | void): void {
    this.stoppingHooks.push(hook);
  }

  /** Runs after jobs stopped and services were deregistered, before the process exits. */
  onShutdown(hook: () => Promise<void> | void): void {
    this.shutdownHooks.push(hook);
  }

  /** A service registration owned elsewhere that lives and dies with the supervisor. */
  adoptServiceHealth(h: ServiceHealth): void {
    this.extraHealth.push(h);
    h.start();
  }

  /** Registrations driven by another part (the MySQL autopilot) that follow maintenance mode. */
  private readonly maintainedHealth: ServiceHealth[] = [];

  followMaintenance(h: ServiceHealth): void {
    this.maintainedHealth.push(h);
    if (this.maintenance) void h.setMaintenance(true, "statepilot maintenance");
  }

  async setMaintenance(enable: boolean, reason = "statepilot maintenance"): Promise<void> {
    if (enable === this.maintenance) return;
    this.maintenance = enable;
    this.logger.info({ enable, reason }, enable ? "entering maintenance" : "leaving maintenance");
    await Promise.all([...this.health.values(), ...this.maintainedHealth].map((h) => h.setMaintenance(enable, reason)));
    for (const job of this.jobs.values()) {
      if (job.config.maintenance !== "pause") continue;
      if (enable) await job.stop("maintenance");
      else job.resume();
    }
    this.bus.publish({ code: enable ? "enterMaintenance" : "exitMaintenance", source: "statepilot" });
  }

  get inMaintenance(): boolean {
    return this.maintenance;
  }

  /**
   * Applies a config validated as at start-up: only jobs and watches whose definition changed are
   * restarted; internal jobs (mysqld) stay. Any other setting changed (see LIVE in reload-plan)
   * refuses the whole reload with ReloadRefused naming the fields, before anything is touched.
   */
  reload(nextConfig: Config): Promise<ReloadPlan> {
    const run = this.reloading.then(() => this.applyReload(nextConfig));
    this.reloading = run.catch(() => undefined);
    return run;
  }

  private async applyReload(next: Config): Promise<ReloadPlan> {
    if (this.shuttingDown) throw new ReloadRefused("statepilot is shutting down");
    const plan = planReload(this.config, next, this.internalJobs);
    const { restarted, added, removed } = plan;
    const before = new Map(this.allJobs(this.config).map((j) => [j.name, j]));
    const after = new Map(this.allJobs(next).map((j) => [j.name, j]));
    this.config = next;
    this.logger.level = next.logging.level;
    for (const n of [...removed, ...restarted]) {
      await this.jobs.get(n)?.stop("reload");
      // Keep the Consul registration when the same service comes back right away.
      await this.health.get(n)?.stop(before.get(n)?.service?.name !== after.get(n)?.service?.name);
      this.jobs.delete(n);
      this.health.delete(n);
    }
    for (const n of [...added, ...restarted]) {
      this.createJob(after.get(n)!);
      this.jobs.get(n)!.activate();
      this.health.get(n)?.start();
    }
    const nextWatches = new Map(next.watches.map((w) => [w.name, JSON.stringify(w)]));
    for (const [n, w] of this.watches) {
      if (nextWatches.get(n) !== JSON.stringify(w.config)) {
        w.stop();
        this.watches.delete(n);
      }
    }
    for (const cfg of next.watches) {
      if (!this.watches.has(cfg.name)) {
        this.createWatch(cfg);
        this.watches.get(cfg.name)!.start();
      }
    }
    await this.templatesLoading;
    if (JSON.stringify(this.templates?.configs ?? []) !== JSON.stringify(next.templates)) {
      await this.templates?.stop();
      this.templates = undefined;
      this.statusParts.delete("templates");
      this.startTemplates(next.templates);
    }
    this.logger.info({ restarted, added, removed }, "configuration reloaded");
    return plan;
  }

  status(): SupervisorStatus {
    return {
      node: this.node,
      version: this.version,
      uptimeSeconds: Math.round((Date.now() - this.startedAt) / 1000),
      maintenance: this.maintenance,
      shuttingDown: this.shuttingDown !== undefined,
      jobs: [...this.jobs.values()].map((j) => {
        const h = this.health.get(j.name);
        return { ...j.status(), ...(h ? { health: { status: h.status, serviceId: h.serviceId, registered: h.isRegistered } } : {}) };
      }),
      watches: [...this.watches.values()].map((w) => w.status()),
      ...Object.fromEntries([...this.statusParts].map(([k, f]) => [k, f()])),
    };
  }
}
