#!/usr/bin/env bash
# Builds a Go program from the module proxy once per version and caches the binary,
# so only the first run on a machine pays for it.
# usage: tools/images/gobin.sh consul|registry     -> prints the cached binary's path
#        tools/images/gobin.sh -n consul|registry  -> only says whether it is cached (exit 0) or not
set -euo pipefail

CACHE="${MICROSWARM_CACHE:-$HOME/.cache/microswarm}"
CONSUL_VERSION="${CONSUL_VERSION:-1.20.5}"
REGISTRY_VERSION="${REGISTRY_VERSION:-3.1.2}"

CHECK_ONLY=""
if [ "${1:-}" = -n ]; then CHECK_ONLY=1; shift; fi

build() { # name version module-path package
  local name=$1 version=$2 module=$3 pkg=$4
  local out="$CACHE/bin/$name-$version"
  if [ -n "$CHECK_ONLY" ]; then if [ -x "$out" ]; then return 0; else return 1; fi; fi
  if [ -x "$out" ]; then echo "$out"; return; fi
  local work
  work=$(mktemp -d)
  trap 'rm -rf "$work"' RETURN
  echo "building $name $version (first run only)..." >&2
  (
    cd "$work"
    go mod init "build$name" >/dev/null 2>&1
    # consul-awsauth is not in the checksum database at the versions consul pins.
    GONOSUMDB=github.com/hashicorp/consul-awsauth GOFLAGS=-mod=mod go get "$module@v$version" >&2
    GONOSUMDB=github.com/hashicorp/consul-awsauth GOFLAGS=-mod=mod CGO_ENABLED=0 \
      go build -trimpath -ldflags '-s -w' -o "$work/$name" "$pkg" >&2
  )
  mkdir -p "$CACHE/bin"
  mv "$work/$name" "$out.tmp" && mv "$out.tmp" "$out"
  echo "$out"
}

case "${1:-}" in
  consul) build consul "$CONSUL_VERSION" github.com/hashicorp/consul github.com/hashicorp/consul ;;
  registry) build registry "$REGISTRY_VERSION" github.com/distribution/distribution/v3 github.com/distribution/distribution/v3/cmd/registry ;;
  *) echo "usage: $0 [-n] consul|registry" >&2; exit 2 ;;
esac
