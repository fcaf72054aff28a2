#!/usr/bin/env bash
# A proxy_image change on the `make demo` cluster under load (a new connection per request,
# so no client resends a request a kept-alive connection lost): the proxies' image goes to
# haproxy:2.6 under another tag (made on every node), then back, each by terraform apply
# while bin/demoload counts failed requests through all three proxies.
#   bench/proxyimage.sh [rounds]   default 1 (a round is both changes, about 10 minutes)
# Brings the demo up first if it is not (and takes it down again afterwards).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-1}
was_up=""
[ -s .demo/terraform.tfstate ] && was_up=1
tools/demo.sh up >/dev/null 2>&1
go build -o bin/ ./tools/demoload
for node in $(docker ps --filter name=demo-droplet- --format '{{.Names}}'); do
  docker exec "$node" docker tag haproxy:2.6 haproxy:2.6-bench
done
mapfile -t targets < <(terraform -chdir=examples/local output -state="$PWD/.demo/terraform.tfstate" -json app_endpoints | tr -d '[]" ' | tr ',' '\n')
[ "${#targets[@]}" -gt 0 ] || { echo "no app_endpoints output in the demo's state" >&2; exit 1; }
log=$(mktemp)
change() {
  bin/demoload -new-conn -rate 0 -concurrency 16 -max 15m "${targets[@]}" >"$log" 2>&1 &
  local load=$! t0 t1
  sleep 3
  t0=$(date +%s.%N)
  tools/demo.sh tf apply -auto-approve -var proxy_image="$1" >/dev/null
  t1=$(date +%s.%N)
  sleep 3
  kill -INT "$load" 2>/dev/null || true
  wait "$load" || true
  echo "proxy_image -> $1: apply $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", b - a }') s; $(grep '^\[load\] ' "$log" | tail -1 | sed 's/^\[load\] //')"
}
for _ in $(seq 1 "$rounds"); do
  change haproxy:2.6-bench
  change haproxy:2.6
done
rm -f "$log"
[ -n "$was_up" ] || tools/demo.sh down >/dev/null 2>&1
