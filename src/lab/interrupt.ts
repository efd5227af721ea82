/**
 * Cleanup that must run however this process ends: stopped by SIGINT (Ctrl-C), SIGTERM (a
 * timeout, a test runner tearing its worker down) or SIGHUP, on a normal exit, or when the parent
 * that started it is gone (`npm run` killed: its shell dies and leaves this process orphaned).
 *
 * Cleanups are synchronous: a signal handler has only moments (Vitest sends SIGKILL 500 ms after
 * SIGTERM) and an exit handler cannot wait at all. After they ran, the signal is raised again with
 * its default action, so the process still ends the way the signal says (exit status 128+n).
 */
export interface Cleanup {
  /** For the message printed when a signal triggers it. */
  what: string;
  run: () => void;
  /** Also on a normal exit of this process (things owned by it), not only on signals. */
  onExit?: boolean;
  /** Also when the parent process is gone (this process was orphaned). */
  onOrphaned?: boolean;
}

const SIGNALS = ["SIGINT", "SIGTERM", "SIGHUP"] as const;
const cleanups = new Set<Cleanup>();
let installed = false;
let orphanTimer: NodeJS.Timeout | undefined;
const parentAtStart = process.ppid;

function runAll(filter: (c: Cleanup) => boolean, why: string | undefined): void {
  for (const c of [...cleanups]) {
    if (!filter(c)) continue;
    cleanups.delete(c);
    if (why) process.stderr.write(`${why}: ${c.what}\n`);
    try {
      c.run();
    } catch (err) {
      process.stderr.write(`cleanup of ${c.what} failed: ${err instanceof Error ? err.message : String(err)}\n`);
    }
  }
}

function onSignal(sig: NodeJS.Signals): void {
  runAll(() => true, `${sig}: stopping`);
  uninstall();
  // Default action now: the process ends by the signal, as it would have without cleanups.
  process.kill(process.pid, sig);
  setTimeout(() => process.exit(128 + (sig === "SIGINT" ? 2 : sig === "SIGHUP" ? 1 : 15)), 2_000).unref();
}

function onExit(): void {
  runAll((c) => c.onExit === true, undefined);
}

function install(): void {
  if (installed) return;
  installed = true;
  for (const s of SIGNALS) process.on(s, onSignal);
  process.on("exit", onExit);
}

function uninstall(): void {
  if (!installed) return;
  installed = false;
  for (const s of SIGNALS) process.off(s, onSignal);
  process.off("exit", onExit);
  clearInterval(orphanTimer);
  orphanTimer = undefined;
}

function watchParent(): void {
  if (orphanTimer) return;
  orphanTimer = setInterval(() => {
    // Orphaned: nobody waits for this process any more; end it the way a lost terminal would.
    if (process.ppid !== parentAtStart && [...cleanups].some((c) => c.onOrphaned)) onSignal("SIGHUP");
  }, 500);
  orphanTimer.unref();
}

/** Registers a cleanup; the returned function unregisters it (call it once the thing is stopped normally). */
export function onInterrupt(c: Cleanup): () => void {
  cleanups.add(c);
  install();
  if (c.onOrphaned) watchParent();
  return () => {
    cleanups.delete(c);
    if (cleanups.size === 0) uninstall();
  };
}
