#!/usr/bin/env bash
# The demo's everyday terraform runs, timed as a user runs them, on the `make demo` stack
# (3 droplets, a Consul server on each with TLS, ACLs and gossip encryption, a swarm of
# 1 manager + 2 workers, the registrator, the blue/green app with a proxy on every node):
#   destroy       terraform destroy of the whole stack
#   infra         terraform apply from nothing of the infrastructure alone (-target: the
#                 droplets, the Consul servers with a leader and the agents, the swarm)
#   full stack    terraform apply from nothing to every resource created and ready
#   plan          terraform plan with nothing to change (refresh included); an output that
#                 moved (consul_leader after a new election) is reported, not a failure
#   switch        terraform apply -var active=green, then back to blue (no load here:
#                 bench/bluegreen counts requests through a switch)
# Each figure is the wall time of the terraform command, start to exit, terraform's own
# start-up included: what a user who types it waits. tools/demo.sh's set-up before it
# (its environment and Consul secrets, 0.2-0.3 s here) is not counted since 2026-12-05;
# figures before that date include it. The provider's peak RSS (VmHWM, sampled every 0.2 s) is the largest
# any provider process reached in the round.
#   bench/perf.sh [rounds]    default 3; one line per round, then the medians
#   NODES=12 bench/perf.sh    the demo's configuration at 12 nodes (3 Consul servers and 9
#                             agents, 3 swarm managers and 9 workers, a proxy on every node)
# Each create's and the plan's CPU is counted by bench/cpulib.sh, as bench/cpu.sh does: the
# CPU seconds the whole machine spent on each, and the floor that puts under its wall time
# on this machine's cores (the round's line gives them; .demo/perf-infra-N.cpu, perf-create-N.cpu and perf-plan-N.cpu say where
# the CPU went).
# Brings the demo up first (compiling the provider) and takes it down at the end. Each
# round's outputs stay in .demo/perf-destroy-N.log, .demo/perf-infra-N.log and
# .demo/perf-create-N.log (per resource: "after Ns").
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
nodes=${NODES:-3}
vars=(-var active=blue -var "nodes=$nodes")
infra=(-target=microswarm_swarm_cluster.swarm -target=microswarm_consul_server.consul -target=microswarm_consul_agent.agent)
# shellcheck source=bench/cpulib.sh
source bench/cpulib.sh
median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
log=$(mktemp)
rss_file=$(mktemp)
tf_time=$(mktemp)
cleanup() {
  [ -n "${sampler:-}" ] && kill "$sampler" 2>/dev/null
  rm -f "$log" "$rss_file" "$tf_time"
}
trap cleanup EXIT

# sample_rss keeps in $rss_file the largest VmHWM (kB) of any provider process seen.
sample_rss() {
  local peak=0 hwm pid
  while true; do
    for pid in $(pgrep -f 'bin/terraform-provider-microswarm' || true); do
      hwm=$(awk '/^VmHWM:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || echo 0)
      if [ "${hwm:-0}" -gt "$peak" ]; then
        peak=$hwm
        echo "$peak" >"$rss_file"
      fi
    done
    sleep 0.2
  done
}

# timed NAME ARGS: runs tools/demo.sh tf ARGS, prints terraform's own seconds; fails
# loudly. With CPU_OUT=FILE, bench/cpulib.sh's report of the machine's CPU over it goes
# to FILE.
timed() {
  local name=$1
  shift
  [ -z "${CPU_OUT:-}" ] || cpu_begin
  if ! MICROSWARM_TF_TIME="$tf_time" tools/demo.sh tf "$@" >"$log" 2>&1; then
    tail -30 "$log" >&2
    echo "$name: terraform $* failed" >&2
    exit 1
  fi
  [ -z "${CPU_OUT:-}" ] || cpu_end "terraform and the provider" >"$CPU_OUT"
  awk '{ printf "%.1f", $1 }' "$tf_time"
}

echo "bringing the demo up (make demo)" >&2
tools/demo.sh up >/dev/null 2>&1
timed "the first apply at $nodes nodes" apply -auto-approve "${vars[@]}" >/dev/null
destroys=() infras=() creates=() plans=() switches=() rsss=() infracpus=() createcpus=() plancpus=()
for round in $(seq 1 "$rounds"); do
  echo 0 >"$rss_file"
  sample_rss &
  sampler=$!
  d=$(timed destroy destroy -auto-approve "${vars[@]}")
  grep -q 'Destroy complete' "$log" || { cat "$log" >&2; exit 1; }
  cp "$log" ".demo/perf-destroy-$round.log"
  i=$(CPU_OUT=.demo/perf-infra-$round.cpu timed infra apply -auto-approve "${vars[@]}" "${infra[@]}")
  cp "$log" ".demo/perf-infra-$round.log"
  timed "destroy of the infrastructure" destroy -auto-approve "${vars[@]}" >/dev/null
  c=$(CPU_OUT=.demo/perf-create-$round.cpu timed "full stack" apply -auto-approve "${vars[@]}")
  cp "$log" ".demo/perf-create-$round.log" # terraform's own time per resource ("after Ns")
  p=$(CPU_OUT=.demo/perf-plan-$round.cpu timed plan plan "${vars[@]}")
  # No resource to change. An output may move: consul_leader, when the servers elected
  # another leader since the apply (reported, not a failure).
  if grep -q '^Plan: ' "$log"; then
    cat "$log" >&2
    echo "the plan after the apply is not empty" >&2
    exit 1
  fi
  grep -q 'consul_leader' "$log" && echo "round $round: the Consul leader moved between the apply and the plan" >&2
  s1=$(timed switch apply -auto-approve -var active=green -var "nodes=$nodes")
  s2=$(timed switch apply -auto-approve "${vars[@]}")
  kill "$sampler" 2>/dev/null
  wait "$sampler" 2>/dev/null || true
  sampler=""
  rss=$(awk '{ printf "%.0f", $1 / 1024 }' "$rss_file")
  ic=$(cpu_total ".demo/perf-infra-$round.cpu") cc=$(cpu_total ".demo/perf-create-$round.cpu") pc=$(cpu_total ".demo/perf-plan-$round.cpu")
  destroys+=("$d") infras+=("$i") creates+=("$c") plans+=("$p") switches+=("$s1" "$s2") rsss+=("$rss") infracpus+=("$ic") createcpus+=("$cc") plancpus+=("$pc")
  echo "round $round ($nodes nodes): destroy ${d} s; infra ${i} s (${ic} CPU-s, floor $(cpu_floor ".demo/perf-infra-$round.cpu") s); full stack ${c} s (${cc} CPU-s, floor $(cpu_floor ".demo/perf-create-$round.cpu") s); no-change plan ${p} s (${pc} CPU-s); switch to green ${s1} s, to blue ${s2} s; provider peak RSS ${rss} MB"
done
echo "blue" >.demo/active
m() { printf '%s\n' "$@" | median; }
echo "median over $rounds rounds ($nodes nodes): destroy $(m "${destroys[@]}") s; infra $(m "${infras[@]}") s ($(m "${infracpus[@]}") CPU-s); full stack $(m "${creates[@]}") s ($(m "${createcpus[@]}") CPU-s); no-change plan $(m "${plans[@]}") s ($(m "${plancpus[@]}") CPU-s); switch $(m "${switches[@]}") s; provider peak RSS $(m "${rsss[@]}") MB"
tools/demo.sh down >/dev/null 2>&1
