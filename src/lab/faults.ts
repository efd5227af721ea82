import { setTimeout as sleep } from "node:timers/promises";
import { execFileSync } from "node:child_process";
import { rmSync } from "node:fs";
import { join } from "node:path";
import { alive, type Lab } from "./cluster.js";
import { onInterrupt } from "./interrupt.js";
import { blackhole, consulIp } from "./netns.js";
import { waitFor } from "./wait.js";

export const FAULTS = [
  "kill-mysqld",
  "kill-statepilot",
  "kill-node",
  "hang",
  "partition-consul",
  "partition-peers",
  "consul-restart",
  "cluster-store-stop",
  "cluster-store-pause",
  "store-leader-kill",
  "store-quorum-loss",
  "store-agent-restart",
  "store-slow",
  "store-down",
  "disk-full",
] as const;
export type FaultKind = (typeof FAULTS)[number];

export interface FaultResult {
  kind: FaultKind;
  node: string | undefined;
  description: string;
}


function needNetwork(lab: Lab, kind: FaultKind) {
  const net = lab.file.network;
  if (!net) throw new Error(`${kind} needs a lab started with --netns (network namespaces)`);
  return net;
}

function storePath(lab: Lab, kind: FaultKind): string {
  if (!lab.file.storeTmpfsMb) throw new Error(`${kind} needs a lab started with --store-tmpfs-mb (a tmpfs snapshot store)`);
  return join(lab.dir, "snapshots");
}

/** store-leader-kill or store-quorum-loss on three Consul servers: the Raft leader stopped, or the leader and one more (no quorum); data kept. */
async function consulServersFault(lab: Lab, kind: "store-leader-kill" | "store-quorum-loss", forMs: number): Promise<FaultResult> {
  const servers = lab.file.consulCluster?.servers ?? [];
  const leader = await lab.consulLeader();
  if (!leader) throw new Error(`${kind}: the lab's Consul servers have no leader now`);
  const victims = kind === "store-leader-kill" ? [leader] : [leader, servers.find((m) => m.name !== leader)!.name];
  const start = () => lab.startConsulServers(victims);
  const release = onInterrupt({ what: `starting the stopped Consul servers ${victims.join(", ")}`, run: () => void start().catch(() => undefined) });
  try {
    for (const v of victims) await lab.stopConsulServer(v);
    await sleep(forMs);
    await start();
  } finally {
    release();
  }
  return { kind, node: undefined, description: `Consul ${kind === "store-leader-kill" ? `leader ${leader}` : `servers ${victims.join(" and ")} (the leader and one more: no quorum)`} stopped for ${forMs} ms, then started again (data kept)` };
}

/** How store-slow slows a server: frozen for STALL_MS out of every PERIOD_MS (up to STALL_MS added to whatever it handles then). */
const STORE_SLOW = { stallMs: 150, periodMs: 400 } as const;

/**
 * The store server store-slow slows: the Raft leader of a 3-server store (every write and, on
 * etcd, every linearizable read goes through it), else the lab's only store process.
 */
async function slowStoreTarget(lab: Lab): Promise<{ name: string; pid: number }> {
  const clusters = [
    { label: "etcd member", servers: lab.file.etcd?.members, leader: () => lab.etcdLeader() },
    { label: "Consul server", servers: lab.file.consulCluster?.servers, leader: () => lab.consulLeader() },
  ];
  for (const c of clusters) {
    if (!c.servers || c.servers.length < 2) continue;
    const leader = await c.leader();
    const m = c.servers.find((x) => x.name === leader);
    if (!m?.pid || !alive(m.pid)) throw new Error(`store-slow: the lab's ${c.label}s have no leader now`);
    return { name: `${c.label} ${m.name} (the leader)`, pid: m.pid };
  }
  const pid = lab.clusterStorePids().find((p) => alive(p));
  if (!pid) throw new Error("store-slow: the lab's cluster store is not running");
  return { name: lab.file.etcd ? "etcd" : "the Consul agent", pid };
}

/** Runs `fault` with `heal` registered to run if this process is interrupted meanwhile (Ctrl-C, SIGTERM). */
async function healing<T>(what: string, heal: () => void, fault: () => Promise<T>): Promise<T> {
  const release = onInterrupt({ what: `healing ${what}`, run: heal });
  try {
    return await fault();
  } finally {
    release();
  }
}

/**
 * Applies one fault for `forMs` and heals it, also when this process is interrupted meanwhile: a process is killed (and the node started again),
 * stopped and continued, cut off from Consul or from its peers, or a shared part fails (Consul
 * restarts with an empty state, the snapshot store turns read-only or full).
 */
export async function applyFault(lab: Lab, kind: FaultKind, opts: { node?: string | undefined; forMs: number; log?: (s: string) => void }): Promise<FaultResult> {
  const log = opts.log ?? (() => undefined);
  const n = opts.node ? lab.node(opts.node) : undefined;
  const needNode = () => {
    if (!n) throw new Error(`${kind} needs a NODE`);
    return n;
  };
  switch (kind) {
    case "kill-mysqld": {
      const node = needNode();
      const hit = await lab.kill(node.name, { only: "mysqld" });
      await sleep(opts.forMs);
      return { kind, node: node.name, description: `SIGKILL mysqld ${hit.mysqld ?? "-"} (statepilot restarts it)` };
    }
    case "kill-statepilot":
    case "kill-node": {
      const node = needNode();
      // mysqld dies with statepilot (parent-death signal), so both are a whole-node crash.
      const hit = await lab.kill(node.name, kind === "kill-statepilot" ? { only: "statepilot" } : {});
      await sleep(opts.forMs);
      await lab.start(node.name);
      return { kind, node: node.name, description: `SIGKILL statepilot ${hit.statepilot ?? "-"}${kind === "kill-node" ? ` and mysqld ${hit.mysqld ?? "-"}` : ""}, down ${opts.forMs} ms, started again` };
    }
    case "hang": {
      const node = needNode();
      const v = await lab.view(node);
      const sp = alive(node.pids.statepilot) ? node.pids.statepilot! : undefined;
      const db = alive(v.pids.mysqld) ? v.pids.mysqld! : undefined;
      const thaw = () => {
        for (const p of [sp, db]) if (p && alive(p)) process.kill(p, "SIGCONT");
      };
      await healing(`the stopped ${node.name}`, thaw, async () => {
        for (const p of [db, sp]) if (p) process.kill(p, "SIGSTOP");
        log(`SIGSTOP mysqld ${db ?? "-"}, statepilot ${sp ?? "-"}`);
        await sleep(opts.forMs);
        // statepilot resumes first and gets a moment to fence (it kills a server whose lease is past
        // the takeover time) before mysqld could answer anyone. A whole container thawed at once has
        // no such order: there mysqld may answer for the instant before the kill lands.
        if (sp && alive(sp)) process.kill(sp, "SIGCONT");
        await sleep(300);
        if (db && alive(db)) process.kill(db, "SIGCONT");
      });
      return { kind, node: node.name, description: `SIGSTOP mysqld and statepilot for ${opts.forMs} ms, then SIGCONT (statepilot first, mysqld 300 ms later)` };
    }
    case "partition-consul": {
      const node = needNode();
      const net = needNetwork(lab, kind);
      const heal = () => blackhole(node.ns!, consulIp(net.k), false);
      await healing(`${node.name}'s partition from Consul`, heal, async () => {
        blackhole(node.ns!, consulIp(net.k), true);
        try {
          await sleep(opts.forMs);
        } finally {
          heal();
        }
      });
      return { kind, node: node.name, description: `${node.name} cut off from Consul${lab.file.etcd ? " and etcd (its cluster store)" : ""} for ${opts.forMs} ms` };
    }
    case "partition-peers": {
      const node = needNode();
      needNetwork(lab, kind);
      const peers = lab.file.nodes.filter((p) => p.name !== node.name);
      const set = (on: boolean) => {
        for (const p of peers) {
          blackhole(node.ns!, p.mysql.host, on);
          blackhole(p.ns!, node.mysql.host, on);
        }
      };
      await healing(`${node.name}'s partition from its peers`, () => set(false), async () => {
        set(true);
        try {
          await sleep(opts.forMs);
        } finally {
          set(false);
        }
      });
      return { kind, node: node.name, description: `${node.name} cut off from ${peers.map((p) => p.name).join(", ")} (Consul still reachable) for ${opts.forMs} ms` };
    }
    case "consul-restart": {
      await lab.restartConsul();
      await sleep(opts.forMs);
      return { kind, node: undefined, description: "Consul dev agent restarted (all KV, sessions and registrations lost)" };
    }
    case "cluster-store-stop": {
      // The nodes' cluster store process (etcd with its data kept, or the Consul dev agent) stopped
      // and started again: every node loses the store at once.
      const store = lab.file.etcd ? "etcd" : "Consul";
      const start = () => lab.startClusterStore();
      const release = onInterrupt({ what: `starting the stopped ${store}`, run: () => void start().catch(() => undefined) });
      try {
        await lab.stopClusterStore();
        await sleep(opts.forMs);
        await start();
      } finally {
        release();
      }
      return { kind, node: undefined, description: `cluster store (${store}) stopped for ${opts.forMs} ms, then started again${store === "Consul" ? " (a dev agent: all KV, sessions and registrations lost)" : " (its data kept)"}` };
    }
    case "cluster-store-pause": {
      // SIGSTOP: connections stay open and calls hang (no refusal), as with a store host frozen.
      const store = lab.file.etcd ? "etcd" : "Consul";
      const pids = lab.clusterStorePids();
      if (!pids.length) throw new Error(`${kind}: the lab's ${store} is not running`);
      const thaw = () => {
        for (const p of pids) if (alive(p)) process.kill(p, "SIGCONT");
      };
      await healing(`the stopped ${store}`, thaw, async () => {
        for (const p of pids) process.kill(p, "SIGSTOP");
        try {
          await sleep(opts.forMs);
        } finally {
          thaw();
        }
      });
      return { kind, node: undefined, description: `cluster store (${store}, pid ${pids.join(", ")}) paused (SIGSTOP) for ${opts.forMs} ms, then SIGCONT` };
    }
    case "store-agent-restart": {
      // A Consul cluster lab (--store consul --store-servers 3): the node's own client agent
      // stopped and started again with its data kept (its checks and sessions go with it meanwhile).
      if (!lab.file.consulCluster) throw new Error(`${kind} needs a lab started with --store consul --store-servers 3 (one Consul client agent per node)`);
      const node = opts.node ?? (await lab.primary())?.name;
      if (!node) throw new Error(`${kind}: name a node (no primary now)`);
      const i = Number(node.split("-")[1]);
      const start = () => lab.startNodeAgent(i);
      const release = onInterrupt({ what: `starting ${node}'s Consul agent`, run: () => void start().catch(() => undefined) });
      try {
        await lab.stopNodeAgent(node);
        await sleep(opts.forMs);
        await start();
      } finally {
        release();
      }
      return { kind, node, description: `${node}'s Consul client agent stopped for ${opts.forMs} ms, then started again (data kept)` };
    }
    case "store-leader-kill":
    case "store-quorum-loss": {
      if (lab.file.consulCluster) return consulServersFault(lab, kind, opts.forMs);
      // A multi-member etcd (lab up --store etcd --store-servers 3): its Raft leader stopped, or
      // two of three members (the leader and one more: no quorum), then started again, data kept.
      const members = lab.file.etcd?.members;
      if (!members || members.length < 3) throw new Error(`${kind} needs a lab started with --store etcd --store-servers 3`);
      const leader = await lab.etcdLeader();
      if (!leader) throw new Error(`${kind}: the lab's etcd has no leader now`);
      const victims = kind === "store-leader-kill" ? [leader] : [leader, members.find((m) => m.name !== leader)!.name];
      const start = () => lab.startEtcdMembers(members.length, undefined, victims);
      const release = onInterrupt({ what: `starting the stopped etcd members ${victims.join(", ")}`, run: () => void start().catch(() => undefined) });
      try {
        for (const v of victims) await lab.stopEtcdMember(v);
        await sleep(opts.forMs);
        await start();
      } finally {
        release();
      }
      return { kind, node: undefined, description: `etcd ${kind === "store-leader-kill" ? `leader ${leader}` : `members ${victims.join(" and ")} (the leader and one more: no quorum)`} stopped for ${opts.forMs} ms, then started again (data kept)` };
    }
    case "store-slow": {
      // Latency on one store server. The kernel here has no netem qdisc (`tc qdisc add ... netem`
      // fails: "Specified qdisc kind is unknown"), so the server itself is made slow: frozen for
      // STORE_SLOW.stallMs of every STORE_SLOW.periodMs, as a server starved of CPU or stalled on
      // its disk would be. Its connections stay open; what it handles waits up to stallMs.
      const target = await slowStoreTarget(lab);
      const thaw = () => {
        if (alive(target.pid)) process.kill(target.pid, "SIGCONT");
      };
      let stalls = 0;
      await healing(`the slowed ${target.name}`, thaw, async () => {
        const until = Date.now() + opts.forMs;
        try {
          while (Date.now() < until && alive(target.pid)) {
            process.kill(target.pid, "SIGSTOP");
            stalls++;
            await sleep(Math.min(STORE_SLOW.stallMs, Math.max(0, until - Date.now())));
            thaw();
            await sleep(Math.min(STORE_SLOW.periodMs - STORE_SLOW.stallMs, Math.max(0, until - Date.now())));
          }
        } finally {
          thaw();
        }
      });
      return { kind, node: undefined, description: `${target.name} (pid ${target.pid}) slowed for ${opts.forMs} ms: frozen ${STORE_SLOW.stallMs} ms of every ${STORE_SLOW.periodMs} ms (${stalls} stalls)` };
    }
    case "store-down": {
      const path = storePath(lab, kind);
      const heal = () => execFileSync("mount", ["-o", "remount,rw", path]);
      await healing("the read-only snapshot store", heal, async () => {
        // tmpfs refuses remount,ro while a file is open for writing (a snapshot being written):
        // retry until that file is closed.
        await waitFor(
          async () => {
            try {
              execFileSync("mount", ["-o", "remount,ro", path], { stdio: ["ignore", "ignore", "pipe"] });
              return true;
            } catch (err) {
              if (/busy/.test(String((err as { stderr?: Buffer }).stderr ?? ""))) return undefined;
              throw err;
            }
          },
          { timeoutMs: 60_000, intervalMs: 100, what: `${path} to accept remount,ro (a file stays open for writing)` },
        );
        try {
          await sleep(opts.forMs);
        } finally {
          heal();
        }
      });
      return { kind, node: undefined, description: `snapshot store read-only for ${opts.forMs} ms` };
    }
    case "disk-full": {
      const path = storePath(lab, kind);
      const avail = () => Number(execFileSync("df", ["-B1", "--output=avail", path], { encoding: "utf8" }).trim().split("\n").pop());
      const filler = join(path, ".chaos-filler");
      const heal = () => rmSync(filler, { force: true });
      await healing("the full snapshot store", heal, async () => {
        // A snapshot being written takes space between the look and the fill: look again and
        // fill what is left then (a few times), so the store ends up full either way.
        for (let attempt = 1; ; attempt++) {
          try {
            execFileSync("fallocate", ["-l", String(Math.max(4096, avail())), filler], { stdio: ["ignore", "ignore", "pipe"] });
            break;
          } catch (err) {
            rmSync(filler, { force: true });
            if (attempt >= 5 || !/No space left/.test(String((err as { stderr?: Buffer }).stderr ?? ""))) throw err;
          }
        }
        try {
          await sleep(opts.forMs);
        } finally {
          heal();
        }
      });
      return { kind, node: undefined, description: `snapshot store full for ${opts.forMs} ms` };
    }
  }
}
