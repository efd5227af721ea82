// Finds the processes a test run left behind, reports them and (with --kill) stops them.
//
// scripts/test.sh gives vitest STATEPILOT_TEST_RUN=<its own pid>:<its start time>, and everything
// the suite starts inherits it (vitest, its workers, the lab, the CLI and statepilot all pass their
// environment on), so a process carrying it is one this run started, whatever its name or parent,
// and no other process on the machine (another run, another user's servers) is ever counted.
//
//   node scripts/leftovers.mjs --run ID [--kill]   this run's processes
//   node scripts/leftovers.mjs --stale [--kill]    those of earlier runs whose test.sh is gone
//
// Exit status: 0 nothing found, 1 found (and stopped, with --kill), 2 some would not stop.
import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";

const MARK = "STATEPILOT_TEST_RUN";
const args = process.argv.slice(2);
const kill = args.includes("--kill");
const stale = args.includes("--stale");
const runIdx = args.indexOf("--run");
const run = runIdx >= 0 ? args[runIdx + 1] : undefined;
if (!stale && !run) {
  console.error("usage: leftovers.mjs --run ID [--kill] | --stale [--kill]");
  process.exit(64);
}

function stat(pid) {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, "utf8");
    const close = s.lastIndexOf(")");
    const rest = s.slice(close + 2).split(" ");
    return { pid, comm: s.slice(s.indexOf("(") + 1, close), state: rest[0], ppid: Number(rest[1]), start: Number(rest[19]) };
  } catch {
    return undefined;
  }
}

function marker(pid) {
  try {
    const env = readFileSync(`/proc/${pid}/environ`, "utf8").split("\0");
    const kv = env.find((e) => e.startsWith(`${MARK}=`));
    return kv?.slice(MARK.length + 1);
  } catch {
    return undefined;
  }
}

function cmdline(pid) {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").filter(Boolean).join(" ");
  } catch {
    return "";
  }
}

const running = (pid) => {
  const s = stat(pid);
  return !!s && s.state !== "Z" && s.state !== "X";
};

/** The run (test.sh) an id names is still going: same pid, same start time. */
function runAlive(id) {
  const [pid, start] = id.split(":").map(Number);
  const s = pid ? stat(pid) : undefined;
  return !!s && s.start === start && s.state !== "Z";
}

let ticks = 100;
try {
  ticks = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;
} catch {
  // the usual value
}
const uptime = Number(readFileSync("/proc/uptime", "utf8").split(" ")[0]);
const age = (s) => {
  const secs = Math.max(0, Math.round(uptime - s.start / ticks));
  return secs >= 60 ? `${Math.floor(secs / 60)}m${String(secs % 60).padStart(2, "0")}s` : `${secs}s`;
};

const skip = new Set();
for (let p = process.pid; p > 1 && !skip.has(p); p = stat(p)?.ppid ?? 0) skip.add(p);

const found = [];
for (const e of readdirSync("/proc")) {
  if (!/^\d+$/.test(e)) continue;
  const pid = Number(e);
  if (skip.has(pid) || !running(pid)) continue;
  const m = marker(pid);
  if (m === undefined) continue;
  if (run ? m === run : !runAlive(m)) found.push({ ...stat(pid), run: m, args: cmdline(pid) });
}

if (!found.length) process.exit(0);

const n = found.length;
const what = run
  ? `${n === 1 ? "process" : "processes"} started by this test run ${n === 1 ? "is" : "are"} still running`
  : `${n === 1 ? "process" : "processes"} left by earlier test runs (their test.sh is gone)`;
console.error(`test: ${n} ${what}:`);
console.error(`  ${"PID".padStart(7)} ${"PPID".padStart(7)} ${"AGE".padStart(7)}  COMMAND`);
for (const p of found) {
  const args = p.args || `[${p.comm}]`;
  console.error(`  ${String(p.pid).padStart(7)} ${String(p.ppid).padStart(7)} ${age(p).padStart(7)}  ${args.length > 200 ? `${args.slice(0, 197)}...` : args}${run ? "" : `  (run ${p.run})`}`);
}
if (!kill) process.exit(1);

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function signalAll(pids, sig, waitMs) {
  for (const pid of pids) {
    try {
      process.kill(pid, sig);
    } catch {
      // gone
    }
  }
  const deadline = Date.now() + waitMs;
  let left = pids.filter(running);
  while (left.length && Date.now() < deadline) {
    await sleep(50);
    left = left.filter(running);
  }
  return left;
}
let left = await signalAll(found.map((p) => p.pid), "SIGTERM", 10_000);
if (left.length) left = await signalAll(left, "SIGKILL", 5_000);
if (left.length) {
  console.error(`test: could not stop ${left.join(", ")}`);
  process.exit(2);
}
console.error(`test: stopped ${found.length === 1 ? "it" : `all ${found.length}`}`);
process.exit(1);
