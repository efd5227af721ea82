import type { TelemetryConfig } from "../config/schema.js";
import type { Logger } from "../log.js";
import { RunningProcess } from "../process/runner.js";
import { toArgv } from "../process/argv.js";
import type { Metrics } from "./metrics.js";

type SensorConfig = TelemetryConfig["sensors"][number];

/**
 * Runs sensor commands on their intervals and records the number each prints. A failure or a
 * value that is not a number is counted and logged once per distinct error, and never stops
 * the sensor.
 */
export class Sensors {
  private timers: NodeJS.Timeout[] = [];
  private readonly reported = new Set<string>();
  private running = new Set<RunningProcess>();

  constructor(
    private readonly sensors: SensorConfig[],
    private readonly metrics: Metrics,
    private readonly logger: Logger,
    private readonly env: () => NodeJS.ProcessEnv,
  ) {}

  start(): void {
    for (const s of this.sensors) {
      const tick = () => void this.runOnce(s);
      tick();
      this.timers.push(setInterval(tick, s.interval));
    }
  }

  private fail(s: SensorConfig, error: string): void {
    this.metrics.sensorErrors.inc({ metric: s.metric });
    const key = `${s.metric}\u0000${error}`;
    if (this.reported.has(key)) return;
    this.reported.add(key);
    this.logger.warn({ sensor: s.metric, error }, "sensor failed (logged once per distinct error)");
  }

  async runOnce(s: SensorConfig): Promise<void> {
    let proc: RunningProcess;
    try {
      proc = new RunningProcess({ name: `sensor.${s.metric}`, argv: toArgv(s.exec, false), env: this.env(), output: "capture", logger: this.logger, timeoutMs: s.timeout, killGraceMs: 500 });
    } catch (err) {
      this.fail(s, `cannot start: ${String(err)}`);
      return;
    }
    this.running.add(proc);
    const st = await proc.done;
    this.running.delete(proc);
    if (st.spawnError) return this.fail(s, `cannot start: ${st.spawnError}`);
    if (st.timedOut) return this.fail(s, `timed out after ${s.timeout} ms`);
    if (st.code !== 0) return this.fail(s, `exited with code ${st.code}`);
    const text = st.output.trim();
    const value = text === "" ? NaN : Number(text);
    if (!Number.isFinite(value)) return this.fail(s, `output is not a number: ${JSON.stringify(text.slice(0, 80))}`);
    try {
      this.metrics.put({ name: s.metric, value, labels: s.labels });
    } catch (err) {
      this.fail(s, String(err instanceof Error ? err.message : err));
    }
  }

  stop(): void {
    for (const t of this.timers) clearInterval(t);
    for (const p of this.running) p.signal("SIGKILL");
  }
}
