// Writes docs/configuration.md and docs/metrics.md from the code (run through `npm run docs`).
import { writeFileSync } from "node:fs";
import { renderConfigReference } from "../dist/src/config/reference.js";
import { renderMetricsReference } from "../dist/src/telemetry/reference.js";

writeFileSync(new URL("../docs/configuration.md", import.meta.url), renderConfigReference());
writeFileSync(new URL("../docs/metrics.md", import.meta.url), await renderMetricsReference());
console.log("docs/configuration.md and docs/metrics.md written");
