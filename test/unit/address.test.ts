import { describe, expect, it } from "vitest";
import { resolveAddress } from "../../src/discovery/address.js";

const ifaces = {
  lo: [{ address: "127.0.0.1", family: "IPv4", internal: true, netmask: "255.0.0.0", mac: "", cidr: "127.0.0.1/8" }],
  eth0: [
    { address: "10.1.2.3", family: "IPv4", internal: false, netmask: "255.255.0.0", mac: "", cidr: "10.1.2.3/16" },
    { address: "fd00::3", family: "IPv6", internal: false, netmask: "ffff::", mac: "", cidr: "fd00::3/64", scopeid: 0 },
  ],
} as unknown as NodeJS.Dict<import("node:os").NetworkInterfaceInfo[]>;

describe("resolveAddress", () => {
  it.each([
    ["eth0", "10.1.2.3"],
    ["eth0:inet6", "fd00::3"],
    ["10.0.0.0/8", "10.1.2.3"],
    ["inet", "10.1.2.3"],
    ["static:192.0.2.7", "192.0.2.7"],
  ])("%s", (spec, addr) => {
    expect(resolveAddress(spec, ifaces)).toBe(addr);
  });

  it("takes the first spec that matches", () => {
    expect(resolveAddress(["eth9", "192.168.0.0/16", "lo"], ifaces)).toBe("127.0.0.1");
  });

  it("says what it had when nothing matches", () => {
    expect(() => resolveAddress(["eth9"], ifaces)).toThrow(/no address matches \["eth9"\].*eth0=10.1.2.3/);
  });
});
