import type { Etcd3, IRangeResponse } from "etcd3";
import { parseDuration } from "../../config/duration.js";
import type { CheckStatus, ServiceInstance, ServiceRegistry, ServiceSpec } from "../coordination.js";
import { leaseTtlSeconds } from "./cluster-store.js";
import { explainEtcdError } from "./connection.js";
import { keepAliveOnce } from "./lease.js";
import { serviceKey } from "./keys.js";

/** What a job's instance says under `statepilot/services/<service>/<node>` (see keys.ts). */
export interface EtcdInstanceValue {
  node: string;
  id: string;
  address: string;
  port: number;
  tags: string[];
  meta: Record<string, string>;
  status: CheckStatus;
  output: string;
  /** The operator's reason, while the instance is in maintenance (then it counts as unhealthy). */
  maintenance?: string;
}

interface Registration {
  spec: ServiceSpec;
  key: string;
  lease: string;
  ttlSeconds: number;
  value: EtcdInstanceValue;
}

/**
 * Jobs' service registrations in etcd, for confd-style readers (store `registrations: etcd`):
 * each instance is one key, `statepilot/services/<service>/<node>`, on a lease of its own whose TTL
 * is the job's health `ttl`. A check report is a keep-alive (and a write when the status or output
 * changed): a job whose checks stop being reported disappears when its lease runs out, where Consul
 * would keep it, critical. Watches read the same keys, blocking on etcd's watch past `index` (the
 * store's revision).
 */
export class EtcdServiceRegistry implements ServiceRegistry {
  readonly where: string;
  private readonly regs = new Map<string, Registration>();

  constructor(
    private readonly client: Etcd3,
    private readonly opts: { endpoints: string; ownsClient: boolean; timeoutMs: number },
  ) {
    this.where = `etcd at ${opts.endpoints}`;
  }

  private fail(op: string, err: unknown): Error {
    return new Error(`etcd at ${this.opts.endpoints}: ${op}: ${explainEtcdError(err)}`, { cause: err });
  }

  async registerService(spec: ServiceSpec): Promise<void> {
    const ttlMs = parseDuration(spec.ttl);
    if (ttlMs === undefined) throw new Error(`service ${spec.id}: ttl ${JSON.stringify(spec.ttl)} is not a duration`);
    const node = spec.meta["statepilot-node"] ?? spec.id;
    const ttlSeconds = leaseTtlSeconds(ttlMs);
    // A new registration replaces the old one, lease and all.
    await this.revoke(spec.id);
    let lease: string;
    try {
      const granted = await this.client.leaseClient.leaseGrant({ TTL: ttlSeconds, ID: 0 });
      if (granted.error) throw new Error(`lease grant: ${granted.error}`);
      lease = granted.ID;
    } catch (err) {
      throw this.fail(`registering ${spec.id}`, err);
    }
    const value: EtcdInstanceValue = { node, id: spec.id, address: spec.address, port: spec.port, tags: spec.tags, meta: spec.meta, status: spec.initialStatus, output: "" };
    const reg: Registration = { spec, key: serviceKey(spec.name, node), lease, ttlSeconds, value };
    await this.write(reg, `registering ${spec.id}`);
    this.regs.set(spec.id, reg);
  }

  private async write(reg: Registration, op: string): Promise<void> {
    try {
      await this.client.put(reg.key).value(JSON.stringify(reg.value)).lease(reg.lease).exec();
    } catch (err) {
      throw this.fail(op, err);
    }
  }

  private async revoke(id: string): Promise<void> {
    const reg = this.regs.get(id);
    if (!reg) return;
    this.regs.delete(id);
    try {
      // Revoking the lease deletes the key with it.
      await this.client.leaseClient.leaseRevoke({ ID: reg.lease });
    } catch (err) {
      // A lease that already ran out took the key with it: nothing is left to remove.
      if (!/lease not found/i.test(explainEtcdError(err))) throw this.fail(`deregistering ${id}`, err);
    }
  }

  deregisterService(id: string): Promise<void> {
    return this.revoke(id);
  }

  async reportCheck(checkId: string, status: CheckStatus, output: string): Promise<void> {
    const reg = [...this.regs.values()].find((r) => r.spec.checkId === checkId);
    if (!reg) throw new Error(`etcd at ${this.opts.endpoints}: no registration holds check ${checkId}; register the service again`);
    let ttl: number;
    try {
      ttl = await keepAliveOnce(this.client, reg.lease, reg.ttlSeconds * 1000);
    } catch (err) {
      throw this.fail(`reporting ${checkId}`, err);
    }
    if (ttl <= 0) {
      // The lease ran out (checks not reported within the TTL, or etcd lost it): the key is gone.
      this.regs.delete(reg.spec.id);
      throw new Error(`etcd at ${this.opts.endpoints}: the lease of ${reg.spec.id} ran out and its key went with it; register the service again`);
    }
    if (reg.value.status === status && reg.value.output === output) return;
    reg.value = { ...reg.value, status, output };
    await this.write(reg, `reporting ${checkId}`);
  }

  async setMaintenance(serviceId: string, enable: boolean, reason: string): Promise<void> {
    const reg = this.regs.get(serviceId);
    if (!reg) throw new Error(`etcd at ${this.opts.endpoints}: ${serviceId} is not registered here`);
    const { maintenance: _, ...rest } = reg.value;
    reg.value = enable ? { ...rest, maintenance: reason || "maintenance" } : rest;
    await this.write(reg, `maintenance of ${serviceId}`);
  }

  async watchService(name: string, opts: { index: number; wait: string; tag?: string; datacenter?: string; signal?: AbortSignal }): Promise<{ instances: ServiceInstance[]; index: number }> {
    const prefix = `${serviceKey(name, "")}`;
    let now = await this.range(prefix);
    const revision = Number(now.header.revision);
    if (opts.index > 0 && revision <= opts.index && !opts.signal?.aborted) {
      await this.changeAfter(prefix, opts.index, parseDuration(opts.wait) ?? 60_000, opts.signal);
      now = await this.range(prefix);
    }
    const instances: ServiceInstance[] = [];
    for (const kv of now.kvs) {
      const v = parseInstance(kv.value.toString("utf8"));
      if (!v || (opts.tag !== undefined && !v.tags.includes(opts.tag))) continue;
      const healthy = v.status === "passing" && v.maintenance === undefined;
      instances.push({
        id: v.id,
        name,
        node: v.node,
        address: v.address,
        port: v.port,
        tags: v.tags,
        meta: v.meta,
        healthy,
        checks: [{ checkId: `service:${v.id}`, name: `${name} health (statepilot)`, status: v.maintenance !== undefined ? "critical" : v.status, output: v.maintenance ?? v.output, serviceId: v.id }],
      });
    }
    return { instances, index: Number(now.header.revision) };
  }

  private async range(prefix: string): Promise<IRangeResponse> {
    try {
      return await this.client.getAll().prefix(prefix).exec();
    } catch (err) {
      throw this.fail(`reading ${prefix}`, err);
    }
  }

  /** Resolves at the first change under `prefix` after revision `index`, after `waitMs`, or on abort. */
  private async changeAfter(prefix: string, index: number, waitMs: number, signal: AbortSignal | undefined): Promise<void> {
    const watcher = await this.client.watch().prefix(prefix).startRevision(String(index + 1)).create();
    try {
      await new Promise<void>((resolve, reject) => {
        const done = () => {
          clearTimeout(timer);
          signal?.removeEventListener("abort", done);
          resolve();
        };
        const timer = setTimeout(done, waitMs);
        signal?.addEventListener("abort", done, { once: true });
        watcher.once("data", done);
        watcher.once("error", (err: unknown) => {
          clearTimeout(timer);
          signal?.removeEventListener("abort", done);
          reject(this.fail(`watching ${prefix}`, err));
        });
      });
    } finally {
      // A watcher that cannot be cancelled any more (its stream already failed) is done anyway.
      await watcher.cancel().catch((err: unknown) => void err);
    }
  }

  close(): void {
    if (this.opts.ownsClient) this.client.close();
  }
}

function parseInstance(text: string): EtcdInstanceValue | undefined {
  try {
    const v = JSON.parse(text) as Partial<EtcdInstanceValue>;
    if (typeof v.node !== "string" || typeof v.address !== "string" || typeof v.port !== "number") return undefined;
    // The MySQL autopilot's own instances (cluster-store.ts) carry no id or meta.
    return { node: v.node, id: v.id ?? v.node, address: v.address, port: v.port, tags: Array.isArray(v.tags) ? v.tags : [], meta: v.meta ?? {}, status: v.status ?? "critical", output: v.output ?? "", ...(typeof v.maintenance === "string" ? { maintenance: v.maintenance } : {}) };
  } catch {
    return undefined;
  }
}
