import { ConfigError, encodeConfig, loadConfigFile, validateConfig } from "../config/load.js";
import type { Config } from "../config/schema.js";
import { createLogger, type Logger } from "../log.js";
import { ControlServer, HttpError } from "../control/server.js";
import { Supervisor, ReloadRefused } from "../supervisor/supervisor.js";
import { Metrics } from "../telemetry/metrics.js";
import { Telemetry } from "../telemetry/telemetry.js";
import type { MysqlAutopilot } from "../mysql/autopilot.js";
import { resolveCredentials } from "../mysql/credentials.js";
import type { ConsulConnection } from "../discovery/consul/client.js";
import { configUsesConsul, consulAgentOptions, resolveConsulConnection } from "../discovery/consul/connection.js";

export interface RunOptions {
  configPath: string | undefined;
  node: string | undefined;
  socket: string | undefined;
  /** argv after `--`: becomes the main job. */
  mainCommand: string[] | undefined;
  version: string;
}

/** Reads the config file (or the defaults) and adds the `--` command as the main job. */
export function resolveConfig(opts: Pick<RunOptions, "configPath" | "node" | "mainCommand">, env: NodeJS.ProcessEnv = process.env): Config {
  const base = opts.configPath ? loadConfigFile(opts.configPath, env) : validateConfig({}, "defaults");
  if (!opts.mainCommand && !opts.node) return base;
  const tree = encodeConfig(base);
  if (opts.node) tree.node = opts.node;
  if (opts.mainCommand) {
    const jobs = tree.jobs ?? [];
    const existing = jobs.findIndex((j) => j.main);
    if (existing >= 0) {
      throw new ConfigError(opts.configPath ?? "command line", [{ path: `jobs[${existing}].main`, message: "the config already has a main job; drop the command after -- or the main flag" }]);
    }
    const name = jobs.some((j) => j.name === "main") ? "main-command" : "main";
    tree.jobs = [...jobs, { name, exec: opts.mainCommand, main: true }];
  }
  return validateConfig(tree, opts.configPath ?? "command line");
}

/**
 * What `run` refuses before it starts anything, beyond the schema: missing MySQL credentials, and a
 * Consul connection that cannot be made (a bad CONSUL_* variable; an unreadable token, CA,
 * certificate or key file). ConfigErrors naming the field or variable; `config check` runs it too.
 */
export function preflight(config: Config, env: NodeJS.ProcessEnv, source: string): ConsulConnection | undefined {
  if (config.mysql) resolveCredentials(config.mysql, env, source);
  if (!configUsesConsul(config)) return undefined;
  const consul = resolveConsulConnection(config.consul, env);
  consulAgentOptions(consul);
  return consul;
}

const HANDLED_SIGNALS: NodeJS.Signals[] = ["SIGTERM", "SIGINT", "SIGQUIT", "SIGHUP", "SIGUSR1", "SIGUSR2"];
const CRASHES = ["uncaughtException", "unhandledRejection"] as const;
const errText = (err: unknown) => (err instanceof Error ? err.message : String(err));

/** Runs the supervisor until it stops; resolves with the exit code. */
export async function runSupervisor(opts: RunOptions, env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const config = resolveConfig(opts, env);
  const consul = preflight(config, env, opts.configPath ?? "command line");
  const logger: Logger = createLogger(config.logging);
  if (consul?.tlsSkipVerify) logger.warn({ consul: consul.address }, "CONSUL_HTTP_SSL_VERIFY=false: the Consul agent's TLS certificate is not verified");
  const metrics = config.telemetry ? new Metrics(config.telemetry.metrics) : undefined;
  const supervisor = new Supervisor({
    config,
    logger,
    version: opts.version,
    ...(metrics ? { observer: metrics.observer(), onConsulRequest: (ep: string, ms: number, outcome: "ok" | "error") => metrics.consulRequest(ep, ms, outcome) } : {}),
  });
  const telemetry = config.telemetry && metrics ? new Telemetry(config.telemetry, metrics, supervisor, logger) : undefined;
  let mysql: MysqlAutopilot | undefined;

  const reload = async () => {
    if (!opts.configPath) throw new HttpError(409, "statepilot was started without --config; there is nothing to reload");
    const next = resolveConfig(opts, env);
    preflight(next, env, opts.configPath);
    try {
      return await supervisor.reload(next);
    } catch (err) {
      if (err instanceof ReloadRefused) throw new HttpError(409, err.message);
      throw err;
    }
  };
  supervisor.onReloadRequest = () => {
    reload().catch((err: unknown) => logger.error({ err: err instanceof Error ? err.message : String(err) }, "reload on SIGHUP rejected; the running config stays"));
  };

  const socket = opts.socket || env.STATEPILOT_SOCKET || config.control.socket;
  // Jobs find this control socket in STATEPILOT_SOCKET, so that `statepilot putmetric` (or a
  // ContainerPilot script's `containerpilot -putmetric`) in a sensor job reaches this statepilot
  // whatever --socket said. Jobs take their environment from process.env; an embedding caller that
  // passes its own env keeps process.env as it is.
  if (env === process.env) process.env.STATEPILOT_SOCKET = socket;
  const control = new ControlServer(socket, {
    status: () => supervisor.status(),
    reload,
    maintenance: (enable, reason) => supervisor.setMaintenance(enable, reason),
    putEnv: (values) => supervisor.putEnv(values),
    unhealthy: () => {
      const st = supervisor.status();
      if (st.shuttingDown) return "shutting down";
      const main = st.jobs.find((j) => config.jobs.find((c) => c.name === j.name)?.main) ?? st.jobs.find((j) => j.name === "mysqld");
      if (main && main.pid === undefined) return `main job ${main.name} is not running (${main.state})`;
      const m = mysql?.status();
      if (m && !m.up) return `mysqld does not answer: ${m.reason}`;
      return undefined;
    },
    putMetric: (body) => {
      if (!telemetry) throw new HttpError(409, "telemetry is not configured; declare metrics under telemetry.metrics");
      telemetry.putMetric(body);
    },
  }, logger);
  if (metrics) control.onRequest = (route, status) => metrics.controlRequests.inc({ route, status: String(status) });

  const onSignal = (sig: NodeJS.Signals) => supervisor.handleSignal(sig);
  // What start-up got to is stopped again when it fails, or when an error escapes later: no job
  // outlives statepilot, no control socket file is left behind.
  const stopStarted = async (reason: string) => {
    for (const sig of HANDLED_SIGNALS) process.off(sig, onSignal);
    await supervisor.shutdown(reason).catch((err: unknown) => logger.error({ err: errText(err) }, "shutdown failed"));
    await telemetry?.stop().catch(() => undefined);
    await control.stop().catch(() => undefined);
  };
  const onCrash = (err: unknown) => {
    logger.fatal({ err: errText(err) }, "unexpected error; stopping every job");
    setTimeout(() => process.exit(1), config.stopTimeout + 5_000).unref();
    void stopStarted("unexpected error").finally(() => process.exit(1));
  };
  for (const c of CRASHES) process.on(c, onCrash);
  try {
    // Loaded only when used: a plain supervisor does not pay for mysql2 and the snapshot code.
    if (config.mysql) {
      const { MysqlAutopilot } = await import("../mysql/autopilot.js");
      mysql = await MysqlAutopilot.prepare(config, supervisor, { env, source: opts.configPath ?? "command line", logger, metrics });
    }
    if (mysql && telemetry) mysql.serveChecks(telemetry.server);
    try {
      await control.start();
    } catch (err) {
      // The app matters more than the control plane: run without it, loudly.
      logger.error({ err: errText(err), socket }, "control plane unavailable");
    }
    for (const sig of HANDLED_SIGNALS) process.on(sig, onSignal);
    if (telemetry) {
      try {
        await telemetry.start();
        mysql?.httpListening(telemetry.server.port);
      } catch (err) {
        logger.error({ err: errText(err), port: config.telemetry?.port }, "telemetry endpoint unavailable");
        await telemetry.stop().catch(() => undefined); // sensors it may have started
      }
    }
    supervisor.start();
    mysql?.start();
  } catch (err) {
    logger.error({ err: errText(err) }, "start-up failed; stopping what was started");
    await stopStarted("start-up failed");
    for (const c of CRASHES) process.off(c, onCrash);
    if (err instanceof ConfigError) throw err;
    throw new Error(`start-up failed: ${errText(err)}`, { cause: err });
  }
  const code = await supervisor.exited;
  for (const sig of HANDLED_SIGNALS) process.off(sig, onSignal);
  for (const c of CRASHES) process.off(c, onCrash);
  await control.stop();
  return code;
}
