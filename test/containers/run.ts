import { type ChildProcess, spawn } from "node:child_process";

const active = new Set<ChildProcess>();
/** Kills every command still running (on SIGINT/SIGTERM, before the cleanup runs its own). */
export function killActive(): void {
  for (const c of active) c.kill("SIGKILL");
  active.clear();
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  timeoutMs?: number;
  /** Resolve with the result instead of throwing on a non-zero exit. */
  allowFail?: boolean;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Print the command's output as it comes (long builds). */
  inherit?: boolean;
  input?: string;
}

/** Runs a command to completion (bounded by timeoutMs: the child is killed then). */
export function run(cmd: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: opts.cwd, env: opts.env ?? process.env, stdio: [opts.input === undefined ? "ignore" : "pipe", "pipe", "pipe"] });
    active.add(child);
    let stdout = "";
    let stderr = "";
    child.stdout?.setEncoding("utf8").on("data", (d: string) => {
      stdout += d;
      if (opts.inherit) process.stdout.write(d);
    });
    child.stderr?.setEncoding("utf8").on("data", (d: string) => {
      stderr += d;
      if (opts.inherit) process.stderr.write(d);
    });
    if (opts.input !== undefined) child.stdin?.end(opts.input);
    const timer = setTimeout(() => child.kill("SIGKILL"), opts.timeoutMs ?? 120_000);
    child.on("error", (err) => {
      clearTimeout(timer);
      active.delete(child);
      reject(new Error(`${cmd}: ${err.message}`));
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      active.delete(child);
      const r = { code: code ?? (signal ? 128 : 1), stdout, stderr };
      if (r.code !== 0 && !opts.allowFail) {
        const tail = (stderr.trim() || stdout.trim()).split("\n").slice(-15).join("\n");
        reject(new Error(`${cmd} ${args.join(" ")} exited ${signal ?? r.code}${tail ? `:\n${tail}` : ""}`));
      } else resolve(r);
    });
  });
}

export const docker = (args: string[], opts: RunOptions = {}) => run("docker", args, { ...opts, env: { ...process.env, DOCKER_BUILDKIT: "0", ...opts.env } });
