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
  const database = pick(c.database, env, ["MYSQL_DATABASE", "MARIADB_DATABASE"]);
  const replUser = pick(c.replUser, env, ["MYSQL_REPL_USER", "MARIADB_REPL_USER"]) ?? "repl";
  const nameProblem = (path: string, vars: string, value: string | undefined, max: number): void => {
    if (value === undefined) return;
    const bad = value.length > max ? `longer than ${max} characters` : /[\0\n\r]/.test(value) ? "contains a NUL or line break" : value !== value.trim() ? "starts or ends with a space" : "";
    if (bad) problems.push({ path, message: `${bad} (${vars}): ${JSON.stringify(value.slice(0, 80))}` });
  };
  nameProblem("mysql.credentials.database", "or MYSQL_DATABASE / MARIADB_DATABASE", database, 64);
  nameProblem("mysql.credentials.user", "or MYSQL_USER / MARIADB_USER", user, 32);
  nameProblem("mysql.credentials.replUser", "or MYSQL_REPL_USER", replUser, 32);
  if (replUser === "root" || replUser === user) problems.push({ path: "mysql.credentials.replUser", message: `must differ from root and the application user: ${JSON.stringify(replUser)}` });
  if (problems.length) throw new ConfigError(source, problems);
  return {
    rootPassword: rootPassword!,
    database,
    user,
    password,
    replUser,
    replPassword: replPassword!,
  };
}
