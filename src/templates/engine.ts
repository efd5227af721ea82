import { Drop, Liquid } from "liquidjs";
import type { TemplateInstance, TemplateKvEntry, TemplateMysqlNode, TemplateMysqlView } from "./dependencies.js";

/**
 * The Liquid environment of a template: what a render can read. Every lookup goes through a
 * `DataSource`, which records it as a dependency of the render (and starts watching it): what the
 * template asked for is what gets watched, as with consul-template.
 */
export interface DataSource {
  /** Healthy instances; `name` may be `tag.service` as in consul-template. */
  service(name: string): Promise<TemplateInstance[]>;
  key(path: string): Promise<string | null>;
  tree(prefix: string): Promise<TemplateKvEntry[]>;
  mysql(): Promise<TemplateMysqlView>;
  env(name: string): string;
}

export class MissingKeyError extends Error {
  override name = "MissingKeyError";
}

class ServiceDrop extends Drop {
  constructor(private readonly src: DataSource) {
    super();
  }
  override liquidMethodMissing(name: string): Promise<TemplateInstance[]> {
    return this.src.service(String(name));
  }
}

class KeyDrop extends Drop {
  constructor(private readonly src: DataSource) {
    super();
  }
  override async liquidMethodMissing(path: string): Promise<string> {
    return requireKey(String(path), await this.src.key(String(path)));
  }
}

class TreeDrop extends Drop {
  constructor(private readonly src: DataSource) {
    super();
  }
  override liquidMethodMissing(prefix: string): Promise<TemplateKvEntry[]> {
    return this.src.tree(String(prefix));
  }
}

class EnvDrop extends Drop {
  constructor(private readonly src: DataSource) {
    super();
  }
  override liquidMethodMissing(name: string): string {
    return this.src.env(String(name));
  }
}

const MYSQL_FIELDS = new Set(["cluster", "primary", "replicas", "members", "paused"]);

class MysqlDrop extends Drop {
  constructor(private readonly src: DataSource) {
    super();
  }
  override async liquidMethodMissing(field: string): Promise<unknown> {
    if (!MYSQL_FIELDS.has(String(field))) throw new Error(`mysql has no field ${JSON.stringify(field)} (expected one of ${[...MYSQL_FIELDS].join(", ")})`);
    return (await this.src.mysql())[String(field) as keyof TemplateMysqlView];
  }
}

function requireKey(path: string, value: string | null): string {
  if (value === null) throw new MissingKeyError(`key ${JSON.stringify(path)} does not exist (key_or_default gives a fallback)`);
  return value;
}

/** A Liquid engine with statepilot's filters; `source()` is the data of the render under way. */
export function createEngine(root: string, source: () => DataSource): Liquid {
  const liquid = new Liquid({ root: [root], strictVariables: true, strictFilters: true, ownPropertyOnly: true, cache: false });
  liquid.registerFilter("service", (name: unknown) => source().service(String(name)));
  liquid.registerFilter("key", async (path: unknown) => requireKey(String(path), await source().key(String(path))));
  liquid.registerFilter("key_or_default", async (path: unknown, fallback: unknown) => (await source().key(String(path))) ?? String(fallback ?? ""));
  liquid.registerFilter("tree", (prefix: unknown) => source().tree(String(prefix)));
  liquid.registerFilter("env", (name: unknown) => source().env(String(name)));
  liquid.registerFilter("max_lag", (nodes: unknown, seconds: unknown) => (Array.isArray(nodes) ? (nodes as TemplateMysqlNode[]).filter((n) => n.lagSeconds !== null && n.lagSeconds <= Number(seconds)) : []));
  liquid.registerFilter("with_tag", (list: unknown, tag: unknown) => (Array.isArray(list) ? (list as TemplateInstance[]).filter((i) => i.tags.includes(String(tag))) : []));
  return liquid;
}

/** The variables every render sees. */
export function scope(src: DataSource): Record<string, unknown> {
  return { service: new ServiceDrop(src), key: new KeyDrop(src), tree: new TreeDrop(src), env: new EnvDrop(src), mysql: new MysqlDrop(src) };
}
