import { Counter, Gauge, Histogram, Registry, Summary, collectDefaultMetrics } from "prom-client";
import { z } from "zod";
import type { UserMetricConfig } from "../config/schema.js";
import type { SupervisorObserver } from "../supervisor/supervisor.js";
import type { BusEvent } from "../events/bus.js";

type UserMetric = { config: UserMetricConfig; metric: Counter | Gauge | Histogram | Summary };

/** A user metric update, from `putmetric`, POST /v1/metric or a sensor. */
export const MetricUpdate = z.strictObject({
  name: z.string().min(1),
  value: z.number({ error: "expected a number" }).refine(Number.isFinite, { error: "expected a finite number" }),
  labels: z.record(z.string(), z.string()).default({}),
  op: z.enum(["set", "inc", "observe"]).optional().describe("Default by type: gauge set, counter inc, histogram/summary observe."),
});
export const MetricUpdates = z.union([MetricUpdate, z.array(MetricUpdate).min(1)]);
export type MetricUpdateInput = z.input<typeof MetricUpdate>;

export class MetricUpdateError extends Error {
  override name = "MetricUpdateError";
}

/**
 * All of statepilot's Prometheus metrics in one registry: process metrics, the built-ins (every
 * label set bounded by config: job, watch, endpoint, event code) and the metrics users declare.
 */
// Labels never use `job` or `instance`: Prometheus sets those on every target.
export class Metrics {
  readonly registry = new Registry();
  private readonly user = new Map<string, UserMetric>();

  readonly jobStarts = new Counter({ name: "statepilot_job_starts_total", help: "Job processes started.", labelNames: ["job_name"], registers: [this.registry] });
  readonly jobExits = new Counter({ name: "statepilot_job_exits_total", help: "Job processes that exited, by outcome (success, failure, signal).", labelNames: ["job_name", "outcome"], registers: [this.registry] });
  readonly jobRestarts = new Counter({ name: "statepilot_job_restarts_total", help: "Restarts scheduled under the job's restart policy.", labelNames: ["job_name"], registers: [this.registry] });
  readonly healthDuration = new Histogram({ name: "statepilot_health_check_duration_seconds", help: "Duration of health checks.", labelNames: ["job_name"], buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10], registers: [this.registry] });
  readonly healthResults = new Counter({ name: "statepilot_health_checks_total", help: "Health check results.", labelNames: ["job_name", "status"], registers: [this.registry] });
  readonly consulDuration = new Histogram({ name: "statepilot_consul_request_duration_seconds", help: "Consul HTTP API request latency by endpoint (blocking queries included).", labelNames: ["endpoint"], buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5, 30, 60], registers: [this.registry] });
  readonly consulErrors = new Counter({ name: "statepilot_consul_request_errors_total", help: "Consul HTTP API requests that failed, by endpoint.", labelNames: ["endpoint"], registers: [this.registry] });
  readonly watchChanges = new Counter({ name: "statepilot_watch_changes_total", help: "Changes seen by a watch.", labelNames: ["watch"], registers: [this.registry] });
  readonly watchInstances = new Gauge({ name: "statepilot_watch_instances", help: "Instances of the watched service, by health.", labelNames: ["watch", "health"], registers: [this.registry] });
  readonly events = new Counter({ name: "statepilot_events_total", help: "Events published on the bus, by code.", labelNames: ["code"], registers: [this.registry] });
  readonly controlRequests = new Counter({ name: "statepilot_control_requests_total", help: "Control-plane requests, by route and HTTP status.", labelNames: ["route", "status"], registers: [this.registry] });
  readonly sensorErrors = new Counter({ name: "statepilot_sensor_errors_total", help: "Sensor runs that failed or printed no number.", labelNames: ["metric"], registers: [this.registry] });
  readonly metricUpdateErrors = new Counter({ name: "statepilot_metric_update_errors_total", help: "Rejected user metric updates.", registers: [this.registry] });
  readonly templateRenders = new Counter({ name: "statepilot_template_renders_total", help: "Template renders, by outcome (written, unchanged, error).", labelNames: ["template", "outcome"], registers: [this.registry] });
  readonly templateRenderErrors = new Counter({ name: "statepilot_template_render_errors_total", help: "Template renders that failed (syntax, missing key, unreadable source, write error); the last good file stays.", labelNames: ["template"], registers: [this.registry] });
  readonly templateLastRender = new Gauge({ name: "statepilot_template_last_render_timestamp_seconds", help: "Unix time of the template's last successful render.", labelNames: ["template"], registers: [this.registry] });
  readonly templateCommandErrors = new Counter({ name: "statepilot_template_command_errors_total", help: "Template commands (reloads) that failed or timed out.", labelNames: ["template"], registers: [this.registry] });
  readonly info = new Gauge({ name: "statepilot_info", help: "Always 1; labels carry the version and node.", labelNames: ["version", "node"], registers: [this.registry] });

  constructor(userMetrics: UserMetricConfig[] = []) {
    collectDefaultMetrics({ register: this.registry });
    // prom-client names these gauges *_total, which promtool rejects for non-counters.
    for (const name of ["nodejs_active_handles_total", "nodejs_active_requests_total", "nodejs_active_resources_total"]) this.registry.removeSingleMetric(name);
    for (const m of userMetrics) this.declare(m);
  }

  private declare(m: UserMetricConfig): void {
    const common = { name: m.name, help: m.help, labelNames: m.labels, registers: [this.registry] };
    const metric =
      m.type === "counter" ? new Counter(common)
      : m.type === "gauge" ? new Gauge(common)
      : m.type === "histogram" ? new Histogram({ ...common, ...(m.buckets ? { buckets: m.buckets } : {}) })
      : new Summary({ ...common, ...(m.percentiles ? { percentiles: m.percentiles } : {}) });
    this.user.set(m.name, { config: m, metric });
  }

  /** Applies one user update; throws MetricUpdateError naming what is wrong. */
  put(update: z.output<typeof MetricUpdate>): void {
    const u = this.user.get(update.name);
    try {
      if (!u) throw new MetricUpdateError(`name: no metric ${JSON.stringify(update.name)} is declared in telemetry.metrics`);
      const declared = u.config.labels;
      const given = Object.keys(update.labels);
      const missing = declared.filter((l) => !given.includes(l));
      const extra = given.filter((l) => !declared.includes(l));
      if (missing.length || extra.length) throw new MetricUpdateError(`labels: ${update.name} takes [${declared.join(", ")}]${missing.length ? `; missing ${missing.join(", ")}` : ""}${extra.length ? `; unknown ${extra.join(", ")}` : ""}`);
      const type = u.config.type;
      const op = update.op ?? (type === "gauge" ? "set" : type === "counter" ? "inc" : "observe");
      const allowed = { counter: ["inc"], gauge: ["set", "inc"], histogram: ["observe"], summary: ["observe"] }[type];
      if (!allowed.includes(op)) throw new MetricUpdateError(`op: ${op} does not apply to ${type} ${update.name} (use ${allowed.join(" or ")})`);
      if (type === "counter" && update.value < 0) throw new MetricUpdateError(`value: a counter only goes up (got ${update.value})`);
      const labels = update.labels;
      if (op === "set") (u.metric as Gauge).set(labels, update.value);
      else if (op === "inc") (u.metric as Counter | Gauge).inc(labels, update.value);
      else (u.metric as Histogram | Summary).observe(labels, update.value);
    } catch (err) {
      this.metricUpdateErrors.inc();
      throw err;
    }
  }

  /** The supervisor's hooks, feeding the built-ins. */
  observer(): SupervisorObserver {
    return {
      jobStarted: (job) => this.jobStarts.inc({ job_name: job }),
      jobExited: (job, status, restarting) => {
        this.jobExits.inc({ job_name: job, outcome: status.signal ? "signal" : status.code === 0 ? "success" : "failure" });
        if (restarting) this.jobRestarts.inc({ job_name: job });
      },
      healthChecked: (job, r) => {
        this.healthDuration.observe({ job_name: job }, r.durationMs / 1000);
        this.healthResults.inc({ job_name: job, status: r.status });
      },
      templateRendered: (template, outcome) => {
        this.templateRenders.inc({ template, outcome });
        // Incremented by 0 too: the series exists from the first render on, so rate() and alerts work.
        this.templateRenderErrors.inc({ template }, outcome === "error" ? 1 : 0);
        if (outcome !== "error") this.templateLastRender.set({ template }, Date.now() / 1000);
      },
      templateCommandRan: (template, ok) => this.templateCommandErrors.inc({ template }, ok ? 0 : 1),
      watchChanged: (watch, instances, healthy) => {
        this.watchChanges.inc({ watch });
        this.watchInstances.set({ watch, health: "passing" }, healthy);
        this.watchInstances.set({ watch, health: "not_passing" }, instances - healthy);
      },
    };
  }

  consulRequest(endpoint: string, durationMs: number, outcome: "ok" | "error"): void {
    this.consulDuration.observe({ endpoint }, durationMs / 1000);
    if (outcome === "error") this.consulErrors.inc({ endpoint });
  }

  event(e: BusEvent): void {
    this.events.inc({ code: e.code });
  }

  async text(): Promise<string> {
    return this.registry.metrics();
  }
}
