import type { ClusterStoreConnection, MysqlConfig } from "../config/schema.js";
import type { ClusterStore } from "../cluster/store.js";
import type { Coordinator } from "./coordination.js";
import { ConsulCoordinator } from "./consul/coordinator.js";
import { ConsulClusterStore, consulClusterStore } from "./consul/cluster-store.js";
import type { ServiceHealth } from "./service-health.js";
import { EtcdClusterStore } from "./etcd/cluster-store.js";
import { createEtcdClient, describeEndpoints, resolveEtcdConnection } from "./etcd/connection.js";

/**
 * The one place that chooses the cluster store implementation: Consul (the store the supervisor's
 * coordinator speaks, the default) or etcd when the config's `store` says so. On etcd the node's
 * lease has the TTL of `checkTtl` (whole seconds) and lock-delay is `lockDelay`; the node's Consul
 * service health is still reported with every touch, best effort.
 */
export function createClusterStore(o: {
  coordinator: Coordinator;
  node: string;
  cfg: Pick<MysqlConfig, "cluster" | "serviceName" | "checkTtl" | "sessionTtl" | "lockDelay">;
  health: Pick<ServiceHealth, "checkId" | "report">;
  store?: ClusterStoreConnection | undefined;
  env?: NodeJS.ProcessEnv;
}): ClusterStore {
  if (o.store?.type === "etcd") {
    const conn = resolveEtcdConnection(o.store, o.env);
    return new EtcdClusterStore({
      client: createEtcdClient(conn),
      ownsClient: true,
      endpoints: describeEndpoints(conn),
      cluster: o.cfg.cluster,
      node: o.node,
      timing: { leaseMs: o.cfg.checkTtl, lockDelayMs: o.cfg.lockDelay },
      mirrorHealth: (h) => o.health.report({ status: h.status, output: h.output, durationMs: 0 }),
      service: o.cfg.serviceName,
    });
  }
  if (o.coordinator instanceof ConsulCoordinator) return consulClusterStore({ client: o.coordinator.client, node: o.node, cfg: o.cfg, health: o.health });
  throw new Error("the cluster store needs Consul: set consul.address (or CONSUL_HTTP_ADDR)");
}

/**
 * A handle for commands that read the cluster and write requests (status, switchover, remove):
 * it is no member, so it never touches a liveness and never leads.
 */
export function clusterClient(coordinator: Coordinator, cfg: Pick<MysqlConfig, "cluster" | "serviceName">, store?: ClusterStoreConnection, env?: NodeJS.ProcessEnv): ClusterStore {
  if (store?.type === "etcd") {
    const conn = resolveEtcdConnection(store, env);
    // A client never leads: its timing is never used.
    return new EtcdClusterStore({ client: createEtcdClient(conn), ownsClient: true, endpoints: describeEndpoints(conn), cluster: cfg.cluster, node: "statepilot-cli", member: false, timing: { leaseMs: 0, lockDelayMs: 0 } });
  }
  if (!(coordinator instanceof ConsulCoordinator)) throw new Error("the cluster store needs Consul: set consul.address (or CONSUL_HTTP_ADDR)");
  return new ConsulClusterStore({
    client: coordinator.client,
    cluster: cfg.cluster,
    node: "statepilot-cli",
    serviceName: cfg.serviceName,
    checkId: "",
    reportHealth: () => Promise.reject(new Error("a command-line handle has no liveness to report")),
    // A client never leads: its timing is never used.
    timing: { checkTtlMs: 0, sessionTtlMs: 0, lockDelayMs: 0 },
  });
}
