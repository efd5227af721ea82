import { randomBytes } from "node:crypto";
import { mkdir, open, readFile, rename, stat, unlink } from "node:fs/promises";
import { basename, dirname, join } from "node:path";

export interface WriteResult {
  written: boolean;
  /** Something that did not stop the write (the owner could not be kept). */
  warning?: string;
}

/**
 * Writes `content` to `dest` only if it differs from what is there, atomically: a temporary file in
 * the same directory, fsynced, then renamed over `dest`, so a reader sees the old file or the new
 * one, never a part. The mode is `mode` (octal text) or the existing file's; its owner is kept.
 */
export async function writeAtomically(dest: string, content: string, mode?: string): Promise<WriteResult> {
  let existing: Awaited<ReturnType<typeof stat>> | undefined;
  try {
    existing = await stat(dest);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
  }
  const wanted = mode !== undefined ? parseInt(mode, 8) : existing ? Number(existing.mode) & 0o7777 : 0o644;
  if (existing && (await readFile(dest, "utf8")) === content) return { written: false };
  const dir = dirname(dest);
  await mkdir(dir, { recursive: true });
  const tmp = join(dir, `.${basename(dest)}.${randomBytes(6).toString("hex")}.tmp`);
  let warning: string | undefined;
  const fh = await open(tmp, "wx", wanted);
  try {
    await fh.writeFile(content, "utf8");
    await fh.chmod(wanted); // open's mode is filtered by the umask
    if (existing && (Number(existing.uid) !== process.getuid?.() || Number(existing.gid) !== process.getgid?.())) {
      try {
        await fh.chown(Number(existing.uid), Number(existing.gid));
      } catch (err) {
        warning = `could not keep the owner ${existing.uid}:${existing.gid} of ${dest}: ${(err as Error).message}`;
      }
    }
    await fh.sync();
  } catch (err) {
    await fh.close().catch(() => undefined);
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  await fh.close();
  try {
    await rename(tmp, dest);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw err;
  }
  return warning ? { written: true, warning } : { written: true };
}
