import { execFileSync } from "node:child_process";

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

function exists(ns: string): boolean {
  return ip("netns", "list").split("\n").some((l) => l.split(" ")[0] === ns);
}

export function createNetwork(k: number): LabNetwork {
  requireRoot("a lab with --netns");
  if (!Number.isInteger(k) || k < 0 || k > 255) throw new Error(`network index ${k} out of range`);
  const net: LabNetwork = { k, bridge: `spbr${k}`, consulNs: `sp${k}c` };
  destroyNetwork(net, 0);
  ip("link", "add", net.bridge, "type", "bridge");
  ip("addr", "add", `${bridgeIp(k)}/24`, "dev", net.bridge);
  ip("link", "set", net.bridge, "up");
  addNamespace(net, net.consulNs, consulIp(k));
  return net;
}

/** A namespace with eth0 on the lab bridge at `address`. */
export function addNamespace(net: LabNetwork, ns: string, address: string): void {
  if (exists(ns)) ip("netns", "del", ns);
  ip("netns", "add", ns);
  const veth = `${ns}v`;
  ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns);
  ip("link", "set", veth, "master", net.bridge, "up");
  ip("-n", ns, "addr", "add", `${address}/24`, "dev", "eth0");
  ip("-n", ns, "link", "set", "eth0", "up");
  ip("-n", ns, "link", "set", "lo", "up");
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

/** Removes the namespaces and the bridge (`nodes` namespaces plus Consul's); idempotent. */
export function destroyNetwork(net: LabNetwork, nodes: number): void {
  for (const ns of [net.consulNs, ...Array.from({ length: Math.max(nodes, 9) }, (_, i) => nodeNs(net.k, i + 1))]) {
    try {
      if (exists(ns)) ip("netns", "del", ns);
    } catch {
      // gone
    }
  }
  try {
    ip("link", "del", net.bridge);
  } catch {
    // gone
  }
}
