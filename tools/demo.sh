#!/usr/bin/env bash
# make demo: the full cluster on the local cloud.
#   tools/demo.sh up     engine, images, local cloud, provider build, terraform apply
#   tools/demo.sh down   terraform destroy, stop the local cloud
#   tools/demo.sh switch [blue|green]   switch the demo app's live color (default: the other one)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
STATE="$ROOT/.demo"
EXAMPLE="$ROOT/examples/local"
mkdir -p "$STATE"

log() { echo "[demo] $*" >&2; }

tf_env() {
  # The provider binary is used in place (dev_overrides): no registry involved.
  cat >"$STATE/terraformrc" <<CFG
provider_installation {
  dev_overrides {
    "microswarm/microswarm" = "$ROOT/bin"
  }
  direct {}
}
CFG
  export TF_CLI_CONFIG_FILE="$STATE/terraformrc"
  export TF_IN_AUTOMATION=1
  # shellcheck disable=SC1091
  source "$STATE/localcloud.env"
  export MICROSWARM_SSH_PRIVATE_KEY_FILE="$STATE/id_ed25519"
  # The Consul gossip key: 32 random bytes, kept with the demo's state.
  [ -s "$STATE/gossip.key" ] || head -c 32 /dev/urandom | base64 >"$STATE/gossip.key"
  TF_VAR_gossip_key=$(cat "$STATE/gossip.key")
  export TF_VAR_gossip_key
}

cloud_running() {
  [ -f "$STATE/localcloud.pid" ] && kill -0 "$(cat "$STATE/localcloud.pid")" 2>/dev/null
}

up() {
  tools/ensure-engine.sh
  tools/images/build.sh
  log "building the provider and the local cloud"
  go build -o bin/terraform-provider-microswarm .
  go build -o bin/localcloud ./tools/localcloud
  [ -f "$STATE/id_ed25519" ] || ssh_keygen
  if ! cloud_running; then
    rm -f "$STATE/localcloud.env"
    log "starting the local cloud"
    setsid bin/localcloud -name demo -env-file "$STATE/localcloud.env" >"$STATE/localcloud.log" 2>&1 < /dev/null &
    echo $! >"$STATE/localcloud.pid"
    for _ in $(seq 1 300); do [ -s "$STATE/localcloud.env" ] && break; sleep 0.2; done
    [ -s "$STATE/localcloud.env" ] || { tail -20 "$STATE/localcloud.log" >&2; exit 1; }
  fi
  tf_env
  log "local cloud at $DIGITALOCEAN_API_URL"
  log "terraform apply (examples/local)"
  local active=blue
  [ -s "$STATE/active" ] && active=$(cat "$STATE/active")
  terraform -chdir="$EXAMPLE" apply -auto-approve -input=false -state="$STATE/terraform.tfstate" -var "active=$active"
  terraform -chdir="$EXAMPLE" output -state="$STATE/terraform.tfstate"
  check
  log "the demo cluster is up. Next:"
  log "  make demo-switch   switch the demo app to the other color (blue v1 <-> green v2), no failed request"
  log "  make demo-down     remove everything"
}

# check proves the cluster works as a user sees it: every node runs a container through
# its docker_host, Consul has its voters and members, the swarm has its nodes.
check() {
  go run ./tools/democheck -state "$STATE/terraform.tfstate" -key "$STATE/id_ed25519"
}

down() {
  if [ -f "$STATE/localcloud.env" ] && cloud_running; then
    tf_env
    terraform -chdir="$EXAMPLE" destroy -auto-approve -input=false -state="$STATE/terraform.tfstate" || true
  fi
  if cloud_running; then
    log "stopping the local cloud"
    kill -TERM "$(cat "$STATE/localcloud.pid")"
    for _ in $(seq 1 300); do cloud_running || break; sleep 0.2; done
  fi
  rm -f "$STATE/localcloud.pid" "$STATE/localcloud.env" "$STATE/terraform.tfstate" "$STATE/terraform.tfstate.backup" "$STATE/gossip.key" "$STATE/active"
}

# ssh_keygen writes the demo's SSH key without needing the ssh-keygen binary.
ssh_keygen() {
  go run ./tools/democheck -keygen "$STATE/id_ed25519"
}

# switch flips the demo app to the given color, or to the one not live now.
switch() {
  tf_env
  local to=${1:-}
  if [ -z "$to" ]; then
    local live
    live=$(terraform -chdir="$EXAMPLE" output -state="$STATE/terraform.tfstate" -raw app_live | cut -d' ' -f1)
    to=green; [ "$live" = green ] && to=blue
  fi
  echo "$to" >"$STATE/active"
  log "switching the demo app to $to"
  terraform -chdir="$EXAMPLE" apply -auto-approve -input=false -state="$STATE/terraform.tfstate" -var "active=$to"
}

case "${1:-up}" in
  up) up ;;
  switch) shift; switch "$@" ;;
  down) down ;;
  check) tf_env; check ;;
  *) echo "usage: $0 up|down|check|switch [blue|green]" >&2; exit 2 ;;
esac
