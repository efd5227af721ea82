import { networkInterfaces, type NetworkInterfaceInfo } from "node:os";
import { BlockList, isIP } from "node:net";

type Interfaces = NodeJS.Dict<NetworkInterfaceInfo[]>;

type Family = "IPv4" | "IPv6";

/** One entry of `interfaces`, parsed. */
export type InterfaceSpec =
  | { kind: "static"; address: string }
  | { kind: "family"; family: Family }
  | { kind: "cidr"; network: string; bits: number; family: Family }
  | { kind: "interface"; name: string; family: Family };

/**
 * Parses one `interfaces` entry, throwing an Error that says what is wrong. The config schema
 * validates with this same function, so `run` never meets a spec it cannot read.
 */
export function parseInterfaceSpec(spec: string): InterfaceSpec {
  if (spec.startsWith("static:")) {
    const address = spec.slice("static:".length);
    if (!isIP(address)) throw new Error(`"${address}" is not an IP address (expected static:1.2.3.4 or static:fd00::1)`);
    return { kind: "static", address };
  }
  if (spec === "inet" || spec === "inet6") return { kind: "family", family: spec === "inet" ? "IPv4" : "IPv6" };
  if (spec.includes("/")) {
    const [network = "", bitsText = "", ...rest] = spec.split("/");
    const version = isIP(network);
    const max = version === 6 ? 128 : 32;
    const bits = /^\d{1,3}$/.test(bitsText) ? Number(bitsText) : NaN;
    if (!version || rest.length || !(bits <= max)) throw new Error(`not a CIDR network (expected e.g. 10.0.0.0/8 or fd00::/8, prefix length 0..${max})`);
    return { kind: "cidr", network, bits, family: version === 6 ? "IPv6" : "IPv4" };
  }
  if (isIP(spec)) throw new Error(`a bare address is not an interface; write "static:${spec}"`);
  const [name = "", fam, ...rest] = spec.split(":");
  if (!/^[^\s/:]{1,15}$/.test(name) || rest.length || (fam !== undefined && fam !== "inet" && fam !== "inet6")) {
    throw new Error('expected an interface ("eth0", "eth0:inet6"), a CIDR ("10.0.0.0/8"), "inet", "inet6" or "static:1.2.3.4"');
  }
  return { kind: "interface", name, family: fam === "inet6" ? "IPv6" : "IPv4" };
}

function inCidr(address: string, family: Family, spec: Extract<InterfaceSpec, { kind: "cidr" }>): boolean {
  if (family !== spec.family) return false;
  const type = family === "IPv6" ? "ipv6" : "ipv4";
  const list = new BlockList();
  list.addSubnet(spec.network, spec.bits, type);
  return list.check(address, type);
}

const CONSUL_ADDRESS = "expected http(s)://host:port or host:port";

/**
 * A Consul HTTP address as Consul's own tools take it: `http(s)://host[:port]`, or `host[:port]`
 * (https when `tls`). Returns it as `scheme://host:port`; throws an Error saying what is wrong. The
 * config schema (consul.address) and CONSUL_HTTP_ADDR are both read with this.
 */
export function parseConsulAddress(text: string, tls = false): string {
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(text)?.[1]?.toLowerCase();
  if (scheme !== undefined && scheme !== "http" && scheme !== "https") throw new Error(`unsupported scheme "${scheme}": ${CONSUL_ADDRESS}`);
  let url: URL;
  try {
    url = new URL(scheme ? text : `${tls ? "https" : "http"}://${text}`);
  } catch (err) {
    throw new Error(CONSUL_ADDRESS, { cause: err });
  }
  if (!url.hostname || /\s/.test(text)) throw new Error(CONSUL_ADDRESS);
  if (url.username || url.password) throw new Error("credentials do not belong in the address; use consul.token or CONSUL_HTTP_TOKEN");
  if (url.pathname !== "/" || url.search || url.hash) throw new Error(`${CONSUL_ADDRESS}, without a path or query`);
  return `${url.protocol}//${url.host}`;
}

/**
 * Resolves the address to advertise from an ordered list of specs, first match wins:
 * `eth0` (IPv4 of eth0), `eth0:inet6`, `10.0.0.0/8` (an address in that network), `inet` / `inet6`
 * (the first non-loopback address of that family, else loopback), `static:1.2.3.4`.
 */
export function resolveAddress(specs: string | string[], ifaces: Interfaces = networkInterfaces()): string {
  const list = Array.isArray(specs) ? specs : [specs];
  const all = Object.entries(ifaces).flatMap(([name, addrs]) => (addrs ?? []).map((a) => ({ name, ...a })));
  for (const text of list) {
    let spec: InterfaceSpec;
    try {
      spec = parseInterfaceSpec(text);
    } catch (err) {
      throw new Error(`interfaces: ${JSON.stringify(text)}: ${(err as Error).message}`, { cause: err });
    }
    if (spec.kind === "static") return spec.address;
    if (spec.kind === "family") {
      const hit = all.find((a) => a.family === spec.family && !a.internal) ?? all.find((a) => a.family === spec.family);
      if (hit) return hit.address;
      continue;
    }
    if (spec.kind === "cidr") {
      const hit = all.find((a) => inCidr(a.address, a.family, spec));
      if (hit) return hit.address;
      continue;
    }
    const hit = all.find((a) => a.name === spec.name && a.family === spec.family && !(spec.family === "IPv6" && a.address.startsWith("fe80")));
    if (hit) return hit.address;
  }
  throw new Error(`interfaces: no address matches ${JSON.stringify(list)} (have: ${all.map((a) => `${a.name}=${a.address}`).join(", ") || "none"})`);
}
