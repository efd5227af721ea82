/**
 * Splits a command line the way a POSIX shell would tokenize it (quotes, backslash escapes), with
 * no expansion, globbing or operators: `exec: "mysqld --init-file='/a b'"` gives two arguments.
 */
export function splitCommand(line: string): string[] {
  const args: string[] = [];
  let cur = "";
  let inToken = false;
  let quote: '"' | "'" | null = null;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i]!;
    if (quote === "'") {
      if (ch === "'") quote = null;
      else cur += ch;
    } else if (quote === '"') {
      if (ch === '"') quote = null;
      else if (ch === "\\" && i + 1 < line.length && '"\\$`\n'.includes(line[i + 1]!)) {
        const next = line[++i]!;
        if (next !== "\n") cur += next;
      } else cur += ch;
    } else if (ch === "'" || ch === '"') {
      quote = ch;
      inToken = true;
    } else if (ch === "\\") {
      if (i + 1 < line.length) {
        const next = line[++i]!;
        if (next !== "\n") cur += next;
        inToken = true;
      }
    } else if (/\s/.test(ch)) {
      if (inToken) args.push(cur);
      cur = "";
      inToken = false;
    } else {
      cur += ch;
      inToken = true;
    }
  }
  if (quote) throw new Error(`unterminated ${quote === "'" ? "single" : "double"} quote in command: ${line}`);
  if (inToken) args.push(cur);
  return args;
}

/** argv for an exec setting: an array as is, a string split (or given to /bin/sh -c when shell is on). */
export function toArgv(exec: string | string[], shell: boolean): string[] {
  if (Array.isArray(exec)) return shell ? ["/bin/sh", "-c", exec.join(" ")] : exec;
  return shell ? ["/bin/sh", "-c", exec] : splitCommand(exec);
}
