#!/usr/bin/env bash
# Time to heal on the `make demo` cluster: a worker droplet powered off through the local
# cloud's API (make demo-break), then `make demo` (tools/demo.sh up), whose apply replaces
# it, until its checks pass (every node over SSH, Consul voters and members, swarm nodes,
# registrator tasks, the app through every proxy) and Consul's health reads passing.
# Timed from the power-off call (until 2026-12-05: from the start of make demo-break, whose
# own set-up, a build and a terraform output, added about 1.5 s).
#   bench/heal.sh [rounds]    default 3; prints one line per round and the medians
#   BREAK=2 bench/heal.sh     powers off both workers at once (2 of 3 nodes: Consul loses its
#                             quorum, which the apply recovers)
# Brings the demo up first if it is not (and takes it down again afterwards).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
breaks=${BREAK:-1}
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
# clock_at PATTERN FILE: the seconds on demo.sh's clock ([demo m:ss]) of the first line matching.
clock_at() { grep -m1 "$1" "$2" | sed -E 's/^\[demo ([0-9]+):([0-9]+)\].*/\1 \2/' | awk '{ print $1 * 60 + $2 }'; }
median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

was_up=""
[ -s .demo/terraform.tfstate ] && was_up=1
tools/demo.sh up >/dev/null 2>&1
log=$(mktemp)
totals=() applies=()
for round in $(seq 1 "$rounds"); do
  rm -f .demo/break-at
  for _ in $(seq 1 "$breaks"); do tools/demo.sh break >/dev/null 2>&1; done
  # From the first power-off call (demo.sh records each), not from demo.sh's own start.
  t0=$(sort -n .demo/break-at | head -1)
  if ! tools/demo.sh up >"$log" 2>&1; then
    tail -30 "$log" >&2
    echo "round $round: make demo did not heal the cluster" >&2
    exit 1
  fi
  t1=$(now)
  grep -q '\] healed: ' "$log" || { tail -30 "$log" >&2; echo "round $round: make demo did not say it healed" >&2; exit 1; }
  cluster=$(TF_CLI_CONFIG_FILE="$PWD/.demo/terraformrc" terraform -chdir=examples/local output -state="$PWD/.demo/terraform.tfstate" -raw health_cluster)
  case "$cluster" in passing*) ;; *) echo "round $round: health after the heal: $cluster" >&2; exit 1 ;; esac
  # The apply alone: from "terraform apply" to "Apply complete", on demo.sh's clock.
  start=$(clock_at '\] terraform apply' "$log")
  end=$(clock_at 'Apply complete' "$log")
  total=$(secs "$t0" "$t1")
  totals+=("$total") applies+=("$((end - start))")
  echo "round $round: power-off of $breaks worker(s) -> healed and checked: ${total} s (terraform plan + apply: $((end - start)) s); $(grep -m1 'Plan:' "$log" | sed 's/.*Plan:/plan:/'); health: $cluster"
done
rm -f "$log"
echo "median over $rounds rounds: power-off -> healed and checked $(printf '%s\n' "${totals[@]}" | median) s; terraform plan + apply $(printf '%s\n' "${applies[@]}" | median) s"
[ -n "$was_up" ] || tools/demo.sh down >/dev/null 2>&1
