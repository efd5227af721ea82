import { z } from "zod";
import { duration } from "./duration.js";

/**
 * `templates`: files rendered from discovery (Consul services, KV, the MySQL cluster) with Liquid,
 * re-rendered when what they read changes. Kept apart from schema.ts, which only adds the field.
 */

const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;
const MODE = /^0?[0-7]{3,4}$/;

const Command = z.union([z.string().min(1), z.array(z.string()).min(1)], {
  error: 'expected a command: a string ("haproxy -c -f x") or an argv array (["nginx", "-s", "reload"])',
});

export const TemplateWait = z
  .strictObject({
    min: duration(0, 600_000).describe("Quiet period: a change is rendered once nothing else changed for this long."),
    max: duration(0, 600_000).optional().describe("Longest a render is put off by a stream of changes; default 4 × min (consul-template's rule)."),
  })
  .superRefine((w, ctx) => {
    if (w.max !== undefined && w.max < w.min) ctx.addIssue({ code: "custom", path: ["max"], message: "must not be shorter than min" });
  })
  .describe("Debounce, as consul-template's wait: render after `min` without changes, and at the latest `max` after the first change. None when omitted: every change renders at once.");

export const Template = z
  .strictObject({
    name: z.string().regex(NAME, { error: "expected a name of letters, digits, '.', '_' or '-'" }).describe("Names the template in /status, metrics and the log."),
    source: z.string().min(1).describe("The Liquid template file (relative paths from statepilot's working directory). Read again at every render: editing it re-renders, without a restart."),
    destination: z.string().min(1).describe("The file written: atomically (a temporary file in the same directory, then rename), and only when its content changes."),
    command: Command.optional().describe("Runs after each write (a reload: `[\"kill\", \"-USR2\", \"<pid>\"]`, `nginx -s reload`); a string is split like a job's exec. Its failure is logged, counted and shown in /status."),
    shell: z.boolean().default(false).describe("Run command through /bin/sh -c."),
    commandTimeout: duration(100).prefault("30s").describe("Kill the command after this long."),
    wait: TemplateWait.optional(),
    mode: z.string().regex(MODE, { error: 'expected an octal file mode such as "0644"' }).optional().describe('File mode of the destination, octal ("0640"); default the existing file\'s mode, or 0644 for a new file. The owner of an existing file is kept.'),
    mysql: z
      .strictObject({
        cluster: z.string().regex(NAME).default("default").describe("Cluster name (statepilot/<cluster>/ in Consul)."),
        serviceName: z.string().regex(NAME).default("mysql").describe("The cluster's Consul service."),
      })
      .optional()
      .describe("The MySQL cluster the template's `mysql` object describes; default the cluster of this config's mysql section, else cluster `default` of service `mysql`."),
  })
  .describe("A file rendered from discovery data; see docs/templates.md.");

export const Templates = z
  .array(Template)
  .default([])
  .superRefine((list, ctx) => {
    const names = new Map<string, number>();
    const destinations = new Map<string, number>();
    list.forEach((t, i) => {
      if (names.has(t.name)) ctx.addIssue({ code: "custom", path: [i, "name"], message: `duplicate template name "${t.name}" (also templates[${names.get(t.name)}])` });
      names.set(t.name, i);
      if (destinations.has(t.destination)) ctx.addIssue({ code: "custom", path: [i, "destination"], message: `templates[${destinations.get(t.destination)}] writes the same file` });
      destinations.set(t.destination, i);
    });
  })
  .describe("Files rendered from discovery data (healthy service instances, KV keys, the environment, the MySQL cluster), re-rendered when that data changes, then a command (a reload) runs.");

export type TemplateConfig = z.output<typeof Template>;
