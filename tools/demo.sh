#!/usr/bin/env bash
# make demo: the full cluster on the local cloud.
#   tools/demo.sh up      engine, images, local cloud, provider build, terraform apply, checks;
#                         a droplet found off (make demo-break) is replaced by the apply
#   tools/demo.sh down    terraform destroy, stop the local cloud
#   tools/demo.sh switch [blue|green]   switch the demo app's live color (default: the
#                         other one) under a live load; exit 1 if any request failed
#                         (MICROSWARM_DEMO_LOAD=0: no load, for benchmarks that bring their own)
#   tools/demo.sh break   power off a worker droplet through the local cloud's API
#   tools/demo.sh check   the checks `up` ends with, alone
#   tools/demo.sh tf ARGS terraform ARGS on the running demo: its configuration, variables and
#                         state (e.g. tools/demo.sh tf plan); with MICROSWARM_TF_TIME=FILE,
#                         terraform's own seconds go to FILE (bench/perf.sh times it so)
# Progress goes to stderr, each line with the time since the command started; the full
# output of each terraform apply goes to .demo/apply.log (switch: .demo/switch.log).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
STATE="$ROOT/.demo"
EXAMPLE="$ROOT/examples/local"
mkdir -p "$STATE"

MICROSWARM_PROGRESS_START=$(date +%s)
export MICROSWARM_PROGRESS_START
PROGRESS_TAG=demo
# shellcheck source=tools/progress.sh
source "$ROOT/tools/progress.sh"

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
  # Consul's CA, the agents' certificate and key, and the ACL management token: made once,
  # kept with the demo's state (mode 0600); Terraform gets the key and the token as
  # ephemeral variables, so neither is in the state.
  [ -x bin/democheck ] || go build -o bin/ ./tools/democheck
  bin/democheck -consul-secrets "$STATE/consul"
  TF_VAR_consul_ca_pem=$(cat "$STATE/consul/ca.pem")
  TF_VAR_consul_cert_pem=$(cat "$STATE/consul/cert.pem")
  TF_VAR_consul_key_pem=$(cat "$STATE/consul/key.pem")
  TF_VAR_consul_management_token=$(cat "$STATE/consul/management.token")
  export TF_VAR_consul_ca_pem TF_VAR_consul_cert_pem TF_VAR_consul_key_pem TF_VAR_consul_management_token
}

tf() { terraform -chdir="$EXAMPLE" "$@"; }
output() { tf output -state="$STATE/terraform.tfstate" "$@"; }

# endpoints prints the app's endpoint URLs (the app_endpoints output), one per word.
endpoints() { output -json app_endpoints | tr -d '[]" \n' | tr ',' ' '; }

cloud_running() {
  [ -f "$STATE/localcloud.pid" ] && kill -0 "$(cat "$STATE/localcloud.pid")" 2>/dev/null
}

require_up() {
  if ! cloud_running || [ ! -s "$STATE/terraform.tfstate" ]; then
    say "the demo is not up: run make demo first"
    exit 1
  fi
  tf_env
}

# apply LOG [ARG...] runs terraform apply with its whole output in LOG and its gist on
# stderr: the plan's summary, each resource done, a heartbeat for slow ones, the titles of
# the provider's warnings, errors.
apply() {
  local log=$1
  shift
  local rc=0
  tf apply -auto-approve -input=false -no-color -state="$STATE/terraform.tfstate" "$@" 2>&1 |
    tee "$log" | gist || rc=$?
  if [ "$rc" -ne 0 ]; then
    say "terraform apply failed; its errors (all of it: ${log#"$ROOT/"}):"
    sed -n '/Error: /,$p' "$log" | head -60 >&2
  fi
  return "$rc"
}

gist() {
  local line rc started=$SECONDS quiet_since=$SECONDS
  local -A warned=()
  while :; do
    rc=0
    IFS= read -r -t 5 line || rc=$?
    if [ "$rc" -gt 128 ]; then # nothing for 5 s: a heartbeat if terraform is long quiet
      if ((SECONDS - quiet_since >= MICROSWARM_HEARTBEAT)); then
        say "  still running terraform apply ($(dur $((SECONDS - started))))"
        quiet_since=$SECONDS
      fi
      continue
    fi
    [ "$rc" -eq 0 ] || break
    case "$line" in
      "Plan: "* | "No changes."* | "Apply complete!"* | *": Creation complete after "* | \
        *": Modifications complete after "* | *": Destruction complete after "*)
        say "  $line" ;;
      # Terraform says "Still creating..." every 10 s: every 30 s is enough here.
      *": Still "*"s elapsed]"*)
        case "$line" in *"30s elapsed]"* | *"m0s elapsed]"*) say "  $line" ;; esac ;;
      # The demo's own setup (-state, dev_overrides) warns on every run: not news.
      *"Warning: Deprecated flag: -state"* | *"Warning: Provider development overrides"*) continue ;;
      *"Warning: "*) # once per title: a plan and its apply may say the same
        [ -z "${warned[$line]:-}" ] || continue
        warned[$line]=1
        say "  ${line#│ }" ;;
      *"Error: "*) say "  ${line#│ }" ;;
      *) continue ;;
    esac
    quiet_since=$SECONDS
  done
}

up() {
  say "docker engine"
  tools/ensure-engine.sh 2>&1 | { grep -v '^docker engine ready' || true; } >&2
  say "images (cached in ${MICROSWARM_CACHE:-~/.cache/microswarm})"
  tools/images/build.sh
  say "compiling the provider and the demo tools"
  run_long "compiling the provider and the demo tools (the first time takes minutes)" \
    go build -o bin/ . ./tools/localcloud ./tools/democheck ./tools/demoload ./tools/democloud
  [ -f "$STATE/id_ed25519" ] || bin/democheck -keygen "$STATE/id_ed25519"
  if cloud_running; then
    tf_env
    say "the local cloud is running at $DIGITALOCEAN_API_URL"
  else
    rm -f "$STATE/localcloud.env"
    say "starting the local cloud"
    # MICROSWARM_DEMO_NAME: another name for the local cloud's Docker objects, so that two
    # checkouts on one machine can each run their demo.
    setsid bin/localcloud -name "${MICROSWARM_DEMO_NAME:-demo}" -env-file "$STATE/localcloud.env" >"$STATE/localcloud.log" 2>&1 </dev/null &
    echo $! >"$STATE/localcloud.pid"
    for _ in $(seq 1 300); do [ -s "$STATE/localcloud.env" ] && break; sleep 0.2; done
    [ -s "$STATE/localcloud.env" ] || { tail -20 "$STATE/localcloud.log" >&2; exit 1; }
    tf_env
    say "the local cloud's DigitalOcean API is at $DIGITALOCEAN_API_URL"
  fi

  # Droplets that are off (make demo-break): this apply should replace them.
  local id name
  : >"$STATE/off-before"
  if [ -s "$STATE/terraform.tfstate" ]; then
    bin/democloud off >"$STATE/off-before"
    while read -r id name; do
      say "$name (droplet $id) is off: this apply should replace it"
    done <"$STATE/off-before"
  fi

  local active=blue
  [ -s "$STATE/active" ] && active=$(cat "$STATE/active")
  say "terraform apply: nodes, Consul, swarm, registrator, blue/green app (log: .demo/apply.log)"
  if ! apply "$STATE/apply.log" -var "active=$active"; then
    while read -r id name; do
      say "note: $name (droplet $id) was off before this apply (make demo-break)"
    done <"$STATE/off-before"
    exit 1
  fi

  # What became of the droplets that were off, from the state's nodes and the API.
  if [ -s "$STATE/off-before" ]; then
    if ! output -json nodes | bin/democloud healed "$STATE/off-before" >"$STATE/healed"; then
      say "not healed: the apply left a droplet off (see above)"
      exit 1
    fi
  fi
  say "checking the cluster as a user sees it: every node over SSH, Consul, swarm, registrator, app"
  if ! check 2>&1 | sed 's/^/    /' >&2; then
    say "a check failed (see above); make demo-down removes everything"
    exit 1
  fi
  if [ -s "$STATE/off-before" ]; then
    local line
    while IFS= read -r line; do
      say "healed: $line; back in swarm and Consul (checked above)"
    done <"$STATE/healed"
  fi
  rm -f "$STATE/off-before" "$STATE/healed"
  finale
}

# check proves the cluster works as a user sees it: every node runs a container through
# its docker_host, every node is a ready swarm node and an alive Consul voter, the
# registrator runs everywhere, and the app answers through every proxy.
check() {
  bin/democheck -state "$STATE/terraform.tfstate" -key "$STATE/id_ed25519" -consul "$STATE/consul"
}

# finale: where the app is, one request to it, and what to try next.
finale() {
  local eps endpoint answer
  read -r -a eps <<<"$(endpoints)"
  endpoint=${eps[0]}
  answer=$(curl -fsS --max-time 5 "$endpoint/" 2>&1) || answer="(no answer this time: $answer)"
  say "the demo cluster is up ($(dur $(($(date +%s) - MICROSWARM_PROGRESS_START))))"
  cat <<EOF

  The demo app, blue/green behind HAProxy on every node (live: $(output -raw app_live)):
    endpoint   $endpoint   (also ${eps[*]:1})
    \$ curl $endpoint/
    $answer

  Health, as Consul sees it (data.microswarm_health):
    app        $(output -raw health_app)
    cluster    $(output -raw health_cluster)

  Next:
    make demo-switch   switch the app to the other color (blue v1 <-> green v2) under a live
                       load, no failed request; run it again to switch back
    make demo-break    power off a worker droplet; then make demo heals the cluster
    make demo-down     remove everything

EOF
}

down() {
  if [ -f "$STATE/localcloud.env" ] && cloud_running; then
    tf_env
    say "terraform destroy (log: .demo/destroy.log)"
    tf destroy -auto-approve -input=false -no-color -state="$STATE/terraform.tfstate" >"$STATE/destroy.log" 2>&1 ||
      say "terraform destroy failed (see .demo/destroy.log); stopping the local cloud removes its droplets anyway"
  fi
  if cloud_running; then
    say "stopping the local cloud"
    kill -TERM "$(cat "$STATE/localcloud.pid")"
    for _ in $(seq 1 300); do cloud_running || break; sleep 0.2; done
  fi
  rm -f "$STATE/localcloud.pid" "$STATE/localcloud.env" "$STATE/terraform.tfstate" "$STATE/terraform.tfstate.backup" \
    "$STATE/gossip.key" "$STATE/active" "$STATE/off-before" "$STATE/healed"
  rm -rf "$STATE/consul"
  say "the demo is down"
}

# switch flips the demo app to the given color, or to the one not live now, while
# demoload asks the app through every proxy and shows what answers, second by second.
switch() {
  require_up
  local live to=${1:-}
  live=$(output -raw app_live | cut -d' ' -f1)
  if [ -z "$to" ]; then
    to=green
    [ "$live" = green ] && to=blue
  fi
  if [ "${MICROSWARM_DEMO_LOAD:-1}" = 0 ]; then
    say "switching the demo app from $live to $to (no load)"
    apply "$STATE/switch.log" -var "active=$to"
    echo "$to" >"$STATE/active"
    return
  fi
  go build -o bin/ ./tools/demoload
  local eps
  read -r -a eps <<<"$(endpoints)"
  say "switching the demo app from $live to $to while a client asks it through all ${#eps[@]} proxies"
  rm -f "$STATE/demoload.ready"
  bin/demoload -ready "$STATE/demoload.ready" "${eps[@]}" &
  local load=$!
  # shellcheck disable=SC2064 # expand now: the load's pid
  trap "kill $load 2>/dev/null || true" EXIT
  for _ in $(seq 1 50); do [ -e "$STATE/demoload.ready" ] && break; sleep 0.2; done
  sleep 2 # the live color answering before the switch
  say "terraform apply -var active=$to (log: .demo/switch.log)"
  kill -USR1 "$load"
  local rc=0 load_rc=0
  apply "$STATE/switch.log" -var "active=$to" || rc=$?
  kill -USR2 "$load"
  wait "$load" || load_rc=$?
  trap - EXIT
  rm -f "$STATE/demoload.ready"
  [ "$rc" -eq 0 ] || exit 1
  echo "$to" >"$STATE/active"
  if [ "$load_rc" -ne 0 ]; then
    say "requests failed during the switch (see above)"
    exit 1
  fi
  say "live now: $(output -raw app_live); make demo-switch again switches back"
}

# break_node powers off a worker droplet, as a failing machine would be.
break_node() {
  require_up
  go build -o bin/ ./tools/democloud
  local name id role ip at
  read -r name id role ip at < <(output -json nodes | bin/democloud break)
  # When the power-off was asked for, for bench/heal.sh's clock.
  echo "$at" >>"$STATE/break-at"
  say "powered off $name (droplet $id, swarm $role, $ip): POST $DIGITALOCEAN_API_URL""v2/droplets/$id/actions {\"type\":\"power_off\"}"
  say "the API says droplet $id is off; its Consul server, proxy and app tasks went with it"
  say "run make demo to heal: it finds the droplet off and the apply replaces it"
}

case "${1:-up}" in
  up) up ;;
  switch) shift; switch "$@" ;;
  break) break_node ;;
  down) down ;;
  check) require_up; go build -o bin/ ./tools/democheck; check ;;
  tf)
    shift
    require_up
    # MICROSWARM_TF_TIME=FILE: terraform's own wall time, start to exit, into FILE (what a
    # user who runs terraform directly waits; bench/perf.sh).
    started=$EPOCHREALTIME rc=0
    tf "$1" -input=false -no-color -state="$STATE/terraform.tfstate" "${@:2}" || rc=$?
    if [ -n "${MICROSWARM_TF_TIME:-}" ]; then
      awk -v a="$started" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f\n", b - a }' >"$MICROSWARM_TF_TIME"
    fi
    exit "$rc"
    ;;
  *) echo "usage: $0 up|down|check|break|switch [blue|green]|tf ARGS" >&2; exit 2 ;;
esac
