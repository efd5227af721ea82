#!/usr/bin/env bash
# The whole test suite: installs what is missing, builds, type-checks, then runs the unit and
# integration tests against real Consul, MariaDB, MinIO and Prometheus, then (full runs only) the
# images and the compose stack in a real container engine (npm run test:containers).
#   scripts/test.sh                          everything
#   STATEPILOT_CONTAINERS=0 scripts/test.sh  everything but the containers stage
#   scripts/test.sh --project unit           forwarded to vitest
#   scripts/test.sh --loaded [vitest args]   the same with `stress-ng --cpu 2` busy beside it
#                                            (npm run test:loaded): a machine with both cores taken
#
# No server outlives the run. Everything the suite starts carries STATEPILOT_TEST_RUN=<this
# script's pid:start time> in its environment (inherited by whatever it starts in turn); after
# vitest, or when this script is interrupted, what still carries it is reported, stopped, and fails
# the run. Nothing else on the machine is looked at, let alone stopped.
set -uo pipefail
cd "$(dirname "$0")/.."

loaded=0
if [ "${1:-}" = "--loaded" ]; then loaded=1; shift; fi

run_id="$$:$(cut -d' ' -f22 /proc/$$/stat)"
stress_pid=""
vitest_pid=""

stop_load() {
  [ -n "$stress_pid" ] || return 0
  # stress-ng leads its own process group (setsid): its workers go with it.
  kill -TERM -- "-$stress_pid" 2>/dev/null
  for _ in $(seq 50); do kill -0 "$stress_pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL -- "-$stress_pid" 2>/dev/null
  wait "$stress_pid" 2>/dev/null
  echo "==> stress-ng stopped"
  stress_pid=""
}

# Reports and stops what this run left; fails the run if there was anything.
sweep() {
  if node scripts/leftovers.mjs --run "$run_id" --kill; then
    echo "==> no process of this run left behind"
    return 0
  fi
  return 1
}

on_exit() {
  local rc=$?
  stop_load
  exit "$rc"
}
trap on_exit EXIT

on_signal() {
  local sig=$1 code=$2
  trap - INT TERM HUP
  echo "test: $sig: stopping" >&2
  if [ -n "$vitest_pid" ]; then
    # vitest ends its workers with SIGTERM; the lab and server cleanup runs in them then.
    kill -TERM "$vitest_pid" 2>/dev/null
    for _ in $(seq 600); do kill -0 "$vitest_pid" 2>/dev/null || break; sleep 0.1; done
  fi
  sweep >&2
  exit "$code"
}
trap 'on_signal SIGINT 130' INT
trap 'on_signal SIGTERM 143' TERM
trap 'on_signal SIGHUP 129' HUP

bash scripts/install.sh || exit 1

if [ $loaded = 1 ]; then
  command -v stress-ng >/dev/null || { echo "test: stress-ng is not installed (scripts/install.sh installs it)" >&2; exit 1; }
  setsid stress-ng --cpu 2 --quiet &
  stress_pid=$!
  echo "==> stress-ng --cpu 2 running beside the tests (pid $stress_pid)"
fi

echo "==> build and type check"
npm run --silent build || exit 1
npm run --silent typecheck || exit 1
echo "==> lint (biome)"
./node_modules/.bin/biome lint --max-diagnostics=30 || exit 1

# Leftovers of earlier runs that were killed before they could clean up (their test.sh is gone).
node scripts/leftovers.mjs --stale --kill || true

mkdir -p .test-results
rm -f .test-results/vitest.json
echo "==> vitest"
# In the background so that a signal reaches this script's trap at once (bash defers traps while a
# foreground command runs).
NO_COLOR=1 STATEPILOT_TEST_RUN="$run_id" ./node_modules/.bin/vitest run --reporter=default --reporter=json --outputFile.json=.test-results/vitest.json "$@" &
vitest_pid=$!
wait "$vitest_pid"
rc=$?
vitest_pid=""
summary=$(node scripts/test-summary.mjs .test-results/vitest.json "$rc") || rc=1
echo "$summary"
sweep || rc=1

# The images and the compose stack, after the main suite, on a full run (no vitest arguments).
if [ $# -eq 0 ] && [ "${STATEPILOT_CONTAINERS:-1}" != 0 ]; then
  echo "==> containers (images built and run in a real engine: npm run test:containers)"
  npx --no-install tsc -p test/containers/tsconfig.json || exit 1
  # The log exists before tail opens it (tail lost the whole stage when it looked first).
  : > .test-results/containers.log
  STATEPILOT_TEST_RUN="$run_id" node dist/test/containers/main.js > .test-results/containers.log 2>&1 &
  vitest_pid=$!
  # Shown as it comes; tail ends once the test has ended and its last lines are out.
  tail -n +1 --pid="$vitest_pid" -f .test-results/containers.log &
  tail_pid=$!
  wait "$vitest_pid" || rc=1
  vitest_pid=""
  wait "$tail_pid"
  line=$(grep -E '^containers: scenarios=[0-9]+ passed=[0-9]+' .test-results/containers.log | tail -1)
  scenarios=$(sed -E 's/.*scenarios=([0-9]+).*/\1/' <<<"${line:-scenarios=0}")
  spassed=$(sed -E 's/.*passed=([0-9]+).*/\1/' <<<"${line:-passed=0}")
  ok=$(grep -cE '^containers: scenarios=([0-9]+) passed=\1 lost=0 split_brain_samples=0$' .test-results/containers.log)
  [ "$ok" -ge 1 ] && [ "${scenarios:-0}" -gt 0 ] || rc=1
  sweep || rc=1
  vp=$(sed -E 's/^tests: ([0-9]+) passed.*/\1/' <<<"$(tail -1 <<<"$summary")")
  vf=$(sed -E 's/^tests: [0-9]+ passed, ([0-9]+) failed.*/\1/' <<<"$(tail -1 <<<"$summary")")
  cfail=$(( ${scenarios:-0} - ${spassed:-0} ))
  [ "$ok" -ge 1 ] || [ "$cfail" -gt 0 ] || cfail=1
  echo "tests: $(( vp + ${spassed:-0} )) passed, $(( vf + cfail )) failed"
fi
exit $rc
