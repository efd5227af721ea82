import type mysql from "mysql2/promise";

/** How the switch reports what happened to one armed statement (never thrown: it runs in the background). */
export type FenceSwitchEvent = { kind: "fired" } | { kind: "error"; message: string };

export interface FenceSwitchOptions {
  /** Opens a new root connection to the local server (LocalServer's). */
  connect: () => Promise<mysql.Connection>;
  /** "mysql" sets super_read_only (which implies read_only), "mariadb" read_only. */
  flavor: () => "mariadb" | "mysql";
  onEvent?: (e: FenceSwitchEvent) => void;
}

/** MySQL error numbers of a statement ended by KILL QUERY, and of SET ... = 'cancelled' (the cancelled branch). */
const ER_QUERY_INTERRUPTED = 1317;
const ER_WRONG_VALUE_FOR_VAR = 1231;

/**
 * A dead man's switch inside the primary's own server. One statement waits in mysqld and turns
 * the server read-only when its time is up, unless statepilot cancels it (KILL QUERY) and arms a new
 * one first, on every lease confirmation:
 *
 *   SET GLOBAL read_only = IF(SLEEP(s) = 0, 'ON', 'cancelled')
 *
 * SLEEP returns 1 when killed, so a cancelled statement assigns 'cancelled', which the server
 * refuses (error 1231): it can only ever turn the server read-only, never writable. (NULL in that
 * place, as this switch first had it, is refused by MariaDB but taken as OFF by MySQL 9.7: every
 * cancelled arm turned super_read_only off and was reported as fired.) The point is a node frozen whole
 * (docker pause, SIGSTOP of the container, a VM stall): statepilot's watchdog runs only when the
 * container runs again, at the same instant as mysqld; the sleeping statement's deadline has passed
 * by then, so the server's own thread turns it read-only as it wakes, before a client could connect,
 * authenticate and be served, and without waiting for statepilot to be scheduled.
 */
export class FenceSwitch {
  private sleeper: mysql.Connection | undefined;
  private control: mysql.Connection | undefined;
  private pending: Promise<void> | undefined;
  private target: number | undefined;
  private applied: number | undefined;
  private work: Promise<void> | undefined;
  private closed = false;

  constructor(private readonly opts: FenceSwitchOptions) {}

  private connect(): Promise<mysql.Connection> {
    return this.opts.connect();
  }

  /**
   * Arms the switch to turn the server read-only `afterMs` from now, replacing the one armed
   * before. Resolves once the statement is running in the server; rejects if it could not be armed.
   */
  arm(afterMs: number, timeoutMs = 2_000): Promise<void> {
    if (this.closed) return Promise.reject(new Error("the fence switch is closed"));
    this.target = Date.now() + Math.max(0, afterMs);
    this.work ??= this.apply().finally(() => {
      this.work = undefined;
    });
    const work = this.work;
    // Never wait on the server for long: a switch that cannot be armed in time is reset (its
    // connections closed, which ends its statement) and the caller hears why.
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.reset();
        reject(new Error(`the fence switch could not be armed within ${timeoutMs} ms (the server did not answer); its connections were reset`));
      }, timeoutMs);
      work.then(
        () => {
          clearTimeout(timer);
          resolve();
        },
        (err: unknown) => {
          clearTimeout(timer);
          reject(err);
        },
      );
    });
  }

  /** Closes both connections (ending the armed statement); the next arm connects again. */
  private reset(): void {
    for (const c of [this.sleeper, this.control]) if (c) this.drop(c);
    this.pending = undefined;
  }

  private async apply(): Promise<void> {
    while (this.target !== undefined && this.applied !== this.target && !this.closed) {
      const target = this.target;
      await this.cancel();
      // Both connections at once: a promotion waits for this switch before it turns writable.
      const [sl, ct] = await Promise.allSettled([this.sleeper ?? this.connect(), this.control ?? this.connect()]);
      if (sl.status === "fulfilled" && this.sleeper !== sl.value) this.sleeper = this.watch(sl.value);
      if (ct.status === "fulfilled" && this.control !== ct.value) this.control = this.watch(ct.value);
      if (sl.status === "rejected") throw sl.reason;
      if (ct.status === "rejected") throw ct.reason;
      if (!this.sleeper || !this.control) throw new Error("the fence switch lost a connection while arming it");
      const seconds = Math.max(0, target - Date.now()) / 1000;
      const variable = this.opts.flavor() === "mysql" ? "super_read_only" : "read_only";
      const sleeper = this.sleeper;
      this.pending = sleeper.query(`SET GLOBAL ${variable} = IF(SLEEP(?) = 0, 'ON', 'cancelled')`, [seconds]).then(
        () => this.opts.onEvent?.({ kind: "fired" }),
        (err: unknown) => {
          const errno = (err as { errno?: number }).errno;
          if (errno === ER_QUERY_INTERRUPTED || errno === ER_WRONG_VALUE_FOR_VAR) return;
          this.drop(sleeper);
          if (!this.closed) this.opts.onEvent?.({ kind: "error", message: err instanceof Error ? err.message : String(err) });
        },
      );
      await this.running(sleeper.threadId);
      this.applied = target;
    }
  }

  /** Waits until the server shows the armed statement running on the sleeper's thread. */
  private async running(threadId: number | null): Promise<void> {
    for (let i = 0; i < 200; i++) {
      const control = this.control;
      if (!control) throw new Error("the fence switch's control connection was lost while arming it");
      const [rows] = await control.query<mysql.RowDataPacket[]>({
        sql: "SELECT COUNT(*) AS n FROM information_schema.PROCESSLIST WHERE ID = ? AND INFO LIKE 'SET GLOBAL %SLEEP%'",
        values: [threadId],
        timeout: 1_000,
      });
      if (Number(rows[0]?.n) === 1) return;
      if (!this.sleeper) throw new Error("the fence switch's connection was lost while arming it");
      await new Promise((r) => setTimeout(r, 5));
    }
    throw new Error(`the fence switch's statement did not show in the process list (thread ${threadId})`);
  }

  /** Ends the armed statement (if any) and waits for it to end. */
  private async cancel(): Promise<void> {
    if (!this.pending) return;
    const threadId = this.sleeper?.threadId;
    if (this.sleeper && this.control && threadId) {
      try {
        await this.control.query({ sql: `KILL QUERY ${Number(threadId)}`, timeout: 1_000 });
      } catch (err) {
        // The control connection is gone: drop the sleeper too, which ends its statement.
        this.drop(this.control);
        if (this.sleeper) this.drop(this.sleeper);
        throw err;
      }
    } else if (this.sleeper) this.drop(this.sleeper);
    // The statement ends once killed; if it does not within a second, its connection goes.
    const pending = this.pending;
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<"late">((r) => {
      timer = setTimeout(() => r("late"), 1_000);
    });
    const outcome = await Promise.race([pending.then(() => "done" as const), late]);
    clearTimeout(timer);
    if (outcome === "late" && this.sleeper) this.drop(this.sleeper);
    this.pending = undefined;
  }

  private watch(c: mysql.Connection): mysql.Connection {
    c.on("error", () => this.drop(c));
    return c;
  }

  private drop(c: mysql.Connection): void {
    if (this.sleeper === c) {
      this.sleeper = undefined;
      this.applied = undefined;
    }
    if (this.control === c) this.control = undefined;
    c.destroy();
  }

  /** Cancels the armed statement and closes both connections (a demoted node, or shutdown). */
  async disarm(): Promise<void> {
    this.target = undefined;
    this.applied = undefined;
    await this.work?.catch(() => undefined);
    await this.cancel().catch(() => undefined);
  }

  close(): void {
    this.closed = true;
    this.reset();
  }
}
