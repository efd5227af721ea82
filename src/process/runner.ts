import { createInterface } from "node:readline";
import { constants } from "node:os";
import { execa, type ResultPromise } from "execa";
import type { Logger } from "../log.js";
import { signalGroup } from "./signal-group.js";

export type OutputMode = "raw" | "wrapped" | "capture";

export interface RunOptions {
  /** Who runs it, for log lines: a job name, `<job>.health`, `<job>.stopping`. */
  name: string;
  argv: string[];
  env: NodeJS.ProcessEnv;
  cwd?: string | undefined;
  output: OutputMode;
  logger: Logger;
  /** Kill the process group after this long (stop signal, then SIGKILL after killGraceMs). */
  timeoutMs?: number | undefined;
  stopSignal?: NodeJS.Signals;
  killGraceMs?: number;
}

export interface ExitStatus {
  /** Exit code; 128 + signal number when killed by a signal, as shells report it. */
  code: number;
  signal: NodeJS.Signals | undefined;
  timedOut: boolean;
  /** Start failure (ENOENT, EACCES): the command never ran. */
  spawnError?: string;
  /** Last 4 KB of combined output, in capture mode. */
  output: string;
  durationMs: number;
}

const CAPTURE_LIMIT = 4096;

/** A child in its own process group, so that stop and timeout reach everything it started. */
export class RunningProcess {
  readonly pid: number | undefined;
  readonly done: Promise<ExitStatus>;
  private readonly child: ResultPromise;
  private timedOut = false;
  private killTimer: NodeJS.Timeout | undefined;
  private exited = false;

  constructor(private readonly opts: RunOptions) {
    const [file, ...args] = opts.argv;
    if (!file) throw new Error(`${opts.name}: empty command`);
    const started = performance.now();
    const stdio = opts.output === "raw" ? "inherit" : "pipe";
    this.child = execa(file, args, {
      env: opts.env,
      extendEnv: false,
      cwd: opts.cwd,
      detached: true,
      stdin: "ignore",
      stdout: stdio,
      stderr: stdio,
      buffer: false,
      reject: false,
      cleanup: true,
      stripFinalNewline: false,
    });
    this.pid = this.child.pid;
    let captured = "";
    const capture = (chunk: Buffer) => {
      captured = (captured + chunk.toString("utf8")).slice(-CAPTURE_LIMIT);
    };
    if (opts.output === "capture") {
      this.child.stdout?.on("data", capture);
      this.child.stderr?.on("data", capture);
    } else if (opts.output === "wrapped") {
      for (const [stream, src] of [["stdout", this.child.stdout], ["stderr", this.child.stderr]] as const) {
        if (!src) continue;
        createInterface({ input: src, crlfDelay: Infinity }).on("line", (line) => opts.logger.info({ job: opts.name, stream }, line));
      }
    }
    let timeout: NodeJS.Timeout | undefined;
    if (opts.timeoutMs !== undefined) {
      timeout = setTimeout(() => {
        this.timedOut = true;
        opts.logger.warn({ job: opts.name, timeoutMs: opts.timeoutMs }, "timed out; stopping its process group");
        void this.stop(opts.stopSignal ?? "SIGTERM", opts.killGraceMs ?? 2_000);
      }, opts.timeoutMs);
    }
    this.done = this.child.then((r) => {
      this.exited = true;
      clearTimeout(timeout);
      clearTimeout(this.killTimer);
      const signal = (r.signal ?? undefined) as NodeJS.Signals | undefined;
      const spawnError = r.failed && r.exitCode === undefined && !signal ? (r.cause instanceof Error ? r.cause.message : r.shortMessage) : undefined;
      const code = r.exitCode ?? (signal ? 128 + (constants.signals[signal] ?? 0) : spawnError ? 127 : 1);
      const status: ExitStatus = { code, signal, timedOut: this.timedOut, output: captured, durationMs: performance.now() - started };
      if (spawnError) status.spawnError = spawnError;
      return status;
    });
  }

  get running(): boolean {
    return !this.exited;
  }

  /** Sends a signal to the whole process group. */
  signal(sig: NodeJS.Signals): void {
    if (this.exited || this.pid === undefined) return;
    signalGroup(this.pid, sig);
  }

  /** stop signal to the group, SIGKILL after graceMs; resolves when it exited. */
  async stop(sig: NodeJS.Signals, graceMs: number): Promise<ExitStatus> {
    if (!this.exited) {
      this.signal(sig);
      this.killTimer ??= setTimeout(() => {
        this.opts.logger.warn({ job: this.opts.name, graceMs }, `still running ${graceMs} ms after ${sig}; sending SIGKILL`);
        this.signal("SIGKILL");
      }, graceMs);
    }
    return this.done;
  }
}
