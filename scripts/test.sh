#!/usr/bin/env bash
# The whole test suite: installs what is missing, builds, type-checks, then runs the unit and
# integration tests against real Consul, MariaDB, MinIO and Prometheus.
#   scripts/test.sh                 everything
#   scripts/test.sh --project unit  forwarded to vitest
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh || exit 1
echo "==> build and type check"
npm run --silent build || exit 1
npm run --silent typecheck || exit 1
mkdir -p .test-results
rm -f .test-results/vitest.json
echo "==> vitest"
NO_COLOR=1 npx --no-install vitest run --reporter=default --reporter=json --outputFile.json=.test-results/vitest.json "$@"
rc=$?
node scripts/test-summary.mjs .test-results/vitest.json || rc=1
exit $rc
