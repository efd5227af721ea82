import type { EventBus, BusEvent, Subscription } from "../events/bus.js";
import type { JobConfig, HookConfig } from "../config/schema.js";
import type { Logger } from "../log.js";
import { RestartBackoff } from "./backoff.js";
import { RunningProcess, type ExitStatus, type OutputMode } from "../process/runner.js";
import { toArgv } from "../process/argv.js";

export type JobState = "waiting" | "running" | "backoff" | "exited" | "failed" | "stopping" | "stopped" | "paused";

export interface JobStatus {
  name: string;
  state: JobState;
  pid: number | undefined;
  starts: number;
  restarts: number;
  lastExit: { code: number; signal: string | undefined; at: string } | undefined;
  main: boolean;
}

export interface JobContext {
  bus: EventBus;
  logger: Logger;
  /** The environment a job starts with; changed at run time by `putenv`. */
  env: () => NodeJS.ProcessEnv;
  defaultOutput: "raw" | "wrapped";
  onExit?: (job: Job, status: ExitStatus, final: boolean) => void;
  onStart?: (job: Job) => void;
}

/**
 * One configured job: when it starts, how it restarts, how it stops. It reports through the bus
 * (exitSuccess, exitFailed, stopping, stopped) and reacts to the events named in `when`.
 */
export class Job {
  state: JobState = "waiting";
  private proc: RunningProcess | undefined;
  private readonly backoff: RestartBackoff;
  private restartTimer: NodeJS.Timeout | undefined;
  private intervalTimer: NodeJS.Timeout | undefined;
  private waitTimer: NodeJS.Timeout | undefined;
  private subscription: Subscription | undefined;
  private starts = 0;
  private restartsUsed = 0;
  private lastExit: JobStatus["lastExit"];
  private stopRequested = false;
  private firedOnce = false;
  private readonly log: Logger;

  constructor(
    readonly config: JobConfig,
    private readonly ctx: JobContext,
  ) {
    this.backoff = new RestartBackoff(config.backoff);
    this.log = ctx.logger.child({ job: config.name });
  }

  get name(): string {
    return this.config.name;
  }

  get pid(): number | undefined {
    return this.proc?.running ? this.proc.pid : undefined;
  }

  get isRunning(): boolean {
    return this.proc?.running === true;
  }

  status(): JobStatus {
    return {
      name: this.name,
      state: this.state,
      pid: this.pid,
      starts: this.starts,
      restarts: this.restartsUsed,
      lastExit: this.lastExit,
      main: this.config.main,
    };
  }

  /** Arms the job: starts it now when it has no `when`, or waits for its event or interval. */
  activate(): void {
    this.stopRequested = false;
    const when = this.config.when;
    if (!this.config.exec) return;
    if (!when) {
      this.start();
    } else if (when.interval !== undefined) {
      this.start();
      this.intervalTimer = setInterval(() => {
        if (this.isRunning) this.log.debug("still running at the next interval; skipped");
        else if (!this.stopRequested) this.start();
      }, when.interval);
    } else {
      const code = when.once ?? when.each;
      this.subscription = this.ctx.bus.subscribe(`job:${this.name}`, (e) => this.onTrigger(e), (e) => e.code === code && (when.source === undefined || e.source === when.source));
      if (when.timeout !== undefined) this.waitTimer = setTimeout(() => this.giveUpWaiting(code ?? "", when.source), when.timeout);
    }
  }

  /** when.timeout: the event did not come in time; the job never runs. */
  private giveUpWaiting(code: string, source: string | undefined): void {
    if (this.starts > 0 || this.stopRequested || this.state !== "waiting") return;
    this.log.warn({ event: code, source, timeoutMs: this.config.when?.timeout }, "the event did not come within when.timeout; the job will not run");
    this.subscription?.unsubscribe();
    this.subscription = undefined;
    this.state = "stopped";
    this.ctx.bus.publish({ code: "stopped", source: this.name });
  }

  private onTrigger(e: BusEvent): void {
    if (this.stopRequested || this.state === "paused") return;
    clearTimeout(this.waitTimer);
    if (this.config.when?.once !== undefined) {
      if (this.firedOnce) return;
      this.firedOnce = true;
      this.subscription?.unsubscribe();
    }
    if (this.isRunning) {
      this.log.debug({ event: e.code, source: e.source }, "already running; trigger ignored");
      return;
    }
    this.start();
  }

  private outputMode(): OutputMode {
    return this.config.output ?? this.ctx.defaultOutput;
  }

  start(): void {
    if (!this.config.exec || this.isRunning || this.stopRequested) return;
    clearTimeout(this.restartTimer);
    const argv = toArgv(this.config.exec, this.config.shell);
    this.starts++;
    this.state = "running";
    let proc: RunningProcess;
    try {
      proc = new RunningProcess({
        name: this.name,
        argv,
        env: { ...this.ctx.env(), ...this.config.env },
        cwd: this.config.cwd,
        output: this.outputMode(),
        logger: this.ctx.logger,
        timeoutMs: this.config.timeout,
        stopSignal: this.config.stopSignal,
        killGraceMs: this.config.stopTimeout,
      });
    } catch (err) {
      this.log.error({ err }, "cannot start");
      this.state = "failed";
      return;
    }
    this.proc = proc;
    this.log.info({ childPid: proc.pid, argv0: argv[0] }, "started");
    this.ctx.onStart?.(this);
    void proc.done.then((status) => this.onExit(proc, status));
  }

  private onExit(proc: RunningProcess, status: ExitStatus): void {
    if (this.proc !== proc) return;
    this.lastExit = { code: status.code, signal: status.signal, at: new Date().toISOString() };
    const fields = { code: status.code, signal: status.signal, timedOut: status.timedOut, runMs: Math.round(status.durationMs) };
    if (status.spawnError) this.log.error({ ...fields, error: status.spawnError }, "could not start the command");
    else if (status.code === 0) this.log.info(fields, "exited");
    else if (this.stopRequested && status.signal === this.config.stopSignal) this.log.info(fields, "stopped (by its stop signal, as asked)");
    else this.log.warn(fields, "exited with failure");
    this.ctx.bus.publish({ code: status.code === 0 ? "exitSuccess" : "exitFailed", source: this.name, data: { code: status.code } });

    if (this.stopRequested || this.state === "paused") {
      this.ctx.onExit?.(this, status, true);
      return;
    }
    const limit = this.config.restarts;
    const canRestart = !this.config.when?.interval && !status.spawnError && (limit === "unlimited" || (typeof limit === "number" && this.restartsUsed < limit));
    if (!canRestart) {
      this.state = status.code === 0 ? "exited" : "failed";
      this.ctx.onExit?.(this, status, true);
      return;
    }
    this.ctx.onExit?.(this, status, false);
    const delay = this.backoff.next(status.durationMs);
    this.restartsUsed++;
    this.state = "backoff";
    this.log.info({ delayMs: delay, restart: this.restartsUsed, limit }, "restarting after backoff");
    this.restartTimer = setTimeout(() => {
      if (!this.stopRequested && this.state === "backoff") this.start();
    }, delay);
  }

  /** Passes a signal to the job's process group. */
  signal(sig: NodeJS.Signals): void {
    this.proc?.signal(sig);
  }

  private async runHook(kind: "stopping" | "stopped", hook: HookConfig | undefined): Promise<void> {
    if (!hook) return;
    const name = `${this.name}.${kind}`;
    try {
      const p = new RunningProcess({
        name,
        argv: toArgv(hook.exec, false),
        env: { ...this.ctx.env(), ...this.config.env },
        cwd: this.config.cwd,
        output: this.outputMode(),
        logger: this.ctx.logger,
        timeoutMs: hook.timeout,
        killGraceMs: 1_000,
      });
      const st = await p.done;
      this.log.info({ hook: kind, code: st.code, timedOut: st.timedOut }, "hook finished");
    } catch (err) {
      this.log.error({ hook: kind, err }, "hook failed to start");
    }
  }

  /**
   * Stops the job for good (or until resume): stopping hook and event, stop signal, SIGKILL after
   * stopTimeout, stopped hook and event.
   */
  async stop(reason: "shutdown" | "maintenance" | "reload" = "shutdown"): Promise<ExitStatus | undefined> {
    this.stopRequested = reason !== "maintenance";
    clearTimeout(this.restartTimer);
    clearInterval(this.intervalTimer);
    clearTimeout(this.waitTimer);
    this.subscription?.unsubscribe();
    this.subscription = undefined;
    const proc = this.proc;
    if (!proc?.running) {
      this.state = reason === "maintenance" ? "paused" : "stopped";
      return undefined;
    }
    this.state = "stopping";
    this.ctx.bus.publish({ code: "stopping", source: this.name });
    await this.runHook("stopping", this.config.hooks.stopping);
    const status = await proc.stop(this.config.stopSignal, this.config.stopTimeout);
    this.state = reason === "maintenance" ? "paused" : "stopped";
    await this.runHook("stopped", this.config.hooks.stopped);
    this.ctx.bus.publish({ code: "stopped", source: this.name });
    return status;
  }

  /** Starts a job paused for maintenance again. */
  resume(): void {
    if (this.state !== "paused") return;
    this.state = "waiting";
    this.activate();
  }

  /** Last resort at the shutdown deadline. */
  kill(): void {
    this.proc?.signal("SIGKILL");
  }
}
