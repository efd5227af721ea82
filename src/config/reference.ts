import { z } from "zod";
import { Config } from "./schema.js";

type JsonSchema = {
  type?: string | string[];
  properties?: Record<string, JsonSchema>;
  items?: JsonSchema;
  anyOf?: JsonSchema[];
  oneOf?: JsonSchema[];
  enum?: unknown[];
  const?: unknown;
  default?: unknown;
  description?: string;
  pattern?: string;
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
  minItems?: number;
  required?: string[];
  /** Set by the duration() fields of the schema: their bounds, as written. */
  duration?: { min: string; max: string };
};

const esc = (s: string) => s.replace(/\|/g, "\\|").replace(/\n/g, " ");

function typeOf(s: JsonSchema): string {
  if (s.const !== undefined) return `\`${JSON.stringify(s.const)}\``;
  if (s.enum) return s.enum.map((e) => `\`${JSON.stringify(e)}\``).join(" \\| ");
  if (s.duration) return `duration ${s.duration.min}..${s.duration.max}`;
  const alts = s.anyOf ?? s.oneOf;
  if (alts) return alts.map(typeOf).join(" or ");
  if (s.type === "array") return `${s.items ? typeOf(s.items) : "any"}[]`;
  if (s.type === "integer") {
    const range = s.minimum !== undefined || s.maximum !== undefined ? ` ${s.minimum ?? ""}..${s.maximum ?? ""}` : "";
    return `integer${range}`;
  }
  if (Array.isArray(s.type)) return s.type.join(" or ");
  return s.type ?? "any";
}

function objectVariants(s: JsonSchema): JsonSchema[] {
  if (s.type === "object" && s.properties) return [s];
  const alts = s.anyOf ?? s.oneOf ?? [];
  return alts.filter((a) => a.type === "object" && a.properties);
}

/**
 * docs/configuration.md, generated from the zod schema (a unit test fails when the file is stale):
 * one table per object, with type, default and the schema's own description of each key.
 */
export function renderConfigReference(): string {
  const root = z.toJSONSchema(Config, { io: "input", unrepresentable: "any" }) as JsonSchema;
  const sections: string[] = [];
  const visit = (path: string, s: JsonSchema, title?: string) => {
    const rows: string[] = [];
    const nested: Array<[string, JsonSchema, string | undefined]> = [];
    for (const [key, prop] of Object.entries(s.properties ?? {})) {
      const full = path ? `${path}.${key}` : key;
      const required = s.required?.includes(key) && prop.default === undefined;
      const def = prop.default === undefined ? (required ? "**required**" : "") : `\`${JSON.stringify(prop.default)}\``;
      rows.push(`| \`${key}\` | ${esc(typeOf(prop))} | ${def} | ${esc(prop.description ?? "")} |`);
      const target = prop.type === "array" && prop.items ? prop.items : prop;
      const variants = objectVariants(target);
      const suffix = prop.type === "array" ? "[]" : "";
      for (const v of variants) {
        const tag = v.properties?.type?.const;
        nested.push([`${full}${suffix}`, v, tag !== undefined ? `${full}${suffix} (type ${JSON.stringify(tag)})` : undefined]);
      }
    }
    const heading = title ?? (path || "(top level)");
    sections.push(`## ${heading}\n\n${s.description && path ? `${esc(s.description)}\n\n` : ""}| key | type | default | description |\n|---|---|---|---|\n${rows.join("\n")}\n`);
    for (const [p, v, t] of nested) visit(p, v, t);
  };
  visit("", root);
  return [
    "# Configuration reference",
    "",
    "Generated from the zod schema in `src/config/schema.ts` by `npm run docs`; do not edit by hand",
    "(`test/unit/docs.test.ts` fails when this file is stale).",
    "",
    "A config file is JSON5. String values may use `${VAR}`, `${VAR:-default}`, `${VAR-default}` and",
    "`${VAR:?message}`; `$$` is a literal `$`. A bare `$VAR` is left as written, for the shell of a job (`shell: true` or",
    "`sh -c`), as ContainerPilot did; a string exec without a shell passes it on literally. Durations are strings such as `\"500ms\"`, `\"5s\"`, `\"1m\"`, `\"2h\"`;",
    "each duration's bounds are in its type column (`duration MIN..MAX`), and none exceeds 596h (24.8 days: Node's timers",
    "overflow beyond it). A config file may be at most 1 MiB and nest objects and arrays at most 32 levels deep.",
    "Unknown keys are errors, with the nearest valid key or, for a ContainerPilot key, its place here. A ContainerPilot",
    "config (`{{ .VAR }}` templates, `consul` as a string, job `port`...) runs as it is: see docs/migration.md and `statepilot convert`.",
    "`statepilot config check --config FILE` validates a file and names every",
    "problem's path and value; `statepilot config render` prints it resolved, with defaults, secrets masked.",
    "",
    ...sections,
  ].join("\n");
}
