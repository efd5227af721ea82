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
# Process names are matched one at a time (pgrep matches at most 15 characters of a name), plus
# the statepilot nodes the lab starts.
servers() { { for n in consul mariadbd minio prometheus tini; do pgrep -x "$n"; done; pgrep -f 'dist/src/cli/main.js run'; } | sort; }
before=$(servers)
mkdir -p .test-results
rm -f .test-results/vitest.json
echo "==> vitest"
NO_COLOR=1 npx --no-install vitest run --reporter=default --reporter=json --outputFile.json=.test-results/vitest.json "$@"
rc=$?
node scripts/test-summary.mjs .test-results/vitest.json "$rc" || rc=1
leftover=$(comm -13 <(echo "$before") <(servers) | tr '\n' ' ')
if [ -n "${leftover// /}" ]; then
  echo "test: processes started by the suite are still running: $leftover" >&2
  ps -o pid,ppid,comm,args -p ${leftover// /,} >&2 || true
  rc=1
else
  echo "==> no server process left behind"
fi
exit $rc
