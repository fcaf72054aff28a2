#!/usr/bin/env bash
# examples/digitalocean end to end on the local cloud, with the official digitalocean
# provider built from its source. Not run in CI (it needs that source checked out, and
# about ten minutes of a machine with a Docker engine); see examples/digitalocean/README.md.
#
#   tools/do-e2e.sh SRC     SRC: a checkout of digitalocean/terraform-provider-digitalocean
#                           (it vendors its dependencies: the build needs no network)
#
# It builds both providers, writes a Terraform CLI config whose dev_overrides point at
# them, starts a local cloud, applies examples/digitalocean, checks the app through every
# node, the firewall in every node and the Consul leader, switches the app to green and
# checks again, destroys, checks through the API that nothing is left, and stops the
# local cloud. Everything goes to .do-e2e/ (the apply logs, the state, the summary).
#   DO_E2E_LOCK=/tmp/acc.lock   run the part that uses the Docker engine under
#                               `flock -o` on this file (builds stay outside)
#   DO_E2E_SWITCH=0             skip the switch to green
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
STATE="$ROOT/.do-e2e"
EXAMPLE="$ROOT/examples/digitalocean"
NAME=do-e2e

MICROSWARM_PROGRESS_START=${MICROSWARM_PROGRESS_START:-$(date +%s)}
export MICROSWARM_PROGRESS_START
PROGRESS_TAG=do-e2e
# shellcheck source=tools/progress.sh
source "$ROOT/tools/progress.sh"

build() {
  local src=${1:?usage: tools/do-e2e.sh SRC (a checkout of terraform-provider-digitalocean)}
  src=$(cd "$src" && pwd)
  mkdir -p "$STATE/bin"
  say "building the official digitalocean provider from $src (vendored, offline)"
  (cd "$src" && nice -n 10 go build -mod=vendor -o "$STATE/bin/terraform-provider-digitalocean" .)
  {
    echo "source: $src"
    echo "commit: $(git -C "$src" rev-parse HEAD 2>/dev/null || echo unknown)"
    echo "version: $(git -C "$src" describe --tags 2>/dev/null || echo unknown)"
    echo "godo: $(awk '$1 == "github.com/digitalocean/godo" {print $2}' "$src/go.mod")"
  } >"$STATE/digitalocean-provider.txt"
  say "building the microswarm provider and the local cloud"
  nice -n 10 go build -o "$STATE/bin/" . ./tools/localcloud
  [ -f "$STATE/id_ed25519" ] || ssh-keygen -q -t ed25519 -N '' -C do-e2e -f "$STATE/id_ed25519"
  cat >"$STATE/terraformrc" <<CFG
provider_installation {
  dev_overrides {
    "microswarm/microswarm"     = "$STATE/bin"
    "digitalocean/digitalocean" = "$STATE/bin"
  }
  direct {}
}
CFG
}

tf() { terraform -chdir="$EXAMPLE" "$@"; }
output() { tf output -state="$STATE/terraform.tfstate" "$@"; }

# api GET PATH: the local cloud's API, as a client of DigitalOcean's.
api() { curl -fsS -H "Authorization: Bearer $DIGITALOCEAN_TOKEN" "${DIGITALOCEAN_API_URL}v2/$1"; }

start_cloud() {
  rm -f "$STATE/localcloud.env"
  say "starting the local cloud"
  setsid "$STATE/bin/localcloud" -name "$NAME" -env-file "$STATE/localcloud.env" >"$STATE/localcloud.log" 2>&1 </dev/null &
  echo $! >"$STATE/localcloud.pid"
  for _ in $(seq 1 300); do [ -s "$STATE/localcloud.env" ] && break; sleep 0.2; done
  [ -s "$STATE/localcloud.env" ] || { tail -20 "$STATE/localcloud.log" >&2; exit 1; }
  # shellcheck disable=SC1091
  source "$STATE/localcloud.env"
}

stop_cloud() {
  [ -f "$STATE/localcloud.pid" ] || return 0
  local pid
  pid=$(cat "$STATE/localcloud.pid")
  if kill -0 "$pid" 2>/dev/null; then
    say "stopping the local cloud (it removes whatever is left)"
    kill -TERM "$pid"
    for _ in $(seq 1 600); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
  fi
  rm -f "$STATE/localcloud.pid"
}

# timed LOG ARG...: terraform ARG... with its output in LOG; prints the seconds it took.
timed() {
  local log=$1 start=$SECONDS rc=0
  shift
  tf "$@" -auto-approve -input=false -no-color -state="$STATE/terraform.tfstate" >"$log" 2>&1 || rc=$?
  if [ "$rc" -ne 0 ]; then
    say "terraform $1 failed (all of it: ${log#"$ROOT/"}):"
    sed -n '/Error: /,$p' "$log" | head -60 >&2
    return "$rc"
  fi
  grep -E '^(Apply|Destroy) complete' "$log" | tail -1 >&2
  echo $((SECONDS - start))
}

# check_app COLOR: every endpoint answers as the demo app of that color.
check_app() {
  local want=$1 ep body got failed=0
  for ep in $(output -json app_endpoints | jq -r '.[]'); do
    body=$(curl -fsS --max-time 5 "$ep/" 2>&1) || body="no answer: $body"
    got=$(jq -r '"\(.color) \(.version)"' <<<"$body" 2>/dev/null || true)
    if [[ "$got" == "$want "* ]]; then
      say "  $ep answers: $body"
    else
      say "  $ep: want $want, got: $(head -c 200 <<<"$body")"
      failed=1
    fi
  done
  return "$failed"
}

# check_firewall: every node holds the cloud firewall's chains; and a container port
# published on a node, which Docker forwards past the droplet's UFW, does not answer from
# this machine (the internet, to the nodes): only the cloud firewall stands in its way.
check_firewall() {
  local id ip in out failed=0 first="" first_ip=""
  while read -r id ip; do
    in=$(docker exec "$NAME-droplet-$id" iptables -t mangle -S DO-CLOUD-FIREWALL 2>&1 | grep -c -- '^-A' || true)
    out=$(docker exec "$NAME-droplet-$id" iptables -t mangle -S DO-CLOUD-FIREWALL-OUT 2>&1 | grep -c -- '^-A' || true)
    say "  droplet $id ($ip): cloud firewall chains with $in inbound and $out outbound rules"
    [ "$in" -gt 2 ] && [ "$out" -gt 2 ] || failed=1
    [ -n "$first" ] || { first=$id first_ip=$ip; }
  done < <(output -json nodes | jq -r '.[] | "\(.droplet_id) \(.public_ip)"')
  # The probe: the blue image, on a port no rule opens, hidden from the registrator.
  local node="$NAME-droplet-$first" image=${TF_VAR_blue_image:-microswarm/demo-app:1.0.0}
  docker exec "$node" docker run -d --rm --name fw-probe -p 9999:8080 -l SERVICE_IGNORE=true -e SERVICE_IGNORE=true "$image" >/dev/null
  for _ in $(seq 1 50); do docker exec "$node" curl -fsS -m 1 -o /dev/null http://127.0.0.1:9999/ 2>/dev/null && break; sleep 0.2; done
  if ! docker exec "$node" curl -fsS -m 1 -o /dev/null http://127.0.0.1:9999/; then
    say "  the probe container does not answer inside droplet $first"
    failed=1
  elif curl -fsS -m 3 -o /dev/null "http://$first_ip:9999/" 2>/dev/null; then
    say "  droplet $first: a published port no rule allows answers from outside ($first_ip:9999)"
    failed=1
  else
    say "  droplet $first: published port 9999 answers inside the node, not from outside (dropped by the cloud firewall)"
  fi
  docker exec "$node" docker rm -f fw-probe >/dev/null
  return "$failed"
}

# check_nothing_left: the API lists no droplet, firewall or VPC, no droplet's create tag
# (each goes with its droplet), and no tag but the microswarm provider's own (empty, free,
# and left by design: docs/resources/droplet_node.md).
check_nothing_left() {
  local droplets firewalls vpcs tags others creates keys
  droplets=$(api 'droplets?per_page=200' | jq '.droplets | length')
  firewalls=$(api 'firewalls?per_page=200' | jq '.firewalls | length')
  vpcs=$(api 'vpcs?per_page=200' | jq '[.vpcs[] | select(.default | not)] | length')
  tags=$(api 'tags?per_page=200' | jq -r '[.tags[] | "\(.name) (\(.resources.count))"] | join(", ")')
  others=$(api 'tags?per_page=200' | jq '[.tags[] | select((.name | test("^microswarm(-[a-z]+:.*)?$")) | not)] | length')
  creates=$(api 'tags?per_page=200' | jq '[.tags[] | select(.name | startswith("microswarm-create:"))] | length')
  keys=$(api 'account/keys?per_page=200' | jq -r '[.ssh_keys[].name] | join(" ")')
  say "  left: $droplets droplets, $firewalls firewalls, $vpcs VPCs besides the defaults"
  say "  tags left: ${tags:-none} (not the provider's: $others)"
  say "  account keys left: ${keys:-none}"
  echo "left after destroy: tags ${tags:-none}; account keys ${keys:-none}" >>"$STATE/summary.txt"
  [ "$droplets$firewalls$vpcs$others$creates" = 00000 ]
}

run() {
  # shellcheck disable=SC2064 # expand now
  trap stop_cloud EXIT
  start_cloud
  export TF_CLI_CONFIG_FILE="$STATE/terraformrc" TF_IN_AUTOMATION=1
  export MICROSWARM_SSH_PRIVATE_KEY_FILE="$STATE/id_ed25519"
  TF_VAR_gossip_key=$(head -c 32 /dev/urandom | base64)
  export TF_VAR_gossip_key
  rm -f "$STATE"/terraform.tfstate*
  local summary="$STATE/summary.txt" t
  {
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    cat "$STATE/digitalocean-provider.txt"
    echo "terraform: $(terraform version | head -1)"
    echo "microswarm: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . ':!*.md' || echo ' (with uncommitted changes)')"
  } >"$summary"

  say "terraform apply (log: .do-e2e/apply.log)"
  t=$(timed "$STATE/apply.log" apply)
  echo "apply: ${t}s" >>"$summary"
  say "checking the app through every node (blue)"
  check_app blue
  say "checking the cloud firewall"
  check_firewall
  say "consul leader: $(output -raw consul_leader); live: $(output -raw app_live)"
  echo "checked: app blue on every endpoint, firewall chains in every node, a published port no rule allows closed from outside, consul leader $(output -raw consul_leader)" >>"$summary"
  say "a second plan must be empty"
  tf plan -detailed-exitcode -input=false -no-color -state="$STATE/terraform.tfstate" >"$STATE/plan.log" 2>&1 ||
    { say "the plan after apply is not empty (.do-e2e/plan.log)"; return 1; }
  echo "plan after apply: no changes" >>"$summary"

  if [ "${DO_E2E_SWITCH:-1}" != 0 ]; then
    say "terraform apply -var active=green (log: .do-e2e/switch.log)"
    t=$(timed "$STATE/switch.log" apply -var active=green)
    echo "switch to green: ${t}s" >>"$summary"
    check_app green
    echo "checked: app green on every endpoint after the switch" >>"$summary"
  fi

  say "terraform destroy (log: .do-e2e/destroy.log)"
  t=$(timed "$STATE/destroy.log" destroy -var "active=$(output -raw app_live | cut -d' ' -f1)")
  echo "destroy: ${t}s" >>"$summary"
  check_nothing_left
  echo "after destroy: no droplet, firewall, non-default VPC or tag of the example left" >>"$summary"
  stop_cloud
  trap - EXIT
  echo "total: $(dur $(($(date +%s) - MICROSWARM_PROGRESS_START)))" >>"$summary"
  say "passed; summary in .do-e2e/summary.txt"
  cat "$summary"
}

case "${1:-}" in
  run) run ;; # the engine part alone, after a build
  "" | -h | --help) sed -n '2,18p' "$0" >&2; exit 2 ;;
  *)
    build "$1"
    if [ -n "${DO_E2E_LOCK:-}" ]; then
      say "waiting for $DO_E2E_LOCK"
      exec flock -o "$DO_E2E_LOCK" "$0" run
    fi
    run
    ;;
esac
