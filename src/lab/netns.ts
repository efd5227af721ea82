import { execFileSync } from "node:child_process";
import { describeProcess, killSync, LAB_DIR_ENV, LAB_NET_ENV, procEnv, processesWhere } from "./procs.js";

/**
 * The lab's own network, for partitions: a bridge in the root namespace (10.251.<k>.1/24) and one
 * network namespace per process group (Consul, each node), joined to it by a veth pair whose inner
 * end is called eth0. Traffic stays on loopback and inside these namespaces. Needs root.
 */
export interface LabNetwork {
  k: number;
  bridge: string;
  consulNs: string;
}

export const bridgeIp = (k: number) => `10.251.${k}.1`;
export const consulIp = (k: number) => `10.251.${k}.2`;
export const nodeIp = (k: number, i: number) => `10.251.${k}.${10 + i}`;
export const nodeNs = (k: number, i: number) => `sp${k}n${i}`;

function ip(...args: string[]): string {
  try {
    return execFileSync("ip", args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`ip ${args.join(" ")}: ${(e.stderr ?? e.message).trim()}`);
  }
}

export function requireRoot(what: string): void {
  if (process.getuid?.() !== 0) throw new Error(`${what} needs root (network namespaces and veth pairs)`);
}

function namespaces(): string[] {
  return ip("netns", "list")
    .split("\n")
    .map((l) => l.split(" ")[0]!)
    .filter(Boolean);
}

/** Everything of network k, by name: its namespaces (sp<k>c, sp<k>n<i>), their veths (…v) and the bridge. */
const ourNamespace = (k: number) => new RegExp(`^sp${k}(c|n\\d+)$`);
const ourVeth = (k: number) => new RegExp(`^sp${k}(c|n\\d+)v$`);

function links(): string[] {
  return ip("-o", "link", "show")
    .split("\n")
    .map((l) => /^\d+:\s+([^:@\s]+)/.exec(l)?.[1])
    .filter((x): x is string => !!x);
}

/** A lab (by its directory) that is still wanted: the ones whose owner died, or that never came up, are leftovers. */
export type LabLiveness = (dir: string) => boolean;

/**
 * Makes network k free: processes left by an earlier lab on it are killed, and its namespaces,
 * veths and bridge removed, so that a run killed halfway (Ctrl-C, a timeout) does not make the
 * next one fail with "File exists". A lab that is still running on k is not touched: that is an
 * error naming it.
 */
export function reclaimNetwork(k: number, forDir: string, isLive: LabLiveness): void {
  const users = processesWhere((env) => env.get(LAB_NET_ENV) === String(k));
  const byDir = new Map<string, number[]>();
  for (const pid of users) {
    const d = procEnv(pid)?.get(LAB_DIR_ENV) ?? "";
    byDir.set(d, [...(byDir.get(d) ?? []), pid]);
  }
  for (const [d, pids] of byDir) {
    if (d && d !== forDir && isLive(d)) {
      throw new Error(
        `network ${k} (10.251.${k}.0/24, namespaces sp${k}*) is in use by the lab in ${d} (${pids.slice(0, 2).map(describeProcess).join(", ")}${pids.length > 2 ? `, and ${pids.length - 2} more` : ""}); stop it with: statepilot lab down --dir ${d}, or use another --subnet`,
      );
    }
  }
  if (users.length) {
    const left = killSync(users);
    if (left.length) throw new Error(`could not stop processes left on network ${k}: ${left.map(describeProcess).join(", ")}`);
  }
  removeNetwork(k);
}

/** Kills whatever runs in network k's namespaces and removes them, their veths and the bridge; idempotent. */
export function removeNetwork(k: number): void {
  const nss = namespaces().filter((n) => ourNamespace(k).test(n));
  const inside: number[] = [];
  for (const ns of nss) {
    try {
      inside.push(...ip("netns", "pids", ns).split("\n").filter(Boolean).map(Number));
    } catch {
      // gone meanwhile
    }
  }
  if (inside.length) killSync(inside);
  for (const ns of nss) {
    try {
      ip("netns", "del", ns);
    } catch {
      // gone
    }
  }
  // A namespace lives on while a process is in it, and its veth with it; deleting one end of a veth
  // deletes the pair, wherever the other end is.
  for (const l of links()) {
    if (ourVeth(k).test(l) || l === `spbr${k}`) {
      try {
        ip("link", "del", l);
      } catch {
        // gone
      }
    }
  }
}

export function createNetwork(k: number, forDir: string, isLive: LabLiveness): LabNetwork {
  requireRoot("a lab with --netns");
  if (!Number.isInteger(k) || k < 0 || k > 255) throw new Error(`network index ${k} out of range`);
  const net: LabNetwork = { k, bridge: `spbr${k}`, consulNs: `sp${k}c` };
  reclaimNetwork(k, forDir, isLive);
  ip("link", "add", net.bridge, "type", "bridge");
  ip("addr", "add", `${bridgeIp(k)}/24`, "dev", net.bridge);
  ip("link", "set", net.bridge, "up");
  addNamespace(net, net.consulNs, consulIp(k));
  return net;
}

/** A namespace with eth0 on the lab bridge at `address`. */
export function addNamespace(net: LabNetwork, ns: string, address: string): void {
  if (namespaces().includes(ns)) {
    const inside = ip("netns", "pids", ns).split("\n").filter(Boolean).map(Number);
    if (inside.length) killSync(inside);
    ip("netns", "del", ns);
  }
  const veth = `${ns}v`;
  if (links().includes(veth)) ip("link", "del", veth);
  ip("netns", "add", ns);
  ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns);
  ip("link", "set", veth, "master", net.bridge, "up");
  ip("-n", ns, "addr", "add", `${address}/24`, "dev", "eth0");
  ip("-n", ns, "link", "set", "eth0", "up");
  ip("-n", ns, "link", "set", "lo", "up");
}

/** Adds namespace `ns` (see addNamespace) unless it is there already, with whatever runs in it. */
export function ensureNamespace(net: LabNetwork, ns: string, address: string): void {
  if (!namespaces().includes(ns)) addNamespace(net, ns, address);
}

/** Packets from `ns` to `target` are dropped (on) or flow again (off). */
export function blackhole(ns: string, target: string, on: boolean): void {
  if (on) ip("-n", ns, "route", "replace", "blackhole", `${target}/32`);
  else {
    try {
      ip("-n", ns, "route", "del", "blackhole", `${target}/32`);
    } catch {
      // already healed
    }
  }
}

/** Removes the lab's namespaces (killing what still runs in them), veths and bridge; idempotent. */
export function destroyNetwork(net: LabNetwork): void {
  removeNetwork(net.k);
}
