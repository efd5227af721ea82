import { networkInterfaces, type NetworkInterfaceInfo } from "node:os";
import { BlockList, isIP } from "node:net";

type Interfaces = NodeJS.Dict<NetworkInterfaceInfo[]>;

function inCidr(address: string, family: "IPv4" | "IPv6", cidr: string): boolean {
  const [net, bitsText] = cidr.split("/");
  const bits = Number(bitsText);
  if (!net || !Number.isInteger(bits)) return false;
  const type = isIP(net) === 6 ? "ipv6" : "ipv4";
  if ((type === "ipv6") !== (family === "IPv6")) return false;
  const list = new BlockList();
  list.addSubnet(net, bits, type);
  return list.check(address, type);
}

/**
 * Resolves the address to advertise from an ordered list of specs, first match wins:
 * `eth0` (IPv4 of eth0), `eth0:inet6`, `10.0.0.0/8` (an address in that network), `inet` / `inet6`
 * (the first non-loopback address of that family, else loopback), `static:1.2.3.4`.
 */
export function resolveAddress(specs: string | string[], ifaces: Interfaces = networkInterfaces()): string {
  const list = Array.isArray(specs) ? specs : [specs];
  const all = Object.entries(ifaces).flatMap(([name, addrs]) => (addrs ?? []).map((a) => ({ name, ...a })));
  for (const spec of list) {
    if (spec.startsWith("static:")) {
      const ip = spec.slice("static:".length);
      if (isIP(ip)) return ip;
      throw new Error(`interfaces: "${spec}" is not an IP address`);
    }
    if (spec === "inet" || spec === "inet6") {
      const family = spec === "inet" ? "IPv4" : "IPv6";
      const hit = all.find((a) => a.family === family && !a.internal) ?? all.find((a) => a.family === family);
      if (hit) return hit.address;
      continue;
    }
    if (spec.includes("/")) {
      const hit = all.find((a) => inCidr(a.address, a.family, spec));
      if (hit) return hit.address;
      continue;
    }
    const [name, fam] = spec.split(":");
    const family = fam === "inet6" ? "IPv6" : "IPv4";
    const hit = all.find((a) => a.name === name && a.family === family && !(family === "IPv6" && a.address.startsWith("fe80")));
    if (hit) return hit.address;
  }
  throw new Error(`interfaces: no address matches ${JSON.stringify(list)} (have: ${all.map((a) => `${a.name}=${a.address}`).join(", ") || "none"})`);
}
