#!/usr/bin/env bash
# Benchmarks of the local cloud, written to bench/results.md.
#   bench/run.sh           cached image build, droplet time-to-ready (median of 5), then on
#                          the `make demo` cluster the registrator's latencies and the
#                          blue/green switch under load
#   FIRST_RUN=1 bench/run.sh   also the first-run image build, with an empty cache
#                              (rebuilds Consul from source: about 5 minutes)
set -euo pipefail
cd "$(dirname "$0")/.."
tools/ensure-engine.sh
out=bench/results.md
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

{
  echo "# Local cloud benchmarks"
  echo
  echo "Measured $(date -u +%Y-%m-%d) on $(nproc) cores by \`bench/run.sh\`."
  echo
} >"$out"

if [ -n "${FIRST_RUN:-}" ]; then
  fresh=$(mktemp -d)
  docker images -q microswarm/node-rootfs | xargs -r docker rmi -f >/dev/null 2>&1 || true
  docker rmi -f microswarm/node:bookworm haproxy:2.6 hashicorp/consul:1.20.5 \
    microswarm/demo-app:1.0.0 microswarm/demo-app:2.0.0 >/dev/null 2>&1 || true
  t0=$(now)
  # An empty Go build cache too, so Consul and the registry compile from scratch.
  MICROSWARM_CACHE="$fresh" GOCACHE="$fresh/go-build" tools/images/build.sh
  t1=$(now)
  echo "- first-run image build (empty image and Go build caches: debootstrap, Consul and the registry compiled from source; Go modules already downloaded): $(secs "$t0" "$t1") s" >>"$out"
  # Keep the images the fresh run pushed where the default cache serves them from.
  tools/images/build.sh
  rm -rf "$fresh"
fi

tools/images/build.sh >/dev/null 2>&1 # warm
t0=$(now)
tools/images/build.sh
t1=$(now)
echo "- cached image build (nothing to rebuild, images re-pushed): $(secs "$t0" "$t1") s" >>"$out"

echo '```' >>"$out"
go run ./bench/nodeready -rounds 5 | tee -a "$out"
echo '```' >>"$out"

# The registrator on the demo cluster (brought up if it is not, and taken down again).
demo_was_up=""
[ -s .demo/terraform.tfstate ] && demo_was_up=1
tools/demo.sh up >/dev/null 2>&1
{
  echo
  echo "Registrator (\`go run ./bench/registrator\` on the \`make demo\` cluster: 3 nodes, a registrator on each):"
  echo '```'
} >>"$out"
go run ./bench/registrator | tee -a "$out"
echo '```' >>"$out"
{
  echo
  echo "Blue/green switch of the demo app under load (\`go run ./bench/bluegreen\`, see bench/bluegreen/README.md):"
  echo '```'
} >>"$out"
go run ./bench/bluegreen | tee -a "$out"
echo '```' >>"$out"
[ -n "$demo_was_up" ] || tools/demo.sh down >/dev/null 2>&1
cat "$out"
