#!/usr/bin/env bash
# Installs the real components statepilot is tested against, idempotently.
#   scripts/install.sh            everything
#   scripts/install.sh consul     one part (apt | consul | minio | mc | prometheus | mysql | node)
# Binaries built from the Go module proxy are cached under $STATEPILOT_CACHE/bin.
# `mysql` is MySQL from Debian sid (9.7 when this was written: no Debian suite reachable here has
# 8.x), debootstrapped into $STATEPILOT_CACHE/mysql-sid without touching the host's apt sources;
# $STATEPILOT_CACHE/bin/mysqld-<major.minor> and mysql-<major.minor> run it (mysql.binary).
set -euo pipefail

CONSUL_VERSION="${STATEPILOT_CONSUL_VERSION:-v1.22.0}"
# MinIO publishes no semver tags as Go module versions; this is the pseudo-version of a master commit.
MINIO_VERSION="${STATEPILOT_MINIO_VERSION:-v0.0.0-20260212201848-7aac2a2c5b7c}"
# Debian's prometheus is built without consul_sd_configs, which discovery through Consul needs.
PROMETHEUS_VERSION="${STATEPILOT_PROMETHEUS_VERSION:-v0.305.1}"
# The MinIO client, for what a user would do instead in bench:snapshot (mc pipe / mc cat); no semver tags either.
MC_VERSION="${STATEPILOT_MC_VERSION:-v0.0.0-20250313080218-cf909e1063a9}"
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
  # debootstrap makes the Debian sid root MySQL comes from (install_mysql).
  local pkgs=(mariadb-server mariadb-backup tini prometheus iproute2 docker-compose stress-ng haproxy nginx etcd-server debootstrap)
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
    for svc in mariadb prometheus etcd; do as_root sh -c "command -v service >/dev/null && service $svc stop >/dev/null 2>&1 || true"; done
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

install_mc() {
  install_go_tool mc github.com/minio/mc "$MC_VERSION" github.com/minio/mc --version
}

install_prometheus() {
  install_go_tool prometheus github.com/prometheus/prometheus "$PROMETHEUS_VERSION" \
    github.com/prometheus/prometheus/cmd/prometheus --version "with Consul service discovery"
}

# MySQL from Debian sid in its own minbase root (no Debian suite reachable here has MySQL 8.x; sid
# has mysql-server-core 9.7). The host's apt sources are not touched: debootstrap fetches from the
# mirror the host uses. The binaries run on the host through the root's own loader and libraries,
# via wrappers in $BIN (exec'ing, so setpriv --pdeathsig and signals reach mysqld itself):
#   $BIN/mysqld-<major.minor>, $BIN/mysql-<major.minor>, and the links $BIN/mysqld-sid, $BIN/mysql-sid.
MYSQL_ROOT="$CACHE/mysql-sid"
debian_mirror() {
  if [ -n "${STATEPILOT_DEBIAN_MIRROR:-}" ]; then echo "$STATEPILOT_DEBIAN_MIRROR"; return; fi
  local uri
  uri=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | sed -n 's/^URIs:[[:space:]]*\(\S*\/debian\/\?\)$/\1/p' | head -1)
  [ -z "$uri" ] && uri=$(sed -n 's/^deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\?\(\S*\/debian\/\?\)[[:space:]].*/\2/p' /etc/apt/sources.list 2>/dev/null | head -1)
  echo "${uri:-http://deb.debian.org/debian}"
}
mysql_wrapper() { # mysql_wrapper OUT PROGRAM (usr/sbin/mysqld | usr/bin/mysql)
  local out=$1 prog=$2 d=$MYSQL_ROOT extra=""
  if [ "$prog" = usr/sbin/mysqld ]; then
    # The compiled-in paths (/usr/lib/mysql/plugin, /usr/share/mysql) are the host's: point at DIR's.
    extra="--basedir=\"\$D/usr\" --plugin-dir=\"\$D/usr/lib/mysql/plugin\" --lc-messages-dir=\"\$D/usr/share/mysql\" --character-sets-dir=\"\$D/usr/share/mysql/charsets\""
  else
    extra="--character-sets-dir=\"\$D/usr/share/mysql/charsets\""
  fi
  cat > "$out.tmp" <<WRAPPER
#!/bin/sh
# $(basename "$prog") from $MYSQL_VERSION_TEXT (Debian sid), installed by statepilot's scripts/install.sh mysql.
# Runs $d/$prog through that root's own loader and libraries. --no-defaults and
# --defaults-file must stay first, so they are kept ahead of the path options added here.
D='$d'
first=
case "\${1:-}" in --no-defaults|--defaults-file=*|--defaults-extra-file=*|--print-defaults) first=\$1; shift ;; esac
exec "\$D/lib64/ld-linux-x86-64.so.2" --library-path "\$D/usr/lib/x86_64-linux-gnu:\$D/lib/x86_64-linux-gnu" --argv0 "\$D/$prog" "\$D/$prog" \${first:+"\$first"} $extra "\$@"
WRAPPER
  chmod 755 "$out.tmp" && mv "$out.tmp" "$out"
}
mysql_works() { [ -x "$MYSQL_ROOT/usr/sbin/mysqld" ] && [ -f "$MYSQL_ROOT/.statepilot-complete" ] && \
  "$MYSQL_ROOT/lib64/ld-linux-x86-64.so.2" --library-path "$MYSQL_ROOT/usr/lib/x86_64-linux-gnu:$MYSQL_ROOT/lib/x86_64-linux-gnu" "$MYSQL_ROOT/usr/sbin/mysqld" --version >/dev/null 2>&1; }
install_mysql() {
  step "MySQL from Debian sid (mysql-server-core, mysql-client) in $MYSQL_ROOT"
  local note="cached"
  if ! mysql_works; then
    need debootstrap "apt-get install debootstrap"
    [ "$(id -u)" = 0 ] || die "debootstrap needs root"
    local mirror tmp="$MYSQL_ROOT.tmp" log="$CACHE/mysql-sid-debootstrap.log"
    mirror=$(debian_mirror)
    echo "    debootstrap --variant=minbase sid from $mirror (about a minute, 640 MB; log: $log)"
    rm -rf "$tmp"
    debootstrap --variant=minbase --include=mysql-server-core,mysql-client sid "$tmp" "$mirror" >"$log" 2>&1 &
    local pid=$!
    spinner "$pid" "debootstrap"
    wait "$pid" || { tail -20 "$log" >&2; die "debootstrap of sid failed (log: $log)"; }
    # Only what running the binaries needs: docs and apt's caches go (about 100 MB).
    rm -rf "$tmp/usr/share/doc" "$tmp/usr/share/man" "$tmp/usr/share/info" "$tmp/var/cache/apt/archives/"*.deb "$tmp/var/lib/apt/lists/"*
    touch "$tmp/.statepilot-complete"
    rm -rf "$MYSQL_ROOT" && mv "$tmp" "$MYSQL_ROOT"
    mysql_works || die "$MYSQL_ROOT/usr/sbin/mysqld does not run through its own loader"
    note="installed"
  fi
  MYSQL_VERSION_TEXT=$("$MYSQL_ROOT/lib64/ld-linux-x86-64.so.2" --library-path "$MYSQL_ROOT/usr/lib/x86_64-linux-gnu:$MYSQL_ROOT/lib/x86_64-linux-gnu" "$MYSQL_ROOT/usr/sbin/mysqld" --version 2>&1 | sed 's/^.*Ver /MySQL /; s/ for .*//' | head -1)
  local mm; mm=$(echo "$MYSQL_VERSION_TEXT" | sed -n 's/^MySQL \([0-9]*\.[0-9]*\).*/\1/p')
  [ -n "$mm" ] || die "cannot read the version of $MYSQL_ROOT/usr/sbin/mysqld: $MYSQL_VERSION_TEXT"
  mysql_wrapper "$BIN/mysqld-$mm" usr/sbin/mysqld
  mysql_wrapper "$BIN/mysql-$mm" usr/bin/mysql
  ln -sf "mysqld-$mm" "$BIN/mysqld-sid"
  ln -sf "mysql-$mm" "$BIN/mysql-sid"
  done_step "$note; $("$BIN/mysqld-$mm" --version 2>&1 | head -1); mysql.binary: $BIN/mysqld-$mm"
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
parts=("$@"); [ ${#parts[@]} -eq 0 ] && parts=(apt consul minio mc prometheus mysql node)
# mc: the MinIO client, for pitr-readonly.test.ts (a user's policy switched by `mc admin`) and bench:snapshot.
for p in "${parts[@]}"; do
  case "$p" in
    apt) install_apt ;; consul) install_consul ;; minio) install_minio ;; mc) install_mc ;; prometheus) install_prometheus ;; mysql) install_mysql ;; node) install_node ;;
    *) die "unknown part '$p' (expected apt, consul, minio, mc, prometheus, mysql or node)" ;;
  esac
done
printf '==> install finished in %ss (cache: %s)\n' "$(elapsed "$total_start")" "$BIN"
