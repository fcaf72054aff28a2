# shellcheck shell=bash
# Sourced by bench/cpu.sh, bench/perf.sh and bench/peer.sh: where the machine's CPU went
# between cpu_begin and cpu_end, split into the shell's own children (terraform and the
# provider, or the peer's terraform and ssh), each node's engine (the node container:
# dockerd, containerd, sshd, the shims, and the runc execs of every HEALTHCHECK), the
# containers inside the nodes by image (Consul, HAProxy, the registrator, the app), and the
# rest (the local cloud, the host's engine, the kernel, other processes). On a machine busy
# for the whole span, its wall time cannot be less than the CPU seconds over the cores: the
# report's last line says that floor.
# Reads cgroup v1's cpuacct (the node containers and the containers inside them each have
# one, side by side under docker/), /proc/stat and bash's `times`; each counts what exited
# during the span. Without cgroup v1 the report keeps the machine's total, the shell's
# children and the floor, and says it could not split the rest.
CPU_CG=${CPU_CG:-/sys/fs/cgroup/cpuacct/docker}

# cpu_usage: "ID NANOSECONDS" for every container's cgroup, in one process (a loaded machine
# forks slowly); a cgroup gone since the listing is left out.
cpu_usage() {
  [ -d "$CPU_CG" ] || return 0
  find "$CPU_CG" -mindepth 2 -name cpuacct.usage -exec awk 'BEGIN {
    for (i = 1; i < ARGC; i++) if ((getline v < ARGV[i]) > 0) { n = split(ARGV[i], p, "/"); print p[n - 1], v; close(ARGV[i]) }
  }' {} +
}
# cpu_busy: the machine's non-idle jiffies since boot (user nice system irq softirq steal).
cpu_busy() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; }
# cpu_children: the CPU seconds of this shell's reaped children (`times`, second line).
# `times` runs in this shell, not in a command substitution's subshell, which has none.
cpu_children() {
  times >"$CPU_DIR/times"
  awk 'NR == 2 { for (i = 1; i <= 2; i++) { split($i, x, /[ms]/); s += x[1] * 60 + x[2] } printf "%.3f", s }' "$CPU_DIR/times"
}

# cpu_begin: starts a span; the caller's shell must be the one that runs what is measured.
cpu_begin() {
  CPU_DIR=$(mktemp -d)
  # The machine's count is taken just inside the span's edges, for the floor; the cgroups'
  # reads lie just outside them, so the rest may come out a little short, even below 0.
  cpu_usage >"$CPU_DIR/a"
  cpu_children >"$CPU_DIR/own0"
  date +%s.%N >"$CPU_DIR/t0"
  cpu_busy >"$CPU_DIR/busy0"
}

# cpu_end [OWN_LABEL]: ends the span and prints the report; OWN_LABEL names what the
# shell's children were (none: an idle span, without the floor).
cpu_end() {
  local label=${1:-} t1 own names=$CPU_DIR/names n
  cpu_busy >"$CPU_DIR/busy1"
  t1=$(date +%s.%N)
  cpu_children >"$CPU_DIR/own1"
  own=$(awk -v a="$(cat "$CPU_DIR/own0")" -v b="$(cat "$CPU_DIR/own1")" 'BEGIN { printf "%.3f", b - a }')
  cpu_usage >"$CPU_DIR/b"
  # Names: host containers by name (a node is demo-droplet-ID), inner ones by their image.
  docker ps -a --no-trunc --format '{{.ID}} host {{.Names}}' >"$names"
  for n in $(docker ps --format '{{.Names}}' | grep '^demo-droplet-' || true); do
    docker exec "$n" docker ps -a --no-trunc --format '{{.ID}} inner {{.Image}}' 2>/dev/null >>"$names" || true
  done
  awk -v t0="$(cat "$CPU_DIR/t0")" -v t1="$t1" \
    -v busy="$(($(cat "$CPU_DIR/busy1") - $(cat "$CPU_DIR/busy0")))" -v hz="$(getconf CLK_TCK)" \
    -v cores="$(getconf _NPROCESSORS_ONLN)" -v own="$own" -v label="$label" -v cg="$([ -d "$CPU_CG" ] && echo 1)" '
    FILENAME == ARGV[1] { kind[$1] = $2; name[$1] = $3; next }
    FILENAME == ARGV[2] { before[$1] = $2; next }
    {
      d = ($2 - before[$1]) / 1e9
      if (d <= 0) next
      if (kind[$1] == "host" && name[$1] ~ /^demo-droplet-/) group = "node engines (dockerd, containerd, sshd, shims, HEALTHCHECK execs)"
      else if (kind[$1] == "host") group = "host container " name[$1]
      else if (kind[$1] == "inner") { image = name[$1]; sub(/:[^\/]*$/, "", image); group = "in the nodes: " image }
      else group = "containers gone by the end"
      cpu[group] += d; counted += d
    }
    END {
      total = busy / hz; w = t1 - t0
      if (label == "") own = 0
      # a sort key before a tab: the header first, then the groups by CPU, then the last two lines
      printf "0\t0\twall %.1f s; the machine busy %.1f CPU-s of %.1f (%d cores, %.0f%%)\n", w, total, w * cores, cores, 100 * total / (w * cores)
      if (label != "") printf "1\t%f\t  %6.1f CPU-s  %s\n", own, own, label
      for (g in cpu) printf "1\t%f\t  %6.1f CPU-s  %s\n", cpu[g], cpu[g], g
      if (cg) printf "2\t0\t  %6.1f CPU-s  the rest (the local cloud, the host engine, the kernel, other processes)\n", total - counted - own
      else printf "2\t0\t  %6.1f CPU-s  the rest, not split: no cgroup v1 cpuacct here\n", total - own
      if (label != "") printf "3\t0\tfloor at %d cores: %.1f s (the CPU seconds over the cores)\n", cores, total / cores
    }' "$names" "$CPU_DIR/a" "$CPU_DIR/b" | sort -t "$(printf '\t')" -k1,1n -k2,2gr | cut -f3-
  rm -rf "$CPU_DIR"
}

# cpu_total FILE: the machine's CPU seconds in a report; cpu_floor FILE: its floor.
cpu_total() { awk '/the machine busy/ { for (i = 1; i <= NF; i++) if ($i == "busy") print $(i + 1) }' "$1"; }
cpu_floor() { awk '/^floor at [0-9]+ cores: / { print $5 }' "$1"; }
