import { randomUUID } from "node:crypto";
import pino from "pino";
import { MemoryStoreServer } from "../src/cluster/memory-store.js";
import type { ClusterStore } from "../src/cluster/store.js";
import { MysqlHa } from "../src/mysql/ha/loop.js";
import { mariaStateAt } from "../src/mysql/gtid.js";
import type { ClusterMemory, PlantedFaults } from "../src/mysql/ha/deps.js";
import type { HaSettings } from "../src/mysql/ha/settings.js";
import { Mysql } from "../src/config/schema.js";
import { SimClock, driftingClock } from "./clock.js";
import type { FailsafeAnswer, FailsafePeers } from "../src/mysql/ha/failsafe.js";
import { primaryCheck } from "../src/mysql/ha/status.js";
import { Gate } from "./gate.js";
import { SimWorld } from "./mysql-model.js";
import { describeFault, type Fault, type Schedule } from "./schedule.js";

/** The outcome of one simulated run: the first violated invariant, with when and what. */
export interface RunResult {
  seed: number;
  violation: string | undefined;
  /** Nodes that did not converge by the end, with their own reason. */
  unconverged: string[];
  acked: number;
  /** When each acknowledged write was acknowledged (virtual ms). */
  ackedAt: number[];
  failovers: number;
  events: number;
  trace: string[];
}

/** The product's default timings (mysql.interval, checkTtl, lockDelay, fenceAfter): the simulation proves the defaults. */
const DEFAULTS = Mysql.parse({});
const TIMING = { leaseMs: DEFAULTS.checkTtl, lockDelayMs: DEFAULTS.lockDelay };

function settings(lossless: boolean, fenceBy: "kill" | "read-only", failsafe: boolean): HaSettings {
  return {
    cluster: "sim",
    interval: DEFAULTS.interval,
    fenceAfter: DEFAULTS.fenceAfter,
    takeover: TIMING.leaseMs + TIMING.lockDelayMs,
    lockDelay: TIMING.lockDelayMs,
    fenceBy,
    lossless,
    maximumLagMs: 10_000,
    healthyLagMs: 30_000,
    peerWaitMs: TIMING.leaseMs + DEFAULTS.interval,
    promoteTimeout: 60_000,
    switchoverTimeout: 30_000,
    nofailover: false,
    memberExpiry: 3_600_000,
    divergenceEvery: 10,
    failsafe,
  };
}

class SimNode {
  gate: Gate;
  private restorePending = true;
  private memory: ClusterMemory | undefined;
  ha: MysqlHa | undefined;
  constructor(
    readonly name: string,
    readonly serverId: number,
    private readonly restoredFrom: { gtid: string; state: string } | undefined,
    /** This host's clock rate (statepilot and its mysqld share it). */
    readonly clockRate: number,
    private readonly env: { clock: SimClock; world: SimWorld; store: MemoryStoreServer; settings: HaSettings; faults: PlantedFaults; logger: pino.Logger; peers: (from: string) => FailsafePeers },
  ) {
    this.gate = new Gate(env.clock);
  }

  start(): void {
    const { clock, world, store, settings, faults, logger } = this.env;
    this.gate = new Gate(clock);
    const g = this.gate;
    const ha = new MysqlHa(
      {
        settings,
        node: this.name,
        serverId: this.serverId,
        advertise: { host: `10.0.0.${this.serverId}`, port: 3306 },
        store: g.wrap<ClusterStore>(store.connect(this.name)),
        db: g.wrap(world.database(this.name)),
        process: world.process(this.name),
        clock: driftingClock(g.clockFor(), this.clockRate),
        logger: logger.child({ node: this.name }),
        inMaintenance: () => false,
        bootstrapLocal: async () => undefined,
        bootstrapCluster: async () => undefined,
        // Kept across this node's restarts, as production keeps it in the datadir's node state file.
        clusterMemory: {
          load: () => this.memory,
          save: (m) => {
            this.memory = m;
          },
        },
        restored: {
          pending: () => (this.restorePending ? this.restoredFrom : undefined),
          applied: () => {
            this.restorePending = false;
          },
        },
        faults,
        failsafePeers: g.wrap(this.env.peers(this.name)),
      },
      true,
    );
    this.ha = ha;
    ha.start();
  }

  /** The process dies: nothing it had in flight ever continues. */
  crash(): void {
    this.gate.pause();
    this.ha?.halt();
    this.ha = undefined;
  }
}

/** Runs one schedule against the real HA code; `faults` plants a defect (for the test that the simulation can fail). */
export async function runSchedule(s: Schedule, opts: { faults?: PlantedFaults; verbose?: boolean } = {}): Promise<RunResult> {
  const clock = new SimClock();
  const trace: string[] = [];
  const log = (msg: string) => trace.push(`${String(clock.now()).padStart(6)} ${msg}`);
  const logger = opts.verbose
    ? pino({ level: "info", base: undefined, timestamp: () => `,"t":${clock.now()}` }, { write: (line: string) => void trace.push(line.trimEnd()) })
    : pino({ level: "silent" });
  const world = new SimWorld({ clock, lossless: s.lossless, restartDelayMs: 1_000 });
  const store = new MemoryStoreServer({ clock, timing: TIMING, validateRecords: false });
  const cfg = settings(s.lossless, s.fenceBy, s.failsafe);
  const names = Array.from({ length: s.nodes }, (_, i) => `n${i + 1}`);
  // Failsafe requests travel between statepilots: refused at once by a crashed one, lost on a cut
  // link, held while the target is paused (or until the asker gives up).
  const peers = (from: string): FailsafePeers => ({
    ask: (to, request, timeoutMs) =>
      new Promise<FailsafeAnswer>((resolve, reject) => {
        const target = nodes.find((n) => n.name === to.node);
        if (!target?.ha) return reject(new Error(`connect ECONNREFUSED ${to.host}:${to.httpPort ?? 0}`));
        let done = false;
        const cancel = clock.after(timeoutMs, () => {
          if (done) return;
          done = true;
          reject(new Error(`no answer within ${timeoutMs} ms`));
        });
        if (world.peersCut(from, to.node)) return;
        const gate = target.gate;
        clock.schedule(1, () => {
          const answer = () => {
            const ha = target.ha;
            if (done || !ha || target.gate !== gate || world.peersCut(from, to.node)) return;
            done = true;
            cancel();
            resolve(ha.answerFailsafe(request));
          };
          const held = gate.pass();
          if (held) void held.then(answer);
          else answer();
        });
      }),
  });
  const nodeEnv = { clock, world, store, settings: cfg, faults: opts.faults ?? {}, logger, peers };
  // Schedules written before clock rates existed (tests that build their own) run at rate 1.
  const rateOf = (i: number) => s.clockRates[i] ?? 1;
  const nodes = names.map((name, i) => new SimNode(name, i + 1, undefined, rateOf(i), nodeEnv));
  for (const n of nodes) {
    world.addServer(n.name, { serverId: n.serverId, host: `10.0.0.${n.serverId}`, port: 3306, clockRate: n.clockRate });
    world.onExit(n.name, () => n.ha?.mysqldExited());
  }
  // Seed the cluster: the first node's history exists (an initialised cluster), the others are copies.
  for (const n of nodes) n.start();
  const client = store.connect("client");

  let violation: string | undefined;
  let failovers = 0;
  let lastWriter: string | undefined;
  /** The writer's server process when last checked: a restarted server (a rebuild too) is checked again from the first write. */
  let lastWriterPid: number | undefined;
  let checkedUpTo = 0;
  const writing = new Set<string>();
  const fail = (what: string) => {
    if (!violation) violation = `${what} at ${clock.now()} ms`;
  };

  const primaryIndex = (): number => {
    const leader = store.snapshot().leader;
    return leader ? names.indexOf(leader.node) + 1 : 1;
  };
  const pausedSp = new Map<Gate, number>();
  const frozenDb = new Map<string, number>();
  // -1: the primary at the time; -2: the first other node.
  const nodeOf = (x: number) => (x === -2 ? nodes.find((_, i) => i + 1 !== primaryIndex())! : nodes[(x === -1 ? primaryIndex() : x) - 1]!);
  const requestSwitchover = (to: string | undefined) =>
    void client
      .load()
      .then((st) => {
        if (!st.leader || to === st.leader.node) return;
        const rec = { id: randomUUID(), ...(to ? { to } : {}), state: "requested" as const, requestedAt: new Date(clock.now()).toISOString() };
        return client.writeSwitchover(rec, st.switchover?.version ?? 0);
      })
      .catch((err: unknown) => log(`switchover request failed: ${String(err)}`));

  const apply = (f: Fault) => {
    log(`fault: ${describeFault(f)}`);
    switch (f.kind) {
      case "crash-mysqld":
        world.crash(nodeOf(f.node).name);
        return;
      case "crash-node": {
        const n = nodeOf(f.node);
        if (!n.ha) return log(`${n.name} is down already`);
        n.crash();
        world.crash(n.name);
        // The node's statepilot starts its mysqld job when it comes back (a server stopped for a
        // rebuild included: it starts on the empty datadir and catches up).
        clock.schedule(f.downMs, () => {
          world.startServer(n.name);
          n.start();
        });
        return;
      }
      case "pause": {
        // Pauses nest: a process runs again only when every pause that stopped it has ended.
        const n = nodeOf(f.node);
        const gate = n.gate;
        const stopSp = () => {
          const c = (pausedSp.get(gate) ?? 0) + 1;
          pausedSp.set(gate, c);
          if (c === 1) gate.pause();
        };
        const contSp = () => {
          const c = (pausedSp.get(gate) ?? 1) - 1;
          pausedSp.set(gate, c);
          if (c === 0) gate.thaw();
        };
        const stopDb = () => {
          const c = (frozenDb.get(n.name) ?? 0) + 1;
          frozenDb.set(n.name, c);
          if (c === 1) world.freeze(n.name);
        };
        const contDb = () => {
          const c = (frozenDb.get(n.name) ?? 1) - 1;
          frozenDb.set(n.name, c);
          if (c === 0) world.thaw(n.name);
        };
        if (f.what !== "mysqld") stopSp();
        if (f.what !== "statepilot") stopDb();
        clock.schedule(f.forMs, () => {
          if (f.what === "both" && f.thawMysqldFirst) {
            contDb();
            clock.schedule(50, contSp);
            return;
          }
          if (f.what !== "mysqld") contSp();
          if (f.what !== "statepilot") contDb();
        });
        return;
      }
      case "store-partition": {
        const n = nodeOf(f.node).name;
        store.partition(n, true);
        clock.schedule(f.forMs, () => store.partition(n, false));
        return;
      }
      case "store-outage":
        store.outage(true);
        clock.schedule(f.forMs, () => {
          if (f.wipe) store.wipe();
          store.outage(false);
        });
        return;
      case "store-latency":
        store.setLatency(f.ms);
        clock.schedule(f.forMs, () => store.setLatency(0));
        return;
      case "peer-partition": {
        const [a, b] = [nodeOf(f.a).name, nodeOf(f.b).name];
        world.cutPeers(a, b, true);
        clock.schedule(f.forMs, () => world.cutPeers(a, b, false));
        return;
      }
      case "slow-disk": {
        const n = nodeOf(f.node).name;
        world.setApplyDelay(n, f.applyMs);
        clock.schedule(f.forMs, () => world.setApplyDelay(n, 0));
        return;
      }
      case "switchover":
        for (let i = 0; i < f.count; i++) requestSwitchover(f.to === undefined ? undefined : `n${f.to}`);
        return;
      case "add-restored": {
        // The snapshot comes from a healthy replica (as the scheduler picks): its executed position.
        const leader = store.snapshot().leader?.node;
        const source = nodes.find((n) => n.name !== leader && n.ha?.statusView().role === "replica" && n.ha.statusView().up);
        const gtid = source ? world.describe(source.name) && source.ha?.statusView().executed : undefined;
        if (!source || !gtid || nodes.length > s.nodes) return log("no replica to take a snapshot from; no node added");
        const name = `n${nodes.length + 1}`;
        const n = new SimNode(name, nodes.length + 1, { gtid, state: mariaStateAt(world.binlogState(source.name), gtid) }, rateOf(nodes.length), nodeEnv);
        world.addServer(name, { serverId: n.serverId, host: `10.0.0.${n.serverId}`, port: 3306, restoredFrom: gtid, clockRate: n.clockRate });
        world.onExit(name, () => n.ha?.mysqldExited());
        nodes.push(n);
        names.push(name);
        n.start();
        log(`${name} restored from ${source!.name}'s snapshot at ${gtid}`);
        if (f.switchoverAfterMs !== undefined) clock.schedule(f.switchoverAfterMs, () => requestSwitchover(name));
        return;
      }
      case "cluster-pause": {
        // The operator retries until the store takes it (it may be partitioned or down).
        const set = (paused: boolean): void =>
          void client.setPause({ paused, by: "sim", reason: paused ? "simulated operator" : "", at: new Date(clock.now()).toISOString() }).catch((err: unknown) => {
            // A failed pause is not retried (a late one could outlast the resume); a resume is.
            log(`pause ${paused} failed: ${String(err)}${paused ? "" : "; retrying"}`);
            if (!paused) clock.schedule(500, () => set(false));
          });
        set(true);
        clock.schedule(f.forMs, () => set(false));
        return;
      }
      case "rebuild": {
        const n = nodeOf(f.node);
        const ha = n.ha;
        if (!ha) return log(`${n.name}'s statepilot is down: nobody carries the rebuild out`);
        void client.load().then(
          (st) => rebuild(n, ha, st, ""),
          (err: unknown) => rebuild(n, ha, undefined, String(err)),
        );
        return;
      }
      case "errant-write":
        try {
          log(`errant GTID ${world.errantWrite(`n${f.node}`)}`);
        } catch (err) {
          log(`errant write not possible: ${String(err)}`);
        }
        return;
    }
  };
  /** What the node's RebuildWorker does, on the model: verdict, fenced out, wiped, started empty. */
  let lastServerId = 100;
  const rebuild = async (n: SimNode, ha: MysqlHa, st: Awaited<ReturnType<ClusterStore["load"]>> | undefined, storeError: string): Promise<void> => {
    const v = ha.rebuildVerdict(st, storeError, Number.NaN);
    log(v.reason);
    if (!v.accept || n.ha !== ha) return;
    ha.setRebuilding("sim: reseeding");
    const until = clock.now() + 15_000;
    while (!ha.fencedOutForRebuild() && clock.now() < until && n.ha === ha) await clock.sleep(100);
    if (n.ha !== ha) {
      log(`${n.name} restarted during its rebuild`);
      return;
    }
    if (!ha.fencedOutForRebuild()) {
      ha.setRebuilding(undefined);
      log(`${n.name} did not leave the replica set: rebuild abandoned`);
      return;
    }
    // Nothing acknowledged may live only on this node (decideWipe), as the product's worker waits.
    const stoppedAtVersion = store.snapshot().version;
    const wipeUntil = clock.now() + 10_000;
    let need: string | undefined;
    for (;;) {
      let st: Awaited<ReturnType<ClusterStore["load"]>> | undefined;
      let err = "";
      try {
        st = await client.load();
      } catch (e) {
        err = String(e);
      }
      if (n.ha !== ha) {
        log(`${n.name} restarted during its rebuild`);
        return;
      }
      const v = ha.wipeVerdict(st, err, stoppedAtVersion, need);
      need = v.need;
      if (v.wipe) break;
      if (clock.now() >= wipeUntil) {
        ha.setRebuilding(undefined);
        log(`${v.reason}: rebuild abandoned`);
        return;
      }
      await clock.sleep(250);
    }
    world.wipe(n.name, ++lastServerId);
    ha.d.serverId = lastServerId;
    log(`${n.name} wiped for its rebuild (server_id ${lastServerId})`);
    await clock.sleep(1_000);
    if (n.ha !== ha) return;
    ha.datadirReplaced(true);
    ha.setRebuilding(undefined);
    world.startServer(n.name);
  };
  for (const f of s.faults) clock.schedule(f.at, () => apply(f.fault));

  // The workload: a client writes to whoever the store says leads or, with nobody leading there
  // (a failsafe primary during a store outage), to a node that passes the load balancers' primary
  // check; one write in flight per node.
  const stopWorkload = clock.every(250, () => {
    if (clock.now() > s.durationMs) return;
    const leader = store.snapshot().leader?.node ?? (s.failsafe ? nodes.find((n) => n.ha && primaryCheck(n.ha.statusView()))?.name : undefined);
    if (!leader || writing.has(leader)) return;
    writing.add(leader);
    void world.clientWrite(leader).finally(() => writing.delete(leader));
  });

  const check = () => {
    if (violation) return;
    const writable = names.filter((n) => world.canAcknowledge(n));
    if (writable.length > 1) fail(`two nodes can acknowledge writes: ${writable.join(", ")}`);
    if (s.lossless) for (const n of names) if (world.isWritable(n) && !world.semiSyncOn(n)) fail(`${n} is writable with semi-sync off in lossless mode`);
    // The node that can acknowledge, or else a writable leader (lossless: one that no replica can
    // ack for yet, which still must hold every acknowledged write before any replica attaches).
    const leaderNow = s.lossless && writable.length === 0 ? store.snapshot().leader?.node : undefined;
    const w = writable[0] ?? (leaderNow !== undefined && world.isWritable(leaderNow) ? leaderNow : undefined);
    const pid = w ? world.process(w).pid() : undefined;
    if (w && pid !== lastWriterPid) {
      lastWriterPid = pid;
      checkedUpTo = 0;
    }
    if (w && w !== lastWriter) {
      if (lastWriter !== undefined) failovers++;
      lastWriter = w;
      checkedUpTo = 0;
    }
    if (!s.lossless || !w) return;
    const acked = world.acked;
    const have = world.executedSet(w);
    for (; checkedUpTo < acked.length; checkedUpTo++) {
      const a = acked[checkedUpTo]!;
      if (!have.has(a.gtid)) return fail(`acknowledged write ${a.gtid} (acked by ${a.node} at ${a.at} ms) is missing on ${w}, which ${writable.length > 0 ? "can acknowledge writes" : "is writable and leads"}`);
    }
  };

  let events = await clock.runUntil(s.durationMs, check);
  stopWorkload();
  // The quiet period ends early once the cluster has converged and stayed so for two seconds.
  let unconverged = converged(names, store, world, nodes);
  let stable = 0;
  while (clock.now() < s.durationMs + s.quietMs && stable < 3 && !violation) {
    events += await clock.runUntil(clock.now() + 1_000, check);
    unconverged = converged(names, store, world, nodes);
    stable = unconverged.length === 0 ? stable + 1 : 0;
    if (stable >= 2) break;
  }
  for (const n of nodes) n.crash();
  if (!violation && unconverged.length > 0 && unconverged.some((u) => !u.includes("diverged") && !u.includes("waiting for"))) {
    violation = `did not converge: ${unconverged.join("; ")}`;
  }
  return { seed: s.seed, violation, unconverged, acked: world.acked.length, ackedAt: world.acked.map((a) => a.at), failovers, events, trace };
}

/** After the quiet period: one primary, every other node replicating from it, or a stated reason why not. */
function converged(names: string[], store: MemoryStoreServer, world: SimWorld, nodes: SimNode[]): string[] {
  const out: string[] = [];
  const leader = store.snapshot().leader?.node;
  for (const [i, name] of names.entries()) {
    const st = nodes[i]!.ha?.statusView();
    if (!st) {
      out.push(`${name}: statepilot not running`);
      continue;
    }
    if (name === leader) {
      if (!(st.role === "primary" && world.isWritable(name))) out.push(`${name}: leads but is ${st.role} (${st.reason}) [${world.describe(name)}]`);
      continue;
    }
    const ok = leader !== undefined && st.role === "replica" && st.replication?.io === "Yes" && st.replication.sql && st.primary?.node === leader;
    if (!ok) out.push(`${name}: ${st.role}: ${st.reason} [${world.describe(name)}]`);
  }
  if (!leader && out.length === 0) out.push("no primary");
  return out;
}
