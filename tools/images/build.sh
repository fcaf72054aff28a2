#!/usr/bin/env bash
# Builds, idempotently and with caching, the images the local cloud serves, and pushes the
# ones droplets pull into the local registry under their real names, so the provider's
# defaults are what users pull from Docker Hub.
#   tools/images/build.sh            all images
#   tools/images/build.sh node ...   only some (node, consul, demoapp, haproxy, registrator)
# Prints nothing on stdout; progress goes to stderr. A cached run prints one line. When
# something must be built, it first lists what and about how long (a first run compiles
# Consul and the registry from source and debootstraps the base: about a quarter of an
# hour), then names each image as it builds it, with a heartbeat on long steps. The output
# of the builders themselves goes to $CACHE/logs/ (debootstrap's to $CACHE/debootstrap.log),
# and its end is shown if a step fails.
set -euo pipefail
cd "$(dirname "$0")"
HERE=$(pwd)
PROGRESS_TAG=images
# shellcheck source=tools/progress.sh
source "$HERE/../progress.sh"

CACHE="${MICROSWARM_CACHE:-$HOME/.cache/microswarm}"
CONSUL_VERSION="${CONSUL_VERSION:-1.20.5}"
NODE_IMAGE="${MICROSWARM_NODE_IMAGE:-microswarm/node:bookworm}"
CONSUL_IMAGE="hashicorp/consul:$CONSUL_VERSION"
HAPROXY_IMAGE=haproxy:2.6
DEMOAPP_VERSIONS="1.0.0 2.0.0"
# The registrator's tag is the provider's default image, so the two cannot drift apart.
REGISTRATOR_IMAGE=$(grep -o 'microswarm/registrator:[0-9A-Za-z.-]*' "$HERE/../../internal/registrator/image.go")
export DOCKER_BUILDKIT=0
LOGS="$CACHE/logs"
mkdir -p "$CACHE" "$LOGS"

have_image() { docker image inspect "$1" >/dev/null 2>&1; }

# Images built from a directory here carry a key of what they are built from (the files of
# the directory, the root filesystem's package list and EXTRA), so that a changed
# Dockerfile or entrypoint rebuilds the image rather than the cache serving the old one.
INPUTS_LABEL=io.microswarm.inputs
inputs_key() { # DIR [EXTRA]
  { (cd "$1" && for f in $(ls | sort); do echo "$f"; cat "$f"; done); echo "$ROOTFS_KEY ${2:-}"; } | sha256sum | cut -c1-12
}
# What the plan below knows of each image, read by one docker call (image_facts) rather
# than one per question: its ID (none: not there) and its inputs label, by tag.
declare -A IMAGE_ID=() IMAGE_KEY=()
image_facts() { # IMAGE...
  local tags id key tag
  while read -r tags id key; do
    for tag in $(tr -d '[]"' <<<"$tags" | tr ',' ' '); do
      IMAGE_ID[$tag]=$id IMAGE_KEY[$tag]=$key
    done
  done < <(docker image inspect -f "{{json .RepoTags}} {{.Id}} {{with .Config.Labels}}{{index . \"$INPUTS_LABEL\"}}{{end}}" "$@" 2>/dev/null || true)
}
known_image() { [ -n "${IMAGE_ID[$1]:-}" ]; }
# stale IMAGE KEY prints "rebuild" unless IMAGE is there and was built from KEY.
stale() {
  [ -n "${IMAGE_ID[$1]:-}" ] && [ "${IMAGE_KEY[$1]:-}" = "$2" ] || echo rebuild
}
stdout_to_stderr() { "$@" >&2; }

# step LOG WHAT CMD...: runs CMD with a heartbeat and its stderr in LOG (stdout untouched);
# if it fails, shows the end of LOG and exits.
step() {
  local log=$1 what=$2
  shift 2
  run_long -l "$log" "$what" "$@" && return 0
  say "failed: $what; the end of $log:"
  tail -20 "$log" >&2
  exit 1
}

# Pushes IMAGE into the registry that serves the droplets, as 127.0.0.1:PORT/IMAGE.
PUSH_LIST=()
queue_push() { PUSH_LIST+=("$1"); }

# The Debian packages of the root filesystem every image here is built from. The cache
# is keyed by the list, so changing it rebuilds the root filesystem. ufw is the droplets'
# firewall (docker-20-04 enables it, as DigitalOcean's image does); busybox-static,
# dumb-init and gosu are what the consul image's entrypoint runs on (tools/images/README.md).
ROOTFS_PACKAGES=docker.io,openssh-server,iptables,iproute2,ca-certificates,procps,curl,haproxy,ufw,busybox-static,dumb-init,gosu
ROOTFS_KEY=$(printf '%s' "$ROOTFS_PACKAGES" | sha256sum | cut -c1-12)
ROOTFS_IMAGE="microswarm/node-rootfs:bookworm-$ROOTFS_KEY"

build_rootfs() {
  local rootfs_image=$ROOTFS_IMAGE
  if ! have_image "$rootfs_image"; then
    local tarball="$CACHE/rootfs/bookworm-$ROOTFS_KEY.tar"
    if [ ! -s "$tarball" ]; then
      say "base root filesystem: debootstrap of Debian bookworm (first run only)"
      local dir
      dir=$(mktemp -d)
      # debootstrap reports on stdout: all of it goes to the log.
      step "$CACHE/debootstrap.log" "running debootstrap" \
        stdout_to_stderr debootstrap --variant=minbase --include="$ROOTFS_PACKAGES" bookworm "$dir"
      mkdir -p "$CACHE/rootfs"
      tar -C "$dir" -c . >"$tarball.tmp" && mv "$tarball.tmp" "$tarball"
      rm -rf "$dir"
    fi
    say "base root filesystem: importing $rootfs_image"
    step "$LOGS/import.log" "importing $rootfs_image" docker import "$tarball" "$rootfs_image" >/dev/null
  fi
}

# must_build IMAGE: whether the plan below found IMAGE missing or built from other inputs.
# An image it found current is not built again: even a docker build that only hits its
# cache costs a second or two on a busy machine, and make demo runs this script every time.
must_build() { [ -n "${COLD[$1]:-}" ]; }

build_node() {
  build_rootfs
  begin_image "$NODE_IMAGE"
  if must_build "$NODE_IMAGE"; then
    step "$LOGS/node.log" "building $NODE_IMAGE" \
      docker build -q -t "$NODE_IMAGE" --build-arg BASE="$ROOTFS_IMAGE" --label "$INPUTS_LABEL=$NODE_KEY" "$HERE/node" >/dev/null
  fi
  end_image
}

build_haproxy() {
  local image=$HAPROXY_IMAGE
  build_rootfs
  begin_image "$image"
  if must_build "$image"; then
    step "$LOGS/haproxy.log" "building $image" \
      docker build -q -t "$image" --build-arg BASE="$ROOTFS_IMAGE" --label "$INPUTS_LABEL=$HAPROXY_KEY" "$HERE/haproxy" >/dev/null
  fi
  end_image
  queue_push "$image"
}

build_consul() {
  local image=$CONSUL_IMAGE
  build_rootfs
  begin_image "$image"
  if ! must_build "$image"; then
    end_image
    queue_push "$image"
    return 0
  fi
  local bin
  bin=$(step "$LOGS/consul-source.log" "building Consul $CONSUL_VERSION from source" "$HERE/gobin.sh" consul)
  local ctx
  ctx=$(mktemp -d)
  cp "$HERE/consul/Dockerfile" "$HERE/consul/docker-entrypoint.sh" "$ctx/"
  cp "$bin" "$ctx/consul"
  step "$LOGS/consul.log" "building $image" \
    docker build -q -t "$image" --build-arg BASE="$ROOTFS_IMAGE" --label "$INPUTS_LABEL=$CONSUL_KEY" "$ctx" >/dev/null
  rm -rf "$ctx"
  end_image
  queue_push "$image"
}

# build_go LOG IMAGE WHAT PKG BINARY DOCKERFILE VERSION: compiles PKG of this module, with
# main.version=VERSION, into BINARY and builds IMAGE of it and DOCKERFILE, labelled with its
# key (go_image_key), unless the plan found IMAGE built from the same key.
build_go() {
  local log=$1 image=$2 what=$3 pkg=$4 binary=$5 dockerfile=$6 version=$7
  begin_image "$image"
  if must_build "$image"; then
    local ctx
    ctx=$(mktemp -d)
    step "$log" "compiling $what" \
      env CGO_ENABLED=0 go -C "$HERE/../.." build -trimpath -ldflags "-s -w -X main.version=$version" -o "$ctx/$binary" "$pkg"
    cp "$dockerfile" "$ctx/"
    step "$log" "building $image" docker build -q --label "$INPUTS_LABEL=$(go_image_key "$pkg" "$dockerfile" "$version")" -t "$image" "$ctx" >/dev/null
    rm -rf "$ctx"
  fi
  end_image
  queue_push "$image"
}

build_demoapp() {
  # Two versions, so blue/green has something to switch between.
  local version
  for version in $DEMOAPP_VERSIONS; do
    build_go "$LOGS/demoapp.log" "microswarm/demo-app:$version" "the demo app $version" ./tools/images/demoapp demo-app "$HERE/demoapp/Dockerfile" "$version"
  done
}

build_registrator() {
  build_go "$LOGS/registrator.log" "$REGISTRATOR_IMAGE" "the registrator" ./cmd/registrator registrator "$HERE/registrator/Dockerfile" "${REGISTRATOR_IMAGE##*:}"
}

# What was pushed is recorded beside the registry's data, one file per image holding its
# image ID, so an image pushed before and unchanged since is not pushed again (and a run
# with nothing to push starts no registry); wiping the data wipes the record with it.
PUSHED="$CACHE/registry/data/.microswarm-pushed"
pushed_file() { echo "$PUSHED/$(printf '%s' "$1" | tr '/:' '__')"; }
push_all() {
  local todo=() image
  [ ${#PUSH_LIST[@]} -gt 0 ] || return 0
  IMAGE_ID=() IMAGE_KEY=()
  image_facts "${PUSH_LIST[@]}" # as built now
  for image in "${PUSH_LIST[@]}"; do
    [ "$(cat "$(pushed_file "$image")" 2>/dev/null)" = "${IMAGE_ID[$image]:-}" ] || todo+=("$image")
  done
  PUSH_LIST=(${todo[@]+"${todo[@]}"})
  [ ${#PUSH_LIST[@]} -gt 0 ] || return 0
  mkdir -p "$PUSHED"
  local registry port pid=""
  if ! "$HERE/gobin.sh" -n registry; then
    say "the local registry: compiling it from source (first run only)"
  fi
  registry=$(step "$LOGS/registry-source.log" "building the registry from source" "$HERE/gobin.sh" registry)
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null || echo 5099)
  mkdir -p "$CACHE/registry"
  cat >"$CACHE/registry/push-config.yml" <<CFG
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $CACHE/registry/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
CFG
  "$registry" serve "$CACHE/registry/push-config.yml" >"$CACHE/registry/push.log" 2>&1 &
  pid=$!
  trap 'kill $pid 2>/dev/null || true' RETURN
  for _ in $(seq 1 100); do curl -fsS "http://127.0.0.1:$port/v2/" >/dev/null 2>&1 && break; sleep 0.1; done
  local image repo
  for image in "${PUSH_LIST[@]}"; do
    # Docker Hub's official images (haproxy:2.6) live under library/, and that is the
    # path a registry mirror is asked for.
    repo=$image
    case "$image" in */*) ;; *) repo="library/$image" ;; esac
    docker tag "$image" "127.0.0.1:$port/$repo"
    step "$LOGS/push.log" "pushing $image into the local registry" docker push -q "127.0.0.1:$port/$repo" >/dev/null
    docker rmi "127.0.0.1:$port/$repo" >/dev/null
    docker image inspect -f '{{.Id}}' "$image" >"$(pushed_file "$image")"
  done
}

# About how long each part takes when nothing is cached, in seconds on 2 cores. Measured
# here: debootstrap about 1 min (more on a slow mirror), Consul 4-5 min and the registry
# 2 min from source with their modules already downloaded; a whole first run 458 s
# (bench/results.md). A fresh machine also downloads the modules: hence the margins.
EST_DEBOOTSTRAP=120
EST_IMPORT=15
EST_CONSUL_SOURCE=360
EST_REGISTRY_SOURCE=150
EST_GO_IMAGE=45 # compiling a small Go program of this module with a cold build cache
EST_DOCKER_BUILD=15

# The plan: what must be built, each part with its estimate; COLD marks the images.
declare -A COLD=()
PLAN=()
PLAN_SECS=0
FROM_SOURCE=""
IMAGE_N=0
approx() { # seconds -> "20 s" or "3 min", rounded up
  if (($1 < 60)); then echo "$1 s"; else echo "$((($1 + 59) / 60)) min"; fi
}
plan() { # SECONDS TEXT
  PLAN+=("$2 (about $(approx "$1"))")
  PLAN_SECS=$((PLAN_SECS + $1))
}
plan_image() { # IMAGE SECONDS WHAT [rebuild]: counts IMAGE, plans it unless it is there
  IMAGE_N=$((IMAGE_N + 1))
  if [ -z "${4:-}" ] && known_image "$1"; then return 0; fi
  COLD[$1]=1
  plan "$2" "@i/@n $1: $3" # numbered once all are counted
  PLAN[-1]=${PLAN[-1]//@i/$IMAGE_N}
}

# A Go image's key: the module's Go sources (tests aside), go.mod, go.sum and the
# toolchain, with the package, its Dockerfile and the version compiled in. Any source of
# the module changing rebuilds the image: knowing whether the binary changed would cost a
# compile, the very thing an unchanged image spares (about a second and a half each).
MODULE_SOURCES_KEY=$(cd "$HERE/../.." && {
  go env GOVERSION
  find . -path './.*' -prune -o -path ./bin -prune -o -type f \( -name '*.go' ! -name '*_test.go' -o -name go.mod -o -name go.sum \) -print |
    LC_ALL=C sort | xargs -d '\n' tail -n +1
} | sha256sum | cut -c1-12)
go_image_key() { # PKG DOCKERFILE VERSION
  { echo "$MODULE_SOURCES_KEY $1 $3"; cat "$2"; } | sha256sum | cut -c1-12
}
NODE_KEY=$(inputs_key "$HERE/node")
HAPROXY_KEY=$(inputs_key "$HERE/haproxy")
CONSUL_KEY=$(inputs_key "$HERE/consul" "$CONSUL_VERSION")
image_facts "$ROOTFS_IMAGE" "$NODE_IMAGE" "$HAPROXY_IMAGE" "$CONSUL_IMAGE" "$REGISTRATOR_IMAGE" \
  $(for v in $DEMOAPP_VERSIONS; do echo "microswarm/demo-app:$v"; done)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(node consul demoapp haproxy registrator)
rootfs="" # the base root filesystem must be made (node, haproxy and consul are built on it)
pushes=""
for target in "${targets[@]}"; do
  case "$target" in node | haproxy | consul) known_image "$ROOTFS_IMAGE" || rootfs=1 ;; esac
done
if [ -n "$rootfs" ]; then
  if [ -s "$CACHE/rootfs/bookworm-$ROOTFS_KEY.tar" ]; then
    plan "$EST_IMPORT" "the base root filesystem: importing the cached one"
  else
    FROM_SOURCE=1
    plan "$((EST_DEBOOTSTRAP + EST_IMPORT))" "the base root filesystem: Debian bookworm via debootstrap"
  fi
fi
for target in "${targets[@]}"; do
  case "$target" in
    node)
      plan_image "$NODE_IMAGE" "$EST_DOCKER_BUILD" "dockerd and sshd on the base root filesystem" "$rootfs$(stale "$NODE_IMAGE" "$NODE_KEY")" ;;
    haproxy)
      pushes=1
      plan_image "$HAPROXY_IMAGE" "$EST_DOCKER_BUILD" "HAProxy from the base root filesystem" "$rootfs$(stale "$HAPROXY_IMAGE" "$HAPROXY_KEY")" ;;
    consul)
      pushes=1
      if "$HERE/gobin.sh" -n consul; then
        plan_image "$CONSUL_IMAGE" "$EST_DOCKER_BUILD" "the cached Consul $CONSUL_VERSION binary" "$rootfs$(stale "$CONSUL_IMAGE" "$CONSUL_KEY")"
      else
        FROM_SOURCE=1
        plan_image "$CONSUL_IMAGE" "$EST_CONSUL_SOURCE" "Consul $CONSUL_VERSION compiled from source" rebuild
      fi ;;
    demoapp)
      pushes=1
      est=$EST_GO_IMAGE
      for v in $DEMOAPP_VERSIONS; do
        image="microswarm/demo-app:$v"
        plan_image "$image" "$est" "the demo app $v, compiled" "$(stale "$image" "$(go_image_key ./tools/images/demoapp "$HERE/demoapp/Dockerfile" "$v")")"
        est=$EST_DOCKER_BUILD # the second compiles from a warm build cache
      done ;;
    registrator)
      pushes=1
      plan_image "$REGISTRATOR_IMAGE" "$EST_GO_IMAGE" "cmd/registrator, compiled" \
        "$(stale "$REGISTRATOR_IMAGE" "$(go_image_key ./cmd/registrator "$HERE/registrator/Dockerfile" "${REGISTRATOR_IMAGE##*:}")")" ;;
    *) echo "unknown image: $target" >&2; exit 2 ;;
  esac
done
if [ -n "$pushes" ] && ! "$HERE/gobin.sh" -n registry; then
  FROM_SOURCE=1
  plan "$EST_REGISTRY_SOURCE" "the local registry the images go into: distribution v3 compiled from source"
fi

if [ ${#PLAN[@]} -gt 0 ]; then
  if [ -n "$FROM_SOURCE" ]; then
    say "first run: building the images from source takes about $(approx "$PLAN_SECS") (later runs take seconds; cache: $CACHE)"
  else
    say "building what is not cached, about $(approx "$PLAN_SECS"):"
  fi
  for line in "${PLAN[@]}"; do say "  ${line//@n/$IMAGE_N}"; done
fi

# begin_image IMAGE counts IMAGE and, if it is not cached, says it is being built;
# end_image says it is done.
IMAGE_I=0
IMAGE_STARTED=0
begin_image() {
  IMAGE_I=$((IMAGE_I + 1))
  CURRENT_IMAGE=""
  [ -n "${COLD[$1]:-}" ] || return 0
  CURRENT_IMAGE=$1
  IMAGE_STARTED=$SECONDS
  say "$IMAGE_I/$IMAGE_N $1: building"
}
end_image() {
  [ -n "$CURRENT_IMAGE" ] || return 0
  say "$IMAGE_I/$IMAGE_N $CURRENT_IMAGE: built in $(dur $((SECONDS - IMAGE_STARTED)))"
}

for target in "${targets[@]}"; do
  case "$target" in
    node) build_node ;;
    consul) build_consul ;;
    demoapp) build_demoapp ;;
    haproxy) build_haproxy ;;
    registrator) build_registrator ;;
  esac
done
push_all
if [ ${#PLAN[@]} -gt 0 ]; then
  say "done: $IMAGE_N image(s) ready, in $(dur "$SECONDS")"
else
  say "$IMAGE_N image(s) ready (cached)"
fi
