/**
 * The container engine for `npm run test:containers`: the one already running is used as it is;
 * otherwise Debian's docker.io is installed (if missing) and dockerd is started by hand (there is
 * no systemd here) and stopped again at the end, with what it changed on the host put back:
 * iptables' FORWARD policy (dockerd sets DROP, which with bridge netfilter also blocks the host's
 * other bridges, such as the lab's), net.ipv4.ip_forward, its iptables chains and docker0.
 *
 * A run that was killed leaves a state file; the next run adopts that daemon (and stops it) or, if
 * it is gone, restores the host settings the file recorded.
 */
import { spawn } from "node:child_process";
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { procStat } from "../../src/lab/procs.js";
import { docker, run } from "./run.js";

export interface EngineState {
  pid: number;
  start: number;
  /** FORWARD policy before dockerd started (ACCEPT, DROP), or "" when iptables was not there. */
  forward: string;
  ipForward: string;
  /** Whether docker0 existed before. */
  hadDocker0: boolean;
  log: string;
}

export interface Engine {
  /** True when this run started the daemon (and so stops it). */
  owned: boolean;
  describe: string;
  stop(): Promise<void>;
}

const log = (m: string) => console.log(`containers: ${m}`);

async function engineAnswers(): Promise<boolean> {
  const r = await docker(["info", "--format", "{{.ServerVersion}}"], { allowFail: true, timeoutMs: 10_000 }).catch(() => undefined);
  return r?.code === 0;
}

async function forwardPolicy(): Promise<string> {
  const r = await run("iptables", ["-S", "FORWARD"], { allowFail: true }).catch(() => undefined);
  return r?.code === 0 ? (/^-P FORWARD (\S+)/m.exec(r.stdout)?.[1] ?? "") : "";
}

function readIpForward(): string {
  try {
    return readFileSync("/proc/sys/net/ipv4/ip_forward", "utf8").trim();
  } catch {
    return "";
  }
}

async function installDockerIo(): Promise<void> {
  log("no container engine: installing Debian's docker.io (apt-get)");
  const policy = "/usr/sbin/policy-rc.d";
  const made = !existsSync(policy);
  // No service may be started by the install (there is no init system to start it anyway).
  if (made) writeFileSync(policy, "#!/bin/sh\nexit 101\n", { mode: 0o755 });
  try {
    const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
    const cand = await run("apt-cache", ["policy", "docker.io"], { allowFail: true });
    if (!/Candidate: \d/.test(cand.stdout)) await run("apt-get", ["update", "-qq"], { env, timeoutMs: 300_000 });
    await run("apt-get", ["install", "-y", "-qq", "--no-install-recommends", "docker.io", "iptables"], { env, timeoutMs: 600_000 });
  } finally {
    if (made) rmSync(policy, { force: true });
  }
}

/** Removes the iptables rules and chains dockerd made (it leaves them when it stops). */
async function removeDockerChains(): Promise<void> {
  for (const table of ["filter", "nat"]) {
    const r = await run("iptables", ["-t", table, "-S"], { allowFail: true }).catch(() => undefined);
    if (r?.code !== 0 || !r) continue;
    const lines = r.stdout.split("\n");
    // Rules in built-in chains that jump to Docker's chains or name docker0.
    for (const l of lines) {
      const m = /^-A (INPUT|OUTPUT|FORWARD|PREROUTING|POSTROUTING) (.*)$/.exec(l);
      if (m && /DOCKER|docker0/.test(m[2] ?? "")) await run("iptables", ["-t", table, "-D", m[1] ?? "", ...(m[2] ?? "").split(" ")], { allowFail: true });
    }
    const chains = lines.map((l) => /^-N (DOCKER\S*)$/.exec(l)?.[1]).filter((c): c is string => c !== undefined);
    for (const c of chains) await run("iptables", ["-t", table, "-F", c], { allowFail: true });
    for (const c of chains) await run("iptables", ["-t", table, "-X", c], { allowFail: true });
  }
}

async function restoreHost(s: EngineState): Promise<void> {
  await removeDockerChains();
  if (s.forward) await run("iptables", ["-P", "FORWARD", s.forward], { allowFail: true }).catch(() => undefined);
  if (s.ipForward && readIpForward() !== s.ipForward) {
    try {
      writeFileSync("/proc/sys/net/ipv4/ip_forward", `${s.ipForward}\n`);
    } catch {
      // read-only /proc/sys: nothing to restore
    }
  }
  if (!s.hadDocker0) await run("ip", ["link", "delete", "docker0"], { allowFail: true }).catch(() => undefined);
}

function alive(s: EngineState): boolean {
  return procStat(s.pid)?.start === s.start;
}

async function stopDaemon(s: EngineState, stateFile: string): Promise<void> {
  if (alive(s)) {
    log(`stopping the dockerd this test started (pid ${s.pid})`);
    process.kill(s.pid, "SIGTERM");
    const deadline = Date.now() + 45_000;
    while (alive(s) && Date.now() < deadline) await sleep(200);
    if (alive(s)) process.kill(s.pid, "SIGKILL");
    while (alive(s)) await sleep(100);
  }
  await restoreHost(s);
  rmSync(stateFile, { force: true });
  log(`dockerd stopped; iptables FORWARD policy ${s.forward || "(no iptables before)"}, ip_forward=${s.ipForward} restored`);
}

export async function ensureEngine(stateFile: string): Promise<Engine> {
  mkdirSync(dirname(stateFile), { recursive: true });
  if (existsSync(stateFile)) {
    const s = JSON.parse(readFileSync(stateFile, "utf8")) as EngineState;
    if (alive(s) && (await engineAnswers())) {
      log(`adopting the dockerd a killed run started (pid ${s.pid})`);
      return { owned: true, describe: `dockerd pid ${s.pid} (left by a killed run)`, stop: () => stopDaemon(s, stateFile) };
    }
    if (alive(s)) process.kill(s.pid, "SIGKILL");
    log("a killed run left host settings: restoring them");
    await restoreHost(s);
    rmSync(stateFile, { force: true });
  }
  if (await engineAnswers()) return { owned: false, describe: "the engine already running", stop: async () => undefined };
  if (!existsSync("/usr/sbin/dockerd") && !(await run("sh", ["-c", "command -v dockerd"], { allowFail: true })).stdout.trim()) await installDockerIo();
  const forward = await forwardPolicy();
  const ipForward = readIpForward();
  const hadDocker0 = existsSync("/sys/class/net/docker0");
  const logFile = stateFile.replace(/\.json$/, ".log");
  const fd = openSync(logFile, "a");
  const child = spawn("dockerd", [], { detached: true, stdio: ["ignore", fd, fd] });
  closeSync(fd);
  child.unref();
  const pid = child.pid ?? 0;
  // procStat right after spawn: the start time names this process for good.
  const start = procStat(pid)?.start ?? 0;
  const s: EngineState = { pid, start, forward, ipForward, hadDocker0, log: logFile };
  writeFileSync(stateFile, JSON.stringify(s));
  const deadline = Date.now() + 60_000;
  while (!(await engineAnswers())) {
    if (!alive(s)) throw new Error(`dockerd exited at start; its log: ${logFile}\n${readFileSync(logFile, "utf8").split("\n").slice(-15).join("\n")}`);
    if (Date.now() > deadline) throw new Error(`dockerd did not answer within 60 s; its log: ${logFile}`);
    await sleep(200);
  }
  // dockerd sets FORWARD to DROP; put back what the host had, so its other bridges keep working.
  if (forward && (await forwardPolicy()) !== forward) await run("iptables", ["-P", "FORWARD", forward]);
  log(`started dockerd (pid ${pid}, log ${logFile}); FORWARD policy kept at ${forward || "(none)"}`);
  return { owned: true, describe: `dockerd pid ${pid} (started by this test)`, stop: () => stopDaemon(s, stateFile) };
}
