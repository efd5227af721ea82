// Prints the suite's closing line, "tests: N passed, N failed[, N skipped]", from vitest's JSON report.
// A test file that failed without a failing test (an error in a hook or at import) counts as one
// failure, and so does a non-zero vitest exit with no failed test (e.g. an unhandled rejection).
import { readFileSync } from "node:fs";

const file = process.argv[2];
const vitestExit = Number(process.argv[3] ?? 0);
let report;
try {
  report = JSON.parse(readFileSync(file, "utf8"));
} catch (err) {
  console.error(`test-summary: cannot read ${file}: ${err.message}`);
  process.exit(1);
}
let passed = 0;
let failed = 0;
let skipped = 0;
for (const suite of report.testResults ?? []) {
  const results = suite.assertionResults ?? [];
  const suiteFailed = results.filter((r) => r.status === "failed").length;
  passed += results.filter((r) => r.status === "passed").length;
  skipped += results.filter((r) => r.status === "pending" || r.status === "skipped" || r.status === "todo").length;
  failed += suiteFailed;
  if (suite.status === "failed" && suiteFailed === 0) {
    failed += 1;
    console.log(`failed outside a test: ${suite.name}: ${String(suite.message ?? "").split("\n")[0]}`);
  }
}
if (vitestExit !== 0 && failed === 0) {
  failed += 1;
  console.log(`vitest exited with code ${vitestExit} although no test failed (unhandled errors are reported above)`);
}
console.log(`tests: ${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ""}`);
process.exit(failed > 0 || passed === 0 ? 1 : 0);
