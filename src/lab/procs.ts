import { readdirSync, readFileSync, readlinkSync } from "node:fs";

/**
 * Finding and stopping the lab's processes through /proc (Linux), by what marks them rather than
 * by remembered PIDs: a PID in lab.json may belong to a process that is long gone (or reused), and
 * a process the lab did not start itself (mysqld under statepilot, a backup tool) has no entry.
 *
 * Every process a lab starts carries these variables, and so does everything it starts in turn
 * (statepilot passes its environment on to mysqld and its tools):
 */
export const LAB_DIR_ENV = "STATEPILOT_LAB_DIR";
/** The lab's network index k (labs started with --netns). */
export const LAB_NET_ENV = "STATEPILOT_LAB_NET";
/** The process that owns the lab ("pid:starttime"): when it is gone, the lab is a leftover. */
export const LAB_OWNER_ENV = "STATEPILOT_LAB_OWNER";

export interface ProcStat {
  pid: number;
  ppid: number;
  /** R, S, D, Z, T, ... */
  state: string;
  comm: string;
  /** Start time in clock ticks since boot: with the PID, it names one process for good. */
  start: number;
  /** CPU time used so far (user + system), in clock ticks (10 ms). */
  cpuTicks: number;
}

export function procStat(pid: number): ProcStat | undefined {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, "utf8");
    // comm is in parentheses and may itself hold spaces and parentheses.
    const close = s.lastIndexOf(")");
    const rest = s.slice(close + 2).split(" ");
    return { pid, comm: s.slice(s.indexOf("(") + 1, close), state: rest[0]!, ppid: Number(rest[1]), start: Number(rest[19]), cpuTicks: Number(rest[11]) + Number(rest[12]) };
  } catch {
    return undefined;
  }
}

export function listPids(): number[] {
  return readdirSync("/proc")
    .filter((e) => /^\d+$/.test(e))
    .map(Number);
}

/** The environment the process was started with (undefined when it is gone or unreadable). */
export function procEnv(pid: number): Map<string, string> | undefined {
  try {
    const raw = readFileSync(`/proc/${pid}/environ`, "utf8");
    const env = new Map<string, string>();
    for (const kv of raw.split("\0")) {
      const eq = kv.indexOf("=");
      if (eq > 0) env.set(kv.slice(0, eq), kv.slice(eq + 1));
    }
    return env;
  } catch {
    return undefined;
  }
}

export function procCmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").filter(Boolean).join(" ");
  } catch {
    return "";
  }
}

/** "pid 123 mariadbd --datadir=..." for messages. */
export function describeProcess(pid: number): string {
  const cmd = procCmdline(pid) || procStat(pid)?.comm || "?";
  return `pid ${pid} (${cmd.length > 160 ? `${cmd.slice(0, 157)}...` : cmd})`;
}

/** This process and its ancestors: never signalled by a sweep, whatever their environment says. */
function selfAndAncestors(): Set<number> {
  const out = new Set<number>();
  for (let pid: number | undefined = process.pid; pid && pid > 1 && !out.has(pid); pid = procStat(pid)?.ppid) out.add(pid);
  return out;
}

/** Running (not zombie) processes whose environment matches, this process and its ancestors excepted. */
export function processesWhere(match: (env: Map<string, string>) => boolean): number[] {
  const skip = selfAndAncestors();
  const out: number[] = [];
  for (const pid of listPids()) {
    if (skip.has(pid)) continue;
    const env = procEnv(pid);
    if (!env || !match(env)) continue;
    const st = procStat(pid);
    if (st && st.state !== "Z" && st.state !== "X") out.push(pid);
  }
  return out;
}

export function processesWithEnv(name: string, value: string): number[] {
  return processesWhere((env) => env.get(name) === value);
}

export function childrenOf(pid: number): number[] {
  return listPids().filter((p) => procStat(p)?.ppid === pid);
}

/** "pid:starttime" of a process (this one by default). */
export function processToken(pid = process.pid): string {
  return `${pid}:${procStat(pid)?.start ?? 0}`;
}

/** The process a token names is still running (same PID and the same start time). */
export function tokenAlive(token: string | undefined): boolean {
  if (!token) return false;
  const [pid, start] = token.split(":").map(Number);
  const st = pid ? procStat(pid) : undefined;
  return !!st && st.start === start && st.state !== "Z";
}

/** Gone, or a zombie (it no longer runs; only its parent's wait is missing). */
export function gone(pid: number): boolean {
  const st = procStat(pid);
  return !st || st.state === "Z" || st.state === "X";
}

const sleeper = new Int32Array(new SharedArrayBuffer(4));
/** Blocks the thread: for exit and signal handlers, which cannot wait asynchronously. */
export function sleepSync(ms: number): void {
  Atomics.wait(sleeper, 0, 0, ms);
}

/** SIGKILLs the processes and waits (synchronously) until they are gone; returns those that are not. */
export function killSync(pids: Iterable<number>, timeoutMs = 5_000): number[] {
  const targets = [...new Set(pids)].filter((p) => p > 1 && p !== process.pid);
  for (const p of targets) {
    try {
      process.kill(p, "SIGKILL");
    } catch {
      // already gone
    }
  }
  const deadline = Date.now() + timeoutMs;
  let left = targets.filter((p) => !gone(p));
  while (left.length && Date.now() < deadline) {
    sleepSync(20);
    left = left.filter((p) => !gone(p));
  }
  return left;
}

function hexAddress(host: string): string {
  // /proc/net/tcp prints an IPv4 address as the 32-bit value in host (little-endian) order.
  return host
    .split(".")
    .map((o) => Number(o).toString(16).padStart(2, "0").toUpperCase())
    .reverse()
    .join("");
}

/** Socket inodes listening on host:port (or on the wildcard address, which blocks host:port too). */
function listeningInodes(host: string, port: number): Set<string> {
  const want = new Set([`${hexAddress(host)}:${port.toString(16).toUpperCase().padStart(4, "0")}`, `00000000:${port.toString(16).toUpperCase().padStart(4, "0")}`]);
  const want6 = `${"0".repeat(32)}:${port.toString(16).toUpperCase().padStart(4, "0")}`;
  const inodes = new Set<string>();
  for (const [file, match] of [["/proc/net/tcp", (a: string) => want.has(a)], ["/proc/net/tcp6", (a: string) => a === want6]] as const) {
    let text = "";
    try {
      text = readFileSync(file, "utf8");
    } catch {
      continue;
    }
    for (const line of text.split("\n").slice(1)) {
      const f = line.trim().split(/\s+/);
      // sl local rem st tx:rx tr:when retrnsmt uid timeout inode; 0A is LISTEN
      if (f.length > 9 && f[3] === "0A" && match(f[1]!)) inodes.add(f[9]!);
    }
  }
  return inodes;
}

/**
 * Processes listening on host:port in this network namespace (an empty list when the port is
 * free, or when the listener is a process whose file descriptors cannot be read).
 */
export function listenersOn(host: string, port: number): { inUse: boolean; pids: number[] } {
  const inodes = listeningInodes(host, port);
  if (!inodes.size) return { inUse: false, pids: [] };
  const pids: number[] = [];
  for (const pid of listPids()) {
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      let target = "";
      try {
        target = readlinkSync(`/proc/${pid}/fd/${fd}`);
      } catch {
        continue;
      }
      const m = /^socket:\[(\d+)\]$/.exec(target);
      if (m && inodes.has(m[1]!)) {
        pids.push(pid);
        break;
      }
    }
  }
  return { inUse: true, pids };
}
