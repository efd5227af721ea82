import { ConfigError, encodeConfig, loadConfigFile, validateConfig } from "../config/load.js";
import type { Config } from "../config/schema.js";
import { createLogger, type Logger } from "../log.js";
import { ControlServer, HttpError } from "../control/server.js";
import { Supervisor, ReloadRefused } from "../supervisor/supervisor.js";
import { Metrics } from "../telemetry/metrics.js";
import { Telemetry } from "../telemetry/telemetry.js";
import type { MysqlAutopilot } from "../mysql/autopilot.js";

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

const HANDLED_SIGNALS: NodeJS.Signals[] = ["SIGTERM", "SIGINT", "SIGQUIT", "SIGHUP", "SIGUSR1", "SIGUSR2"];

/** Runs the supervisor until it stops; resolves with the exit code. */
export async function runSupervisor(opts: RunOptions, env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const config = resolveConfig(opts, env);
  const logger: Logger = createLogger(config.logging);
  const metrics = config.telemetry ? new Metrics(config.telemetry.metrics) : undefined;
  const supervisor = new Supervisor({
    config,
    logger,
    version: opts.version,
    ...(metrics ? { observer: metrics.observer(), onConsulRequest: (ep: string, ms: number, outcome: "ok" | "error") => metrics.consulRequest(ep, ms, outcome) } : {}),
  });
  const telemetry = config.telemetry && metrics ? new Telemetry(config.telemetry, metrics, supervisor, logger) : undefined;
  // Loaded only when used: a plain supervisor does not pay for mysql2 and the snapshot code.
  let mysql: MysqlAutopilot | undefined;
  if (config.mysql) {
    const { MysqlAutopilot } = await import("../mysql/autopilot.js");
    mysql = await MysqlAutopilot.prepare(config, supervisor, { env, source: opts.configPath ?? "command line", logger, metrics });
  }
  if (mysql && telemetry) mysql.serveChecks(telemetry.server);

  const reload = async () => {
    if (!opts.configPath) throw new HttpError(409, "statepilot was started without --config; there is nothing to reload");
    const next = resolveConfig(opts, env);
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

  const socket = opts.socket ?? env.STATEPILOT_SOCKET ?? config.control.socket;
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
  try {
    await control.start();
  } catch (err) {
    // The app matters more than the control plane: run without it, loudly.
    logger.error({ err: err instanceof Error ? err.message : String(err), socket }, "control plane unavailable");
  }

  const onSignal = (sig: NodeJS.Signals) => supervisor.handleSignal(sig);
  for (const sig of HANDLED_SIGNALS) process.on(sig, onSignal);
  if (telemetry) {
    try {
      await telemetry.start();
    } catch (err) {
      logger.error({ err: err instanceof Error ? err.message : String(err), port: config.telemetry?.port }, "telemetry endpoint unavailable");
    }
  }
  supervisor.start();
  mysql?.start();
  const code = await supervisor.exited;
  for (const sig of HANDLED_SIGNALS) process.off(sig, onSignal);
  await control.stop();
  return code;
}
