#!/usr/bin/env bash
# Installs the real components statepilot is tested against, idempotently.
#   scripts/install.sh            everything
#   scripts/install.sh consul     one part (apt | consul | minio | prometheus | node)
# Binaries built from the Go module proxy are cached under $STATEPILOT_CACHE/bin.
set -euo pipefail

CONSUL_VERSION="${STATEPILOT_CONSUL_VERSION:-v1.22.0}"
# MinIO publishes no semver tags as Go module versions; this is the pseudo-version of a master commit.
MINIO_VERSION="${STATEPILOT_MINIO_VERSION:-v0.0.0-20260212201848-7aac2a2c5b7c}"
# Debian's prometheus is built without consul_sd_configs, which discovery through Consul needs.
PROMETHEUS_VERSION="${STATEPILOT_PROMETHEUS_VERSION:-v0.305.1}"
CACHE="${STATEPILOT_CACHE:-$HOME/.cache/statepilot}"
BIN="$CACHE/bin"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
mkdir -p "$BIN"

now() { date +%s.%N; }
step_start=""
step() { step_start=$(now); printf '==> %s\n' "$*"; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN{printf "%.1f", b-a}'; }
done_step() { printf '    done in %ss%s\n' "$(elapsed "$step_start")" "${1:+ ($1)}"; }
die() { printf 'install: error: %s\n' "$*" >&2; exit 1; }
# On a terminal: what runs, for how long, and where its log is, until PID ends; silent otherwise.
spinner() {
  local pid=$1 what=$2 t0=$SECONDS
  [ -t 1 ] || return 0
  while kill -0 "$pid" 2>/dev/null; do
    printf '\r\033[2K    %s: %ss' "$what" "$((SECONDS - t0))"
    sleep 1
  done
  printf '\r\033[2K'
}
need() { command -v "$1" >/dev/null 2>&1 || die "$1 is required but not found on PATH ($2)"; }

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else need sudo "run as root or install sudo"; sudo "$@"; fi; }

install_apt() {
  # docker-compose (v1) validates compose/docker-compose.yml; no Docker engine is needed for that.
  local pkgs=(mariadb-server mariadb-backup tini prometheus iproute2 docker-compose stress-ng haproxy nginx)
  step "Debian packages: ${pkgs[*]}"
  local missing=()
  for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if [ ${#missing[@]} -eq 0 ]; then done_step "already installed"; return; fi
  echo "    missing: ${missing[*]}"
  # No system services may be started by the install: the tests run their own instances.
  local policy=/usr/sbin/policy-rc.d had_policy=0
  [ -e "$policy" ] && had_policy=1
  if [ $had_policy = 0 ]; then as_root sh -c "printf '#!/bin/sh\nexit 101\n' > $policy && chmod +x $policy"; fi
  trap '[ $had_policy = 0 ] && as_root rm -f '"$policy"'' RETURN
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq || die "apt-get update failed"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || die "apt-get install ${missing[*]} failed"
  # Debian's packages may have started their own service anyway when no policy layer applies:
  # stop those services only (never other MariaDB or Prometheus processes on this host).
  if [ $had_policy = 1 ]; then
    for svc in mariadb prometheus; do as_root sh -c "command -v service >/dev/null && service $svc stop >/dev/null 2>&1 || true"; done
  fi
  done_step "installed ${missing[*]}"
}

# Builds a Go main package from the module proxy through a throwaway wrapper module and caches
# the binary as $BIN/NAME-VERSION (linked as $BIN/NAME). `go install pkg@v` refuses modules whose
# go.mod has replace directives, and exclude/replace lines only apply in the main module, so the
# wrapper copies what the target's go.mod says: the exact versions of its sibling modules
# (MODULE/...; its own tree replaces them with local directories), its exclude block, and its
# replaces by other remote modules.
#   install_go_tool NAME MODULE VERSION MAIN_PACKAGE VERSION_ARG [NOTE]
install_go_tool() {
  local name=$1 module=$2 version=$3 pkg=$4 version_arg=$5 note=${6:-}
  local out="$BIN/$name-${version#v}"
  step "$name $version${note:+ ($note)} from the Go module proxy"
  if [ ! -x "$out" ]; then
    need go "install Go >= 1.22; GOTOOLCHAIN fetches the version a module needs"
    local modfile requires excludes replaces
    modfile=$(GOFLAGS=-mod=mod go mod download -json "$module@$version" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
    [ -f "$modfile" ] || die "could not download the go.mod of $module@$version"
    requires=$(grep -E "^\s*${module//./\\.}/\S+ v" "$modfile" | sed 's,//.*,,' || true)
    excludes=$(awk '/^exclude \(/{f=1;next} f&&/^\)/{f=0} f{sub(/\/\/.*/,""); print}' "$modfile")
    replaces=$(sed -n 's/^replace \(.* => [^.\/].*\)$/\1/p' "$modfile")
    [ -n "$requires" ] && echo "    pinned siblings: $(echo "$requires" | awk '{printf "%s@%s ", $1, $2}' | sed "s,$module/,,g")"
    local work; work=$(mktemp -d "${TMPDIR:-/tmp}/statepilot-$name-build.XXXXXX")
    {
      echo "module local/${name}build"
      echo
      echo "go $(go env GOVERSION | sed 's/^go//; s/\([0-9]*\.[0-9]*\).*/\1/')"
      echo
      echo "require $module $version"
      [ -n "$requires" ] && printf 'require (\n%s\n)\n' "$requires"
      [ -n "$excludes" ] && printf 'exclude (\n%s\n)\n' "$excludes"
      [ -n "$replaces" ] && printf 'replace (\n%s\n)\n' "$replaces"
      echo
    } > "$work/go.mod"
    printf 'package tools\n\nimport _ "%s"\n' "$pkg" > "$work/tools.go"
    echo "    wrapper module: $work/go.mod"
    ( cd "$work" && GOFLAGS=-mod=mod GOTOOLCHAIN="${GOTOOLCHAIN:-auto}" go mod tidy -e >"$work/tidy.log" 2>&1 ) \
      || { tail -30 "$work/tidy.log" >&2; die "go mod tidy for $module@$version failed (log: $work/tidy.log)"; }
    ( cd "$work" && GOTOOLCHAIN="${GOTOOLCHAIN:-auto}" CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$out.tmp" "$pkg" >"$work/build.log" 2>&1 ) &
    local build_pid=$!
    spinner "$build_pid" "building $name (a few minutes; log: $work/build.log)"
    wait "$build_pid" \
      || { tail -30 "$work/build.log" >&2; die "go build $pkg from $module@$version failed (log: $work/build.log)"; }
    mv "$out.tmp" "$out"
    rm -rf "$work"
  fi
  ln -sf "$(basename "$out")" "$BIN/$name"
  done_step "$out: $("$out" "$version_arg" 2>&1 | head -1)"
}

install_consul() {
  # The checksum database reachable here answers 404 for some of Consul's sibling modules
  # (envoyextensions, proto-public, troubleshoot); the module proxy still serves them.
  GONOSUMDB="${GONOSUMDB:+$GONOSUMDB,}github.com/hashicorp/consul" \
    install_go_tool consul github.com/hashicorp/consul "$CONSUL_VERSION" github.com/hashicorp/consul version
}

install_minio() {
  install_go_tool minio github.com/minio/minio "$MINIO_VERSION" github.com/minio/minio --version
}

install_prometheus() {
  install_go_tool prometheus github.com/prometheus/prometheus "$PROMETHEUS_VERSION" \
    github.com/prometheus/prometheus/cmd/prometheus --version "with Consul service discovery"
}

install_node() {
  step "npm dependencies"
  if [ -d "$ROOT/node_modules" ] && [ "$ROOT/node_modules/.package-lock.json" -nt "$ROOT/package-lock.json" ]; then
    done_step "up to date"; return
  fi
  ( cd "$ROOT" && npm ci --no-audit --no-fund --loglevel=error ) || die "npm ci failed"
  done_step
}

total_start=$(now)
parts=("$@"); [ ${#parts[@]} -eq 0 ] && parts=(apt consul minio prometheus node)
for p in "${parts[@]}"; do
  case "$p" in
    apt) install_apt ;; consul) install_consul ;; minio) install_minio ;; prometheus) install_prometheus ;; node) install_node ;;
    *) die "unknown part '$p' (expected apt, consul, minio, prometheus or node)" ;;
  esac
done
printf '==> install finished in %ss (cache: %s)\n' "$(elapsed "$total_start")" "$BIN"
