import type { MysqlConfig } from "../config/schema.js";
import { ConfigError } from "../config/load.js";

export interface MysqlCredentials {
  rootPassword: string;
  database: string | undefined;
  user: string | undefined;
  password: string | undefined;
  replUser: string;
  replPassword: string;
}

/** The value from the config, else the first of the official images' variables that is set. */
function pick(value: string | undefined, env: NodeJS.ProcessEnv, names: string[]): string | undefined {
  if (value !== undefined && value !== "") return value;
  for (const n of names) {
    const v = env[n];
    if (v !== undefined && v !== "") return v;
  }
  return undefined;
}

/**
 * Credentials from `mysql.credentials`, falling back to MYSQL_* / MARIADB_* variables. Missing
 * required ones are a ConfigError naming both the field and the variables (never the values).
 */
export function resolveCredentials(cfg: MysqlConfig, env: NodeJS.ProcessEnv, source: string): MysqlCredentials {
  const c = cfg.credentials;
  const rootPassword = pick(c.rootPassword, env, ["MYSQL_ROOT_PASSWORD", "MARIADB_ROOT_PASSWORD"]);
  const replPassword = pick(c.replPassword, env, ["MYSQL_REPL_PASSWORD", "MARIADB_REPL_PASSWORD"]);
  const user = pick(c.user, env, ["MYSQL_USER", "MARIADB_USER"]);
  const password = pick(c.password, env, ["MYSQL_PASSWORD", "MARIADB_PASSWORD"]);
  const problems: Array<{ path: string; message: string }> = [];
  if (!rootPassword) problems.push({ path: "mysql.credentials.rootPassword", message: "required: set it or MYSQL_ROOT_PASSWORD / MARIADB_ROOT_PASSWORD" });
  if (!replPassword) problems.push({ path: "mysql.credentials.replPassword", message: "required: set it or MYSQL_REPL_PASSWORD" });
  if (user && !password) problems.push({ path: "mysql.credentials.password", message: `user "${user}" needs a password: set it or MYSQL_PASSWORD / MARIADB_PASSWORD` });
  if (user === "root") problems.push({ path: "mysql.credentials.user", message: 'must not be "root"; root is configured through rootPassword' });
  if (problems.length) throw new ConfigError(source, problems);
  return {
    rootPassword: rootPassword!,
    database: pick(c.database, env, ["MYSQL_DATABASE", "MARIADB_DATABASE"]),
    user,
    password,
    replUser: pick(c.replUser, env, ["MYSQL_REPL_USER", "MARIADB_REPL_USER"]) ?? "repl",
    replPassword: replPassword!,
  };
}
