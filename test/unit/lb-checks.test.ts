import { describe, expect, it } from "vitest";
import { primaryCheck, replicaCheck, type HaStatus } from "../../src/mysql/ha/status.js";

const base: HaStatus = {
  node: "n1", role: "primary", up: true, readOnly: false, health: "passing", reason: "", action: "lead", primary: undefined, lagSeconds: 0,
  replication: undefined, executed: "", received: "", blocked: "", lastFailoverMs: undefined, leaseAgeMs: 400, fenceAfterMs: 3_000, maintenance: false,
};
const replica: HaStatus = { ...base, role: "replica", readOnly: true, leaseAgeMs: null, lagSeconds: 1, replication: { io: "Yes", sql: true, ioError: "", sqlError: "" } };

describe("load-balancer checks", () => {
  it("/primary only while the leadership is confirmed within fenceAfter", () => {
    expect(primaryCheck(base)).toBe(true);
    expect(primaryCheck({ ...base, leaseAgeMs: 3_000 })).toBe(false);
    expect(primaryCheck({ ...base, leaseAgeMs: null })).toBe(false);
    expect(primaryCheck({ ...base, readOnly: true })).toBe(false);
    // A primary in maintenance keeps taking writes until it is switched over.
    expect(primaryCheck({ ...base, maintenance: true })).toBe(true);
  });
  it("/replica leaves out replicas in maintenance, stopped or lagging", () => {
    expect(replicaCheck(replica, 10)).toBe(true);
    expect(replicaCheck({ ...replica, maintenance: true }, 10)).toBe(false);
    expect(replicaCheck({ ...replica, lagSeconds: 11 }, 10)).toBe(false);
    expect(replicaCheck({ ...replica, replication: { io: "Connecting", sql: true, ioError: "", sqlError: "" } }, 10)).toBe(false);
  });
});
