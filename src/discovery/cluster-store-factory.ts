import type { MysqlConfig } from "../config/schema.js";
import type { ClusterStore } from "../cluster/store.js";
import type { Coordinator } from "./coordination.js";
import { ConsulCoordinator } from "./consul/coordinator.js";
import { ConsulClusterStore, consulClusterStore } from "./consul/cluster-store.js";
import type { ServiceHealth } from "./service-health.js";

/**
 * The one place that chooses the cluster store implementation. Consul is the store the
 * supervisor's coordinator speaks; an etcd implementation plugs in here.
 */
export function createClusterStore(o: {
  coordinator: Coordinator;
  node: string;
  cfg: Pick<MysqlConfig, "cluster" | "serviceName" | "checkTtl" | "sessionTtl" | "lockDelay">;
  health: Pick<ServiceHealth, "checkId" | "report">;
}): ClusterStore {
  if (o.coordinator instanceof ConsulCoordinator) return consulClusterStore({ client: o.coordinator.client, node: o.node, cfg: o.cfg, health: o.health });
  throw new Error("the cluster store needs Consul: set consul.address (or CONSUL_HTTP_ADDR)");
}

/**
 * A handle for commands that read the cluster and write requests (status, switchover, remove):
 * it is no member, so it never touches a liveness and never leads.
 */
export function clusterClient(coordinator: Coordinator, cfg: Pick<MysqlConfig, "cluster" | "serviceName">): ClusterStore {
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
