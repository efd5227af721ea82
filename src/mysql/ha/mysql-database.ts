import type { MysqlCredentials } from "../credentials.js";
import { remoteState, type LocalServer } from "../local.js";
import type { Database, Endpoint, LocalState, RemoteState } from "./database.js";

/** The database facade over the real server: the local mysqld as root over its socket, peers as the replication user. */
export class MysqlDatabase implements Database {
  constructor(
    private readonly local: LocalServer,
    private readonly creds: Pick<MysqlCredentials, "replUser" | "replPassword">,
  ) {}

  private target(peer: Endpoint) {
    return { host: peer.host, port: peer.port, user: this.creds.replUser, password: this.creds.replPassword };
  }

  async ready(): Promise<{ flavor: "mariadb" | "mysql"; version: string }> {
    const d = await this.local.ready();
    return { flavor: d.flavor, version: d.server.version };
  }

  observe(): Promise<LocalState> {
    return this.local.observe();
  }

  setReadOnly(on: boolean, writableForMs?: number, timeoutMs?: number): Promise<void> {
    return this.local.setReadOnly(on, writableForMs, timeoutMs);
  }

  armFence(afterMs: number): Promise<void> {
    return this.local.armFence(afterMs);
  }

  killWriters(): Promise<number> {
    return this.local.killWriters();
  }

  semiSyncPrimary(on: boolean): Promise<void> {
    return this.local.semiSyncPrimary(on);
  }

  replicateFrom(source: Endpoint, slavePos: "binlog" | string | undefined): Promise<void> {
    return this.local.replicateFrom(this.target(source), slavePos);
  }

  seedBinlogState(state: string): Promise<void> {
    return this.local.seedBinlogState(state);
  }

  startReplica(): Promise<void> {
    return this.local.startReplica();
  }

  stopReceiver(): Promise<void> {
    return this.local.stopReceiver();
  }

  waitApplied(gtids: string, timeoutMs: number): Promise<boolean> {
    return this.local.waitApplied(gtids, timeoutMs);
  }

  resetReplication(): Promise<void> {
    return this.local.resetReplication();
  }

  async remoteState(peer: Endpoint): Promise<RemoteState> {
    return remoteState(this.target(peer), await this.local.ready());
  }

  close(): void {
    this.local.close();
  }
}
