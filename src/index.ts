/**
 * statepilot's programmable API: drive a MySQL cluster from code (runbooks that can be reviewed and
 * tested), with the operations the CLI runs.
 *
 *   import { connect } from "statepilot";
 *   const cluster = connect({ configFile: "statepilot.json5" });
 *   for await (const view of cluster.watch()) console.log(view.primary?.node);
 */
export { ApiUsageError, Cluster, connect, type ConnectOptions, type SwitchoverResult } from "./api/cluster.js";
export type { ClusterView, MemberView } from "./mysql/switchover.js";
export { SwitchoverError } from "./mysql/switchover.js";
export { ClusterAdminError } from "./mysql/cluster-admin.js";
export { RebuildError, type RebuildResult } from "./mysql/rebuild.js";
export { StoreUnavailable } from "./cluster/store.js";
export type { LeaderRecord, MemberRecord, PauseRecord, Role, SwitchoverRecord } from "./cluster/records.js";
export type { Manifest } from "./snapshot/snapshot.js";
export { ConfigError } from "./config/load.js";
