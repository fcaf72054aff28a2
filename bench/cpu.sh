#!/usr/bin/env bash
# Where a command's CPU goes on the local cloud: runs CMD and reports the CPU seconds the
# whole machine spent while it ran, split by bench/cpulib.sh into the command's own process
# tree (terraform and the provider), the node engines, the containers inside the nodes by
# image, and the rest; then the floor those CPU seconds put under the wall time here.
#   bench/cpu.sh CMD [ARGS...]      e.g. bench/cpu.sh tools/demo.sh tf apply -auto-approve
#   IDLE=SECONDS bench/cpu.sh       the same over SECONDS of a running demo, no command
#   CPU_OUT=FILE bench/cpu.sh ...   the report into FILE instead of the standard output
set -euo pipefail
# shellcheck source=bench/cpulib.sh
source "$(dirname "$0")/cpulib.sh"
cpu_begin
if [ $# -gt 0 ]; then
  "$@" || { rc=$?; echo "bench/cpu.sh: $1 exited $rc" >&2; exit "$rc"; }
  label="the command ($1 and its children: terraform and the provider)"
else
  sleep "${IDLE:-30}"
  label=""
fi
if [ -n "${CPU_OUT:-}" ]; then
  cpu_end "$label" >"$CPU_OUT"
else
  cpu_end "$label"
fi
