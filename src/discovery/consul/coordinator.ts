import type { CheckStatus, Coordinator, LockEntry, ServiceSpec } from "../coordination.js";
import { ConsulClient, type ConsulConnection } from "./client.js";

/** The Coordinator on Consul: TTL checks, sessions linked to them, KV locks, blocking queries. */
export class ConsulCoordinator implements Coordinator {
  readonly client: ConsulClient;
  readonly where = "Consul";

  constructor(connection: ConsulConnection | ConsulClient) {
    this.client = connection instanceof ConsulClient ? connection : new ConsulClient(connection);
  }

  registerService(spec: ServiceSpec): Promise<void> {
    return this.client.registerService({
      id: spec.id,
      name: spec.name,
      address: spec.address,
      port: spec.port,
      tags: spec.tags,
      meta: spec.meta,
      enableTagOverride: spec.enableTagOverride,
      checks: [
        {
          checkId: spec.checkId,
          name: `${spec.name} health (statepilot)`,
          ttl: spec.ttl,
          status: spec.initialStatus,
          deregisterCriticalServiceAfter: spec.deregisterCriticalServiceAfter,
        },
      ],
    });
  }

  deregisterService(id: string): Promise<void> {
    return this.client.deregisterService(id);
  }

  reportCheck(checkId: string, status: CheckStatus, output: string): Promise<void> {
    return this.client.updateTtlCheck(checkId, status, output);
  }

  setMaintenance(serviceId: string, enable: boolean, reason: string): Promise<void> {
    return this.client.setServiceMaintenance(serviceId, enable, reason);
  }

  async watchService(name: string, opts: { index: number; wait: string; tag?: string; datacenter?: string; signal?: AbortSignal }) {
    const r = await this.client.healthService(name, opts);
    return { instances: r.value, index: r.index };
  }

  createSession(opts: { name: string; checkIds: string[]; ttl?: string; lockDelay: string }): Promise<string> {
    return this.client.createSession({ name: opts.name, serviceChecks: opts.checkIds, nodeChecks: [], lockDelay: opts.lockDelay, ...(opts.ttl ? { ttl: opts.ttl } : {}) });
  }

  async renewSession(id: string): Promise<"ok" | "gone"> {
    return (await this.client.renewSession(id)) === "gone" ? "gone" : "ok";
  }

  destroySession(id: string): Promise<void> {
    return this.client.destroySession(id);
  }

  acquire(key: string, value: string, session: string): Promise<boolean> {
    return this.client.kvAcquire(key, value, session);
  }

  release(key: string, value: string, session: string): Promise<boolean> {
    return this.client.kvRelease(key, value, session);
  }

  async read(key: string, opts: { index?: number; wait?: string; signal?: AbortSignal } = {}): Promise<{ entry: LockEntry | undefined; index: number }> {
    const r = await this.client.kvGet(key, opts);
    return {
      entry: r.value && { value: r.value.value, session: r.value.session, lockIndex: r.value.lockIndex, modifyIndex: r.value.modifyIndex },
      index: r.index,
    };
  }

  async write(key: string, value: string): Promise<void> {
    await this.client.kvPut(key, value);
  }

  writeCas(key: string, value: string, index: number): Promise<boolean> {
    return this.client.kvPut(key, value, { cas: index });
  }

  async list(prefix: string, opts: { index?: number; wait?: string; signal?: AbortSignal } = {}) {
    const r = await this.client.kvList(prefix, opts);
    return {
      entries: r.value.map((e) => ({ key: e.key, value: e.value, session: e.session, lockIndex: e.lockIndex, modifyIndex: e.modifyIndex })),
      index: r.index,
    };
  }

  async delete(key: string): Promise<void> {
    await this.client.kvDelete(key);
  }

  close(): void {
    this.client.close();
  }
}
