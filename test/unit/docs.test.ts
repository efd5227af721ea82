import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { renderConfigReference } from "../../src/config/reference.js";
import { renderMetricsReference } from "../../src/telemetry/reference.js";

const read = (p: string) => readFileSync(new URL(`../../${p}`, import.meta.url), "utf8");

describe("generated docs are current (run npm run docs after changing the schema or a metric)", () => {
  it("docs/configuration.md matches the zod schema", () => {
    expect(read("docs/configuration.md")).toBe(renderConfigReference());
  });

  it("docs/metrics.md matches the metric definitions", async () => {
    expect(read("docs/metrics.md")).toBe(await renderMetricsReference());
  });

  it("the configuration reference covers every section and key a reader looks for", () => {
    const doc = renderConfigReference();
    for (const section of ["## mysql", "## mysql.snapshots", "## mysql.snapshots.store (type \"s3\")", "## jobs[]", "## telemetry", "## mysql.lossless"]) expect(doc).toContain(section);
    for (const key of ["`fenceAfter`", "`maximumLagOnFailover`", "`keepLast`", "`forcePathStyle`", "`restarts`"]) expect(doc).toContain(key);
  });
});
