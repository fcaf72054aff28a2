#!/bin/sh
# PID 1 of a local-cloud droplet: prepares the host like cloud-init would, starts sshd,
# then becomes dockerd (so `kill -HUP 1` reloads /etc/docker/daemon.json).
set -eu

# The sandbox mounts cgroups read-only; the inner dockerd needs them writable.
for dir in /sys/fs/cgroup/*; do
  [ -d "$dir" ] || continue
  name=$(basename "$dir")
  case "$name" in
    unified) continue ;;
    systemd) opts=none,name=systemd ;;
    *) opts=$name ;;
  esac
  if umount "$dir" 2>/dev/null; then
    mount -t cgroup -o "$opts" cgroup "$dir" 2>/dev/null || true
  fi
done

seed=/etc/microswarm
# Host keys: the ones cloud-init user_data handed over (pinned by the provider before the
# droplet existed) or fresh ones; never the keys baked into the image.
if [ ! -f "$seed/.host-keys-done" ]; then
  # As cloud-init's cc_ssh: the keys given in ssh_keys and no others, or, when none were
  # given, a fresh key of every type.
  rm -f /etc/ssh/ssh_host_*
  if [ -d "$seed/host-keys" ] && ls "$seed/host-keys"/ssh_host_* >/dev/null 2>&1; then
    cp "$seed/host-keys"/ssh_host_* /etc/ssh/
    chmod 600 /etc/ssh/ssh_host_*_key
    chmod 644 /etc/ssh/ssh_host_*_key.pub
    for k in /etc/ssh/ssh_host_*_key; do # a private key given without its public half
      [ -f "$k.pub" ] || ssh-keygen -y -f "$k" > "$k.pub"
    done
  else
    ssh-keygen -A >/dev/null
  fi
  touch "$seed/.host-keys-done"
fi

mkdir -p /root/.ssh && chmod 700 /root/.ssh
# The keys the droplet was created with, once: later changes (the provider rewrites
# authorized_keys in place when ssh_keys change) must survive a reboot.
if [ -f "$seed/authorized_keys" ] && [ ! -f "$seed/.authorized-keys-done" ]; then
  cp "$seed/authorized_keys" /root/.ssh/authorized_keys
  chmod 600 /root/.ssh/authorized_keys
  touch "$seed/.authorized-keys-done"
fi

mkdir -p /etc/docker
if [ -f "$seed/daemon.json" ]; then cp "$seed/daemon.json" /etc/docker/daemon.json; fi

# The firewall, as the droplet's image ships it (the emulator says which image in
# MICROSWARM_IMAGE_SLUG; tools/images/README.md):
# - docker-20-04: DigitalOcean's Docker image (digitalocean/droplet-1-clicks,
#   docker-20-04/scripts/014-ufw-rules, baked into the image, and the per-once cloud-init
#   script 001-docker-populate, `ufw --force enable`): UFW on, incoming denied but for a
#   rate-limited ssh and 2375-2376/tcp, forwarding accepted (Docker's published ports).
# - ubuntu-*: UFW installed and off, no rules.
# - debian-*: no UFW at all.
if [ ! -f "$seed/.firewall-done" ]; then
  case "${MICROSWARM_IMAGE_SLUG:-}" in
    docker-20-04)
      # The rules the image was built with (see the Dockerfile), then what `ufw --force
      # enable` does: ENABLED=yes and ufw-init loading the rules.
      staged=/usr/share/microswarm/ufw/docker-20-04
      cp "$staged/default" /etc/default/ufw
      cp "$staged/user.rules" "$staged/user6.rules" /etc/ufw/
      sed -e 's|^ENABLED=.*|ENABLED=yes|' -i /etc/ufw/ufw.conf
      /lib/ufw/ufw-init start quiet >/dev/null
      ;;
    debian-*)
      rm -f /usr/sbin/ufw
      ;;
  esac
  touch "$seed/.firewall-done"
elif [ -x /lib/ufw/ufw-init ] && grep -q '^ENABLED=yes' /etc/ufw/ufw.conf 2>/dev/null; then
  # Every later boot, like ufw.service, before the network and Docker come up.
  /lib/ufw/ufw-init start quiet >/dev/null
fi

mkdir -p /run/sshd
/usr/sbin/sshd -E /var/log/sshd.log

# A stale pid file from before a power cycle keeps dockerd from starting.
rm -f /var/run/docker.pid /run/docker.pid /run/docker/containerd/containerd.pid
exec dockerd --host unix:///var/run/docker.sock >>/var/log/dockerd.log 2>&1
