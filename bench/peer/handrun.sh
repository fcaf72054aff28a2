#!/usr/bin/env bash
# The hand-run baseline of issue #29: the seeds' procedure as a person types it, scripted.
# The droplets through the API with curl, then `docker` over SSH on each node, one node
# after another: the firewall opened to the private network, a Consul server on each of the
# first three and a client agent on the rest, the swarm's init and joins (three managers
# from 9 nodes up); done when Consul has a leader, every agent sees a server and every node
# is a ready swarm member.
#   bench/peer/handrun.sh up N      N droplets (default 3), tag "hand"
#   bench/peer/handrun.sh down      deletes the droplets tagged "hand", waits until they are gone
#   bench/peer/handrun.sh key|unkey registers (removes) the SSH key, once per bench run
# Needs DIGITALOCEAN_API_URL, DIGITALOCEAN_TOKEN, HAND_KEY (a private key file, .pub beside
# it) and, for up, GOSSIP_KEY and PRIVATE_CIDR (the VPC's range). One SSH connection per node is reused (ControlMaster), as a
# person working on a node keeps one session open; DigitalOcean's docker-20-04 image limits
# new SSH connections (`ufw limit ssh`: a sixth within 30 s is refused).
set -euo pipefail
api=${DIGITALOCEAN_API_URL%/}
auth=(-H "Authorization: Bearer $DIGITALOCEAN_TOKEN" -H 'Content-Type: application/json')
key=${HAND_KEY:?HAND_KEY names the private key}
ctl=$(dirname "$key")/ctl
mkdir -p "$ctl"
ssh_opts=(-i "$key" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR
  -o ConnectTimeout=5 -o ControlMaster=auto -o "ControlPath=$ctl/%h" -o ControlPersist=120)
on() { local ip=$1; shift; ssh "${ssh_opts[@]}" "root@$ip" "$@"; }
call() { curl -sS --fail-with-body "${auth[@]}" "$@"; }

# droplets prints "NAME PUBLIC PRIVATE STATUS" for every droplet tagged hand.
droplets() {
  call "$api/v2/droplets?tag_name=hand&per_page=200" | jq -r '.droplets[] |
    [.name, (.networks.v4[] | select(.type == "public") | .ip_address),
     (.networks.v4[] | select(.type == "private") | .ip_address), .status] | @tsv'
}

case "${1:-}" in
key) # again after a run that stopped half-way: the key registered then is found by name
  id=$(call "$api/v2/account/keys?per_page=200" | jq -r '[.ssh_keys[] | select(.name == "hand")][0].id // empty')
  [ -n "$id" ] || id=$(call -X POST "$api/v2/account/keys" -d "$(jq -n --arg k "$(cat "$key.pub")" '{name: "hand", public_key: $k}')" | jq -r .ssh_key.id)
  echo "$id" >"$key.id" ;;
unkey)
  [ -s "$key.id" ] && call -X DELETE "$api/v2/account/keys/$(cat "$key.id")" >/dev/null
  rm -f "$key.id" ;;
up)
  n=${2:-3}
  servers=$((n < 3 ? n : 3))
  # One create for up to 10 names (the API's limit per request).
  for first in $(seq 0 10 $((n - 1))); do
    names=$(seq "$first" $((first + 9 < n - 1 ? first + 9 : n - 1)) | jq -R '"hand-" + .' | jq -s -c .)
    call -X POST "$api/v2/droplets" -d "$(jq -n --argjson names "$names" --argjson key "$(cat "$key.id")" \
      '{names: $names, region: "nyc3", size: "s-1vcpu-1gb", image: "docker-20-04", ssh_keys: [$key], tags: ["hand"]}')" >/dev/null
  done
  # Watch the list until every droplet is active (a person refreshing the panel, every second).
  until [ "$(droplets | awk '$4 == "active"' | wc -l)" -eq "$n" ]; do sleep 1; done
  mapfile -t rows < <(droplets | sort -V) # hand-0 first: the manager
  pub=() priv=()
  for r in "${rows[@]}"; do
    read -r _ p q _ <<<"$r"
    pub+=("$p") priv+=("$q")
  done
  joins=""
  for ip in "${priv[@]:0:servers}"; do joins+=" -retry-join=$ip"; done
  for i in "${!pub[@]}"; do
    until on "${pub[$i]}" true 2>/dev/null; do sleep 1; done
    on "${pub[$i]}" "cidr=$PRIVATE_CIDR;" 'until docker info >/dev/null 2>&1; do sleep 1; done
      for p in 8300:8302/tcp 8301:8302/udp 2377/tcp 7946/tcp 7946/udp 4789/udp; do
        ufw allow proto ${p#*/} from $cidr to any port ${p%/*} >/dev/null
      done'
  done
  for i in $(seq 0 $((servers - 1))); do
    on "${pub[$i]}" docker run -d --name consul-server --restart unless-stopped --net host hashicorp/consul:1.20.5 \
      agent -server -bootstrap-expect=$servers -bind="${priv[$i]}" -client=127.0.0.1 -encrypt="$GOSSIP_KEY" \
      "-hcl='performance { raft_multiplier = 1 }'" "$joins" >/dev/null
  done
  for i in $(seq "$servers" $((n - 1))); do
    on "${pub[$i]}" docker run -d --name consul-agent --restart unless-stopped --net host hashicorp/consul:1.20.5 \
      agent -bind="${priv[$i]}" -client=127.0.0.1 -encrypt="$GOSSIP_KEY" "$joins" >/dev/null
  done
  on "${pub[0]}" docker swarm init --advertise-addr "${priv[0]}" >/dev/null
  managers=$((n >= 9 ? 3 : 1))
  worker=$(on "${pub[0]}" docker swarm join-token -q worker)
  manager=$(on "${pub[0]}" docker swarm join-token -q manager)
  for i in $(seq 1 $((n - 1))); do
    token=$worker
    [ "$i" -lt "$managers" ] && token=$manager
    on "${pub[$i]}" docker swarm join --token "$token" "${priv[0]}:2377" >/dev/null
  done
  for i in $(seq "$servers" $((n - 1))); do
    until on "${pub[$i]}" docker exec consul-agent consul members 2>/dev/null | grep -qw server; do sleep 1; done
  done
  until on "${pub[0]}" docker exec consul-server consul operator raft list-peers >/dev/null 2>&1; do sleep 1; done
  until [ "$(on "${pub[0]}" docker node ls --format '{{.Status}}' | grep -c Ready)" -eq "$n" ]; do sleep 1; done
  ;;
down)
  for s in "$ctl"/*; do [ -S "$s" ] && ssh -o "ControlPath=$s" -O exit hand 2>/dev/null; done
  call -X DELETE "$api/v2/droplets?tag_name=hand" >/dev/null
  until [ -z "$(droplets)" ]; do sleep 1; done ;;
*)
  sed -n '2,12p' "$0" >&2
  exit 2 ;;
esac
