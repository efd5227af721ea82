import { spawn, type ChildProcess } from "node:child_process";
import { fileURLToPath } from "node:url";
import { writeFileSync } from "node:fs";
import { onInterrupt } from "../../src/lab/interrupt.js";
import { tiedArgv } from "../../src/lab/process.js";

export const CLI = fileURLToPath(new URL("../../dist/src/cli/main.js", import.meta.url));

export interface CliRun {
  child: ChildProcess;
  output: () => string;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/**
 * CLI processes still running: SIGKILLed when the test process ends, however it ends (Vitest ends
 * a worker with SIGTERM, which skips 'exit' handlers); if it is SIGKILLed, the kernel kills them
 * (parent-death signal).
 */
const running = new Set<ChildProcess>();
const cleanup = { what: "statepilot CLI processes of this test file", onExit: true, onOrphaned: true, run: () => {
  for (const c of running) c.kill("SIGKILL");
} };
let release: (() => void) | undefined;

/** Starts the compiled CLI as a real process (the way a container runs it), optionally under a wrapper such as tini. */
export function startCli(args: string[], env: NodeJS.ProcessEnv = {}, wrapper: string[] = []): CliRun {
  // setpriv execs the command: the child's pid is the CLI's (or the wrapper's) own.
  const [cmd, ...rest] = tiedArgv([...wrapper, process.execPath, CLI, ...args]);
  const child = spawn(cmd!, rest, {
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  running.add(child);
  release ??= onInterrupt(cleanup);
  let out = "";
  child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (out += d.toString()));
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("exit", (code, signal) => {
      running.delete(child);
      if (running.size === 0) {
        release?.();
        release = undefined;
      }
      resolve({ code, signal });
    }),
  );
  return { child, output: () => out, exit };
}

/** Runs the CLI to completion. */
export async function runCli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; output: string }> {
  const r = startCli(args, env);
  const { code } = await r.exit;
  return { code, output: r.output() };
}

export function writeConfig(path: string, config: unknown): string {
  writeFileSync(path, typeof config === "string" ? config : JSON.stringify(config, null, 2));
  return path;
}
