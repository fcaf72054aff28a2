#!/usr/bin/env bash
# The provider at another revision (A) against the working tree (B), alternating on one
# running `make demo` cluster, so that both see the same machine: per round and build, the
# wall time of a no-change plan and of a switch there and back (terraform apply
# -var active=green, then blue), terraform's own start-up included (tools/demo.sh's set-up
# before it is not, since 2026-12-05).
#   bench/ab.sh REV [rounds]    default 6 rounds; one line per round and build, then medians
#   NODES=12 bench/ab.sh REV    the demo scaled to 12 nodes first (and left at 12)
# Builds REV in a temporary worktree; brings the demo up if it is not, and leaves it up on
# the working tree's build.
set -euo pipefail
cd "$(dirname "$0")/.."
rev=${1:?usage: bench/ab.sh REV [rounds]}
rounds=${2:-6}
nodes=${NODES:-3}
dir=$(mktemp -d)
cleanup() { git worktree remove --force "$dir/tree" >/dev/null 2>&1 || true; rm -rf "$dir"; }
trap cleanup EXIT
git worktree add -q "$dir/tree" "$rev"
(cd "$dir/tree" && go build -o "$dir/a" .)
go build -o "$dir/b" .
# `make demo` applies the demo's defaults (3 nodes): only when the demo is not up yet.
[ -s .demo/terraform.tfstate ] || tools/demo.sh up >/dev/null 2>&1
log="$dir/log"
if [ "$nodes" != 3 ] && ! tools/demo.sh tf apply -auto-approve -var active=blue -var "nodes=$nodes" >"$log" 2>&1; then
  tail -40 "$log" >&2
  echo "scaling the demo to $nodes nodes failed" >&2
  exit 1
fi
median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
# timed ARGS: terraform's own seconds for tools/demo.sh tf ARGS (not the wrapper's set-up).
timed() {
  MICROSWARM_TF_TIME="$dir/seconds" tools/demo.sh tf "$@" >"$log" 2>&1 || { tail -40 "$log" >&2; echo "terraform $* failed" >&2; exit 1; }
  cat "$dir/seconds"
}
declare -A plans switches
for r in $(seq 1 "$rounds"); do
  for v in a b; do
    cp "$dir/$v" bin/terraform-provider-microswarm
    p=$(timed plan -var active=blue -var "nodes=$nodes")
    s1=$(timed apply -auto-approve -var active=green -var "nodes=$nodes")
    s2=$(timed apply -auto-approve -var active=blue -var "nodes=$nodes")
    plans[$v]+="$p " switches[$v]+="$s1 $s2 "
    echo "round $r $v: no-change plan $p s; switch to green $s1 s, to blue $s2 s"
  done
done
cp "$dir/b" bin/terraform-provider-microswarm
for v in a b; do
  name=$([ "$v" = a ] && echo "$rev" || echo "working tree")
  echo "median ($name, $nodes nodes): no-change plan $(printf '%s\n' ${plans[$v]} | median) s; switch $(printf '%s\n' ${switches[$v]} | median) s"
done
