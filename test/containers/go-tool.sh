#!/usr/bin/env bash
# Builds a Go command from a module served by the Go module proxy and caches the binary as
# $STATEPILOT_CACHE/bin/NAME-VERSION (linked as NAME). Used by the container test for the compose v2
# CLI and MinIO's mc, which have no Debian package of the needed version.
#   go-tool.sh NAME MODULE VERSION PACKAGE_DIR
#   go-tool.sh docker-compose github.com/docker/compose/v2 v2.40.3 ./cmd
# The module is downloaded and built as the main module (its own go.mod and go.sum, so its
# replace directives apply); nothing outside the cache is written.
set -euo pipefail
name=$1 module=$2 version=$3 pkg=$4
CACHE="${STATEPILOT_CACHE:-$HOME/.cache/statepilot}"
BIN="$CACHE/bin"
out="$BIN/$name-${version#v}"
mkdir -p "$BIN"
if [ ! -x "$out" ]; then
  command -v go >/dev/null || { echo "go-tool: go is required to build $name" >&2; exit 1; }
  t0=$SECONDS
  dir=$(GOFLAGS=-mod=mod go mod download -json "$module@$version" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  [ -d "$dir" ] || { echo "go-tool: could not download $module@$version" >&2; exit 1; }
  work=$(mktemp -d "${TMPDIR:-/tmp}/statepilot-$name-build.XXXXXX")
  trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
  cp -r "$dir/." "$work/src" && chmod -R u+w "$work/src"
  echo "go-tool: building $name from $module@$version (a few minutes; log: $work/build.log)"
  if ! ( cd "$work/src" && GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$out.tmp" "$pkg" ) >"$work/build.log" 2>&1; then
    tail -30 "$work/build.log" >&2
    echo "go-tool: go build of $module@$version failed" >&2
    exit 1
  fi
  mv "$out.tmp" "$out"
  echo "go-tool: built $out in $((SECONDS - t0))s"
fi
ln -sf "$(basename "$out")" "$BIN/$name"
