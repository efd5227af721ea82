#!/usr/bin/env bash
# Provides the Debian base image the Dockerfiles start from (default debian:bookworm-slim): kept if
# the engine already has it, pulled if a registry answers, and otherwise made here without any
# registry: debootstrap --variant=minbase from the Debian mirror apt uses, then `docker import`.
# The result is cached in the engine (the next run skips all of this).
#   base-image.sh [IMAGE] [SUITE]
set -euo pipefail
image=${1:-debian:bookworm-slim}
suite=${2:-bookworm}
if docker image inspect "$image" >/dev/null 2>&1; then echo "base-image: $image present"; exit 0; fi
if timeout 30 docker pull -q "$image" >/dev/null 2>&1; then echo "base-image: $image pulled"; exit 0; fi

mirror=${STATEPILOT_DEBIAN_MIRROR:-}
if [ -z "$mirror" ]; then
  mirror=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | sed -n 's/^URIs:[[:space:]]*\(\S*\/debian\/\?\)$/\1/p' | head -1)
  [ -z "$mirror" ] && mirror=$(sed -n 's/^deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\?\(\S*\/debian\/\?\)[[:space:]].*/\2/p' /etc/apt/sources.list 2>/dev/null | head -1)
  mirror=${mirror:-http://deb.debian.org/debian}
fi
command -v debootstrap >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
t0=$SECONDS
dir=$(mktemp -d "${TMPDIR:-/tmp}/statepilot-rootfs.XXXXXX")
trap 'rm -rf "$dir"' EXIT
echo "base-image: no $image to pull; debootstrap --variant=minbase $suite from $mirror (about a minute)"
if ! debootstrap --variant=minbase "$suite" "$dir" "$mirror" >"$dir.log" 2>&1; then
  tail -20 "$dir.log" >&2; rm -f "$dir.log"; echo "base-image: debootstrap failed" >&2; exit 1
fi
rm -f "$dir.log"
# Like the official slim image: the same apt sources as this host (so builds use the same mirror and
# security suite), no docs or man pages in later package installs, no apt caches.
if [ "$suite" = bookworm ] && ls /etc/apt/sources.list.d/*.sources >/dev/null 2>&1 && [ ! -f /etc/apt/sources.list ]; then
  rm -f "$dir/etc/apt/sources.list"
  for f in /etc/apt/sources.list.d/*.sources; do grep -q '^URIs:.*/debian' "$f" && cp "$f" "$dir/etc/apt/sources.list.d/"; done
fi
cat > "$dir/etc/dpkg/dpkg.cfg.d/docker" <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
CFG
cat > "$dir/etc/apt/apt.conf.d/docker-clean" <<'CFG'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";
CFG
rm -rf "$dir"/usr/share/doc/* "$dir"/usr/share/man/* "$dir"/usr/share/info/* "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/* "$dir"/var/log/*.log "$dir"/tmp/*
tar -C "$dir" --numeric-owner -c . | docker import -c 'CMD ["bash"]' -m "debootstrap --variant=minbase $suite (statepilot test/containers)" - "$image" >/dev/null
echo "base-image: made $image in $((SECONDS - t0))s ($(docker image inspect -f '{{.Size}}' "$image" | awk '{printf "%.0f MB", $1/1e6}'))"
