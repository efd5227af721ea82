/**
 * What statepilot needs from a coordination store. Consul implements it (consul/); a later etcd
 * backend implements the same interface (lease ≈ session, txn on create_revision ≈ acquire).
 */

export type CheckStatus = "passing" | "warning" | "critical";

export interface HealthCheckInfo {
  checkId: string;
  name: string;
  status: CheckStatus;
  output: string;
  serviceId: string;
}

/** What identifies a service instance and where it is reached. */
export interface ServiceEndpoint {
  id: string;
  name: string;
  address: string;
  port: number;
  tags: string[];
  meta: Record<string, string>;
}

/** One instance of a service as the store reports it. */
export interface ServiceInstance extends ServiceEndpoint {
  node: string;
  checks: HealthCheckInfo[];
  /** All checks (node and service) pass. */
  healthy: boolean;
}

/** A registration this node makes, with its one TTL check. */
export interface ServiceSpec extends ServiceEndpoint {
  enableTagOverride: boolean;
  checkId: string;
  ttl: string;
  initialStatus: CheckStatus;
  deregisterCriticalServiceAfter?: string | undefined;
}

export interface LockEntry {
  value: string | null;
  session: string | undefined;
  lockIndex: number;
  modifyIndex: number;
}

/**
 * Where jobs register their services and watches read them: Consul (the Coordinator below), or
 * etcd keys for confd-style readers (etcd/registry.ts).
 */
export interface ServiceRegistry {
  /** Where registrations go, for the log ("Consul", "etcd at ..."). */
  readonly where: string;
  registerService(spec: ServiceSpec): Promise<void>;
  deregisterService(id: string): Promise<void>;
  /** Reports a TTL check; throws when the store does not know the check (re-register then). */
  reportCheck(checkId: string, status: CheckStatus, output: string): Promise<void>;
  setMaintenance(serviceId: string, enable: boolean, reason: string): Promise<void>;
  /** Blocks until the instance list may have changed (index), or `wait` elapses. */
  watchService(name: string, opts: { index: number; wait: string; tag?: string; datacenter?: string; signal?: AbortSignal }): Promise<{ instances: ServiceInstance[]; index: number }>;
  close(): void;
}

export interface Coordinator extends ServiceRegistry {
  createSession(opts: { name: string; checkIds: string[]; ttl?: string; lockDelay: string }): Promise<string>;
  renewSession(id: string): Promise<"ok" | "gone">;
  destroySession(id: string): Promise<void>;
  acquire(key: string, value: string, session: string): Promise<boolean>;
  release(key: string, value: string, session: string): Promise<boolean>;
  read(key: string, opts?: { index?: number; wait?: string; signal?: AbortSignal }): Promise<{ entry: LockEntry | undefined; index: number }>;
  write(key: string, value: string): Promise<void>;
  /** Check-and-set: writes only if the key's modify index is still `index` (0: only if absent). */
  writeCas(key: string, value: string, index: number): Promise<boolean>;
  /** Every entry under a prefix, optionally blocking until the prefix changes past `index`. */
  list(prefix: string, opts?: { index?: number; wait?: string; signal?: AbortSignal }): Promise<{ entries: Array<LockEntry & { key: string }>; index: number }>;
  delete(key: string): Promise<void>;
  close(): void;
}

/** A JSON record stored under a key; unreadable text counts as no record. */
export function parseRecord<T>(text: string | null | undefined): T | undefined {
  if (!text) return undefined;
  try {
    return JSON.parse(text) as T;
  } catch {
    return undefined;
  }
}

/** Reads a key holding a JSON record, with the modify index a check-and-set needs (0 when absent). */
export async function readRecord<T>(c: Coordinator, key: string): Promise<{ value: T | undefined; modifyIndex: number }> {
  const { entry } = await c.read(key);
  return { value: parseRecord<T>(entry?.value), modifyIndex: entry?.modifyIndex ?? 0 };
}
