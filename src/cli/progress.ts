/**
 * One progress line on a terminal (bytes, rate, ETA or elapsed time), rewritten in place at most a
 * few times a second; nothing at all when stderr is not a terminal (logs and CI stay clean).
 */
export class Progress {
  private readonly started = performance.now();
  /** When the line was last written (none yet: the first update always shows). */
  private last = Number.NEGATIVE_INFINITY;
  private shown = false;

  constructor(
    private readonly label: string,
    private readonly stream: NodeJS.WriteStream = process.stderr,
  ) {}

  get enabled(): boolean {
    return this.stream.isTTY === true;
  }

  /** Bytes done of `total` (0 or unknown: no percentage, no ETA); `stage` replaces the label's tail. */
  update(done: number, total = 0, stage = ""): void {
    if (!this.enabled) return;
    const now = performance.now();
    if (now - this.last < 200 && done < total) return;
    this.last = now;
    const secs = (now - this.started) / 1000;
    const rate = secs > 0 ? done / secs : 0;
    const parts = [`${this.label}${stage ? ` (${stage})` : ""}:`, mib(done) + (total > 0 ? ` of ${mib(total)} (${Math.min(100, Math.floor((done / total) * 100))}%)` : ""), `${mib(rate)}/s`];
    if (total > 0 && rate > 0 && done < total) parts.push(`ETA ${Math.ceil((total - done) / rate)} s`);
    else parts.push(`${secs.toFixed(0)} s`);
    this.stream.write(`\r\x1b[2K${parts.join("  ")}`);
    this.shown = true;
  }

  /** A waiting spinner's line: what is awaited and for how long. */
  tick(what: string): void {
    if (!this.enabled) return;
    const secs = ((performance.now() - this.started) / 1000).toFixed(0);
    this.stream.write(`\r\x1b[2K${this.label}: ${what} (${secs} s)`);
    this.shown = true;
  }

  done(): void {
    if (this.shown) this.stream.write("\r\x1b[2K");
    this.shown = false;
  }
}

function mib(bytes: number): string {
  return `${(bytes / 1048576).toFixed(1)} MiB`;
}
