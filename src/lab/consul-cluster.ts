import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { ConsulAgent } from "./consul-agent.js";
import { freePorts } from "./ports.js";
import { gone } from "./procs.js";

/**
 * A lab on a real Consul cluster (`lab up --store consul --store-servers 3`): three servers
 * (`-bootstrap-expect=3`) and, as in production, one client agent per node, which that node's
 * statepilot talks to. Every agent keeps its data directory across restarts (DIR/consul/<name>).
 * Kept apart from cluster.ts: the Lab calls these with what they need.
 */

/** One Consul agent of the lab's cluster: where it listens (http, serf LAN, serf WAN, server RPC), its process. */
export interface ConsulMemberEntry {
  name: string;
  host: string;
  ports: number[];
  /** 0 while stopped. */
  pid: number;
  /** The network namespace it runs in (a lab with --netns). */
  netns?: string;
}

/** What these functions need from the lab. */
export interface ConsulClusterHost {
  dir: string;
  /** Processes outlive the creating process (the CLI) unless the lab is tied to it. */
  persistent: boolean;
  env: Record<string, string>;
}

const agentDir = (host: ConsulClusterHost, name: string) => {
  const dir = join(host.dir, "consul", name);
  mkdirSync(dir, { recursive: true });
  return dir;
};

const address = (m: ConsulMemberEntry) => `http://${m.host}:${m.ports[0]}`;

/** The serf LAN addresses of the servers: what every agent joins. */
export const serverJoin = (servers: readonly ConsulMemberEntry[]): string[] => servers.map((s) => `${s.host}:${s.ports[1]}`);

/**
 * Starts the servers not running (all of them together the first time: none elects a leader
 * alone), on free ports of `host` the first time and where `known` says later. `only`: just these.
 */
export async function startConsulServers(host: ConsulClusterHost, size: number, known: ConsulMemberEntry[] | undefined, on = "127.0.0.1", only?: readonly string[], netns?: string): Promise<ConsulMemberEntry[]> {
  const servers: ConsulMemberEntry[] = known
    ? known.map((m) => ({ ...m }))
    : await (async () => {
        // In the lab's store namespace every port is free (and the host cannot probe its address):
        // server i on http 8500+i, serf LAN 8310+i, serf WAN 8320+i, server RPC 8330+i.
        const ports = netns ? Array.from({ length: size }, (_, i) => [8500 + i, 8310 + i, 8320 + i, 8330 + i]).flat() : await freePorts(4 * size, on);
        return Array.from({ length: size }, (_, i) => ({ name: `lab-consul-${i + 1}`, host: on, ports: ports.slice(4 * i, 4 * i + 4), pid: 0, ...(netns ? { netns } : {}) }));
      })();
  const join = serverJoin(servers);
  const starting = servers.filter((m) => (only ? only.includes(m.name) : m.pid === 0 || gone(m.pid)));
  const agents = starting.map(
    (m) =>
      new ConsulAgent({
        dir: agentDir(host, m.name),
        host: m.host,
        ports: m.ports,
        nodeName: m.name,
        persistent: host.persistent,
        env: host.env,
        ...(m.netns ? { netns: m.netns } : {}),
        cluster: { bootstrapExpect: servers.length, join: join.filter((j) => j !== `${m.host}:${m.ports[1]}`) },
      }),
  );
  await Promise.all(agents.map((a) => a.start()));
  for (const [i, a] of agents.entries()) starting[i]!.pid = a.pid!;
  return servers;
}

/**
 * Starts (or restarts, data kept) the client agent of one node, on free ports of the node's address
 * the first time, or in the node's own namespace (`netns`) on Consul's usual ports.
 */
export async function startConsulClient(host: ConsulClusterHost, node: string, on: string, servers: readonly ConsulMemberEntry[], known?: ConsulMemberEntry, netns?: string): Promise<ConsulMemberEntry> {
  const entry: ConsulMemberEntry = known ? { ...known } : { name: `${node}-agent`, host: on, ports: netns ? [8500, 8301, 8302, 8300] : await freePorts(4, on), pid: 0, ...(netns ? { netns } : {}) };
  const agent = await new ConsulAgent({
    dir: agentDir(host, entry.name),
    host: entry.host,
    ports: entry.ports,
    nodeName: entry.name,
    persistent: host.persistent,
    env: host.env,
    ...(entry.netns ? { netns: entry.netns } : {}),
    cluster: { join: serverJoin(servers) },
  }).start();
  entry.pid = agent.pid!;
  return entry;
}

/** The server that is Consul's Raft leader now, asked of the running servers (undefined: no leader). */
export async function consulLeader(servers: readonly ConsulMemberEntry[]): Promise<string | undefined> {
  for (const m of servers) {
    if (!m.pid || gone(m.pid)) continue;
    try {
      const res = await fetch(`${address(m)}/v1/status/leader`, { signal: AbortSignal.timeout(2_000) });
      const leader = (await res.json()) as string;
      const found = servers.find((s) => `${s.host}:${s.ports[3]}` === leader);
      if (found) return found.name;
    } catch {
      // this server does not answer: ask the next
    }
  }
  return undefined;
}

export const consulAddress = address;
