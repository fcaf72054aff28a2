#!/usr/bin/env bash
# Benchmarks of the local cloud, written to bench/results.md.
#   bench/run.sh           cached image build, droplet time-to-ready (median of 5), `make demo`
#                          from nothing with cached images, then on the demo cluster the
#                          registrator's latencies, the blue/green switch under load and the
#                          time to heal a powered-off worker (bench/heal.sh); the demo is
#                          left down
#   FIRST_RUN=1 bench/run.sh   also `make demo` on a first run: empty image and Go build
#                              caches (debootstrap, Consul and the registry from source)
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
  tools/demo.sh down >/dev/null 2>&1 || true
  fresh=$(mktemp -d)
  docker images -q microswarm/node-rootfs | xargs -r docker rmi -f >/dev/null 2>&1 || true
  docker rmi -f microswarm/node:bookworm haproxy:2.6 hashicorp/consul:1.20.5 microswarm/registrator:0.1.0 \
    microswarm/demo-app:1.0.0 microswarm/demo-app:2.0.0 >/dev/null 2>&1 || true
  t0=$(now)
  # Empty image and Go build caches, so the node image, Consul and the registry build from
  # scratch; Go modules are already downloaded.
  MICROSWARM_CACHE="$fresh" GOCACHE="$fresh/go-build" tools/demo.sh up >"$fresh.log" 2>&1
  t1=$(now)
  echo "- \`make demo\` on a first run (empty image and Go build caches; Go modules already downloaded): $(secs "$t0" "$t1") s" >>"$out"
  MICROSWARM_CACHE="$fresh" tools/demo.sh down >/dev/null 2>&1
  # Keep the images the fresh run pushed where the default cache serves them from.
  tools/images/build.sh >/dev/null 2>&1
  rm -rf "$fresh" "$fresh.log"
fi

tools/images/build.sh >/dev/null 2>&1 # warm
t0=$(now)
tools/images/build.sh
t1=$(now)
echo "- cached image build (nothing to rebuild, images re-pushed): $(secs "$t0" "$t1") s" >>"$out"

echo '```' >>"$out"
go run ./bench/nodeready -rounds 5 | tee -a "$out"
echo '```' >>"$out"

# `make demo` from nothing, with cached images; the rest runs on that cluster.
tools/demo.sh down >/dev/null 2>&1
t0=$(now)
tools/demo.sh up >/dev/null 2>&1
t1=$(now)
echo "- \`make demo\` with cached images, from nothing to the app answering and every check passed: $(secs "$t0" "$t1") s" >>"$out"
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
{
  echo
  echo "Time to heal (\`bench/heal.sh\`: \`make demo-break\` powers a worker off, then \`make demo\` replaces it, with its Consul server and swarm membership, until every check passes and Consul's health reads passing):"
  echo '```'
} >>"$out"
bench/heal.sh 3 | tee -a "$out"
echo '```' >>"$out"
tools/demo.sh down >/dev/null 2>&1
cat "$out"
