import { describe, expect, it } from "vitest";
import { EventBus, type BusEvent } from "../../src/events/bus.js";

describe("EventBus", () => {
  it("a stuck subscriber does not stall the others, and publish never waits", async () => {
    const bus = new EventBus();
    let release!: () => void;
    const stuck = new Promise<void>((r) => (release = r));
    const slowSeen: string[] = [];
    const fastSeen: string[] = [];
    bus.subscribe("slow", async (e) => {
      slowSeen.push(e.code);
      await stuck;
    });
    bus.subscribe("fast", (e) => {
      fastSeen.push(e.code);
    });
    bus.publish({ code: "startup", source: "statepilot" });
    bus.publish({ code: "healthy", source: "a" });
    bus.publish({ code: "changed", source: "watch.db" });
    await new Promise((r) => setTimeout(r, 10));
    expect(fastSeen).toEqual(["startup", "healthy", "changed"]);
    expect(slowSeen).toEqual(["startup"]);
    release();
    await bus.drain();
    expect(slowSeen).toEqual(["startup", "healthy", "changed"]);
  });

  it("bounds a stuck subscriber's queue and counts drops", async () => {
    const bus = new EventBus(3);
    const sub = bus.subscribe("stuck", () => new Promise<void>(() => undefined));
    for (let i = 0; i < 10; i++) bus.publish({ code: "changed", source: `s${i}` });
    await new Promise((r) => setTimeout(r, 5));
    expect(sub.pending).toBeLessThanOrEqual(3);
    expect(sub.dropped).toBeGreaterThan(0);
  });

  it("filters and reports handler errors without stopping the queue", async () => {
    const bus = new EventBus();
    const errors: string[] = [];
    bus.onHandlerError = (name, e) => errors.push(`${name}:${e.code}`);
    const seen: BusEvent[] = [];
    bus.subscribe("f", (e) => {
      if (e.code === "unhealthy") throw new Error("boom");
      seen.push(e);
    }, (e) => e.source === "a");
    bus.publish({ code: "unhealthy", source: "a" });
    bus.publish({ code: "healthy", source: "b" });
    bus.publish({ code: "healthy", source: "a" });
    await bus.drain();
    expect(errors).toEqual(["f:unhealthy"]);
    expect(seen.map((e) => `${e.code}@${e.source}`)).toEqual(["healthy@a"]);
  });
});
