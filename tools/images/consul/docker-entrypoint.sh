#!/usr/bin/dumb-init /bin/sh
# The entrypoint of hashicorp/consul as built here. It does what the official image's
# entrypoint (hashicorp/consul, .release/docker/docker-entrypoint.sh) does, in the same
# order, so a container started from this image sees the same command line, user and
# files as one started from Docker Hub's; tools/images/README.md lists each behaviour.
# dumb-init is PID 1: it forwards signals to Consul and reaps what Consul leaves behind.
set -e

# address_of IFACE prints the interface's first IPv4 address.
address_of() {
  ip -o -4 addr list "$1" | head -n1 | awk '{print $4}' | cut -d/ -f1
}

# CONSUL_BIND_INTERFACE / CONSUL_CLIENT_INTERFACE become -bind= / -client=, unless
# CONSUL_BIND / CONSUL_CLIENT already hold the flag.
if [ -z "$CONSUL_BIND" ] && [ -n "$CONSUL_BIND_INTERFACE" ]; then
  addr=$(address_of "$CONSUL_BIND_INTERFACE")
  if [ -z "$addr" ]; then
    echo "Could not find IP for interface '$CONSUL_BIND_INTERFACE', exiting"
    exit 1
  fi
  CONSUL_BIND="-bind=$addr"
  echo "==> Found address '$addr' for interface '$CONSUL_BIND_INTERFACE', setting bind option..."
fi
if [ -z "$CONSUL_CLIENT" ] && [ -n "$CONSUL_CLIENT_INTERFACE" ]; then
  addr=$(address_of "$CONSUL_CLIENT_INTERFACE")
  if [ -z "$addr" ]; then
    echo "Could not find IP for interface '$CONSUL_CLIENT_INTERFACE', exiting"
    exit 1
  fi
  CONSUL_CLIENT="-client=$addr"
  echo "==> Found address '$addr' for interface '$CONSUL_CLIENT_INTERFACE', setting client option..."
fi

# The data directory (a volume) and the config directory, overridable.
: "${CONSUL_DATA_DIR:=/consul/data}"
: "${CONSUL_CONFIG_DIR:=/consul/config}"

# Configuration as JSON in the environment, without mounting anything.
if [ -n "$CONSUL_LOCAL_CONFIG" ]; then
  echo "$CONSUL_LOCAL_CONFIG" >"$CONSUL_CONFIG_DIR/local.json"
fi

# Flags alone run `consul FLAGS`.
case "$1" in
  -*) set -- consul "$@" ;;
esac

# `agent` gets the data and config directories (and the interface addresses) before the
# caller's own flags; `version` and any other Consul subcommand run as `consul ARGS`;
# anything else (sh, a path) runs as given.
if [ "$1" = agent ]; then
  shift
  # shellcheck disable=SC2086 # CONSUL_BIND and CONSUL_CLIENT are one flag or nothing
  set -- consul agent -data-dir="$CONSUL_DATA_DIR" -config-dir="$CONSUL_CONFIG_DIR" $CONSUL_BIND $CONSUL_CLIENT "$@"
elif [ "$1" = version ]; then
  set -- consul "$@"
elif consul --help "$1" 2>&1 | grep -q "consul $1"; then
  # Consul's exit code does not tell a subcommand from a stranger; its help text does.
  set -- consul "$@"
fi

# Consul runs as the consul user (CONSUL_UID/CONSUL_GID, default the user's own ids):
# the two directories are handed to it first if they are not its own (a bind mount,
# files copied in as root), unless CONSUL_DISABLE_PERM_MGMT is set at all.
if [ "$1" = consul ] && [ -z "${CONSUL_DISABLE_PERM_MGMT+set}" ]; then
  : "${CONSUL_UID:=$(id -u consul)}"
  : "${CONSUL_GID:=$(id -g consul)}"
  for dir in "$CONSUL_DATA_DIR" "$CONSUL_CONFIG_DIR"; do
    if [ "$(stat -c %u "$dir")" != "$CONSUL_UID" ]; then
      chown "$CONSUL_UID:$CONSUL_GID" "$dir"
    fi
  done
  # Binding ports below 1024 as that user, on request.
  if [ -n "${CONSUL_ALLOW_PRIVILEGED_PORTS+set}" ]; then
    setcap cap_net_bind_service=+ep /bin/consul
  fi
  set -- su-exec "$CONSUL_UID:$CONSUL_GID" "$@"
fi

exec "$@"
