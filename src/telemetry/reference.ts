import { ArchiveMetrics } from "../archive/archiver.js";
import { MysqlMetrics } from "../mysql/metrics.js";
import { SnapshotMetrics } from "../snapshot/scheduler.js";
import { Metrics } from "./metrics.js";

/**
 * docs/metrics.md, generated from the metric objects themselves: every statepilot_* metric with
 * its type, labels and help text (a unit test fails when the file is stale).
 */
export async function renderMetricsReference(): Promise<string> {
  const metrics = new Metrics();
  new MysqlMetrics(metrics.registry);
  new SnapshotMetrics(metrics.registry);
  new ArchiveMetrics(metrics.registry);
  const rows: string[] = [];
  type Described = { name: string; labelNames?: string[]; get(): Promise<{ type: string; help: string }> };
  for (const m of metrics.registry.getMetricsAsArray() as unknown as Described[]) {
    const name = m.name;
    if (!name.startsWith("statepilot_")) continue;
    const got = await m.get();
    const labels = (m.labelNames ?? []).map((l) => `\`${l}\``).join(", ");
    rows.push(`| \`${name}\` | ${got.type} | ${labels} | ${got.help.replace(/\|/g, "\\|")} |`);
  }
  rows.sort();
  return [
    "# Metrics reference",
    "",
    "Generated from the metric definitions by `npm run docs`; do not edit by hand (`test/unit/docs.test.ts`",
    "fails when this file is stale). Served at `/metrics` on the telemetry port (default 9090) with the",
    "`process_*` and `nodejs_*` metrics of prom-client; user metrics declared in `telemetry.metrics` come",
    "in addition. No label is called `job` or `instance`: Prometheus sets those on every target.",
    "",
    "| metric | type | labels | help |",
    "|---|---|---|---|",
    ...rows,
    "",
    "`statepilot_mysql_*` exist when the config has a `mysql` section, `statepilot_snapshot*` when snapshots",
    "are possible (always, with a `mysql` section). Useful alerts:",
    "",
    "- `sum(statepilot_mysql_role{role=\"primary\"}) != 1` for more than a minute: no primary, or the view is split.",
    "- `statepilot_mysql_replication_lag_seconds > 30` on a replica.",
    "- `increase(statepilot_mysql_fencing_actions_total[10m]) > 0`: a node fenced itself; read its log.",
    "- `statepilot_mysql_role{role=\"diverged\"} == 1`: a node needs a rebuild (see docs/operations.md).",
    "- `max(statepilot_snapshot_latest_age_seconds) > 2 * <interval>` or `increase(statepilot_snapshot_failures_total[1h]) > 0`.",
    "",
  ].join("\n");
}
