#!/usr/bin/env bash
# Makes sure this machine has what the local cloud needs: a running Docker engine,
# iptables and debootstrap. Installs from Debian's archive what is missing and starts
# dockerd if no engine answers. Safe to run again.
set -euo pipefail

SOCK=/var/run/docker.sock

missing=()
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
command -v iptables >/dev/null 2>&1 || missing+=(iptables)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
command -v curl >/dev/null 2>&1 || missing+=(curl)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

engine_answers() { curl -fsS --max-time 2 --unix-socket "$SOCK" http://localhost/_ping >/dev/null 2>&1; }

if ! engine_answers; then
  echo "starting dockerd" >&2
  mkdir -p /var/log
  setsid dockerd --data-root /var/lib/docker -H "unix://$SOCK" >/var/log/dockerd.log 2>&1 < /dev/null &
  for _ in $(seq 1 150); do engine_answers && break; sleep 0.2; done
  engine_answers || { echo "dockerd did not answer on $SOCK; see /var/log/dockerd.log" >&2; tail -20 /var/log/dockerd.log >&2; exit 1; }
fi
echo "docker engine ready on unix://$SOCK" >&2
