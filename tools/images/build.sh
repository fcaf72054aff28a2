#!/usr/bin/env bash
# Builds, idempotently and with caching, the images the local cloud serves, and pushes the
# ones droplets pull into the local registry under their real names, so the provider's
# defaults are what users pull from Docker Hub.
#   tools/images/build.sh            all images
#   tools/images/build.sh node ...   only some (node, consul, demoapp, haproxy, registrator)
# Prints nothing on stdout; progress goes to stderr.
set -euo pipefail
cd "$(dirname "$0")"
HERE=$(pwd)

CACHE="${MICROSWARM_CACHE:-$HOME/.cache/microswarm}"
CONSUL_VERSION="${CONSUL_VERSION:-1.20.5}"
NODE_IMAGE="${MICROSWARM_NODE_IMAGE:-microswarm/node:bookworm}"
export DOCKER_BUILDKIT=0
mkdir -p "$CACHE"

log() { echo "[images] $*" >&2; }
have_image() { docker image inspect "$1" >/dev/null 2>&1; }

# Pushes IMAGE into the registry that serves the droplets, as 127.0.0.1:PORT/IMAGE.
PUSH_LIST=()
queue_push() { PUSH_LIST+=("$1"); }

# The Debian packages of the root filesystem every image here is built from. The cache
# is keyed by the list, so changing it rebuilds the root filesystem.
ROOTFS_PACKAGES=docker.io,openssh-server,iptables,iproute2,ca-certificates,procps,curl,haproxy
ROOTFS_KEY=$(printf '%s' "$ROOTFS_PACKAGES" | sha256sum | cut -c1-12)
ROOTFS_IMAGE="microswarm/node-rootfs:bookworm-$ROOTFS_KEY"

build_rootfs() {
  local rootfs_image=$ROOTFS_IMAGE
  if ! have_image "$rootfs_image"; then
    local tarball="$CACHE/rootfs/bookworm-$ROOTFS_KEY.tar"
    if [ ! -s "$tarball" ]; then
      log "debootstrap bookworm (first run only, about a minute)"
      local dir
      dir=$(mktemp -d)
      debootstrap --variant=minbase --include="$ROOTFS_PACKAGES" \
        bookworm "$dir" >"$CACHE/debootstrap.log" 2>&1 || { tail -20 "$CACHE/debootstrap.log" >&2; exit 1; }
      mkdir -p "$CACHE/rootfs"
      tar -C "$dir" -c . >"$tarball.tmp" && mv "$tarball.tmp" "$tarball"
      rm -rf "$dir"
    fi
    log "importing $rootfs_image"
    docker import "$tarball" "$rootfs_image" >/dev/null
  fi
}

build_node() {
  build_rootfs
  log "building $NODE_IMAGE"
  docker build -q -t "$NODE_IMAGE" --build-arg BASE="$ROOTFS_IMAGE" "$HERE/node" >/dev/null
}

build_haproxy() {
  local image=haproxy:2.6
  build_rootfs
  log "building $image"
  docker build -q -t "$image" --build-arg BASE="$ROOTFS_IMAGE" "$HERE/haproxy" >/dev/null
  queue_push "$image"
}

build_consul() {
  local image="hashicorp/consul:$CONSUL_VERSION"
  local bin
  bin=$("$HERE/gobin.sh" consul)
  local ctx
  ctx=$(mktemp -d)
  cp "$HERE/consul/Dockerfile" "$ctx/"
  cp "$bin" "$ctx/consul"
  log "building $image"
  docker build -q -t "$image" "$ctx" >/dev/null
  rm -rf "$ctx"
  queue_push "$image"
}

build_demoapp() {
  # Two versions, so blue/green has something to switch between.
  local version
  for version in 1.0.0 2.0.0; do
    local image="microswarm/demo-app:$version"
    local ctx
    ctx=$(mktemp -d)
    (cd "$HERE/../.." && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=$version" \
      -o "$ctx/demo-app" ./tools/images/demoapp)
    cp "$HERE/demoapp/Dockerfile" "$ctx/"
    log "building $image"
    docker build -q -t "$image" "$ctx" >/dev/null
    rm -rf "$ctx"
    queue_push "$image"
  done
}

build_registrator() {
  # The tag is the provider's default image, so the two cannot drift apart.
  local image
  image=$(grep -o 'microswarm/registrator:[0-9A-Za-z.-]*' "$HERE/../../internal/registrator/image.go")
  local ctx
  ctx=$(mktemp -d)
  (cd "$HERE/../.." && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${image##*:}" \
    -o "$ctx/registrator" ./cmd/registrator)
  cp "$HERE/registrator/Dockerfile" "$ctx/"
  log "building $image"
  docker build -q -t "$image" "$ctx" >/dev/null
  rm -rf "$ctx"
  queue_push "$image"
}

push_all() {
  [ ${#PUSH_LIST[@]} -gt 0 ] || return 0
  local registry port pid=""
  registry=$("$HERE/gobin.sh" registry)
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
    log "pushing $image into the local registry"
    docker tag "$image" "127.0.0.1:$port/$repo"
    docker push -q "127.0.0.1:$port/$repo" >/dev/null
    docker rmi "127.0.0.1:$port/$repo" >/dev/null
  done
}

targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(node consul demoapp haproxy registrator)
for target in "${targets[@]}"; do
  case "$target" in
    node) build_node ;;
    consul) build_consul ;;
    demoapp) build_demoapp ;;
    haproxy) build_haproxy ;;
    registrator) build_registrator ;;
    *) echo "unknown image: $target" >&2; exit 2 ;;
  esac
done
push_all
log "done"
