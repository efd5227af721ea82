import type { z } from "zod";
import type { TelemetryConfig } from "../config/schema.js";
import { formatDuration } from "../config/duration.js";
import type { Logger } from "../log.js";
import { ServiceHealth } from "../discovery/service-health.js";
import type { Supervisor } from "../supervisor/supervisor.js";
import { HttpError, parseBody } from "../control/server.js";
import { type Metrics, MetricUpdateError, MetricUpdates } from "./metrics.js";
import { Sensors } from "./sensors.js";
import { TelemetryServer } from "./server.js";
import { BearerCheck, resolveTelemetryToken } from "./auth.js";

const EVERY_INTERFACE = new Set(["0.0.0.0", "::"]);

/** The telemetry part: metrics registry, HTTP endpoint, sensors, and the endpoint's Consul registration. */
export class Telemetry {
  readonly server: TelemetryServer;
  private readonly sensors: Sensors;

  constructor(
    readonly config: TelemetryConfig,
    readonly metrics: Metrics,
    private readonly supervisor: Supervisor,
    private readonly logger: Logger,
    env: NodeJS.ProcessEnv = process.env,
  ) {
    // A bad token file or variable stops start-up here, before anything runs (ConfigError, exit 2).
    const token = config.auth ? resolveTelemetryToken(config.auth, env, "telemetry") : undefined;
    const access = token !== undefined ? { check: new BearerCheck(token), metrics: config.auth?.metrics ?? false } : undefined;
    this.server = new TelemetryServer(metrics, () => supervisor.status(), logger, access);
    this.sensors = new Sensors(config.sensors, metrics, logger, () => supervisor.env());
  }

  async start(): Promise<void> {
    await this.server.start(this.config.bind, this.config.port);
    if (!this.config.auth && EVERY_INTERFACE.has(this.config.bind)) {
      this.logger.warn({ bind: this.config.bind, port: this.server.port }, "telemetry: /status (jobs, pids, topology, GTIDs) is served without a token on every interface; set telemetry.bind or telemetry.auth");
    }
    this.metrics.info.set({ version: this.supervisor.version, node: this.supervisor.node }, 1);
    this.supervisor.bus.onPublish = (e) => this.metrics.event(e);
    this.sensors.start();
    if (this.config.register) {
      const port = this.server.port;
      const health = new ServiceHealth({
        jobName: "telemetry",
        node: this.supervisor.node,
        health: { interval: this.config.interval, ttl: this.config.ttl, timeout: this.config.interval },
        probe: async () => ({ status: "passing", output: `serving /metrics on port ${port}`, durationMs: 0 }),
        service: {
          name: this.config.serviceName,
          port,
          interfaces: this.config.interfaces,
          tags: this.config.tags,
          meta: { metrics_path: "/metrics" },
          enableTagOverride: false,
          initialStatus: "passing",
          deregisterCriticalServiceAfter: undefined,
        },
        coordinator: this.supervisor.registry(),
        bus: this.supervisor.bus,
        logger: this.logger,
        env: () => this.supervisor.env(),
        processUp: () => undefined,
      });
      this.supervisor.adoptServiceHealth(health);
      this.logger.debug({ service: this.config.serviceName, ttl: formatDuration(this.config.ttl) }, "telemetry registered for discovery");
    }
    this.supervisor.onShutdown(() => this.stop());
  }

  /** POST /v1/metric: one update or an array; every problem is a 400 naming the field. */
  putMetric(body: unknown): void {
    let parsed: z.output<typeof MetricUpdates>;
    try {
      parsed = parseBody(MetricUpdates, body);
    } catch (err) {
      this.metrics.metricUpdateErrors.inc();
      throw err;
    }
    const updates = Array.isArray(parsed) ? parsed : [parsed];
    for (const [i, u] of updates.entries()) {
      try {
        this.metrics.put(u);
      } catch (err) {
        if (err instanceof MetricUpdateError) throw new HttpError(400, `${Array.isArray(parsed) ? `[${i}].` : ""}${err.message}`);
        throw err;
      }
    }
  }

  async stop(): Promise<void> {
    this.sensors.stop();
    await this.server.stop();
  }
}
