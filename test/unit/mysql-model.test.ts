import { describe, expect, it } from "vitest";
import { SimClock } from "../../sim/clock.js";
import { SimWorld } from "../../sim/mysql-model.js";

const ep = (node: string) => ({ host: node, port: 3306 });

function setup(o: { lossless: boolean; replicas?: boolean; restartDelayMs?: number }) {
  const clock = new SimClock();
  const w = new SimWorld({ clock, lossless: o.lossless, restartDelayMs: o.restartDelayMs ?? 1_000 });
  w.addServer("a", { serverId: 1, host: "a", port: 3306 });
  w.addServer("b", { serverId: 2, host: "b", port: 3306 });
  w.addServer("c", { serverId: 3, host: "c", port: 3306 });
  return { clock, w };
}

/** a writable (semi-sync on when lossless), b and c replicating from it. */
async function cluster(lossless: boolean, replicas = true) {
  const { clock, w } = setup({ lossless });
  await w.database("a").setReadOnly(false);
  if (lossless) await w.database("a").semiSyncPrimary(true);
  if (replicas) {
    await w.database("b").replicateFrom(ep("a"), undefined);
    await w.database("c").replicateFrom(ep("a"), undefined);
  }
  return { clock, w };
}

/** Watches a promise without awaiting it. */
function track<T>(p: Promise<T>) {
  const r: { settled: boolean; value?: T; error?: unknown } = { settled: false };
  p.then(
    (value) => Object.assign(r, { settled: true, value }),
    (error) => Object.assign(r, { settled: true, error }),
  );
  return r;
}

/** Runs the clock `ms` further and returns how `p` settled by then. */
async function within<T>(clock: SimClock, p: Promise<T>, ms: number) {
  const r = track(p);
  await clock.runUntil(clock.now() + ms);
  return r;
}

describe("MariaDB model: replication", () => {
  it("replicas catch up, with positions, binlog state and status as MariaDB reports them", async () => {
    const { clock, w } = await cluster(false);
    for (let i = 0; i < 5; i++) expect(await w.clientWrite("a")).toBe("acked");
    expect(w.acked.map((x) => x.gtid)).toEqual(["0-1-1", "0-1-2", "0-1-3", "0-1-4", "0-1-5"]);
    await clock.runUntil(1_000);
    const b = await w.database("b").observe();
    expect(b).toMatchObject({ readOnly: true, executed: "0-1-5", binlogPos: "0-1-5", state: "0-1-5", slavePos: "0-1-5", serverId: 2, semiSyncPrimary: false });
    expect(b.replication).toEqual({ configured: true, sourceHost: "a", sourcePort: 3306, ioRunning: "Yes", sqlRunning: true, lagSeconds: 0, ioError: "", sqlError: "", sqlErrno: 0, received: "0-1-5" });
    expect([...w.executedSet("c")]).toEqual(["0-1-1", "0-1-2", "0-1-3", "0-1-4", "0-1-5"]);
    const a = await w.database("a").observe();
    expect(a.replication.configured).toBe(false);
    expect(a.replication.lagSeconds).toBe(null);
    expect(w.isWritable("a")).toBe(true);
    expect(w.isWritable("b")).toBe(false);
  });

  it("a slow applier applies one transaction per delay and reports lag from the oldest unapplied one", async () => {
    const { clock, w } = await cluster(false);
    w.setApplyDelay("c", 400);
    for (let i = 0; i < 5; i++) await w.clientWrite("a");
    // Received at the first step (50 ms); applied at 450, 850, 1250, ...
    await clock.runUntil(1_000);
    const c = await w.database("c").observe();
    expect(c.executed).toBe("0-1-2");
    expect(c.replication.received).toBe("0-1-5");
    expect(c.replication.lagSeconds).toBe(1);
    expect(await w.database("c").waitApplied("0-1-2", 100)).toBe(true);
    expect(await within(clock, w.database("c").waitApplied("0-1-4", 100), 100)).toMatchObject({ settled: true, value: false });
    // At 1100: 0-1-3 comes at 1250, 0-1-4 at 1650, 0-1-5 at 2050.
    const wait = track(w.database("c").waitApplied("0-1-5", 10_000));
    await clock.runUntil(2_049);
    expect(wait.settled).toBe(false);
    await clock.runUntil(2_050);
    expect(wait).toMatchObject({ settled: true, value: true });
    expect((await w.database("c").observe()).executed).toBe("0-1-5");
  });

  it("a replica whose position is not in the source's binlog stops its IO thread with error 1236", async () => {
    const { clock, w } = await cluster(false);
    await w.clientWrite("a");
    await w.clientWrite("a");
    await clock.runUntil(500);
    const b = w.database("b");
    await b.resetReplication();
    expect(w.errantWrite("b")).toBe("0-2-3");
    await w.clientWrite("a"); // 0-1-3: same seq, other server
    // What the HA core does for a node whose binlog is ahead of gtid_slave_pos.
    await b.replicateFrom(ep("a"), "binlog");
    await clock.runUntil(1_000);
    const rep = (await b.observe()).replication;
    expect(rep.ioRunning).toBe("No");
    expect(rep.ioError).toContain("connecting slave requested to start from GTID 0-2-3, which is not in the master's binlog");
    expect(rep.ioError).toContain("1236");
    expect(rep.sqlRunning).toBe(true);
    expect(w.executedSet("b").has("0-1-3")).toBe(false);
    // A seq beyond the source's last is refused the same way.
    await w.database("c").replicateFrom(ep("a"), "0-1-9");
    await clock.runUntil(1_500);
    expect((await w.database("c").observe()).replication.ioError).toContain("start from GTID 0-1-9, which is not in the master's binlog");
    expect(w.executedSet("c").has("0-1-9")).toBe(false); // claimed by gtid_slave_pos, never applied
  });

  it("an errant write behind a stale gtid_slave_pos stops the SQL thread (strict mode, error 1950)", async () => {
    const { clock, w } = await cluster(false);
    await w.clientWrite("a");
    await clock.runUntil(500);
    expect(w.errantWrite("b")).toBe("0-2-2");
    await w.clientWrite("a"); // 0-1-2
    await clock.runUntil(1_000);
    const rep = (await w.database("b").observe()).replication;
    expect(rep.ioRunning).toBe("Yes");
    expect(rep.sqlRunning).toBe(false);
    expect(rep.sqlErrno).toBe(1950);
    expect(rep.sqlError).toContain("GTID 0-1-2 which would create an out-of-order sequence number with existing GTID 0-2-2");
  });

  it("a restored server has no binlog nor binlog state, gtid_slave_pos at the backup, and catches up from there", async () => {
    const { clock, w } = await cluster(false, false);
    for (let i = 0; i < 5; i++) await w.clientWrite("a");
    w.addServer("d", { serverId: 4, host: "d", port: 3306, restoredFrom: "0-1-3" });
    const d = w.database("d");
    expect(await d.observe()).toMatchObject({ readOnly: true, executed: "0-1-3", binlogPos: "", state: "", slavePos: "0-1-3", serverId: 4 });
    expect([...w.executedSet("d")].sort()).toEqual(["0-1-1", "0-1-2", "0-1-3"]);
    expect(await w.database("a").remoteState(ep("d"))).toEqual({ executed: "0-1-3", state: "", readOnly: true });
    await d.replicateFrom(ep("a"), "0-1-3");
    await clock.runUntil(500);
    expect(await d.observe()).toMatchObject({ executed: "0-1-5", binlogPos: "0-1-5", state: "0-1-5", slavePos: "0-1-5" });
    expect(w.executedSet("d").size).toBe(5);
  });

  it("errantWrite makes a GTID with the node's own server id, whatever read_only says", async () => {
    const { clock, w } = await cluster(false);
    for (let i = 0; i < 3; i++) await w.clientWrite("a");
    await clock.runUntil(500);
    expect(w.isWritable("c")).toBe(false);
    expect(await w.clientWrite("c")).toBe("failed");
    expect(w.errantWrite("c")).toBe("0-3-4");
    const c = await w.database("c").observe();
    expect(c).toMatchObject({ readOnly: true, binlogPos: "0-3-4", state: "0-1-3,0-3-4", slavePos: "0-1-3", executed: "0-3-4" });
    expect(w.executedSet("c").has("0-3-4")).toBe(true);
    expect(w.acked.map((x) => x.gtid)).not.toContain("0-3-4");
  });
});

describe("MariaDB model: lossless semi-sync", () => {
  it("a write waits for a replica's ack and is acknowledged once one received it", async () => {
    const { clock, w } = await cluster(true, false);
    const write = track(w.clientWrite("a"));
    await clock.runUntil(500);
    expect(write.settled).toBe(false);
    expect(w.acked).toEqual([]);
    expect(w.executedSet("a").has("0-1-1")).toBe(true); // in the binlog, not yet committed
    await w.database("b").replicateFrom(ep("a"), undefined);
    await clock.runUntil(600);
    expect(write).toMatchObject({ settled: true, value: "acked" });
    expect(w.acked).toEqual([{ gtid: "0-1-1", node: "a", at: 550 }]);
  });

  it("a write with both replicas stopped is never acknowledged", async () => {
    const { clock, w } = await cluster(true);
    expect(await within(clock, w.clientWrite("a"), 100)).toMatchObject({ value: "acked" });
    await w.database("b").stopReceiver();
    await w.database("c").stopReceiver();
    const write = track(w.clientWrite("a"));
    await clock.runUntil(60_000);
    expect(write.settled).toBe(false);
    expect(w.acked.map((x) => x.gtid)).toEqual(["0-1-1"]);
    expect(w.describe("a")).toContain("waiting=1");
    expect((await w.database("b").observe()).replication).toMatchObject({ ioRunning: "No", sqlRunning: true, received: "0-1-1" });
    // SET GLOBAL read_only = ON waits behind the commit in progress, and the client times out.
    const ro = track(w.database("a").setReadOnly(true));
    await clock.runUntil(65_000);
    expect(ro.settled).toBe(true);
    expect(String(ro.error)).toContain("timeout");
    expect(w.isWritable("a")).toBe(true);
    // A new write waits for the global read lock the pending SET holds, until the client gives up.
    const held = track(w.clientWrite("a"));
    await clock.runUntil(69_999);
    expect(held.settled).toBe(false);
    await clock.runUntil(70_000);
    expect(held).toMatchObject({ settled: true, value: "failed" });
    expect(w.executedSet("a").has("0-1-3")).toBe(false);
    // Once the commit completes, the SET still pending on the server lands.
    await w.database("a").semiSyncPrimary(false);
    await clock.runUntil(70_001);
    expect(write).toMatchObject({ settled: true, value: "acked" });
    expect(w.isWritable("a")).toBe(false);
    expect(w.acked.map((x) => x.gtid)).toEqual(["0-1-1", "0-1-2"]);
  });

  it("a crash while waiting fails the write, and recovery truncates the unacknowledged tail", async () => {
    const { clock, w } = await cluster(true);
    expect(await within(clock, w.clientWrite("a"), 100)).toMatchObject({ value: "acked" });
    await w.database("b").stopReceiver();
    await w.database("c").stopReceiver();
    const write = track(w.clientWrite("a"));
    await clock.runUntil(200);
    const pid = w.process("a").pid();
    let exited = 0;
    w.onExit("a", () => exited++);
    w.crash("a");
    expect(exited).toBe(1);
    expect(w.process("a").running()).toBe(false);
    expect(w.process("a").pid()).toBe(undefined);
    await expect(w.database("a").observe()).rejects.toThrow("ECONNREFUSED");
    await clock.runUntil(1_100);
    expect(write).toMatchObject({ settled: true, value: "failed" });
    expect(w.process("a").running()).toBe(false);
    await clock.runUntil(1_300);
    expect(w.process("a").running()).toBe(true);
    expect(w.process("a").pid()).not.toBe(pid);
    const a = await w.database("a").observe();
    expect(a).toMatchObject({ readOnly: true, semiSyncPrimary: false, binlogPos: "0-1-1", state: "0-1-1", executed: "0-1-1" });
    expect(w.executedSet("a").has("0-1-2")).toBe(false);
    expect(w.acked.map((x) => x.gtid)).toEqual(["0-1-1"]);
  });

  it("a restarted replica keeps its replication configured but not running", async () => {
    const { clock, w } = await cluster(true);
    expect(await within(clock, w.clientWrite("a"), 200)).toMatchObject({ value: "acked" });
    w.process("b").kill();
    await clock.runUntil(1_500);
    expect((await w.database("b").observe()).replication).toMatchObject({ configured: true, sourceHost: "a", ioRunning: "No", sqlRunning: false, ioError: "", lagSeconds: null });
    await w.database("b").startReplica();
    expect(await within(clock, w.clientWrite("a"), 500)).toMatchObject({ value: "acked" });
    expect((await w.database("b").observe()).executed).toBe("0-1-2");
  });

  it("killing the writer while it waits fails it, but the commit stays: a local tail nobody has", async () => {
    const { clock, w } = await cluster(true);
    expect(await within(clock, w.clientWrite("a"), 100)).toMatchObject({ value: "acked" });
    await w.database("b").stopReceiver();
    await w.database("c").stopReceiver();
    const write = track(w.clientWrite("a"));
    await clock.runUntil(200);
    expect(await w.database("a").killWriters()).toBe(1);
    await clock.runUntil(300);
    expect(write).toMatchObject({ settled: true, value: "failed" });
    expect(w.acked.map((x) => x.gtid)).toEqual(["0-1-1"]);
    w.crash("a");
    await clock.runUntil(2_000);
    expect((await w.database("a").observe()).binlogPos).toBe("0-1-2");
    expect(w.executedSet("b").has("0-1-2")).toBe(false);
  });

  it("turning semi-sync off while a write waits acknowledges it", async () => {
    const { clock, w } = await cluster(true, false);
    const write = track(w.clientWrite("a"));
    await clock.runUntil(1_000);
    expect(write.settled).toBe(false);
    await w.database("a").semiSyncPrimary(false);
    await clock.runUntil(1_001);
    expect(write).toMatchObject({ settled: true, value: "acked" });
    expect(w.acked).toEqual([{ gtid: "0-1-1", node: "a", at: 1_000 }]);
    expect((await w.database("a").observe()).semiSyncPrimary).toBe(false);
  });

  it("a lossless primary can acknowledge writes only while a replica receives from it", async () => {
    const { w } = await cluster(true);
    expect(w.canAcknowledge("a")).toBe(true);
    expect(w.canAcknowledge("b")).toBe(false);
    w.cutPeers("a", "b", true);
    expect(w.canAcknowledge("a")).toBe(true);
    w.freeze("c");
    expect(w.canAcknowledge("a")).toBe(false);
    w.thaw("c");
    await w.database("c").resetReplication();
    expect(w.canAcknowledge("a")).toBe(false);
    await w.database("a").semiSyncPrimary(false);
    expect(w.canAcknowledge("a")).toBe(true);
    await w.database("a").setReadOnly(true);
    expect(w.canAcknowledge("a")).toBe(false);
  });

  it("without lossless nothing waits and a crash truncates nothing", async () => {
    const { clock, w } = await cluster(false, false);
    await w.database("a").semiSyncPrimary(true);
    expect(await w.clientWrite("a")).toBe("acked");
    w.crash("a");
    await clock.runUntil(2_000);
    expect((await w.database("a").observe()).binlogPos).toBe("0-1-1");
  });
});

describe("MariaDB model: faults", () => {
  it("a frozen server answers nothing until thawed, and times out after the query timeout", async () => {
    const { clock, w } = await cluster(false);
    w.freeze("a");
    expect(w.process("a").running()).toBe(true);
    expect(w.isWritable("a")).toBe(false);
    const obs = track(w.database("a").observe());
    const write = track(w.clientWrite("a"));
    await clock.runUntil(4_999);
    expect(obs.settled).toBe(false);
    expect(write.settled).toBe(false);
    await clock.runUntil(5_000);
    expect(String(obs.error)).toContain("Query inactivity timeout");
    expect(write).toMatchObject({ settled: true, value: "failed" });
    // Thawed within the timeout: the call completes then.
    const late = track(w.database("a").observe());
    await clock.runUntil(6_000);
    w.thaw("a");
    await clock.runUntil(6_001);
    expect(late.settled).toBe(true);
    expect(late.value?.readOnly).toBe(false);
    expect(await w.clientWrite("a")).toBe("acked");
  });

  it("a frozen source sends nothing; a frozen primary does not ack", async () => {
    const { clock, w } = await cluster(true);
    await clock.runUntil(100); // both replicas connected
    w.freeze("b");
    w.freeze("c");
    const write = track(w.clientWrite("a"));
    await clock.runUntil(2_000);
    expect(write.settled).toBe(false);
    w.freeze("a");
    w.thaw("b");
    await clock.runUntil(3_000);
    expect(w.executedSet("b").has("0-1-1")).toBe(false);
    expect((await w.database("b").observe()).replication.ioRunning).toBe("Yes");
    w.thaw("a");
    await clock.runUntil(3_100);
    expect(write).toMatchObject({ settled: true, value: "acked" });
  });

  it("a cut replica reconnects after the cut heals; remoteState across a cut fails after the connect timeout", async () => {
    const { clock, w } = await cluster(false);
    w.cutPeers("a", "b", true);
    await w.clientWrite("a");
    await clock.runUntil(500);
    const rep = (await w.database("b").observe()).replication;
    expect(rep.ioRunning).toBe("Connecting");
    expect(w.executedSet("b").size).toBe(0);
    expect(w.executedSet("c").size).toBe(1);
    const remote = track(w.database("b").remoteState(ep("a")));
    await clock.runUntil(2_499);
    expect(remote.settled).toBe(false);
    await clock.runUntil(2_500);
    expect(String(remote.error)).toContain("ETIMEDOUT");
    expect(await w.database("c").remoteState(ep("a"))).toEqual({ executed: "0-1-1", state: "0-1-1", readOnly: false });
    const poll = track(w.database("b").waitForRemote(ep("a"), (s) => s.executed === "0-1-1", 10_000));
    w.cutPeers("a", "b", false);
    await clock.runUntil(5_000);
    expect(poll).toMatchObject({ settled: true, value: true });
    expect((await w.database("b").observe()).replication).toMatchObject({ ioRunning: "Yes", ioError: "", received: "0-1-1" });
    expect(w.describe("b")).toContain("io=Yes");
  });

  it("a replica of a crashed source keeps connecting and resumes when it is back", async () => {
    const { clock, w } = await cluster(false);
    await w.clientWrite("a");
    await clock.runUntil(200);
    w.crash("a");
    await clock.runUntil(500);
    const rep = (await w.database("b").observe()).replication;
    expect(rep.ioRunning).toBe("Connecting");
    expect(rep.ioError).toContain("Connection refused");
    await expect(w.database("b").remoteState(ep("a"))).rejects.toThrow("ECONNREFUSED");
    await clock.runUntil(1_500);
    await w.database("a").setReadOnly(false);
    await w.clientWrite("a");
    await clock.runUntil(2_000);
    expect((await w.database("b").observe()).executed).toBe("0-1-2");
  });
});
