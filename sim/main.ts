import { availableParallelism } from "node:os";
import { Worker, isMainThread, parentPort, workerData } from "node:worker_threads";
import { runSchedule } from "./run.js";
import { describeSchedule, makeSchedule } from "./schedule.js";

/**
 * `npm run test:sim -- [--schedules N] [--seed S] [--workers W] [--replay SEED] [--verbose]`
 * Runs N seeded schedules (seeds S, S+1, …) across worker threads and prints
 * `sim: schedules=N violations=V seconds=T`. A violation prints its schedule and the command that
 * replays it exactly; exit 1 when any schedule violated an invariant.
 */

interface Job {
  from: number;
  to: number;
}
interface Report {
  done: number;
  failures: Array<{ seed: number; violation: string }>;
  acked: number;
  failovers: number;
  unconverged: number;
}

async function runRange(job: Job, onProgress?: (n: number) => void): Promise<Report> {
  const r: Report = { done: 0, failures: [], acked: 0, failovers: 0, unconverged: 0 };
  for (let seed = job.from; seed < job.to; seed++) {
    let res: Awaited<ReturnType<typeof runSchedule>>;
    try {
      res = await runSchedule(makeSchedule(seed));
    } catch (err) {
      // A schedule that throws (a livelock caught by the clock, a bug) is a failure with its seed, not the end of the run.
      r.done++;
      r.failures.push({ seed, violation: `the schedule threw: ${err instanceof Error ? err.message : String(err)}` });
      continue;
    }
    r.done++;
    r.acked += res.acked;
    r.failovers += res.failovers;
    if (res.unconverged.length) r.unconverged++;
    if (res.violation) r.failures.push({ seed, violation: res.violation });
    if (r.done % 500 === 0) onProgress?.(r.done);
  }
  return r;
}

function usage(msg: string): never {
  process.stderr.write(`sim: ${msg}\nusage: sim [--schedules N] [--seed S] [--workers W] [--replay SEED [--verbose]]\n`);
  process.exit(2);
}

function parseArgs(argv: string[]): { schedules: number; seed: number; workers: number; replay: number | undefined; verbose: boolean } {
  const out = { schedules: 100_000, seed: 1, workers: Math.max(1, availableParallelism()), replay: undefined as number | undefined, verbose: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--verbose") {
      out.verbose = true;
      continue;
    }
    const v = argv[++i];
    const n = Number(v);
    if (v === undefined || !Number.isInteger(n) || n < 0) usage(`${a}: expected a whole number, got ${JSON.stringify(v)}`);
    if (a === "--schedules") out.schedules = n;
    else if (a === "--seed") out.seed = n;
    else if (a === "--workers") out.workers = Math.max(1, n);
    else if (a === "--replay") out.replay = n;
    else usage(`unknown option ${a}`);
  }
  return out;
}

/** Progress on stderr (every 5,000 schedules, with the slowest stretch so far): a long run shows it is moving. */
const progressState = new Map<number, { done: number; at: number }>();
let lastPrinted = 0;
function progress(job: Job, done: number, seed: number): void {
  const prev = progressState.get(job.from) ?? { done: 0, at: performance.now() };
  const now = performance.now();
  progressState.set(job.from, { done, at: now });
  const total = [...progressState.values()].reduce((a, p) => a + p.done, 0);
  if (total - lastPrinted >= 5_000) {
    lastPrinted = total;
    process.stderr.write(`sim: ${total} schedules done (a worker is at seed ${seed}; its last ${done - prev.done} took ${((now - prev.at) / 1000).toFixed(1)} s)\n`);
  }
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  if (args.replay !== undefined) {
    const s = makeSchedule(args.replay);
    console.log(describeSchedule(s));
    const r = await runSchedule(s, { verbose: args.verbose });
    for (const line of r.trace) console.log(line);
    console.log(r.violation ? `violation: ${r.violation}` : `no violation (${r.acked} acknowledged writes, ${r.failovers} failovers)`);
    if (r.unconverged.length) console.log(`unconverged: ${r.unconverged.join("; ")}`);
    process.exit(r.violation ? 1 : 0);
  }
  const started = performance.now();
  const per = Math.ceil(args.schedules / args.workers);
  const jobs: Job[] = [];
  for (let from = args.seed; from < args.seed + args.schedules; from += per) jobs.push({ from, to: Math.min(from + per, args.seed + args.schedules) });
  const reports = await Promise.all(
    jobs.map(
      (job) =>
        new Promise<Report>((resolve, reject) => {
          const w = new Worker(new URL(import.meta.url), { workerData: job });
          w.on("message", (m: Report | { progress: number; seed: number }) => {
            if ("progress" in m) progress(job, m.progress, m.seed);
            else resolve(m);
          });
          w.on("error", reject);
          w.on("exit", (code) => (code === 0 ? undefined : reject(new Error(`simulation worker exited with ${code}`))));
        }),
    ),
  );
  const total = reports.reduce((acc, r) => ({ done: acc.done + r.done, failures: [...acc.failures, ...r.failures], acked: acc.acked + r.acked, failovers: acc.failovers + r.failovers, unconverged: acc.unconverged + r.unconverged }));
  const seconds = (performance.now() - started) / 1000;
  for (const f of total.failures.slice(0, 10)) {
    console.log(describeSchedule(makeSchedule(f.seed)));
    console.log(`  violation: ${f.violation}\n  replay: npm run test:sim -- --replay ${f.seed} --verbose\n`);
  }
  console.log(`sim: acknowledged_writes=${total.acked} failovers=${total.failovers} stalled_with_reason=${total.unconverged}`);
  console.log(`sim: schedules=${total.done} violations=${total.failures.length} seconds=${seconds.toFixed(1)}`);
  process.exit(total.failures.length ? 1 : 0);
}

if (isMainThread) {
  main().catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
} else {
  const job = workerData as Job;
  runRange(job, (done) => parentPort!.postMessage({ progress: done, seed: job.from + done })).then(
    (r) => parentPort!.postMessage(r),
    (err: unknown) => {
      throw err;
    },
  );
}
