import type { EventBus } from "../events/bus.js";
import type { HealthConfig, ServiceConfig } from "../config/schema.js";
import { formatDuration } from "../config/duration.js";
import type { Logger } from "../log.js";
import { RunningProcess } from "../process/runner.js";
import { toArgv } from "../process/argv.js";
import type { CheckStatus, ServiceRegistry, ServiceSpec } from "./coordination.js";
import { resolveAddress } from "./address.js";

export interface HealthResult {
  status: CheckStatus;
  output: string;
  durationMs: number;
}

export interface ServiceHealthOptions {
  jobName: string;
  node: string;
  /** Interval, timeout and TTL; the exec is used unless `probe` is given. */
  health: Pick<HealthConfig, "interval" | "timeout" | "ttl"> & Partial<Pick<HealthConfig, "exec" | "shell">>;
  /** An in-process check instead of a command (e.g. the telemetry endpoint's own liveness). */
  probe?: () => Promise<HealthResult>;
  service: ServiceConfig | undefined;
  /** Where the service is registered (Consul, or etcd keys); undefined: health only. */
  coordinator: ServiceRegistry | undefined;
  bus: EventBus;
  logger: Logger;
  env: () => NodeJS.ProcessEnv;
  /** Whether the job's process is up; a job with exec that is not running is critical without running the check. */
  processUp: () => boolean | undefined;
  onCheck?: (result: HealthResult) => void;
  onConsulError?: (op: string, err: unknown) => void;
}

/**
 * A job's health check and its Consul registration: every pass refreshes the TTL check, every
 * failure is sent at once with the check's output, and any error from a check update (the agent
 * restarted and forgot us) leads to a new registration.
 */
export class ServiceHealth {
  readonly serviceId: string | undefined;
  readonly checkId: string | undefined;
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private registered = false;
  private lastStatus: CheckStatus | undefined;
  private lastOutput = "";
  private inMaintenance = false;
  private tagsOverride: string[] | undefined;
  private current: RunningProcess | undefined;
  private readonly log: Logger;

  constructor(private readonly opts: ServiceHealthOptions) {
    this.log = opts.logger.child({ job: opts.jobName, component: "health" });
    if (opts.service) {
      this.serviceId = `${opts.service.name}-${opts.node}`;
      this.checkId = `service:${this.serviceId}`;
    }
  }

  get status(): CheckStatus | undefined {
    return this.lastStatus;
  }

  get isRegistered(): boolean {
    return this.registered;
  }

  spec(): ServiceSpec | undefined {
    const s = this.opts.service;
    if (!s || !this.serviceId || !this.checkId) return undefined;
    return {
      id: this.serviceId,
      name: s.name,
      address: resolveAddress(s.interfaces),
      port: s.port,
      tags: this.tagsOverride ?? s.tags,
      meta: { ...s.meta, "statepilot-node": this.opts.node },
      enableTagOverride: s.enableTagOverride,
      checkId: this.checkId,
      ttl: formatDuration(this.opts.health.ttl),
      initialStatus: this.lastStatus ?? s.initialStatus,
      deregisterCriticalServiceAfter: s.deregisterCriticalServiceAfter !== undefined ? formatDuration(s.deregisterCriticalServiceAfter) : undefined,
    };
  }

  async register(): Promise<boolean> {
    let spec: ServiceSpec | undefined;
    try {
      spec = this.spec();
    } catch (err) {
      // No address yet (the interface is not up): retried at the next check, never a crash.
      this.log.warn({ err: String(err) }, "no address to register; retrying at the next check");
      return false;
    }
    if (!spec || !this.opts.coordinator) return false;
    try {
      await this.opts.coordinator.registerService(spec);
      if (this.inMaintenance) await this.opts.coordinator.setMaintenance(spec.id, true, "statepilot maintenance");
      if (!this.registered) this.log.info({ serviceId: spec.id, address: spec.address, port: spec.port }, `registered in ${this.opts.coordinator.where}`);
      this.registered = true;
      return true;
    } catch (err) {
      this.registered = false;
      this.opts.onConsulError?.("register", err);
      this.log.warn({ err: String(err) }, "registration failed; retrying at the next check");
      return false;
    }
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    void this.register().then(() => this.tick());
  }

  private schedule(): void {
    if (!this.running) return;
    this.timer = setTimeout(() => void this.tick(), this.opts.health.interval);
  }

  private async tick(): Promise<void> {
    if (!this.running) return;
    const result = await this.runCheck();
    if (!this.running) return;
    await this.report(result);
    this.schedule();
  }

  private async runCheck(): Promise<HealthResult> {
    if (this.opts.processUp() === false) return { status: "critical", output: `job ${this.opts.jobName} is not running`, durationMs: 0 };
    if (this.opts.probe) return this.opts.probe();
    const h = this.opts.health;
    if (!h.exec) return { status: "critical", output: "no health check configured", durationMs: 0 };
    try {
      this.current = new RunningProcess({
        name: `${this.opts.jobName}.health`,
        argv: toArgv(h.exec, h.shell ?? false),
        env: this.opts.env(),
        output: "capture",
        logger: this.opts.logger,
        timeoutMs: h.timeout,
        killGraceMs: 1_000,
      });
      const st = await this.current.done;
      const output = st.spawnError ?? (st.timedOut ? `health check timed out after ${formatDuration(h.timeout)}\n${st.output}` : st.output);
      return { status: st.code === 0 && !st.timedOut ? "passing" : "critical", output: output.trim(), durationMs: st.durationMs };
    } catch (err) {
      return { status: "critical", output: `health check could not run: ${String(err)}`, durationMs: 0 };
    } finally {
      this.current = undefined;
    }
  }

  /** New tags (e.g. a role): registered again at once when already registered. */
  setTags(tags: string[]): void {
    this.tagsOverride = tags;
    if (this.registered) void this.register();
  }

  /** Sends a result to Consul at once and publishes healthy/unhealthy on a change; true once Consul has it. */
  async report(result: HealthResult): Promise<boolean> {
    this.opts.onCheck?.(result);
    const changed = result.status !== this.lastStatus;
    if (changed) {
      this.opts.bus.publish({ code: result.status === "passing" ? "healthy" : "unhealthy", source: this.opts.jobName, data: { output: result.output } });
      const level = result.status === "passing" ? "info" : "warn";
      this.log[level]({ status: result.status, output: result.output.slice(0, 500) }, "health changed");
    }
    this.lastStatus = result.status;
    this.lastOutput = result.output;
    return this.pushToConsul();
  }

  private async pushToConsul(): Promise<boolean> {
    if (!this.checkId || !this.opts.coordinator || !this.lastStatus) return false;
    if (!this.registered && !(await this.register())) return false;
    try {
      await this.opts.coordinator.reportCheck(this.checkId, this.lastStatus, this.lastOutput);
      return true;
    } catch (err) {
      // Any non-2xx: most often the agent restarted and lost the check. Register again, then resend.
      this.opts.onConsulError?.("check.update", err);
      this.log.warn({ err: String(err) }, "check update failed; registering again");
      this.registered = false;
      if (await this.register()) {
        try {
          await this.opts.coordinator.reportCheck(this.checkId, this.lastStatus, this.lastOutput);
          return true;
        } catch (err2) {
          this.opts.onConsulError?.("check.update", err2);
        }
      }
      return false;
    }
  }

  /** The job's process exited: critical at once, not after the TTL. */
  async processExited(description: string): Promise<void> {
    this.current?.signal("SIGKILL");
    void await this.report({ status: "critical", output: description, durationMs: 0 });
  }

  async setMaintenance(enable: boolean, reason: string): Promise<void> {
    this.inMaintenance = enable;
    // Not registered (yet, or a service this node does not offer now, such as mysql-primary on a
    // replica): the flag is applied when it registers; asking Consul now would be a 404.
    if (!this.serviceId || !this.opts.coordinator || !this.registered) return;
    try {
      await this.opts.coordinator.setMaintenance(this.serviceId, enable, reason);
    } catch (err) {
      this.opts.onConsulError?.("maintenance", err);
      this.log.warn({ err: String(err) }, "maintenance update failed");
    }
  }

  async stop(deregister = true): Promise<void> {
    this.running = false;
    clearTimeout(this.timer);
    this.current?.signal("SIGKILL");
    if (deregister && this.serviceId && this.opts.coordinator) {
      try {
        await this.opts.coordinator.deregisterService(this.serviceId);
        this.log.info({ serviceId: this.serviceId }, "deregistered from Consul");
      } catch (err) {
        this.opts.onConsulError?.("deregister", err);
        this.log.warn({ err: String(err) }, "deregistration failed");
      }
      this.registered = false;
    }
  }
}
