import { spawn } from "node:child_process";
import { findBinary } from "../binaries.js";
import type { Logger } from "../log.js";

/**
 * Write-behind for the restore's files, every 32 MiB of each: posix_fadvise(fd, 0, 0, DONTNEED),
 * as mbstream does after its writes. The kernel starts writing the file's dirty pages back at once
 * (not waiting for them, and with no cache flush) and drops the clean ones. Without it the dirty
 * pages pile up to the kernel's threshold (a tenth of memory), the disk then has reads and a
 * burst of writeback at once, and the writes are throttled: a 10 GB restore took 26.7 s (median
 * of 3) against `mc cat | mbstream -x` + prepare's 25.0 s; with it, 22.8 s against 26.8 s.
 * Node has no call for fadvise; coreutils' dd makes exactly that one call on its stdout when
 * asked for no blocks with oflag=nocache (no path is opened: the fd is handed over).
 */
export const WRITE_BEHIND_BYTES = 32 * 1024 * 1024;

export function writeBehind(logger: Logger, everyBytes = WRITE_BEHIND_BYTES): { everyBytes: number; start: (fd: number) => Promise<void> } | undefined {
  let dd: string;
  try {
    dd = findBinary("dd");
  } catch (err) {
    logger.warn({ reason: err instanceof Error ? err.message : String(err) }, "dd (coreutils) not found: the restore's files are written back by the kernel alone, which is slower");
    return undefined;
  }
  return { everyBytes, start: (fd) => adviseDontNeed(dd, fd) };
}

/** posix_fadvise(fd, 0, 0, DONTNEED) through `dd`, which gets `fd` as its stdout. */
export function adviseDontNeed(dd: string, fd: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(dd, ["count=0", "oflag=nocache", "status=none"], { stdio: ["ignore", fd, "pipe"] });
    let err = "";
    child.stderr!.on("data", (d: Buffer) => (err = (err + d.toString()).slice(-2000)));
    child.once("error", (e) => reject(new Error(`starting ${dd} for the write-behind failed: ${e.message}`, { cause: e })));
    child.once("close", (code, sig) => (code === 0 ? resolve() : reject(new Error(`${dd} count=0 oflag=nocache (the write-behind) exited ${code ?? sig}: ${err.trim()}`))));
  });
}

