import { spawn, type ChildProcess } from "node:child_process";
import { signalGroup } from "../process/signal-group.js";
import { openSync, closeSync, readFileSync } from "node:fs";
import { findBinary } from "../binaries.js";
import { onInterrupt } from "./interrupt.js";

/**
 * Every non-persistent process started here, killed when this process ends in any way: on exit,
 * on SIGINT/SIGTERM/SIGHUP (Vitest ends a test file's worker with SIGTERM, which skips 'exit'
 * handlers), or, if this process is SIGKILLed, by the kernel (parent-death signal, see tiedArgv).
 */
const live = new Set<ManagedProcess>();
let unregister: (() => void) | undefined;

function track(p: ManagedProcess): void {
  live.add(p);
  unregister ??= onInterrupt({ what: "processes started by the lab", onExit: true, onOrphaned: true, run: () => {
    for (const q of live) q.killNow();
  } });
}

function untrack(p: ManagedProcess): void {
  live.delete(p);
  if (live.size === 0 && unregister) {
    unregister();
    unregister = undefined;
  }
}

let setpriv: string | null | undefined;
/**
 * The command prefixed so that the kernel SIGKILLs it when this process dies, however it dies
 * (setpriv --pdeathsig; the setting survives the exec). Without setpriv, the command as it is.
 */
export function tiedArgv(argv: string[]): string[] {
  if (setpriv === undefined) {
    try {
      setpriv = process.platform === "linux" ? findBinary("setpriv") : null;
    } catch {
      setpriv = null;
    }
  }
  return setpriv ? [setpriv, "--pdeathsig", "KILL", "--", ...argv] : argv;
}

export interface StartOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** stdout and stderr are appended here; read back in error messages. */
  logFile: string;
  /**
   * Outlives this Node process (the `statepilot lab` CLI exits and leaves the cluster running).
   * Otherwise the process dies with this one, even when this one is SIGKILLed.
   */
  persistent?: boolean;
}

/** A server process in its own process group, stopped by PID. */
export class ManagedProcess {
  readonly pid: number;
  private exitInfo: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  private constructor(
    readonly name: string,
    child: ChildProcess,
    readonly logFile: string,
  ) {
    if (child.pid === undefined) throw new Error(`${name}: spawn failed`);
    this.pid = child.pid;
    this.exited = new Promise((resolve) => {
      child.once("exit", (code, signal) => {
        this.exitInfo = { code, signal };
        untrack(this);
        resolve(this.exitInfo);
      });
    });
  }

  static async start(name: string, command: string, args: string[], opts: StartOptions): Promise<ManagedProcess> {
    const fd = openSync(opts.logFile, "a");
    const [cmd, ...argv] = opts.persistent ? [command, ...args] : tiedArgv([command, ...args]);
    try {
      const child = spawn(cmd!, argv, {
        env: opts.env ?? process.env,
        cwd: opts.cwd,
        stdio: ["ignore", fd, fd],
        detached: true, // own process group: stop() reaches helpers it forks
      });
      await new Promise<void>((resolve, reject) => {
        child.once("spawn", () => resolve());
        child.once("error", (err) => reject(new Error(`${name}: cannot start ${command}: ${err.message}`)));
      });
      const p = new ManagedProcess(name, child, opts.logFile);
      if (opts.persistent) child.unref();
      else if (p.running) track(p);
      return p;
    } finally {
      closeSync(fd);
    }
  }

  get running(): boolean {
    return this.exitInfo === undefined;
  }

  get exitStatus(): { code: number | null; signal: NodeJS.Signals | null } | undefined {
    return this.exitInfo;
  }

  /** The last lines of the process log, for error messages. */
  logTail(lines = 20): string {
    try {
      return readFileSync(this.logFile, "utf8").trimEnd().split("\n").slice(-lines).join("\n");
    } catch {
      return "(no log)";
    }
  }

  signal(sig: NodeJS.Signals): void {
    if (!this.running) return;
    signalGroup(this.pid, sig);
  }

  /** SIGTERM (or the given signal), then SIGKILL after the timeout; resolves once the process is gone. */
  async stop(sig: NodeJS.Signals = "SIGTERM", timeoutMs = 10_000): Promise<void> {
    if (!this.running) return;
    this.signal(sig);
    const timer = setTimeout(() => this.signal("SIGKILL"), timeoutMs);
    try {
      await this.exited;
    } finally {
      clearTimeout(timer);
    }
  }

  killNow(): void {
    this.signal("SIGKILL");
  }
}
