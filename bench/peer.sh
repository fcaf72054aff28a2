#!/usr/bin/env bash
# The infrastructure (droplets, a Consul server on each of the first three with a leader and
# a client agent on the rest, a swarm of one manager, three from 9 nodes up, and the rest
# workers) made three ways on one local cloud, alternating, each timed from nothing to done
# and then torn down (issue #29's peer comparison):
#   microswarm  tools/demo.sh tf apply with bench/perf.sh's -target (the demo's Consul also has
#               TLS and ACLs, which the other two leave out)
#   peer        bench/peer/main.tf: the official digitalocean provider, remote-exec and the ssh
#               binary, applied by the same terraform
#   hand        bench/peer/handrun.sh: the API with curl, then docker over SSH node by node
# After each create the same check runs, untimed, through the first node: a Consul leader with
# every server a voter, and every node a ready swarm member. The order turns each round.
# Each create's CPU is counted by bench/cpulib.sh: the round's line gives the CPU seconds
# the whole machine spent on it, and .demo/peer-WHO-ROUND.cpu where they went.
#   bench/peer.sh [rounds]      default 3; NODES=N for another size
# The peer needs the official provider's binary (not in the Go module proxy). Its public
# source vendors every dependency, so it builds offline: DO_PROVIDER_SRC=<a checkout of
# digitalocean/terraform-provider-digitalocean> builds it with `go build -mod=vendor` (about
# 3 minutes on 2 cores) into .demo/peer/bin, or DO_PROVIDER_DIR names a directory holding
# terraform-provider-digitalocean. Brings the demo up first and takes it down at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
rounds=${1:-3}
nodes=${NODES:-3}
PEER="$ROOT/.demo/peer"
mkdir -p "$PEER/bin"
DO_DIR=${DO_PROVIDER_DIR:-$PEER/bin}
if [ ! -x "$DO_DIR/terraform-provider-digitalocean" ]; then
  if [ -z "${DO_PROVIDER_SRC:-}" ]; then
    echo "no $DO_DIR/terraform-provider-digitalocean: set DO_PROVIDER_SRC to a checkout of the official provider" >&2
    exit 2
  fi
  echo "building the digitalocean provider from $DO_PROVIDER_SRC (vendored)" >&2
  (cd "$DO_PROVIDER_SRC" && GOFLAGS=-mod=vendor go build -o "$DO_DIR/terraform-provider-digitalocean" .)
fi

# shellcheck source=bench/cpulib.sh
source bench/cpulib.sh
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
median() { sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
m() { printf '%s\n' "$@" | median; }
log=$(mktemp)
trap 'rm -f "$log"' EXIT

echo "bringing the demo up (make demo)" >&2
tools/demo.sh up >/dev/null 2>&1
# shellcheck disable=SC1091
source .demo/localcloud.env
export DIGITALOCEAN_API_URL DIGITALOCEAN_TOKEN
[ -s "$PEER/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -f "$PEER/id_ed25519"
[ -s "$PEER/hand_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -f "$PEER/hand_ed25519"
export HAND_KEY="$PEER/hand_ed25519"
GOSSIP_KEY=$(cat .demo/gossip.key)
PRIVATE_CIDR=$(curl -sS -H "Authorization: Bearer $DIGITALOCEAN_TOKEN" "${DIGITALOCEAN_API_URL%/}/v2/vpcs" |
  jq -r '[.vpcs[] | select(.region == "nyc3" and .default)][0].ip_range')
export GOSSIP_KEY PRIVATE_CIDR
cp bench/peer/main.tf "$PEER/main.tf"
cat >"$PEER/terraformrc" <<CFG
provider_installation {
  dev_overrides {
    "digitalocean/digitalocean" = "$DO_DIR"
  }
  direct {}
}
CFG
peer_tf() {
  TF_CLI_CONFIG_FILE="$PEER/terraformrc" TF_IN_AUTOMATION=1 terraform -chdir="$PEER" "$@" \
    -var "nodes=$nodes" -var "ssh_public_key=$(cat "$PEER/id_ed25519.pub")" \
    -var "ssh_private_key_file=$PEER/id_ed25519" -var "gossip_key=$GOSSIP_KEY" -var "private_cidr=$PRIVATE_CIDR"
}
vars=(-var active=blue -var "nodes=$nodes")
infra=(-target=microswarm_swarm_cluster.swarm -target=microswarm_consul_server.consul -target=microswarm_consul_agent.agent)

# run WHAT CMD...: runs CMD with its output in $log, prints its seconds; fails loudly.
# With CPU_OUT=FILE, bench/cpulib.sh's report of the machine's CPU over CMD goes to FILE.
run() {
  local what=$1 t0 t1
  shift
  [ -z "${CPU_OUT:-}" ] || cpu_begin
  t0=$(now)
  if ! "$@" >"$log" 2>&1; then
    tail -30 "$log" >&2
    echo "$what failed: $*" >&2
    exit 1
  fi
  t1=$(now)
  [ -z "${CPU_OUT:-}" ] || cpu_end "$what (terraform, its providers, ssh, curl)" >"$CPU_OUT"
  secs "$t0" "$t1"
}

# check TAG [CONSUL_ARGS]: on the first node of the droplets tagged TAG, a Consul leader with
# every server a voter and every node a ready swarm member. Read through the local cloud's
# node container, not over SSH: the image's `ufw limit ssh` would refuse a sixth connection.
check() {
  local tag=$1 consul_args=${2:-} id servers=$((nodes < 3 ? nodes : 3)) voters ready
  id=$(curl -sS -H "Authorization: Bearer $DIGITALOCEAN_TOKEN" "${DIGITALOCEAN_API_URL%/}/v2/droplets?tag_name=$tag&per_page=200" |
    jq -r '[.droplets[] | select(.name | endswith("-0"))][0].id')
  local s=(docker exec "demo-droplet-$id" sh -c)
  # shellcheck disable=SC2086
  voters=$("${s[@]}" "docker exec consul-server consul operator raft list-peers $consul_args" | awk 'NR > 1 && $5 == "true"' | grep -c -E 'leader|follower' || true)
  ready=$("${s[@]}" "docker node ls --format '{{.Status}}'" | grep -c Ready || true)
  if [ "$voters" -ne "$servers" ] || [ "$ready" -ne "$nodes" ]; then
    echo "$tag: $voters of $servers Consul servers voting, $ready of $nodes swarm nodes ready" >&2
    exit 1
  fi
}

ours_up() { tools/demo.sh tf apply -auto-approve "${vars[@]}" "${infra[@]}"; }
ours_down() { tools/demo.sh tf destroy -auto-approve "${vars[@]}"; }
peer_up() { rm -f "$PEER"/.swarm-*-token && peer_tf apply -auto-approve; }
peer_down() { peer_tf destroy -auto-approve; }
hand_up() { bench/peer/handrun.sh up "$nodes"; }
hand_down() { bench/peer/handrun.sh down; }

peer_tf init -input=false >/dev/null 2>&1 || true # dev_overrides: init only records the lock file, if anything
run "destroying the demo" ours_down >/dev/null
bench/peer/handrun.sh key
declare -A up down cpu
order=(ours peer hand)
for round in $(seq 1 "$rounds"); do
  line="round $round ($nodes nodes):"
  for who in "${order[@]}"; do
    u=$(CPU_OUT=".demo/peer-$who-$round.cpu" run "$who create" "${who}_up")
    c=$(cpu_total ".demo/peer-$who-$round.cpu")
    case $who in
      ours) check demo "-http-addr=https://127.0.0.1:8500 -ca-file=/consul/tls/ca.pem -client-cert=/consul/tls/cert.pem -client-key=/consul/tls/key.pem -token=$(cat .demo/consul/management.token)" ;;
      *) check "$who" ;;
    esac
    d=$(run "$who destroy" "${who}_down")
    up[$who]+=" $u" down[$who]+=" $d" cpu[$who]+=" $c"
    line+=" $who ${u} s (${c} CPU-s; destroy ${d} s);"
  done
  echo "$line"
  order=("${order[@]:1}" "${order[0]}")
done
bench/peer/handrun.sh unkey
# shellcheck disable=SC2086
{
  ou=$(m ${up[ours]}) pu=$(m ${up[peer]}) hu=$(m ${up[hand]})
  echo "median over $rounds rounds ($nodes nodes): microswarm $ou s ($(m ${cpu[ours]}) CPU-s; destroy $(m ${down[ours]}) s); peer $pu s ($(m ${cpu[peer]}) CPU-s; destroy $(m ${down[peer]}) s); hand-run $hu s ($(m ${cpu[hand]}) CPU-s; destroy $(m ${down[hand]}) s)"
  awk -v o="$ou" -v p="$pu" -v h="$hu" 'BEGIN { printf "microswarm is %.2fx faster than the peer, %.2fx than the hand-run baseline\n", p / o, h / o }'
}
tools/demo.sh down >/dev/null 2>&1
