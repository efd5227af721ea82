import { describe, expect, it } from "vitest";
import type { PlantedFaults } from "../../src/mysql/ha/deps.js";
import { runSchedule } from "../../sim/run.js";
import { makeSchedule, type Schedule } from "../../sim/schedule.js";

/**
 * The simulation must be able to fail: each planted defect breaks one safety mechanism of the
 * real HA code, and the simulation must report the violated invariant with a seed that replays it.
 * A simulation that passes with a planted fault is a defect of the simulation.
 */
const cases: Array<{ fault: keyof PlantedFaults; expect: RegExp; schedules: (seed: number) => Schedule }> = [
  {
    fault: "watchdogNeverFences",
    expect: /two nodes can acknowledge writes/,
    // An async cluster whose primary is cut off the store long enough for a takeover.
    schedules: (seed) => ({ ...makeSchedule(seed, { lossless: false }), faults: [{ at: 8_000, fault: { kind: "store-partition", node: -1, forMs: 9_000 + (seed % 5) * 1_000 } }] }),
  },
  {
    fault: "serverFenceSwitchOff",
    expect: /two nodes can acknowledge writes/,
    // An async primary whose statepilot stops (SIGSTOP) past the takeover while its mysqld runs
    // on: only the switch inside the server turns it read-only; the watchdog cannot run.
    schedules: (seed) => ({ ...makeSchedule(seed, { lossless: false }), faults: [{ at: 8_000 + (seed % 7) * 110, fault: { kind: "pause", node: -1, what: "statepilot", forMs: 12_000 + (seed % 5) * 500, thawMysqldFirst: false } }] }),
  },
  {
    fault: "forgetsWipedStore",
    expect: /acknowledged write .* is missing/,
    // n3 cannot receive from n1 (the first primary), so n2 alone acknowledges; the store then comes
    // back empty, and n2 reaches it again only later: a node that trusts the empty store as a new
    // cluster elects n3, which lacks those writes.
    schedules: (seed) => ({
      ...makeSchedule(seed, { lossless: true }),
      // Without failsafe mode (which holds elections longer after a start and after a wipe).
      failsafe: false,
      faults: [
        { at: 6_000, fault: { kind: "peer-partition", a: 1, b: 3, forMs: 30_000 } },
        { at: 8_000 + (seed % 9) * 97, fault: { kind: "store-outage", forMs: 1_000 + (seed % 5) * 700, wipe: true } },
        // n2 reaches the store again only later: n3 alone publishes into the empty store at first.
        { at: 7_900, fault: { kind: "store-partition", node: 2, forMs: 8_000 } },
        // And n1, the old primary, too, longer than a lease and an interval: it cannot publish
        // either (a node without memory waits that long for members that remember to speak up).
        { at: 7_900, fault: { kind: "store-partition", node: 1, forMs: 10_000 } },
      ],
    }),
  },
  {
    fault: "promotionIgnoresReceived",
    expect: /acknowledged write .* is missing/,
    // Replicas that apply slowly, then the primary dies: what they received but did not apply matters.
    schedules: (seed) => ({ ...makeSchedule(seed, { lossless: true }), faults: [{ at: 7_000, fault: { kind: "slow-disk", node: 1 + (seed % 3), applyMs: 400, forMs: 20_000 } }, { at: 7_000, fault: { kind: "slow-disk", node: 1 + ((seed + 1) % 3), applyMs: 400, forMs: 20_000 } }, { at: 9_000 + (seed % 7) * 130, fault: { kind: "crash-mysqld", node: -1 } }] }),
  },
  {
    fault: "writableWithoutSemiSync",
    expect: /semi-sync|acknowledged write .* is missing/,
    schedules: (seed) => ({ ...makeSchedule(seed, { lossless: true }), faults: [{ at: 8_000 + (seed % 11) * 37, fault: { kind: "crash-mysqld", node: -1 } }] }),
  },
  {
    fault: "fenceKeepsConnections",
    expect: /acknowledged write .* is missing/,
    // A lossless primary fencing by read-only, cut off the store and from both replicas while a
    // client's commit waits for an ack: only read_only-before-semi-sync keeps that commit unacknowledged.
    schedules: (seed) => ({
      ...makeSchedule(seed, { lossless: true }),
      fenceBy: "read-only",
      faults: [
        { at: 8_000 + (seed % 7) * 90, fault: { kind: "peer-partition", a: 1, b: 2, forMs: 12_000 } },
        { at: 8_000 + (seed % 7) * 90, fault: { kind: "peer-partition", a: 1, b: 3, forMs: 12_000 } },
        { at: 8_000 + (seed % 7) * 90, fault: { kind: "store-partition", node: 1, forMs: 12_000 } },
      ],
    }),
  },
  {
    fault: "rebuildIgnoresLeadership",
    expect: /acknowledged write .* is missing/,
    // The operator asks the primary of a lossless cluster to rebuild itself while a client writes.
    schedules: (seed) => ({ ...makeSchedule(seed, { lossless: true }), faults: [{ at: 8_000 + (seed % 11) * 37, fault: { kind: "rebuild", node: -1 } }] }),
  },
  {
    fault: "rebuildWipesUnheld",
    expect: /acknowledged write .* is missing/,
    // n3 cannot receive from n1 (the first primary), so n2 alone acknowledges; n2 is rebuilt, and
    // the primary's server dies before n2 is back: only n2's copy (wiped) held those writes.
    schedules: (seed) => ({
      ...makeSchedule(seed, { lossless: true }),
      faults: [
        { at: 6_000, fault: { kind: "peer-partition", a: 1, b: 3, forMs: 20_000 } },
        { at: 7_000, fault: { kind: "rebuild", node: 2 } },
        { at: 7_300 + (seed % 5) * 100, fault: { kind: "crash-mysqld", node: -1 } },
      ],
    }),
  },
  {
    fault: "failsafeBreaksPromise",
    expect: /two nodes can acknowledge writes/,
    // Failsafe mode, an async primary cut off the store while its members still reach it: they
    // accept it (promising not to run), then run anyway once its lease lapses in the store.
    schedules: (seed) => ({ ...makeSchedule(seed, { lossless: false }), failsafe: true, faults: [{ at: 8_000 + (seed % 7) * 90, fault: { kind: "store-partition", node: -1, forMs: 9_000 } }] }),
  },
];

describe("the simulation catches planted faults", () => {
  for (const c of cases) {
    it(`${c.fault}: reported with a replayable seed`, async () => {
      let found: { seed: number; violation: string } | undefined;
      for (let seed = 1; seed <= 60 && !found; seed++) {
        const r = await runSchedule(c.schedules(seed), { faults: { [c.fault]: true } });
        if (r.violation) found = { seed, violation: r.violation };
      }
      expect(found, `no schedule caught ${c.fault}`).toBeDefined();
      expect(found!.violation).toMatch(c.expect);
      // The same seed replays the same violation.
      const again = await runSchedule(c.schedules(found!.seed), { faults: { [c.fault]: true } });
      expect(again.violation).toBe(found!.violation);
      // And the very same schedule without the planted fault keeps every invariant: the fault, not
      // the schedule, is what the simulation caught.
      const clean = await runSchedule(c.schedules(found!.seed));
      expect(clean.violation).toBeUndefined();
      console.log(`planted ${c.fault}: caught by seed ${found!.seed}: ${found!.violation}`);
    }, 120_000);
  }
});

describe("the simulation runs each node on its own drifting clock", () => {
  // An async primary cut off the store: it must fence before a replica can take over. Within the
  // ±5 % the schedules draw, it does; a clock at half speed (far outside what NTP allows) makes
  // its fence come after the takeover, and the simulation must see the two writable nodes.
  const cutOff = (seed: number, rate: number): Schedule => ({
    ...makeSchedule(seed, { lossless: false }),
    faults: [{ at: 8_000 + (seed % 7) * 90, fault: { kind: "store-partition", node: -1, forMs: 9_000 } }],
    clockRates: [rate, rate, rate, rate],
  });

  it("a half-speed clock is caught; ±5 % keeps every invariant", async () => {
    let caught: { seed: number; violation: string } | undefined;
    for (let seed = 1; seed <= 30 && !caught; seed++) {
      const r = await runSchedule(cutOff(seed, 0.5));
      if (r.violation) caught = { seed, violation: r.violation };
    }
    expect(caught, "no schedule caught a primary on a half-speed clock").toBeDefined();
    expect(caught!.violation).toMatch(/two nodes can acknowledge writes/);
    for (const rate of [0.95, 1.05]) expect((await runSchedule(cutOff(caught!.seed, rate))).violation).toBeUndefined();
    console.log(`half-speed clock: caught by seed ${caught!.seed}: ${caught!.violation}`);
  }, 120_000);
});

describe("failsafe mode in the simulation", () => {
  // The whole store down for 12 s: without failsafe the primary fences and writes stop; with it,
  // every member confirms the primary directly and writes go on with no failover.
  const outage = (seed: number, failsafe: boolean, lossless: boolean): Schedule => ({
    ...makeSchedule(seed, { lossless }),
    failsafe,
    durationMs: 24_000,
    faults: [{ at: 8_000, fault: { kind: "store-outage", forMs: 12_000 } }],
  });
  const during = (at: number[]) => at.filter((t) => t > 10_000 && t < 20_000).length;

  for (const lossless of [false, true]) {
    it(`keeps a ${lossless ? "lossless" : "async"} primary writing through a store outage only when on`, async () => {
      for (const seed of [1, 2, 3]) {
        const on = await runSchedule(outage(seed, true, lossless));
        const off = await runSchedule(outage(seed, false, lossless));
        expect(on.violation).toBeUndefined();
        expect(off.violation).toBeUndefined();
        expect(during(off.ackedAt), "writes acknowledged while the store was down, failsafe off").toBe(0);
        expect(during(on.ackedAt), "writes acknowledged while the store was down, failsafe on").toBeGreaterThan(20);
        expect(on.failovers).toBe(0);
      }
    });
  }

  it("a member cut off from the primary makes it fence, as without failsafe", async () => {
    const s: Schedule = {
      ...makeSchedule(5, { lossless: false }),
      failsafe: true,
      durationMs: 24_000,
      faults: [
        // The primary (-1) cut off from another member (-2).
        { at: 8_000, fault: { kind: "peer-partition", a: -1, b: -2, forMs: 14_000 } },
        { at: 8_500, fault: { kind: "store-outage", forMs: 12_000 } },
      ],
    };
    const r = await runSchedule(s);
    expect(r.violation).toBeUndefined();
    expect(r.ackedAt.filter((t) => t > 11_000 && t < 20_000)).toHaveLength(0);
  });
});
