import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ConsulAgent } from "../../src/lab/consul-agent.js";
import { ConsulClient } from "../../src/discovery/consul/client.js";
import { waitFor } from "../../src/lab/wait.js";

describe("real Consul dev agent", () => {
  const agent = new ConsulAgent();
  let consul: ConsulClient;

  beforeAll(async () => {
    console.log(`consul: ${ConsulAgent.version()}`);
    await agent.start();
    consul = new ConsulClient({ address: agent.address });
  }, 120_000);
  afterAll(async () => {
    try {
      consul?.close();
    } finally {
      await agent.destroy();
    }
  }, 60_000);

  it("a blocking read of a missing key blocks on the index its 404 carries, and wakes when the key appears", async () => {
    await consul.kvPut("ground/other", "x");
    const first = await consul.kvGet("ground/missing");
    expect(first.value).toBeUndefined();
    // The KV table's index, not 0 or 1: a caller looping on 0 got an instant answer every time (it span).
    const other = await consul.kvGet("ground/other");
    expect(first.index).toBeGreaterThanOrEqual(other.value!.modifyIndex);
    const waiting = consul.kvGet("ground/missing", { index: first.index, wait: "60s" });
    let answered = false;
    void waiting.then(() => (answered = true));
    // Still waiting after another read went round (a 404 at index 0 would have answered already).
    await consul.kvGet("ground/other");
    expect(answered).toBe(false);
    await consul.kvPut("ground/missing", "here");
    const woke = await waiting;
    expect(woke.value?.value).toBe("here");
  });

  it("releases a session lock when the linked TTL check fails", async () => {
    await consul.registerService({
      id: "ground-1",
      name: "ground",
      port: 1234,
      checks: [{ checkId: "service:ground-1", ttl: "10s", status: "passing" }],
    });
    const sid = await waitFor(
      () => consul.createSession({ name: "ground-lock", serviceChecks: ["service:ground-1"], lockDelay: "0s", ttl: "30s" }),
      { timeoutMs: 30_000, what: "session creation (the check reaches the catalog asynchronously)" },
    );
    expect(await consul.kvAcquire("ground/leader", '{"node":"ground-1"}', sid)).toBe(true);
    const held = await consul.kvGet("ground/leader");
    expect(held.value?.session).toBe(sid);
    expect(held.value?.value).toBe('{"node":"ground-1"}');

    // Another session cannot take the held lock.
    await consul.registerService({ id: "ground-2", name: "ground", port: 1235, checks: [{ checkId: "service:ground-2", ttl: "10s", status: "passing" }] });
    const sid2 = await waitFor(
      () => consul.createSession({ name: "ground-lock-2", serviceChecks: ["service:ground-2"], lockDelay: "0s" }),
      { timeoutMs: 30_000, what: "second session" },
    );
    expect(await consul.kvAcquire("ground/leader", '{"node":"ground-2"}', sid2)).toBe(false);

    const failedAt = performance.now();
    await consul.updateTtlCheck("service:ground-1", "critical", "ground test: forced failure");
    const freedAfterMs = await waitFor(
      async () => {
        const r = await consul.kvGet("ground/leader");
        return r.value && r.value.session === undefined ? performance.now() - failedAt : undefined;
      },
      { timeoutMs: 30_000, intervalMs: 5, what: "the lock to be released after the check failed" },
    );
    console.log(`consul: lock released ${freedAfterMs.toFixed(1)} ms after the linked check failed`);
    // At once (the session's 30 s TTL is not what frees it); the margin is for a busy machine.
    expect(freedAfterMs).toBeLessThan(5_000);
    expect(await consul.sessionExists(sid)).toBe(false);
    expect(await consul.renewSession(sid)).toBe("gone");
    await expect(consul.kvAcquire("ground/leader", "x", sid)).rejects.toThrow(/invalid session|HTTP 500/);
    // The other contender now wins (lock-delay 0s).
    expect(await consul.kvAcquire("ground/leader", '{"node":"ground-2"}', sid2)).toBe(true);

    const health = await consul.healthService("ground");
    const one = health.value.find((s) => s.id === "ground-1");
    expect(one?.healthy).toBe(false);
    expect(one?.checks.find((c) => c.checkId === "service:ground-1")?.output).toBe("ground test: forced failure");
  });

  it("reports a missing key as undefined and honours blocking reads", async () => {
    const missing = await consul.kvGet("ground/none");
    expect(missing.value).toBeUndefined();
    await consul.kvPut("ground/blocking", "a");
    const first = await consul.kvGet("ground/blocking");
    const started = performance.now();
    const pending = consul.kvGet("ground/blocking", { index: first.index, wait: "5s" });
    // The write's own response can arrive after the blocked read returns: wait for both.
    const write = new Promise<boolean>((resolve, reject) => setTimeout(() => consul.kvPut("ground/blocking", "b").then(resolve, reject), 200));
    const [next, written] = await Promise.all([pending, write]);
    expect(written).toBe(true);
    expect(next.value?.value).toBe("b");
    expect(next.index).toBeGreaterThan(first.index);
    expect(performance.now() - started).toBeGreaterThanOrEqual(150);
  });
});
